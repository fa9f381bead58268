"""Ground-truth success of an edit, measured against the exact target of its prompt.

SynthEdit knows what the correct edit looks like, so every sampled edit is scored
against it, independently of any reward model. Per pixel, in CIE Lab (CIE76 distances):

- **needed change C**: the pixels where the target differs from the source by more than
  6 (SynthEdit's threshold), each weighted by how far it must move.
- **progress** (recall: *the right object changed the right way*) = the weighted share
  of C where the output came close to the target: within ``REACH`` of the needed
  change, at most ``CAP``, at least ``NOISE`` (recoloured to the asked colour, removed,
  drawn in the asked place and shape, resized the asked way).
- **spill** (precision: *everything else preserved*) = pixels outside C (dilated by
  one pixel) that moved away from the source by more than ``KEEP``, counted relative
  to the size of C: another object touched, a wrong shape's extra corners, a global
  colour shift, an object left behind.
- **collateral** (for reports) = the share of the whole image that spilled outside the
  edit's footprint.
- **success** = progress >= ``PROGRESS_OK`` and spill <= ``SPILL_OK``;
  **score** (0..1, for curves) = progress * max(0, 1 - spill).

At the editor's 64 px the correct edit always succeeds; the source left unchanged, the
wrong object, a global colour shift, a half-done edit and most wrong values fail
(``tests/test_rl_groundtruth.py`` checks this on SynthEdit's own flaws).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

from ..synth.render import TRUE_DELTA_E, rgb_to_lab

REACH = 0.3  # share of the needed change that may remain
CAP = 30.0  # ... but never more than this CIE76 distance from the target
NOISE = 10.0  # a CIE76 distance to the target that always counts as reached
KEEP = 12.0  # a CIE76 change that counts as a change where none was asked
PROGRESS_OK = 0.75
SPILL_OK = 0.25
SMOOTH = 1.0  # Gaussian blur (px) applied before looking for unasked changes


@dataclass(frozen=True)
class GroundTruth:
    """How one output compares with the exact target."""

    success: bool
    score: float  # 0..1
    progress: float  # weighted share of the needed change that was made
    spill: float  # unasked changes, relative to the size of the needed change
    collateral: float  # share of the image changed outside the edit's footprint

    def to_dict(self) -> dict[str, float | bool]:
        return asdict(self)


def _delta_e(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.asarray(np.linalg.norm(rgb_to_lab(a) - rgb_to_lab(b), axis=2))


def _smooth(img: np.ndarray) -> np.ndarray:
    return np.asarray(cv2.GaussianBlur(img, (0, 0), SMOOTH))


def ground_truth(source: np.ndarray, target: np.ndarray, footprint: np.ndarray,
                 output: np.ndarray) -> GroundTruth:
    """Score ``output`` ((S, S, 3) uint8) for the edit ``source`` -> ``target``.

    >>> src = np.zeros((8, 8, 3), np.uint8); tgt = src.copy(); tgt[2:5, 2:5] = 255
    >>> fp = np.zeros((8, 8), bool); fp[1:6, 1:6] = True
    >>> ground_truth(src, tgt, fp, tgt).success, ground_truth(src, tgt, fp, src).success
    (True, False)
    """
    need = _delta_e(source, target)  # how far each pixel must move
    changed = need > TRUE_DELTA_E
    if not changed.any():  # nothing to change (never for SynthEdit edits)
        changed = footprint.astype(bool)
    to_target = _delta_e(output, target)
    reach = np.maximum(np.minimum(REACH * need, CAP), NOISE)
    weight = np.maximum(need, TRUE_DELTA_E)[changed]
    progress = float((weight * (to_target[changed] <= reach[changed])).sum() / weight.sum())
    kernel = np.ones((3, 3), np.uint8)
    near = cv2.dilate(changed.astype(np.uint8), kernel) > 0
    # Compared after a light blur: pixel noise and a soft edge are not changes.
    moved = _delta_e(_smooth(output), _smooth(source)) > KEEP
    spill = float((moved & ~near).sum() / max(1, changed.sum()))
    allowed = cv2.dilate((changed | footprint).astype(np.uint8), kernel) > 0
    collateral = float((moved & ~allowed).mean())
    success = progress >= PROGRESS_OK and spill <= SPILL_OK
    score = progress * max(0.0, 1.0 - spill)
    return GroundTruth(bool(success), round(score, 6), round(progress, 6), round(spill, 6),
                       round(collateral, 6))
