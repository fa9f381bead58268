"""On-policy items: the RL editor's sample groups in the store, voted a pair at a time.

An RL sample group (one source, one instruction, G edits) becomes an ordinary,
content-addressed item of G candidates (``origin_dataset`` ``rl-samples``), with the
reward model's judgments in ``model_judgments`` (as a bench run stores them) and the
ground truth of each edit in the item's metadata (``rl_truth``: ``{"score": 0..1,
"success": bool}`` per edit; never a ``truth_ranking``, so these items stay out of the
gold queue).

People compare two edits, not twelve: the ``rl_samples`` queue serves an item with the
pair of candidates to show, the pair whose stored model scores are closest (where the
reward is least sure) that the annotator has not voted on yet. A vote ranks the two shown
candidates only (a partial ranking, ``validation.check_partial_ranking``). The
disagreement queue reads these items pairwise (:func:`pair_disagreements`).
"""

from __future__ import annotations

import hashlib
import math
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from spatialreward.errors import InvalidJudgmentError
from spatialreward.judgment import Judgment

from .validation import MAX_FULL_RANKING

ORIGIN = "rl-samples"
"""``origin_dataset`` of the items an RL run or ``eval-editor --to-store`` adds."""
TRUTH_KEY = "rl_truth"
"""The item metadata key holding each edit's ground truth."""
Pair = tuple[int, int]


# -- adding a group -------------------------------------------------------------------------


def _judgments(value: Any) -> list[Judgment]:
    """One edit's judgments: a Judgment dict (or Judgment), or backend -> one of those."""
    if value is None:
        return []
    if isinstance(value, Judgment):
        return [value]
    if isinstance(value, Mapping) and "status" in value:
        return [Judgment.from_dict(dict(value))]
    if isinstance(value, Mapping):
        return [v if isinstance(v, Judgment) else Judgment.from_dict(dict(v))
                for v in value.values()]
    raise InvalidJudgmentError("judgments: give each edit a Judgment dict, or a mapping of "
                               "backend -> Judgment dict")


def _truth(value: Any, k: int) -> dict[str, Any]:
    try:
        score, success = float(value["score"]), value["success"]
    except (KeyError, TypeError, ValueError):
        raise InvalidJudgmentError(
            f"truth[{k}] must be {{'score': 0..1, 'success': true/false}}") from None
    if not (math.isfinite(score) and 0 <= score <= 1) or not isinstance(success, bool):
        raise InvalidJudgmentError(
            f"truth[{k}]: score must be 0..1 and success true or false, got {value!r}")
    return {"score": score, "success": success}


def add_sample_group(store: Any, *, source: Any, edits: Sequence[Any], instruction: str,
                     judgments: Sequence[Any] | None = None,
                     truth: Sequence[Mapping[str, Any]] | None = None,
                     run_id: int | None = None, step: int | None = None,
                     origin: str = ORIGIN, prompt_meta: Mapping[str, Any] | None = None
                     ) -> int:
    """Store one sample group (``edits``: its G >= 2 images) as an item of G candidates in
    the annotation queues; returns the item id (the same group again returns the same
    item). ``judgments`` (per edit) go to ``model_judgments``, ``truth`` (per edit) to the
    metadata, with the run, the step and ``prompt_meta``."""
    g = len(edits)
    if g < 2:
        raise InvalidJudgmentError(f"a sample group needs at least 2 edits, got {g}")
    for name, values in (("judgments", judgments), ("truth", truth)):
        if values is not None and len(values) != g:
            raise InvalidJudgmentError(f"{name}: give one per edit ({g}), got {len(values)}")
    per_edit = [_judgments(j) for j in judgments] if judgments is not None else []
    meta: dict[str, Any] = {"group_size": g, "prompt": dict(prompt_meta or {})}
    if truth is not None:
        meta[TRUTH_KEY] = [_truth(t, k) for k, t in enumerate(truth)]
    if run_id is not None:
        meta["run_id"] = int(run_id)
    if step is not None:
        meta["step"] = int(step)
    with store.write():
        item_id = int(store.add_item(instruction, source, list(edits), origin_dataset=origin,
                                     metadata=meta, category=meta["prompt"].get("op")))
        for k, js in enumerate(per_edit):
            for j in js:
                store.add_model_judgment(item_id, k, j)
    return item_id


def group_truth(store: Any, item_id: int) -> list[dict[str, Any]] | None:
    """The ground truth of each edit of an RL item, or None (not an RL item)."""
    truth = store.item(item_id)["metadata"].get(TRUTH_KEY)
    return None if truth is None else list(truth)


# -- pairs ----------------------------------------------------------------------------------


def ranked_pairs(ranking: Sequence[Any] | None) -> list[Pair]:
    """The (better, worse) pairs a ranking states; ties state none.

    >>> ranked_pairs([3, [1, 2]])
    [(3, 1), (3, 2)]
    """
    groups = [g if isinstance(g, (list, tuple)) else [g] for g in ranking or []]
    return [(a, b) for k, g in enumerate(groups) for later in groups[k + 1:]
            for a in g for b in later]


def vote_pair(ranking: Sequence[Any] | None) -> Pair | None:
    """The pair a partial ranking of two candidates covers, lower index first."""
    flat = sorted(k for g in ranking or [] for k in (g if isinstance(g, (list, tuple)) else [g]))
    return (flat[0], flat[1]) if len(flat) == 2 else None


def uncertain_pairs(scores: Mapping[int, float], n: int) -> list[tuple[float, Pair]]:
    """Every pair of ``n`` candidates, the closest model scores (least sure) first; pairs
    with an unscored candidate come last (gap ``inf``).

    >>> uncertain_pairs({0: 5.0, 1: 9.0, 2: 5.5}, 3)
    [(0.5, (0, 2)), (3.5, (1, 2)), (4.0, (0, 1))]
    """
    out = []
    for i in range(n):
        for j in range(i + 1, n):
            gap = (abs(scores[i] - scores[j]) if i in scores and j in scores else math.inf)
            out.append((round(gap, 9), (i, j)))
    return sorted(out)


def _backend(store: Any, backend: str | None) -> str | None:
    return backend or next(iter(store.backend_counts()), None)


def pair_queue(store: Any, annotator: str, backend: str | None = None
               ) -> list[dict[str, Any]]:
    """The pairs ``annotator`` has not voted on, over every RL item in the queues, least
    sure first (gap between the stored model scores), then fewest votes, oldest item."""
    items = store.origin_item_ids(ORIGIN)
    if not items:
        return []
    sizes = store.candidate_counts()
    backend = _backend(store, backend)
    scores = store.overall_scores(backend) if backend else {}
    mine: set[tuple[int, Pair]] = set()
    counts: Counter[tuple[int, Pair]] = Counter()
    for v in store.item_votes(items):
        if (p := vote_pair(v["ranking"])) is not None:
            counts[v["item_id"], p] += 1
            if v["annotator"] == annotator:
                mine.add((v["item_id"], p))
    rows = [(gap, counts[item_id, p], item_id, p) for item_id in items
            for gap, p in uncertain_pairs(scores.get(item_id, {}), sizes.get(item_id, 0))
            if (item_id, p) not in mine]
    return [{"item_id": i, "pair": list(p), "gap": None if math.isinf(gap) else gap,
             "votes": n} for gap, n, i, p in sorted(rows)]


def next_pair(store: Any, annotator: str, *, after: tuple[int, Sequence[int]] | None = None,
              backend: str | None = None) -> dict[str, Any] | None:
    """The next pair to show ``annotator`` (:func:`pair_queue`'s first; with ``after``,
    the ``(item_id, pair)`` on screen, the one behind it, wrapping around), as
    ``{"item_id", "pair": [i, j], "gap", "votes"}``; None when none is left."""
    store.annotator_id(annotator)  # UnknownAnnotatorError
    queue = pair_queue(store, annotator, backend)
    if after is not None:
        key = (int(after[0]), sorted(int(k) for k in after[1]))
        at = next((k for k, r in enumerate(queue) if (r["item_id"], r["pair"]) == key), None)
        if at is not None:
            queue = queue[at + 1:] + queue[:at + 1]
    return queue[0] if queue else None


def pair_order(annotator: str, item_id: int, pair: Sequence[int]) -> list[int]:
    """The two candidates in shown order (A first): shuffled, the same on every call."""
    a, b = sorted(int(k) for k in pair)
    seed = hashlib.sha256(f"{annotator}\x1f{item_id}\x1f{a},{b}".encode()).digest()
    return [a, b] if random.Random(seed).random() < 0.5 else [b, a]


def check_pair(store: Any, item_id: int, pair: Sequence[int]) -> tuple[int, int]:
    """``pair`` as two distinct candidates of the item, or an InvalidJudgmentError."""
    n = int(store.item(item_id)["n_candidates"])  # UnknownItemError
    try:
        a, b = (int(k) for k in pair)
    except (TypeError, ValueError):
        raise InvalidJudgmentError(f"pair {pair!r} must be two candidate indices") from None
    if a == b or not (0 <= a < n and 0 <= b < n):
        raise InvalidJudgmentError(f"pair {pair!r} must be two different candidates 0..{n - 1}")
    return a, b


def shown_pair(store: Any, annotator: str, item_id: int, pair: Sequence[int]
               ) -> dict[str, Any]:
    """What the annotator sees of a pair of an RL item, shaped like
    ``annotate.shown_item``: ``order`` (the two real candidates, A first), ``labels``,
    ``source``, ``candidates`` (their image hashes in shown order), and ``pair`` and
    ``group_size``."""
    check_pair(store, item_id, pair)
    item = store.item(item_id)
    order = pair_order(annotator, item_id, pair)
    return {"item_id": int(item_id), "instruction": item["instruction"], "n_candidates": 2,
            "order": order, "labels": ["A", "B"], "source": item["source_sha256"],
            "candidates": [item["candidates"][k] for k in order],
            "pair": sorted(order), "group_size": int(item["n_candidates"])}


def pair_preference(choice: str, order: Sequence[int]) -> tuple[list[Any], bool]:
    """(partial ranking, both bad) of a choice on a shown pair: ``A``/``B`` (or 1/2),
    ``tie``, ``both bad``.

    >>> pair_preference("B", [7, 2]), pair_preference("tie", [7, 2])
    (([2, 7], False), ([[7, 2]], False))
    """
    key = str(choice or "").strip().lower().replace("_", " ")
    if key in ("tie", "both bad", "bad"):
        return [list(order)], key != "tie"
    pos = {"a": 0, "1": 0, "b": 1, "2": 1}.get(key)
    if pos is None:
        raise InvalidJudgmentError(f"{choice!r} is not a vote on a pair: use A, B, tie or "
                                   "both bad")
    return [order[pos], order[1 - pos]], False


def record_pair_vote(store: Any, annotator: str, item_id: int, pair: Sequence[int],
                     choice: str, *, order: Sequence[int] | None = None,
                     scores: Mapping[str, Any] | None = None,
                     regions: Sequence[Mapping[str, Any]] | None = None, comment: str = "",
                     seconds_spent: float | None = None) -> int:
    """Store ``annotator``'s vote on a pair of an RL item (``choice``, ``scores`` and
    ``regions`` in the shown labels A/B of ``order``, default :func:`pair_order`); a
    second vote on the same pair supersedes the first. Returns the judgment's id."""
    a, b = check_pair(store, item_id, pair)
    shown = pair_order(annotator, item_id, (a, b)) if order is None else [int(k) for k in order]
    if sorted(shown) != sorted((a, b)):
        raise InvalidJudgmentError(f"shown order {list(shown)} must list the pair {a}, {b}")
    ranking, bad = pair_preference(choice, shown)
    label = {"A": shown[0], "B": shown[1]}

    def real(lab: Any) -> int:
        if str(lab).strip().upper() not in label:
            raise InvalidJudgmentError(f"{lab!r} is not a shown candidate; use A or B")
        return label[str(lab).strip().upper()]

    mapped_scores = {real(k): v for k, v in scores.items()} if scores else None
    mapped_regions = ([{**r, "candidate": real(r.get("candidate"))} for r in regions]
                      if regions else None)
    with store.write():
        previous = next((j.id for j in store.human_judgments(item_id=item_id,
                                                             annotator=annotator)
                         if vote_pair(j.ranking) == (min(a, b), max(a, b))), None)
        return int(store.add_human_judgment(
            item_id, annotator, ranking, scores=mapped_scores, regions=mapped_regions,
            comment=(comment or "").strip(), seconds_spent=seconds_spent,
            supersedes=previous, both_bad=bad))


# -- disagreements ----------------------------------------------------------------------------


def pair_preferences(votes: Sequence[Mapping[str, Any]]
                     ) -> dict[int, dict[Pair, Counter[int]]]:
    """item -> pair (lower index first) -> candidate -> votes preferring it (ties and
    both-bad votes prefer neither)."""
    out: dict[int, dict[Pair, Counter[int]]] = {}
    for v in votes:
        if v["both_bad"]:
            continue
        for better, worse in ranked_pairs(v["ranking"]):
            key = (min(better, worse), max(better, worse))
            out.setdefault(int(v["item_id"]), {}).setdefault(key, Counter())[better] += 1
    return out


def pair_disagreements(store: Any, backend: str | None, kinds: Any = ("human",),
                       scores: Mapping[int, Mapping[int, float]] | None = None,
                       sizes: Mapping[int, int] | None = None) -> list[dict[str, Any]]:
    """Items of more than ``MAX_FULL_RANKING`` candidates where the model prefers one edit
    of a voted pair and the majority of the votes (of ``kinds``) the other: one row per
    item, its most confident model mistake (``margin``, the gap between the model's
    scores), as ``{"item_id", "pair", "model_pick", "human_pick", "margin"}``. ``scores``
    and ``sizes`` (item -> candidates), when the caller already read them."""
    backend = _backend(store, backend)
    if backend is None:
        return []
    sizes = store.candidate_counts() if sizes is None else sizes
    big = [i for i, n in sizes.items() if n > MAX_FULL_RANKING]
    if not big:
        return []
    scores = store.overall_scores(backend) if scores is None else scores
    worst: dict[int, dict[str, Any]] = {}
    for item_id, pairs in pair_preferences(store.item_votes(big, kinds)).items():
        s = scores.get(item_id, {})
        for (a, b), wins in pairs.items():
            if wins[a] == wins[b] or a not in s or b not in s or s[a] == s[b]:
                continue
            human = a if wins[a] > wins[b] else b
            model = a if s[a] > s[b] else b
            margin = abs(s[a] - s[b])
            if model != human and margin > worst.get(item_id, {}).get("margin", -1.0):
                worst[item_id] = {"item_id": item_id, "pair": [a, b], "model_pick": model,
                                  "human_pick": human, "margin": margin}
    return sorted(worst.values(), key=lambda r: (-r["margin"], r["item_id"]))
