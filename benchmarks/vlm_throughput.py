"""Judgments per second of the vlm backend when K candidates share one source, with and
without reusing image encodings.

    python benchmarks/vlm_throughput.py            # tiny model on CPU, and on CUDA if present
    python benchmarks/vlm_throughput.py --k 4 --groups 4 --new-tokens 32 --size 448

A ranking bench judges K = 2..4 candidates of one source: 2K SC images + K PQ images,
of which only K + 1 are distinct. With ``reuse_images`` the backend encodes each
distinct image once; without it every occurrence goes through the vision tower. Both
runs use the same random-weight Qwen3-VL checkpoint (loaded through ``vlm:PATH``), the
same batches and a fixed answer length (``min_new_tokens = max_new_tokens``), so the
ratio isolates the reuse. Each group has a fresh source, so nothing carries over
between groups.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from spatialreward.backends import create  # noqa: E402
from spatialreward.vlm.architectures import save_tiny_checkpoint  # noqa: E402


def groups(n: int, k: int, size: int, seed: int) -> list[list[tuple[Image.Image, Image.Image,
                                                                    str]]]:
    rng = np.random.default_rng(seed)

    def picture() -> Image.Image:
        return Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8))

    return [[(source, picture(), "make the cup red") for _ in range(k)]
            for source in (picture() for _ in range(n))]


def run(device: str, args: argparse.Namespace, ckpt: Path) -> dict[str, float]:
    common = (f"device={device},dtype=float32,max_pixels={args.size * args.size},"
              f"max_new_tokens={args.new_tokens},min_new_tokens={args.new_tokens},"
              f"batch_size={2 * args.k},attention_summary=no")
    rates, encoded, share = {}, {}, {}
    for reuse in (True, False):
        backend = create(f"vlm:{ckpt},{common},reuse_images={reuse}")
        encoder = backend.runner.encoder  # type: ignore[attr-defined]
        backend.judge_many(groups(1, args.k, args.size, seed=99)[0])  # type: ignore[attr-defined]
        work = groups(args.groups, args.k, args.size, seed=1)
        before, vision_before = encoder.stats.encoded, encoder.stats.seconds
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for group in work:
            judgments = backend.judge_many(group)  # type: ignore[attr-defined]
            assert len(judgments) == args.k
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
        rates[reuse] = args.groups * args.k / seconds
        encoded[reuse] = (encoder.stats.encoded - before) / args.groups
        share[reuse] = (encoder.stats.seconds - vision_before) / seconds
    print(f"| {device} | {args.k} | {encoded[False]:.0f} / {100 * share[False]:.0f}% | "
          f"{encoded[True]:.0f} / {100 * share[True]:.0f}% | {rates[False]:.2f} | "
          f"{rates[True]:.2f} | {rates[True] / rates[False]:.2f}x |")
    return {"without": rates[False], "with": rates[True]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--k", type=int, default=4, help="candidates per source")
    p.add_argument("--groups", type=int, default=4, help="sources (each with K candidates)")
    p.add_argument("--new-tokens", type=int, default=32, help="answer length per call")
    p.add_argument("--size", type=int, default=448, help="image side in pixels")
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--vision-depth", type=int, default=4)
    p.add_argument("--device", default="all", help="all (CPU, plus CUDA when present), cpu "
                   "or cuda")
    p.add_argument("--threads", type=int, default=1, help="CPU threads (tiny models run "
                   "best on one)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    devices = [d for d in devices if d == "cpu" or torch.cuda.is_available()]
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = save_tiny_checkpoint(Path(tmp) / "ckpt", "qwen3_vl", layers=args.layers,
                                    hidden=args.hidden, vision_depth=args.vision_depth)
        print(f"tiny Qwen3-VL ({args.layers} layers, hidden {args.hidden}, vision depth "
              f"{args.vision_depth}); {args.groups} sources x K={args.k} candidates, "
              f"{args.size}x{args.size} px, {args.new_tokens} new tokens per call, "
              f"SC + PQ per judgment")
        print("| device | K | images encoded per source / time share, without reuse | with "
              "reuse | judgments/s without reuse | with reuse | ratio |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        for device in devices:
            run(device, args, ckpt)
    if "cuda" not in devices:
        print("no CUDA device here: GPU figures not measured")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
