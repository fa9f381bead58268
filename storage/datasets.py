"""The dataset files the app reads and writes: server paths, uploads, imports, exports.

The app reads datasets from two places only: files under the data folder (the folder of
``config.db``, ``data/`` by default) and uploads. :func:`open_dataset` turns either into
a :class:`DatasetFile`, unpacking a ``.zip`` upload (``pairs.jsonl`` + images) into a
temporary folder under ``<data>/uploads/`` that is removed afterwards; anything else is
refused with a named error. :func:`import_dataset` and :func:`export_store` are the
Data tab's import and export on top of :mod:`storage.exchange`. Bench runs over such
files are recorded by :mod:`spatialreward.bench.runs`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import stat
import tempfile
import time
import uuid
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spatialreward.errors import InputError, StudioError, UnsafePathError

from .pairs import iter_pairs
from .paths import is_live_database, resolve_inside

if TYPE_CHECKING:
    from spatialreward.config import StudioConfig

    from .store import Store

PAIRS_FILE = "pairs.jsonl"
UPLOADS_DIR = "uploads"
MAX_ZIP_BYTES = 512 * 1024**2
"""Largest total size a zip upload may unpack to by default (zip-bomb guard; the app
passes ``StudioConfig.max_zip_bytes``)."""
MAX_ZIP_FILES = 100_000
EXPORT_MAX_AGE_S = 3600
"""Export files older than this are removed when the next export is written."""

def data_root(config: StudioConfig) -> Path:
    """The data folder: the folder of the store's database file."""
    return Path(config.db).resolve().parent


# -- datasets from the server or an upload ----------------------------------------------


@dataclass(frozen=True)
class DatasetFile:
    """A dataset file ready to read, and where its images must be."""

    path: Path
    """The ``.jsonl`` (pair format) or ``.parquet`` file."""
    images_root: Path
    """Every image path of a ``.jsonl`` must resolve inside this folder."""
    label: str
    """What runs and messages call it: ``synth/pairs.jsonl`` or ``upload synth.zip``;
    never an absolute server path."""
    uploaded: bool = False


def resolve_data_path(root: Path, text: str) -> Path:
    """The file (or folder) ``text`` names under the data folder ``root``.

    Relative paths are taken from ``root``; absolute ones must lie inside it; ``..`` and
    symlinks out are refused (:class:`UnsafePathError`)."""
    text = (text or "").strip()
    if not text:
        raise InputError("no dataset path given; type a path under the data folder or upload")
    try:
        return resolve_inside(root, text)
    except UnsafePathError:
        if is_live_database(root / text):
            raise  # inside the folder, but the live store: that message says why
        raise UnsafePathError(
            f"{text!r} is outside the data folder {root.name!r}; the app only reads datasets "
            "under that folder: copy the dataset there, or upload it as a .zip"
        ) from None


def _same_name(a: Path, b: Path) -> bool:
    """True when ``a`` and ``b`` name the same entry of the same folder (folders resolved,
    the last part compared as written: a link to ``b`` is not ``b``)."""
    a, b = Path(os.path.abspath(a)), Path(os.path.abspath(b))
    return a.name == b.name and a.parent.resolve() == b.parent.resolve()


def _relative_label(root: Path, path: Path) -> str:
    return path.relative_to(root).as_posix() if path.is_relative_to(root) else path.name


def _safe_name(name: str) -> str:
    """A file-name stem that is safe as a folder name.

    >>> _safe_name("my data (v2).zip"), _safe_name("../..")
    ('my_data_v2_', 'upload')
    """
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name).stem).strip(".")[:64]
    return stem if stem and set(stem) != {"_"} else "upload"


def extract_zip(archive: Path, dest: Path, max_bytes: int = MAX_ZIP_BYTES,
                max_files: int = MAX_ZIP_FILES, *, pairs_first: bool = False) -> None:
    """Unpack ``archive`` into ``dest``: every member must land inside ``dest`` (no
    absolute paths, ``..`` or symlinks) and the total stays under ``max_bytes`` (counted
    while writing, not trusted from the headers) and ``max_files``.

    ``pairs_first``: when the zip holds a ``pairs.jsonl`` (at the top or one folder
    down), it is unpacked and read first; a malformed file, or one that names images the
    zip does not hold, stops before any image is written, and only the images it names
    are unpacked."""
    name = archive.name
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as err:
        raise InputError(f"{name} is not a readable zip file ({err}); zip the folder that "
                         "holds pairs.jsonl and images/ and upload that") from None
    with zf:
        members = [i for i in zf.infolist() if not i.is_dir()]
        if len(members) > max_files:
            raise InputError(f"{name} holds {len(members)} files, more than the {max_files} "
                             "accepted; split the dataset")
        declared = sum(i.file_size for i in members)
        if declared > max_bytes:
            raise InputError(f"{name} unpacks to {declared:,} bytes, more than the "
                             f"{max_bytes:,} accepted; split the dataset")
        targets = {info.filename: _member_target(name, dest, info) for info in members}
        budget = [max_bytes]
        pairs = _pairs_member(members) if pairs_first else None
        if pairs is not None:
            _unpack(zf, name, pairs, targets[pairs.filename], budget)
            needed = _named_images(targets[pairs.filename])
            missing = sorted(needed - set(targets.values()))
            if missing:
                shown = missing[0].relative_to(dest).as_posix() if missing[0].is_relative_to(
                    dest) else missing[0].name
                raise InputError(f"{name}: {PAIRS_FILE} names {len(missing)} image(s) the zip "
                                 f"does not hold (e.g. {shown!r}); zip the images with it")
            members = [i for i in members if targets[i.filename] in needed]
        for info in members:
            _unpack(zf, name, info, targets[info.filename], budget)


def _member_target(name: str, dest: Path, info: zipfile.ZipInfo) -> Path:
    if stat.S_ISLNK(info.external_attr >> 16):
        raise UnsafePathError(f"{name}: {info.filename!r} is a symbolic link; "
                              "zip the files themselves")
    try:
        return resolve_inside(dest, info.filename)
    except UnsafePathError:
        raise UnsafePathError(f"{name}: {info.filename!r} points outside the archive's "
                              "folder; zip paths must be relative") from None


def _pairs_member(members: Sequence[zipfile.ZipInfo]) -> zipfile.ZipInfo | None:
    """The zip's ``pairs.jsonl``: at the top, else the only one a folder down."""
    parts = {i.filename: Path(i.filename).parts for i in members}
    top = [i for i in members if parts[i.filename] == (PAIRS_FILE,)]
    below = [i for i in members if len(parts[i.filename]) == 2
             and parts[i.filename][1] == PAIRS_FILE and parts[i.filename][0] != "__MACOSX"]
    found = top or below
    return found[0] if len(found) == 1 else None  # several: find_pairs says so


def _named_images(jsonl: Path) -> set[Path]:
    """Every image path a pair-format file names (resolved); raises on a malformed file."""
    return {p for item in iter_pairs(jsonl) for p in (item.source, *item.candidates)}


def _unpack(zf: zipfile.ZipFile, name: str, info: zipfile.ZipInfo, target: Path,
            budget: list[int]) -> None:
    """Write one member, charging its real size to ``budget[0]`` (bytes left)."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with zf.open(info) as src, target.open("wb") as out:
            while chunk := src.read(1 << 20):
                budget[0] -= len(chunk)
                if budget[0] < 0:
                    raise InputError(f"{name} unpacks to more than the accepted size; split "
                                     "the dataset")
                out.write(chunk)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError,
            RuntimeError, OSError) as err:
        # corrupt, unsupported compression, encrypted, a file where a folder goes
        raise InputError(f"{name}: cannot unpack {info.filename!r} ({err})") from None


BENCH_SUFFIXES = (".jsonl", ".parquet", ".arrow", ".json", ".db", ".dir")
"""What the Bench tab reads: every format of :mod:`spatialreward.bench.formats` (``.dir``:
a folder of Parquet/Arrow files or a saved HF dataset; ``.db``: a store's human votes)."""


def find_pairs(folder: Path) -> Path:
    """``folder/pairs.jsonl``, or the one ``folder/*/pairs.jsonl`` (a zipped folder)."""
    top = folder / PAIRS_FILE
    if top.is_file():
        return top
    found = [p for p in sorted(folder.glob(f"*/{PAIRS_FILE}"))
             if p.is_file() and p.parent.name != "__MACOSX"]
    if len(found) == 1:
        return found[0]
    if not found:
        raise InputError(f"the zip holds no {PAIRS_FILE}; put pairs.jsonl and its images/ "
                         "at the top of the zip")
    raise InputError(f"the zip holds {len(found)} {PAIRS_FILE} files; upload one dataset "
                     "per zip")


@contextlib.contextmanager
def open_dataset(root: Path, *, path: str | None = None,
                 upload: str | os.PathLike[str] | None = None,
                 suffixes: Sequence[str] = (".jsonl",),
                 max_bytes: int = MAX_ZIP_BYTES,
                 store_file: Path | None = None) -> Iterator[DatasetFile]:
    """The dataset a server ``path`` (under ``root``) or an ``upload`` names.

    A folder means its ``pairs.jsonl``; a ``.zip`` is unpacked under ``root/uploads`` for
    the duration of the ``with`` block. ``suffixes``: the file kinds the caller reads
    (``.jsonl``, ``.parquet``). ``store_file``: the live store's database, which ``path``
    may name (the human bench reads it through the open store, never as a file); any
    other way to reach the live store's files is refused."""
    if upload and (path or "").strip():
        raise InputError("give either a server path or an upload, not both; clear one")
    if upload:
        file = Path(upload)
        label = f"upload {file.name}"
        uploaded = True
    elif store_file is not None and _same_name(root / (path or "").strip(), store_file):
        yield DatasetFile(store_file.resolve(), root, store_file.name)
        return
    else:
        file = resolve_data_path(root, path or "")
        label = _relative_label(root, file)
        uploaded = False
        if file.is_dir() and (file / PAIRS_FILE).is_file():
            file = file / PAIRS_FILE
            label = _relative_label(root, file)
        elif file.is_dir() and ".dir" in suffixes:
            # A benchmark folder (Parquet splits, a saved HF dataset): the loader reads it.
            yield DatasetFile(file, root, label, uploaded)
            return
    if not file.is_file():
        raise InputError(f"no dataset file at {label}; give a pair-format .jsonl, a folder "
                         "holding pairs.jsonl, or a .zip of one")
    suffix = file.suffix.lower()
    if suffix == ".zip":
        uploads = root / UPLOADS_DIR
        uploads.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix="unzip-", dir=uploads))
        try:
            # Named after the zip: a plain pair file's items take the folder's name as
            # their origin dataset.
            dest = scratch / _safe_name(file.name)
            extract_zip(file, dest, max_bytes=max_bytes, pairs_first=True)
            if ".dir" in suffixes and not any(dest.rglob(PAIRS_FILE)):
                # Not a pair-format zip: a benchmark folder the loaders recognise.
                yield DatasetFile(dest, dest.resolve(), label, uploaded)
            else:
                jsonl = find_pairs(dest)
                yield DatasetFile(jsonl, jsonl.parent.resolve(), label, uploaded)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return
    if suffix not in suffixes:
        kinds = ", ".join([*suffixes, ".zip"])
        raise InputError(f"{label} is not a dataset file this action reads ({kinds})")
    # Images may be anywhere in the data folder; an uploaded .jsonl carries none, so its
    # image paths must be absolute paths into the data folder.
    yield DatasetFile(file, root, label, uploaded)


def check_images(dataset: DatasetFile, limit: int | None = None) -> int:
    """Refuse a pair-format file whose image paths leave ``dataset.images_root`` (checks
    the first ``limit`` items); returns the number of items checked."""
    n = 0
    for item in islice(iter_pairs(dataset.path), limit):
        n += 1
        for p in (item.source, *item.candidates):
            if not p.resolve().is_relative_to(dataset.images_root):
                hint = ("an uploaded .jsonl holds no images: upload a .zip of pairs.jsonl "
                        "and its images/ instead" if dataset.uploaded and
                        dataset.path.suffix == ".jsonl" else
                        "image paths must stay inside the dataset's folder")
                raise UnsafePathError(f"{dataset.label}: item {item.id!r} names the image "
                                      f"{p.name!r} outside the data the app may read; {hint}")
    return n


# -- the Data tab: import and export ----------------------------------------------------


def import_dataset(store: Store, root: Path, *, path: str | None = None,
                   upload: str | os.PathLike[str] | None = None, human_judgments: bool = True,
                   max_bytes: int = MAX_ZIP_BYTES) -> dict[str, Any]:
    """Import a ``.parquet``, a pair-format ``.jsonl`` (or folder) or a ``.zip`` of one,
    from the data folder or an upload, all or nothing; returns the import's counts and
    the dataset's label. ``human_judgments`` False drops the file's human judgments
    (counted as ``dropped_human_judgments``) and creates no annotators."""
    from .exchange import import_pairs, import_parquet

    if not upload and not (path or "").strip():
        raise InputError("nothing to import: upload a .parquet or .zip, or type a path "
                         "under the data folder")
    with open_dataset(root, path=path, upload=upload, suffixes=(".jsonl", ".parquet"),
                      max_bytes=max_bytes) as dataset:
        if dataset.path.suffix.lower() == ".parquet":
            counts = import_parquet(store, dataset.path, human_judgments=human_judgments)
        else:
            check_images(dataset)
            counts = import_pairs(store, dataset.path, human_judgments=human_judgments)
    return {"dataset": dataset.label, **counts}


def export_store(store: Store, fmt: str, dest: Path) -> tuple[Path, int]:
    """Write the store as ``fmt`` into ``dest``: ``parquet`` (one HF-layout file) or
    ``jsonl`` (a zip of ``pairs.jsonl`` + ``images/``); returns (file, items)."""
    from .exchange import export_pairs, export_parquet

    fmt = (fmt or "").strip().lower()
    if fmt not in ("parquet", "jsonl"):
        raise InputError(f"export format must be 'parquet' or 'jsonl', got {fmt!r}")
    dest.mkdir(parents=True, exist_ok=True)
    prune(dest, EXPORT_MAX_AGE_S)
    stem = f"studio-{datetime.now(UTC):%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"
    if fmt == "parquet":
        target = dest / f"{stem}.parquet"
        return target, export_parquet(store, target)
    folder = dest / stem
    try:
        n = export_pairs(store, folder)
        target = dest / f"{stem}.zip"
        tmp = dest / f"{stem}.zip.tmp"
        with zipfile.ZipFile(tmp, "w") as zf:
            zf.write(folder / PAIRS_FILE, PAIRS_FILE, compress_type=zipfile.ZIP_DEFLATED)
            for image in sorted((folder / "images").iterdir()):
                # Image bytes are compressed already: store them as they are.
                zf.write(image, f"images/{image.name}", compress_type=zipfile.ZIP_STORED)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        (dest / f"{stem}.zip.tmp").unlink(missing_ok=True)
    return target, n


def prune(folder: Path, max_age_s: float) -> None:
    """Remove ``studio-*`` exports in ``folder`` older than ``max_age_s`` seconds."""
    cutoff = time.time() - max_age_s
    for entry in folder.glob("studio-*"):
        with contextlib.suppress(OSError):
            if entry.stat().st_mtime < cutoff:
                if entry.is_dir():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink()


def export_folder(root: Path) -> Path:
    """Where the app writes exports of the store in ``root`` for download: a folder of its
    own under the system temp folder (gradio serves files from there; it copies them into
    its cache), one per store, readable by this user only (mode 0700), so that two Studios
    never prune each other's exports and other users cannot read them."""
    tag = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:12]
    folder = Path(tempfile.gettempdir()) / f"spatialreward-exports-{os.getuid()}-{tag}"
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
    except FileExistsError:  # a file of that name
        raise StudioError(f"{folder.name} in the temp folder is not a folder; remove it and "
                          "export again") from None
    if folder.is_symlink() or folder.stat().st_uid != os.getuid():
        raise StudioError(f"the export folder {folder.name} belongs to someone else; remove "
                          "it and export again")
    folder.chmod(0o700)
    return folder


__all__ = [
    "BENCH_SUFFIXES", "DatasetFile", "check_images", "data_root", "export_folder",
    "export_store", "extract_zip", "import_dataset", "open_dataset", "resolve_data_path",
]
