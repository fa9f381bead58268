"""SynthEdit: determinism, ground-truth correctness, re-encoding, language, and the CLI."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from spatialreward.synth import rubric
from spatialreward.synth.edits import APPLICABLE, FLAWS, Editor, random_task
from spatialreward.synth.generate import SynthConfig, generate, item_rng, make_item
from spatialreward.synth.language import HELD_OUT, OPERATIONS, TEMPLATES, apply_case, phrase
from spatialreward.synth.render import TRUE_DELTA_E, delta_e
from spatialreward.synth.scenes import make_scene
from storage.pairs import read_pairs

ROOT = Path(__file__).resolve().parents[1]


def digest(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


# --- determinism -------------------------------------------------------------------
def test_same_seed_same_bytes_whatever_the_worker_count(tmp_path):
    generate(SynthConfig(out=tmp_path / "a", n=10, seed=3, split="val", workers=1), False)
    generate(SynthConfig(out=tmp_path / "b", n=10, seed=3, split="val", workers=2), False)
    a, b = digest(tmp_path / "a"), digest(tmp_path / "b")
    assert a == b and len(a) == 1 + 10 * 3


def test_seeds_and_splits_give_different_data():
    first = {split: make_item(split, 0, 0, 2)[1] for split in ("train", "val", "test", "hard")}
    other_seed = make_item("train", 1, 0, 2)[1]
    arrays = [*first.values(), other_seed]
    for i in range(len(arrays)):
        for j in range(i + 1, len(arrays)):
            assert arrays[i].shape != arrays[j].shape or not np.array_equal(arrays[i], arrays[j])


# --- the instruction language --------------------------------------------------------------
def test_every_phrasing_is_produced_and_held_out_ones_never_in_train():
    rng = np.random.default_rng(0)
    for op in OPERATIONS:
        seen_test, seen_train = set(), set()
        for _ in range(200):
            kw = dict(obj="orange star", color="blue", new_obj="red circle",
                      position="top left", direction="bigger")
            seen_test.add(phrase(op, rng, allow_held_out=True, **kw).template)
            seen_train.add(phrase(op, rng, allow_held_out=False, **kw).template)
        assert seen_test == set(TEMPLATES[op])
        assert seen_train == set(TEMPLATES[op]) - {HELD_OUT[op]}


def test_surface_forms():
    rng = np.random.default_rng(5)
    texts = {phrase("add", rng, allow_held_out=True, obj="orange star",
                    position="center").text for _ in range(300)}
    assert any(t.endswith(".") for t in texts) and any(not t.endswith(".") for t in texts)
    assert any(t.isupper() for t in texts) and any(t.islower() for t in texts)
    assert all(" an orange star " in f" {t.lower().rstrip('.')} " for t in texts)
    assert apply_case("put a red star in the top", "sentence") == "Put a red star in the top"


def test_train_split_items_use_only_seen_phrasings():
    phrasings = [make_item("train", 0, i, 2)[0]["phrasing"] for i in range(40)]
    assert set(phrasings) == {"seen"}
    test_phrasings = [make_item("test", 0, i, 2)[0]["phrasing"] for i in range(80)]
    assert "held_out" in test_phrasings


# --- ground truth ----------------------------------------------------------------------
def scenes_with_tasks(n: int, hard: bool = False):
    for seed in range(n):
        rng = np.random.default_rng(1000 + seed)
        scene = make_scene(rng, hard=hard)
        yield scene, Editor(scene, rng), random_task(scene, rng, OPERATIONS[seed % 6])


def test_target_regions_match_the_pixels_that_changed():
    for _scene, editor, task in scenes_with_tasks(36):
        good = editor.correct(task)
        changed = delta_e(editor.source, good.image) > TRUE_DELTA_E
        assert changed.mean() > 0.001, task
        footprint = np.zeros_like(changed)
        for ch in good.changes:
            footprint |= ch["mask"]
        # Every visible change of the correct edit lies inside the target footprint...
        assert (changed & ~footprint).sum() == 0, task
        # ...and each touched footprint really changed (a move touches two places).
        for ch in good.changes:
            assert (changed & ch["mask"]).any(), (task, ch["role"])
        assert len(good.changes) == (2 if task.op == "move" else 1)


@pytest.mark.parametrize("op", OPERATIONS)
def test_every_flaw_really_differs_from_the_correct_edit(op):
    for scene, editor, task in scenes_with_tasks(8):
        if task.op != op:
            task = random_task(scene, editor.rng, op)
        good = editor.correct(task)
        for flaw in APPLICABLE[op]:
            bad = editor.flawed(task, flaw)
            diff = delta_e(good.image, bad.image) > TRUE_DELTA_E
            assert diff.mean() > 0.0005, (op, flaw)


def test_flaws_that_do_not_apply_are_refused():
    scene, editor, task = next(scenes_with_tasks(1))
    missing = [f for f in FLAWS if f not in APPLICABLE[task.op]]
    with pytest.raises(ValueError, match="does not apply"):
        editor.flawed(task, missing[0])


def test_rubric_ranks_the_correct_edit_first():
    for i in range(30):
        item, _, _ = make_item("test", 7, i, 2)
        truth = item["candidate_truth"]
        best = item["ranking"][0]
        assert truth[best]["flaw"] == "correct", item["id"]
        assert truth[best]["overall"] == 10.0
        assert truth[1 - best]["overall"] < 10.0


def test_groups_are_ranked_by_the_rubric_with_ties_grouped():
    item, _, images = make_item("test", 2, 4, 5)
    assert len(images) == 5
    overall = [t["overall"] for t in item["candidate_truth"]]
    flat = [g if isinstance(g, list) else [g] for g in item["ranking"]]
    assert sorted(i for g in flat for i in g) == list(range(5))
    for a, b in zip(flat, flat[1:], strict=False):
        assert min(overall[i] for i in a) > max(overall[i] for i in b)
    assert len({t["flaw"] for t in item["candidate_truth"]}) == 5


def test_rubric_values():
    assert rubric.targets("correct", 0.0) == ((25.0, 25.0), (25.0, 25.0))
    assert rubric.targets("over_edit", 1.0)[0] == (25.0, 0.0)
    assert rubric.overall((25.0, 25.0), (25.0, 25.0)) == 10.0


def test_hard_split_is_small_and_crowded():
    scene = make_scene(item_rng("hard", 0, 0), hard=True)
    assert 5 <= len(scene.objects) <= 6
    for o in scene.objects:
        assert o.obj.r < 0.1 * min(scene.height, scene.width)


def test_hard_scenes_under_the_train_split_keep_train_phrasings(tmp_path):
    generate(SynthConfig(out=tmp_path, n=6, seed=2, split="train", workers=1,
                         hard_scenes=True), False)
    items = [json.loads(line) for line in (tmp_path / "pairs.jsonl").read_text().splitlines()]
    assert all(i["id"].startswith("train-hard-2-") for i in items)
    assert all(i["phrasing"] == "seen" and 5 <= i["n_objects"] <= 6 for i in items)
    # Not the hard split's items: another stream, so no test item is trained on.
    _, hard_source, _ = make_item("hard", 2, 0, 2)
    _, train_source, _ = make_item("train", 2, 0, 2, hard_scenes=True)
    assert hard_source.shape != train_source.shape or not np.array_equal(hard_source,
                                                                         train_source)


# --- what is written --------------------------------------------------------------------
@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    generate(SynthConfig(out=out, n=24, seed=11, split="test", workers=1), False)
    return out


def test_written_dataset_reads_back_in_the_pair_format(dataset):
    items = read_pairs(dataset / "pairs.jsonl")
    assert len(items) == 24
    for item in items:
        assert item.source.is_file() and all(c.is_file() for c in item.candidates)
        assert item.ranking is not None and item.category in OPERATIONS
        assert item.regions and all(0 <= v <= 1000 for box in item.regions for v in box)
        assert item.metadata["flaw"] in FLAWS


def test_every_candidate_is_re_encoded_and_never_identical_to_the_source(dataset):
    for item in read_pairs(dataset / "pairs.jsonl"):
        src = np.asarray(Image.open(item.source).convert("RGB"))
        for cand, truth in zip(item.candidates, item.metadata["candidate_truth"], strict=True):
            assert truth["degradation"], "every edited image is re-encoded"
            img = np.asarray(Image.open(cand).convert("RGB"))
            assert img.shape != src.shape or not np.array_equal(img, src)


def test_synth_and_bench_from_the_command_line(tmp_path):
    run = [sys.executable, "-m", "spatialreward"]
    out = subprocess.run([*run, "synth", "--out", str(tmp_path / "d"), "--n", "6", "--seed", "2",
                          "--split", "test", "--groups", "3"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "wrote 6 items" in out.stdout
    res = subprocess.run([*run, "bench", "--dataset", str(tmp_path / "d" / "pairs.jsonl"),
                          "--backend", "pixel", "--by", "flaw", "phrasing",
                          "--out", str(tmp_path / "r.json")],
                         cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "STUDIO_DB": str(tmp_path / "studio.db")})
    assert res.returncode == 0, res.stderr
    results = json.loads((tmp_path / "r.json").read_text())
    assert results["n"] == 6 and results["backend"]["spec"] == "pixel"
    assert "ranking_accuracy" in results and 0.0 <= results["accuracy"] <= 1.0
    assert set(results["by"]) == {"flaw", "phrasing"}
    assert results["region_recall"] is not None


def test_synth_rejects_bad_arguments_with_one_line(tmp_path):
    out = subprocess.run([sys.executable, "-m", "spatialreward", "synth", "--out",
                          str(tmp_path), "--n", "0"], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 2 and out.stderr.startswith("error: --n must be at least 1")
