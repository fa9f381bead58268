"""SpatialReward Studio core: judgments, the SpatialReward protocol, pixel evidence, backends."""

from .judgment import AttentionSummary, Judgment, Mask, Region
from .reasoning import ReasoningSegment, split_reasoning

__version__ = "0.1.0"

__all__ = [
    "AttentionSummary",
    "Judgment",
    "Mask",
    "Region",
    "ReasoningSegment",
    "split_reasoning",
    "__version__",
]
