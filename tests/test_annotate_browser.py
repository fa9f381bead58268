"""The Annotate tab in a real browser: register a name, vote with the keyboard, see the
model's verdict only then, undo with the keyboard, and find both rows in the store."""

from __future__ import annotations

from storage.annotate import side_order
from tests.browser import browser_page
from tests.factories import make_edit_case

NAME = "browser-ann"


def test_register_vote_and_undo_with_the_keyboard(studio) -> None:
    store = studio.services.store
    case = make_edit_case(7, kind="recolor", size=(256, 320), degrade=False)
    item_id = store.add_item("make the star red", case.source, [case.edited, case.source],
                             uid="browser-annotate")
    with browser_page() as page:
        page.goto(studio.url)
        page.get_by_role("tab", name="Annotate").click()
        # On a loaded machine the tab may still be restoring the remembered (empty) name
        # when we type: retry until the Start click has seen our name.
        for attempt in range(3):
            page.locator("#annotator-name").get_by_role("textbox").fill(NAME)
            page.click("#annotator-start")
            try:
                page.wait_for_selector("#annotator-status :text('not a registered annotator')",
                                       timeout=15_000)
                break
            except Exception:
                if attempt == 2:
                    raise
        page.click("#register-annotator")
        page.wait_for_selector(f"#annotate-instruction :text('Item {item_id}')")
        assert "make the star red" in page.inner_text("#annotate-instruction")
        assert "hidden until you vote" in page.inner_text("#model-verdict")
        assert "U" in page.inner_text("#annotate-keys")
        assert {a["name"]: a["role"] for a in store.annotators()}[NAME] == "annotator"

        page.locator("body").click(position={"x": 5, "y": 5})  # focus off the text fields
        page.keyboard.press("1")
        page.wait_for_selector("#model-verdict :text('Model verdict')", timeout=30_000)
        verdict = page.inner_text("#model-verdict")
        assert "You voted A" in verdict
        [j] = store.human_judgments(annotator=NAME)
        assert j.item_id == item_id and j.preferred == side_order(NAME, item_id, 2)[0]
        assert j.seconds_spent is not None and j.seconds_spent > 0
        assert "1 of 1 items" in page.inner_text("#annotate-progress")

        page.keyboard.press("u")
        page.wait_for_selector("#annotate-status :text('Undid your vote')")
        assert "hidden until you vote" in page.inner_text("#model-verdict")
        history = store.human_judgments(annotator=NAME, history=True)
        assert [(h.kind, h.supersedes) for h in history] == [("judgment", None),
                                                            ("retraction", j.id)]

        # Typing into a field never votes; a reload remembers the name and the item.
        page.locator("#annotator-name").get_by_role("textbox").type("1u")
        page.wait_for_timeout(300)
        page.reload()
        page.get_by_role("tab", name="Annotate").click()
        page.wait_for_selector(f"#annotate-instruction :text('Item {item_id}')")
        assert page.locator("#annotator-name").get_by_role("textbox").input_value() == NAME
        assert len(store.human_judgments(annotator=NAME, history=True)) == 2
