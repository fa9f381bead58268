"""The Inspect tab: upload a source, an edit and the instruction; see where and why."""

from __future__ import annotations

from typing import Any

import gradio as gr

from spatialreward.judgment import Judgment
from spatialreward.overlay import draw_regions, heatmap_overlay, region_color
from spatialreward.service import Services

from .charts import score_breakdown
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


def upload_path(payload: Any) -> str | None:
    """The server-side file of an unprocessed gr.Image upload (a FileData dict)."""
    if isinstance(payload, dict):
        return payload.get("path")
    return payload if isinstance(payload, str) else None


def build_inspect_tab(services: Services) -> None:
    backends = list(services.available_backends())
    with gr.Row():
        # Uploads reach the callback unprocessed (preprocess=False below): gr.Image would
        # decode them with PIL first and hide a corrupt file behind a generic error.
        source = gr.Image(label="Source image", type="filepath", sources=["upload", "clipboard"],
                          elem_id="source-upload")
        edited = gr.Image(label="Edited image", type="filepath", sources=["upload", "clipboard"],
                          elem_id="edited-upload")
    with gr.Row():
        instruction = gr.Textbox(label="Instruction", placeholder="make the red circle blue",
                                 scale=4, elem_id="instruction")
        backend = gr.Dropdown(backends, value=services.config.backend, label="Backend", scale=1)
        run = gr.Button("Judge", variant="primary", scale=1, elem_id="judge-button")
    with gr.Row():
        source_view = gr.Image(label="Regions on the source", interactive=False,
                               elem_id="source-regions")
        edited_view = gr.Image(label="Regions on the edit", interactive=False,
                               elem_id="edited-regions")
        change_view = gr.Image(label="Pixel change map", interactive=False,
                               elem_id="change-map")
    with gr.Row():
        with gr.Column(scale=3):
            reasoning = gr.HighlightedText(label="Region-anchored reasoning",
                                           color_map=REASONING_COLORS, show_legend=False,
                                           elem_id="reasoning")
            quality = gr.Markdown()
        chart = gr.Plot(label="Score breakdown", elem_id="scores")
    with gr.Accordion("Judgment JSON", open=False):
        raw = gr.JSON()

    @user_errors
    def on_judge(src: Any, edt: Any, text: str, spec: str) -> tuple[Any, ...]:
        src_path, edt_path = upload_path(src), upload_path(edt)
        if not src_path or not edt_path:
            raise gr.Error("upload both a source image and an edited image first")
        result = services.inspect(src_path, edt_path, text, spec)
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
        preprocess=False,
        concurrency_limit=1,
        concurrency_id="model",
    )
