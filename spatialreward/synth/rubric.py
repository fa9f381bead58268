"""Ground-truth scores for SynthEdit candidates, on the judge's 0..25 scales.

The rubric (documented in the README, used as training targets and for ranking):

- **edit_success (s1)** by flaw: correct, collateral, over_edit 25; artifact 20;
  copy_not_move 12; partial 10; wrong_position 8; wrong_value 4; wrong_object 2;
  no_edit 0.
- **over_editing (s2)** = 25 * (1 - min(1, outside / 0.12)), where ``outside`` is the
  fraction of image pixels that changed visibly (clean CIE76 difference > 6) outside
  the footprint of the requested edit. A global style shift gives 0; another object
  recoloured costs a few points.
- **naturalness**: 25, except over_edit 13, artifact 16, partial 18.
- **artifacts** (high = clean): 25, except artifact 5, partial 20.

Targets are measured on the clean images, before re-encoding noise.
"""

from __future__ import annotations

import numpy as np

from ..scoring import weighted_geometric

SUCCESS = {
    "correct": 25.0, "collateral": 25.0, "over_edit": 25.0, "artifact": 20.0,
    "copy_not_move": 12.0, "partial": 10.0, "wrong_position": 8.0, "wrong_value": 4.0,
    "wrong_object": 2.0, "no_edit": 0.0,
}
NATURALNESS = {"over_edit": 13.0, "artifact": 16.0, "partial": 18.0}
ARTIFACTS = {"artifact": 5.0, "partial": 20.0}
OUTSIDE_FULL = 0.12  # changed fraction outside the target at which s2 reaches 0


def over_editing(outside_fraction: float) -> float:
    """The over-editing target from the changed share outside the target.

    >>> over_editing(0.0), over_editing(0.03), over_editing(0.5)
    (25.0, 18.75, 0.0)
    """
    return round(25.0 * (1.0 - min(1.0, outside_fraction / OUTSIDE_FULL)), 3)


def targets(flaw: str, outside_fraction: float) -> tuple[tuple[float, float], tuple[float, float]]:
    """(sc, pq) targets for a candidate with ``flaw`` ("correct" for the right edit).

    >>> targets("artifact", 0.0)
    ((20.0, 25.0), (16.0, 5.0))
    """
    sc = (SUCCESS[flaw], over_editing(outside_fraction))
    pq = (NATURALNESS.get(flaw, 25.0), ARTIFACTS.get(flaw, 25.0))
    return sc, pq


def overall(sc: tuple[float, float], pq: tuple[float, float]) -> float:
    """The default aggregate (0..10) of a target pair, used to rank candidates."""
    value = weighted_geometric(sc, pq).overall
    assert value is not None
    return round(float(value), 4)


def outside_fraction(changed: np.ndarray, target_footprint: np.ndarray) -> float:
    """Share of all pixels that changed outside the (dilated) target footprint."""
    return float((changed & ~target_footprint).mean())
