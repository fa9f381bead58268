"""GPU check of the vlm backend at SpatialReward-8B's size: the Qwen3-VL-8B architecture with
random weights, built on CUDA in bfloat16 (nothing is downloaded).

    python benchmarks/gpu_vlm.py                          # on a machine with a CUDA GPU
    python benchmarks/gpu_vlm.py --pairs 8 --new-tokens 64 --size 768 --out gpu.json

It judges a batch of (source, edited) pairs with both streams (SC on [source, edited], PQ
on [edited]) at a fixed number of new tokens and prints, per mode, judgments/s, the
latency of the batch and per judgment, and peak GPU memory (total, and above the loaded
weights): without attention capture, with capture of the prompt's attention, with
capture of the answer's attention. Then, on one SC prompt, the peak memory of attention
maps by capture vs ``output_attentions=True`` (eager), and the judgments/s of K = 4
candidates of one source with and without reusing the source's encoding.

Random weights answer gibberish, so every judgment is ``parse_failed``: this measures
speed and memory, not quality. Without a GPU the script says so and exits with status 1;
``--cpu-smoke`` runs the same code on a tiny model on the CPU (for checking the script).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from spatialreward.backends.vlm import VLMBackend  # noqa: E402
from spatialreward.vlm.architectures import (  # noqa: E402
    build_tokenizer,
    qwen3_vl_8b_config,
    tiny_config,
)
from spatialreward.vlm.attention import Capture, eager_reference  # noqa: E402
from spatialreward.vlm.config import VLMConfig  # noqa: E402
from spatialreward.vlm.memory import measure_peak  # noqa: E402

GIB = 2**30


def pictures(n: int, size: int, seed: int) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8))
            for _ in range(n)]


def build_model(device: str, smoke: bool) -> tuple[Any, Any]:
    from transformers import Qwen3VLForConditionalGeneration

    tokenizer = build_tokenizer()
    config = tiny_config("qwen3_vl", tokenizer) if smoke else qwen3_vl_8b_config(tokenizer)
    dtype = torch.float32 if smoke else torch.bfloat16
    torch.manual_seed(0)
    with torch.device(device):  # initialise the weights where they will run
        model = Qwen3VLForConditionalGeneration._from_config(config, dtype=dtype,
                                                             attn_implementation="sdpa")
    return model.eval(), tokenizer


def backend(model: Any, tokenizer: Any, args: argparse.Namespace, **settings: Any
            ) -> VLMBackend:
    config = VLMConfig(path=Path("random-weights"), max_pixels=args.size * args.size,
                       max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens,
                       batch_size=args.batch_size, **settings)
    return VLMBackend.from_model(model, tokenizer, config)


def timed(device: str, work: Any) -> tuple[Any, float, Any]:
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    result, peak = measure_peak(work, device)
    if device == "cuda":
        torch.cuda.synchronize()
    return result, time.perf_counter() - t0, peak


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pairs", type=int, default=8, help="pairs judged per batch")
    p.add_argument("--new-tokens", type=int, default=64, help="fixed answer length per call")
    p.add_argument("--size", type=int, default=768, help="image side; 768 px = 589,824 px, "
                   "SpatialReward's max_pixels (576 tokens per image)")
    p.add_argument("--batch-size", type=int, default=16, help="sequences per generate()")
    p.add_argument("--out", type=Path, help="also write the figures as JSON")
    p.add_argument("--cpu-smoke", action="store_true", help="tiny model on the CPU: checks "
                   "the script, measures nothing useful")
    args = p.parse_args(argv)
    if not torch.cuda.is_available() and not args.cpu_smoke:
        print("gpu_vlm.py: no CUDA GPU on this machine, so nothing was measured. Run it on a "
              "GPU machine (python benchmarks/gpu_vlm.py); docs/performance.md lists the "
              "figures it prints.", file=sys.stderr)
        return 1
    device = "cpu" if args.cpu_smoke else "cuda"
    if args.cpu_smoke:
        args.size, args.new_tokens, args.pairs = min(args.size, 256), min(args.new_tokens, 8), 2
    t0 = time.perf_counter()
    model, tokenizer = build_model(device, args.cpu_smoke)
    name = torch.cuda.get_device_name() if device == "cuda" else "CPU (smoke)"
    params = sum(p.numel() for p in model.parameters())
    weights = torch.cuda.memory_allocated() if device == "cuda" else 0
    print(f"{name}: Qwen3-VL{' tiny' if args.cpu_smoke else '-8B'} random weights, "
          f"{params / 1e9:.2f} B parameters, {model.dtype}, built in "
          f"{time.perf_counter() - t0:.0f} s; weights {weights / GIB:.1f} GiB")
    sources, edits = pictures(args.pairs, args.size, 1), pictures(args.pairs, args.size, 2)
    triples = [(s, e, "replace the red cup with a blue vase") for s, e in zip(sources, edits,
                                                                             strict=True)]
    rows: list[dict[str, Any]] = []
    print(f"{args.pairs} pairs per batch, SC + PQ per judgment, {args.new_tokens} new tokens "
          f"per call, {args.size}x{args.size} px images")
    print("| mode | judgments/s | batch latency s | per judgment s | peak GiB | above "
          "weights GiB |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    modes: list[tuple[str, dict[str, Any]]] = [
        ("no attention capture", {"attention_summary": False}),
        ("capture: prompt attention", {"attention_queries": "prompt"}),
        ("capture: answer attention", {"attention_queries": "answer"})]
    for label, settings in modes:
        b = backend(model, tokenizer, args, **settings)
        b.judge_many(triples[:1])  # warm-up (kernels, caches)
        b.runner.encoder._features.clear()  # measure encoding too
        judgments, seconds, peak = timed(device, lambda b=b: b.judge_many(triples))
        total = (weights + peak.bytes) / GIB
        rows.append({"mode": label, "judgments_per_s": args.pairs / seconds,
                     "batch_latency_s": seconds, "peak_gib": total,
                     "above_weights_gib": peak.bytes / GIB,
                     "statuses": sorted({j.status for j in judgments})})
        print(f"| {label} | {args.pairs / seconds:.2f} | {seconds:.2f} | "
              f"{seconds / args.pairs:.2f} | {total:.1f} | {peak.bytes / GIB:.2f} |")

    # Attention maps of one SC prompt: capture vs output_attentions=True.
    b = backend(model, tokenizer, args)
    batch = b.runner.batch([b.runner.request(b.prompts.sc, "replace the red cup", triples[0][:2])])

    def captured() -> Any:
        state = Capture(batch.layout, b.runner.layers)
        with torch.no_grad(), state.active_in():
            model(**batch.inputs, use_cache=False, logits_to_keep=1)
        return state.results()[0]

    got, t_cap, cap = timed(device, captured)
    try:
        ref, t_eager, eager = timed(device, lambda: eager_reference(model, batch.inputs,
                                                                    batch.layout)[0])
        diff = max(float(np.abs(a - r).max()) for a, r in zip(got.per_image, ref.per_image,
                                                              strict=True))
        eager_text = f"{eager.bytes / GIB:.2f} GiB ({t_eager:.2f} s)"
    except torch.OutOfMemoryError:
        eager, diff, eager_text = None, float("nan"), "out of memory"
    print(f"\nattention maps, one SC prompt of {batch.prompt_len} tokens: capture "
          f"{cap.bytes / GIB:.3f} GiB ({t_cap:.2f} s) vs output_attentions=True {eager_text} "
          f"above the weights; max abs diff {diff:.1e} (bf16 eager rounds its weights)")

    # K = 4 candidates of one source: reuse of the source's encoding.
    group = [(sources[0], e, "replace the red cup with a blue vase") for e in
             pictures(4, args.size, 3)]
    rates = {}
    for reuse in (False, True):
        b = backend(model, tokenizer, args, attention_summary=False, reuse_images=reuse)
        b.judge_many(group[:1])
        b.runner.encoder._features.clear()
        _, seconds, _ = timed(device, lambda b=b: b.judge_many(group))
        rates[reuse] = 4 / seconds
    print(f"K=4, one source: {rates[False]:.2f} judgments/s without reuse, {rates[True]:.2f} "
          f"with reuse ({rates[True] / rates[False]:.2f}x)")
    if args.out:
        args.out.write_text(json.dumps({
            "device": name, "parameters": params, "pairs": args.pairs,
            "new_tokens": args.new_tokens, "size": args.size, "modes": rows,
            "maps": {"prompt_tokens": batch.prompt_len, "capture_gib": cap.bytes / GIB,
                     "eager_gib": None if eager is None else eager.bytes / GIB,
                     "max_abs_diff": diff},
            "k4_judgments_per_s": {"without_reuse": rates[False], "with_reuse": rates[True]},
        }, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
