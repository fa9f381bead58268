"""SpatialReward-Mini's domain check: images unlike its training scenes lower its coverage."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from spatialreward.backends.mini import DEFAULT_CHECKPOINT, MiniBackend
from spatialreward.errors import ConfigError
from spatialreward.mini import domain
from spatialreward.synth.generate import make_item

INSTRUCTION = "make the red circle blue"  # words Mini reads: only the images can be off


def test_fit_separates_and_takes_the_threshold_from_the_held_out_pairs():
    rng = np.random.default_rng(0)
    synthetic, held = rng.normal(0, 1, (400, 6)), rng.normal(0, 1, (400, 6))
    real = rng.normal(0, 1, (200, 6)) + np.array([3.0, 0, 0, 0, 0, 0])
    check = domain.fit(synthetic, real, held)
    assert abs(float((check.distance(held) > 1).mean()) - 0.01) <= 0.005
    assert (check.distance(real) > 1).mean() > 0.8
    again = domain.DomainCheck.from_dict(json.loads(json.dumps(check.to_dict())))
    assert np.allclose(again.distance(real), check.distance(real))
    assert again.digest == check.digest


def write_check(folder: Path, bias: float, width: int) -> None:
    check = domain.DomainCheck(np.zeros(width), np.ones(width), np.zeros(width), bias, 0.5)
    (folder / domain.FILENAME).write_text(json.dumps(check.to_dict()))


@pytest.fixture(scope="module")
def pair() -> tuple[Image.Image, Image.Image]:
    item, source, images = make_item("test", 0, 3, 2)
    return Image.fromarray(source), Image.fromarray(images[0])


def copy_checkpoint(tmp_path: Path) -> Path:
    folder = tmp_path / "mini"
    folder.mkdir()
    for name in ("model.safetensors", "config.json"):
        shutil.copy(DEFAULT_CHECKPOINT / name, folder / name)
    return folder


def test_a_pair_above_the_threshold_is_low_coverage_and_says_why(tmp_path, pair):
    folder = copy_checkpoint(tmp_path)
    width = 4 * 64
    write_check(folder, bias=5.0, width=width)  # everything out of domain
    out = MiniBackend(folder).judge(*pair, INSTRUCTION)
    assert out.status == "low_coverage" and out.coverage is not None
    assert out.coverage.domain_distance is not None and out.coverage.domain_distance > 1
    assert any("look unlike the synthetic scenes" in r for r in out.coverage.reasons)
    assert any("out of its depth" in w for w in out.warnings)
    write_check(folder, bias=-5.0, width=width)  # everything in domain
    calm = MiniBackend(folder)
    judged = calm.judge(*pair, INSTRUCTION)
    assert judged.coverage is not None and judged.coverage.domain_distance is not None
    assert judged.coverage.domain_distance < 1 and not judged.coverage.reasons
    assert judged.status == "ok"
    assert calm.version != MiniBackend(DEFAULT_CHECKPOINT).version


def test_without_a_check_no_distance_and_a_broken_one_is_refused(tmp_path, pair):
    folder = copy_checkpoint(tmp_path)
    judged = MiniBackend(folder).judge(*pair, INSTRUCTION)
    assert judged.coverage is not None and judged.coverage.domain_distance is None
    (folder / domain.FILENAME).write_text('{"mean": [0], "scale": [1]}')
    with pytest.raises(ConfigError, match="domain_calibration.py"):
        MiniBackend(folder)


def test_the_shipped_check_passes_synthedit_and_flags_texture_photographs():
    """The shipped calibration (models/spatialreward-mini/domain.json): SynthEdit test
    pairs stay in domain; a photograph of gravel, as far from a scene of shapes as a
    picture gets, is flagged."""
    import skimage.data

    backend = MiniBackend()
    assert backend.domain is not None
    triples = []
    for index in range(8):
        item, source, images = make_item("test", 0, index, 2)
        triples += [(Image.fromarray(source), Image.fromarray(im), item["instruction"])
                    for im in images]
    judged = backend.judge_many(triples)
    inside = [j.coverage.domain_distance <= 1 for j in judged if j.coverage is not None]
    assert len(inside) == 16 and sum(inside) >= 15
    gravel = Image.open(Path(skimage.data.__file__).parent / "gravel.png").convert("RGB")
    flagged = backend.judge(gravel, gravel.point(lambda v: min(255, v + 30)), INSTRUCTION)
    assert flagged.status == "low_coverage" and flagged.coverage is not None
    assert flagged.coverage.domain_distance is not None and flagged.coverage.domain_distance > 1
