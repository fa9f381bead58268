"""Undo goes back one version (m005_restores): undoing an edit brings the previous vote
back, undoing again keeps going back, and the history survives export and import."""

from __future__ import annotations

import io
import json
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlite_utils
from PIL import Image

from spatialreward.errors import DataImportError, InvalidJudgmentError
from storage import annotate as ann
from storage.exchange import export_pairs, export_parquet, import_pairs, import_parquet
from storage.schema import migrations
from storage.store import Store


def png(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (8, 8, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def add_item(store: Store, seed: int = 0, n: int = 3) -> int:
    return store.add_item(f"edit {seed}", png(1000 + seed),
                          [png(seed * 10 + k) for k in range(n)], uid=f"item-{seed}")


@pytest.fixture
def store() -> Store:
    s = Store(sqlite_utils.Database(memory=True))
    s.add_annotator("ann")
    s.add_annotator("bob")
    return s


def vote(store: Store, item: int, who: str = "ann") -> str | None:
    """The annotator's current vote on the item as a label, None when there is none."""
    last = store.last_human_judgment(who, item)
    return None if last is None else last.label


# -- the bug: undoing an edit left the item unjudged ------------------------------------------


def test_undoing_an_edit_restores_the_previous_vote_then_retracts_it(store: Store) -> None:
    item = add_item(store)
    order = ann.side_order("ann", item, 3)
    a, b = ann.labels(3)[order.index(0)], ann.labels(3)[order.index(1)]
    first = ann.annotate(store, "ann", item, a)
    edit = ann.annotate(store, "ann", item, b)
    assert vote(store, item) == "1"

    undone = ann.undo_last(store, "ann")
    assert (undone.judgment_id, undone.item_id, undone.restored) == (edit, item, True)
    assert vote(store, item) == "0" and undone.current_id == store.last_human_judgment(
        "ann", item).id
    assert item in ann.judged_items(store, "ann")  # still judged: the vote is back
    restored = store.human_judgment(undone.retraction_id)
    assert (restored.kind, restored.supersedes, restored.restores) == ("judgment", edit, first)

    again = ann.undo_last(store, "ann")
    assert (again.judgment_id, again.restored, again.current_id) == (
        undone.retraction_id, False, None)
    assert vote(store, item) is None and item not in ann.judged_items(store, "ann")
    assert store.human_judgment(again.retraction_id).kind == "retraction"
    with pytest.raises(InvalidJudgmentError, match="no current vote"):
        ann.undo_last(store, "ann")
    assert store.integrity() == []


def test_a_chain_of_three_edits_is_undone_step_by_step(store: Store) -> None:
    item = add_item(store)
    versions = [0, 1, 2, "tie"]  # a first vote and three edits
    ids = [store.add_human_judgment(item, "ann", versions[0])]
    for v in versions[1:]:
        ids.append(store.add_human_judgment(item, "ann", v, supersedes=ids[-1]))
    seen = []
    for _ in range(4):
        store.undo_human_judgment(store.last_human_judgment("ann", item).id, "ann")
        seen.append(vote(store, item))
    assert seen == ["2", "1", "0", None]  # back one version per undo, never a toggle
    history = store.human_judgments(item, history=True)
    assert [h.restores for h in history[4:]] == [ids[2], ids[1], ids[0], None]
    assert store.human_judgments(item) == [] and store.integrity() == []


def test_an_undo_restores_the_whole_previous_version(store: Store) -> None:
    item = add_item(store)
    first = store.add_human_judgment(
        item, "ann", [2, [0, 1]], scores={2: {"overall": 9, "quality": 7.5}},
        regions=[{"candidate": 2, "bbox_2d": [10, 20, 300, 400], "label": "cup"}],
        comment="the cup is right", seconds_spent=12.5)
    edit = store.add_human_judgment(item, "ann", "both_bad", comment="no, both bad",
                                    supersedes=first)
    restored = store.human_judgment(store.undo_human_judgment(edit, "ann"))
    original = store.human_judgment(first)
    fields = ("kind", "ranking", "preferred", "both_bad", "scores", "regions", "comment",
              "seconds_spent", "annotator", "item_id")
    assert [getattr(restored, f) for f in fields] == [getattr(original, f) for f in fields]
    assert restored.created_at > original.created_at


def test_undo_after_an_edit_of_a_restored_vote_goes_back_like_a_stack(store: Store) -> None:
    """A, B, undo (A), C: undo gives A, and the next undo leaves no vote (the A that
    came back is the first version, not a new one)."""
    item = add_item(store)
    a = store.add_human_judgment(item, "ann", 0)
    b = store.add_human_judgment(item, "ann", 1, supersedes=a)
    back = store.undo_human_judgment(b, "ann")
    c = store.add_human_judgment(item, "ann", 2, supersedes=back)
    assert vote(store, item) == "2"
    again = store.undo_human_judgment(c, "ann")
    assert vote(store, item) == "0" and store.human_judgment(again).restores == a
    store.undo_human_judgment(again, "ann")
    assert vote(store, item) is None and store.integrity() == []


def test_undo_only_touches_the_annotators_own_history(store: Store) -> None:
    item = add_item(store)
    first = store.add_human_judgment(item, "ann", 0)
    store.add_human_judgment(item, "ann", 1, supersedes=first)
    store.add_human_judgment(item, "bob", 2)
    undone = ann.undo_last(store, "ann")
    assert undone.restored and vote(store, item) == "0" and vote(store, item, "bob") == "2"
    assert sorted(h.label for h in store.human_judgments(item)) == ["0", "2"]


# -- the store's guards -----------------------------------------------------------------------


def _raw_restore(store: Store, item: int, supersedes: int, restores: int, preferred: int,
                 who: str = "ann", kind: str = "judgment") -> None:
    store.db.execute(
        "INSERT INTO human_judgments (item_id, annotator_id, kind, ranking, preferred, "
        "both_bad, supersedes, restores, created_at) VALUES (?, ?, ?, ?, ?, 0, ?, ?, 'now')",
        [item, store.annotator_id(who), kind, json.dumps([preferred, [k for k in range(3)
                                                                     if k != preferred]]),
         preferred, supersedes, restores])


def test_the_trigger_refuses_a_restores_of_someone_else_or_on_a_retraction(store: Store
                                                                           ) -> None:
    item = add_item(store)
    first = store.add_human_judgment(item, "ann", 0)
    edit = store.add_human_judgment(item, "ann", 1, supersedes=first)
    bobs = store.add_human_judgment(item, "bob", 0)
    with pytest.raises(sqlite3.IntegrityError, match="restores must name"):
        _raw_restore(store, item, edit, bobs, 0)
    with pytest.raises(sqlite3.IntegrityError, match="restores must name"):
        _raw_restore(store, item, edit, first, 0, kind="retraction")
    assert vote(store, item) == "1" and store.integrity() == []


def test_integrity_finds_a_restores_that_skips_a_version_or_changes_the_vote(store: Store
                                                                             ) -> None:
    item = add_item(store)
    first = store.add_human_judgment(item, "ann", 0)
    second = store.add_human_judgment(item, "ann", 1, supersedes=first)
    third = store.add_human_judgment(item, "ann", 2, supersedes=second)
    _raw_restore(store, item, third, first, 0)  # undoing 3 goes back to 2, not 1
    (problem,) = store.integrity()
    assert f"human judgment 4 restores {first}, not the version before {third}" in problem
    assert "restore the store from a backup" in problem

    other = add_item(store, 1)
    a = store.add_human_judgment(other, "ann", 0)
    b = store.add_human_judgment(other, "ann", 1, supersedes=a)
    _raw_restore(store, other, b, a, 2)  # the right row, another vote
    assert any("restores" in p and "other content" in p for p in store.integrity())


def test_an_old_store_gets_the_restores_column_and_keeps_its_history(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    db = sqlite_utils.Database(path)
    migrations.apply(db, stop_before="m005_restores")
    db.close()
    with Store.open(path) as s:
        assert "restores" in s.db["human_judgments"].columns_dict
        assert "restores" in s.db["current_human_judgments"].columns_dict
        s.add_annotator("ann")
        item = add_item(s)
        first = s.add_human_judgment(item, "ann", 0)
        s.add_human_judgment(item, "ann", 1, supersedes=first)
        s.undo_human_judgment(s.last_human_judgment("ann", item).id, "ann")
        assert vote(s, item) == "0" and s.integrity() == []


# -- export and import ----------------------------------------------------------------------


@pytest.fixture
def undone(tmp_path: Path) -> Store:
    """A store on disk whose histories hold restored votes, retractions and plain edits."""
    s = Store.open(tmp_path / "src" / "studio.db")
    s.add_annotator("ann")
    s.add_annotator("bob", role="researcher")
    x, y = add_item(s, 1), add_item(s, 2)
    ids = [s.add_human_judgment(x, "ann", 0, comment="first", seconds_spent=3.0)]
    for v in (1, 2):
        ids.append(s.add_human_judgment(x, "ann", v, supersedes=ids[-1]))
    s.undo_human_judgment(ids[-1], "ann")  # back to 1
    s.add_human_judgment(x, "bob", "tie")
    edit = s.add_human_judgment(y, "bob", 1, supersedes=s.add_human_judgment(y, "bob", 0))
    s.undo_human_judgment(s.undo_human_judgment(edit, "bob"), "bob")  # back to 0, then none
    yield s
    s.close()


def history(store: Store) -> list[tuple[Any, ...]]:
    """Every human judgment row, with supersedes and restores as positions in the item's
    history (database ids differ between stores)."""
    out = []
    for item_id in store.item_ids():
        rows = store.human_history(item_id)
        pos = {r["id"]: k for k, r in enumerate(rows)}
        out += [(store.item(item_id)["uid"], r["annotator"], r["kind"], r["ranking"],
                 r["preferred"], r["comment"], r["seconds_spent"], r["created_at"],
                 pos.get(r["supersedes"]), pos.get(r["restores"])) for r in rows]
    return out


def test_a_pairs_round_trip_keeps_restores_and_is_idempotent(undone: Store, tmp_path: Path
                                                              ) -> None:
    export_pairs(undone, tmp_path / "out")
    lines = [json.loads(x) for x in (tmp_path / "out" / "pairs.jsonl").read_text().splitlines()]
    exported = {h["id"]: h for h in lines[0]["human_judgments"]}
    assert exported[4]["restores"] == 2 and exported[4]["supersedes"] == 3
    assert exported[4]["ranking"] == exported[2]["ranking"]
    with Store.open(tmp_path / "fresh" / "studio.db") as fresh:
        counts = import_pairs(fresh, tmp_path / "out" / "pairs.jsonl")
        assert counts["human_judgments"] == len(history(undone))
        assert history(fresh) == history(undone) and fresh.integrity() == []
        assert {(j.annotator, j.label) for j in fresh.human_judgments()} == {
            ("ann", "1"), ("bob", "tie")}
        again = import_pairs(fresh, tmp_path / "out" / "pairs.jsonl")
        assert again["human_judgments"] == again["items"] == 0
        assert history(fresh) == history(undone)
        export_pairs(fresh, tmp_path / "back")
    assert (tmp_path / "back" / "pairs.jsonl").read_text() == (
        tmp_path / "out" / "pairs.jsonl").read_text()


def test_a_parquet_round_trip_keeps_restores(undone: Store, tmp_path: Path) -> None:
    export_parquet(undone, tmp_path / "out.parquet")
    with Store.open(tmp_path / "fresh" / "studio.db") as fresh:
        import_parquet(fresh, tmp_path / "out.parquet")
        assert history(fresh) == history(undone) and fresh.integrity() == []
        assert import_parquet(fresh, tmp_path / "out.parquet")["human_judgments"] == 0
        # The restored vote undoes like the original: back to the first version.
        (x,) = [i for i in fresh.item_ids() if fresh.item(i)["uid"] == "item-1"]
        fresh.undo_human_judgment(fresh.last_human_judgment("ann", x).id, "ann")
        assert vote(fresh, x) == "0"


def test_an_export_without_restores_still_imports(undone: Store, tmp_path: Path) -> None:
    """Files written before m005 have no ``restores``: their undo rows are plain edits or
    retractions, and they import as before."""
    export_pairs(undone, tmp_path / "out")
    path = tmp_path / "out" / "pairs.jsonl"
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    for line in lines:
        for h in line["human_judgments"]:
            del h["restores"]
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    with Store.open(tmp_path / "fresh" / "studio.db") as fresh:
        import_pairs(fresh, path)
        assert [row[:-1] for row in history(fresh)] == [row[:-1] for row in history(undone)]
        assert all(row[-1] is None for row in history(fresh)) and fresh.integrity() == []


@pytest.mark.parametrize("change, message", [
    (lambda h: h[3].update(restores=1), "goes back to judgment 2"),
    (lambda h: h[3].update(ranking=[0, [1, 2]], preferred=0), "holds another vote"),
    (lambda h: h[0].update(restores=1), "only a judgment that supersedes another"),
])
def test_an_import_refuses_a_restores_the_store_would_not_write(undone: Store, tmp_path: Path,
                                                                change, message) -> None:
    export_pairs(undone, tmp_path / "out")
    path = tmp_path / "out" / "pairs.jsonl"
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    change(lines[0]["human_judgments"])
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    with Store.open(tmp_path / "fresh" / "studio.db") as fresh:
        before = fresh.stats()["tables"]
        with pytest.raises(DataImportError, match=message):
            import_pairs(fresh, path)
        assert fresh.stats()["tables"] == before
