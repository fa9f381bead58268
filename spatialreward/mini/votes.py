"""The store's human judgments as training examples for SpatialReward-Mini.

A current judgment of an item says, through its ranking, which candidate beats which:
every candidate of an earlier tie group beats every candidate of a later one (a partial
ranking, e.g. the two candidates an annotator was shown, gives just those pairs; a tie or
"both bad" gives none). Each such (better, worse) is one :class:`PairVote`. Scores
(0..10 per dimension) and corrected regions (boxes on one candidate) are kept per
candidate as extra targets.

Items are split into training and hold-out by a stable hash of their uid
(:func:`is_holdout`), so a vote on an item never moves between the two as more votes
arrive, and no hold-out item is ever trained on.

Every candidate that a vote, score or region names becomes one example: the model inputs
of :func:`~spatialreward.mini.features.prepare` (the same ones a live judgment uses),
the instruction's word ids (the base checkpoint's vocabulary), and per proposal a match
target from the human boxes (:func:`region_targets`).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..images import load_image
from ..regions import box_iou
from .data import IGNORE
from .features import MAX_REGIONS, Features, Tokenizer, prepare

KINDS = ("human", "simulated")
"""Annotator kinds (the store's ``annotators.kind``; a store without it holds people)."""
MATCH_IOU = 0.5
"""A proposal overlapping a human box at this IoU or more is the change that matters."""
CLEAR_IOU = 0.1
"""A proposal overlapping every human box of its candidate less than this is not it;
in between it is left out of the region loss (neither clearly in nor out)."""
SCORE_DIMENSIONS = ("instruction", "preservation", "quality", "overall")


@dataclass(frozen=True)
class PairVote:
    """One annotator's "``better`` beats ``worse``" on one item (candidate indices)."""

    item_id: int
    annotator: str
    kind: str
    better: int
    worse: int


@dataclass
class VoteSet:
    """What the store's current judgments say, for the annotator kinds asked for."""

    pairs: list[PairVote] = field(default_factory=list)
    scores: dict[tuple[int, int], dict[str, float]] = field(default_factory=dict)
    """(item, candidate) -> dimension -> mean human score, 0..10."""
    regions: dict[tuple[int, int], list[tuple[int, int, int, int]]] = field(
        default_factory=dict)
    """(item, candidate) -> corrected boxes, 0..1000 in the source frame."""
    uids: dict[int, str] = field(default_factory=dict)
    """Every item with a vote, score or region -> its uid (the split's key)."""
    judgments: int = 0
    """Current judgments read (of the kinds asked for)."""

    def keys(self) -> list[tuple[int, int]]:
        """Every (item, candidate) some vote, score or region names, sorted."""
        found = {(v.item_id, c) for v in self.pairs for c in (v.better, v.worse)}
        return sorted(found | set(self.scores) | set(self.regions))

    def by_kind(self) -> dict[str, int]:
        """Pair votes per annotator kind."""
        out: dict[str, int] = {}
        for v in self.pairs:
            out[v.kind] = out.get(v.kind, 0) + 1
        return out


def annotator_kinds(store: Any) -> dict[str, str]:
    """Annotator name -> kind. Uses ``Store.annotator_kinds()`` where the store has it;
    an older store without the ``annotators.kind`` column holds only people."""
    if hasattr(store, "annotator_kinds"):
        return {str(k): str(v) for k, v in dict(store.annotator_kinds()).items()}
    columns = {row[1] for row in store.db.execute("PRAGMA table_info(annotators)").fetchall()}
    if "kind" in columns:
        rows = store.db.execute("SELECT name, kind FROM annotators").fetchall()
        return {str(n): str(k or "human") for n, k in rows}
    return {str(a["name"]): "human" for a in store.annotators()}


def ranking_pairs(ranking: Sequence[Sequence[int]]) -> list[tuple[int, int]]:
    """(better, worse) for every two candidates in different tie groups of a ranking.

    >>> ranking_pairs(((2,), (0, 1)))
    [(2, 0), (2, 1)]
    >>> ranking_pairs(((0, 1),))
    []
    """
    out = []
    for a, group in enumerate(ranking):
        for later in ranking[a + 1:]:
            out += [(i, j) for i in group for j in later]
    return out


def read_votes(store: Any, kinds: Iterable[str] = ("human",),
               annotators: Iterable[str] = ()) -> VoteSet:
    """The current judgments of annotators of ``kinds`` (and, when ``annotators`` names
    some, of those only) as pair votes, scores, regions."""
    wanted = set(kinds)
    names = set(annotators)
    kind_of = annotator_kinds(store)
    out = VoteSet()
    score_sums: dict[tuple[int, int], dict[str, list[float]]] = {}
    for j in store.human_judgments():
        kind = kind_of.get(j.annotator, "human")
        if kind not in wanted or j.kind != "judgment" or (names and j.annotator not in names):
            continue
        out.judgments += 1
        named = False
        if j.ranking is not None and not j.both_bad:
            for better, worse in ranking_pairs(j.ranking):
                out.pairs.append(PairVote(j.item_id, j.annotator, kind, better, worse))
                named = True
        for cand, dims in (j.scores or {}).items():
            slot = score_sums.setdefault((j.item_id, int(cand)), {})
            for dim, value in dims.items():
                slot.setdefault(dim, []).append(float(value))
            named = True
        for r in j.regions or []:
            box = tuple(int(v) for v in r["bbox_2d"])
            out.regions.setdefault((j.item_id, int(r.get("candidate", 0))), []).append(
                (box[0], box[1], box[2], box[3]))
            named = True
        if named and j.item_id not in out.uids:
            out.uids[j.item_id] = str(store.item(j.item_id)["uid"])
    out.scores = {k: {d: float(np.mean(v)) for d, v in dims.items()}
                  for k, dims in score_sums.items()}
    return out


def holdout_fraction(uid: str) -> float:
    """A stable number in [0, 1) for an item uid (the first 8 bytes of its SHA-256).

    >>> holdout_fraction("train-0-000001") == holdout_fraction("train-0-000001")
    True
    """
    digest = hashlib.sha256(uid.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def is_holdout(uid: str, share: float) -> bool:
    """True for the items of the hold-out: ``share`` of all uids, the same ones every
    time (growing ``share`` only adds items to it)."""
    return holdout_fraction(uid) < share


def region_targets(f: Features, boxes: Sequence[Sequence[int]]) -> np.ndarray:
    """(MAX_REGIONS,) match targets of one candidate's proposals from human boxes: 1 at
    IoU >= :data:`MATCH_IOU` with some box, 0 below :data:`CLEAR_IOU` with all, else
    ``IGNORE`` (as are the empty proposal slots)."""
    out = np.full(MAX_REGIONS, IGNORE, np.float32)
    for r in range(MAX_REGIONS):
        if not f.valid[r]:
            continue
        best = max(box_iou(tuple(f.boxes[r] * 1000), b) for b in boxes)
        if best >= MATCH_IOU:
            out[r] = 1.0
        elif best < CLEAR_IOU:
            out[r] = 0.0
    return out


def _image_file(store: Any, sha: str) -> Any:
    """The image's file (a store on disk), else its bytes (an in-memory store)."""
    if getattr(store, "data_dir", None) is None:
        return store.image_bytes(sha)
    return store.image_path(sha)


@dataclass
class VoteArrays:
    """N voted candidates as arrays (the model inputs of :mod:`.features`) and targets."""

    source: np.ndarray  # (N, 3, S, S) uint8
    edited: np.ndarray  # (N, 3, S, S) uint8
    heat: np.ndarray  # (N, S, S) uint8
    boxes: np.ndarray  # (N, R, 4) float32
    valid: np.ndarray  # (N, R) bool
    stats: np.ndarray  # (N, 4) float32
    tokens: np.ndarray  # (N, T) int64
    match: np.ndarray  # (N, R) float32, IGNORE where no human box says
    scores: np.ndarray  # (N, 4) float32 in 0..10 (SCORE_DIMENSIONS), NaN where not given
    item: np.ndarray  # (N,) int64 store item id
    candidate: np.ndarray  # (N,) int64
    index: dict[tuple[int, int], int] = field(default_factory=dict)
    """(item, candidate) -> row."""

    def __len__(self) -> int:
        return len(self.item)

    def inputs(self, idx: np.ndarray) -> list[torch.Tensor]:
        """The model's inputs for rows ``idx`` (the order of ``train.INPUTS``)."""
        f = torch.float32
        return [torch.from_numpy(self.source[idx]).to(f) / 255.0,
                torch.from_numpy(self.edited[idx]).to(f) / 255.0,
                torch.from_numpy(self.heat[idx]).to(f) / 255.0,
                torch.from_numpy(self.boxes[idx]), torch.from_numpy(self.valid[idx]),
                torch.from_numpy(self.stats[idx]), torch.from_numpy(self.tokens[idx])]

    def rows(self, pairs: Sequence[PairVote]) -> np.ndarray:
        """(P, 2) rows of (better, worse) for pair votes."""
        return np.array([[self.index[(v.item_id, v.better)], self.index[(v.item_id, v.worse)]]
                         for v in pairs], np.int64).reshape(-1, 2)


def build_examples(store: Any, votes: VoteSet, tokenizer: Tokenizer,
                   workers: int | None = None) -> VoteArrays:
    """Prepare every candidate the votes name (pixel evidence on each: the slow part,
    run on one thread per core; OpenCV and NumPy release the GIL)."""
    keys = votes.keys()
    items = {i: store.item(i) for i in sorted({k[0] for k in keys})}
    # The store is asked on this thread only; the threads read files and compute.
    # Each source is decoded once (a group of G candidates shares it).
    sources = {i: load_image(_image_file(store, item["source_sha256"]))
               for i, item in items.items()}
    files = {k: _image_file(store, items[k[0]]["candidates"][k[1]]) for k in keys}

    def one(key: tuple[int, int]) -> Features:
        return prepare(sources[key[0]], load_image(files[key]))

    n_workers = workers or min(8, len(os.sched_getaffinity(0)))
    with ThreadPoolExecutor(max_workers=n_workers) as pool:
        feats = list(pool.map(one, keys))
    match = np.full((len(keys), MAX_REGIONS), IGNORE, np.float32)
    scores = np.full((len(keys), len(SCORE_DIMENSIONS)), np.nan, np.float32)
    for n, key in enumerate(keys):
        if key in votes.regions:
            match[n] = region_targets(feats[n], votes.regions[key])
        for d, dim in enumerate(SCORE_DIMENSIONS):
            if dim in votes.scores.get(key, {}):
                scores[n, d] = votes.scores[key][dim]
    return VoteArrays(
        **{name: np.stack([getattr(f, name) for f in feats]) if feats
           else np.zeros((0,), np.float32)
           for name in ("source", "edited", "heat", "boxes", "valid", "stats")},
        tokens=np.array([tokenizer.encode(items[k[0]]["instruction"]) for k in keys],
                        np.int64).reshape(len(keys), -1),
        match=match, scores=scores,
        item=np.array([k[0] for k in keys], np.int64),
        candidate=np.array([k[1] for k in keys], np.int64),
        index={k: n for n, k in enumerate(keys)},
    )


def human_ceiling(pairs: list[PairVote]) -> dict[str, Any] | None:
    """How often one annotator agrees with the majority of the others, over candidate
    pairs that at least two annotators voted on (others split evenly: not counted).
    None when no pair has two voters.

    >>> v = [PairVote(1, a, "human", b, w) for a, b, w in
    ...      [("x", 0, 1), ("y", 0, 1), ("w", 0, 1), ("z", 1, 0)]]
    >>> human_ceiling(v)  # x, y, w each agree with the others' majority; z does not
    {'accuracy': 0.75, 'pairs': 1, 'comparisons': 4}
    """
    choices: dict[tuple[int, int, int], dict[str, int]] = {}
    for v in pairs:
        lo, hi = sorted((v.better, v.worse))
        choices.setdefault((v.item_id, lo, hi), {})[v.annotator] = v.better
    agree = total = n_pairs = 0
    for key, by in choices.items():
        if len(by) < 2:
            continue
        n_pairs += 1
        for who, pick in by.items():
            others = [p for a, p in by.items() if a != who]
            lo_votes = sum(p == key[1] for p in others)
            if 2 * lo_votes == len(others):
                continue
            majority = key[1] if 2 * lo_votes > len(others) else key[2]
            agree += pick == majority
            total += 1
    if total == 0:
        return None
    return {"accuracy": round(agree / total, 4), "pairs": n_pairs, "comparisons": total}


def pair_accuracy(pred: np.ndarray, rows: np.ndarray) -> float | None:
    """Share of (better, worse) rows the scores order the same way (ties are wrong).

    >>> pair_accuracy(np.array([1.0, 2.0, 2.0]), np.array([[1, 0], [0, 2], [1, 2]]))
    0.3333333333333333
    """
    if len(rows) == 0:
        return None
    return float(np.mean(pred[rows[:, 0]] > pred[rows[:, 1]]))
