"""Annotator kinds through export and import (storage/exchange.py): simulated votes stay
simulated in another store, old files without ``annotator_kind`` import as people's, and a
file that would change a stored annotator's kind is refused with nothing written."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from spatialreward.errors import DataImportError
from storage.exchange import export_pairs, export_parquet, import_pairs, import_parquet
from storage.store import Store
from tests.test_exchange import open_store, snapshot

KINDS = {"ana": "human", "sim-1": "simulated"}


def png(seed: int) -> bytes:
    arr = np.random.default_rng(seed).integers(0, 255, (8, 8, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def votes(store: Store, kinds: Any = None) -> list[tuple[str, str, str, str]]:
    """Current votes as (item uid, annotator, kind, ranking), without the store's ids."""
    uid = {i: store.item(i)["uid"] for i in store.item_ids()}
    return sorted((uid[j.item_id], j.annotator, j.annotator_kind, json.dumps(j.ranking))
                  for j in store.human_judgments(kinds=kinds))


@pytest.fixture
def mixed(tmp_path: Path) -> Store:
    """Two items; a person and a simulated annotator vote on both (one edit, too)."""
    s = open_store(tmp_path / "src")
    a = s.add_item("make it red", png(1), [png(2), png(3)], uid="a", truth_ranking=[1, 0])
    b = s.add_item("remove the cup", png(4), [png(5), png(6)], uid="b", truth_ranking=[0, 1])
    s.add_annotator("ana")
    s.add_annotator("sim-1", kind="simulated")
    first = s.add_human_judgment(a, "ana", 0)
    s.add_human_judgment(a, "ana", 1, supersedes=first)
    s.add_human_judgment(a, "sim-1", 1)
    s.add_human_judgment(b, "sim-1", 0)
    s.add_human_judgment(b, "ana", "tie")
    return s


def to_pairs(store: Store, folder: Path) -> Path:
    export_pairs(store, folder)
    return folder / "pairs.jsonl"


def to_parquet(store: Store, folder: Path) -> Path:
    export_parquet(store, folder / "export.parquet")
    return folder / "export.parquet"


FORMATS: dict[str, tuple[Callable[[Store, Path], Path], Callable[..., dict[str, int]]]] = {
    "pairs": (to_pairs, import_pairs),
    "parquet": (to_parquet, import_parquet),
}


def exported_humans(path: Path) -> list[dict[str, Any]]:
    """Every human judgment record of an export, read as users would (json, pyarrow)."""
    if path.suffix == ".parquet":
        column = pq.read_table(path).column("human_judgments").to_pylist()
        return [h for text in column for h in json.loads(text)]
    return [h for line in path.read_text(encoding="utf-8").splitlines()
            for h in json.loads(line)["human_judgments"]]


def strip_kinds(path: Path) -> None:
    """Rewrite an export as a file from before kinds existed: no ``annotator_kind``."""
    def strip(humans: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{k: v for k, v in h.items() if k != "annotator_kind"} for h in humans]

    if path.suffix == ".parquet":
        table = pq.read_table(path)
        column = [json.dumps(strip(json.loads(t))) for t in
                  table.column("human_judgments").to_pylist()]
        index = table.schema.get_field_index("human_judgments")
        pq.write_table(table.set_column(index, "human_judgments",
                                        pa.array(column, pa.string())), path)
    else:
        lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
        path.write_text("".join(json.dumps({**d, "human_judgments": strip(
            d["human_judgments"])}) + "\n" for d in lines), encoding="utf-8")


def edit_humans(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    """Apply ``change`` to every human judgment record of a pair-format file."""
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    for d in lines:
        for h in d["human_judgments"]:
            change(h)
    path.write_text("".join(json.dumps(d) + "\n" for d in lines), encoding="utf-8")


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip_keeps_kinds(mixed: Store, tmp_path: Path, fmt: str) -> None:
    export, load = FORMATS[fmt]
    path = export(mixed, tmp_path / "out")
    records = exported_humans(path)
    assert {(h["annotator"], h["annotator_kind"]) for h in records} == set(KINDS.items())
    assert all("password" not in key for h in records for key in h)

    dest = open_store(tmp_path / "dest")
    counts = load(dest, path)
    assert counts["human_judgments"] == 5
    assert dest.annotator_kinds() == KINDS
    assert votes(dest) == votes(mixed)
    assert [v[:3] for v in votes(dest, kinds="simulated")] == [("a", "sim-1", "simulated"),
                                                               ("b", "sim-1", "simulated")]
    assert [v[:3] for v in votes(dest, kinds="human")] == [("a", "ana", "human"),
                                                           ("b", "ana", "human")]
    assert not dest.annotator("sim-1")["has_password"]
    # Importing again (kinds match the store now) changes nothing.
    before = snapshot(dest)
    again = load(dest, path)
    assert (again["items"], again["human_judgments"]) == (0, 0)
    assert snapshot(dest) == before


@pytest.mark.parametrize("fmt", FORMATS)
def test_old_file_without_kind_imports_as_human(mixed: Store, tmp_path: Path,
                                                fmt: str) -> None:
    export, load = FORMATS[fmt]
    path = export(mixed, tmp_path / "out")
    strip_kinds(path)
    assert all("annotator_kind" not in h for h in exported_humans(path))
    dest = open_store(tmp_path / "dest")
    assert load(dest, path)["human_judgments"] == 5
    assert dest.annotator_kinds() == {"ana": "human", "sim-1": "human"}


@pytest.mark.parametrize("fmt", FORMATS)
def test_kind_mismatch_is_refused_and_nothing_written(mixed: Store, tmp_path: Path,
                                                      fmt: str) -> None:
    export, load = FORMATS[fmt]
    path = export(mixed, tmp_path / "out")
    dest = open_store(tmp_path / "dest")
    dest.add_annotator("sim-1")  # a person of that name: the file says simulated
    before = snapshot(dest)
    with pytest.raises(DataImportError) as err:
        load(dest, path)
    message = str(err.value)
    assert "'sim-1' is 'human' in this store but 'simulated' in the file" in message
    assert "nothing was imported" in message
    assert snapshot(dest) == before
    assert dest.annotator_kinds() == {"sim-1": "human"}
    assert dest.item_ids() == []


def test_old_file_refused_for_a_simulated_annotator(mixed: Store, tmp_path: Path) -> None:
    """Without the key a vote is a person's: it never joins a simulated annotator."""
    path = to_pairs(mixed, tmp_path / "out")
    strip_kinds(path)
    dest = open_store(tmp_path / "dest")
    dest.add_annotator("ana", kind="simulated")
    before = snapshot(dest)
    with pytest.raises(DataImportError, match="'ana' is 'simulated' in this store but 'human'"):
        import_pairs(dest, path)
    assert snapshot(dest) == before


def test_one_annotator_with_two_kinds_is_refused(mixed: Store, tmp_path: Path) -> None:
    path = to_pairs(mixed, tmp_path / "out")
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    for h in lines[1]["human_judgments"]:  # item b: sim-1 claims to be a person there
        if h["annotator"] == "sim-1":
            h["annotator_kind"] = "human"
    path.write_text("".join(json.dumps(d) + "\n" for d in lines), encoding="utf-8")
    dest = open_store(tmp_path / "dest")
    before = snapshot(dest)
    with pytest.raises(DataImportError, match="'sim-1' is 'human' here and 'simulated' at"):
        import_pairs(dest, path)
    assert snapshot(dest) == before


def test_unknown_kind_is_refused(mixed: Store, tmp_path: Path) -> None:
    path = to_pairs(mixed, tmp_path / "out")
    edit_humans(path, lambda h: h.update(annotator_kind="robot"))
    dest = open_store(tmp_path / "dest")
    with pytest.raises(DataImportError, match=r"pairs.jsonl:1: human_judgments\[0\]: "
                                              "annotator_kind must be one of human, simulated"):
        import_pairs(dest, path)
    assert dest.annotator_kinds() == {}


def test_dropped_human_judgments_skip_the_kind_check(mixed: Store, tmp_path: Path) -> None:
    """``human_judgments=False`` writes no vote and no annotator, so no kind can clash."""
    path = to_pairs(mixed, tmp_path / "out")
    dest = open_store(tmp_path / "dest")
    dest.add_annotator("sim-1")
    counts = import_pairs(dest, path, human_judgments=False)
    assert (counts["items"], counts["human_judgments"]) == (2, 0)
    assert counts["dropped_human_judgments"] == 5
    assert dest.annotator_kinds() == {"sim-1": "human"}
