"""Import into the judgment store, all or nothing: a pair-format file
(:func:`import_pairs`, ours or any other, e.g. SynthEdit's) or a Parquet file
(:func:`import_parquet`). The formats and the rules are described in
:mod:`storage.exchange`.

The whole file is read and checked first (:mod:`storage.records`), then written in one
transaction of the store; image files are written before their rows, so a failed import
removes the files it added (under the write lock, see :func:`_import`).
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from spatialreward.errors import (
    DataImportError,
    StoreError,
    StudioError,
    UnknownAnnotatorError,
    UnknownItemError,
    UnsafePathError,
)
from spatialreward.images import load_image

from .images import image_sha256
from .layout import REQUIRED_COLUMNS, ROW_GROUP, STRING_COLUMNS
from .pairs import PairFormatError, item_from_dict, iter_pairs, ranking_to_json
from .records import Entry, Human, check_entry
from .store import Store
from .validation import ANNOTATOR_KINDS


def import_pairs(store: Store, jsonl_path: str | os.PathLike[str], dataset: str | None = None,
                 *, human_judgments: bool = True) -> dict[str, int]:
    """Import a pair-format file (ours or any other, e.g. SynthEdit's) all or nothing.

    ``dataset`` names the origin dataset of the imported items (default: the file's own
    ``origin``, else the folder's name). Returns counts of new ``items``,
    ``human_judgments`` and ``model_judgments``, of records ``skipped`` because the store
    already held them, and ``dropped_human_judgments``. Items are their content: one the
    store holds under another name (a bench run's, another dataset's) is merged, not
    added again (counted as an item when only a bench run had added it: it joins the
    annotation queues). New annotators get the file's role and no password; existing
    ones are left as they are, and a file that gives one of them another role or kind
    (``annotator_kind``, ``human`` when absent) is refused.
    ``human_judgments=False`` drops the file's human judgments (none is written, no
    annotator is created)."""
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
                entries.append(check_entry(item, shas, where, dataset, default_origin,
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
            entries.append(check_entry(item, shas, where, dataset, (path.stem, path.name),
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
        if name not in REQUIRED_COLUMNS and name not in STRING_COLUMNS:
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


# -- writing ------------------------------------------------------------------------------


def _import(store: Store, entries: Sequence[Entry], images: Iterable[Sequence[bytes | Path]]
            ) -> dict[str, int]:
    """Write validated entries in one transaction; ``images``: each entry's image data
    (source first), in entry order, read only while writing."""
    roles = _roles(entries)
    kinds = _kinds(entries)
    counts = {"items": 0, "human_judgments": 0, "model_judgments": 0, "skipped": 0,
              "dropped_human_judgments": sum(e.dropped for e in entries)}
    with store.write():
        # Checks against the store first (nothing written yet), then the writes.
        _check_roles(store, roles)
        _check_kinds(store, kinds)
        items = [_existing_item(store, e) for e in entries]
        plans = [_plan_humans(store, e, i) for e, i in zip(entries, items, strict=True)]
        shas = {s for e in entries for s in e.shas}
        fresh = [s for s in shas if not store.image_exists(s)]
        try:
            for name, (role, _) in roles.items():
                _ensure_annotator(store, name, role or "annotator", kinds[name][0])
            for e, item_id, plan, data in zip(entries, items, plans, images, strict=True):
                try:
                    _write_entry(store, e, item_id, plan, data, counts)
                except (StudioError, sqlite3.Error, OSError) as err:
                    if isinstance(err, DataImportError):
                        raise
                    raise DataImportError(f"{e.where}: {err}; nothing was imported") from err
        except BaseException:
            # Image files are written before their rows, and the rows roll back: remove
            # the files only this import added, while it still holds the write lock.
            # Another process's put_image of the same image waits for that lock and then
            # checks its file again, so it writes the file anew instead of losing it.
            for file in _files(store, fresh):
                file.unlink(missing_ok=True)
            raise
    return counts


def _roles(entries: Sequence[Entry]) -> dict[str, tuple[str | None, str]]:
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
        try:
            row = store.annotator(name)
        except UnknownAnnotatorError:
            continue
        if role is not None and row["role"] != role:
            raise DataImportError(
                f"{where}: annotator {name!r} is {row['role']!r} in this store but "
                f"{role!r} in the file; an import never changes an annotator's role: set "
                f"annotator_role to {row['role']!r} or leave it out; nothing was imported")


def _kinds(entries: Sequence[Entry]) -> dict[str, tuple[str, str]]:
    """Annotator -> (the kind the file gives; where it first says so). A judgment without
    ``annotator_kind`` (a file from before kinds existed, or written by hand) is a
    person's: ``human``. One annotator has one kind in the whole file."""
    kinds: dict[str, tuple[str, str]] = {}
    for e in entries:
        for k, (h, kind) in enumerate(_human_kinds(e)):
            where = f"{e.where}: human_judgments[{k}]"
            if kind not in ANNOTATOR_KINDS:
                raise DataImportError(
                    f"{where}: annotator_kind must be one of {', '.join(ANNOTATOR_KINDS)}, "
                    f"got {kind!r}; nothing was imported")
            first, first_where = kinds.setdefault(h.annotator, (kind, where))
            if kind != first:
                raise DataImportError(
                    f"{where}: annotator {h.annotator!r} is {kind!r} here and {first!r} at "
                    f"{first_where}; give each annotator one annotator_kind (a judgment "
                    "without it is 'human'); nothing was imported")
    return kinds


def _human_kinds(e: Entry) -> Iterator[tuple[Human, Any]]:
    """Each kept human judgment of ``e`` with its ``annotator_kind`` as the file gives it
    (``human`` when absent). :class:`~storage.records.Human` does not hold the kind: it is
    read from the item's records, which the checked judgments follow one to one."""
    if not e.humans:  # none, or dropped (human_judgments=False)
        return
    records = e.item.metadata["human_judgments"]
    for h, record in zip(e.humans, records, strict=True):
        yield h, record.get("annotator_kind", "human")


def _check_kinds(store: Store, kinds: dict[str, tuple[str, str]]) -> None:
    """Simulated votes are never mixed with people's: a file that gives a stored annotator
    another kind than the store's is refused (an import never changes an annotator)."""
    for name, (kind, where) in kinds.items():
        try:
            row = store.annotator(name)
        except UnknownAnnotatorError:
            continue
        if row["kind"] != kind:
            raise DataImportError(
                f"{where}: annotator {name!r} is {row['kind']!r} in this store but {kind!r} "
                "in the file (a judgment without annotator_kind is 'human'); an import never "
                "changes an annotator's kind, so that simulated votes never mix with "
                f"people's: set annotator_kind to {row['kind']!r} if the file means this "
                "annotator, else rename the file's annotator or import into another store; "
                "nothing was imported")


def _existing_item(store: Store, e: Entry) -> int | None:
    """The id of the item with this uid, when the store holds it with the same content;
    else of the item with this content under another name (a bench run's, another
    dataset's: one item, see :meth:`Store.merge_item`), or None."""
    try:
        item_id = store.item_by_uid(e.item.id)
    except UnknownItemError:
        return store.item_by_content(e.item.instruction, e.item.dimension, e.shas,
                                     _ranking(e))
    item = store.item(item_id)
    if (item["instruction"], item["source_sha256"], tuple(item["candidates"])) != (
            e.item.instruction.strip(), e.shas[0], e.shas[1:]):
        raise DataImportError(
            f"{e.where}: the store already holds an item {e.item.id!r} with another "
            "instruction or other images; give this item another id; nothing was imported")
    return item_id


def _plan_humans(store: Store, e: Entry, item_id: int | None) -> list[int | None]:
    """Per human judgment of ``e``: the id of the same row in the store, or None (new)."""
    held: dict[tuple[Any, ...], int] = {}
    superseded: set[int] = set()
    seen: Counter[tuple[str, str, str]] = Counter()
    if item_id is not None:
        for r in store.human_history(item_id):
            key = (r["annotator"], r["kind"], r["created_at"])
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


def _ranking(e: Entry) -> Any:
    """The entry's truth ranking in its JSON form (None: none given)."""
    return None if e.item.ranking is None else ranking_to_json(e.item.ranking)


def _ensure_annotator(store: Store, name: str, role: str, kind: str) -> None:
    """Register a new annotator with the file's role and kind, and no password."""
    try:
        store.annotator_id(name)
    except UnknownAnnotatorError:
        store.add_annotator(name, role, kind=kind)


def _write_entry(store: Store, e: Entry, item_id: int | None,
                 plan: Sequence[int | None], data: Sequence[bytes | Path],
                 counts: dict[str, int]) -> None:
    item = e.item
    fields: dict[str, Any] = dict(
        uid=item.id, category=item.category, truth_ranking=_ranking(e),
        truth_regions=item.regions, origin_dataset=e.origin[0], origin_file=e.origin[1],
        origin_id=e.origin[2], metadata=e.metadata)
    if item_id is None:  # an earlier entry of this file may hold the same content
        item_id = store.item_by_content(item.instruction, item.dimension, e.shas,
                                        fields["truth_ranking"])
    if item_id is None:
        images = [d.read_bytes() if isinstance(d, Path) else d for d in data]
        if tuple(image_sha256(b) for b in images) != e.shas:
            raise DataImportError(f"{e.where}: an image changed while importing; import "
                                  "again; nothing was imported")
        item_id = store.add_item(item.instruction, images[0], images[1:],
                                 dimension=item.dimension, **fields)
        counts["items"] += 1
    else:
        # Held already: its names, origin and gold merge in; an item only a bench run
        # had added joins the annotation queues now, and counts as imported.
        joined = store.merge_item(item_id, **fields)
        counts["items" if joined else "skipped"] += 1
    _write_humans(store, e, item_id, plan, counts)
    for m in e.models:
        j = m.judgment
        if store.cached_judgment(item_id, m.candidate, j.backend, j.backend_version) is not None:
            counts["skipped"] += 1
            continue
        store.add_model_judgment(item_id, m.candidate, j, m.latency_ms, created_at=m.created_at)
        counts["model_judgments"] += 1


def _write_humans(store: Store, e: Entry, item_id: int, plan: Sequence[int | None],
                  counts: dict[str, int]) -> None:
    """The entry's new human judgments, in file order: in runs of rows that name no row
    of their own run (one insert each), so each run names only rows already written."""
    ids: dict[int, int] = {}  # ref -> database id
    run: list[Human] = []

    def flush() -> None:
        new = store.append_human_rows([{
            "item_id": item_id, "annotator": h.annotator, "kind": h.kind,
            "content": h.content, "created_at": h.created_at,
            "supersedes": None if h.supersedes is None else ids[h.supersedes],
            "restores": None if h.restores is None else ids[h.restores]} for h in run])
        ids.update(zip((h.ref for h in run), new, strict=True))
        counts["human_judgments"] += len(run)
        run.clear()

    for h, found in zip(e.humans, plan, strict=True):
        if found is not None:
            ids[h.ref] = found
            counts["skipped"] += 1
        else:
            if {h.supersedes, h.restores} & {r.ref for r in run}:
                flush()
            run.append(h)
    if run:
        flush()


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
