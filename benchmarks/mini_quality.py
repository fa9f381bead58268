"""The model-card figures of SpatialReward-Mini, beside the pixel baseline and the ablation.

    python benchmarks/mini_quality.py [--ablation mini:data/runs/mini-global]

Writes (once) the SynthEdit evaluation splits with seeds the training never used
(test: 1,000 pairs, hard: 500 pairs, seed 0), benches each backend on both, and prints:
pairwise accuracy (ties wrong) with its 95% interval, accuracy on held-out phrasings,
region recall at IoU 0.5 on correct candidates, the share of no_edit candidates judged
with no region, and accuracy per flaw.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from spatialreward.bench.runner import run_bench  # noqa: E402
from spatialreward.config import StudioConfig  # noqa: E402
from spatialreward.service import Services  # noqa: E402
from spatialreward.synth.generate import SynthConfig, generate  # noqa: E402
from storage.pairs import read_pairs  # noqa: E402


def ensure_split(folder: Path, split: str, n: int) -> Path:
    path = folder / "pairs.jsonl"
    if not path.exists():
        generate(SynthConfig(out=folder, n=n, seed=0, split=split), progress=False)
    return path


def no_edit_region_free(dataset: Path, results: dict) -> float | None:
    """Share of no_edit candidates for which the judge located no region."""
    items = {it.id: it for it in read_pairs(dataset)}
    free, total = 0, 0
    for entry in results["items"]:
        truth = items[entry["id"]].metadata.get("candidate_truth", [])
        for k, t in enumerate(truth):
            if t["flaw"] == "no_edit" and entry.get("region_counts"):
                total += 1
                free += entry["region_counts"][k] == 0
    return free / total if total else None


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default="data/eval", help="folder for the evaluation splits")
    p.add_argument("--model", default="mini", help="backend spec of the model")
    p.add_argument("--ablation", default=None, help="backend spec of the global ablation")
    p.add_argument("--out", default=None, help="also write all figures as JSON here")
    args = p.parse_args()
    data = Path(args.data)
    splits = {"test": ensure_split(data / "test", "test", 1000),
              "hard": ensure_split(data / "hard", "hard", 500)}
    services = Services(StudioConfig())
    specs = ["pixel", args.model] + ([args.ablation] if args.ablation else [])
    figures: dict[str, dict] = {}
    for spec in specs:
        for split, path in splits.items():
            r = run_bench(path, services, spec, by=("flaw", "phrasing"), progress=False)
            figures.setdefault(spec, {})[split] = {
                "accuracy": r["accuracy"], "ci": r["accuracy_ci"],
                "held_out": r["by"]["phrasing"].get("held_out", {}).get("accuracy"),
                "region_recall": r["region_recall"],
                "no_edit_region_free": no_edit_region_free(path, r),
                "by_flaw": {k: v["accuracy"] for k, v in r["by"]["flaw"].items()},
                "seconds_per_item": r["seconds_per_item"],
            }
    for split in splits:
        print(f"\n{split}: accuracy [95% CI] | held-out phrasings | region recall | "
              "no_edit without region")
        for spec in specs:
            f = figures[spec][split]
            free = f["no_edit_region_free"]
            print(f"  {spec:28s} {f['accuracy']:.3f} [{f['ci'][0]:.3f}, {f['ci'][1]:.3f}] | "
                  f"{f['held_out']:.3f} | {f['region_recall']:.3f} | "
                  f"{'-' if free is None else f'{free:.3f}'}")
        flaws = sorted(figures[specs[0]][split]["by_flaw"])
        print("  per flaw: " + "  ".join(
            f"{fl}: " + "/".join(f"{figures[s][split]['by_flaw'].get(fl, float('nan')):.2f}"
                                 for s in specs) for fl in flaws))
    if args.out:
        Path(args.out).write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
