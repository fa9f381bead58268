"""Batched generation on a Qwen-VL checkpoint, with optional attention capture.

:class:`Runner` owns the model, tokenizer, image encoder and chat template. It turns
:class:`Request` s (a rendered prompt + its images) into answers, ``batch_size``
sequences per ``generate()`` call, and, when asked, captures the attention maps of the
same forward pass (:mod:`.attention`). One lock serialises the model: transformers keeps
per-call state (the M-RoPE deltas) on the model object.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from PIL import Image

from .attention import Capture, RawAttention, eager_reference, install
from .config import VLMConfig
from .inputs import (
    IMAGE_TOKEN,
    Batch,
    ImageEncoder,
    PreparedImage,
    build_batch,
    image_key,
    render_prompt,
)
from .prompts import Call
from .resize import official_resize


@dataclass(frozen=True)
class Request:
    """One model call: ``call`` names it (``sc``/``pq``), ``prompt`` is chat-formatted."""

    call: str
    prompt: str
    images: tuple[Image.Image, ...]
    answer_prefix: str = ""


@dataclass
class Output:
    """One answer and what was captured while it was generated."""

    text: str
    new_tokens: int
    truncated: bool = False
    """The answer reached ``max_new_tokens`` without an end token: it was cut off."""
    prompt_attention: RawAttention | None = None
    answer_attention: RawAttention | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)


def _eos_ids(model: Any, tokenizer: Any) -> list[int]:
    ids = getattr(model.generation_config, "eos_token_id", None)
    ids = list(ids) if isinstance(ids, (list, tuple)) else [] if ids is None else [ids]
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    return [int(i) for i in ids]


class _Processor:
    """Base for the logits processors below (transformers calls them each step)."""

    def __init__(self, prompt_len: int) -> None:
        self.prompt_len = prompt_len


class _Forced(_Processor):
    """Makes each row emit a given token sequence, then end-of-sequence (a constrained
    decode: the model runs for real, only the choice of token is fixed)."""

    def __init__(self, prompt_len: int, sequences: Sequence[list[int] | None], eos: int) -> None:
        super().__init__(prompt_len)
        self.sequences, self.eos = list(sequences), eos

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        step = input_ids.shape[1] - self.prompt_len
        for row, seq in enumerate(self.sequences):
            if seq is not None:
                token = seq[step] if step < len(seq) else self.eos
                scores[row] = float("-inf")
                scores[row, token] = 0.0
        return scores


class _ActiveRows(_Processor):
    """Tells the capture which rows are still generating (finished rows emit padding)."""

    def __init__(self, prompt_len: int, capture: Capture, eos: Sequence[int]) -> None:
        super().__init__(prompt_len)
        self.capture, self.eos = capture, torch.tensor(list(eos))

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        new = input_ids[:, self.prompt_len :]
        if new.shape[1]:
            done = torch.isin(new, self.eos.to(new.device)).any(1)
            self.capture.active = ~done  # stays on the device: no sync per step
        return scores


class Runner:
    """Runs prompts through one loaded checkpoint."""

    def __init__(self, model: Any, tokenizer: Any, image_processor: Any, chat_template: str,
                 config: VLMConfig) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.chat_template = chat_template
        self.config = config
        pre_resize = None
        if config.resize == "official":
            factor = int(image_processor.patch_size) * int(image_processor.merge_size)
            pre_resize = functools.partial(official_resize, factor=factor,
                                           min_pixels=config.min_pixels,
                                           max_pixels=config.max_pixels)
        self.encoder = ImageEncoder(model, image_processor, reuse=config.reuse_images,
                                    capacity=config.image_cache, pre_resize=pre_resize)
        self.image_token = getattr(tokenizer, "image_token", None) or IMAGE_TOKEN
        self.eos = _eos_ids(model, tokenizer)
        self.pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos[0]
        self.layers = int(model.config.text_config.num_hidden_layers)
        self._lock = threading.Lock()
        self._forced: dict[str, str] | None = None
        self.prefix_rows = 0
        """Requests answered from a shared prefix's cache (``reuse_prefix``)."""
        install(model)

    # -- prompts ---------------------------------------------------------------------------
    def request(self, call: Call, instruction: str, images: Sequence[Image.Image]) -> Request:
        shown = len(images) if "sources" in call.images else None  # [sc_multi]: N + 1
        prompt = render_prompt(self.tokenizer, self.chat_template,
                               call.messages(instruction, shown), call.answer_prefix)
        return Request(call.name, prompt, tuple(images), call.answer_prefix)

    def tokenized(self, requests: Sequence[Request]
                  ) -> tuple[Batch, list[list[PreparedImage]]]:
        """Tokenized, left-padded inputs on the model's device (images prepared, not yet
        encoded), and each request's prepared images."""
        prepared = [[self.encoder.prepare(im) for im in r.images] for r in requests]
        batch = build_batch(self.tokenizer, [r.prompt for r in requests], prepared,
                            self.image_token)
        device = self.model.device
        batch.inputs = {k: v.to(device) for k, v in batch.inputs.items()}
        return batch, prepared

    def batch(self, requests: Sequence[Request]) -> Batch:
        """Tokenized, left-padded inputs with the images encoded (``mm_encoder_outputs``)."""
        batch, _ = self.tokenized(requests)
        batch.inputs["mm_encoder_outputs"] = self.encoder.encode(batch.images)
        return batch

    @contextlib.contextmanager
    def forced_answers(self, answers: dict[str, str]) -> Iterator[None]:
        """Within the block every call named in ``answers`` (``sc``/``pq``) emits that text
        token by token through the real model (tests use it to exercise the whole judging
        path with a known valid answer; it also checks a tokenizer round-trips JSON)."""
        self._forced = dict(answers)
        try:
            yield
        finally:
            self._forced = None

    # -- running ---------------------------------------------------------------------------
    def _generation_kwargs(self) -> dict[str, Any]:
        from transformers import GenerationConfig

        c = self.config
        settings: dict[str, Any] = dict(max_new_tokens=c.max_new_tokens,
                                        min_new_tokens=c.min_new_tokens or None,
                                        eos_token_id=self.eos, pad_token_id=self.pad,
                                        do_sample=c.sampling)
        if c.sampling:
            settings.update(temperature=c.temperature, top_p=c.top_p or 1.0, top_k=c.top_k or 0)
        else:  # greedy: unset the sampling knobs a checkpoint's generation_config may carry
            settings.update(temperature=None, top_p=None, top_k=None)
        return {"generation_config": GenerationConfig(**settings)}

    @torch.no_grad()
    def generate(self, requests: Sequence[Request], *, capture: str | None = None
                 ) -> list[Output]:
        """Answer each request; ``capture='prompt'`` also returns the attention of each
        prompt's text to its images, ``capture='answer'`` that and the answer's.

        With ``reuse_prefix`` (greedy decoding, no capture), requests that differ only in their last
        image - the K candidates of one source in their SC calls - are answered together
        from one computation of the shared prefix (system text, the source image, the text
        between): its KV cache is computed once and copied to each row
        (:meth:`_shared_prefix_chunk`); other requests no longer than them fill the rest
        of that batch, prefilled on their own and decoded in the same loop. Greedy answers
        are the same tokens either way."""
        outputs: list[Output | None] = [None] * len(requests)
        rest = list(range(len(requests)))
        # Sampled answers keep the plain path: another batch layout draws other numbers.
        if capture is None and self.config.reuse_prefix and not self.config.sampling:
            groups, rest = self._prefix_groups(requests)
            lengths = [self._token_length(r) for r in requests] if groups else []
            for members in groups:
                size = self.config.batch_size
                for start in range(0, len(members), size):
                    part = members[start : start + size]
                    riders = [k for k in rest if lengths[k] <= lengths[part[0]]][
                        : size - len(part)]
                    done = self._shared_prefix_chunk([requests[i] for i in part],
                                                     [requests[i] for i in riders])
                    for k, out in zip(part + riders, done, strict=True):
                        outputs[k] = out
                    rest = [k for k in rest if k not in riders]
        size = self.config.batch_size
        for start in range(0, len(rest), size):
            part = rest[start : start + size]
            for k, out in zip(part, self._generate_chunk([requests[i] for i in part], capture),
                              strict=True):
                outputs[k] = out
        return [o for o in outputs if o is not None]

    def _prefix_groups(self, requests: Sequence[Request]) -> tuple[list[list[int]], list[int]]:
        """Indices of requests sharing everything but their last image (same prompt text,
        same earlier images, a last image of the same token count), in groups of two or
        more; and the indices of the others."""
        by_key: dict[tuple[Any, ...], list[int]] = {}
        for k, r in enumerate(requests):
            if len(r.images) < 2 or r.prompt.count(self.image_token) != len(r.images):
                continue
            last = r.images[-1]  # equal sizes resize alike: equal token counts
            key = (r.call, r.prompt, r.answer_prefix, last.size, last.mode,
                   tuple(image_key(im) for im in r.images[:-1]))
            by_key.setdefault(key, []).append(k)
        groups = [g for g in by_key.values() if len(g) > 1]
        grouped = {k for g in groups for k in g}
        return groups, [k for k in range(len(requests)) if k not in grouped]

    def _token_length(self, r: Request) -> int:
        """The request's prompt length in tokens, its images expanded."""
        text = len(self.tokenizer(r.prompt, add_special_tokens=False)["input_ids"])
        return text - len(r.images) + sum(self.encoder.prepare(im).tokens for im in r.images)

    def _prefill(self, ids: torch.Tensor, mask: torch.Tensor, mtt: torch.Tensor,
                 positions: torch.Tensor, images: Sequence[Any], cache: Any = None) -> Any:
        """One forward pass filling (or extending) a KV cache; returns the cache."""
        kwargs: dict[str, Any] = {}
        if images:
            kwargs["mm_encoder_outputs"] = self.encoder.encode(images)
        return self.model(input_ids=ids, attention_mask=mask, position_ids=positions,
                          mm_token_type_ids=mtt, cache=cache, use_cache=True,
                          logits_to_keep=1, **kwargs).cache

    def _positions(self, inputs: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """The model's own M-RoPE position ids of a whole batch, and its rope deltas."""
        keys = ("input_ids", "attention_mask", "mm_token_type_ids", "image_grid_thw")
        positions = self.model._prepare_position_ids_for_generation(
            inputs["input_ids"], {k: inputs[k] for k in keys if k in inputs})
        return positions, self.model.model.rope_deltas.clone()

    def _shared_prefix_chunk(self, members: Sequence[Request], riders: Sequence[Request]
                             ) -> list[Output]:
        """``members``: one prefix group (equal lengths); ``riders``: requests no longer
        than them. Every prompt but its last token is prefilled into one KV cache - the
        group's prefix once (repeated per row), then each member's own rest; the riders in
        a batch of their own, their cache rows left-padded - and one ``generate`` call
        decodes all rows from it, with the rope deltas of the whole batch."""
        requests = [*members, *riders]
        k = len(members)
        with self._lock:
            t0 = time.perf_counter()
            batch, prepared = self.tokenized(requests)
            inputs = batch.inputs
            ids, mask = inputs["input_ids"], inputs["attention_mask"]
            mtt = inputs["mm_token_type_ids"]
            t = ids.shape[1]
            positions, deltas = self._positions(inputs)
            earlier = prepared[0][:-1]
            is_image = ids[0] == self.tokenizer.convert_tokens_to_ids(self.image_token)
            cut = int(torch.nonzero(is_image).flatten()[sum(im.tokens for im in earlier)])
            cache = self._prefill(ids[:1, :cut], mask[:1, :cut], mtt[:1, :cut],
                                  positions[:, :1, :cut], earlier)
            cache.batch_repeat_interleave(k)
            cache = self._prefill(ids[:k, cut:t - 1], mask[:k, :t - 1], mtt[:k, cut:t - 1],
                                  positions[:, :k, cut:t - 1], [p[-1] for p in prepared[:k]],
                                  cache)
            self.prefix_rows += k
            if riders:
                o = self.tokenized(riders)[0].inputs
                o_pos, _ = self._positions(o)
                width = o["input_ids"].shape[1]
                theirs = self._prefill(o["input_ids"][:, :width - 1],
                                       o["attention_mask"][:, :width - 1],
                                       o["mm_token_type_ids"][:, :width - 1],
                                       o_pos[:, :, :width - 1],
                                       [im for p in prepared[k:] for im in p])
                for mine, other in zip(cache.layers, theirs.layers, strict=True):
                    for name in ("keys", "values"):
                        part = getattr(other, name)
                        pad = part.new_zeros((part.shape[0], part.shape[1], t - width,
                                              part.shape[3]))
                        setattr(mine, name, torch.cat([getattr(mine, name),
                                                       torch.cat([pad, part], 2)]))
            self.model.model.rope_deltas = deltas
            processors = self._forced_processors(requests, batch.prompt_len)
            t1 = time.perf_counter()  # greedy only (see generate): no seed to set
            sequences = self.model.generate(input_ids=ids, attention_mask=mask,
                                            mm_token_type_ids=mtt, cache=cache,
                                            logits_processor=processors,
                                            **self._generation_kwargs())
            t2 = time.perf_counter()
        return self._outputs(requests, sequences, batch.prompt_len, None, (t0, t1, t2))

    def _forced_processors(self, requests: Sequence[Request], prompt_len: int) -> Any:
        from transformers import LogitsProcessorList

        processors: list[Any] = []
        if self._forced is not None:
            forced = [self._forced.get(r.call) for r in requests]
            sequences = [None if f is None else self.tokenizer.encode(
                f[len(r.answer_prefix):] if f.startswith(r.answer_prefix) else f,
                add_special_tokens=False) for f, r in zip(forced, requests, strict=True)]
            processors.append(_Forced(prompt_len, sequences, self.eos[0]))
        return LogitsProcessorList(processors)

    def _generate_chunk(self, requests: Sequence[Request], capture: str | None
                        ) -> list[Output]:
        with self._lock:
            t0 = time.perf_counter()
            batch = self.batch(requests)
            t1 = time.perf_counter()
            processors = self._forced_processors(requests, batch.prompt_len)
            state = None
            if capture:
                state = Capture(batch.layout, self.layers, answer=capture == "answer")
                processors.insert(0, _ActiveRows(batch.prompt_len, state, self.eos))
            if self.config.sampling:
                torch.manual_seed(self.config.seed)
            with state.active_in() if state is not None else contextlib.nullcontext():
                sequences_out = self.model.generate(
                    **batch.inputs, logits_processor=processors, **self._generation_kwargs())
            t2 = time.perf_counter()
        return self._outputs(requests, sequences_out, batch.prompt_len, state, (t0, t1, t2))

    def _outputs(self, requests: Sequence[Request], sequences_out: torch.Tensor,
                 prompt_len: int, state: Capture | None,
                 times: tuple[float, float, float]) -> list[Output]:
        t0, t1, t2 = times
        new = sequences_out[:, prompt_len:].cpu()
        texts = self.tokenizer.batch_decode(new, skip_special_tokens=True)
        eos = torch.tensor(self.eos)
        lengths, cut = [], []
        for row in new:
            ends = torch.nonzero(torch.isin(row, eos)).flatten()
            lengths.append(int(ends[0]) + 1 if len(ends) else int(row.shape[0]))
            cut.append(not len(ends) and int(row.shape[0]) >= self.config.max_new_tokens)
        prompt_maps = state.results("prompt") if state is not None else [None] * len(requests)
        answer_maps = (state.results("answer") if state is not None and state.answer
                       else [None] * len(requests))
        per = {"prepare": (t1 - t0) * 1e3 / len(requests),
               "generate": (t2 - t1) * 1e3 / len(requests)}
        return [Output(text=r.answer_prefix + text, new_tokens=n, truncated=c,
                       prompt_attention=p, answer_attention=a,
                       timings_ms={k: round(v, 2) for k, v in per.items()})
                for r, text, n, c, p, a in zip(requests, texts, lengths, cut, prompt_maps,
                                               answer_maps, strict=True)]

    @torch.no_grad()
    def prompt_attention(self, requests: Sequence[Request]) -> list[RawAttention]:
        """One forward pass (no generation): the attention of each prompt's text after its
        images to each image's tokens."""
        out: list[RawAttention] = []
        size = self.config.batch_size
        for start in range(0, len(requests), size):
            with self._lock:
                batch = self.batch(requests[start : start + size])
                state = Capture(batch.layout, self.layers)
                with state.active_in():
                    self.model(**batch.inputs, use_cache=False, logits_to_keep=1)
            out += [r for r in state.results("prompt") if r is not None]
        return out

    @torch.no_grad()
    def eager_prompt_attention(self, requests: Sequence[Request]) -> list[RawAttention]:
        """The same maps the memory-hungry way (``output_attentions=True``), for checks."""
        with self._lock:
            batch = self.batch(requests)
            return eager_reference(self.model, batch.inputs, batch.layout)
