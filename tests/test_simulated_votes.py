"""Annotator kinds (m007), run kind ``reward``, and simulated annotators: marked, never
able to log in, left out of the human figures, deterministic, with the stated error."""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import sqlite_utils

from spatialreward.cli import main
from spatialreward.errors import InvalidJudgmentError
from storage.agreement import agreement
from storage.samples import add_sample_group, ranked_pairs
from storage.schema import SCHEMA_VERSION, migrations
from storage.simulated import simulate_votes
from storage.store import Store


def _image(rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)


def rl_store(path: Path, items: int = 31, g: int = 12, seed: int = 0) -> tuple[Store, dict]:
    """A store of ``items`` RL groups of ``g`` edits with distinct random truth scores."""
    rng = np.random.default_rng(seed)
    store = Store.open(path)
    truth: dict[int, list[float]] = {}
    for k in range(items):
        scores = [float(x) for x in rng.permutation(g) / g]
        item = add_sample_group(store, source=_image(rng), edits=[_image(rng) for _ in range(g)],
                                instruction=f"make object {k} red",
                                truth=[{"score": s, "success": s > 0.5} for s in scores])
        truth[item] = scores
    return store, truth


# -- m007 on an old store -------------------------------------------------------------------


def _old_store(path: Path) -> None:
    db = sqlite_utils.Database(path)
    migrations.apply(db, stop_before="m007_kinds")
    t = "2025-01-01T00:00:00+00:00"
    db.execute("INSERT INTO annotators (name, role, created_at) VALUES ('ana', 'admin', ?)", [t])
    for k, kind in enumerate(("bench", "rl", "rl")):
        db.execute("INSERT INTO runs (kind, name, config, status, created_at) "
                   "VALUES (?, ?, '{}', 'interrupted', ?)", [kind, f"run {k}", t])
    for step in range(3):
        db.execute("INSERT INTO metrics VALUES (2, ?, 'reward_mean', ?, ?)", [step, step / 3, t])
    db.execute("INSERT INTO rl_samples (run_id, step, instruction, images, rewards, created_at) "
               "VALUES (3, 0, 'make it red', '[]', '[]', ?)", [t])
    db.conn.commit()
    db.close()


def _schema(conn: sqlite3.Connection) -> set[tuple[str, str]]:
    return {(t, n) for t, n in conn.execute(
        "SELECT type, name FROM sqlite_master WHERE type IN ('index', 'trigger')")}


def test_m007_upgrades_an_old_store_and_keeps_every_run_metric_and_sample(tmp_path):
    path = tmp_path / "old.db"
    _old_store(path)
    before = sqlite3.connect(path)
    rows = {t: before.execute(f"SELECT * FROM {t} ORDER BY rowid").fetchall()
            for t in ("runs", "metrics", "rl_samples")}
    objects = _schema(before)
    before.close()

    store = Store.open(path)
    conn = store.db.conn
    assert store.schema_version == SCHEMA_VERSION == 8
    for table, old in rows.items():
        assert conn.execute(f"SELECT * FROM {table} ORDER BY rowid").fetchall() == old
    assert objects <= _schema(conn)  # every index and trigger is still there
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    refs = {r[2] for t in ("metrics", "rl_samples")
            for r in conn.execute(f"PRAGMA foreign_key_list({t})")}
    assert "runs" in refs
    assert store.annotator("ana")["kind"] == "human"
    run = store.create_run("reward", "mini from votes", {"base": "mini"})
    store.log_metrics(run, 0, {"holdout_accuracy": 0.8})
    assert store.run(run)["kind"] == "reward" and store.metrics(run)[0]["value"] == 0.8
    external = store.create_run("external", "a GPU trainer's reward calls", {})  # m008
    assert store.run(external)["kind"] == "external"
    with pytest.raises(sqlite3.IntegrityError):  # the CHECK still refuses other kinds
        conn.execute("INSERT INTO runs (kind, name, config, status, created_at) "
                     "VALUES ('other', 'x', '{}', 'queued', 'now')")
    with pytest.raises(sqlite3.IntegrityError):  # and metrics still need their run
        conn.execute("INSERT INTO metrics VALUES (999, 0, 'k', 1.0, 'now')")
    with pytest.raises(InvalidJudgmentError, match="run kind"):
        store.create_run("other", "x", {})
    assert store.integrity() == []
    store.close()


# -- kinds ----------------------------------------------------------------------------------


def test_a_simulated_annotator_can_never_log_in(tmp_path):
    store = Store(sqlite_utils.Database(memory=True))
    with pytest.raises(InvalidJudgmentError, match="without a password"):
        store.add_annotator("sim", kind="simulated", password="long enough pw")
    with pytest.raises(InvalidJudgmentError, match="annotator kind"):
        store.add_annotator("bot", kind="robot")
    store.add_annotator("sim", kind="simulated")
    with pytest.raises(sqlite3.IntegrityError, match="cannot have a password"):
        store.db.execute("UPDATE annotators SET password_hash = 'x' WHERE name = 'sim'")
    assert not store.check_password("sim", "")
    store.add_annotator("ana", password="correct horse")
    assert store.check_password("ana", "correct horse")
    assert store.annotator_kinds() == {"sim": "simulated", "ana": "human"}
    assert [a["name"] for a in store.annotators(kinds="human")] == ["ana"]


def test_kinds_filter_the_readers_and_agreement_leaves_simulated_votes_out(tmp_path):
    store, truth = rl_store(tmp_path / "s.db", items=3, g=2)
    item = next(iter(truth))
    store.add_annotator("ana")
    store.add_annotator("bob")
    store.add_annotator("sim", kind="simulated")
    store.add_human_judgment(item, "ana", 0)
    store.add_human_judgment(item, "bob", 0)
    store.add_human_judgment(item, "sim", 1)
    assert [j.annotator for j in store.human_judgments(kinds="human")] == ["ana", "bob"]
    assert [j.annotator_kind for j in store.human_judgments()] == ["human", "human",
                                                                   "simulated"]
    assert [v["annotator"] for v in store.current_votes(kinds="simulated")] == ["sim"]
    assert store.vote_counts(kinds="human") == [(item, 0, 0, 2)]
    assert sorted(store.vote_counts()) == [(item, 0, 0, 2), (item, 1, 0, 1)]
    people = agreement(store)
    assert people["kinds"] == ["human"] and people["left_out"] == {"simulated": 1}
    assert {a["annotator"] for a in people["per_annotator"]} == {"ana", "bob"}
    assert people["human_ceiling"]["accuracy"] == 1.0  # sim's dissent is not counted
    everyone = agreement(store, kinds="all")
    assert everyone["left_out"] == {} and len(everyone["per_annotator"]) == 3
    assert everyone["human_ceiling"]["accuracy"] < 1.0


# -- simulated votes ------------------------------------------------------------------------


def _votes(store: Store, name: str) -> list[tuple[int, str]]:
    return sorted((j.item_id, json.dumps(j.ranking)) for j in store.human_judgments(
        annotator=name))


def test_simulated_votes_have_the_error_rate_are_deterministic_and_marked(tmp_path):
    store, truth = rl_store(tmp_path / "s.db")  # 31 groups of 12: 2,046 pairs
    counts = simulate_votes(store, annotator="sim-10", error=0.1, queue="rl_samples", n=2000,
                            seed=0)
    assert counts["votes"] == 2000 and counts["available"] == 31 * 66
    wrong = 0
    for j in store.human_judgments(annotator="sim-10"):
        ((better, worse),) = ranked_pairs([list(g) for g in j.ranking])  # one pair each
        wrong += truth[j.item_id][better] < truth[j.item_id][worse]
        assert j.annotator_kind == "simulated"
    assert wrong == counts["flipped"]
    sd = math.sqrt(0.1 * 0.9 / 2000)
    assert abs(wrong / 2000 - 0.1) < 4 * sd, wrong  # within binomial noise
    # The same seed votes the same way; another seed does not.
    simulate_votes(store, annotator="sim-b", error=0.1, n=2000, seed=0)
    simulate_votes(store, annotator="sim-c", error=0.1, n=2000, seed=1)
    assert _votes(store, "sim-b") == _votes(store, "sim-10") != _votes(store, "sim-c")
    # A second run skips what it voted: only the 46 pairs left are new.
    again = simulate_votes(store, annotator="sim-10", error=0.1, n=2000, seed=0)
    assert (again["votes"], again["skipped"]) == (46, 2000)
    assert len({(i, r) for i, r in _votes(store, "sim-10")}) == 2046
    # Marked simulated: not one of them counts as a person.
    assert store.human_judgments(kinds="human") == []
    report = agreement(store)
    assert report["left_out"] == {"simulated": 2046 + 2000 + 2000}
    assert report["per_annotator"] == []
    store.close()


def test_a_perfect_simulated_annotator_follows_gold_rankings_and_ties(tmp_path):
    rng = np.random.default_rng(1)
    store = Store.open(tmp_path / "g.db")
    rankings = {}
    for k, ranking in enumerate(([1, 0], [0, 1], [[0, 1]], [2, [0, 1]])):
        n = 3 if k == 3 else 2
        item = store.add_item(f"edit {k}", _image(rng), [_image(rng) for _ in range(n)],
                              truth_ranking=ranking)
        rankings[item] = ranking
    counts = simulate_votes(store, annotator="oracle", error=0.0, queue="gold", n=100)
    assert (counts["votes"], counts["ties"], counts["flipped"]) == (4, 1, 0)
    got = {j.item_id: j for j in store.human_judgments(annotator="oracle")}
    ids = list(rankings)
    assert got[ids[0]].preferred == 1 and got[ids[1]].preferred == 0
    assert got[ids[2]].preferred is None  # a tie in the truth is a tie vote
    assert got[ids[3]].ranking == ((2,), (0, 1))  # 3 candidates: the whole truth ranking
    store.add_annotator("ana")
    with pytest.raises(InvalidJudgmentError, match="human annotator"):
        simulate_votes(store, annotator="ana", queue="gold")
    store.close()


def test_simulate_votes_and_agreement_kind_from_the_command_line(tmp_path, capsys):
    path = tmp_path / "c.db"
    store, _ = rl_store(path, items=2, g=5)
    store.close()
    assert main(["db", "simulate-votes", "--db", str(path), "--annotator", "sim-10",
                 "--error", "0.1", "--queue", "rl-samples", "--n", "15", "--seed", "3"]) == 0
    assert "15 votes" in capsys.readouterr().out
    assert main(["db", "agreement", "--db", str(path)]) == 0
    assert "left out: 15 simulated votes" in capsys.readouterr().out
    assert main(["db", "agreement", "--db", str(path), "--kind", "all", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["kinds"] == "all" and report["pair_votes"] == 15
    assert main(["db", "simulate-votes", "--db", str(path), "--error", "1.5"]) == 2
    assert "error must be a probability" in capsys.readouterr().err


def test_a_tie_margin_calls_near_equal_edits_a_tie(tmp_path):
    store, truth = rl_store(tmp_path / "s.db")
    counts = simulate_votes(store, annotator="sim-0", error=0.0, n=500, seed=3, tie_margin=0.2)
    close = 0
    for j in store.human_judgments(annotator="sim-0"):
        groups = [list(g) for g in j.ranking]
        if len(groups) == 1:  # a tie: both candidates in one group
            i, k = groups[0]
            assert abs(truth[j.item_id][i] - truth[j.item_id][k]) < 0.2
            close += 1
        else:
            ((better, worse),) = ranked_pairs(groups)
            assert truth[j.item_id][better] - truth[j.item_id][worse] >= 0.2
    assert close == counts["ties"] > 0 and counts["votes"] == 500
    with pytest.raises(InvalidJudgmentError, match="tie_margin"):
        simulate_votes(store, annotator="sim-0", tie_margin=1.5)
    store.close()
