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
ends need. The types (:data:`FORMATS`, :class:`BenchItem`, :class:`Benchmark`) live in
:mod:`.types` and are importable from here too.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING

from storage.pairs import iter_pairs
from storage.paths import check_not_database

from ..errors import BenchFormatError
from . import loaders
from .identity import duplicates
from .json_layouts import (
    editscore_jsonl,
    load_editscore_jsonl,
    load_merbench_json,
    merbench_files,
)
from .tables import TableFile, find_tables, is_sqlite
from .types import FORMATS, TABLE_FORMATS, BenchItem, Benchmark, Box, Format

if TYPE_CHECKING:
    from storage.store import Store


# -- detection -----------------------------------------------------------------------------


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
    if path.exists() and editscore_jsonl(path) is not None:
        return "editscore"
    if path.exists() and merbench_files(path) is not None:
        return "merbench"
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
                   edits: str | Path | None = None, live: Store | None = None,
                   allow_absolute_paths: bool = False) -> Benchmark:
    """Read the first ``limit`` items (all when None) of the benchmark at ``path``.

    ``allow_absolute_paths``: the JSON layouts of :mod:`.json_layouts` may name images by
    absolute path (read as given, with a warning); refused by default.

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
    if fmt == "store":
        return loaders.load_store(path, limit, live)
    if fmt == "editscore" and path.exists() and (jsonl := editscore_jsonl(path)) is not None:
        items, notes = load_editscore_jsonl(jsonl, limit, allow_absolute_paths)
        return _checked(Benchmark(fmt, path, items, notes=notes))
    if fmt == "merbench" and path.exists() and (files := merbench_files(path)) is not None:
        items, notes = load_merbench_json(files, limit, allow_absolute_paths)
        return _checked(Benchmark(fmt, path, items, notes=notes))
    if fmt == "pairs" and (jsonl := _pairs_jsonl(path)) is not None:
        items = [BenchItem.from_pair(p) for p in islice(iter_pairs(jsonl), limit)]
        return _checked(Benchmark(fmt, path, items))
    if not path.exists():
        raise BenchFormatError(f"no dataset at {path}; give a local file or folder "
                               "(benchmarks are never downloaded)")
    if fmt == "mmrb2" and (built := _mmrb2_json(path)) is not None:
        return _checked(Benchmark(fmt, path, loaders.load_mmrb2_json(built, limit)))
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
    bench.items = loader(loaders.rows(tables, fmt, limit), bench, Path(edits) if edits else None)
    return _checked(bench)


def _checked(bench: Benchmark) -> Benchmark:
    """Repeated ids reported (identical or conflicting, ``notes.duplicates``) and renamed
    ``id#2``, ``id#3`` so that results match by id."""
    report = duplicates(bench.items)
    if report is not None:
        bench.notes["duplicates"] = report
    bench.items = loaders.unique_ids(bench.items)
    return bench


def load_prompts(path: str | Path, *, limit: int | None = None) -> list[BenchItem]:
    """GEdit-Bench as a prompt set for editing models: items with a source image and an
    instruction, no candidates (``metadata``: task_type, language, key)."""
    return open_benchmark(path, "gedit", limit=limit).items


__all__ = ["FORMATS", "TABLE_FORMATS", "BenchFormatError", "BenchItem", "Benchmark", "Box",
           "Format", "detect_format", "is_sqlite", "load_items", "load_prompts",
           "open_benchmark"]
