"""Simulated annotators: stand-ins that vote from the exact ground truth, with errors.

For the learning experiment and for tests, a simulated annotator votes on pairs of
candidates as a careful person would if they were right ``1 - error`` of the time: it
reads the truth (a SynthEdit item's ``truth_ranking``; an RL item's per-edit truth
scores, :mod:`storage.samples`), votes for the better candidate (a tie when the truth
ties), and with probability ``error`` flips the vote (a tie stays a tie). It is
registered with the annotator kind ``simulated`` (no password, so never an app login),
and every figure shown to users leaves its votes out unless asked.

Runs are deterministic in the seed: the pairs are visited in a shuffled order drawn from
it, and pairs the annotator already voted on are skipped, so a second run adds new votes.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

from spatialreward.errors import InputError, InvalidJudgmentError, UnknownAnnotatorError

from . import samples
from .validation import MAX_FULL_RANKING

SIM_QUEUES = ("rl_samples", "gold", "all")
"""``rl_samples``: RL sample groups; ``gold``: items with a truth ranking; ``all``: both."""
TIE = 1e-9
"""Truth scores closer than this are a tie."""
WHOLE = (-1, -1)
"""The "pair" of a vote on a whole item of 3..MAX_FULL_RANKING candidates (its ranking)."""


def ensure_simulated(store: Any, name: str) -> str:
    """Register ``name`` as a simulated annotator, or accept it when it is one already;
    a person of that name is refused (their votes are never impersonated)."""
    try:
        kind = store.annotator(name)["kind"]
    except UnknownAnnotatorError:
        store.add_annotator(name, role="annotator", kind="simulated")
        return name
    if kind != "simulated":
        raise InvalidJudgmentError(
            f"{name!r} is a {kind} annotator; give the simulated annotator another name "
            "(e.g. sim-10)")
    return name


def _rank_of(ranking: list[Any]) -> dict[int, int]:
    """Candidate -> its tie group's position in a truth ranking (0 = best)."""
    return {k: pos for pos, g in enumerate(ranking)
            for k in (g if isinstance(g, list) else [g])}


def _truth_pairs(store: Any, queue: str) -> Iterator[tuple[int, int, int, float]]:
    """(item, i, j, truth of i minus truth of j: > 0 means i is better) of every pair of
    the items of ``queue`` that have a ground truth. A gold item of 3..MAX_FULL_RANKING
    candidates cannot be ranked in part: it yields one :data:`WHOLE` "pair" (its truth
    ranking is the vote)."""
    if queue in ("rl_samples", "all"):
        for item_id in store.origin_item_ids(samples.ORIGIN):
            truth = samples.group_truth(store, item_id)
            if truth is None:
                continue
            for i in range(len(truth)):
                for j in range(i + 1, len(truth)):
                    yield item_id, i, j, truth[i]["score"] - truth[j]["score"]
    if queue in ("gold", "all"):
        rl = set(store.origin_item_ids(samples.ORIGIN))
        for item_id, ranking in store.truth_rankings().items():
            if item_id in rl:
                continue
            rank = _rank_of(ranking)
            n = len(rank)
            if 2 < n <= MAX_FULL_RANKING:
                yield item_id, *WHOLE, 1.0
                continue
            for i in range(n):
                for j in range(i + 1, n):
                    yield item_id, i, j, float(rank[j] - rank[i])


def simulated_choice(diff: float, flip: bool, tie_margin: float = 0.0) -> str:
    """The vote on a pair (i, j) shown in that order: ``A`` (i better), ``B``, or
    ``tie`` (truths closer than ``tie_margin``); ``flip`` turns a preference into its
    opposite.

    >>> simulated_choice(0.3, False), simulated_choice(0.3, True), simulated_choice(0.0, True)
    ('A', 'B', 'tie')
    >>> simulated_choice(0.05, False, tie_margin=0.1)
    'tie'
    """
    if abs(diff) < max(TIE, tie_margin):
        return "tie"
    return "A" if (diff > 0) != flip else "B"


def simulate_votes(store: Any, annotator: str = "sim-10", error: float = 0.1,
                   queue: str = "rl_samples", n: int = 2000, seed: int = 0,
                   tie_margin: float = 0.0) -> dict[str, Any]:
    """Vote as the simulated ``annotator`` on up to ``n`` pairs of ``queue``'s items that
    it has not voted on yet, each flipped with probability ``error``; pairs whose truth
    scores differ by less than ``tie_margin`` (RL groups' 0..1 scores; gold rankings
    differ by whole places) are called a tie, as a person calls two near-equal edits;
    returns counts (``votes``, ``flipped``, ``ties``, ``skipped`` already voted,
    ``available`` pairs)."""
    queue = queue.replace("-", "_")
    if queue not in SIM_QUEUES:
        raise InputError(f"no queue {queue!r} to simulate votes on; choose one of "
                         f"{', '.join(SIM_QUEUES)}")
    if not 0.0 <= error <= 1.0:
        raise InvalidJudgmentError(f"error must be a probability 0..1, got {error!r}")
    if not 0.0 <= tie_margin < 1.0:
        raise InvalidJudgmentError(f"tie_margin must be in [0, 1), got {tie_margin!r}")
    if n < 0:
        raise InvalidJudgmentError(f"n must not be negative, got {n!r}")
    ensure_simulated(store, annotator)
    pairs = sorted(_truth_pairs(store, queue))
    rng = random.Random(seed)
    rng.shuffle(pairs)
    done = {(v["item_id"], samples.vote_pair(v["ranking"]) or WHOLE)
            for v in store.item_votes(kinds="simulated") if v["annotator"] == annotator}
    big = {i for i, size in store.candidate_counts().items() if size > MAX_FULL_RANKING}
    truth = store.truth_rankings()
    rows: list[dict[str, Any]] = []
    counts = {"votes": 0, "flipped": 0, "ties": 0, "skipped": 0, "available": len(pairs)}
    for item_id, i, j, diff in pairs:
        if len(rows) >= n:
            break
        flip = rng.random() < error  # drawn for every pair visited: fixed by the seed
        if (item_id, (i, j)) in done:
            counts["skipped"] += 1
            continue
        choice = simulated_choice(diff, flip, tie_margin)
        counts["flipped"] += flip and choice != "tie"
        counts["ties"] += choice == "tie"
        if (i, j) == WHOLE:  # the truth ranking, or (flipped) its reverse
            ranking = truth[item_id]
            rows.append({"item_id": item_id, "annotator": annotator, "comment": "simulated",
                         "preference": ranking[::-1] if flip else ranking})
            continue
        rows.append(_row(item_id, annotator, i, j, choice, item_id in big))
    store.add_human_judgments(rows)
    counts["votes"] = len(rows)
    return counts


def _row(item_id: int, annotator: str, i: int, j: int, choice: str, partial: bool
         ) -> dict[str, Any]:
    """The judgment of pair (i, j): a partial ranking on a big item (an RL group), else a
    preference over the item's candidates (a two-candidate gold item)."""
    if choice == "tie":
        pref: Any = [[i, j]] if partial else "tie"
    else:
        win, lose = (i, j) if choice == "A" else (j, i)
        pref = [win, lose] if partial else win
    return {"item_id": item_id, "annotator": annotator, "preference": pref,
            "comment": "simulated"}
