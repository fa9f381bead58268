"""Items are content-addressed: a bench run and a Data import of the same folder share
one item per pair, importing twice adds nothing, benching keeps its items out of the
annotation queues unless asked, and m006 merges the duplicates an older store holds
without losing a judgment, a vote, a flag or a name."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
import sqlite_utils
from PIL import Image

import storage.schema as schema
from spatialreward.cli import main
from spatialreward.service import Services
from storage.annotate import queue_items
from storage.images import image_sha256, item_content_key
from storage.store import Store
from tests.test_bench_factories import ColourJudge, services

N = 4
GOLD = 3  # the first GOLD items of the folder carry a ranking


def write_folder(root: Path, name: str = "mydata", prefix: str = "item",
                 ranking: list[int] | None = None) -> Path:
    """``root/name``: pairs.jsonl and images/ of N items (the first GOLD ranked
    ``ranking``, default [1, 0]), ids ``<prefix>-<k>``; the same images in every folder."""
    folder = root / name
    (folder / "images").mkdir(parents=True)
    lines = []
    for k in range(N):
        names = [f"images/{k}_{part}.png" for part in ("src", "c0", "c1")]
        for j, rel in enumerate(names):
            Image.new("RGB", (8, 8), (40 * k + 10 * j, 200 - 30 * j, 60)).save(folder / rel)
        line: dict[str, object] = {
            "id": f"{prefix}-{k}", "instruction": f"make the square {k} blue",
            "source": names[0], "candidates": names[1:], "category": "recolor"}
        if k < GOLD:
            line["ranking"] = ranking or [1, 0]
        lines.append(json.dumps(line))
    (folder / "pairs.jsonl").write_text("\n".join(lines) + "\n")
    return folder


@pytest.fixture
def studio(tmp_path: Path) -> Services:
    s = services(tmp_path, ColourJudge())
    write_folder(tmp_path / "store")  # under the data folder: the database's folder
    return s


def counts(store: Store) -> dict[str, int]:
    return store.stats()["tables"]


def test_bench_then_import_of_one_folder_is_one_item_per_pair(studio: Services) -> None:
    store = studio.store
    result = studio.bench(path="mydata", backend="colour")
    assert len(result["items"]) == N
    # The judgments are cached on stored items, but no queue holds them.
    assert counts(store)["items"] == N and counts(store)["model_judgments"] == 2 * N
    assert store.queued_item_ids() == []
    assert queue_items(store, "gold") == [] and queue_items(store, "needs_votes") == []
    benched = {store.item(i)["uid"]: i for i in store.item_ids()}
    assert all(uid.startswith("bench:") for uid in benched)

    got = studio.import_data(path="mydata")
    assert got["items"] == N and got["skipped"] == 0  # they joined the queues now
    assert counts(store)["items"] == N and counts(store)["model_judgments"] == 2 * N
    ids = store.item_ids()
    assert sorted(ids) == sorted(benched.values())
    assert store.queued_item_ids() == ids
    assert len(queue_items(store, "gold")) == GOLD
    # The dataset's names win over the bench run's, which still find the same item.
    first = store.item(ids[0])
    assert (first["uid"], first["origin_dataset"]) == ("item-0", "mydata")
    for uid, item_id in benched.items():
        assert store.item_by_uid(uid) == item_id
    assert {r["uid"] for r in store.item_sources(ids[0])} == {"item-0", *(
        u for u, i in benched.items() if i == ids[0])}
    assert store.model_judgments(ids[0], "colour")
    assert store.integrity() == []


def test_import_twice_and_then_bench_add_nothing(studio: Services) -> None:
    store = studio.store
    assert studio.import_data(path="mydata")["items"] == N
    again = studio.import_data(path="mydata")
    assert again["items"] == 0 and again["skipped"] == N
    ids = store.item_ids()
    studio.bench(path="mydata", backend="colour")
    assert store.item_ids() == ids and store.queued_item_ids() == ids
    assert all(len(store.model_judgments(i)) == 2 for i in ids)  # on the imported items
    assert store.item(ids[0])["uid"] == "item-0"
    assert len(queue_items(store, "gold")) == GOLD


def test_another_dataset_of_the_same_pairs_merges_unless_its_verdict_differs(
        studio: Services) -> None:
    store = studio.store
    write_folder(tmp := Path(studio.config.db).parent, "theirs", prefix="their")
    write_folder(tmp, "flipped", prefix="flip", ranking=[0, 1])
    studio.import_data(path="mydata")
    got = studio.import_data(path="theirs")  # the same pairs under other ids
    assert got["items"] == 0 and got["skipped"] == N and counts(store)["items"] == N
    first = store.item_ids()[0]
    assert store.item_by_uid("their-0") == first
    assert [r["origin_dataset"] for r in store.item_sources(first)] == ["mydata", "theirs"]
    got = studio.import_data(path="flipped")  # the opposite verdict: other gold items
    assert got["items"] == GOLD and counts(store)["items"] == N + GOLD
    assert store.item_by_uid("flip-0") != first
    assert store.item_by_uid(f"flip-{N - 1}") == store.item_by_uid(f"item-{N - 1}")
    assert len(queue_items(store, "gold")) == 2 * GOLD


def test_bench_with_add_to_store_fills_the_queues(studio: Services) -> None:
    store = studio.store
    studio.bench(path="mydata", backend="colour")
    assert queue_items(store, "gold") == []
    # A second run that asks for it queues the same items (found by their uid).
    result = studio.bench(path="mydata", backend="colour", add_to_store=True)
    assert store.run(result["run_id"])["config"]["add_to_store"] is True
    assert counts(store)["items"] == N and len(queue_items(store, "gold")) == GOLD
    assert len(store.queued_item_ids()) == N


def test_the_cli_flag(tmp_path: Path, capsys) -> None:
    jsonl = write_folder(tmp_path) / "pairs.jsonl"
    db, out = tmp_path / "cli" / "studio.db", tmp_path / "results.json"
    assert main(["bench", "--dataset", str(jsonl), "--add-to-store", "--no-cache"]) == 2
    assert "--no-cache" in capsys.readouterr().err
    args = ["bench", "--dataset", str(jsonl), "--backend", "pixel", "--db", str(db),
            "--out", str(out), "--no-report", "--no-progress"]
    assert main(args) == 0
    with Store.open(db) as store:
        assert counts(store)["items"] == N and queue_items(store, "gold") == []
    assert main([*args, "--add-to-store"]) == 0
    with Store.open(db) as store:
        assert counts(store)["items"] == N and len(queue_items(store, "gold")) == GOLD


# -- the store's rules -------------------------------------------------------------------


def pixels(value: int) -> Image.Image:
    return Image.new("RGB", (4, 4), (value, value, value))


def test_one_content_is_one_item_and_gold_labels_merge() -> None:
    store = Store(sqlite_utils.Database(memory=True))
    plain = store.add_item("add a hat", pixels(1), [pixels(2), pixels(3)], uid="a",
                           queued=False, metadata={"seen": 1})
    # Another name adds what the item lacked: a ranking, a category, metadata, the queues.
    assert store.add_item(" add a hat ", pixels(1), [pixels(2), pixels(3)], uid="b",
                          truth_ranking=[1, 0], category="hat",
                          metadata={"seen": 2, "flaw": "none"}) == plain
    item = store.item(plain)
    assert (item["uid"], item["truth_ranking"], item["category"]) == ("b", [1, 0], "hat")
    assert item["metadata"] == {"seen": 1, "flaw": "none"}  # nothing stored is overwritten
    assert [r["uid"] for r in store.item_sources(plain)] == ["a", "b"]
    assert store.item_by_uid("a") == store.item_by_uid("b") == plain
    # A verdict that disagrees is another item; an add without one joins the first.
    other = store.add_item("add a hat", pixels(1), [pixels(2), pixels(3)], uid="c",
                           truth_ranking=[0, 1])
    assert other != plain
    assert store.add_item("add a hat", pixels(1), [pixels(2), pixels(3)]) == plain
    # Other candidates, another order or another dimension: other items.
    assert store.add_item("add a hat", pixels(1), [pixels(3), pixels(2)]) not in (plain, other)
    assert store.add_item("add a hat", pixels(1), [pixels(2), pixels(3)],
                          dimension="consistency") not in (plain, other)
    assert counts(store)["items"] == 4
    assert store.truth_rankings() == {plain: [1, 0], other: [0, 1]}
    assert store.integrity() == []


def test_the_unique_index_refuses_a_second_row() -> None:
    store = Store(sqlite_utils.Database(memory=True))
    item = store.item(store.add_item("x", pixels(1), [pixels(2)]))
    row = {k: item[k] for k in ("instruction", "source_sha256", "n_candidates", "dimension",
                                "content_key", "created_at")}
    with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
        store.db.table("items").insert({**row, "uid": "copy"})
    with pytest.raises(sqlite3.IntegrityError, match="content_key"):
        store.db.table("items").insert({**row, "uid": "copy", "content_key": None})


def test_integrity_finds_an_item_changed_around_the_store() -> None:
    store = Store(sqlite_utils.Database(memory=True))
    a = store.add_item("x", pixels(1), [pixels(2)])
    b = store.add_item("y", pixels(1), [pixels(2)])
    assert store.integrity() == []
    store.db.execute("UPDATE items SET instruction = 'z' WHERE id = ?", [a])
    store.db.execute("DELETE FROM item_sources WHERE item_id = ?", [b])
    found = store.integrity()
    assert len(found) == 2 and f"items {a}: content_key" in found[0]
    assert f"items {b}: no row in item_sources" in found[1]


# -- the migration -----------------------------------------------------------------------


def old_store() -> tuple[sqlite_utils.Database, dict[str, int]]:
    """A store at schema 5 with the old behaviour's duplicates, written row by row: one
    pair benched (``bench:a``, judged by a model, voted on and edited by ana, flagged),
    imported (``item-0``, voted on by bob) and benched again without a ranking
    (``bench:b``); the same pair with the opposite verdict (``item-9``); another pair."""
    db = sqlite_utils.Database(memory=True)
    schema.migrations.apply(db, stop_before="m006_content_items")
    t = "2026-01-01T00:00:00+00:00"
    shas = [image_sha256(bytes([k])) for k in range(4)]
    db.table("images").insert_all({"sha256": s, "path": f"images/{s}.png", "format": "PNG",
                             "width": 4, "height": 4, "bytes": 1, "created_at": t}
                            for s in shas)
    ids = {}
    for uid, src, cands, ranking, origin in (
            ("bench:a", 0, [1, 2], [1, 0], "pairs"), ("item-0", 0, [1, 2], [1, 0], "mydata"),
            ("other", 3, [1, 2], None, "mydata"), ("bench:b", 0, [1, 2], None, "pairs"),
            ("item-9", 0, [1, 2], [0, 1], "theirs")):
        ids[uid] = int(db.table("items").insert({
            "uid": uid, "instruction": "add a hat", "source_sha256": shas[src],
            "n_candidates": 2, "category": "hat" if uid == "item-0" else None,
            "dimension": "overall", "truth_ranking": json.dumps(ranking) if ranking else None,
            "origin_dataset": origin, "metadata": json.dumps({"uid": uid}),
            "created_at": t}).last_pk or 0)
        db.table("candidates").insert_all({"item_id": ids[uid], "idx": k, "image_sha256": shas[c]}
                                    for k, c in enumerate(cands))
    for k in range(2):
        db.table("model_judgments").insert({
            "cache_key": f"key{k}", "item_id": ids["bench:a"], "candidate": k,
            "backend": "colour", "backend_version": "1", "status": "ok", "overall": k,
            "n_regions": 0, "judgment": "{}", "created_at": t})
    for name in ("ana", "bob"):
        db.table("annotators").insert({"name": name, "role": "annotator", "created_at": t})
    vote: dict[str, object] = {"kind": "judgment", "both_bad": 0, "comment": "",
                               "created_at": t}
    votes = db.table("human_judgments")
    first = votes.insert({**vote, "item_id": ids["bench:a"], "annotator_id": 1,
                          "ranking": "[0, 1]", "preferred": 0}).last_pk
    votes.insert({**vote, "item_id": ids["bench:a"], "annotator_id": 1, "ranking": "[1, 0]",
                  "preferred": 1, "supersedes": first})
    votes.insert({**vote, "item_id": ids["item-0"], "annotator_id": 2, "ranking": "[1, 0]",
                  "preferred": 1})
    db.table("flags").insert({"item_id": ids["bench:b"], "reason": "", "created_at": t})
    return db, ids


def test_the_migration_merges_duplicates_and_loses_nothing() -> None:
    db, ids = old_store()
    store = Store(db)
    assert store.schema_version == schema.SCHEMA_VERSION == 8
    kept = ids["item-0"]  # the dataset's copy keeps its id and its name
    assert store.item_ids() == [kept, ids["other"], ids["item-9"]]
    item = store.item(kept)
    assert (item["uid"], item["truth_ranking"], item["category"]) == ("item-0", [1, 0], "hat")
    assert item["metadata"] == {"uid": "item-0"}
    for uid in ("bench:a", "bench:b", "item-0"):
        assert store.item_by_uid(uid) == kept
    assert {r["uid"] for r in store.item_sources(kept)} == {"item-0", "bench:a", "bench:b"}
    # Judgments, votes (with the edit chain), current votes and flags moved with it.
    assert len(store.model_judgments(kept, "colour")) == 2
    history = store.human_history(kept)
    assert [(r["annotator"], r["preferred"]) for r in history] == [
        ("ana", 0), ("ana", 1), ("bob", 1)]
    assert sorted((h.annotator, h.preferred) for h in store.human_judgments(kept)) == [
        ("ana", 1), ("bob", 1)]
    assert store.flagged_items() == [kept]
    # The opposite verdict stays its own item; the other pair is untouched.
    assert store.item(ids["item-9"])["truth_ranking"] == [0, 1]
    assert store.truth_rankings() == {kept: [1, 0], ids["item-9"]: [0, 1]}
    assert store.integrity() == []
    # The history is append-only again, and a new copy cannot be written.
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        store.db.execute("UPDATE human_judgments SET item_id = ?", [ids["other"]])
    with pytest.raises(sqlite3.IntegrityError, match="derived"):
        store.db.execute("UPDATE human_current SET item_id = ?", [ids["other"]])
    assert store.add_item("add a hat", Image.new("RGB", (1, 1)), [Image.new("RGB", (1, 1))]
                          ) not in ids.values()  # other images: a new item
    assert item_content_key("add a hat", "overall", item["source_sha256"],
                            item["candidates"]) == item["content_key"]


def test_an_old_bench_only_item_leaves_the_queues() -> None:
    db, ids = old_store()
    db.table("items").update(ids["other"], {"uid": "bench:other"})  # benched, never voted on
    store = Store(db)
    assert ids["other"] in store.item_ids()
    assert store.queued_item_ids() == [ids["item-0"], ids["item-9"]]


def test_a_failing_migration_changes_nothing(monkeypatch) -> None:
    db, ids = old_store()

    def broken(*args: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(schema, "_merge_item_rows", broken)
    with pytest.raises(RuntimeError, match="disk on fire"):
        Store(db)
    assert len(schema.migrations.applied(db)) == 5
    assert "item_sources" not in db.table_names()
    assert db["items"].count == len(ids) and "content_key" not in db["items"].columns_dict
    triggers = {t.name for t in db.triggers}
    assert {"human_judgments_no_update", "human_current_no_update"} <= triggers
    monkeypatch.undo()
    assert Store(db).item_ids() == [ids["item-0"], ids["other"], ids["item-9"]]
