"""Plotly figures for judgments."""

from __future__ import annotations

import plotly.graph_objects as go

from spatialreward.judgment import Judgment
from spatialreward.scoring import SCORE_RANGE

DIMENSIONS = (
    ("prompt_following", "Prompt following (s1)"),
    ("consistency", "Consistency (s2)"),
    ("semantic_consistency", "SC"),
    ("perceptual_quality", "PQ"),
    ("overall", "Overall"),
)

STATUS_WORDS = {
    "ok": "scored",
    "low_coverage": "low coverage: the backend does not vouch for these scores",
    "parse_failed": "not scored: the model's answer could not be read",
    "backend_error": "not scored: the backend failed",
}


def chart_title(j: Judgment, candidate: int | None = None) -> str:
    """What the chart shows, in words: whose scores, their scale, and the status.

    >>> chart_title(Judgment(status="ok", backend="mini"), 1)
    'Scores of candidate 2 (all on 0..10), by mini: scored'
    """
    who = "Scores" if candidate is None else f"Scores of candidate {candidate + 1}"
    by = f", by {j.backend}" if j.backend else ""
    return f"{who} (all on 0..10){by}: {STATUS_WORDS.get(j.status, j.status)}"


def _bar_text(j: Judgment, key: str, value: float | None) -> str:
    """The bar's number; the two raw sub-scores also say their 0..25 value."""
    if value is None:
        return "n/a"
    raw = {"prompt_following": 0, "consistency": 1}.get(key)
    if raw is not None and j.sc is not None:
        return f"{value:.2f} ({j.sc[raw]:.1f}/{SCORE_RANGE:.0f})"
    return f"{value:.2f}"


def score_breakdown(j: Judgment, candidate: int | None = None) -> go.Figure:
    """Horizontal bars on 0..10; missing scores are shown as absent, not as zero. A
    low-coverage judgment's bars are grey: shown, not vouched for."""
    labels = [label for _, label in DIMENSIONS]
    values = [getattr(j, key) for key, _ in DIMENSIONS]
    colors = (["#AAAAAA"] * len(DIMENSIONS) if j.status == "low_coverage"
              else ["#56B4E9", "#56B4E9", "#0072B2", "#009E73", "#D55E00"])
    fig = go.Figure(
        go.Bar(
            x=[v if v is not None else 0 for v in values],
            y=labels,
            orientation="h",
            text=[_bar_text(j, key, v) for (key, _), v in zip(DIMENSIONS, values, strict=True)],
            textposition="auto",
            marker_color=colors,
        )
    )
    fig.update_layout(
        xaxis=dict(range=[0, 10], title="score (0..10; s1 and s2 also as the model's 0..25)"),
        yaxis=dict(autorange="reversed"),
        height=280,
        margin=dict(l=10, r=10, t=40, b=10),
        title=dict(text=chart_title(j, candidate), font=dict(size=13)),
    )
    return fig
