"""Judge latency of SpatialReward-Mini at 512 x 512, single and batched, beside the pixel baseline.

    python benchmarks/judge_latency.py [--pairs 60] [--batch 16] [--backend mini]

Every timed call does the whole job: pixel evidence (region proposals), the model,
regions with masks, reasoning and the attention summary. Prints the median ms per
pair for single calls, pairs/s for ``judge_many`` batches, and the peak RSS.
Targets: <= 80 ms per pair single, >= 25 pairs/s batched.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from spatialreward.backends import create  # noqa: E402
from spatialreward.synth.degrade import reencode  # noqa: E402
from spatialreward.synth.edits import Editor, random_task  # noqa: E402
from spatialreward.synth.generate import instruction_for  # noqa: E402
from spatialreward.synth.scenes import make_scene  # noqa: E402


def make_pairs(n: int, size: int) -> list[tuple[Image.Image, Image.Image, str]]:
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


def single(backend, pairs) -> float:
    backend.judge(*pairs[0])  # warm-up
    times = []
    for p in pairs:
        t = time.perf_counter()
        backend.judge(*p)
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def batched(backend, pairs, batch: int) -> float:
    if not hasattr(backend, "judge_many"):
        return float("nan")
    backend.judge_many(pairs[:batch])  # warm-up
    t = time.perf_counter()
    for start in range(0, len(pairs), batch):
        backend.judge_many(pairs[start:start + batch])
    return len(pairs) / (time.perf_counter() - t)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=60, help="pairs to time (default 60)")
    parser.add_argument("--batch", type=int, default=16, help="judge_many batch (default 16)")
    parser.add_argument("--size", type=int, default=512, help="image side (default 512)")
    parser.add_argument("--backend", default="mini", help="backend to time (default mini)")
    args = parser.parse_args()
    pairs = make_pairs(args.pairs, args.size)
    print(f"{args.pairs} pairs at {args.size}x{args.size}, torch threads "
          f"{torch.get_num_threads()}")
    for spec in ("pixel", args.backend):
        backend = create(spec)
        ms = single(backend, pairs)
        rate = batched(backend, pairs, args.batch)
        rate_text = "n/a (no judge_many)" if rate != rate else f"{rate:6.1f} pairs/s"
        print(f"  {spec:6s} single: median {ms:6.1f} ms/pair   batched ({args.batch}): "
              f"{rate_text}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  peak RSS {peak:.0f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
