"""benchmarks/reward_signal.py: the figures that say how well a reward orders a group."""

from __future__ import annotations

import math

import numpy as np

from benchmarks.reward_signal import pair_accuracy, signal


def test_pair_accuracy_counts_success_failure_pairs_and_half_ties():
    success = np.array([True, False, False, True])
    assert pair_accuracy(np.array([0.9, 0.1, 0.2, 0.8]), success) == (1.0, 4)
    assert pair_accuracy(np.array([0.1, 0.9, 0.8, 0.2]), success) == (0.0, 4)
    # one success above both failures, one tied with one failure and below the other
    assert pair_accuracy(np.array([0.9, 0.5, 0.7, 0.5]), success) == (2.5 / 4, 4)
    acc, pairs = pair_accuracy(np.array([0.3, 0.4]), np.array([False, False]))
    assert pairs == 0 and math.isnan(acc)


def test_signal_ranks_within_groups_and_leaves_out_failed_judgments():
    score = np.array([0.9, 0.2, 0.5, 0.1, 0.8, 0.3])
    success = score > 0.6
    good = signal(score.copy(), score, success, group=3)
    assert good["pair_accuracy"] == 1.0 and good["pairs"] == 2 + 2
    assert good["group_spearman"] == 1.0 and good["auc"] == 1.0
    flipped = signal(-score, score, success, group=3)
    assert flipped["pair_accuracy"] == 0.0 and flipped["group_spearman"] == -1.0
    # a failed judgment (NaN) drops out of its group and of the AUC
    reward = score.copy()
    reward[1] = np.nan
    partial = signal(reward, score, success, group=3)
    assert partial["judged"] == 5 and partial["pairs"] == 1 + 2
    assert partial["pair_accuracy"] == 1.0
    # a reward that says the same for everything orders nothing
    flat = signal(np.full(6, 0.5), score, success, group=3)
    assert flat["pair_accuracy"] == 0.5 and math.isnan(flat["group_spearman"])
