"""The ``bench`` subcommand: measure a backend on a benchmark, or compare two runs.

``python -m spatialreward bench --dataset DIR_OR_FILE --backend mini --out results.json``
reads the benchmark (format detected, :mod:`.formats`), judges every candidate through
the store's cache, writes the results JSON (see :func:`~spatialreward.bench.runner.evaluate`)
and the HTML report (:mod:`.report`) and prints a short summary table. Under ``torchrun``
the items are sharded over the ranks (:mod:`.distributed`); rank 0 writes the files.
``bench --compare RUN_A RUN_B`` prints two runs side by side.
The heavy imports (pyarrow, scipy, tqdm, the backends) happen in :func:`run`, not here,
so registering the command costs the rest of the CLI nothing.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from ..config import StudioConfig
from ..errors import InputError

FORMAT_NAMES = ("editscore", "tiger", "merbench", "mmrb2", "gedit", "pairs", "store")
"""The names of :data:`.formats.FORMATS` (kept here so the parser imports no pyarrow)."""


def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1 (shared by the CLI commands)."""
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
        help="measure a backend on a public benchmark or a pair-format dataset",
        description="Judge every candidate of a benchmark (EditReward-Bench in EditScore's "
        "or TIGER-Lab's layout, MER-Bench, MMRB2's edit task, GEdit-Bench with a model's "
        "edits, our pair JSONL, or the store's human votes; local copies only) and score "
        "the judge the way the benchmark's paper does. Writes results.json and an HTML "
        "report; judgments are cached in the store, so an interrupted run resumes. Run it "
        "under `torchrun --nproc_per_node=K -m spatialreward bench ...` to shard the items "
        "over K processes (docs/benchmarks.md).",
    )
    parser.add_argument("--dataset", type=Path, default=None,
                        help="the benchmark's local copy: a .parquet/.arrow file or folder, a "
                        "saved HF dataset, a pair-format .jsonl, MMRB2's edit.json, or a "
                        "studio .db (human votes)")
    parser.add_argument("--format", dest="fmt", default="auto",
                        choices=["auto", *FORMAT_NAMES],
                        help="the dataset's format (default: detected from its columns)")
    parser.add_argument("--backend", default="pixel",
                        help="reward-model backend spec (default: pixel; see `backends`)")
    parser.add_argument("--limit", type=positive_int, default=None, metavar="N",
                        help="evaluate only the first N items")
    parser.add_argument("--by", action="extend", nargs="+", default=[], metavar="KEY",
                        help="also break accuracy down by these metadata keys "
                        "(repeat or list several)")
    parser.add_argument("--out", type=Path, default=None,
                        help="where to write the results JSON (default: results.json); with "
                        "--compare, where to write the comparison JSON")
    parser.add_argument("--report", type=Path, default=None, metavar="HTML",
                        help="where to write the HTML report (default: beside --out, .html)")
    parser.add_argument("--no-report", dest="write_report", action="store_false",
                        help="write no HTML report")
    parser.add_argument("--db", type=Path, default=None,
                        help="the store that caches judgments (default: STUDIO_DB or "
                        "data/studio.db)")
    parser.add_argument("--no-cache", dest="cache", action="store_false",
                        help="neither read nor write judgments in the store")
    parser.add_argument("--add-to-store", action="store_true",
                        help="also put the benchmark's items in the store's annotation "
                        "queues (by default they are stored only to cache judgments, "
                        "out of the queues; an item imported already is one item either way)")
    parser.add_argument("--edits", type=Path, default=None, metavar="DIR",
                        help="GEdit-Bench: the editing model's outputs, "
                        "DIR/<task_type>/<language>/<key>.png")
    parser.add_argument("--allow-absolute-paths", action="store_true",
                        help="read image paths that a JSON layout gives as absolute paths "
                        "(SpatialReward's bench.jsonl has its authors' paths) as given, with "
                        "a warning; refused by default: paths in data files stay inside "
                        "their folder")
    parser.add_argument("--compare", nargs=2, type=Path, default=None,
                        metavar=("RUN_A", "RUN_B"),
                        help="compare two results.json files (or run folders) and exit")
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
        ("format", results.get("format_title") or results.get("format") or "pairs"),
        ("backend", f"{backend['spec']} (version {backend['version']})"),
        ("n", f"{results['n']} items, {results['n_pairs']} pairs"),
        ("accuracy", f"{_num(results['accuracy'])}  95% CI {_ci(results['accuracy_ci'])}"
                     if results["accuracy"] is not None else "-"),
    ]
    bench = results.get("benchmark") or {}
    if bench.get("headline"):
        rows.append(("benchmark", f"{_num(bench['headline']['value'])}  "
                                  f"{bench['headline']['name']}"))
    if bench.get("headline_official"):
        cells = len(bench.get("empty_cells") or ())
        rows.append(("official", f"{_num(bench['headline_official']['value'])}  "
                                 f"{bench['headline_official']['name']} ({cells} empty "
                                 "cell(s); ours above averages only the cells with items)"))
    ceiling = bench.get("human_ceiling")
    if ceiling:
        rows.append(("ceiling", f"{_num(ceiling['accuracy'])}  one annotator vs the others' "
                                f"majority ({ceiling['judgments']} judgments)"))
    if "ranking_accuracy" in results:
        rows.append(("ranking", f"{_num(results['ranking_accuracy'])} exact order "
                                f"(n={results['ranking_n']}, items with 3+ candidates)"))
    if results.get("region_recall") is not None:
        rows.append(("regions", f"{_num(results['region_recall'])} recall at IoU 0.5 "
                                f"(n={results['region_targets']} target boxes)"))
    official = results.get("official_parse")
    if official:
        rows.append(("official", f"accuracy {_num(official['accuracy'])} as the official "
                     f"scripts compute it: {official['invented_items']} item(s) scored with an "
                     "invented score (midpoint or duplicated) where ours counts a failure"))
    if results.get("low_coverage"):
        rows.append(("coverage", f"{results['low_coverage']} item(s) low coverage (the backend "
                                 "could not read all of the request); accuracy without them "
                                 f"{_num(results['accuracy_full_coverage'])}  95% CI "
                                 f"{_ci(results['accuracy_full_coverage_ci'])}, on them "
                                 f"{_num(results['accuracy_low_coverage'])}"))
    fp = results.get("fingerprint")
    if fp:
        rev = fp.get("revision")
        rows.append(("data", f"sha256 {fp['sha256'][:16]} over {fp['items']} items"
                             + (f", {rev['kind']} {rev['id'][:12]}" if rev else "")))
    dup = (results.get("notes") or {}).get("duplicates")
    if dup:
        rows.append(("duplicates", f"{dup['ids']} id(s) repeated on {dup['rows']} rows, "
                                   f"{len(dup['conflicting'])} conflicting (other ranking or "
                                   "images); renamed id#2.. (notes.duplicates)"))
    rows += [
        ("failed", str(results["failed"]) + (
            f" ({results['truncated']} cut off at max_new_tokens: raise it)"
            if results.get("truncated") else "")),
        ("tied", f"{results['tied_human']} (human tie, not scored)"),
        ("s/item", _num(results["seconds_per_item"])),
    ]
    cache = results.get("cache")
    if cache and cache.get("store"):
        rows.append(("cache", f"{cache['reused']} judgments reused, {cache['judged']} made"))
    if results.get("world_size", 1) > 1:
        rows.append(("ranks", str(results["world_size"])))
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


def _compare(args: argparse.Namespace) -> int:
    from .report import compare_results, format_comparison, load_results

    a, b = (load_results(p) for p in args.compare)
    cmp = compare_results(a, b)
    print(format_comparison(cmp))
    out = getattr(args, "out", None)
    if out is not None:
        write_results(cmp, Path(out))
        print(f"\ncomparison written to {out}")
    return 0


def run(args: argparse.Namespace) -> int:
    """Run the benchmark the parsed ``args`` describe; returns the exit status."""
    if getattr(args, "compare", None):
        return _compare(args)
    from ..service import Services
    from .distributed import from_env, shutdown
    from .formats import open_benchmark
    from .report import write_report
    from .runner import evaluate

    # getattr: a hand-built Namespace may leave the optional flags out.
    backend = getattr(args, "backend", None) or "pixel"
    fmt = getattr(args, "fmt", None) or "auto"
    out = Path(getattr(args, "out", None) or "results.json")
    config = StudioConfig.from_env(backend=backend, db=getattr(args, "db", None))
    dataset = getattr(args, "dataset", None)
    if dataset is None:
        if fmt != "store":
            raise InputError("give --dataset (the benchmark's local copy), or --compare "
                             "RUN_A RUN_B")
        dataset = config.db  # the human bench reads the configured store
    use_cache = getattr(args, "cache", True)
    if getattr(args, "add_to_store", False) and not use_cache:
        raise InputError("--add-to-store puts the items in the store, which --no-cache "
                         "leaves alone; drop one of the two")
    services = Services(config)
    dist = from_env()
    bench: Any = None
    try:
        services.backend(backend)  # an unknown backend fails before any work is done

        def prepare() -> tuple[Any, Any]:
            # An existing store is read through one connection; a missing one is created
            # only once the dataset has been read without error.
            live = services.store if use_cache and Path(config.db).is_file() else None
            bench = open_benchmark(Path(dataset), fmt, limit=getattr(args, "limit", None),
                                   edits=getattr(args, "edits", None), live=live,
                                   allow_absolute_paths=getattr(args, "allow_absolute_paths",
                                                                False))
            return bench, services.store if use_cache else None

        # Rank 0 opens (and, the first time, creates) the store before the others do.
        if dist.is_main:
            bench, store = prepare()
        dist.barrier()
        if not dist.is_main:
            bench, store = prepare()
        results = evaluate(bench, services, backend, by=getattr(args, "by", None) or (),
                           progress=getattr(args, "progress", True), store=store, dist=dist,
                           add_to_store=getattr(args, "add_to_store", False))
        if not dist.is_main:
            return 0
        write_results(results, out)
        print(format_summary(results))
        print(f"\nresults written to {out}")
        if getattr(args, "write_report", True):
            report = getattr(args, "report", None) or out.with_suffix(".html")
            write_report(results, report, bench.items)
            print(f"report written to {report}")
        return 0
    finally:
        if bench is not None:
            bench.close()
        shutdown()
