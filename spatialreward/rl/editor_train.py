"""Pretrain the embedded editor on SynthEdit's correct edits by supervised flow matching:
``python -m spatialreward train-editor --config configs/editor.json``.

For a (source, target) pair the flow generates the residual ``x = (target - source) / 2``:
draw a noise level ``s ~ U(0, 1)`` and noise ``e``, form ``x_s = (1 - s) x + s e`` and
regress the network's velocity on ``e - x`` (mean squared error). An exponential moving
average of the weights is what gets saved and evaluated.

Training prompts are drawn once (SynthEdit train split, the prompts' own stream) and
cached as arrays beside the other data. Everything is seeded: the same config on the
same machine and thread count writes the same weights. Every ``eval_every`` steps, and
at the end, the averaged model edits held-out validation prompts with the ODE sampler
and its ground-truth success is reported per operation.
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F

from ..configfile import load_config
from ..errors import ConfigError
from ..synth.language import OPERATIONS
from .editor import EditorConfig, EditorNet, encode
from .embedded import EmbeddedEditor, residual_target, to_tensor
from .evaluate import evaluate_editor, format_table
from .prompts import check_scenes, prompt_set

CACHE_FORMAT = 1


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass(frozen=True)
class EditorTrainConfig:
    """One pretraining run (a JSON file with these keys; paths relative to the repo root)."""

    out: str = field(default="models/editor", metadata=_help(
        "output folder: editor.safetensors, config.json, curves"))
    model: EditorConfig = field(default_factory=EditorConfig, metadata=_help(
        "architecture (EditorConfig keys)"))
    cache: str = field(default="data/editor", metadata=_help("folder for the prepared arrays"))
    train_items: int = field(default=24000, metadata=_help("training prompts (train split)"))
    val_prompts: int = field(default=120, metadata=_help(
        "validation prompts (val split), operations taking turns"))
    phrasings: str = field(default="seen", metadata=_help("'seen' or 'all' phrasings"))
    scenes: str = field(default="default", metadata=_help(
        "scene distribution of the prompts (rl.prompts.SCENES): 'default' or 'simple'"))
    change_weight: float = field(default=0.0, metadata=_help(
        "extra loss weight on the pixels the edit changes (dilated by 3 px): a pixel there "
        "counts 1 + change_weight times"))
    steps: int = field(default=5000, metadata=_help("optimiser steps"))
    batch_size: int = field(default=32, metadata=_help("pairs per step"))
    lr: float = field(default=1e-3, metadata=_help("peak AdamW learning rate"))
    weight_decay: float = field(default=0.01, metadata=_help("AdamW weight decay"))
    warmup: int = field(default=200, metadata=_help("linear warm-up steps, then cosine"))
    ema: float = field(default=0.999, metadata=_help("decay of the weight average"))
    sampling_steps: int = field(default=10, metadata=_help("sampler steps when evaluating"))
    eval_every: int = field(default=1000, metadata=_help("steps between evaluations"))
    seed: int = field(default=0, metadata=_help("seed of prompts, init, batches and noise"))
    threads: int = field(default=2, metadata=_help("torch CPU threads"))
    workers: int = field(default=2, metadata=_help("processes drawing the prompts"))
    max_minutes: float = field(default=0.0, metadata=_help(
        "stop early after this much training time (0: no limit); the run then differs "
        "from machine to machine, so the report says so"))

    def __post_init__(self) -> None:
        if isinstance(self.model, dict):
            object.__setattr__(self, "model", EditorConfig(**self.model))
        for name in ("train_items", "val_prompts", "steps", "batch_size", "eval_every",
                     "threads", "workers", "sampling_steps"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 0 <= self.ema < 1:
            raise ConfigError(f"ema must be in [0, 1), got {self.ema}")
        check_scenes(self.scenes)
        if self.change_weight < 0:
            raise ConfigError(f"change_weight must be >= 0, got {self.change_weight}")
        if self.lr <= 0:
            raise ConfigError(f"lr must be positive, got {self.lr}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["model"] = self.model.to_dict()
        return d

    @classmethod
    def from_file(cls, path: str | Path, **overrides: Any) -> EditorTrainConfig:
        """The run in the JSON file ``path``, ``overrides`` put over it (:func:`load_config`)."""
        return load_config(cls, path, what="editor config", overrides=overrides)


def training_arrays(config: EditorTrainConfig, log: Callable[[str], None] = print
                    ) -> dict[str, np.ndarray]:
    """Source, target (N, S, S, 3) uint8 and word ids (N, T), cached in ``config.cache``."""
    size, n = config.model.size, config.train_items
    scenes = "" if config.scenes == "default" else f"-{config.scenes}"
    cache = Path(config.cache) / (f"editor-train-v{CACHE_FORMAT}-s{config.seed}-n{n}-{size}px-"
                                  f"{config.phrasings}{scenes}.npz")
    if cache.is_file():
        with np.load(cache, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    t0 = time.perf_counter()
    parts: dict[str, list[np.ndarray]] = {"source": [], "target": [], "tokens": [], "op": []}
    chunk = 2000
    for start in range(0, n, chunk):
        prompts = prompt_set("train", min(chunk, n - start), size, seed=config.seed,
                             phrasings=config.phrasings, workers=config.workers, start=start,
                             scenes=config.scenes)
        parts["source"].append(np.stack([p.source for p in prompts]))
        parts["target"].append(np.stack([p.target for p in prompts]))
        parts["tokens"].append(np.array([encode(p.instruction) for p in prompts], np.int64))
        parts["op"].append(np.array([OPERATIONS.index(p.op) for p in prompts], np.int64))
        log(f"drew {start + len(prompts)}/{n} training prompts "
            f"({time.perf_counter() - t0:.0f} s)")
    arrays = {k: np.concatenate(v) for k, v in parts.items()}
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, **cast(dict[str, Any], arrays))
    return arrays


def flow_matching_loss(net: EditorNet, source: torch.Tensor, target: torch.Tensor,
                       tokens: torch.Tensor, generator: torch.Generator,
                       change_weight: float = 0.0) -> torch.Tensor:
    """MSE between the predicted and the true velocity (or clean residual, for a
    residual-predicting net) at a random noise level; ``change_weight`` > 0 weights the
    pixels near the change 1 + change_weight times."""
    x = residual_target(source, target)
    sigma = torch.rand(x.shape[0], generator=generator)
    noise = torch.randn(x.shape, generator=generator)
    s = sigma[:, None, None, None]
    xs = (1 - s) * x + s * noise
    if net.config.prediction == "residual":
        pred, want = net.predict(xs, sigma, source, tokens), x
    else:
        pred, want = net(xs, sigma, source, tokens), noise - x
    if not change_weight:
        return F.mse_loss(pred, want)
    changed = (x.abs().amax(1, keepdim=True) > 4 / 255).float()  # > 4 levels in a channel
    weight = 1 + change_weight * F.max_pool2d(changed, 7, stride=1, padding=3)
    return ((pred - want) ** 2 * weight).sum() / (weight.sum() * 3)


def _lr_factor(step: int, warmup: int, total: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def train_editor(config: EditorTrainConfig, log: Callable[[str], None] = print
                 ) -> dict[str, Any]:
    """Train; writes ``editor.safetensors``, ``config.json``, ``curves.json`` and
    ``curves.html`` into ``config.out``; returns the metrics."""
    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads)
    rng = np.random.default_rng(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    data = training_arrays(config, log)
    val = prompt_set("val", config.val_prompts, config.model.size, seed=config.seed,
                     ops=OPERATIONS, phrasings=config.phrasings, workers=config.workers,
                     scenes=config.scenes)
    log(f"{len(data['source'])} training pairs, {len(val)} validation prompts "
        f"({time.perf_counter() - t0:.0f} s)")
    net = EditorNet(config.model)
    ema = copy.deepcopy(net).requires_grad_(False)
    opt = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: _lr_factor(s, config.warmup, config.steps))
    curves: list[dict[str, Any]] = []
    n = len(data["source"])
    order = rng.permutation(n)
    cursor, smooth = 0, None
    t_train = time.perf_counter()
    stopped_early = False
    step = 0
    for step in range(1, config.steps + 1):
        if cursor + config.batch_size > n:
            order, cursor = rng.permutation(n), 0
        idx = np.sort(order[cursor:cursor + config.batch_size])
        cursor += config.batch_size
        loss = flow_matching_loss(net, to_tensor(data["source"][idx]),
                                  to_tensor(data["target"][idx]),
                                  torch.from_numpy(data["tokens"][idx]), gen,
                                  config.change_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        sched.step()
        with torch.no_grad():
            decay = min(config.ema, (1 + step) / (10 + step))
            for pe, p in zip(ema.parameters(), net.parameters(), strict=True):
                pe.lerp_(p, 1 - decay)
        value = float(loss.detach())
        smooth = value if smooth is None else 0.98 * smooth + 0.02 * value
        if step % 20 == 0 or step == 1:
            curves.append({"step": step, "loss": value, "loss_smooth": smooth,
                           "lr": sched.get_last_lr()[0]})
        over = config.max_minutes and time.perf_counter() - t_train > 60 * config.max_minutes
        if step % config.eval_every == 0 or step == config.steps or over:
            result = evaluate_editor(EmbeddedEditor(ema), val, steps=config.sampling_steps)
            success = {r["op"]: r["gt_success"] for r in result["rows"]}
            curves.append({"step": step, "val": success})
            log(f"step {step}/{config.steps}: loss {smooth:.4f}, val ground-truth success "
                f"{100 * success['all']:.1f}% ({time.perf_counter() - t0:.0f} s) "
                + " ".join(f"{k}={100 * v:.0f}%" for k, v in success.items() if k != "all"))
        if over:
            stopped_early = True
            log(f"stopping at step {step}: the {config.max_minutes} minute limit was reached")
            break
    final = evaluate_editor(EmbeddedEditor(ema), val, steps=config.sampling_steps)
    metrics = {"val": [{k: v for k, v in r.items()} for r in final["rows"]],
               "steps_done": step, "stopped_early": stopped_early,
               "seconds": round(time.perf_counter() - t0, 1),
               "train_pairs": n, "parameters": sum(p.numel() for p in net.parameters())}
    EmbeddedEditor(ema).save(out, {"train": config.to_dict(), "metrics": metrics})
    (out / "curves.json").write_text(json.dumps(curves))
    _plot(curves, out / "curves.html")
    log(format_table(final))
    return metrics


def _plot(curves: list[dict[str, Any]], path: Path) -> None:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("flow-matching loss",
                                                        "val ground-truth success"))
    pts = [c for c in curves if "loss" in c]
    fig.add_trace(go.Scatter(x=[c["step"] for c in pts], y=[c["loss_smooth"] for c in pts],
                             name="loss (smoothed)", mode="lines"), row=1, col=1)
    vals = [c for c in curves if "val" in c]
    for op in [*OPERATIONS, "all"]:
        fig.add_trace(go.Scatter(x=[c["step"] for c in vals], y=[c["val"].get(op) for c in vals],
                                 name=op, mode="lines+markers"), row=1, col=2)
    fig.update_layout(height=400, width=1000)
    fig.write_html(str(path), include_plotlyjs="cdn")
