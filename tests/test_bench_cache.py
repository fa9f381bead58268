"""Judgments cached in the store: a rerun reuses them, an interrupted run resumes, another
backend version reuses nothing, and failures are tried again."""

from __future__ import annotations

import pytest

from spatialreward.bench.formats import open_benchmark
from spatialreward.bench.runner import item_uid, run_bench
from spatialreward.judgment import Judgment
from tests.test_bench_factories import ColourJudge, services, write_editscore, write_tiger

VOLATILE = ("created", "seconds_per_item", "items_per_second", "judgments", "cache")


def stable(res):
    return {k: v for k, v in res.items() if k not in VOLATILE}


def test_rerun_and_resume_reuse_the_store(tmp_path):
    data = write_tiger(tmp_path)
    judge = ColourJudge()
    s = services(tmp_path, judge)
    store = s.store
    # without the store, candidates are told apart by where they are (14 table cells)
    fresh = run_bench(data, services(tmp_path / "mem"), "colour", progress=False)
    assert fresh["cache"] == {"store": False, "reused": 0, "judged": 14}
    # with it, by content: the 7 items show 5 distinct candidate images (the first 3: 3)
    part = run_bench(data, s, "colour", limit=3, progress=False, store=store)
    assert part["cache"]["reused"] == 0 and judge.calls == part["cache"]["judged"] == 3
    full = run_bench(data, s, "colour", progress=False, store=store)
    assert full["cache"]["reused"] == 3 and full["cache"]["judged"] == 2
    assert judge.calls == 5
    again = run_bench(data, s, "colour", progress=False, store=store)
    assert again["cache"] == {"store": True, "reused": 5, "judged": 0} and judge.calls == 5
    assert stable(fresh) == stable(full) == stable(again)
    # each item is stored once under a uid made from its content: a_1 and g_AvsB show the
    # same images, instruction and human order, so they are one item
    assert store.stats()["tables"]["items"] == 6
    first = open_benchmark(data).items[0]
    row = store.item(1)
    assert row["uid"] == item_uid(first, [row["source_sha256"], *row["candidates"]])
    assert (row["origin_dataset"], row["origin_id"], row["category"]) == ("tiger", "a_1",
                                                                         "2pair")


def test_another_backend_version_reuses_nothing(tmp_path):
    data = write_editscore(tmp_path)
    s = services(tmp_path)
    run_bench(data, s, "colour", progress=False, store=s.store)
    s.add_backend("colour-v2", ColourJudge(version="2"))
    res = run_bench(data, s, "colour-v2", progress=False, store=s.store)
    assert res["cache"]["reused"] == 0 and res["cache"]["judged"] > 0
    versions = {r["backend_version"] for i in s.store.item_ids()
                for r in s.store.model_judgments(i)}
    assert versions == {"1", "2"}


class Interrupted(Exception):
    pass


class StopsAfter(ColourJudge):
    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n

    def judge(self, *args, **kwargs):
        if self.calls >= self.n:
            raise KeyboardInterrupt  # like Ctrl-C half way: not caught as a backend error
        return super().judge(*args, **kwargs)


def test_an_interrupted_run_resumes(tmp_path):
    data = write_editscore(tmp_path)
    s = services(tmp_path, StopsAfter(5))
    with pytest.raises(KeyboardInterrupt):
        run_bench(data, s, "colour", progress=False, store=s.store)
    resumed = services(tmp_path)  # a new process on the same store
    res = run_bench(data, resumed, "colour", progress=False, store=resumed.store)
    assert res["cache"]["reused"] == 5 and res["failed"] == 0
    assert stable(res) == stable(run_bench(data, services(tmp_path / "m"), "colour",
                                           progress=False))


class Flaky(ColourJudge):
    def judge(self, *args, **kwargs):
        self.calls += 1
        return Judgment(status="parse_failed", raw_sc="??", backend="colour",
                        backend_version=self.version)


def test_failed_judgments_are_not_cached(tmp_path):
    data = write_editscore(tmp_path)
    s = services(tmp_path, Flaky())
    res = run_bench(data, s, "colour", limit=2, progress=False, store=s.store)
    assert res["failed"] == 2 and res["cache"]["judged"] == 2  # 2 distinct images
    assert s.store.stats()["tables"]["model_judgments"] == 0
    good = services(tmp_path)
    res = run_bench(data, good, "colour", limit=2, progress=False, store=good.store)
    assert res["failed"] == 0 and res["cache"] == {"store": True, "reused": 0, "judged": 2}
