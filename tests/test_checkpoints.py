"""The one checkpoint reader: safetensors + JSON, read once, clear errors, no unpickling."""

from __future__ import annotations

import hashlib
import pickle

import pytest
import torch
from safetensors.torch import save_file

from spatialreward.checkpoints import read_checkpoint
from spatialreward.errors import ConfigError

ARGS = dict(what="toy", hint="train one with `make toy`")


def write(folder, weights: bytes | None = None, config: str = '{"width": 2}'):
    folder.mkdir(exist_ok=True)
    (folder / "config.json").write_text(config)
    if weights is None:
        save_file({"w": torch.ones(2, 2)}, str(folder / "model.safetensors"))
    else:
        (folder / "model.safetensors").write_bytes(weights)
    return folder


def test_a_checkpoint_is_read_with_its_digest(tmp_path):
    folder = write(tmp_path / "ok")
    ckpt = read_checkpoint(folder, "model.safetensors", "config.json", **ARGS)
    assert ckpt.meta == {"width": 2} and torch.equal(ckpt.state["w"], torch.ones(2, 2))
    digest = hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()[:12]
    assert ckpt.digest == digest
    model = ckpt.build("toy", lambda meta: torch.nn.Linear(2, meta["width"], bias=False))
    assert model.weight.shape == (2, 2)
    with pytest.raises(ConfigError, match="not a usable toy checkpoint .*KeyError"):
        ckpt.build("toy", lambda meta: meta["depth"])


@pytest.mark.parametrize("weights, config, says", [
    (pickle.dumps({"w": 1}), '{"width": 2}', "not a usable toy checkpoint"),  # never unpickled
    (None, "{not json", "not a usable toy checkpoint"),
    (None, "[1, 2]", "holds no JSON object"),
])
def test_bad_checkpoints_are_clear_errors(tmp_path, weights, config, says):
    folder = write(tmp_path / "bad", weights, config)
    with pytest.raises(ConfigError, match=says):
        read_checkpoint(folder, "model.safetensors", "config.json", **ARGS)


def test_a_missing_checkpoint_says_how_to_make_one(tmp_path):
    with pytest.raises(ConfigError, match=r"no toy checkpoint in .*need model\.safetensors "
                                          r"and config\.json\); train one with `make toy`"):
        read_checkpoint(tmp_path, "model.safetensors", "config.json", **ARGS)
