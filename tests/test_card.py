"""The judgment card: one self-contained HTML page (and a PNG of it) for one inspection,
made through Services with the embedded Mini backend, checked by parsing it, by the CLI
and in headless Chromium with the network blocked."""

from __future__ import annotations

import base64
import html
import io
import json
import re
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from spatialreward import card, card_png
from spatialreward.cli import main
from spatialreward.config import StudioConfig
from spatialreward.errors import InputError
from spatialreward.judgment import Judgment
from spatialreward.service import Services
from spatialreward.synth.edits import Editor, random_task
from spatialreward.synth.generate import instruction_for
from spatialreward.synth.scenes import make_scene
from tests.browser import browser_page

OUT_OF_VOCABULARY = "make the dog's collar red"
ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


@pytest.fixture(scope="module")
def services(tmp_path_factory) -> Services:
    return Services(StudioConfig(db=tmp_path_factory.mktemp("card") / "studio.db"))


@pytest.fixture(scope="module")
def case(tmp_path_factory) -> tuple[Path, list[Path], str]:
    """A SynthEdit scene larger than the card's image side (so it must be downscaled):
    the correct recolour, the wrong object recoloured, and no edit."""
    rng = np.random.default_rng(11)
    scene = make_scene(rng, size=(384, 640))
    task = random_task(scene, rng, op="recolor")
    editor = Editor(scene, rng)
    text = instruction_for(scene, task, rng, "test").text
    folder = tmp_path_factory.mktemp("case")
    images = {"source.png": editor.source, "correct.png": editor.correct(task).image,
              "wrong.png": editor.flawed(task, "wrong_object").image,
              "none.png": editor.flawed(task, "no_edit").image}
    for name, pixels in images.items():
        Image.fromarray(pixels).save(folder / name)
    return folder / "source.png", [folder / n for n in ("correct.png", "wrong.png",
                                                        "none.png")], text


@pytest.fixture(scope="module")
def inspected(services, case):
    source, candidates, text = case
    return services.inspect_group(source, candidates, text)


@pytest.fixture(scope="module")
def flagged(services, case):
    source, candidates, _ = case
    return services.inspect_group(source, candidates[:2], OUT_OF_VOCABULARY)


class Refs(HTMLParser):
    """Every attribute of the page that can make a browser fetch something."""

    FETCHING = {"src", "href", "srcset", "action", "poster", "data", "background",
                "xlink:href", "formaction"}

    def __init__(self) -> None:
        super().__init__()
        self.refs: list[tuple[str, str, str]] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.refs += [(tag, k, v or "") for k, v in attrs if k in self.FETCHING]


def parse(page: str) -> Refs:
    refs = Refs()
    refs.feed(page)
    return refs


def embedded_images(page: str) -> list[Image.Image]:
    return [Image.open(io.BytesIO(base64.b64decode(data)))
            for data in re.findall(r'src="data:image/(?:jpeg|png);base64,([^"]+)"', page)]


def test_the_html_has_no_external_reference_and_says_everything(services, inspected, case):
    page = services.card(inspected, case[2]).decode("utf-8")
    refs = parse(page)
    assert all(v.startswith("data:") or v.startswith("#") for _, _, v in refs.refs), refs.refs
    assert "script" not in refs.tags and "link" not in refs.tags and "iframe" not in refs.tags
    assert not re.search(r"url\(\s*['\"]?(?:https?:)?//", page, re.I)
    assert "@import" not in page and "http-equiv=\"Content-Security-Policy\"" in page
    images = embedded_images(page)
    # the source, then per candidate: regions on source and edit, change map, 2 attention
    assert len(images) == 1 + 3 * 5
    assert all(max(im.size) <= card.IMAGE_SIDE for im in images)
    version = services.backend("mini").version
    assert "mini" in page and version in page and ISO_UTC.search(page)
    assert page.count('class="score-chart"') == 3
    headings = re.findall(r"<h2>#(\d) · (Candidate \d)", page)
    overall = [r.judgment.overall for r in inspected]
    best_first = sorted(range(3), key=lambda k: -overall[k])
    assert headings == [(str(rank + 1), f"Candidate {k + 1}")
                        for rank, k in enumerate(best_first)]
    assert 'id="low-coverage"' not in page  # a request Mini reads in full
    regions = [r.id for r in inspected[0].judgment.regions]
    assert regions and all(f'data-region="{rid}"' in page for rid in regions)
    assert 'class="seg verdict"' in page
    assert len(page.encode()) < 2_000_000


def test_the_instruction_is_escaped(services, inspected):
    evil = 'make the circle green <script>alert("x")</script> & <img src=http://x/y>'
    page = services.card(inspected[:1], evil).decode("utf-8")
    assert "<script" not in page and "<img src=http" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp;" in page
    assert all(v.startswith("data:") for _, _, v in parse(page).refs)


def test_an_out_of_vocabulary_request_gets_the_warning_box(services, flagged):
    page = services.card(flagged, OUT_OF_VOCABULARY).decode("utf-8")
    j = flagged[0].judgment
    assert j.status == "low_coverage" and j.coverage is not None
    box = page[page.index('id="low-coverage"'):page.index("</section>",
                                                          page.index('id="low-coverage"'))]
    assert "not stood behind" in box
    for text in (*j.warnings, *j.coverage.reasons):
        assert html.escape(text) in box
    assert page.count("status-low_coverage") == 2 and "overall not-stood" in page
    assert "make the dog&#x27;s collar red" in page


def test_failed_candidates_go_last_with_their_status_and_the_date_is_injected(inspected):
    failed = Judgment(status="backend_error", backend="mini", backend_version="v",
                      error="RuntimeError: <boom>")
    r = inspected[0]
    entries = [card.CardEntry(failed, r.source, r.edited, label="broken"),
               card.CardEntry(r.judgment, r.source, r.edited, r.evidence.heatmap,
                              label="good")]
    when = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
    page = card.render_html(entries, "make it so", created=when)
    assert re.findall(r"<h2>#\d · (\w+)", page) == ["good", "broken"]
    assert "2024-05-06T07:08:09Z" in page and "backend error" in page
    assert "RuntimeError: &lt;boom&gt;" in page and page.count('class="score-chart"') == 1
    # no attention given: the candidate shows its regions and the change map only
    assert len(embedded_images(page)) == 1 + 2 + 3


def test_bad_requests_are_refused_clearly(services, inspected):
    with pytest.raises(InputError, match="html, png"):
        services.card(inspected, "x", fmt="pdf")
    with pytest.raises(InputError, match="html, png"):  # before any file is read
        services.judge_card("missing.png", ["missing.png"], "x", fmt="svg")
    with pytest.raises(InputError, match="judge at least one"):
        services.card([], "x")
    with pytest.raises(InputError, match="one label per candidate"):
        services.card(inspected, "x", labels=["a"])
    with pytest.raises(InputError, match="1 to 4"):
        card.render_html([card.CardEntry(r.judgment, r.source, r.edited)
                          for r in inspected * 2], "x")


def test_the_png_decodes_and_shows_the_warning_box(services, case, flagged):
    source, candidates, _ = case
    ok = Image.open(io.BytesIO(services.judge_card(source, candidates[:2], case[2],
                                                   fmt="png")))
    low = Image.open(io.BytesIO(services.card(flagged, OUT_OF_VOCABULARY, "PNG")))
    for im in (ok, low):
        assert im.format == "PNG" and im.width == card_png.PNG_WIDTH
        assert 800 < im.height < 6000
    yellow = np.array([0xFF, 0xF4, 0xCE])  # the warning box's fill

    def box_pixels(im: Image.Image) -> int:
        return int((np.asarray(im.convert("RGB")) == yellow).all(axis=-1).sum())

    assert box_pixels(low) > 50_000 and box_pixels(ok) == 0


@given(st.lists(st.text(alphabet="abcdefgh", min_size=1, max_size=8), min_size=1,
                max_size=30), st.integers(8, 40))
def test_wrapping_breaks_only_between_words(words, width):
    lines = card.wrap_words(" ".join(words), width, len)
    assert " ".join(lines) == " ".join(words)  # words <= 8 < width: never split
    assert all(len(line) <= width for line in lines)


def test_cli_judge_writes_the_card_and_still_prints(case, tmp_path, capsys):
    source, candidates, text = case
    html_file, png_file = tmp_path / "card.html", tmp_path / "card.PNG"
    args = ["judge", "--source", str(source), "--edited", *map(str, candidates[:2]),
            "--instruction", text, "--backend", "mini"]
    assert main([*args, "--card", str(html_file)]) == 0
    out = capsys.readouterr()
    assert "#1 " in out.out and "#2 " in out.out and "status: ok" in out.out
    assert f"wrote the judgment card {html_file}" in out.err
    page = html_file.read_text("utf-8")
    assert page.startswith("<!DOCTYPE html>") and "correct.png" in page and "wrong.png" in page
    assert main([*args, "--json", "--card", str(png_file)]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 2  # stdout stays JSON
    assert Image.open(png_file).format == "PNG"


@pytest.mark.parametrize(("target", "message"), [
    ("{dir}", "is a folder"),
    ("{dir}/card.pdf", "must end in .html"),
    ("{dir}/missing/card.html", "does not exist"),
    ("{file}/card.html", "is a file, not a folder"),
])
def test_cli_refuses_a_card_path_it_cannot_write(case, tmp_path, capsys, target, message):
    source, candidates, text = case
    (tmp_path / "notes.txt").write_text("a file, not a folder")
    path = target.format(dir=tmp_path, file=tmp_path / "notes.txt")
    rc = main(["judge", "--source", str(source), "--edited", str(candidates[0]),
               "--instruction", text, "--card", path])
    out = capsys.readouterr()
    assert rc == 2 and out.out == ""
    assert out.err.startswith("error: --card") and message in out.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def open_offline(page, path: Path) -> list[str]:
    """Open ``path`` with every other request aborted; returns the aborted URLs."""
    own = path.resolve().as_uri()
    aborted: list[str] = []

    def route(r) -> None:
        if r.request.url == own:
            r.continue_()
        else:
            aborted.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    page.on("request", lambda req: None if req.url == own or req.url.startswith("data:")
            else aborted.append(req.url))
    page.goto(own)
    page.wait_for_load_state("load")
    page.unroute("**/*")
    return aborted


def test_the_card_renders_offline_in_chromium(services, flagged, tmp_path):
    path = tmp_path / "card.html"
    path.write_bytes(services.card(flagged, OUT_OF_VOCABULARY))
    leaky = tmp_path / "leaky.html"  # the same check must catch an external image
    leaky.write_text('<html><body><img src="http://127.0.0.1:9/x.png"></body></html>')
    with browser_page(1200, 900) as page:
        assert open_offline(page, leaky)
    with browser_page(1200, 900) as page:
        assert open_offline(page, path) == []
        widths = page.eval_on_selector_all("img", "els => els.map(e => e.complete ? "
                                           "e.naturalWidth : 0)")
        assert len(widths) == 1 + 2 * 5 and all(w > 0 for w in widths)
        assert page.locator("svg.score-chart").count() == 2
        assert page.locator("svg.score-chart rect.bar").count() == 2 * 5
        assert page.locator("#low-coverage").is_visible()
        assert "not stood behind" in page.locator("#low-coverage").inner_text()
        assert page.locator("#instruction").inner_text() == f"“{OUT_OF_VOCABULARY}”"
        # nothing is cut off sideways: the page fits the window's width
        assert page.evaluate("document.documentElement.scrollWidth") <= 1200
