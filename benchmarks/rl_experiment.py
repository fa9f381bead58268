"""The RL experiment, before and after: one pretrained editor, one budget, several rewards.

    python benchmarks/rl_experiment.py --before data/runs/editor-eval.json \\
        --run "SpatialReward-Mini=data/runs/rl-mini:data/runs/rl-mini-eval.json" \\
        --run "global ablation=data/runs/rl-global:data/runs/rl-global-eval.json" \\
        --run "pixel=data/runs/rl-pixel:data/runs/rl-pixel-eval.json" \\
        --out docs/rl [--png]

``--before`` is the pretrained editor's ``eval-editor --json`` file; each ``--run`` is
``NAME=FOLDER:EVAL``: an RL run folder (its ``curves.json``, and the reward it trained on
from ``checkpoint/state.json`` or ``config.json``) and the ``eval-editor --json`` file of
its checkpoint, made with the same prompts (``--split``, ``--n``, ``--seed``).

Prints two Markdown tables: ground-truth success (%) per operation, the pretrained
editor beside each run after RL with the change in points; and per run the steps done,
the minutes spent in steps (evaluations excluded), the mean seconds per step, the reward
mean of the last step, and the held-out reward-model overall (0..10, all operations) of
the run's own reward backend, before -> after, and the prompts that went from failure to
success and back, with the exact sign test on them (when the files hold per-prompt
results). Writes ``OUT/experiment.html`` (plotly embedded, opens offline): training
reward, ground-truth success of the samples (moving average) with the held-out
evaluations as markers, KL to the reference, and held-out success per operation.
``--png`` also renders ``OUT/experiment.png`` in Debian's
Chromium (``tests/browser.py``).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import plotly.graph_objects as go  # noqa: E402
from plotly.subplots import make_subplots  # noqa: E402
from scipy.stats import binomtest  # noqa: E402

from spatialreward.rl.charts import BLUE, GREEN, GREY, ORANGE, _series  # noqa: E402
from spatialreward.synth.language import OPERATIONS  # noqa: E402

NA = "n/a"
RUN_COLOURS = (BLUE, ORANGE, GREEN, "#CC79A7", "#E69F00", "#56B4E9", "#000000")
EVAL_HINT = ("python -m spatialreward eval-editor --policy POLICY --split test --n 120 "
             "--backend mini --backend mini:data/runs/mini-global --backend pixel --json {path}")


@dataclass(frozen=True)
class RunData:
    """One RL run: its curves (per-step dicts), its eval-editor result after RL, and the
    reward backends it trained on (highest weight first; empty when unknown)."""

    name: str
    curves: list[dict[str, Any]]
    result: dict[str, Any]
    rewards: list[str] = field(default_factory=list)


# -- reading ----------------------------------------------------------------------------------


def parse_run(text: str) -> tuple[str, Path, Path]:
    """``NAME=FOLDER:EVAL`` -> (name, run folder, eval JSON).

    >>> name, folder, eval_path = parse_run("global ablation=data/rl-global:data/eval.json")
    >>> name, folder.as_posix(), eval_path.as_posix()
    ('global ablation', 'data/rl-global', 'data/eval.json')
    """
    name, sep, rest = text.partition("=")
    folder, colon, eval_path = rest.rpartition(":")
    if not sep or not colon or not name.strip() or not folder or not eval_path:
        raise SystemExit(f"--run {text!r}: expected NAME=FOLDER:EVAL, e.g. "
                         "'pixel=data/runs/rl-pixel:data/runs/rl-pixel-eval.json'")
    return name.strip(), Path(folder), Path(eval_path)


def load_eval(path: Path) -> dict[str, Any]:
    """An ``eval-editor --json`` file; SystemExit saying how to make it when it is missing
    or is not one."""
    how = EVAL_HINT.format(path=path)
    if not path.is_file():
        raise SystemExit(f"{path} not found; write it with `{how}`")
    try:
        result = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise SystemExit(f"{path} is not valid JSON ({err}); rewrite it with `{how}`") from err
    if not isinstance(result, dict) or not isinstance(result.get("rows"), list):
        raise SystemExit(f'{path} has no "rows", so it is not an eval-editor --json file; '
                         f"write it with `{how}`")
    return result


def load_curves(folder: Path) -> list[dict[str, Any]]:
    """``FOLDER/curves.json`` (the run writes it when it ends)."""
    path = folder / "curves.json"
    how = "python -m spatialreward rl --config configs/rl-*.json"
    if not path.is_file():
        raise SystemExit(f"{path} not found; an RL run writes it when it ends "
                         f"(`{how}` with out {folder})")
    try:
        curves = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise SystemExit(f"{path} is not valid JSON ({err}); rerun `{how}`") from err
    if not isinstance(curves, list):
        raise SystemExit(f"{path} should hold a list of per-step dicts; rerun `{how}`")
    return curves


def run_rewards(folder: Path) -> list[str]:
    """The reward backends a run trained on, highest weight first, from its checkpoint's
    ``state.json`` (``python -m spatialreward rl``) or its ``config.json`` (the Train tab);
    empty when neither is there."""
    for path, key in ((folder / "checkpoint" / "state.json", "config"),
                      (folder / "config.json", None)):
        if not path.is_file():
            continue
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError:
            continue
        config = data.get(key, {}) if key else data
        terms = config.get("rewards") if isinstance(config, dict) else None
        if isinstance(terms, list) and terms:
            terms = sorted(terms, key=lambda t: -float(t.get("weight", 1.0)))
            return [str(t["backend"]) for t in terms if "backend" in t]
    return []


# -- numbers and tables (pure) -----------------------------------------------------------------


def _number(x: Any) -> float | None:
    if x is None or isinstance(x, bool):
        return None
    try:
        value = float(x)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def rows_by_op(result: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {str(r["op"]): r for r in result.get("rows", []) if "op" in r}


def operations(*results: Mapping[str, Any]) -> list[str]:
    """The library's operations, any other found in the results, then ``all``."""
    seen = {op for r in results for op in rows_by_op(r)}
    extra = sorted(seen - set(OPERATIONS) - {"all"})
    return [op for op in OPERATIONS if op in seen] + extra + (["all"] if "all" in seen else [])


def with_change(after: float | None, before: float | None, digits: int = 1) -> str:
    """``after (+change)``, both rounded first so the change adds up on the page.

    >>> with_change(41.666, 35.0)
    '41.7 (+6.7)'
    >>> with_change(30.0, 35.0), with_change(35.0, 35.0), with_change(35.0, None)
    ('30.0 (-5.0)', '35.0 (+0.0)', '35.0')
    >>> with_change(None, 35.0)
    'n/a'
    """
    if after is None:
        return NA
    a = round(after, digits)
    if before is None:
        return f"{a:.{digits}f}"
    change = round(a - round(before, digits), digits) + 0.0  # + 0.0: no "-0.0"
    return f"{a:.{digits}f} ({change:+.{digits}f})"


def _fmt(x: float | None, spec: str) -> str:
    return NA if x is None else format(x, spec)


def _markdown(header: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1) -> str:
    align = [":---"] * left + ["---:"] * (len(header) - left)
    lines = [header, align, *rows]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)


def success_table(before: Mapping[str, Any], after: Mapping[str, Mapping[str, Any]]) -> str:
    """Ground-truth success (%) per operation: the pretrained editor, then each run after
    RL with the change in points; ``n/a`` where a file has no value."""
    old = rows_by_op(before)
    new = {name: rows_by_op(result) for name, result in after.items()}
    rows = []
    for op in operations(before, *after.values()):
        b = _number(old.get(op, {}).get("gt_success"))
        b = None if b is None else 100 * b
        cells = [op, _fmt(b, ".1f")]
        for rows_after in new.values():
            a = _number(rows_after.get(op, {}).get("gt_success"))
            cells.append(with_change(None if a is None else 100 * a, b))
        rows.append(cells)
    return _markdown(["operation", "pretrained editor", *after], rows)


def training_summary(curves: Sequence[Mapping[str, Any]]) -> dict[str, float | None]:
    """Steps done, minutes spent in steps, mean seconds per step and the last step's
    reward mean (evaluation entries, marked ``eval``, are not steps)."""
    steps = [h for h in curves if not h.get("eval") and "step" in h]
    seconds = [s for s in (_number(h.get("step_seconds")) for h in steps) if s is not None]
    rewards = [r for r in (_number(h.get("reward_mean")) for h in steps) if r is not None]
    return {"steps": float(len({h["step"] for h in steps})) if steps else None,
            "minutes": sum(seconds) / 60 if seconds else None,
            "step_seconds": sum(seconds) / len(seconds) if seconds else None,
            "final_reward": rewards[-1] if rewards else None}


def own_overall(result: Mapping[str, Any],
                rewards: Sequence[str]) -> tuple[str | None, float | None]:
    """(backend, overall on all operations) for the first of ``rewards`` the result scored."""
    row = rows_by_op(result).get("all", {})
    for spec in rewards:
        if f"{spec}/overall" in row:
            return spec, _number(row[f"{spec}/overall"])
    return (rewards[0] if rewards else None), None


def paired_change(before: Mapping[str, Any], after: Mapping[str, Any]
                  ) -> dict[str, float] | None:
    """Prompts the run turned from failure to success (``gained``) and back (``lost``),
    matched by prompt id, with the exact two-sided sign test's p-value on those
    discordant prompts (McNemar's test); None when a file lacks per-prompt results.

    >>> b = {"prompts": [{"id": "a", "gt_success": False}, {"id": "b", "gt_success": True}]}
    >>> a = {"prompts": [{"id": "a", "gt_success": True}, {"id": "b", "gt_success": True}]}
    >>> paired_change(b, a)
    {'gained': 1, 'lost': 0, 'p': 1.0}
    """
    old = {p["id"]: bool(p["gt_success"]) for p in before.get("prompts") or []}
    new = {p["id"]: bool(p["gt_success"]) for p in after.get("prompts") or []}
    shared = old.keys() & new.keys()
    if not shared:
        return None
    gained = sum(1 for k in shared if new[k] and not old[k])
    lost = sum(1 for k in shared if old[k] and not new[k])
    p = float(binomtest(gained, gained + lost, 0.5).pvalue) if gained + lost else 1.0
    return {"gained": gained, "lost": lost, "p": round(p, 4)}


def runs_table(before: Mapping[str, Any], runs: Sequence[RunData]) -> str:
    """Per run: its reward, steps, minutes, s/step, final reward mean, and the held-out
    reward-model overall of its own reward (0..10), before -> after."""
    rows = []
    for run in runs:
        s = training_summary(run.curves)
        spec, after = own_overall(run.result, run.rewards)
        _, old = own_overall(before, [spec] if spec else [])
        pair = paired_change(before, run.result)
        rows.append([run.name, spec or NA, _fmt(s["steps"], ".0f"), _fmt(s["minutes"], ".1f"),
                     _fmt(s["step_seconds"], ".2f"), _fmt(s["final_reward"], ".3f"),
                     with_change(after, old, digits=2),
                     NA if pair is None else
                     f"+{pair['gained']} / -{pair['lost']} (p = {pair['p']:.2g})"])
    return _markdown(["run", "reward", "steps", "minutes in steps", "s/step",
                      "final reward mean", "own reward overall, all ops (0..10)",
                      "prompts gained / lost (sign test)"], rows, left=2)


def setting_mismatches(before: Mapping[str, Any], runs: Sequence[RunData]) -> list[str]:
    """Eval settings that differ between the pretrained editor's file and a run's."""
    notes = []
    for run in runs:
        for key in ("split", "n", "seed", "steps", "phrasings"):
            if key in before and key in run.result and before[key] != run.result[key]:
                notes.append(f"{run.name}: eval {key} {run.result[key]!r} but the pretrained "
                             f"editor's is {before[key]!r}; the tables compare different prompts")
    return notes


def moving_average(values: Sequence[float], window: int) -> list[float]:
    """Trailing mean over up to ``window`` values.

    >>> moving_average([0.0, 1.0, 2.0, 3.0], 2)
    [0.0, 0.5, 1.5, 2.5]
    """
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


# -- figure ------------------------------------------------------------------------------------


def experiment_figure(before: Mapping[str, Any], runs: Sequence[RunData], *,
                      window: int = 10, height: int = 780) -> go.Figure:
    """(a) training reward mean, (b) ground-truth success of the samples (moving average)
    and held out (markers), (c) KL to the reference, (d) held-out success per operation."""
    fig = make_subplots(rows=2, cols=2, vertical_spacing=0.13, horizontal_spacing=0.08,
                        subplot_titles=(
                            "(a) training reward mean",
                            f"(b) ground-truth success %: samples ({window}-step mean), "
                            "held out (markers)",
                            "(c) KL to the reference",
                            "(d) held-out ground-truth success % per operation"))
    for i, run in enumerate(runs):
        colour = RUN_COLOURS[i % len(RUN_COLOURS)]
        line = dict(color=colour)
        common = dict(legendgroup=run.name, name=run.name)
        x, y = _series(run.curves, "reward_mean")
        fig.add_trace(go.Scatter(x=x, y=y, line=line, **common), row=1, col=1)
        x, y = _series(run.curves, "gt_success")
        fig.add_trace(go.Scatter(x=x, y=[100 * v for v in moving_average(y, window)],
                                 line=line, showlegend=False, **common), row=1, col=2)
        x, y = _series(run.curves, "heldout_gt_success")
        fig.add_trace(go.Scatter(x=x, y=[100 * v for v in y], mode="lines+markers",
                                 line=dict(color=colour, dash="dot"),
                                 marker=dict(size=9, symbol="diamond"), showlegend=False,
                                 legendgroup=run.name, name=f"{run.name} (held out)"),
                      row=1, col=2)
        x, y = _series(run.curves, "kl")
        fig.add_trace(go.Scatter(x=x, y=y, line=line, showlegend=False, **common),
                      row=2, col=1)
    ops = operations(before, *(r.result for r in runs))
    for name, result, colour in [("pretrained editor", before, GREY)] + [
            (r.name, r.result, RUN_COLOURS[i % len(RUN_COLOURS)]) for i, r in enumerate(runs)]:
        rows = rows_by_op(result)
        values = [_number(rows.get(op, {}).get("gt_success")) for op in ops]
        fig.add_trace(go.Bar(x=ops, y=[None if v is None else 100 * v for v in values],
                             marker_color=colour, name=name, legendgroup=name,
                             showlegend=name == "pretrained editor"), row=2, col=2)
    fig.update_layout(barmode="group", height=height, margin=dict(l=10, r=10, t=40, b=10),
                      legend=dict(orientation="h", y=-0.07), template="plotly_white")
    fig.update_annotations(font_size=13)  # the subplot titles fit half of 1200 px
    for col in (1, 2):
        fig.update_xaxes(title_text="step", row=1, col=col)
    fig.update_xaxes(title_text="step", row=2, col=1)
    fig.update_yaxes(exponentformat="e", row=2, col=1)  # KL: 1e-4, not 100µ
    fig.update_yaxes(range=[0, 100], row=1, col=2)
    fig.update_yaxes(range=[0, 100], row=2, col=2)
    return fig


def write_html(fig: go.Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.write_html(str(path), include_plotlyjs=True)  # plotly.js inside: opens offline
    return path


def render_png(html: Path, png: Path, width: int = 1200, height: int = 800) -> Path:
    """Screenshot ``html`` in Debian's Chromium (tests/browser.py's ``browser_page``)."""
    try:
        from tests.browser import browser_page

        with browser_page(width, height) as page:
            page.goto(html.resolve().as_uri())
            page.wait_for_selector(".js-plotly-plot .main-svg", timeout=30_000)
            page.screenshot(path=str(png), full_page=True)
    except (ImportError, RuntimeError) as err:
        raise SystemExit(f"--png needs playwright (pip install -r requirements-dev.txt) and "
                         f"Chromium (sudo apt-get install -y chromium): {err}") from err
    return png


# -- command line ------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", required=True, type=Path,
                        help="eval-editor --json file of the pretrained editor")
    parser.add_argument("--run", action="append", required=True, metavar="NAME=FOLDER:EVAL",
                        help="an RL run: its name, its folder (curves.json) and the "
                        "eval-editor --json file of its checkpoint (repeat)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "rl",
                        help="folder for experiment.html (and .png); default docs/rl")
    parser.add_argument("--png", action="store_true",
                        help="also render OUT/experiment.png in Chromium (1200 x 800)")
    parser.add_argument("--window", type=int, default=10,
                        help="steps in the moving average of the samples' success (default 10)")
    args = parser.parse_args(argv)
    before = load_eval(args.before)
    runs = []
    for text in args.run:
        name, folder, eval_path = parse_run(text)
        runs.append(RunData(name, load_curves(folder), load_eval(eval_path),
                            run_rewards(folder)))
    if len({r.name for r in runs}) != len(runs):
        raise SystemExit("two --run share a name; give each run its own NAME")
    print(f"Ground-truth success (%) on {before.get('n', '?')} {before.get('split', '?')} "
          f"prompts, pretrained editor -> after RL (change in points):\n")
    print(success_table(before, {r.name: r.result for r in runs}))
    print("\nThe runs (minutes: time in steps, evaluations excluded; reward overall: "
          "all operations, pretrained -> after):\n")
    print(runs_table(before, runs))
    for note in setting_mismatches(before, runs):
        print(f"note: {note}", file=sys.stderr)
    html = write_html(experiment_figure(before, runs, window=args.window),
                      args.out / "experiment.html")
    print(f"\nwrote {html}")
    if args.png:
        print(f"wrote {render_png(html, args.out / 'experiment.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
