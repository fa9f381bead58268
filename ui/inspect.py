"""The Inspect tab: a source, 1-4 edited candidates and the instruction; see where and why.

Per candidate: the regions drawn on the source and the edit, a before/after slider, the
pixel change map (toggle), attention heatmaps over both images (per layer/head or the
mean), the reasoning with each region's segment in the region's colour, the score
breakdown and the attention-collapse diagnostics. Several candidates are ranked side by
side. A stability check re-judges under harmless perturbations; "Save" stores the item
and judgments, "I disagree" also sends the item to the annotation queue.

API (``gradio_client``): ``/judge`` (source, edited, instruction, backend) -> the
Judgment JSON; ``/judge_group`` (source, [candidates], instruction, backend) -> the
Judgment JSONs in candidate order plus the ranking; ``/inspect`` is the button itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr

from spatialreward.errors import InputError
from spatialreward.judgment import Judgment
from spatialreward.overlay import draw_regions, heatmap_overlay, region_color
from spatialreward.service import MAX_CANDIDATES, Inspection, Services

from .charts import score_breakdown
from .errors import user_errors
from .text import plain

HEAD = ""
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

# Highlight colours are fixed at build time so the API returns plain spans; region ids
# beyond this many reuse the palette anyway.
_MAX_COLORED_REGIONS = 64
REASONING_COLORS = {
    "verdict": "#999999",
    "error": "#D55E00",
    **{f"region {i}": region_color(i) for i in range(_MAX_COLORED_REGIONS)},
}
ALL = "mean"


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
    """The server-side file of an unprocessed upload (a FileData dict) or a path."""
    if isinstance(payload, dict):
        return payload.get("path")
    return payload if isinstance(payload, str) else None


def upload_paths(payload: Any) -> list[str]:
    """Server-side files of an unprocessed multi-file upload."""
    if payload is None:
        return []
    items = payload if isinstance(payload, list) else [payload]
    return [p for p in (upload_path(x) for x in items) if p]


def diagnostics_markdown(j: Judgment) -> str:
    a = j.attention
    if a is None:
        return "**Attention diagnostics:** this backend has no attention to report."
    inside = "-" if a.in_region_share is None else f"{a.in_region_share:.2f}"
    return (
        "**Attention diagnostics** (collapse shows as a source share near 0, low entropy "
        "or high concentration): "
        f"source share {a.source_share:.2f} · entropy source {a.entropy_source:.2f} / "
        f"edit {a.entropy_edited:.2f} nats · top-5% concentration {a.concentration:.2f} · "
        f"inside the regions {inside}"
    )


def load_examples() -> list[dict[str, Any]]:
    path = EXAMPLES / "examples.json"
    if not path.is_file():
        return []
    return json.loads(path.read_text())


@dataclass
class Session:
    """What one browser session last judged (kept in gr.State)."""

    source: str
    candidates: list[str]
    instruction: str
    backend: str
    results: list[Inspection]
    order: list[int] = field(default_factory=list)  # candidate indices, best first
    item_id: int | None = None


def _rank(results: list[Inspection]) -> list[int]:
    def score(k: int) -> float:
        overall = results[k].judgment.overall
        return -1.0 if overall is None else overall

    return sorted(range(len(results)), key=lambda k: -score(k))


def _score(j: Judgment) -> str:
    if j.overall is None:
        return "n/a"
    if j.status == "low_coverage":  # shown, greyed: the backend does not stand behind it
        return (f'<span class="low-coverage" style="color:#888">{j.overall:.2f} '
                "(low coverage)</span>")
    return f"{j.overall:.2f}"


def _banner(results: list[Inspection]) -> str:
    """Every warning of the judged candidates, shown above the results (a warning said
    about every candidate is said once); a low-coverage judgment leads it."""
    notes: dict[str, list[int]] = {}
    for k, r in enumerate(results):
        for w in r.judgment.warnings:
            notes.setdefault(w, []).append(k)
    if not notes:
        return ""
    lines = []
    for text, ks in notes.items():
        who = ("" if len(ks) == len(results) or len(results) == 1
               else ", ".join(_choice(k) for k in ks) + ": ")
        lines.append(f"- {who}{plain(text)}")
    low = any(r.judgment.status == "low_coverage" for r in results)
    head = ("### ⚠ Low coverage: these scores are not vouched for\n" if low
            else "**Warnings**\n")
    return head + "\n".join(lines)


def _choice(k: int) -> str:
    return f"Candidate {k + 1}"


def _parse_pick(pick: str | None, n: int) -> int:
    try:
        k = int(str(pick).rsplit(" ", 1)[-1]) - 1
    except ValueError:
        k = 0
    return k if 0 <= k < n else 0


def _layer_head(value: str | None) -> int | None:
    return None if not value or value == ALL else int(value.rsplit(" ", 1)[-1]) - 1


def build_inspect_tab(services: Services) -> None:
    backends = list(services.available_backends())
    # Holds the images and maps of the last inspection: freed after idle (session_ttl_s).
    session = gr.State(None, time_to_live=services.config.session_ttl_s)
    with gr.Row():
        # Uploads reach the callback unprocessed (preprocess=False below): gr.Image would
        # decode them with PIL first and hide a corrupt file behind a generic error.
        source = gr.Image(label="Source image", type="filepath", sources=["upload", "clipboard"],
                          elem_id="source-upload")
        edited = gr.Image(label="Edited image (candidate 1)", type="filepath",
                          sources=["upload", "clipboard"], elem_id="edited-upload")
        more = gr.File(label=f"More candidates (up to {MAX_CANDIDATES - 1})",
                       file_count="multiple", file_types=["image"], elem_id="more-candidates")
    with gr.Row():
        instruction = gr.Textbox(label="Instruction", placeholder="make the red circle blue",
                                 scale=4, elem_id="instruction")
        # Only the backends the server offers: a browser must not make it load any path.
        backend = gr.Dropdown(backends, value=services.config.backend, label="Backend", scale=1)
        run = gr.Button("Judge", variant="primary", scale=1, elem_id="judge-button")
    examples = load_examples()
    if examples:
        gr.Examples(
            examples=[[str(EXAMPLES / e["source"]), str(EXAMPLES / e["candidates"][0]),
                       [str(EXAMPLES / c) for c in e["candidates"][1:]] or None,
                       e["instruction"]] for e in examples],
            inputs=[source, edited, more, instruction],
            example_labels=[e["name"] for e in examples],
            label="Examples: SynthEdit items and edited real photographs",
        )

    ranking = gr.Markdown(elem_id="ranking")
    gallery = gr.Gallery(label="Candidates, best first (regions drawn)", columns=MAX_CANDIDATES,
                         height=260, object_fit="contain", visible=False,
                         elem_id="ranked-gallery")
    pick = gr.Radio(label="Details for", choices=[], visible=False, elem_id="candidate-pick")
    with gr.Row():
        source_view = gr.Image(label="Regions on the source", interactive=False,
                               elem_id="source-regions")
        edited_view = gr.Image(label="Regions on the edit", interactive=False,
                               elem_id="edited-regions")
        change_view = gr.Image(label="Pixel change map", interactive=False,
                               elem_id="change-map")
    show_change = gr.Checkbox(label="Show the pixel change map", value=True)
    with gr.Row():
        with gr.Column(scale=3):
            reasoning = gr.HighlightedText(label="Region-anchored reasoning",
                                           color_map=REASONING_COLORS, show_legend=False,
                                           elem_id="reasoning")
            quality = gr.Markdown()
            diagnostics = gr.Markdown(elem_id="diagnostics")
        chart = gr.Plot(label="Score breakdown", elem_id="scores")
    with gr.Accordion("Before / after", open=False):
        slider = gr.ImageSlider(label="Source | edit (on the source frame)", type="pil",
                                elem_id="before-after")
    with gr.Accordion("Attention heatmaps", open=True):
        gr.Markdown("Attention from the instruction's words to the patches of each image, "
                    "for one layer and head or their mean. Backends without attention "
                    "(pixel) show nothing here.")
        with gr.Row():
            layer = gr.Dropdown([ALL], value=ALL, label="Layer", scale=1)
            head = gr.Dropdown([ALL], value=ALL, label="Head", scale=1)
        with gr.Row():
            attn_source = gr.Image(label="Attention over the source", interactive=False,
                                   elem_id="attention-source")
            attn_edited = gr.Image(label="Attention over the edit", interactive=False,
                                   elem_id="attention-edited")
    with gr.Row():
        check = gr.Button("Stability check", elem_id="stability-button")
        save = gr.Button("Save to store", elem_id="save-button")
        reason = gr.Textbox(label="Why do you disagree? (optional)", scale=2,
                            elem_id="disagree-reason")
        disagree = gr.Button("I disagree", variant="stop", elem_id="disagree-button")
    status = gr.Markdown(elem_id="inspect-status")
    with gr.Accordion("Judgment JSON", open=False):
        raw = gr.JSON()

    def attention_images(s: Session, k: int, layer_v: str | None, head_v: str | None
                         ) -> tuple[Any, Any]:
        maps = services.attention(s.results[k], _layer_head(layer_v), _layer_head(head_v))
        if maps is None:
            return None, None
        r = s.results[k]
        return heatmap_overlay(r.source, maps[0]), heatmap_overlay(r.edited, maps[1])

    def details(s: Session, k: int, layer_v: str | None, head_v: str | None) -> tuple[Any, ...]:
        r = s.results[k]
        j = r.judgment
        a_src, a_edt = attention_images(s, k, layer_v, head_v)
        return (
            draw_regions(r.source, j.regions),
            draw_regions(r.edited, j.regions),
            heatmap_overlay(r.source, r.evidence.heatmap),
            (r.source, r.edited),
            reasoning_highlights(j),
            f"**Quality:** {plain(j.pq_reasoning)}" if j.pq_reasoning else "",
            diagnostics_markdown(j),
            score_breakdown(j),
            a_src, a_edt,
            j.to_dict(),
        )

    detail_outputs = [source_view, edited_view, change_view, slider, reasoning, quality,
                      diagnostics, chart, attn_source, attn_edited, raw]

    @user_errors
    def on_judge(src: Any, edt: Any, extra: Any, text: str, spec: str) -> tuple[Any, ...]:
        src_path = upload_path(src)
        cands = [p for p in [upload_path(edt), *upload_paths(extra)] if p]
        if not src_path or not cands:
            raise InputError("upload a source image and at least one edited image first")
        results = services.inspect_group(src_path, cands, text, spec)
        s = Session(src_path, cands, text.strip(), spec, results)
        s.order = _rank(results)
        best = s.order[0]
        n = len(results)
        lines = [f"**#{rank + 1}** {_choice(k)}: overall {_score(results[k].judgment)} "
                 f"({len(results[k].judgment.regions)} regions)"
                 for rank, k in enumerate(s.order)]
        maps = services.attention(results[best])
        n_layers, n_heads = maps[2] if maps is not None else (0, 0)
        layers = [ALL] + [f"layer {i + 1}" for i in range(n_layers)]
        heads = [ALL] + [f"head {i + 1}" for i in range(n_heads)]
        return (
            s,
            "Ranking: " + " · ".join(lines) if n > 1 else "",
            gr.update(value=[(draw_regions(results[k].edited, results[k].judgment.regions),
                              f"#{rank + 1} {_choice(k)}") for rank, k in enumerate(s.order)],
                      visible=n > 1),
            gr.update(choices=[_choice(k) for k in range(n)], value=_choice(best), visible=n > 1),
            gr.update(choices=layers, value=ALL),
            gr.update(choices=heads, value=ALL),
            _banner(results),
            *details(s, best, ALL, ALL),
        )

    run.click(
        on_judge,
        inputs=[source, edited, more, instruction, backend],
        outputs=[session, ranking, gallery, pick, layer, head, status, *detail_outputs],
        api_name="inspect",
        preprocess=False,
        concurrency_limit=1,
        concurrency_id="model",
    )

    @user_errors
    def on_pick(s: Session | None, choice: str, layer_v: str, head_v: str) -> tuple[Any, ...]:
        if s is None:
            raise InputError("judge something first")
        return details(s, _parse_pick(choice, len(s.results)), layer_v, head_v)

    pick.change(on_pick, inputs=[session, pick, layer, head], outputs=detail_outputs,
                api_visibility="private", concurrency_limit=1, concurrency_id="model")

    @user_errors
    def on_attention(s: Session | None, choice: str, layer_v: str, head_v: str
                     ) -> tuple[Any, Any]:
        if s is None:
            return None, None
        return attention_images(s, _parse_pick(choice, len(s.results)), layer_v, head_v)

    for dropdown in (layer, head):
        dropdown.input(on_attention, inputs=[session, pick, layer, head],
                       outputs=[attn_source, attn_edited], api_visibility="private",
                       concurrency_limit=1, concurrency_id="model")

    show_change.change(lambda show: gr.update(visible=show), inputs=show_change,
                       outputs=change_view, api_visibility="private")

    @user_errors
    def on_check(s: Session | None) -> str:
        if s is None:
            raise InputError("judge something first, then check its stability")
        report = services.stability(s.source, s.candidates, s.instruction, s.backend)
        rows = ["| perturbation | " + " | ".join(_choice(k) for k in range(len(s.candidates)))
                + " |", "|---|" + "---|" * len(s.candidates)]
        for name, values in report["scores"].items():
            rows.append(f"| {name} | " + " | ".join("n/a" if v is None else f"{v:.2f}"
                                                   for v in values) + " |")
        verdict = ("**Stable**: no perturbation moved an overall score by more than "
                   f"{report['threshold']} or changed the ranking." if report["stable"] else
                   "**Unstable verdict**: " + (
                       f"the ranking changed under {', '.join(report['ranking_changed_under'])}"
                       if report["ranking_changed_under"] else
                       f"a score moved by {max(report['max_change']):.2f} "
                       f"(> {report['threshold']})") + ". Treat this judgment with care.")
        return verdict + "\n\n" + "\n".join(rows)

    check.click(on_check, inputs=session, outputs=status, api_name="stability",
                concurrency_limit=1, concurrency_id="model")

    def _save(s: Session) -> int:
        if s.item_id is None:
            s.item_id = services.save(s.source, s.candidates, s.instruction,
                                      [r.judgment for r in s.results])
        return s.item_id

    @user_errors
    def on_save(s: Session | None) -> tuple[Any, str]:
        if s is None:
            raise InputError("judge something first, then save it")
        item_id = _save(s)
        return s, f"Saved as item {item_id} with {len(s.results)} model judgments."

    save.click(on_save, inputs=session, outputs=[session, status], api_name="save")

    @user_errors
    def on_disagree(s: Session | None, why: str) -> tuple[Any, str]:
        if s is None:
            raise InputError("judge something first; then you can disagree with it")
        item_id = _save(s)
        services.store.flag_item(item_id, why or "disagreed in Inspect")
        return s, (f"Item {item_id} is in the annotation queue (Annotate -> flagged items): "
                   "annotators will vote on it blind.")

    disagree.click(on_disagree, inputs=[session, reason], outputs=[session, status],
                   api_name="disagree")

    build_api(services)


def build_api(services: Services) -> None:
    """``/judge`` and ``/judge_group``: JSON in, Judgment JSON out, for gradio_client."""
    with gr.Row(visible=False):
        a_source = gr.File(label="source")
        a_edited = gr.File(label="edited")
        a_candidates = gr.File(label="candidates", file_count="multiple")
        a_instruction = gr.Textbox(label="instruction")
        a_backend = gr.Textbox(label="backend")
        a_out = gr.JSON()
        a_judge = gr.Button("judge")
        a_group = gr.Button("judge group")

    @user_errors
    def api_judge(src: Any, edt: Any, text: str, spec: str) -> dict[str, Any]:
        src_path, edt_path = upload_path(src), upload_path(edt)
        if not src_path or not edt_path:
            raise InputError("send a source image and an edited image")
        return services.judge(src_path, edt_path, text, spec or None).to_dict()

    a_judge.click(api_judge, inputs=[a_source, a_edited, a_instruction, a_backend],
                  outputs=a_out, api_name="judge", preprocess=False,
                  concurrency_limit=1, concurrency_id="model")

    @user_errors
    def api_group(src: Any, cands: Any, text: str, spec: str) -> dict[str, Any]:
        src_path = upload_path(src)
        paths = upload_paths(cands)
        if not src_path or not paths:
            raise InputError("send a source image and 1-4 candidate images")
        results = services.inspect_group(src_path, paths, text, spec or None)
        return {"judgments": [r.judgment.to_dict() for r in results],
                "ranking": _rank(results)}

    a_group.click(api_group, inputs=[a_source, a_candidates, a_instruction, a_backend],
                  outputs=a_out, api_name="judge_group", preprocess=False,
                  concurrency_limit=1, concurrency_id="model")
