"""``python -m spatialreward db ...``: look after the judgment store from the shell.

Each subcommand opens the store (``--db``, else ``$STUDIO_DB``, else ``data/studio.db``),
calls one store function and prints the result; store errors become one ``error:`` line
and exit status 2 (in :func:`spatialreward.cli.main`).
"""

from __future__ import annotations

import argparse
import getpass
import json
from pathlib import Path
from typing import Any

from spatialreward.config import StudioConfig
from spatialreward.errors import InvalidJudgmentError

from .store import ORPHAN_MIN_AGE_S, ROLES, Store


def _open(args: argparse.Namespace) -> Store:
    path = Path(args.db) if args.db else StudioConfig.from_env().db
    return Store.open(path)


def _is_parquet(path: Path, fmt: str | None) -> bool:
    return fmt == "parquet" or (fmt is None and path.suffix == ".parquet")


def cmd_stats(args: argparse.Namespace) -> int:
    with _open(args) as store:
        stats = store.stats()
    if args.json:
        print(json.dumps(stats, indent=2))
        return 0
    print(f"schema version {stats['schema_version']}, journal {stats['journal_mode']}")
    for table, n in stats["tables"].items():
        print(f"  {table:<16} {n:>9,}")
    print(f"  current human judgments: {stats['current_human_judgments']:,}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from .exchange import import_pairs, import_parquet

    path = Path(args.path)
    with _open(args) as store:
        if _is_parquet(path, args.format):
            counts = import_parquet(store, path, dataset=args.dataset)
        else:
            jsonl = path / "pairs.jsonl" if path.is_dir() else path
            counts = import_pairs(store, jsonl, dataset=args.dataset)
    print("imported " + ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in counts.items()))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .exchange import export_pairs, export_parquet

    path = Path(args.path)
    with _open(args) as store:
        if _is_parquet(path, args.format):
            n = export_parquet(store, path)
            where = str(path)
        else:
            n = export_pairs(store, path)
            where = f"{path}/pairs.jsonl"
    print(f"exported {n} items to {where}")
    return 0


def cmd_backup(args: argparse.Namespace) -> int:
    with _open(args) as store:
        target = store.backup(args.target)
    print(f"backed up to {target} (images in {target.parent / 'images'})")
    return 0


def cmd_integrity(args: argparse.Namespace) -> int:
    with _open(args) as store:
        if args.remove_orphans:
            removed = store.remove_orphan_images()
            for rel, size in removed:
                print(f"removed {rel} ({size:,} bytes)")
            print(f"removed {len(removed)} orphan image file(s), "
                  f"{sum(size for _, size in removed):,} bytes")
        problems = store.integrity()
    for p in problems:
        print(f"problem: {p}")
    print("ok" if not problems else f"{len(problems)} problem(s)")
    return 0 if not problems else 1


def cmd_add_annotator(args: argparse.Namespace) -> int:
    password = None
    if args.password:
        password = getpass.getpass(f"password for {args.name}: ")
        if not password:
            raise InvalidJudgmentError("empty password; run again and type one")
    with _open(args) as store:
        store.add_annotator(args.name, args.role, password)
    print(f"added {args.role} {args.name}" + (" (with password)" if password else ""))
    return 0


def cmd_agreement(args: argparse.Namespace) -> int:
    from .agreement import agreement

    with _open(args) as store:
        report = agreement(store, backend=args.backend, kinds=args.kind)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    m, inter, ceil = report["model_vs_human"], report["inter_annotator"], report["human_ceiling"]
    left = ", ".join(f"{n} {k}" for k, n in report["left_out"].items())
    print(f"annotators: {args.kind}" + (f" (left out: {left} votes; --kind all counts them)"
                                         if left else ""))
    print(f"model vs human majority ({m['backend']}): {_num(m['accuracy'])} over "
          f"{m['items']} items")
    print(f"human ceiling (one vs the others' majority): {_num(ceil['accuracy'])} over "
          f"{ceil['judgments']} judgments")
    print(f"inter-annotator ({inter['method'] or 'needs 2+ annotators'}): "
          f"{_num(inter['value'])} over {inter['items']} items")
    for a in report["per_annotator"]:
        print(f"  {a['annotator']:<16} {a['judgments']:>6} judged  agreement "
              f"{_num(a['agreement_with_others'])}  gold accuracy {_num(a['gold_accuracy'])} "
              f"({a['gold_items']} gold)")
    return 0


def cmd_simulate_votes(args: argparse.Namespace) -> int:
    from .simulated import simulate_votes

    with _open(args) as store:
        counts = simulate_votes(store, annotator=args.annotator, error=args.error,
                                queue=args.queue, n=args.n, seed=args.seed,
                                tie_margin=args.tie_margin)
    print(f"simulated annotator {args.annotator} (error {args.error:g}): {counts['votes']} "
          f"votes ({counts['flipped']} flipped, {counts['ties']} ties), {counts['skipped']} "
          f"pairs already voted, {counts['available']} pairs with a ground truth")
    return 0


def cmd_queue(args: argparse.Namespace) -> int:
    from .agreement import disagreement_queue

    with _open(args) as store:
        q = disagreement_queue(store, backend=args.backend, min_judgments=args.min_judgments,
                               limit=args.limit)
    if args.json:
        print(json.dumps(q, indent=2))
        return 0
    print(f"{q['total_disagreements']} items where {q['backend']} and the human majority "
          "differ (largest model margin first):")
    for d in q["disagreements"]:
        print(f"  item {d['item_id']}: model {d['model_pick']}, humans {d['human_pick']} "
              f"(margin {d['margin']:.2f}, votes {d['votes']})")
    print(f"{len(q['needs_judgments'])} items with fewer than {args.min_judgments} judgments")
    return 0


def _num(x: Any) -> str:
    return "-" if x is None else f"{x:.3f}"


def add_parser(sub: Any) -> None:
    db = sub.add_parser("db", help="inspect, import, export, back up the judgment store",
                        description="The judgment store (SQLite + content-addressed images). "
                        "Schema: docs/store.md.")
    actions = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")

    def action(name: str, func: Any, help: str) -> argparse.ArgumentParser:
        p = actions.add_parser(name, help=help, description=help)
        p.add_argument("--db", help="store file (default: $STUDIO_DB or data/studio.db)")
        p.set_defaults(func=func)
        return p

    p = action("stats", cmd_stats, "row counts per table and the schema version")
    p.add_argument("--json", action="store_true", help="print JSON")
    for name, func, verb in (("import", cmd_import, "read"), ("export", cmd_export, "write")):
        p = action(name, func, f"{verb} items and judgments: a pair-format folder or "
                   "pairs.jsonl, or a .parquet file (Hugging Face datasets layout)")
        p.add_argument("path", help="folder / pairs.jsonl, or FILE.parquet")
        p.add_argument("--format", choices=["jsonl", "parquet"],
                       help="default: parquet for *.parquet, else the pair format")
        if name == "import":
            p.add_argument("--dataset", help="origin dataset name recorded on each item")
    p = action("backup", cmd_backup,
               "copy the store with SQLite's online backup API (safe while the app writes)")
    p.add_argument("target", help="backup database file; images are copied beside it")
    p = action("integrity", cmd_integrity,
               "check SQLite integrity, foreign keys, the edit history, every image file's "
               "hash and orphan image files (exit 1 on problems)")
    p.add_argument("--remove-orphans", action="store_true",
                   help="first delete the files under images/ that no row references and "
                   f"that are older than {ORPHAN_MIN_AGE_S // 60} minutes")
    p = action("add-annotator", cmd_add_annotator, "register an annotator for the app")
    p.add_argument("name")
    p.add_argument("--role", choices=ROLES, default="annotator")
    p.add_argument("--password", action="store_true",
                   help="ask for a password (stored as an argon2id hash) for the app login")
    p = action("agreement", cmd_agreement,
               "model-vs-human accuracy, inter-annotator agreement, human ceiling")
    p.add_argument("--backend", help="backend whose judgments to compare (default: the one "
                   "with most stored judgments)")
    p.add_argument("--kind", choices=["human", "simulated", "all"], default="human",
                   help="whose votes to count (default human: simulated annotators are "
                   "left out, and the report says how many of their votes)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p = action("simulate-votes", cmd_simulate_votes,
               "vote as a simulated annotator from the ground truth, with an error rate "
               "(marked simulated: never counted as people)")
    p.add_argument("--annotator", default="sim-10",
                   help="simulated annotator's name (registered with kind simulated; a "
                   "human of that name is refused)")
    p.add_argument("--error", type=float, default=0.1,
                   help="probability that a vote is flipped (default 0.1)")
    p.add_argument("--queue", default="rl_samples",
                   choices=["rl_samples", "rl-samples", "gold", "all"],
                   help="rl_samples: RL sample groups (truth scores); gold: items with a "
                   "truth ranking; all: both")
    p.add_argument("--n", type=int, default=2000, help="most pairs to vote on (default 2000)")
    p.add_argument("--tie-margin", type=float, default=0.0,
                   help="call a tie when the truth scores (0..1) differ by less (default 0)")
    p.add_argument("--seed", type=int, default=0, help="seed of the pair order and the errors")
    p = action("queue", cmd_queue, "the disagreement queue and items needing judgments")
    p.add_argument("--backend", help="backend (default: the one with most stored judgments)")
    p.add_argument("--min-judgments", type=int, default=2,
                   help="items with fewer current judgments are listed as needing more")
    p.add_argument("--limit", type=int, default=20, help="rows per list (default 20)")
    p.add_argument("--json", action="store_true", help="print JSON")


