"""The restricted unpickler of the reward server's compatibility mode: data in, code never."""

from __future__ import annotations

import io
import json
import os
import pickle

import pytest
from PIL import Image

from spatialreward.safe_pickle import UnsafePickleError, safe_loads


def png_image(mode: str) -> Image.Image:
    """A PIL image as a client has it after Image.open (a PngImageFile, not an Image)."""
    buf = io.BytesIO()
    im = Image.new("RGB", (5, 3), (10, 200, 30))
    (im.convert("P") if mode == "P" else im.convert(mode)).save(buf, format="PNG")
    return Image.open(io.BytesIO(buf.getvalue()))


def test_a_reward_clients_request_decodes_to_the_same_data():
    src, out = png_image("RGB"), png_image("RGB").convert("L")
    pal = png_image("P")
    request = {"input_images": [[src, pal]], "output_image": [out],
               "meta_datas": [json.dumps({"instruction": "make it green", "id": 3})],
               "server_type": "vlm", "extra": {"step": 12, "ok": True, "tags": {"a", "b"},
                                               "raw": b"\x00\x01", "score": 0.5, "none": None}}
    got = safe_loads(pickle.dumps(request))
    assert got["meta_datas"] == request["meta_datas"] and got["server_type"] == "vlm"
    assert got["extra"] == request["extra"]
    [[a, p]], [o] = got["input_images"], got["output_image"]
    assert a.tobytes() == src.tobytes() and a.mode == "RGB" and a.size == (5, 3)
    assert o.mode == "L" and o.tobytes() == out.tobytes()
    assert p.mode == "P" and p.convert("RGB").tobytes() == pal.convert("RGB").tobytes()
    assert type(a) is Image.Image  # rebuilt from raw bytes, not by the plugin's class


class _RunsACommand:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):  # what a hostile client sends: call os.system(command) on load
        return (os.system, (self.command,))


@pytest.mark.parametrize("payload", [
    _RunsACommand("touch {canary}"),
    {"output_image": [_RunsACommand("touch {canary}")]},  # hidden inside a real request
])
def test_a_pickle_naming_any_other_global_is_refused_before_it_runs(tmp_path, payload):
    canary = tmp_path / "canary"
    if isinstance(payload, dict):
        payload["output_image"][0].command = f"touch {canary}"
    else:
        payload.command = f"touch {canary}"
    data = pickle.dumps(payload)
    assert b"system" in data  # the bytes really ask for os.system
    with pytest.raises(UnsafePickleError, match="system"):
        safe_loads(data)
    assert not canary.exists()
    pickle.loads(data)  # the same bytes under plain pickle do run the command: the check is real
    assert canary.exists()


@pytest.mark.parametrize("module, name", [
    ("builtins", "eval"), ("builtins", "getattr"), ("builtins", "__import__"),
    ("subprocess", "Popen"), ("PIL.Image", "open"), ("PIL.ImageFile", "ImageFile"),
    ("copyreg", "_reconstructor"), ("numpy", "ndarray")])
def test_every_global_outside_the_allowed_few_is_refused(module, name):
    data = b"\x80\x04" + pickle.GLOBAL + f"{module}\n{name}\n".encode() + b")R."
    with pytest.raises(UnsafePickleError, match=f"{module}.{name}"):
        safe_loads(data)


class _ImageWithState:
    """Pickles as a PIL image carrying a chosen state (what a crafted request can hold)."""

    def __init__(self, state: list) -> None:
        self.state = state

    def __reduce__(self):
        return (Image.Image, (), self.state)


def test_malformed_images_and_pickles_get_clear_errors():
    good = pickle.dumps(Image.new("RGB", (4, 4)))
    short = pickle.dumps(_ImageWithState([{}, "RGB", (4, 4), None, b"\x00" * 47]))
    with pytest.raises(UnsafePickleError, match="needs 48 bytes"):
        safe_loads(short)
    with pytest.raises(UnsafePickleError, match="mode 'CMYK;X'"):
        safe_loads(pickle.dumps(_ImageWithState([{}, "CMYK;X", (1, 1), None, b"\x00"])))
    with pytest.raises(UnsafePickleError, match="size"):
        safe_loads(pickle.dumps(_ImageWithState([{}, "L", (-1, 4), None, b""])))
    assert safe_loads(pickle.dumps(_ImageWithState([{}, "L", (2, 2), None, b"abcd"]))
                      ).tobytes() == b"abcd"
    with pytest.raises(UnsafePickleError, match="pixel"):
        safe_loads(pickle.dumps(Image.new("L", (100, 100))), max_pixels=5000)
    with pytest.raises(UnsafePickleError, match="not a readable pickle"):
        safe_loads(good[:-5])
    with pytest.raises(UnsafePickleError, match="byte limit"):
        safe_loads(good, max_bytes=10)
    with pytest.raises(UnsafePickleError, match="persistent"):
        safe_loads(b"\x80\x04P0\n.")  # PERSID: an id the server would have to resolve
