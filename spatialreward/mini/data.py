"""Training arrays for SpatialReward-Mini from SynthEdit datasets (pair format + ground truth).

Each candidate becomes one example: the model inputs (:func:`features.prepare`), the
rubric targets (sc, pq), and per proposed region the facts of the ground-truth region
it overlaps (colour and shape before and after) and whether it is the change the
instruction asked for. Examples of one item share an ``item`` id for the ranking loss.
"""

from __future__ import annotations

import multiprocessing
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..images import load_image
from ..regions import box_iou
from ..synth.language import COLORS, OPERATIONS, POSITIONS, SHAPES
from .features import MAX_REGIONS, MAX_TOKENS, SIZE, Tokenizer, prepare

IGNORE = -100
# Flaws whose target region still shows the requested change.
_MATCHING = {"correct", "collateral", "over_edit", "artifact"}


def _color(facts: dict | None) -> int:
    return len(COLORS) if facts is None else COLORS.index(facts["color"])


def _shape(facts: dict | None) -> int:
    return len(SHAPES) if facts is None else SHAPES.index(facts["shape"])


@dataclass
class Arrays:
    """N examples, numpy, ready to become tensors."""

    source: np.ndarray  # (N, 3, S, S) uint8
    edited: np.ndarray
    heat: np.ndarray  # (N, S, S) uint8
    boxes: np.ndarray  # (N, R, 4) float32
    valid: np.ndarray  # (N, R) bool
    stats: np.ndarray  # (N, 4) float32
    tokens: np.ndarray  # (N, T) int64
    sc: np.ndarray  # (N, 2) float32, 0..25
    pq: np.ndarray
    overall: np.ndarray  # (N,)
    facts: np.ndarray  # (N, R, 4) int64: before colour, after colour, before shape, after shape
    match: np.ndarray  # (N, R) float32 (IGNORE where no ground-truth region overlaps)
    item: np.ndarray  # (N,) int64
    flaw: np.ndarray  # (N,) str
    slots: np.ndarray  # (N, 7) int64: what the instruction asks (model.SLOTS)

    def __len__(self) -> int:
        return len(self.item)

    def save(self, path: Path) -> None:
        np.savez(path, **self.__dict__)

    @classmethod
    def concat(cls, parts: list[Arrays]) -> Arrays:
        """One set from several; item ids are renumbered so items stay apart."""
        offset, items = 0, []
        for a in parts:
            items.append(a.item + offset)
            offset += int(a.item.max()) + 1 if len(a) else 0
        merged = {k: np.concatenate([getattr(a, k) for a in parts]) for k in parts[0].__dict__}
        merged["item"] = np.concatenate(items)
        return cls(**merged)

    @classmethod
    def load(cls, path: Path) -> Arrays:
        with np.load(path, allow_pickle=False) as z:
            return cls(**{k: z[k] for k in z.files})


def _example(job: tuple[str, str, str, dict, int]) -> dict:
    source_path, cand_path, instruction, truth, item = job
    f = prepare(load_image(source_path), load_image(cand_path))
    facts = np.full((MAX_REGIONS, 4), IGNORE, np.int64)
    match = np.full(MAX_REGIONS, IGNORE, np.float32)
    for r in range(MAX_REGIONS):
        if not f.valid[r]:
            continue
        box = tuple(f.boxes[r] * 1000)
        best, best_iou = None, 0.3  # a proposal must overlap a true change to learn from it
        for region in truth["regions"]:
            iou = box_iou(box, region["bbox_2d"])
            if iou > best_iou:
                best, best_iou = region, iou
        if best is None:
            match[r] = 0.0  # a change nobody asked for (or noise)
            continue
        facts[r] = [_color(best["before"]), _color(best["after"]),
                    _shape(best["before"]), _shape(best["after"])]
        match[r] = float(best["role"] == "target" and truth["flaw"] in _MATCHING)
    return {"source": f.source, "edited": f.edited, "heat": f.heat, "boxes": f.boxes,
            "valid": f.valid, "stats": f.stats, "sc": np.array(truth["sc"], np.float32),
            "pq": np.array(truth["pq"], np.float32), "overall": np.float32(truth["overall"]),
            "facts": facts, "match": match, "item": item, "flaw": truth["flaw"],
            "instruction": instruction}


def task_slots(task: dict) -> list[int]:
    """Class indices of the structured task, in the order of ``model.SLOTS``."""
    target = task.get("target") or {}
    direction = {"bigger": 0, "smaller": 1}.get(task.get("direction") or "", 2)
    return [
        OPERATIONS.index(task["op"]),
        _color(target or None),
        _shape(target or None),
        COLORS.index(task["color"]) if task.get("color") else len(COLORS),
        SHAPES.index(task["shape"]) if task.get("shape") else len(SHAPES),
        POSITIONS.index(task["position"]) if task.get("position") else len(POSITIONS),
        direction,
    ]


def item_slots(dataset: Path, limit: int | None = None) -> np.ndarray:
    """(items, 7) slot targets for every item of a SynthEdit dataset, in file order."""
    from storage.pairs import iter_pairs

    rows = []
    for k, item in enumerate(iter_pairs(dataset)):
        if limit is not None and k >= limit:
            break
        rows.append(task_slots(item.metadata["task"]))
    return np.array(rows, np.int64)


def build_arrays(dataset: Path, tokenizer: Tokenizer | None = None, limit: int | None = None,
                 workers: int = 2) -> tuple[Arrays, Tokenizer]:
    """Prepare every candidate of a SynthEdit pairs.jsonl (needs ``candidate_truth``)."""
    from storage.pairs import iter_pairs

    jobs = []
    for k, item in enumerate(iter_pairs(dataset)):
        if limit is not None and k >= limit:
            break
        truth = item.metadata.get("candidate_truth")
        if truth is None:
            raise ValueError(f"{dataset}: item {item.id} has no candidate_truth "
                             "(train on a dataset written by `synth`)")
        for cand, t in zip(item.candidates, truth, strict=True):
            jobs.append((str(item.source), str(cand), item.instruction, t, k))
    if workers > 1:
        ctx = multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")
        with ctx.Pool(workers) as pool:
            rows = pool.map(_example, jobs, chunksize=32)
    else:
        rows = [_example(j) for j in jobs]
    if tokenizer is None:
        tokenizer = Tokenizer.build([r["instruction"] for r in rows])
    arrays = Arrays(
        **{k: np.stack([r[k] for r in rows]) for k in
           ("source", "edited", "heat", "boxes", "valid", "stats", "sc", "pq", "facts", "match")},
        overall=np.array([r["overall"] for r in rows], np.float32),
        tokens=np.array([tokenizer.encode(r["instruction"]) for r in rows], np.int64),
        item=np.array([r["item"] for r in rows], np.int64),
        flaw=np.array([r["flaw"] for r in rows]),
        slots=item_slots(dataset, limit)[[r["item"] for r in rows]],
    )
    assert arrays.source.shape[1:] == (3, SIZE, SIZE) and arrays.tokens.shape[1] == MAX_TOKENS
    return arrays, tokenizer
