"""RL runs as separate processes, recorded in the store: start, stop (SIGTERM ->
checkpoint, cancelled), resume (== a straight run), and a crashed process noticed."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from spatialreward.errors import ConfigError, InputError
from spatialreward.rl.runner import build_trainer
from spatialreward.rl.runs import REPO, Launcher
from spatialreward.rl.tiny import save_tiny_editor, tiny_rl_config
from storage.store import Store

torch.set_num_threads(1)


def wait_for(predicate, timeout: float = 90.0, what: str = "condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture()
def env(tmp_path):
    editor = save_tiny_editor(tmp_path / "editor")
    db = tmp_path / "data" / "studio.db"
    db.parent.mkdir()
    store = Store.open(db)
    yield editor, store, Launcher(store, db)
    store.close()


def test_stop_checkpoints_and_resume_finishes_like_a_straight_run(env, tmp_path):
    editor, store, launcher = env
    config = tiny_rl_config(editor, steps=12, eval_prompts=2, checkpoint_every=100)
    run_id = launcher.start(config, name="tiny")
    assert store.run(run_id)["status"] in ("queued", "running")
    wait_for(lambda: store.metrics(run_id, "reward_mean"), what="the first step")
    launcher.stop(run_id)
    assert launcher.wait(run_id, timeout=90) == 0
    row = launcher.status(run_id)
    stopped_at = len(store.metrics(run_id, "reward_mean"))
    assert row["status"] == "cancelled" and 1 <= stopped_at < config.steps, (row, stopped_at)
    folder = launcher.folder(row)
    state = json.loads((folder / "checkpoint" / "state.json").read_text())
    assert state["step"] == stopped_at

    launcher.resume(run_id)
    assert launcher.wait(run_id, timeout=90) == 0
    row = launcher.status(run_id)
    assert row["status"] == "done", launcher.log_tail(run_id)
    steps = [m["step"] for m in store.metrics(run_id, "reward_mean")]
    assert steps == list(range(config.steps))  # every step once: no gap, no repeat
    assert "resumed at step" in launcher.log_tail(run_id, 200)

    torch.manual_seed(config.seed)
    straight = build_trainer(config, tmp_path / "straight")
    straight.run()
    resumed = load_file(str(folder / "checkpoint" / "policy.safetensors"))
    expected = straight.policy.trainable_state()
    assert resumed.keys() == expected.keys()
    assert max(float((resumed[k] - expected[k]).abs().max()) for k in expected) < 1e-6

    samples = store.rl_samples(run_id)
    assert len(samples) == config.steps and len(samples[0]["images"]) == config.group_size
    detail = json.loads((folder / "samples" / f"{samples[0]['id']}.json").read_text())
    assert len(detail["truth"]) == config.group_size and "pixel" in detail["judgments"][0]
    assert (folder / "curves.html").is_file()
    assert {"heldout_gt_success", "kl", "step_seconds"} <= {m["key"] for m in
                                                            store.metrics(run_id)}


def test_a_process_that_dies_without_an_outcome_is_marked_failed(env):
    _, store, launcher = env
    run_id = store.create_run("rl", "ghost", {"steps": 1})
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    store.update_run(run_id, status="running", pid=proc.pid)
    row = launcher.status(run_id)
    assert row["status"] == "failed" and "without recording an outcome" in row["error"]
    with pytest.raises(InputError, match="not running"):
        launcher.stop(run_id)
    with pytest.raises(InputError, match="no checkpoint"):
        launcher.resume(run_id)


def test_start_refuses_a_missing_policy_before_recording_anything(env, tmp_path):
    _, store, launcher = env
    with pytest.raises(ConfigError, match="train-editor"):
        launcher.start(tiny_rl_config(tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match="divisible"):
        launcher.start(tiny_rl_config(env[0], prompts_per_step=3), processes=2)
    assert store.runs("rl") == []


def test_the_launcher_and_the_ui_side_import_no_torch():
    code = ("import sys; import spatialreward.rl.runs, spatialreward.rl.config, "
            "spatialreward.rl.charts; assert 'torch' not in sys.modules, 'torch imported'")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr


def test_the_command_line_reports_a_bad_config_in_one_line(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"group_size": 1}))
    out = subprocess.run([sys.executable, "-m", "spatialreward.rl", "rl", "--config", str(bad),
                          "--no-store", "--out", str(tmp_path)], cwd=REPO,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert out.stderr.strip().startswith("error: group_size must be at least 2")
    assert not Path(tmp_path / "checkpoint").exists()
