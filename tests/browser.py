"""Drive the Studio in headless Chromium (Debian's package; never a downloaded browser)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager

CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage",
]


def chromium_path() -> str:
    path = (
        os.environ.get("CHROMIUM")
        or shutil.which("chromium")
        or shutil.which("chromium-browser")
    )
    if not path:
        raise RuntimeError(
            "Chromium is not installed; `make test` installs it when run as root, otherwise "
            "run `sudo apt-get install -y chromium` (or set CHROMIUM=/path/to/chrome)"
        )
    return path


@contextmanager
def browser_page(width: int = 1400, height: int = 1000) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path(), headless=True,
                                     args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            yield page
        finally:
            browser.close()


def judge_in_browser(page, url: str, source: str, edited: str, instruction: str) -> None:
    """Upload both images, type the instruction, press Judge, wait for the drawn regions."""
    page.goto(url)
    page.set_input_files("#source-upload input[type=file]", source)
    page.set_input_files("#edited-upload input[type=file]", edited)
    page.fill("#instruction textarea", instruction)
    page.click("#judge-button")
    page.wait_for_selector("#edited-regions img", timeout=30_000)
    page.wait_for_selector("#scores .js-plotly-plot", timeout=30_000)
