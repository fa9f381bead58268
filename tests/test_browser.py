"""The Inspect tab in a real browser: upload, judge, see regions, reasoning and scores."""

from __future__ import annotations

from PIL import Image

from tests.browser import browser_page, judge_in_browser
from tests.factories import make_edit_case


def test_upload_and_judge_shows_regions_reasoning_and_scores(app_url, tmp_path):
    case = make_edit_case(5, kind="recolor", size=(384, 512))
    Image.fromarray(case.source).save(tmp_path / "source.png")
    Image.fromarray(case.edited).save(tmp_path / "edited.png")
    with browser_page() as page:
        judge_in_browser(page, app_url, str(tmp_path / "source.png"),
                         str(tmp_path / "edited.png"), "make the green star red")
        reasoning = page.inner_text("#reasoning").lower()
        assert "before and after" in reasoning  # the default mini model read the words
        assert "region 0" in reasoning and "verdict" in reasoning  # segments carry their tags
        assert page.locator("#source-regions img").count() == 1
        assert page.locator("#change-map img").count() == 1
        assert "Overall" in page.inner_text("#scores")


def test_an_example_from_the_gallery_ranks_three_candidates_with_attention(app_url):
    with browser_page() as page:
        page.goto(app_url)
        page.get_by_text("Photo: add a red circle (astronaut)").click()
        page.wait_for_timeout(500)
        page.click("#judge-button")
        page.wait_for_selector("#ranked-gallery img", timeout=60_000)
        assert page.locator("#ranked-gallery img").count() >= 3
        assert "#1 Candidate 1" in page.inner_text("#ranking").replace("**", "")
        page.wait_for_selector("#attention-edited img", timeout=30_000)
        assert "is the change the instruction asks for" in page.inner_text("#reasoning")
        page.get_by_label("Candidate 2").check()
        # Candidate 2's own reasoning: its blue shape is not what was asked for.
        page.wait_for_function(
            "() => document.querySelector('#reasoning').innerText"
            ".includes('is not the change the instruction asks for')", timeout=60_000)
