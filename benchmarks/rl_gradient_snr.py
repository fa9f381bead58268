"""How much of an RL step's gradient is signal? Per-group policy gradients, measured.

    python benchmarks/rl_gradient_snr.py --groups 32 \
        --setting "grpo defaults=" --setting "fast window 2=sde_window=2" \
        --setting "nft=method=nft" [--base configs/rl-oracle.json]

For each setting (overrides of the base config, the ground truth as the reward by
default), the trainer samples ``--groups`` groups, one random training prompt each with
its own noise (G edits, the config's group size), and computes each group's policy
gradient at the current weights (the trainer's own loss, one update pass, no optimizer
step, so every group is measured at the same weights). With g_i the groups' gradients:

- noise: tr S, the summed variance of a single group's gradient;
- signal: |mu|^2, the squared norm of the expected gradient, estimated without bias as
  |mean g|^2 - tr S / N;
- ``prompts for SNR 1`` = tr S / |mu|^2: how many groups a step must average before its
  gradient's signal equals its noise (the trainer's default step has 4);
- ``cos halves``: the cosine between the mean gradients of two disjoint halves of the
  groups, a check that needs no model of the noise (0: the halves point anywhere).

Prints one table; ``--json`` writes it.
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
from rl_probes import parse_probe  # noqa: E402

from spatialreward.rl.config import RLConfig  # noqa: E402
from spatialreward.rl.runner import build_trainer  # noqa: E402


def group_gradients(config: RLConfig, groups: int, out: Path) -> tuple[np.ndarray, float]:
    """(groups, parameters) gradients, one per single-prompt step, and seconds taken."""
    trainer = build_trainer(config, out, log=lambda line: None)
    trainer.optimizer.step = lambda *a, **k: None  # measure, never move the weights
    params = trainer.policy.trainable_parameters()
    rows = []
    t0 = time.perf_counter()
    for step in range(groups):
        batch = trainer.sample(step)
        adv = trainer.advantages(batch, trainer.reward(batch))
        trainer.update(batch, adv)
        rows.append(torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p))
                               .flatten() for p in params]).double().numpy())
    return np.stack(rows), time.perf_counter() - t0


def snr(g: np.ndarray) -> dict[str, float]:
    n = len(g)
    mean = g.mean(0)
    noise = float(((g - mean) ** 2).sum(1).mean() * n / (n - 1))  # tr S of one group
    signal = float(mean @ mean) - noise / n
    a, b = g[: n // 2].mean(0), g[n // 2:].mean(0)
    cos = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
    return {"groups": n, "grad_norm_group": float(np.linalg.norm(g, axis=1).mean()),
            "noise_trace": noise, "signal_sq": signal,
            "prompts_for_snr_1": noise / signal if signal > 0 else float("inf"),
            "snr_at_4": 4 * signal / noise if signal > 0 else 0.0, "cos_halves": cos}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--base", default="configs/rl-oracle.json")
    p.add_argument("--setting", action="append", required=True, metavar="NAME=k=v,...")
    p.add_argument("--groups", type=int, default=32, help="groups (prompts) per setting")
    p.add_argument("--out", default="/tmp/rl-gradient-snr", help="scratch folder")
    p.add_argument("--json", default=None, help="write the table here")
    args = p.parse_args()
    torch.set_num_threads(2)
    base = RLConfig.from_file(args.base)
    table: dict[str, Any] = {}
    for name, overrides in map(parse_probe, args.setting):
        fields = {**base.to_dict(), "eval_prompts": 0, "prompts_per_step": 1,
                  "updates_per_step": 1, "max_minutes": 0, **overrides}
        config = RLConfig.from_dict(fields, where=f"setting {name!r}")
        torch.manual_seed(config.seed)
        g, seconds = group_gradients(config, args.groups, Path(args.out) / name.replace(" ", "-"))
        row = {**snr(g), "seconds": round(seconds, 1), "overrides": overrides}
        table[name] = row
        print(f"{name:18s} groups {row['groups']:3d}  |g| {row['grad_norm_group']:.2e}  "
              f"signal^2 {row['signal_sq']:+.2e}  noise {row['noise_trace']:.2e}  "
              f"prompts for SNR 1: {row['prompts_for_snr_1']:.0f}  SNR at 4: "
              f"{row['snr_at_4']:.3f}  cos halves {row['cos_halves']:+.3f}  "
              f"({seconds:.0f} s)", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(table, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
