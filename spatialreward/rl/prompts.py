"""Edit prompts with exact targets, drawn from SynthEdit at the editor's resolution.

A prompt is a SynthEdit scene, an edit task and its instruction, plus what the correct
edit looks like: the target image and the footprint of the pixels the edit may touch.
Scenes are drawn at ``DRAW_SIZE`` and reduced to the editor's size with area averaging,
so small objects stay anti-aliased.

Every prompt has its own random stream, ``SeedSequence([split, seed, index, STREAM])``:
the same (split, seed, index) gives the same prompt in every process, and prompts never
share a stream with the SynthEdit items the reward model was trained on. Splits are
SynthEdit's (``train`` for the editor and RL, ``test`` held out, ``val`` for checks).
"""

from __future__ import annotations

import multiprocessing
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from ..errors import ConfigError
from ..synth.edits import Editor, random_task
from ..synth.generate import SPLITS, instruction_for
from ..synth.language import OPERATIONS
from ..synth.scenes import make_scene

DRAW_SIZE = 256
STREAM = 0xED17  # separates prompt streams from SynthEdit's item streams
MAX_OBJECTS = 4
# Scene distributions a prompt can be drawn from: objects per scene (inclusive range),
# background kinds (None: all of SynthEdit's) and object area as a share of the image
# (None: SynthEdit's 1-5%). "simple" (2-3 large objects on a smooth gradient) is what a
# small CPU-trained editor can learn within an hour; the ground truth is the same.
SCENES: dict[str, dict] = {
    "default": {"objects": (2, MAX_OBJECTS), "backgrounds": None, "area": None},
    "simple": {"objects": (2, 3), "backgrounds": ("gradient",), "area": (0.03, 0.06)},
}


def check_scenes(scenes: str) -> str:
    """``scenes`` if it names a distribution of ``SCENES``, else a ConfigError."""
    if scenes not in SCENES:
        raise ConfigError(f"scenes must be one of {', '.join(SCENES)}, got {scenes!r}")
    return scenes


@dataclass(frozen=True)
class EditPrompt:
    """One instruction on one source, with the exact correct edit."""

    id: str
    instruction: str
    op: str
    source: np.ndarray  # (S, S, 3) uint8
    target: np.ndarray  # (S, S, 3) uint8: the correct edit
    footprint: np.ndarray  # (S, S) bool: pixels the correct edit may touch
    task: dict  # the structured task (op, target facts, colour, shape, position, ...)
    flawed: dict[str, np.ndarray] = field(default_factory=dict)  # flaw -> (S, S, 3) uint8


def _reduce(img: np.ndarray, size: int) -> np.ndarray:
    return np.ascontiguousarray(cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA))


def make_prompt(split: str, seed: int, index: int, size: int, *, op: str | None = None,
                phrasings: str = "seen", flaws: Sequence[str] = (),
                scenes: str = "default") -> EditPrompt:
    """The prompt ``index`` of a (split, seed) stream at ``size`` pixels.

    ``op`` forces the operation; ``phrasings="all"`` also uses the phrasings SynthEdit
    holds out of its train split (on the train split too). ``flaws`` also renders those
    SynthEdit flaws of the edit (``prompt.flawed``), drawn after the correct edit so the
    prompt itself does not change. ``scenes`` picks a scene distribution of ``SCENES``.
    """
    if split not in SPLITS:
        raise ConfigError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if phrasings not in ("seen", "all"):
        raise ConfigError(f"phrasings must be 'seen' or 'all', got {phrasings!r}")
    kind = SCENES[check_scenes(scenes)]
    rng = np.random.default_rng(np.random.SeedSequence([SPLITS[split], seed, index, STREAM]))
    lo, hi = kind["objects"]
    scene = make_scene(rng, size=(DRAW_SIZE, DRAW_SIZE), n_objects=int(rng.integers(lo, hi + 1)),
                       backgrounds=kind["backgrounds"], area=kind["area"])
    task = random_task(scene, rng, op=op)
    words = instruction_for(scene, task, rng, "train" if phrasings == "seen" else "test")
    editor = Editor(scene, rng)
    edit = editor.correct(task)
    footprint = np.zeros(editor.source.shape[:2], np.uint8)
    for change in edit.changes:
        footprint |= change["mask"].astype(np.uint8)
    small = cv2.resize(footprint * 255, (size, size), interpolation=cv2.INTER_AREA) > 0
    target_obj = None if task.target is None else scene.objects[task.target].facts()
    facts = {"op": task.op, "target": target_obj, "color": task.color or None,
             "shape": task.shape or None, "direction": task.direction or None,
             "cell": task.cell}
    flawed = {f: _reduce(editor.flawed(task, f).image, size) for f in flaws}
    return EditPrompt(f"{split}-{seed}-{index:06d}", words.text, task.op,
                      _reduce(editor.source, size), _reduce(edit.image, size), small, facts,
                      flawed)


def _job(args: tuple[str, int, int, int, str | None, str, str]) -> EditPrompt:
    split, seed, index, size, op, phrasings, scenes = args
    cv2.setNumThreads(1)
    return make_prompt(split, seed, index, size, op=op, phrasings=phrasings, scenes=scenes)


def prompt_set(split: str, n: int, size: int, *, seed: int = 0,
               ops: Sequence[str] | None = None, phrasings: str = "seen",
               workers: int = 1, start: int = 0, scenes: str = "default") -> list[EditPrompt]:
    """Prompts ``start .. start + n - 1``; with ``ops``, the operations take turns (index
    k gets ``ops[k % len(ops)]``), so every operation is equally represented."""
    if n < 1:
        raise ConfigError(f"a prompt set needs at least one prompt, got n={n}")
    ops = list(ops or [])
    unknown = [o for o in ops if o not in OPERATIONS]
    if unknown:
        raise ConfigError(f"unknown operations {unknown}; choose from {', '.join(OPERATIONS)}")
    jobs = [(split, seed, k, size, ops[k % len(ops)] if ops else None, phrasings, scenes)
            for k in range(start, start + n)]
    if workers > 1 and n >= 16:
        ctx = multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")
        with ctx.Pool(workers) as pool:
            return pool.map(_job, jobs, chunksize=16)
    return [_job(j) for j in jobs]


def stack_prompts(prompts: Sequence[EditPrompt]) -> dict[str, np.ndarray]:
    """Arrays of a prompt list: source, target (N, S, S, 3) uint8, footprint, op index."""
    return {"source": np.stack([p.source for p in prompts]),
            "target": np.stack([p.target for p in prompts]),
            "footprint": np.stack([p.footprint for p in prompts]),
            "op": np.array([OPERATIONS.index(p.op) for p in prompts], np.int64)}
