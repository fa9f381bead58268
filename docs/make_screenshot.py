"""Regenerate docs/screenshot.png: start the app, judge a SynthEdit-style pair in Chromium.

    .venv/bin/python docs/make_screenshot.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from PIL import Image  # noqa: E402

from spatialreward.config import StudioConfig  # noqa: E402
from spatialreward.service import Services  # noqa: E402
from tests.browser import browser_page, judge_in_browser  # noqa: E402
from tests.factories import make_edit_case  # noqa: E402
from ui import build_demo  # noqa: E402


def main() -> None:
    case = make_edit_case(5, kind="recolor", size=(384, 512))
    with tempfile.TemporaryDirectory() as tmp:
        Image.fromarray(case.source).save(f"{tmp}/source.png")
        Image.fromarray(case.edited).save(f"{tmp}/edited.png")
        demo = build_demo(Services(StudioConfig()))
        demo.queue()
        _, url, _ = demo.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True)
        try:
            with browser_page(1400, 1150) as page:
                judge_in_browser(page, url, f"{tmp}/source.png", f"{tmp}/edited.png",
                                 "make the green star red")
                page.wait_for_timeout(500)
                page.screenshot(path=str(ROOT / "docs" / "screenshot.png"), full_page=True)
        finally:
            demo.close()
    print("wrote docs/screenshot.png")


if __name__ == "__main__":
    main()
