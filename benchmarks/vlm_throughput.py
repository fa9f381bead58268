"""Judgments per second of the vlm backend when K candidates share one source: without
reuse, reusing image encodings, and reusing the SC prompts' shared prefix as well.

    python benchmarks/vlm_throughput.py            # tiny model on CPU, and on CUDA if present
    python benchmarks/vlm_throughput.py --k 4 --groups 4 --new-tokens 32 --size 448

A ranking bench judges K = 2..4 candidates of one source: 2K SC images + K PQ images,
of which only K + 1 are distinct. With ``reuse_images`` the backend encodes each
distinct image once; without it every occurrence goes through the vision tower. With
``reuse_prefix`` too, the K SC prompts' common prefix (system text + source image) is
run through the language model once and its KV cache reused by every candidate. All
runs use the same random-weight Qwen3-VL checkpoint (loaded through ``vlm:PATH``), the
same batches and a fixed answer length (``min_new_tokens = max_new_tokens``), so the
ratios isolate the reuse; the answers of all three runs are checked to be identical.
Each group has a fresh source, so nothing carries over between groups.
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


MODES = {"none": "reuse_images=no,reuse_prefix=no",
         "images": "reuse_images=yes,reuse_prefix=no",
         "images+prefix": "reuse_images=yes,reuse_prefix=yes"}


def run(device: str, args: argparse.Namespace, ckpt: Path) -> dict[str, float]:
    common = (f"device={device},dtype=float32,max_pixels={args.size * args.size},"
              f"max_new_tokens={args.new_tokens},min_new_tokens={args.new_tokens},"
              f"batch_size={2 * args.k},attention_summary=no")
    rates, encoded, answers = {}, {}, {}
    for mode, settings in MODES.items():
        backend = create(f"vlm:{ckpt},{common},{settings}")
        encoder = backend.runner.encoder  # type: ignore[attr-defined]
        backend.judge_many(groups(1, args.k, args.size, seed=99)[0])  # type: ignore[attr-defined]
        work = groups(args.groups, args.k, args.size, seed=1)
        before = encoder.stats.encoded
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        got = []
        for group in work:
            judgments = backend.judge_many(group)  # type: ignore[attr-defined]
            assert len(judgments) == args.k
            got += [(j.raw_sc, j.raw_pq) for j in judgments]
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
        rates[mode] = args.groups * args.k / seconds
        encoded[mode] = (encoder.stats.encoded - before) / args.groups
        answers[mode] = got
    same = all(answers[m] == answers["none"] for m in MODES)
    print(f"| {device} | {args.k} | {rates['none']:.2f} | {rates['images']:.2f} "
          f"({rates['images'] / rates['none']:.2f}x, {encoded['images']:.0f} images encoded "
          f"per source instead of {encoded['none']:.0f}) | {rates['images+prefix']:.2f} "
          f"({rates['images+prefix'] / rates['none']:.2f}x) | "
          f"{'identical' if same else 'DIFFERENT'} |")
    if not same:
        raise SystemExit("the answers differ between the modes: the reuse changed the output")
    return rates


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
        print("| device | K | judgments/s, no reuse | reusing images | reusing images and "
              "the SC prefix | answers |")
        print("| --- | ---: | ---: | ---: | ---: | --- |")
        for device in devices:
            run(device, args, ckpt)
    if "cuda" not in devices:
        print("no CUDA device here: GPU figures not measured")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
