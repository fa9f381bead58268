"""The app through a real HTTP client: launch on 127.0.0.1, call the API, close."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import pytest
from gradio_client import Client, handle_file
from PIL import Image

from tests.factories import make_edit_case

ROOT = Path(__file__).resolve().parents[1]


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims ``width`` x ``height`` (a decompression bomb's header)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    case = make_edit_case(3, kind="remove", size=(320, 320))
    folder = tmp_path_factory.mktemp("app")
    Image.fromarray(case.source).save(folder / "s.png")
    Image.fromarray(case.edited).save(folder / "e.png")
    (folder / "truncated.png").write_bytes((folder / "e.png").read_bytes()[:300])
    (folder / "notes.png").write_text("this is a text file, not an image\n")
    (folder / "huge.png").write_bytes(png_header_only(20_000, 20_000))
    return folder


@pytest.fixture(scope="module")
def client(app_url):
    return Client(app_url, verbose=False)


def test_binds_to_loopback(app_url):
    assert app_url.startswith("http://127.0.0.1:")


def test_judge_endpoint_returns_the_judgment_json(client, files):
    judgment = client.predict(handle_file(str(files / "s.png")), handle_file(str(files / "e.png")),
                              "remove the blue star", "pixel", api_name="/judge")
    assert judgment["status"] == "ok" and judgment["backend"] == "pixel"
    assert len(judgment["regions"]) >= 1
    assert judgment["scores"]["overall"] is not None
    default = client.predict(handle_file(str(files / "s.png")), handle_file(str(files / "e.png")),
                             "remove the blue star", "", api_name="/judge")
    assert default["backend"] == "mini"  # empty backend: the configured default


def test_judge_group_ranks_the_candidates(client):
    example = json.loads((ROOT / "examples" / "examples.json").read_text())[3]  # astronaut
    out = client.predict(
        handle_file(str(ROOT / "examples" / example["source"])),
        [handle_file(str(ROOT / "examples" / c)) for c in example["candidates"]],
        example["instruction"], "mini", api_name="/judge_group")
    assert len(out["judgments"]) == 3
    assert out["ranking"][0] == 0  # the correct edit (listed first) wins
    scores = [j["scores"]["overall"] for j in out["judgments"]]
    assert scores[0] > max(scores[1:])


def test_inspect_button_shows_regions_reasoning_attention(client, files):
    out = client.predict(handle_file(str(files / "s.png")), handle_file(str(files / "e.png")),
                         None, "remove the blue star", "mini", api_name="/inspect")
    (ranking, gallery, pick, layer, head, status, source_view, edited_view, change_view,
     slider, reasoning, quality, diagnostics, chart, attn_source, attn_edited, raw) = out
    assert Image.open(source_view).size == (320, 320)
    assert Image.open(change_view).size == (320, 320)
    assert Image.open(attn_source).size == (320, 320)
    labels = {span["class_or_confidence"] for span in reasoning}
    assert "region 0" in labels and "verdict" in labels
    assert "source share" in diagnostics
    assert raw["regions"] and raw["backend"] == "mini"


@pytest.mark.parametrize("name, instruction, message", [
    ("notes.png", "remove the star", "not an image"),
    ("truncated.png", "remove the star", "truncated|ends early|cannot"),
    ("huge.png", "remove the star", "pixels|too large|exceeds"),
    ("e.png", "", "instruction is empty"),
    ("e.png", "x" * 10_000, "10000 characters"),
])
def test_bad_input_is_a_clear_error_and_the_app_keeps_serving(client, files, name,
                                                              instruction, message):
    with pytest.raises(Exception, match=message):
        client.predict(handle_file(str(files / "s.png")), handle_file(str(files / name)),
                       instruction, "pixel", api_name="/judge")
    ok = client.predict(handle_file(str(files / "s.png")), handle_file(str(files / "s.png")),
                        "remove the star", "pixel", api_name="/judge")
    assert ok["regions"] == []


def test_save_and_disagree_put_the_item_in_the_store(studio, files):
    client = Client(studio.url, verbose=False)
    client.predict(handle_file(str(files / "s.png")), handle_file(str(files / "e.png")), None,
                   "remove the blue star", "pixel", api_name="/inspect")
    status = client.predict(api_name="/save")
    assert "Saved as item" in status
    item_id = int(status.split("item ")[1].split()[0])
    store = studio.services.store
    assert store.item(item_id)["instruction"] == "remove the blue star"
    assert store.cached_judgment(item_id, 0, "pixel",
                                 studio.services.backend("pixel").version) is not None
    status = client.predict("it missed the shadow", api_name="/disagree")
    assert f"Item {item_id}" in status and item_id in store.flagged_items()


def test_stability_check_reports_each_perturbation(client, files):
    client.predict(handle_file(str(files / "s.png")), handle_file(str(files / "e.png")), None,
                   "remove the blue star", "mini", api_name="/inspect")
    report = client.predict(api_name="/stability")
    assert "JPEG 90" in report and "resampled" in report
    assert "Stable" in report or "Unstable" in report
