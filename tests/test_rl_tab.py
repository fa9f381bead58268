"""The Train tab through gradio_client: start a run, watch it while the app keeps answering,
read its curves and samples; errors are messages; the hacking alert is shown."""

from __future__ import annotations

import json
import time

import gradio as gr
import pytest
from gradio_client import Client

from spatialreward.config import StudioConfig
from spatialreward.rl.tiny import save_tiny_editor
from spatialreward.service import Services
from ui.train import alert_markdown, build_train_tab, status_markdown, status_summary

FORM = dict(rewards="pixel", prompts=8, ops=[], eval_prompts=4, steps=2, per_step=2,
            group=3, sampling=4, lr=3e-4, noise=0.7, kl=0.04, clip=1e-4, fraction=0.6,
            finetune="lora", threads=1, scenes="default", processes=1)


@pytest.fixture(scope="module")
def tab(tmp_path_factory):
    base = tmp_path_factory.mktemp("train")
    editor = save_tiny_editor(base / "data" / "editor")  # policies live under the data folder
    services = Services(StudioConfig(db=base / "data" / "studio.db", backend="pixel"))
    with gr.Blocks() as demo:
        build_train_tab(services)
    demo.queue(default_concurrency_limit=8)
    _, url, _ = demo.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True)
    yield str(editor), services, Client(url, verbose=False)
    demo.close()


def start(client: Client, policy: str, name: str = "", **changes) -> dict:
    form = {**FORM, **changes}
    return client.predict(policy, *form.values(), name, api_name="/start_rl")


def test_a_run_started_from_the_tab_trains_in_its_own_process(tab):
    policy, services, client = tab
    status = start(client, policy, name="ui run")
    run_id = status["run_id"]
    assert status["status"] in ("queued", "running") and status["name"] == "ui run"
    latencies = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        t0 = time.perf_counter()
        status = client.predict(str(run_id), api_name="/rl_status")
        latencies.append(time.perf_counter() - t0)
        if status["status"] not in ("queued", "running"):
            break
        time.sleep(0.2)
    assert status["status"] == "done", status
    assert max(latencies) < 2.0  # the app answers while the run trains
    assert status["steps_done"] == 2 and status["heldout_gt_success_last"] is not None
    assert status["hacking_alert_steps"] == []
    markdown, alert, _plot, gallery, _log = client.predict(str(run_id), api_name="/refresh_rl")
    assert f"Run #{run_id}" in markdown and "done" in markdown and alert == ""
    assert len(gallery) == 1 + 3  # the source, then the group's edits
    captions = [g["caption"] for g in gallery]
    assert "source" in captions[0]
    assert all("reward" in c and "ground truth" in c for c in captions[1:])
    assert services.store.run(run_id)["config"]["group_size"] == 3


def test_mistakes_are_messages_not_tracebacks(tab):
    policy, services, client = tab
    with pytest.raises(Exception, match="BACKEND=WEIGHT"):
        start(client, policy, rewards="mini=lots")
    with pytest.raises(Exception, match="group_size must be at least 2"):
        start(client, policy, group=1)
    with pytest.raises(Exception, match="no editor checkpoint"):
        start(client, policy + "-missing")
    with pytest.raises(Exception, match="pick a run"):
        client.predict("", api_name="/stop_rl")
    done = [r for r in services.store.runs("rl") if r["status"] == "done"]
    if done:  # a finished run cannot be stopped or resumed
        with pytest.raises(Exception, match="not running"):
            client.predict(str(done[0]["id"]), api_name="/stop_rl")
        with pytest.raises(Exception, match="is done"):
            client.predict(str(done[0]["id"]), api_name="/resume_rl")


def test_the_hacking_alert_is_shown_with_its_message(tmp_path):
    history = [{"step": float(s), "reward_mean": 0.5, "gt_success": 0.5, "kl": 0.001,
                "hacking_alert": float(s == 7)} for s in range(8)]
    history.insert(0, {"step": 0.0, "heldout_gt_success": 0.25})
    row = {"id": 4, "name": "rl mini", "status": "running", "pid": 123, "error": None,
           "out_dir": "runs/rl-4", "config": {"steps": 20}}
    s = status_summary(row, history)
    assert s["hacking_alert_steps"] == [7] and s["steps_done"] == 8
    (tmp_path / "alerts.jsonl").write_text(json.dumps({"step": 7, "message": "reward up, truth "
                                                       "down"}) + "\n")
    text = alert_markdown(tmp_path, s)
    assert "Reward-hacking alert" in text and "reward up, truth down" in text and "7" in text
    assert "step 8/20" in status_markdown(s) and "25.0%" in status_markdown(s)
    assert alert_markdown(tmp_path, {**s, "hacking_alert_steps": []}) == ""
