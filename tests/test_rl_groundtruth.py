"""Ground truth at the editor's 64 px: the correct edit succeeds, SynthEdit's flaws fail."""

from __future__ import annotations

from collections import defaultdict

import cv2
import numpy as np
import pytest

from spatialreward.rl.groundtruth import ground_truth
from spatialreward.rl.prompts import make_prompt, prompt_set
from spatialreward.synth.edits import APPLICABLE
from spatialreward.synth.language import OPERATIONS


@pytest.fixture(scope="module")
def verdicts():
    """flaw -> success of 36 validation prompts' candidates (operations taking turns)."""
    out: dict[str, list[bool]] = defaultdict(list)
    rng = np.random.default_rng(0)
    for k in range(36):
        op = OPERATIONS[k % len(OPERATIONS)]
        p = make_prompt("val", 0, k, 64, op=op, flaws=APPLICABLE[op])
        assert p.op == op and p.source.shape == (64, 64, 3) and p.footprint.any()

        def ok(img: np.ndarray, p=p) -> bool:
            return ground_truth(p.source, p.target, p.footprint, img).success

        out["correct"].append(ok(p.target))
        out["source"].append(ok(p.source))
        noisy = np.clip(p.target + rng.normal(0, 5, p.target.shape), 0, 255).astype(np.uint8)
        out["correct + pixel noise"].append(ok(noisy))
        out["correct, slightly blurred"].append(ok(cv2.GaussianBlur(p.target, (0, 0), 0.5)))
        for flaw, img in p.flawed.items():
            out[flaw].append(ok(img))
    return {k: float(np.mean(v)) for k, v in out.items()}


def test_the_correct_edit_succeeds_even_with_editor_noise(verdicts):
    assert verdicts["correct"] == 1.0
    assert verdicts["correct + pixel noise"] >= 0.95
    assert verdicts["correct, slightly blurred"] >= 0.8


@pytest.mark.parametrize("flaw", ["source", "no_edit", "wrong_object", "wrong_position",
                                  "partial", "over_edit", "copy_not_move"])
def test_wrong_edits_fail(verdicts, flaw):
    assert verdicts[flaw] == 0.0, verdicts


def test_near_misses_mostly_fail(verdicts):
    # A wrong shape of the same colour can be a few pixels from the asked one at 64 px.
    assert verdicts["wrong_value"] <= 0.15 and verdicts["collateral"] <= 0.1, verdicts


def test_prompts_are_seeded_and_operations_take_turns():
    a = prompt_set("test", 6, 32, seed=3, ops=["remove", "add"])
    b = prompt_set("test", 6, 32, seed=3, ops=["remove", "add"])
    assert [p.op for p in a] == ["remove", "add"] * 3
    assert all(np.array_equal(x.source, y.source) and x.instruction == y.instruction
               for x, y in zip(a, b, strict=True))
    c = prompt_set("test", 2, 32, seed=3, ops=["remove", "add"], start=4)
    assert np.array_equal(c[0].target, a[4].target)
    assert not np.array_equal(prompt_set("train", 1, 32)[0].source,
                              prompt_set("test", 1, 32)[0].source)
