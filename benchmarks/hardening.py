"""Figures behind docs/security.md, measured: what the review's attacks cost now.

    .venv/bin/python benchmarks/hardening.py

- login: median time of a check for a registered name (wrong password) vs an unknown name
  (timing used to reveal who is registered: ~145 ms vs ~3 ms);
- backend spellings: RSS growth after asking for 200 spellings of the offered Mini's path
  (used to be one loaded model per spelling: +270 MB);
- zip bomb: bytes written under data/uploads/ by a ~4 MB zip that unpacks to 4 GB (used to
  write 3.99 GB before failing).
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


if __name__ == "__main__":
    main()
