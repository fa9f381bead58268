"""Which trainer settings move the editor? Short RL probes, paired on 600 test prompts.

    python benchmarks/rl_probes.py --out data/runs/probes --minutes 8 \
        --probe "grpo defaults=" \
        --probe "nft lora=method=nft" \
        --probe "nft full=method=nft,finetune=full,lr=1e-4" \
        [--base configs/rl-oracle.json] [--n 600]

Each ``--probe "NAME=key=value,key=value"`` trains the base config (the ground-truth
reward by default: the control, what the trainer can do with a perfect reward) with those
overrides for ``--minutes`` of wall-clock time from the same seed, then evaluates the
result as ``docs/rl.md`` does: ODE samples on ``--n`` test prompts (100 per operation),
the same prompts and noise for every policy, so the changes are paired; prompts gained /
lost against the pretrained editor, with the exact two-sided sign test. A probe whose
``OUT/NAME/eval.json`` exists is not run again. Prints one table and writes
``OUT/probes.json``.
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

import torch  # noqa: E402
from rl_experiment import paired_change  # noqa: E402

from spatialreward.rl.config import RLConfig  # noqa: E402
from spatialreward.rl.embedded import EmbeddedEditor  # noqa: E402
from spatialreward.rl.evaluate import evaluate_editor  # noqa: E402
from spatialreward.rl.prompts import prompt_set  # noqa: E402
from spatialreward.rl.runner import build_trainer  # noqa: E402
from spatialreward.synth.language import OPERATIONS  # noqa: E402


def parse_probe(text: str) -> tuple[str, dict[str, Any]]:
    """``"NAME=k=v,k=v"`` -> (NAME, {k: v}) with v read as JSON where it parses."""
    name, _, rest = text.partition("=")
    overrides: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in rest.split(","))):
        key, _, value = part.partition("=")
        try:
            overrides[key.strip()] = json.loads(value)
        except ValueError:
            overrides[key.strip()] = value.strip()
    return name.strip(), overrides


def evaluate(policy_folder: str, n: int, scenes: str) -> dict[str, Any]:
    policy = EmbeddedEditor.load(policy_folder)
    prompts = prompt_set("test", n, policy.image_size, seed=0, ops=OPERATIONS, scenes=scenes)
    result = evaluate_editor(policy, prompts)
    result.pop("images")
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="folder for the probes' runs and results")
    p.add_argument("--base", default="configs/rl-oracle.json", help="config the probes change")
    p.add_argument("--probe", action="append", required=True, metavar="NAME=k=v,...")
    p.add_argument("--minutes", type=float, default=8.0, help="training budget per probe")
    p.add_argument("--n", type=int, default=600, help="held-out test prompts (600)")
    args = p.parse_args()
    torch.set_num_threads(2)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    base = RLConfig.from_file(args.base)
    before_path = out / f"pretrained-{args.n}.json"
    if not before_path.exists():
        before_path.write_text(json.dumps(evaluate(base.policy, args.n, base.scenes)))
    before = json.loads(before_path.read_text())
    saved = out / "probes.json"
    table: dict[str, Any] = json.loads(saved.read_text()) if saved.exists() else {}
    for name, overrides in map(parse_probe, args.probe):
        folder = out / name.replace(" ", "-")
        if not (folder / "eval.json").exists():
            fields = {**base.to_dict(), "eval_prompts": 0, "max_minutes": args.minutes,
                      "steps": 100_000, **overrides}
            config = RLConfig.from_dict(fields, where=f"probe {name!r}")
            torch.manual_seed(config.seed)
            trainer = build_trainer(config, folder, log=lambda line: None)
            t0 = time.perf_counter()
            trainer.run()
            minutes = (time.perf_counter() - t0) / 60
            steps = [h for h in trainer.history if "reward_mean" in h]
            after = evaluate(str(folder / "checkpoint" / "editor"), args.n, config.scenes)
            after["probe"] = {"overrides": overrides, "steps": trainer.step,
                              "minutes": round(minutes, 2),
                              "s_per_step": round(sum(h["step_seconds"] for h in steps)
                                                  / max(1, len(steps)), 2),
                              "kl_last": steps[-1]["kl"] if steps else None,
                              "grad_norm_mean": (sum(h["grad_norm"] for h in steps)
                                                 / max(1, len(steps)))}
            (folder / "eval.json").write_text(json.dumps(after))
        after = json.loads((folder / "eval.json").read_text())
        change = paired_change(before, after)
        all_before = next(r for r in before["rows"] if r["op"] == "all")["gt_success"]
        all_after = next(r for r in after["rows"] if r["op"] == "all")["gt_success"]
        table[name] = {**after["probe"], "before": all_before, "after": all_after,
                       "gain_points": round(100 * (all_after - all_before), 1),
                       "per_op": {r["op"]: r["gt_success"] for r in after["rows"]},
                       "paired": change}
        saved.write_text(json.dumps(table, indent=1))
        row = table[name]
        print(f"{name:28s} {row['steps']:4d} steps {row['minutes']:5.1f} min  success "
              f"{100 * all_before:.1f} -> {100 * all_after:.1f} ({row['gain_points']:+.1f})  "
              f"{change}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
