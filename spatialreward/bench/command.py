"""The ``bench`` subcommand: measure a backend against a pair-format dataset.

``python -m spatialreward bench --dataset pairs.jsonl --backend pixel --out results.json``
judges every candidate, writes the results JSON (see
:func:`~spatialreward.bench.runner.run_bench`) and prints a short summary table.
The heavy imports (scipy, tqdm, the backends) happen in :func:`run`, not here, so
registering the command costs the rest of the CLI nothing.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from ..config import StudioConfig
from ..errors import InputError


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``bench`` to ``subparsers`` (from ``ArgumentParser.add_subparsers``)."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "bench",
        help="measure a backend's accuracy on a pair-format dataset",
        description="Judge every candidate of a pair-format JSONL dataset and compare the "
        "scores with the human rankings: pairwise accuracy (model ties count wrong), exact "
        "ranking accuracy for items with 3+ candidates, and recall of the target regions.",
    )
    parser.add_argument("--dataset", required=True, type=Path,
                        help="pair-format JSONL file (see storage/pairs.py)")
    parser.add_argument("--backend", default="pixel",
                        help="reward-model backend spec (default: pixel; see `backends`)")
    parser.add_argument("--limit", type=_positive_int, default=None, metavar="N",
                        help="evaluate only the first N items")
    parser.add_argument("--by", action="extend", nargs="+", default=[], metavar="KEY",
                        help="also break accuracy down by these metadata keys "
                        "(repeat or list several)")
    parser.add_argument("--out", type=Path, default=Path("results.json"),
                        help="where to write the results JSON (default: results.json)")
    parser.add_argument("--no-progress", dest="progress", action="store_false",
                        help="no progress bar (it only shows on a terminal anyway)")
    parser.set_defaults(func=run)
    return parser


def _num(x: float | None, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _ci(ci: list[float] | None) -> str:
    return "" if ci is None else f"[{ci[0]:.3f}, {ci[1]:.3f}]"


def format_summary(results: dict[str, Any]) -> str:
    """The human summary of a results dict: headline rows, then one row per category."""
    backend = results["backend"]
    rows = [
        ("dataset", results["dataset"]),
        ("backend", f"{backend['spec']} (version {backend['version']})"),
        ("n", f"{results['n']} items, {results['n_pairs']} pairs"),
        ("accuracy", f"{_num(results['accuracy'])}  95% CI {_ci(results['accuracy_ci'])}"
                     if results["accuracy"] is not None else "-"),
    ]
    if "ranking_accuracy" in results:
        rows.append(("ranking", f"{_num(results['ranking_accuracy'])} exact order "
                                f"(n={results['ranking_n']}, items with 3+ candidates)"))
    if results.get("region_recall") is not None:
        rows.append(("regions", f"{_num(results['region_recall'])} recall at IoU 0.5 "
                                f"(n={results['region_targets']} target boxes)"))
    rows += [
        ("failed", str(results["failed"])),
        ("tied", f"{results['tied_human']} (human tie, not scored)"),
        ("s/item", _num(results["seconds_per_item"])),
    ]
    lines = [f"{label:10s}{value}" for label, value in rows]
    table = results["by_category"]
    if table:
        width = max(len("category"), *(len(c) for c in table))
        lines += ["", f"{'category':{width}s}  {'n':>5s}  {'accuracy':>8s}  95% CI"]
        lines += [
            f"{cat:{width}s}  {row['n']:5d}  {_num(row['accuracy']):>8s}  {_ci(row['accuracy_ci'])}"
            for cat, row in table.items()
        ]
    return "\n".join(lines)


def write_results(results: dict[str, Any], out: Path) -> None:
    """Write ``results`` as indented JSON; a temporary file keeps a crash from leaving half."""
    tmp = out.with_name(out.name + ".tmp")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with tmp.open("w", encoding="utf-8") as fh:
            json.dump(results, fh, indent=2, ensure_ascii=False)
            fh.write("\n")
        os.replace(tmp, out)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise InputError(f"cannot write the results to {out}: {err.strerror or err}") from None


def run(args: argparse.Namespace) -> int:
    """Run the benchmark the parsed ``args`` describe; returns the exit status."""
    from ..service import Services
    from .runner import run_bench

    # getattr: a hand-built Namespace may leave the optional flags out.
    backend = getattr(args, "backend", None) or "pixel"
    out = Path(getattr(args, "out", None) or "results.json")
    services = Services(StudioConfig.from_env(backend=backend))
    results = run_bench(
        Path(args.dataset),
        services,
        backend,
        limit=getattr(args, "limit", None),
        by=getattr(args, "by", None) or (),
        progress=getattr(args, "progress", True),
    )
    write_results(results, out)
    print(format_summary(results))
    print(f"\nresults written to {out}")
    return 0
