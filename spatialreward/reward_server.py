"""``python -m spatialreward serve-reward``: the Studio as the reward server of an RL trainer.

Two ways in, one engine:

- **JSON** (``POST /v1/reward``)::

      {"items": [{"source": BASE64, "edited": BASE64, "instruction": "...",
                  "meta": {...}}], "client": "name", "step": 12}

  answered per item with ``reward`` (0..1), ``score`` (``reward >= threshold`` as 1 / 0),
  ``sc`` / ``pq`` (0..25 pairs), ``regions``, ``reasoning``, ``status`` and ``error``. A
  failed item has ``status`` != ``ok`` and ``reward`` / ``score`` null: never a constant.
- **The official reward clients** (``--pickle-compat``; EditScore's OmniGen2-RL trainer,
  the SpatialReward repository): ``POST /`` with a pickled dict ``{input_images: [[PIL]],
  output_image: [PIL], meta_datas: [dict or JSON text with "instruction"], server_type}``,
  answered with a pickled ``{scores, rewards, reasoning, meta_data, strict_rewards,
  statuses}``; failed items have NaN scores and rewards (and their status). Requests are
  decoded by :mod:`spatialreward.safe_pickle`, never by ``pickle.loads``. Off by default.

``GET /ping`` answers ``pong``; ``GET /health`` the backend, its version and the queue.

Requests wait in a bounded queue (``max_queue``); a full queue answers 503 at once, so a
trainer backs off instead of piling up work. One worker thread drains the queue: the items
of every waiting request (up to ``batch_size``) are judged together, through the backend's
``judge_many`` when it has one (``vlm:`` then batches and encodes a shared source once).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import logging
import math
import pickle
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from PIL import Image

from .errors import InputError, StudioError
from .judgment import Judgment, served_reward
from .safe_pickle import safe_loads

Triple = tuple[Image.Image, Image.Image, str]
JudgeFn = Callable[[Sequence[Triple]], list[Judgment]]
LOOPBACK = ("127.0.0.1", "localhost", "::1")
log = logging.getLogger(__name__)


class ServerBusy(StudioError):
    """The queue is full: the caller should retry later (HTTP 503)."""


@dataclass
class _Job:
    triples: list[Triple]
    done: threading.Event = field(default_factory=threading.Event)
    judgments: list[Judgment] = field(default_factory=list)


class RewardEngine:
    """Judges queued requests in batches on one worker thread."""

    def __init__(self, judge: JudgeFn, *, batch_size: int = 16, max_queue: int = 64,
                 threshold: float = 0.5, timeout_s: float = 600.0) -> None:
        if batch_size < 1 or max_queue < 1:
            raise InputError("batch_size and max_queue must be at least 1")
        self.judge = judge
        self.batch_size, self.threshold, self.timeout_s = batch_size, threshold, timeout_s
        self.queue: queue.Queue[_Job] = queue.Queue(maxsize=max_queue)
        self.batches = 0
        self._worker = threading.Thread(target=self._run, name="reward-worker", daemon=True)
        self._worker.start()

    def score(self, triples: list[Triple]) -> list[Judgment]:
        """The judgments of ``triples`` (in order), once the worker got to them."""
        job = _Job(triples)
        try:
            self.queue.put_nowait(job)
        except queue.Full:
            raise ServerBusy(f"the reward queue is full ({self.queue.maxsize} requests "
                             "waiting); retry shortly") from None
        if not job.done.wait(self.timeout_s):
            raise ServerBusy(f"no result within {self.timeout_s:.0f} s; the server is "
                             "overloaded")
        return job.judgments

    def _run(self) -> None:
        while True:
            jobs = [self.queue.get()]
            size = len(jobs[0].triples)
            while size < self.batch_size:  # whatever else is waiting joins this batch
                try:
                    jobs.append(self.queue.get_nowait())
                except queue.Empty:
                    break
                size += len(jobs[-1].triples)
            triples = [t for job in jobs for t in job.triples]
            try:
                judgments = self.judge(triples)
            except Exception as err:  # reported per item, never a made-up score
                judgments = [Judgment(status="backend_error", error=f"{type(err).__name__}: "
                                                                    f"{err}") for _ in triples]
            self.batches += 1
            start = 0
            for job in jobs:
                job.judgments = judgments[start:start + len(job.triples)]
                start += len(job.triples)
                job.done.set()

    def item(self, j: Judgment) -> dict[str, Any]:
        """The JSON answer for one judgment."""
        reward = served_reward(j)
        return {"reward": reward, "score": None if reward is None
                else float(reward >= self.threshold),
                "sc": None if j.sc is None else list(j.sc),
                "pq": None if j.pq is None else list(j.pq),
                "regions": [r.to_dict() for r in j.regions], "reasoning": j.reasoning,
                "status": j.status, "error": j.error}


def services_judge(services: Any, backend: str, batch: int = 16,
                   mix: Sequence[tuple[str, float]] = ()) -> JudgeFn:
    """A :data:`JudgeFn` through the Studio's services: ``Services.judge_batch``. With
    ``mix`` ((spec, weight) pairs, the first being ``backend``'s) every edit is judged by
    each backend and its reward is their weighted mean, in ``meta["reward_mix"]``; the
    judgment shown (scores, regions, reasoning) is the first backend's. An edit any term
    fails on has no reward: never a partial mix."""
    def judge(triples: Sequence[Triple]) -> list[Judgment]:
        first = list(services.judge_batch(triples, backend, batch=batch))
        if not mix:
            return first
        per_term = [first] + [list(services.judge_batch(triples, spec, batch=batch))
                              for spec, _ in mix[1:]]
        weights = [w for _, w in mix]
        out = []
        for k, j in enumerate(first):
            rewards = [term[k].reward for term in per_term]
            known = [r for r in rewards if r is not None]
            reward = (sum(w * r for w, r in zip(weights, known, strict=True)) / sum(weights)
                      if len(known) == len(rewards) else None)
            terms = {spec: r for (spec, _), r in zip(mix, rewards, strict=True)}
            failed = [term[k] for term in per_term if not term[k].ok]
            status = j.status if not failed or not j.ok else failed[0].status
            error = j.error if not failed or not j.ok else (
                f"reward mix: {failed[0].backend} failed: {failed[0].error}")
            out.append(dataclasses.replace(j, status=status, error=error, meta={
                **j.meta, "reward_mix": {"reward": reward, "terms": terms,
                                         "weights": dict(mix)}}))
        return out
    return judge


# -- decoding requests ------------------------------------------------------------------------

def _decode_json(body: bytes, load: Callable[[Any, str], Image.Image]
                 ) -> tuple[list[Triple | str], dict[str, Any]]:
    """Triples (or, per bad item, its error text) and the request's own fields."""
    try:
        data = json.loads(body)
        items = data["items"]
        if not isinstance(items, list) or not items:
            raise ValueError("items must be a non-empty list")
    except (ValueError, KeyError, TypeError) as err:
        raise InputError(f"the body must be JSON {{\"items\": [{{\"source\", \"edited\", "
                         f"\"instruction\"}}]}} ({err})") from None
    out: list[Triple | str] = []
    for k, item in enumerate(items):
        try:
            images = []
            for key in ("source", "edited"):
                raw = base64.b64decode(str(item[key]), validate=True)
                images.append(load(raw, f"item {k} {key} image"))
            text = str(item["instruction"]).strip()
            if not text:
                raise InputError(f"item {k}: the instruction is empty")
            out.append((images[0], images[1], text))
        except (KeyError, TypeError) as err:
            out.append(f"item {k}: missing {err}; each item needs source, edited "
                       "(base64 PNG/JPEG) and instruction")
        except binascii.Error:
            out.append(f"item {k}: an image is not valid base64")
        except StudioError as err:
            out.append(str(err))
    return out, {k: data.get(k) for k in ("client", "step") if k in data}


def _decode_pickle(body: bytes, load: Callable[[Any, str], Image.Image]
                   ) -> tuple[list[Triple | str], list[Any]]:
    data = safe_loads(body)
    try:
        inputs, outputs = data["input_images"], data["output_image"]
        metas = data.get("meta_datas") or [{} for _ in outputs]
        if not (len(inputs) == len(outputs) == len(metas)):
            raise ValueError("input_images, output_image and meta_datas differ in length")
    except (KeyError, TypeError, ValueError) as err:
        raise InputError(f"the request is not a reward request ({err})") from None
    out: list[Triple | str] = []
    for k, (ins, edited, meta) in enumerate(zip(inputs, outputs, metas, strict=True)):
        try:
            if isinstance(meta, str):
                meta = json.loads(meta)
            sources = ins if isinstance(ins, list) else [ins]
            if len(sources) != 1:
                raise InputError(f"item {k}: {len(sources)} input images; this server judges "
                                 "an edit against one source")
            text = str(meta["instruction"]).strip()
            if not text:
                raise InputError(f"item {k}: the instruction is empty")
            out.append((load(sources[0], f"item {k} input image"),
                        load(edited, f"item {k} output image"), text))
        except (KeyError, TypeError, ValueError) as err:
            out.append(f"item {k}: {err}")
        except StudioError as err:
            out.append(str(err))
    return out, list(metas)


def _judge_decoded(engine: RewardEngine, decoded: list[Triple | str]) -> list[Judgment]:
    triples = [d for d in decoded if not isinstance(d, str)]
    judged = iter(engine.score(triples) if triples else [])
    return [Judgment(status="backend_error", error=f"bad input: {d}") if isinstance(d, str)
            else next(judged) for d in decoded]


# -- HTTP --------------------------------------------------------------------------------------

def make_handler(engine: RewardEngine, load: Callable[[Any, str], Image.Image], *,
                 info: dict[str, Any], pickle_compat: bool = False,
                 max_body: int = 256 * 1024**2,
                 on_call: Callable[[dict[str, Any], list[Triple | str], list[Judgment]], None]
                 | None = None) -> type:
    """The request handler class of a server around ``engine``."""

    class Handler(BaseHTTPRequestHandler):
        server_version = "SpatialRewardStudio"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            return  # calls are recorded through on_call, not printed per request

        def _send(self, status: int, body: bytes, kind: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, data: Any) -> None:
            self._send(status, json.dumps(data).encode(), "application/json")

        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            if self.path == "/ping":
                self._send(200, b"pong", "text/plain")
            elif self.path == "/health":
                self._json(200, {**info, "queued": engine.queue.qsize(),
                                 "max_queue": engine.queue.maxsize, "batches": engine.batches,
                                 "pickle_compat": pickle_compat})
            else:
                self._json(404, {"error": "GET /ping or /health; POST /v1/reward"})

        def _body(self) -> bytes | None:
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = -1
            if length < 0:
                self._json(400, {"error": "the Content-Length header is not a byte count"})
                return None
            if length > max_body:
                self._json(413, {"error": f"the body is above {max_body:,} bytes"})
                return None
            return self.rfile.read(length)

        def do_POST(self) -> None:  # noqa: N802 - the http.server API
            t0 = time.perf_counter()
            body = self._body()
            if body is None:
                return
            try:
                if self.path == "/v1/reward":
                    decoded, fields = _decode_json(body, load)
                    judgments = _judge_decoded(engine, decoded)
                    answer = {"items": [engine.item(j) for j in judgments],
                              "latency_ms": round((time.perf_counter() - t0) * 1e3, 1)}
                    self._json(200, answer)
                elif self.path == "/" and pickle_compat:
                    decoded, metas = _decode_pickle(body, load)
                    judgments = _judge_decoded(engine, decoded)
                    fields = {"client": "pickle-compat"}
                    rewards = [math.nan if (r := served_reward(j)) is None else r
                               for j in judgments]
                    answer_p = {"rewards": rewards,
                                "scores": [r if math.isnan(r) else float(r >= engine.threshold)
                                           for r in rewards],
                                "strict_rewards": rewards, "reasoning": [j.reasoning or
                                                                         (j.error or "")
                                                                         for j in judgments],
                                "meta_data": metas, "statuses": [j.status for j in judgments]}
                    self._send(200, pickle.dumps(answer_p), "application/octet-stream")
                elif self.path == "/":
                    self._json(404, {"error": "pickled requests need serve-reward "
                                              "--pickle-compat; JSON goes to /v1/reward"})
                    return
                else:
                    self._json(404, {"error": "POST /v1/reward (JSON)"})
                    return
            except ServerBusy as err:
                self._json(503, {"error": str(err)})
                return
            except StudioError as err:  # a bad or hostile request: refused, nothing ran
                self._json(400, {"error": str(err)})
                return
            if on_call is not None:
                try:
                    on_call({**fields, "latency_ms": (time.perf_counter() - t0) * 1e3},
                            decoded, judgments)
                except Exception:  # recording must never fail the trainer's call
                    log.exception("could not record a reward call")

    return Handler


class CallRecorder:
    """Every reward call as a step of one external run in the store (``record=True``):
    the step is the request's ``step`` when it sends one, else the call's number."""

    def __init__(self, services: Any, run_id: int, samples: int = 1,
                 spot_check: str | None = None) -> None:
        self.services, self.run_id, self.samples = services, run_id, samples
        self.spot_check = spot_check
        self.calls = 0
        self._lock = threading.Lock()

    def __call__(self, fields: dict[str, Any], decoded: list[Triple | str],
                 judgments: list[Judgment]) -> None:
        with self._lock:
            self.calls += 1
            step = fields.get("step")
            step = int(step) if isinstance(step, (int, float)) else self.calls
            triples = [None if isinstance(d, str) else d for d in decoded]
            self.services.record_reward_call(self.run_id, step, triples, judgments,
                                             fields["latency_ms"], samples=self.samples,
                                             spot_check=self.spot_check)


def serve(services: Any, backend: str, *, host: str = "127.0.0.1", port: int = 8780,
          pickle_compat: bool = False, batch_size: int = 16, max_queue: int = 64,
          threshold: float = 0.5, record: bool = True,
          name: str = "", samples: int = 2, spot_check: str | None = None,
          mix: Sequence[tuple[str, float]] = ()) -> ThreadingHTTPServer:
    """A started-on-demand server (call ``serve_forever``) judging with ``backend``; with
    ``record`` every call is logged as a step of a new external run in the store
    (``server.run_id``), ``samples`` items of each call kept with their judgments, and
    re-judged by the ``spot_check`` backend when one is given (the run's hacking alert)."""
    if mix and any(not w > 0 for _, w in mix):
        raise InputError("every reward-mix weight must be positive")
    terms = [(backend, 1.0 - sum(w for _, w in mix)), *mix] if mix else []
    if terms and not terms[0][1] > 0:
        raise InputError("the --mix weights must add up to less than 1: the rest is "
                         f"{backend}'s weight")
    model = services.backend(backend)  # an unknown backend fails before binding
    for spec in [spot_check, *(s for s, _ in mix)]:
        if spec:
            services.backend(spec)
    engine = RewardEngine(services_judge(services, backend, batch_size, terms),
                          batch_size=batch_size, max_queue=max_queue, threshold=threshold)
    recorder = None
    if record:
        run_id = services.open_external_run(name or f"serve-reward {backend}", {
            "backend": backend, "version": model.version, "host": host, "port": port,
            "pickle_compat": pickle_compat, "threshold": threshold,
            "spot_check": spot_check, "samples": samples,
            "mix": {spec: w for spec, w in terms} or None})
        recorder = CallRecorder(services, run_id, samples, spot_check)
    handler = make_handler(engine, services.load, pickle_compat=pickle_compat,
                           info={"backend": backend, "version": model.version,
                                 "run_id": None if recorder is None else recorder.run_id},
                           on_call=recorder)
    server = ThreadingHTTPServer((host, port), handler)
    server.run_id = None if recorder is None else recorder.run_id  # type: ignore[attr-defined]
    return server
