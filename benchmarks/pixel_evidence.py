"""Time ``propose_regions`` on realistic synthetic pairs (tests/factories.py).

    python benchmarks/pixel_evidence.py [--repeats 30] [--pairs 10] [--sizes 512 1024]

For each size it builds ``--pairs`` seeded edit cases (every edit kind, every
background, the usual re-encoding noise), warms up (two untimed passes), then times each pair
``--repeats`` times in total and prints the median and p90 milliseconds per pair.
Target: <= 60 ms median at 1024 x 1024 on 2 CPU cores.

Both sizes run at the same analysis size (512), so they should cost the same; a
size timed before any larger one can read ~1.7x slower because glibc serves its
few-MB temporaries with fresh mmap pages until a bigger free raises the dynamic
mmap threshold (try ``--sizes 1024 512``, or MALLOC_MMAP_THRESHOLD_=67108864).
A long-running server sits in the fast state.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from spatialreward.regions import PixelConfig, propose_regions  # noqa: E402
from tests.factories import BACKGROUNDS, EDIT_KINDS, make_edit_case  # noqa: E402


def bench(size: int, pairs: int, repeats: int, config: PixelConfig) -> tuple[float, float, int]:
    """(median ms, p90 ms, number of timed calls) for size x size pairs."""
    cases = [make_edit_case(100 + i, kind=EDIT_KINDS[i % len(EDIT_KINDS)],
                            background=BACKGROUNDS[i % len(BACKGROUNDS)], size=(size, size))
             for i in range(pairs)]
    for _ in range(2):  # warm-up (thread pools, allocator, page faults): ~2x slower at first
        for case in cases:
            propose_regions(case.source, case.edited, config)
    times = []
    for r in range(repeats):
        case = cases[r % len(cases)]
        start = time.perf_counter()
        propose_regions(case.source, case.edited, config)
        times.append((time.perf_counter() - start) * 1000)
    return float(np.median(times)), float(np.percentile(times, 90)), len(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=30, help="timed calls per size (default 30)")
    parser.add_argument("--pairs", type=int, default=10,
                        help="distinct pairs per size (default 10)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024],
                        help="square image sides (default 512 1024)")
    parser.add_argument("--analysis-size", type=int, default=PixelConfig().analysis_size,
                        help="PixelConfig.analysis_size (default %(default)s)")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.pairs < 1:
        parser.error("--repeats and --pairs must be >= 1")
    config = PixelConfig(analysis_size=args.analysis_size)
    print(f"propose_regions: analysis_size={config.analysis_size}, "
          f"cv2 threads={cv2.getNumThreads()}, cpus={os.cpu_count()}, "
          f"repeats={args.repeats}, pairs={args.pairs}")
    for size in args.sizes:
        median, p90, n = bench(size, args.pairs, args.repeats, config)
        print(f"  {size:>5} x {size:<5} median {median:6.1f} ms   p90 {p90:6.1f} ms   ({n} calls)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
