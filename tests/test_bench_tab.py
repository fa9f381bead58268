"""The Bench tab: bench.runs and storage.datasets on a tiny SynthEdit set, then the app's
API endpoints."""

from __future__ import annotations

import json
import os
import stat
import threading
import time
import zipfile
from pathlib import Path

import pytest
from gradio_client import Client, handle_file

from spatialreward.bench import runs as benchruns
from spatialreward.bench.runner import run_bench
from spatialreward.config import StudioConfig
from spatialreward.errors import (
    InputError,
    UnknownBackendError,
    UnknownItemError,
    UnsafePathError,
)
from spatialreward.service import Services
from spatialreward.synth.generate import SynthConfig, generate
from storage import datasets

N = 6


def make_synth(folder: Path, n: int = N) -> Path:
    """A tiny SynthEdit test set (pairs.jsonl + images/) in ``folder``."""
    generate(SynthConfig(out=folder, n=n, seed=3, split="test", workers=1), progress=False)
    return folder


def zip_folder(folder: Path, target: Path) -> Path:
    """``folder``'s pairs.jsonl and images/ at the top of a zip."""
    with zipfile.ZipFile(target, "w") as zf:
        for file in sorted(folder.rglob("*")):
            if file.is_file():
                zf.write(file, file.relative_to(folder).as_posix())
    return target


@pytest.fixture(scope="module")
def bench_env(tmp_path_factory):
    """(services, data folder) with a SynthEdit set in data/synth and a store in data/."""
    base = tmp_path_factory.mktemp("bench")
    data = base / "data"
    make_synth(data / "synth")
    services = Services(StudioConfig(db=data / "studio.db", backend="pixel"))
    return services, datasets.data_root(services.config)


def _run(services: Services, root: Path, path: str = "synth", **kw) -> dict:
    with datasets.open_dataset(root, path=path) as dataset:
        return benchruns.run_recorded(services, dataset, "pixel", **kw)


# --- bench.runs --------------------------------------------------------------------------


def test_run_is_recorded_with_status_metrics_and_result(bench_env):
    services, root = bench_env
    ticks = []
    result = _run(services, root, by=["flaw"], progress=lambda k, n: ticks.append((k, n)))
    run = services.store.run(result["run_id"])
    assert run["kind"] == "bench" and run["status"] == "done"
    assert run["started_at"] and run["finished_at"] and run["error"] is None
    assert run["config"] == {"dataset": "synth/pairs.jsonl", "backend": "pixel",
                             "limit": None, "by": ["flaw"], "format": "pairs",
                             "add_to_store": False}
    assert run["out_dir"] == f"runs/bench-{run['id']}"
    assert ticks == [(k, N) for k in range(1, N + 1)]
    # The final figures are logged at the last step.
    final = {m["key"]: m["value"] for m in services.store.metrics(run["id"]) if m["step"] == N}
    assert final["accuracy"] == pytest.approx(result["accuracy"])
    assert final["n"] == N and final["items_done"] == N
    assert {"accuracy_ci_low", "accuracy_ci_high", "region_recall"} <= set(final)
    assert any(k.startswith("category/") for k in final)
    assert any(k.startswith("flaw/") for k in final)
    # The full result JSON is saved in the run's folder and reads back the same.
    saved = json.loads((root / run["out_dir"] / "result.json").read_text())
    assert saved == benchruns.load_result(services.store, root, run["id"])
    assert saved["run_id"] == run["id"] and len(saved["items"]) == N
    # Same numbers as the CLI's bench: the metrics come from spatialreward.bench.
    cli = run_bench(root / "synth" / "pairs.jsonl", services, "pixel", by=["flaw"],
                    progress=False)
    for key in ("accuracy", "accuracy_ci", "n", "region_recall", "by_category", "by"):
        assert saved[key] == cli[key], key
    # The summary (what /bench answers) and the tables the tab shows.
    head = benchruns.summary(saved)
    assert head["run_id"] == run["id"] and head["n"] == N
    assert set(head["by_category"]) == set(saved["by_category"])
    rows = benchruns.accuracy_rows(saved)
    assert rows[0]["group"] == "overall" and rows[0]["accuracy"] == saved["accuracy"]
    assert {r["group"] for r in rows} == {"overall", "category", "flaw"}
    scores = benchruns.score_samples(saved)
    assert len(scores["preferred"]) == N and len(scores["other"]) == N


@pytest.mark.parametrize("path", ["../outside/pairs.jsonl", "OUTSIDE", "/etc/passwd",
                                  "synth/../../outside"])
def test_a_path_outside_the_data_folder_is_refused(bench_env, path):
    services, root = bench_env
    outside = root.parent / "outside"  # a real file, so only the folder refuses it
    outside.mkdir(exist_ok=True)
    (outside / "pairs.jsonl").write_text("")
    path = str(outside / "pairs.jsonl") if path == "OUTSIDE" else path
    before = len(services.store.runs())
    with pytest.raises(UnsafePathError, match="outside the data folder"):
        _run(services, root, path=path)
    assert len(services.store.runs()) == before


def test_images_outside_the_data_folder_are_refused(bench_env, tmp_path):
    services, root = bench_env
    line = json.loads((root / "synth" / "pairs.jsonl").read_text().splitlines()[0])
    outside = tmp_path / "secret.png"
    outside.write_bytes((root / "synth" / line["source"]).read_bytes())
    line["source"] = str(outside)  # absolute paths are valid pair format
    (root / "sneaky").mkdir(exist_ok=True)
    (root / "sneaky" / "pairs.jsonl").write_text(json.dumps(line) + "\n")
    before = len(services.store.runs())
    with pytest.raises(UnsafePathError, match="secret.png"):
        _run(services, root, path="sneaky")
    assert len(services.store.runs()) == before


def test_mistakes_fail_before_a_run_is_recorded(bench_env):
    services, root = bench_env
    before = len(services.store.runs())
    with datasets.open_dataset(root, path="synth") as dataset:
        with pytest.raises(UnknownBackendError):
            benchruns.run_recorded(services, dataset, "no-such-model")
        with pytest.raises(InputError, match="limit"):
            benchruns.run_recorded(services, dataset, "pixel", limit=0)
    with pytest.raises(InputError, match="no dataset file"):
        _run(services, root, path="missing.jsonl")
    with pytest.raises(InputError, match="no dataset path"):
        _run(services, root, path="  ")
    assert len(services.store.runs()) == before


def test_a_crash_while_judging_marks_the_run_failed(bench_env):
    services, root = bench_env

    def boom(done: int, total: int) -> None:
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        _run(services, root, limit=2, progress=boom)
    run = services.store.runs("bench")[0]
    assert run["status"] == "failed" and "disk on fire" in run["error"]
    with pytest.raises(InputError, match="failed"):
        benchruns.load_result(services.store, root, run["id"])
    with pytest.raises(UnknownItemError):
        benchruns.load_result(services.store, root, 10_000)


def test_compare_two_runs(bench_env):
    services, root = bench_env
    a = _run(services, root, limit=2)
    b = _run(services, root, by=["flaw"])
    cmp = benchruns.compare_runs(services.store, root, a["run_id"], f"#{b['run_id']} label")
    assert cmp["a"]["run_id"] == a["run_id"] and cmp["b"]["run_id"] == b["run_id"]
    overall = cmp["rows"][0]
    assert (overall["group"], overall["a"], overall["b"]) == ("overall", a["accuracy"],
                                                              b["accuracy"])
    assert overall["delta"] == pytest.approx(b["accuracy"] - a["accuracy"])
    assert (overall["n_a"], overall["n_b"]) == (2, N)
    # Groups only run B has (the flaw breakdown) are there, with no figure for A.
    flaw = [r for r in cmp["rows"] if r["group"] == "flaw"]
    assert flaw and all(r["a"] is None and r["delta"] is None for r in flaw)
    labels = [benchruns.run_label(r) for r in benchruns.bench_runs(services.store)]
    assert labels[0].startswith(f"#{b['run_id']} pixel on synth/pairs.jsonl: ")


def test_a_zip_upload_is_unpacked_under_the_data_folder_and_removed(bench_env, tmp_path):
    services, root = bench_env
    archive = zip_folder(root / "synth", tmp_path / "my set.zip")
    with datasets.open_dataset(root, upload=archive) as dataset:
        assert dataset.label == "upload my set.zip"
        assert dataset.path.is_relative_to(root / "uploads")
        result = benchruns.run_recorded(services, dataset, "pixel", limit=2)
    assert result["n"] == 2 and result["dataset"] == "upload my set.zip"
    assert not any((root / "uploads").iterdir())  # the unpacked copy is gone


def _zip(target: Path, members: dict[str, bytes], link: str | None = None) -> Path:
    with zipfile.ZipFile(target, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        if link is not None:
            info = zipfile.ZipInfo(link)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, "/etc/passwd")
    return target


def test_unsafe_or_broken_zips_are_refused(bench_env, tmp_path):
    _, root = bench_env
    cases = [
        (_zip(tmp_path / "slip.zip", {"pairs.jsonl": b"", "../../evil.txt": b"x"}),
         UnsafePathError, "outside"),
        (_zip(tmp_path / "abs.zip", {"/tmp/evil.txt": b"x"}), UnsafePathError, "outside"),
        (_zip(tmp_path / "link.zip", {"pairs.jsonl": b""}, link="images/a.png"),
         UnsafePathError, "symbolic link"),
        (_zip(tmp_path / "none.zip", {"readme.txt": b"hi"}), InputError, "no pairs.jsonl"),
    ]
    (tmp_path / "junk.zip").write_bytes(b"PK\x03\x04 not really a zip")
    cases.append((tmp_path / "junk.zip", InputError, "not a readable zip"))
    for archive, error, message in cases:
        with pytest.raises(error, match=message):
            with datasets.open_dataset(root, upload=archive):
                pass
    bomb = _zip(tmp_path / "bomb.zip", {"pairs.jsonl": b"0" * 100_000})
    with pytest.raises(InputError, match="more than"):
        with datasets.open_dataset(root, upload=bomb, max_bytes=1000):
            pass
    assert not (root.parent / "evil.txt").exists() and not any((root / "uploads").iterdir())


# --- the app ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def app(studio):
    """(client, data folder) of the launched app, with data/synth in its data folder."""
    root = datasets.data_root(studio.services.config)
    make_synth(root / "synth")
    return Client(studio.url, verbose=False), root


def test_bench_endpoint_returns_accuracy_and_a_run_id(studio, app):
    client, _ = app
    out = client.predict("synth", "pixel", 0, api_name="/bench")
    assert isinstance(out["accuracy"], float) and 0 <= out["accuracy"] <= 1
    assert out["n"] == N and set(out["by_category"]) and out["by"]["flaw"]
    run = studio.services.store.run(out["run_id"])
    assert run["status"] == "done" and run["config"]["backend"] == "pixel"
    # The tab's views of that run, through their API names.
    head, table, *_plots = client.predict(str(out["run_id"]), api_name="/show_run")
    assert "Accuracy" in head and table["data"][0][:2] == ["overall", "all"]
    second = client.predict("synth", "pixel", 2, api_name="/bench")
    rows, _chart = client.predict(str(out["run_id"]), str(second["run_id"]),
                                  api_name="/compare_runs")
    assert rows["headers"][:4] == ["group", "label", "a", "b"]


def test_bench_refuses_a_path_outside_the_data_folder(app):
    client, _ = app
    with pytest.raises(Exception, match="outside the data folder"):
        client.predict("../../etc", "pixel", 1, api_name="/bench")


def test_run_button_takes_a_zip_upload(app, tmp_path):
    client, root = app
    archive = zip_folder(root / "synth", tmp_path / "synth.zip")
    summary, *_ = client.predict("", handle_file(str(archive)), "pixel", 2, "flaw",
                                 api_name="/run_bench")
    assert summary["n"] == 2 and summary["dataset"] == "upload synth.zip"


class GateBackend:
    """The pixel backend, held at a gate: a bench on it runs until the test opens it."""

    def __init__(self, inner) -> None:
        self.inner, self.name, self.version = inner, "gate", "1"
        self.entered, self.gate = threading.Event(), threading.Event()

    def judge(self, *args, **kwargs):
        self.entered.set()
        self.gate.wait(timeout=60)
        return self.inner.judge(*args, **kwargs)


def test_other_events_answer_while_a_bench_runs(studio, app):
    client, _ = app
    gate = GateBackend(studio.services.backend("pixel"))
    # A backend object for this app only (the registry is process-wide).
    studio.services.add_backend("gate", gate)
    other = Client(studio.url, verbose=False)
    job = client.submit("synth", "gate", 2, api_name="/bench")
    try:
        assert gate.entered.wait(timeout=30), "the bench never started judging"
        t0 = time.perf_counter()
        stats, _table = other.predict(api_name="/stats")
        elapsed = time.perf_counter() - t0
        assert stats["tables"]["runs"] >= 1
        assert elapsed < 5, f"/stats took {elapsed:.1f}s while a bench ran"
        assert not job.done()  # the bench was still running when /stats answered
        assert studio.services.store.runs("bench")[0]["status"] == "running"
    finally:
        gate.gate.set()
    out = job.result(timeout=60)
    assert out["n"] == 2 and studio.services.store.run(out["run_id"])["status"] == "done"


def test_agreement_endpoint_answers_on_an_empty_store(app):
    client, _ = app
    head, per, report = client.predict("", api_name="/agreement")
    assert report["human_ceiling"]["accuracy"] is None
    assert len(head["data"]) == 3 and per["data"] in ([], [[None] * 5])


def test_no_leftovers_in_uploads(app):
    _, root = app
    uploads = root / "uploads"
    assert not uploads.exists() or not os.listdir(uploads)


def test_the_tab_benches_every_public_format(bench_env):
    """EditScore's EditReward-Bench (a Parquet folder) and TIGER-Lab's (split folders)
    run through the same recorded path as the pair format."""
    from tests.test_bench_factories import write_editscore, write_tiger

    services, root = bench_env
    write_editscore(root / "public")
    write_tiger(root / "public")
    for folder, fmt in (("public/editscore", "editscore"), ("public/tiger", "tiger")):
        with datasets.open_dataset(root, path=folder,
                                    suffixes=datasets.BENCH_SUFFIXES) as dataset:
            result = benchruns.run_recorded(services, dataset, "pixel")
        run = services.store.run(result["run_id"])
        assert run["status"] == "done" and run["config"]["format"] == fmt
        assert result["format"] == fmt and result["benchmark"]
        assert result["n"] > 0
