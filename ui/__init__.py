"""The Studio's browser UI: one builder per tab; callbacks call services only.

``build_demo(services)`` builds the Blocks; ``launch_options(services)`` is what
``demo.launch`` needs besides host and port (login, the keyboard-shortcut script, upload
cap), so the app and the tests launch the same thing.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from spatialreward.service import Services

from . import annotate, bench, data, inspect, train

TITLE = "SpatialReward Studio"


def build_demo(services: Services) -> gr.Blocks:
    """Build (but do not launch) the app around ``services``."""
    with gr.Blocks(title=TITLE) as demo:
        gr.Markdown(
            f"# {TITLE}\nLocate the edit, then judge it: regions, reasoning anchored to them, "
            "and the score breakdown."
        )
        with gr.Tab("Inspect", id="inspect"):
            inspect.build_inspect_tab(services)
        with gr.Tab("Annotate", id="annotate"):
            annotate.build_annotate_tab(services)
        with gr.Tab("Bench", id="bench"):
            bench.build_bench_tab(services)
        with gr.Tab("Train", id="train"):
            train.build_train_tab(services)
        with gr.Tab("Data", id="data"):
            data.build_data_tab(services)
    return demo


def launch_options(services: Services) -> dict[str, Any]:
    """Keyword arguments for ``demo.launch`` (everything but host, port and share)."""
    options: dict[str, Any] = {
        "head": "\n".join(getattr(tab, "HEAD", "")
                          for tab in (inspect, annotate, bench, train, data)),
        "max_file_size": services.config.max_upload_bytes,
        "footer_links": ["api"],
    }
    if services.config.auth:

        def login(username: str, password: str) -> bool:
            return services.login(username, password)

        options["auth"] = login
        options["auth_message"] = ("Log in with the name and password an admin registered "
                                   "(python -m spatialreward db add-annotator NAME --password).")
    return options


__all__ = ["build_demo", "launch_options"]
