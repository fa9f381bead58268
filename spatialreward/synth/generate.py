"""Write SynthEdit datasets in the pair format: ``DIR/pairs.jsonl`` + ``DIR/images/``.

Every item is built from its own random stream, ``SeedSequence([split, seed, index])``,
so the same (split, seed, n) writes the same bytes however many worker processes
share the work, and the splits never share a stream.

- ``pairs`` mode: the correct edit vs one flawed edit (flaw drawn uniformly from those
  that apply to the operation), in random order; ``ranking`` says which is better.
- ``groups`` mode: the correct edit plus K-1 different flaws, ranked by the rubric's
  overall score (equal scores form a tie group).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..errors import ConfigError
from . import rubric
from .degrade import jpeg, reencode
from .edits import APPLICABLE, Candidate, Editor, EditTask, random_task
from .language import COLORS, POSITIONS, phrase
from .render import TRUE_DELTA_E, mask_box, rgb_to_lab
from .scenes import PHOTOS, Scene, _photo, make_scene

SPLITS = {"train": 0, "val": 1, "test": 2, "hard": 3}


@dataclass(frozen=True)
class SynthConfig:
    """What ``python -m spatialreward synth`` writes."""

    out: Path = field(metadata={"help": "output folder (pairs.jsonl + images/)"})
    n: int = field(default=100, metadata={"help": "number of items"})
    seed: int = field(default=0, metadata={"help": "seed; same seed, same bytes"})
    split: str = field(default="train", metadata={"help": "train | val | test | hard"})
    group_size: int = field(default=2, metadata={"help": "candidates per item (2 = pairs)"})
    workers: int = field(default=0, metadata={"help": "processes (0 = one per CPU core)"})
    hard_scenes: bool = field(default=False, metadata={
        "help": "small, low-contrast scenes like the hard split, with this split's phrasings"})

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise ConfigError(f"split must be one of {', '.join(SPLITS)}, got {self.split!r}")
        if self.n < 1:
            raise ConfigError(f"--n must be at least 1, got {self.n}")
        if not 2 <= self.group_size <= 8:
            raise ConfigError(f"--groups K needs 2 <= K <= 8, got {self.group_size}")
        if self.seed < 0:
            raise ConfigError(f"--seed must be non-negative, got {self.seed}")


def item_rng(split: str, seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([SPLITS[split], seed, index]))


def describe(source_lab: np.ndarray, cand: Candidate, target_footprint: np.ndarray
             ) -> dict[str, Any]:
    """Ground truth of one candidate: flaw, sc/pq targets, changed regions with facts."""
    # CIE76 difference from the clean source, (h, w)
    changed = np.linalg.norm(rgb_to_lab(cand.image) - source_lab, axis=2) > TRUE_DELTA_E
    outside = rubric.outside_fraction(changed, target_footprint)
    sc, pq = rubric.targets(cand.flaw, outside)
    regions = []
    for ch in cand.changes:
        box = mask_box(changed & ch["mask"])  # the changed pixels this change touched
        if box is not None:
            regions.append({"bbox_2d": list(box), "role": ch["role"], "before": ch["before"],
                            "after": ch["after"]})
    return {"flaw": cand.flaw, "sc": list(sc), "pq": list(pq),
            "overall": rubric.overall(sc, pq), "regions": regions,
            "global_change": cand.flaw == "over_edit"}


def instruction_for(scene: Scene, task: EditTask, rng: np.random.Generator, split: str):
    so = None if task.target is None else scene.objects[task.target]
    return phrase(
        task.op, rng, allow_held_out=split != "train",
        obj=so.name if so is not None else f"{task.color} {task.shape}",
        color=task.color,
        new_obj=f"{task.color} {task.shape}" if task.op == "replace" else "",
        position="" if task.cell is None else POSITIONS[task.cell],
        direction=task.direction,
    )


def make_item(split: str, seed: int, index: int, group_size: int, hard_scenes: bool = False
              ) -> tuple[dict[str, Any], np.ndarray, list[np.ndarray]]:
    """One item: (JSON dict without paths, source image, candidate images).

    ``hard_scenes`` draws the hard split's scenes (small, low-contrast objects, near
    colours) under another split's stream and phrasings: training data that looks like
    the hard split without sharing its seeds or its held-out phrasings."""
    rng = item_rng(split, seed, index)
    hard = split == "hard" or hard_scenes
    scene = make_scene(rng, hard=hard)
    task = random_task(scene, rng)
    words = instruction_for(scene, task, rng, split)
    editor = Editor(scene, rng)
    flaws = list(rng.permutation(APPLICABLE[task.op])[: group_size - 1])
    cands = [editor.correct(task)] + [editor.flawed(task, str(f)) for f in flaws]
    footprint = np.zeros(editor.source.shape[:2], bool)
    for ch in cands[0].changes:
        footprint |= ch["mask"]
    source_lab = rgb_to_lab(editor.source)
    truth = [describe(source_lab, c, footprint) for c in cands]
    order = rng.permutation(len(cands))  # the correct edit is not always first
    cands = [cands[i] for i in order]
    truth = [truth[i] for i in order]
    # Rank by the rubric; equal scores tie.
    scores = sorted({t["overall"] for t in truth}, reverse=True)
    ranking = [[i for i, t in enumerate(truth) if t["overall"] == s] for s in scores]
    ranking_json = [g[0] if len(g) == 1 else g for g in ranking]

    source = editor.source
    degr_source: list[str] = []
    if rng.random() < 0.5:  # sources are often JPEGs themselves
        q = int(rng.integers(85, 96))
        source = jpeg(source, q)
        degr_source.append(f"jpeg({q})")
    images = []
    for c, t in zip(cands, truth, strict=True):
        img, ops = reencode(c.image, rng)  # at least one degradation, every time
        t["degradation"] = ops
        images.append(img)
    correct = truth[list(order).index(0)]  # the correct edit was candidate 0 before shuffling
    target_regions = [r["bbox_2d"] for r in correct["regions"] if r["role"] == "target"]
    item = {
        "id": f"{split}{'-hard' if hard and split != 'hard' else ''}-{seed}-{index:06d}",
        "instruction": words.text,
        "ranking": ranking_json,
        "category": task.op,
        "regions": target_regions,
        "flaw": flaws[0] if group_size == 2 else "group",
        "phrasing": "held_out" if words.held_out else "seen",
        "template": words.template,
        "background": scene.background_kind.split(":")[0],
        "size": f"{scene.width}x{scene.height}",
        "n_objects": len(scene.objects),
        "split": split,
        "task": {"op": task.op, "target": None if task.target is None
                 else scene.objects[task.target].facts(),
                 "color": task.color or None, "shape": task.shape or None,
                 "position": None if task.cell is None else POSITIONS[task.cell],
                 "direction": task.direction or None},
        "source_degradation": degr_source,
        "candidate_truth": truth,
    }
    return item, source, images


def _save_png(path: Path, img: np.ndarray) -> None:
    # Lossless (the candidates already carry their re-encoding noise), deterministic, and
    # OpenCV's encoder at level 1 is ~20% faster than Pillow's.
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(img[..., ::-1]),
                           [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise OSError(f"could not encode {path}")
    path.write_bytes(buf.tobytes())


def _write_item(args: tuple[str, int, int, int, str, bool]) -> str:
    split, seed, index, group_size, out, hard_scenes = args
    cv2.setNumThreads(1)  # one process per core already
    item, source, images = make_item(split, seed, index, group_size, hard_scenes)
    folder = Path(out) / "images"
    _save_png(folder / f"{item['id']}_src.png", source)
    item["source"] = f"images/{item['id']}_src.png"
    item["candidates"] = []
    for k, img in enumerate(images):
        _save_png(folder / f"{item['id']}_c{k}.png", img)
        item["candidates"].append(f"images/{item['id']}_c{k}.png")
    keys = ["id", "instruction", "source", "candidates"]
    ordered = {k: item[k] for k in keys} | {k: v for k, v in item.items() if k not in keys}
    return json.dumps(ordered, ensure_ascii=False)


def generate(config: SynthConfig, progress: bool = True) -> dict[str, Any]:
    """Write the dataset; returns a summary (items, seconds, items per second)."""
    out = Path(config.out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    jobs = [(config.split, config.seed, i, config.group_size, str(out), config.hard_scenes)
            for i in range(config.n)]
    workers = config.workers or os.cpu_count() or 1
    start = time.perf_counter()
    with open(out / "pairs.jsonl", "w", encoding="utf-8") as fh:
        for line in _run(jobs, workers, progress):
            fh.write(line + "\n")
    seconds = time.perf_counter() - start
    return {"out": str(out), "items": config.n, "seconds": round(seconds, 2),
            "items_per_second": round(config.n / seconds, 1)}


def _run(jobs: list[tuple[str, int, int, int, str, bool]], workers: int, progress: bool
         ) -> Iterator[str]:
    from tqdm import tqdm

    bar = tqdm(total=len(jobs), unit="item", disable=not (progress and sys.stderr.isatty()))
    try:
        if workers == 1 or len(jobs) < 8:
            for job in jobs:
                yield _write_item(job)
                bar.update()
            return
        for name in PHOTOS:  # decode once; forked workers share the pages
            _photo(name)
        ctx = multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")
        with ctx.Pool(workers) as pool:
            for line in pool.imap(_write_item, jobs, chunksize=16):  # ordered: same bytes
                yield line
                bar.update()
    finally:
        bar.close()


__all__ = ["COLORS", "SPLITS", "SynthConfig", "generate", "make_item"]
