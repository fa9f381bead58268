"""Plotly figures for judgments."""

from __future__ import annotations

import plotly.graph_objects as go

from spatialreward.judgment import Judgment

DIMENSIONS = (
    ("prompt_following", "Prompt following (s1)"),
    ("consistency", "Consistency (s2)"),
    ("semantic_consistency", "SC"),
    ("perceptual_quality", "PQ"),
    ("overall", "Overall"),
)


def score_breakdown(j: Judgment) -> go.Figure:
    """Horizontal bars on 0..10; missing scores are shown as absent, not as zero."""
    labels = [label for _, label in DIMENSIONS]
    values = [getattr(j, key) for key, _ in DIMENSIONS]
    fig = go.Figure(
        go.Bar(
            x=[v if v is not None else 0 for v in values],
            y=labels,
            orientation="h",
            text=[f"{v:.2f}" if v is not None else "n/a" for v in values],
            textposition="auto",
            marker_color=["#56B4E9", "#56B4E9", "#0072B2", "#009E73", "#D55E00"],
        )
    )
    fig.update_layout(
        xaxis=dict(range=[0, 10], title="score (0..10)"),
        yaxis=dict(autorange="reversed"),
        height=260,
        margin=dict(l=10, r=10, t=30, b=10),
        title=f"{j.backend} - {j.status}",
    )
    return fig
