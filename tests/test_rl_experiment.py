"""benchmarks/rl_experiment.py: the before/after tables, the figure and its errors, on tiny
eval-editor files and curves made here."""

from __future__ import annotations

import doctest
import json

import pytest
from PIL import Image

from benchmarks import rl_experiment as exp
from spatialreward.synth.language import OPERATIONS

GLOBAL = "mini:data/runs/mini-global"


def eval_result(success: dict[str, float | None], overall: dict[str, float | None],
                policy: str = "models/editor") -> dict:
    """An eval-editor --json payload: one row per op in ``success`` (``all`` included)."""
    rows = []
    for op, gt in success.items():
        row = {"op": op, "n": 20, "gt_success": gt, "gt_score": 0.5}
        for spec, value in overall.items():
            row.update({f"{spec}/sc": value, f"{spec}/pq": value, f"{spec}/overall": value,
                        f"{spec}/failed": 0})
        rows.append(row)
    return {"rows": rows, "backends": list(overall), "n": 120, "steps": 10, "seconds": 1.0,
            "policy": policy, "split": "test", "seed": 0, "phrasings": "seen"}


def curves(steps: int = 6, eval_every: int = 3) -> list[dict]:
    """The trainer's history: step entries, and evaluation entries marked ``eval``."""
    history = [{"step": 0.0, "eval": 1.0, "heldout_gt_success": 0.25, "heldout_reward": 0.4,
                "heldout_gt_success/add": 0.3}]
    for s in range(steps):
        history.append({"step": float(s), "reward_mean": 0.4 + 0.05 * s, "reward_std": 0.1,
                        "gt_success": 0.2 + 0.02 * s, "kl": 1e-4 * s, "loss": 0.01,
                        "step_seconds": 30.0, "sample_seconds": 10.0, "reward_seconds": 10.0,
                        "update_seconds": 10.0, "hacking_alert": 0.0})
        if (s + 1) % eval_every == 0:
            history.append({"step": float(s + 1), "eval": 1.0, "heldout_gt_success": 0.3})
    return history


BEFORE = eval_result({"add": 0.25, "remove": 0.5, "move": None, "all": 0.35},
                     {"mini": 4.0, GLOBAL: 3.5, "pixel": 5.0})
AFTER_MINI = eval_result({"add": 0.40, "remove": 0.45, "move": 0.2, "all": 0.35},
                         {"mini": 4.5, GLOBAL: 3.6, "pixel": 5.1}, "data/runs/rl-mini")
AFTER_PIXEL = eval_result({"add": 0.25, "remove": None, "all": 0.3}, {"pixel": 6.0})


def write_run(tmp_path, name: str, result: dict, reward: str | None) -> str:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "curves.json").write_text(json.dumps(curves()))
    if reward is not None:  # as the trainer's checkpoint keeps its config
        (folder / "checkpoint").mkdir()
        (folder / "checkpoint" / "state.json").write_text(json.dumps(
            {"step": 6, "config": {"rewards": [{"backend": reward, "weight": 1.0}]}}))
    eval_path = tmp_path / f"{name}-eval.json"
    eval_path.write_text(json.dumps(result))
    return f"{name}={folder}:{eval_path}"


def table_rows(table: str) -> dict[str, list[str]]:
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in table.splitlines()]
    return {r[0]: r[1:] for r in rows[2:]}


def test_success_table_shows_after_with_the_change_in_points():
    table = exp.success_table(BEFORE, {"SpatialReward-Mini": AFTER_MINI, "pixel": AFTER_PIXEL})
    header = table.splitlines()[0]
    assert header == "| operation | pretrained editor | SpatialReward-Mini | pixel |"
    rows = table_rows(table)
    assert list(rows) == ["remove", "add", "move", "all"]  # library order, then all
    assert rows["add"] == ["25.0", "40.0 (+15.0)", "25.0 (+0.0)"]
    assert rows["remove"] == ["50.0", "45.0 (-5.0)", "n/a"]  # null after
    assert rows["move"] == ["n/a", "20.0", "n/a"]  # null before; no row in pixel's file
    assert rows["all"] == ["35.0", "35.0 (+0.0)", "30.0 (-5.0)"]


def test_changes_are_rounded_like_the_values_and_never_negative_zero():
    assert exp.with_change(41.666, 35.0) == "41.7 (+6.7)"
    assert exp.with_change(35.04, 35.0) == "35.0 (+0.0)"
    assert exp.with_change(34.96, 35.01) == "35.0 (+0.0)"
    assert exp.with_change(4.5, 4.0, digits=2) == "4.50 (+0.50)"


def test_training_summary_counts_steps_not_evaluations():
    s = exp.training_summary(curves(steps=6))
    assert s["steps"] == 6
    assert s["minutes"] == pytest.approx(6 * 30 / 60)
    assert s["step_seconds"] == pytest.approx(30.0)
    assert s["final_reward"] == pytest.approx(0.4 + 0.05 * 5)
    empty = exp.training_summary([{"step": 0.0, "eval": 1.0, "heldout_gt_success": 0.2}])
    assert set(empty.values()) == {None}


def test_runs_table_gives_the_own_reward_overall_and_n_a_where_missing():
    runs = [exp.RunData("SpatialReward-Mini", curves(), AFTER_MINI, ["mini"]),
            exp.RunData("global ablation", curves(), AFTER_PIXEL, [GLOBAL]),  # not scored
            exp.RunData("unknown", [{"step": 0.0, "eval": 1.0}], AFTER_PIXEL, [])]
    rows = table_rows(exp.runs_table(BEFORE, runs))
    assert rows["SpatialReward-Mini"] == ["mini", "6", "3.0", "30.00", "0.650", "4.50 (+0.50)",
                                          "n/a"]  # no per-prompt results in these files
    assert rows["global ablation"][0] == GLOBAL and rows["global ablation"][-2] == "n/a"
    assert rows["unknown"] == ["n/a"] * 7


def test_paired_change_counts_prompts_that_flipped_and_tests_them():
    def prompts(successes):
        return {"prompts": [{"id": f"p{k}", "op": "add", "gt_success": ok}
                            for k, ok in enumerate(successes)]}

    before = prompts([False] * 12 + [True] * 8)
    after = prompts([True] * 10 + [False] * 2 + [True] * 7 + [False])  # +10, -1
    change = exp.paired_change(before, after)
    assert change is not None and (change["gained"], change["lost"]) == (10, 1)
    assert change["p"] == pytest.approx(0.0117, abs=1e-4)  # 2 * P(X <= 1), X ~ B(11, 1/2)
    assert exp.paired_change(before, before) == {"gained": 0, "lost": 0, "p": 1.0}
    assert exp.paired_change(BEFORE, after) is None  # no per-prompt results to match
    run = exp.RunData("r", curves(), {**AFTER_MINI, **after}, ["mini"])
    row = table_rows(exp.runs_table({**BEFORE, **before}, [run]))["r"]
    assert row[-1] == "+10 / -1 (p = 0.012)"


def test_run_rewards_read_the_checkpoint_or_the_train_tab_config(tmp_path):
    (tmp_path / "a" / "checkpoint").mkdir(parents=True)
    (tmp_path / "a" / "checkpoint" / "state.json").write_text(json.dumps({"config": {
        "rewards": [{"backend": "pixel", "weight": 0.3}, {"backend": "mini", "weight": 0.7}]}}))
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "config.json").write_text(json.dumps(
        {"rewards": [{"backend": GLOBAL, "weight": 1.0}]}))
    assert exp.run_rewards(tmp_path / "a") == ["mini", "pixel"]  # highest weight first
    assert exp.run_rewards(tmp_path / "b") == [GLOBAL]
    assert exp.run_rewards(tmp_path / "nothing") == []


def test_main_prints_the_tables_and_writes_an_offline_html(tmp_path, capsys):
    before = tmp_path / "editor-eval.json"
    before.write_text(json.dumps(BEFORE))
    runs = [write_run(tmp_path, "rl-mini", AFTER_MINI, "mini"),
            write_run(tmp_path, "rl-pixel", AFTER_PIXEL, "pixel")]
    runs = [runs[0].replace("rl-mini=", "SpatialReward-Mini=", 1),
            runs[1].replace("rl-pixel=", "pixel run=", 1)]
    out = tmp_path / "docs"
    assert exp.main(["--before", str(before), "--run", runs[0], "--run", runs[1],
                     "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| add | 25.0 | 40.0 (+15.0) | 25.0 (+0.0) |" in printed
    assert "| pixel run | pixel | 6 | 3.0 | 30.00 | 0.650 | 6.00 (+1.00) |" in printed
    html = (out / "experiment.html").read_text()
    assert "SpatialReward-Mini" in html and "pixel run" in html and "pretrained editor" in html
    # plotly.js is inside the page, not fetched from a CDN: the file opens offline
    assert '<script src="https://cdn.plot.ly' not in html and len(html) > 1_000_000


def test_the_figure_has_the_four_panels_per_run():
    runs = [exp.RunData("a", curves(), AFTER_MINI, ["mini"]),
            exp.RunData("b", curves(), AFTER_PIXEL, ["pixel"])]
    fig = exp.experiment_figure(BEFORE, runs, window=2)
    names = [t.name for t in fig.data]
    assert names.count("a") == 4 and names.count("b") == 4  # reward, gt, KL, bars
    assert "a (held out)" in names and "pretrained editor" in names
    held = next(t for t in fig.data if t.name == "a (held out)")
    assert list(held.x) == [0.0, 3.0, 6.0] and list(held.y) == pytest.approx([25.0, 30.0, 30.0])
    bars = [t for t in fig.data if t.type == "bar"]
    assert list(bars[0].x) == [op for op in OPERATIONS if op in ("add", "remove", "move")] + [
        "all"]


@pytest.mark.parametrize("missing", ["before", "eval", "curves"])
def test_a_missing_file_names_it_and_says_what_to_run(tmp_path, missing):
    before = tmp_path / "editor-eval.json"
    if missing != "before":
        before.write_text(json.dumps(BEFORE))
    run = write_run(tmp_path, "rl-mini", AFTER_MINI, "mini")
    if missing == "eval":
        (tmp_path / "rl-mini-eval.json").unlink()
    if missing == "curves":
        (tmp_path / "rl-mini" / "curves.json").unlink()
    with pytest.raises(SystemExit) as err:
        exp.main(["--before", str(before), "--run", run, "--out", str(tmp_path / "out")])
    message = str(err.value)
    path = {"before": before, "eval": tmp_path / "rl-mini-eval.json",
            "curves": tmp_path / "rl-mini" / "curves.json"}[missing]
    assert str(path) in message and "not found" in message
    assert ("eval-editor" if missing != "curves" else "spatialreward rl") in message
    assert not (tmp_path / "out").exists()


def test_a_json_without_rows_is_refused(tmp_path):
    path = tmp_path / "curves-not-eval.json"
    path.write_text(json.dumps({"n": 120}))
    with pytest.raises(SystemExit, match='has no "rows".*eval-editor'):
        exp.load_eval(path)
    path.write_text("{not json")
    with pytest.raises(SystemExit, match="not valid JSON"):
        exp.load_eval(path)


def test_a_malformed_run_spec_says_the_form():
    with pytest.raises(SystemExit, match="NAME=FOLDER:EVAL"):
        exp.parse_run("data/runs/rl-mini")


def test_png_renders_the_html_in_chromium(tmp_path):
    runs = [exp.RunData("SpatialReward-Mini", curves(), AFTER_MINI, ["mini"])]
    html = exp.write_html(exp.experiment_figure(BEFORE, runs), tmp_path / "experiment.html")
    png = exp.render_png(html, tmp_path / "experiment.png")  # tests/browser.py's browser_page
    with Image.open(png) as image:
        assert image.width == 1200 and 780 <= image.height <= 900
        colours = {rgb for _, rgb in image.convert("RGB").getcolors(1 << 24)}
    assert (0, 114, 178) in colours  # the run's lines and bars are drawn (charts.BLUE)


def test_the_module_examples_hold():
    assert doctest.testmod(exp).failed == 0
