"""Annotation logic over an in-memory store: queues, next item, blind order, undo."""

from __future__ import annotations

import numpy as np
import pytest
import sqlite_utils
from hypothesis import given
from hypothesis import strategies as st

from spatialreward.errors import (
    InputError,
    InvalidJudgmentError,
    NotYourJudgmentError,
    UnknownAnnotatorError,
    UnknownItemError,
)
from spatialreward.judgment import Judgment
from storage import annotate as ann
from storage.store import Store


def tiny(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (8, 8, 3), dtype=np.uint8)


def item(store: Store, seed: int, n: int = 2, truth=None) -> int:
    return store.add_item(f"edit {seed}", tiny(1000 + seed),
                          [tiny(seed * 10 + k) for k in range(n)], truth_ranking=truth)


def judge(store: Store, item_id: int, overalls: list[float]) -> None:
    """Model judgments whose overall scores rank like ``overalls``."""
    for k, level in enumerate(overalls):
        store.add_model_judgment(item_id, k, Judgment(
            status="ok", sc=(level, level), pq=(20.0, 20.0), backend="m", backend_version="1"))


def label_of(order: list[int], candidate: int) -> str:
    return "AB"[order.index(candidate)]


@pytest.fixture
def store() -> Store:
    s = Store(sqlite_utils.Database(memory=True))
    for name in ("ann", "bob", "cat"):
        s.add_annotator(name)
    return s


# -- queues and the next item -------------------------------------------------------------


def test_queues_hold_the_right_items(store: Store) -> None:
    plain, gold, flagged, disputed = (item(store, 1), item(store, 2, truth=[1, 0]),
                                      item(store, 3), item(store, 4))
    store.flag_item(flagged, "looks wrong")
    judge(store, disputed, [9.0, 1.0])  # the model prefers candidate 0 ...
    store.add_human_judgment(disputed, "bob", 1)  # ... two people prefer 1
    store.add_human_judgment(disputed, "cat", 1)
    judge(store, plain, [9.0, 1.0])
    store.add_human_judgment(plain, "bob", 0)  # agrees, but has one vote only
    assert ann.queue_items(store, "all") == [plain, gold, flagged, disputed]
    assert ann.queue_items(store, "gold") == [gold]
    assert ann.queue_items(store, "flagged") == [flagged]
    assert ann.queue_items(store, "disagreements") == [disputed]
    # Fewest votes first; ``disputed`` has two and is out.
    assert ann.queue_items(store, "needs_votes") == [gold, flagged, plain]
    with pytest.raises(InputError, match="no queue"):
        ann.queue_items(store, "mine")


def test_next_item_skips_what_the_annotator_judged_and_wraps_after(store: Store) -> None:
    a, b, c = item(store, 1), item(store, 2), item(store, 3)
    assert ann.next_item(store, "ann") == a
    ann.annotate(store, "ann", a, "A")
    assert ann.next_item(store, "ann") == b
    assert ann.next_item(store, "bob") == a  # someone else's vote does not count
    assert ann.next_item(store, "ann", after=b) == c  # "next" without voting
    assert ann.next_item(store, "ann", after=c) == b  # wraps around, skipping a
    ann.annotate(store, "ann", b, "tie")
    ann.annotate(store, "ann", c, "both bad")
    assert ann.next_item(store, "ann") is None
    ann.undo_last(store, "ann")  # an undone vote puts the item back
    assert ann.next_item(store, "ann") == c
    assert ann.progress(store, "ann", "all") == ann.Progress(2, 3)
    assert str(ann.progress(store, "ann", "all")) == "2 of 3 items in this queue judged by you"
    assert ann.next_item(store, "ann", "flagged") is None


# -- side order and the mapping back ------------------------------------------------------


def test_side_order_is_deterministic_per_annotator_and_item_and_randomised() -> None:
    assert ann.side_order("ann", 5, 2) == ann.side_order("ann", 5, 2)
    pairs = [tuple(ann.side_order("ann", i, 2)) for i in range(64)]
    assert set(pairs) == {(0, 1), (1, 0)}
    assert 16 < pairs.count((1, 0)) < 48  # roughly half the items swap sides
    # Another annotator sees other sides on some items.
    assert pairs != [tuple(ann.side_order("bob", i, 2)) for i in range(64)]
    for n in (1, 3, 7):
        assert sorted(ann.side_order("cat", 9, n)) == list(range(n))
    with pytest.raises(InvalidJudgmentError):
        ann.side_order("ann", 1, 27)


def test_a_vote_for_a_shown_label_stores_the_real_candidate(store: Store) -> None:
    ids = [item(store, s) for s in range(1, 12)]
    swapped = next(i for i in ids if ann.side_order("ann", i, 2) == [1, 0])
    straight = next(i for i in ids if ann.side_order("ann", i, 2) == [0, 1])
    ann.annotate(store, "ann", swapped, "A", scores={"A": {"overall": 7}, "B": {"quality": 2}},
                 regions=[{"candidate": "A", "bbox_2d": [10, 20, 300, 400], "label": "cup"}],
                 comment=" nice ", seconds_spent=3.5)
    ann.annotate(store, "ann", straight, "2")  # keyboard "2" is the second shown side
    [j] = store.human_judgments(item_id=swapped)
    assert j.preferred == 1 and j.ranking == ((1,), (0,))
    assert j.scores == {1: {"overall": 7.0}, 0: {"quality": 2.0}}
    assert j.regions == [{"candidate": 1, "bbox_2d": [10, 20, 300, 400], "label": "cup"}]
    assert (j.comment, j.seconds_spent, j.annotator) == ("nice", 3.5, "ann")
    assert store.human_judgments(item_id=straight)[0].preferred == 1
    # A shown order given by the caller wins over the default one.
    ann.annotate(store, "bob", straight, "A", order=[1, 0])
    assert store.human_judgments(item_id=straight, annotator="bob")[0].preferred == 1


def test_rankings_ties_and_both_bad(store: Store) -> None:
    three = item(store, 1, n=3)
    order = ann.side_order("ann", three, 3)
    a, b, c = order
    jid = ann.annotate(store, "ann", three, "B > A = C")
    [j] = store.human_judgments(item_id=three)
    assert j.ranking == ((b,), (a, c)) and j.preferred == b
    assert ann.vote_label(store, jid, order) == "B"
    jid = ann.annotate(store, "ann", three, "c>a>b")
    assert ann.vote_label(store, jid, order) == "C > A > B"
    pair = item(store, 2)
    ann.annotate(store, "ann", pair, "tie")
    ann.annotate(store, "bob", pair, "both_bad")
    labels = {j.annotator: j.label for j in store.human_judgments(item_id=pair)}
    assert labels == {"ann": "tie", "bob": "both_bad"}


def test_voting_again_supersedes_the_own_current_vote(store: Store) -> None:
    i = item(store, 1)
    first = ann.annotate(store, "ann", i, "A")
    ann.annotate(store, "bob", i, "A")
    second = ann.annotate(store, "ann", i, "B")
    current = {j.annotator: j.id for j in store.human_judgments(item_id=i)}
    assert current == {"ann": second, "bob": current["bob"]}
    history = store.human_judgments(item_id=i, history=True)
    assert [h.supersedes for h in history if h.id == second] == [first]


# -- undo -----------------------------------------------------------------------------------


def test_undo_last_retracts_only_the_callers_own_last_vote(store: Store) -> None:
    x, y = item(store, 1), item(store, 2)
    ann_x = ann.annotate(store, "ann", x, "A")
    ann_y = ann.annotate(store, "ann", y, "A")
    bob_y = ann.annotate(store, "bob", y, "B")  # the most recent vote overall is bob's
    undone = ann.undo_last(store, "ann")
    assert (undone.judgment_id, undone.item_id) == (ann_y, y)
    rows = store.human_judgments(history=True)
    assert rows[-1].id == undone.retraction_id
    assert (rows[-1].kind, rows[-1].supersedes, rows[-1].annotator) == ("retraction", ann_y,
                                                                         "ann")
    assert {j.id for j in store.human_judgments()} == {ann_x, bob_y}
    assert ann.undo_last(store, "ann").judgment_id == ann_x  # then the one before
    with pytest.raises(InvalidJudgmentError, match="no current vote"):
        ann.undo_last(store, "ann")
    assert [j.id for j in store.human_judgments()] == [bob_y]
    with pytest.raises(UnknownAnnotatorError):
        ann.undo_last(store, "nobody")


# -- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, error", [
    (dict(item_id=999), UnknownItemError),
    (dict(annotator="nobody"), UnknownAnnotatorError),
    (dict(choice="C"), InvalidJudgmentError),
    (dict(choice="3"), InvalidJudgmentError),
    (dict(choice=""), InvalidJudgmentError),
    (dict(choice="A > A"), InvalidJudgmentError),
    (dict(scores={"Z": {"overall": 1}}), InvalidJudgmentError),
    (dict(scores={"A": {"overall": 11}}), InvalidJudgmentError),
    (dict(scores={"A": {"beauty": 1}}), InvalidJudgmentError),
    (dict(regions=[{"candidate": "A", "bbox_2d": [5, 5, 1, 1]}]), InvalidJudgmentError),
    (dict(regions=[{"bbox_2d": [1, 1, 5, 5]}]), InvalidJudgmentError),
    (dict(seconds_spent=-1.0), InvalidJudgmentError),
    (dict(order=[0, 0]), InvalidJudgmentError),
])
def test_bad_votes_raise_named_errors_and_write_nothing(store: Store, kwargs, error) -> None:
    i = item(store, 1)
    args = {"annotator": "ann", "item_id": i, "choice": "A", **kwargs}
    with pytest.raises(error):
        ann.annotate(store, args.pop("annotator"), args.pop("item_id"), args.pop("choice"),
                     **args)
    assert store.human_judgments(history=True) == []


def test_identity_rules(store: Store) -> None:
    assert ann.resolve_annotator(store, " ann ") == "ann"
    assert ann.resolve_annotator(store, "", logged_in="bob", auth=True) == "bob"
    assert ann.resolve_annotator(store, "bob", logged_in="bob", auth=True) == "bob"
    with pytest.raises(NotYourJudgmentError, match="logged in as 'bob'"):
        ann.resolve_annotator(store, "ann", logged_in="bob", auth=True)
    with pytest.raises(UnknownAnnotatorError, match="login"):
        ann.resolve_annotator(store, "ann", auth=True)
    with pytest.raises(UnknownAnnotatorError, match="no annotator name"):
        ann.resolve_annotator(store, "  ")
    with pytest.raises(UnknownAnnotatorError):
        ann.resolve_annotator(store, "dora")
    assert not ann.is_registered(store, "dora")
    assert ann.register(store, " dora ") == "dora"
    assert ann.resolve_annotator(store, "dora") == "dora"
    assert {a["name"]: a["role"] for a in store.annotators()}["dora"] == "annotator"
    with pytest.raises(InvalidJudgmentError, match="already exists"):
        ann.register(store, "dora")
    with pytest.raises(InvalidJudgmentError):
        ann.register(store, "x" * 65)


# -- what is shown: items, predicted regions, the model's verdict --------------------------


def test_shown_item_lists_candidates_in_shown_order(store: Store) -> None:
    i = item(store, 1, n=3)
    shown = ann.shown_item(store, "ann", i)
    real = store.item(i)["candidates"]
    assert shown["labels"] == ["A", "B", "C"] and shown["instruction"] == "edit 1"
    assert shown["candidates"] == [real[k] for k in shown["order"]]


def test_predicted_regions_and_verdict_use_shown_labels(store: Store) -> None:
    from spatialreward.judgment import Region

    i = item(store, 1)
    order = [1, 0]
    boxed = Judgment(status="ok", sc=(9.0, 9.0), pq=(20.0, 20.0), backend="m",
                     backend_version="1", regions=(Region(0, "cup", (10, 20, 300, 400)),))
    plain = Judgment(status="ok", sc=(2.0, 2.0), pq=(20.0, 20.0), backend="m",
                     backend_version="1")
    store.add_model_judgment(i, 0, boxed)
    assert ann.predicted_regions(store, i, order) == {
        "B": [{"bbox_2d": [10, 20, 300, 400], "label": "cup"}]}
    assert ann.predicted_regions(store, i, order, backend="other") == {}
    store.add_model_judgment(i, 1, plain)
    verdict = ann.model_verdict([boxed, plain], order)
    assert verdict["pick"] == "B" and verdict["preferred"] == 0
    assert verdict["overall"] == {"A": plain.overall, "B": boxed.overall}
    tie = ann.model_verdict([plain, plain], order)
    assert tie["pick"] == "tie" and tie["preferred"] is None
    failed = Judgment(status="backend_error", backend="m", backend_version="1", error="boom")
    assert ann.model_verdict([boxed, failed], order)["pick"] is None


def test_regions_and_scores_typed_on_screen_round_trip() -> None:
    regions = {"A": [{"bbox_2d": [1, 2, 30, 40], "label": "cup"}],
               "B": [{"bbox_2d": [0, 0, 1000, 1000], "label": ""}]}
    text = ann.format_regions(regions)
    assert text == "A: 1,2,30,40 cup\nB: 0,0,1000,1000"
    assert ann.parse_regions(text, 2) == [
        {"candidate": "A", "bbox_2d": [1, 2, 30, 40], "label": "cup"},
        {"candidate": "B", "bbox_2d": [0, 0, 1000, 1000], "label": ""}]
    assert ann.parse_regions("  \n", 2) is None
    for bad in ("C: 1,2,3,4", "A: 1,2,3", "A: 5,5,1,1", "A: 1,2,3,1001"):
        with pytest.raises(InvalidJudgmentError, match="region line 1"):
            ann.parse_regions(bad, 2)
    assert ann.parse_scores([["A", 3, None, "", 7.5], ["B", None, None, None, float("nan")]]) \
        == {"A": {"instruction": 3.0, "overall": 7.5}}
    assert ann.parse_scores([["A", None, None, None, None]]) is None
    with pytest.raises(InvalidJudgmentError, match="0..10"):
        ann.parse_scores([["A", 12, None, None, None]])
    with pytest.raises(InvalidJudgmentError, match="number"):
        ann.parse_scores([["A", "good", None, None, None]])


@st.composite
def shown_regions(draw):
    """Boxes keyed by shown label, as the model's prefill produces them."""
    n = draw(st.integers(1, 4))
    out = {}
    for label in ann.LABELS[:n]:
        boxes = []
        for _ in range(draw(st.integers(0, 3))):
            x1, y1 = draw(st.integers(0, 999)), draw(st.integers(0, 999))
            x2, y2 = draw(st.integers(x1 + 1, 1000)), draw(st.integers(y1 + 1, 1000))
            word = draw(st.text("abcdefgh xyz", max_size=12)).strip()
            boxes.append({"bbox_2d": [x1, y1, x2, y2], "label": " ".join(word.split())})
        if boxes:
            out[label] = boxes
    return n, out


@given(shown_regions())
def test_parse_regions_reads_what_format_regions_writes(case) -> None:
    n, regions = case
    parsed = ann.parse_regions(ann.format_regions(regions), n) or []
    assert parsed == [{"candidate": label, **box} for label, boxes in regions.items()
                      for box in boxes]


@given(st.permutations(list(range(6))), st.integers(0, 5))
def test_a_label_maps_to_the_candidate_shown_under_it(order, pos) -> None:
    assert ann.preference(ann.LABELS[pos], order) == order[pos]
    assert ann.preference(str(pos + 1), order) == order[pos]
    ranking = " > ".join(ann.LABELS[:6])
    assert ann.preference(ranking, order) == list(order)
