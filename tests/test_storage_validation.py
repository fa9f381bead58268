"""The checks of storage/validation.py, property-tested: what a check returns is what it
would accept again, and what it refuses is named."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spatialreward.errors import InvalidJudgmentError
from storage import store as store_module
from storage import validation


@st.composite
def rankings(draw: st.DrawFn) -> tuple[int, list[object]]:
    """(n, a ranking of n candidates in the pair format: tie groups, best first)."""
    n = draw(st.integers(1, 6))
    order = draw(st.permutations(range(n)))
    cuts = sorted(draw(st.sets(st.integers(1, max(n - 1, 1)), max_size=n - 1))) if n > 1 else []
    groups = [list(order[a:b]) for a, b in zip([0, *cuts], [*cuts, n], strict=True)]
    return n, [g[0] if len(g) == 1 else g for g in groups]


@given(rankings())
def test_a_stored_ranking_reads_back_as_itself(case: tuple[int, list[object]]) -> None:
    n, ranking = case
    columns = validation.judgment_columns(ranking, n)
    assert json.loads(columns["ranking"]) == ranking
    again = validation.judgment_columns(json.loads(columns["ranking"]), n)
    assert again == columns
    first = ranking[0]
    assert columns["preferred"] == (first if isinstance(first, int) else None)
    assert set(columns) == set(validation.CONTENT_COLUMNS)


@given(st.integers(1, 6).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n - 1))))
def test_a_single_pick_ranks_it_over_a_tie_of_the_rest(case: tuple[int, int]) -> None:
    n, pick = case
    ranking, preferred, both_bad = validation.check_preference(pick, n)
    assert preferred == pick and not both_bad and ranking[0] == (pick,)
    assert sorted(k for g in ranking for k in g) == list(range(n))


@given(st.text())
def test_replacing_surrogates_always_gives_storable_text(text: str) -> None:
    clean = validation.replace_surrogates(text)
    assert validation.is_text(clean) and len(clean) == len(text)
    assert validation.check_text(clean, "x") == clean


@pytest.mark.parametrize("call, message", [
    (lambda: validation.check_preference(3, 2), "not a candidate"),
    (lambda: validation.check_preference(True, 2), "invalid preference"),
    (lambda: validation.check_scores({0: {"speed": 3}}, 2), "unknown dimension"),
    (lambda: validation.check_regions([{"bbox_2d": [5, 5, 1, 1]}], 2), "x1 < x2"),
    (lambda: validation.check_regions([{"bbox_2d": [0, 0, 1, 1]}] * 65, 2), "at most 64"),
    (lambda: validation.check_seconds(-1), "seconds_spent"),
    (lambda: validation.check_comment("x" * 2001), "the comment is 2,001 characters"),
    (lambda: validation.check_text("a\ud800", "the label"), "the label is not valid Unicode"),
    (lambda: validation.check_time("yesterday"), "not an ISO 8601 time"),
    (lambda: validation.check_new_password("short"), "at least 8 characters"),
])
def test_a_refusal_names_the_field(call, message: str) -> None:
    with pytest.raises(InvalidJudgmentError, match=message):
        call()


def test_the_limits_stay_importable_from_the_store() -> None:
    for name in ("ROLES", "SCORE_DIMENSIONS", "MAX_COMMENT_CHARS", "MAX_INSTRUCTION_CHARS",
                 "MAX_LABEL_CHARS", "MAX_NAME_CHARS", "MAX_REGIONS", "MIN_PASSWORD_CHARS",
                 "check_item_text", "check_comment", "replace_surrogates"):
        assert getattr(store_module, name) is getattr(validation, name)
