"""The public benchmarks' metrics against values worked out by hand: first on the pure
functions, then end to end on the fixture files with the colour judge, whose scores are
known in advance (tests/test_bench_factories.py)."""

from __future__ import annotations

import math

import pytest

from spatialreward.bench.public_metrics import (
    accuracy_with_ties,
    accuracy_without_ties,
    gedit_scores,
    model_pick,
    position_consistency,
    ranking_scores,
    tie_confusion,
    tie_counts,
)
from spatialreward.bench.runner import run_bench
from spatialreward.errors import InputError
from tests.test_bench_factories import (
    grey,
    score,
    services,
    write_editscore,
    write_gedit,
    write_merbench,
    write_mmrb2,
    write_mmrb2_json,
    write_tiger,
)

# --- pure functions ---------------------------------------------------------------------


def test_tie_calibration_by_hand():
    # h: 1 first better, -1 second better, 0 tie; m: s1 - s2
    h = [1, -1, 0, 0, 1]
    m = [2.0, 1.5, 0.0, 0.3, 0.2]
    # eps 0: C (2.0), D (1.5 against), Thm (0.0), Th (0.3), C (0.2) -> 3/5
    assert tie_counts(h, m, 0.0).accuracy == pytest.approx(3 / 5)
    # eps 0.2: the last pair becomes a model tie (Tm) -> 2/5; eps 0.3: + Thm -> 3/5
    assert tie_counts(h, m, 0.2).accuracy == pytest.approx(2 / 5)
    assert tie_counts(h, m, 0.3).accuracy == pytest.approx(3 / 5)
    # the best accuracy comes first at eps 0 (ties in accuracy keep the smallest eps)
    assert accuracy_with_ties(h, m) == (pytest.approx(3 / 5), 0.0)
    assert accuracy_without_ties(h, m) == pytest.approx(2 / 3)  # C=2, D=1
    assert accuracy_with_ties([], []) == (None, 0.0)
    assert accuracy_without_ties([0], [1.0]) is None  # only human ties
    # a failed judgment is wrong under any threshold
    assert tie_counts([1, 0], [None, None], 10.0).accuracy == 0.0


def test_ranking_scores_by_hand():
    # 3 candidates best first, model order 0, 2, 1: one discordant pair of three
    r = ranking_scores([9.0, 5.0, 7.0], [0, 1, 2])
    assert (r["exact"], r["top1"]) == (False, True)
    assert r["kendall_tau"] == pytest.approx(1 / 3)
    assert r["spearman_rho"] == pytest.approx(0.5)  # 1 - 6 * (0 + 1 + 1) / (3 * 8)
    # gains 2, 1, 0 placed 2, 0, 1 -> DCG 2 + 0 + 1/2; ideal 2 + 1/log2(3)
    assert r["ndcg"] == pytest.approx(2.5 / (2 + 1 / math.log2(3)))
    # a tie at the top: exact and top-1 wrong; tau-b 2 / sqrt(2 * 3); sklearn averages
    # the tied gains (2 + 1) / 2 over the first two places
    t = ranking_scores([5.0, 5.0, 1.0], [0, 1, 2])
    assert (t["exact"], t["top1"]) == (False, False)
    assert t["kendall_tau"] == pytest.approx(2 / math.sqrt(6))
    assert t["spearman_rho"] == pytest.approx(1.5 / math.sqrt(3))
    assert t["ndcg"] == pytest.approx(1.5 * (1 + 1 / math.log2(3)) / (2 + 1 / math.log2(3)))
    # a constant judge has no correlation; a failed score ranks last and fails the item
    c = ranking_scores([3.0, 3.0], [0, 1])
    assert (c["kendall_tau"], c["spearman_rho"], c["exact"]) == (0.0, 0.0, False)
    f = ranking_scores([None, 3.0, 1.0], [0, 1, 2])  # model order 1, 2, 0: 1 of 3 agree
    assert (f["exact"], f["top1"]) == (False, False)
    assert f["kendall_tau"] == pytest.approx(-1 / 3)


def test_position_swaps_and_picks():
    r = position_consistency(["A", "B", "tie"], ["B", "B", "tie"], ["A", "A", "B"])
    assert r["consistency"] == pytest.approx(2 / 3)  # pair 1 flips with the order
    # right: pair 0 in both orders, pair 1 only when swapped, pair 2 never -> 3 of 6
    assert r["accuracy_both_orders"] == pytest.approx(3 / 6)
    assert position_consistency([], [])["consistency"] is None
    assert model_pick([2.0, 5.0]) == 1 and model_pick([]) is None


def test_gedit_scores_by_hand():
    assert gedit_scores((25.0, 10.0), (25.0, 25.0)) == (4.0, 10.0, pytest.approx(40 ** 0.5))
    assert gedit_scores(None, (1.0, 1.0)) is None


def test_tie_confusion_counts():
    items = [{"ranking": [0, 1], "scores": [2.0, 1.0]},
             {"ranking": [[0, 1]], "scores": [2.0, 1.9]},
             {"ranking": [1, 0], "scores": [1.0, None]},
             {"ranking": [0, 1, 2], "scores": [1.0, 2.0, 3.0]}]  # not a pair: left out
    table = tie_confusion(items, epsilon=0.2)
    assert table["first"] == {"first": 1, "tie": 0, "second": 0, "failed": 0}
    assert table["tie"]["tie"] == 1 and table["second"]["failed"] == 1


# --- end to end on the fixture files -------------------------------------------------------


def bench(tmp_path, path, **kw):
    return run_bench(path, services(tmp_path), "colour", progress=False, **kw)


def test_editscore_metrics(tmp_path):
    res = bench(tmp_path, write_editscore(tmp_path))
    b = res["benchmark"]
    assert b["by_task_type"]["overall"] == {
        "background_change": {"n": 1, "accuracy": 1.0},
        "color_alter": {"n": 2, "accuracy": 0.5},
        "subject-add": {"n": 2, "accuracy": 0.5}}  # one tie (wrong), one right
    assert b["macro_accuracy"] == {"consistency": 0.0, "overall": pytest.approx(2 / 3),
                                   "prompt_following": 1.0}
    assert b["headline"]["value"] == pytest.approx(2 / 3)
    # prompt_following has items of one task type of three: the official statistics count
    # the two empty cells as 0.0 (1/3); ours averages the cell with items (1.0)
    assert b["empty_cells"] == [["consistency", "background_change"],
                                ["consistency", "color_alter"],
                                ["prompt_following", "background_change"],
                                ["prompt_following", "color_alter"]]
    assert b["macro_accuracy_official"]["prompt_following"] == pytest.approx(1 / 3)
    assert b["headline_official"]["value"] == pytest.approx(2 / 3)  # overall has every task
    assert b["groups"]["object"] == {"consistency": 0.0, "overall": 0.5,
                                     "prompt_following": 1.0}
    assert b["groups"]["scene"]["overall"] == 1.0 and b["groups"]["scene"]["consistency"] is None
    assert set(b["groups"]) == {"object", "appearance", "scene"}
    assert res["accuracy"] == pytest.approx(4 / 7) and res["n"] == 7
    assert set(res["by"]["dimension"]) == {"overall", "prompt_following", "consistency"}
    assert res["format"] == "editscore" and res["items"][0]["info"] == {
        "task_type": "color_alter"}


def test_tiger_metrics(tmp_path):
    res = bench(tmp_path, write_tiger(tmp_path))
    b = res["benchmark"]
    small = score(grey(160)) - score(grey(150))  # the only margin below the big ones
    assert small < score(grey(250)) - score(grey(200)) < score(grey(200)) - score(grey(100))
    two = b["by_subset"]["2pair"]
    # eps 0: right, wrong, both tie, human tie only -> 2/4; eps = small: + both tie -> 3/4
    assert two["accuracy_with_ties"] == pytest.approx(3 / 4)
    assert two["tie_threshold"] == pytest.approx(small)
    assert two["accuracy_without_ties"] == 0.5 and two["human_ties"] == 2
    assert two["group_accuracy"] == pytest.approx(3 / 4)
    three = b["by_subset"]["3pair"]
    # right, right, an exact model tie (wrong); no human ties: eps stays 0
    assert three["accuracy_with_ties"] == pytest.approx(2 / 3)
    assert three["tie_threshold"] == 0.0
    assert three["accuracy_without_ties"] == pytest.approx(2 / 3)
    assert three["group_accuracy"] == 0.0 and three["groups"] == 1
    overall = b["overall"]
    # all 7: eps 0 -> C 3 + Thm 1; eps = small -> + Thm -> 5/7
    assert overall["accuracy_with_ties"] == pytest.approx(5 / 7)
    assert overall["accuracy_without_ties"] == pytest.approx(3 / 5)
    assert overall["group_accuracy"] == pytest.approx(3 / 5)  # a, c, d of a, b, c, d, g
    assert overall["counts"] == {"C": 3, "D": 1, "Th": 0, "Tm": 1, "Thm": 2}
    assert b["headline"]["value"] == pytest.approx(5 / 7)
    assert res["accuracy"] == pytest.approx(3 / 5) and res["tied_human"] == 2


def test_merbench_metrics(tmp_path):
    res = bench(tmp_path, write_merbench(tmp_path))
    b = res["benchmark"]
    # p1 right; p2 reversed; p3 order 0, 2, 1; p4 tie at the top
    std = b["standard"]  # ours: ties count against
    assert std["overall"]["exact"] == 0.25 and std["overall"]["top1"] == 0.5
    third = 1 / math.log2(3)
    assert std["by_k"]["2"] == {"n": 2, "exact": 0.5, "top1": 0.5, "kendall_tau": 0.0,
                                "spearman_rho": 0.0, "ndcg": pytest.approx((1 + third) / 2)}
    k3 = std["by_k"]["3"]
    assert k3["kendall_tau"] == pytest.approx((1 / 3 + 2 / math.sqrt(6)) / 2)
    assert k3["spearman_rho"] == pytest.approx((0.5 + 1.5 / math.sqrt(3)) / 2)
    assert k3["ndcg"] == pytest.approx((2.5 + 1.5 * (1 + third)) / (2 + third) / 2)
    assert std["by_category"]["add"]["exact"] == 0.5
    # official (the headline): the tie in p4 keeps the true order, so p4 is top-1 and
    # perfectly correlated, though still not an exact order; worked by hand
    k2, k3 = b["by_k"]["2"], b["by_k"]["3"]
    p2_ndcg = (2 / math.log2(3) + 1) / (2 + 1 / math.log2(3))
    assert k2 == {"n": 2, "exact": 0.5, "top1": 0.5, "kendall_tau": 0.0,
                  "spearman_rho": 0.0, "ndcg": pytest.approx((1 + p2_ndcg) / 2)}
    p3_ndcg = (3 + 2 / 2 + 1 / math.log2(3)) / (3 + 2 / math.log2(3) + 1 / 2)
    assert k3 == {"n": 2, "exact": 0.0, "top1": 1.0, "kendall_tau": pytest.approx(2 / 3),
                  "spearman_rho": pytest.approx(0.75), "ndcg": pytest.approx((p3_ndcg + 1) / 2)}
    assert b["by_category"]["add"]["exact"] == 0.5 and b["by_category"]["remove"]["exact"] == 0
    assert b["headline"]["value"] == 0.25 and "official" in b["headline"]["name"]
    assert res["ranking_accuracy"] == 0.0 and set(res["by"]["k"]) == {"2", "3"}


def test_mmrb2_metrics_same_from_table_and_json(tmp_path):
    for path in (write_mmrb2(tmp_path), write_mmrb2_json(tmp_path)):
        b = bench(tmp_path, path)["benchmark"]
        assert b["accuracy"] == pytest.approx(1 / 3) and b["n"] == 3
        assert b["by_prompt_source"] == {"dreambench": {"n": 1, "accuracy": 0.0},
                                         "emu-edit": {"n": 2, "accuracy": 0.5}}


def test_gedit_metrics(tmp_path):
    path, edits = write_gedit(tmp_path)
    with pytest.raises(InputError, match="prompt set"):
        bench(tmp_path, path)
    res = bench(tmp_path, path, edits=edits)
    b = res["benchmark"]
    assert res["notes"]["missing_edits"] == 1 and b["failed"] == 0
    tasks = b["by_language"]["en"]["fullset"]["by_task_type"]
    assert tasks["background_change"]["semantics"] == pytest.approx(4.0)
    assert tasks["background_change"]["quality"] == pytest.approx(10.0)
    assert tasks["color_alter"]["overall"] == pytest.approx(8 ** 0.5)
    # per language, as the official table: EN full set is the headline, CN apart
    assert b["headline"]["value"] == pytest.approx((40 ** 0.5 + 8 ** 0.5) / 2)
    assert "EN full set" in b["headline"]["name"]
    table = b["official_table"]
    assert table["cn"]["fullset"]["overall"] == pytest.approx(8 ** 0.5)
    assert table["cn"]["intersection"]["n"] == 0  # its one intersection item was not edited
    assert table["en"]["intersection"]["n"] == 1
    assert table["en"]["intersection"]["overall"] == pytest.approx(40 ** 0.5)
    # the mixed figure is kept, named, and differs: background_change is (sqrt 40 + sqrt 8) / 2
    assert b["overall"]["overall"] == pytest.approx(((40 ** 0.5 + 8 ** 0.5) / 2 + 8 ** 0.5) / 2)


def test_human_bench_beside_the_ceiling(tmp_path):
    from storage.store import Store
    from tests.test_bench_factories import png

    db = tmp_path / "votes" / "studio.db"
    store = Store.open(db)
    a = store.add_item("x", png(grey(0)), [png(grey(200)), png(grey(100))], uid="a")
    b = store.add_item("x", png(grey(0)), [png(grey(210)), png(grey(110))], uid="b",
                       category="hard")
    c = store.add_item("x", png(grey(0)), [png(grey(20)), png(grey(10))], uid="c")
    for name in ("ann", "bob", "cy"):
        store.add_annotator(name)
    for item, prefs in ((a, [0, 0, 1]), (b, [1, 1, 1]), (c, ["tie", "tie", 0])):
        for name, pref in zip(("ann", "bob", "cy"), prefs, strict=True):
            store.add_human_judgment(item, name, pref)
    store.close()
    s = services(tmp_path)
    res = run_bench(db, s, "colour", progress=False, store=s.store)
    h = res["benchmark"]
    assert h["accuracy"] == 0.5 and h["n"] == 2  # a right (0), b wrong (model says 0)
    assert h["by_category"] == {"(missing)": {"n": 1, "accuracy": 1.0},
                                "hard": {"n": 1, "accuracy": 0.0}}
    # leave-one-out: cy on a (0.0), everyone on b (3x 1.0), cy on c (0.0): 3 of 5
    assert h["human_ceiling"] == {"judgments": 5, "accuracy": pytest.approx(3 / 5)}
    assert h["inter_annotator"]["method"] == "krippendorff_alpha"
    # the judgments went into the store the votes are in, under the items' own ids
    votes = Store.open(db)
    assert [i for i in votes.item_ids() if votes.model_judgments(i)] == [a, b]


def _official_merbench_reference(scores: list[float]) -> dict[str, float]:
    """The official MER-Bench rules as described (candidates listed best first): the
    predicted order is Python's stable descending sort of (index, score); ground truth is
    0..n-1; exact needs no tied scores; tau-a, rho = 1 - 6 sum d^2 / (n(n^2-1)); top-1 =
    index 0 first; dcg = sum_i (n - gt[i]) / log2(pred[i] + 2) over the ideal."""
    n = len(scores)
    pred = [i for i, _ in sorted(enumerate(scores), key=lambda t: t[1], reverse=True)]
    gt = list(range(n))
    signs = [(pred[i] - pred[j]) * (gt[i] - gt[j]) > 0
             for i in range(n) for j in range(i + 1, n)]
    con, dis = sum(signs), len(signs) - sum(signs)
    dcg = sum((n - gt[i]) / math.log2(pred[i] + 2) for i in range(n))
    idcg = sum((n - i) / math.log2(i + 2) for i in range(n))
    return {"exact": float(pred == gt and len(set(scores)) == n), "top1": float(pred[0] == 0),
            "kendall_tau": (con - dis) / (0.5 * n * (n - 1)),
            "spearman_rho": 1 - 6 * sum((pred[i] - i) ** 2 for i in range(n)) / (n * (n * n - 1)),
            "ndcg": dcg / idcg}


def test_official_merbench_rules_match_an_independent_reading_on_every_input():
    import itertools
    import random

    from spatialreward.bench.public_metrics import official_ranking_scores

    rng = random.Random(0)
    cases = [list(p) for k in (2, 3, 4) for p in itertools.permutations(range(k))]
    cases += [[rng.choice([1.0, 2.0, 3.0]) for _ in range(rng.choice([2, 3, 4]))]
              for _ in range(300)]  # many ties
    differs = 0
    for scores in cases:
        ours = official_ranking_scores([float(s) for s in scores], list(range(len(scores))))
        ref = _official_merbench_reference([float(s) for s in scores])
        assert {k: float(v) for k, v in ours.items()} == pytest.approx(ref), scores
        std = ranking_scores([float(s) for s in scores], list(range(len(scores))))
        differs += std["ndcg"] != pytest.approx(ours["ndcg"])
    assert differs > 0  # the two NDCG conventions really differ (3-cycles, ties)
