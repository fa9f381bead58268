"""The embedded editor: a small conditional flow-matching network in pixel space.

Data flow for a batch of B (noisy state, source image, instruction, noise level)::

    x_s (B, 3, S, S) + source (B, 3, S, S) + (x, y) coordinates (B, 2, S, S)
        -> stem conv -> U-Net levels at S, S/2, S/4, ... (one residual block each way)
    instruction -> words -> embeddings + positions -> 2 transformer layers -> (B, T, Dt)
    noise level s -> sinusoidal features -> MLP;  + mean-pooled words -> cond (B, Dc)
        cond scales and shifts every residual block (FiLM); at the coarse levels the
        image tokens also cross-attend over the words (where to act, what to draw)
    -> (B, 3, S, S) velocity

What it generates is the *residual* of the edit, ``(edited - source) / 2`` for images in
[-1, 1]: zero wherever the edit leaves the source alone, so preserving the rest of the
image is the easy default and the network spends its capacity on the change. The
coordinate channels let it put an object "at the top left".
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..synth.language import COLORS, POSITIONS, SHAPES, TEMPLATES

MAX_WORDS = 16
MIN_SIGMA = 0.05  # residual prediction: the velocity divides by at least this noise level
PAD, UNK = 0, 1
_WORD = re.compile(r"[a-z]+")


def vocabulary() -> list[str]:
    """Every word the SynthEdit language can write, sorted, after [PAD] and [UNK].

    Fixed by the language (not learned from data), so a checkpoint and every prompt set
    agree on the ids, held-out phrasings included.
    """
    words: set[str] = set()
    for templates in TEMPLATES.values():
        for t in templates:
            words.update(_WORD.findall(re.sub(r"\{[a-zA-Z]+\}", " ", t)))
    for text in (*COLORS, *SHAPES, *POSITIONS, "bigger", "smaller", "a", "an"):
        words.update(_WORD.findall(text))
    return ["[PAD]", "[UNK]", *sorted(words)]


VOCAB = vocabulary()
_INDEX = {w: i for i, w in enumerate(VOCAB)}


def encode(text: str) -> list[int]:
    """Word ids of an instruction, padded to MAX_WORDS (unknown words -> [UNK]).

    >>> ids = encode("Make the red circle BLUE.")
    >>> [VOCAB[i] for i in ids[:5]], ids[5:8]
    (['make', 'the', 'red', 'circle', 'blue'], [0, 0, 0])
    """
    ids = [_INDEX.get(w, UNK) for w in _WORD.findall(text.lower())][:MAX_WORDS]
    return ids + [PAD] * (MAX_WORDS - len(ids))


@dataclass(frozen=True)
class EditorConfig:
    """Architecture of the embedded editor (saved as JSON beside the weights)."""

    size: int = field(default=64, metadata={"help": "image side S in pixels (square)"})
    channels: tuple[int, ...] = field(default=(16, 32, 64, 128), metadata={
        "help": "U-Net width per level; level k works at S / 2**k (a narrow full-resolution "
                "level: twice the steps per minute of 32 and better edits per minute)"})
    text_dim: int = field(default=96, metadata={"help": "word embedding width Dt"})
    text_layers: int = field(default=2, metadata={"help": "transformer layers over words"})
    cond_dim: int = field(default=128, metadata={"help": "width Dc of the FiLM condition"})
    heads: int = field(default=4, metadata={"help": "cross-attention heads"})
    attention_levels: int = field(default=2, metadata={
        "help": "how many of the coarsest levels cross-attend over the words"})
    vocab_size: int = field(default=len(VOCAB), metadata={"help": "fixed by the language"})
    prediction: str = field(default="residual", metadata={
        "help": "what the U-Net outputs: 'velocity' (v = noise - x) or 'residual' (the clean "
                "residual x; v = (x_s - x) / max(s, MIN_SIGMA)): a zero output is then "
                "'leave the source alone' at every noise level"})

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        if not self.channels or any(c < 4 or c % 4 for c in self.channels):
            raise ConfigError(f"channels must be multiples of 4, got {list(self.channels)}")
        if self.size % 2 ** (len(self.channels) - 1):
            raise ConfigError(f"size {self.size} must be divisible by "
                              f"2**{len(self.channels) - 1} (one halving per extra level)")
        if any(c % self.heads for c in self.channels[-self.attention_levels:]) or (
                self.text_dim % self.heads):
            raise ConfigError(f"heads {self.heads} must divide text_dim and the channels of "
                              "the attention levels")
        if self.prediction not in ("velocity", "residual"):
            raise ConfigError(f"prediction must be 'velocity' or 'residual', "
                              f"got {self.prediction!r}")
        if self.vocab_size != len(VOCAB):
            raise ConfigError(f"vocab_size {self.vocab_size} does not match the language's "
                              f"{len(VOCAB)} words; this checkpoint was made for another "
                              "vocabulary")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["channels"] = list(self.channels)
        return d


def _groups(c: int) -> int:
    return next(g for g in (8, 4, 2, 1) if c % g == 0)


class ResBlock(nn.Module):
    """GroupNorm -> SiLU -> conv, FiLM from the condition, -> SiLU -> conv, + skip."""

    def __init__(self, cin: int, cout: int, cond_dim: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(cin), cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2 = nn.GroupNorm(_groups(cout), cout)
        self.film = nn.Linear(cond_dim, 2 * cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)  # type: ignore[arg-type]

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.film(cond)[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        return self.skip(x) + self.conv2(F.silu(h))


class CrossAttention(nn.Module):
    """Image tokens (B, HW, C) attend over the words (B, T, Dt); pads are masked."""

    def __init__(self, channels: int, text_dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm = nn.GroupNorm(_groups(channels), channels)
        self.q = nn.Linear(channels, channels)
        self.k = nn.Linear(text_dim, channels)
        self.v = nn.Linear(text_dim, channels)
        self.out = nn.Linear(channels, channels)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, words: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q = self.q(self.norm(x).flatten(2).transpose(1, 2))  # (B, HW, C)

        def split(t: torch.Tensor) -> torch.Tensor:  # (B, N, C) -> (B, heads, N, C/heads)
            return t.reshape(b, t.shape[1], self.heads, c // self.heads).transpose(1, 2)

        mask = keep[:, None, None, :]  # (B, 1, 1, T) True = attend
        a = F.scaled_dot_product_attention(split(q), split(self.k(words)), split(self.v(words)),
                                           attn_mask=mask)
        a = a.transpose(1, 2).reshape(b, h * w, c)
        return x + self.out(a).transpose(1, 2).reshape(b, c, h, w)


class Level(nn.Module):
    def __init__(self, cin: int, cout: int, cfg: EditorConfig, attend: bool) -> None:
        super().__init__()
        self.block = ResBlock(cin, cout, cfg.cond_dim)
        self.attn = CrossAttention(cout, cfg.text_dim, cfg.heads) if attend else None

    def forward(self, x: torch.Tensor, cond: torch.Tensor, words: torch.Tensor,
                keep: torch.Tensor) -> torch.Tensor:
        x = self.block(x, cond)
        return x if self.attn is None else self.attn(x, words, keep)


class TextEncoder(nn.Module):
    def __init__(self, cfg: EditorConfig) -> None:
        super().__init__()
        self.embed = nn.Embedding(cfg.vocab_size, cfg.text_dim, padding_idx=PAD)
        self.pos = nn.Parameter(torch.zeros(1, MAX_WORDS, cfg.text_dim))
        layer = nn.TransformerEncoderLayer(cfg.text_dim, cfg.heads, 2 * cfg.text_dim,
                                           dropout=0.0, batch_first=True, norm_first=True)
        self.layers = nn.TransformerEncoder(layer, cfg.text_layers, enable_nested_tensor=False)
        nn.init.normal_(self.pos, std=0.02)

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(words (B, T, Dt), keep mask (B, T), pooled (B, Dt))."""
        keep = tokens != PAD
        keep = keep | (~keep.any(1, keepdim=True))  # an empty instruction still attends
        words = self.layers(self.embed(tokens) + self.pos, src_key_padding_mask=~keep)
        pooled = (words * keep[..., None]).sum(1) / keep.sum(1, keepdim=True)
        return words, keep, pooled


def timestep_features(sigma: torch.Tensor, dim: int) -> torch.Tensor:
    """(B,) noise levels in [0, 1] -> (B, dim) sinusoidal features."""
    half = dim // 2
    freqs = torch.exp(-math.log(10_000) * torch.arange(half, dtype=torch.float32) / half)
    angles = sigma.float()[:, None] * 1000 * freqs[None]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


class EditorNet(nn.Module):
    """The velocity model v(x_s, s | source, instruction)."""

    coords: torch.Tensor  # (1, 2, S, S) buffer: x and y in [-1, 1]

    def __init__(self, cfg: EditorConfig) -> None:
        super().__init__()
        self.config = cfg
        ch = cfg.channels
        n = len(ch)
        attend = [k >= n - cfg.attention_levels for k in range(n)]
        self.text = TextEncoder(cfg)
        self.time = nn.Sequential(nn.Linear(cfg.cond_dim, cfg.cond_dim), nn.SiLU(),
                                  nn.Linear(cfg.cond_dim, cfg.cond_dim))
        self.text_cond = nn.Linear(cfg.text_dim, cfg.cond_dim)
        self.stem = nn.Conv2d(8, ch[0], 3, padding=1)
        self.down = nn.ModuleList(Level(ch[k], ch[k], cfg, attend[k]) for k in range(n))
        self.downsample = nn.ModuleList(nn.Conv2d(ch[k], ch[k + 1], 3, stride=2, padding=1)
                                        for k in range(n - 1))
        self.mid = Level(ch[-1], ch[-1], cfg, True)
        self.up = nn.ModuleList(Level(2 * ch[k], ch[k], cfg, attend[k]) for k in range(n))
        self.upsample = nn.ModuleList(nn.Conv2d(ch[k + 1], ch[k], 3, padding=1)
                                      for k in range(n - 1))
        self.out_norm = nn.GroupNorm(_groups(ch[0]), ch[0])
        self.out = nn.Conv2d(ch[0], 3, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)  # type: ignore[arg-type]
        s = cfg.size
        yy, xx = torch.meshgrid(torch.linspace(-1, 1, s), torch.linspace(-1, 1, s), indexing="ij")
        self.register_buffer("coords", torch.stack([xx, yy])[None], persistent=False)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, source: torch.Tensor,
                tokens: torch.Tensor) -> torch.Tensor:
        """The velocity. x, source: (B, 3, S, S) in [-1, 1] scale; sigma: (B,); tokens:
        (B, T) ids."""
        out = self.predict(x, sigma, source, tokens)
        if self.config.prediction == "velocity":
            return out
        return (x - out) / sigma.clamp(min=MIN_SIGMA)[:, None, None, None]

    def predict(self, x: torch.Tensor, sigma: torch.Tensor, source: torch.Tensor,
                tokens: torch.Tensor) -> torch.Tensor:
        """The U-Net's raw output (a velocity or a clean residual, see ``prediction``)."""
        words, keep, pooled = self.text(tokens)
        cond = F.silu(self.time(timestep_features(sigma, self.config.cond_dim))
                      + self.text_cond(pooled))  # (B, Dc)
        h = self.stem(torch.cat([x, source, self.coords.expand(x.shape[0], -1, -1, -1)], 1))
        skips = []
        for k, level in enumerate(self.down):
            h = level(h, cond, words, keep)
            skips.append(h)
            if k < len(self.downsample):
                h = self.downsample[k](h)
        h = self.mid(h, cond, words, keep)
        for k in reversed(range(len(self.up))):
            h = self.up[k](torch.cat([h, skips[k]], 1), cond, words, keep)
            if k > 0:
                h = self.upsample[k - 1](F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.out(F.silu(self.out_norm(h)))


__all__ = ["MAX_WORDS", "VOCAB", "EditorConfig", "EditorNet", "encode"]
