"""What a human vote teaches a judge: the pairs, scores and SpatialReward answers that
:mod:`spatialreward.learning_export` writes into the training layouts. Pure functions of
a vote: no store, no files."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from storage.store import HumanJudgment

from .judgment import Judgment, Region
from .protocol import render_sc
from .scoring import SCORE_RANGE

PREFERRED_SCORE = 22.0
"""SC score (0..25, both halves) of the best-ranked edit when the vote gave no scores."""
REJECTED_SCORE = 5.0
"""SC score of the worst-ranked edit (and of every edit of a both-bad vote) likewise;
places in between are spaced evenly."""
HUMAN_TO_PROTOCOL = SCORE_RANGE / 10
"""Human scores are 0..10, the protocol's 0..25: multiply by 2.5."""

def preference_pairs(ranking: Sequence[Sequence[int]]) -> tuple[list[tuple[int, int]], int]:
    """The (better, worse) pairs a ranking of tie groups states, best first, and the number
    of tied pairs it states (no preference).

    >>> preference_pairs([[2], [0, 1]])
    ([(2, 0), (2, 1)], 1)
    >>> preference_pairs([[0, 1]])
    ([], 1)
    """
    pairs = [(a, b) for i, better in enumerate(ranking) for worse in ranking[i + 1:]
             for a in better for b in worse]
    tied = sum(len(g) * (len(g) - 1) // 2 for g in ranking)
    return pairs, tied


def rank_scores(ranking: Sequence[Sequence[int]], both_bad: bool) -> dict[int, float]:
    """The SC score (0..25) a vote without scores implies for each ranked candidate: the
    best place :data:`PREFERRED_SCORE`, the worst :data:`REJECTED_SCORE`, the places
    between evenly spaced; every candidate of a both-bad vote the low score. A tie of all
    candidates says nothing about how good they are: no score.

    >>> rank_scores([[1], [0, 2]], False)
    {1: 22.0, 0: 5.0, 2: 5.0}
    >>> rank_scores([[0], [1], [2]], False)[1]
    13.5
    >>> rank_scores([[0, 1]], True), rank_scores([[0, 1]], False)
    ({0: 5.0, 1: 5.0}, {})
    """
    if both_bad:
        return {k: REJECTED_SCORE for group in ranking for k in group}
    if len(ranking) < 2:
        return {}
    step = (PREFERRED_SCORE - REJECTED_SCORE) / (len(ranking) - 1)
    return {k: round(PREFERRED_SCORE - step * place, 2)
            for place, group in enumerate(ranking) for k in group}


def sc_scores(human: Mapping[str, float] | None, implied: float | None
              ) -> tuple[float, float] | None:
    """[edit success, over-editing] on 0..25 from a candidate's human scores (0..10:
    ``instruction`` -> edit success, ``preservation`` -> over-editing, ``overall`` fills
    either when missing), else the score the ranking implies; None when neither exists.

    >>> sc_scores({"instruction": 8, "overall": 6}, 22.0)
    (20.0, 15.0)
    >>> sc_scores(None, 5.0), sc_scores({"quality": 9}, None)
    ((5.0, 5.0), None)
    """
    human = human or {}

    def part(dim: str) -> float | None:
        value = human.get(dim, human.get("overall"))
        return implied if value is None else round(float(value) * HUMAN_TO_PROTOCOL, 2)

    s1, s2 = part("instruction"), part("preservation")
    return None if s1 is None or s2 is None else (s1, s2)


def pq_scores(human: Mapping[str, float] | None) -> tuple[float, float] | None:
    """[naturalness, artifacts] on 0..25 from a human ``quality`` score (0..10); None
    without one: a preference says which edit follows the instruction better, not which
    image is cleaner, so no quality label is invented from it.

    >>> pq_scores({"quality": 7}), pq_scores({"overall": 7})
    ((17.5, 17.5), None)
    """
    if not human or human.get("quality") is None:
        return None
    q = round(float(human["quality"]) * HUMAN_TO_PROTOCOL, 2)
    return q, q


def verdict(human: HumanJudgment, candidate: int) -> str:
    """The ``<|global|>`` sentence: what the vote says about this candidate, in plain words.

    Only facts the vote holds: its place in the ranking, both-bad, the scores given."""
    ranking = human.ranking or ()
    place = next((i for i, g in enumerate(ranking) if candidate in g), None)
    others = sum(len(g) for g in ranking) - 1
    if human.both_bad:
        text = "The annotator judged every edit shown for this instruction as bad, this one too."
    elif place is None or len(ranking) < 2:
        text = "The annotator saw no difference in quality between the edits shown."
    elif place == 0 and len(ranking[0]) == 1:
        text = ("The annotator preferred this edit to the other one shown." if others == 1
                else f"The annotator preferred this edit to the other {others} shown.")
    elif place == 0:
        tied = len(ranking[0]) - 1
        text = f"The annotator ranked this edit first, tied with {tied} other{'s' * (tied > 1)}."
    elif place == len(ranking) - 1:
        text = "The annotator ranked this edit below the others shown."
    else:
        text = f"The annotator ranked this edit in place {place + 1} of {len(ranking)}."
    given = (human.scores or {}).get(candidate) or {}
    rated = [f"{dim} {float(v):g}/10" for dim, v in given.items()
             if dim in ("instruction", "preservation", "overall")]
    if rated:
        text += " Scores given: " + ", ".join(rated) + "."
    return text


def region_reasoning(regions: Sequence[Region], marked_by_human: bool) -> str:
    """One ``<|bbox_ID|>`` sentence per region: who located it and what it is."""
    said = ("The annotator marked this area{} as edited." if marked_by_human
            else "This area{} differs from the original image.")
    return " ".join(f"<|bbox_{r.id}|> " + said.format(f" ({r.label})" if r.label else "")
                    for r in regions)


def sc_answer(regions: Sequence[Region], reasoning: str, score: tuple[float, float],
              with_regions: bool = True) -> str:
    """The SC answer text a SpatialReward judge writes (regions 0..1000, reasoning, score);
    without regions (an EditScore-style protocol) only reasoning and score.

    >>> sc_answer((), "<|global|> Fine.", (20.0, 15.0))
    '{"edit_region": [], "reasoning": "<|global|> Fine.", "score": [20.0, 15.0]}'
    """
    j = Judgment(status="ok", sc=score, regions=tuple(regions), reasoning=reasoning)
    if with_regions:
        return render_sc(j)
    return json.dumps({"reasoning": reasoning, "score": list(score)}, ensure_ascii=False)
