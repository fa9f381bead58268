"""Attention maps of the vlm backend: captured during the forward pass, equal to the eager
``output_attentions=True`` reference, on each image's merged patch grid, far cheaper in
memory, with sink tokens handled."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

from spatialreward.backends import create
from spatialreward.vlm.architectures import cached_tiny_checkpoint
from spatialreward.vlm.attention import (
    Capture,
    RawAttention,
    build_maps,
    eager_reference,
    find_sinks,
    pair_maps,
    summarise,
)
from spatialreward.vlm.memory import measure_peak

ARCHS = ("qwen3_vl", "qwen2_5_vl")
PATCH = {"qwen3_vl": 16, "qwen2_5_vl": 14}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def backends():
    return {a: create(f"vlm:{cached_tiny_checkpoint(a)},max_pixels=65536") for a in ARCHS}


def images(seed: int = 0) -> tuple[Image.Image, Image.Image]:
    rng = np.random.default_rng(seed)
    source = Image.fromarray(rng.integers(0, 255, (192, 256, 3), dtype=np.uint8))
    edited = Image.fromarray(rng.integers(0, 255, (160, 160, 3), dtype=np.uint8))
    return source, edited


def token_grid(image: Image.Image, patch: int, max_pixels: int = 65536,
               min_pixels: int = 3136) -> tuple[int, int]:
    h, w = smart_resize(image.height, image.width, factor=patch * 2, min_pixels=min_pixels,
                        max_pixels=max_pixels)
    return h // patch // 2, w // patch // 2


@pytest.mark.parametrize("arch", ARCHS)
def test_prompt_maps_equal_the_eager_reference_on_each_images_grid(backends, arch):
    b = backends[arch]
    source, edited = images()
    requests = [b.runner.request(b.prompts.sc, "make the cup red", (source, edited)),
                b.runner.request(b.prompts.pq, "", (edited,))]  # a batch with left padding
    captured = b.runner.prompt_attention(requests)
    reference = b.runner.eager_prompt_attention(requests)
    min_pixels = int(b.runner.encoder.processor.size.shortest_edge)
    expected = [[token_grid(source, PATCH[arch], min_pixels=min_pixels),
                 token_grid(edited, PATCH[arch], min_pixels=min_pixels)],
                [token_grid(edited, PATCH[arch], min_pixels=min_pixels)]]
    for got, ref, grids in zip(captured, reference, expected, strict=True):
        assert [m.shape[2:] for m in got.per_image] == grids
        assert all(m.shape[:2] == (2, 4) for m in got.per_image)
        for a, r in zip(got.per_image, ref.per_image, strict=True):
            assert np.abs(a - r).max() <= 1e-5
        share = got.image_share  # probabilities: part of each row's mass
        assert ((share > 0) & (share <= 1 + 1e-6)).all()
    assert captured[0].queries > 5 and captured[0].kind == "prompt"


def test_answer_maps_equal_the_eager_reference(backends):
    b = backends["qwen3_vl"]
    source, edited = images(1)
    request = b.runner.request(b.prompts.sc, "make the cup red", (source, edited))
    answer = json.dumps({"edit_region": [], "reasoning": "<|global|> same", "score": [1, 25]})
    with b.runner.forced_answers({"sc": answer}):
        out = b.runner.generate([request], capture="answer")[0]
    assert out.answer_attention is not None
    tokens = b.runner.tokenizer.encode(answer)
    assert out.answer_attention.queries == len(tokens)  # every fed answer token, once
    batch = b.runner.batch([request])
    ids = torch.cat([batch.inputs["input_ids"], torch.tensor([tokens])], 1)
    inputs = {**batch.inputs, "input_ids": ids,
              "attention_mask": torch.ones_like(ids),
              "mm_token_type_ids": torch.nn.functional.pad(batch.inputs["mm_token_type_ids"],
                                                           (0, len(tokens)))}
    layout = batch.layout
    queries = torch.zeros_like(ids, dtype=torch.bool)
    queries[0, batch.prompt_len :] = True
    layout = type(layout)(image_index=layout.image_index, image_valid=layout.image_valid,
                          splits=layout.splits, grids=layout.grids, prompt_queries=queries,
                          key_valid=torch.ones_like(queries))
    reference = eager_reference(b.runner.model, inputs, layout)[0]
    for a, r in zip(out.answer_attention.per_image, reference.per_image, strict=True):
        assert np.abs(a - r).max() <= 1e-5


def test_attention_maps_are_normalised_on_the_source_grid(backends):
    b = backends["qwen2_5_vl"]
    source, edited = images(2)
    maps = b.attention_maps(source, edited, "make the cup red")
    rows, cols = token_grid(source, 14, min_pixels=3136)
    assert maps.shape == (2, 4, 2, rows, cols) and maps.dtype == np.float32
    assert np.allclose(maps.sum((2, 3, 4)), 1, atol=1e-5) and (maps >= 0).all()
    view = b.attention(source, edited, "make the cup red")
    assert view.roles == ("source", "edited")
    edited_raw = view.image("edited")
    assert edited_raw is not None and edited_raw.shape[2:] != (rows, cols)  # resampled
    share = maps[:, :, 1].sum((-1, -2))
    raw = view.raw.per_image
    expected = raw[1].sum((-1, -2)) / (raw[0].sum((-1, -2)) + raw[1].sum((-1, -2)))
    assert np.allclose(share, expected, atol=1e-5)  # resampling keeps each image's mass


def test_sinks_are_found_and_suppressed():
    rng = np.random.default_rng(0)
    content = rng.random((3, 4, 12, 16)).astype(np.float32)
    content[..., 5:8, 6:10] += 5  # the edited object: strong but spread, in every head
    sinky = content.copy()
    sinky[..., 0, 15] = 400.0  # one token soaking up attention in every head
    sinky[0, 0, 9, 2] = 40.0  # a hot spot in a single head is content, not a sink
    raw = RawAttention(per_image=[content, sinky], queries=10, kind="prompt")
    kept = build_maps(raw, ("source", "edited"), sinks="keep")
    shown = build_maps(raw, ("source", "edited"), sinks="suppress")
    assert not kept.sinks[0].any()
    assert np.argwhere(kept.sinks[1]).tolist() == [[0, 15]]
    assert kept.maps[:, :, 1].mean((0, 1)).argmax() == 15  # the sink dominates the raw map
    hottest = np.unravel_index(shown.maps[:, :, 1].mean((0, 1)).argmax(), (12, 16))
    assert 5 <= hottest[0] < 8 and 6 <= hottest[1] < 10  # the content shows
    assert shown.maps[0, 0, 1, 9, 2] == shown.maps[0, 0, 1].max()
    assert find_sinks(np.ones((2, 2, 4, 4))).sum() == 0


def test_summary_and_pairing():
    src = np.zeros((1, 1, 2, 2))
    src[..., 0, 0] = 1.0
    edt = np.full((1, 1, 4, 4), 1 / 16)
    s = summarise(src, edt, [(0, 0, 500, 500)])
    assert s.source_share == 0.5 and s.entropy_source == pytest.approx(0, abs=1e-6)
    assert s.entropy_edited == pytest.approx(np.log(16), abs=1e-4)
    assert s.in_region_share == pytest.approx((1 + 4 / 16) / 2)
    paired = pair_maps(src, edt)
    assert paired.shape == (1, 1, 2, 2, 2) and paired.sum() == pytest.approx(1)
    assert paired[0, 0, 1].sum() == pytest.approx(0.5)
    assert pair_maps(None, edt)[0, 0, 0].sum() == 0


def test_capture_keeps_far_less_memory_than_output_attentions(backends):
    b = backends["qwen3_vl"]
    rng = np.random.default_rng(3)
    big = [Image.fromarray(rng.integers(0, 255, (256, 256, 3), dtype=np.uint8))
           for _ in range(2)]
    batch = b.runner.batch([b.runner.request(b.prompts.sc, "make the cup red", big)])

    def captured() -> RawAttention:
        state = Capture(batch.layout, b.runner.layers, chunk_bytes=1 << 20)  # several chunks
        with torch.no_grad(), state.active_in():
            b.runner.model(**batch.inputs, use_cache=False, logits_to_keep=1)
        result = state.results()[0]
        assert result is not None
        return result

    def plain() -> None:
        with torch.no_grad():
            b.runner.model(**batch.inputs, use_cache=False, logits_to_keep=1)

    _, forward_peak = measure_peak(plain)
    got, capture_peak = measure_peak(captured)
    ref, eager_peak = measure_peak(lambda: eager_reference(b.runner.model, batch.inputs,
                                                           batch.layout)[0])
    assert batch.prompt_len > 500
    # What attention adds on top of the forward pass itself (a small model at a short
    # sequence; benchmarks/attention_memory.py measures the >= 10x at 2,000+ tokens).
    assert eager_peak.bytes - forward_peak.bytes > 4 * (capture_peak.bytes - forward_peak.bytes)
    for a, r in zip(got.per_image, ref.per_image, strict=True):
        assert np.abs(a - r).max() <= 1e-5
