"""Image intake: the one way every entry point (CLI, UI, store, bench) turns input into pixels.

``load_image`` accepts a path, raw bytes, a binary file object, a ``PIL.Image.Image``
or a numpy array and returns a fully loaded, upright, RGB ``PIL.Image.Image``:

* EXIF orientation is applied, so a phone photo comes out the way it is displayed
  (``exif_orientation=False``, the ``exif_orientation`` setting, keeps the stored pixels,
  as the official evaluation scripts do).
* Transparency (RGBA, LA, PA, palette or colour-key transparency) is composited over
  white, the background most viewers show.
* 16-bit greyscale is scaled (65535 -> 255), not clipped.
* Problems raise the named errors of ``spatialreward.errors`` with a message that
  says what was wrong and how to fix it, naming a file by its name, never by the
  server path it was read from. Image size is checked against ``max_pixels`` from
  the header, before any pixel is decoded.
* An animated or multi-page file (GIF, APNG, WebP, TIFF) is read as its first frame
  and the fact is recorded on the result: ``info["spatialreward_frames"]`` holds the
  number of frames and :func:`intake_warnings` the sentence to show the user.
* PNG text and ICC-profile chunks too large for Pillow to read (a 20 MB zTXt) are
  dropped: pixels are all we use, and the pixels are intact.

Coordinate convention between a source image and its edit
---------------------------------------------------------
Editors return images at their own resolution. We assume the edited image shows the
same field of view as the source, so ``align_to_source`` *stretches* it to the source
(width, height); it never crops or pads. Consequently normalised coordinates
(0..1000 on each axis) are shared by both frames: a box normalised in the edited
image is the same box normalised in the source. When the two aspect ratios differ
(``aspect_mismatch`` above ``ASPECT_TOLERANCE``) the stretch distorts the content and
callers should warn.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import struct
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFile, ImageOps, PngImagePlugin, UnidentifiedImageError

from spatialreward.errors import (
    EmptyImageError,
    ImageTooLargeError,
    NotAnImageError,
    TruncatedImageError,
)

DEFAULT_MAX_PIXELS = 40_000_000
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
# Relative aspect-ratio difference above which stretching visibly distorts content.
ASPECT_TOLERANCE = 0.02

ACCEPTED = (
    "a file path, bytes, a binary file object, a PIL.Image.Image, or a numpy array "
    "of shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) with dtype uint8, uint16, bool or float"
)
# Raster formats only: EPS would run Ghostscript on untrusted uploads, and formats
# without a magic number (e.g. TGA) would accept random bytes as garbage pixels.
_FORMATS = "PNG JPEG WEBP GIF BMP DIB TIFF PPM ICO QOI AVIF JPEG2000".split()
# Lets a failed decode say "truncated PNG" rather than "not an image".
_MAGIC = {b"\x89PNG": "PNG", b"\xff\xd8\xff": "JPEG", b"GIF8": "GIF"}
_WHITE = (255, 255, 255)
# Keys load_image writes into the returned image's ``info`` (only when there is something
# to say); anything a file's own metadata put under them is dropped.
FRAMES_KEY = "spatialreward_frames"
WARNINGS_KEY = "spatialreward_warnings"
# A JPEG's extra MPF pictures are previews, depth or HDR gain maps, not frames of content.
_NOT_ANIMATION = {"MPO"}
_KINDS = {
    "GIF": "an animated GIF",
    "PNG": "an animated PNG",
    "WEBP": "an animated WebP",
    "TIFF": "a multi-page TIFF",
    "AVIF": "an animated AVIF",
}
# PNG chunks whose content Pillow decompresses into memory and that we never use.
_PNG_METADATA = {b"tEXt", b"zTXt", b"iTXt", b"iCCP"}
_PILLOW_METADATA_LIMIT = re.compile(r"MAX_TEXT_(CHUNK|MEMORY)|decompressed data too large", re.I)


def load_image(
    obj: Any,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_BYTES,
    name: str = "image",
    exif_orientation: bool = True,
) -> Image.Image:
    """Decode ``obj`` into an upright, fully loaded RGB image.

    ``exif_orientation=False`` keeps the pixels as stored, ignoring a photo's EXIF
    orientation tag, as the official evaluation scripts read images.

    ``name`` is how messages refer to the input ("edited image"). A file with several
    frames gives its first (or, for a PIL image, its current) frame; the result then
    carries ``info[FRAMES_KEY]``, the number of frames (a lower bound when a later
    frame is corrupt), and the warnings that :func:`intake_warnings` returns. Loading
    such a result again keeps both, so the warning names the input as first loaded.

    >>> load_image(np.zeros((2, 3, 3), np.uint8)).size
    (3, 2)
    """
    if isinstance(obj, Image.Image):
        return _finish(obj, max_pixels, name, exif=exif_orientation)
    if isinstance(obj, np.ndarray):
        return _finish(_from_array(obj, name), max_pixels, name, exif=exif_orientation)
    if isinstance(obj, (bytes, bytearray, memoryview)):
        data = bytes(obj)
        _check_bytes(len(data), max_bytes, name)
        return _decode(data, max_pixels, name, exif_orientation)
    if isinstance(obj, (str, os.PathLike)):
        return _decode(_read_path(obj, max_bytes, name), max_pixels, name, exif_orientation)
    if callable(getattr(obj, "read", None)):
        data = obj.read(max_bytes + 1)  # one byte over the cap proves it is too big
        if not isinstance(data, (bytes, bytearray)):
            raise NotAnImageError(
                f"{name}: .read() returned {type(data).__name__}, not bytes; "
                "open the file in binary mode ('rb')"
            )
        _check_bytes(len(data), max_bytes, name, at_least=len(data) > max_bytes)
        return _decode(bytes(data), max_pixels, name, exif_orientation)
    raise NotAnImageError(
        f"{name} is a {type(obj).__module__}.{type(obj).__qualname__}; pass {ACCEPTED}"
    )


def intake_warnings(image: Image.Image) -> tuple[str, ...]:
    """What the user should be told about how :func:`load_image` read ``image``.

    Empty for an ordinary image; for an animated or multi-page file, one sentence
    naming it by the ``name`` given to ``load_image``:

    >>> frames = [Image.new("RGB", (2, 2), c) for c in ("red", "blue", "lime")]
    >>> buf = io.BytesIO()
    >>> frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    >>> im = load_image(buf.getvalue(), name="edited image")
    >>> im.info[FRAMES_KEY], intake_warnings(im)
    (3, ('edited image is an animated GIF with 3 frames; only the first frame was judged',))
    >>> intake_warnings(load_image(frames[0]))
    ()
    """
    notes = image.info.get(WARNINGS_KEY, ())
    if isinstance(notes, tuple) and all(isinstance(n, str) for n in notes):
        return notes
    return ()


def to_array(img: Image.Image) -> np.ndarray:
    """Return the pixels as a C-contiguous (H, W, 3) uint8 array (a copy).

    >>> to_array(Image.new("L", (3, 2), 7)).shape
    (2, 3, 3)
    """
    return np.array(img if img.mode == "RGB" else _to_rgb(img), dtype=np.uint8, order="C")


def align_to_source(source_size: tuple[int, int], edited: Image.Image) -> Image.Image:
    """Stretch ``edited`` to the source (width, height); see the module docstring.

    Returns ``edited`` itself when the sizes already match.

    >>> align_to_source((4, 2), Image.new("RGB", (8, 8))).size
    (4, 2)
    """
    width, height = _check_size(source_size, "source size")
    if edited.size == (width, height):
        return edited
    shrinking = width <= edited.width and height <= edited.height
    # Area averaging keeps thin edits visible when shrinking; bicubic is smooth when growing.
    resample = Image.Resampling.BOX if shrinking else Image.Resampling.BICUBIC
    return edited.resize((width, height), resample=resample)


def aspect_mismatch(source_size: tuple[int, int], edited_size: tuple[int, int]) -> float:
    """Relative aspect-ratio difference ``|a_edited / a_source - 1|``.

    >>> round(aspect_mismatch((1000, 500), (1024, 512)), 6)
    0.0
    """
    sw, sh = _check_size(source_size, "source size")
    ew, eh = _check_size(edited_size, "edited size")
    return abs((ew / eh) / (sw / sh) - 1.0)


# --- internals ---------------------------------------------------------------------------


def _check_size(size: tuple[int, int], what: str) -> tuple[int, int]:
    width, height = (int(v) for v in size)
    if width <= 0 or height <= 0:
        raise EmptyImageError(f"{what} is {width}x{height}; an image needs at least 1x1 pixels")
    return width, height


def _human_bytes(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n} bytes"


def _check_bytes(size: int, max_bytes: int, name: str, *, at_least: bool = False) -> None:
    if size > max_bytes:
        shown = ("more than " if at_least else "") + _human_bytes(max_bytes if at_least else size)
        raise ImageTooLargeError(
            f"{name} is {shown}, above the {_human_bytes(max_bytes)} limit; "
            "compress or downscale it, or raise max_upload_bytes (env var STUDIO_MAX_UPLOAD_BYTES)"
        )


def _check_pixels(size: tuple[int, int], max_pixels: int, name: str) -> None:
    width, height = size
    if width <= 0 or height <= 0:
        raise EmptyImageError(f"{name} is {width}x{height} pixels; an image needs at least 1x1")
    if width * height > max_pixels:
        raise _too_large(name, size, max_pixels)


def _too_large(name: str, size: tuple[int, int] | None, max_pixels: int) -> ImageTooLargeError:
    """Our message for an image over our ``max_pixels`` or over Pillow's hard bomb limit."""
    hard = 2 * Image.MAX_IMAGE_PIXELS if Image.MAX_IMAGE_PIXELS else None  # PIL raises above it
    pillow = f"the {hard / 1e6:.1f} MP that Pillow decodes" if hard else "what Pillow decodes"
    if size is None:  # the header could not be read without tripping Pillow's check
        return ImageTooLargeError(
            f"{name} is larger than {pillow} (our max_pixels limit is "
            f"{max_pixels / 1e6:.1f} MP); downscale it"
        )
    width, height = size
    shown = f"{name} is {width}x{height} = {width * height / 1e6:.1f} MP"
    if width * height > max_pixels:
        return ImageTooLargeError(
            f"{shown}, above the {max_pixels / 1e6:.1f} MP limit; downscale it or raise "
            "max_pixels (env var STUDIO_MAX_PIXELS)"
        )
    return ImageTooLargeError(
        f"{shown}, too large to decode safely: above {pillow}, "
        "whatever max_pixels allows; downscale it"
    )


def _read_path(path: str | os.PathLike, max_bytes: int, name: str) -> bytes:
    # Messages show the file's name only: the directories are the server's business.
    shown = Path(os.fsdecode(path)).name or "the given path"
    try:
        stat = os.stat(path)
    except OSError as err:
        why = "does not exist" if isinstance(err, FileNotFoundError) else f"({err.strerror})"
        raise NotAnImageError(f"{name}: file {shown!r} {why}; check the path") from None
    if not os.path.isfile(path):
        raise NotAnImageError(
            f"{name}: {shown!r} is not a regular file; pass the path of an image file"
        )
    _check_bytes(stat.st_size, max_bytes, name)  # before reading, so a huge file costs nothing
    try:
        with open(path, "rb") as fh:
            data = fh.read(max_bytes + 1)  # the file may have grown since stat
    except OSError as err:
        raise NotAnImageError(
            f"{name}: file {shown!r} could not be read ({err.strerror or type(err).__name__}); "
            "check that it is readable"
        ) from None
    _check_bytes(len(data), max_bytes, name, at_least=len(data) > max_bytes)
    return data


def _reason(err: BaseException, im: Image.Image | None = None) -> str:
    """Pillow's explanation of a failure, without any server path in it."""
    text = err.strerror if isinstance(err, OSError) and err.filename and err.strerror else str(err)
    path = getattr(im, "filename", None)  # set when the caller opened the image from a path
    if isinstance(path, str) and path:
        for form in {os.path.abspath(path), path}:
            text = text.replace(form, os.path.basename(path))
    return text


@contextlib.contextmanager
def _bomb_guard(name: str, size: tuple[int, int] | None, max_pixels: int) -> Iterator[None]:
    # PIL warns above ~89 MP; our max_pixels is the policy, so that warning is noise here.
    # Its hard error (above ~179 MP) cannot be lifted without mutating PIL globals.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            yield
        except Image.DecompressionBombError:
            raise _too_large(name, size, max_pixels) from None


def _header_size(data: bytes, formats: list[str]) -> tuple[int, int] | None:
    """(width, height) from the header, for when Pillow's bomb check in ``Image.open``
    refused the file before saying how big it is. Opens with the format's plugin
    directly, as ``Image.open`` does, minus that check; decodes no pixel."""
    prefix = data[:16]
    for fmt in formats:
        factory, accept = Image.OPEN[fmt]
        accepted = accept is None or accept(prefix)
        if isinstance(accepted, str) or not accepted:
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with factory(io.BytesIO(data), "") as im:
                    return im.size
        except Exception:  # not this format after all, or a broken header: try the next
            continue
    return None


class _MetadataTooLarge(Exception):
    """Internal: Pillow refused a PNG text or ICC chunk as too large; ``_decode`` retries."""


def _metadata_error(name: str) -> ImageTooLargeError:
    return ImageTooLargeError(
        f"{name} has a PNG metadata chunk (text or ICC profile) larger than the "
        f"{_human_bytes(PngImagePlugin.MAX_TEXT_CHUNK)} per chunk "
        f"({_human_bytes(PngImagePlugin.MAX_TEXT_MEMORY)} in all) that Pillow reads; "
        "strip the metadata (re-save the image without it) and retry, or pass the file's bytes"
    )


def _without_png_metadata(data: bytes) -> bytes:
    """The PNG minus its text and ICC-profile chunks; every other chunk byte for byte."""
    kept, pos = [data[:8]], 8
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        end = pos + 12 + length  # length, type, body, CRC
        if kind not in _PNG_METADATA:
            kept.append(data[pos:end])
        pos = end
    kept.append(data[pos:])  # a truncated tail stays truncated
    return b"".join(kept)


def _decode(data: bytes, max_pixels: int, name: str, exif: bool = True) -> Image.Image:
    if not data:
        raise NotAnImageError(f"{name} is empty (0 bytes); pass a PNG, JPEG, WebP or other image")
    Image.init()  # `formats` may only name registered plugins; Image.open would do this anyway
    formats = [f for f in _FORMATS if f in Image.OPEN]
    kind = next((k for magic, k in _MAGIC.items() if data.startswith(magic)), None)
    try:
        return _open(data, formats, kind, max_pixels, name, retry_metadata=kind == "PNG",
                     exif=exif)
    except _MetadataTooLarge:
        # The pixels are fine; only metadata we never use is over Pillow's limit. Dropping
        # it from our copy of the bytes leaves Pillow's process-wide limits alone.
        stripped = _without_png_metadata(data)
        return _open(stripped, formats, kind, max_pixels, name, retry_metadata=False,
                     exif=exif)


def _open(
    data: bytes,
    formats: list[str],
    kind: str | None,
    max_pixels: int,
    name: str,
    *,
    retry_metadata: bool,
    exif: bool = True,
) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data), formats=formats)  # lazy: reads the header only
    except Image.DecompressionBombError:
        # Pillow's check ran before ours and hides the size; read it and use our limit.
        raise _too_large(name, _header_size(data, formats), max_pixels) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        if isinstance(err, ValueError) and _PILLOW_METADATA_LIMIT.search(str(err)):
            if retry_metadata:
                raise _MetadataTooLarge from err
            raise _metadata_error(name) from err
        if kind:
            raise TruncatedImageError(
                f"{name} looks like a {kind} file but its header is truncated or corrupt; "
                "re-export or re-upload it"
            ) from err
        raise NotAnImageError(
            f"{name} is not an image Pillow can decode (first bytes {data[:8]!r}); "
            "pass a PNG, JPEG, WebP, GIF, BMP or TIFF file"
        ) from None
    return _finish(im, max_pixels, name, retry_metadata=retry_metadata, exif=exif)


def _count_frames(im: Image.Image) -> tuple[int, bool]:
    """(frames, exact) of a lazily opened image, leaving it on the frame it was on.

    Counting parses frame headers, decodes no pixel. A corrupt later frame stops it: the
    count is then the frames seen so far, a lower bound (frame 1 may still be fine).
    """
    start = im.tell()
    try:
        frames, exact = int(getattr(im, "n_frames", 1)), True
    except Exception:
        frames, exact = im.tell() + 1, False
    if im.tell() != start:
        im.seek(start)  # a failure here leaves the image unusable: reported as corrupt
    return frames, exact


def _frames_warning(name: str, fmt: str | None, frames: int, exact: bool, current: int) -> str:
    unit = "page" if fmt == "TIFF" else "frame"
    kind = _KINDS.get(fmt or "", f"a multi-{unit} {fmt or 'image'}")
    count = f"{frames}" if exact else f"at least {frames}"
    which = f"the first {unit}" if current == 0 else f"{unit} {current + 1}"
    return f"{name} is {kind} with {count} {unit}s; only {which} was judged"


def _finish(
    im: Image.Image, max_pixels: int, name: str, *, retry_metadata: bool = False,
    exif: bool = True,
) -> Image.Image:
    _check_pixels(im.size, max_pixels, name)  # from the header: nothing decoded yet
    frames, notes = 1, intake_warnings(im)  # an image load_image returned keeps its notes
    try:
        with _bomb_guard(name, im.size, max_pixels):
            if isinstance(im, ImageFile.ImageFile):  # from a file: count its frames
                current = im.tell()
                frames, exact = _count_frames(im)
                if frames > 1 and im.format not in _NOT_ANIMATION:
                    notes = (_frames_warning(name, im.format, frames, exact, current),)
                else:
                    frames, notes = 1, ()
            elif type(im.info.get(FRAMES_KEY)) is int:
                frames = im.info[FRAMES_KEY]
            im.load()
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        if isinstance(err, ValueError) and _PILLOW_METADATA_LIMIT.search(str(err)):
            # A text chunk after the pixel data; only _decode has the bytes to retry with.
            if retry_metadata:
                raise _MetadataTooLarge from err
            raise _metadata_error(name) from err
        raise TruncatedImageError(
            f"{name} is a truncated or corrupt {im.format or 'image'} file ({_reason(err, im)}); "
            "the upload or copy was probably interrupted, re-export or re-upload it"
        ) from err
    try:
        upright = ImageOps.exif_transpose(im) if exif else im
    except Exception:  # a malformed EXIF block should not make readable pixels unusable
        upright = im
    out = _to_rgb(upright)
    # The result must never alias the caller's image or a file-backed one.
    out = out.copy() if out is im else out
    out.info.pop(FRAMES_KEY, None)  # whatever a file's text chunks said under our keys
    out.info.pop(WARNINGS_KEY, None)
    if frames > 1:
        out.info[FRAMES_KEY] = frames
    if notes:
        out.info[WARNINGS_KEY] = notes
    return out


def _to_rgb(im: Image.Image) -> Image.Image:
    mode = im.mode
    if mode == "RGB" and "transparency" not in im.info:
        return im
    if mode.startswith("I;16") or mode in ("I", "F"):
        return Image.fromarray(_scale_deep(np.asarray(im), mode)).convert("RGB")
    if mode == "La":  # premultiplied: PIL only converts it to LA
        im, mode = im.convert("LA"), "LA"
    if mode in ("RGBA", "LA", "PA", "RGBa") or "transparency" in im.info:
        rgba = im.convert("RGBA")
        background = Image.new("RGB", im.size, _WHITE)
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return im.convert("RGB")


def _scale_deep(a: np.ndarray, mode: str) -> np.ndarray:
    """Map 16/32-bit integer and float greyscale to uint8.

    I;16 is always 0..65535. I and F have no fixed range, so values that fit the
    narrower convention are taken as it (I: 0..255, F: 0..1), else I is read as
    16-bit and F as 0..255, matching how such files are usually produced.
    """
    if mode == "F":
        a = np.nan_to_num(a.astype(np.float64), nan=0.0, posinf=255.0, neginf=0.0)
        scale = 255.0 if a.size and a.max() <= 1.0 else 1.0
        return np.clip(np.rint(a * scale), 0, 255).astype(np.uint8)
    a = a.astype(np.int64)
    if mode == "I" and (a.size == 0 or a.max() <= 255):
        return np.clip(a, 0, 255).astype(np.uint8)
    return ((np.clip(a, 0, 65535) + 128) // 257).astype(np.uint8)


def _from_array(arr: np.ndarray, name: str) -> Image.Image:
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (3, 4))):
        raise NotAnImageError(f"{name} is an array of shape {arr.shape}; pass {ACCEPTED}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise EmptyImageError(
            f"{name} is an array of shape {arr.shape}; an image needs at least 1x1 pixels"
        )
    if arr.dtype == np.uint8:
        pixels = arr
    elif arr.dtype == np.bool_:
        pixels = arr.astype(np.uint8) * 255
    elif arr.dtype == np.uint16:
        pixels = ((arr.astype(np.uint32) + 128) // 257).astype(np.uint8)
    elif np.issubdtype(arr.dtype, np.floating):
        clean = np.nan_to_num(arr.astype(np.float64), nan=0.0, posinf=1.0, neginf=0.0)
        pixels = np.rint(np.clip(clean, 0.0, 1.0) * 255.0).astype(np.uint8)
    else:
        raise NotAnImageError(
            f"{name} is an array of dtype {arr.dtype}; use uint8 (0..255), uint16, bool "
            "or float (0..1), e.g. arr.astype(np.uint8)"
        )
    # Copy so that later writes to the caller's array cannot change the image.
    return Image.fromarray(np.ascontiguousarray(pixels)).copy()
