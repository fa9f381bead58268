"""Read the pickled requests of the official reward clients without running their code.

EditScore's OmniGen2-RL trainer and the SpatialReward repository talk to their reward
server with ``pickle.dumps(dict)`` bodies. Unpickling runs whatever callable the bytes
name, so a server that calls ``pickle.loads`` on a request runs the sender's code. This
module decodes those requests with a restricted unpickler instead:

- containers, numbers, strings, bytes, ``None`` and booleans are pickle's own opcodes and
  need no global; of the globals only ``set``, ``frozenset`` and ``bytearray`` (from
  ``builtins``) are admitted;
- a PIL image (``PIL.Image.Image`` or a plugin's ``...ImageFile``) is not rebuilt by PIL:
  its pickled state (mode, size, palette, raw pixel bytes) is taken as data, checked
  (known mode, size within ``max_pixels``, exactly the bytes that size needs) and turned
  into a fresh image with ``Image.frombytes``; the image's ``info`` is dropped;
- every other global (``os.system``, ``builtins.eval``, ``subprocess.Popen``, ...) and
  every persistent id is refused with :class:`UnsafePickleError` when the opcode that
  names it is read, before anything could call it.
"""

from __future__ import annotations

import io
import pickle
import re
from typing import Any

from PIL import Image

from .errors import InputError

SAFE_BUILTINS = frozenset({"set", "frozenset", "bytearray"})
MODES = {"1": 1 / 8, "L": 1, "P": 1, "RGB": 3, "RGBA": 4, "LA": 2, "I;16": 2, "I": 4, "F": 4}
"""Image modes admitted, with bytes per pixel (``1`` packs 8 pixels per byte, per row)."""
_PIL_CLASS = re.compile(r"^(Image|[A-Za-z0-9]+ImageFile)$")
_PIL_MODULE = re.compile(r"^PIL\.(Image|[A-Za-z0-9]+ImagePlugin)$")


class UnsafePickleError(InputError):
    """A pickled request named something this server does not run."""


class _ImageState:
    """Stands in for a PIL image while unpickling; holds its state as plain data."""

    state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state


class _Restricted(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if module == "builtins" and name in SAFE_BUILTINS:
            return {"set": set, "frozenset": frozenset, "bytearray": bytearray}[name]
        if _PIL_MODULE.match(module) and _PIL_CLASS.match(name):
            return _ImageState
        raise UnsafePickleError(
            f"the request names {module}.{name}, which this server does not run; a reward "
            "request may hold only lists, dicts, numbers, strings, bytes and PIL images")

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError("the request uses a persistent id; not accepted")


def _image(state: Any, max_pixels: int) -> Image.Image:
    if not isinstance(state, (list, tuple)) or len(state) < 5:
        raise UnsafePickleError("a pickled image must carry [info, mode, size, palette, data]")
    _, mode, size, palette, data = state[:5]
    if mode not in MODES:
        raise UnsafePickleError(f"image mode {mode!r} is not accepted ({', '.join(MODES)})")
    if (not isinstance(size, (list, tuple)) or len(size) != 2
            or not all(isinstance(v, int) and v > 0 for v in size)):
        raise UnsafePickleError(f"image size must be two positive integers, got {size!r}")
    width, height = size
    if width * height > max_pixels:
        raise UnsafePickleError(f"a {width}x{height} image is above the {max_pixels:,}-pixel "
                                "limit")
    row = (width + 7) // 8 if mode == "1" else int(width * MODES[mode])
    if not isinstance(data, (bytes, bytearray)) or len(data) != row * height:
        raise UnsafePickleError(f"a {mode} {width}x{height} image needs {row * height} bytes "
                                f"of pixels")
    image = Image.frombytes(mode, (width, height), bytes(data))
    if mode == "P" and palette:
        if not isinstance(palette, (list, tuple)) or len(palette) > 768 or not all(
                isinstance(v, int) and 0 <= v < 256 for v in palette):
            raise UnsafePickleError("an image palette must be up to 768 values 0..255")
        image.putpalette(list(palette))
    return image


def _rebuild(obj: Any, max_pixels: int, depth: int = 0) -> Any:
    if depth > 64:
        raise UnsafePickleError("the request nests more than 64 levels deep")
    if isinstance(obj, _ImageState):
        return _image(obj.state, max_pixels)
    if isinstance(obj, list):
        return [_rebuild(v, max_pixels, depth + 1) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_rebuild(v, max_pixels, depth + 1) for v in obj)
    if isinstance(obj, dict):
        return {_rebuild(k, max_pixels, depth + 1): _rebuild(v, max_pixels, depth + 1)
                for k, v in obj.items()}
    return obj


def safe_loads(data: bytes, *, max_bytes: int = 256 * 1024**2,
               max_pixels: int = 40_000_000) -> Any:
    """The object pickled in ``data``, decoded as the module docstring says.

    >>> import pickle
    >>> from PIL import Image
    >>> request = {"output_image": [Image.new("RGB", (2, 1))]}
    >>> safe_loads(pickle.dumps(request))["output_image"][0].size
    (2, 1)
    >>> import os
    >>> safe_loads(pickle.dumps(os.system))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    spatialreward.safe_pickle.UnsafePickleError: the request names posix.system, ...
    """
    if len(data) > max_bytes:
        raise UnsafePickleError(f"the request is {len(data):,} bytes, above the "
                                f"{max_bytes:,}-byte limit")
    try:
        obj = _Restricted(io.BytesIO(data)).load()
    except UnsafePickleError:
        raise
    except Exception as err:  # truncated or malformed bytes
        raise UnsafePickleError(f"the request is not a readable pickle ({err})") from None
    return _rebuild(obj, max_pixels)
