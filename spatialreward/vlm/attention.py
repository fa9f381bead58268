"""Attention maps of a Qwen-VL judge, captured during the forward pass that judges.

Why not ``output_attentions=True``: eager attention then keeps every layer's full
``(batch, heads, seq, seq)`` matrix until the forward ends - ``layers x heads x seq^2``
floats, tens of GB for a 3B model at a few thousand tokens. The maps need far less: the
attention from a few query tokens (the instruction text, or the answer) to each image's
tokens. So the language model runs with a registered attention function that calls the
normal kernel (sdpa) for the output and, while a :class:`Capture` is active, recomputes
softmax rows for the selected queries only, in chunks, and keeps their sum over image
keys: ``(layers, batch, heads, image_tokens)``. The rows are computed exactly as eager
attention computes them (same matmul, scaling, mask and float32 softmax), so the maps
equal the eager reference (``eager_reference``) to float rounding.

Each image's tokens form its merged patch grid: ``(grid_h / merge, grid_w / merge)``
tokens, row-major. Sink tokens - a few image tokens that soak up attention in most heads
whatever the content - are found and suppressed by :func:`find_sinks` /
:func:`suppress_sinks` so that maps show content; the diagnostics in the judgment keep
them, since piling attention on sinks is exactly the collapse they measure.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..attention import summarise as summarise_weights
from ..judgment import AttentionSummary

_ACTIVE: ContextVar[Capture | None] = ContextVar("spatialreward_attention_capture", default=None)
_SUFFIX = "_spatialreward_capture"
CHUNK_BYTES = 16 << 20
"""Memory for one chunk of recomputed attention rows (float32); the capture's transient
peak is about twice this (the logits and their softmax)."""


# -- the registered attention function -------------------------------------------------------
def _repeat_kv(x: torch.Tensor, groups: int) -> torch.Tensor:
    """(B, Hkv, S, D) -> (B, Hkv * groups, S, D), as grouped-query attention shares keys."""
    if groups == 1:
        return x
    b, h, s, d = x.shape
    return x[:, :, None].expand(b, h, groups, s, d).reshape(b, h * groups, s, d)


def _make_capturing(base_name: str) -> Any:
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    def capturing_attention(module: Any, query: torch.Tensor, key: torch.Tensor,
                            value: torch.Tensor, attention_mask: torch.Tensor | None,
                            **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
        if base_name == "eager":
            from transformers.models.qwen3_vl.modeling_qwen3_vl import eager_attention_forward

            out = eager_attention_forward(module, query, key, value, attention_mask, **kwargs)
        else:
            out = ALL_ATTENTION_FUNCTIONS[base_name](module, query, key, value, attention_mask,
                                                     **kwargs)
        capture = _ACTIVE.get()
        layer = getattr(module, "layer_idx", None)
        if capture is not None and layer is not None:
            scaling = kwargs.get("scaling") or query.shape[-1] ** -0.5
            capture.observe(layer, query, key, float(scaling))
        return out

    return capturing_attention


def install(model: Any) -> None:
    """Route the language model's attention through the capturing function (a no-op cost
    while no capture is active); the vision tower keeps its own kernel."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

    text = model.config.text_config
    base = text._attn_implementation
    if base.endswith(_SUFFIX):
        return
    if base not in ("sdpa", "eager"):
        raise ValueError(f"attention capture runs over sdpa or eager, not {base!r}")
    if getattr(text, "sliding_window", None) and getattr(text, "use_sliding_window", False):
        raise ValueError("attention capture does not support sliding-window attention")
    name = base + _SUFFIX
    if name not in AttentionInterface._global_mapping:
        AttentionInterface.register(name, _make_capturing(base))
        AttentionMaskInterface.register(name, ALL_MASK_ATTENTION_FUNCTIONS[base])
    model.set_attn_implementation({"text_config": name})


@contextlib.contextmanager
def implementation(model: Any, name: str) -> Iterator[None]:
    """Temporarily run the language model with another attention kernel (e.g. eager)."""
    text = model.config.text_config
    before = text._attn_implementation
    model.set_attn_implementation({"text_config": name})
    try:
        yield
    finally:
        model.set_attn_implementation({"text_config": before})


# -- what to capture, and the capture itself -----------------------------------------------
@dataclass
class Layout:
    """Where the images and the query tokens are in a left-padded batch of prompts.

    ``image_index[b]`` lists the key positions of row b's image tokens, image after image
    (padded with 0 where ``image_valid`` is False); ``splits[b]`` the token count of each
    image and ``grids[b]`` its (rows, cols) token grid; ``prompt_queries`` marks the
    prompt tokens whose attention the prompt maps read; ``key_valid`` the non-padding.
    """

    image_index: torch.Tensor  # (B, N) long
    image_valid: torch.Tensor  # (B, N) bool
    splits: list[list[int]]
    grids: list[list[tuple[int, int]]]
    prompt_queries: torch.Tensor  # (B, P) bool
    key_valid: torch.Tensor  # (B, P) bool


@dataclass
class RawAttention:
    """Mean attention (softmax probabilities) from the chosen queries to each image's tokens."""

    per_image: list[np.ndarray]
    """One (layers, heads, rows, cols) array per image, in prompt order."""
    queries: int
    kind: str
    """'prompt' or 'answer'."""

    @property
    def image_share(self) -> np.ndarray:
        """(layers, heads): how much of the queries' attention went to the images at all."""
        return np.sum([m.sum((-1, -2)) for m in self.per_image], axis=0)


class Capture:
    """Accumulates attention rows to image tokens during one batched forward / generate."""

    def __init__(self, layout: Layout, layers: int, answer: bool = False,
                 chunk_bytes: int = CHUNK_BYTES) -> None:
        self.layout = layout
        self.layers = layers
        self.answer = answer
        self.chunk_bytes = chunk_bytes
        self.prompt_len = layout.key_valid.shape[1]
        self.prompt_sum: dict[int, torch.Tensor] = {}
        self.answer_sum: dict[int, torch.Tensor] = {}
        self.answer_count: torch.Tensor | None = None
        self.active: torch.Tensor | None = None
        """Rows still generating (set between decode steps by the runner; None = all)."""
        self.unexpected = 0
        self._device: tuple[torch.device, dict[str, torch.Tensor]] | None = None

    @contextlib.contextmanager
    def active_in(self) -> Iterator[Capture]:
        token = _ACTIVE.set(self)
        try:
            yield self
        finally:
            _ACTIVE.reset(token)

    def _rows(self, query: torch.Tensor, keys: torch.Tensor, scaling: float,
              positions: torch.Tensor, key_valid: torch.Tensor) -> torch.Tensor:
        """Softmax rows of the queries at ``positions``: (B, H, Q, K) float32, as eager
        attention computes them."""
        logits = torch.matmul(query, keys.transpose(2, 3)) * scaling
        k = torch.arange(keys.shape[2], device=keys.device)
        allowed = key_valid[:, None, None, :] & (k[None, None, None, :]
                                                 <= positions[None, None, :, None])
        logits.masked_fill_(~allowed, torch.finfo(logits.dtype).min)
        return torch.softmax(logits, dim=-1, dtype=torch.float32)

    def _on(self, device: torch.device) -> dict[str, torch.Tensor]:
        """The layout's tensors on the model's device (copied once, not once per layer)."""
        if self._device is None or self._device[0] != device:
            fields = ("image_index", "image_valid", "prompt_queries", "key_valid")
            self._device = (device, {f: getattr(self.layout, f).to(device) for f in fields})
        return self._device[1]

    def _image_columns(self, summed: torch.Tensor) -> torch.Tensor:
        """(B, H, K) -> (B, H, N): the image keys of each row."""
        on = self._on(summed.device)
        index = on["image_index"]
        b, h, _ = summed.shape
        cols = summed.gather(2, index[:, None, :].expand(b, h, index.shape[1]))
        return cols * on["image_valid"][:, None, :]

    @torch.no_grad()
    def observe(self, layer: int, query: torch.Tensor, key: torch.Tensor,
                scaling: float) -> None:
        b, heads, q_len, _ = query.shape
        k_len = key.shape[2]
        prefill = q_len == k_len == self.prompt_len  # the prompt's own queries
        decode = q_len == 1 and k_len > self.prompt_len  # one step: the answer so far
        if not (prefill or (decode and self.answer)):
            self.unexpected += not (prefill or decode)
            return
        keys = _repeat_kv(key, heads // key.shape[1])
        device = query.device
        if prefill:
            on = self._on(device)
            queries, key_valid = on["prompt_queries"], on["key_valid"]
            positions = torch.nonzero(queries.any(0)).flatten()
            per_row = max(1, self.chunk_bytes // max(1, 4 * b * heads * k_len))
            total = torch.zeros(b, heads, k_len, device=device)
            for chunk in positions.split(per_row):
                probs = self._rows(query[:, :, chunk], keys, scaling, chunk, key_valid)
                weight = queries[:, chunk].to(probs.dtype)[:, None, None, :]  # (B, 1, 1, c)
                total += torch.matmul(weight, probs)[:, :, 0]  # sum over this row's queries
            self.prompt_sum[layer] = self._image_columns(total)
        else:
            valid = torch.ones(b, k_len, dtype=torch.bool, device=device)
            valid[:, : self.prompt_len] = self._on(device)["key_valid"]
            position = torch.tensor([k_len - 1], device=device)
            active = (torch.ones(b, device=device) if self.active is None
                      else self.active.to(device=device, dtype=torch.float32))
            probs = self._rows(query, keys, scaling, position, valid)[:, :, 0]
            cols = self._image_columns(probs * active[:, None, None])
            if layer in self.answer_sum:
                self.answer_sum[layer] += cols
            else:
                self.answer_sum[layer] = cols
            if layer == 0:
                self.answer_count = active if self.answer_count is None \
                    else self.answer_count + active

    def results(self, kind: str = "prompt") -> list[RawAttention | None]:
        """Per batch row: the mean attention of its queries, split into image grids."""
        sums = self.prompt_sum if kind == "prompt" else self.answer_sum
        if len(sums) != self.layers:
            return [None] * len(self.layout.splits)
        stacked = torch.stack([sums[i] for i in range(self.layers)]).float().cpu()  # (L,B,H,N)
        if kind == "prompt":
            counts = self.layout.prompt_queries.sum(1).float()
        elif self.answer_count is None:
            return [None] * len(self.layout.splits)
        else:
            counts = self.answer_count.cpu()
        out: list[RawAttention | None] = []
        for row, (splits, grids) in enumerate(zip(self.layout.splits, self.layout.grids,
                                                  strict=True)):
            n = float(counts[row])
            if n == 0:
                out.append(None)
                continue
            mean = (stacked[:, row] / n).numpy()
            maps, start = [], 0
            for size, (gh, gw) in zip(splits, grids, strict=True):
                maps.append(mean[:, :, start : start + size].reshape(*mean.shape[:2], gh, gw))
                start += size
            out.append(RawAttention(per_image=maps, queries=int(n), kind=kind))
        return out


@torch.no_grad()
def eager_reference(model: Any, inputs: dict[str, Any], layout: Layout) -> list[RawAttention]:
    """The same prompt maps read from ``output_attentions=True`` under eager attention (the
    memory-hungry way; for tests and the memory benchmark)."""
    with implementation(model, "eager"):
        out = model(**inputs, output_attentions=True, use_cache=False, logits_to_keep=1)
    capture = Capture(layout, len(out.attentions))
    queries = layout.prompt_queries.to(out.attentions[0].device)
    weight = queries.float()[:, None, None, :]  # (B, 1, 1, P)
    for layer, weights in enumerate(out.attentions):  # (B, H, P, P)
        summed = torch.matmul(weight, weights.float())[:, :, 0]
        capture.prompt_sum[layer] = capture._image_columns(summed)
    return [r for r in capture.results("prompt") if r is not None]


# -- from raw attention to maps and diagnostics ------------------------------------------------
def find_sinks(maps: np.ndarray, factor: float = 10.0, head_share: float = 0.5,
               max_share: float = 0.02) -> np.ndarray:
    """Sink tokens of one image's (layers, heads, rows, cols) maps -> (rows, cols) bool.

    A token is a sink when it holds more than ``factor`` times the uniform share of the
    image's attention in at least ``head_share`` of the (layer, head) maps; at most
    ``max_share`` of the tokens (at least one) are flagged, the most frequent first.
    Content can draw strong attention in a few heads; a sink draws it in most of them.

    >>> m = np.full((2, 3, 8, 8), 1.0); m[..., 0, 7] = 500.0
    >>> np.argwhere(find_sinks(m)).tolist()
    [[0, 7]]
    """
    rows, cols = maps.shape[-2:]
    n = rows * cols
    flat = maps.reshape(-1, n)
    p = flat / np.maximum(flat.sum(1, keepdims=True), 1e-30)
    frequency = (p > factor / n).mean(0)
    candidates = np.flatnonzero(frequency >= head_share)
    limit = max(1, int(max_share * n))
    order = candidates[np.lexsort((-p.mean(0)[candidates], -frequency[candidates]))]
    mask = np.zeros(n, dtype=bool)
    mask[order[:limit]] = True
    return mask.reshape(rows, cols)


def suppress_sinks(maps: np.ndarray, sinks: np.ndarray) -> np.ndarray:
    """Replace the sink tokens of every (layer, head) map by the median of the others, so
    they read as background rather than as the hottest spot or a hole.

    >>> m = np.arange(8.0).reshape(1, 1, 2, 4); s = np.zeros((2, 4), bool); s[1, 3] = True
    >>> suppress_sinks(m, s)[0, 0].tolist()
    [[0.0, 1.0, 2.0, 3.0], [4.0, 5.0, 6.0, 3.0]]
    """
    if not sinks.any() or sinks.all():
        return maps
    out = maps.copy()
    rest = maps[..., ~sinks]  # (L, H, n_rest)
    out[..., sinks] = np.median(rest, axis=-1, keepdims=True)
    return out


def resample(maps: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """Resample (..., rows, cols) maps onto another grid, keeping each map's total mass
    (normalised coordinates are shared between the frames: the stretch convention)."""
    if maps.shape[-2:] == tuple(grid):
        return maps
    lead = maps.shape[:-2]
    t = torch.from_numpy(np.ascontiguousarray(maps, dtype=np.float32)).reshape(-1, 1,
                                                                               *maps.shape[-2:])
    out = torch.nn.functional.interpolate(t, size=tuple(grid), mode="bilinear",
                                          align_corners=False, antialias=True)
    before = t.sum((-1, -2), keepdim=True)
    after = out.sum((-1, -2), keepdim=True).clamp_min(1e-30)
    return (out * before / after).reshape(*lead, *grid).numpy()


def pair_maps(source: np.ndarray | None, edited: np.ndarray) -> np.ndarray:
    """(layers, heads, 2, rows, cols) on the source grid: index 0 the source, 1 the edited
    image; each (layer, head) pair sums to 1 over both images (a zero source map when the
    protocol shows the model no source)."""
    grid = edited.shape[-2:] if source is None else source.shape[-2:]
    src = np.zeros_like(resample(edited, grid)) if source is None else source
    both = np.stack([src, resample(edited, grid)], axis=2).astype(np.float32)
    total = both.sum((2, 3, 4), keepdims=True)
    return both / np.maximum(total, 1e-30)


@dataclass(frozen=True)
class AttentionMaps:
    """Attention maps of one (source, edited, instruction) judgment call."""

    maps: np.ndarray
    """(layers, heads, 2, rows, cols) on the source's token grid (see :func:`pair_maps`),
    sinks suppressed unless asked to keep them."""
    raw: RawAttention
    """The captured probabilities, one native grid per image, sinks included."""
    roles: tuple[str, ...]
    """What each image of ``raw`` is ("source", "edited"), in prompt order."""
    sinks: tuple[np.ndarray, ...]
    """Per image, the (rows, cols) tokens flagged as sinks."""

    def image(self, role: str) -> np.ndarray | None:
        return self.raw.per_image[self.roles.index(role)] if role in self.roles else None


def build_maps(raw: RawAttention, roles: Sequence[str], sinks: str = "suppress",
               factor: float = 10.0) -> AttentionMaps:
    """Find sinks per image, suppress them (unless ``sinks='keep'``) and pair the images."""
    found = tuple(find_sinks(m, factor) for m in raw.per_image)
    shown = [suppress_sinks(m, s) if sinks == "suppress" else m
             for m, s in zip(raw.per_image, found, strict=True)]
    by_role = dict(zip(roles, shown, strict=True))
    if "edited" not in by_role:
        raise ValueError("the SC call shows the model no edited image; no maps to pair")
    return AttentionMaps(maps=pair_maps(by_role.get("source"), by_role["edited"]), raw=raw,
                         roles=tuple(roles), sinks=found)


def token_centres_in_boxes(grid: tuple[int, int], boxes: Sequence[Sequence[int]]) -> np.ndarray:
    """(rows, cols) bool: tokens whose centre lies in any 0..1000 box.

    >>> token_centres_in_boxes((2, 2), [(0, 0, 500, 1000)]).tolist()
    [[True, False], [True, False]]
    """
    rows, cols = grid
    y = (np.arange(rows) + 0.5) / rows * 1000
    x = (np.arange(cols) + 0.5) / cols * 1000
    inside = np.zeros(grid, dtype=bool)
    for x1, y1, x2, y2 in boxes:
        inside |= ((y >= y1) & (y <= y2))[:, None] & ((x >= x1) & (x <= x2))[None, :]
    return inside


def _grid(a: np.ndarray) -> tuple[int, int]:
    return int(a.shape[0]), int(a.shape[1])


def summarise(source: np.ndarray | None, edited: np.ndarray,
              boxes: Sequence[Sequence[int]] = ()) -> AttentionSummary:
    """Attention-collapse diagnostics from raw (layers, heads, rows, cols) maps, with the
    same definitions as every backend's (:func:`spatialreward.attention.summarise`); the
    regions are the patches whose centre lies in a box."""
    w_src = None if source is None else source.mean((0, 1))
    w_edt = edited.mean((0, 1))
    inside_src = inside_edt = None
    if boxes:
        inside_edt = token_centres_in_boxes(_grid(w_edt), boxes)
        if w_src is not None:
            inside_src = token_centres_in_boxes(_grid(w_src), boxes)
    return summarise_weights(w_src, w_edt, inside_src, inside_edt)
