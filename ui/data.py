"""The Data tab: import datasets into the store, export it, and check its health.

Import takes an upload (a ``.parquet``, or a ``.zip`` holding ``pairs.jsonl`` and its
images) or a path under the data folder; imports are all or nothing, so a malformed file
is an error message and the store is left as it was. Export writes the whole store as one
Hugging Face Parquet file or a zip of ``pairs.jsonl`` + ``images/`` (see
:mod:`storage.exchange`).

API: ``/import_data`` (upload, path) -> (message, stats, stats table);
``/export`` (format: "parquet" | "jsonl") -> (file, message); ``/stats`` -> (stats,
stats table); ``/integrity`` -> message.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gradio as gr
import pandas as pd

from spatialreward.service import Services

from .errors import user_errors, username

HEAD = ""

EXPORT_FORMATS = [("Parquet (Hugging Face datasets)", "parquet"),
                  ("JSONL + images (zip)", "jsonl")]


def stats_table(stats: Mapping[str, Any]) -> pd.DataFrame:
    """``Services.stats()`` as rows of (what, value)."""
    rows: list[tuple[str, Any]] = [(f"{table} rows", n) for table, n in stats["tables"].items()]
    rows += [("current human judgments", stats["current_human_judgments"]),
             ("schema version", stats["schema_version"]),
             ("journal mode", stats["journal_mode"])]
    return pd.DataFrame([(k, str(v)) for k, v in rows], columns=["what", "value"])


def import_message(counts: Mapping[str, Any]) -> str:
    dropped = counts.get("dropped_human_judgments", 0)
    why = (f" {dropped} human judgments in the file were not imported: they carry "
           "annotators' names, and only an admin may import votes." if dropped else "")
    return (f"Imported `{counts['dataset']}`: {counts['items']} new items, "
            f"{counts['human_judgments']} human judgments, {counts['model_judgments']} model "
            f"judgments; {counts['skipped']} records were already in the store.{why}")


def build_data_tab(services: Services) -> None:

    gr.Markdown("### Import\nUpload a `.parquet` (an export of this or another Studio) or a "
                "`.zip` holding `pairs.jsonl` and its images (SynthEdit output, a JSONL "
                "export), or give a path under the data folder. All or nothing: a malformed "
                "file changes nothing.")
    with gr.Row():
        upload = gr.File(label="Upload .parquet or .zip", file_types=[".parquet", ".zip"],
                         type="filepath", scale=2, elem_id="data-upload")
        with gr.Column(scale=2):
            path = gr.Textbox(label="...or a path under the data folder",
                              placeholder="eval/pairs.jsonl, eval/ or export.parquet",
                              elem_id="data-path")
            do_import = gr.Button("Import", variant="primary", elem_id="data-import")
    import_result = gr.Markdown(elem_id="data-import-result")

    gr.Markdown("### Export")
    with gr.Row():
        fmt = gr.Radio(EXPORT_FORMATS, value="parquet", label="Format", scale=2)
        do_export = gr.Button("Export the store", scale=1, elem_id="data-export")
    export_file = gr.File(label="Download", interactive=False, elem_id="data-export-file")
    export_result = gr.Markdown()

    gr.Markdown("### Store")
    with gr.Row():
        refresh = gr.Button("Refresh statistics", scale=1)
        check = gr.Button("Integrity check", scale=1)
    with gr.Row():
        # Callables: read again on every page load, not frozen at build time.
        table = gr.Dataframe(lambda: stats_table(services.stats()), interactive=False,
                             label="Statistics", scale=2, elem_id="data-stats")
        with gr.Column(scale=1):
            integrity = gr.Markdown(elem_id="data-integrity")
            with gr.Accordion("Statistics JSON", open=False):
                raw = gr.JSON(services.stats)

    @user_errors
    def on_import(upload_file: str | None, path_text: str, request: gr.Request
                  ) -> tuple[Any, ...]:
        counts = services.import_data(path=path_text, upload=upload_file,
                                      user=username(request))
        stats = services.stats()
        return import_message(counts), stats, stats_table(stats)

    do_import.click(on_import, inputs=[upload, path], outputs=[import_result, raw, table],
                    api_name="import_data")

    @user_errors
    def on_export(fmt_value: str, request: gr.Request) -> tuple[Any, ...]:
        file, n = services.export(fmt_value, user=username(request))
        return str(file), f"Exported {n} items to `{file.name}`."

    do_export.click(on_export, inputs=[fmt], outputs=[export_file, export_result],
                    api_name="export")

    def on_stats() -> tuple[Any, ...]:
        stats = services.stats()
        return stats, stats_table(stats)

    refresh.click(on_stats, outputs=[raw, table], api_name="stats")

    def on_integrity() -> str:
        problems = services.integrity()
        if not problems:
            return "**Integrity: ok** (SQLite integrity and foreign keys, every image's hash)"
        listed = "\n".join(f"- {p}" for p in problems[:50])
        more = f"\n- ... and {len(problems) - 50} more" if len(problems) > 50 else ""
        return f"**{len(problems)} problem(s)**\n{listed}{more}"

    check.click(on_integrity, outputs=[integrity], api_name="integrity")
