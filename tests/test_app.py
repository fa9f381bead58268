"""The app through a real HTTP client: launch on 127.0.0.1, call the API, close."""

from __future__ import annotations

import json

import pytest
from gradio_client import Client, handle_file
from PIL import Image

from tests.factories import make_edit_case


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    case = make_edit_case(3, kind="remove", size=(320, 320))
    folder = tmp_path_factory.mktemp("app")
    Image.fromarray(case.source).save(folder / "s.png")
    Image.fromarray(case.edited).save(folder / "e.png")
    (folder / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    return folder


def test_binds_to_loopback(app_url):
    assert app_url.startswith("http://127.0.0.1:")


def test_judge_endpoint_returns_regions_and_scores(app_url, files):
    client = Client(app_url, verbose=False)
    out = client.predict(
        handle_file(str(files / "s.png")),
        handle_file(str(files / "e.png")),
        "remove the blue star",
        "pixel",
        api_name="/judge",
    )
    source_view, edited_view, change_view, reasoning, quality, chart, raw = out
    judgment = raw if isinstance(raw, dict) else json.loads(raw)
    assert judgment["status"] == "ok"
    assert len(judgment["regions"]) >= 1
    assert judgment["scores"]["overall"] is not None
    # The drawn views are real images of the source's size.
    assert Image.open(source_view).size == (320, 320)
    assert Image.open(change_view).size == (320, 320)
    labels = {span["class_or_confidence"] for span in reasoning}
    assert "region 0" in labels and "verdict" in labels


def test_bad_upload_is_a_clear_error_and_the_app_keeps_serving(app_url, files):
    client = Client(app_url, verbose=False)
    with pytest.raises(Exception, match="truncated|not an image|cannot"):
        client.predict(
            handle_file(str(files / "s.png")),
            handle_file(str(files / "bad.png")),
            "remove the star",
            "pixel",
            api_name="/judge",
        )
    ok = client.predict(
        handle_file(str(files / "s.png")), handle_file(str(files / "s.png")),
        "remove the star", "pixel", api_name="/judge",
    )
    assert ok[-1]["regions"] == []
