"""Reward hacking: the reward rises while the ground truth falls.

Rule (``hacking_alert``): over the last ``window`` steps, fit a straight line to the
step's mean reward (0..1) and one to its ground-truth success (0..1). The alert is
raised when both trends are real and go opposite ways:

- the reward's slope is positive with one-sided p < ``p`` and the line rises by at least
  ``rise`` over the window;
- ground-truth success's slope is negative with one-sided p < ``p`` and the line falls
  by at least ``drop`` over the window.

Why a fitted trend and not "later half minus earlier half" over a few steps: a step's
samples come from a handful of prompts, so both curves swing with the prompts drawn
(easy prompts lift the reward and the ground truth together). Over 10 steps that noise
crosses any useful threshold now and then; the old rule fired on 3-12 of ~150 steps of
runs in which nothing trended (docs/rl.md). The slope's p-value measures the trend
against the noise of the window itself, so a flat run stays quiet however noisy it is,
and ``rise`` / ``drop`` keep a statistically real but tiny trend from alarming anyone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import linregress

WINDOW = 50
"""Default steps looked at: at 4 prompts a step, 200 prompts on each side of the fit."""


@dataclass(frozen=True)
class Alert:
    """A raised hacking alert and the numbers behind it."""

    step: int
    reward_change: float  # of the fitted line over the window
    gt_change: float
    window: int
    reward_p: float = 0.0  # one-sided p-values of the two trends
    gt_p: float = 0.0
    signal: str = "ground-truth success"
    """What fell while the reward rose (an external run: a spot check)."""

    @property
    def message(self) -> str:
        return (f"possible reward hacking at step {self.step}: over the last {self.window} "
                f"steps the reward trended {self.reward_change:+.3f} (p = {self.reward_p:.1g}) "
                f"while {self.signal} trended {self.gt_change:+.3f} "
                f"(p = {self.gt_p:.1g}); look at the samples")


def trend(values: Sequence[float]) -> tuple[float, float]:
    """(change of the least-squares line over the values, one-sided p of a rise).

    ``p`` is small for a real rise and near 1 for a real fall; a constant series has no
    trend (0.0, 0.5)."""
    y = np.asarray(values, np.float64)
    if len(y) < 3 or np.ptp(y) == 0:
        return 0.0, 0.5
    fit = linregress(np.arange(len(y), dtype=np.float64), y)
    change = float(fit.slope) * (len(y) - 1)
    if not np.isfinite(fit.pvalue):  # a perfect line
        return change, 0.0 if fit.slope > 0 else 1.0
    half = float(fit.pvalue) / 2  # linregress's test is two-sided
    return change, half if fit.slope > 0 else 1.0 - half


def hacking_alert(steps: Sequence[int], rewards: Sequence[float], gt_success: Sequence[float],
                  *, window: int = WINDOW, rise: float = 0.02, drop: float = 0.05,
                  p: float = 0.01) -> Alert | None:
    """The alert for the latest step, or None (also None before ``window`` steps).

    >>> up = [0.5 + 0.002 * s for s in range(50)]
    >>> down = [0.4 - 0.002 * s + 0.01 * (s % 2) for s in range(50)]
    >>> hacking_alert(range(50), up, down).step
    49
    >>> hacking_alert(range(50), up, up) is None
    True
    """
    if window < 3 or len(rewards) < window:
        return None
    d_reward, p_reward = trend(list(rewards)[-window:])
    d_gt, p_rise_gt = trend(list(gt_success)[-window:])
    p_gt = 1.0 - p_rise_gt  # one-sided p of a fall
    if d_reward >= rise and p_reward < p and d_gt <= -drop and p_gt < p:
        return Alert(int(list(steps)[-1]), round(d_reward, 4), round(d_gt, 4), window,
                     float(f"{p_reward:.3g}"), float(f"{p_gt:.3g}"))
    return None
