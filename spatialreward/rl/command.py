"""The RL commands: ``train-editor``, ``rl`` and ``eval-editor``.

``add_parsers(sub)`` adds all three to a subparsers object (``spatialreward.cli`` and
``python -m spatialreward.rl`` both call it). Heavy imports (torch, the backends)
happen inside the commands, so registering them costs the CLI nothing.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from ..bench.command import positive_int
from ..errors import ConfigError

# -- train-editor ---------------------------------------------------------------------------


def cmd_train_editor(args: argparse.Namespace) -> int:
    from .editor_train import EditorTrainConfig, train_editor

    config = EditorTrainConfig.from_file(args.config)
    metrics = train_editor(config, log=lambda line: print(line, flush=True))
    overall = next(r for r in metrics["val"] if r["op"] == "all")
    print(f"val ground-truth success {100 * overall['gt_success']:.1f}%; weights in "
          f"{config.out}/editor.safetensors ({metrics['seconds']} s)")
    return 0


def add_train_editor_parser(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "train-editor",
        help="pretrain the embedded editor on SynthEdit (configs/editor.json)",
        description="Pretrain the embedded flow-matching editor on SynthEdit's correct edits "
        "(keys: spatialreward/rl/editor_train.py EditorTrainConfig). Seeded; prints the "
        "held-out ground-truth success per operation.",
    )
    p.add_argument("--config", required=True, help="training config JSON file")
    p.set_defaults(func=cmd_train_editor)
    return p


# -- rl -------------------------------------------------------------------------------------


def cmd_rl(args: argparse.Namespace) -> int:
    from ..config import StudioConfig
    from .config import RLConfig
    from .runner import run_rl

    config = RLConfig.from_file(args.config)
    overrides: dict[str, Any] = {}
    if args.out:
        overrides["out"] = args.out
    if args.steps:
        overrides["steps"] = args.steps
    if overrides:
        config = RLConfig.from_dict({**config.to_dict(), **overrides})
    db = None if args.no_store else Path(args.db or StudioConfig.from_env().db)
    if args.no_store and not config.out:
        raise ConfigError("--no-store needs an output folder: set `out` in the config or "
                          "pass --out DIR")
    main = os.environ.get("RANK", "0") == "0"  # under torchrun, one process reports
    outcome = run_rl(config, db=db, run_id=args.run_id, resume=args.resume,
                     log=lambda line: print(line, flush=True) if main else None)
    if main:
        print(f"run {outcome}")
    return 0


def add_rl_parser(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "rl",
        help="Flow-GRPO on the editor, rewarded by a judge (configs/rl-mini.json)",
        description="Train the editor with Flow-GRPO (keys: spatialreward/rl/config.py "
        "RLConfig), recorded in the store: status, metrics per step, sample edits with "
        "their judgments. SIGTERM or Ctrl-C stops after the current step with a "
        "checkpoint; --resume continues from it. Runs under torchrun too.",
    )
    p.add_argument("--config", required=True, help="RL config JSON file")
    p.add_argument("--run-id", type=positive_int, default=None,
                   help="record into this existing run (the Studio passes it)")
    p.add_argument("--resume", action="store_true",
                   help="continue from the checkpoint in the run's folder")
    p.add_argument("--db", default=None, help="the store (default: data/studio.db, "
                                              "or STUDIO_DB)")
    p.add_argument("--no-store", action="store_true",
                   help="record nothing in a store (needs `out` in the config or --out)")
    p.add_argument("--out", default=None, help="output folder (overrides the config's)")
    p.add_argument("--steps", type=positive_int, default=None, help="override the step count")
    p.set_defaults(func=cmd_rl)
    return p


# -- eval-editor ----------------------------------------------------------------------------


def cmd_eval_editor(args: argparse.Namespace) -> int:
    import torch

    from ..synth.language import OPERATIONS
    from .config import recorded_scenes
    from .embedded import EmbeddedEditor
    from .evaluate import evaluate_editor, format_table
    from .prompts import prompt_set

    torch.set_num_threads(args.threads)
    folder = _policy_folder(args.policy)
    policy = EmbeddedEditor.load(folder)
    scenes = args.scenes or recorded_scenes(folder)
    prompts = prompt_set(args.split, args.n, policy.image_size, seed=args.seed, ops=OPERATIONS,
                         phrasings=args.phrasings, workers=args.workers, scenes=scenes)
    backends = args.backend if args.backend is not None else ["mini"]
    result = evaluate_editor(policy, prompts, steps=args.steps, backends=backends,
                             judge_size=args.judge_size)
    print(f"{args.policy} on {args.n} {args.split} prompts ({args.phrasings} phrasings, "
          f"{scenes} scenes), "
          f"{args.steps} ODE steps, {result['seconds']} s")
    print(format_table(result))
    if args.json:
        payload = {k: v for k, v in result.items() if k != "images"}
        payload.update({"policy": args.policy, "split": args.split, "seed": args.seed,
                        "phrasings": args.phrasings, "scenes": scenes})
        Path(args.json).write_text(json.dumps(payload, indent=1))
        print(f"wrote {args.json}")
    if args.to_store:
        _groups_to_store(args, policy, prompts, backends)
    return 0


def _groups_to_store(args: argparse.Namespace, policy: Any, prompts: Any,
                     backends: list[str]) -> None:
    """``--to-store``: a group of RL-style samples per prompt, into the store's
    ``rl_samples`` annotation queue."""
    from storage.store import Store

    from ..config import StudioConfig
    from .evaluate import push_groups, sample_groups

    groups = sample_groups(policy, prompts, group_size=args.group_size,
                           noise_level=args.noise_level, steps=args.steps, backends=backends,
                           judge_size=args.judge_size, seed=args.seed)
    db = Path(args.db or StudioConfig.from_env().db)
    with Store.open(db) as store:
        ids = push_groups(store, groups)
    print(f"stored {len(ids)} sample groups of {args.group_size} edits (noise "
          f"{args.noise_level:g}) in {db}: the Annotate tab's RL samples queue")


def _policy_folder(text: str) -> Path:
    """An editor checkpoint, or an RL run folder / its checkpoint holding one."""
    path = Path(text)
    for candidate in (path, path / "editor", path / "checkpoint" / "editor"):
        if (candidate / "editor.safetensors").is_file():
            return candidate
    raise ConfigError(f"no editor checkpoint in {text} (looked for editor.safetensors there, "
                      "in editor/ and in checkpoint/editor/)")


def add_eval_editor_parser(sub: Any) -> argparse.ArgumentParser:
    from .prompts import SCENES  # numpy and the scene code, no torch

    p: argparse.ArgumentParser = sub.add_parser(
        "eval-editor",
        help="GEdit-style table of an editor: ground-truth success, SC/PQ/overall",
        description="Edit held-out SynthEdit prompts (operations taking turns) with the ODE "
        "sampler and print, per operation, the ground-truth success and each reward "
        "model's SC, PQ and overall (0..10).",
    )
    p.add_argument("--policy", required=True,
                   help="editor checkpoint folder, or an RL run folder (uses its checkpoint)")
    p.add_argument("--split", default="test", choices=["train", "val", "test"],
                   help="prompt split (default: test, held out)")
    p.add_argument("--n", type=positive_int, default=120, help="prompts (default 120)")
    p.add_argument("--backend", action="append", default=None, metavar="SPEC",
                   help="reward model(s) to score with (repeat; default: mini)")
    p.add_argument("--steps", type=positive_int, default=10, help="ODE steps (default 10)")
    p.add_argument("--phrasings", default="seen", choices=["seen", "all"],
                   help="'seen' (default) or 'all' (with held-out phrasings)")
    p.add_argument("--scenes", default=None, choices=sorted(SCENES),
                   help="scene distribution of the prompts (default: the one the editor "
                        "was trained on, as its checkpoint records)")
    p.add_argument("--seed", type=int, default=0, help="prompt seed (default 0)")
    p.add_argument("--judge-size", type=positive_int, default=256,
                   help="pixels the edits are upscaled to before judging (default 256)")
    p.add_argument("--threads", type=positive_int, default=2, help="torch threads (default 2)")
    p.add_argument("--workers", type=positive_int, default=1,
                   help="processes drawing the prompts (default 1)")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the table as JSON")
    p.add_argument("--to-store", action="store_true",
                   help="also sample an RL-style group per prompt (--group-size edits at "
                   "--noise-level) and store them, with judgments and ground truth, as "
                   "items of the Annotate tab's RL samples queue")
    p.add_argument("--db", default=None,
                   help="the store for --to-store (default: data/studio.db, or STUDIO_DB)")
    p.add_argument("--group-size", type=positive_int, default=12,
                   help="edits per group with --to-store (default 12)")
    p.add_argument("--noise-level", type=float, default=0.7,
                   help="SDE noise level of the groups with --to-store (default 0.7)")
    p.set_defaults(func=cmd_eval_editor)
    return p


def add_parsers(sub: Any) -> None:
    """Add ``train-editor``, ``rl`` and ``eval-editor``."""
    add_train_editor_parser(sub)
    add_rl_parser(sub)
    add_eval_editor_parser(sub)
