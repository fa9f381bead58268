"""The Inspect tab: a source, 1-4 edited candidates and the instruction; see where and why.

Per candidate: the regions drawn on the source and the edit, a before/after slider, the
pixel change map (toggle), attention heatmaps over both images (per layer/head or the
mean, with their colour scale), the reasoning with each region's segment in the region's
colour, the score breakdown and the attention-collapse diagnostics. A single judgment
leads with its overall score; several are ranked side by side. Every warning is shown
beside the results. A stability check re-judges under harmless perturbations; "Save"
stores the item and judgments, "I disagree" also sends the item to the annotation queue;
"Share card" downloads the judgment card (HTML or PNG). The example gallery judges an
example on a click, best demos first.

API (``gradio_client``): ``/judge`` (source, edited, instruction, backend) -> the
Judgment JSON; ``/judge_group`` (source, candidates, instruction, backend) -> the
Judgment JSONs in candidate order plus the ranking; ``/card`` (source, candidates,
instruction, backend, fmt) -> the judgment card file; ``/inspect`` is the button itself.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from spatialreward.errors import InputError
from spatialreward.overlay import draw_regions, heatmap_overlay
from spatialreward.service import MAX_CANDIDATES, Services

from .charts import score_breakdown
from .errors import user_errors
from .inspect_parts import (
    ALL,
    CARD_FORMATS,
    CSS,
    EXAMPLES,
    REASONING_COLORS,
    Session,
    banner,
    choice,
    diagnostics_markdown,
    example_caption,
    example_files,
    gallery_height,
    gallery_items,
    layer_head,
    load_examples,
    parse_pick,
    rank,
    reasoning_highlights,
    save_card,
    scale_legend,
    summary,
    upload_path,
    upload_paths,
    write_card,
)
from .text import plain

HEAD = f"<style>{CSS}</style>"


def build_inspect_tab(services: Services) -> None:
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
        # Only the backends the server offers (a browser must not make it load any path),
        # each with what it is.
        backend = gr.Dropdown(services.offered_choices(), value=services.config.backend.strip(),
                              label="Backend", scale=2, elem_id="backend")
        run = gr.Button("Judge", variant="primary", scale=1, elem_id="judge-button")
    examples = load_examples()
    example_gallery = gr.Gallery(
        [(str(EXAMPLES / e["source"]), example_caption(e)) for e in examples],
        label="Examples (click one to judge it): what the default backend does on each, "
              "best demos first, then where it is out of its depth and says so",
        # One row of small tiles: a 7-column row of squares is about 200 px high.
        columns=max(1, min(len(examples), 7)), rows=1, height=230, object_fit="contain",
        allow_preview=False, interactive=False, visible=bool(examples),
        elem_id="example-gallery")

    ranking = gr.Markdown(elem_id="ranking")
    warnings = gr.Markdown(elem_id="inspect-warnings")
    gallery = gr.Gallery(label="Candidates, best first (regions drawn)", columns=MAX_CANDIDATES,
                         rows=1, height="auto", object_fit="contain", visible=False,
                         allow_preview=True, elem_id="ranked-gallery")
    pick = gr.Radio(label="Details for", choices=[], visible=False, elem_id="candidate-pick")
    with gr.Row():
        source_view = gr.Image(label="Regions on the source", interactive=False,
                               elem_id="source-regions")
        edited_view = gr.Image(label="Regions on the edit", interactive=False,
                               elem_id="edited-regions")
        change_view = gr.Image(label="Pixel change map", interactive=False,
                               elem_id="change-map")
    with gr.Row():
        show_change = gr.Checkbox(label="Show the pixel change map", value=True)
        gr.HTML(scale_legend("Change map and attention"), elem_id="heat-scale")
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
        gr.HTML(scale_legend("Attention"))
    with gr.Row():
        check = gr.Button("Stability check", elem_id="stability-button")
        save = gr.Button("Save to store", elem_id="save-button")
        reason = gr.Textbox(label="Why do you disagree? (optional)", scale=2,
                            elem_id="disagree-reason")
        disagree = gr.Button("I disagree", variant="stop", elem_id="disagree-button")
    with gr.Row():
        card_format = gr.Radio(list(CARD_FORMATS), value=CARD_FORMATS[0], label="Card format",
                               scale=1, elem_id="card-format")
        share = gr.Button("Share card", scale=1, elem_id="share-card")
        card_file = gr.File(label="Judgment card (download)", interactive=False, scale=2,
                            elem_id="card-file")
    status = gr.Markdown(elem_id="inspect-status")
    with gr.Accordion("Judgment JSON", open=False):
        raw = gr.JSON()

    def attention_images(s: Session, k: int, layer_v: str | None, head_v: str | None
                         ) -> tuple[Any, Any]:
        maps = services.attention(s.results[k], layer_head(layer_v), layer_head(head_v))
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
            score_breakdown(j, k),
            a_src, a_edt,
            j.to_dict(),
        )

    detail_outputs = [source_view, edited_view, change_view, slider, reasoning, quality,
                      diagnostics, chart, attn_source, attn_edited, raw]

    @user_errors
    def inspect(source: Any, edited: Any, more_candidates: Any, instruction: str,
                backend: str) -> tuple[Any, ...]:
        """Judge 1-4 edited candidates of a source image, as the Judge button does.

        Args:
            source: the original image
            edited: the first edited candidate
            more_candidates: up to 3 more edited candidates (or None)
            instruction: the edit that was asked for, e.g. "make the red circle blue"
            backend: the backend spec to judge with ("" = the configured default)
        Returns:
            the ranking (or the single headline), the ranked gallery, the candidate
            choice, layers, heads, the warnings, and the best candidate's details
        """
        src_path = upload_path(source)
        cands = [p for p in [upload_path(edited), *upload_paths(more_candidates)] if p]
        if not src_path or not cands:
            raise InputError("upload a source image and at least one edited image first")
        results = services.inspect_group(src_path, cands, instruction, backend or None)
        s = Session(src_path, cands, instruction.strip(), backend, results)
        s.order = rank(results)
        best = s.order[0]
        n = len(results)
        maps = services.attention(results[best])
        n_layers, n_heads = maps[2] if maps is not None else (0, 0)
        layers = [ALL] + [f"layer {i + 1}" for i in range(n_layers)]
        heads = [ALL] + [f"head {i + 1}" for i in range(n_heads)]
        return (
            summary(results, s.order),
            gr.update(value=gallery_items(results, s.order), visible=n > 1, columns=n,
                      height=gallery_height(n)),
            gr.update(choices=[choice(k) for k in range(n)], value=choice(best), visible=n > 1),
            gr.update(choices=layers, value=ALL),
            gr.update(choices=heads, value=ALL),
            banner(results),
            *details(s, best, ALL, ALL),
            s,
        )

    judge_inputs = [source, edited, more, instruction, backend]
    # The state goes last: scroll_to_output scrolls to the first output (the ranking).
    judge_outputs = [ranking, gallery, pick, layer, head, warnings, *detail_outputs, session]
    judged = run.click(inspect, inputs=judge_inputs, outputs=judge_outputs, api_name="inspect",
                       preprocess=False, scroll_to_output=True, concurrency_limit=1,
                       concurrency_id="model")
    after_judging(judged, status)

    def on_example(evt: gr.SelectData) -> tuple[Any, ...]:
        e = examples[evt.index if isinstance(evt.index, int) else 0]
        src, cands = example_files(e)
        return src, cands[0], cands[1:] or None, e["instruction"]

    after_judging(example_gallery.select(
        on_example, outputs=[source, edited, more, instruction], api_visibility="private",
    ).success(inspect, inputs=judge_inputs, outputs=judge_outputs, preprocess=False,
           scroll_to_output=True, api_visibility="private", concurrency_limit=1,
           concurrency_id="model"), status)

    @user_errors
    def on_pick(s: Session | None, picked: str, layer_v: str, head_v: str) -> tuple[Any, ...]:
        if s is None:
            raise InputError("judge something first")
        return details(s, parse_pick(picked, len(s.results)), layer_v, head_v)

    pick.change(on_pick, inputs=[session, pick, layer, head], outputs=detail_outputs,
                api_visibility="private", concurrency_limit=1, concurrency_id="model")

    @user_errors
    def on_attention(s: Session | None, picked: str, layer_v: str, head_v: str
                     ) -> tuple[Any, Any]:
        if s is None:
            return None, None
        return attention_images(s, parse_pick(picked, len(s.results)), layer_v, head_v)

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
        rows = ["| perturbation | " + " | ".join(choice(k) for k in range(len(s.candidates)))
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

    @user_errors
    def on_share(s: Session | None, fmt: str) -> str:
        return write_card(services, s, fmt)

    share.click(on_share, inputs=[session, card_format], outputs=card_file,
                api_visibility="private", concurrency_limit=1, concurrency_id="model")

    build_api(services)


# gradio 6.31's front end does not act on scroll_to_output (no status tracker gets it),
# so the page is scrolled to the results by a script once they are there.
SCROLL_TO_RESULTS = ("() => { document.getElementById('ranking')"
                     "?.scrollIntoView({behavior: 'smooth', block: 'start'}); }")


def after_judging(judged: Any, status: gr.Markdown) -> None:
    """What follows a successful judgment: the page scrolls to the results and the last
    judgment's save / stability message is cleared."""
    judged.success(lambda: "", outputs=status, api_visibility="private").success(
        None, js=SCROLL_TO_RESULTS, api_visibility="private")


def build_api(services: Services) -> None:
    """``/judge``, ``/judge_group`` and ``/card``: files and text in, the Judgment JSON
    (or the judgment card file) out, for gradio_client. The hidden components' labels are
    what the API page says about each parameter."""
    with gr.Row(visible=False):
        a_source = gr.File(label="source: the original image")
        a_edited = gr.File(label="edited: the edited image to judge")
        a_candidates = gr.File(label="candidates: 1-4 edited images of the source",
                               file_count="multiple")
        a_instruction = gr.Textbox(label="instruction: the edit that was asked for")
        # Initial values make these optional in the client, with the default shown.
        a_backend = gr.Textbox("", label="backend: a backend spec this Studio offers "
                                         "('' = the default)")
        a_format = gr.Textbox("html", label="fmt: the card format, html or png")
        a_out = gr.JSON(label="judgment JSON")
        a_card = gr.File(label="judgment card")
        a_judge = gr.Button("judge")
        a_group = gr.Button("judge group")
        a_card_button = gr.Button("card")

    @user_errors
    def judge(source: Any, edited: Any, instruction: str, backend: str) -> dict[str, Any]:
        """Judge one edit: the Judgment JSON (regions, reasoning, scores, status, warnings).

        Args:
            source: the original image
            edited: the edited image to judge
            instruction: the edit that was asked for, e.g. "make the red circle blue"
            backend: a backend spec this Studio offers ("" = the default)
        """
        src_path, edt_path = upload_path(source), upload_path(edited)
        if not src_path or not edt_path:
            raise InputError("send a source image and an edited image")
        return services.judge(src_path, edt_path, instruction, backend or None).to_dict()

    a_judge.click(judge, inputs=[a_source, a_edited, a_instruction, a_backend],
                  outputs=a_out, api_name="judge", preprocess=False,
                  concurrency_limit=1, concurrency_id="model")

    @user_errors
    def judge_group(source: Any, candidates: Any, instruction: str,
                    backend: str) -> dict[str, Any]:
        """Judge 1-4 edits of one source: their Judgment JSONs in candidate order and the
        ranking (candidate indices, best first).

        Args:
            source: the original image
            candidates: 1-4 edited images of the source
            instruction: the edit that was asked for
            backend: a backend spec this Studio offers ("" = the default)
        """
        src_path = upload_path(source)
        paths = upload_paths(candidates)
        if not src_path or not paths:
            raise InputError("send a source image and 1-4 candidate images")
        results = services.inspect_group(src_path, paths, instruction, backend or None)
        return {"judgments": [r.judgment.to_dict() for r in results],
                "ranking": rank(results)}

    a_group.click(judge_group, inputs=[a_source, a_candidates, a_instruction, a_backend],
                  outputs=a_out, api_name="judge_group", preprocess=False,
                  concurrency_limit=1, concurrency_id="model")

    @user_errors
    def card(source: Any, candidates: Any, instruction: str, backend: str,
             fmt: str) -> str:
        """Judge 1-4 edits of one source and return their judgment card to share: one
        self-contained HTML page (opens offline) or a PNG of it.

        Args:
            source: the original image
            candidates: 1-4 edited images of the source
            instruction: the edit that was asked for
            backend: a backend spec this Studio offers ("" = the default)
            fmt: the card format, "html" or "png"
        """
        src_path = upload_path(source)
        paths = upload_paths(candidates)
        if not src_path or not paths:
            raise InputError("send a source image and 1-4 candidate images")
        kind = (fmt or "html").strip().lower()
        data = services.judge_card(src_path, paths, instruction, backend or None, kind)
        return save_card(data, kind)

    a_card_button.click(card, inputs=[a_source, a_candidates, a_instruction, a_backend,
                                      a_format],
                        outputs=a_card, api_name="card", preprocess=False,
                        concurrency_limit=1, concurrency_id="model")
