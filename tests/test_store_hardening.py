"""The store under attack: each test performs a finding of the security review and shows
that it now does no harm (text that is not Unicode, oversized votes, INSERT OR REPLACE,
forged histories, orphan files, forged imports, login timing)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlite_utils
from PIL import Image

from spatialreward.errors import DataImportError, InvalidJudgmentError
from spatialreward.judgment import Judgment
from storage.exchange import export_pairs, export_parquet, import_pairs, import_parquet
from storage.schema import SCHEMA_VERSION, migrations
from storage.store import (
    MAX_COMMENT_CHARS,
    MAX_INSTRUCTION_CHARS,
    MAX_LABEL_CHARS,
    MAX_NAME_CHARS,
    MAX_REGIONS,
    MIN_PASSWORD_CHARS,
    ORPHAN_MIN_AGE_S,
    Store,
    now,
)

LONE = "\ud800"  # half a UTF-16 surrogate pair: no UTF-8 encoding exists


def tiny(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (8, 8, 3), dtype=np.uint8)


def png(seed: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(tiny(seed)).save(buf, format="PNG")
    return buf.getvalue()


def add_item(store: Store, seed: int = 0, **kw: Any) -> int:
    return store.add_item(f"make item {seed} red", tiny(seed), [tiny(seed + 100),
                                                                tiny(seed + 200)], **kw)


def counts(store: Store) -> dict[str, int]:
    return store.stats()["tables"]


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store.open(tmp_path / "a" / "studio.db")
    s.add_annotator("ana")
    s.add_annotator("bob", role="researcher")
    yield s
    s.close()


def box(label: str = "", candidate: int = 0) -> dict[str, Any]:
    return {"candidate": candidate, "bbox_2d": [10, 10, 200, 200], "label": label}


def write_jsonl(path: Path, lines: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    return path


# -- 1. text that is not valid Unicode --------------------------------------------------------


def _vote(store: Store, **kw: Any) -> Any:
    return store.add_human_judgment(add_item(store), "ana", 0, **kw)


LONE_SURROGATE_WRITES = {
    "instruction": (lambda s: s.add_item(f"make it red{LONE}", tiny(1), [tiny(2)]),
                    "the instruction"),
    "category": (lambda s: add_item(s, category=LONE), "category"),
    "uid": (lambda s: add_item(s, uid=f"a{LONE}"), "uid"),
    "origin": (lambda s: add_item(s, origin_file=LONE), "origin_file"),
    "metadata value": (lambda s: add_item(s, metadata={"note": [LONE]}), r"metadata\['note'\]"),
    "metadata key": (lambda s: add_item(s, metadata={LONE: 1}), "a key of metadata"),
    "comment": (lambda s: _vote(s, comment=f"ok{LONE}"), "the comment"),
    "region label": (lambda s: _vote(s, regions=[box(), box(LONE)]), "label of region 1"),
    "annotator name": (lambda s: s.add_annotator(f"eve{LONE}"), "the annotator name"),
    "flag reason": (lambda s: s.flag_item(add_item(s), f"wrong{LONE}"), "the flag reason"),
    "rl instruction": (lambda s: s.add_rl_sample(s.create_run("rl", "r", {}), 0, LONE,
                                                 None, [tiny(3)], [0.5]), "RL sample"),
}


@pytest.mark.parametrize("case", list(LONE_SURROGATE_WRITES))
def test_a_lone_surrogate_is_refused_naming_the_field(store: Store, case: str) -> None:
    write, field = LONE_SURROGATE_WRITES[case]
    if case in ("comment", "region label", "flag reason"):
        add_item(store)  # the item the write uses exists already: only the text is new
    before = counts(store)
    with pytest.raises(InvalidJudgmentError, match=f"{field}.*lone surrogate") as info:
        write(store)
    assert "U+D800" in str(info.value) and "remove it" in str(info.value)
    str(info.value).encode("utf-8")  # the message itself can be shown anywhere
    after = counts(store)
    assert {k: v for k, v in after.items() if k != "runs"} == {
        k: v for k, v in before.items() if k != "runs"}


def _store_with_a_lone_surrogate(store: Store) -> int:
    """Rows as a store written before the check holds them (raw SQL: JSON escapes)."""
    item = add_item(store, uid="item-1")
    store.db.execute(
        "INSERT INTO human_judgments (item_id, annotator_id, kind, ranking, preferred, "
        "both_bad, regions, comment, created_at) VALUES (?, ?, 'judgment', '[0, 1]', 0, 0, "
        "?, '', ?)", [item, store.annotator_id("ana"),
                      '[{"candidate": 0, "bbox_2d": [1, 2, 30, 40], "label": "cup\\ud800"}]',
                      now()])
    store.db.execute("UPDATE items SET metadata = ? WHERE id = ?", ['{"note": "x\\udc80"}', item])
    return item


def test_export_survives_a_lone_surrogate_already_stored(store: Store, tmp_path: Path) -> None:
    _store_with_a_lone_surrogate(store)
    assert export_pairs(store, tmp_path / "out") == 1
    (line,) = (tmp_path / "out" / "pairs.jsonl").read_text(encoding="utf-8").splitlines()
    row = json.loads(line)
    assert row["human_judgments"][0]["regions"][0]["label"] == "cup\ufffd"
    assert row["metadata"] == {"note": "x\ufffd"}
    assert export_parquet(store, tmp_path / "out.parquet") == 1
    (prow,) = pq.read_table(tmp_path / "out.parquet").to_pylist()
    assert json.loads(prow["human_judgments"])[0]["regions"][0]["label"] == "cup\ufffd"
    with Store.open(tmp_path / "b" / "studio.db") as fresh:  # and the export imports again
        assert import_parquet(fresh, tmp_path / "out.parquet")["human_judgments"] == 1
        assert fresh.human_judgments()[0].regions[0]["label"] == "cup\ufffd"


def test_import_refuses_a_lone_surrogate_naming_the_line(store: Store, tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    for k in range(3):
        (tmp_path / "in" / f"{k}.png").write_bytes(png(50 + k))
    line = {"id": "x", "instruction": "edit", "source": "0.png",
            "candidates": ["1.png", "2.png"]}
    vote = {"annotator": "ana", "ranking": [0, 1], "created_at": "2025-01-02T03:04:05+00:00",
            "comment": f"fine{LONE}"}
    path = write_jsonl(tmp_path / "in" / "pairs.jsonl",
                       [line, {**line, "id": "y", "human_judgments": [vote]}])
    before = counts(store)
    with pytest.raises(DataImportError, match=f"{path}:2: .*comment.*lone surrogate"):
        import_pairs(store, path)
    assert counts(store) == before


# -- 2. resource bounds -----------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, limit", [
    ({"comment": "x" * (MAX_COMMENT_CHARS + 1)}, MAX_COMMENT_CHARS),
    ({"regions": [box()] * (MAX_REGIONS + 1)}, MAX_REGIONS),
    ({"regions": [box("y" * (MAX_LABEL_CHARS + 1))]}, MAX_LABEL_CHARS),
])
def test_oversized_votes_are_refused_with_the_limit(store: Store, kwargs: dict[str, Any],
                                                    limit: int) -> None:
    item = add_item(store)
    with pytest.raises(InvalidJudgmentError, match=f"{limit:,}"):
        store.add_human_judgment(item, "ana", 0, **kwargs)
    assert counts(store)["human_judgments"] == 0
    at_limit = {"comment": "x" * MAX_COMMENT_CHARS, "regions": [box("y" * MAX_LABEL_CHARS)]
                * MAX_REGIONS}
    store.add_human_judgment(item, "ana", 0, **at_limit)  # exactly at the limits: stored
    assert len(store.human_judgments(item)[0].regions or []) == MAX_REGIONS


def test_instructions_and_names_are_capped(store: Store) -> None:
    with pytest.raises(InvalidJudgmentError, match=f"the instruction .*{MAX_INSTRUCTION_CHARS:,}"):
        store.add_item("x" * (MAX_INSTRUCTION_CHARS + 1), tiny(1), [tiny(2)])
    with pytest.raises(InvalidJudgmentError, match=f"{MAX_NAME_CHARS:,}"):
        store.add_annotator("n" * (MAX_NAME_CHARS + 1))
    assert counts(store)["items"] == 0 and counts(store)["annotators"] == 2
    assert store.item(store.add_item(" " + "x" * MAX_INSTRUCTION_CHARS + " ", tiny(1),
                                     [tiny(2)]))["instruction"] == "x" * MAX_INSTRUCTION_CHARS


def test_a_huge_instruction_imports_nothing(store: Store, tmp_path: Path) -> None:
    """The 5 MB instruction of the review, in both formats: refused, naming the line or row."""
    add_item(store, uid="keep")
    export_parquet(store, tmp_path / "good.parquet")
    table = pq.read_table(tmp_path / "good.parquet")
    big = "y" * 5_000_000
    export_pairs(store, tmp_path / "out")
    (row,) = [json.loads(x) for x in (tmp_path / "out" / "pairs.jsonl").read_text().splitlines()]
    path = write_jsonl(tmp_path / "out" / "pairs.jsonl",
                       [{**row, "id": "new"}, {**row, "id": "huge", "instruction": big}])
    with Store.open(tmp_path / "b" / "studio.db") as fresh:
        with pytest.raises(DataImportError, match=f"{path}:2: .*{MAX_INSTRUCTION_CHARS:,}"):
            import_pairs(fresh, path)
        assert counts(fresh)["items"] == 0
        rows = table.to_pylist()
        rows = [{**rows[0], "id": "new"}, {**rows[0], "id": "huge", "instruction": big}]
        pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), tmp_path / "big.parquet")
        with pytest.raises(DataImportError, match=f"row 1: .*{MAX_INSTRUCTION_CHARS:,}"):
            import_parquet(fresh, tmp_path / "big.parquet")
        assert counts(fresh)["items"] == 0 and counts(fresh)["images"] == 0


# -- 3. append-only against INSERT OR REPLACE -------------------------------------------------


REPLACE_VOTE = ("INSERT OR REPLACE INTO human_judgments (id, item_id, annotator_id, kind, "
                "ranking, preferred, both_bad, created_at) VALUES (?, ?, ?, 'judgment', "
                "'[1, 0]', 1, 0, 'now')")


def _one_vote(store: Store, seed: int = 0) -> tuple[int, int]:
    item = add_item(store, seed)
    return item, store.add_human_judgment(item, "ana", 0)


def test_insert_or_replace_from_another_connection_cannot_flip_a_vote(store: Store) -> None:
    """The review's attack, from a plain connection as the ``sqlite3`` shell opens one
    (recursive_triggers off, so no DELETE trigger fires): m003's trigger refuses it."""
    item, jid = _one_vote(store)
    assert store.data_dir is not None
    shell = sqlite3.connect(store.data_dir / "studio.db")
    try:
        assert shell.execute("PRAGMA recursive_triggers").fetchone()[0] == 0
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            shell.execute(REPLACE_VOTE, [jid, item, store.annotator_id("ana")])
        shell.rollback()
    finally:
        shell.close()
    (vote,) = store.human_judgments(item, history=True)
    assert (vote.id, vote.preferred) == (jid, 0)
    assert store.integrity() == []


def test_recursive_triggers_refuse_it_even_without_the_m003_trigger(tmp_path: Path) -> None:
    """Defence in depth: a Store turns recursive_triggers on for any Database it is given,
    so the rows OR REPLACE deletes fire the append-only DELETE trigger."""
    conn = sqlite3.connect(tmp_path / "studio.db")
    s = Store(sqlite_utils.Database(conn, recursive_triggers=False), data_dir=tmp_path)
    s.add_annotator("ana")
    item, jid = _one_vote(s)
    s.db.execute("DROP TRIGGER human_judgments_no_replace")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        s.db.execute(REPLACE_VOTE, [jid, item, s.annotator_id("ana")])
    assert [(h.id, h.preferred) for h in s.human_judgments(item, history=True)] == [(jid, 0)]
    s.close()


def test_insert_or_replace_cannot_take_over_a_supersedes(store: Store) -> None:
    item, jid = _one_vote(store)
    edit = store.add_human_judgment(item, "ana", 1, supersedes=jid)
    store.db.execute("PRAGMA recursive_triggers = OFF")  # as in another connection
    with pytest.raises(sqlite3.IntegrityError, match="already superseded"):
        store.db.execute("INSERT OR REPLACE INTO human_judgments (item_id, annotator_id, kind, "
                         "both_bad, supersedes, created_at) VALUES (?, ?, 'retraction', 0, ?, "
                         "'now')", [item, store.annotator_id("ana"), jid])
    assert [h.id for h in store.human_judgments(item)] == [edit]


@pytest.mark.parametrize("sql", [
    "UPDATE human_current SET preferred = 1",
    "DELETE FROM human_current",
    "INSERT OR REPLACE INTO human_current (judgment_id, item_id, preferred, both_bad) "
    "SELECT judgment_id, item_id, 1, both_bad FROM human_current",
])
def test_the_current_votes_cannot_be_forged(store: Store, sql: str) -> None:
    for seed, pragma in enumerate(("ON", "OFF")):
        store.db.execute(f"PRAGMA recursive_triggers = {pragma}")
        item, jid = _one_vote(store, seed)
        with pytest.raises(sqlite3.IntegrityError, match="human_current is derived"):
            store.db.execute(sql)
        assert [(h.id, h.preferred) for h in store.human_judgments(item)] == [(jid, 0)]
    assert store.integrity() == []


def test_edits_and_undos_still_keep_human_current(store: Store) -> None:
    item, jid = _one_vote(store)
    edit = store.add_human_judgment(item, "ana", 1, supersedes=jid)
    restored = store.undo_human_judgment(edit, "ana")
    assert [(h.id, h.preferred) for h in store.human_judgments(item)] == [(restored, 0)]
    store.undo_human_judgment(restored, "ana")
    again = store.add_human_judgment(item, "ana", "tie")
    assert [h.id for h in store.human_judgments(item)] == [again]
    assert store.integrity() == []


def test_an_old_store_gets_the_new_triggers(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    db = sqlite_utils.Database(path)
    migrations.apply(db, stop_before="m003_no_replace")
    db.close()
    with Store.open(path) as s:
        assert s.schema_version == SCHEMA_VERSION
        s.add_annotator("ana")
        item, jid = _one_vote(s)
        s.db.execute("PRAGMA recursive_triggers = OFF")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            s.db.execute(REPLACE_VOTE, [jid, item, s.annotator_id("ana")])


# -- 4. integrity: edit histories and orphan files --------------------------------------------


def _forge(store: Store, *rows: tuple[Any, ...]) -> None:
    """Insert human judgments past every check (a hand-edited copy of the database): the
    triggers dropped, except the one that keeps human_current. A row: (id or None, item,
    annotator, kind, supersedes)."""
    for (name,) in store.db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger' "
                                    "AND name != 'human_judgments_current'").fetchall():
        store.db.execute(f"DROP TRIGGER {name}")
    for row in rows:
        store.db.execute("INSERT INTO human_judgments (id, item_id, annotator_id, kind, "
                         "ranking, preferred, both_bad, supersedes, created_at) VALUES "
                         "(?, ?, ?, ?, '[0, 1]', 0, 0, ?, 'now')", list(row))


# name: (forged rows from (item, other item, ana, bob, ana's vote), the problem reported)
FORGERIES = {
    "another annotator's row": (lambda i, j, a, b, v: [(None, i, b, "judgment", v)],
                                "human judgment 2 supersedes 1 of another annotator"),
    "another item's row": (lambda i, j, a, b, v: [(None, j, a, "judgment", v)],
                           "human judgment 2 supersedes 1 of another item"),
    "a retraction of nothing": (lambda i, j, a, b, v: [(None, i, a, "retraction", None)],
                                "human judgment 2 is a retraction that supersedes nothing"),
    "a later row": (lambda i, j, a, b, v: [(1000, i, a, "judgment", None),
                                           (500, i, a, "judgment", 1000)],
                    "human judgment 500 supersedes 1000, a later row"),
    "a retraction": (lambda i, j, a, b, v: [(None, i, a, "retraction", v),
                                            (None, i, a, "judgment", 2)],
                     "human judgment 3 supersedes 2, a retraction"),
}


@pytest.mark.parametrize("case", list(FORGERIES))
def test_integrity_reports_a_forged_edit_history(store: Store, case: str) -> None:
    item, other = add_item(store, 0), add_item(store, 1)
    vote = store.add_human_judgment(item, "ana", 0)
    assert vote == 1 and store.integrity() == []
    make, problem = FORGERIES[case]
    _forge(store, *make(item, other, store.annotator_id("ana"), store.annotator_id("bob"),
                        vote))
    (found,) = store.integrity()
    assert found.startswith(problem) and "restore the store from a backup" in found


def test_integrity_reports_current_votes_that_the_history_does_not_imply(store: Store) -> None:
    item = add_item(store)
    votes = [store.add_human_judgment(item, name, 0) for name in ("ana", "bob")]
    _forge(store)
    store.db.execute("UPDATE human_current SET preferred = 1 WHERE judgment_id = ?", [votes[1]])
    (found,) = store.integrity()
    assert found.startswith(f"human_current disagrees with human_judgments for 1 judgment(s) "
                            f"({votes[1]})")
    store.db.execute("DELETE FROM human_current")
    (found,) = store.integrity()
    assert f"for 2 judgment(s) ({votes[0]}, {votes[1]})" in found


def _age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_orphan_image_files_are_reported_and_removed(store: Store) -> None:
    assert store.data_dir is not None
    item = add_item(store)
    kept = [store.image_path(sha) for sha in store.item(item)["candidates"]]
    _age(kept[0], 2 * ORPHAN_MIN_AGE_S)  # an old file that a row references: never touched
    old = store.data_dir / "images" / "ab" / ("ab" * 32 + ".png")  # a killed import's file
    old.parent.mkdir(parents=True, exist_ok=True)
    old.write_bytes(png(7))
    _age(old, 2 * ORPHAN_MIN_AGE_S)
    young = store.data_dir / "images" / "cd" / ".cd.png.123.456"  # a write in flight
    young.parent.mkdir(parents=True, exist_ok=True)
    young.write_bytes(b"half an image")
    (found,) = store.integrity()
    size = old.stat().st_size
    assert found.startswith(f"orphan image files: 1 file(s), {size:,} bytes")
    assert "images/ab/abab" in found and "--remove-orphans" in found
    assert store.remove_orphan_images() == [(old.relative_to(store.data_dir).as_posix(), size)]
    assert not old.exists() and young.exists() and all(p.exists() for p in kept)
    assert store.integrity() == []
    assert store.orphan_images() == [("images/cd/.cd.png.123.456", len(b"half an image"))]


def test_an_image_whose_file_an_orphan_sweep_removed_is_written_again(store: Store,
                                                                     monkeypatch) -> None:
    """put_image finds an old orphan file already in place, but a sweep takes it before
    the row is written: the file is checked again under the write lock."""
    assert store.data_dir is not None
    data = png(11)
    sha = hashlib.sha256(data).hexdigest()
    rel = f"images/{sha[:2]}/{sha}.png"
    (store.data_dir / rel).parent.mkdir(parents=True, exist_ok=True)
    (store.data_dir / rel).write_bytes(data)
    _age(store.data_dir / rel, 2 * ORPHAN_MIN_AGE_S)
    write = store.write

    def sweep_first() -> Any:  # another process sweeps between the file and the row
        monkeypatch.setattr(store, "write", write)
        assert store.remove_orphan_images() == [(rel, len(data))]
        return write()

    monkeypatch.setattr(store, "write", sweep_first)
    assert store.put_image(data) == sha
    assert store.image_bytes(sha) == data and store.integrity() == []


def test_a_failed_import_removes_its_files_under_the_lock_so_a_concurrent_put_keeps_its_image(
        store: Store, tmp_path: Path, monkeypatch) -> None:
    """A failed import deletes the image files it added. Another writer (here a second
    connection, as another process would hold) storing the same image meanwhile waits for
    the write lock; it must find its file afterwards, so the deletion happens before the
    import lets go of the lock."""
    import threading

    import storage.imports as imports

    other_dir = tmp_path / "other"
    other = Store.open(other_dir / "studio.db")
    add_item(other, seed=1)
    add_item(other, seed=2)
    export_pairs(other, tmp_path / "out")
    other.close()
    shared = png(0)  # stored by the racing writer, and added by the import's first entry
    Image.open(io.BytesIO(shared)).save(tmp_path / "out" / "shared.png")
    rows = [json.loads(x) for x in (tmp_path / "out" / "pairs.jsonl").read_text().splitlines()]
    rows[0]["source"] = "shared.png"
    write_jsonl(tmp_path / "out" / "pairs.jsonl", rows)
    assert store.data_dir is not None
    second = Store.open(store.data_dir / "studio.db")
    put: dict[str, Any] = {}
    racer = threading.Thread(target=lambda: put.update(sha=second.put_image(shared)))
    real_write, calls = imports._write_entry, []
    in_transaction_at_unlink: list[bool] = []
    real_unlink = Path.unlink

    def write_then_fail(*args: Any) -> None:
        calls.append(1)
        if len(calls) == 2:  # the first entry's files are on disk: the racer starts
            racer.start()
            time.sleep(0.3)  # it finds the file, then waits for the write lock
            raise OSError("disk full")
        real_write(*args)

    def spy_unlink(self: Path, missing_ok: bool = False) -> None:
        if "images" in self.parts:
            in_transaction_at_unlink.append(store.db.conn.in_transaction)
        real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(imports, "_write_entry", write_then_fail)
    monkeypatch.setattr(Path, "unlink", spy_unlink)
    with pytest.raises(DataImportError, match="disk full; nothing was imported"):
        import_pairs(store, tmp_path / "out" / "pairs.jsonl")
    racer.join(timeout=30)
    assert not racer.is_alive()
    assert in_transaction_at_unlink and all(in_transaction_at_unlink)
    assert second.image_bytes(put["sha"]) == shared
    second.close()
    assert store.integrity() == [] and store.image_bytes(put["sha"]) == shared
    assert counts(store)["items"] == 0


# -- 5. imports cannot forge other people's votes ----------------------------------------------


def _forged_export(store: Store, tmp_path: Path) -> tuple[Path, int]:
    """bob's edit of an export: ana's vote retracted, a vote in her name, an admin
    ``mallory``, plus a new item with a model judgment (which may import)."""
    item = add_item(store, uid="item-1")
    store.add_human_judgment(item, "ana", 0)
    export_pairs(store, tmp_path / "out")
    (row,) = [json.loads(x) for x in (tmp_path / "out" / "pairs.jsonl").read_text().splitlines()]
    t = "2030-01-01T00:00:00+00:00"
    row["human_judgments"] += [
        {"id": 2, "annotator": "ana", "annotator_role": "annotator", "kind": "retraction",
         "supersedes": 1, "created_at": t},
        {"id": 3, "annotator": "ana", "annotator_role": "annotator", "ranking": [1, 0],
         "created_at": t},
        {"id": 4, "annotator": "mallory", "annotator_role": "admin", "ranking": [1, 0],
         "created_at": t}]
    judgment = Judgment(status="ok", sc=(20.0, 18.0), pq=(22.0, 21.0), backend="m",
                        backend_version="1").to_dict()
    new = {**row, "id": "item-2", "instruction": "another edit",
           "human_judgments": row["human_judgments"][:1],
           "model_judgments": [{"candidate": 1, "judgment": judgment}]}
    return write_jsonl(tmp_path / "out" / "pairs.jsonl", [row, new]), item


def test_an_import_without_human_judgments_writes_no_vote_and_no_annotator(
        store: Store, tmp_path: Path) -> None:
    path, item = _forged_export(store, tmp_path)
    before = [(h.id, h.kind, h.preferred) for h in store.human_judgments(history=True)]
    counts_ = import_pairs(store, path, human_judgments=False)
    assert counts_ == {"items": 1, "human_judgments": 0, "model_judgments": 1, "skipped": 1,
                       "dropped_human_judgments": 4 + 1}
    assert [(h.id, h.kind, h.preferred) for h in store.human_judgments(history=True)] == before
    assert [a["name"] for a in store.annotators()] == ["ana", "bob"]
    new = store.item_by_uid("item-2")
    assert store.cached_judgment(new, 1, "m", "1") is not None
    export_parquet(store, tmp_path / "all.parquet")
    with Store.open(tmp_path / "b" / "studio.db") as fresh:  # Parquet: the same
        assert import_parquet(fresh, tmp_path / "all.parquet", human_judgments=False) == {
            "items": 2, "human_judgments": 0, "model_judgments": 1, "skipped": 0,
            "dropped_human_judgments": 1}  # ana's one vote: the store dropped bob's edits
        assert fresh.annotators() == [] and counts(fresh)["human_judgments"] == 0


def test_an_import_never_changes_a_role_and_refuses_a_file_that_tries(
        store: Store, tmp_path: Path) -> None:
    path, _ = _forged_export(store, tmp_path)
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    for line in lines:
        for h in line["human_judgments"]:
            if h["annotator"] == "ana":  # an annotator in the store
                h["annotator_role"] = "admin"
    write_jsonl(path, lines)
    before = counts(store)
    with pytest.raises(DataImportError, match=f"{path}:1: annotator 'ana' is 'annotator' in "
                       "this store but 'admin' in the file; an import never changes"):
        import_pairs(store, path)
    assert counts(store) == before
    assert {a["name"]: a["role"] for a in store.annotators()} == {"ana": "annotator",
                                                                  "bob": "researcher"}
    # A file that does not say (a hand-written one) makes no claim: bob stays a researcher.
    vote = {"annotator": "bob", "ranking": [0, 1], "created_at": "2030-01-01T00:00:00+00:00"}
    import_pairs(store, write_jsonl(path, [{**lines[1], "human_judgments": [vote]}]))
    assert {a["name"]: a["role"] for a in store.annotators()} == {"ana": "annotator",
                                                                  "bob": "researcher"}
    assert [h.annotator for h in store.human_judgments(store.item_by_uid("item-2"))] == ["bob"]


# -- 6. login ------------------------------------------------------------------------------------


def test_every_login_check_costs_one_argon2_verify(store: Store, monkeypatch) -> None:
    from argon2 import PasswordHasher

    store.add_annotator("cat", password="correct horse")
    calls: list[str] = []
    real = PasswordHasher.verify

    def counting(self: PasswordHasher, hash: str, password: Any) -> bool:
        calls.append(hash)
        return real(self, hash, password)

    monkeypatch.setattr(PasswordHasher, "verify", counting)
    results = {}
    for name, password in [("nobody", "correct horse"), ("ana", "correct horse"),
                           ("cat", "wrong horse"), ("cat", "correct horse"),
                           (f"x{LONE}", "pw"), ("cat", f"x{LONE}")]:
        calls.clear()
        results[name, password] = store.check_password(name, password)
        assert len(calls) == 1 and calls[0].startswith("$argon2id$"), (name, calls)
    assert [k for k, ok in results.items() if ok] == [("cat", "correct horse")]


def test_a_short_password_is_refused_with_the_minimum(store: Store) -> None:
    with pytest.raises(InvalidJudgmentError, match=f"at least {MIN_PASSWORD_CHARS} characters"):
        store.add_annotator("cat", password="x" * (MIN_PASSWORD_CHARS - 1))
    assert [a["name"] for a in store.annotators()] == ["ana", "bob"]
    store.add_annotator("cat", password="x" * MIN_PASSWORD_CHARS)
    assert store.check_password("cat", "x" * MIN_PASSWORD_CHARS)
