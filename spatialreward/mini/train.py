"""Train SpatialReward-Mini on SynthEdit: ``python -m spatialreward train-reward --config CFG``.

Losses per batch of whole items (all candidates of an item together):

- score regression: sc and pq against the rubric targets (MSE on the 0..1 scale);
- ranking: for every pair of candidates of an item with different target overall, a
  logistic loss on the difference of the predicted overall scores (the judge's job);
- region facts: colour and shape before and after, for proposals that overlap a true
  change (cross-entropy), and whether the proposal is the requested change (BCE).

Everything is seeded; the same config on the same machine gives the same weights.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from ..configfile import load_config
from ..errors import ConfigError
from .data import IGNORE, Arrays, build_arrays
from .features import Tokenizer
from .model import SLOTS, MiniConfig, MiniRewardModel


@dataclass(frozen=True)
class TrainConfig:
    """One training run (a JSON file with these keys; paths relative to the working dir)."""

    train_data: str = field(metadata={"help": "SynthEdit pairs.jsonl (train split)"})
    val_data: str = field(metadata={"help": "SynthEdit pairs.jsonl (val split)"})
    out: str = field(metadata={"help": "output folder for weights, config, curves"})
    extra_train_data: list[str] = field(default_factory=list, metadata={
        "help": "more pairs.jsonl files to train on (read with train_data's vocabulary)"})
    epochs: int = field(default=8, metadata={"help": "passes over the training items"})
    batch_items: int = field(default=24, metadata={"help": "items per batch (all candidates)"})
    lr: float = field(default=2e-3, metadata={"help": "peak AdamW learning rate"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay"})
    seed: int = field(default=0, metadata={"help": "seed for init and batch order"})
    threads: int = field(default=2, metadata={"help": "torch CPU threads"})
    use_regions: bool = field(default=True, metadata={"help": "False: global-pool ablation"})
    place_match: bool = field(default=False, metadata={"help": "see MiniConfig.place_match"})
    region_counts: bool = field(default=False, metadata={
        "help": "see MiniConfig.region_counts"})
    rank_weight: float = field(default=1.0, metadata={"help": "weight of the ranking loss"})
    fact_weight: float = field(default=0.3, metadata={"help": "weight of the region losses"})
    limit: int | None = field(default=None, metadata={"help": "use only the first N items"})

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_items < 1 or self.lr <= 0:
            raise ConfigError("epochs, batch_items and lr must be positive")

    @classmethod
    def from_file(cls, path: str | Path, **overrides: Any) -> TrainConfig:
        """The run in the JSON file ``path``, ``overrides`` put over it (:func:`load_config`)."""
        return load_config(cls, path, what="training config", overrides=overrides)


CACHE_FORMAT = 2  # bump when Arrays gains or changes a field, so old caches are rebuilt


def cached_arrays(dataset: Path, tok: Tokenizer | None, limit: int | None
                  ) -> tuple[Arrays, Tokenizer]:
    """Prepared arrays, cached beside the dataset (preparing runs pixel evidence on
    every candidate, the slowest part of a run); the cache is rebuilt when the dataset,
    the limit or the vocabulary changes."""
    vocab_tag = ("own" if tok is None
                 else hashlib.sha1("\n".join(tok.vocab).encode()).hexdigest()[:8])
    tag = f"v{CACHE_FORMAT}-{limit or 'all'}-{vocab_tag}"
    cache = dataset.with_name(f"{dataset.stem}.mini-{tag}.npz")
    vocab = cache.with_suffix(".vocab.json")
    if cache.exists() and cache.stat().st_mtime > dataset.stat().st_mtime and vocab.exists():
        return Arrays.load(cache), Tokenizer.load(vocab)
    arrays, tok = build_arrays(dataset, tokenizer=tok, limit=limit)
    arrays.save(cache)
    tok.save(vocab)
    return arrays, tok


def tensors(a: Arrays, idx: np.ndarray) -> dict[str, torch.Tensor]:
    """Model inputs and targets for the examples ``idx``."""
    f = torch.float32
    return {
        "source": torch.from_numpy(a.source[idx]).to(f) / 255.0,
        "edited": torch.from_numpy(a.edited[idx]).to(f) / 255.0,
        "heat": torch.from_numpy(a.heat[idx]).to(f) / 255.0,
        "boxes": torch.from_numpy(a.boxes[idx]),
        "valid": torch.from_numpy(a.valid[idx]),
        "stats": torch.from_numpy(a.stats[idx]),
        "tokens": torch.from_numpy(a.tokens[idx]),
        "sc": torch.from_numpy(a.sc[idx]), "pq": torch.from_numpy(a.pq[idx]),
        "overall": torch.from_numpy(a.overall[idx]),
        "facts": torch.from_numpy(a.facts[idx]), "match": torch.from_numpy(a.match[idx]),
        "item": torch.from_numpy(a.item[idx]),
        "slots": torch.from_numpy(a.slots[idx]),
    }


INPUTS = ("source", "edited", "heat", "boxes", "valid", "stats", "tokens")


def overall_torch(sc: torch.Tensor, pq: torch.Tensor) -> torch.Tensor:
    """The weighted geometric mean of :mod:`spatialreward.scoring`, differentiable."""
    s = ((0.6 * sc[:, 0] + 0.4 * sc[:, 1]) / 2.5).clamp(1e-3, 10)
    p = ((0.5 * pq[:, 0] + 0.5 * pq[:, 1]) / 2.5).clamp(1e-3, 10)
    return s**0.8 * p**0.2


def losses(out: dict[str, Any], batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    reg = F.mse_loss(out["sc"] / 25, batch["sc"] / 25) + F.mse_loss(out["pq"] / 25,
                                                                   batch["pq"] / 25)
    pred = overall_torch(out["sc"], out["pq"])
    same = batch["item"][:, None] == batch["item"][None, :]
    better = batch["overall"][:, None] > batch["overall"][None, :] + 1e-6
    pairs = same & better  # (i, j): i should score above j
    rank = (F.softplus(-(pred[:, None] - pred[None, :]))[pairs].mean() if pairs.any()
            else pred.sum() * 0)
    # The global ablation has one "region" (the whole image): it learns the facts of the
    # largest change, the first proposal.
    r = out["match"].shape[1]
    facts = batch["facts"][:, :r]
    fact = sum(
        F.cross_entropy(out[name].reshape(-1, out[name].shape[-1]), facts[..., k].reshape(-1),
                        ignore_index=IGNORE)
        for k, name in enumerate(("before_color", "after_color", "before_shape", "after_shape"))
        if (facts[..., k] != IGNORE).any()
    )
    m = batch["match"][:, :r]
    known = m != IGNORE
    match = (F.binary_cross_entropy_with_logits(out["match"][known], m[known])
             if known.any() else pred.sum() * 0)
    # Reading the instruction: one cross-entropy per slot.
    parts = out["slots"].split(list(SLOTS.values()), -1)
    slots = torch.stack([F.cross_entropy(p, batch["slots"][:, k])
                         for k, p in enumerate(parts)]).sum()
    return {"regression": reg, "rank": rank, "facts": torch.as_tensor(fact), "match": match,
            "slots": slots}


@torch.no_grad()
def evaluate(model: MiniRewardModel, a: Arrays, batch: int = 128) -> dict[str, Any]:
    """Pairwise accuracy (ties wrong) of the predicted overall, per flaw too."""
    model.eval()
    preds = []
    for start in range(0, len(a), batch):
        idx = np.arange(start, min(len(a), start + batch))
        b = tensors(a, idx)
        out = model(*(b[k] for k in INPUTS))
        preds.append(overall_torch(out["sc"], out["pq"]).numpy())
    pred = np.concatenate(preds)
    correct, total = 0, 0
    per_flaw: dict[str, list[int]] = {}
    for item in np.unique(a.item):
        idx = np.flatnonzero(a.item == item)
        for i in idx:
            for j in idx:
                if a.overall[i] > a.overall[j] + 1e-6:
                    ok = int(pred[i] > pred[j])
                    correct += ok
                    total += 1
                    per_flaw.setdefault(str(a.flaw[j]), []).append(ok)
    model.train()
    return {"accuracy": correct / max(1, total), "pairs": total,
            "by_flaw": {k: float(np.mean(v)) for k, v in sorted(per_flaw.items())}}


def train(config: TrainConfig, log: Any = print) -> dict[str, Any]:
    """Run training; writes ``model.safetensors``, ``config.json``, ``metrics.json``,
    ``curves.json`` and ``curves.html`` into ``config.out``."""
    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads)
    rng = np.random.default_rng(config.seed)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    train_a, tok = cached_arrays(Path(config.train_data), None, config.limit)
    if config.extra_train_data:
        train_a = Arrays.concat([train_a] + [cached_arrays(Path(p), tok, config.limit)[0]
                                             for p in config.extra_train_data])
    val_a, _ = cached_arrays(Path(config.val_data), tok, None)
    log(f"prepared {len(train_a)} train / {len(val_a)} val examples in "
        f"{time.perf_counter() - t0:.0f} s")
    model_cfg = MiniConfig(vocab_size=len(tok.vocab), use_regions=config.use_regions,
                           place_match=config.place_match, region_counts=config.region_counts)
    model = MiniRewardModel(model_cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    items = np.unique(train_a.item)
    by_item = {int(i): np.flatnonzero(train_a.item == i) for i in items}
    steps = config.epochs * int(np.ceil(len(items) / config.batch_items))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, config.lr, total_steps=steps,
                                                pct_start=0.1)
    curves: list[dict[str, float]] = []
    step = 0
    for epoch in range(config.epochs):
        order = rng.permutation(items)
        for start in range(0, len(order), config.batch_items):
            idx = np.concatenate([by_item[int(i)] for i in order[start:start + config.batch_items]])
            batch = tensors(train_a, idx)
            out_ = model(*(batch[k] for k in INPUTS))
            parts = losses(out_, batch)
            loss = (parts["regression"] + config.rank_weight * parts["rank"]
                    + config.fact_weight * (parts["facts"] + parts["match"] + parts["slots"]))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if step % 20 == 0:
                curves.append({"step": step, "epoch": epoch, "loss": loss.item(),
                               **{k: v.item() for k, v in parts.items()}})
        val = evaluate(model, val_a)
        curves.append({"step": step, "epoch": epoch, "val_accuracy": val["accuracy"]})
        log(f"epoch {epoch + 1}/{config.epochs}: loss {loss.item():.4f} "
            f"val pairwise accuracy {val['accuracy']:.3f} ({time.perf_counter() - t0:.0f} s) "
            + " ".join(f"{k}={v:.2f}" for k, v in val["by_flaw"].items()))
    metrics = {"val": evaluate(model, val_a), "seconds": round(time.perf_counter() - t0, 1),
               "train_examples": len(train_a), "parameters": sum(p.numel()
                                                                  for p in model.parameters())}
    save(model, tok, out, {"train": asdict(config), "metrics": metrics})
    (out / "curves.json").write_text(json.dumps(curves))
    _plot(curves, out / "curves.html")
    return metrics


def save(model: MiniRewardModel, tok: Tokenizer, out: Path, extra: dict[str, Any]) -> None:
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / "model.safetensors"))
    (out / "config.json").write_text(json.dumps(
        {"model": model.config.to_dict(), "vocab": tok.vocab, **extra}, indent=1))


def _plot(curves: list[dict[str, float]], path: Path) -> None:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("training loss", "val pairwise accuracy"))
    train_pts = [c for c in curves if "loss" in c]
    val_pts = [c for c in curves if "val_accuracy" in c]
    for key in ("loss", "regression", "rank", "facts", "match", "slots"):
        fig.add_trace(go.Scatter(x=[c["step"] for c in train_pts], y=[c[key] for c in train_pts],
                                 name=key, mode="lines"), row=1, col=1)
    fig.add_trace(go.Scatter(x=[c["step"] for c in val_pts], y=[c["val_accuracy"] for c in val_pts],
                             name="val accuracy", mode="lines+markers"), row=1, col=2)
    fig.update_layout(height=400, width=1000)
    fig.write_html(str(path), include_plotlyjs="cdn")
