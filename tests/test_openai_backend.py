"""The ``openai:`` backend against a real HTTP server on 127.0.0.1 that follows the OpenAI
chat-completions schema and answers from a tiny Qwen-VL checkpoint (tests/openai_server.py):
the judgment equals ``vlm:``'s on the same checkpoint, the requests carry the protocol as
data URLs, and every failure (refused, busy, timeout, bad key, nonsense) becomes a
``backend_error`` judgment that says why, never a score."""

from __future__ import annotations

import json
import logging
import socket

import numpy as np
import pytest
from PIL import Image

from spatialreward.backends import create, normalize_spec
from spatialreward.backends.openai import NO_ATTENTION, OpenAIBackend
from spatialreward.errors import ConfigError
from spatialreward.vlm.architectures import cached_tiny_checkpoint
from spatialreward.vlm.openai_api import OpenAIConfig
from tests.factories import make_edit_case
from tests.openai_server import ChatServer, decode_data_url
from tests.test_vlm import PQ, SC, one_thread  # noqa: F401 (autouse: one torch thread)

SETTINGS = "max_new_tokens=160,max_pixels=65536"


@pytest.fixture(scope="module")
def reference():
    """The same tiny checkpoint judged in-process by vlm:."""
    return create(f"vlm:{cached_tiny_checkpoint('qwen3_vl')},{SETTINGS}")


@pytest.fixture(scope="module")
def server():
    served = create(f"vlm:{cached_tiny_checkpoint('qwen3_vl')},{SETTINGS}")
    with ChatServer(served) as s:  # type: ignore[arg-type]
        yield s


@pytest.fixture()
def fresh(server):
    server.faults.clear()
    server.delay = 0.0
    server.requests.clear()
    server.headers.clear()
    server.most_in_flight = 0
    server.api_key = None
    return server


@pytest.fixture(scope="module")
def pair() -> tuple[Image.Image, Image.Image]:
    case = make_edit_case(3, kind="recolor", size=(96, 128))
    return Image.fromarray(case.source), Image.fromarray(case.edited).resize((112, 80))


def client(server: ChatServer, base: str | None = None, **settings: object) -> OpenAIBackend:
    options = {"max_new_tokens": 8, "backoff": 0, "cache": 0, **settings}
    spec = f"openai:{base or server.url}" + "".join(f",{k}={v}" for k, v in options.items())
    return create(spec)  # type: ignore[return-value]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- the same judgment as vlm: -------------------------------------------------------------
def test_a_judgment_through_the_server_equals_vlm_on_the_same_checkpoint(reference, fresh,
                                                                          pair):
    judge = client(fresh, max_new_tokens=160)  # the model name comes from GET /models
    assert judge.model == "tiny-judge" and judge.version.startswith("tiny-judge-")
    got, want = judge.judge(*pair, "make the cup red"), reference.judge(*pair, "make the cup red")
    # random weights answer gibberish: the very same gibberish, and the same verdict on it
    assert got.raw_sc == want.raw_sc and got.raw_pq == want.raw_pq and got.raw_sc
    assert (got.status, got.sc, got.pq, got.error) == (want.status, want.sc, want.pq, want.error)
    assert got.meta["new_tokens"] == want.meta["new_tokens"]
    assert got.meta["official_scores"] == want.meta["official_scores"]
    assert got.meta["prompts_sha256"] == want.meta["prompts_sha256"]
    # and a valid answer, generated token by token by the server's model
    with fresh.backend.runner.forced_answers({"sc": SC, "pq": PQ}), \
            reference.runner.forced_answers({"sc": SC, "pq": PQ}):
        got = judge.judge(*pair, "make the cup red")
        want = reference.judge(*pair, "make the cup red")
    assert got.status == "ok" and got.sc == (21.0, 17.0) and got.pq == (23.0, 24.0)
    for name in ("sc", "pq", "overall", "regions", "segments", "reasoning", "warnings"):
        assert getattr(got, name) == getattr(want, name), name
    assert got.backend == "openai" and got.attention is None
    assert got.meta["attention"] == NO_ATTENTION and got.meta["server"] == fresh.url


def test_requests_follow_the_chat_completions_schema_with_images_as_data_urls(fresh, pair):
    judge = client(fresh, model="tiny-judge", samples=2, seed=7)
    judge.judge(*pair, "make the cup red")
    # one request per protocol call, sent concurrently (either may arrive first); the SC
    # call is the one that states the instruction
    [sc] = [r for r in fresh.requests if "make the cup red" in json.dumps(r["messages"])]
    [pq] = [r for r in fresh.requests if r is not sc]
    assert sc["model"] == "tiny-judge" and sc["n"] == 2 and sc["seed"] == 7
    assert sc["max_tokens"] == 8 and sc["temperature"] == pytest.approx(0.7)
    [user] = [m for m in sc["messages"] if m["role"] == "user"]
    kinds = [part["type"] for part in user["content"]]
    assert kinds.count("image_url") == 2 and kinds[-1] == "text"
    assert "make the cup red" in user["content"][-1]["text"]
    images = [decode_data_url(p["image_url"]["url"]) for p in user["content"]
              if p["type"] == "image_url"]
    assert user["content"][0]["image_url"]["url"].startswith("data:image/png;base64,")
    # lossless: the server sees the very pixels (source, then the edit as it is)
    assert np.array_equal(np.asarray(images[0]), np.asarray(pair[0]))
    assert np.array_equal(np.asarray(images[1]), np.asarray(pair[1]))
    assert [p["type"] for p in pq["messages"][-1]["content"]].count("image_url") == 1


def test_batches_go_out_in_parallel_within_the_concurrency_bound(fresh, pair):
    fresh.delay = 0.3
    judge = client(fresh, model="tiny-judge", concurrency=2)
    triples = [(pair[0], pair[1], f"instruction {k}") for k in range(3)]
    judgments = judge.judge_many(triples)
    assert len(fresh.requests) == 6 and all(j.raw_sc is not None for j in judgments)
    assert fresh.most_in_flight == 2  # parallel, and never more than asked


def test_the_cache_answers_a_repeated_judgment_without_a_request(fresh, pair):
    judge = client(fresh, model="tiny-judge", cache=8)
    first = judge.judge(*pair, "make the cup red")
    assert len(fresh.requests) == 2
    assert judge.judge(*pair, "make the cup red") == first and len(fresh.requests) == 2
    judge.judge(*pair, "make the cup blue")
    assert len(fresh.requests) == 4


# -- failures ----------------------------------------------------------------------------
def test_busy_answers_are_retried_with_backoff_then_judged(fresh, pair):
    fresh.faults = [503, 429]
    judge = client(fresh, model="tiny-judge", retries=2, concurrency=1)
    j = judge.judge(*pair, "make the cup red")
    assert j.raw_sc is not None and j.status != "backend_error"
    assert len(fresh.requests) == 4  # SC failed twice, then SC and PQ answered


def test_failures_become_backend_errors_that_say_why(fresh, pair):
    fresh.faults = [503] * 6
    j = client(fresh, model="tiny-judge", retries=1).judge(*pair, "x")
    assert j.status == "backend_error" and j.overall is None and j.reward is None
    assert "HTTP 503" in j.error and "2 tries" in j.error

    fresh.faults = [400]  # a final answer: not retried
    j = client(fresh, model="tiny-judge", retries=3, concurrency=1).judge(*pair, "x")
    assert j.status == "backend_error" and "HTTP 400" in j.error and "injected" in j.error

    fresh.requests.clear()
    fresh.delay = 1.0
    j = client(fresh, model="tiny-judge", retries=0, timeout=0.2).judge(*pair, "x")
    assert j.status == "backend_error" and "timeout=0.2" in j.error
    fresh.delay = 0.0

    gone = OpenAIBackend(OpenAIConfig(f"http://127.0.0.1:{free_port()}/v1", model="m",
                                      retries=1, backoff=0))
    j = gone.judge(*pair, "x")
    assert j.status == "backend_error" and "cannot reach" in j.error and j.overall is None
    with pytest.raises(ConfigError, match="is the server up"):
        create(f"openai:http://127.0.0.1:{free_port()}/v1,retries=0")


def test_the_key_comes_from_the_named_variable_and_is_never_shown(fresh, pair, monkeypatch,
                                                                  caplog):
    secret = "sk-test-0123456789"
    fresh.api_key = secret
    caplog.set_level(logging.DEBUG)
    monkeypatch.delenv("JUDGE_KEY", raising=False)
    unset = client(fresh, model="tiny-judge", key_env="JUDGE_KEY").judge(*pair, "x")
    assert unset.status == "backend_error" and "export JUDGE_KEY" in unset.error
    monkeypatch.setenv("JUDGE_KEY", "wrong")
    refused = client(fresh, model="tiny-judge", key_env="JUDGE_KEY").judge(*pair, "x")
    assert refused.status == "backend_error" and "HTTP 401" in refused.error
    monkeypatch.setenv("JUDGE_KEY", secret)
    judge = client(fresh, key_env="JUDGE_KEY")  # GET /models is authorised too
    ok = judge.judge(*pair, "x")
    assert ok.raw_sc is not None and fresh.headers[-1]["Authorization"] == f"Bearer {secret}"
    shown = json.dumps([j.to_json() for j in (unset, refused, ok)]) + judge.version + \
        json.dumps(judge.describe()) + caplog.text
    assert secret not in shown and "wrong" not in judge.version
    with pytest.raises(ConfigError, match="NAME of an environment variable"):
        OpenAIConfig("http://127.0.0.1:1/v1", key_env="sk-abc-123")


def test_specs_are_checked_and_normalised():
    with pytest.raises(ConfigError, match="http"):
        OpenAIConfig.from_argument("file:///etc/passwd")
    with pytest.raises(ConfigError, match="unknown openai setting 'modle'"):
        OpenAIConfig.from_argument("http://127.0.0.1:8000/v1,modle=x")
    with pytest.raises(ConfigError, match="needs the server's URL"):
        create("openai")
    assert normalize_spec("openai:http://h:8000/v1/,model=a,concurrency=2") == \
        "openai:http://h:8000/v1,concurrency=2,model=a"


def test_inspect_says_why_there_are_no_attention_maps(fresh, pair):
    from ui.inspect_parts import diagnostics_markdown

    j = client(fresh, model="tiny-judge").judge(*pair, "x")
    assert "returns text only" in diagnostics_markdown(j)


def test_several_servers_each_get_whole_sources(fresh, server, pair):
    """``openai:URL1|URL2``: every call about one source goes to one server (where its
    prefix is cached), and the sources spread over the servers."""
    with ChatServer(server.backend, model="tiny-judge") as second:
        judge = client(fresh, model="tiny-judge", base=f"{fresh.url}|{second.url}")
        sources = [pair[0].rotate(angle) for angle in (0, 90, 180, 270, 45, 135)]
        triples = [(s, pair[1], "make it red") for s in sources for _ in range(2)]
        judgments = judge.judge_many(triples)
        assert all(j.raw_sc is not None for j in judgments)
        by_source: dict[int, set[str]] = {}
        for k, j in enumerate(judgments):
            by_source.setdefault(k // 2, set()).add(j.meta["server"])
        assert all(len(servers) == 1 for servers in by_source.values())
        assert {s for servers in by_source.values() for s in servers} == {fresh.url, second.url}
        assert len(fresh.requests) + len(second.requests) == 4 * len(sources)


def test_every_setting_is_documented():
    from dataclasses import fields
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "serving.md").read_text()
    missing = [f.name for f in fields(OpenAIConfig)
               if f.name != "base_url" and f"`{f.name}`" not in text]
    assert missing == []
