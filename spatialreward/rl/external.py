"""External runs: a trainer on another machine calling ``serve-reward``; each reward call
is one step of the run (its metrics in the store, a few of its items kept as samples).

What the Train tab shows of such a run comes from here: :func:`external_summary` (the
numbers of the status line), :func:`external_figure` (the curves) and
:func:`spot_alert`, the hacking alert of a run without a ground truth: the reward's trend
against a **spot check**, a second opinion on the same items - a second backend
(``serve-reward --spot-check SPEC``) judging the stored samples. The rule is
:func:`~spatialreward.rl.monitor.hacking_alert`'s (both trends real at ``p``, the reward up
by ``rise``, the spot check down by ``drop`` over ``window`` calls), with the spot check's
reward in place of ground-truth success.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .charts import BLUE, GREY, ORANGE, _series, add_series
from .monitor import Alert, hacking_alert

SPOT_WINDOW = 50
"""Reward calls the spot-check alert fits its trends over."""


def spot_alert(history: Sequence[Mapping[str, float]], *, window: int = SPOT_WINDOW,
               rise: float = 0.02, drop: float = 0.05, p: float = 0.01) -> Alert | None:
    """The alert at the latest call that has a spot check, or None: over the last
    ``window`` calls with one, the served reward on the spot-checked items rose while the
    spot check's reward on the same items fell."""
    rows = [h for h in history if _finite(h.get("spot_reward"))
            and _finite(h.get("reward_on_spot"))]
    alert = hacking_alert([int(h["step"]) for h in rows],
                          [float(h["reward_on_spot"]) for h in rows],
                          [float(h["spot_reward"]) for h in rows],
                          window=window, rise=rise, drop=drop, p=p)
    return None if alert is None else Alert(alert.step, alert.reward_change, alert.gt_change,
                                            alert.window, alert.reward_p, alert.gt_p,
                                            signal="the spot check's reward")


def _finite(x: Any) -> bool:
    return x is not None and math.isfinite(float(x))


def external_summary(row: Mapping[str, Any], history: Sequence[Mapping[str, float]]
                     ) -> dict[str, Any]:
    """The numbers the Train tab's status line shows of an external run."""
    calls = [h for h in history if "items" in h]
    items = sum(h["items"] for h in calls)
    failed = sum(h.get("reward_failed", 0.0) for h in calls)
    latency = [h["latency_ms"] for h in calls if _finite(h.get("latency_ms"))]
    last_reward = next((h["reward_mean"] for h in reversed(calls)
                        if _finite(h.get("reward_mean"))), None)
    last_spot = next((h for h in reversed(calls) if _finite(h.get("spot_reward"))), None)
    return {
        "run_id": row["id"], "name": row["name"], "status": row["status"],
        "backend": row["config"].get("backend"), "spot_check": row["config"].get("spot_check"),
        "calls": len(calls), "items": int(items),
        "failure_rate": failed / items if items else None,
        "reward_mean": last_reward,
        "latency_p50_ms": float(np.percentile(latency, 50)) if latency else None,
        "latency_p95_ms": float(np.percentile(latency, 95)) if latency else None,
        "spot_reward": None if last_spot is None else last_spot["spot_reward"],
        "reward_on_spot": None if last_spot is None else last_spot["reward_on_spot"],
        "spot_checks": sum(_finite(h.get("spot_reward")) for h in calls),
        "hacking_alert_steps": [int(h["step"]) for h in calls
                                if h.get("hacking_alert", 0) > 0],
    }


def external_figure(history: Sequence[Mapping[str, Any]], height: int = 560) -> go.Figure:
    """Reward per call with the spot check beside it, the failure rate, the latency."""
    fig = make_subplots(rows=2, cols=2, subplot_titles=(
        "reward per call (served) and the spot check", "failed items per call",
        "latency per call (ms)", "items per call"), vertical_spacing=0.14)
    add_series(fig, history, "reward_mean", "reward mean (all items)", line=dict(color=BLUE))
    add_series(fig, history, "reward_on_spot", "reward on the spot-checked items",
               mode="markers", marker=dict(color=BLUE, symbol="circle-open"))
    add_series(fig, history, "spot_reward", "spot check's reward (same items)",
               mode="lines+markers", line=dict(color=ORANGE))
    alerts = [h["step"] for h in history if h.get("hacking_alert", 0) > 0]
    if alerts:
        fig.add_trace(go.Scatter(x=alerts, y=[1.0] * len(alerts), mode="markers",
                                 name="hacking alert", marker=dict(color="red", symbol="x")),
                      row=1, col=1)
    rate = [(h["step"], h.get("reward_failed", 0.0) / h["items"]) for h in history
            if h.get("items")]
    fig.add_trace(go.Scatter(x=[s for s, _ in rate], y=[r for _, r in rate],
                             name="failure rate", line=dict(color="red")), row=1, col=2)
    add_series(fig, history, "latency_ms", "latency", 2, 1, line=dict(color=GREY))
    ix, iy = _series(history, "items")
    fig.add_trace(go.Bar(x=ix, y=iy, name="items", marker_color=GREY), row=2, col=2)
    fig.update_yaxes(range=[0, 1.05], row=1, col=1)
    fig.update_yaxes(range=[0, 1.05], row=1, col=2)
    fig.update_xaxes(title_text="reward call (or the trainer's step)")
    fig.update_layout(height=height, margin=dict(l=40, r=20, t=50, b=40),
                      legend=dict(orientation="h", y=-0.12))
    return fig
