"""SpatialReward-Mini: tokeniser, training learns, and the backend composes honest judgments."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from spatialreward.errors import ConfigError
from spatialreward.mini.data import build_arrays
from spatialreward.mini.features import MAX_TOKENS, Tokenizer
from spatialreward.mini.model import MiniConfig, MiniRewardModel, box_masks
from spatialreward.mini.train import INPUTS, evaluate, losses, save, tensors
from spatialreward.synth.generate import SynthConfig, generate


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("mini")
    generate(SynthConfig(out=out, n=10, seed=5, split="train", group_size=3, workers=1), False)
    arrays, tok = build_arrays(out / "pairs.jsonl", workers=1)
    return arrays, tok, out


def test_tokenizer_maps_unknown_words_and_pads():
    tok = Tokenizer.build(["remove the red star"])
    ids = tok.encode("Eliminate the red star!")
    assert ids[:4] == [1, tok.index["the"], tok.index["red"], tok.index["star"]]
    assert len(ids) == MAX_TOKENS and ids[4:] == [0] * (MAX_TOKENS - 4)


def test_box_masks_cover_the_boxes_and_tiny_boxes_get_a_patch():
    masks = box_masks(torch.tensor([[[0.0, 0.0, 0.5, 0.5], [0.51, 0.51, 0.52, 0.52]]]), 16)
    m = masks[0].reshape(2, 16, 16)
    assert m[0, :8, :8].all() and not m[0, 9:, 9:].any()
    assert 1 <= m[1].sum() <= 4


def test_training_learns(tiny):
    arrays, tok, _ = tiny
    torch.manual_seed(0)  # the shipped architecture (configs/mini.json)
    model = MiniRewardModel(MiniConfig(vocab_size=len(tok.vocab), place_match=True,
                                       region_counts=True))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    batch = tensors(arrays, np.arange(len(arrays)))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    history = []
    for step in range(60):
        parts = losses(model(*(batch[k] for k in INPUTS)), batch)
        loss = parts["regression"] + parts["rank"] + 0.3 * (parts["facts"] + parts["match"]
                                                            + parts["slots"])
        opt.zero_grad()
        loss.backward()
        if step == 0:  # every parameter takes part in the loss
            silent = [n for n, p in model.named_parameters()
                      if p.grad is None or not p.grad.abs().sum() > 0]
            assert silent == []
        opt.step()
        history.append(loss.item())
    assert all(np.isfinite(history))
    assert history[-1] < 0.5 * history[0]
    changed = [n for n, p in model.named_parameters() if not torch.equal(p, before[n])]
    assert len(changed) == len(before)
    # A tiny overfit: the ten training items are ranked right.
    assert evaluate(model, arrays)["accuracy"] >= 0.95


def test_backend_from_a_saved_checkpoint(tiny, tmp_path):
    from spatialreward.backends.mini import MiniBackend
    from spatialreward.images import load_image
    from spatialreward.reasoning import referenced_regions
    from storage.pairs import read_pairs

    arrays, tok, folder = tiny
    model = MiniRewardModel(MiniConfig(vocab_size=len(tok.vocab), place_match=True,
                                       region_counts=True)).eval()
    save(model, tok, tmp_path, {})
    backend = MiniBackend(tmp_path)
    item = read_pairs(folder / "pairs.jsonl")[0]
    triples = [(load_image(item.source), load_image(c), item.instruction)
               for c in item.candidates]
    batched = backend.judge_many(triples)
    single = [backend.judge(*t) for t in triples]
    assert any(a.regions for a in batched)
    for a, b in zip(batched, single, strict=True):
        assert a.sc == pytest.approx(b.sc, abs=1e-3) and a.regions == b.regions
        assert a.status == "ok" and 0 <= a.overall <= 10
        assert referenced_regions(a.reasoning) == {r.id for r in a.regions}
        if a.regions:  # the tally the scorer reads is stated, from the same match scores
            tally = re.search(r"add up to ([\d.]+) changes", a.reasoning)
            assert tally, a.reasoning
            total = sum(r.confidence or 0.0 for r in a.regions)
            assert float(tally.group(1)) == pytest.approx(total, abs=0.06)
        att = a.attention
        assert 0 <= att.source_share <= 1 and 0 < att.concentration <= 1
        assert att.entropy_source > 0 and att.entropy_edited > 0
    maps = backend.attention_maps(*triples[0])
    assert maps.shape == (2, 4, 2, 16, 16)
    assert np.allclose(maps.sum((2, 3, 4)), 1.0, atol=1e-4)  # each head is a distribution


def test_missing_checkpoint_says_how_to_make_one(tmp_path):
    from spatialreward.backends.mini import MiniBackend

    with pytest.raises(ConfigError, match="train-reward"):
        MiniBackend(tmp_path)


def test_arrays_need_ground_truth(tmp_path):
    (tmp_path / "pairs.jsonl").write_text(
        '{"id": "a", "instruction": "x", "source": "s.png", "candidates": ["c.png"]}\n')
    with pytest.raises(ValueError, match="candidate_truth"):
        build_arrays(Path(tmp_path / "pairs.jsonl"), workers=1)


def test_global_ablation_trains_on_the_same_batches(tiny):
    arrays, tok, _ = tiny
    model = MiniRewardModel(MiniConfig(vocab_size=len(tok.vocab), use_regions=False))
    batch = tensors(arrays, np.arange(len(arrays)))
    out = model(*(batch[k] for k in INPUTS))
    assert out["match"].shape == (len(arrays), 1)  # one "region": the whole image
    parts = losses(out, batch)
    total = sum(parts.values())
    total.backward()
    assert torch.isfinite(total)


def test_shipped_checkpoint_keeps_its_documented_accuracy(tmp_path):
    """docs/model_card.md: on 60 fresh SynthEdit test pairs (seed 7) the shipped model
    measured 0.950; a drop below 0.85 means the weights or the inputs changed."""
    from spatialreward.bench.runner import run_bench
    from spatialreward.service import Services

    generate(SynthConfig(out=tmp_path, n=60, seed=7, split="test", workers=1), False)
    results = run_bench(tmp_path / "pairs.jsonl", Services(), "mini", progress=False)
    assert results["failed"] == 0
    assert results["accuracy"] >= 0.85, results["accuracy"]


def test_training_is_seeded_and_reproducible(tiny, tmp_path):
    from spatialreward.mini.train import TrainConfig, train

    _, _, folder = tiny
    runs = []
    for name in ("a", "b"):
        cfg = TrainConfig(train_data=str(folder / "pairs.jsonl"),
                          val_data=str(folder / "pairs.jsonl"), out=str(tmp_path / name),
                          epochs=2, batch_items=4, threads=1, seed=3)
        metrics = train(cfg, log=lambda line: None)
        runs.append(((tmp_path / name / "model.safetensors").read_bytes(), metrics["val"]))
    assert runs[0][0] == runs[1][0]  # the same bytes
    assert runs[0][1] == runs[1][1]
    assert (tmp_path / "a" / "curves.html").is_file()
    assert (tmp_path / "a" / "config.json").is_file()


def test_extra_training_data_is_appended_with_its_own_items(tiny, tmp_path):
    from spatialreward.mini.data import Arrays

    arrays, _, _ = tiny
    both = Arrays.concat([arrays, arrays])
    assert len(both) == 2 * len(arrays)
    n_items = len(np.unique(arrays.item))
    assert len(np.unique(both.item)) == 2 * n_items  # the copies are separate items
    np.testing.assert_array_equal(both.tokens[len(arrays):], arrays.tokens)


def test_place_agreement_reads_the_cell_of_each_region():
    from spatialreward.mini.model import N_SLOTS, SLOTS, place_agreement
    from spatialreward.synth.language import POSITIONS

    offset = list(SLOTS).index("position")
    start = sum(list(SLOTS.values())[:offset])
    probs = torch.zeros(1, N_SLOTS)
    probs[0, start + POSITIONS.index("top right")] = 0.75
    probs[0, start + POSITIONS.index("center")] = 0.25
    boxes = torch.tensor([[[0.7, 0.05, 0.9, 0.2], [0.4, 0.4, 0.6, 0.6], [0.0, 0.7, 0.2, 0.9]]])
    assert place_agreement(boxes, probs).tolist() == [[0.75, 0.25, 0.0]]
    model = MiniRewardModel(MiniConfig(vocab_size=8, place_match=True))
    assert model.match[0].in_features == MiniRewardModel(MiniConfig(vocab_size=8)).match[
        0].in_features + 1


def test_matched_counts_tell_a_move_from_a_copy():
    from spatialreward.mini.model import N_COLOR, N_FACTS, matched_counts

    def region(before_none: bool, after_none: bool) -> torch.Tensor:
        facts = torch.zeros(N_FACTS)
        facts[N_COLOR - 1 if before_none else 0] = 1.0
        facts[2 * N_COLOR - 1 if after_none else N_COLOR] = 1.0
        return facts

    # A move: the object left one region and arrived in another, both matched.
    move = matched_counts(torch.tensor([[1.0, 1.0]]),
                          torch.stack([region(False, True), region(True, False)])[None])
    # A copy that was not moved: only the arrival, plus an unmatched stray change.
    copy = matched_counts(torch.tensor([[1.0, 0.0]]),
                          torch.stack([region(True, False), region(False, False)])[None])
    assert move.tolist() == [[2.0, 1.0, 1.0, 0.0]]
    assert copy.tolist() == [[1.0, 0.0, 1.0, 0.0]]
    wide = MiniRewardModel(MiniConfig(vocab_size=8, region_counts=True)).head[0].in_features
    assert wide == MiniRewardModel(MiniConfig(vocab_size=8)).head[0].in_features + 4
    with pytest.raises(ConfigError, match="need use_regions"):
        MiniConfig(vocab_size=8, use_regions=False, region_counts=True)
