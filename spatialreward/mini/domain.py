"""Does this pair look like what SpatialReward-Mini was trained on?

Mini learned on SynthEdit: coloured shapes on procedural or photographic backgrounds. On
other images its scores are pixel measurements dressed as judgments, and its coverage
must say so. The check reads the image features Mini's own encoder pooled over the patches
(``out["pooled"]``: the mean and spread of the source's and the edit's patch tokens) and
scores them with a logistic regression fitted to tell SynthEdit pairs from edits of real
photographs (``benchmarks/domain_calibration.py``, which writes ``domain.json`` beside
the checkpoint and records its measured figures there).

``distance`` is the odds that a pair is not SynthEdit, over the odds at the threshold:
the probability reached by the 99th percentile of SynthEdit test and hard pairs, so about
1 % of in-domain pairs measure above 1, and 3 means odds three times the threshold's.

A Mahalanobis distance from the training features was measured first and separates
nothing: real photographs land nearer the training mean than many SynthEdit pairs, not
least because SynthEdit paints its shapes on crops of photographs. The figures of both
are in ``docs/coverage.md``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError

FILENAME = "domain.json"
QUANTILE = 99.0
"""Percentile of SynthEdit test+hard pair probabilities taken as the threshold."""


@dataclass(frozen=True, eq=False)
class DomainCheck:
    """A fitted check: standardise the pooled features, a linear score, a threshold.

    >>> check = DomainCheck(np.zeros(2), np.ones(2), np.array([1.0, 0.0]), 0.0, 0.5)
    >>> check.distance(np.array([[0.0, 5.0], [2.0, 0.0]])).round(2).tolist()
    [1.0, 7.39]
    """

    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    bias: float
    threshold: float
    """The probability (0..1) above which a pair counts as out of domain."""
    figures: dict[str, Any] | None = None
    """What the calibration measured (shown in docs, not used to score)."""

    def probability(self, pooled: np.ndarray) -> np.ndarray:
        """(N, F) pooled features -> (N,) probability that each pair is not SynthEdit."""
        z = (np.asarray(pooled, np.float64) - self.mean) / self.scale
        return 1.0 / (1.0 + np.exp(-(z @ self.weights + self.bias)))

    def distance(self, pooled: np.ndarray) -> np.ndarray:
        """(N,) odds over the threshold's odds: above 1 is out of Mini's domain."""
        z = (np.asarray(pooled, np.float64) - self.mean) / self.scale
        logit = np.clip(z @ self.weights + self.bias, -50.0, 50.0)
        return np.exp(logit - np.log(self.threshold / (1.0 - self.threshold)))

    @property
    def digest(self) -> str:
        """Short hash of what scores: part of the backend version, so cached judgments
        made under another check are not served as this one's."""
        raw = json.dumps([self.mean.tolist(), self.scale.tolist(), self.weights.tolist(),
                          self.bias, self.threshold]).encode()
        return hashlib.sha256(raw).hexdigest()[:8]

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "logistic-regression on Mini's pooled patch features",
                "mean": self.mean.tolist(), "scale": self.scale.tolist(),
                "weights": self.weights.tolist(), "bias": self.bias,
                "threshold": self.threshold, "figures": self.figures or {}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DomainCheck:
        mean, scale, weights = (np.asarray(d[k], np.float64)
                                for k in ("mean", "scale", "weights"))
        if not (mean.shape == scale.shape == weights.shape and mean.ndim == 1):
            raise ValueError("domain check: mean, scale and weights must be equal-length lists")
        threshold = float(d["threshold"])
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"domain check: threshold {threshold} is not a probability")
        return cls(mean, scale, weights, bias=float(d["bias"]), threshold=threshold,
                   figures=d.get("figures"))


def load(folder: Path) -> DomainCheck | None:
    """The check shipped beside a checkpoint, or None when it has none (a fine-tune that
    was never calibrated: its judgments then carry no domain distance)."""
    path = Path(folder) / FILENAME
    if not path.is_file():
        return None
    try:
        return DomainCheck.from_dict(json.loads(path.read_text()))
    except (ValueError, KeyError, TypeError) as e:  # JSONDecodeError is a ValueError
        raise ConfigError(f"{path} is not a valid domain check ({e}); recalibrate it with "
                          f"`python benchmarks/domain_calibration.py --write {path}` or "
                          "delete it to judge without a domain distance") from e


def fit(synthetic: np.ndarray, real: np.ndarray, in_domain: np.ndarray, *,
        c: float = 0.1) -> DomainCheck:
    """Fit on ``synthetic`` (SynthEdit training pairs) vs ``real`` (edits of photographs);
    the threshold comes from ``in_domain`` (SynthEdit test/hard pairs, never fitted on)."""
    from sklearn.linear_model import LogisticRegression

    x = np.concatenate([synthetic, real]).astype(np.float64)
    y = np.r_[np.zeros(len(synthetic)), np.ones(len(real))]
    mean, scale = x.mean(0), x.std(0) + 1e-6
    model = LogisticRegression(C=c, max_iter=5000, class_weight="balanced")
    model.fit((x - mean) / scale, y)
    check = DomainCheck(mean, scale, model.coef_[0].astype(np.float64),
                        float(model.intercept_[0]), threshold=0.5)
    threshold = float(np.percentile(check.probability(in_domain), QUANTILE))
    return DomainCheck(mean, scale, check.weights, check.bias,
                       threshold=min(max(threshold, 1e-6), 1 - 1e-6))


def reason(distance: float) -> str:
    """The coverage sentence for a pair above the threshold.

    >>> reason(2.345)[-45:]
    'trained on (domain distance 2.3, threshold 1)'
    """
    return ("its images look unlike the synthetic scenes of shapes it was trained on "
            f"(domain distance {distance:.1f}, threshold 1)")
