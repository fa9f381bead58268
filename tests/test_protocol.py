"""The SpatialReward protocol: parsing raw judge text, rendering it back, and score math."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spatialreward.errors import ConfigError
from spatialreward.judgment import Judgment, JudgmentFormatError, Mask, Region
from spatialreward.protocol import parse_judgment, render_pq, render_sc
from spatialreward.reasoning import compose_reasoning, split_reasoning
from spatialreward.scoring import (
    AGGREGATORS,
    arithmetic_mean,
    get_aggregator,
    min_geometric,
    weighted_geometric,
)

PQ_OK = '{"reasoning": "Clean, natural result.", "score": [22, 24]}'


# --- strategies ---------------------------------------------------------------
scores = st.floats(min_value=0, max_value=25, allow_nan=False)
pairs = st.tuples(scores, scores)


@st.composite
def boxes(draw):
    x1 = draw(st.integers(0, 999))
    y1 = draw(st.integers(0, 999))
    return (x1, y1, draw(st.integers(x1 + 1, 1000)), draw(st.integers(y1 + 1, 1000)))


def text(max_size: int) -> st.SearchStrategy[str]:
    """Text a judge could write: no ``<think>`` tags, which the parser strips on purpose
    (everything after an unclosed ``<think>`` is the model thinking, not its answer)."""
    return st.text(max_size=max_size).filter(lambda t: "think>" not in t.lower())


@st.composite
def region_lists(draw):
    ids = draw(st.lists(st.integers(0, 50), unique=True, max_size=5))
    return tuple(Region(id=i, label=draw(text(20)), bbox_2d=draw(boxes())) for i in ids)


@st.composite
def judgments(draw):
    regions = draw(region_lists())
    sentences = [(r.id, draw(text(40))) for r in regions]
    # Free text must not contain our markers by accident, or the segments would change.
    free = text(60).filter(lambda t: "<|" not in t)
    reasoning = compose_reasoning(
        [(rid, s.replace("<|", "< |")) for rid, s in sentences], draw(free), draw(free)
    )
    return Judgment(
        status="ok",
        sc=draw(pairs),
        pq=draw(pairs),
        regions=regions,
        reasoning=reasoning,
        pq_reasoning=draw(text(60)),
        aggregation=draw(st.sampled_from(sorted(AGGREGATORS))),
        backend="test",
        backend_version="1",
    )


# --- round trips ----------------------------------------------------------------
@given(judgments())
def test_parse_of_render_is_identity(j):
    parsed = parse_judgment(
        render_sc(j), render_pq(j), backend="test", backend_version="1", aggregation=j.aggregation
    )
    assert parsed.warnings == ()
    assert dataclasses.replace(parsed, raw_sc=None, raw_pq=None) == j
    assert parsed.raw_sc == render_sc(j)


@given(judgments(), st.dictionaries(st.text(max_size=8), st.floats(0, 1e4), max_size=3))
def test_json_round_trip_is_lossless(j, timings):
    j = dataclasses.replace(
        j, timings_ms=timings, raw_sc="raw <think>x</think>", warnings=("w1",), meta={"a": [1, 2]}
    )
    text = j.to_json()
    again = Judgment.from_json(text)
    assert again == j
    assert again.to_json() == text


def test_mask_round_trip_through_json():
    import numpy as np

    arr = np.zeros((7, 9), bool)
    arr[2:5, 3:8] = True
    arr[0, 0] = True
    r = Region(id=0, label="cup", bbox_2d=(0, 0, 10, 10), mask=Mask.from_array(arr), confidence=0.5)
    j = Judgment(status="ok", sc=(20, 20), pq=(20, 20), regions=(r,))
    back = Judgment.from_json(j.to_json())
    assert back == j
    assert (back.regions[0].mask.to_array() == arr).all()


# --- never a silent score ----------------------------------------------------------
@given(st.text(max_size=300))
def test_garbage_never_raises_and_never_scores(text):
    j = parse_judgment(text, text)
    if j.status == "ok":  # only possible if the text really holds two score pairs
        assert j.sc is not None and j.pq is not None
    else:
        assert j.status == "parse_failed"
        assert j.overall is None and j.reward is None
        assert j.raw_sc == text and j.error


@pytest.mark.parametrize(
    "text",
    [
        "",
        "I cannot evaluate this image.",
        "The score is 12.5",
        "[20, 18]",
        '{"reasoning": "looks fine"}',
        '{"score": [20]}',
        '{"score": ["high", "low"]}',
        '{"score": [NaN, 3]}',
        "<think>the answer is {",
    ],
)
def test_unparsable_outputs_are_marked_failed_with_raw_text(text):
    j = parse_judgment(text, PQ_OK, backend="vlm")
    assert j.status == "parse_failed"
    assert j.raw_sc == text
    assert j.overall is None and j.reward is None and j.sc is None
    assert j.error.startswith("SC output unusable")
    # The PQ half still parsed; it is shown, but no overall is made from half a judgment.
    assert j.pq == (22.0, 24.0)


def test_unclosed_think_says_how_to_fix():
    j = parse_judgment("<think>first I look at the cup and", PQ_OK)
    assert "max_new_tokens" in j.error


def test_realistic_messy_output_is_recovered():
    text = (
        "<think>The cup on the left turned red...</think>\n"
        "Here is my evaluation:\n```json\n"
        '{"edit_region": [{"id": 0, "label": "cup", "bbox_2d": ["820", 1100, 610.4, 300]},\n'
        ' {"id": 0, "label": "shadow", "bbox_2d": [10, 10, 10, 40]}],\n'
        ' "reasoning": "<|bbox_0|> The cup is red. <|bbox_1|> Shadow updated. <|global|> Good.",\n'
        ' "score": ["21", 19.5],}\n```'
    )
    j = parse_judgment(text, PQ_OK, backend="vlm")
    assert j.status == "ok", j.error
    assert j.sc == (21.0, 19.5)
    assert [r.bbox_2d for r in j.regions] == [(610, 300, 820, 1000), (10, 10, 11, 40)]
    assert [r.id for r in j.regions] == [0, 1]  # duplicate id renumbered
    kinds = [(s.kind, s.region_id) for s in j.segments]
    assert kinds == [("bbox", 0), ("bbox", 1), ("global", None)]
    joined = " ".join(j.warnings)
    for expected in ("repaired malformed JSON", "clamped", "swapped", "renumbered"):
        assert expected in joined


def test_out_of_range_scores_are_clamped_with_a_warning():
    j = parse_judgment('{"edit_region": [], "reasoning": "", "score": [30, -2]}', PQ_OK)
    assert j.sc == (25.0, 0.0)
    assert sum("clamped" in w for w in j.warnings) == 2


def test_unknown_region_reference_is_flagged():
    j = parse_judgment('{"edit_region": [], "reasoning": "<|bbox_3|> x", "score": [5, 5]}', PQ_OK)
    assert j.status == "ok"
    assert any("unknown region ids [3]" in w for w in j.warnings)


def test_empty_edit_region_means_failed_edit_not_failed_parse():
    j = parse_judgment('{"edit_region": [], "reasoning": "<|global|> Nothing changed.", '
                       '"score": [0, 25]}', PQ_OK)
    assert j.status == "ok" and j.regions == () and j.prompt_following == 0.0


def test_split_reasoning_keeps_preamble_and_empty_markers():
    segs = split_reasoning("Intro <|bbox_2|><|BBOX_5|> five <| global |> end")
    assert [(s.kind, s.region_id, s.text) for s in segs] == [
        ("text", None, "Intro"),
        ("bbox", 2, ""),
        ("bbox", 5, "five"),
        ("global", None, "end"),
    ]


# --- score math ---------------------------------------------------------------
@given(pairs, pairs, st.sampled_from(sorted(AGGREGATORS)))
def test_aggregates_stay_in_range(sc, pq, name):
    a = get_aggregator(name)(sc, pq)
    for v in (a.semantic_consistency, a.perceptual_quality, a.overall):
        assert 0.0 <= v <= 10.0 and math.isfinite(v)
    assert 0.0 <= a.reward <= 1.0


@given(pairs, pairs, st.integers(0, 3), st.floats(0, 25), st.sampled_from(sorted(AGGREGATORS)))
def test_aggregates_never_drop_when_a_subscore_rises(sc, pq, which, bump, name):
    subs = list(sc + pq)
    better = list(subs)
    better[which] = max(subs[which], bump)
    agg = get_aggregator(name)
    before = agg(subs[:2], subs[2:]).overall
    after = agg(better[:2], better[2:]).overall
    assert after >= before - 1e-9


def test_aggregators_match_hand_computed_values():
    # SC = (0.6*20 + 0.4*10)/2.5 = 6.4, PQ = (0.5*25 + 0.5*15)/2.5 = 8, O = 6.4^.8 * 8^.2
    a = weighted_geometric([20, 10], [25, 15])
    assert a.semantic_consistency == pytest.approx(6.4)
    assert a.perceptual_quality == pytest.approx(8.0)
    assert a.overall == pytest.approx(6.4**0.8 * 8**0.2)
    assert min_geometric([20, 10], [25, 15]).overall == pytest.approx(math.sqrt(4 * 6))
    assert arithmetic_mean([20, 10], [25, 15]).overall == pytest.approx((6 + 8) / 2)


def test_unknown_aggregation_lists_the_known_ones():
    with pytest.raises(ConfigError, match="weighted_geometric"):
        get_aggregator("median")


def test_judgment_validates_its_fields():
    with pytest.raises(JudgmentFormatError, match="0..25"):
        Judgment(status="ok", sc=(26, 1))
    with pytest.raises(JudgmentFormatError, match="x1 < x2"):
        Region(id=0, label="", bbox_2d=(5, 5, 5, 9))
    with pytest.raises(JudgmentFormatError, match="unique"):
        r = Region(id=0, label="", bbox_2d=(0, 0, 1, 1))
        Judgment(status="ok", regions=(r, r))
    with pytest.raises(JudgmentFormatError, match="schema_version"):
        Judgment.from_dict({"schema_version": 99, "status": "ok"})
    with pytest.raises(JudgmentFormatError, match="does not parse"):
        Judgment.from_json("{")


def test_failed_judgment_json_has_no_scores():
    d = json.loads(parse_judgment("nope", "nope").to_json())
    assert d["status"] == "parse_failed"
    assert d["scores"]["overall"] is None and d["scores"]["reward"] is None
    assert d["raw_sc"] == "nope"
