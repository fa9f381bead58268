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
