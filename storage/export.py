"""Export the judgment store: a pair-format folder (:func:`export_pairs`) or one Parquet
file (:func:`export_parquet`). The formats are described in :mod:`storage.exchange`.

Lone surrogates in any text become U+FFFD (:func:`~storage.validation.replace_surrogates`),
so that UTF-8 can write every row; password hashes never leave the store.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from spatialreward.errors import StoreError

from .images import image_sha256
from .layout import IMAGES_DIR, PAIRS_FILE, PARQUET_SCHEMA, ROW_GROUP, dumps, loads
from .store import Store
from .validation import replace_surrogates


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
            for row in export_rows(store):
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
            for row in export_rows(store):
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


def export_rows(store: Store) -> Iterator[dict[str, Any]]:
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
            "model_judgments": store.model_judgments(item_id),
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
    # Only name, role and kind leave the annotators table: never the password hash. The
    # kind travels so that an import elsewhere keeps simulated votes apart from people's.
    rows = store.human_history(item_id)
    ref = {r["id"]: k for k, r in enumerate(rows, 1)}
    return [{
        "id": ref[r["id"]],
        "annotator": r["annotator"],
        "annotator_role": r["annotator_role"],
        "annotator_kind": r["annotator_kind"],
        "kind": r["kind"],
        "ranking": loads(r["ranking"]),
        "preferred": r["preferred"],
        "both_bad": bool(r["both_bad"]),
        "scores": loads(r["scores"]),
        "regions": loads(r["regions"]),
        "comment": r["comment"],
        "seconds_spent": r["seconds_spent"],
        "supersedes": None if r["supersedes"] is None else ref[r["supersedes"]],
        "restores": None if r["restores"] is None else ref[r["restores"]],
        "created_at": r["created_at"],
    } for r in rows]


def _parquet_row(store: Store, row: dict[str, Any], names: _ImageNames) -> dict[str, Any]:
    def image(sha: str) -> dict[str, Any]:
        return {"bytes": _image(store, sha), "path": names[sha]}

    origin = row["origin"]
    return {
        "id": row["id"],
        "instruction": row["instruction"],
        "source": image(row["source"]),
        "candidates": [image(sha) for sha in row["candidates"]],
        "ranking": dumps(row["ranking"]),
        "dimension": row["dimension"],
        "category": row["category"],
        "regions": dumps(row["regions"]),
        "origin_dataset": origin["dataset"],
        "origin_file": origin["file"],
        "origin_id": origin["id"],
        "metadata": dumps(row["metadata"]),
        "human_judgments": dumps(row["human_judgments"]),
        "model_judgments": dumps(row["model_judgments"]),
    }


class _ImageNames(dict[str, str]):
    """SHA-256 -> export file name ``<sha256>.<ext>`` (the extension tells the format)."""

    def __init__(self, store: Store) -> None:
        super().__init__()
        self.store = store

    def __missing__(self, sha: str) -> str:
        self[sha] = name = f"{sha}.{self.store.image_info(sha)['format'].lower()}"
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
