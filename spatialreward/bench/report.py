"""Reports of bench runs: one self-contained HTML page per run, and run comparisons.

:func:`write_report` turns a results dict (what ``bench --out`` writes) into an HTML page
with plotly charts: the headline table, accuracy by category and by the format's own
breakdown, the confusion of human and model verdicts around ties, the distribution of
scores for the preferred and the other candidates, and the worst disagreements (the
model's most confident wrong verdicts) with thumbnails of their images. plotly.js is
inlined, so the page opens offline.

:func:`compare_results` lines two runs up: headline figures, per-category accuracy and,
item by item, where their verdicts differ (with McNemar's exact test on those items).
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InputError
from .public_metrics import groups_of, tie_confusion

if TYPE_CHECKING:
    from .formats import BenchItem

RESULTS_FILE = "results.json"
THUMB = 160
"""Longest side of a thumbnail in the worst-disagreements table, in pixels."""
WORST = 12


# -- loading and helpers ------------------------------------------------------------------


def load_results(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A results dict from ``results.json`` or a folder holding one."""
    path = Path(path)
    if path.is_dir():
        path = path / RESULTS_FILE
    try:
        with path.open(encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError) as err:
        raise InputError(f"cannot read bench results from {path} ({err}); give a "
                         "results.json written by `bench --out`") from None
    if not isinstance(data, dict) or "items" not in data or "backend" not in data:
        raise InputError(f"{path} is not a bench results file (no items/backend)")
    return data


def _num(x: Any, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def headline(results: Mapping[str, Any]) -> tuple[str, float | None]:
    """The benchmark's own headline figure (name, value), else pairwise accuracy."""
    bench = results.get("benchmark") or {}
    head = bench.get("headline")
    if head:
        return str(head["name"]), head["value"]
    return "pairwise accuracy", results.get("accuracy")


def margin(item: Mapping[str, Any]) -> float | None:
    """How confidently wrong a verdict is: the best score minus the best score inside
    the humans' best group (0 when the model agrees); None without a full set of scores."""
    scores = item["scores"]
    if item.get("ranking") is None or any(s is None for s in scores) or len(scores) < 2:
        return None
    best = groups_of(item["ranking"])[0]
    return float(max(scores) - max(scores[c] for c in best))


def worst_disagreements(results: Mapping[str, Any], n: int = WORST) -> list[dict[str, Any]]:
    """The ``n`` wrong items with the largest :func:`margin`, then the tied ones."""
    wrong = [it for it in results.get("items", []) if it.get("correct") is False
             and not it.get("failed") and margin(it) is not None]
    return sorted(wrong, key=lambda it: (-(margin(it) or 0.0), it["id"]))[:n]


def _thumb(ref: Any) -> str | None:
    from PIL import Image

    from .tables import image_input

    try:
        data = image_input(ref)
        with Image.open(data if isinstance(data, Path) else io.BytesIO(data)) as opened:
            im = opened.convert("RGB")
        im.thumbnail((THUMB, THUMB))
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=80)
    except Exception:  # a broken image is shown as missing, never breaks the report
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


# -- figures ------------------------------------------------------------------------------


def _accuracy_figure(results: Mapping[str, Any]) -> Any | None:
    import plotly.graph_objects as go

    fig = go.Figure()
    tables = {"category": results.get("by_category", {}), **results.get("by", {})}
    for name, table in tables.items():
        labels = [k for k, v in table.items() if v.get("accuracy") is not None]
        acc = [table[k]["accuracy"] for k in labels]
        ci = [table[k].get("accuracy_ci") or [a, a] for k, a in zip(labels, acc, strict=True)]
        fig.add_bar(name=name, x=[f"{name}: {k}" for k in labels], y=acc,
                    error_y={"type": "data", "symmetric": False,
                             "array": [c[1] - a for c, a in zip(ci, acc, strict=True)],
                             "arrayminus": [a - c[0] for c, a in zip(ci, acc, strict=True)]},
                    hovertext=[f"n={table[k]['n']}" for k in labels])
    if not fig.data:
        return None
    fig.update_layout(title="Pairwise accuracy by group (95% Wilson interval)",
                      yaxis={"range": [0, 1], "title": "accuracy"}, height=420)
    return fig


def _benchmark_figure(results: Mapping[str, Any]) -> Any | None:
    import plotly.graph_objects as go

    fmt, bench = results.get("format"), results.get("benchmark") or {}
    fig = go.Figure()
    if fmt == "editscore":
        for dim, rows in bench.get("by_task_type", {}).items():
            fig.add_bar(name=dim, x=list(rows), y=[r["accuracy"] for r in rows.values()])
        title = "EditReward-Bench: accuracy per task type and dimension"
    elif fmt == "tiger":
        subsets = bench.get("by_subset", {})
        for key in ("accuracy_with_ties", "accuracy_without_ties", "group_accuracy"):
            fig.add_bar(name=key, x=list(subsets), y=[s[key] for s in subsets.values()])
        title = "EditReward-Bench (TIGER-Lab): accuracy per subset"
    elif fmt == "merbench":
        by_k = bench.get("by_k", {})
        for key in ("exact", "top1", "kendall_tau", "spearman_rho", "ndcg"):
            fig.add_bar(name=key, x=[f"K={k}" for k in by_k], y=[r[key] for r in by_k.values()])
        title = "MER-Bench: ranking agreement per number of candidates"
    elif fmt == "gedit":
        tasks = bench.get("overall", {}).get("by_task_type", {})
        for key in ("semantics", "quality", "overall"):
            fig.add_bar(name=key, x=list(tasks), y=[t[key] for t in tasks.values()])
        title = "GEdit-Bench: scores of the edits per task type (0..10)"
    elif fmt == "store":
        cats = bench.get("by_category", {})
        fig.add_bar(name="model vs majority", x=list(cats),
                    y=[c["accuracy"] for c in cats.values()])
        ceiling = (bench.get("human_ceiling") or {}).get("accuracy")
        if ceiling is not None:
            fig.add_hline(y=ceiling, line_dash="dash",
                          annotation_text=f"human ceiling {ceiling:.3f}")
        title = "Agreement with the human majority per category"
    else:
        return None
    fig.update_layout(title=title, barmode="group", height=420)
    return fig


def _confusion_figure(results: Mapping[str, Any]) -> Any | None:
    import plotly.graph_objects as go

    eps = 0.0
    if results.get("format") == "tiger":
        eps = float(((results.get("benchmark") or {}).get("overall") or {})
                    .get("tie_threshold") or 0.0)
    table = tie_confusion(results.get("items", []), eps)
    if not any(sum(row.values()) for row in table.values()):
        return None
    cols = list(next(iter(table.values())))
    z = [[table[h][c] for c in cols] for h in table]
    fig = go.Figure(go.Heatmap(z=z, x=[f"model: {c}" for c in cols],
                               y=[f"human: {h}" for h in table], text=z,
                               texttemplate="%{text}", colorscale="Blues"))
    fig.update_layout(title=f"Human vs model verdicts on pairs (model tie: |margin| <= {eps:g})",
                      height=380, yaxis={"autorange": "reversed"})
    return fig


def _score_figure(results: Mapping[str, Any]) -> Any | None:
    import plotly.graph_objects as go

    preferred: list[float] = []
    other: list[float] = []
    for it in results.get("items", []):
        if it.get("ranking") is None:
            continue
        best = groups_of(it["ranking"])[0]
        for k, s in enumerate(it["scores"]):
            if s is not None:
                (preferred if k in best else other).append(s)
    if not preferred and not other:
        return None
    fig = go.Figure()
    fig.add_histogram(x=preferred, name="humans' best", opacity=0.65, nbinsx=40)
    fig.add_histogram(x=other, name="the others", opacity=0.65, nbinsx=40)
    fig.update_layout(barmode="overlay", title="Score distributions", height=380,
                      xaxis={"title": "score on the item's dimension (0..10)"})
    return fig


# -- the page -------------------------------------------------------------------------------


def _rows(pairs: Sequence[tuple[str, Any]]) -> str:
    return "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(_num(v))}</td></tr>"
                   for k, v in pairs)


def _worst_table(results: Mapping[str, Any], items: Mapping[str, BenchItem]) -> str:
    rows = []
    for it in worst_disagreements(results):
        ref = items.get(it["id"])
        pics = []
        if ref is not None:
            for label, img in [("source", ref.source),
                               *((f"#{k}", c) for k, c in enumerate(ref.candidates))]:
                src = _thumb(img)
                cell = (f'<img src="{src}" alt="{label}">' if src else "(unreadable)")
                pics.append(f"<figure>{cell}<figcaption>{html.escape(label)}</figcaption>"
                            "</figure>")
        scores = ", ".join(_num(s, 2) for s in it["scores"])
        rows.append(
            f"<tr><td>{html.escape(str(it['id']))}<br><small>"
            f"{html.escape(str(it.get('category') or ''))} / {html.escape(it['dimension'])}"
            f"</small></td><td>{html.escape(json.dumps(it['ranking']))}</td>"
            f"<td>{html.escape(scores)}</td><td>{_num(margin(it), 2)}</td>"
            f"<td class=pics>{''.join(pics)}</td></tr>")
    if not rows:
        return "<p>No wrong verdicts with a full set of scores.</p>"
    return ("<table><tr><th>item</th><th>human order</th><th>scores</th>"
            "<th>margin</th><th>images</th></tr>" + "".join(rows) + "</table>")


_STYLE = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}
table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:4px 8px;
text-align:left;vertical-align:top}figure{display:inline-block;margin:2px;text-align:center}
figcaption{font-size:small}.pics{white-space:nowrap}"""


def render_report(results: Mapping[str, Any],
                  items: Sequence[BenchItem] | None = None) -> str:
    """The HTML page of one run; ``items`` (the benchmark's) give the thumbnails."""
    import plotly.offline

    name, value = headline(results)
    backend = results.get("backend", {})
    cache = results.get("cache") or {}
    summary = [("dataset", results.get("dataset")),
               ("format", results.get("format_title") or results.get("format")),
               ("backend", f"{backend.get('spec')} ({backend.get('version')})"),
               (name, value), ("pairwise accuracy", results.get("accuracy")),
               ("items", results.get("n")), ("failed", results.get("failed")),
               ("failed: answer cut off", results.get("truncated")),
               ("judgments reused / made", f"{cache.get('reused')} / {cache.get('judged')}"),
               ("items per second", results.get("items_per_second")),
               ("ranks", results.get("world_size")), ("created", results.get("created"))]
    figures = [f for f in (_benchmark_figure(results), _accuracy_figure(results),
                           _confusion_figure(results), _score_figure(results)) if f]
    charts = "".join(f.to_html(full_html=False, include_plotlyjs=False) for f in figures)
    bench = results.get("benchmark")
    details = (f"<details><summary>all benchmark metrics</summary><pre>"
               f"{html.escape(json.dumps(bench, indent=1))}</pre></details>" if bench else "")
    notes = results.get("notes")
    notes_html = f"<p>Notes: {html.escape(json.dumps(notes))}</p>" if notes else ""
    by_id = {it.id: it for it in items or ()}
    title = f"bench: {backend.get('spec')} on {Path(str(results.get('dataset'))).name}"
    return (f"<!doctype html><html><head><meta charset=utf-8><title>{html.escape(title)}"
            f"</title><style>{_STYLE}</style><script>{plotly.offline.get_plotlyjs()}</script>"
            f"</head><body><h1>{html.escape(title)}</h1><table>{_rows(summary)}</table>"
            f"{notes_html}{details}{charts}<h2>Worst disagreements</h2>"
            f"{_worst_table(results, by_id)}</body></html>")


def write_report(results: Mapping[str, Any], path: str | os.PathLike[str],
                 items: Sequence[BenchItem] | None = None) -> Path:
    """Write :func:`render_report` to ``path`` (atomically); returns the path."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(render_report(results, items), encoding="utf-8")
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise InputError(f"cannot write the report to {path}: {err.strerror or err}") from None
    return path


# -- comparing two runs -----------------------------------------------------------------------


def compare_results(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    """Two runs side by side: headline figures, per-category accuracy, and the items
    both judged (matched by id) split by who got them right, with McNemar's exact p."""
    from scipy.stats import binomtest

    def head(r: Mapping[str, Any]) -> dict[str, Any]:
        name, value = headline(r)
        return {"backend": r["backend"]["spec"], "version": r["backend"]["version"],
                "format": r.get("format"), "headline_name": name, "headline": value,
                "accuracy": r.get("accuracy"), "n": r.get("n"), "failed": r.get("failed"),
                "seconds_per_item": r.get("seconds_per_item")}

    cats_a, cats_b = a.get("by_category", {}), b.get("by_category", {})
    categories = []
    for cat in [*cats_a, *(c for c in cats_b if c not in cats_a)]:
        x = cats_a.get(cat, {}).get("accuracy")
        y = cats_b.get(cat, {}).get("accuracy")
        categories.append({"category": cat, "a": x, "b": y,
                           "delta": None if x is None or y is None else y - x})
    verdicts_a = {it["id"]: it.get("correct") for it in a.get("items", [])}
    verdicts_b = {it["id"]: it.get("correct") for it in b.get("items", [])}
    shared = [i for i in verdicts_a if i in verdicts_b
              and verdicts_a[i] is not None and verdicts_b[i] is not None]
    split = {"both_right": 0, "a_only": 0, "b_only": 0, "both_wrong": 0}
    for i in shared:
        key = {(True, True): "both_right", (True, False): "a_only",
               (False, True): "b_only", (False, False): "both_wrong"}[
            (bool(verdicts_a[i]), bool(verdicts_b[i]))]
        split[key] += 1
    discordant = split["a_only"] + split["b_only"]
    p = binomtest(split["b_only"], discordant).pvalue if discordant else None
    return {"a": head(a), "b": head(b), "categories": categories,
            "items": {"shared": len(shared), **split,
                      "mcnemar_p": None if p is None else float(p)}}


def format_comparison(cmp: Mapping[str, Any]) -> str:
    """The text table ``bench --compare`` prints."""
    a, b = cmp["a"], cmp["b"]
    lines = [f"{'':22s}{'A':>14s}{'B':>14s}{'B - A':>10s}"]
    for label, key in [("backend", "backend"), ("format", "format"),
                       (a["headline_name"][:22], "headline"), ("pairwise accuracy", "accuracy"),
                       ("items", "n"), ("failed", "failed"), ("s/item", "seconds_per_item")]:
        x, y = a.get(key), b.get(key)
        delta = (f"{y - x:+.3f}" if isinstance(x, (int, float)) and isinstance(y, (int, float))
                 and not isinstance(x, bool) else "")
        lines.append(f"{label:22s}{_num(x)[:13]:>14s}{_num(y)[:13]:>14s}{delta:>10s}")
    if cmp["categories"]:
        lines += ["", f"{'category':22s}{'A':>14s}{'B':>14s}{'B - A':>10s}"]
        for row in cmp["categories"]:
            delta = "" if row["delta"] is None else f"{row['delta']:+.3f}"
            lines.append(f"{row['category'][:22]:22s}{_num(row['a']):>14s}"
                         f"{_num(row['b']):>14s}{delta:>10s}")
    it = cmp["items"]
    lines += ["", f"items judged by both: {it['shared']}; both right {it['both_right']}, "
              f"only A {it['a_only']}, only B {it['b_only']}, both wrong {it['both_wrong']}; "
              f"McNemar exact p = {_num(it['mcnemar_p'])}"]
    return "\n".join(lines)
