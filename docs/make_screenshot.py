"""Regenerate the README screenshots: docs/screenshot.png and docs/screenshots/*.png.

    .venv/bin/python docs/make_screenshot.py

Starts the app on a fresh store in a temp folder, fills it with a small SynthEdit set
(imported, benched with the mini backend, a few votes), and drives each tab in
Debian's Chromium: Inspect (the astronaut example, three candidates), Annotate (a vote
cast with the keyboard, verdict revealed), Bench (the stored run) and Data. The README's
docs/screenshot.png is a confident judgment (the astronaut) beside a flagged one (the
out-of-depth example), side by side.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from spatialreward.bench.runs import run_recorded  # noqa: E402
from spatialreward.synth.generate import SynthConfig, generate  # noqa: E402
from storage.datasets import open_dataset  # noqa: E402
from storage.exchange import import_pairs  # noqa: E402
from tests.browser import browser_page  # noqa: E402
from tests.conftest import launch_studio  # noqa: E402

OUT = ROOT / "docs" / "screenshots"
FLAGGED = "Out of its depth (flagged): make the cat black and white"


def side_by_side(left: Path, right: Path, out: Path) -> None:
    """docs/screenshot.png: a confident judgment beside a flagged one, each titled."""
    from PIL import Image, ImageDraw, ImageFont

    shots = [Image.open(left).convert("RGB"), Image.open(right).convert("RGB")]
    titles = ["Confident: an edit SpatialReward-Mini can read",
              "Flagged: the same model out of its depth, saying so"]
    try:
        font = ImageFont.truetype("DejaVuSans-Bold.ttf", 30)
    except OSError:
        font = ImageFont.load_default(size=30)
    gap, head = 24, 56
    w, h = sum(im.width for im in shots) + gap, max(im.height for im in shots) + head
    canvas = Image.new("RGB", (w, h), "white")
    draw = ImageDraw.Draw(canvas)
    x = 0
    for im, title in zip(shots, titles, strict=True):
        canvas.paste(im, (x, head))
        draw.text((x + 12, 12), title, fill="#222", font=font)
        x += im.width + gap
    canvas = canvas.resize((1800, round(h * 1800 / w)), Image.Resampling.LANCZOS)
    canvas.save(out, optimize=True)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="screenshots-"))
    demo, studio = launch_studio(tmp)
    services, store = studio.services, studio.services.store
    try:
        synth = tmp / "synth"
        generate(SynthConfig(out=synth, n=24, seed=21, split="test", workers=1), progress=False)
        import_pairs(store, synth / "pairs.jsonl", dataset="synthedit-demo")
        with open_dataset(tmp, path=str(synth / "pairs.jsonl")) as dataset:
            run_recorded(services, dataset, "mini", limit=None, by=["flaw"], progress=None)
        with browser_page(1400, 1000) as page:
            page.goto(studio.url)
            page.get_by_text("Photo: add a red circle (astronaut)").click()
            page.wait_for_timeout(500)
            page.click("#judge-button")
            page.wait_for_selector("#attention-edited img", timeout=60_000)
            page.wait_for_timeout(800)
            page.screenshot(path=str(OUT / "inspect.png"), full_page=True)
            page.locator("#ranking").scroll_into_view_if_needed()
            page.screenshot(path=str(tmp / "confident.png"))
            page.evaluate("window.scrollTo(0, 0)")
            page.get_by_text(FLAGGED).click()  # an example click judges at once
            page.wait_for_selector("#inspect-warnings :text('out of its depth')",
                                   timeout=60_000)
            page.wait_for_timeout(800)
            page.locator("#ranking").scroll_into_view_if_needed()
            page.screenshot(path=str(tmp / "flagged.png"))
            side_by_side(tmp / "confident.png", tmp / "flagged.png",
                         ROOT / "docs" / "screenshot.png")
            page.evaluate("window.scrollTo(0, 0)")

            page.get_by_role("tab", name="Annotate").click()
            page.locator("#annotator-name").get_by_role("textbox").fill("ana")
            page.click("#annotator-start")
            page.wait_for_selector("#register-annotator")
            page.click("#register-annotator")
            page.wait_for_selector("#annotate-instruction :text('Item')")
            page.locator("body").click(position={"x": 5, "y": 5})
            page.keyboard.press("1")
            page.wait_for_selector("#model-verdict :text('Model verdict')", timeout=60_000)
            page.wait_for_timeout(500)
            page.screenshot(path=str(OUT / "annotate.png"), full_page=True)

            page.get_by_role("tab", name="Bench").click()
            page.get_by_role("button", name="Refresh runs").click()
            page.wait_for_timeout(1000)
            page.locator("#bench-run-pick input").click()
            page.get_by_role("option").first.click()
            page.wait_for_selector("#bench-categories .js-plotly-plot", timeout=60_000)
            page.wait_for_timeout(800)
            page.screenshot(path=str(OUT / "bench.png"), full_page=True)

            page.get_by_role("tab", name="Data").click()
            page.wait_for_timeout(1500)
            page.screenshot(path=str(OUT / "data.png"), full_page=True)
    finally:
        demo.close()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"wrote docs/screenshot.png and {', '.join(sorted(p.name for p in OUT.glob('*.png')))}")


if __name__ == "__main__":
    main()
