"""The pixel backend and the service layer around it."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from spatialreward import backends
from spatialreward.backends.pixel import PixelBackend
from spatialreward.config import StudioConfig
from spatialreward.errors import ConfigError, InputError, UnknownBackendError
from spatialreward.judgment import Judgment
from spatialreward.reasoning import referenced_regions
from spatialreward.regions import PixelConfig
from spatialreward.service import Services
from tests.factories import make_edit_case, make_overedit_case, make_unedited_case


def pil(a: np.ndarray) -> Image.Image:
    return Image.fromarray(a)


@pytest.fixture(scope="module")
def backend() -> PixelBackend:
    return PixelBackend()


def test_clean_edit_scores_change_and_preservation(backend):
    case = make_edit_case(11, kind="recolor", size=(480, 640))
    j = backend.judge(pil(case.source), pil(case.edited), "make the square blue")
    assert j.status == "ok" and len(j.regions) == 1
    assert j.sc[0] > 15  # a clear change
    assert j.sc[1] > 20  # everything else kept
    assert j.regions[0].mask is not None and j.regions[0].mask.to_array().any()
    assert referenced_regions(j.reasoning) == {0}
    assert "does not read the instruction" in j.reasoning
    assert Judgment.from_json(j.to_json()) == j


def test_unedited_pair_gets_no_credit_for_editing(backend):
    case = make_unedited_case(5, size=(512, 512))
    j = backend.judge(pil(case.source), pil(case.edited), "make the square blue")
    assert j.regions == () and j.sc[0] == 0.0
    assert j.sc[1] > 22
    assert "no change above the re-encoding noise" in j.reasoning


def test_global_over_edit_lowers_over_editing_score(backend):
    clean, over = make_overedit_case(21, size=(480, 640))
    jc = backend.judge(pil(clean.source), pil(clean.edited), "x")
    jo = backend.judge(pil(over.source), pil(over.edited), "x")
    assert jo.sc[1] < jc.sc[1] - 5
    assert jo.overall < jc.overall


def test_noise_inside_the_region_costs_artifact_score(backend):
    case = make_edit_case(13, kind="recolor", size=(512, 512), degrade=False)
    x1, y1, x2, y2 = (np.array(case.box) * 512 / 1000).astype(int)
    noisy = case.edited.astype(np.int16)
    rng = np.random.default_rng(0)
    noisy[y1:y2, x1:x2] += rng.normal(0, 40, noisy[y1:y2, x1:x2].shape).astype(np.int16)
    noisy = np.clip(noisy, 0, 255).astype(np.uint8)
    clean = backend.judge(pil(case.source), pil(case.edited), "x")
    dirty = backend.judge(pil(case.source), pil(noisy), "x")
    assert dirty.pq[1] < clean.pq[1] - 5


def test_global_blur_costs_naturalness(backend):
    case = make_edit_case(17, kind="add", size=(512, 512), degrade=False)
    blurred = cv2.GaussianBlur(case.edited, (0, 0), 2.5)
    sharp = backend.judge(pil(case.source), pil(case.edited), "x")
    soft = backend.judge(pil(case.source), pil(blurred), "x")
    assert soft.pq[0] < sharp.pq[0] - 5


def test_version_tracks_the_config():
    assert PixelBackend().version == PixelBackend().version
    assert PixelBackend(PixelConfig(analysis_size=256)).version != PixelBackend().version


def test_registry_fails_loudly_on_unknown_names_and_arguments():
    assert "pixel" in backends.available()
    with pytest.raises(UnknownBackendError, match="known backends: .*pixel"):
        backends.create("clip-score")
    with pytest.raises(ConfigError, match="takes no argument"):
        backends.create("pixel:fast")


def test_services_share_one_backend_and_report_frame_mapping(tmp_path):
    services = Services(StudioConfig())
    assert services.backend("pixel") is services.backend(" pixel")
    case = make_edit_case(19, kind="add", size=(400, 400), degrade=False)
    wide = cv2.resize(case.edited, (560, 400), interpolation=cv2.INTER_CUBIC)
    j = services.judge(case.source, wide, "add a red circle")
    assert j.meta["source_size"] == [400, 400] and j.meta["edited_size"] == [560, 400]
    assert any("aspect ratio" in w for w in j.warnings)
    assert j.timings_ms["total"] > 0


def test_services_reject_empty_instruction():
    with pytest.raises(InputError, match="instruction is empty"):
        Services().judge(np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8, 3), np.uint8), "  ")


def test_a_crashing_backend_is_reported_not_scored():
    class Broken:
        name, version = "broken", "0"

        def judge(self, *args, **kwargs):
            raise RuntimeError("CUDA out of memory")

    services = Services()
    services._backends["broken"] = Broken()  # type: ignore[assignment]
    img = np.zeros((16, 16, 3), np.uint8)
    j = services.judge(img, img, "x", backend="broken")
    assert j.status == "backend_error" and j.overall is None and j.reward is None
    assert "CUDA out of memory" in j.error
