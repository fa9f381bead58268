"""How well does each reward rank the policy's own edits? The signal Flow-GRPO learns from.

    python benchmarks/reward_signal.py [--policy models/editor] [--prompts 48] [--group 12]
        [--backend mini --backend mini:data/runs/mini-global --backend pixel --backend gt]

GRPO only uses a reward through the order it puts on one prompt's group of G edits, so
this samples groups exactly as an RL step does (the SDE sampler at the given noise level,
held-out test prompts, the operations taking turns) and measures, per reward:

- **pair accuracy**: over every within-group pair where one edit is a ground-truth
  success and the other is not, how often the reward ranks the success higher (ties count
  half; 0.5 is a coin flip);
- **group Spearman**: the rank correlation of reward and ground-truth score inside a group,
  averaged over groups where both vary;
- **AUC** of the reward for ground-truth success over all edits (prompts mixed).

Prints a table (and, with ``--json``, writes it). All edits are judged by every reward,
so the rows compare the rewards on the same edits.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from scipy.stats import spearmanr  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402

from spatialreward.rl.config import RewardTerm, recorded_scenes  # noqa: E402
from spatialreward.rl.embedded import EmbeddedEditor  # noqa: E402
from spatialreward.rl.prompts import prompt_set  # noqa: E402
from spatialreward.rl.rewards import RewardMix  # noqa: E402
from spatialreward.synth.language import OPERATIONS  # noqa: E402

DEFAULT_BACKENDS = ("mini", "mini:data/runs/mini-global", "pixel", "gt")


def pair_accuracy(reward: np.ndarray, success: np.ndarray) -> tuple[float, int]:
    """(accuracy, pairs) over pairs (success, failure) of one group; ties count half."""
    wins, pairs = 0.0, 0
    for i, j in itertools.product(np.flatnonzero(success), np.flatnonzero(~success)):
        pairs += 1
        wins += 1.0 if reward[i] > reward[j] else 0.5 if reward[i] == reward[j] else 0.0
    return (wins / pairs if pairs else float("nan")), pairs


def signal(reward: np.ndarray, score: np.ndarray, success: np.ndarray, group: int
           ) -> dict[str, float]:
    """The three figures for N = groups x ``group`` edits (NaN rewards are left out)."""
    wins, pairs, rhos = 0.0, 0, []
    for g in range(0, len(reward), group):
        r, s, ok = reward[g:g + group], score[g:g + group], success[g:g + group]
        keep = ~np.isnan(r)
        r, s, ok = r[keep], s[keep], ok[keep]
        acc, n = pair_accuracy(r, ok)
        if n:
            wins += acc * n
            pairs += n
        if len(r) > 2 and np.ptp(r) > 0 and np.ptp(s) > 0:
            rhos.append(float(spearmanr(r, s).statistic))
    keep = ~np.isnan(reward)
    auc = (float(roc_auc_score(success[keep], reward[keep]))
           if 0 < success[keep].sum() < keep.sum() else float("nan"))
    return {"pair_accuracy": wins / pairs if pairs else float("nan"), "pairs": pairs,
            "group_spearman": float(np.mean(rhos)) if rhos else float("nan"),
            "groups_ranked": len(rhos), "auc": auc, "judged": int(keep.sum())}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--policy", default="models/editor", help="editor checkpoint folder")
    parser.add_argument("--backend", action="append", default=None, metavar="SPEC",
                        help=f"reward to measure (repeat; default {', '.join(DEFAULT_BACKENDS)})")
    parser.add_argument("--prompts", type=int, default=48, help="held-out prompts (default 48)")
    parser.add_argument("--group", type=int, default=12, help="edits per prompt G (default 12)")
    parser.add_argument("--noise-level", type=float, default=0.7,
                        help="SDE noise level, as in the RL configs (default 0.7)")
    parser.add_argument("--sampling-steps", type=int, default=10, help="sampler steps (10)")
    parser.add_argument("--judge-size", type=int, default=256, help="judging resolution (256)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--seed", type=int, default=0, help="prompt and noise seed (0)")
    parser.add_argument("--json", default=None, metavar="FILE", help="also write the table")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    backends = args.backend or list(DEFAULT_BACKENDS)
    policy = EmbeddedEditor.load(args.policy)
    scenes = recorded_scenes(args.policy)
    prompts = prompt_set("test", args.prompts, policy.image_size, seed=args.seed,
                         ops=OPERATIONS, scenes=scenes)
    t0 = time.perf_counter()
    images, rows = [], []
    for start in range(0, len(prompts), 4):  # 4 prompts x G rollouts, as an RL step
        part = prompts[start:start + 4]
        seeds = [args.seed * 1_000_003 + start * args.group + k
                 for k in range(len(part) * args.group)]
        rollout = policy.sample([p.source for p in part], [p.instruction for p in part],
                                args.group, seeds, steps=args.sampling_steps,
                                noise_level=args.noise_level)
        images.append(rollout.images)
        rows += [p for p in part for _ in range(args.group)]
    edits = np.concatenate(images)
    sample_s = time.perf_counter() - t0
    results = {}
    for spec in backends:
        t1 = time.perf_counter()
        scored = RewardMix([RewardTerm(spec)], judge_size=args.judge_size).score(rows, edits)
        results[spec] = {**signal(scored.reward, scored.gt_score, scored.gt_success.astype(bool),
                                  args.group), "seconds": round(time.perf_counter() - t1, 1)}
        success = scored.gt_success
    print(f"{args.policy} ({scenes} scenes): {args.prompts} test prompts x G={args.group} = "
          f"{len(edits)} edits, noise level {args.noise_level}, sampled in {sample_s:.0f} s; "
          f"ground-truth success {100 * success.mean():.1f}%")
    print(f"{'reward':32s} {'pair acc':>9s} {'pairs':>6s} {'group rho':>10s} {'AUC':>6s} "
          f"{'seconds':>8s}")
    for spec, r in results.items():
        print(f"{spec:32s} {r['pair_accuracy']:9.3f} {r['pairs']:6d} {r['group_spearman']:10.3f} "
              f"{r['auc']:6.3f} {r['seconds']:8.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"policy": args.policy, "scenes": scenes, "prompts": args.prompts,
             "group": args.group, "noise_level": args.noise_level,
             "gt_success": float(success.mean()), "rewards": results}, indent=1))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
