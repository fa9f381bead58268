"""Export and import the judgment store: a pair-format folder, or one Parquet file.

Both formats carry everything needed to rebuild a store's items and judgments elsewhere:

- **Pair format** (:func:`export_pairs`): ``out_dir/pairs.jsonl`` in the pair format of
  :mod:`storage.pairs` (``id`` is the item's uid, ``ranking`` and ``regions`` its ground
  truth) plus ``out_dir/images/<sha256>.<ext>``, the original bytes. Any pair-format
  reader (``iter_pairs``) reads it; the keys it does not know are::

      "origin": {"dataset": ..., "file": ..., "id": ...},
      "metadata": {...},
      "human_judgments": [{"id": 1, "annotator": "ana", "annotator_role": "annotator",
                           "kind": "judgment", "ranking": [1, 0], "preferred": 1,
                           "both_bad": false, "scores": {"1": {"overall": 8.0}},
                           "regions": [...], "comment": "", "seconds_spent": 12.5,
                           "supersedes": null, "created_at": "2025-..."}, ...],
      "model_judgments": [{"candidate": 0, "backend": "pixel", "backend_version": "1",
                           "judgment": {...Judgment.to_dict()...}, "latency_ms": 9.1,
                           "created_at": "2025-..."}, ...]

  ``human_judgments`` is the full append-only history of the item, oldest first; ``id`` and
  ``supersedes`` are numbers local to that list (1, 2, ...), not database ids, so an export
  does not depend on the store it came from.
- **Parquet** (:func:`export_parquet`): one file in the Hugging Face ``datasets`` layout,
  ``datasets.load_dataset("parquet", data_files=...)`` decodes ``source`` to a PIL image
  and ``candidates`` to a list of them. The other columns hold the same values as the
  JSONL (JSON strings where they are not plain strings).

Password hashes are never exported (only annotator names and roles): an imported
annotator keeps the role from the file but has no password, so no app login.

Text that is not valid Unicode (a lone surrogate, U+D800..U+DFFF) cannot be written as
UTF-8. The store refuses it, but a store written before that check may hold some (in its
JSON columns); an export replaces each such character with U+FFFD (the replacement
character) instead of failing (:func:`~storage.store.replace_surrogates`).

Imports accept our exports and plain pair-format files (SynthEdit output, no judgments).
They are all or nothing: the whole file is validated first (JSON, paths, images, every
judgment), then written in one transaction; a malformed file raises
:class:`~spatialreward.errors.DataImportError` naming the line or row and leaves the store
as it was. Importing the same file again changes nothing: items are matched by uid, human
judgments by (item, annotator, kind, created_at), model judgments by their cache key.

Annotators: an import never changes a stored annotator. A file that gives an existing
annotator another role than the store's (``annotator_role``) is refused; one without
``annotator_role`` makes no claim. With ``human_judgments=False`` the file's human
judgments are dropped without being checked (counted as ``dropped_human_judgments``) and
no annotator is created: items and model judgments import as usual. The app imports files
from people this way; ``db import`` keeps everything.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import sqlite3
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from sqlite_utils import Database

from spatialreward.errors import (
    DataImportError,
    StoreError,
    StudioError,
    UnknownItemError,
    UnsafePathError,
)
from spatialreward.images import load_image
from spatialreward.judgment import Judgment

from .pairs import PairFormatError, PairItem, item_from_dict, iter_pairs, ranking_to_json
from .store import (
    ROLES,
    Store,
    _preference,
    _ranking,
    _regions,
    _scores,
    _seconds,
    _text,
    check_comment,
    check_item_text,
    image_sha256,
    replace_surrogates,
)

PAIRS_FILE = "pairs.jsonl"
IMAGES_DIR = "images"
KINDS = ("judgment", "retraction")
ROW_GROUP = 64
"""Rows per Parquet row group: export and import hold one group's images at a time."""

_IMAGE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
_STRING_COLUMNS = ("ranking", "dimension", "category", "regions", "origin_dataset",
                   "origin_file", "origin_id", "metadata", "human_judgments", "model_judgments")
_VALUE = {"dtype": "string", "_type": "Value"}
_FEATURES = {"id": _VALUE, "instruction": _VALUE, "source": {"_type": "Image"},
             "candidates": {"feature": {"_type": "Image"}, "_type": "List"},
             **{name: _VALUE for name in _STRING_COLUMNS}}
PARQUET_SCHEMA = pa.schema(
    [("id", pa.string()), ("instruction", pa.string()), ("source", _IMAGE),
     ("candidates", pa.list_(_IMAGE)), *((name, pa.string()) for name in _STRING_COLUMNS)],
    # `datasets` reads its feature types from this key: Image columns decode to PIL.
    metadata={"huggingface": json.dumps({"info": {"features": _FEATURES}})},
)
REQUIRED_COLUMNS = ("id", "instruction", "source", "candidates")


# -- export -----------------------------------------------------------------------------


def export_pairs(store: Store, out_dir: str | os.PathLike[str]) -> int:
    """Write every item with its judgments to ``out_dir/pairs.jsonl`` and the images to
    ``out_dir/images/<sha256>.<ext>``; returns the number of items."""
    out = Path(out_dir)
    (out / IMAGES_DIR).mkdir(parents=True, exist_ok=True)
    names = _ImageNames(store)
    target = out / PAIRS_FILE
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    n = 0
    try:
        with tmp.open("w", encoding="utf-8") as fh:
            for row in _export_rows(store):
                paths = []
                for sha in [row["source"], *row["candidates"]]:
                    file = out / IMAGES_DIR / names[sha]
                    if not file.exists():  # content-addressed: an existing file is this image
                        _write_atomic(file, _image(store, sha))
                    paths.append(f"{IMAGES_DIR}/{names[sha]}")
                row["source"], row["candidates"] = paths[0], paths[1:]
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
                n += 1
        os.replace(tmp, target)  # readers never see half a file
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return n


def export_parquet(store: Store, path: str | os.PathLike[str]) -> int:
    """Write every item with its images and judgments to one Parquet file (Hugging Face
    ``datasets`` layout); returns the number of items."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    names = _ImageNames(store)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    n = 0
    try:
        with pq.ParquetWriter(tmp, PARQUET_SCHEMA) as writer:
            batch: list[dict[str, Any]] = []
            for row in _export_rows(store):
                batch.append(_parquet_row(store, row, names))
                n += 1
                if len(batch) == ROW_GROUP:
                    writer.write_batch(pa.RecordBatch.from_pylist(batch, schema=PARQUET_SCHEMA))
                    batch = []
            if batch:
                writer.write_batch(pa.RecordBatch.from_pylist(batch, schema=PARQUET_SCHEMA))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return n


def _export_rows(store: Store) -> Iterator[dict[str, Any]]:
    """One JSON-ready dict per item, oldest first; images as SHA-256 (the caller names them).
    Lone surrogates in any text become U+FFFD, so that UTF-8 can write every row."""
    for item_id in store.item_ids():
        item = store.item(item_id)
        yield _clean({
            "id": item["uid"],
            "instruction": item["instruction"],
            "source": item["source_sha256"],
            "candidates": item["candidates"],
            "ranking": item["truth_ranking"],
            "dimension": item["dimension"],
            "category": item["category"],
            "regions": item["truth_regions"],
            "origin": {"dataset": item["origin_dataset"], "file": item["origin_file"],
                       "id": item["origin_id"]},
            "metadata": item["metadata"] or {},
            "human_judgments": _export_humans(store, item_id),
            "model_judgments": _export_models(store, item_id),
        })


def _clean(value: Any) -> Any:
    """``value`` with lone surrogates replaced in every string (keys too)."""
    if isinstance(value, str):
        return replace_surrogates(value)
    if isinstance(value, dict):
        return {_clean(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def _export_humans(store: Store, item_id: int) -> list[dict[str, Any]]:
    # Only name and role leave the annotators table: never the password hash.
    rows = store._all(
        "SELECT h.*, a.name AS annotator, a.role AS annotator_role FROM human_judgments h "
        "JOIN annotators a ON a.id = h.annotator_id WHERE h.item_id = ? ORDER BY h.id",
        [item_id])
    ref = {r["id"]: k for k, r in enumerate(rows, 1)}
    return [{
        "id": ref[r["id"]],
        "annotator": r["annotator"],
        "annotator_role": r["annotator_role"],
        "kind": r["kind"],
        "ranking": _loads(r["ranking"]),
        "preferred": r["preferred"],
        "both_bad": bool(r["both_bad"]),
        "scores": _loads(r["scores"]),
        "regions": _loads(r["regions"]),
        "comment": r["comment"],
        "seconds_spent": r["seconds_spent"],
        "supersedes": None if r["supersedes"] is None else ref[r["supersedes"]],
        "created_at": r["created_at"],
    } for r in rows]


def _export_models(store: Store, item_id: int) -> list[dict[str, Any]]:
    rows = store._all(
        "SELECT candidate, backend, backend_version, judgment, latency_ms, created_at "
        "FROM model_judgments WHERE item_id = ? ORDER BY id", [item_id])
    for r in rows:
        r["judgment"] = json.loads(r["judgment"])
    return rows


def _parquet_row(store: Store, row: dict[str, Any], names: _ImageNames) -> dict[str, Any]:
    def image(sha: str) -> dict[str, Any]:
        return {"bytes": _image(store, sha), "path": names[sha]}

    origin = row["origin"]
    return {
        "id": row["id"],
        "instruction": row["instruction"],
        "source": image(row["source"]),
        "candidates": [image(sha) for sha in row["candidates"]],
        "ranking": _dumps(row["ranking"]),
        "dimension": row["dimension"],
        "category": row["category"],
        "regions": _dumps(row["regions"]),
        "origin_dataset": origin["dataset"],
        "origin_file": origin["file"],
        "origin_id": origin["id"],
        "metadata": _dumps(row["metadata"]),
        "human_judgments": _dumps(row["human_judgments"]),
        "model_judgments": _dumps(row["model_judgments"]),
    }


class _ImageNames(dict[str, str]):
    """SHA-256 -> export file name ``<sha256>.<ext>`` (the extension tells the format)."""

    def __init__(self, store: Store) -> None:
        super().__init__()
        self.store = store

    def __missing__(self, sha: str) -> str:
        row = self.store._one("SELECT format FROM images WHERE sha256 = ?", [sha])
        if row is None:
            raise UnknownItemError(f"no image {sha} in the store")
        self[sha] = name = f"{sha}.{row['format'].lower()}"
        return name


def _image(store: Store, sha: str) -> bytes:
    data = store.image_bytes(sha)
    if image_sha256(data) != sha:
        raise StoreError(f"image {sha} does not match its hash, so it cannot be exported; "
                         "the store's image files are damaged (check with `db integrity`)")
    return data


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _dumps(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False)


# -- import: validated records ------------------------------------------------------------


@dataclass(frozen=True)
class _Human:
    ref: int  # the id local to the item's list in the file
    annotator: str
    role: str | None  # None: the file does not say
    kind: str
    supersedes: int | None  # a ref, not a database id
    created_at: str
    fields: tuple[Any, ...]  # ranking, preferred, both_bad, scores, regions, comment, seconds


@dataclass(frozen=True)
class _Model:
    candidate: int
    judgment: Judgment
    latency_ms: float | None
    created_at: str | None


@dataclass(frozen=True)
class _Entry:
    """One item of an import file, fully validated; images by SHA-256 (source first)."""

    where: str
    item: PairItem
    shas: tuple[str, ...]
    origin: tuple[str | None, str | None, str | None]
    metadata: dict[str, Any]
    humans: tuple[_Human, ...]
    models: tuple[_Model, ...]
    dropped: int  # human judgments left out (human_judgments=False)


def import_pairs(store: Store, jsonl_path: str | os.PathLike[str], dataset: str | None = None,
                 *, human_judgments: bool = True) -> dict[str, int]:
    """Import a pair-format file (ours or any other, e.g. SynthEdit's) all or nothing.

    ``dataset`` names the origin dataset of the imported items (default: the file's own
    ``origin``, else the folder's name). Returns counts of new ``items``,
    ``human_judgments`` and ``model_judgments``, of records ``skipped`` because the store
    already held them, and ``dropped_human_judgments``. New annotators get the file's role
    and no password; existing ones are left as they are, and a file that gives one of them
    another role is refused. ``human_judgments=False`` drops the file's human judgments
    (none is written, no annotator is created)."""
    path = Path(jsonl_path)
    default_origin = (path.resolve().parent.name, path.name)
    checked: set[str] = set()
    entries = []
    try:
        for item, lineno in zip(iter_pairs(path), _line_numbers(path), strict=True):
            where = f"{path}:{lineno}"
            try:
                shas = [_sha(p.read_bytes() if p.is_file() else None, checked, p)
                        for p in (item.source, *item.candidates)]
                entries.append(_entry(item, shas, where, dataset, default_origin,
                                      human_judgments))
            except (StudioError, ValueError, TypeError, OSError) as err:
                raise DataImportError(f"{where}: {err}; nothing was imported") from err
    except PairFormatError as err:
        if isinstance(err.__cause__, UnsafePathError):
            raise UnsafePathError(f"{err}; nothing was imported") from err
        raise DataImportError(f"{err}; nothing was imported") from err
    return _import(store, entries, ([e.item.source, *e.item.candidates] for e in entries))


def import_parquet(store: Store, path: str | os.PathLike[str], dataset: str | None = None,
                   *, human_judgments: bool = True) -> dict[str, int]:
    """Import a Parquet file (ours, or any with columns ``id``, ``instruction``, ``source``
    and ``candidates`` holding embedded images) all or nothing; see :func:`import_pairs`."""
    path = Path(path)
    try:
        pfile = pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as err:
        raise DataImportError(f"{path} is not a readable Parquet file ({err}); "
                              "nothing was imported") from err
    columns = pfile.schema_arrow.names
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise DataImportError(
            f"{path} has no column(s) {', '.join(missing)}; an import needs "
            f"{', '.join(REQUIRED_COLUMNS)} (write it with export_parquet); nothing was imported")
    checked: set[str] = set()
    seen: set[str] = set()
    entries = []
    for index, row in enumerate(_parquet_rows(pfile, path)):
        where = f"{path} row {index}"
        try:
            data = _row_images(row)
            shas = [_sha(b, checked, what) for b, what in
                    zip(data, ["source", *(f"candidates[{k}]" for k in range(len(data) - 1))],
                        strict=True)]
            # item_from_dict checks the fields exactly as for a JSONL line; the image "paths"
            # it resolves are placeholders, the bytes come from the row.
            item = item_from_dict(_row_dict(row, columns, len(data) - 1), path.resolve().parent)
            if item.id in seen:
                raise ValueError(f"duplicate id {item.id!r}")
            seen.add(item.id)
            entries.append(_entry(item, shas, where, dataset, (path.stem, path.name),
                                  human_judgments))
        except (StudioError, ValueError, TypeError) as err:
            raise DataImportError(f"{where}: {err}; nothing was imported") from err
    return _import(store, entries, (_row_images(r) for r in _parquet_rows(
        pfile, path, columns=["source", "candidates"])))


def _line_numbers(path: Path) -> Iterator[int]:
    """The numbers of the non-blank lines: ``iter_pairs`` yields one item for each."""
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            if raw.decode("utf-8-sig" if lineno == 1 else "utf-8", errors="replace").strip():
                yield lineno


def _parquet_rows(pfile: pq.ParquetFile, path: Path, columns: list[str] | None = None
                  ) -> Iterator[dict[str, Any]]:
    batches = pfile.iter_batches(batch_size=ROW_GROUP, columns=columns)
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except (OSError, pa.ArrowException) as err:
            raise DataImportError(f"{path} is damaged ({err}); nothing was imported") from err
        yield from batch.to_pylist()


def _row_images(row: dict[str, Any]) -> list[bytes]:
    """[source, *candidates] bytes from Image structs ``{bytes, path}``."""
    candidates = row["candidates"]
    if not isinstance(candidates, list) or not candidates:
        raise ValueError("candidates must be a non-empty list of images")
    return [_struct_bytes(row["source"], "source"),
            *(_struct_bytes(c, f"candidates[{k}]") for k, c in enumerate(candidates))]


def _struct_bytes(value: Any, what: str) -> bytes:
    data = value.get("bytes") if isinstance(value, dict) else value
    if not isinstance(data, bytes):
        raise ValueError(f"{what} holds no embedded image bytes; export with the images "
                         "embedded (datasets' Image feature with embed_storage, or export_parquet)")
    return data


def _row_dict(row: dict[str, Any], columns: Sequence[str], n: int) -> dict[str, Any]:
    """A Parquet row as a pair-format dict (JSON columns decoded)."""
    d: dict[str, Any] = {"id": row["id"], "instruction": row["instruction"],
                         "source": "source", "candidates": [f"candidates/{k}" for k in range(n)]}
    for name in ("ranking", "regions", "metadata", "human_judgments", "model_judgments"):
        if row.get(name) is not None:
            d[name] = _json_column(row[name], name)
    for name in ("dimension", "category"):
        if row.get(name) is not None:
            d[name] = row[name]
    if any(c.startswith("origin_") for c in columns):
        d["origin"] = {k: row.get(f"origin_{k}") for k in ("dataset", "file", "id")}
    for name in columns:  # a foreign file's other columns are kept as metadata
        if name not in REQUIRED_COLUMNS and name not in _STRING_COLUMNS:
            try:
                json.dumps(row[name])
            except (TypeError, ValueError):
                raise ValueError(f"column {name!r} holds {type(row[name]).__name__} values "
                                 "that cannot be kept as JSON metadata; drop the column"
                                 ) from None
            d[name] = row[name]
    return d


def _json_column(text: Any, name: str) -> Any:
    if not isinstance(text, str):
        raise ValueError(f"column {name!r} must hold JSON text, got {type(text).__name__}")
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"column {name!r} is not valid JSON ({err.msg})") from err


def _sha(data: bytes | None, checked: set[str], what: Any) -> str:
    """SHA-256 of an image's bytes, once they decode as an image within the size caps."""
    if data is None:
        raise ValueError(f"image file {what} does not exist; fix the path or copy the image there")
    sha = image_sha256(data)
    if sha not in checked:
        load_image(data, name=str(what))
        checked.add(sha)
    return sha


def _entry(item: PairItem, shas: Sequence[str], where: str, dataset: str | None,
           default_origin: tuple[str, str], keep_humans: bool) -> _Entry:
    if not item.instruction.strip():
        raise ValueError("instruction must not be empty")
    extras = dict(item.metadata)
    origin = extras.pop("origin", None)
    metadata = extras.pop("metadata", None)
    humans = extras.pop("human_judgments", None)
    models = extras.pop("model_judgments", None)
    if origin is None:  # a plain pair-format file
        origin = {"dataset": default_origin[0], "file": default_origin[1], "id": item.id}
    if not isinstance(origin, dict) or not all(
            isinstance(origin.get(k), str | None) for k in ("dataset", "file", "id")):
        raise ValueError("origin must be an object of strings {dataset, file, id}")
    if metadata is not None and not isinstance(metadata, dict):
        raise ValueError(f"metadata must be an object, got {type(metadata).__name__}")
    n = len(item.candidates)
    origin = (dataset if dataset is not None else origin.get("dataset"), origin.get("file"),
              origin.get("id"))
    metadata = {**extras, **(metadata or {})}
    # The store's own checks (text, limits) now, before anything is written.
    check_item_text(item.instruction, metadata, uid=item.id, category=item.category,
                    origin_dataset=origin[0], origin_file=origin[1], origin_id=origin[2])
    humans = humans or []
    if not isinstance(humans, list):
        raise ValueError("human_judgments must be a list")
    return _Entry(
        where=where, item=item, shas=tuple(shas), origin=origin, metadata=metadata,
        humans=_check_humans(humans, n) if keep_humans else (),
        models=_check_models(models or [], n), dropped=0 if keep_humans else len(humans))


def _check_humans(values: list[Any], n: int) -> tuple[_Human, ...]:
    refs: dict[int, _Human] = {}
    superseded: set[int] = set()
    for k, h in enumerate(values):
        try:
            ref = _ref(h, k, refs)
            refs[ref] = _check_human(h, ref, n, refs, superseded)
        except (StudioError, ValueError, TypeError) as err:
            raise ValueError(f"human_judgments[{k}]: {err}") from err
    return tuple(refs.values())


def _ref(h: Any, k: int, refs: dict[int, _Human]) -> int:
    if not isinstance(h, dict):
        raise ValueError(f"must be an object, got {type(h).__name__}")
    ref = h.get("id", k + 1)
    if not _is_int(ref) or ref in refs:
        raise ValueError(f"id {ref!r} must be an integer, unique within the item")
    return int(ref)


def _check_human(h: dict[str, Any], ref: int, n: int, refs: dict[int, _Human],
                 superseded: set[int]) -> _Human:
    name = h.get("annotator")
    if not isinstance(name, str) or not name.strip():
        raise ValueError("needs an annotator name")
    name = _text(name, "the annotator name", strip=True)  # length: when created
    role = h.get("annotator_role")
    if role is not None and role not in ROLES:
        raise ValueError(f"annotator_role must be one of {', '.join(ROLES)}, got {role!r}")
    kind = h.get("kind", "judgment")
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    created_at = _time(h.get("created_at"), required=True)
    sup = h.get("supersedes")
    if sup is not None:
        target = refs.get(sup) if _is_int(sup) else None
        if target is None:
            raise ValueError(f"supersedes {sup!r} is not the id of an earlier judgment of "
                             "this item in the file")
        if target.annotator != name:
            raise ValueError(f"supersedes judgment {sup} of {target.annotator!r}; annotators "
                             "can only edit or undo their own judgments")
        if target.kind != "judgment" or sup in superseded:
            raise ValueError(f"judgment {sup} is edited or undone twice")
        superseded.add(sup)
    elif kind == "retraction":
        raise ValueError("a retraction needs supersedes: the id of the judgment it undoes")
    if kind == "retraction":
        fields: tuple[Any, ...] = (None, None, 0, None, None, "", None)
    else:
        ranking, preferred, both_bad = _preference(_preference_of(h, n), n)
        if "preferred" in h and h["preferred"] != preferred:
            raise ValueError(f"preferred {h['preferred']!r} does not match the ranking "
                             f"{ranking_to_json(ranking)} (its best is {preferred!r})")
        fields = (json.dumps(ranking_to_json(ranking)), preferred, int(both_bad),
                  _scores(h.get("scores"), n), _regions(h.get("regions"), n),
                  check_comment(h.get("comment") or ""), _seconds(h.get("seconds_spent")))
    return _Human(ref=ref, annotator=name, role=role, kind=kind,
                  supersedes=None if sup is None else int(sup), created_at=created_at,
                  fields=fields)


def _preference_of(h: dict[str, Any], n: int) -> Any:
    """The preference in Store.add_human_judgment's terms: ``preference`` (hand-written
    files) or the exported ``ranking`` and ``both_bad``."""
    if "preference" in h:
        return h["preference"]
    both_bad = h.get("both_bad", False)
    if not isinstance(both_bad, bool):
        raise ValueError(f"both_bad must be true or false, got {both_bad!r}")
    if both_bad:
        if h.get("ranking") is not None and _ranking(h["ranking"], n) != (tuple(range(n)),):
            raise ValueError("a both_bad judgment ranks all candidates as one tie")
        return "both_bad"
    if h.get("ranking") is None:
        raise ValueError("a judgment needs a ranking (or a preference)")
    return h["ranking"]


def _check_models(values: Any, n: int) -> tuple[_Model, ...]:
    if not isinstance(values, list):
        raise ValueError("model_judgments must be a list")
    out = []
    for k, m in enumerate(values):
        try:
            out.append(_check_model(m, n))
        except (StudioError, ValueError, TypeError) as err:
            raise ValueError(f"model_judgments[{k}]: {err}") from err
    return tuple(out)


def _check_model(m: Any, n: int) -> _Model:
    if not isinstance(m, dict):
        raise ValueError(f"must be an object, got {type(m).__name__}")
    cand: Any = m.get("candidate")
    if not _is_int(cand) or not 0 <= cand < n:
        raise ValueError(f"candidate {cand!r} is not a candidate of this item (0..{n - 1})")
    if not isinstance(m.get("judgment"), dict):
        raise ValueError("needs the judgment object (Judgment.to_dict())")
    judgment = Judgment.from_dict(m["judgment"])
    for key in ("backend", "backend_version"):
        if key in m and m[key] != getattr(judgment, key):
            raise ValueError(f"{key} {m[key]!r} differs from the judgment's "
                             f"{getattr(judgment, key)!r}")
    latency = m.get("latency_ms")
    if latency is not None and (isinstance(latency, bool) or not isinstance(latency, int | float)
                                or not math.isfinite(latency) or latency < 0):
        raise ValueError(f"latency_ms must be a non-negative number, got {latency!r}")
    return _Model(candidate=int(cand), judgment=judgment,
                  latency_ms=None if latency is None else float(latency),
                  created_at=_time(m.get("created_at"), required=False))


def _time(value: Any, required: bool) -> Any:
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise ValueError("needs created_at, an ISO 8601 time (it tells a repeated import "
                         "what is already in the store)")
    try:
        dt.datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"created_at {value!r} is not an ISO 8601 time") from None
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# -- import: writing ------------------------------------------------------------------------


def _import(store: Store, entries: Sequence[_Entry], images: Iterable[Sequence[bytes | Path]]
            ) -> dict[str, int]:
    """Write validated entries in one transaction; ``images``: each entry's image data
    (source first), in entry order, read only while writing."""
    roles = _roles(entries)
    counts = {"items": 0, "human_judgments": 0, "model_judgments": 0, "skipped": 0,
              "dropped_human_judgments": sum(e.dropped for e in entries)}
    orphans: list[Path] = []
    try:
        with store.write() as db:
            # Checks against the store first (nothing written yet), then the writes.
            _check_roles(store, roles)
            items = [_existing_item(store, e) for e in entries]
            plans = [_plan_humans(store, e, i) for e, i in zip(entries, items, strict=True)]
            shas = {s for e in entries for s in e.shas}
            fresh = [s for s in shas if store._one(
                "SELECT 1 AS x FROM images WHERE sha256 = ?", [s]) is None]
            try:
                who = {name: _annotator(store, name, role or "annotator")
                       for name, (role, _) in roles.items()}
                for e, item_id, plan, data in zip(entries, items, plans, images, strict=True):
                    try:
                        _write_entry(store, db, e, item_id, plan, data, who, counts)
                    except (StudioError, sqlite3.Error, OSError) as err:
                        if isinstance(err, DataImportError):
                            raise
                        raise DataImportError(f"{e.where}: {err}; nothing was imported") from err
            except BaseException:
                # Image files are written before their rows; the rows roll back, so
                # remove the files only this import added (read before the rollback).
                orphans = _files(store, fresh)
                raise
    except BaseException:
        for file in orphans:
            file.unlink(missing_ok=True)
        raise
    return counts


def _roles(entries: Sequence[_Entry]) -> dict[str, tuple[str | None, str]]:
    """Annotator -> (the role the file gives, or None; where it first says so)."""
    roles: dict[str, tuple[str | None, str]] = {}
    for e in entries:
        for h in e.humans:
            role, where = roles.get(h.annotator, (None, e.where))
            if role is not None and h.role is not None and h.role != role:
                raise DataImportError(
                    f"{e.where}: annotator {h.annotator!r} has role {h.role!r} here and "
                    f"{role!r} at {where}; give each annotator one role; nothing was imported")
            roles[h.annotator] = (role, where) if role is not None else (h.role, e.where)
    return roles


def _check_roles(store: Store, roles: dict[str, tuple[str | None, str]]) -> None:
    """An import never changes a stored annotator: a file that says otherwise is refused."""
    for name, (role, where) in roles.items():
        row = store._one("SELECT role FROM annotators WHERE name = ?", [name])
        if row is not None and role is not None and row["role"] != role:
            raise DataImportError(
                f"{where}: annotator {name!r} is {row['role']!r} in this store but "
                f"{role!r} in the file; an import never changes an annotator's role: set "
                f"annotator_role to {row['role']!r} or leave it out; nothing was imported")


def _existing_item(store: Store, e: _Entry) -> int | None:
    """The id of the item with this uid, when the store holds it with the same content."""
    try:
        item_id = store.item_by_uid(e.item.id)
    except UnknownItemError:
        return None
    item = store.item(item_id)
    if (item["instruction"], item["source_sha256"], tuple(item["candidates"])) != (
            e.item.instruction.strip(), e.shas[0], e.shas[1:]):
        raise DataImportError(
            f"{e.where}: the store already holds an item {e.item.id!r} with another "
            "instruction or other images; give this item another id; nothing was imported")
    return item_id


def _plan_humans(store: Store, e: _Entry, item_id: int | None) -> list[int | None]:
    """Per human judgment of ``e``: the id of the same row in the store, or None (new)."""
    held: dict[tuple[Any, ...], int] = {}
    superseded: set[int] = set()
    seen: Counter[tuple[str, str, str]] = Counter()
    if item_id is not None:
        for r in store._all(
                "SELECT h.id, a.name, h.kind, h.created_at, h.supersedes FROM human_judgments h "
                "JOIN annotators a ON a.id = h.annotator_id WHERE h.item_id = ? ORDER BY h.id",
                [item_id]):
            key = (r["name"], r["kind"], r["created_at"])
            held[(*key, seen[key])] = r["id"]  # the n-th row with this key: duplicates pair up
            seen[key] += 1
            if r["supersedes"] is not None:
                superseded.add(r["supersedes"])
    seen.clear()
    plan: list[int | None] = []
    by_ref: dict[int, int | None] = {}
    for k, h in enumerate(e.humans):
        key = (h.annotator, h.kind, h.created_at)
        found = held.get((*key, seen[key]))
        seen[key] += 1
        target = None if h.supersedes is None else by_ref[h.supersedes]
        if found is None and target is not None and target in superseded:
            raise DataImportError(
                f"{e.where}: human_judgments[{k}] edits or undoes judgment {h.supersedes}, "
                "which the store holds already edited or undone in another way; the histories "
                "diverged, so import into another store; nothing was imported")
        by_ref[h.ref] = found
        plan.append(found)
    return plan


def _annotator(store: Store, name: str, role: str) -> int:
    """The annotator's id; a new one gets the file's role and no password."""
    row = store._one("SELECT id FROM annotators WHERE name = ?", [name])
    return int(row["id"]) if row is not None else store.add_annotator(name, role)


def _write_entry(store: Store, db: Database, e: _Entry, item_id: int | None,
                 plan: Sequence[int | None], data: Sequence[bytes | Path],
                 who: dict[str, int], counts: dict[str, int]) -> None:
    if item_id is None:
        images = [d.read_bytes() if isinstance(d, Path) else d for d in data]
        if tuple(image_sha256(b) for b in images) != e.shas:
            raise DataImportError(f"{e.where}: an image changed while importing; import "
                                  "again; nothing was imported")
        item = e.item
        item_id = store.add_item(
            item.instruction, images[0], images[1:], uid=item.id, category=item.category,
            dimension=item.dimension,
            truth_ranking=None if item.ranking is None else ranking_to_json(item.ranking),
            truth_regions=item.regions, origin_dataset=e.origin[0], origin_file=e.origin[1],
            origin_id=e.origin[2], metadata=e.metadata)
        counts["items"] += 1
    else:
        counts["skipped"] += 1
    ids: dict[int, int] = {}
    for h, found in zip(e.humans, plan, strict=True):
        if found is not None:
            ids[h.ref] = found
            counts["skipped"] += 1
            continue
        sup = None if h.supersedes is None else ids[h.supersedes]
        ids[h.ref] = Store._insert_human(
            db, (item_id, who[h.annotator], h.kind, *h.fields, sup, h.created_at))
        counts["human_judgments"] += 1
    for m in e.models:
        j = m.judgment
        if store.cached_judgment(item_id, m.candidate, j.backend, j.backend_version) is not None:
            counts["skipped"] += 1
            continue
        store.add_model_judgment(item_id, m.candidate, j, m.latency_ms, created_at=m.created_at)
        counts["model_judgments"] += 1


def _files(store: Store, shas: Iterable[str]) -> list[Path]:
    """The files of those images whose rows this transaction inserted so far."""
    if store.data_dir is None:
        return []
    out = []
    for sha in shas:
        try:
            out.append(store.image_path(sha))
        except StoreError:
            continue  # not inserted before the failure
    return out
