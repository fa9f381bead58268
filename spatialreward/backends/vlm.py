"""The ``vlm`` backend: a Qwen3-VL / Qwen2.5-VL reward checkpoint run through transformers.

``vlm:PATH[,key=value...]`` loads the checkpoint directory PATH from disk (never from a
hub) with the settings of :class:`~spatialreward.vlm.config.VLMConfig`, e.g.
``vlm:/models/SpatialReward-8B`` or ``vlm:/models/Qwen3-VL-8B-Instruct,adapter=/models/lora``.

A judgment takes the protocol's calls (SpatialReward: SC on [source, edited] with
regions, PQ on [edited]); the answers are parsed by
:func:`spatialreward.protocol.parse_judgment`, so an unusable answer becomes a
``parse_failed`` judgment that keeps the raw text, never a score. Boxes come back in
0..1000 of the edited image; under the Studio's stretch convention (the edited image is
stretched onto the source frame, :func:`spatialreward.images.align_to_source`) those are
the same normalised numbers in the source frame, which is where regions live. The
attention diagnostics come from the SC call's own forward pass.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from ..errors import ConfigError, InputError
from ..judgment import Judgment
from ..regions import PixelEvidence
from ..vlm.answers import _average, assemble, no_multi_image, sized_edit
from ..vlm.attention import AttentionMaps, RawAttention, build_maps, summarise
from ..vlm.checkpoint import Loaded, build_image_processor, fingerprint, load_checkpoint
from ..vlm.config import VLMConfig
from ..vlm.prompts import Prompts, load_prompts
from ..vlm.runner import Output, Request, Runner
from . import register
from .base import Attended

__all__ = ["VLMBackend", "_average", "build"]

class VLMBackend:
    """A generative Qwen-VL judge; see the module docstring."""

    name = "vlm"

    def __init__(self, config: VLMConfig, loaded: Loaded | None = None,
                 weights: str | None = None) -> None:
        self.prompts: Prompts = load_prompts(config.prompts)  # fail fast, before loading
        g = self.prompts.generation
        config = config.with_protocol(g.temperature, g.top_p, g.top_k)
        self.config = config
        loaded = loaded or load_checkpoint(config)
        self.loaded = loaded
        self.runner = Runner(loaded.model, loaded.tokenizer, loaded.image_processor,
                             loaded.chat_template, config)
        weights = weights or fingerprint(loaded.info)
        self.version = f"{loaded.info.architecture}-{weights}-{self._settings_digest()}"

    @classmethod
    def from_model(cls, model: Any, tokenizer: Any, config: VLMConfig, *,
                   architecture: str = "qwen3_vl", chat_template: str | None = None
                   ) -> VLMBackend:
        """A backend around an already built model (the GPU check builds random weights
        in memory); its version says the weights are not from a checkpoint."""
        from ..vlm.architectures import CHAT_TEMPLATE
        from ..vlm.checkpoint import CheckpointInfo

        info = CheckpointInfo(path=config.path, architecture=architecture, adapter=None,
                              weights=())
        device = str(model.device)
        loaded = Loaded(model=model, tokenizer=tokenizer,
                        image_processor=build_image_processor(None, architecture, config),
                        chat_template=chat_template or tokenizer.chat_template or CHAT_TEMPLATE,
                        chat_template_origin="given", info=info, device=device,
                        dtype=str(model.dtype).removeprefix("torch."))
        return cls(config, loaded=loaded, weights="in-memory")

    @property
    def protocol(self) -> dict[str, str]:
        """The judging protocol's name and hashes (bench results record it)."""
        return self.prompts.record()

    def _settings_digest(self) -> str:
        c, loaded = self.config, self.loaded
        settings: dict[str, Any] = {
            "prompts": self.prompts.digest, "chat_template": loaded.chat_template,
            "dtype": loaded.dtype, "max_pixels": c.pixel_cap,
            "min_pixels": int(loaded.image_processor.size.shortest_edge),
            "max_new_tokens": c.max_new_tokens, "min_new_tokens": c.min_new_tokens,
            "samples": c.samples,
            "sampling": [c.temperature, c.top_p, c.seed] if c.sampling else None,
            **({"top_k": c.top_k} if c.sampling and c.top_k else {}),
            **({"ensemble": self.prompts.ensemble} if c.samples > 1 else {}),
        }
        if c.resize != "cap":  # cap's versions stay what they were
            settings["resize"] = [c.resize, c.min_pixels, c.max_pixels,
                                  int(loaded.image_processor.size.longest_edge)]
        return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]

    # -- judging -------------------------------------------------------------------------
    def _sized(self, edited: Image.Image, source: Image.Image) -> Image.Image:
        return sized_edit(self.prompts, edited, source)

    def _requests(self, source: Image.Image, edited: Image.Image, instruction: str
                  ) -> list[Request]:
        edited = self._sized(edited, source)
        by_role = {"source": source, "edited": edited}
        return [self.runner.request(call, instruction, [by_role[r] for r in call.images])
                for call in self.prompts.calls]

    def judge(self, source: Image.Image, edited: Image.Image, instruction: str,
              evidence: PixelEvidence | None = None) -> Judgment:
        return self.judge_many([(source, edited, instruction)])[0]

    def judge_many(self, triples: Sequence[tuple[Image.Image, Image.Image, str]],
                   evidences: Sequence[PixelEvidence | None] | None = None) -> list[Judgment]:
        """Judge several (source, edited, instruction) triples, batched: all SC calls, then
        all PQ calls, ``samples`` answers each. Candidates that share a source image have it
        encoded once. ``evidences`` is accepted for the Backend protocol and not used: the
        model locates the edit itself."""
        capture = self.config.attention_queries if self.config.attention_summary else None
        return [j for j, _ in self._judge_outputs(triples, capture)]

    def judge_sources(self, sources: Sequence[Image.Image], edited: Image.Image,
                      instruction: str) -> Judgment:
        """Judge an edit made from several input images (MMRB2's multi-image prompts):
        the protocol's ``[sc_multi]`` call shows every source, then the edit; PQ as
        usual. A protocol without ``[sc_multi]`` gives a failed judgment that says so."""
        call = self.prompts.sc_multi
        if call is None:
            return no_multi_image(self.prompts, self.name, self.version, len(sources))
        edited = self._sized(edited, sources[0])
        n = self.config.samples
        sc_request = self.runner.request(call, instruction, [*sources, edited])
        requests = [sc_request] * n
        if self.prompts.pq is not None:
            requests += [self.runner.request(self.prompts.pq, instruction, [edited])] * n
        t0 = time.perf_counter()
        outputs = self.runner.generate(requests)
        elapsed = (time.perf_counter() - t0) * 1e3
        pq = outputs[n:] if self.prompts.pq is not None else None
        judgment = self._judgment(outputs[:n], pq, elapsed, sources[0].size, edited.size)
        return dataclasses.replace(judgment, meta={**judgment.meta, "sources": len(sources),
                                                   "sc_call": "sc_multi"})

    def judge_attended(self, source: Image.Image, edited: Image.Image, instruction: str,
                       evidence: PixelEvidence | None = None) -> Attended:
        """The judgment and the attention maps of its own SC call (the
        ``attention_queries`` tokens, sinks handled as configured): no second pass, and
        in ``answer`` mode the maps are those of the very answer that was scored."""
        [(judgment, sc)] = self._judge_outputs([(source, edited, instruction)],
                                               self.config.attention_queries)
        raw = sc[0].answer_attention or sc[0].prompt_attention
        if raw is None:
            return Attended(judgment)
        maps = build_maps(raw, self.prompts.sc.images, self.config.sinks,
                          self.config.sink_factor).maps
        return Attended(judgment, maps)

    def _judge_outputs(self, triples: Sequence[tuple[Image.Image, Image.Image, str]],
                       capture: str | None) -> list[tuple[Judgment, list[Output]]]:
        """Each triple's judgment with its SC call's outputs (one per sample)."""
        if not triples:
            return []
        n, calls = self.config.samples, len(self.prompts.calls)
        per_triple = [self._requests(s, e, t) for s, e, t in triples]
        # Order: call by call, triple by triple, sample by sample (SC rows batch together).
        requests = [per_triple[k][c] for c in range(calls) for k in range(len(triples))
                    for _ in range(n)]
        t0 = time.perf_counter()
        outputs = self.runner.generate(requests, capture=capture)
        elapsed = (time.perf_counter() - t0) * 1e3 / len(triples)

        def answers(call: int, k: int) -> list[Output]:
            start = (call * len(triples) + k) * n
            return outputs[start : start + n]

        return [(self._judgment(answers(0, k), answers(1, k) if calls > 1 else None, elapsed,
                                source.size, edited.size), answers(0, k))
                for k, (source, edited, _) in enumerate(triples)]

    def _judgment(self, sc: list[Output], pq: list[Output] | None, elapsed_ms: float,
                  source_size: tuple[int, int], edited_size: tuple[int, int]) -> Judgment:
        judgment = assemble(sc, pq, self.prompts, name=self.name, version=self.version,
                            parse=self.config.parse,
                            max_new_tokens=self.config.max_new_tokens, elapsed_ms=elapsed_ms,
                            source_size=source_size, edited_size=edited_size)
        raw = sc[0].answer_attention or sc[0].prompt_attention
        meta = {**judgment.meta, "architecture": self.loaded.info.architecture}
        if raw is None:
            return dataclasses.replace(judgment, meta=meta)
        by_role = dict(zip(self.prompts.sc.images, raw.per_image, strict=True))
        attention = summarise(by_role.get("source"), by_role["edited"],
                              [r.bbox_2d for r in judgment.regions])
        meta["attention_queries"] = raw.kind
        return dataclasses.replace(judgment, attention=attention, meta=meta)

    # -- attention maps ------------------------------------------------------------------
    def attention(self, source: Image.Image, edited: Image.Image, instruction: str,
                  queries: str | None = None) -> AttentionMaps:
        """The SC call's attention maps: from the instruction text after the images
        (``queries='prompt'``, one forward pass) or from the generated answer
        (``'answer'``, runs the SC call), with sinks handled as configured."""
        queries = queries or self.config.attention_queries
        if queries not in ("prompt", "answer"):
            raise InputError(f"queries must be 'prompt' or 'answer', got {queries!r}")
        request = self._requests(source, edited, instruction)[0]
        raw: RawAttention | None
        if queries == "prompt":
            raw = self.runner.prompt_attention([request])[0]
        else:
            raw = self.runner.generate([request], capture="answer")[0].answer_attention
            if raw is None:
                raise InputError("the model answered with a single token; there is no answer "
                                 "attention to show (try queries='prompt')")
        return build_maps(raw, self.prompts.sc.images, self.config.sinks, self.config.sink_factor)

    def attention_maps(self, source: Image.Image, edited: Image.Image, instruction: str
                       ) -> np.ndarray:
        """(layers, heads, 2, rows, cols): attention to the source (index 0) and edited
        (index 1) image tokens on the source's token grid - an edited image with another
        grid is resampled onto it (mass kept) - each (layer, head) summing to 1 over both
        images, sinks suppressed. Same convention as the embedded model's maps."""
        return self.attention(source, edited, instruction).maps


@register("vlm")
def build(argument: str | None) -> VLMBackend:
    config = VLMConfig.from_argument(argument)
    try:
        return VLMBackend(config)
    except ImportError as err:  # e.g. a transformers without Qwen-VL support
        raise ConfigError(f"the vlm backend could not start: {err}") from None
