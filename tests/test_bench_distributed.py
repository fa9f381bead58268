"""Sharding over ranks: ``torchrun --nproc_per_node=2 -m spatialreward bench`` (2 CPU
processes, gloo) writes the same metrics as one process, and the shards cover every item."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from spatialreward.bench import command
from spatialreward.bench.distributed import Dist, from_env
from tests.test_bench_factories import write_tiger

ROOT = Path(__file__).resolve().parents[1]
TIMING = ("created", "seconds_per_item", "items_per_second", "world_size", "judgments",
          "cache")


@given(st.integers(0, 50), st.integers(1, 8))
def test_shards_cover_every_item_once(n, world):
    shards = [Dist(r, world).shard(n) for r in range(world)]
    assert [i for s in shards for i in s] == list(range(n))
    assert max(len(s) for s in shards) - min(len(s) for s in shards) <= 1


def test_one_process_needs_no_process_group(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    d = from_env()
    assert (d.rank, d.world_size, d.is_main, d.active) == (0, 1, True, False)
    assert d.gather({"x": 1}) == [{"x": 1}]
    d.barrier()


def _single(dataset: Path, out: Path, db: Path) -> dict:
    import argparse

    parser = argparse.ArgumentParser(prog="spatialreward")
    command.add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["bench", "--dataset", str(dataset), "--backend", "pixel",
                              "--out", str(out), "--db", str(db), "--no-progress"])
    assert args.func(args) == 0
    return json.loads(out.read_text(encoding="utf-8"))


def test_torchrun_two_ranks_match_one_process(tmp_path):
    dataset = write_tiger(tmp_path)  # two Parquet files: the ranks share the rows
    one = _single(dataset, tmp_path / "one" / "results.json", tmp_path / "one" / "s.db")
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    out = tmp_path / "two" / "results.json"
    proc = subprocess.run(
        [str(torchrun), "--standalone", "--nproc_per_node=2", "-m", "spatialreward", "bench",
         "--dataset", str(dataset), "--backend", "pixel", "--out", str(out),
         "--db", str(tmp_path / "two" / "s.db"), "--no-progress"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    two = json.loads(out.read_text(encoding="utf-8"))
    assert two["world_size"] == 2 and one["world_size"] == 1
    assert two["n"] == one["n"] == 5 and len(two["items"]) == 7
    assert {k: v for k, v in two.items() if k not in TIMING} == {
        k: v for k, v in one.items() if k not in TIMING}
    # the ranks share the store: one may reuse what the other just judged
    assert two["cache"]["reused"] + two["cache"]["judged"] >= one["cache"]["judged"]
    # rank 0 alone prints the summary and writes the report
    assert proc.stdout.count("results written to") == 1 and "ranks     2" in proc.stdout
    assert (out.parent / "results.html").is_file()
    # the store both ranks wrote to is whole, and a rerun reuses every judgment
    from storage.store import Store

    store = Store.open(tmp_path / "two" / "s.db")
    assert store.integrity() == []
    again = _single(dataset, tmp_path / "two" / "again.json", tmp_path / "two" / "s.db")
    assert again["cache"]["judged"] == 0 and again["benchmark"] == one["benchmark"]
