"""Peak memory of attention maps: capture during the forward pass vs ``output_attentions=True``.

    python benchmarks/attention_memory.py                 # CPU (or CUDA when present)
    python benchmarks/attention_memory.py --seq 4096 --layers 8

Builds a small random-weight Qwen3-VL checkpoint in a temporary folder, loads it through
``vlm:PATH`` as users do, and writes an SC prompt whose two images are sized so that the
prompt reaches ``--seq`` tokens. On that one input, side by side, it measures the peak
memory of (1) the forward pass alone, (2) the same pass with attention capture (the
backend's way) and (3) eager attention with ``output_attentions=True`` (the usual way),
and compares the two sets of maps. Peak = memory above what was allocated before the
pass: on CUDA the allocator's peak, on CPU the peak of live tensor bytes. Exits with
status 1 when the capture is not >= 10x lower than eager at >= 2,000 tokens, or the maps
differ by more than 1e-5.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from spatialreward.backends import create  # noqa: E402
from spatialreward.backends.vlm import VLMBackend  # noqa: E402
from spatialreward.vlm.architectures import save_tiny_checkpoint  # noqa: E402
from spatialreward.vlm.attention import Capture, eager_reference  # noqa: E402
from spatialreward.vlm.memory import measure_peak  # noqa: E402

PIXELS_PER_TOKEN = {"qwen3_vl": 32, "qwen2_5_vl": 28}  # patch x spatial merge


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seq", type=int, default=2048, help="target prompt length in tokens")
    p.add_argument("--arch", default="qwen3_vl", choices=sorted(PIXELS_PER_TOKEN))
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--threads", type=int, default=1, help="CPU threads (tiny models run best "
                   "on one)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" \
        else args.device

    with tempfile.TemporaryDirectory() as tmp:
        ckpt = save_tiny_checkpoint(Path(tmp) / "ckpt", args.arch, layers=args.layers,
                                    hidden=args.hidden, heads=args.heads)
        # Text length first (tiny images), then images big enough to reach --seq.
        probe = create(f"vlm:{ckpt},device={device},dtype=float32,max_pixels=65536")
        assert isinstance(probe, VLMBackend)
        small = Image.new("RGB", (64, 64))
        batch = probe.runner.batch([probe.runner.request(probe.prompts.sc, "make the cup red",
                                                         (small, small))])
        text_tokens = batch.prompt_len - sum(batch.layout.splits[0])
        side = math.ceil(math.sqrt(max(1, args.seq - text_tokens) / 2))
        px = side * PIXELS_PER_TOKEN[args.arch]
        backend = create(f"vlm:{ckpt},device={device},dtype=float32,max_pixels={px * px},"
                         "min_pixels=3136")
        assert isinstance(backend, VLMBackend)
        rng = np.random.default_rng(0)
        pictures = [Image.fromarray(rng.integers(0, 255, (px, px, 3), dtype=np.uint8))
                    for _ in range(2)]
        runner = backend.runner
        batch = runner.batch([runner.request(backend.prompts.sc, "make the cup red", pictures)])
        model, inputs, layout = runner.model, batch.inputs, batch.layout

        def forward() -> None:
            with torch.no_grad():
                model(**inputs, use_cache=False, logits_to_keep=1)

        def captured():  # type: ignore[no-untyped-def]
            state = Capture(layout, runner.layers)
            with torch.no_grad(), state.active_in():
                model(**inputs, use_cache=False, logits_to_keep=1)
            return state.results()[0]

        forward()  # warm-up: first-call allocations are not the method's
        _, plain = measure_peak(forward, device)
        got, capture = measure_peak(captured, device)
        ref, eager = measure_peak(lambda: eager_reference(model, inputs, layout)[0], device)

    diff = max(float(np.abs(a - r).max()) for a, r in zip(got.per_image, ref.per_image,
                                                          strict=True))
    seq, queries = batch.prompt_len, int(layout.prompt_queries.sum())
    ratio = eager.bytes / max(capture.bytes, 1)
    print(f"device {device}, {args.arch}: {args.layers} layers x {args.heads} heads, hidden "
          f"{args.hidden}; prompt {seq} tokens ({sum(layout.splits[0])} image tokens in "
          f"2 images of {px}x{px} px, {queries} query tokens); peak = {capture.method} above "
          "the start")
    print("| mode | peak MiB |")
    print("| --- | ---: |")
    print(f"| forward only (sdpa, no maps) | {plain.mib:.1f} |")
    print(f"| forward + attention capture (maps) | {capture.mib:.1f} |")
    print(f"| eager + output_attentions=True (maps) | {eager.mib:.1f} |")
    print(f"ratio eager / capture: {ratio:.1f}x; maps max abs diff: {diff:.2e}")
    ok = diff <= 1e-5 and (seq < 2000 or ratio >= 10)
    print("PASS" if ok else "FAIL: needs >= 10x at >= 2,000 tokens and diff <= 1e-5")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
