"""Benchmark metrics: pure functions from human rankings and model scores to numbers.

Conventions, shared by every function here:

- A ranking is a tuple of tie groups, best first (``((2,), (0, 1))``: 2 is best, 0 and
  1 tie behind it), as read by :mod:`storage.pairs`.
- A score is a float, or ``None`` when the judgment failed (status != ok, an image
  that could not be read). An item with any failed score counts WRONG on every
  metric: a judge that cannot score a candidate has not ranked it.
- Ties in model scores count WRONG: a constant judge must score 0, not 50 %.
- A strict pair is two candidates in different human tie groups. An item whose
  ranking is one tie group (``[[0, 1]]``) has none; it is excluded from accuracy and
  counted as ``tied_human``.
- Boxes are ``(x1, y1, x2, y2)`` in the source frame, 0..1000.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any, Literal

from scipy.stats import binomtest

from storage.pairs import Ranking, ranking_to_json

from ..judgment import Judgment
from ..regions import IOU_THRESHOLD, match_boxes

Box = tuple[int, int, int, int]
MISSING = "(missing)"
"""Group value of an item that lacks the grouping key (or has no category)."""

ItemKind = Literal["evaluated", "tied_human", "unranked", "single_candidate"]


# --- scores -----------------------------------------------------------------------------


def score_for(judgment: Judgment | None, dimension: str = "overall") -> float | None:
    """The score a judgment gives on an item's ``dimension``; None when it failed.

    >>> j = Judgment(status="ok", sc=(20.0, 10.0), pq=(25.0, 15.0))
    >>> score_for(j, "prompt_following"), score_for(j, "consistency")
    (8.0, 4.0)
    >>> score_for(Judgment(status="parse_failed", sc=(20.0, 10.0)), "prompt_following") is None
    True
    """
    if judgment is None or not judgment.scored:  # low_coverage scores count, apart
        return None
    if dimension == "overall":
        return judgment.overall
    if dimension == "prompt_following":
        return judgment.prompt_following
    if dimension == "consistency":
        return judgment.consistency
    if dimension == "perceptual_quality":
        return judgment.perceptual_quality
    raise ValueError(f"unknown dimension {dimension!r}")


# --- rankings ---------------------------------------------------------------------------


def strict_pairs(ranking: Ranking) -> list[tuple[int, int]]:
    """All (better, worse) candidate pairs the human ranking orders strictly.

    >>> strict_pairs(((2,), (0, 1)))
    [(2, 0), (2, 1)]
    >>> strict_pairs(((0, 1),))
    []
    """
    return [
        (better, worse)
        for g, group in enumerate(ranking)
        for lower in ranking[g + 1:]
        for better in group
        for worse in lower
    ]


def pairwise_counts(scores: Sequence[float | None], ranking: Ranking) -> tuple[int, int]:
    """(correct, total) strict pairs: correct iff the better one scores strictly higher.

    >>> pairwise_counts([7.0, 5.0], ((0,), (1,)))
    (1, 1)
    >>> pairwise_counts([5.0, 5.0], ((0,), (1,)))  # a model tie is wrong
    (0, 1)
    >>> pairwise_counts([9.0, 1.0, 5.0], ((0,), (1, 2)))
    (2, 2)
    >>> pairwise_counts([9.0, None, 5.0], ((0,), (1, 2)))  # a failed score fails the item
    (0, 2)
    """
    pairs = strict_pairs(ranking)
    values = [s for s in scores if s is not None]
    if len(values) != len(scores):
        return 0, len(pairs)
    return sum(1 for a, b in pairs if values[a] > values[b]), len(pairs)


def ranking_exact(scores: Sequence[float | None], ranking: Ranking) -> bool:
    """Whether the model's order (by score, descending) is exactly the human order.

    Candidates inside one human tie group may come in any order among themselves,
    but every member of a better group must score above every member of a worse
    one. Any tie between model scores is wrong, even inside a human tie group: the
    model's order must be a strict one.

    >>> ranking_exact([9.0, 1.0, 5.0], ((0,), (2,), (1,)))
    True
    >>> ranking_exact([9.0, 1.0, 5.0], ((0,), (1, 2)))
    True
    >>> ranking_exact([9.0, 5.0, 5.0], ((0,), (1, 2)))  # tied model scores
    False
    >>> ranking_exact([4.0, 1.0, 5.0], ((0,), (1, 2)))  # 2 jumped above the best
    False
    """
    values = [s for s in scores if s is not None]
    if len(values) != len(scores) or len(set(values)) != len(values):
        return False
    return all(
        min(values[i] for i in better) > max(values[i] for i in worse)
        for better, worse in pairwise(ranking)
    )


def reference_candidate(ranking: Ranking | None, k: int) -> int | None:
    """The candidate whose regions are checked: the first of the best tie group.

    A single candidate is its own reference; an unranked choice among several has none.

    >>> reference_candidate(((2,), (0, 1)), 3), reference_candidate(None, 1)
    (2, 0)
    """
    if ranking is not None:
        return ranking[0][0]
    return 0 if k == 1 else None


# --- regions ----------------------------------------------------------------------------


def region_recall(
    targets: Sequence[Sequence[float]],
    predicted: Sequence[Sequence[float]],
    threshold: float = IOU_THRESHOLD,
) -> float | None:
    """Fraction of target boxes matched (see :func:`match_boxes`); None without targets.

    >>> region_recall([(0, 0, 10, 10), (20, 0, 30, 10)], [(0, 0, 10, 9), (50, 50, 60, 60)])
    0.5
    """
    if not targets:
        return None
    return match_boxes(targets, predicted, threshold) / len(targets)


# --- statistics -------------------------------------------------------------------------


def wilson_ci(successes: int, trials: int, confidence: float = 0.95) -> list[float] | None:
    """The Wilson score interval ``[low, high]`` of a proportion; None for 0 trials.

    >>> [round(x, 4) for x in wilson_ci(8, 10)]
    [0.4902, 0.9433]
    """
    if trials <= 0:
        return None
    ci = binomtest(successes, trials).proportion_ci(confidence_level=confidence,
                                                   method="wilson")
    return [float(ci.low), float(ci.high)]


def group_value(value: Any) -> str:
    """A metadata value as a group label: strings as they are, the rest as JSON.

    >>> group_value("hard"), group_value(3), group_value(True), group_value(None)
    ('hard', '3', 'true', '(missing)')
    """
    if value is None:
        return MISSING
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


# --- items and summaries ----------------------------------------------------------------


@dataclass(frozen=True)
class ItemResult:
    """One item's outcome; ``to_dict`` is its entry in the results' ``items`` list."""

    id: str
    kind: ItemKind
    scores: tuple[float | None, ...]
    ranking: Ranking | None = None
    dimension: str = "overall"
    category: str | None = None
    pairs: int = 0
    pairs_correct: int = 0
    ranking_correct: bool | None = None
    """Exact-order match; only for items with more than two candidates."""
    failed: bool = False
    truncated: int = 0
    """Candidates whose judgment failed because the answer was cut off at the token limit."""
    statuses: tuple[str, ...] = ()
    error: str | None = None
    region_targets: int = 0
    region_matched: int = 0
    groups: Mapping[str, str] = field(default_factory=dict)
    """Group labels of the ``--by`` keys."""
    region_counts: tuple[int | None, ...] = ()
    """Regions each candidate's judgment located (None where it failed)."""
    info: Mapping[str, Any] = field(default_factory=dict)
    """What a benchmark's own metrics need besides the scores (task type, subset, ...)."""

    @property
    def k(self) -> int:
        return len(self.scores)

    @property
    def correct(self) -> bool | None:
        """Two candidates: the pair is right. More: the exact order is. None: not scored."""
        if self.kind != "evaluated":
            return None
        if self.ranking_correct is not None:
            return self.ranking_correct
        return self.pairs_correct == self.pairs

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "id": self.id,
            "category": self.category,
            "dimension": self.dimension,
            "kind": self.kind,
            "ranking": None if self.ranking is None else ranking_to_json(self.ranking),
            "scores": list(self.scores),
            "statuses": list(self.statuses),
            "correct": self.correct,
            "pairs": self.pairs,
            "pairs_correct": self.pairs_correct,
            "failed": self.failed,
        }
        if self.truncated:
            d["truncated"] = self.truncated
        if self.ranking_correct is not None:
            d["ranking_correct"] = self.ranking_correct
        if self.region_targets:
            d["region_recall"] = self.region_matched / self.region_targets
        if self.groups:
            d["groups"] = dict(self.groups)
        if self.region_counts:
            d["region_counts"] = list(self.region_counts)
        if self.info:
            d["info"] = dict(self.info)
        if self.error:
            d["error"] = self.error
        return d


def evaluate_item(
    id: str,
    ranking: Ranking | None,
    scores: Sequence[float | None],
    *,
    dimension: str = "overall",
    category: str | None = None,
    targets: Sequence[Sequence[float]] | None = None,
    predicted: Sequence[Sequence[float]] = (),
    statuses: Sequence[str] = (),
    error: str | None = None,
    groups: Mapping[str, str] | None = None,
) -> ItemResult:
    """Score one item. ``predicted`` holds the reference candidate's predicted boxes.

    >>> r = evaluate_item("a", ((1,), (0,)), [3.0, 6.0])
    >>> r.kind, r.correct, r.pairs_correct
    ('evaluated', True, 1)
    >>> evaluate_item("b", ((0, 1),), [3.0, 6.0]).kind
    'tied_human'
    """
    k = len(scores)
    failed = any(s is None for s in scores)
    kind: ItemKind
    if ranking is None:
        kind = "unranked"
    elif k < 2:
        kind = "single_candidate"
    elif len(ranking) < 2:
        kind = "tied_human"
    else:
        kind = "evaluated"
    correct, pairs, exact = 0, 0, None
    if kind == "evaluated" and ranking is not None:
        correct, pairs = pairwise_counts(scores, ranking)
        exact = ranking_exact(scores, ranking) if k > 2 else None
    ref = reference_candidate(ranking, k)
    n_targets = matched = 0
    if targets and ref is not None:
        n_targets = len(targets)
        # A failed reference judgment located nothing: its targets count unmatched.
        matched = 0 if scores[ref] is None else match_boxes(targets, predicted)
    return ItemResult(
        id=id,
        kind=kind,
        scores=tuple(scores),
        ranking=ranking,
        dimension=dimension,
        category=category,
        pairs=pairs,
        pairs_correct=correct,
        ranking_correct=exact,
        failed=failed,
        statuses=tuple(statuses),
        error=error,
        region_targets=n_targets,
        region_matched=matched,
        groups=dict(groups or {}),
    )


def accuracy_table(
    results: Iterable[ItemResult], key: Callable[[ItemResult], str]
) -> dict[str, dict[str, Any]]:
    """Pairwise accuracy per group of evaluated items: ``{label: {n, pairs, accuracy, ...}}``.

    >>> rs = [evaluate_item("a", ((0,), (1,)), [2.0, 1.0], category="x"),
    ...       evaluate_item("b", ((0,), (1,)), [1.0, 2.0], category="x"),
    ...       evaluate_item("c", ((0,), (1,)), [2.0, 1.0], category="y")]
    >>> t = accuracy_table(rs, lambda r: r.category or MISSING)
    >>> {g: (v["n"], v["accuracy"]) for g, v in t.items()}
    {'x': (2, 0.5), 'y': (1, 1.0)}
    """
    buckets: dict[str, list[ItemResult]] = {}
    for r in results:
        if r.kind == "evaluated":
            buckets.setdefault(key(r), []).append(r)
    table = {}
    for label in sorted(buckets):
        group = buckets[label]
        correct = sum(r.pairs_correct for r in group)
        pairs = sum(r.pairs for r in group)
        table[label] = {
            "n": len(group),
            "pairs": pairs,
            "accuracy": correct / pairs if pairs else None,
            "accuracy_ci": wilson_ci(correct, pairs),
            "failed": sum(r.failed for r in group),
        }
    return table


def _label_of(key: str) -> Callable[[ItemResult], str]:
    return lambda r: r.groups.get(key, MISSING)


def summarize(results: Sequence[ItemResult], by: Sequence[str] = ()) -> dict[str, Any]:
    """The headline metrics of a run (see the module docstring for the conventions).

    ``accuracy`` is over all strict pairs of the evaluated items (one per two-candidate
    item); ``ranking_accuracy`` (exact order) and ``multi_pairwise_accuracy`` appear
    only when some item has more than two candidates.

    >>> rs = [evaluate_item("a", ((0,), (1,)), [2.0, 1.0]),
    ...       evaluate_item("b", ((0,), (1,)), [1.0, 1.0]),
    ...       evaluate_item("c", ((0, 1),), [2.0, 1.0])]
    >>> s = summarize(rs)
    >>> s["n"], s["accuracy"], s["tied_human"]
    (2, 0.5, 1)
    """
    evaluated = [r for r in results if r.kind == "evaluated"]
    correct = sum(r.pairs_correct for r in evaluated)
    pairs = sum(r.pairs for r in evaluated)
    out: dict[str, Any] = {
        "n": len(evaluated),
        "n_pairs": pairs,
        "accuracy": correct / pairs if pairs else None,
        "accuracy_ci": wilson_ci(correct, pairs),
    }
    multi = [r for r in evaluated if r.k > 2]
    if multi:
        exact = sum(bool(r.ranking_correct) for r in multi)
        multi_pairs = sum(r.pairs for r in multi)
        out["ranking_accuracy"] = exact / len(multi)
        out["ranking_accuracy_ci"] = wilson_ci(exact, len(multi))
        out["ranking_n"] = len(multi)
        out["multi_pairwise_accuracy"] = sum(r.pairs_correct for r in multi) / multi_pairs
    targets = sum(r.region_targets for r in results)
    out["region_recall"] = (
        sum(r.region_matched for r in results) / targets if targets else None
    )
    out["region_targets"] = targets
    out["region_items"] = sum(1 for r in results if r.region_targets)
    out["failed"] = sum(r.failed for r in results)
    # of those, items failed (also) by an answer cut off at max_new_tokens: a setting to
    # raise, not a model that cannot answer
    out["truncated"] = sum(r.truncated > 0 for r in results)
    # Items the backend judged without reading all of the request (status low_coverage):
    # counted apart, and the accuracy without them beside the accuracy with them.
    coverage = accuracy_table(
        results, lambda r: "low" if "low_coverage" in r.statuses else "full")
    out["low_coverage"] = sum("low_coverage" in r.statuses for r in results)
    out["accuracy_low_coverage"] = coverage.get("low", {}).get("accuracy")
    out["accuracy_full_coverage"] = coverage.get("full", {}).get("accuracy")
    out["accuracy_full_coverage_ci"] = coverage.get("full", {}).get("accuracy_ci")
    out["tied_human"] = sum(r.kind == "tied_human" for r in results)
    out["unranked"] = sum(r.kind in ("unranked", "single_candidate") for r in results)
    out["by_category"] = accuracy_table(results, lambda r: r.category or MISSING)
    if by:
        out["by"] = {key: accuracy_table(results, _label_of(key)) for key in by}
    return out
