"""The Annotate tab's pair queues (``Annotation.PAIR_QUEUES``: the RL samples).

An RL sample group holds G edits (12, say); nobody ranks twelve images well, so these
queues serve two edits of a group at a time (the pair where the reward is least sure,
from ``next_pair``), shown blind and shuffled as A and B by ``shown_pair``, and a vote
ranks only those two (``vote_pair``). This module holds what differs from the other
queues (what to show, the progress line, why the queue is empty, the model's verdict on
the two edits); :mod:`ui.annotate` lays it out with the same buttons and keys.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .text import plain

NO_RL_SAMPLES = ("no RL samples in the store: push them with `python -m spatialreward "
                 "eval-editor --to-store` or an RL run with samples_to_store")
"""Why a pair queue is empty when no RL sample group is stored, and how to add some."""


def is_pair_queue(ann: Any, queue: str) -> bool:
    """True when ``queue`` is voted a pair at a time (use the ``*_pair`` calls)."""
    return queue in ann.PAIR_QUEUES


def on_screen(state: dict[str, Any] | None) -> tuple[int, list[int]] | None:
    """The ``(item_id, pair)`` on screen, for ``next_pair(after=...)``; None when no pair
    is shown (a plain item, or nothing).

    >>> on_screen({"item_id": 4, "pair": [1, 7]}), on_screen({"item_id": 4}), on_screen(None)
    ((4, [1, 7]), None, None)
    """
    state = state or {}
    if state.get("item_id") is None or state.get("pair") is None:
        return None
    return int(state["item_id"]), [int(k) for k in state["pair"]]


def next_shown(ann: Any, annotator: str, after: tuple[int, Sequence[int]] | None
               ) -> dict[str, Any] | None:
    """The next pair as the annotator sees it (``shown_pair``, with the pair's ``votes``
    so far), behind ``after``; None when the annotator has voted on every pair."""
    found = ann.next_pair(annotator, after=after)
    if found is None:
        return None
    shown = ann.shown_pair(annotator, found["item_id"], found["pair"])
    return {**shown, "votes": int(found.get("votes") or 0)}


def heading(shown: dict[str, Any]) -> str:
    """The line above a pair: the item, which two edits of how many, the instruction.
    Which edit is A stays hidden (the pair is named lowest index first).

    >>> heading({"item_id": 3, "pair": [2, 7], "group_size": 12, "instruction": "red cup"})
    '**Item 3** · edit 2 and 7 of a group of 12 · red cup'
    """
    i, j = shown["pair"]
    return (f"**Item {shown['item_id']}** · edit {i} and {j} of a group of "
            f"{shown['group_size']} · {plain(shown['instruction'])}")


def progress_text(ann: Any, annotator: str, queue: str, votes: int | None = None) -> str:
    """The progress line of a pair queue: RL groups with a vote of the annotator's (a
    group has many pairs, so "judged" means at least one of its pairs), and how many
    votes the pair on screen already has (``votes``; None: no pair on screen)."""
    done = ann.progress(annotator, queue)
    text = (f"You voted on pairs of {done.judged} of {done.total} RL sample "
            f"group{'s' if done.total != 1 else ''}")
    if votes is not None:
        text += f" · this pair has {votes} vote{'s' if votes != 1 else ''} so far"
    return text


def progress_line(ann: Any, annotator: str, queue: str, state: dict[str, Any]) -> str:
    """The progress line after a vote or an undo: a pair queue's, or the item queue's."""
    if state.get("pair") is not None:
        return progress_text(ann, annotator, queue)
    return str(ann.progress(annotator, queue))


def empty_reason(ann: Any, annotator: str, queue: str) -> str:
    """Why a pair queue has nothing for ``annotator`` now, and what to do about it (the
    pair queue's own reasons: the item queues' would count items, not pairs)."""
    groups = ann.progress(annotator, queue).total
    if groups == 0:
        return f"This queue is empty: {NO_RL_SAMPLES}. Pick another queue."
    return (f"You have voted on every pair of the {groups} RL sample "
            f"group{'s' if groups != 1 else ''}. Pick another queue, or undo a vote to "
            "change it.")


def vote(ann: Any, annotator: str, state: dict[str, Any], choice: str, **details: Any
         ) -> int:
    """Store the vote on the pair on screen (``choice``: A, B, tie, both bad, in the shown
    labels of ``state["order"]``); returns the judgment id."""
    return int(ann.vote_pair(annotator, state["item_id"], state["pair"], choice,
                             order=state["order"], **details))


def full_order(order: Sequence[int], group_size: int) -> list[int]:
    """The shown pair first, then the group's other edits: the order to ask the item
    verdict for, so that A and B keep their labels.

    >>> full_order([5, 1], 6)
    [5, 1, 0, 2, 3, 4]
    """
    rest = [k for k in range(group_size) if k not in order]
    return [*order, *rest]


def restrict_to_pair(verdict: dict[str, Any], order: Sequence[int]) -> dict[str, Any]:
    """The model's verdict on the whole group (labels A, B, C, ... with the pair as A and
    B) cut down to the pair: its pick between A and B only (the group's best edit may be
    neither), and only A's and B's scores, errors and low coverage.

    >>> v = {"backend": "m", "version": "1", "overall": {"A": 4.0, "B": 6.5, "C": 9.0},
    ...      "pick": "C", "preferred": 2, "errors": {}, "low_coverage": {}}
    >>> cut = restrict_to_pair(v, [5, 1])
    >>> cut["overall"], cut["pick"], cut["preferred"]
    ({'A': 4.0, 'B': 6.5}, 'B', 1)
    """
    keep = ("A", "B")
    overall = {label: verdict["overall"].get(label) for label in keep}
    a, b = overall["A"], overall["B"]
    pick: str | None = None
    preferred: int | None = None
    if a is not None and b is not None:
        if abs(a - b) <= 1e-9:
            pick = "tie"
        else:
            pick = "A" if a > b else "B"
            preferred = int(order[keep.index(pick)])
    return {**verdict, "overall": overall, "pick": pick, "preferred": preferred,
            "errors": {k: v for k, v in (verdict.get("errors") or {}).items() if k in keep},
            "low_coverage": {k: v for k, v in (verdict.get("low_coverage") or {}).items()
                             if k in keep}}


def verdict(ann: Any, state: dict[str, Any]) -> dict[str, Any]:
    """The model's verdict on the pair on screen, in its shown labels A and B."""
    order = [int(k) for k in state["order"]]
    group = ann.verdict(state["item_id"], full_order(order, int(state["group_size"])))
    return restrict_to_pair(group, order)


def unmasked(state: dict[str, Any]) -> str:
    """Which edits of the group A and B were: said after the vote only.

    >>> unmasked({"order": [7, 2], "group_size": 12})
    'A was edit 7 and B edit 2 of the group of 12.'
    """
    a, b = state["order"]
    return f"A was edit {a} and B edit {b} of the group of {state['group_size']}."
