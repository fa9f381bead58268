"""On-policy items: RL sample groups in the store, the RL samples queue of pairs, partial
rankings, pairwise disagreements, and the editor pushing its groups (eval-editor
--to-store, an RL run's samples_to_store)."""

from __future__ import annotations

import numpy as np
import pytest
import sqlite_utils
import torch

from spatialreward.cli import main
from spatialreward.errors import InvalidJudgmentError
from spatialreward.judgment import Judgment
from spatialreward.rl.runner import run_rl
from spatialreward.rl.tiny import save_tiny_editor, tiny_rl_config
from storage import annotate as ann
from storage import samples
from storage.agreement import disagreement_queue
from storage.store import Store

torch.set_num_threads(1)
G = 6


def _image(rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)


def _judgment(level: float) -> dict:
    return Judgment(status="ok", sc=(level, level), pq=(20.0, 20.0), backend="m",
                    backend_version="1").to_dict()


LEVELS = [2.0, 20.0, 10.0, 10.5, 24.0, 5.0]  # candidates 2 and 3: the closest scores


@pytest.fixture
def store() -> Store:
    s = Store(sqlite_utils.Database(memory=True))
    for name in ("ana", "bob"):
        s.add_annotator(name)
    return s


def group(store: Store, seed: int = 0) -> int:
    rng = np.random.default_rng(seed)
    return samples.add_sample_group(
        store, source=_image(rng), edits=[_image(rng) for _ in range(G)],
        instruction="make the cup red", judgments=[_judgment(v) for v in LEVELS],
        truth=[{"score": k / G, "success": k > 3} for k in range(G)], run_id=None, step=4,
        prompt_meta={"id": "train-7", "op": "recolor"})


def test_a_group_is_an_item_with_truth_judgments_and_no_gold_ranking(store):
    item = group(store)
    row = store.item(item)
    assert (row["n_candidates"], row["origin_dataset"], row["truth_ranking"]) == (
        G, "rl-samples", None)
    assert row["metadata"]["rl_truth"][5] == {"score": 5 / G, "success": True}
    assert row["metadata"]["step"] == 4 and row["metadata"]["prompt"]["op"] == "recolor"
    assert sorted(store.latest_model_judgments(item, "m")) == list(range(G))
    assert store.truth_rankings() == {}  # not a gold item
    assert ann.queue_items(store, "rl_samples") == [item]
    assert group(store) == item  # content-addressed: the same group is the same item
    assert "rl_samples" in ann.QUEUES
    with pytest.raises(InvalidJudgmentError, match="one per edit"):
        samples.add_sample_group(store, source=_image(np.random.default_rng(1)),
                                 edits=[_image(np.random.default_rng(k)) for k in range(3)],
                                 instruction="x", truth=[{"score": 0.5, "success": True}])
    with pytest.raises(InvalidJudgmentError, match="score must be 0..1"):
        samples.add_sample_group(store, source=_image(np.random.default_rng(1)),
                                 edits=[_image(np.random.default_rng(k)) for k in range(2)],
                                 instruction="x", truth=[{"score": 2, "success": True}] * 2)


def test_partial_rankings_only_on_items_of_more_than_four_candidates(store):
    big = group(store)
    rng = np.random.default_rng(9)
    small = store.add_item("x", _image(rng), [_image(rng) for _ in range(3)])
    jid = store.add_human_judgment(big, "ana", [4, 1])
    assert store.human_judgment(jid).ranking == ((4,), (1,))
    assert store.human_judgment(jid).preferred == 4
    with pytest.raises(InvalidJudgmentError, match="each of the 3 candidates"):
        store.add_human_judgment(small, "ana", [2, 1])
    for bad in ([3, 3], [3], [[3, 9]]):
        with pytest.raises(InvalidJudgmentError):
            store.add_human_judgment(big, "ana", bad)
    both = store.human_judgment(store.add_human_judgment(big, "ana", [[0, 1]], both_bad=True))
    assert (both.both_bad, both.preferred, both.ranking) == (True, None, ((0, 1),))


def test_the_queue_serves_the_least_sure_pair_and_records_pair_votes(store):
    item = group(store)
    first = samples.next_pair(store, "ana")
    assert first is not None and (first["item_id"], first["pair"]) == (item, [2, 3])
    assert ann.next_item(store, "ana", "rl_samples") == item
    shown = samples.shown_pair(store, "ana", item, [2, 3])
    assert sorted(shown["order"]) == [2, 3] and shown["labels"] == ["A", "B"]
    assert shown["candidates"] == [store.item(item)["candidates"][k] for k in shown["order"]]
    vote = samples.record_pair_vote(store, "ana", item, [2, 3], "B", order=shown["order"])
    stored = store.human_judgment(vote)
    assert stored.ranking == ((shown["order"][1],), (shown["order"][0],))
    nxt = samples.next_pair(store, "ana")
    assert nxt is not None and nxt["pair"] != [2, 3]  # never the same pair twice
    assert samples.next_pair(store, "bob")["pair"] == [2, 3]  # bob has not voted on it
    after = samples.next_pair(store, "ana", after=(item, nxt["pair"]))
    assert after is not None and after["pair"] != nxt["pair"]
    # Voting the same pair again is an edit of that vote, not a second vote.
    again = samples.record_pair_vote(store, "ana", item, [3, 2], "A", order=shown["order"])
    assert store.human_judgment(again).supersedes == vote
    assert len(store.human_judgments(item_id=item, annotator="ana")) == 1
    tie = store.human_judgment(samples.record_pair_vote(store, "ana", item, [0, 5], "tie"))
    assert tie.ranking == ((0, 5),) and not tie.both_bad
    with pytest.raises(InvalidJudgmentError, match="not a vote on a pair"):
        samples.record_pair_vote(store, "ana", item, [0, 5], "C")
    with pytest.raises(InvalidJudgmentError, match="two different candidates"):
        samples.record_pair_vote(store, "ana", item, [1, 1], "A")
    # Every pair voted: the queue is done with the item.
    for i in range(G):
        for j in range(i + 1, G):
            samples.record_pair_vote(store, "bob", item, [i, j], "A")
    assert samples.next_pair(store, "bob") is None
    assert ann.next_item(store, "bob", "rl_samples") is None


def test_the_disagreement_queue_covers_pairs_of_rl_groups(store):
    item = group(store)
    # The model scores candidate 4 far above 0; both people prefer 0.
    for name in ("ana", "bob"):
        order = samples.pair_order(name, item, [0, 4])
        samples.record_pair_vote(store, name, item, [0, 4], "A" if order[0] == 0 else "B")
    q = disagreement_queue(store, backend="m")
    (row,) = q["disagreements"]
    assert (row["item_id"], row["pair"], row["model_pick"], row["human_pick"]) == (
        item, [0, 4], "4", "0")
    assert row["margin"] > 0
    assert ann.queue_items(store, "disagreements") == [item]
    # Simulated votes are not people: by default they make no disagreement.
    store.add_annotator("sim", kind="simulated")
    other = group(store, seed=1)
    for name in ("sim",):
        store.add_human_judgment(other, name, [0, 4])
        store.add_human_judgment(other, name, [0, 1])
    assert [r["item_id"] for r in disagreement_queue(store, "m", min_judgments=1)[
        "disagreements"]] == [item]
    assert {r["item_id"] for r in disagreement_queue(store, "m", min_judgments=1,
                                                       kinds="all")["disagreements"]} == {
        item, other}


# -- the editor pushes its groups -----------------------------------------------------------


def test_eval_editor_to_store_puts_groups_with_truth_and_judgments(tmp_path, capsys):
    editor = save_tiny_editor(tmp_path / "editor")
    db = tmp_path / "data" / "studio.db"
    assert main(["eval-editor", "--policy", str(editor), "--n", "2", "--backend", "pixel",
                 "--steps", "2", "--judge-size", "32", "--threads", "1", "--to-store",
                 "--db", str(db), "--group-size", "5", "--noise-level", "0.7"]) == 0
    assert "stored 2 sample groups of 5 edits" in capsys.readouterr().out
    with Store.open(db) as store:
        items = store.origin_item_ids("rl-samples")
        assert len(items) == 2
        for item in items:
            row = store.item(item)
            assert row["n_candidates"] == 5 and len(set(row["candidates"])) >= 2
            truth = row["metadata"]["rl_truth"]
            assert len(truth) == 5 and all(0 <= t["score"] <= 1 for t in truth)
            assert sorted(store.latest_model_judgments(item, "pixel")) == list(range(5))
        assert samples.next_pair(store, _sim(store)) is not None


def _sim(store: Store) -> str:
    store.add_annotator("ann")
    return "ann"


def test_an_rl_run_pushes_groups_only_when_asked(tmp_path):
    editor = save_tiny_editor(tmp_path / "editor")
    db = tmp_path / "data" / "studio.db"
    db.parent.mkdir()
    off = tiny_rl_config(editor, steps=1, eval_prompts=0, out=str(tmp_path / "off"))
    assert off.samples_to_store == 0
    run_rl(off, db=db, log=lambda line: None)
    with Store.open(db) as store:
        assert store.origin_item_ids("rl-samples") == []
    on = tiny_rl_config(editor, steps=2, eval_prompts=0, group_size=5, micro_batch=10,
                        samples_to_store=2, out=str(tmp_path / "on"))
    run_rl(on, db=db, log=lambda line: None)
    with Store.open(db) as store:
        items = store.origin_item_ids("rl-samples")
        assert len(items) == 4  # 2 groups a step, 2 steps
        run = store.runs("rl")[0]["id"]
        metas = [store.item(i)["metadata"] for i in items]
        assert {m["run_id"] for m in metas} == {run}
        assert sorted(m["step"] for m in metas) == [0, 0, 1, 1]
        assert all(len(m["rl_truth"]) == 5 for m in metas)
