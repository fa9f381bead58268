"""Local copies of Hugging Face datasets: Parquet and Arrow files, read lazily.

A benchmark on disk is one or more table files: ``*.parquet`` (``to_parquet``, the Hub's
``data/*.parquet``) or ``*.arrow`` (``save_to_disk``: Arrow IPC streams). Image columns
hold Hugging Face's Image struct ``{bytes: binary, path: string}`` (or a list of them);
a thousand rows of them are gigabytes, so :class:`TableFile` reads the small columns up
front and an image only when it is judged (:class:`EmbeddedImage`): a Parquet row group
at a time (the last one stays cached), or straight from a memory-mapped Arrow file.

Image paths found in a struct without bytes must be relative and stay inside the
dataset's folder (:func:`storage.paths.resolve_inside`); nothing is ever downloaded.
:func:`is_sqlite` tells a store database from a table file, for detection and reading.
"""

from __future__ import annotations

import bisect
import os
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from storage.paths import check_not_database, resolve_inside

from ..errors import ImageError, InputError

if TYPE_CHECKING:
    from storage.store import Store

TABLE_SUFFIXES = (".parquet", ".arrow")
SCAN_BATCH = 4096
"""Rows per batch when a column is scanned for list lengths (bounded memory)."""


def is_image_type(t: pa.DataType) -> bool:
    """Whether ``t`` is Hugging Face's Image struct, or a list of them."""
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        t = t.value_type
    return pa.types.is_struct(t) and {"bytes", "path"} <= {f.name for f in t}


class TableFile:
    """One Parquet or Arrow file of a dataset; ``split`` names the part it belongs to."""

    def __init__(self, path: Path, root: Path, split: str | None = None) -> None:
        self.path = path
        self.root = root
        self.split = split
        self.label = _relative(root, path)
        self._groups: list[int] = []  # first row of each Parquet row group
        self._cached: dict[str, tuple[int, pa.Array]] = {}  # column -> (row group, values)
        self._arrow: pa.Table | None = None
        self._parquet: pq.ParquetFile | None = None
        try:
            if path.suffix.lower() == ".parquet":
                self._parquet = pq.ParquetFile(path)
                self.schema = self._parquet.schema_arrow
                meta = self._parquet.metadata
                starts, total = [], 0
                for g in range(meta.num_row_groups):
                    starts.append(total)
                    total += meta.row_group(g).num_rows
                self._groups, self.num_rows = starts, total
            else:
                self._arrow = _read_arrow(path)
                self.schema = self._arrow.schema
                self.num_rows = self._arrow.num_rows
        except (OSError, pa.ArrowException) as err:
            raise InputError(f"{self.label} is not a readable {path.suffix} table ({err})"
                             ) from None

    @property
    def columns(self) -> list[str]:
        return list(self.schema.names)

    def image_columns(self) -> list[str]:
        return [f.name for f in self.schema if is_image_type(f.type)]

    def read(self, columns: Sequence[str]) -> list[dict[str, Any]]:
        """The values of the (small) ``columns``, one dict per row."""
        present = [c for c in columns if c in self.schema.names]
        if self._arrow is not None:
            table = self._arrow.select(present)
        else:
            assert self._parquet is not None
            table = self._parquet.read(columns=present)
        return table.to_pylist()  # type: ignore[no-any-return]

    def shape(self, column: str) -> list[int]:
        """Per row: the length of a list column, or 1/0 for a present/missing value.

        For an image column only its small ``path`` leaf is read (a batch at a time),
        never the image bytes."""
        counts: list[int] = []
        for values in self._scan(column):
            if pa.types.is_list(values.type) or pa.types.is_large_list(values.type):
                n = pc.fill_null(pc.list_value_length(values), 0)
            else:
                n = pc.cast(pc.is_valid(values), pa.int64())
            counts.extend(int(v) for v in n.to_pylist())
        return counts

    def _scan(self, column: str) -> Iterator[pa.Array]:
        if self._arrow is not None:
            yield from self._arrow.column(column).chunks
            return
        assert self._parquet is not None
        # An image struct's small ``path`` leaf carries the same nulls and list lengths
        # (Parquet rebuilds them from its levels), so the image bytes are not read.
        leaves = [c.path for c in (self._parquet.schema.column(i)
                                   for i in range(len(self._parquet.schema)))
                  if c.path.startswith(f"{column}.") and c.path.endswith(".path")]
        for batch in self._parquet.iter_batches(batch_size=SCAN_BATCH if leaves else 64,
                                                columns=leaves[:1] or [column]):
            yield batch.column(0)

    def cell(self, row: int, column: str) -> Any:
        """One value (an image struct, usually) as a Python object."""
        if self._arrow is not None:
            return self._arrow.column(column)[row].as_py()
        assert self._parquet is not None
        group = bisect.bisect_right(self._groups, row) - 1
        cached = self._cached.get(column)
        if cached is None or cached[0] != group:
            # Only the last row group per column is kept: readers go through a shard in
            # row order, so each group is decoded once.
            values = self._parquet.read_row_group(group, columns=[column]).column(0)
            cached = (group, values.combine_chunks())
            self._cached[column] = cached
        return cached[1][row - self._groups[group]].as_py()


def _read_arrow(path: Path) -> pa.Table:
    source = pa.memory_map(str(path))
    try:
        return pa.ipc.open_stream(source).read_all()  # save_to_disk writes streams
    except pa.ArrowInvalid:
        return pa.ipc.open_file(source).read_all()


def _relative(root: Path, path: Path) -> str:
    try:
        return path.relative_to(root).as_posix() or path.name
    except ValueError:
        return path.name


def find_tables(path: Path) -> list[TableFile]:
    """The table files a path names: the file itself, or every Parquet file under a
    folder (else every Arrow file), sorted; HF's ``cache-*.arrow`` files are skipped."""
    if path.is_file():
        check_not_database(path)
        return [TableFile(path, path.parent, None)]
    for suffix in TABLE_SUFFIXES:
        files = sorted(p for p in path.rglob(f"*{suffix}") if p.is_file() and not any(
            part.startswith(".") for part in p.relative_to(path).parts)
            and not p.name.startswith("cache-"))
        for p in files:  # a link named *.parquet may point at the live store
            check_not_database(p, p.relative_to(path).as_posix())
        if files:
            return [TableFile(p, path, split_name(p.relative_to(path))) for p in files]
    return []


def is_sqlite(path: Path) -> bool:
    """True when ``path`` is an SQLite database.

    Asked through SQLite itself (read-only), never with a plain ``open()``: if ``path`` is
    the live store of this process, closing a plain descriptor of it would drop the
    store's locks (see :mod:`storage.paths`); SQLite's own connections share them."""
    try:
        if path.stat().st_size < 100:  # shorter than SQLite's header: not a database
            return False
    except OSError:
        return False
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error:
        return False
    try:
        conn.execute("PRAGMA schema_version").fetchone()
        return True
    except sqlite3.Error:  # "file is not a database", unreadable
        return False
    finally:
        conn.close()


def split_name(relative: Path) -> str | None:
    """The split a file belongs to, from its place in the dataset folder.

    >>> split_name(Path("3pair/train-00000-of-00001.parquet"))
    '3pair'
    >>> split_name(Path("data/4pair-00000-of-00001.parquet"))
    '4pair'
    >>> split_name(Path("data-00000-of-00001.arrow")) is None
    True
    """
    folders = [p for p in relative.parts[:-1] if p not in ("data", "default")]
    if folders:
        return folders[-1]
    stem = relative.name.split("-")[0].split(".")[0]
    return None if stem in ("data", "train", "test", "") else stem


# -- image references ---------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class EmbeddedImage:
    """An image in a table cell (``index``: position in a list column)."""

    table: TableFile
    row: int
    column: str
    index: int | None = None

    def read(self) -> bytes:
        value = self.table.cell(self.row, self.column)
        if self.index is not None:
            if not isinstance(value, list) or self.index >= len(value):
                raise ImageError(f"{self}: the list holds no image {self.index}")
            value = value[self.index]
        return image_bytes(value, self.table.root, str(self))

    def __str__(self) -> str:
        where = self.column if self.index is None else f"{self.column}[{self.index}]"
        return f"{self.table.label} row {self.row} {where}"


@dataclass(frozen=True, eq=False)
class StoredImage:
    """An image in the judgment store, by SHA-256."""

    store: Store
    sha256: str

    def read(self) -> bytes:
        return self.store.image_bytes(self.sha256)

    def __str__(self) -> str:
        return f"sha256:{self.sha256}"


ImageRef = Path | EmbeddedImage | StoredImage
"""Where one image comes from: a file, a table cell, or the store."""


def ref_bytes(ref: ImageRef) -> bytes:
    """The encoded bytes ``ref`` points to (a file's, a table cell's, a store image's)."""
    return ref.read_bytes() if isinstance(ref, Path) else ref.read()


def image_input(ref: ImageRef) -> Path | bytes:
    """What :meth:`Services.judge` takes for ``ref``: a file as its path (so errors name
    it), anything else as its bytes."""
    return ref if isinstance(ref, Path) else ref.read()


def image_bytes(value: Any, root: Path, what: str) -> bytes:
    """The encoded bytes of an Image cell: ``{bytes, path}``, raw bytes, or a path
    relative to the dataset folder ``root``."""
    data, path = None, None
    if isinstance(value, dict):
        data, path = value.get("bytes"), value.get("path")
    elif isinstance(value, (bytes, bytearray)):
        data = bytes(value)
    elif isinstance(value, str):
        path = value
    if data:
        return bytes(data)
    if not path:
        raise ImageError(f"{what} holds no image (empty cell)")
    if os.path.isabs(path):
        raise ImageError(f"{what} points to {path!r} outside the dataset; save the dataset "
                         "with its images embedded (push_to_hub or to_parquet embed them)")
    file = resolve_inside(root, path)
    try:
        return file.read_bytes()
    except OSError as err:
        raise ImageError(f"{what}: image file {path!r} cannot be read "
                         f"({err.strerror or err})") from None
