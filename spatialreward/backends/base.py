"""What a reward-model backend must provide."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from PIL import Image

    from ..judgment import Judgment
    from ..regions import PixelEvidence


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
