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
            path = gr.Textbox("", label="...or a path under the data folder",
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
        table = gr.Dataframe(interactive=False, label="Statistics", scale=2,
                             elem_id="data-stats")
        with gr.Column(scale=1):
            integrity_md = gr.Markdown(elem_id="data-integrity")
            with gr.Accordion("Statistics JSON", open=False):
                raw = gr.JSON(label="Statistics JSON")

    @user_errors
    def import_data(request: gr.Request, upload: str | None = None, path: str = ""
                    ) -> tuple[Any, ...]:
        """Import a dataset into the store, all or nothing; returns a message and the
        store's statistics.

        Args:
            upload: an uploaded .parquet (a Studio export) or .zip (pairs.jsonl + images)
            path: instead of an upload, a path under the data folder
        """
        counts = services.import_data(path=path, upload=upload, user=username(request))
        now = services.stats()
        return import_message(counts), now, stats_table(now)

    do_import.click(import_data, inputs=[upload, path], outputs=[import_result, raw, table],
                    api_name="import_data")

    @user_errors
    def export(request: gr.Request, fmt: str = "parquet") -> tuple[Any, ...]:
        """Export the whole store for download; returns the file and a message.

        Args:
            fmt: parquet (Hugging Face datasets) or jsonl (a zip of pairs.jsonl + images)
        """
        file, n = services.export(fmt, user=username(request))
        return str(file), f"Exported {n} items to `{file.name}`."

    do_export.click(export, inputs=[fmt], outputs=[export_file, export_result],
                    api_name="export")

    def stats() -> tuple[Any, ...]:
        """The store's row counts, schema version and journal mode (JSON and a table)."""
        now = services.stats()
        return now, stats_table(now)

    refresh.click(stats, outputs=[raw, table], api_name="stats")

    def integrity() -> str:
        """The store's integrity check: SQLite integrity, foreign keys, image hashes."""
        problems = services.integrity()
        if not problems:
            return "**Integrity: ok** (SQLite integrity and foreign keys, every image's hash)"
        listed = "\n".join(f"- {p}" for p in problems[:50])
        more = f"\n- ... and {len(problems) - 50} more" if len(problems) > 50 else ""
        return f"**{len(problems)} problem(s)**\n{listed}{more}"

    check.click(integrity, outputs=[integrity_md], api_name="integrity")
    root = gr.context.Context.root_block  # read again on every page load, not at build time
    if root is None:
        raise RuntimeError("build_data_tab must be called inside a gr.Blocks")
    root.load(stats, outputs=[raw, table], api_name="data_load", api_visibility="private")
