"""Evaluate an editor on held-out prompts, GEdit-Bench style: a row per operation.

Each prompt gets one deterministic edit (the ODE sampler, a fixed seed per prompt).
Columns: ground-truth success and score (:mod:`.groundtruth`), and for every reward
model its SC, PQ and overall (0..10) averaged over the edits it judged (failed
judgments are counted, not averaged in).

:func:`sample_groups` draws RL-style groups instead (G noisy SDE edits per prompt, as
the trainer samples them) and :func:`push_groups` puts them into the store as on-policy
annotation items (``eval-editor --to-store``, :mod:`storage.samples`).
"""

from __future__ import annotations

import json
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


def sample_groups(policy: EditPolicy, prompts: Sequence[EditPrompt], *, group_size: int = 12,
                  noise_level: float = 0.7, steps: int = 10, backends: Sequence[str] = (),
                  judge_size: int = 256, batch: int = 32, seed: int = EVAL_SEED
                  ) -> list[Any]:
    """One group of ``group_size`` edits per prompt, sampled as the RL trainer samples
    (SDE at ``noise_level``; one seed per row, so a group is the same however the prompts
    are batched), with each edit's ground truth and judgments by ``backends``: a list of
    :class:`~spatialreward.rl.trainer.SampleGroup` (``step`` -1: not a training step)."""
    from .groundtruth import ground_truth
    from .trainer import SampleGroup, row_seed

    mix = RewardMix([RewardTerm(b) for b in backends], judge_size=judge_size, batch=batch)
    per = max(1, batch // group_size)  # prompts per sampler call
    groups = []
    for start in range(0, len(prompts), per):
        part = list(prompts[start:start + per])
        seeds = [row_seed(seed, 0, start * group_size + k)
                 for k in range(len(part) * group_size)]
        images = policy.sample([p.source for p in part], [p.instruction for p in part],
                               group_size, seeds, steps=steps, noise_level=noise_level).images
        rows = [part[k // group_size] for k in range(len(images))]  # (P * G,) row -> prompt
        if backends:
            scored = mix.score(rows, images)
            truth, judgments = scored.truth, scored.judgments
            rewards = [float(r) for r in scored.reward]
        else:
            truth = [ground_truth(p.source, p.target, p.footprint, e)
                     for p, e in zip(rows, images, strict=True)]
            judgments, rewards = [{} for _ in rows], [float("nan")] * len(rows)
        for k, prompt in enumerate(part):
            g = slice(k * group_size, (k + 1) * group_size)
            groups.append(SampleGroup(-1, prompt, list(images[g]), rewards[g], truth[g],
                                      judgments[g]))
    return groups


def push_groups(store: Any, groups: Sequence[Any], run_id: int | None = None) -> list[int]:
    """Store each :class:`~spatialreward.rl.trainer.SampleGroup` as an on-policy item
    (:func:`storage.samples.add_sample_group`): the source, the G edits, the instruction,
    every backend's judgment and the ground truth; returns the item ids."""
    from storage.samples import add_sample_group

    ids = []
    for group in groups:
        p = group.prompt
        meta = {"id": p.id, "op": p.op,
                "task": json.loads(json.dumps(p.task, default=str))}  # numpy -> JSON
        ids.append(add_sample_group(
            store, source=p.source, edits=group.images, instruction=p.instruction,
            judgments=[{spec: j.to_dict() for spec, j in js.items()}
                       for js in group.judgments],
            truth=[{"score": float(t.score), "success": bool(t.success)} for t in group.truth],
            run_id=run_id, step=None if group.step < 0 else group.step, prompt_meta=meta))
    return ids
