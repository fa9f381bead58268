"""Reward-server throughput and latency: judgments/s vs batch size and concurrent clients.

    python benchmarks/reward_server.py [--backend mini] [--batches 1,4,16] [--clients 1,8]
        [--requests 12] [--items 4] [--size 256]

Starts ``serve-reward`` in this process on 127.0.0.1 (no recording), then for each
(batch size, clients) pair runs ``--clients`` threads that each POST ``--requests``
JSON requests of ``--items`` edits (SynthEdit test prompts' correct edits, upscaled to
``--size`` px) one after
another. Prints judgments per second (all clients together) and the call latency p50 /
p95 per setting, after one warm-up request per server.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from spatialreward.config import StudioConfig  # noqa: E402
from spatialreward.reward_server import serve  # noqa: E402
from spatialreward.rl.prompts import prompt_set  # noqa: E402
from spatialreward.service import Services  # noqa: E402


def b64(array: np.ndarray, size: int) -> str:
    buf = io.BytesIO()
    Image.fromarray(array).resize((size, size)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def run_clients(call: Callable[[int], float], clients: int, requests: int
                ) -> tuple[float, list[float]]:
    """(wall seconds, every call's latency in ms) of ``clients`` threads making
    ``requests`` calls each, one after another."""
    latencies: list[float] = []
    lock = threading.Lock()

    def client(c: int) -> None:
        for r in range(requests):
            ms = call(c * 31 + r)
            with lock:
                latencies.append(ms)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0, latencies


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--backend", default="mini")
    p.add_argument("--batches", default="1,4,16", help="server batch sizes")
    p.add_argument("--clients", default="1,8", help="concurrent clients")
    p.add_argument("--requests", type=int, default=12, help="requests per client")
    p.add_argument("--items", type=int, default=4, help="edits per request")
    p.add_argument("--size", type=int, default=256, help="image side in pixels")
    args = p.parse_args()
    torch.set_num_threads(2)
    prompts = prompt_set("test", 8, 64, seed=0)  # SynthEdit prompts and their correct edits
    items = [{"source": b64(p.source, args.size), "edited": b64(p.target, args.size),
              "instruction": p.instruction} for p in prompts]
    with tempfile.TemporaryDirectory() as tmp:
        services = Services(StudioConfig(db=Path(tmp) / "s.db"))
        print(f"backend {args.backend}, {args.items} edits per request, {args.requests} "
              f"requests per client, {args.size} px")
        print(f"{'batch':>5} {'clients':>7} {'judgments/s':>12} {'p50 ms':>8} {'p95 ms':>8}")
        for batch in (int(b) for b in args.batches.split(",")):
            server = serve(services, args.backend, port=0, batch_size=batch, record=False,
                           max_queue=256)
            threading.Thread(target=server.serve_forever, daemon=True).start()
            url = f"http://127.0.0.1:{server.server_address[1]}/v1/reward"

            def call(k: int, url: str = url) -> float:
                body = json.dumps({"items": [items[(k + i) % len(items)]
                                             for i in range(args.items)]}).encode()
                t0 = time.perf_counter()
                request = urllib.request.Request(url, data=body,
                                                 headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(request, timeout=600) as r:
                    answer = json.loads(r.read())
                assert all(it["status"] == "ok" for it in answer["items"]), answer
                return (time.perf_counter() - t0) * 1e3

            call(0)  # warm-up: the model loads, first batches run
            for clients in (int(c) for c in args.clients.split(",")):
                wall, latencies = run_clients(call, clients, args.requests)
                rate = clients * args.requests * args.items / wall
                q = statistics.quantiles(latencies, n=20)
                print(f"{batch:5d} {clients:7d} {rate:12.1f} {statistics.median(latencies):8.0f} "
                      f"{q[18]:8.0f}", flush=True)
            server.shutdown()
            server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
