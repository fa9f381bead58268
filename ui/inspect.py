"""The Inspect tab: upload a source, an edit and the instruction; see where and why."""

from __future__ import annotations

from typing import Any

import gradio as gr

from spatialreward.judgment import Judgment
from spatialreward.overlay import draw_regions, heatmap_overlay, region_color
from spatialreward.service import Services

from .charts import score_breakdown
from .components import UploadedImage
from .errors import user_errors


# Highlight colours are fixed at build time so the API returns plain spans; region ids
# beyond this many reuse the palette anyway.
_MAX_COLORED_REGIONS = 64
REASONING_COLORS = {
    "verdict": "#999999",
    "error": "#D55E00",
    **{f"region {i}": region_color(i) for i in range(_MAX_COLORED_REGIONS)},
}


def reasoning_highlights(j: Judgment) -> list[tuple[str, str | None]]:
    """HighlightedText spans: each ``<|bbox_ID|>`` segment tagged with its region."""
    spans: list[tuple[str, str | None]] = []
    for seg in j.segments:
        if seg.kind == "bbox" and seg.region_id is not None:
            label: str | None = f"region {seg.region_id}"
        elif seg.kind == "global":
            label = "verdict"
        else:
            label = None
        spans.append((seg.text + " ", label))
    if j.error:
        spans.append((j.error, "error"))
    return spans


def build_inspect_tab(services: Services) -> None:
    backends = list(services.available_backends())
    with gr.Row():
        source = UploadedImage(label="Source image", sources=["upload", "clipboard"])
        edited = UploadedImage(label="Edited image", sources=["upload", "clipboard"])
    with gr.Row():
        instruction = gr.Textbox(label="Instruction", placeholder="make the red circle blue",
                                 scale=4)
        backend = gr.Dropdown(backends, value=services.config.backend, label="Backend", scale=1)
        run = gr.Button("Judge", variant="primary", scale=1)
    with gr.Row():
        source_view = gr.Image(label="Regions on the source", interactive=False)
        edited_view = gr.Image(label="Regions on the edit", interactive=False)
        change_view = gr.Image(label="Pixel change map", interactive=False)
    with gr.Row():
        with gr.Column(scale=3):
            reasoning = gr.HighlightedText(label="Region-anchored reasoning",
                                           color_map=REASONING_COLORS, show_legend=False)
            quality = gr.Markdown()
        chart = gr.Plot(label="Score breakdown")
    with gr.Accordion("Judgment JSON", open=False):
        raw = gr.JSON()

    @user_errors
    def on_judge(src: str | None, edt: str | None, text: str, spec: str) -> tuple[Any, ...]:
        if not src or not edt:
            raise gr.Error("upload both a source image and an edited image first")
        result = services.inspect(src, edt, text, spec)
        j = result.judgment
        return (
            draw_regions(result.source, j.regions),
            draw_regions(result.edited, j.regions),
            heatmap_overlay(result.source, result.evidence.heatmap),
            reasoning_highlights(j),
            f"**Quality:** {j.pq_reasoning}" if j.pq_reasoning else "",
            score_breakdown(j),
            j.to_dict(),
        )

    run.click(
        on_judge,
        inputs=[source, edited, instruction, backend],
        outputs=[source_view, edited_view, change_view, reasoning, quality, chart, raw],
        api_name="judge",
        concurrency_limit=1,
        concurrency_id="model",
    )
