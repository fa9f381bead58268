"""Annotation over a :class:`~storage.store.Store`: queues, the next item, blind side order,
votes mapped back to candidates, undo, progress.

An annotator sees an item's candidates in a shuffled order under the labels A, B, C, ... The
order is a pure function of (annotator, item) (:func:`side_order`), so a reload shows the
same sides, and every choice the annotator makes in labels (``"A"``, ``"B > A = C"``, scores
and regions keyed by label) is mapped back to real candidate indices before it is stored.
The model's verdict is not part of what is shown; :func:`model_verdict` describes it, in the
same labels, for after the vote.

Votes follow the store's append-only rules: voting again on an item supersedes the
annotator's current judgment of it (an edit), and :func:`undo_last` undoes the annotator's
most recent current judgment: an edit goes back to the vote before it, a first vote is
retracted (``Store.undo_human_judgment``).

Every function here takes the store first and raises the store's named errors
(``UnknownItemError``, ``UnknownAnnotatorError``, ``InvalidJudgmentError``) or
``InputError`` for a queue name that does not exist.
"""

from __future__ import annotations

import hashlib
import math
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from spatialreward.errors import (
    InputError,
    InvalidJudgmentError,
    NotYourJudgmentError,
    UnknownAnnotatorError,
    UnknownItemError,
)
from spatialreward.judgment import Judgment

from . import samples
from .agreement import disagreement_queue, model_label
from .store import MAX_NAME_CHARS, SCORE_DIMENSIONS, Store

QUEUES = {
    "all": "All items",
    "disagreements": "Model and human majority disagree",
    "needs_votes": "Needs more votes",
    "gold": "Gold items (known answer)",
    "flagged": "Flagged items",
    "rl_samples": "RL samples: the policy's own edits",
}
"""Queue name -> what it holds (the UI's dropdown labels)."""
MIN_VOTES = 2
"""An item with fewer current judgments than this is in the ``needs_votes`` queue."""
LABELS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


# -- who is annotating ------------------------------------------------------------------


def resolve_annotator(store: Store, name: str | None, logged_in: str | None = None,
                      auth: bool = False) -> str:
    """The registered annotator a request acts for.

    With a login (``logged_in``, the app's authenticated user) that user is the
    annotator, and asking for anyone else is refused; ``auth`` without a login is
    refused too. Otherwise ``name`` must be a registered annotator."""
    requested = (name or "").strip()
    if logged_in:
        if requested and requested != logged_in:
            raise NotYourJudgmentError(
                f"you are logged in as {logged_in!r} and cannot vote or undo as {requested!r}; "
                "leave the annotator empty or use your own name")
        requested = logged_in
    elif auth:
        raise UnknownAnnotatorError("this Studio requires a login; log in to annotate")
    if not requested:
        raise UnknownAnnotatorError("no annotator name given; type your name first")
    store.annotator_id(requested)  # UnknownAnnotatorError when not registered
    return requested


def is_registered(store: Store, name: str) -> bool:
    return name in store.annotator_kinds()


def register(store: Store, name: str) -> str:
    """Register ``name`` as a new annotator (role ``annotator``, no password); returns
    the stored name."""
    name = (name or "").strip()
    if len(name) > MAX_NAME_CHARS or any(not c.isprintable() for c in name):
        raise InvalidJudgmentError(
            f"an annotator name must be at most {MAX_NAME_CHARS} printable characters")
    store.add_annotator(name, role="annotator")
    return name


# -- queues -----------------------------------------------------------------------------


def queue_items(store: Store, queue: str, backend: str | None = None) -> list[int]:
    """The item ids of ``queue`` (see :data:`QUEUES`), in the order they are served.

    ``disagreements``: the model's pick differs from the human majority, the model's most
    confident mistakes first (``backend``: the model judgments to compare, default the
    backend with the most stored judgments); ``needs_votes``: fewer than
    :data:`MIN_VOTES` current judgments, fewest first; ``gold``: items with a truth
    ranking; ``flagged``: most recently flagged first; ``rl_samples``: RL groups, oldest first."""
    listed = {"all": store.queued_item_ids, "gold": lambda: list(store.truth_rankings()),
              "flagged": store.flagged_items,
              "rl_samples": lambda: store.origin_item_ids(samples.ORIGIN)}
    if queue in listed:
        return listed[queue]()
    if queue in ("disagreements", "needs_votes"):
        q = disagreement_queue(store, backend, min_judgments=MIN_VOTES, limit=None)
        rows = q["disagreements"] if queue == "disagreements" else q["needs_judgments"]
        return [int(r["item_id"]) for r in rows]
    raise InputError(f"no queue {queue!r}; choose one of {', '.join(QUEUES)}")


def judged_items(store: Store, annotator: str) -> set[int]:
    """Items ``annotator`` has a current (not undone, not superseded) judgment of."""
    return store.judged_item_ids(annotator)


def next_item(store: Store, annotator: str, queue: str = "all", *, after: int | None = None,
              backend: str | None = None) -> int | None:
    """The first item of ``queue`` that ``annotator`` has not judged; None when none is left.
    With ``after`` (the item on screen) the search starts behind it and wraps around, so
    "next" skips an item unvoted. ``rl_samples``: the item of :func:`samples.next_pair`."""
    if queue == "rl_samples":
        pair = samples.next_pair(store, annotator, backend=backend)
        return None if pair is None else int(pair["item_id"])
    items = queue_items(store, queue, backend)
    done = judged_items(store, annotator)
    if after is not None and after in items:
        k = items.index(after) + 1
        items = items[k:] + items[:k]  # ``after`` itself comes last
    return next((i for i in items if i not in done), None)


def empty_queue_reason(store: Store, annotator: str, queue: str,
                       backend: str | None = None) -> str:
    """Why :func:`next_item` found nothing for ``annotator`` in ``queue``, and what to do."""
    all_items = store.queued_item_ids()  # a bench run's items are not queued unless asked
    if not all_items:
        return "The store is empty: save items in Inspect or import a folder in Data."
    if items := queue_items(store, queue, backend):
        return (f"You have judged all {len(items)} items of this queue. Pick another "
                "queue, or undo a vote to change it.")
    if queue == "disagreements":
        q = disagreement_queue(store, backend, min_judgments=MIN_VOTES, limit=None)
        if q["backend"] is None:
            return ("No model has judged a stored item yet, so there is nothing to disagree "
                    "with: judge items in Inspect or Bench, or pick another queue.")
        few = sum(1 for r in q["needs_judgments"] if r["judgments"] >= 1)
        if few == 0 and (enough := len(all_items) - q["total_needing_judgments"]):
            return (f"No disagreement: on the {enough} items with at least {MIN_VOTES} "
                    "votes the model's pick matches the human majority (or the majority is "
                    "a tie or both bad). Pick another queue.")
        return (f"Disagreement needs at least {MIN_VOTES} voters on an item: {few} "
                f"item{'s have' if few != 1 else ' has'} one vote so far; ask a second "
                "annotator or pick another queue.")
    why = {"needs_votes": f"every item has at least {MIN_VOTES} votes",
           "gold": "no item has a known answer (import a dataset with truth rankings)",
           "flagged": "no item is flagged", "rl_samples": "no RL sample group is stored "
           "(eval-editor --to-store)"}.get(queue, "it holds no items")
    return f"This queue is empty: {why}. Pick another queue."


@dataclass(frozen=True)
class Progress:
    judged: int
    total: int

    def __str__(self) -> str:
        return f"{self.judged} of {self.total} items in this queue judged by you"


def progress(store: Store, annotator: str, queue: str, backend: str | None = None) -> Progress:
    items = queue_items(store, queue, backend)
    done = judged_items(store, annotator)
    return Progress(sum(i in done for i in items), len(items))


# -- blind side order ---------------------------------------------------------------------


def side_order(annotator: str, item_id: int, n: int) -> list[int]:
    """The candidate shown at each position (position 0 is labelled A), shuffled but the
    same for the same annotator and item on every call.

    >>> side_order("ann", 7, 3) == side_order("ann", 7, 3)
    True
    >>> sorted(side_order("ann", 7, 3))
    [0, 1, 2]
    """
    if not 1 <= n <= len(LABELS):
        raise InvalidJudgmentError(
            f"an item with {n} candidates cannot be annotated (1..{len(LABELS)} supported)")
    seed = hashlib.sha256(f"{annotator}\x1f{item_id}".encode()).digest()
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return order


def labels(n: int) -> list[str]:
    """The shown labels of ``n`` candidates.

    >>> labels(3)
    ['A', 'B', 'C']
    """
    return list(LABELS[:n])


def check_order(order: Sequence[int], n: int) -> list[int]:
    """``order`` as a list, when it shows each of the ``n`` candidates once."""
    try:
        out = [int(k) for k in order]
    except (TypeError, ValueError):
        raise InvalidJudgmentError(f"shown order {order!r} must list candidate indices") from None
    if sorted(out) != list(range(n)):
        raise InvalidJudgmentError(
            f"shown order {out} must list each of the {n} candidates (0..{n - 1}) once")
    return out


def _position(label: str, order: Sequence[int]) -> int:
    """The real candidate index behind a shown label (``"A"``) or 1-based position."""
    text = str(label).strip().upper()
    n = len(order)
    if len(text) == 1 and text in LABELS[:n]:
        return order[LABELS.index(text)]
    if text.isdigit() and 1 <= int(text) <= n:
        return order[int(text) - 1]
    raise InvalidJudgmentError(
        f"{label!r} is not a shown candidate; use {', '.join(LABELS[:n])} "
        f"(or 1..{n})")


def preference(choice: str, order: Sequence[int]) -> int | str | list[Any]:
    """The store's preference for a choice made on screen.

    ``choice``: a label (``"A"``) or 1-based position (``"1"``) for the better candidate,
    ``"tie"``, ``"both bad"``, or a ranking in labels, best first, ``=`` joining ties.

    >>> preference("A", [1, 0])
    1
    >>> preference("2", [1, 0])
    0
    >>> preference("B > A = C", [2, 0, 1])
    [0, [2, 1]]
    >>> preference("both bad", [0, 1])
    'both_bad'
    """
    if not isinstance(choice, str) or not choice.strip():
        raise InvalidJudgmentError(
            "no choice given; vote A, B, tie, both bad, or a ranking like 'B > A = C'")
    key = re.sub(r"[\s_-]+", "_", choice.strip().lower())
    if key == "tie":
        return "tie"
    if key in ("both_bad", "bad"):
        return "both_bad"
    if ">" not in choice and "=" not in choice:
        return _position(choice, order)
    groups: list[Any] = []
    for part in choice.split(">"):
        members = [_position(m, order) for m in part.split("=")]
        groups.append(members[0] if len(members) == 1 else members)
    flat = [k for g in groups for k in (g if isinstance(g, list) else [g])]
    if sorted(flat) != sorted(order):
        raise InvalidJudgmentError(
            f"ranking {choice!r} must name each of {', '.join(LABELS[:len(order)])} once")
    return groups


def _map_scores(scores: Mapping[str, Any] | None, order: Sequence[int]
                ) -> dict[int, Any] | None:
    if not scores:
        return None
    if not isinstance(scores, Mapping):
        raise InvalidJudgmentError("scores must map a shown label to {dimension: 0..10}")
    return {_position(label, order): dims for label, dims in scores.items()}


def _map_regions(regions: Sequence[Mapping[str, Any]] | None, order: Sequence[int]
                 ) -> list[dict[str, Any]] | None:
    if not regions:
        return None
    out = []
    for r in regions:
        if not isinstance(r, Mapping) or "candidate" not in r:
            raise InvalidJudgmentError(
                "a region needs the shown candidate's label and bbox_2d [x1, y1, x2, y2]")
        out.append({**r, "candidate": _position(r["candidate"], order)})
    return out


# -- votes --------------------------------------------------------------------------------


def annotate(store: Store, annotator: str, item_id: int, choice: str, *,
             order: Sequence[int] | None = None, scores: Mapping[str, Any] | None = None,
             regions: Sequence[Mapping[str, Any]] | None = None, comment: str = "",
             seconds_spent: float | None = None) -> int:
    """Store ``annotator``'s vote on ``item_id``; returns the judgment's id.

    ``choice`` (see :func:`preference`), ``scores`` (``{"A": {"overall": 7}}``) and
    ``regions`` (``[{"candidate": "A", "bbox_2d": [x1, y1, x2, y2]}]``, 0..1000) are in
    the shown labels of ``order`` (default: :func:`side_order`). A second vote on the same
    item supersedes the first."""
    n = int(store.item(item_id)["n_candidates"])  # UnknownItemError
    store.annotator_id(annotator)  # UnknownAnnotatorError
    shown = side_order(annotator, item_id, n) if order is None else check_order(order, n)
    pref = preference(choice, shown)
    mapped_scores = _map_scores(scores, shown)
    mapped_regions = _map_regions(regions, shown)
    with store.write():  # the lookup and the insert are one step for concurrent votes
        previous = store.last_human_judgment(annotator, item_id)
        return store.add_human_judgment(
            item_id, annotator, pref, scores=mapped_scores, regions=mapped_regions,
            comment=(comment or "").strip(), seconds_spent=seconds_spent,
            supersedes=None if previous is None else previous.id)


@dataclass(frozen=True)
class Undone:
    """What :func:`undo_last` did."""

    retraction_id: int
    """The row the undo wrote: a retraction, or (``restored``) a judgment that brings
    back the vote before the undone edit."""
    judgment_id: int
    """The judgment undone."""
    item_id: int
    restored: bool = False
    """True when the undo went back to the previous vote (the undone row was an edit)."""

    @property
    def current_id(self) -> int | None:
        """The annotator's current judgment of the item after the undo (None: no vote)."""
        return self.retraction_id if self.restored else None


def undo_last(store: Store, annotator: str) -> Undone:
    """Undo ``annotator``'s most recent current judgment (never anyone else's): an edit
    goes back to the vote before it, a first vote is retracted."""
    store.annotator_id(annotator)  # UnknownAnnotatorError
    with store.write():
        last = store.last_human_judgment(annotator)
        if last is None:
            raise InvalidJudgmentError(f"{annotator!r} has no current vote to undo")
        rid = store.undo_human_judgment(last.id, annotator)
        restored = store.human_judgment(rid).kind == "judgment"
    return Undone(rid, last.id, last.item_id, restored)


# -- what is shown ------------------------------------------------------------------------


def shown_item(store: Store, annotator: str, item_id: int) -> dict[str, Any]:
    """What the annotator sees of an item: instruction, source and candidate image hashes
    in shown order, and the order itself (``order[k]``: the candidate labelled
    ``labels[k]``)."""
    item = store.item(item_id)
    order = side_order(annotator, item_id, int(item["n_candidates"]))
    return {"item_id": int(item_id), "instruction": item["instruction"],
            "n_candidates": len(order), "order": order, "labels": labels(len(order)),
            "source": item["source_sha256"],
            "candidates": [item["candidates"][k] for k in order]}


def predicted_regions(store: Store, item_id: int, order: Sequence[int],
                      backend: str | None = None) -> dict[str, list[dict[str, Any]]]:
    """The regions of the latest stored model judgment of each candidate (of ``backend``
    when given), by shown label; labels without a stored judgment are left out."""
    latest = store.latest_model_judgments(item_id, backend)
    out: dict[str, list[dict[str, Any]]] = {}
    for pos, k in enumerate(order):
        if k in latest:
            regions = latest[k].get("regions", [])
            out[LABELS[pos]] = [{"bbox_2d": list(r["bbox_2d"]), "label": r.get("label", "")}
                                for r in regions]
    return out


def model_verdict(judgments: Sequence[Judgment], order: Sequence[int]) -> dict[str, Any]:
    """The model's verdict on an item in shown labels: its overall score per label and
    the label it prefers (``tie`` when the top is shared, None when a candidate has no
    score), and the labels it judged with low coverage (``low_coverage``: label -> why)."""
    by_candidate = {k: j for k, j in enumerate(judgments)}
    overall = {LABELS[pos]: by_candidate[k].overall for pos, k in enumerate(order)}
    scored = {k: j.overall for k, j in by_candidate.items() if j.overall is not None}
    pick = preferred = None
    if judgments and len(scored) == len(judgments):
        top = model_label(scored)
        preferred = None if top == "tie" else int(top)
        pick = "tie" if preferred is None else LABELS[list(order).index(preferred)]
    first = judgments[0] if judgments else None
    return {"backend": None if first is None else first.backend,
            "version": None if first is None else first.backend_version,
            "overall": overall, "pick": pick, "preferred": preferred,
            "errors": {LABELS[pos]: by_candidate[k].error for pos, k in enumerate(order)
                       if by_candidate[k].error},
            # labels the model judged without reading all of the request, with why
            "low_coverage": {LABELS[pos]: "; ".join(c.reasons) for pos, k in enumerate(order)
                             if (c := by_candidate[k].coverage) is not None and c.low}}


def vote_label(store: Store, judgment_id: int, order: Sequence[int]) -> str:
    """A stored judgment in shown labels: ``A``, ``tie``, ``both bad`` or a ranking."""
    try:
        vote = store.human_judgment(judgment_id)
    except UnknownItemError:
        raise InvalidJudgmentError(f"no human judgment {judgment_id}") from None
    pos = {k: LABELS[p] for p, k in enumerate(order)}
    if vote.both_bad:
        return "both bad"
    ranking = vote.ranking or ()
    # A single pick over a tie of the rest reads as that pick; anything else as a ranking.
    if len(order) > 2 and len(ranking) > 1 and not (len(ranking) == 2 and len(ranking[1]) > 1):
        return " > ".join(" = ".join(pos[k] for k in g) for g in ranking)
    return "tie" if vote.preferred is None else pos[int(vote.preferred)]


# -- the optional fields, as typed on screen ----------------------------------------------


_REGION_LINE = re.compile(
    r"^\s*([A-Za-z])\s*:?\s*(\d+)\s*[,\s]\s*(\d+)\s*[,\s]\s*(\d+)\s*[,\s]\s*(\d+)\s*(.*)$")


def format_regions(regions: Mapping[str, Sequence[Mapping[str, Any]]]) -> str:
    """One line per box, ``A: x1,y1,x2,y2 label``.

    >>> format_regions({"A": [{"bbox_2d": [1, 2, 30, 40], "label": "cup"}]})
    'A: 1,2,30,40 cup'
    """
    lines = []
    for label, boxes in regions.items():
        for b in boxes:
            text = f"{label}: {','.join(str(int(v)) for v in b['bbox_2d'])}"
            lines.append(f"{text} {b.get('label', '')}".rstrip())
    return "\n".join(lines)


def parse_regions(text: str | None, n: int) -> list[dict[str, Any]] | None:
    """Boxes typed one per line as ``A: x1,y1,x2,y2 optional label`` (0..1000); None
    for empty text.

    >>> parse_regions("B: 10, 20, 300, 400 the cup", 2)
    [{'candidate': 'B', 'bbox_2d': [10, 20, 300, 400], 'label': 'the cup'}]
    """
    out = []
    for lineno, line in enumerate((text or "").splitlines(), 1):
        if not line.strip():
            continue
        m = _REGION_LINE.match(line)
        if m is None or m.group(1).upper() not in LABELS[:n]:
            raise InvalidJudgmentError(
                f"region line {lineno} ({line.strip()!r}): write 'A: x1,y1,x2,y2' with a "
                f"shown label ({', '.join(LABELS[:n])}) and four numbers 0..1000")
        box = [int(m.group(k)) for k in range(2, 6)]
        if not (all(0 <= v <= 1000 for v in box) and box[0] < box[2] and box[1] < box[3]):
            raise InvalidJudgmentError(
                f"region line {lineno}: box {box} must have x1 < x2 and y1 < y2, in 0..1000")
        out.append({"candidate": m.group(1).upper(), "bbox_2d": box,
                    "label": m.group(6).strip()})
    return out or None


def parse_scores(rows: Sequence[Sequence[Any]] | None) -> dict[str, dict[str, float]] | None:
    """Scores from table rows ``[label, instruction, preservation, quality, overall]``;
    blank cells are skipped; None when nothing was scored.

    >>> parse_scores([["A", 7, "", None, "8"], ["B", None, None, None, None]])
    {'A': {'instruction': 7.0, 'overall': 8.0}}
    """
    out: dict[str, dict[str, float]] = {}
    for row in rows or []:
        if not row:
            continue
        label, values = str(row[0]).strip(), list(row[1:])
        dims: dict[str, float] = {}
        for dim, v in zip(SCORE_DIMENSIONS, values, strict=False):
            if v is None or (isinstance(v, str) and not v.strip()):
                continue
            try:
                x = float(v)
            except (TypeError, ValueError):
                raise InvalidJudgmentError(
                    f"score {dim} of {label} must be a number 0..10, got {v!r}") from None
            if math.isnan(x):
                continue
            if not 0 <= x <= 10:
                raise InvalidJudgmentError(f"score {dim} of {label} must be 0..10, got {v!r}")
            dims[dim] = x
        if dims:
            out[label] = dims
    return out or None
