"""How fast the Studio answers: cold start to the first /judge, and /judge round trips.

    python benchmarks/app.py [--calls 30] [--port 7891]

1. Runs ``make run`` (the venv must already exist: "warm venv") with a fresh store in a
   temp folder, and times from the start of ``make`` to the first successful ``/judge``
   from ``gradio_client`` (the model loads lazily on that first call, so its load is
   included). Target <= 10 s.
2. Then times ``--calls`` ``/judge`` round trips with the default ``mini`` backend on a
   512 x 512 SynthEdit pair (upload + judge + response), and prints the median and p90.
   Target median <= 0.5 s. The pixel backend is timed alongside as the baseline.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402


def pair(folder: Path) -> tuple[str, str, str]:
    from spatialreward.synth.generate import make_item

    item, source, images = make_item("test", 4242, 0, 2)
    best = item["ranking"][0] if isinstance(item["ranking"][0], int) else item["ranking"][0][0]
    src = Image.fromarray(source).resize((512, 512))
    edt = Image.fromarray(images[best]).resize((512, 512))
    src.save(folder / "source.png")
    edt.save(folder / "edited.png")
    return str(folder / "source.png"), str(folder / "edited.png"), item["instruction"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=30)
    ap.add_argument("--port", type=int, default=7891)
    args = ap.parse_args()
    if not (ROOT / ".venv" / "bin" / "python").exists():
        sys.exit("run `make install` first: this measures a warm start")

    from gradio_client import Client, handle_file

    tmp = Path(tempfile.mkdtemp(prefix="app-bench-"))
    src, edt, text = pair(tmp)
    env = os.environ | {"STUDIO_DB": str(tmp / "studio.db"), "PORT": str(args.port)}
    t0 = time.perf_counter()
    proc = subprocess.Popen(["make", "run", f"PORT={args.port}"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    url = f"http://127.0.0.1:{args.port}/"
    try:
        client = None
        while client is None:
            if proc.poll() is not None:
                sys.exit(f"make run exited: {proc.stderr.read().decode()[-2000:]}")
            try:
                client = Client(url, verbose=False)
            except Exception:  # not listening yet
                time.sleep(0.1)
        first = client.predict(handle_file(src), handle_file(edt), text, "", api_name="/judge")
        cold = time.perf_counter() - t0
        assert first["status"] == "ok", first
        times: dict[str, list[float]] = {"mini": [], "pixel": []}
        for backend in times:
            client.predict(handle_file(src), handle_file(edt), text, backend, api_name="/judge")
            for _ in range(args.calls):
                t = time.perf_counter()
                client.predict(handle_file(src), handle_file(edt), text, backend,
                               api_name="/judge")
                times[backend].append(time.perf_counter() - t)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    print(f"make run -> first /judge ok: {cold:.1f} s (target <= 10 s; warm venv, the mini "
          "model loads on that call)")
    for backend, values in times.items():
        print(f"/judge round trip, {backend:<5}: median {statistics.median(values):.3f} s, "
              f"p90 {float(np.percentile(values, 90)):.3f} s over {len(values)} calls (512x512"
              + (", target median <= 0.5 s)" if backend == "mini" else ", baseline)"))


if __name__ == "__main__":
    main()
