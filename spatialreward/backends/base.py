"""What a reward-model backend must provide."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

    from ..judgment import Judgment, Region
    from ..regions import PixelEvidence

log = logging.getLogger(__name__)

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


def failed_judgment(backend: Backend, err: BaseException) -> Judgment:
    """The ``backend_error`` judgment of a backend that raised: the error kept, no score."""
    from ..judgment import Judgment

    return Judgment(status="backend_error", backend=backend.name,
                    backend_version=backend.version, error=f"{type(err).__name__}: {err}")


def judge_in_batches(backend: Backend,
                     triples: Sequence[tuple[Image.Image, Image.Image, str]],
                     batch: int) -> list[Judgment]:
    """Judge (source, edited, instruction) triples ``batch`` at a time, through the
    backend's ``judge_many`` when it has one. A batch whose call raises fails each of its
    edits with :func:`failed_judgment` (logged), never with a made-up score."""
    many = getattr(backend, "judge_many", None)
    out: list[Judgment] = []
    for start in range(0, len(triples), batch):
        part = list(triples[start:start + batch])
        try:
            got = list(many(part)) if many is not None else [
                backend.judge(s, e, t) for s, e, t in part]
        except Exception as err:  # reported per edit, never turned into a score
            log.exception("backend %s failed", backend.name)
            got = [failed_judgment(backend, err) for _ in part]
        out.extend(got)
    return out
