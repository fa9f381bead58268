"""serve-reward: the JSON API and the official clients' pickled API over real HTTP."""

from __future__ import annotations

import base64
import io
import json
import math
import os
import pickle
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from PIL import Image

from spatialreward.config import StudioConfig
from spatialreward.judgment import Judgment
from spatialreward.reward_server import RewardEngine, ServerBusy, make_handler, serve
from spatialreward.service import Services
from tests.factories import make_edit_case
from tests.test_external_runs import recorded


def png(image: Image.Image) -> str:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


@pytest.fixture(scope="module")
def pair() -> tuple[Image.Image, Image.Image]:
    case = make_edit_case(5, kind="recolor", size=(96, 128))
    return Image.fromarray(case.source), Image.fromarray(case.edited)


def start(server) -> str:
    threading.Thread(target=server.serve_forever, daemon=True).start()
    host, port = server.server_address[:2]
    return f"http://{host}:{port}"


@pytest.fixture()
def servers(tmp_path) -> Iterator[tuple[str, str]]:
    services = Services(StudioConfig(db=tmp_path / "s.db"))
    plain = serve(services, "pixel", port=0)
    compat = serve(services, "pixel", port=0, pickle_compat=True)
    yield start(plain), start(compat)
    for s in (plain, compat):
        s.shutdown()
        s.server_close()


def post(url: str, body: bytes, kind: str) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": kind})
    try:
        with urllib.request.urlopen(request, timeout=60) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def test_json_rewards_per_item_and_failed_items_marked_not_scored(servers, pair):
    url, _ = servers
    source, edited = pair
    body = json.dumps({"client": "test", "step": 3, "items": [
        {"source": png(source), "edited": png(edited), "instruction": "make it red"},
        {"source": png(source), "edited": png(source), "instruction": "make it red"},
        {"source": "%%%", "edited": png(edited), "instruction": "make it red"}]}).encode()
    status, raw = post(url + "/v1/reward", body, "application/json")
    assert status == 200
    items = json.loads(raw)["items"]
    changed, unchanged, bad = items
    assert changed["status"] == "ok" and 0 <= changed["reward"] <= 1
    assert changed["score"] == float(changed["reward"] >= 0.5) and changed["regions"]
    assert unchanged["reward"] < changed["reward"]  # nothing changed: the pixel judge knows
    assert bad["status"] == "backend_error" and bad["reward"] is None and bad["score"] is None
    assert "base64" in bad["error"]
    with urllib.request.urlopen(url + "/ping", timeout=10) as r:
        assert r.read() == b"pong"
    status, raw = post(url + "/", pickle.dumps({}), "application/octet-stream")
    assert status == 404 and b"--pickle-compat" in raw  # off unless asked for
    import http.client

    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.putrequest("POST", "/v1/reward")
    conn.putheader("Content-Length", "lots")
    conn.endheaders()
    answer = conn.getresponse()
    assert answer.status == 400 and b"Content-Length" in answer.read()
    conn.close()


def official_client_request(sources, outputs, instructions) -> bytes:
    """What EditScore's OmniGen2-RL / SpatialReward's reward client POSTs (their documented
    shape, our code): a pickled dict of PIL images and JSON metadata."""
    return pickle.dumps({"input_images": [[s] for s in sources], "output_image": list(outputs),
                         "meta_datas": [json.dumps({"instruction": t, "id": k})
                                        for k, t in enumerate(instructions)],
                         "server_type": "vlm"})


def test_the_official_reward_client_gets_rewards_for_a_batch(servers, pair):
    _, url = servers
    source, edited = pair
    body = official_client_request([source, source], [edited, source], ["make it red"] * 2)
    status, raw = post(url + "/", body, "application/octet-stream")
    assert status == 200
    answer = pickle.loads(raw)  # our own answer: plain data
    assert set(answer) >= {"scores", "rewards", "reasoning", "meta_data", "strict_rewards"}
    assert len(answer["rewards"]) == 2 and all(0 <= r <= 1 for r in answer["rewards"])
    assert answer["scores"] == [float(r >= 0.5) for r in answer["rewards"]]
    assert json.loads(answer["meta_data"][1])["id"] == 1 and answer["statuses"] == ["ok"] * 2


def test_every_call_is_recorded_as_a_step_of_an_external_run(tmp_path, pair):
    services = Services(StudioConfig(db=tmp_path / "s.db"))
    server = serve(services, "pixel", port=0, name="omnigen2-grpo")
    url = start(server)
    source, edited = pair
    for step in (10, 11):
        body = json.dumps({"step": step, "items": [
            {"source": png(source), "edited": png(edited), "instruction": "make it red"},
            {"source": png(source), "edited": "!!", "instruction": "make it red"}]}).encode()
        assert post(url + "/v1/reward", body, "application/json")[0] == 200
    recorded(services, server.run_id, 2)  # recording happens after the answer
    server.shutdown()
    server.server_close()
    run = services.store.run(server.run_id)
    assert run["kind"] == "external" and run["name"] == "omnigen2-grpo"
    metrics = services.store.metrics(server.run_id)
    by = {(m["key"], m["step"]): m["value"] for m in metrics}
    assert by[("items", 10)] == 2 and by[("reward_failed", 11)] == 1  # the bad image counts
    assert 0 <= by[("reward_mean", 10)] <= 1 and by[("latency_ms", 10)] > 0
    samples = services.store.rl_samples(server.run_id)
    assert [s["step"] for s in samples] == [10, 11] and samples[0]["instruction"] == "make it red"


class _Hostile:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def test_a_hostile_pickle_is_refused_before_anything_runs(servers, tmp_path, pair):
    _, url = servers
    canary = tmp_path / "canary"
    source, edited = pair
    body = pickle.dumps({"input_images": [[source]], "output_image": [edited],
                         "meta_datas": [{"instruction": _Hostile(f"touch {canary}")}]})
    status, raw = post(url + "/", body, "application/octet-stream")
    assert status == 400 and b"posix.system" in raw
    assert not canary.exists()


def test_a_full_queue_answers_busy_at_once():
    gate = threading.Event()

    def slow(triples):
        gate.wait(30)
        return [Judgment(status="ok", sc=(20.0, 20.0), pq=(20.0, 20.0)) for _ in triples]

    engine = RewardEngine(slow, max_queue=1, batch_size=1)
    tiny = (Image.new("RGB", (8, 8)), Image.new("RGB", (8, 8)), "x")
    results: list = []
    first = threading.Thread(target=lambda: results.append(engine.score([tiny])))
    first.start()
    while engine.queue.qsize():  # the worker took the first request and is busy with it
        pass
    second = threading.Thread(target=lambda: results.append(engine.score([tiny])))
    second.start()
    while not engine.queue.qsize():  # the second waits in the queue
        pass
    with pytest.raises(ServerBusy, match="queue is full"):
        engine.score([tiny])
    # over HTTP the same is a 503 with the reason, answered at once
    from http.server import ThreadingHTTPServer

    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(
        engine, lambda raw, name: Image.open(io.BytesIO(raw)).convert("RGB"), info={}))
    url = start(server)
    item = {"source": png(tiny[0]), "edited": png(tiny[1]), "instruction": "x"}
    status, raw = post(url + "/v1/reward", json.dumps({"items": [item]}).encode(),
                       "application/json")
    assert status == 503 and b"queue is full" in raw
    gate.set()
    first.join(10)
    second.join(10)
    server.shutdown()
    server.server_close()
    assert len(results) == 2 and all(r[0].ok for r in results)
    assert not math.isnan(results[0][0].reward)
