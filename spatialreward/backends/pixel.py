"""The ``pixel`` backend: an honest baseline built only on pixel evidence.

It cannot read the instruction, and its reasoning says so. Everything it reports is
measured (see :func:`spatialreward.regions.propose_regions`):

- ``edit_success`` (s1) = 25 * (1 - exp(-(S - 1))) where S is the strongest region's
  change strength (mean colour difference / noise threshold); 0 when nothing changed.
  It measures *that* something changed clearly, not that the right thing changed.
- ``over_editing`` (s2) = 25 * preservation * size_factor: preservation of everything
  outside the regions (global colour shifts included), times a factor that falls
  linearly from 1 to 0 as the changed area grows from 25% to 100% of the image.
- ``naturalness`` = 25 * (1 - |log2 r_out| / 2), r_out = high-frequency energy of the
  edited image over the source's, outside the changed regions (global blur or
  sharpening lowers it).
- ``artifacts`` = 25 * (1 - max(log2 r_in, 0) / 3 - max(-log2 r_in, 0) / 4), r_in the
  same ratio inside the regions: added noise or blocking (energy up) costs more than
  smearing (energy down). Both clipped to 0..25.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict

import cv2
import numpy as np
from PIL import Image

from ..errors import ConfigError
from ..judgment import Judgment, Mask, Region
from ..reasoning import compose_reasoning
from ..regions import EVIDENCE_VERSION, PixelConfig, PixelEvidence, propose_regions
from ..scoring import DEFAULT_AGGREGATION, SCORE_RANGE
from . import register
from .base import Attended, global_region

VERSION = "1"


def _clip25(x: float) -> float:
    return float(min(SCORE_RANGE, max(0.0, x)))


def _hf_energy(grey: np.ndarray, mask: np.ndarray) -> float:
    """Mean |Laplacian| over ``mask``: how much fine detail (or noise) the area holds."""
    if not mask.any():
        return 0.0
    lap = np.abs(cv2.Laplacian(grey, cv2.CV_32F, ksize=3))
    return float(lap[mask].mean())


def _energy_ratio(edit: float, src: float) -> float:
    # +1 keeps flat areas (energy ~0 in both) from producing wild ratios.
    return (edit + 1.0) / (src + 1.0)


class PixelBackend:
    """Scores an edit from measured change and preservation alone."""

    name = "pixel"

    def __init__(self, config: PixelConfig | None = None) -> None:
        self.config = config or PixelConfig()
        digest = hashlib.sha256(
            json.dumps(asdict(self.config), sort_keys=True).encode()
        ).hexdigest()[:8]
        self.version = f"{VERSION}+{digest}+e{EVIDENCE_VERSION}"

    def judge_attended(self, source: Image.Image, edited: Image.Image, instruction: str,
                       evidence: PixelEvidence | None = None) -> Attended:
        """The judgment; the pixel baseline has no attention to show."""
        return Attended(self.judge(source, edited, instruction, evidence))

    def judge(
        self,
        source: Image.Image,
        edited: Image.Image,
        instruction: str,
        evidence: PixelEvidence | None = None,
    ) -> Judgment:
        t0 = time.perf_counter()
        if evidence is None:
            evidence = propose_regions(source, edited, self.config)
        t1 = time.perf_counter()
        local = tuple(
            Region(
                id=i,
                label="changed area",
                bbox_2d=r.bbox_2d,
                mask=Mask.from_array(r.mask),
                confidence=round(min(1.0, max(0.0, (r.strength - 1.0) / 2.0)), 4),
            )
            for i, r in enumerate(evidence.regions)
        )
        change = evidence.global_change
        regions = local + ((global_region(len(local), change.describe())[0],)
                           if change is not None else ())
        changed = sum(r.area_fraction for r in evidence.regions)
        strongest = max((r.strength for r in evidence.regions), default=0.0)
        s1 = _clip25(SCORE_RANGE * (1.0 - math.exp(-(strongest - 1.0)))) if local else 0.0
        size_factor = 1.0 - min(1.0, max(0.0, (changed - 0.25) / 0.75))
        s2 = _clip25(SCORE_RANGE * evidence.preservation * size_factor)

        r_out, r_in = self._energy_ratios(source, edited, evidence)
        naturalness = _clip25(SCORE_RANGE * (1.0 - abs(math.log2(r_out)) / 2.0))
        log_in = math.log2(r_in) if r_in is not None else 0.0
        artifacts = _clip25(
            SCORE_RANGE * (1.0 - max(log_in, 0.0) / 3.0 - max(-log_in, 0.0) / 4.0)
        )
        t2 = time.perf_counter()
        sc = (round(s1, 3), round(s2, 3))  # the reasoning states these very numbers
        return Judgment(
            status="ok",
            sc=sc,
            pq=(round(naturalness, 3), round(artifacts, 3)),
            regions=regions,
            reasoning=self._sc_reasoning(evidence, changed, sc),
            pq_reasoning=self._pq_reasoning(r_out, r_in),
            aggregation=DEFAULT_AGGREGATION,
            backend=self.name,
            backend_version=self.version,
            timings_ms={
                "evidence": round((t1 - t0) * 1e3, 2),
                "scoring": round((t2 - t1) * 1e3, 2),
            },
            meta={
                "instruction_read": False,
                "noise_floor": round(evidence.noise_floor, 3),
                "global_shift": round(evidence.global_shift, 3),
                "detail_ratio": round(evidence.detail_ratio, 3),
                "preservation": round(evidence.preservation, 4),
                "changed_fraction": round(changed, 5),
            },
        )

    @staticmethod
    def _energy_ratios(
        source: Image.Image, edited: Image.Image, evidence: PixelEvidence
    ) -> tuple[float, float | None]:
        h, w = evidence.analysis_shape
        # Same resampling for both images, so resampling itself cancels out of the ratio.
        src = cv2.resize(np.asarray(source.convert("L")), (w, h), interpolation=cv2.INTER_AREA)
        edt = cv2.resize(np.asarray(edited.convert("L")), (w, h), interpolation=cv2.INTER_AREA)
        inside = np.zeros((h, w), bool)
        for r in evidence.regions:
            inside |= r.mask
        outside = ~inside
        r_out = _energy_ratio(_hf_energy(edt, outside), _hf_energy(src, outside))
        r_in = None
        if inside.any():
            r_in = _energy_ratio(_hf_energy(edt, inside), _hf_energy(src, inside))
        return r_out, r_in

    @staticmethod
    def _sc_reasoning(evidence: PixelEvidence, changed: float, sc: tuple[float, float]) -> str:
        """The found regions, then the verdict stating both SC scores and what each used."""
        change = evidence.global_change
        sentences = [
            (
                i,
                f"Pixels changed over {100 * r.area_fraction:.2f}% of the image here: mean colour "
                f"difference {r.mean_delta_e:.1f} Lab units, "
                f"{r.strength:.1f}x the noise threshold.",
            )
            for i, r in enumerate(evidence.regions)
        ]
        found = (
            f"{len(sentences)} changed region(s) covering {100 * changed:.2f}% of the image"
            if sentences
            else "no local change above the re-encoding noise" if change is not None
            else "no change above the re-encoding noise"
        )
        if change is not None:
            rid = len(sentences)
            sentences.append((rid, global_region(rid, change.describe())[1]))
            found += f"; {change.describe()}"
        verdict = (
            "This baseline compares pixels only; it does not read the instruction, so it cannot "
            f"tell whether the change is the one asked for. It found {found}. Edit success "
            f"{sc[0]:.1f}/25 measures the strongest local region only. Over-editing "
            f"{sc[1]:.1f}/25: outside the regions the image is preserved at "
            f"{evidence.preservation:.2f}, over {100 * changed:.2f}% changed (global colour shift "
            f"{evidence.global_shift:.1f} Lab units, noise floor {evidence.noise_floor:.1f})."
        )
        return compose_reasoning(sentences, verdict)

    @staticmethod
    def _pq_reasoning(r_out: float, r_in: float | None) -> str:
        text = (
            f"Fine detail outside the changed regions is {r_out:.2f}x the source's "
            "(1.00 = unchanged; lower means blur, higher means noise or over-sharpening)."
        )
        if r_in is not None:
            text += (
                f" Inside the regions it is {r_in:.2f}x the source's; noise or blocking raises it, "
                "smearing lowers it."
            )
        return text


@register("pixel")
def build(argument: str | None) -> PixelBackend:
    if argument:
        raise ConfigError(f"the pixel backend takes no argument (got {argument!r}); use 'pixel'")
    return PixelBackend()
