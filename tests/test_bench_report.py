"""HTML reports, ``bench --compare``, and the command line over the public formats."""

from __future__ import annotations

import json

import pytest

from spatialreward.bench.formats import open_benchmark
from spatialreward.bench.report import (
    compare_results,
    format_comparison,
    load_results,
    margin,
    worst_disagreements,
    write_report,
)
from spatialreward.bench.runner import run_bench
from spatialreward.cli import main
from spatialreward.errors import InputError
from tests.test_bench_factories import (
    ColourJudge,
    services,
    write_merbench,
    write_tiger,
)


@pytest.fixture(autouse=True)
def _private_store(tmp_path, monkeypatch):
    monkeypatch.setenv("STUDIO_DB", str(tmp_path / "store" / "studio.db"))


def test_report_has_the_charts_and_the_worst_disagreements(tmp_path):
    data = write_tiger(tmp_path)
    res = run_bench(data, services(tmp_path), "colour", progress=False)
    worst = worst_disagreements(res)
    # b_1 (people: B, model: A by a wide margin) leads; g_BvsC is a model tie (margin 0)
    assert [w["id"] for w in worst] == ["b_1", "g_BvsC"]
    assert margin(worst[0]) > 0 and margin(worst[1]) == 0.0
    page = write_report(res, tmp_path / "r" / "report.html", open_benchmark(data).items)
    html = page.read_text(encoding="utf-8")
    assert html.count("data:image/jpeg;base64,") == 6  # source + 2 candidates, 2 items
    for text in ("accuracy with ties (calibrated threshold)", "Worst disagreements",
                 "Score distributions", "Human vs model verdicts", "per subset",
                 "Plotly.newPlot"):
        assert text in html, text
    # no items at hand: the page still renders, without thumbnails
    bare = write_report(res, tmp_path / "bare.html").read_text(encoding="utf-8")
    assert "data:image/jpeg;base64," not in bare and "Worst disagreements" in bare


def test_compare_two_runs(tmp_path, capsys):
    data = write_merbench(tmp_path)
    s = services(tmp_path)
    s.add_backend("flipped", _Flipped())
    a = run_bench(data, s, "colour", progress=False)
    b = run_bench(data, s, "flipped", progress=False)
    cmp = compare_results(a, b)
    # colour gets p1 right only; the flipped judge reverses every order: p2 right only
    assert cmp["items"] == {"shared": 4, "both_right": 0, "a_only": 1, "b_only": 1,
                            "both_wrong": 2, "mcnemar_p": 1.0}
    assert cmp["a"]["headline"] == 0.25 and cmp["b"]["headline"] == 0.25
    for name, res in (("a", a), ("b", b)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps(res))
    assert main(["bench", "--compare", str(tmp_path / "a"), str(tmp_path / "b" / "results.json"),
                 "--out", str(tmp_path / "cmp.json")]) == 0
    shown = capsys.readouterr().out
    assert "exact ranking accuracy" in shown and "McNemar exact p = 1.000" in shown
    assert json.loads((tmp_path / "cmp.json").read_text())["items"]["shared"] == 4
    assert "both wrong 2" in format_comparison(cmp)
    with pytest.raises(InputError, match="cannot read bench results"):
        load_results(tmp_path / "nope")


class _Flipped(ColourJudge):
    def judge(self, source, edited, instruction, evidence=None):
        j = super().judge(source, edited, instruction, evidence)
        from spatialreward.judgment import Judgment

        assert j.sc is not None and j.pq is not None
        return Judgment(status="ok", sc=(25 - j.sc[0], 25 - j.sc[1]), pq=j.pq,
                        backend="flipped", backend_version="1")


def test_cli_over_a_public_benchmark(tmp_path, capsys):
    data = write_merbench(tmp_path)
    out = tmp_path / "run" / "results.json"
    assert main(["bench", "--dataset", str(data), "--backend", "pixel", "--out", str(out),
                 "--limit", "3", "--no-progress"]) == 0
    shown = capsys.readouterr().out
    assert "format    MER-Bench" in shown and "benchmark" in shown
    assert (out.parent / "results.html").is_file()
    res = load_results(out.parent)
    assert res["format"] == "merbench" and len(res["items"]) == 3
    assert res["cache"]["store"] is True  # STUDIO_DB, set by the fixture
    # a rerun reuses the store's judgments
    assert main(["bench", "--dataset", str(data), "--backend", "pixel", "--out", str(out),
                 "--limit", "3", "--no-report", "--format", "merbench"]) == 0
    assert "judgments reused" in capsys.readouterr().out
    # --no-cache leaves the store alone
    assert main(["bench", "--dataset", str(data), "--out", str(out), "--no-cache",
                 "--no-report", "--report", str(tmp_path / "x.html")]) == 0
    assert load_results(out)["cache"] == {"store": False, "reused": 0, "judged": 10}
    assert not (tmp_path / "x.html").exists()


def test_cli_errors_are_one_line(tmp_path, capsys):
    odd = tmp_path / "odd.parquet"
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"prompt": ["x"]}), odd)
    assert main(["bench", "--dataset", str(odd)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Its columns: prompt" in err
    assert main(["bench"]) == 2
    assert "give --dataset" in capsys.readouterr().err
    assert main(["bench", "--dataset", str(write_merbench(tmp_path)), "--edits",
                 str(tmp_path)]) == 2
    assert "--edits is for GEdit-Bench" in capsys.readouterr().err
    # the human bench reads the configured store when no dataset is given
    assert main(["bench", "--format", "store", "--no-report"]) == 2
    assert "no store database at" in capsys.readouterr().err
    from storage.store import Store

    Store.open(tmp_path / "store" / "studio.db").close()
    assert main(["bench", "--format", "store", "--no-report"]) == 2
    assert "holds no items" in capsys.readouterr().err


def test_every_flag_and_format_is_documented():
    import argparse
    from pathlib import Path

    from spatialreward.bench import command
    from spatialreward.bench.formats import FORMATS

    doc = (Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md").read_text()
    parser = argparse.ArgumentParser()
    bench = command.add_parser(parser.add_subparsers())
    flags = [o for a in bench._actions for o in a.option_strings if o.startswith("--")]
    for flag in flags:
        if flag != "--help":
            assert f"`{flag}" in doc, f"docs/benchmarks.md lacks {flag}"
    for name in FORMATS:
        assert f"`{name}`" in doc, f"docs/benchmarks.md lacks the {name} format"
    assert "--nnodes" in doc and "bench_scale.py" in doc


def test_reports_of_a_prompt_set_and_an_editscore_run(tmp_path):
    from tests.test_bench_factories import write_editscore, write_gedit

    path, edits = write_gedit(tmp_path)
    res = run_bench(path, services(tmp_path), "colour", progress=False, edits=edits)
    html = write_report(res, tmp_path / "g.html").read_text(encoding="utf-8")
    assert "GEdit-Bench: scores of the edits per task type" in html
    assert "No wrong verdicts" in html and "missing_edits" in html
    res = run_bench(write_editscore(tmp_path), services(tmp_path), "colour", progress=False)
    html = write_report(res, tmp_path / "e.html").read_text(encoding="utf-8")
    assert "accuracy per task type and dimension" in html and "dimension: overall" in html
