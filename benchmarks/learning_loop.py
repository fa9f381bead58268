"""Votes -> reward: does fine-tuning Mini on votes about the editor's own edits help?

    python benchmarks/learning_loop.py --out data/experiments/learning \
        [--groups 200] [--test-prompts 600] [--measure-prompts N] [--curve 250,500,1000,2000] \
        [--error 0.1] [--tie-margin 0] \
        [--tune head|all] [--lr 2e-3] [--steps 300] [--replay 0.3] [--name mini-votes] \
        [--synthedit DIR|none]

The experiment of docs/learning.md, end to end, in ``--out``. Every stage is kept there
and reused by a later call with the same folder, so fine-tune variants (``--name`` with
other ``--tune`` / ``--lr`` / ``--replay``) are compared on the same votes and edits:

1. ``studio.db``: the shipped editor samples RL-style groups (noise level 0.7, G = 12) on
   ``--groups`` *training* prompts (:func:`spatialreward.rl.evaluate.sample_groups`);
   each group goes into the store as an ``rl-samples`` item with Mini's judgments and
   the exact ground truth (:func:`~spatialreward.rl.evaluate.push_groups`);
2. ``test-P.npz``: groups sampled the same way on ``--test-prompts`` held-out *test*
   prompts, never voted on;
3. a simulated annotator (recorded as simulated) with ``--error`` flipped votes votes on
   random pairs of the training groups from the ground truth (a tie when the truths
   differ by less than ``--tie-margin``; one annotator per error rate and margin, and each
   fine-tune learns from its own annotator only), up to each budget of
   ``--curve`` in turn; after each, Mini is fine-tuned from the shipped checkpoint on all
   the votes so far (``NAME-B/``; a budget whose fine-tune is there is skipped);
4. each reward (the shipped Mini, each fine-tune of this call) orders the test groups
   (``benchmarks/reward_signal.py``'s pair accuracy, within-group Spearman and AUC) and,
   with ``--synthedit DIR``, is benched on SynthEdit test and hard (the splits of
   ``benchmarks/mini_quality.py``; the shipped model and the largest budget only).

Prints one table and writes ``OUT/learning.json`` (results of earlier calls are kept).
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
from spatialreward.rl.evaluate import push_groups, sample_groups  # noqa: E402
from spatialreward.rl.groundtruth import ground_truth  # noqa: E402
from spatialreward.rl.prompts import prompt_set  # noqa: E402
from spatialreward.rl.rewards import RewardMix  # noqa: E402
from spatialreward.synth.language import OPERATIONS  # noqa: E402

POLICY = "models/editor"
TRAIN_SEED, TEST_SEED = 0, 1
"""Prompt and noise seeds of the voted (train split) and the measured (test split) groups."""


def prompts(policy: EmbeddedEditor, split: str, n: int, seed: int) -> list[Any]:
    return prompt_set(split, n, policy.image_size, seed=seed, ops=OPERATIONS,
                      scenes=recorded_scenes(POLICY))


def build_store(out: Path, policy: EmbeddedEditor, n: int, group: int, noise: float) -> Any:
    """``OUT/studio.db`` with ``n`` training groups, made once."""
    from storage.store import Store

    db = out / "studio.db"
    fresh = not db.exists()
    store = Store.open(db)
    if fresh:
        t0 = time.perf_counter()
        groups = sample_groups(policy, prompts(policy, "train", n, TRAIN_SEED), group_size=group,
                               noise_level=noise, backends=("mini",), seed=TRAIN_SEED)
        push_groups(store, groups)
        print(f"{len(groups)} training groups of {group} in {db} "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)
    return store


def test_groups(out: Path, policy: EmbeddedEditor, n: int, group: int, noise: float
                ) -> tuple[list[Any], np.ndarray, float]:
    """(row -> prompt, edits, share of successes) of the held-out groups; the edits are
    sampled once and kept in ``OUT/test-N-gG.npz``."""
    path = out / f"test-{n}-g{group}.npz"
    test = prompts(policy, "test", n, TEST_SEED)
    if not path.exists():
        t0 = time.perf_counter()
        groups = sample_groups(policy, test, group_size=group, noise_level=noise,
                               seed=TEST_SEED)
        np.savez_compressed(path, edits=np.stack([e for g in groups for e in g.images]))
        print(f"{n} test groups sampled ({time.perf_counter() - t0:.0f} s)", flush=True)
    edits = np.load(path)["edits"]
    rows = [p for p in test for _ in range(group)]
    success = np.mean([ground_truth(p.source, p.target, p.footprint, e).success
                       for p, e in zip(rows, edits, strict=True)])
    return rows, edits, float(success)


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


def vote_and_finetune(store: Any, out: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The fine-tunes of the curve, ``{label: (spec, finetune result)}``."""
    from spatialreward.mini.finetune import FinetuneConfig, finetune
    from storage.simulated import simulate_votes

    annotator = f"sim-{round(100 * args.error)}" + (f"-tie{args.tie_margin:g}"
                                                     if args.tie_margin else "")
    runs: dict[str, Any] = {}
    for budget in sorted(int(x) for x in args.curve.split(",") if x.strip()):
        folder = out / f"{args.name}-{budget}"
        cast = sum(1 for v in store.item_votes(kinds="simulated") if v["annotator"] == annotator)
        if (folder / "finetune.json").exists():
            print(f"{folder.name}: already fine-tuned", flush=True)
        elif cast > budget:
            raise SystemExit(f"{cast} votes are in the store, more than the budget {budget}: "
                             "give budgets of at least that many, or a fresh --out")
        else:
            counts = simulate_votes(store, annotator=annotator, error=args.error,
                                    queue="rl_samples", n=budget - cast, seed=args.seed + budget,
                                    tie_margin=args.tie_margin)
            print(f"{budget} votes: {counts}", flush=True)
            fields: dict[str, Any] = {"db": str(out / "studio.db"), "kinds": ("simulated",),
                                      "annotators": (annotator,),
                                      "out": str(folder), "seed": args.seed, "tune": args.tune,
                                      "replay": args.replay}
            for key in ("steps", "lr"):
                if getattr(args, key) is not None:
                    fields[key] = getattr(args, key)
            t0 = time.perf_counter()
            result = finetune(FinetuneConfig(**fields))
            print(f"{folder.name}: {time.perf_counter() - t0:.0f} s, vote hold-out "
                  f"{result['holdout']}", flush=True)
        runs[f"{args.name} + {budget} votes"] = (
            f"mini:{folder}", json.loads((folder / "finetune.json").read_text()))
    return runs


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="folder for the store, edits and results")
    p.add_argument("--groups", type=int, default=200, help="training prompts sampled (200)")
    p.add_argument("--test-prompts", type=int, default=600, help="held-out prompts sampled (600)")
    p.add_argument("--measure-prompts", type=int, default=None,
                   help="measure on the first N of them only (Mini judges ~10 edits/s here)")
    p.add_argument("--group", type=int, default=12, help="edits per prompt G (12)")
    p.add_argument("--noise-level", type=float, default=0.7)
    p.add_argument("--error", type=float, default=0.1, help="simulated error rate (0.1)")
    p.add_argument("--tie-margin", type=float, default=0.0,
                   help="the simulated annotator calls a tie below this truth difference (0)")
    p.add_argument("--curve", default="250,500,1000,2000", help="vote budgets to fine-tune on")
    p.add_argument("--name", default="mini-votes", help="name of this variant's fine-tunes")
    p.add_argument("--tune", default="head", choices=("head", "all"))
    p.add_argument("--lr", type=float, default=None, help="fine-tune learning rate (its default)")
    p.add_argument("--steps", type=int, default=None, help="fine-tune steps (its default)")
    p.add_argument("--replay", type=float, default=0.3, help="SynthEdit replay share (0.3)")
    p.add_argument("--synthedit", default="data/eval",
                   help="SynthEdit eval splits folder ('none': skip the regression check)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.set_num_threads(2)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    policy = EmbeddedEditor.load(POLICY)
    store = build_store(out, policy, args.groups, args.group, args.noise_level)
    rows, edits, success = test_groups(out, policy, args.test_prompts, args.group,
                                       args.noise_level)
    measure = min(args.measure_prompts or args.test_prompts, args.test_prompts)
    rows, edits = rows[:measure * args.group], edits[:measure * args.group]
    print(f"test: {len(edits)} edits of {measure} prompts ({success:.1%} successes in all "
          f"{args.test_prompts})", flush=True)
    runs = vote_and_finetune(store, out, args)
    saved = out / "learning.json"
    results: dict[str, Any] = json.loads(saved.read_text()) if saved.exists() else {}
    results.setdefault("table", {})
    results.setdefault("runs", {}).update({k: v[1] for k, v in runs.items()})
    results.setdefault("calls", []).append(vars(args))
    specs = {"mini (shipped)": "mini", **{k: v[0] for k, v in runs.items()}}
    largest = list(specs)[-1]
    for label, spec in specs.items():
        key = f"{label} @ {measure} test prompts"
        row = results["table"].get(key) or reward_signal(spec, rows, edits, args.group)
        if (args.synthedit != "none" and label in ("mini (shipped)", largest)
                and "synthedit" not in row):
            row["synthedit"] = synthedit_accuracy(spec, Path(args.synthedit))
        results["table"][key] = row
        saved.write_text(json.dumps(results, indent=1, default=str))
        synth = row.get("synthedit")
        print(f"{label:28s} pair acc {row['pair_accuracy']:.3f} ({row['pairs']})  group rho "
              f"{row['group_spearman']:.3f}  AUC {row['auc']:.3f}"
              + (f"  SynthEdit test {synth['test']:.3f} hard {synth['hard']:.3f}"
                 if synth else ""), flush=True)
    print(f"wrote {saved}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
