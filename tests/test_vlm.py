"""The vlm backend on tiny random-weight Qwen3-VL / Qwen2.5-VL checkpoints built in code.

The checkpoints are written to disk and loaded through ``vlm:PATH`` exactly as a user's
checkpoint is. Random weights answer gibberish, which must become a ``parse_failed``
judgment; a constrained decode that forces a known answer drives the real model through
the whole path (generation, decoding, parsing, regions, reasoning links, aggregation).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from spatialreward.backends import available, create
from spatialreward.backends.vlm import VLMBackend, _average
from spatialreward.config import StudioConfig
from spatialreward.errors import ConfigError, InputError
from spatialreward.judgment import Judgment
from spatialreward.protocol import parse_judgment
from spatialreward.service import Services
from spatialreward.vlm.architectures import cached_tiny_checkpoint, save_tiny_checkpoint
from spatialreward.vlm.config import VLMConfig
from spatialreward.vlm.prompts import builtin_names, load_prompts
from spatialreward.vlm.resize import official_resize, official_size
from tests.factories import make_edit_case

ROOT = Path(__file__).resolve().parents[1]
ARCHS = ("qwen3_vl", "qwen2_5_vl")
SC = json.dumps({
    "edit_region": [{"id": 0, "label": "red cup", "bbox_2d": [120, 340, 560, 880]},
                    {"id": 1, "label": "shadow", "bbox_2d": [600, 700, 900, 990]}],
    "reasoning": "<|bbox_0|> The cup is red now. <|bbox_1|> Its shadow moved. "
                 "<|global|> The edit follows the instruction.",
    "score": [21, 17]})
PQ = json.dumps({"reasoning": "Clean, natural lighting.", "score": [23, 24]})


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # Tiny models spend their time in thread hand-offs on a shared 2-core machine.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def backend():
    built: dict[str, VLMBackend] = {}

    def get(arch: str = "qwen3_vl", **settings: object) -> VLMBackend:
        settings = {"max_new_tokens": 160, "max_pixels": 65536, **settings}
        spec = f"vlm:{cached_tiny_checkpoint(arch)}" + "".join(
            f",{k}={v}" for k, v in sorted(settings.items()))
        if spec not in built:
            built[spec] = create(spec)  # type: ignore[assignment]
        return built[spec]

    return get


@pytest.fixture(scope="module")
def pair() -> tuple[Image.Image, Image.Image]:
    case = make_edit_case(3, kind="recolor", size=(192, 256))
    return Image.fromarray(case.source), Image.fromarray(case.edited).resize((224, 160))


# -- selecting the backend and its settings ---------------------------------------------------
def test_listed_and_needs_a_checkpoint_directory():
    assert "vlm" in available()
    with pytest.raises(ConfigError, match="needs a checkpoint directory"):
        create("vlm")
    with pytest.raises(ConfigError, match="unknown vlm setting 'max_pixel'"):
        VLMConfig.from_argument("/m,max_pixel=5")
    with pytest.raises(ConfigError, match="dtype must be one of"):
        VLMConfig.from_argument("/m,dtype=fp8")
    with pytest.raises(ConfigError, match="not a valid int"):
        VLMConfig.from_argument("/m,samples=many")
    c = VLMConfig.from_argument("/data/a,b/ckpt,adapter=/l,samples=4,min_pixels=none")
    assert (str(c.path), str(c.adapter), c.samples, c.sampling) == ("/data/a,b/ckpt", "/l", 4,
                                                                     True)


def test_invalid_checkpoint_says_what_a_directory_must_contain(tmp_path):
    with pytest.raises(ConfigError, match="must contain config.json"):
        create(f"vlm:{tmp_path / 'missing'}")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "qwen3_vl"}))
    (tmp_path / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(ConfigError, match="pickled weights are refused"):
        create(f"vlm:{tmp_path}")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(ConfigError, match="runs qwen3_vl and qwen2_5_vl"):
        create(f"vlm:{tmp_path}")
    adapter = tmp_path / "lora"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(
        json.dumps({"base_model_name_or_path": "Qwen/Qwen3-VL-8B-Instruct"}))
    with pytest.raises(ConfigError, match="is a LoRA adapter .*adapter="):
        create(f"vlm:{adapter}")
    with pytest.raises(ConfigError, match="neither a built-in protocol"):
        create(f"vlm:{cached_tiny_checkpoint()},prompts=nope")


def test_every_setting_and_protocol_is_documented():
    doc = (ROOT / "docs" / "vlm.md").read_text()
    for f in fields(VLMConfig):
        assert f.name == "path" or f"| `{f.name}` |" in doc, f"docs/vlm.md lacks {f.name}"
    for name in builtin_names():
        assert f"`{name}`" in doc


# -- judging ------------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ARCHS)
def test_random_weights_give_parse_failed_with_the_raw_text(backend, pair, arch):
    b = backend(arch)
    j = b.judge(*pair, "make the cup red")
    assert j.status == "parse_failed" and j.overall is None and j.reward is None
    assert j.raw_sc and j.raw_pq is not None and "unusable" in (j.error or "")
    assert j.backend == "vlm" and j.backend_version.startswith(arch)
    assert all(0 < n <= 160 for n in j.meta["new_tokens"])
    assert j.attention is not None and 0 < j.attention.source_share < 1
    assert Judgment.from_json(j.to_json()) == j


@pytest.mark.parametrize("arch", ARCHS)
def test_forced_answer_runs_the_whole_path(backend, pair, arch):
    b = backend(arch)
    with b.runner.forced_answers({"sc": SC, "pq": PQ}):
        j = b.judge(*pair, "make the cup red")
    assert j.status == "ok", j.error
    assert j.raw_sc == SC and j.raw_pq == PQ  # the tokenizer and decode round-trip
    assert j.sc == (21.0, 17.0) and j.pq == (23.0, 24.0)
    assert j.overall == parse_judgment(SC, PQ).overall
    # 0..1000 of the edited image = 0..1000 of the source frame (stretch convention)
    assert [r.bbox_2d for r in j.regions] == [(120, 340, 560, 880), (600, 700, 900, 990)]
    assert [(s.kind, s.region_id) for s in j.segments] == [("bbox", 0), ("bbox", 1),
                                                            ("global", None)]
    assert j.warnings == ()
    assert j.attention is not None and j.attention.in_region_share is not None
    assert j.meta["new_tokens"][0] == len(b.runner.tokenizer.encode(SC)) + 1  # + end token


def test_editscore_protocol_and_self_ensemble(backend, pair):
    b = backend(prompts="editscore", samples=3)
    answer = json.dumps({"reasoning": "Good.", "score": [20, 15]})
    with b.runner.forced_answers({"sc": answer, "pq": PQ}):
        j = b.judge(*pair, "make the cup red")
    assert j.status == "ok" and j.regions == () and j.warnings == ()
    assert j.aggregation == "min_geometric" and j.overall == pytest.approx(
        np.sqrt(15 / 2.5 * 23 / 2.5))
    assert j.meta["samples"] == 3 and j.meta["sc_samples"] == [[20.0, 15.0]] * 3
    assert b.version != backend().version


def test_protocol_settings_edit_size_decoding_and_ensemble(backend, pair):
    source, edited = pair  # 256x192 and 224x160
    es, sr = backend(prompts="editscore"), backend()
    assert [im.size for im in es._requests(source, edited, "x")[0].images] == [(256, 192)] * 2
    assert sr._requests(source, edited, "x")[0].images[1].size == (224, 160)  # as it is
    # decoding: EditScore samples even one pass; SpatialReward is greedy; a setting wins
    assert (es.config.temperature, es.config.top_p, es.config.top_k) == (0.7, 0.9, 20)
    assert es.config.sampling and not sr.config.sampling
    assert not backend(prompts="editscore", temperature=0).config.sampling
    assert backend(samples=2).config.temperature == 0.7  # a greedy protocol's ensemble
    # the ensemble: the mean of each pass's overall (EditScore's average_last) differs from
    # the aggregate of the mean pairs when the passes disagree
    passes = [parse_judgment(json.dumps({"reasoning": "r", "score": s}), PQ,
                             aggregation="min_geometric") for s in ([20, 15], [10, 5])]
    last = _average(passes, mean_overall=True)
    assert last.overall == pytest.approx(np.mean([np.sqrt(15 / 2.5 * 23 / 2.5),
                                                  np.sqrt(5 / 2.5 * 23 / 2.5)]))
    assert last.reward == pytest.approx(last.overall / 10)
    assert _average(passes).overall == pytest.approx(np.sqrt(10 / 2.5 * 23 / 2.5))
    assert Judgment.from_dict(last.to_dict()).overall == last.overall  # stored and read back


def test_average_keeps_failures_visible():
    good = parse_judgment(SC, PQ)
    other = parse_judgment(SC.replace("[21, 17]", "[11, 7]"), PQ)
    bad = parse_judgment("no idea", PQ)
    j = _average([bad, good, other])
    assert j.status == "ok" and j.sc == (16.0, 12.0) and j.regions == good.regions
    assert any("1 of 3 SC samples unusable" in w for w in j.warnings)
    assert j.meta["raw_sc_samples"][0] == "no idea"
    failed = _average([bad, bad])
    assert failed.status == "parse_failed" and failed.overall is None and failed.error


def test_custom_template_file(backend, pair, tmp_path):
    template = tmp_path / "mine.toml"
    template.write_text('name = "mine"\n[sc]\nimages = ["edited", "source"]\n'
                        'system = "Be strict."\n'
                        'prompt = "After: <image> Before: <image> Task: {instruction}"\n')
    b = backend(prompts=str(template))
    assert b.prompts.pq is None and b.prompts.name == "mine"
    prompt = b.runner.request(b.prompts.sc, "add a hat", pair).prompt
    assert prompt.index("Be strict.") < prompt.index("After: <|vision_start|>")
    assert "Before: <|vision_start|><|image_pad|><|vision_end|> Task: add a hat" in prompt
    with b.runner.forced_answers({"sc": SC}):
        j = b.judge(*pair, "add a hat")
    assert j.status == "ok" and j.pq is None and j.overall is None and len(j.regions) == 2
    for bad, match in [('[sc]\nimages = ["edited"]\nprompt = "no placeholder"', "{instruction}"),
                       ('[sc]\nimages = ["source"]\nprompt = "{instruction}"', "edited image"),
                       ('[sc]\nimages = ["edited"]\nprompt = "<image><image>{instruction}"',
                        "2 <image> markers"),
                       ("[sc\n", "not valid TOML")]:
        template.write_text(bad)
        with pytest.raises(ConfigError, match=match):
            load_prompts(template)


def test_template_text_is_reproduced_exactly_and_its_hash_recorded(backend, pair, tmp_path):
    template = tmp_path / "exact.toml"
    # a multi-line TOML string keeps its last newline; the leading spaces stay too
    template.write_text('[sc]\nimages = ["source", "edited"]\nprompt = """\n'
                        '  Judge: {instruction}\nAnswer in JSON.\n"""\n')
    b = backend(prompts=str(template))
    assert b.prompts.sc.prompt == "  Judge: {instruction}\nAnswer in JSON.\n"
    prompt = b.runner.request(b.prompts.sc, "add a hat", pair).prompt
    assert "  Judge: add a hat\nAnswer in JSON.\n<|im_end|>" in prompt
    with b.runner.forced_answers({"sc": SC}):
        j = b.judge(*pair, "add a hat")
    assert j.meta["prompts_sha256"] == b.protocol["wording_sha256"]
    # a comment changes the file, not the wording
    template.write_text("# a note\n" + template.read_text())
    again = load_prompts(template)
    assert again.wording_sha256 == b.prompts.wording_sha256
    assert again.digest != b.prompts.digest


def test_an_answer_cut_off_at_the_token_limit_is_a_counted_truncation(backend, pair):
    b = backend(max_new_tokens=20)
    with b.runner.forced_answers({"sc": SC, "pq": PQ}):
        j = b.judge(*pair, "make the cup red")
    assert j.status == "parse_failed" and j.meta["truncated"] == 2  # SC and PQ both cut
    assert "cut off at max_new_tokens=20 (sc, pq)" in (j.error or "")
    whole = backend()  # 160 tokens hold both answers
    with whole.runner.forced_answers({"sc": SC, "pq": PQ}):
        assert whole.judge(*pair, "make the cup red").meta["truncated"] == 0
    from spatialreward.bench.metrics import evaluate_item, summarize

    cut = replace(evaluate_item("a", ((0,), (1,)), [None, 2.0]), truncated=1)
    other = evaluate_item("b", ((0,), (1,)), [None, 2.0])
    assert (summarize([cut, other])["failed"], summarize([cut, other])["truncated"]) == (2, 1)
    assert VLMConfig.from_argument("/m").max_new_tokens == 4096  # the official evaluation's


def test_official_resize_follows_the_qwen_vl_utils_rules():
    # cases worked by hand from the rules (factor 28 / 32; 4..16384 tokens by default)
    assert official_size(768, 1024, 32) == (768, 1024)  # multiples: unchanged
    assert official_size(500, 700, 28) == (504, 700)  # nearest multiple per side
    assert official_size(1000, 1000, 28, max_pixels=589_824) == (756, 756)  # down, floored
    assert official_size(20, 30, 32) == (64, 96)  # up to 4 tokens, ceiled
    # no practical cap; Python's round() halves to even, as the reference rules do
    assert official_size(2000, 3000, 32) == (1984, 3008)
    with pytest.raises(InputError, match="aspect ratio"):
        official_size(10, 2500, 28)
    rgba = Image.new("RGBA", (40, 40), (255, 0, 0, 0))  # fully transparent red
    assert official_resize(rgba, 32).getpixel((0, 0)) == (255, 255, 255)  # onto white


def test_resize_official_sizes_images_then_applies_the_checkpoints_limits(backend):
    # the tiny Qwen3-VL checkpoint: patch 16 x merge 2 = 32; its preprocessor_config.json
    # keeps images between 65,536 and 16,777,216 pixels
    wide = Image.new("RGB", (600, 400), (90, 120, 30))
    capped = backend(max_pixels=65536)  # resize=cap: 400x600 -> 192x288 -> 6 x 9 tokens
    assert capped.runner.encoder.prepare(wide).token_grid == (6, 9)
    official = backend(resize="official", max_pixels="none")  # 384x608, within the limits
    assert official.runner.encoder.prepare(wide).token_grid == (12, 19)
    # with qwen-vl-utils' max_pixels: 192x288 = 55,296 px, then the checkpoint's minimum
    # of 65,536 scales it up to 224x320
    small = backend(resize="official", max_pixels=65536)
    assert small.runner.encoder.prepare(wide).token_grid == (7, 10)
    assert len({capped.version, official.version, small.version}) == 3
    assert official.runner.encoder.processor.size.longest_edge == 16_777_216


def test_candidates_of_one_source_share_its_encoding(backend, pair):
    source, edited = pair
    candidates = [edited, edited.rotate(90), edited.transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    triples = [(source, c, "make the cup red") for c in candidates]
    fresh = source.rotate(180)  # not seen before by this backend's cache
    triples = [(fresh, c, t) for _, c, t in triples]
    reuse, plain = backend(max_new_tokens=8), backend(max_new_tokens=8, reuse_images="no")
    before = (reuse.runner.encoder.stats.encoded, reuse.runner.encoder.stats.reused)
    got = reuse.judge_many(triples)
    encoded = reuse.runner.encoder.stats.encoded - before[0]
    reused = reuse.runner.encoder.stats.reused - before[1]
    assert encoded == 1 + len(candidates)  # the source once, each candidate once
    assert encoded + reused == 3 * len(candidates)  # SC: 2 images, PQ: 1, per candidate
    expected = plain.judge_many(triples)
    assert plain.runner.encoder.stats.reused == 0
    assert [j.raw_sc for j in got] == [j.raw_sc for j in expected]
    assert [j.raw_pq for j in got] == [j.raw_pq for j in expected]


@pytest.mark.parametrize("arch", ARCHS)
def test_batched_judgments_equal_one_by_one(backend, arch):
    rng = np.random.default_rng(5)

    def picture(h: int, w: int) -> Image.Image:
        return Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))

    b = backend(arch, max_new_tokens=12, min_pixels=3136)
    triples = [(picture(192, 256), picture(128, 128), "make it red"),
               (picture(96, 96), picture(200, 120), "a longer instruction, so the prompts "
                                                    "differ in length and get left-padded")]
    batched = b.judge_many(triples)
    single = [b.judge(*t) for t in triples]
    assert [j.raw_sc for j in batched] == [j.raw_sc for j in single]
    assert [j.raw_pq for j in batched] == [j.raw_pq for j in single]
    assert [j.attention for j in batched] == [j.attention for j in single]


@pytest.mark.filterwarnings("ignore::FutureWarning")  # inside peft.get_peft_model
def test_lora_adapter_is_merged(backend, pair, tmp_path):
    peft = pytest.importorskip("peft", reason="LoRA needs peft (requirements.txt)")
    base = cached_tiny_checkpoint()
    model = create(f"vlm:{base},max_pixels=65536").runner.model  # type: ignore[attr-defined]
    config = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                             init_lora_weights=False)
    tuned = peft.get_peft_model(model, config)
    tuned.save_pretrained(tmp_path / "lora")
    adapter_config = json.loads((tmp_path / "lora" / "adapter_config.json").read_text())
    adapter_config["base_model_name_or_path"] = str(base)  # lets vlm:ADAPTER find its base
    (tmp_path / "lora" / "adapter_config.json").write_text(json.dumps(adapter_config))
    with_adapter = create(f"vlm:{base},adapter={tmp_path / 'lora'},max_pixels=65536")
    request = with_adapter.runner.request(with_adapter.prompts.sc, "x", pair)
    batch = with_adapter.runner.batch([request])
    with torch.no_grad():
        merged = with_adapter.runner.model(**batch.inputs).logits
        reference = tuned(**batch.inputs).logits
    assert torch.allclose(merged, reference, atol=1e-4)
    assert with_adapter.version != backend().version
    assert create(f"vlm:{tmp_path / 'lora'},max_pixels=65536").version == with_adapter.version


def test_version_changes_with_weights_and_settings(backend, tmp_path):
    other = save_tiny_checkpoint(tmp_path / "other", seed=1)
    versions = {backend().version, backend(max_pixels=50176).version,
                backend(max_new_tokens=64).version,
                create(f"vlm:{other},max_new_tokens=160,max_pixels=65536").version}
    assert len(versions) == 4


# -- front ends ---------------------------------------------------------------------------------
def test_services_judge_and_attention(pair, tmp_path):
    spec = f"vlm:{cached_tiny_checkpoint()},max_new_tokens=16,max_pixels=65536"
    services = Services(StudioConfig(backend=spec, db=tmp_path / "studio.db"))
    inspection = services.inspect(pair[0], pair[1], "make the cup red")
    assert inspection.judgment.status == "parse_failed" and inspection.judgment.raw_sc
    maps = services.attention(inspection, layer=1, head=0)
    assert maps is not None
    source_map, edited_map, layout = maps
    assert layout == (2, 4) and source_map.shape == edited_map.shape
    assert max(source_map.max(), edited_map.max()) == pytest.approx(1.0)


def test_cli_judges_with_a_checkpoint_directory(pair, tmp_path):
    pair[0].save(tmp_path / "source.png")
    pair[1].save(tmp_path / "edited.png")
    spec = f"vlm:{cached_tiny_checkpoint()},max_new_tokens=8,max_pixels=65536"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = [sys.executable, "-m", "spatialreward", "judge", "--source", str(tmp_path /
            "source.png"), "--edited", str(tmp_path / "edited.png"), "--instruction", "x"]
    out = subprocess.run([*args, "--backend", spec, "--json"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    j = Judgment.from_dict(json.loads(out.stdout))
    assert j.backend == "vlm" and j.status == "parse_failed" and j.raw_sc
    bad = subprocess.run([*args, "--backend", f"vlm:{tmp_path / 'nope'}"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "must contain config.json" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_parse_official_fills_as_the_official_scripts_and_bench_reports_both(backend, pair):
    from spatialreward.bench.metrics import evaluate_item
    from spatialreward.bench.runner import official_parse_summary

    ours, official = backend(), backend(parse="official")
    with ours.runner.forced_answers({"sc": '{"reasoning": "x", "score": [18]}', "pq": "nope"}):
        failed = ours.judge(*pair, "make the cup red")
    assert failed.status == "parse_failed" and failed.overall is None  # ours: no score
    assert failed.meta["official_scores"]["sc"] == [18.0, 18.0]
    assert failed.meta["official_scores"]["how"] == {"sc": ["duplicated"], "pq": ["midpoint"]}
    with official.runner.forced_answers({"sc": '{"reasoning": "x", "score": [18]}',
                                         "pq": "nope"}):
        filled = official.judge(*pair, "make the cup red")
    assert filled.status == "ok" and filled.sc == (18.0, 18.0) and filled.pq == (12.5, 12.5)
    assert filled.meta["our_status"] == "parse_failed"
    assert any("midpoint" in w for w in filled.warnings)
    # bench: ours counts the failed item wrong; the official fill may score it right
    right = evaluate_item("a", ((0,), (1,)), [7.0, 3.0])
    lost = evaluate_item("b", ((0,), (1,)), [None, 3.0])
    right = replace(right, info={"official_scores": [7.0, 3.0], "official_invented": 0})
    lost = replace(lost, info={"official_scores": [5.0, 3.0], "official_invented": 1})
    summary = official_parse_summary([right, lost])
    assert summary is not None
    assert (summary["accuracy"], summary["invented_items"], summary["failed"]) == (1.0, 1, 0)
    assert official_parse_summary([right]) is None  # nothing failed: nothing to add


def test_an_edit_from_several_images_is_judged_against_all_of_them(backend, pair, tmp_path):
    source, edited = pair
    second = source.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    b = backend()
    call = b.prompts.sc_multi
    assert call is not None and call.images == ("sources", "edited")
    request = b.runner.request(call, "put <image_1> into <image_2>", [source, second, edited])
    assert request.prompt.count("<|vision_start|>") == 3  # both inputs, then the result
    assert "The first 2 images are the inputs" in request.prompt
    with b.runner.forced_answers({"sc_multi": SC, "pq": PQ}):
        j = b.judge_sources([source, second], edited, "put <image_1> into <image_2>")
    assert j.status == "ok" and j.sc == (21.0, 17.0) and j.meta["sources"] == 2
    assert j.meta["sc_call"] == "sc_multi"
    # a protocol without a multi-image call says so; so does a one-source backend
    plain = backend(prompts="editscore")
    assert "no [sc_multi]" in (plain.judge_sources([source, second], edited, "x").error or "")
    services = Services(StudioConfig(db=tmp_path / "s.db"))
    j = services.judge(source, edited, "x", "pixel", more_sources=[second])
    assert j.status == "backend_error" and "not supported" in (j.error or "")


@pytest.mark.parametrize(("arch", "batch"), [("qwen3_vl", 2), ("qwen3_vl", 8),
                                           ("qwen2_5_vl", 8)])
def test_candidates_of_one_source_reuse_its_prefix_and_answer_the_same(backend, arch, batch):
    """``reuse_prefix``: the K SC prompts of one source share system text + source image;
    that prefix's KV cache is computed once and reused per candidate, in chunks of
    ``batch_size``, the other calls (PQ, the odd candidate) decoded in the same batch
    when there is room. The answers are the very tokens of the plain path."""
    rng = np.random.default_rng(11)

    def picture(h: int, w: int) -> Image.Image:
        return Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))

    source = picture(96, 128)
    triples = [(source, picture(80, 112), "make the cup red") for _ in range(3)]
    triples.append((source, picture(64, 64), "make the cup red"))  # another size: alone
    settings = dict(max_new_tokens=160, attention_summary="no", batch_size=batch)
    reuse = backend(arch, **settings)
    plain = backend(arch, **settings, reuse_prefix="no")
    before = reuse.runner.prefix_rows
    got, expected = reuse.judge_many(triples), plain.judge_many(triples)
    assert reuse.runner.prefix_rows - before == 3 and plain.runner.prefix_rows == 0
    assert [j.raw_sc for j in got] == [j.raw_sc for j in expected]
    assert [j.raw_pq for j in got] == [j.raw_pq for j in expected]
    with reuse.runner.forced_answers({"sc": SC, "pq": PQ}):
        forced = reuse.judge_many(triples[:2])
    assert all(j.status == "ok" and j.sc == (21.0, 17.0) for j in forced)
    sampled = backend(arch, max_new_tokens=4, attention_summary="no", samples=2)
    sampled.judge_many(triples[:2])  # sampling keeps the plain path (its random draws)
    assert sampled.runner.prefix_rows == 0
