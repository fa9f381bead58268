"""The benchmark: metrics on hand-made judgments, then `bench` end to end on tiny images."""

from __future__ import annotations

import argparse
import io
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from spatialreward.bench import command
from spatialreward.bench.metrics import (
    evaluate_item,
    pairwise_counts,
    ranking_exact,
    region_recall,
    score_for,
    strict_pairs,
    summarize,
    wilson_ci,
)
from spatialreward.bench.runner import run_bench
from spatialreward.errors import StudioError, UnknownBackendError
from spatialreward.judgment import Judgment
from spatialreward.regions import box_iou, match_boxes
from spatialreward.service import Services
from storage.pairs import PairFormatError


@pytest.fixture(autouse=True)
def _private_store(tmp_path, monkeypatch):
    """`bench` caches judgments in the store (STUDIO_DB): each test gets its own."""
    monkeypatch.setenv("STUDIO_DB", str(tmp_path / "store" / "studio.db"))


def J(s1: float, s2: float | None = None, nat: float | None = None,
      art: float | None = None) -> Judgment:
    """A judgment with chosen raw scores; J(x) alone has every dimension at x / 2.5."""
    s2 = s1 if s2 is None else s2
    nat = s1 if nat is None else nat
    art = nat if art is None else art
    return Judgment(status="ok", sc=(s1, s2), pq=(nat, art))


# --- scores and rankings ------------------------------------------------------------------


def test_score_follows_the_item_dimension():
    a = J(20, 5, 10, 10)  # follows the prompt, changes too much
    b = J(5, 20, 10, 10)  # faithful, but barely follows the prompt
    assert (score_for(a, "prompt_following"), score_for(b, "prompt_following")) == (8.0, 2.0)
    assert (score_for(a, "consistency"), score_for(b, "consistency")) == (2.0, 8.0)
    assert score_for(a, "perceptual_quality") == score_for(b, "perceptual_quality") == 4.0
    # overall: SC = (0.6 s1 + 0.4 s2) / 2.5 -> 5.6 vs 4.4, PQ 4 for both
    assert score_for(a, "overall") > score_for(b, "overall")  # type: ignore[operator]
    assert score_for(a, "overall") == a.overall
    ranking = ((0,), (1,))  # humans prefer a
    verdicts = {d: pairwise_counts([score_for(a, d), score_for(b, d)], ranking)
                for d in ("overall", "prompt_following", "consistency", "perceptual_quality")}
    assert verdicts == {"overall": (1, 1), "prompt_following": (1, 1), "consistency": (0, 1),
                        "perceptual_quality": (0, 1)}  # the last one is a tie: wrong
    with pytest.raises(ValueError):
        score_for(a, "beauty")


def test_failed_judgments_have_no_score():
    assert score_for(Judgment(status="parse_failed", sc=(20, 20)), "prompt_following") is None
    assert score_for(Judgment(status="backend_error"), "overall") is None
    assert score_for(Judgment(status="ok", sc=(20, 20)), "overall") is None  # pq missing
    assert score_for(None) is None


def test_strict_pairs_skip_pairs_inside_a_tie():
    assert strict_pairs(((1,), (0,))) == [(1, 0)]
    assert strict_pairs(((0, 1),)) == []
    assert strict_pairs(((3,), (0, 2), (1,))) == [(3, 0), (3, 2), (3, 1), (0, 1), (2, 1)]


def test_pairwise_two_candidates():
    assert pairwise_counts([6.0, 4.0], ((0,), (1,))) == (1, 1)
    assert pairwise_counts([6.0, 4.0], ((1,), (0,))) == (0, 1)
    assert pairwise_counts([5.0, 5.0], ((0,), (1,))) == (0, 1)  # ties are wrong
    assert pairwise_counts([None, 4.0], ((0,), (1,))) == (0, 1)
    assert pairwise_counts([6.0, None], ((0,), (1,))) == (0, 1)  # even if "right" by luck


def test_exact_ranking_with_tie_groups():
    r = ((2,), (0, 1))  # 2 best, 0 and 1 tie behind it
    assert ranking_exact([5.0, 3.0, 9.0], r) and ranking_exact([3.0, 5.0, 9.0], r)
    assert pairwise_counts([5.0, 3.0, 9.0], r) == (2, 2)
    assert not ranking_exact([5.0, 5.0, 9.0], r)  # any model tie is wrong
    assert pairwise_counts([5.0, 5.0, 9.0], r) == (2, 2)  # but no strict pair is tied
    assert not ranking_exact([5.0, 9.5, 9.0], r)  # 1 jumps over the tie group's better
    assert pairwise_counts([5.0, 9.5, 9.0], r) == (1, 2)
    assert not ranking_exact([5.0, 3.0, None], r)
    full = ((0,), (1,), (2,))
    assert ranking_exact([3.0, 2.0, 1.0], full) and not ranking_exact([3.0, 1.0, 2.0], full)
    assert pairwise_counts([3.0, 1.0, 2.0], full) == (2, 3)
    assert ranking_exact([1.0, 2.0], ((1,), (0,)))


# --- regions ------------------------------------------------------------------------------


def test_box_iou():
    assert box_iou((0, 0, 100, 100), (0, 0, 100, 100)) == 1.0
    assert box_iou((0, 0, 100, 100), (50, 0, 150, 100)) == pytest.approx(1 / 3)
    assert box_iou((0, 0, 100, 100), (25, 25, 75, 75)) == 0.25
    assert box_iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0
    assert box_iou((0, 0, 10, 10), (10, 10, 20, 20)) == 0.0  # touching corners
    assert box_iou((5, 5, 5, 5), (5, 5, 5, 5)) == 0.0  # empty boxes do not divide by 0


def test_greedy_matching_is_one_to_one_and_highest_iou_first():
    t1, t2 = (0, 0, 100, 100), (10, 0, 110, 100)
    p1, p2 = (4, 0, 104, 100), (0, 0, 60, 100)
    # IoUs: p1-t1 0.923, p1-t2 0.887, p2-t1 0.6, p2-t2 0.455
    assert box_iou(p1, t1) > box_iou(p1, t2) > box_iou(p2, t1) >= 0.5 > box_iou(p2, t2)
    # Greedy takes p1-t1 first; p2 then only fits t1 (taken) -> 1 of 2, where an
    # optimal assignment (p1-t2, p2-t1) would find 2.
    assert match_boxes([t1, t2], [p1, p2]) == 1
    assert region_recall([t1, t2], [p1, p2]) == 0.5
    assert match_boxes([t1], [t1, t1]) == 1  # two predictions cannot share one target
    assert match_boxes([t1, t1], [t1]) == 1
    assert region_recall([t1], [(0, 0, 100, 49)]) == 0.0  # IoU 0.49 < 0.5
    assert region_recall([t1], [(0, 0, 100, 50)]) == 1.0  # IoU 0.5 counts
    assert region_recall([], [t1]) is None
    assert region_recall([t1], []) == 0.0


def test_region_recall_uses_the_reference_candidate():
    target = (100, 100, 300, 300)
    # ranking [1, 0]: candidate 1 is the reference; its boxes come from the runner
    r = evaluate_item("a", ((1,), (0,)), [2.0, 7.0], targets=[target, (600, 600, 700, 700)],
                      predicted=[(110, 100, 300, 310)])
    assert (r.region_targets, r.region_matched) == (2, 1)
    assert r.to_dict()["region_recall"] == 0.5
    failed = evaluate_item("b", ((1,), (0,)), [2.0, None], targets=[target], predicted=[target])
    assert (failed.region_targets, failed.region_matched) == (1, 0)  # failed: found nothing
    assert evaluate_item("c", None, [2.0, 3.0], targets=[target]).region_targets == 0
    assert evaluate_item("d", ((0,),), [2.0], targets=[target],
                         predicted=[target]).region_matched == 1


# --- summaries ----------------------------------------------------------------------------


def test_wilson_interval_matches_the_formula():
    k, n, z = 7, 9, 1.959963984540054
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert wilson_ci(k, n) == pytest.approx([centre - half, centre + half])
    assert wilson_ci(0, 0) is None
    low, high = wilson_ci(5, 5)  # type: ignore[misc]
    assert high == pytest.approx(1.0) and 0.5 < low < 1


def _mixed() -> list:
    return [
        evaluate_item("A", ((0,), (1,)), [8.0, 2.0], category="recolor",
                      groups={"difficulty": "easy"}),
        evaluate_item("B", ((1,), (0,)), [5.0, 5.0], category="recolor",
                      groups={"difficulty": "hard"}),  # model tie: wrong
        evaluate_item("C", ((0, 1),), [8.0, 2.0], category="remove",
                      groups={"difficulty": "easy"}),  # human tie: excluded
        evaluate_item("D", ((2,), (0, 1)), [5.0, 3.0, 9.0], category="remove",
                      groups={"difficulty": "hard"}),  # exact, 2/2 pairs
        evaluate_item("E", ((0,), (1,), (2,)), [None, 3.0, 1.0], statuses=["backend_error"] * 3,
                      error="boom"),  # failed: 0/3 pairs, no category
        evaluate_item("F", None, [1.0, 2.0], category="recolor"),  # unranked
    ]


def test_summary_by_hand():
    s = summarize(_mixed(), by=["difficulty"])
    assert s["n"] == 4 and s["n_pairs"] == 7  # A 1 + B 1 + D 2 + E 3
    assert s["accuracy"] == pytest.approx(3 / 7)  # A, D's two
    assert s["accuracy_ci"] == pytest.approx(wilson_ci(3, 7))
    assert s["ranking_accuracy"] == 0.5 and s["ranking_n"] == 2  # D right, E failed
    assert s["multi_pairwise_accuracy"] == pytest.approx(2 / 5)
    assert s["failed"] == 1 and s["tied_human"] == 1 and s["unranked"] == 1
    assert s["region_recall"] is None
    cats = {c: (v["n"], v["pairs"], v["accuracy"]) for c, v in s["by_category"].items()}
    assert cats == {"(missing)": (1, 3, 0.0), "recolor": (2, 2, 0.5), "remove": (1, 2, 1.0)}
    assert s["by_category"]["(missing)"]["failed"] == 1
    diff = {g: (v["n"], v["accuracy"]) for g, v in s["by"]["difficulty"].items()}
    assert diff == {"(missing)": (1, 0.0), "easy": (1, 1.0), "hard": (2, pytest.approx(2 / 3))}


def test_item_entries():
    a, b, c, d, e, f = (r.to_dict() for r in _mixed())
    assert (a["correct"], b["correct"], c["correct"], d["correct"], e["correct"]) == (
        True, False, None, True, False)
    assert c["kind"] == "tied_human" and f["kind"] == "unranked" and f["correct"] is None
    assert d["ranking"] == [2, [0, 1]] and d["ranking_correct"] is True
    assert "ranking_correct" not in a
    assert e["failed"] and e["error"] == "boom" and e["scores"] == [None, 3.0, 1.0]
    json.dumps([r.to_dict() for r in _mixed()])  # JSON-ready


def test_summary_of_nothing():
    s = summarize([])
    assert s["n"] == 0 and s["accuracy"] is None and s["accuracy_ci"] is None
    assert "ranking_accuracy" not in s and s["by_category"] == {}


# --- end to end ---------------------------------------------------------------------------

SQUARE = (20, 16, 44, 40)  # x1, y1, x2, y2 in a 64x64 image
TARGET = [1000 * v // 64 for v in SQUARE]  # 0..1000


def _scene(colour: tuple[int, int, int]) -> np.ndarray:
    img = np.empty((64, 64, 3), np.uint8)
    img[:] = (200, 200, 200)
    img[..., 0] += (np.arange(64) // 2).astype(np.uint8)  # a gentle gradient
    x1, y1, x2, y2 = SQUARE
    img[y1:y2, x1:x2] = colour
    return img


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("bench")
    (folder / "img").mkdir()
    Image.fromarray(_scene((220, 30, 35))).save(folder / "img" / "src.png")
    Image.fromarray(_scene((35, 70, 210))).save(folder / "img" / "good.png")  # recoloured
    Image.fromarray(_scene((220, 30, 35))).save(folder / "img" / "same.jpg", quality=95)
    (folder / "img" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    return folder


def _dataset(folder: Path, rows: list[dict[str, Any]], name: str = "pairs.jsonl") -> Path:
    path = folder / name
    base = {"instruction": "make the red square blue", "source": "img/src.png"}
    path.write_text("".join(json.dumps({**base, **r}) + "\n" for r in rows), encoding="utf-8")
    return path


def _bench(*argv: str) -> tuple[int, argparse.Namespace]:
    parser = argparse.ArgumentParser(prog="spatialreward")
    command.add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["bench", *argv])
    return args.func(args), args


def test_bench_end_to_end(images, tmp_path, capsys):
    dataset = _dataset(images, [
        {"id": "r1", "candidates": ["img/good.png", "img/same.jpg"], "ranking": [0, 1],
         "category": "recolor", "regions": [TARGET], "difficulty": "easy", "split": 1},
        {"id": "r2", "candidates": ["img/same.jpg", "img/good.png"], "ranking": [1, 0],
         "category": "recolor", "regions": [TARGET], "difficulty": "hard"},
        {"id": "t", "candidates": ["img/good.png", "img/same.jpg"], "ranking": [[0, 1]],
         "category": "tie"},
        {"id": "k3", "candidates": ["img/good.png", "img/same.jpg", "img/src.png"],
         "ranking": [0, [1, 2]], "dimension": "prompt_following", "category": "multi"},
    ])
    out = tmp_path / "sub" / "results.json"
    status, args = _bench("--dataset", str(dataset), "--out", str(out),
                          "--by", "difficulty", "--by", "split", "dimension")
    assert status == 0 and args.backend == "pixel" and args.limit is None
    assert args.by == ["difficulty", "split", "dimension"]
    res = json.loads(out.read_text(encoding="utf-8"))
    for key in ("dataset", "backend", "n", "accuracy", "accuracy_ci", "ranking_accuracy",
                "by_category", "by", "region_recall", "failed", "tied_human",
                "seconds_per_item", "created", "items"):
        assert key in res, key
    assert res["dataset"] == str(dataset)
    assert res["backend"]["spec"] == "pixel" and res["backend"]["version"].startswith("1+")
    # pixel gives 0 edit success to "no change", so the recoloured candidate wins
    assert res["n"] == 3 and res["n_pairs"] == 4 and res["accuracy"] == 1.0
    assert res["tied_human"] == 1 and res["failed"] == 0
    # k3 on prompt_following: good > 0 = same = src, the human tie group is tied: wrong
    assert res["ranking_accuracy"] == 0.0 and res["multi_pairwise_accuracy"] == 1.0
    assert res["region_recall"] == 1.0 and res["region_targets"] == 2
    assert res["judgments"] == 3  # good, same, src: each judged once across the items
    assert 0 < res["seconds_per_item"] < 5
    assert res["by_category"]["recolor"] == {"n": 2, "pairs": 2, "accuracy": 1.0,
                                             "accuracy_ci": wilson_ci(2, 2), "failed": 0}
    assert set(res["by_category"]) == {"recolor", "multi"}  # the tied item is not scored
    assert {g: v["n"] for g, v in res["by"]["difficulty"].items()} == {
        "easy": 1, "hard": 1, "(missing)": 1}
    assert set(res["by"]["split"]) == {"1", "(missing)"}
    assert set(res["by"]["dimension"]) == {"overall", "prompt_following"}
    r1, r2, t, k3 = res["items"]
    assert r1["id"] == "r1" and r1["category"] == "recolor" and r1["correct"] is True
    assert r1["scores"][0] > r1["scores"][1] and r2["scores"] == r1["scores"][::-1]
    assert r1["region_recall"] == 1.0 and r1["groups"] == {
        "difficulty": "easy", "split": "1", "dimension": "overall"}
    assert t["correct"] is None and t["kind"] == "tied_human"
    assert k3["scores"][1:] == [0.0, 0.0] and k3["correct"] is False
    shown = capsys.readouterr().out
    assert "accuracy  1.000" in shown and "recolor" in shown and str(out) in shown


def test_corrupt_candidate_fails_its_item_only(images, tmp_path, capsys):
    dataset = _dataset(images, [
        {"id": "bad", "candidates": ["img/good.png", "img/broken.png"], "ranking": [0, 1],
         "category": "recolor", "regions": [TARGET]},
        {"id": "gone", "candidates": ["img/missing.png", "img/same.jpg"], "ranking": [0, 1]},
        {"id": "ok", "candidates": ["img/good.png", "img/same.jpg"], "ranking": [0, 1],
         "category": "recolor"},
    ], name="corrupt.jsonl")
    out = tmp_path / "results.json"
    status, _ = _bench("--dataset", str(dataset), "--out", str(out), "--backend", "pixel")
    assert status == 0
    res = json.loads(out.read_text(encoding="utf-8"))
    assert res["n"] == 3 and res["failed"] == 2 and res["accuracy"] == pytest.approx(1 / 3)
    bad, gone, ok = res["items"]
    assert bad["failed"] and bad["correct"] is False and bad["scores"][1] is None
    assert bad["statuses"] == ["ok", "image_error"]
    assert "candidate 1" in bad["error"] and "truncated or corrupt" in bad["error"]
    assert "does not exist" in gone["error"] and gone["statuses"][0] == "image_error"
    assert ok["correct"] is True and "error" not in ok
    # the reference candidate was fine, so its region still counts
    assert res["region_recall"] == 1.0
    assert "failed    2" in capsys.readouterr().out


def test_limit_and_progress_bar(images, monkeypatch):
    dataset = _dataset(images, [
        {"id": f"i{i}", "candidates": ["img/good.png", "img/same.jpg"], "ranking": [0, 1]}
        for i in range(3)
    ], name="limit.jsonl")

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    fake = Terminal()
    monkeypatch.setattr(sys, "stderr", fake)
    res = run_bench(dataset, Services(), "pixel", limit=2)
    assert res["n"] == 2 and [i["id"] for i in res["items"]] == ["i0", "i1"]
    assert "bench" in fake.getvalue()  # tqdm drew on the "terminal"
    quiet = Terminal()
    monkeypatch.setattr(sys, "stderr", quiet)
    run_bench(dataset, Services(), "pixel", limit=1, progress=False)
    assert quiet.getvalue() == ""


def test_user_errors_are_studio_errors(images, tmp_path):
    good = _dataset(images, [{"id": "a", "candidates": ["img/good.png"]}], name="one.jsonl")
    with pytest.raises(UnknownBackendError):
        run_bench(good, Services(), "nosuch")
    with pytest.raises(PairFormatError, match=":2:"):
        run_bench(_dataset(images, [{"id": "a", "candidates": ["img/good.png"]},
                                    {"id": "a", "candidates": ["img/good.png"]}],
                           name="dup.jsonl"), Services(), "pixel")
    with pytest.raises(PairFormatError, match="does not exist"):
        _bench("--dataset", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "r.json"))
    with pytest.raises(StudioError, match="cannot write"):
        _bench("--dataset", str(good), "--out", str(tmp_path))  # a folder
    with pytest.raises(SystemExit):
        _bench("--dataset", str(good), "--limit", "0")


def test_namespace_without_optional_flags(images, tmp_path, monkeypatch, capsys):
    dataset = _dataset(images, [{"id": "a", "candidates": ["img/good.png", "img/same.jpg"],
                                 "ranking": [0, 1]}], name="ns.jsonl")
    monkeypatch.chdir(tmp_path)
    assert command.run(argparse.Namespace(dataset=str(dataset))) == 0
    res = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
    assert res["accuracy"] == 1.0 and "by" not in res and res["region_recall"] is None
    assert "ranking" not in capsys.readouterr().out.split("category")[0]


@given(st.tuples(*[st.integers(0, 1000)] * 4), st.tuples(*[st.integers(0, 1000)] * 4))
def test_box_iou_is_symmetric_and_bounded(a, b):
    a = (min(a[0], a[2]), min(a[1], a[3]), max(a[0], a[2]), max(a[1], a[3]))
    b = (min(b[0], b[2]), min(b[1], b[3]), max(b[0], b[2]), max(b[1], b[3]))
    assert box_iou(a, b) == box_iou(b, a)
    assert 0.0 <= box_iou(a, b) <= 1.0
    if a == b and a[2] > a[0] and a[3] > a[1]:
        assert box_iou(a, b) == 1.0
