"""Speed of the judgment store: bulk insert, single commits, the disagreement queue.

    python benchmarks/store.py [--judgments 100000] [--repeats 5] [--dir /tmp/store-bench]

Runs on a real file (WAL, synchronous=NORMAL, the settings the app uses), in a fresh
folder. Prints:
- bulk insert: human judgments per second through ``Store.add_human_judgments`` (one
  transaction per batch of 5,000, every row validated), median of the batches;
- single commits: median ms of ``Store.add_human_judgment`` (one transaction each), and
  the bulk speed-up over committing rows one by one;
- the disagreement queue over all judgments: median ms of ``disagreement_queue``.
Targets: >= 5,000 judgments/s bulk, <= 5 ms median single commit, <= 200 ms queue over
100,000 judgments.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from spatialreward.judgment import Judgment  # noqa: E402
from storage.agreement import disagreement_queue  # noqa: E402
from storage.store import Store  # noqa: E402

ANNOTATORS = 8
PER_ITEM = 5  # judgments per item


def png(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def fill_items(store: Store, n_items: int, rng: np.random.Generator) -> list[int]:
    """Items sharing three tiny images (the queue never reads images), each with two
    model judgments; written through the store's own methods in one transaction, so
    setting up stays quick."""
    src, *cands = [png(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)) for _ in range(3)]
    scores = rng.uniform(1, 10, (n_items, 2))
    ids = []
    with store.write():  # the calls below join this one transaction
        for n in range(n_items):
            item = store.add_item(f"edit {n}", src, cands, uid=f"bench-{n}")
            for k in range(2):
                score = float(scores[n, k])
                store.add_model_judgment(item, k, Judgment(
                    status="ok", sc=(score, score), pq=(score, score), backend="bench",
                    backend_version="1"))
            ids.append(item)
    return ids


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--judgments", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=5, help="queue timings")
    ap.add_argument("--singles", type=int, default=300, help="single commits to time")
    ap.add_argument("--dir", help="folder for the database (default: a temp folder)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    folder = Path(args.dir or tempfile.mkdtemp(prefix="store-bench-"))
    shutil.rmtree(folder, ignore_errors=True)
    store = Store.open(folder / "studio.db")
    rng = np.random.default_rng(0)
    for k in range(ANNOTATORS):
        store.add_annotator(f"a{k}")
    items = fill_items(store, args.judgments // PER_ITEM, rng)

    # Bulk: every item gets PER_ITEM judgments from different annotators.
    rows = [{"item_id": i, "annotator": f"a{(n + k) % ANNOTATORS}",
             "preference": int(rng.random() < 0.4), "seconds_spent": 9.0}
            for n, i in enumerate(items) for k in range(PER_ITEM)]
    batch, rates = 5_000, []
    for start in range(0, len(rows), batch):
        chunk = rows[start:start + batch]
        t0 = time.perf_counter()
        store.add_human_judgments(chunk)
        rates.append(len(chunk) / (time.perf_counter() - t0))
    bulk = statistics.median(rates)

    # Single commits, the way the Annotate tab writes.
    singles = []
    for k in range(args.singles):
        t0 = time.perf_counter()
        store.add_human_judgment(items[k], "a0", 1, comment="single")
        singles.append((time.perf_counter() - t0) * 1000)
    single_ms = statistics.median(singles)

    n_judgments = store.stats()["tables"]["human_judgments"]
    queue_ms, q = [], {}
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        q = disagreement_queue(store, backend="bench")
        queue_ms.append((time.perf_counter() - t0) * 1000)
    store.close()
    result = {
        "bulk_judgments_per_s": round(bulk), "single_commit_ms_median": round(single_ms, 2),
        "single_commit_ms_p90": round(float(np.percentile(singles, 90)), 2),
        "bulk_speedup_over_single_commits": round(bulk / (1000 / single_ms), 1),
        "queue_ms_median": round(statistics.median(queue_ms), 1),
        "queue_judgments": n_judgments, "queue_items": len(items),
        "queue_disagreements": q.get("total_disagreements"),
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"bulk insert      {result['bulk_judgments_per_s']:>8,} judgments/s "
              f"(target >= 5,000; {result['bulk_speedup_over_single_commits']}x one commit "
              "per row)")
        print(f"single commit    {result['single_commit_ms_median']:>8} ms median, p90 "
              f"{result['single_commit_ms_p90']} ms (target <= 5 ms)")
        print(f"queue            {result['queue_ms_median']:>8} ms median over "
              f"{n_judgments:,} judgments / {len(items):,} items, "
              f"{result['queue_disagreements']:,} disagreements (target <= 200 ms)")
    if not args.dir:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
