"""The judgment store: schema, append-only history, errors, concurrency, crashes."""

from __future__ import annotations

import io
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest
import sqlite_utils
from PIL import Image

from spatialreward.errors import (
    ImageError,
    InvalidJudgmentError,
    NotYourJudgmentError,
    UnknownAnnotatorError,
    UnknownItemError,
)
from spatialreward.judgment import Judgment
from storage.schema import SCHEMA_VERSION
from storage.store import Store

ROOT = Path(__file__).resolve().parents[1]


def tiny(seed: int, size: int = 24) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8)


def png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store.open(tmp_path / "studio.db")
    yield s
    s.close()


def add_item(store: Store, seed: int = 0, n: int = 2, **kw) -> int:
    return store.add_item(f"make item {seed} blue", tiny(seed),
                          [tiny(seed * 10 + k + 1) for k in range(n)], **kw)


def counts(store: Store) -> dict[str, int]:
    return store.stats()["tables"]


# -- schema and settings ------------------------------------------------------------


def test_open_applies_migrations_once_and_sets_pragmas(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "studio.db"
    s = Store.open(path)
    assert s.schema_version == SCHEMA_VERSION == 8
    assert s.db.journal_mode == "wal"
    assert s.db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert s.db.execute("PRAGMA busy_timeout").fetchone()[0] >= 1000
    assert s.db.execute("PRAGMA recursive_triggers").fetchone()[0] == 1
    s.close()
    again = Store.open(path)  # reopening applies nothing twice
    rows = list(again.db["_sqlite_migrations"].rows)
    assert [r["name"] for r in rows] == [
        "m001_initial", "m002_flags", "m003_no_replace", "m004_interrupted_runs",
        "m005_restores", "m006_content_items", "m007_kinds", "m008_external_runs"]
    again.close()


def test_an_old_store_is_upgraded_by_the_pending_migration(tmp_path: Path) -> None:
    from storage.schema import migrations

    path = tmp_path / "old.db"
    db = sqlite_utils.Database(path)
    migrations.apply(db, stop_before="m002_flags")  # a store from before flags existed
    db.close()
    s = Store.open(path)
    assert s.schema_version == SCHEMA_VERSION and "flags" in s.db.table_names()
    item = add_item(s)
    s.flag_item(item, "the model missed the second change", "ana")
    assert s.flagged_items() == [item]
    with pytest.raises(UnknownItemError):
        s.flag_item(999)


def test_store_accepts_a_database_that_is_passed_in() -> None:
    s = Store(sqlite_utils.Database(memory=True))
    item = add_item(s)
    assert s.item(item)["n_candidates"] == 2
    assert s.image_bytes(s.item(item)["source_sha256"]).startswith(b"\x89PNG")


# -- images -------------------------------------------------------------------------


def test_images_are_content_addressed_and_stored_once(store: Store, tmp_path: Path) -> None:
    data = png(tiny(1))
    a = store.put_image(data)
    b = store.put_image(data)
    c = store.put_image(tiny(1))  # the same pixels as an array: re-encoded, same PNG bytes
    assert a == b
    assert store.image_bytes(a) == data
    path = store.image_path(a)
    assert path.is_relative_to(tmp_path / "images") and path.name.startswith(a)
    assert counts(store)["images"] == len({a, c})
    jpg = io.BytesIO()
    Image.fromarray(tiny(2)).save(jpg, format="JPEG")
    sha = store.put_image(jpg.getvalue())
    assert store.image_path(sha).suffix == ".jpeg"
    assert store.image_bytes(sha) == jpg.getvalue()  # kept byte for byte, never re-encoded


def test_non_images_are_refused_before_anything_is_written(store: Store) -> None:
    before = counts(store)
    with pytest.raises(ImageError):
        store.put_image(b"not an image at all")
    with pytest.raises(ImageError):
        store.add_item("x", b"GIF89a-broken", [png(tiny(1))])
    assert counts(store) == before


# -- human judgments: append-only history -------------------------------------------


def test_edit_and_undo_write_new_rows_and_keep_history(store: Store) -> None:
    item = add_item(store)
    store.add_annotator("ann")
    first = store.add_human_judgment(item, "ann", 0, comment="first")
    edit = store.add_human_judgment(item, "ann", "tie", supersedes=first, comment="edit")
    (current,) = store.human_judgments(item)
    assert current.id == edit and current.label == "tie" and current.supersedes == first
    # Undoing the edit brings the first vote back (a new row), undoing that retracts it.
    restored = store.undo_human_judgment(edit, "ann")
    (current,) = store.human_judgments(item)
    assert (current.id, current.label, current.comment) == (restored, "0", "first")
    undo = store.undo_human_judgment(restored, "ann")
    assert store.human_judgments(item) == []
    history = store.human_judgments(item, history=True)
    assert [(h.id, h.kind, h.supersedes, h.restores) for h in history] == [
        (first, "judgment", None, None), (edit, "judgment", first, None),
        (restored, "judgment", edit, first), (undo, "retraction", restored, None)]
    # A superseded row cannot be edited again (that would fork the history).
    with pytest.raises(InvalidJudgmentError, match="already edited"):
        store.add_human_judgment(item, "ann", 1, supersedes=first)


def test_history_cannot_be_rewritten_even_with_raw_sql(store: Store) -> None:
    item = add_item(store)
    store.add_annotator("ann")
    jid = store.add_human_judgment(item, "ann", 1)
    for sql in ("UPDATE human_judgments SET preferred = 0", "DELETE FROM human_judgments"):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            store.db.execute(sql)
    assert store.human_judgments(item)[0].id == jid
    assert store.human_judgments(item)[0].preferred == 1


def test_one_annotator_cannot_touch_anothers_rows(store: Store) -> None:
    item = add_item(store)
    store.add_annotator("ann")
    store.add_annotator("bob")
    jid = store.add_human_judgment(item, "ann", 0)
    with pytest.raises(NotYourJudgmentError, match="belongs to 'ann'"):
        store.add_human_judgment(item, "bob", 1, supersedes=jid)
    with pytest.raises(NotYourJudgmentError):
        store.undo_human_judgment(jid, "bob")
    # The trigger refuses it too, for writers that bypass the Python checks.
    bob = store.annotator_id("bob")
    with pytest.raises(sqlite3.IntegrityError, match="only your own judgment"):
        store.db.execute("INSERT INTO human_judgments (item_id, annotator_id, kind, both_bad, "
                         "supersedes, created_at) VALUES (?, ?, 'judgment', 0, ?, 'now')",
                         [item, bob, jid])
    assert [h.annotator for h in store.human_judgments(item)] == ["ann"]


@pytest.mark.parametrize("preference, ranking, preferred, both_bad", [
    (1, ((1,), (0, 2)), 1, False),
    ("tie", ((0, 1, 2),), None, False),
    ("both_bad", ((0, 1, 2),), None, True),
    ([2, [0, 1]], ((2,), (0, 1)), 2, False),
    ([[0, 2], 1], ((0, 2), (1,)), None, False),
])
def test_preferences_in_every_form(store: Store, preference, ranking, preferred,
                                   both_bad) -> None:
    item = add_item(store, n=3)
    store.add_annotator("ann")
    store.add_human_judgment(item, "ann", preference, seconds_spent=12.5,
                             scores={1: {"instruction": 7, "quality": 9.5}},
                             regions=[{"candidate": 1, "bbox_2d": [10, 20, 300, 400],
                                       "label": "mug"}])
    (h,) = store.human_judgments(item)
    assert (h.ranking, h.preferred, h.both_bad) == (ranking, preferred, both_bad)
    assert h.scores == {1: {"instruction": 7.0, "quality": 9.5}}
    assert h.regions == [{"candidate": 1, "bbox_2d": [10, 20, 300, 400], "label": "mug"}]
    assert h.seconds_spent == 12.5


@pytest.mark.parametrize("kwargs, error, message", [
    ({"item_id": 999}, UnknownItemError, "no item 999"),
    ({"annotator": "nobody"}, UnknownAnnotatorError, "register one first"),
    ({"preference": 2}, InvalidJudgmentError, "not a candidate"),
    ({"preference": "maybe"}, InvalidJudgmentError, "invalid preference"),
    ({"preference": True}, InvalidJudgmentError, "invalid preference"),
    ({"preference": [0, 0]}, InvalidJudgmentError, "invalid ranking"),
    ({"scores": {0: {"overall": 11}}}, InvalidJudgmentError, "0..10"),
    ({"scores": {0: {"vibes": 5}}}, InvalidJudgmentError, "unknown dimension"),
    ({"scores": {5: {"overall": 5}}}, InvalidJudgmentError, "no candidate"),
    ({"regions": [{"candidate": 0, "bbox_2d": [500, 0, 100, 10]}]}, InvalidJudgmentError,
     "x1 < x2"),
    ({"regions": [{"candidate": 0}]}, InvalidJudgmentError, "needs bbox_2d"),
    ({"seconds_spent": -1}, InvalidJudgmentError, "seconds_spent"),
    ({"supersedes": 12345}, UnknownItemError, "no human judgment"),
])
def test_bad_judgments_get_named_errors_and_write_nothing(store: Store, kwargs, error,
                                                          message) -> None:
    item = add_item(store)
    store.add_annotator("ann")
    store.add_human_judgment(item, "ann", 0)
    before = counts(store)
    args = {"item_id": item, "annotator": "ann", "preference": 1} | kwargs
    with pytest.raises(error, match=message):
        store.add_human_judgment(args.pop("item_id"), args.pop("annotator"),
                                 args.pop("preference"), **args)
    assert counts(store) == before


def test_bad_items_get_named_errors(store: Store) -> None:
    with pytest.raises(InvalidJudgmentError, match="non-empty instruction"):
        store.add_item("  ", tiny(1), [tiny(2)])
    with pytest.raises(InvalidJudgmentError, match="at least one candidate"):
        store.add_item("x", tiny(1), [])
    with pytest.raises(InvalidJudgmentError, match="dimension"):
        store.add_item("x", tiny(1), [tiny(2)], dimension="vibes")
    with pytest.raises(InvalidJudgmentError, match="invalid ranking"):
        store.add_item("x", tiny(1), [tiny(2), tiny(3)], truth_ranking=[0, 5])
    assert counts(store)["items"] == 0


def test_a_batch_with_one_bad_row_writes_none(store: Store) -> None:
    item = add_item(store)
    store.add_annotator("ann")
    good = {"item_id": item, "annotator": "ann", "preference": 0}
    with pytest.raises(InvalidJudgmentError):
        store.add_human_judgments([good, good, good | {"preference": 7}])
    assert counts(store)["human_judgments"] == 0
    assert len(store.add_human_judgments([good, good])) == 2


def test_passwords_are_argon2_hashes(store: Store) -> None:
    store.add_annotator("ann", role="admin", password="correct horse")
    row = store.db.execute("SELECT password_hash FROM annotators").fetchone()
    assert row[0].startswith("$argon2id$") and "correct horse" not in row[0]
    assert store.check_password("ann", "correct horse")
    assert not store.check_password("ann", "wrong")
    assert not store.check_password("nobody", "correct horse")
    with pytest.raises(InvalidJudgmentError, match="role"):
        store.add_annotator("eve", role="root")
    with pytest.raises(InvalidJudgmentError, match="already exists"):
        store.add_annotator("ann")


# -- model judgments ----------------------------------------------------------------


class CountingBackend:
    name = "counting"

    def __init__(self, version: str) -> None:
        self.version = version
        self.calls = 0

    def judge(self, source, edited, instruction, evidence=None) -> Judgment:
        self.calls += 1
        return Judgment(status="ok", sc=(20.0, 18.0), pq=(22.0, 21.0), backend=self.name,
                        backend_version=self.version)


def test_rejudging_with_the_same_backend_version_reuses_stored_judgments(store: Store
                                                                         ) -> None:
    item = add_item(store, n=3)
    v1 = CountingBackend("v1")
    first = store.judge_item(item, v1)
    again = store.judge_item(item, v1)
    assert v1.calls == 3 and first == again
    row = store.db.execute("SELECT overall, n_regions, latency_ms FROM model_judgments").fetchone()
    assert row[0] == pytest.approx(first[0].overall) and row[1] == 0 and row[2] >= 0
    v2 = CountingBackend("v2")  # new weights: judged again
    store.judge_item(item, v2)
    assert v2.calls == 3 and counts(store)["model_judgments"] == 6


# -- runs ---------------------------------------------------------------------------


def test_runs_metrics_and_rl_samples(store: Store) -> None:
    run = store.create_run("rl", "grpo-demo", {"lr": 1e-4}, out_dir="data/runs/x")
    store.update_run(run, status="running", pid=os.getpid())
    store.log_metrics(run, 0, {"reward": 0.25, "loss": 1.0})
    store.log_metrics(run, 1, {"reward": 0.5})
    store.add_rl_sample(run, 1, "make it red", tiny(1), [tiny(2), tiny(3)], [0.1, 0.9])
    store.update_run(run, status="done")
    info = store.run(run)
    assert info["status"] == "done" and info["config"] == {"lr": 1e-4}
    assert info["started_at"] <= info["finished_at"]
    assert [m["value"] for m in store.metrics(run, "reward")] == [0.25, 0.5]
    (sample,) = store.rl_samples(run)
    assert sample["rewards"] == [0.1, 0.9] and len(sample["images"]) == 2
    with pytest.raises(UnknownItemError):
        store.log_metrics(999, 0, {"x": 1})
    with pytest.raises(InvalidJudgmentError):
        store.update_run(run, status="exploded")


# -- concurrency and crashes --------------------------------------------------------

WRITER = textwrap.dedent("""
    import sys
    from storage.store import Store
    db, item, who, n = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    s = Store.open(db)
    print("ready", flush=True)
    for k in range(n):
        s.add_human_judgment(item, who, k % 2, comment=f"{who}-{k}")
""")


def test_threads_and_processes_write_concurrently_without_losing_a_row(tmp_path: Path
                                                                       ) -> None:
    db = tmp_path / "studio.db"
    store = Store.open(db)
    item = add_item(store)
    for k in range(4):
        store.add_annotator(f"proc{k}")
    for k in range(8):
        store.add_annotator(f"thread{k}")
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(db), str(item), f"proc{k}",
                               "400"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for k in range(4)]
    for p in procs:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    errors: list[BaseException] = []

    def write(k: int) -> None:
        try:
            for i in range(250):
                store.add_human_judgment(item, f"thread{k}", i % 2, comment=f"thread{k}-{i}")
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=write, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    assert errors == []
    comments = {r[0] for r in store.db.execute("SELECT comment FROM human_judgments")}
    expected = {f"thread{k}-{i}" for k in range(8) for i in range(250)}
    expected |= {f"proc{k}-{i}" for k in range(4) for i in range(400)}
    assert comments == expected
    assert counts(store)["human_judgments"] == 8 * 250 + 4 * 400
    # The writers really overlapped: rows of both kinds were committed in the same span.
    span = {kind: store.db.execute(
        "SELECT MIN(created_at), MAX(created_at) FROM human_judgments WHERE comment LIKE ?",
        [f"{kind}%"]).fetchone() for kind in ("thread", "proc")}
    assert span["thread"][0] < span["proc"][1] and span["proc"][0] < span["thread"][1]


KILLED = textwrap.dedent("""
    import sys, time
    from storage.store import Store
    s = Store.open(sys.argv[1])
    item = int(sys.argv[2])
    for k in range(20):
        s.add_human_judgment(item, "ann", 0, comment=f"committed-{k}")
    with s.write():
        for k in range(50):
            s.add_human_judgment(item, "ann", 1, comment=f"partial-{k}")
        print("inside", flush=True)
        time.sleep(60)
""")


def test_a_writer_killed_mid_transaction_leaves_only_committed_rows(tmp_path: Path) -> None:
    db = tmp_path / "studio.db"
    store = Store.open(db)
    item = add_item(store)
    store.add_annotator("ann")
    store.close()
    proc = subprocess.Popen([sys.executable, "-c", KILLED, str(db), str(item)],
                            env=os.environ | {"PYTHONPATH": str(ROOT)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "inside", proc.stderr.read() if proc.stderr else ""
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    store = Store.open(db)
    assert store.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert store.integrity() == []
    comments = [h.comment for h in store.human_judgments(item)]
    assert comments == [f"committed-{k}" for k in range(20)]
    # ... and the store takes writes again at once: the dead writer's lock is gone.
    store.add_human_judgment(item, "ann", 1, comment="after")
    assert counts(store)["human_judgments"] == 21


def test_backup_is_consistent_while_another_thread_writes(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "live" / "studio.db")
    item = add_item(store)
    store.add_annotator("ann")
    stop = threading.Event()

    def write() -> None:
        k = 0
        while not stop.is_set():
            store.add_human_judgment(item, "ann", k % 2, comment=str(k))
            k += 1

    t = threading.Thread(target=write)
    t.start()
    try:
        target = store.backup(tmp_path / "backup" / "studio.db")
    finally:
        stop.set()
        t.join()
    copy = Store.open(target)
    assert copy.integrity() == []
    n = copy.stats()["tables"]["human_judgments"]
    assert 0 <= n <= counts(store)["human_judgments"]
    assert copy.image_bytes(copy.item(item)["source_sha256"]) == store.image_bytes(
        store.item(item)["source_sha256"])


def test_integrity_reports_a_tampered_image_file(store: Store) -> None:
    item = add_item(store)
    sha = store.item(item)["source_sha256"]
    assert store.integrity() == []
    store.image_path(sha).write_bytes(png(tiny(99)))
    (problem,) = store.integrity()
    assert "do not match" in problem
