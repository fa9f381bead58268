"""Agreement metrics and the disagreement queue, on stores the tests fill by hand."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import sqlite_utils

from spatialreward.judgment import Judgment
from storage.agreement import agreement, disagreement_queue
from storage.store import Store


def tiny(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (8, 8, 3), dtype=np.uint8)


def item(store: Store, seed: int, n: int = 2, truth=None) -> int:
    return store.add_item(f"edit {seed}", tiny(1000 + seed),
                          [tiny(seed * 10 + k) for k in range(n)], truth_ranking=truth)


def judge(store: Store, item_id: int, overalls: list[float], backend: str = "m") -> list[float]:
    """Store model judgments whose overall scores follow ``overalls`` (monotone in sc)."""
    out = []
    for k, level in enumerate(overalls):
        j = Judgment(status="ok", sc=(level, level), pq=(20.0, 20.0), backend=backend,
                     backend_version="1")
        store.add_model_judgment(item_id, k, j)
        out.append(j.overall)
    return out


@pytest.fixture
def store() -> Store:
    s = Store(sqlite_utils.Database(memory=True))
    for name in ("ann", "bob", "cat", "dan"):
        s.add_annotator(name)
    return s


def test_krippendorff_alpha_matches_the_textbook_nominal_example(store: Store) -> None:
    # Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", the example with
    # 4 observers, 12 units and missing values: nominal alpha = 0.743.
    table = {
        "ann": [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
        "bob": [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
        "cat": [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
        "dan": [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
    }
    items = [item(store, u, n=6) for u in range(12)]
    for name, values in table.items():
        for item_id, v in zip(items, values, strict=True):
            if v is not None:
                store.add_human_judgment(item_id, name, v)
    inter = agreement(store)["inter_annotator"]
    assert inter["method"] == "krippendorff_alpha" and inter["annotators"] == 4
    assert inter["value"] == pytest.approx(0.743, abs=5e-4)


def test_cohens_kappa_for_two_annotators(store: Store) -> None:
    a = [0, 0, 0, 0, 0, 1, 1, 1, 1, "tie"]
    b = [0, 0, 0, 0, 1, 1, 1, 1, 0, "tie"]
    for k, (x, y) in enumerate(zip(a, b, strict=True)):
        i = item(store, k)
        store.add_human_judgment(i, "ann", x)
        store.add_human_judgment(i, "bob", y)
    # By hand: observed agreement 8/10; chance agreement from the marginals.
    ca, cb = Counter(map(str, a)), Counter(map(str, b))
    p_o, p_e = 0.8, sum(ca[k] * cb[k] for k in ca) / 100
    inter = agreement(store)["inter_annotator"]
    assert inter["method"] == "cohen_kappa" and inter["items"] == 10
    assert inter["value"] == pytest.approx((p_o - p_e) / (1 - p_e))


@pytest.fixture
def judged(store: Store) -> dict[str, int]:
    """Five items with model scores and human votes (see each comment)."""
    ids = {name: item(store, k, truth=[0, 1]) for k, name in enumerate(
        ["confident_miss", "slight_miss", "agree", "split", "lonely"])}
    judge(store, ids["confident_miss"], [5.0, 24.0])  # model: 1 by far; humans: 0
    for who, v in (("ann", 0), ("bob", 0), ("cat", 1)):
        store.add_human_judgment(ids["confident_miss"], who, v)
    judge(store, ids["slight_miss"], [15.0, 14.0])  # model: 0 barely; humans: 1
    for who in ("ann", "bob"):
        store.add_human_judgment(ids["slight_miss"], who, 1)
    judge(store, ids["agree"], [20.0, 3.0])  # both: 0
    for who in ("ann", "bob"):
        store.add_human_judgment(ids["agree"], who, 0)
    judge(store, ids["split"], [20.0, 3.0])  # humans split 1:1, no majority
    store.add_human_judgment(ids["split"], "ann", 0)
    store.add_human_judgment(ids["split"], "bob", 1)
    store.add_human_judgment(ids["lonely"], "cat", 0)  # one judgment, no model score
    return ids


def test_queue_puts_the_most_confident_model_mistake_first(store: Store, judged) -> None:
    q = disagreement_queue(store, min_judgments=2)
    assert q["backend"] == "m"
    assert [d["item_id"] for d in q["disagreements"]] == [judged["confident_miss"],
                                                          judged["slight_miss"]]
    first, second = q["disagreements"]
    assert first["model_pick"] == "1" and first["human_pick"] == "0"
    assert first["votes"] == {"0": 2, "1": 1}
    assert first["margin"] > second["margin"] > 0
    assert [n["item_id"] for n in q["needs_judgments"]] == [judged["lonely"]]


def test_an_undone_vote_leaves_the_queue(store: Store, judged) -> None:
    (jid,) = [h.id for h in store.human_judgments(judged["slight_miss"], annotator="bob")]
    store.undo_human_judgment(jid, "bob")
    q = disagreement_queue(store, min_judgments=2)
    assert judged["slight_miss"] not in [d["item_id"] for d in q["disagreements"]]
    assert judged["slight_miss"] in [n["item_id"] for n in q["needs_judgments"]]


def test_agreement_report_by_hand(store: Store, judged) -> None:
    report = agreement(store)
    # Items with a majority and model scores: confident_miss (wrong), slight_miss
    # (wrong), agree (right).
    assert report["model_vs_human"] == {"backend": "m", "items": 3, "accuracy": 1 / 3}
    # Leave-one-out, per judgment: confident_miss ann/bob vs {0,1} tie -> none, cat vs
    # {0,0} -> miss; slight_miss 2 hits; agree 2 hits; split: each vs one other -> 2
    # misses; lonely: nobody else.
    assert report["human_ceiling"] == {"judgments": 7, "accuracy": pytest.approx(4 / 7)}
    by_name = {a["annotator"]: a for a in report["per_annotator"]}
    # Gold ranking [0, 1] everywhere: ann said 0,1,0,0 -> 3/4; cat said 1,0 -> 1/2.
    assert by_name["ann"]["gold_accuracy"] == 0.75 and by_name["ann"]["gold_items"] == 4
    assert by_name["cat"]["gold_accuracy"] == 0.5
    assert by_name["cat"]["agreement_with_others"] == 0.0
    assert report["inter_annotator"]["method"] == "krippendorff_alpha"


def test_empty_store_reports_none_instead_of_numbers(store: Store) -> None:
    report = agreement(store)
    assert report["model_vs_human"]["accuracy"] is None
    assert report["inter_annotator"]["value"] is None
    assert report["human_ceiling"]["accuracy"] is None
    assert disagreement_queue(store)["disagreements"] == []
