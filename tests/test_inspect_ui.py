"""The Inspect tab's handlers, called directly on a built (not launched) demo: the share
card, the /card API, the headline and warnings, the ranked gallery, the example gallery
and the pictures (labels clear of gradio's badges, heatmaps with a scale)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from spatialreward.config import StudioConfig
from spatialreward.judgment import Coverage, Judgment, Region
from spatialreward.overlay import (
    TOP_CLEARANCE,
    draw_regions,
    heatmap_overlay,
    label_position,
    region_color,
    scale_colors,
)
from spatialreward.service import Services
from tests.factories import make_edit_case
from ui import build_demo, inspect, inspect_parts
from ui.charts import score_breakdown

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def services(tmp_path_factory) -> Services:
    return Services(StudioConfig(db=tmp_path_factory.mktemp("inspect") / "studio.db"))


@pytest.fixture(scope="module")
def demo(services) -> gr.Blocks:
    return build_demo(services)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> tuple[str, list[str]]:
    """A source, the correct removal and the unchanged source as a second candidate."""
    case = make_edit_case(3, kind="remove", size=(192, 256))
    folder = tmp_path_factory.mktemp("files")
    Image.fromarray(case.source).save(folder / "s.png")
    Image.fromarray(case.edited).save(folder / "e.png")
    Image.fromarray(case.source).save(folder / "same.png")
    return str(folder / "s.png"), [str(folder / "e.png"), str(folder / "same.png")]


def handler(demo: gr.Blocks, name: str) -> Any:
    """The python function behind an event, by api_name or by function name."""
    for fn in demo.fns.values():
        if fn.api_name == name or getattr(fn.fn, "__name__", None) == name:
            return fn
    raise AssertionError(f"no event {name!r}")


def session(services: Services, files, n: int = 2, text: str = "remove the blue star"):
    source, cands = files
    results = services.inspect_group(source, cands[:n], text, "pixel")
    s = inspect_parts.Session(source, cands[:n], text, "pixel", results)
    s.order = inspect_parts.rank(results)
    return s


# -- 1. share card ---------------------------------------------------------------------


def test_share_card_button_writes_an_html_or_png_file(demo, services, files):
    share = handler(demo, "on_share")
    s = session(services, files)
    page = Path(share.fn(s, "HTML"))
    assert page.suffix == ".html" and page.read_bytes()[:15].lower() == b"<!doctype html>"
    picture = Path(share.fn(s, "PNG"))
    assert picture.suffix == ".png" and picture.read_bytes()[:8] == PNG
    assert [c.elem_id for c in share.outputs] == ["card-file"]


def test_share_card_before_judging_is_a_clear_error(demo):
    with pytest.raises(gr.Error, match="nothing judged yet"):
        handler(demo, "on_share").fn(None, "HTML")


def test_card_api_judges_and_returns_the_card_file(demo, files):
    card = handler(demo, "card")
    source, cands = files
    upload = [{"path": c} for c in cands]
    out = Path(card.fn({"path": source}, upload, "remove the blue star", "pixel", "html"))
    assert out.read_bytes()[:15].lower() == b"<!doctype html>"
    assert Path(card.fn({"path": source}, upload, "remove the blue star", "", "png")
                ).read_bytes()[:8] == PNG
    with pytest.raises(gr.Error, match="not supported"):
        card.fn({"path": source}, upload, "remove the blue star", "pixel", "gif")
    with pytest.raises(gr.Error, match="1-4 candidate images"):
        card.fn({"path": source}, None, "remove the blue star", "pixel", "html")


# -- 7. the API page -------------------------------------------------------------------


@pytest.mark.parametrize("endpoint, names", [
    ("/judge", ["source", "edited", "instruction", "backend"]),
    ("/judge_group", ["source", "candidates", "instruction", "backend"]),
    ("/card", ["source", "candidates", "instruction", "backend", "fmt"]),
    ("/inspect", ["source", "edited", "more_candidates", "instruction", "backend"]),
])
def test_public_endpoints_name_and_describe_their_parameters(demo, endpoint, names):
    info = demo.get_api_info()["named_endpoints"][endpoint]
    assert [p["parameter_name"] for p in info["parameters"]] == names
    assert len(info["description"]) > 20 and "Args:" not in info["description"]
    assert all(p["label"] for p in info["parameters"])
    optional = {p["parameter_name"]: p["parameter_default"] for p in info["parameters"]
                if p["parameter_has_default"]}
    assert optional.get("backend") in ("", "mini") and optional.get("fmt", "html") == "html"


# -- 2, 3. ranked gallery, headline, warnings, scroll ---------------------------------------


def test_judging_two_candidates_fills_a_whole_image_gallery_with_captions(demo, files):
    judge = handler(demo, "inspect")
    source, cands = files
    out = judge.fn({"path": source}, {"path": cands[0]}, [{"path": cands[1]}],
                   "remove the blue star", "pixel")
    gallery = out[1]
    assert gallery["columns"] == 2 and gallery["visible"] is True
    assert gallery["height"] == inspect_parts.gallery_height(2) > 600  # a row of 2 squares
    captions = [caption for _, caption in gallery["value"]]
    assert captions[0].startswith("#1 · Candidate 1 · overall ") and captions[0].endswith("ok")
    assert captions[1].startswith("#2 · Candidate 2")
    component = next(c for c in judge.outputs if c.elem_id == "ranked-gallery")
    assert component.object_fit == "contain"
    assert judge.scroll_to_output
    assert out[0].startswith("Ranking: **#1** Candidate 1")
    assert isinstance(out[-1], inspect_parts.Session)  # last: the scroll goes to the ranking
    assert judge.outputs[0].elem_id == "ranking"


def test_one_candidate_leads_with_a_headline_score(demo, files):
    source, cands = files
    out = handler(demo, "inspect").fn({"path": source}, {"path": cands[0]}, None,
                                      "remove the blue star", "pixel")
    assert out[0].startswith("## Overall ") and "/10 · scored" in out[0]
    assert out[1]["visible"] is False  # no gallery for one candidate


def test_a_low_coverage_headline_is_greyed_and_flagged(services, files):
    (result,) = services.inspect_group(files[0], files[1][:1], "make the dog's collar red",
                                       "mini")
    assert result.judgment.status == "low_coverage"
    head = inspect_parts.summary([result], [0])
    assert 'class="low-coverage"' in head and "(low coverage)" in head and "Flagged" in head
    warnings = inspect_parts.banner([result])
    assert warnings.startswith("### ⚠ Low coverage") and "docs/vlm.md" in warnings
    assert "words the backend does not know: dog" in warnings


def test_warnings_are_shown_escaped_and_said_once(services, files):
    s = session(services, files)
    noisy = [dataclasses.replace(r, judgment=dataclasses.replace(
        r.judgment, warnings=("the edit was <b>stretched</b> *25%*",))) for r in s.results]
    text = inspect_parts.banner(noisy)
    assert text.startswith("**Warnings**")
    assert text.count("stretched") == 1  # said about both candidates: said once
    assert "&lt;b&gt;stretched&lt;/b&gt; \\*25%\\*" in text
    only_second = [s.results[0], noisy[1]]
    assert "- Candidate 2: the edit was" in inspect_parts.banner(only_second)
    assert inspect_parts.banner(s.results[:1]) == ""


# -- 4. backend choices ------------------------------------------------------------------


def test_the_backend_dropdown_says_what_each_backend_is(demo, services):
    dropdown = next(b for b in demo.blocks.values()
                    if isinstance(b, gr.Dropdown) and b.elem_id == "backend")
    assert [tuple(c) for c in dropdown.choices] == services.offered_choices()
    labels = dict((value, label) for label, value in dropdown.choices)
    assert labels["pixel"].startswith("pixel - ") and len(labels["pixel"]) > 12
    assert dropdown.value == services.config.backend


# -- 5. pictures, chart, reasoning -----------------------------------------------------------


@given(x1=st.integers(0, 999), y1=st.integers(0, 999), w=st.integers(1, 1000),
       h=st.integers(1, 1000), tw=st.integers(5, 80), th=st.integers(8, 30),
       size=st.tuples(st.integers(100, 900), st.integers(100, 900)))
def test_a_label_stays_inside_the_image_and_below_the_badges(x1, y1, w, h, tw, th, size):
    x2, y2 = min(999, x1 + w), min(999, y1 + h)
    box = (x1 * size[0] // 1000, y1 * size[1] // 1000, x2 * size[0] // 1000,
           y2 * size[1] // 1000)
    x, y = label_position(box, (tw, th), size)
    assert 0 <= x <= size[0] - tw and 0 <= y <= size[1] - th
    assert y >= round(TOP_CLEARANCE * size[1])


def test_a_region_at_the_top_has_its_label_drawn_below_the_badge_band():
    image = Image.new("RGB", (400, 400), "white")
    drawn = np.asarray(draw_regions(image, [Region(id=0, bbox_2d=(250, 0, 750, 50),
                                                   label="star")]))
    color = np.array(Image.new("RGB", (1, 1), region_color(0)))[0, 0]
    filled = np.all(drawn == color, axis=2)
    # the box covers rows 0..19; below it, up to the end of the badge band, nothing is drawn
    assert filled[:20, 100:300].any() and not filled[20:round(TOP_CLEARANCE * 400)].any()
    assert filled[round(TOP_CLEARANCE * 400):, 100:200].sum() > 100  # the label's fill


def test_labels_of_regions_with_the_same_box_do_not_cover_each_other():
    image = Image.new("RGB", (300, 300), "white")
    whole = (0, 0, 1000, 1000)
    drawn = np.asarray(draw_regions(image, [Region(id=0, bbox_2d=whole, label="a"),
                                            Region(id=1, bbox_2d=whole, label="b")]))
    inner = drawn[10:290, 10:290]  # inside the outlines: only the labels

    def rows(region_id: int) -> set[int]:
        color = np.array(Image.new("RGB", (1, 1), region_color(region_id)))[0, 0]
        return set(np.flatnonzero(np.all(inner == color, axis=2).any(axis=1)).tolist())

    assert rows(0) and rows(1) and not rows(0) & rows(1)


def test_heatmaps_are_strong_and_come_with_their_scale():
    grey = Image.new("RGB", (64, 64), (128, 128, 128))

    def moved(value: float) -> float:
        heat = np.full((8, 8), value, np.float32)
        return float(np.abs(np.asarray(heatmap_overlay(grey, heat), np.float32) - 128).mean())

    # a tenth of the peak is visible, not a faint tint (a linear 0.55 blend moved it by 3)
    assert moved(0.1) > 10 and moved(0.5) > 30
    assert np.array_equal(np.asarray(heatmap_overlay(grey, np.zeros((8, 8)))),
                          np.asarray(grey))
    legend = inspect_parts.scale_legend()
    assert "blue = low, red = high" in legend and scale_colors()[0] in legend


def test_the_score_chart_says_whose_scores_and_their_status():
    j = Judgment(status="ok", sc=(20.0, 15.0), pq=(22.0, 21.0), backend="mini")
    fig = score_breakdown(j, 1)
    assert fig.layout.title.text == "Scores of candidate 2 (all on 0..10), by mini: scored"
    assert "8.00 (20.0/25)" in fig.data[0].text
    low = Judgment(status="low_coverage", sc=(20.0, 15.0), pq=(22.0, 21.0), backend="mini",
                   coverage=Coverage(reasons=("it cannot read 'dog'",)))
    assert "low coverage" in score_breakdown(low, 0).layout.title.text


def test_the_reasoning_breaks_between_words_not_inside_them():
    assert "#reasoning .textfield" in inspect.HEAD and "word-break: normal" in inspect.HEAD


# -- 5, 6. the example gallery ---------------------------------------------------------------


def test_the_examples_open_on_measured_working_demos_then_an_honest_failure():
    examples = inspect_parts.load_examples()
    places = [e["gallery"] for e in examples]
    assert places == sorted(places) == list(range(1, len(examples) + 1))
    outcomes = [e["measured"]["outcome"] for e in examples]
    assert outcomes[0].startswith("works") and outcomes[1].startswith("works")
    flagged = next(k for k, o in enumerate(outcomes) if o.startswith("flagged"))
    assert all(o.startswith("works") for o in outcomes[:flagged])
    assert "flagged" in examples[flagged]["name"].lower()  # labelled as a failure
    for e in examples:
        assert all((EXAMPLES / f).is_file() for f in [e["source"], *e["candidates"]])
    listed = json.loads((EXAMPLES / "examples.json").read_text())
    assert listed[3]["name"] == "Photo: add a red circle (astronaut)"  # tests name it by place


def test_the_first_example_and_the_flagged_one_behave_as_measured(services):
    examples = inspect_parts.load_examples()
    flagged = next(e for e in examples if e["measured"]["outcome"].startswith("flagged"))
    for e in (examples[0], flagged):
        results = services.inspect_group(str(EXAMPLES / e["source"]),
                                         [str(EXAMPLES / c) for c in e["candidates"]],
                                         e["instruction"], "mini")
        scores = [r.judgment.overall for r in results]
        statuses = [r.judgment.status for r in results]
        stale = f"{e['name']}: measured otherwise; rerun python examples/make_examples.py"
        assert statuses == e["measured"]["status"], stale
        if e is examples[0]:
            assert inspect_parts.rank(results)[0] == 0, stale
            assert scores[0] - max(scores[1:]) >= 1.0, stale


def test_clicking_an_example_fills_the_inputs_and_judges_it(demo):
    select = handler(demo, "on_example")
    examples = inspect_parts.load_examples()
    source, edited, more, text = select.fn(gr.SelectData(None, {"index": 0, "value": None}))
    first = examples[0]
    assert Path(source).read_bytes() == (EXAMPLES / first["source"]).read_bytes()
    assert Path(edited).name == first["candidates"][0]
    assert [Path(m).name for m in more] == first["candidates"][1:]
    assert text == first["instruction"]
    gallery = next(b for b in demo.blocks.values()
                   if isinstance(b, gr.Gallery) and b.elem_id == "example-gallery")
    assert [s.elem_id for s in select.outputs] == ["source-upload", "edited-upload",
                                                   "more-candidates", "instruction"]
    assert gallery.object_fit == "contain" and gallery.allow_preview is False
    judged_next = [fn for fn in demo.fns.values() if fn.fn is handler(demo, "inspect").fn
                   and fn.api_visibility == "private"]
    assert judged_next and judged_next[0].scroll_to_output  # the click judges at once


def test_after_judging_the_page_scrolls_to_the_results(demo):
    """gradio 6.31's front end ignores scroll_to_output, so a script scrolls; one per way
    of judging (the button and an example click)."""
    scrolls = [d for d in demo.config["dependencies"]
               if "scrollIntoView" in str(d.get("js") or "")]
    assert len(scrolls) == 2 and all("'ranking'" in d["js"] for d in scrolls)
    assert all(d["trigger_only_on_success"] for d in scrolls)
