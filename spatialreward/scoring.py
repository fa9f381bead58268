"""Score math: from the raw 0..25 sub-scores to the 0..10 dimensions and the 0..1 reward.

A SpatialReward-style judge emits two pairs on a 0..R scale (R = 25):

- ``sc = [edit_success, over_editing]`` from the semantic-consistency call
  (over_editing is high when the edit is minimal and faithful);
- ``pq = [naturalness, artifacts]`` from the perceptual-quality call
  (artifacts is high when there are few artifacts).

The benchmark dimensions are fixed: ``prompt_following = s1 / (R/10)`` and
``consistency = s2 / (R/10)``. How SC, PQ and the overall score combine is the
aggregator's choice; every aggregator here is a pure function returning
:class:`Aggregate`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .errors import ConfigError

SCORE_RANGE = 25.0
"""Top of the raw sub-score scale used by SpatialReward and EditScore."""


@dataclass(frozen=True)
class Aggregate:
    """SC, PQ and overall on 0..10 (any may be None when its inputs are missing)."""

    semantic_consistency: float | None
    perceptual_quality: float | None
    overall: float | None

    @property
    def reward(self) -> float | None:
        """The RL reward: overall / 10, in 0..1."""
        return None if self.overall is None else self.overall / 10.0


def _clip10(x: float) -> float:
    return min(10.0, max(0.0, x))


def dimension(score: float, score_range: float = SCORE_RANGE) -> float:
    """One raw sub-score mapped to 0..10.

    >>> dimension(20.0)
    8.0
    """
    return _clip10(score / (score_range / 10.0))


def weighted_geometric(
    sc: Sequence[float] | None,
    pq: Sequence[float] | None,
    *,
    weights: tuple[float, float, float, float] = (0.6, 0.4, 0.5, 0.5),
    alpha: float = 0.8,
    score_range: float = SCORE_RANGE,
) -> Aggregate:
    """SpatialReward's default: weighted means inside, weighted geometric mean outside.

    SC = (w1*s1 + w2*s2) / (R/10), PQ = (w3*nat + w4*art) / (R/10), both clipped to
    [0, 10]; overall = SC**alpha * PQ**(1 - alpha).

    >>> a = weighted_geometric([25, 25], [25, 25])
    >>> a.overall, a.reward
    (10.0, 1.0)
    >>> round(weighted_geometric([20, 10], [25, 15]).overall, 3)
    6.692
    """
    w1, w2, w3, w4 = weights
    scale = score_range / 10.0
    s = None if sc is None else _clip10((w1 * sc[0] + w2 * sc[1]) / scale)
    p = None if pq is None else _clip10((w3 * pq[0] + w4 * pq[1]) / scale)
    overall = None if s is None or p is None else _clip10(s**alpha * p ** (1.0 - alpha))
    return Aggregate(s, p, overall)


def min_geometric(
    sc: Sequence[float] | None,
    pq: Sequence[float] | None,
    *,
    score_range: float = SCORE_RANGE,
) -> Aggregate:
    """EditScore / VIEScore style: the weakest sub-score of each pair decides.

    overall = sqrt(min(s1, s2) * min(nat, art)) / (R/10).

    >>> a = min_geometric([20, 10], [25, 15])
    >>> a.semantic_consistency, a.perceptual_quality, round(a.overall, 3)
    (4.0, 6.0, 4.899)
    """
    scale = score_range / 10.0
    s = None if sc is None else _clip10(min(sc) / scale)
    p = None if pq is None else _clip10(min(pq) / scale)
    overall = None if s is None or p is None else _clip10(math.sqrt(s * p))
    return Aggregate(s, p, overall)


def arithmetic_mean(
    sc: Sequence[float] | None,
    pq: Sequence[float] | None,
    *,
    score_range: float = SCORE_RANGE,
) -> Aggregate:
    """Plain means: SC and PQ are pair means, overall is their mean.

    >>> arithmetic_mean([20, 10], [25, 15]).overall
    7.0
    """
    scale = score_range / 10.0
    s = None if sc is None else _clip10((sc[0] + sc[1]) / 2.0 / scale)
    p = None if pq is None else _clip10((pq[0] + pq[1]) / 2.0 / scale)
    overall = None if s is None or p is None else (s + p) / 2.0
    return Aggregate(s, p, overall)


Aggregator = Callable[[Sequence[float] | None, Sequence[float] | None], Aggregate]

AGGREGATORS: dict[str, Aggregator] = {
    "weighted_geometric": weighted_geometric,
    "min_geometric": min_geometric,
    "mean": arithmetic_mean,
}
DEFAULT_AGGREGATION = "weighted_geometric"


def get_aggregator(name: str) -> Aggregator:
    """Look an aggregator up by name; unknown names fail with the list of known ones."""
    try:
        return AGGREGATORS[name]
    except KeyError:
        known = ", ".join(sorted(AGGREGATORS))
        raise ConfigError(f"unknown aggregation {name!r}; choose one of: {known}") from None
