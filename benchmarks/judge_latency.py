"""Judge latency of SpatialReward-Mini at 512 x 512, single and batched, beside the pixel baseline.

    python benchmarks/judge_latency.py [--pairs 60] [--batch 16] [--backend mini]
    python benchmarks/judge_latency.py --vs HEAD~3 [--rounds 3] [--batched-only]

Every timed call does the whole job: pixel evidence (region proposals), the model,
regions with masks, reasoning and the attention summary. Prints, per backend, the
median ms per pair of single ``judge`` calls, of ``Services.judge`` on PNG bytes (the
path of the app and the CLI: decode, checks, evidence, model), and pairs/s of
``judge_many`` batches; then the peak RSS.

``--vs REV`` measures the tree of git revision REV side by side with this checkout:
REV is exported to a temporary folder, and the two trees run alternately in fresh
processes, ``--rounds`` times each, on the same seeded pairs. It prints each side's
median over the rounds and the speed-up (REV time / this time). Both sides run this
file's measuring code, so only the measured code differs.

Targets (issue 16): mini single >= 2x faster than before, batched >= 45 pairs/s.
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ("single_ms", "service_ms", "batched_pps")


def make_pairs(n: int, size: int) -> list:
    """``n`` seeded (source, edited, instruction) SynthEdit pairs at ``size`` px."""
    import numpy as np
    from PIL import Image

    from spatialreward.synth.degrade import reencode
    from spatialreward.synth.edits import Editor, random_task
    from spatialreward.synth.generate import instruction_for
    from spatialreward.synth.scenes import make_scene

    pairs = []
    for i in range(n):
        rng = np.random.default_rng(50_000 + i)
        scene = make_scene(rng, size=(size, size))
        task = random_task(scene, rng)
        editor = Editor(scene, rng)
        edited, _ = reencode(editor.correct(task).image, rng, allow_resize=False)
        words = instruction_for(scene, task, rng, "test").text
        pairs.append((Image.fromarray(editor.source), Image.fromarray(edited), words))
    return pairs


def _median_ms(call, items) -> float:
    call(*items[0])  # warm-up
    times = []
    for item in items:
        t = time.perf_counter()
        call(*item)
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def _png(image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def measure(spec: str, pairs: list, batch: int, batched_only: bool = False
            ) -> dict[str, float]:
    """single_ms, service_ms and batched_pps (nan without ``judge_many``) of ``spec``;
    ``batched_only``: the first two are not measured (nan)."""
    from spatialreward.backends import create
    from spatialreward.config import StudioConfig
    from spatialreward.service import Services

    backend = create(spec)
    single = service = float("nan")
    if not batched_only:
        single = _median_ms(backend.judge, pairs)
        services = Services(StudioConfig(backends=(spec,)) if spec not in ("mini", "pixel")
                            else StudioConfig())
        encoded = [(_png(s), _png(e), t, spec) for s, e, t in pairs]
        service = _median_ms(services.judge, encoded)
    rate = float("nan")
    if hasattr(backend, "judge_many"):
        backend.judge_many(pairs[:batch])  # warm-up
        t = time.perf_counter()
        for start in range(0, len(pairs), batch):
            backend.judge_many(pairs[start:start + batch])
        rate = len(pairs) / (time.perf_counter() - t)
    return {"single_ms": single, "service_ms": service, "batched_pps": rate}


def worker(args: argparse.Namespace) -> int:
    """Measure the tree at ``args.worker`` (imported from there) and print JSON."""
    sys.path.insert(0, str(args.worker))
    import torch

    import spatialreward

    assert Path(spatialreward.__file__).resolve().is_relative_to(Path(args.worker).resolve())
    pairs = make_pairs(args.pairs, args.size)
    specs = (args.backend,) if args.batched_only else ("pixel", args.backend)
    out = {spec: measure(spec, pairs, args.batch, args.batched_only) for spec in specs}
    out["threads"] = torch.get_num_threads()  # type: ignore[assignment]
    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # type: ignore[assignment]
    print(json.dumps(out))
    return 0


def run_tree(root: Path, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", str(root),
           "--pairs", str(args.pairs), "--batch", str(args.batch), "--size", str(args.size),
           "--backend", args.backend] + (["--batched-only"] if args.batched_only else [])
    done = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=root)
    return json.loads(done.stdout.strip().splitlines()[-1])


def export(rev: str, into: Path) -> Path:
    """The tree of git revision ``rev`` of this checkout, unpacked under ``into``."""
    blob = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", rev],
                          check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        tar.extractall(into, filter="data")
    return into


def _row(spec: str, figures: dict) -> str:
    rate = figures["batched_pps"]
    rate_text = "n/a (no judge_many)" if rate != rate else f"{rate:6.1f} pairs/s"
    if figures["single_ms"] != figures["single_ms"]:  # --batched-only
        return f"  {spec:6s} batched ({{batch}}) {rate_text}"
    return (f"  {spec:6s} single {figures['single_ms']:6.1f} ms/pair   Services.judge "
            f"{figures['service_ms']:6.1f} ms/pair   batched ({{batch}}) {rate_text}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=60, help="pairs to time (default 60)")
    parser.add_argument("--batch", type=int, default=16, help="judge_many batch (default 16)")
    parser.add_argument("--size", type=int, default=512, help="image side (default 512)")
    parser.add_argument("--backend", default="mini", help="backend to time (default mini)")
    parser.add_argument("--vs", metavar="REV", help="also time git revision REV, side by side")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds with --vs")
    parser.add_argument("--batched-only", action="store_true",
                        help="time only judge_many batches of --backend")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    specs = (args.backend,) if args.batched_only else ("pixel", args.backend)
    print(f"{args.pairs} pairs at {args.size}x{args.size}")
    if not args.vs:
        result = run_tree(ROOT, args)
        for spec in specs:
            print(_row(spec, result[spec]).format(batch=args.batch))
        print(f"  torch threads {result['threads']}, peak RSS {result['peak_rss_mib']:.0f} MiB")
        return 0
    with tempfile.TemporaryDirectory(prefix="judge-latency-") as tmp:
        trees = {args.vs: export(args.vs, Path(tmp)), "this checkout": ROOT}
        runs: dict[str, list[dict]] = {name: [] for name in trees}
        for r in range(args.rounds):
            for name, root in trees.items():
                runs[name].append(run_tree(root, args))
                print(f"  round {r + 1}/{args.rounds}: {name} done", file=sys.stderr)
    medians = {name: {spec: {f: statistics.median(run[spec][f] for run in got) for f in FIGURES}
                      for spec in specs} for name, got in runs.items()}
    for name in trees:
        print(f"{name} (median of {args.rounds} rounds):")
        for spec in specs:
            print(_row(spec, medians[name][spec]).format(batch=args.batch))
    ref, new = medians[args.vs], medians["this checkout"]
    print(f"speed-up of this checkout over {args.vs}:")
    for spec in specs:
        parts = [] if args.batched_only else [
            f"single {ref[spec]['single_ms'] / new[spec]['single_ms']:.2f}x",
            f"Services.judge {ref[spec]['service_ms'] / new[spec]['service_ms']:.2f}x"]
        if new[spec]["batched_pps"] == new[spec]["batched_pps"]:
            parts.append(f"batched {new[spec]['batched_pps'] / ref[spec]['batched_pps']:.2f}x")
        print(f"  {spec:6s} " + "   ".join(parts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
