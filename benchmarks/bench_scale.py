"""Bench throughput in one process and under torchrun, and the time to resume a run.

    python benchmarks/bench_scale.py [--n 1000] [--k 2] [--backend mini] [--dir DIR]

Generates a SynthEdit test bench of ``--n`` pairs (seed 0), then runs
``python -m spatialreward bench`` on it as a user would, each run on a fresh store:

1. one process;
2. ``torchrun --standalone --nproc_per_node=K`` (gloo; the items sharded over K ranks);
3. an interrupted run: one process, stopped with SIGINT (Ctrl-C) once half the
   judgments are in the store, then the same command again, which resumes from the
   store; and a third, fully cached, run.

The one-process runs get ``OMP_NUM_THREADS=1`` (``--threads``), as torchrun gives each
rank, so the ratio compares like with like; ``--threads 0`` keeps torch's default.

Prints, per run, the wall time (process start to exit: imports, model load, judging,
writing) and the judging rate the run reports (``items_per_second`` in results.json),
the K-rank / 1-rank ratio, whether the two runs' metrics are identical, and the resume
times. ``--json PATH`` also writes the figures as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from spatialreward.synth.generate import SynthConfig, generate  # noqa: E402

VOLATILE = ("created", "seconds_per_item", "items_per_second", "world_size", "judgments",
            "cache")


def bench_command(dataset: Path, backend: str, db: Path, out: Path) -> list[str]:
    return ["-m", "spatialreward", "bench", "--dataset", str(dataset), "--backend", backend,
            "--db", str(db), "--out", str(out), "--no-report", "--no-progress"]


def timed(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    return time.perf_counter() - t0


def judgments_in(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM model_judgments").fetchone()[0])
    except sqlite3.Error:  # the schema is not there yet
        return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="items (default 1000)")
    parser.add_argument("--k", type=int, default=2, help="torchrun processes (default 2)")
    parser.add_argument("--backend", default="mini", help="backend spec (default mini)")
    parser.add_argument("--threads", type=int, default=1,
                        help="OMP_NUM_THREADS of the one-process runs (default 1, what "
                        "torchrun gives each rank; 0 leaves torch's default)")
    parser.add_argument("--dir", type=Path, default=None,
                        help="work folder (default: a temporary one, removed afterwards)")
    parser.add_argument("--json", type=Path, default=None, help="also write figures here")
    args = parser.parse_args()

    work = args.dir or Path(tempfile.mkdtemp(prefix="bench-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if args.threads > 0:
        env["OMP_NUM_THREADS"] = str(args.threads)
    py = [sys.executable]
    try:
        data = work / "synth"
        if not (data / "pairs.jsonl").is_file():
            gen = generate(SynthConfig(out=data, n=args.n, seed=0, split="test"), False)
            print(f"generated {gen['items']} SynthEdit test pairs in {gen['seconds']} s")
        dataset = data / "pairs.jsonl"
        runs = work / "runs"
        shutil.rmtree(runs, ignore_errors=True)
        runs.mkdir()

        one_out, k_out = runs / "one.json", runs / "k.json"
        one_wall = timed(py + bench_command(dataset, args.backend, runs / "one.db", one_out),
                         env)
        torchrun = str(Path(sys.executable).with_name("torchrun"))
        k_wall = timed([torchrun, "--standalone", f"--nproc_per_node={args.k}",
                        *bench_command(dataset, args.backend, runs / "k.db", k_out)], env)
        one = json.loads(one_out.read_text())
        many = json.loads(k_out.read_text())
        same = ({k: v for k, v in one.items() if k not in VOLATILE}
                == {k: v for k, v in many.items() if k not in VOLATILE})

        # Interrupt a run half way (Ctrl-C), then resume it from the store.
        db, out = runs / "resume.db", runs / "resume.json"
        total = one["judgments"]
        t0 = time.perf_counter()
        proc = subprocess.Popen(py + bench_command(dataset, args.backend, db, out), cwd=ROOT,
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        while judgments_in(db) < total // 2 and proc.poll() is None:
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        proc.wait()
        interrupted_at, interrupted_s = judgments_in(db), time.perf_counter() - t0
        resume_wall = timed(py + bench_command(dataset, args.backend, db, out), env)
        resumed = json.loads(out.read_text())
        cached_wall = timed(py + bench_command(dataset, args.backend, db, out), env)
        cached = json.loads(out.read_text())

        n = len(one["items"])
        figures = {
            "items": n, "backend": args.backend, "k": args.k,
            "one_process_threads": env.get("OMP_NUM_THREADS"),
            "one_process": {"wall_s": round(one_wall, 1),
                            "items_per_s_wall": round(n / one_wall, 2),
                            "items_per_s_judging": round(one["items_per_second"], 2)},
            f"torchrun_k{args.k}": {"wall_s": round(k_wall, 1),
                                    "items_per_s_wall": round(n / k_wall, 2),
                                    "items_per_s_judging": round(many["items_per_second"], 2)},
            "ratio_wall": round(one_wall / k_wall, 2),
            "ratio_judging": round(many["items_per_second"] / one["items_per_second"], 2),
            "metrics_identical": same,
            "resume": {"interrupted_after_s": round(interrupted_s, 1),
                       "judgments_before_interrupt": interrupted_at,
                       "resumed_wall_s": round(resume_wall, 1),
                       "reused": resumed["cache"]["reused"],
                       "judged": resumed["cache"]["judged"],
                       "fully_cached_wall_s": round(cached_wall, 1),
                       "fully_cached_items_per_s": round(cached["items_per_second"], 2)},
            "accuracy": one["accuracy"],
        }
        print(f"{n} items, backend {args.backend}, one-process OMP_NUM_THREADS="
              f"{env.get('OMP_NUM_THREADS', '(torch default)')}")
        print(f"one process       : {one_wall:7.1f} s wall ({n / one_wall:.2f} items/s), "
              f"judging {one['items_per_second']:.2f} items/s")
        print(f"torchrun K={args.k}      : {k_wall:7.1f} s wall ({n / k_wall:.2f} items/s), "
              f"judging {many['items_per_second']:.2f} items/s")
        print(f"ratio K={args.k} / one   : {figures['ratio_wall']:.2f}x wall, "
              f"{figures['ratio_judging']:.2f}x judging; metrics identical: {same}")
        print(f"resume            : stopped after {interrupted_s:.1f} s with "
              f"{interrupted_at}/{total} judgments; the rerun took {resume_wall:.1f} s "
              f"(reused {resumed['cache']['reused']}, judged {resumed['cache']['judged']}); "
              f"a fully cached rerun {cached_wall:.1f} s")
        if args.json:
            args.json.write_text(json.dumps(figures, indent=2) + "\n")
    finally:
        if args.dir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
