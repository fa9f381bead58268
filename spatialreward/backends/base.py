"""What a reward-model backend must provide."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

    from ..judgment import Judgment, Region
    from ..regions import PixelEvidence


@dataclass(frozen=True)
class Attended:
    """A judgment and the attention of the very pass that produced it."""

    judgment: Judgment
    maps: np.ndarray | None = None
    """(layers, heads, 2, rows, cols): attention from the instruction to the source (index
    0) and edited (index 1) patches, each (layer, head) on one scale; None for a backend
    without attention (the pixel baseline) or a judgment that failed before the model."""


@runtime_checkable
class Backend(Protocol):
    """A reward model that judges one edit.

    ``name`` and ``version`` go into every Judgment; ``version`` must change whenever
    the weights or settings change, because the store caches judgments by it.
    """

    name: str
    version: str

    def judge(
        self,
        source: Image.Image,
        edited: Image.Image,
        instruction: str,
        evidence: PixelEvidence | None = None,
    ) -> Judgment:
        """Judge ``edited`` as the result of applying ``instruction`` to ``source``.

        Both images are RGB (see :func:`spatialreward.images.load_image`); ``edited``
        may have another size. ``evidence`` is the pixel evidence for the pair when the
        caller already computed it. Regions in the result are in the source frame.
        """
        ...

    def judge_attended(
        self,
        source: Image.Image,
        edited: Image.Image,
        instruction: str,
        evidence: PixelEvidence | None = None,
    ) -> Attended:
        """:meth:`judge`, plus the attention maps of the same forward pass (Inspect draws
        them; it never runs the model a second time). A backend without attention returns
        ``Attended(self.judge(...))``."""
        ...


GLOBAL_LABEL = "whole image"


def global_region(region_id: int, description: str) -> tuple[Region, str]:
    """The whole-image region of a global edit (brightness, colour grade, blur, style) and
    its sentence: SpatialReward marks such a change ``<|global|>``; here it is also a
    region covering the frame, so that every consumer that lists regions shows it."""
    from ..judgment import Region

    return (Region(id=region_id, label=GLOBAL_LABEL, bbox_2d=(0, 0, 1000, 1000)),
            f"{description[0].upper()}{description[1:]}.")
