"""Fine-tuning Mini from the store's votes, on a tiny store whose voters contradict it.

The store holds SynthEdit test items (made here by ``synth.generate.make_item``); two
annotators rank every item's candidates in the OPPOSITE order to the shipped Mini's
scores. A fine-tune that learns from them must come to agree with them on the items it
never saw (the hold-out), which the base model gets almost all wrong.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from spatialreward.backends.mini import MiniBackend
from spatialreward.cli import main
from spatialreward.errors import ConfigError, InputError
from spatialreward.images import load_image
from spatialreward.mini.finetune import FinetuneConfig, count_votes, finetune, next_out
from spatialreward.mini.votes import (
    PairVote,
    human_ceiling,
    is_holdout,
    ranking_pairs,
    read_votes,
)
from spatialreward.synth.generate import make_item
from storage.store import Store

VOTERS = ("ann", "bob")


def contrarian_store(db: Path, n_items: int, group: int = 3) -> list[dict[str, Any]]:
    """A store in ``db`` where both VOTERS rank each item in the reverse of its ground
    truth (which Mini agrees with on ~95% of SynthEdit pairs: the votes contradict it);
    a few judgments also carry scores (contrarian too) and the target region. Returns,
    per item, its id, uid, triples and ground-truth overall scores."""
    out = []
    with Store.open(db) as store:
        for name in VOTERS:
            store.add_annotator(name)
        for k in range(n_items):
            item, source, images = make_item("test", 11, k, group)
            item_id = store.add_item(item["instruction"], source, images, uid=item["id"])
            truth = [t["overall"] for t in item["candidate_truth"]]
            worst_first = list(reversed(item["ranking"]))
            for name in VOTERS:
                extra: dict[str, Any] = {}
                if k % 4 == 0 and name == "ann":
                    extra["scores"] = {c: {"overall": round(10 - truth[c], 1)}
                                       for c in range(group)}
                    extra["regions"] = [{"candidate": int(np.argmin(truth)), "bbox_2d": list(b)}
                                        for b in item["regions"][:1]]
                store.add_human_judgment(item_id, name, worst_first, **extra)
            out.append({"id": item_id, "uid": item["id"], "instruction": item["instruction"],
                        "triples": [(load_image(source), load_image(im), item["instruction"])
                                    for im in images]})
    return out


@pytest.fixture(scope="module")
def tuned(tmp_path_factory) -> dict[str, Any]:
    """One fine-tune of the contrarian store (no replay: SynthEdit would argue for Mini)."""
    tmp = tmp_path_factory.mktemp("finetune")
    items = contrarian_store(tmp / "studio.db", 48, group=2)
    steps: list[tuple[int, int, dict[str, float]]] = []
    config = FinetuneConfig(
        db=str(tmp / "studio.db"), out_root=str(tmp / "models"), holdout=0.3, steps=30,
        batch=16, lr=1e-2, eval_every=10, replay=0.0, min_train_pairs=20, min_holdout_pairs=5)
    result = finetune(config, progress=lambda s, n, m: steps.append((s, n, m)))
    return {"result": result, "items": items, "steps": steps, "tmp": tmp, "config": config}


def test_the_loss_falls_and_every_step_is_reported(tuned) -> None:
    curve = tuned["result"]["curve"]
    assert len(curve) == 30 and all(np.isfinite(c["total"]) for c in curve)
    first = np.mean([c["bt"] for c in curve[:5]])
    last = np.mean([c["bt"] for c in curve[-5:]])
    assert last < 0.7 * first, (first, last)
    assert [s for s, _, _ in tuned["steps"]] == list(range(1, 31))
    assert all(n == 30 and "loss" in m for _, n, m in tuned["steps"])
    assert [s for s, _, m in tuned["steps"] if "holdout_accuracy" in m] == [10, 20, 30]


def test_holdout_agreement_rises_above_the_base_model(tuned) -> None:
    hold = tuned["result"]["holdout"]
    # The votes contradict Mini, so the base gets the hold-out mostly wrong.
    assert hold["before"] < 0.5
    assert hold["after"] > hold["before"] and hold["after"] > 0.5
    assert hold["ceiling"] == {"accuracy": 1.0, "pairs": hold["pairs"] // 2,
                               "comparisons": hold["pairs"]}
    assert tuned["result"]["holdout_curve"][-1]["accuracy"] == hold["after"]


def test_holdout_items_are_never_trained_on(tuned) -> None:
    result = tuned["result"]
    hold = set(result["split"]["holdout_items"])
    train = set(result["split"]["train_items"])
    assert hold and train and not hold & train
    assert set(result["trained_items"]) <= train
    assert not set(result["trained_items"]) & hold
    by_uid = {i["id"]: i["uid"] for i in tuned["items"]}
    assert hold == {i for i in by_uid if is_holdout(by_uid[i], 0.3)}


def test_the_checkpoint_loads_as_a_backend_and_judges_differently(tuned) -> None:
    out = Path(tuned["result"]["out"])
    assert out == Path(tuned["config"].out_root) / "mini-votes-v1"
    triples = tuned["items"][0]["triples"]
    before = [j.overall for j in MiniBackend().judge_many(triples)]
    after = [j.overall for j in MiniBackend(out).judge_many(triples)]
    assert after != pytest.approx(before, abs=0.05)
    meta = json.loads((out / "finetune.json").read_text())
    assert meta["base_digest"] == tuned["result"]["base_digest"]
    assert meta["votes"]["by_kind"] == {"human": meta["votes"]["pairs"]}
    assert meta["votes"]["scores"] > 0 and meta["votes"]["regions"] > 0
    assert meta["command"].startswith("python -m spatialreward train-reward --from-store")
    # The next fine-tune gets the next version.
    assert next_out(out.parent, "mini-votes").name == "mini-votes-v2"
    # Only the head learned: the pooled image features are the base's, so is its domain check.
    tuned_backend, shipped = MiniBackend(out), MiniBackend()
    assert tuned_backend.domain is not None and shipped.domain is not None
    assert tuned_backend.domain.digest == shipped.domain.digest
    j_tuned, j_shipped = (b.judge(*triples[0]) for b in (tuned_backend, shipped))
    assert j_tuned.coverage is not None and j_shipped.coverage is not None
    assert j_tuned.coverage.domain_distance == j_shipped.coverage.domain_distance


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    """A store of 6 items (2 candidates, 2 voters: 12 pair votes), for the cheap tests."""
    db = tmp_path_factory.mktemp("small") / "studio.db"
    contrarian_store(db, 6, group=2)
    return db


def small_config(db: Path, **kw: Any) -> FinetuneConfig:
    return FinetuneConfig(db=str(db), holdout=0.5, min_train_pairs=1, min_holdout_pairs=1, **kw)


def test_replay_mixes_synthedit_items_in_and_caches_them(small, tmp_path) -> None:
    config = small_config(small, out=str(tmp_path / "replayed"), steps=2, replay=0.3,
                          replay_items=3, replay_group=2, replay_cache=str(tmp_path / "replay"))
    result = finetune(config)
    assert all(c["replay"] > 0 and c["total"] != c["loss"] for c in result["curve"])
    cached = tmp_path / "replay" / "train-s0-n3-g2"
    assert len((cached / "pairs.jsonl").read_text().splitlines()) == 3
    assert list(cached.glob("pairs.mini-*.npz"))  # prepared once, read next time


def test_too_few_votes_are_refused_with_the_numbers(small, tmp_path) -> None:
    with pytest.raises(InputError) as err:
        finetune(FinetuneConfig(db=str(small), out=str(tmp_path / "o")))
    msg = str(err.value)
    assert "12 pair votes" in msg and "at least 50 training and 10 hold-out" in msg
    assert "Annotate tab" in msg and "simulate-votes" in msg
    assert not (tmp_path / "o").exists()
    with pytest.raises(InputError, match="12 pair votes"):  # the form's check, same numbers
        count_votes(FinetuneConfig(db=str(small)))
    counts = count_votes(small_config(small))
    assert counts["train_pairs"] + counts["holdout_pairs"] == 12
    assert counts["train_items"] + counts["holdout_items"] == 6


def test_votes_of_other_kinds_are_left_out(small, tmp_path) -> None:
    with Store.open(small) as store:
        votes = read_votes(store, ["human"])
        assert len(votes.pairs) == 12 and votes.by_kind() == {"human": 12}
        assert read_votes(store, ["simulated"]).pairs == []
        store.add_annotator("sim-10", kind="simulated")
        first = store.item_ids()[0]
        store.add_human_judgment(first, "sim-10", [0, 1])
        sim = read_votes(store, ["simulated"])
        assert [(v.annotator, v.kind, v.item_id) for v in sim.pairs] == [
            ("sim-10", "simulated", first)]
        assert len(read_votes(store, ["human", "simulated"]).pairs) == 13
        assert len(read_votes(store).pairs) == 12  # people only, unless asked
        only = read_votes(store, ["human", "simulated"], annotators=["sim-10"])
        assert [v.annotator for v in only.pairs] == ["sim-10"]  # one annotator, when named
        assert {v.annotator for v in read_votes(store, ["human"], ["ann"]).pairs} == {"ann"}
    with pytest.raises(InputError, match="1 pair votes by other kinds"):
        finetune(FinetuneConfig(db=str(small), out=str(tmp_path / "o")))


def test_the_fine_tune_is_recorded_as_a_store_run(tuned) -> None:
    result = tuned["result"]
    with Store.open(tuned["config"].db) as store:
        run = store.run(result["run_id"])
        assert run["kind"] == "reward" and run["status"] == "done"
        assert run["config"]["base_digest"] == result["base_digest"]
        assert run["config"]["votes"]["pairs"] == result["votes"]["pairs"]
        assert len(store.metrics(result["run_id"], "loss")) == 30
        after = store.metrics(result["run_id"], "holdout_after")
        assert [m["value"] for m in after] == [pytest.approx(result["holdout"]["after"])]


def test_a_run_the_caller_recorded_is_finished_not_duplicated(small, tmp_path) -> None:
    with Store.open(small) as store:
        run_id = store.create_run("reward", "from the Studio", {"base": "mini"})
        runs = len(store.runs("reward"))
    seen: list[int] = []
    result = finetune(small_config(small, out=str(tmp_path / "m"), steps=2, replay=0.0),
                      progress=lambda s, n, m: seen.append(s), run_id=run_id)
    with Store.open(small) as store:
        assert store.run(run_id)["status"] == "done" and result["run_id"] == run_id
        assert store.metrics(run_id, "loss") == []  # per-step metrics: the caller's
        assert len(store.metrics(run_id, "holdout_after")) == 1
        assert len(store.runs("reward")) == runs  # no second run
    assert seen == [1, 2]


def test_pairs_ceiling_and_config_checks() -> None:
    assert ranking_pairs(((1,), (0, 2))) == [(1, 0), (1, 2)]
    assert ranking_pairs(((3,), (1,))) == [(3, 1)]  # a partial ranking: the two shown
    assert human_ceiling([PairVote(1, "a", "human", 0, 1)]) is None
    assert "--annotators ann,bob" in FinetuneConfig(annotators=["ann", "bob"]).command()
    assert "--annotators" not in FinetuneConfig().command()
    with pytest.raises(ConfigError, match="kinds"):
        FinetuneConfig(kinds=("robots",))
    with pytest.raises(ConfigError, match="holdout"):
        FinetuneConfig(holdout=0.0)


def test_cli_fine_tunes_from_the_store_and_prints_the_table(small, tuned, tmp_path,
                                                            capsys) -> None:
    out = tmp_path / "cli-model"
    previous = tuned["result"]["out"]  # a fine-tune of a fine-tune
    code = main(["train-reward", "--from-store", "--db", str(small), "--out", str(out),
                 "--base", previous,
                 "--steps", "2", "--replay", "0", "--holdout", "0.5", "--min-train-pairs", "1",
                 "--min-holdout-pairs", "1"])
    printed = capsys.readouterr().out
    assert code == 0 and (out / "model.safetensors").is_file()
    assert "before" in printed and "after" in printed and "human ceiling" in printed
    assert f"mini:{out}" in printed
    meta = json.loads((out / "finetune.json").read_text())
    assert meta["base"] == previous and meta["config"]["steps"] == 2
    assert "--base " + previous in meta["command"]
    assert main(["train-reward", "--from-store", "--db", str(tmp_path / "none.db")]) == 2
    assert "no store at" in capsys.readouterr().err
