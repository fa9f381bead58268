"""External runs: a trainer elsewhere calls serve-reward; the Train tab opens the run and
shows its reward curves, failure rate, the kept samples with regions and reasoning, and
a hacking alert from the reward's trend against a spot check (a second backend)."""

from __future__ import annotations

import base64
import io
import json
import threading
import time
import urllib.request

import gradio as gr
import numpy as np
import pytest
from gradio_client import Client
from PIL import Image

from spatialreward.config import StudioConfig
from spatialreward.judgment import Judgment
from spatialreward.reward_server import serve
from spatialreward.service import Services
from tests.factories import make_edit_case
from ui.train import alert_markdown, build_train_tab, external_markdown


class Scripted:
    """A judge whose reward is the next value of a script (one per judged edit)."""

    def __init__(self, name: str, rewards) -> None:
        self.name, self.version, self.rewards = name, "1", iter(rewards)

    def judge(self, source, edited, instruction, evidence=None) -> Judgment:
        s = 25.0 * float(next(self.rewards))
        return Judgment(status="ok", sc=(s, s), pq=(s, s), backend=self.name,
                        backend_version="1", reasoning="scripted")


def recorded(services: Services, run_id: int, calls: int) -> None:
    """Wait until the server recorded ``calls`` calls (it records after answering)."""
    deadline = time.monotonic() + 60
    while sum(m["key"] == "items" for m in services.store.metrics(run_id)) < calls:
        assert time.monotonic() < deadline, "the calls were not recorded"
        time.sleep(0.05)


def png(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


@pytest.fixture(scope="module")
def pair():
    case = make_edit_case(2, kind="recolor", size=(64, 64))
    return Image.fromarray(case.source), Image.fromarray(case.edited)


def test_an_external_run_shows_up_in_the_train_tab_with_curves_and_samples(tmp_path, pair):
    services = Services(StudioConfig(db=tmp_path / "data" / "studio.db", backend="pixel"))
    services.add_backend("spot", Scripted("spot", [0.4] * 100))
    server = serve(services, "pixel", port=0, name="omnigen2-grpo", samples=1,
                   spot_check="spot")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/v1/reward"
    source, edited = pair
    for step in (1, 2, 3):
        items = [{"source": png(source), "edited": png(edited), "instruction": "make it red"},
                 {"source": png(source), "edited": "not an image", "instruction": "x"}]
        request = urllib.request.Request(url, json.dumps({"step": step, "items": items})
                                         .encode(), {"Content-Type": "application/json"})
        with urllib.request.urlopen(request) as answer:
            assert answer.status == 200
    recorded(services, server.run_id, 3)
    server.shutdown()
    server.server_close()
    run_id = server.run_id

    with gr.Blocks() as demo:
        build_train_tab(services)
    _, app_url, _ = demo.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True)
    try:
        client = Client(app_url, verbose=False)
        status = client.predict(str(run_id), api_name="/rl_status")
        assert status["calls"] == 3 and status["items"] == 6
        assert status["failure_rate"] == pytest.approx(0.5)  # the unreadable item, every call
        assert status["spot_checks"] == 3 and status["spot_reward"] == pytest.approx(0.4)
        markdown, alert, plot, gallery, _log = client.predict(str(run_id),
                                                              api_name="/refresh_rl")
    finally:
        demo.close()
    assert "external trainer judged by pixel" in markdown and "3 reward calls" in markdown
    assert "failed 50.0%" in markdown and "spot check spot: 0.400" in markdown
    assert alert == ""  # the served reward did not rise against the spot check
    figure = json.loads(plot["plot"]) if isinstance(plot, dict) else plot
    names = {t.get("name") for t in figure["data"]}
    assert {"reward mean (all items)", "spot check's reward (same items)",
            "failure rate"} <= names
    captions = [item["caption"] for item in gallery]
    assert len(captions) == 6  # 3 calls: the source and the kept edit of each
    edits = [c for c in captions if c.startswith("reward")]
    assert len(edits) == 3 and all("spot check spot: reward 0.400" in c for c in edits)
    judged = json.loads(next((tmp_path / "data" / "runs" / f"external-{run_id}" /
                              "samples").glob("*.json")).read_text())["judgments"][0]
    assert judged["pixel"]["regions"] and judged["pixel"]["reasoning"]  # regions, reasoning
    labels = [r for r in services.rl_runs() if r["id"] == run_id]
    assert labels and labels[0]["status"] == "running"


def _run(services: Services, served: list[float], name: str) -> tuple[int, list[int]]:
    run_id = services.open_external_run(name, {"backend": "served", "spot_check": "spot"})
    source = Image.new("RGB", (16, 16))
    for step, value in enumerate(served):
        s = 25.0 * value
        j = Judgment(status="ok", sc=(s, s), pq=(s, s), backend="served", backend_version="1")
        services.record_reward_call(run_id, step, [(source, source, "x")], [j], 5.0,
                                    samples=1, spot_check="spot")
    history = services.rl_view(run_id)["summary"]["hacking_alert_steps"]
    return run_id, history


def test_the_spot_check_alert_fires_on_a_hacked_run_and_stays_quiet_on_a_flat_one(tmp_path):
    rng = np.random.default_rng(0)
    services = Services(StudioConfig(db=tmp_path / "s.db", backend="pixel"))
    n = 80
    rising = np.clip(0.5 + 0.004 * np.arange(n) + rng.normal(0, 0.03, n), 0, 1)
    falling = np.clip(0.5 - 0.004 * np.arange(n) + rng.normal(0, 0.03, n), 0, 1)
    services.add_backend("spot", Scripted("spot", falling))
    hacked, alerts = _run(services, list(rising), "hacked")
    assert alerts and min(alerts) >= 49  # not before a full window of calls
    view = services.rl_view(hacked)
    text = alert_markdown(view["folder"], view["summary"])
    assert "Reward-hacking alert" in text and "the spot check's reward trended" in text
    assert view["summary"]["spot_checks"] == n
    assert f"({n} calls checked)" in external_markdown(view["summary"])

    flat = np.clip(0.5 + rng.normal(0, 0.05, n), 0, 1)
    services.add_backend("spot", Scripted("spot", np.clip(0.5 + rng.normal(0, 0.05, n), 0, 1)))
    _, quiet = _run(services, list(flat), "flat")
    assert quiet == []


def test_a_reward_mix_serves_the_weighted_mean_and_fails_whole(tmp_path, pair):
    services = Services(StudioConfig(db=tmp_path / "s.db", backend="pixel"))
    services.add_backend("zero", Scripted("zero", [0.0] * 10))
    plain = services.judge_batch([(pair[0], pair[1], "make it red")], "pixel")[0]
    server = serve(services, "pixel", port=0, mix=[("zero", 0.25)], record=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/v1/reward"
    items = [{"source": png(pair[0]), "edited": png(pair[1]), "instruction": "make it red"}]
    request = urllib.request.Request(url, json.dumps({"items": items}).encode(),
                                     {"Content-Type": "application/json"})
    with urllib.request.urlopen(request) as answer:
        [item] = json.loads(answer.read())["items"]
    recorded(services, server.run_id, 1)
    server.shutdown()
    server.server_close()
    assert item["reward"] == pytest.approx(0.75 * plain.reward)  # pixel 0.75, zero 0.25
    assert item["sc"] == list(plain.sc)  # what is shown is the first backend's judgment
    metrics = {m["key"]: m["value"] for m in services.store.metrics(server.run_id)}
    assert metrics["reward_mean"] == pytest.approx(0.75 * plain.reward)
    with pytest.raises(Exception, match="less than 1"):
        serve(services, "pixel", port=0, mix=[("zero", 1.0)], record=False)

    class Down:
        name, version = "down", "1"

        def judge(self, source, edited, instruction, evidence=None):
            return Judgment(status="backend_error", backend="down", backend_version="1",
                            error="server unreachable")

    services.add_backend("down", Down())
    from spatialreward.reward_server import services_judge

    [j] = services_judge(services, "pixel", 4, [("pixel", 0.5), ("down", 0.5)])(
        [(pair[0], pair[1], "make it red")])
    assert j.meta["reward_mix"]["reward"] is None and j.status == "backend_error"
    assert "down failed: server unreachable" in j.error
