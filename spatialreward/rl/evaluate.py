"""Evaluate an editor on held-out prompts, GEdit-Bench style: a row per operation.

Each prompt gets one deterministic edit (the ODE sampler, a fixed seed per prompt).
Columns: ground-truth success and score (:mod:`.groundtruth`), and for every reward
model its SC, PQ and overall (0..10) averaged over the edits it judged (failed
judgments are counted, not averaged in).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..synth.language import OPERATIONS
from .config import RewardTerm
from .policy import EditPolicy
from .prompts import EditPrompt
from .rewards import RewardMix

EVAL_SEED = 1234


def evaluate_editor(policy: EditPolicy, prompts: Sequence[EditPrompt], *,
                    steps: int = 10, backends: Sequence[str] = (), judge_size: int = 256,
                    batch: int = 32, seed: int = EVAL_SEED) -> dict[str, Any]:
    """{"rows": [per op, then "all"], "prompts": [per prompt: id, op, gt_success,
    gt_score], "backends": [...], "seconds": ..}."""
    t0 = time.perf_counter()
    images = []
    for start in range(0, len(prompts), batch):
        part = prompts[start:start + batch]
        seeds = [seed + start + k for k in range(len(part))]
        images.append(policy.sample([p.source for p in part], [p.instruction for p in part],
                                    1, seeds, steps=steps, noise_level=0.0).images)
    edits = np.concatenate(images)
    mix = RewardMix([RewardTerm(b) for b in backends], judge_size=judge_size, batch=batch)
    scored = (mix.score(prompts, edits) if backends else None)
    from .groundtruth import ground_truth

    truth = (scored.truth if scored is not None else
             [ground_truth(p.source, p.target, p.footprint, e) for p, e in zip(prompts, edits,
                                                                               strict=True)])
    rows = []
    for op in [*OPERATIONS, "all"]:
        idx = [k for k, p in enumerate(prompts) if op in ("all", p.op)]
        if not idx:
            continue
        row: dict[str, Any] = {
            "op": op, "n": len(idx),
            "gt_success": float(np.mean([truth[k].success for k in idx])),
            "gt_score": float(np.mean([truth[k].score for k in idx])),
        }
        for spec in backends:
            assert scored is not None
            js = [scored.judgments[k][spec] for k in idx]
            ok = [j for j in js if j.ok]
            for key, attr in (("sc", "semantic_consistency"), ("pq", "perceptual_quality"),
                              ("overall", "overall")):
                vals = [getattr(j, attr) for j in ok if getattr(j, attr) is not None]
                row[f"{spec}/{key}"] = float(np.mean(vals)) if vals else None
            row[f"{spec}/failed"] = len(js) - len(ok)
        rows.append(row)
    per_prompt = [{"id": p.id, "op": p.op, "gt_success": bool(t.success),
                   "gt_score": round(float(t.score), 4)} for p, t in zip(prompts, truth,
                                                                        strict=True)]
    return {"rows": rows, "prompts": per_prompt, "backends": list(backends), "n": len(prompts),
            "steps": steps, "seconds": round(time.perf_counter() - t0, 2), "images": edits}


def format_table(result: dict[str, Any]) -> str:
    """The result as a fixed-width table (GT success in %, reward scores on 0..10)."""
    head = f"{'operation':10s} {'n':>4s} {'GT succ':>8s} {'GT score':>8s}"
    for spec in result["backends"]:
        short = spec if len(spec) <= 14 else "..." + spec[-11:]
        head += f" | {short + ' SC':>17s} {'PQ':>5s} {'O':>5s}"
    lines = [head, "-" * len(head)]
    for r in result["rows"]:
        line = (f"{r['op']:10s} {r['n']:4d} {100 * r['gt_success']:7.1f}% "
                f"{r['gt_score']:8.3f}")
        for spec in result["backends"]:
            vals = [r[f"{spec}/{k}"] for k in ("sc", "pq", "overall")]
            line += " | " + f"{_num(vals[0]):>17s} {_num(vals[1]):>5s} {_num(vals[2]):>5s}"
        lines.append(line)
    return "\n".join(lines)


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"
