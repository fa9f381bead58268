"""Votes -> reward: does fine-tuning Mini on votes about the editor's own edits help?

    python benchmarks/learning_loop.py --out data/experiments/learning \
        [--groups 200] [--votes 2000] [--curve 250,500,1000,2000] [--error 0.1]

The experiment of docs/learning.md, end to end, on a fresh store in ``--out``:

1. the shipped editor samples RL-style groups (noise level 0.7, G = 12) on *training*
   prompts; each group goes into the store as an ``rl-samples`` item, with Mini's
   judgments and the exact ground truth;
2. a simulated annotator (recorded as simulated) with ``--error`` flipped votes votes on
   up to ``--votes`` pairs of them from the ground truth;
3. Mini is fine-tuned from those votes, once per vote budget in ``--curve`` (the first
   N votes), each from the shipped checkpoint;
4. each reward (the shipped Mini, each fine-tune) is measured on groups sampled on
   held-out *test* prompts never voted on (``benchmarks/reward_signal.py``'s pair accuracy
   and within-group Spearman), on the fine-tune's own vote hold-out, and on SynthEdit
   test and hard (``--synthedit DIR``, the splits of ``benchmarks/mini_quality.py``).

Prints one table and writes ``OUT/learning.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for folder in (ROOT, ROOT / "benchmarks"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from spatialreward.rl.config import RewardTerm, recorded_scenes  # noqa: E402
from spatialreward.rl.embedded import EmbeddedEditor  # noqa: E402
from spatialreward.rl.prompts import prompt_set  # noqa: E402
from spatialreward.rl.rewards import RewardMix  # noqa: E402
from spatialreward.synth.language import OPERATIONS  # noqa: E402

POLICY = "models/editor"


def sample_groups(policy: EmbeddedEditor, split: str, n: int, group: int, noise: float,
                  seed: int) -> tuple[list[Any], np.ndarray]:
    """``n`` prompts x ``group`` edits, sampled as an RL step samples them."""
    prompts = prompt_set(split, n, policy.image_size, seed=seed, ops=OPERATIONS,
                         scenes=recorded_scenes(POLICY))
    images, rows = [], []
    for start in range(0, len(prompts), 4):
        part = prompts[start:start + 4]
        seeds = [seed * 1_000_003 + start * group + k for k in range(len(part) * group)]
        rollout = policy.sample([p.source for p in part], [p.instruction for p in part],
                                group, seeds, steps=10, noise_level=noise)
        images.append(rollout.images)
        rows += [p for p in part for _ in range(group)]
    return rows, np.concatenate(images)


def push_groups(store: Any, rows: list[Any], edits: np.ndarray, group: int) -> int:
    """Every group into the store as one item: source, G edits, Mini's judgments, truth."""
    from storage.samples import add_sample_group

    scored = RewardMix([RewardTerm("mini")], judge_size=256).score(rows, edits)
    for g in range(0, len(rows), group):
        p = rows[g]
        add_sample_group(
            store, source=p.source, edits=list(edits[g:g + group]),
            instruction=p.instruction,
            judgments=[scored.judgments[k]["mini"].to_dict() for k in range(g, g + group)],
            truth=[{"score": float(t.score), "success": bool(t.success)}
                   for t in scored.truth[g:g + group]],
            origin="rl-samples", prompt_meta={"prompt": p.id, "op": p.op, "split": "train"})
    return len(rows) // group


def reward_signal(spec: str, rows: list[Any], edits: np.ndarray, group: int) -> dict:
    from reward_signal import signal

    scored = RewardMix([RewardTerm(spec)], judge_size=256).score(rows, edits)
    return signal(scored.reward, scored.gt_score, scored.gt_success.astype(bool), group)


def synthedit_accuracy(spec: str, folder: Path) -> dict[str, float]:
    from mini_quality import ensure_split

    from spatialreward.bench.runner import run_bench
    from spatialreward.config import StudioConfig
    from spatialreward.service import Services

    services = Services(StudioConfig(backends=(spec,), db=str(folder / "bench.db")))
    out = {}
    for split, n in (("test", 1000), ("hard", 500)):
        path = ensure_split(folder / split, split, n)
        out[split] = run_bench(path, services, spec, progress=False)["accuracy"]
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="fresh folder for the store and results")
    p.add_argument("--groups", type=int, default=200, help="training prompts sampled (200)")
    p.add_argument("--test-prompts", type=int, default=48, help="held-out prompts (48)")
    p.add_argument("--group", type=int, default=12, help="edits per prompt G (12)")
    p.add_argument("--noise-level", type=float, default=0.7)
    p.add_argument("--votes", type=int, default=2000, help="simulated pair votes (2000)")
    p.add_argument("--error", type=float, default=0.1, help="simulated error rate (0.1)")
    p.add_argument("--curve", default="250,500,1000,2000", help="vote budgets to fine-tune on")
    p.add_argument("--steps", type=int, default=None, help="fine-tune steps (its default)")
    p.add_argument("--synthedit", default="data/eval",
                   help="SynthEdit eval splits folder ('none': skip the regression check)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.set_num_threads(2)
    from spatialreward.mini.finetune import FinetuneConfig, finetune
    from storage.simulated import simulate_votes
    from storage.store import Store

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    db = out / "studio.db"
    if db.exists():
        raise SystemExit(f"{db} exists: give a fresh --out folder")
    store = Store.open(db)
    policy = EmbeddedEditor.load(POLICY)
    t0 = time.perf_counter()
    rows, edits = sample_groups(policy, "train", args.groups, args.group, args.noise_level,
                                args.seed)
    groups = push_groups(store, rows, edits, args.group)
    print(f"{groups} groups of {args.group} in the store ({time.perf_counter() - t0:.0f} s)",
          flush=True)
    test_rows, test_edits = sample_groups(policy, "test", args.test_prompts, args.group,
                                          args.noise_level, args.seed + 1)
    results: dict[str, Any] = {"config": vars(args), "votes": {}, "runs": {}}
    specs = {"mini (shipped)": "mini"}
    budgets = sorted(int(x) for x in args.curve.split(",") if x.strip())
    cast = 0
    for budget in budgets:  # the votes grow; each fine-tune starts from the shipped Mini
        counts = simulate_votes(store, annotator=f"sim-{round(100 * args.error)}",
                                error=args.error, queue="rl_samples", n=budget - cast,
                                seed=args.seed + budget)
        cast += int(counts["votes"])
        results["votes"][budget] = counts
        t1 = time.perf_counter()
        fields: dict[str, Any] = {"db": str(db), "kinds": ("simulated",),
                                  "out": str(out / f"mini-votes-{budget}"), "seed": args.seed}
        if args.steps:
            fields["steps"] = args.steps
        result = finetune(FinetuneConfig(**fields))
        result["seconds"] = round(time.perf_counter() - t1, 1)
        results["runs"][budget] = result
        specs[f"mini + {budget} votes"] = f"mini:{out / f'mini-votes-{budget}'}"
        print(f"fine-tuned on {budget} votes in {result['seconds']} s: hold-out "
              f"{result.get('holdout', {})}", flush=True)
    table = {}
    last = list(specs)[-1]
    for label, spec in specs.items():
        table[label] = reward_signal(spec, test_rows, test_edits, args.group)
        # the SynthEdit regression check: the shipped model and the last fine-tune only
        if args.synthedit != "none" and label in ("mini (shipped)", last):
            table[label]["synthedit"] = synthedit_accuracy(spec, Path(args.synthedit))
        r = table[label]
        synth = r.get("synthedit")
        print(f"{label:24s} pair acc {r['pair_accuracy']:.3f}  group rho "
              f"{r['group_spearman']:.3f}"
              + (f"  SynthEdit test {synth['test']:.3f} hard {synth['hard']:.3f}"
                 if synth else ""), flush=True)
    results["table"] = table
    (out / "learning.json").write_text(json.dumps(results, indent=1, default=str))
    print(f"wrote {out / 'learning.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
