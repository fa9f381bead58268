"""The ``openai`` backend: a Qwen-VL judge behind any OpenAI-compatible chat-completions
server (vLLM, SGLang, ``transformers serve``, a hosted API).

``openai:BASE_URL[,model=NAME][,protocol=spatialreward|editscore|FILE][,key_env=VAR]
[,concurrency=N]`` (every setting: :class:`~spatialreward.vlm.openai_api.OpenAIConfig`,
docs/serving.md). The protocol's calls, the parser, the self-ensemble and the official
reading are those of ``vlm:`` (:func:`spatialreward.vlm.answers.assemble`), so the same
answer text gives the same judgment. What differs is where the text comes from:

- each call is one ``POST BASE_URL/chat/completions``, images as PNG data URLs; up to
  ``concurrency`` are in flight at once across every caller (one shared pool);
- with several servers (``openai:URL1|URL2``, one per GPU) every call about one source
  image and instruction goes to the same server, chosen by their hash: the K candidates
  of a source share its prefix in that server's cache (vLLM's prefix caching), the same
  grouping the official reward proxy does;
- a network error, a timeout or a busy answer (429, 5xx) is retried with backoff; what
  still fails becomes a ``backend_error`` judgment that says why, never a score;
- judgments are cached in memory by (images, instruction, settings); the store's cache
  works through ``version`` as for every backend;
- a server returns text only, so there are no attention maps: judgments say so in
  ``meta["attention"]`` and Inspect shows that sentence.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from ..errors import ConfigError
from ..judgment import Judgment
from ..regions import PixelEvidence
from ..vlm.answers import assemble, no_multi_image, sized_edit
from ..vlm.config import protocol_decoding
from ..vlm.inputs import image_key
from ..vlm.openai_api import (
    OpenAIConfig,
    ServerError,
    auth_headers,
    chat_messages,
    describe,
    post_json,
    sized,
)
from ..vlm.prompts import Call, Prompts, load_prompts
from . import register
from .base import Attended

NO_ATTENTION = ("no attention maps: an OpenAI-compatible server returns text only; judge "
                "with vlm:PATH on the checkpoint itself to see where the model looked")


@dataclass
class Reply:
    """One answer from the server, shaped like the runner's output."""

    text: str
    new_tokens: int
    truncated: bool = False
    timings_ms: dict[str, float] = field(default_factory=dict)


class OpenAIBackend:
    """See the module docstring."""

    name = "openai"

    def __init__(self, config: OpenAIConfig, client: Any = None) -> None:
        import httpx

        self.prompts: Prompts = load_prompts(config.protocol)
        self.config = config
        g = self.prompts.generation
        self.temperature, self.top_p, self.top_k = protocol_decoding(
            config.temperature, config.top_p, config.top_k, config.samples,
            (g.temperature, g.top_p, g.top_k))
        limits = httpx.Limits(max_connections=config.concurrency,
                              max_keepalive_connections=config.concurrency)
        self.client = client or httpx.Client(limits=limits, trust_env=False)
        self.model = config.model or self._only_model()
        self._pool = ThreadPoolExecutor(config.concurrency, thread_name_prefix="openai")
        self._cache: OrderedDict[str, Judgment] = OrderedDict()
        self._cache_lock = threading.Lock()
        self.version = f"{self.model}-{self._settings_digest()}"

    @property
    def protocol(self) -> dict[str, str]:
        return self.prompts.record()

    def _only_model(self) -> str:
        """The model of a server that serves one (``GET BASE_URL/models``)."""
        url = f"{self.config.urls[0]}/models"
        try:
            response = self.client.get(url, headers=auth_headers(self.config),
                                       timeout=self.config.timeout)
            names = [m["id"] for m in response.json()["data"]]
        except Exception as err:
            raise ConfigError(f"could not list the models at {url} ({type(err).__name__}); "
                              "is the server up? Or give model=NAME") from None
        if len(names) != 1:
            raise ConfigError(f"{url} serves {len(names)} models ({', '.join(names)}); "
                              "choose one with model=NAME")
        return str(names[0])

    def _settings_digest(self) -> str:
        c = self.config
        settings = {"url": c.base_url, "model": self.model, "prompts": self.prompts.digest,
                    "max_new_tokens": c.max_new_tokens, "samples": c.samples,
                    "sampling": [self.temperature, self.top_p, self.top_k, c.seed],
                    "parse": c.parse, "resize": [c.resize, c.factor, c.min_pixels,
                                                 c.max_pixels],
                    "ensemble": self.prompts.ensemble if c.samples > 1 else None}
        return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]

    def describe(self) -> dict[str, Any]:
        return {**describe(self.config), "model": self.model}

    # -- one call ------------------------------------------------------------------------
    def body(self, call: Call, instruction: str, images: list[Image.Image]) -> dict[str, Any]:
        """The chat-completions request of one protocol call."""
        c = self.config
        body: dict[str, Any] = {
            "model": self.model,
            "messages": chat_messages(call, instruction, [sized(im, c) for im in images]),
            "max_tokens": c.max_new_tokens, "n": c.samples,
            "temperature": self.temperature, "top_p": self.top_p}
        if self.top_k:
            body["top_k"] = self.top_k
        if c.seed is not None:
            body["seed"] = c.seed
        if call.answer_prefix:  # the server continues the started answer
            body.update(continue_final_message=True, add_generation_prompt=False)
        return body

    def server_for(self, source: Image.Image, instruction: str) -> str:
        """The server every call about (``source``, ``instruction``) goes to."""
        urls = self.config.urls
        if len(urls) == 1:
            return urls[0]
        digest = hashlib.blake2b(f"{image_key(source)}\0{instruction}".encode(),
                                 digest_size=8).digest()
        return urls[int.from_bytes(digest, "big") % len(urls)]

    def _ask(self, url: str, call: Call, instruction: str, images: list[Image.Image]
             ) -> list[Reply]:
        """One call's answers; runs in the pool, so the images' encoding runs there too."""
        body = self.body(call, instruction, images)
        answer_prefix = call.answer_prefix
        t0 = time.perf_counter()
        answer = post_json(self.client, f"{url}/chat/completions", body, self.config)
        ms = (time.perf_counter() - t0) * 1e3
        try:
            choices = sorted(answer["choices"], key=lambda ch: ch.get("index", 0))
            texts = [(ch["message"]["content"] or "", ch.get("finish_reason")) for ch in choices]
        except (KeyError, TypeError):
            raise ServerError("the server's answer has no choices[].message.content (is it "
                              "an OpenAI-compatible chat-completions endpoint?)") from None
        if len(texts) != self.config.samples:
            raise ServerError(f"asked for n={self.config.samples} answers, got {len(texts)} "
                              "(does the server support n?)")
        tokens = int((answer.get("usage") or {}).get("completion_tokens", 0)) // len(texts)
        return [Reply(answer_prefix + text, tokens, truncated=reason == "length",
                      timings_ms={"generate": round(ms / len(texts), 2)})
                for text, reason in texts]

    # -- judging -------------------------------------------------------------------------
    def judge(self, source: Image.Image, edited: Image.Image, instruction: str,
              evidence: PixelEvidence | None = None) -> Judgment:
        return self.judge_many([(source, edited, instruction)])[0]

    def judge_attended(self, source: Image.Image, edited: Image.Image, instruction: str,
                       evidence: PixelEvidence | None = None) -> Attended:
        return Attended(self.judge(source, edited, instruction))

    def judge_many(self, triples: Sequence[tuple[Image.Image, Image.Image, str]],
                   evidences: Sequence[PixelEvidence | None] | None = None) -> list[Judgment]:
        """Judge (source, edited, instruction) triples: every call of every triple goes to
        the shared pool at once (``concurrency`` in flight)."""
        jobs = []
        for source, edited, instruction in triples:
            edited = self._sized(edited, source)
            by_role = {"source": source, "edited": edited}
            calls = [(call, [by_role[r] for r in call.images]) for call in self.prompts.calls]
            jobs.append((source, edited, instruction, calls))
        return self._run(jobs)

    def judge_sources(self, sources: Sequence[Image.Image], edited: Image.Image,
                      instruction: str) -> Judgment:
        """An edit made from several input images (the protocol's ``[sc_multi]`` call)."""
        call = self.prompts.sc_multi
        if call is None:
            return no_multi_image(self.prompts, self.name, self.version, len(sources))
        edited = self._sized(edited, sources[0])
        calls = [(call, [*sources, edited])]
        if self.prompts.pq is not None:
            calls.append((self.prompts.pq, [edited]))
        judgment = self._run([(sources[0], edited, instruction, calls)])[0]
        return dataclasses.replace(judgment, meta={**judgment.meta, "sources": len(sources),
                                                   "sc_call": "sc_multi"})

    def _sized(self, edited: Image.Image, source: Image.Image) -> Image.Image:
        return sized_edit(self.prompts, edited, source)

    def _key(self, instruction: str, calls: list[tuple[Call, list[Image.Image]]]) -> str:
        h = hashlib.blake2b(f"{self.version}\0{instruction}".encode(), digest_size=16)
        for call, images in calls:
            h.update(call.name.encode())
            for image in images:
                h.update(image_key(image).encode())
        return h.hexdigest()

    def _run(self, jobs: list[tuple[Image.Image, Image.Image, str,
                                    list[tuple[Call, list[Image.Image]]]]]) -> list[Judgment]:
        out: list[Judgment | None] = [None] * len(jobs)
        pending = []
        for k, (source, _, instruction, calls) in enumerate(jobs):
            key = self._key(instruction, calls) if self.config.cache else ""
            with self._cache_lock:
                hit = self._cache.get(key) if key else None
                if hit is not None:
                    self._cache.move_to_end(key)
            if hit is not None:
                out[k] = hit
                continue
            t0 = time.perf_counter()
            url = self.server_for(source, instruction)
            futures = [self._pool.submit(self._ask, url, call, instruction, images)
                       for call, images in calls]
            pending.append((k, key, t0, futures, url))
        for k, key, t0, futures, url in pending:
            source, edited = jobs[k][0], jobs[k][1]
            where = {"server": url, "model": self.model, "attention": NO_ATTENTION}
            wait(futures)  # every call of the edit is answered (or failed) before it is judged
            try:
                replies = [f.result() for f in futures]
            except (ServerError, ConfigError) as err:
                out[k] = Judgment(status="backend_error", backend=self.name,
                                  backend_version=self.version, error=str(err), meta=where)
                continue
            elapsed = (time.perf_counter() - t0) * 1e3
            judgment = assemble(replies[0], replies[1] if len(replies) > 1 else None,
                                self.prompts, name=self.name, version=self.version,
                                parse=self.config.parse,
                                max_new_tokens=self.config.max_new_tokens,
                                elapsed_ms=elapsed, source_size=source.size,
                                edited_size=edited.size)
            judgment = dataclasses.replace(judgment, meta={**judgment.meta, **where})
            out[k] = judgment
            if key:
                with self._cache_lock:
                    self._cache[key] = judgment
                    while len(self._cache) > self.config.cache:
                        self._cache.popitem(last=False)
        return [j for j in out if j is not None]

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.client.close()


@register("openai")
def build(argument: str | None) -> OpenAIBackend:
    return OpenAIBackend(OpenAIConfig.from_argument(argument))
