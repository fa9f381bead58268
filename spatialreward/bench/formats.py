"""Benchmark formats: find which one a local copy is, and read it into :class:`BenchItem`.

Every loader reads a local copy (a Parquet or Arrow file or folder, a saved HF dataset, a
JSON or JSONL file, a store database) and never downloads anything. The formats (column
names from ``PROTOCOL.md``; ``docs/benchmarks.md`` has the details):

- ``editscore``: EditScore's EditReward-Bench; one row per (pair, dimension), the first of
  ``output_images`` is the one people preferred.
- ``tiger``: TIGER-Lab's EditReward-Bench (``2pair/``, ``3pair/``, ``4pair/``); one row
  per comparison, ``ranking`` like ``A>B``, ``B>A``, ``A=B`` over letter-named candidates.
- ``merbench``: MER-Bench (MultiEditReward-Bench); ``edited_images`` best first.
- ``mmrb2``: Multimodal RewardBench 2's edit task, as the HF table or its built
  ``edit.json`` (``{"pairs": [...]}`` with image paths beside it).
- ``gedit``: GEdit-Bench, a prompt set for editing models; with ``edits`` (a folder of a
  model's outputs, ``<task_type>/<language>/<key>.png``) each output is judged.
- ``pairs``: our pair JSONL (:mod:`storage.pairs`) or our Parquet export.
- ``store``: the store's items with a human majority vote (the human-judgment bench).

:func:`detect_format` names the format of a path (or raises :class:`BenchFormatError`
listing the columns it found and the ones each format needs); :func:`open_benchmark` reads
it with the format's reader in :mod:`.loaders`; :func:`load_items` is the one call front
ends need.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

from storage.pairs import PairItem, Ranking, iter_pairs
from storage.paths import check_not_database

from ..errors import BenchFormatError
from .tables import ImageRef, TableFile, find_tables

if TYPE_CHECKING:
    from storage.store import Store

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class Format:
    name: str
    title: str
    needs: tuple[str, ...]
    """Columns a table must have (or, for file formats, what the file must be)."""
    by: tuple[str, ...] = ()
    """Metadata keys every run of this format is broken down by."""


FORMATS: dict[str, Format] = {f.name: f for f in (
    Format("editscore", "EditReward-Bench (EditScore)",
           ("key", "instruction", "task_type", "dimension", "input_image", "output_images"),
           ("dimension",)),
    Format("tiger", "EditReward-Bench (TIGER-Lab, 2/3/4-pair)",
           ("id", "instruction", "source_image", "candidate_1", "candidate_2", "ranking")),
    Format("merbench", "MER-Bench (MultiEditReward-Bench)",
           ("pair_id", "label", "instruction", "original_image", "edited_images"), ("k",)),
    Format("mmrb2", "MMRB2 edit task (HF columns, or the built edit.json)",
           ("pair_id", "prompt_text", "prompt_images", "response_a_images",
            "response_b_images", "chosen")),
    Format("gedit", "GEdit-Bench (prompt set; --edits judges a model's outputs)",
           ("task_type", "key", "instruction", "instruction_language", "input_image"),
           ("language",)),
    Format("pairs", "our pair format (.jsonl) or Parquet export",
           ("id", "instruction", "source", "candidates")),
    Format("store", "the store's items with human votes (a studio .db file)",
           ("a SQLite store file",)),
)}
TABLE_FORMATS = ("editscore", "tiger", "merbench", "mmrb2", "gedit", "pairs")
"""Detection order for table files (their required columns do not overlap)."""


@dataclass(frozen=True)
class BenchItem:
    """One benchmark item in the common form (the fields of :class:`PairItem`, with
    images that may live in a table or the store, and ``store_item`` for store items)."""

    id: str
    instruction: str
    source: ImageRef
    candidates: tuple[ImageRef, ...]
    ranking: Ranking | None = None
    dimension: str = "overall"
    category: str | None = None
    regions: tuple[Box, ...] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    store_item: int | None = None

    @classmethod
    def from_pair(cls, item: PairItem) -> BenchItem:
        return cls(item.id, item.instruction, item.source, item.candidates, item.ranking,
                   item.dimension, item.category, item.regions, dict(item.metadata))


@dataclass
class Benchmark:
    """A dataset read from disk: its format, items, and what was left out and why."""

    format: str
    path: Path
    items: list[BenchItem]
    store: Store | None = None
    notes: dict[str, Any] = field(default_factory=dict)
    owns_store: bool = False
    """True when reading the benchmark opened ``store`` (a store file that is not the
    caller's live store): :meth:`close` closes it."""

    @property
    def by(self) -> tuple[str, ...]:
        return FORMATS[self.format].by

    def close(self) -> None:
        """Close what reading opened (a store database); the caller's live store stays open."""
        if self.owns_store and self.store is not None:
            self.store.close()
            self.store = None

    def __enter__(self) -> Benchmark:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- detection -----------------------------------------------------------------------------


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


def _mmrb2_json(path: Path) -> Path | None:
    """The MMRB2 built JSON a path names (``edit.json`` in a folder), if it is one."""
    file = path / "edit.json" if path.is_dir() else path
    if file.suffix.lower() != ".json" or not file.is_file():
        return None
    check_not_database(file)
    with file.open("rb") as fh:
        head = fh.read(4096).decode("utf-8", "replace")
    return file if re.search(r'"pairs"\s*:', head) and "response_a" in head else None


def _pairs_jsonl(path: Path) -> Path | None:
    """The pair-format file a path names: itself (``*.jsonl``; :func:`iter_pairs` says
    so if it is missing) or a folder's ``pairs.jsonl``."""
    if path.is_dir():
        path = path / "pairs.jsonl"
        return path if path.is_file() else None
    return path if path.suffix.lower() == ".jsonl" else None


def _no_match(path: Path, columns: Sequence[str]) -> BenchFormatError:
    needs = "; ".join(f"{f.name} ({f.title}) needs {', '.join(f.needs)}"
                      for f in FORMATS.values() if f.name in TABLE_FORMATS)
    return BenchFormatError(
        f"{path} matches no benchmark format. Its columns: {', '.join(columns) or '(none)'}. "
        f"{needs}. Rename the columns, or name the format with --format")


def _table_format(path: Path, tables: list[TableFile]) -> str:
    columns = tables[0].columns
    for name in TABLE_FORMATS:
        if set(FORMATS[name].needs) <= set(columns):
            return name
    raise _no_match(path, columns)


def detect_format(path: str | Path) -> str:
    """The name of the format ``path`` is in (see :data:`FORMATS`)."""
    path = Path(path)
    if _pairs_jsonl(path) is not None:
        return "pairs"
    if not path.exists():
        raise BenchFormatError(f"no dataset at {path}; give a local file or folder "
                               "(benchmarks are never downloaded)")
    if _mmrb2_json(path) is not None:
        return "mmrb2"
    if path.is_file() and is_sqlite(path):
        return "store"
    if path.is_file() and path.suffix.lower() not in (".parquet", ".arrow"):
        raise BenchFormatError(
            f"{path} is not a benchmark file this reads: give a .parquet or .arrow table (or "
            "a folder of them, or a saved HF dataset), a pair-format .jsonl, MMRB2's "
            "edit.json, or a studio .db")
    tables = find_tables(path)
    if not tables:
        raise BenchFormatError(f"{path} holds no .parquet or .arrow files, pairs.jsonl or "
                               "edit.json; point --dataset at the benchmark's local copy")
    return _table_format(path, tables)


# -- reading -------------------------------------------------------------------------------


def load_items(path: str | Path, fmt: str | None = None, *, limit: int | None = None,
               edits: str | Path | None = None) -> list[BenchItem]:
    """The items of the benchmark at ``path`` in the common form (what the app's Bench tab
    and scripts call); ``fmt`` None detects the format."""
    with open_benchmark(path, fmt, limit=limit, edits=edits) as bench:
        return bench.items


def open_benchmark(path: str | Path, fmt: str | None = None, *, limit: int | None = None,
                   edits: str | Path | None = None, live: Store | None = None) -> Benchmark:
    """Read the first ``limit`` items (all when None) of the benchmark at ``path``.

    ``live``: the caller's open store; when ``path`` is that store's file, the human
    bench reads it through ``live`` instead of opening the file a second time. Close the
    result (or use it as a context manager) when done: a store it opened is closed."""
    path = Path(path)
    if fmt is None or fmt == "auto":
        fmt = detect_format(path)
    if fmt not in FORMATS:
        raise BenchFormatError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    if edits is not None and fmt != "gedit":
        raise BenchFormatError("--edits is for GEdit-Bench (a prompt set); other formats "
                               "carry their candidates")
    from . import loaders  # the per-format readers (they import this module's types)

    if fmt == "store":
        return loaders.load_store(path, limit, live)
    if fmt == "pairs" and (jsonl := _pairs_jsonl(path)) is not None:
        items = [BenchItem.from_pair(p) for p in islice(iter_pairs(jsonl), limit)]
        return Benchmark(fmt, path, items)
    if not path.exists():
        raise BenchFormatError(f"no dataset at {path}; give a local file or folder "
                               "(benchmarks are never downloaded)")
    if fmt == "mmrb2" and (built := _mmrb2_json(path)) is not None:
        return Benchmark(fmt, path, loaders.load_mmrb2_json(built, limit))
    tables = [] if path.suffix.lower() in (".json", ".jsonl") else find_tables(path)
    if not tables:
        raise BenchFormatError(f"{path} holds no .parquet or .arrow table for format {fmt!r}")
    missing = [c for c in FORMATS[fmt].needs if c not in tables[0].columns]
    if missing:
        raise BenchFormatError(
            f"{path} is not in format {fmt!r}: it lacks column(s) {', '.join(missing)} "
            f"(it has {', '.join(tables[0].columns)})")
    bench = Benchmark(fmt, path, [])
    loader = loaders.TABLE_LOADERS[fmt]
    bench.items = loaders.unique_ids(loader(loaders.rows(tables, fmt, limit), bench,
                                            Path(edits) if edits else None))
    return bench


def load_prompts(path: str | Path, *, limit: int | None = None) -> list[BenchItem]:
    """GEdit-Bench as a prompt set for editing models: items with a source image and an
    instruction, no candidates (``metadata``: task_type, language, key)."""
    return open_benchmark(path, "gedit", limit=limit).items


__all__ = ["FORMATS", "BenchFormatError", "BenchItem", "Benchmark", "detect_format",
           "load_items", "load_prompts", "open_benchmark"]
