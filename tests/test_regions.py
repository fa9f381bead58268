"""Tests of spatialreward.regions (pixel evidence) on seeded synthetic cases.

Run with ``pytest -s tests/test_regions.py`` to see the measured rates.
"""

from __future__ import annotations

import dataclasses
from collections import Counter

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from spatialreward.errors import ConfigError, EmptyImageError, ImageError
from spatialreward.regions import (
    ChangedRegion,
    PixelConfig,
    PixelEvidence,
    propose_regions,
)
from tests.factories import (
    BACKGROUNDS,
    EDIT_KINDS,
    box_iou,
    delta_e,
    equal_lightness_case,
    jpeg,
    make_edit_case,
    make_overedit_case,
    make_unedited_case,
)

# mostly moderate sizes (h, w) for speed, every 15th case at 1024 x 1024
SIZES = ((256, 384), (384, 384), (480, 640), (640, 480), (512, 512), (384, 576))
N_EDITS = 90
N_UNEDITED = 90


def _size(i: int) -> tuple[int, int]:
    return (1024, 1024) if i % 15 == 14 else SIZES[i % len(SIZES)]


def _check_evidence(ev: PixelEvidence) -> None:
    """Invariants every result must satisfy, whatever the input."""
    h, w = ev.analysis_shape
    assert ev.heatmap.shape == (h, w) and ev.heatmap.dtype == np.float32
    assert np.isfinite(ev.heatmap).all()
    assert ev.heatmap.min() >= 0.0 and ev.heatmap.max() <= 1.0
    assert 0.0 <= ev.preservation <= 1.0
    assert np.isfinite(ev.noise_floor) and ev.noise_floor >= 0
    assert np.isfinite(ev.global_shift) and ev.global_shift >= 0
    areas = [r.area_fraction for r in ev.regions]
    assert areas == sorted(areas, reverse=True)
    for r in ev.regions:
        assert isinstance(r, ChangedRegion)
        x1, y1, x2, y2 = r.bbox_2d
        assert all(isinstance(v, int) for v in r.bbox_2d)
        assert 0 <= x1 < x2 <= 1000 and 0 <= y1 < y2 <= 1000
        assert r.mask.shape == (h, w) and r.mask.dtype == bool and r.mask.any()
        assert r.area_fraction == pytest.approx(r.mask.mean())
        assert np.isfinite(r.strength) and r.strength > 0
        assert np.isfinite(r.mean_delta_e) and r.mean_delta_e >= 0


# ---------------------------------------------------------------- statistical
@pytest.fixture(scope="module")
def edit_results():
    rows = []
    for i in range(N_EDITS):
        case = make_edit_case(7000 + i, kind=EDIT_KINDS[i % len(EDIT_KINDS)],
                              background=BACKGROUNDS[(i // len(EDIT_KINDS)) % len(BACKGROUNDS)],
                              size=_size(i))
        ev = propose_regions(case.source, case.edited)
        _check_evidence(ev)
        iou = box_iou(ev.regions[0].bbox_2d, case.box) if ev.regions else 0.0
        rows.append((case, ev, iou))
    return rows


@pytest.fixture(scope="module")
def unedited_results():
    rows = []
    for i in range(N_UNEDITED):
        case = make_unedited_case(9000 + i, background=BACKGROUNDS[i % len(BACKGROUNDS)],
                                  size=_size(i))
        ev = propose_regions(case.source, case.edited)
        _check_evidence(ev)
        rows.append((case, ev))
    return rows


def test_edit_boxes_match_truth(edit_results):
    hits = [iou >= 0.7 for _, _, iou in edit_results]
    rate = float(np.mean(hits))
    by_kind = Counter(c.kind for (c, _, _), ok in zip(edit_results, hits, strict=True) if not ok)
    print(f"\n[regions] IoU>=0.7 on {len(hits)} single-object edits: {rate:.3f} "
          f"(mean IoU {np.mean([r[2] for r in edit_results]):.3f}; misses by kind {dict(by_kind)})")
    for (case, ev, iou), ok in zip(edit_results, hits, strict=True):
        if not ok:
            print(f"  miss IoU={iou:.2f} pred={[r.bbox_2d for r in ev.regions]} {case.describe()}")
    assert len(hits) >= 80
    assert set(c.kind for c, _, _ in edit_results) == set(EDIT_KINDS)
    assert set(c.background for c, _, _ in edit_results) == set(BACKGROUNDS)
    assert rate >= 0.95


def test_edits_give_exactly_one_region(edit_results):
    counts = [len(ev.regions) for _, ev, _ in edit_results]
    rate = float(np.mean([n == 1 for n in counts]))
    print(f"\n[regions] exactly one region on {len(counts)} edits: {rate:.3f} "
          f"(region counts {dict(Counter(counts))})")
    assert rate >= 0.90


def test_unedited_reencoded_pairs_give_no_regions(unedited_results):
    empty = [not ev.regions for _, ev in unedited_results]
    rate = float(np.mean(empty))
    print(f"\n[regions] zero regions on {len(empty)} unedited re-encoded pairs: {rate:.3f}")
    for (case, ev), ok in zip(unedited_results, empty, strict=True):
        if not ok:
            print(f"  false region {[r.bbox_2d for r in ev.regions]} {case.describe()}")
    assert len(empty) >= 80
    assert rate >= 0.95


def test_clean_edits_preserve_the_rest(edit_results):
    """Re-encoding noise alone must not cost much preservation."""
    pres = np.array([ev.preservation for _, ev, _ in edit_results])
    print(f"\n[regions] preservation of edits: median {np.median(pres):.3f}, min {pres.min():.3f}")
    assert np.median(pres) > 0.95
    assert np.mean(pres > 0.8) >= 0.95


# ---------------------------------------------------------------- specific cases
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equal_lightness_recolour_is_found(seed):
    case = equal_lightness_case(seed)
    changed = delta_e(case.source, case.clean_edited) > 6
    grey = np.abs(cv2.cvtColor(case.source, cv2.COLOR_RGB2GRAY).astype(float)
                  - cv2.cvtColor(case.edited, cv2.COLOR_RGB2GRAY).astype(float))
    assert grey[changed].mean() < 15  # a grey-level diff hardly sees it ...
    assert delta_e(case.source, case.edited)[changed].mean() > 50  # ... Lab does
    ev = propose_regions(case.source, case.edited)
    _check_evidence(ev)
    assert len(ev.regions) == 1
    assert box_iou(ev.regions[0].bbox_2d, case.box) >= 0.8
    assert ev.regions[0].mean_delta_e > 30 and ev.regions[0].strength > 3


@pytest.mark.parametrize("i", range(5))
def test_edited_with_other_size_and_aspect(i):
    """The edited image stretched to 1.3x width keeps boxes in the source frame."""
    case = make_edit_case(300 + i, kind=EDIT_KINDS[i], size=SIZES[i], allow_resize=False)
    h, w = case.edited.shape[:2]
    wide = cv2.resize(case.edited, (round(1.3 * w), h), interpolation=cv2.INTER_CUBIC)
    ev = propose_regions(case.source, wide)
    _check_evidence(ev)
    sh, sw = case.source.shape[:2]
    assert ev.analysis_shape[0] * sw == pytest.approx(ev.analysis_shape[1] * sh, rel=0.02)
    assert ev.regions, case.describe()
    assert box_iou(ev.regions[0].bbox_2d, case.box) >= 0.7, case.describe()


@pytest.mark.parametrize("i", range(4))
def test_large_edit_covering_about_40_percent(i):
    """The noise estimate must hold while the edit covers a large part of the image."""
    case = make_edit_case(400 + i, kind=("recolor", "remove")[i % 2], size=(384, 384),
                          top_area=(0.35, 0.45))
    coverage = float((delta_e(case.source, case.clean_edited) > 6).mean())
    assert 0.25 < coverage < 0.55, coverage
    ev = propose_regions(case.source, case.edited)
    _check_evidence(ev)
    assert ev.regions and box_iou(ev.regions[0].bbox_2d, case.box) >= 0.7, case.describe()


@pytest.mark.parametrize("seed", [11, 12, 13, 14])
def test_global_over_edit_lowers_preservation(seed):
    clean, over = make_overedit_case(seed, size=(384, 512))
    ev_clean = propose_regions(clean.source, clean.edited)
    ev_over = propose_regions(over.source, over.edited)
    _check_evidence(ev_over)
    print(f"\n[regions] seed {seed}: preservation clean {ev_clean.preservation:.3f} "
          f"over-edit {ev_over.preservation:.3f} (global shift {ev_over.global_shift:.1f})")
    assert ev_clean.preservation > 0.9
    assert ev_over.preservation < 0.5
    assert ev_clean.preservation - ev_over.preservation > 0.4


def test_reencoding_keeps_preservation_high():
    """JPEG q75 + a slight blur of an unedited image: no regions, preservation > 0.9."""
    for seed in range(3):
        src = make_unedited_case(500 + seed, size=(384, 512)).source
        copy = jpeg(cv2.GaussianBlur(src, (0, 0), 0.6), 75)
        ev = propose_regions(src, copy)
        assert not ev.regions
        assert ev.preservation > 0.9


def test_identical_images():
    src = make_edit_case(5, size=(384, 512)).source
    ev = propose_regions(src, src.copy())
    _check_evidence(ev)
    assert ev.regions == ()
    assert ev.preservation >= 0.999
    assert ev.heatmap.max() == 0.0
    assert ev.global_shift < 0.1 and ev.noise_floor < 0.1


def test_pil_and_array_inputs_agree():
    case = make_edit_case(21, size=(300, 400))
    a = propose_regions(case.source, case.edited)
    b = propose_regions(Image.fromarray(case.source), Image.fromarray(case.edited).convert("RGBA"))
    assert [r.bbox_2d for r in a.regions] == [r.bbox_2d for r in b.regions]
    assert np.array_equal(a.heatmap, b.heatmap)


def test_analysis_size_bounds_the_frame():
    case = make_edit_case(31, size=(1024, 1024))
    ev = propose_regions(case.source, case.edited, PixelConfig(analysis_size=256))
    assert max(ev.analysis_shape) == 256
    assert ev.regions and box_iou(ev.regions[0].bbox_2d, case.box) >= 0.7


# ---------------------------------------------------------------- properties
_image = arrays(np.uint8, st.tuples(st.integers(1, 40), st.integers(1, 40), st.just(3)))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_image, _image)
def test_random_pairs_never_raise(source, edited):
    _check_evidence(propose_regions(source, edited))


@settings(max_examples=60, deadline=None)
@given(st.integers(8, 80), st.integers(8, 80), st.integers(0, 2**32 - 1))
def test_pasted_patch_boxes_are_valid(h, w, seed):
    """Flat image with one pasted patch: valid boxes, and a clear patch is found."""
    rng = np.random.default_rng(seed)
    src = np.full((h, w, 3), rng.integers(0, 256, 3), np.uint8)
    edited = src.copy()
    y0, x0 = rng.integers(0, h - 4), rng.integers(0, w - 4)
    y1, x1 = y0 + rng.integers(4, h - y0 + 1), x0 + rng.integers(4, w - x0 + 1)
    edited[y0:y1, x0:x1] = 255 - src[0, 0]  # far from the background colour
    ev = propose_regions(src, edited)
    _check_evidence(ev)
    contrast = int(np.abs(255 - 2 * src[0, 0].astype(int)).max())
    # unambiguous only if the patch (widened by the analysis blur) stays a minority
    if min(h, w) >= 24 and (y1 - y0) * (x1 - x0) < 0.25 * h * w and contrast > 60:
        assert ev.regions


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 40), st.integers(1, 40), st.sampled_from(["L", "RGBA", "P", "LA"]))
def test_pil_modes_accepted(h, w, mode):
    rng = np.random.default_rng(h * 41 + w)
    img = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).convert(mode)
    _check_evidence(propose_regions(img, img))


# ---------------------------------------------------------------- input and config errors
@pytest.mark.parametrize("bad", [
    np.zeros((0, 5, 3), np.uint8),
    np.zeros((5, 0, 3), np.uint8),
])
def test_empty_images_rejected(bad):
    with pytest.raises(EmptyImageError):
        propose_regions(bad, np.zeros((5, 5, 3), np.uint8))


@pytest.mark.parametrize("bad", [
    np.zeros((5, 5, 3), np.float32),
    np.zeros((5, 5, 2), np.uint8),
    np.zeros((5,), np.uint8),
    "not an image",
])
def test_bad_inputs_rejected(bad):
    with pytest.raises(ImageError):
        propose_regions(np.zeros((5, 5, 3), np.uint8), bad)


@pytest.mark.parametrize("name, value", [
    ("analysis_size", 0), ("analysis_size", 16), ("analysis_size", 512.5), ("analysis_size", 10**6),
    ("blur_sigma", -1.0), ("align_radius", -1), ("align_radius", 1.5), ("edge_tolerance", 2.0),
    ("min_delta_e", 0.0), ("noise_quantile", 1.0), ("noise_quantile", 0.1), ("noise_k", 0.0),
    ("max_threshold", 1.0), ("seed_ratio", 0.5), ("close_fraction", 0.5),
    ("min_area_fraction", 1.0), ("speck_fraction", -0.1), ("merge_gap", 2.0), ("heat_scale", 1.0),
    ("preservation_tolerance", -1.0), ("preservation_scale", 0.0), ("region_margin", 0.9),
    ("min_delta_e", float("nan")), ("noise_k", float("inf")), ("blur_sigma", "1"),
    ("analysis_size", True), ("merge_gap", None),
])
def test_config_validation(name, value):
    with pytest.raises(ConfigError) as err:
        PixelConfig(**{name: value})
    assert name in str(err.value) and "fix" in str(err.value).lower()


def test_config_fields_documented_and_defaults_valid():
    cfg = PixelConfig()
    for f in dataclasses.fields(cfg):
        assert f.metadata.get("help"), f.name
    assert PixelConfig(analysis_size=np.int64(256)).analysis_size == 256
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.analysis_size = 10  # type: ignore[misc]
