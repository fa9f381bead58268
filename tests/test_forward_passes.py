"""One forward pass per judgment: a Judge click with K candidates runs the model K times
and proposes regions K times, and the attention it draws is that of those passes."""

from __future__ import annotations

import numpy as np
import pytest
from gradio_client import Client, handle_file
from PIL import Image

from spatialreward import service
from spatialreward.backends.mini import MiniBackend
from tests.factories import make_edit_case


@pytest.fixture()
def counted(monkeypatch):
    """Counters of Mini forward passes and region proposals in the service layer."""
    counts = {"passes": 0, "proposals": 0}
    forward, propose = MiniBackend._forward, service.propose_regions

    def counting_forward(self, feats, instructions):
        counts["passes"] += len(instructions)
        return forward(self, feats, instructions)

    def counting_propose(*args, **kwargs):
        counts["proposals"] += 1
        return propose(*args, **kwargs)

    monkeypatch.setattr(MiniBackend, "_forward", counting_forward)
    monkeypatch.setattr(service, "propose_regions", counting_propose)
    return counts


def candidates(folder, k: int) -> tuple[str, list[str]]:
    case = make_edit_case(11, kind="recolor", size=(192, 256), degrade=False)
    Image.fromarray(case.source).save(folder / "s.png")
    paths = []
    for i in range(k):
        edited = case.edited if i == 0 else np.roll(case.edited, 8 * i, axis=1)
        Image.fromarray(edited).save(folder / f"c{i}.png")
        paths.append(str(folder / f"c{i}.png"))
    return str(folder / "s.png"), paths


@pytest.mark.parametrize("k", [1, 3])
def test_a_judge_click_with_k_candidates_makes_k_passes(studio, counted, tmp_path, k):
    src, cands = candidates(tmp_path, k)
    studio.services.backend("mini")  # loaded before counting (loading runs no pass)
    client = Client(studio.url, verbose=False)
    out = client.predict(handle_file(src), handle_file(cands[0]),
                         [handle_file(c) for c in cands[1:]], "make the star red", "mini",
                         api_name="/inspect")
    assert out is not None
    assert counted == {"passes": k, "proposals": k}


def test_the_maps_drawn_are_those_of_the_judging_pass(services_mini, tmp_path):
    src, cands = candidates(tmp_path, 1)
    (inspection,) = services_mini.inspect_group(src, cands, "make the star red")
    backend = services_mini.backend("mini")
    again = backend.judge_attended(inspection.source, inspection.edited, "make the star red",
                                   inspection.evidence)
    assert inspection.maps is not None and again.maps is not None
    assert inspection.maps.shape == again.maps.shape
    assert np.allclose(inspection.maps, again.maps, atol=1e-5)  # deterministic model
    assert services_mini.attention(inspection) is not None


@pytest.fixture()
def services_mini(tmp_path):
    from spatialreward.config import StudioConfig

    return service.Services(StudioConfig(db=tmp_path / "studio.db", backend="mini"))
