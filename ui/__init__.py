"""The Studio's browser UI: one builder per tab; callbacks call services only."""

from __future__ import annotations

import gradio as gr

from spatialreward.service import Services

from .inspect import build_inspect_tab

TITLE = "SpatialReward Studio"


def build_demo(services: Services) -> gr.Blocks:
    """Build (but do not launch) the app around ``services``."""
    with gr.Blocks(title=TITLE) as demo:
        gr.Markdown(
            f"# {TITLE}\nLocate the edit, then judge it: regions, reasoning anchored to them, "
            "and the score breakdown."
        )
        with gr.Tab("Inspect"):
            build_inspect_tab(services)
    return demo


__all__ = ["build_demo"]
