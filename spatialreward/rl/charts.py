"""Curves of an RL run (plotly; no torch): reward beside ground truth, KL, loss, time.

``history`` is a list of per-step dicts (``step`` plus metric keys), as the trainer
keeps it and as :func:`history_from_metrics` rebuilds it from the store's rows.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

BLUE, ORANGE, GREEN, RED, GREY = "#0072B2", "#D55E00", "#009E73", "#CC0000", "#888888"


def history_from_metrics(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, float]]:
    """Store rows ``{step, key, value}`` -> one dict per step, in step order."""
    by_step: dict[int, dict[str, float]] = {}
    for r in rows:
        by_step.setdefault(int(r["step"]), {"step": float(r["step"])})[r["key"]] = float(r["value"])
    return [by_step[s] for s in sorted(by_step)]


def _series(history: Sequence[Mapping[str, Any]], key: str) -> tuple[list[float], list[float]]:
    pts = [(h["step"], h[key]) for h in history
           if key in h and h[key] is not None and math.isfinite(float(h[key]))]
    return [p[0] for p in pts], [float(p[1]) for p in pts]


def add_series(fig: go.Figure, history: Sequence[Mapping[str, Any]], key: str, name: str,
               row: int = 1, col: int = 1, **style: Any) -> None:
    """One history key as a line (or ``mode``/``marker`` as given) in subplot (row, col)."""
    x, y = _series(history, key)
    fig.add_trace(go.Scatter(x=x, y=y, name=name, **style), row=row, col=col)


def curves_figure(history: Sequence[Mapping[str, Any]], height: int = 620) -> go.Figure:
    """Four panels: reward (mean, +-1 std band) with ground-truth success, the KL to the
    reference, the loss, and seconds per step split into sample / reward / update.
    Steps with a hacking alert are marked in red."""
    fig = make_subplots(rows=2, cols=2, vertical_spacing=0.14, horizontal_spacing=0.08,
                        subplot_titles=("reward vs ground truth (0..1)", "KL to reference",
                                        "loss", "seconds per step"))
    x, mean = _series(history, "reward_mean")
    _, std = _series([h for h in history if "reward_mean" in h], "reward_std")
    if x and len(std) == len(mean):
        fig.add_trace(go.Scatter(x=x + x[::-1], y=[m + s for m, s in zip(mean, std, strict=True)]
                                 + [m - s for m, s in zip(mean[::-1], std[::-1], strict=True)],
                                 fill="toself", fillcolor="rgba(0,114,178,0.15)",
                                 line=dict(width=0), name="reward +-1 std", hoverinfo="skip"),
                      row=1, col=1)
    fig.add_trace(go.Scatter(x=x, y=mean, name="reward mean", line=dict(color=BLUE)),
                  row=1, col=1)
    add_series(fig, history, "gt_success", "ground-truth success (samples)",
               line=dict(color=GREEN))
    add_series(fig, history, "heldout_gt_success", "ground-truth success (held out)",
               mode="lines+markers", line=dict(color=GREEN, dash="dot"))
    ax, ay = _series(history, "hacking_alert")
    alerts = [s for s, v in zip(ax, ay, strict=True) if v > 0]
    if alerts:
        fig.add_trace(go.Scatter(x=alerts, y=[1.0] * len(alerts), mode="markers",
                                 marker=dict(color=RED, symbol="x", size=10),
                                 name="hacking alert"), row=1, col=1)
    kx, ky = _series(history, "kl")
    fig.add_trace(go.Scatter(x=kx, y=ky, name="KL", line=dict(color=ORANGE)), row=1, col=2)
    for key, color in (("loss", GREY), ("policy_loss", BLUE)):
        lx, ly = _series(history, key)
        fig.add_trace(go.Scatter(x=lx, y=ly, name=key, line=dict(color=color)), row=2, col=1)
    for key, color in (("sample_seconds", BLUE), ("reward_seconds", ORANGE),
                       ("update_seconds", GREEN)):
        tx, ty = _series(history, key)
        fig.add_trace(go.Bar(x=tx, y=ty, name=key.replace("_seconds", ""), marker_color=color),
                      row=2, col=2)
    fig.update_layout(barmode="stack", height=height, margin=dict(l=10, r=10, t=40, b=10),
                      legend=dict(orientation="h", y=-0.08))
    fig.update_yaxes(range=[0, 1.05], row=1, col=1)
    return fig
