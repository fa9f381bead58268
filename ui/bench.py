"""The Bench tab: run a backend over a pair-format dataset, read and compare stored runs,
and see how the model and the annotators agree.

Every callback calls a :class:`Services` method (bench, bench_result, bench_runs,
compare_bench, agreement) and turns the returned dicts into tables and plotly figures;
the run itself shares the ``model`` concurrency group with Inspect's judge, so one model
call runs at a time while every other event keeps answering.

API: ``/bench`` (dataset path under the data folder, backend, limit) -> summary dict;
``/run_bench`` (path, upload, backend, limit, by) is the tab's Run button;
``/show_run`` (run id), ``/compare_runs`` (run a, run b), ``/refresh_runs``,
``/agreement`` (backend or "").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import gradio as gr
import pandas as pd
import plotly.graph_objects as go

from spatialreward.errors import InputError
from spatialreward.service import Services

from .annotate import documented_api
from .errors import user_errors, username

HEAD = ""

ROW_COLUMNS = ["group", "label", "n", "pairs", "accuracy", "ci_low", "ci_high", "failed"]
COMPARE_COLUMNS = ["group", "label", "a", "b", "delta", "n_a", "n_b"]
BLUE, ORANGE = "#0072B2", "#D55E00"


# -- figures ------------------------------------------------------------------------------


def _table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> pd.DataFrame:
    frame = pd.DataFrame([{c: r.get(c) for c in columns} for r in rows], columns=list(columns))
    return frame.round(3)


def accuracy_chart(rows: Sequence[Mapping[str, Any]], title: str) -> go.Figure:
    """Accuracy per group on 0..1, with the 95% Wilson interval as error bars."""
    rows = [r for r in rows if r["accuracy"] is not None]
    acc = [r["accuracy"] for r in rows]
    fig = go.Figure(go.Bar(
        x=[r["label"] for r in rows], y=acc, marker_color=BLUE,
        text=[f"{a:.2f} (n={r['n']})" for a, r in zip(acc, rows, strict=True)],
        textposition="outside",
        error_y=dict(type="data", symmetric=False,
                     array=[(r["ci_high"] or a) - a for a, r in zip(acc, rows, strict=True)],
                     arrayminus=[a - (r["ci_low"] or a) for a, r in zip(acc, rows, strict=True)]),
    ))
    fig.update_layout(title=title, yaxis=dict(range=[0, 1.15], title="pairwise accuracy"),
                      height=320, margin=dict(l=10, r=10, t=40, b=10))
    return fig


def score_chart(samples: Mapping[str, Sequence[float]]) -> go.Figure:
    """Overlaid histograms: the model's scores of preferred candidates vs the others."""
    fig = go.Figure()
    for key, name, color in (("preferred", "preferred by humans", BLUE),
                             ("other", "other candidates", ORANGE)):
        fig.add_trace(go.Histogram(x=list(samples.get(key, [])), name=name, opacity=0.6,
                                   marker_color=color, xbins=dict(start=0, end=10, size=0.5)))
    fig.update_layout(barmode="overlay", title="Score distribution",
                      xaxis=dict(range=[0, 10], title="model score (item's dimension, 0..10)"),
                      yaxis=dict(title="candidates"), height=320,
                      margin=dict(l=10, r=10, t=40, b=10))
    return fig


def compare_chart(comparison: Mapping[str, Any]) -> go.Figure:
    """Grouped bars: run A and run B on every accuracy row they share or not."""
    rows = comparison["rows"]
    labels = [r["label"] if r["group"] == "overall" else f"{r['group']}: {r['label']}"
              for r in rows]
    fig = go.Figure()
    for key, color in (("a", BLUE), ("b", ORANGE)):
        head = comparison[key]
        fig.add_trace(go.Bar(x=labels, y=[r[key] for r in rows], marker_color=color,
                             name=f"#{head['run_id']} {head['backend']}"))
    fig.update_layout(barmode="group", title="Accuracy, run A vs run B",
                      yaxis=dict(range=[0, 1.05], title="pairwise accuracy"), height=340,
                      margin=dict(l=10, r=10, t=40, b=10))
    return fig


def headline(result: Mapping[str, Any]) -> str:
    """One Markdown paragraph: accuracy with its interval, recall, failures, speed."""

    def num(x: Any) -> str:
        return "-" if x is None else f"{x:.3f}"

    ci = result.get("accuracy_ci")
    parts = [f"**Accuracy {num(result['accuracy'])}**"
             + (f" (95% CI {ci[0]:.3f}-{ci[1]:.3f})" if ci else "")
             + f" over {result['n']} items / {result['n_pairs']} pairs"]
    if "ranking_accuracy" in result:
        parts.append(f"exact ranking {num(result['ranking_accuracy'])} "
                     f"(n={result['ranking_n']})")
    if result.get("region_recall") is not None:
        parts.append(f"region recall {num(result['region_recall'])} at IoU 0.5 "
                     f"({result['region_targets']} target boxes)")
    parts.append(f"failed {result['failed']}, human ties {result['tied_human']}")
    if result.get("seconds_per_item") is not None:
        parts.append(f"{result['seconds_per_item']:.2f} s/item")
    backend = result["backend"]
    return (f"Run #{result.get('run_id')}: `{backend['spec']}` (version {backend['version']}) "
            f"on `{result['dataset']}`\n\n" + " · ".join(parts))


def _by_key(result: Mapping[str, Any]) -> str | None:
    keys = list(result.get("by", {}))
    return "flaw" if "flaw" in keys else (keys[0] if keys else None)


def result_views(view: Mapping[str, Any]) -> tuple[Any, ...]:
    """(headline, accuracy table, category chart, by-key chart, score chart) of a
    :meth:`Services.bench_result`."""
    result, rows = view["result"], view["rows"]
    key = _by_key(result)
    by_rows = [r for r in rows if r["group"] == key]
    return (
        headline(result),
        _table(rows, ROW_COLUMNS),
        accuracy_chart([r for r in rows if r["group"] == "category"], "Accuracy per category"),
        accuracy_chart(by_rows, f"Accuracy per {key}" if key else
                       "Accuracy per metadata key (set 'Break down by')"),
        score_chart(view["scores"]),
    )


def agreement_views(report: Mapping[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The agreement report as (headline table, per-annotator table)."""
    m, inter, ceil = (report["model_vs_human"], report["inter_annotator"],
                      report["human_ceiling"])
    head = pd.DataFrame([
        {"measure": f"model vs human majority ({m['backend'] or 'no model judgments'})",
         "value": m["accuracy"], "over": f"{m['items']} items"},
        {"measure": "human ceiling (one vs the others' majority)",
         "value": ceil["accuracy"], "over": f"{ceil['judgments']} judgments"},
        {"measure": f"inter-annotator ({inter['method'] or 'needs 2+ annotators'})",
         "value": inter["value"], "over": f"{inter['items']} items, "
                                          f"{inter['annotators']} annotators"},
    ]).round(3)
    columns = ["annotator", "judgments", "agreement_with_others", "gold_items", "gold_accuracy"]
    per = pd.DataFrame(report["per_annotator"], columns=columns).round(3)
    return head, per


# -- the tab ------------------------------------------------------------------------------


def _limit(value: Any) -> int | None:
    """0, empty or None: every item."""
    if value is None or value == "":
        return None
    n = int(value)
    return n if n > 0 else None


def build_bench_tab(services: Services) -> None:
    backends = services.offered_choices()  # (label with a one-line description, spec)
    default_backend = services.config.backend
    run_choices = services.bench_runs
    choices = run_choices()

    gr.Markdown("Run a backend over a pair-format dataset (a path under the data folder, "
                "or an upload: a `.zip` holding `pairs.jsonl` and its images). Each run is "
                "recorded in the store; pick stored runs below to view or compare them.")
    with gr.Row():
        path = gr.Textbox("", label="Dataset path under the data folder",
                          placeholder="eval/pairs.jsonl (a file, or a folder with pairs.jsonl)",
                          scale=3, elem_id="bench-path")
        upload = gr.File(label="...or upload a .zip (pairs.jsonl + images)",
                         file_types=[".zip", ".jsonl"], type="filepath", scale=2,
                         elem_id="bench-upload")
    with gr.Row():
        backend = gr.Dropdown(backends, value=default_backend, label="Backend", scale=1)
        limit = gr.Number(value=0, precision=0, minimum=0, label="Limit (0 = all items)",
                          scale=1)
        by = gr.Textbox(value="flaw", label="Break down by (metadata keys)", scale=2)
        run = gr.Button("Run bench", variant="primary", scale=1, elem_id="bench-run")
    summary = gr.JSON(label="Summary", elem_id="bench-summary")

    gr.Markdown("### Results")
    with gr.Row():
        run_pick = gr.Dropdown(choices, value=None, label="Stored run", allow_custom_value=True,
                               scale=4, elem_id="bench-run-pick")
        refresh = gr.Button("Refresh runs", scale=1)
    head = gr.Markdown(elem_id="bench-headline")
    table = gr.Dataframe(headers=ROW_COLUMNS, label="Accuracy (95% Wilson interval)",
                         interactive=False, elem_id="bench-table")
    with gr.Row():
        cat_plot = gr.Plot(label="Per category", elem_id="bench-categories")
        by_plot = gr.Plot(label="Per flaw / key", elem_id="bench-by")
    score_plot = gr.Plot(label="Score distribution", elem_id="bench-scores")

    with gr.Accordion("Compare two runs", open=False):
        with gr.Row():
            run_a = gr.Dropdown(choices, label="Run A", allow_custom_value=True)
            run_b = gr.Dropdown(choices, label="Run B", allow_custom_value=True)
            compare = gr.Button("Compare")
        compare_table = gr.Dataframe(headers=COMPARE_COLUMNS, interactive=False,
                                     label="Accuracy side by side (delta = B - A)")
        compare_plot = gr.Plot(label="Run A vs run B")

    with gr.Accordion("Agreement: model vs people, people vs people", open=False):
        with gr.Row():
            agree_backend = gr.Dropdown([("most judged", ""), *backends],
                                        value="", label="Model backend", scale=2)
            agree = gr.Button("Compute agreement", scale=1)
        agree_head = gr.Dataframe(interactive=False, label="Agreement over current judgments")
        agree_per = gr.Dataframe(interactive=False, label="Per annotator")
        with gr.Accordion("Report JSON", open=False):
            agree_raw = gr.JSON()

    def picks(value: str | None = None) -> tuple[Any, Any, Any]:
        fresh = run_choices()
        return (gr.update(choices=fresh, value=value) if value else gr.update(choices=fresh),
                gr.update(choices=fresh), gr.update(choices=fresh))

    @user_errors
    def run_bench(request: gr.Request, dataset_path: str = "", upload: str | None = None,
                  backend: str = default_backend, limit: int = 0, by: str = "flaw",
                  progress: gr.Progress = gr.Progress()) -> tuple[Any, ...]:  # noqa: B008
        """Bench a backend on a pair-format dataset (a path under the data folder, or an
        uploaded .zip / .jsonl) and record the run; returns its summary.

        Args:
            dataset_path: a .jsonl, or a folder holding pairs.jsonl, under the data folder
            upload: instead of a path, an uploaded .zip (pairs.jsonl + images) or .jsonl
            backend: an offered backend spec (e.g. mini, pixel)
            limit: judge at most this many items (0: every item)
            by: metadata keys to break the accuracy down by, space or comma separated
        """
        def tick(done: int, total: int) -> None:
            progress((done, total), desc="judging", unit="items")

        result = services.bench(path=dataset_path, upload=upload, backend=backend,
                                limit=_limit(limit), by=(by or "").replace(",", " ").split(),
                                user=username(request), progress=tick)
        return (result["summary"], *picks(str(result["run_id"])))

    run.click(run_bench, inputs=[path, upload, backend, limit, by],
              outputs=[summary, run_pick, run_a, run_b], api_name="run_bench",
              concurrency_limit=1, concurrency_id="model")

    @user_errors
    def show_run(run_id: str | None = None) -> tuple[Any, ...]:
        """A stored bench run's headline, accuracy table and charts.

        Args:
            run_id: the stored run's id (see /refresh_runs)
        """
        if not run_id:
            return (gr.skip(),) * 5
        return result_views(services.bench_result(run_id))

    run_pick.change(show_run, inputs=[run_pick],
                    outputs=[head, table, cat_plot, by_plot, score_plot], api_name="show_run")
    def refresh_runs() -> tuple[Any, Any, Any]:
        """The stored bench runs, newest first, as the three run dropdowns' choices."""
        return picks()

    refresh.click(refresh_runs, outputs=[run_pick, run_a, run_b], api_name="refresh_runs")
    root = gr.context.Context.root_block  # the Blocks being built: run on every page load
    if root is None:
        raise RuntimeError("build_bench_tab must be called inside a gr.Blocks")
    root.load(refresh_runs, outputs=[run_pick, run_a, run_b], api_name="bench_load",
              api_visibility="private")

    @user_errors
    def compare_runs(a: str | None = None, b: str | None = None) -> tuple[Any, ...]:
        """Two stored bench runs' accuracies side by side (delta = B - A).

        Args:
            a: run A's id
            b: run B's id
        """
        if not a or not b:
            raise InputError("pick two stored runs (Run A and Run B) first")
        comparison = services.compare_bench(a, b)
        return _table(comparison["rows"], COMPARE_COLUMNS), compare_chart(comparison)

    compare.click(compare_runs, inputs=[run_a, run_b], outputs=[compare_table, compare_plot],
                  api_name="compare_runs")

    @user_errors
    def agreement(backend: str = "") -> tuple[Any, ...]:
        """Model vs the human majority, the human ceiling and inter-annotator agreement.

        Args:
            backend: the model judgments to compare ("": the backend with the most)
        """
        report = services.agreement(backend)
        return (*agreement_views(report), report)

    agree.click(agreement, inputs=[agree_backend],
                outputs=[agree_head, agree_per, agree_raw], api_name="agreement")

    @user_errors
    def bench(request: gr.Request, dataset: str, backend: str = default_backend,
              limit: int = 0) -> dict[str, Any]:
        """Bench a backend on a pair-format dataset under the data folder (a .jsonl, a
        folder holding pairs.jsonl, or a .zip of one); limit 0 = every item. Records the
        run in the store and returns its summary: accuracy, n, run_id, per category.

        Args:
            dataset: a .jsonl, a folder holding pairs.jsonl, or a .zip, under the data folder
            backend: an offered backend spec (e.g. mini, pixel)
            limit: judge at most this many items (0: every item)
        """
        result = services.bench(path=dataset, backend=backend, limit=_limit(limit),
                                by=("flaw",), user=username(request))
        return dict(result["summary"])

    documented_api(bench, api_name="bench", concurrency_limit=1, concurrency_id="model")
