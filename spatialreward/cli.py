"""Command line: ``python -m spatialreward COMMAND``.

Each command builds the services, calls one service function and prints the result.
User mistakes (a missing file, a non-image, an unknown backend) become one line on
stderr and exit status 2; there is no traceback for them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from .bench.command import add_parser as add_bench_parser
from .config import StudioConfig
from .errors import InputError, StudioError
from .judgment import Judgment
from .rl.command import add_parsers as add_rl_parsers

EXIT_USER_ERROR = 2


def _fmt(x: float | None, digits: int = 2) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def format_judgment(j: Judgment, label: str) -> str:
    """A judgment as a short human-readable block."""
    lines = [f"{label}  [{j.backend} {j.backend_version}]  status: {j.status}"]
    if j.error:
        lines.append(f"  error: {j.error}")
    lines.append(
        f"  overall {_fmt(j.overall)}/10  reward {_fmt(j.reward, 3)}  "
        f"prompt_following {_fmt(j.prompt_following)}  consistency {_fmt(j.consistency)}  "
        f"perceptual_quality {_fmt(j.perceptual_quality)}"
    )
    if j.sc is not None or j.pq is not None:
        sc = list(j.sc) if j.sc else "-"
        pq = list(j.pq) if j.pq else "-"
        lines.append(f"  raw sc {sc}  pq {pq} (0..25)")
    for r in j.regions:
        lines.append(f"  region {r.id}: {r.label or '(no label)'}  bbox_2d {list(r.bbox_2d)}")
    if not j.regions and j.sc is not None:
        lines.append("  regions: none")
    for seg in j.segments:
        head = f"[bbox {seg.region_id}]" if seg.kind == "bbox" else f"[{seg.kind}]"
        lines.append(textwrap.fill(f"{head} {seg.text}", 100, initial_indent="  ",
                                   subsequent_indent="    "))
    if j.pq_reasoning:
        lines.append(textwrap.fill(f"[quality] {j.pq_reasoning}", 100, initial_indent="  ",
                                   subsequent_indent="    "))
    lines += [f"  warning: {w}" for w in j.warnings]
    return "\n".join(lines)


CARD_SUFFIXES = {".html": "html", ".htm": "html", ".png": "png"}


def card_target(value: str) -> tuple[Path, str]:
    """Where ``--card`` writes and in which format (from the suffix); refused before any
    judging when the path is a folder, has another suffix or cannot be written."""
    path = Path(value).expanduser()
    fmt = CARD_SUFFIXES.get(path.suffix.lower())
    if path.is_dir():
        raise InputError(f"--card {value} is a folder; give a file name such as "
                         f"{path / 'card.html'}")
    if fmt is None:
        raise InputError(f"--card {value}: the file name must end in .html (a self-contained "
                         "page) or .png (an image of it)")
    parent = path.parent
    if parent.exists() and not parent.is_dir():
        raise InputError(f"--card {value}: {parent} is a file, not a folder")
    if not parent.is_dir():
        raise InputError(f"--card {value}: the folder {parent} does not exist; create it "
                         "first")
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise InputError(f"--card {value}: cannot write there (permission denied); choose "
                         "another file")
    return path, fmt


def cmd_judge(args: argparse.Namespace) -> int:
    from .service import Services

    card = card_target(args.card) if args.card else None
    services = Services(StudioConfig.from_env(backend=args.backend))
    if card is None:
        results = [(path, services.judge(args.source, path, args.instruction))
                   for path in args.edited]
    else:  # the card shows the attention and maps of the judging pass itself
        inspections = services.inspect_group(args.source, args.edited, args.instruction)
        results = [(path, r.judgment) for path, r in zip(args.edited, inspections, strict=True)]
        data = services.card(inspections, args.instruction, card[1],
                             labels=[Path(p).name for p in args.edited])
        try:
            card[0].write_bytes(data)
        except OSError as err:
            raise InputError(f"cannot write the card to {card[0]}: {err.strerror or err}"
                             ) from None
        # stderr: stdout stays the judgment output (valid JSON with --json)
        print(f"wrote the judgment card {card[0]} ({len(data) / 1e6:.2f} MB)", file=sys.stderr)
    if args.json:
        payload = [j.to_dict() for _, j in results]
        out = payload[0] if len(payload) == 1 else payload
        print(json.dumps(out, indent=2, ensure_ascii=False))
        return 0
    ranked = sorted(results, key=lambda pj: -1 if pj[1].overall is None else pj[1].overall,
                    reverse=True)
    for rank, (path, j) in enumerate(ranked, 1):
        label = f"#{rank} {path}" if len(ranked) > 1 else str(path)
        print(format_judgment(j, label))
    return 0


def cmd_synth(args: argparse.Namespace) -> int:
    from .synth.generate import SynthConfig, generate

    config = SynthConfig(out=Path(args.out), n=args.n, seed=args.seed, split=args.split,
                         group_size=args.groups or 2, workers=args.workers,
                         hard_scenes=args.hard_scenes)
    summary = generate(config, progress=not args.no_progress)
    print(f"wrote {summary['items']} items to {summary['out']}/pairs.jsonl in "
          f"{summary['seconds']} s ({summary['items_per_second']} items/s)")
    return 0


def cmd_train_reward(args: argparse.Namespace) -> int:
    if args.from_store:
        return _train_from_store(args)
    if args.config is None:
        raise InputError("train-reward needs --config CFG (train on SynthEdit) or "
                         "--from-store (fine-tune from the store's votes)")
    from .mini.train import TrainConfig, train

    config = TrainConfig.from_file(args.config)
    metrics = train(config, log=lambda line: print(line, flush=True))
    print(f"val pairwise accuracy {metrics['val']['accuracy']:.3f}; "
          f"weights in {config.out}/model.safetensors ({metrics['seconds']} s)")
    return 0


# train-reward --from-store flag -> FinetuneConfig field (None: the config's default).
_FINETUNE_FLAGS = ("db", "base", "out", "holdout", "steps", "batch", "lr", "replay", "tune",
                   "seed", "min_train_pairs", "min_holdout_pairs")


def _train_from_store(args: argparse.Namespace) -> int:
    from .mini.finetune import FinetuneConfig, finetune

    given = {k: getattr(args, k) for k in _FINETUNE_FLAGS if getattr(args, k) is not None}
    if args.kinds is not None:
        given["kinds"] = tuple(k.strip() for k in args.kinds.split(",") if k.strip())
    if args.annotators is not None:
        given["annotators"] = tuple(a.strip() for a in args.annotators.split(",") if a.strip())
    config = FinetuneConfig(**given)
    every = max(1, config.steps // 20)

    def progress(step: int, total: int, m: dict[str, float]) -> None:
        if step % every == 0 or step == total or "holdout_accuracy" in m:
            held = (f"  hold-out accuracy {m['holdout_accuracy']:.3f}"
                    if "holdout_accuracy" in m else "")
            print(f"step {step}/{total}: loss {m['total']:.4f} (pairs {m['bt']:.4f})"
                  + held, flush=True)

    r = finetune(config, progress=progress, log=lambda line: print(line, flush=True))
    hold = r["holdout"]
    ceiling = hold["ceiling"]
    print(f"\nhold-out: {hold['pairs']} pair votes on {hold['items']} items never trained on")
    print(f"{'model':24s} {'agreement with people':>22s}")
    print(f"{'before (' + Path(r['base']).name + ')':24s} {hold['before']:22.3f}")
    print(f"{'after':24s} {hold['after']:22.3f}")
    print(f"{'human ceiling':24s} " + (f"{ceiling['accuracy']:22.3f}" if ceiling else
                                       f"{'- (no pair with 2 voters)':>22s}"))
    print(f"\n{r['votes']['pairs']} training pair votes, {r['seconds']} s "
          f"({r['seconds_per_step']} s/step); use it as the backend mini:{r['out']}")
    return 0


def cmd_serve_reward(args: argparse.Namespace) -> int:
    from .reward_server import LOOPBACK, serve
    from .rl.config import reward_term
    from .service import Services

    mix = [(t.backend, t.weight) for t in (reward_term(text, None) for text in args.mix or [])]
    offered = tuple(s for s in [args.spot_check, *(m for m, _ in mix)] if s)
    extra = {"backends": offered} if offered else {}
    services = Services(StudioConfig.from_env(backend=args.backend, db=args.db, **extra))
    backend = args.backend or services.config.backend
    server = serve(services, backend, host=args.host, port=args.port,
                   pickle_compat=args.pickle_compat, batch_size=args.batch,
                   max_queue=args.max_queue, threshold=args.threshold, record=args.record,
                   name=args.name, samples=args.samples, spot_check=args.spot_check,
                   mix=mix)
    host, port = (str(v) for v in server.server_address[:2])
    print(f"serving rewards from {backend} on http://{host}:{port} (POST /v1/reward"
          + (", pickled POST /" if args.pickle_compat else "") + ")", flush=True)
    if server.run_id is not None:  # type: ignore[attr-defined]
        print(f"recording the calls as external run {server.run_id} in "  # type: ignore[attr-defined]
              f"{services.config.db}", flush=True)
    if args.pickle_compat and args.host not in LOOPBACK:
        print("warning: --pickle-compat on a non-local address: requests are decoded by a "
              "restricted unpickler, but anyone who reaches this port can use the judge",
              file=sys.stderr)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        if server.run_id is not None:  # type: ignore[attr-defined]
            services.store.update_run(server.run_id, status="done")  # type: ignore[attr-defined]
    return 0


def cmd_backends(args: argparse.Namespace) -> int:
    from .backends import available

    for name, description in available().items():
        print(f"{name:10s} {description}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m spatialreward",
        description="SpatialReward Studio: locate edit regions, then judge image edits.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    judge = sub.add_parser(
        "judge",
        help="judge edited image(s) against a source and an instruction",
        description="Judge one or more edited images of SOURCE made for INSTRUCTION. "
        "Several --edited images are ranked by overall score.",
    )
    judge.add_argument("--source", required=True, help="the original image file")
    judge.add_argument("--edited", required=True, nargs="+", help="edited image file(s)")
    judge.add_argument("--instruction", required=True, help="the edit instruction, quoted")
    judge.add_argument("--backend", default=None,
                       help="reward-model backend spec (default: mini; see `backends`)")
    judge.add_argument("--json", action="store_true", help="print the Judgment JSON")
    judge.add_argument("--card", metavar="FILE",
                       help="also write a judgment card to share: FILE.html is one "
                       "self-contained page that opens offline (images, chart and styles "
                       "inside it), FILE.png an image of the same card; at most "
                       "4 --edited images (see docs/card.md)")
    judge.set_defaults(func=cmd_judge)

    synth = sub.add_parser(
        "synth",
        help="generate a SynthEdit dataset (pair format) with exact ground truth",
        description="Write DIR/pairs.jsonl and DIR/images/: procedural scenes, an instruction, "
        "the correct edit and flawed edits, all re-encoded like real editor outputs. "
        "Same seed, same bytes.",
    )
    synth.add_argument("--out", required=True, help="output folder")
    synth.add_argument("--n", type=int, default=100, help="number of items (default 100)")
    synth.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    synth.add_argument("--split", default="train", choices=["train", "val", "test", "hard"],
                       help="train (held-out phrasings excluded), val, test, or hard "
                       "(small, low-contrast objects)")
    mode = synth.add_mutually_exclusive_group()
    mode.add_argument("--pairs", action="store_true",
                      help="correct edit vs one flawed edit per item (the default)")
    mode.add_argument("--groups", type=int, metavar="K",
                      help="K candidates per item (correct + K-1 flaws) with a ranking")
    synth.add_argument("--hard-scenes", action="store_true",
                       help="draw the hard split's small, low-contrast scenes under this "
                       "split's seeds and phrasings (training data for hard cases)")
    synth.add_argument("--workers", type=int, default=0,
                       help="worker processes (default: one per CPU core)")
    synth.add_argument("--no-progress", action="store_true", help="no progress bar")
    synth.set_defaults(func=cmd_synth)

    add_bench_parser(sub)
    add_rl_parsers(sub)

    from storage.command import add_parser as add_db_parser

    add_db_parser(sub)
    from .learning_export import add_parser as add_export_training_parser

    add_export_training_parser(sub)
    from .vlm.importer import add_parser as add_import_prompts_parser

    add_import_prompts_parser(sub)

    train_reward = sub.add_parser(
        "train-reward",
        help="train SpatialReward-Mini on SynthEdit (configs/mini.json), or fine-tune it "
        "from the store's votes (--from-store)",
        description="Train the embedded spatial reward model from a JSON config "
        "(keys: see spatialreward/mini/train.py TrainConfig). Seeded and reproducible. "
        "With --from-store, fine-tune a Mini checkpoint from the votes in the store "
        "instead (spatialreward/mini/finetune.py FinetuneConfig): a share of voted items "
        "is held out, and agreement with people on it is printed before and after.",
    )
    source = train_reward.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", help="training config JSON file (SynthEdit training)")
    source.add_argument("--from-store", action="store_true",
                        help="fine-tune from the store's human judgments")
    store_flags = train_reward.add_argument_group("--from-store options (default: see "
                                                  "FinetuneConfig)")
    store_flags.add_argument("--db", help="the store (default data/studio.db)")
    store_flags.add_argument("--base", help="start from: mini (the shipped checkpoint, "
                             "default) or the folder of an earlier fine-tune")
    store_flags.add_argument("--out", help="output folder (default "
                             "data/reward-models/mini-votes-vN, N the next free version)")
    store_flags.add_argument("--kinds", help="annotator kinds to learn from, comma-separated: "
                             "human (default), simulated, or human,simulated")
    store_flags.add_argument("--annotators", help="learn from these annotators only, "
                             "comma-separated (default: every annotator of the kinds)")
    store_flags.add_argument("--holdout", type=float,
                             help="share of voted items held out for measuring (default 0.2)")
    store_flags.add_argument("--steps", type=int, help="optimiser steps (default 300)")
    store_flags.add_argument("--batch", type=int, help="pair votes per step (default 32)")
    store_flags.add_argument("--lr", type=float, help="peak learning rate (default 2e-3)")
    store_flags.add_argument("--replay", type=float,
                             help="share of SynthEdit replay in each step (default 0.3)")
    store_flags.add_argument("--tune", choices=["head", "all"],
                             help="what learns: head (the score head and region matcher, "
                             "default) or all (every weight)")
    store_flags.add_argument("--seed", type=int, help="seed (default 0)")
    store_flags.add_argument("--min-train-pairs", type=int,
                             help="fewest training pair votes accepted (default 50)")
    store_flags.add_argument("--min-holdout-pairs", type=int,
                             help="fewest hold-out pair votes accepted (default 10)")
    train_reward.set_defaults(func=cmd_train_reward)

    serve_reward = sub.add_parser(
        "serve-reward", help="serve rewards over HTTP to an RL trainer (JSON, or the official "
        "reward clients' pickled requests with --pickle-compat)",
        description="Judge edits sent by an RL trainer: POST /v1/reward (JSON, base64 "
        "images), GET /ping, GET /health. --pickle-compat also answers the pickled "
        "requests of EditScore's OmniGen2-RL / SpatialReward's reward client on POST /, "
        "decoded by a restricted unpickler (spatialreward/reward_server.py).")
    serve_reward.add_argument("--backend", default=None,
                              help="reward-model backend spec (default: mini)")
    serve_reward.add_argument("--host", default="127.0.0.1",
                              help="bind address (default 127.0.0.1: this machine only)")
    serve_reward.add_argument("--port", type=int, default=8780, help="port (default 8780)")
    serve_reward.add_argument("--pickle-compat", action="store_true",
                              help="also accept the official clients' pickled requests")
    serve_reward.add_argument("--batch", type=int, default=16,
                              help="edits judged together (default 16)")
    serve_reward.add_argument("--max-queue", type=int, default=64,
                              help="requests that may wait; beyond it 503 (default 64)")
    serve_reward.add_argument("--threshold", type=float, default=0.5,
                              help="reward at or above which score = 1 (default 0.5)")
    serve_reward.add_argument("--name", default="",
                              help="name of the external run the calls are recorded in")
    serve_reward.add_argument("--samples", type=int, default=2,
                              help="items of each call kept as samples with their judgments "
                                   "(default 2)")
    serve_reward.add_argument("--mix", action="append", metavar="SPEC=WEIGHT",
                              help="add a backend to the reward (repeatable): the reward is "
                                   "the weighted mean, --backend weighing 1 - the sum, e.g. "
                                   "--backend mini --mix pixel=0.2")
    serve_reward.add_argument("--spot-check", default=None, metavar="SPEC",
                              help="a second backend that judges the kept samples again: the "
                                   "run's hacking alert compares the two (e.g. pixel)")
    serve_reward.add_argument("--no-record", dest="record", action="store_false",
                              help="do not record the calls in the store")
    serve_reward.add_argument("--db", default=None,
                              help="the store (default: $STUDIO_DB, else data/studio.db)")
    serve_reward.set_defaults(func=cmd_serve_reward)

    backends = sub.add_parser("backends", help="list the reward-model backends")
    backends.set_defaults(func=cmd_backends)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except StudioError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
