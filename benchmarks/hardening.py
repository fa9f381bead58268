"""Figures behind docs/security.md, measured: what the review's attacks cost now.

    .venv/bin/python benchmarks/hardening.py

- login: median time of a check for a registered name (wrong password) vs an unknown name
  (timing used to reveal who is registered: ~145 ms vs ~3 ms);
- backend spellings: RSS growth after asking for 200 spellings of the offered Mini's path
  (used to be one loaded model per spelling: +270 MB);
- zip bomb: bytes written under data/uploads/ by a ~4 MB zip that unpacks to 4 GB (used to
  write 3.99 GB before failing);
- Inspect sessions: the server's RSS after 6 browser sessions each inspected 3 candidates
  of a photo, and again once their state expired (session_ttl_s; it used to stay forever).
"""

from __future__ import annotations

import resource
import statistics
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from spatialreward.config import StudioConfig  # noqa: E402
from spatialreward.errors import StudioError  # noqa: E402
from spatialreward.service import Services  # noqa: E402


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def login_times(services: Services, n: int = 15) -> tuple[float, float]:
    store = services.store
    store.add_annotator("ana", password="a-long-password")
    known, unknown = [], []
    for k in range(n):
        for name, out in (("ana", known), (f"ghost{k}", unknown)):
            t0 = time.perf_counter()
            store.check_password(name, "wrong-password")
            out.append(time.perf_counter() - t0)
    return statistics.median(known) * 1e3, statistics.median(unknown) * 1e3


def spellings(services: Services) -> tuple[float, int, int]:
    before = rss_mb()
    refused = 0
    for k in range(200):
        spec = "mini:" + "./" * (k % 7) + "models/" + "x/../" * (k // 7) + "spatialreward-mini"
        try:
            services.backend(spec)
        except StudioError:
            refused += 1
    return rss_mb() - before, len(services._backends), refused


def zip_bomb(services: Services, folder: Path) -> tuple[int, int]:
    bomb = folder / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        with zf.open("data/train.parquet", "w", force_zip64=True) as fh:
            block = b"\0" * (1 << 24)
            for _ in range(256):  # 4 GiB of zeros
                fh.write(block)
    peak = 0
    uploads = services.data_root / "uploads"

    def written() -> int:
        return sum(p.stat().st_size for p in uploads.rglob("*") if p.is_file())

    import threading

    done = threading.Event()

    def watch() -> None:
        nonlocal peak
        while not done.is_set():
            if uploads.is_dir():
                peak = max(peak, written())
            time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        services.bench(upload=str(bomb), backend="pixel")
    except StudioError as err:
        print(f"  refused: {err}")
    finally:
        done.set()
        watcher.join()
    return bomb.stat().st_size, peak


def vm_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def inspect_sessions(folder: Path, n: int = 6, ttl: int = 5) -> tuple[float, float, float, int]:
    import gc

    from gradio_client import Client, handle_file

    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import launch_studio

    demo, studio = launch_studio(folder / "inspect", backend="pixel", session_ttl_s=ttl)
    ex = ROOT / "examples"
    files = [ex / f"photo-astronaut-{k}.jpg" for k in ("source", "c0", "c1", "c2")]
    gc.collect()
    base = vm_rss_mb()
    for _ in range(n):  # a Client per browser session
        Client(studio.url, verbose=False).predict(
            handle_file(str(files[0])), handle_file(str(files[1])),
            [handle_file(str(f)) for f in files[2:]], "make the astronaut's suit red",
            "pixel", api_name="/inspect")
    gc.collect()
    held = vm_rss_mb()
    holder = demo.server_app.state_holder  # gradio's per-session state
    time.sleep(ttl + 3)
    gc.collect()
    freed = vm_rss_mb()
    left = sum(len(holder.session_data[s].state_data) for s in list(holder.session_data))
    demo.close()
    return base, held, freed, left


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        services = Services(StudioConfig(db=folder / "data" / "studio.db", backend="pixel",
                                         backends=("mini:models/spatialreward-mini",)))
        known, unknown = login_times(services)
        print(f"login check, median of 15: registered name {known:.1f} ms, "
              f"unknown name {unknown:.1f} ms (ratio {known / unknown:.2f})")
        import os

        os.chdir(ROOT)
        services.backend("mini:models/spatialreward-mini")
        grown, loaded, refused = spellings(services)
        print(f"200 spellings of the offered Mini path: {refused} refused, {loaded} model "
              f"loaded, max RSS +{grown:.0f} MB")
        try:
            services.backend("mini:/etc")
        except StudioError as err:
            print(f"an unoffered spec: refused ({err})")
        size, peak = zip_bomb(services, folder)
        print(f"zip bomb of {size / 1e6:.1f} MB (4 GiB inside): at most {peak / 1e6:.1f} MB "
              "written under data/uploads/")
        base, held, freed, left = inspect_sessions(folder)
        print(f"6 Inspect sessions (3 candidates each): RSS {base:.0f} MB -> {held:.0f} MB "
              f"(+{(held - base) / 6:.0f} MB per session); {freed:.0f} MB once expired, "
              f"{left} state values left")


if __name__ == "__main__":
    main()
