"""Global edits are changes, and the reasoning never contradicts the scores.

A whole-image brightness, colour-grade or blur change must come back as a "whole image"
region (SpatialReward's ``<|global|>``), never as "no change", and every number a
reasoning sentence states must be the number the judgment carries. The property test
runs over generated SynthEdit items and the shipped examples, with both built-in
backends that read the pixel evidence.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageFilter

from spatialreward.backends.base import GLOBAL_LABEL
from spatialreward.backends.mini import UNANCHORED
from spatialreward.service import Inspection, Services
from spatialreward.synth.generate import make_item

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = json.loads((ROOT / "examples" / "examples.json").read_text())
PHOTOS = sorted({e["source"] for e in EXAMPLES if e["source"].startswith("photo-")})
NUMBER = r"(\d+(?:\.\d+)?)"


@pytest.fixture(scope="module")
def services() -> Services:
    return Services()


def global_edits(src: Image.Image) -> dict[str, Image.Image]:
    """Whole-image edits a real editor makes, each far above re-encoding noise."""
    return {
        "brighter": ImageEnhance.Brightness(src).enhance(1.3),
        "darker": ImageEnhance.Brightness(src).enhance(0.8),
        "contrast": ImageEnhance.Contrast(src).enhance(1.5),
        "grayscale": src.convert("L").convert("RGB"),
        "blurred": src.filter(ImageFilter.GaussianBlur(2)),
    }


def stated(pattern: str, text: str) -> list[float]:
    return [float(x) for x in re.findall(pattern, text)]


def one(x: float, digits: int = 1) -> float:
    """``x`` as the reasoning writes it (``f"{x:.1f}"``), read back."""
    return float(f"{x:.{digits}f}")


def check_consistent(r: Inspection) -> None:
    """Every number the reasoning states is the one the judgment (or its evidence) holds."""
    j, text = r.judgment, r.judgment.reasoning
    assert j.sc is not None and j.pq is not None
    assert stated(rf"Edit success {NUMBER}/25", text) == [one(j.sc[0], 1)], text
    assert stated(rf"Over-editing {NUMBER}/25", text) == [one(j.sc[1], 1)], text
    local = [g for g in j.regions if g.label != GLOBAL_LABEL]
    has_global = any(g.label == GLOBAL_LABEL for g in j.regions)
    change = r.evidence.global_change
    assert has_global == (change is not None), text
    if change is not None:
        assert "no change above the re-encoding noise" not in text
        assert change.describe().lower() in text.lower()
    for p in stated(rf"preserved at {NUMBER}", text):
        assert p == one(r.evidence.preservation, 2)
    if j.backend == "pixel":
        if "found no change above the re-encoding noise" in text:
            assert not j.regions and j.sc[0] == 0.0
        return
    # Mini: each region sentence's verdict follows its match, the tallies follow the regions.
    matches = stated(rf"asks for \(match {NUMBER}\)", text)
    assert matches == [one(g.confidence or 0.0, 2) for g in local]
    for sentence in re.findall(r"this is (not )?the change the instruction asks for "
                               rf"\(match {NUMBER}\)", text):
        assert (float(sentence[1]) >= 0.5) == (sentence[0] == ""), text
    best = max((g.confidence or 0.0 for g in local), default=0.0)
    for b in stated(rf"best-matching region scores {NUMBER}", text):
        assert b == one(best, 2)
    stray = sum(1 for g in local if (g.confidence or 0.0) < 0.5)
    assert stated(rf"{NUMBER} located change\(s\) do not match", text) == [stray]
    if "no change above the re-encoding noise was found" in text:
        assert not j.regions
    caution_edit = f"Caution: edit success {j.sc[0]:.1f}/25" in text
    assert caution_edit == (j.sc[0] >= UNANCHORED and best < 0.5), text
    caution_over = f"Caution: over-editing {j.sc[1]:.1f}/25" in text
    assert caution_over == (j.sc[1] < UNANCHORED and stray == 0
                            and r.evidence.preservation >= 0.9), text
    assert stated(rf"Naturalness {NUMBER}/25", j.pq_reasoning) == [one(j.pq[0], 1)]
    assert stated(rf"artifacts {NUMBER}/25", j.pq_reasoning) == [one(j.pq[1], 1)]


@pytest.mark.parametrize("backend", ["mini", "pixel"])
@pytest.mark.parametrize("photo", PHOTOS)
def test_whole_image_edits_of_photos_get_a_global_region(services, backend, photo):
    src = Image.open(ROOT / "examples" / photo).convert("RGB")
    edits = global_edits(src)
    names = list(edits)
    results = [r for part in (names[:3], names[3:])  # at most 4 candidates per judgment
               for r in services.inspect_group(src, [edits[n] for n in part],
                                               "make the photo brighter", backend)]
    for name, r in zip(names, results, strict=True):
        labels = [g.label for g in r.judgment.regions]
        assert GLOBAL_LABEL in labels, (name, labels, r.judgment.reasoning)
        whole = r.judgment.region(labels.index(GLOBAL_LABEL))
        assert whole is not None and whole.bbox_2d == (0, 0, 1000, 1000)
        assert "the whole image changed" in r.judgment.reasoning.lower()
        check_consistent(r)


@pytest.mark.parametrize("backend", ["mini", "pixel"])
def test_an_unchanged_image_is_no_change_not_a_global_one(services, backend):
    src = Image.open(ROOT / "examples" / PHOTOS[0]).convert("RGB")
    r = services.inspect_group(src, [src.copy()], "make the photo brighter", backend)[0]
    assert r.judgment.regions == () and r.evidence.global_change is None
    assert "no change above the re-encoding noise" in r.judgment.reasoning
    check_consistent(r)


@pytest.mark.parametrize("backend", ["mini", "pixel"])
def test_reasoning_agrees_with_its_numbers_on_synthedit_and_the_examples(services, backend):
    cases: list[tuple[Image.Image, list[Image.Image], str]] = []
    for index in range(24):  # both splits' scenes, every flaw kind over the items
        item, source, images = make_item("hard" if index % 2 else "test", 0, index, 3)
        cases.append((Image.fromarray(source), [Image.fromarray(im) for im in images],
                      item["instruction"]))
    for e in EXAMPLES:
        folder = ROOT / "examples"
        cases.append((Image.open(folder / e["source"]).convert("RGB"),
                      [Image.open(folder / c).convert("RGB") for c in e["candidates"]],
                      e["instruction"]))
    judged = 0
    for source, candidates, instruction in cases:
        for r in services.inspect_group(source, candidates, instruction, backend):
            check_consistent(r)
            judged += 1
    assert judged >= 24 * 3 + len(EXAMPLES) * 2


def test_the_detail_ratio_tells_blur_from_recompression(services):
    """Blur lowers fine detail well below the global threshold; JPEG re-encoding does not."""
    from spatialreward.synth.degrade import jpeg

    src = Image.open(ROOT / "examples" / PHOTOS[0]).convert("RGB")
    blurred = services.inspect_group(src, [src.filter(ImageFilter.GaussianBlur(2))],
                                     "blur the photo", "pixel")[0].evidence
    recoded = services.inspect_group(src, [Image.fromarray(jpeg(np.asarray(src), 85))],
                                     "blur the photo", "pixel")[0].evidence
    assert blurred.detail_ratio < 0.66 and blurred.global_change is not None
    assert 0.8 < recoded.detail_ratio < 1.25 and recoded.global_change is None
