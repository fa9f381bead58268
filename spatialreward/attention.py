"""Attention-collapse diagnostics: one definition for every backend that has attention.

A judge "collapses" when its attention piles onto a few tokens and ignores the source
image. From one attention distribution over the source's and the edited image's patches
(already averaged over the query tokens, layers and heads), :func:`summarise` reports the
figures of :class:`~spatialreward.judgment.AttentionSummary`: the source's share, each
image's entropy (nats), the share of the top 5% of patches, and the share inside the
edit regions.

>>> s = summarise(np.array([1.0, 1.0]), np.array([1.0, 1.0]), inside_edited=np.array([True, False]))
>>> s.source_share, s.entropy_source, s.concentration, s.in_region_share
(0.5, 0.6931, 0.25, 0.25)
"""

from __future__ import annotations

import math

import numpy as np

from .judgment import AttentionSummary

TOP_SHARE = 0.05
"""The top fraction of patches whose attention share is the concentration."""


def entropy(weights: np.ndarray) -> float:
    """Entropy (nats) of ``weights`` normalised to a distribution; 0 for an empty one.

    >>> round(entropy(np.ones(4)), 4)
    1.3863
    """
    p = np.asarray(weights, dtype=np.float64).ravel()
    if not p.size:
        return 0.0
    p = p / max(float(p.sum()), 1e-30)
    return float(-(p * np.log(p + 1e-12)).sum())


def summarise(source: np.ndarray | None, edited: np.ndarray,
              inside_source: np.ndarray | None = None,
              inside_edited: np.ndarray | None = None) -> AttentionSummary:
    """The diagnostics of attention weights on the source patches (None: the protocol
    shows no source) and on the edited patches, any shapes; ``inside_*``: bool masks of
    the patches inside the edit regions (None for both: no regions, no in-region share)."""
    src = np.zeros(0) if source is None else np.asarray(source, dtype=np.float64).ravel()
    edt = np.asarray(edited, dtype=np.float64).ravel()
    total = max(float(src.sum() + edt.sum()), 1e-30)
    everything = np.concatenate([src, edt])
    top = max(1, math.ceil(TOP_SHARE * everything.size))
    in_region = None
    if inside_source is not None or inside_edited is not None:
        inside = 0.0
        if inside_edited is not None:
            inside += float(edt[np.asarray(inside_edited).ravel()].sum())
        if inside_source is not None and src.size:
            inside += float(src[np.asarray(inside_source).ravel()].sum())
        in_region = round(inside / total, 4)
    return AttentionSummary(
        source_share=round(float(src.sum()) / total, 4),
        entropy_source=round(entropy(src), 4),
        entropy_edited=round(entropy(edt), 4),
        concentration=round(float(np.sort(everything)[::-1][:top].sum()) / total, 4),
        in_region_share=in_region,
    )
