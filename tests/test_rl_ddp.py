"""Scale-out: ``torchrun --standalone --nproc_per_node=2`` (gloo, two CPU processes) trains
the same weights as one process on the same global batch, up to float rounding."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from spatialreward.rl.runner import build_trainer
from spatialreward.rl.runs import REPO
from spatialreward.rl.tiny import save_tiny_editor, tiny_rl_config

torch.set_num_threads(1)


@pytest.mark.parametrize("method", ["grpo", "nft"])
def test_two_processes_train_like_one(tmp_path, method):
    editor = save_tiny_editor(tmp_path / "editor")
    # 2 prompts x 4 samples per step: each process samples one prompt's group.
    config = tiny_rl_config(editor, steps=2, prompts_per_step=2, group_size=4, eval_prompts=4,
                            method=method)
    path = tmp_path / "tiny.json"
    config.save(path)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "spatialreward.rl", "rl", "--config", str(path), "--no-store",
           "--out", str(tmp_path / "two")]
    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    assert out.stdout.count("run done") == 1  # one process reports

    torch.manual_seed(config.seed)  # what the run does before building
    one = build_trainer(config, tmp_path / "one")
    assert one.run() == "done"

    two = load_file(str(tmp_path / "two" / "checkpoint" / "policy.safetensors"))
    ref = one.policy.trainable_state()
    assert two.keys() == ref.keys()
    assert max(float((two[k] - ref[k]).abs().max()) for k in ref) < 1e-5
    curves = json.loads((tmp_path / "two" / "curves.json").read_text())
    steps = [h for h in curves if "reward_mean" in h]
    ref_steps = [h for h in one.history if "reward_mean" in h]
    assert len(steps) == len(ref_steps) == 2
    for a, b in zip(steps, ref_steps, strict=True):
        for key in ("reward_mean", "reward_std", "gt_success", "kl", "grad_norm"):
            assert abs(a[key] - b[key]) < 1e-5, (key, a[key], b[key])
    held = [h["heldout_reward"] for h in curves if "heldout_reward" in h]
    assert held == [h["heldout_reward"] for h in one.history if "heldout_reward" in h]
