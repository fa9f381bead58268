"""Seconds per Flow-GRPO step, split into sampling, reward and update; rollouts per second.

    python benchmarks/rl_step.py [--config configs/rl-mini.json] [--steps 3] [--threads 2]
    python benchmarks/rl_step.py --defaults          # RLConfig's own defaults, mini reward
    python benchmarks/rl_step.py --tiny              # a smoke check in seconds

Times ``--steps`` full RL steps (after one warm-up step) of the trainer at the config's
settings: sampling (G edits per prompt along the SDE sampler), reward (the config's
reward mix on every edit, plus ground truth), update (log-probs, reference pass, loss,
backward and AdamW for every minibatch). When the config's policy checkpoint is missing,
an untrained editor of the default architecture stands in (the timings are the same;
say so when you report them). Prints the median per part, rollouts/s and peak RSS.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from spatialreward.rl.config import RLConfig  # noqa: E402
from spatialreward.rl.editor import EditorConfig, EditorNet  # noqa: E402
from spatialreward.rl.embedded import EmbeddedEditor  # noqa: E402
from spatialreward.rl.runner import build_trainer  # noqa: E402
from spatialreward.rl.tiny import save_tiny_editor, tiny_rl_config  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "rl-mini.json"),
                        help="RL config to time (default configs/rl-mini.json)")
    parser.add_argument("--defaults", action="store_true",
                        help="time RLConfig's defaults instead of a config file")
    parser.add_argument("--tiny", action="store_true", help="the tiny preset (smoke check)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps (default 3)")
    parser.add_argument("--threads", type=int, default=None, help="override torch threads")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="rl-step-"))
    stand_in = False
    if args.tiny:
        config = tiny_rl_config(save_tiny_editor(tmp / "editor"), eval_prompts=0)
    else:
        config = RLConfig() if args.defaults else RLConfig.from_file(args.config)
        if not (ROOT / config.policy / "editor.safetensors").is_file() and not (
                Path(config.policy) / "editor.safetensors").is_file():
            torch.manual_seed(0)
            EmbeddedEditor(EditorNet(EditorConfig())).save(tmp / "editor")
            config = RLConfig.from_dict({**config.to_dict(), "policy": str(tmp / "editor")})
            stand_in = True
    overrides = {"eval_prompts": 0, "out": str(tmp / "run")}
    if args.threads:
        overrides["threads"] = args.threads
    config = RLConfig.from_dict({**config.to_dict(), **overrides})
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    trainer = build_trainer(config, tmp / "run", log=lambda line: None)
    rollouts = config.prompts_per_step * config.group_size
    print(f"policy {config.policy}{' (untrained stand-in: no checkpoint yet)' if stand_in else ''}"
          f"; rewards {', '.join(f'{t.backend}={t.weight:g}' for t in config.rewards)}")
    print(f"{config.prompts_per_step} prompts x G={config.group_size} = {rollouts} rollouts, "
          f"{config.sampling_steps} sampler steps, train on {config.train_timesteps()} steps "
          f"per rollout, {config.updates_per_step} updates/step, finetune {config.finetune}, "
          f"torch threads {torch.get_num_threads()}")
    trainer.train_step()  # warm-up
    parts: dict[str, list[float]] = {"sample": [], "reward": [], "update": [], "total": []}
    for _ in range(args.steps):
        t0 = time.perf_counter()
        m = trainer.train_step()
        parts["sample"].append(m["sample_seconds"])
        parts["reward"].append(m["reward_seconds"])
        parts["update"].append(m["update_seconds"])
        parts["total"].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in parts.items()}
    for key in ("sample", "reward", "update", "total"):
        share = 100 * med[key] / med["total"]
        print(f"  {key:7s} {med[key]:7.2f} s/step  ({share:5.1f}%)")
    print(f"  rollouts/s {rollouts / med['total']:.2f}; "
          f"20 minutes = {int(1200 / med['total'])} steps")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  peak RSS {peak:.0f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
