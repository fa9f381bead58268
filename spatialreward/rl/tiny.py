"""Tiny presets: a 16-pixel editor and an RL config that runs in about a second.

For tests, smoke checks and the benchmark's ``--tiny`` mode; nothing here is meant to
learn to edit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .config import RLConfig
from .editor import EditorConfig, EditorNet
from .embedded import EmbeddedEditor

TINY_EDITOR = EditorConfig(size=16, channels=(8, 16), text_dim=16, cond_dim=16, heads=2,
                           attention_levels=1)


def tiny_editor(seed: int = 0, config: EditorConfig = TINY_EDITOR) -> EditorNet:
    """A tiny editor whose zero-initialised layers got small random weights, as if
    trained: it edits, and gradients reach every layer from the first step."""
    torch.manual_seed(seed)
    net = EditorNet(config)
    with torch.no_grad():
        for p in net.parameters():
            if p.dim() > 1 and not p.any():
                p.normal_(0, 0.05)
    return net


def save_tiny_editor(folder: str | Path, seed: int = 0) -> Path:
    return EmbeddedEditor(tiny_editor(seed)).save(folder)


def tiny_rl_config(policy: str | Path, **overrides: Any) -> RLConfig:
    """An RL config for ``policy`` (a tiny editor) with every size turned down."""
    values: dict[str, Any] = dict(
        policy=str(policy), rewards=({"backend": "pixel"},), prompts=8, eval_prompts=6,
        steps=3, prompts_per_step=2, group_size=4, sampling_steps=4, judge_size=64,
        threads=1, checkpoint_every=2, lora_rank=2, micro_batch=8, reward_batch=8,
        alert_window=10)
    values.update(overrides)
    return RLConfig(**values)
