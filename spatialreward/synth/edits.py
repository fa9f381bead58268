"""Edit operations on a scene: the correct edit and the flaws real editors make.

An edit is a list of drawing actions on the source image: ``inpaint`` an object
(removal the way an inpainting editor does it: the hole is filled from its
surroundings, not restored), ``draw`` an object on top, ``blend`` a result with the
source (half-done edits), plus whole-image or in-region damage (artifacts, global
style shifts). Every candidate keeps the footprints it touched, so its changed
regions are measured from the clean pixels.

Flaw taxonomy (``FLAWS``):

==============  =====================================================================
wrong_value     wrong colour / shape / size direction (recolor, add, replace, resize)
wrong_object    the right change applied to another object
wrong_position  added or moved to another cell (add, move)
partial         half done: half recoloured, half faded out/in, moved half-way, ...
no_edit         nothing changed
collateral      the correct edit plus another object or a background patch changed
artifact        the correct edit with blocking, heavy noise or smear inside its region
over_edit       the correct edit plus a global colour/style shift
copy_not_move   the object appears at the destination but is also left behind (move)
==============  =====================================================================
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from .degrade import global_shift
from .language import COLORS, SHAPES
from .render import (
    _AREA_FACTOR,
    TRUE_DELTA_E,
    Obj,
    delta_e,
    draw_object,
    object_alpha,
    remove_object,
    shadow_alpha,
    to_uint8,
)
from .scenes import NEAR_COLORS, Scene, SceneObject, color_rgb, place, radius_for

FLAWS = ("wrong_value", "wrong_object", "wrong_position", "partial", "no_edit", "collateral",
         "artifact", "over_edit", "copy_not_move")
_COMMON = ("partial", "no_edit", "collateral", "artifact", "over_edit")
APPLICABLE: dict[str, tuple[str, ...]] = {
    "recolor": ("wrong_value", "wrong_object", *_COMMON),
    "remove": ("wrong_object", *_COMMON),
    "add": ("wrong_value", "wrong_position", *_COMMON),
    "replace": ("wrong_value", "wrong_object", *_COMMON),
    "move": ("wrong_object", "wrong_position", *_COMMON, "copy_not_move"),
    "resize": ("wrong_value", "wrong_object", *_COMMON),
}

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class EditTask:
    """What the instruction asks for, in structured form."""

    op: str
    target: int | None = None  # index into scene.objects; None for add
    color: str = ""  # recolor: new colour; add/replace: the new object's colour
    shape: str = ""  # add/replace: the new object's shape
    cell: int | None = None  # add/move: destination cell
    direction: str = ""  # resize: bigger | smaller


@dataclass
class Candidate:
    """A clean (not yet re-encoded) edited image and what it did."""

    flaw: str  # "correct" or one of FLAWS
    image: np.ndarray  # (h, w, 3) uint8, source size
    changes: list[dict] = field(default_factory=list)  # per touched footprint: box + facts


def _footprint(o: Obj, h: int, w: int) -> np.ndarray:
    """Pixels that drawing or removing an object can touch, (h, w) bool.

    The object, its soft shadow, and a margin for what inpainting rewrites around the
    hole (``remove_object`` dilates the hole by 2 px and fills with a 3 px radius).
    """
    m = (object_alpha(o, h, w, filled=True) > 0) | (shadow_alpha(o, h, w) > 0.005)
    return cv2.dilate(m.astype(np.uint8), np.ones((13, 13), np.uint8)) > 0


class Editor:
    """Applies tasks and flaws to one scene; all randomness from ``rng``."""

    def __init__(self, scene: Scene, rng: np.random.Generator) -> None:
        self.scene = scene
        self.rng = rng
        self.source = scene.render()
        self.h, self.w = self.source.shape[:2]

    # -- primitives ---------------------------------------------------------------
    def _draw(self, img: np.ndarray, o: Obj) -> np.ndarray:
        return to_uint8(draw_object(img.astype(np.float32), o))

    def _moved(self, so: SceneObject, cell: int) -> SceneObject:
        cx, cy = place(self.rng, so.shape, cell, so.obj.r, self.h, self.w)
        return replace(so, cell=cell, obj=replace(so.obj, cx=cx, cy=cy))

    def _reshaped(self, so: SceneObject, shape: str, color: str) -> SceneObject:
        # Same area, new outline: r scales with sqrt(area factor ratio).
        r = so.obj.r * float(np.sqrt(_AREA_FACTOR[so.shape] / _AREA_FACTOR[shape]))
        rgb = so.obj.color if color == so.color else color_rgb(color, self.rng)
        return replace(so, shape=shape, color=color, obj=replace(so.obj, shape=shape, r=r,
                                                                 color=rgb))

    def _resized(self, so: SceneObject, factor: float) -> SceneObject:
        r = so.obj.r * factor
        # Keep the grown object inside the frame.
        cx = float(np.clip(so.obj.cx, r + 1, self.w - r - 1))
        cy = float(np.clip(so.obj.cy, r + 1, self.h - r - 1))
        dx, dy, sigma, strength = so.obj.shadow
        sh = (dx * factor, dy * factor, sigma * factor, strength)
        return replace(so, obj=replace(so.obj, r=r, cx=cx, cy=cy, shadow=sh))

    def _new_object(self, color: str, shape: str, cell: int) -> SceneObject:
        others = [o.obj.r for o in self.scene.objects]
        lo, hi = (0.005, 0.012) if self.scene.hard else (0.01, 0.04)
        frac = self.rng.uniform(lo, hi)
        r = radius_for(shape, frac, self.h, self.w)
        if others:  # similar in size to what is already there
            r = float(np.clip(r, 0.6 * min(others), 1.4 * max(others)))
        cx, cy = place(self.rng, shape, cell, r, self.h, self.w)
        template = self.scene.objects[0].obj if self.scene.objects else None
        shadow = template.shadow if template is not None else (0.0, 0.0, 1.0, 0.0)
        obj = Obj(shape, cx, cy, r, float(self.rng.uniform(0, 2 * np.pi)),
                  color_rgb(color, self.rng), "solid", (245, 245, 245), shadow)
        return SceneObject(color, shape, cell, obj)

    def _change(self, before: SceneObject | None, after: SceneObject | None, role: str) -> dict:
        mask = np.zeros((self.h, self.w), bool)
        for so in (before, after):
            if so is not None:
                mask |= _footprint(so.obj, self.h, self.w)
        return {"mask": mask, "role": role,
                "before": None if before is None else before.facts(),
                "after": None if after is None else after.facts()}

    # -- the requested edit (optionally with a wrong parameter / object / place) --
    def apply(self, task: EditTask, *, target: int | None = None, color: str | None = None,
              shape: str | None = None, cell: int | None = None, direction: str | None = None,
              fraction: float = 1.0, keep_original: bool = False,
              role: str = "target") -> Candidate:
        """Perform ``task`` with optional overrides; ``fraction`` < 1 for half-done edits."""
        img = self.source
        t = task.target if target is None else target
        color = task.color if color is None else color
        shape = task.shape if shape is None else shape
        cell = task.cell if cell is None else cell
        direction = task.direction if direction is None else direction
        so = None if t is None else self.scene.objects[t]
        before, after = so, None
        if task.op == "recolor":
            assert so is not None
            rgb = color_rgb(color, self.rng)
            no_shadow = replace(so.obj, color=rgb, shadow=(0.0, 0.0, 1.0, 0.0))
            after = replace(so, color=color, obj=no_shadow)
            new = self._draw(img, no_shadow)
            if fraction < 1:  # half recoloured: a straight cut through the object
                new = self._half(img, new, so.obj)
            return Candidate("", new, [self._change(before, after, role)])
        if task.op == "remove":
            assert so is not None
            new = remove_object(img, so.obj)
        elif task.op == "add":
            before, after = None, self._new_object(color, shape, int(cell))  # type: ignore[arg-type]
            new = self._draw(img, after.obj)
        elif task.op == "replace":
            assert so is not None
            after = self._reshaped(so, shape, color)
            new = self._draw(remove_object(img, so.obj), after.obj)
        elif task.op == "move":
            assert so is not None and cell is not None
            after = self._moved(so, cell)
            if fraction < 1:  # moved only part of the way
                cx = so.obj.cx + fraction * (after.obj.cx - so.obj.cx)
                cy = so.obj.cy + fraction * (after.obj.cy - so.obj.cy)
                after = replace(after, obj=replace(after.obj, cx=cx, cy=cy))
            base = img if keep_original else remove_object(img, so.obj)
            new = self._draw(base, after.obj)
            return Candidate("", new, [self._change(so, None, role),
                                       self._change(None, after, role)])
        elif task.op == "resize":
            assert so is not None
            big = direction == "bigger"
            factor = self.rng.uniform(1.35, 1.6) if big else self.rng.uniform(0.5, 0.7)
            if fraction < 1:
                factor = 1 + (factor - 1) * fraction
            after = self._resized(so, factor)
            base = img if factor > 1 else remove_object(img, so.obj)
            new = self._draw(base, after.obj)
            return Candidate("", new, [self._change(before, after, role)])
        else:
            raise ValueError(f"unknown operation {task.op!r}")
        if fraction < 1:  # faded in / out: half of the way between source and result
            new = to_uint8(img.astype(np.float32) * (1 - fraction) + new * fraction)
        return Candidate("", new, [self._change(before, after, role)])

    def _half(self, src: np.ndarray, edited: np.ndarray, o: Obj) -> np.ndarray:
        yy, xx = np.mgrid[0:self.h, 0:self.w].astype(np.float32)
        ang = self.rng.uniform(0, 2 * np.pi)
        side = ((xx - o.cx) * np.cos(ang) + (yy - o.cy) * np.sin(ang)) > 0
        return np.where(side[..., None], edited, src)

    # -- flaws ----------------------------------------------------------------------
    def correct(self, task: EditTask) -> Candidate:
        c = self.apply(task)
        c.flaw = "correct"
        return c

    def flawed(self, task: EditTask, flaw: str) -> Candidate:
        """The edit with one flaw; raises ValueError if the flaw does not apply."""
        if flaw not in APPLICABLE[task.op]:
            raise ValueError(f"flaw {flaw!r} does not apply to {task.op!r}")
        c = self._flawed(task, flaw)
        c.flaw = flaw
        return c

    def _flawed(self, task: EditTask, flaw: str) -> Candidate:
        rng = self.rng
        if flaw == "no_edit":
            return Candidate("", self.source.copy(), [])
        if flaw == "wrong_object":
            others = [i for i in range(len(self.scene.objects)) if i != task.target]
            return self.apply(task, target=int(rng.choice(others)), role="wrong_object")
        if flaw == "wrong_position":
            free = [c for c in self.scene.free_cells() if c != task.cell]
            return self.apply(task, cell=int(rng.choice(free)))
        if flaw == "partial":
            return self.apply(task, fraction=0.5)
        if flaw == "copy_not_move":
            return self.apply(task, keep_original=True)
        if flaw == "wrong_value":
            return self._wrong_value(task)
        good = self.apply(task)
        if flaw == "over_edit":
            return Candidate("", global_shift(good.image, rng), good.changes)
        if flaw == "artifact":
            return Candidate("", self._damage(good), good.changes)
        if flaw == "collateral":
            return self._collateral(task, good)
        raise ValueError(f"unknown flaw {flaw!r}")

    def _wrong_value(self, task: EditTask) -> Candidate:
        rng = self.rng
        so = None if task.target is None else self.scene.objects[task.target]
        if task.op == "resize":
            return self.apply(task, direction="smaller" if task.direction == "bigger" else "bigger")
        if task.op == "recolor" or (task.op == "add" and rng.random() < 0.5):
            avoid = {task.color, so.color if so is not None else ""}
            return self.apply(task, color=str(rng.choice([c for c in COLORS if c not in avoid])))
        avoid = {task.shape, so.shape if so is not None else ""}
        return self.apply(task, shape=str(rng.choice([s for s in SHAPES if s not in avoid])))

    def _damage(self, good: Candidate) -> np.ndarray:
        """Blocking, heavy noise or smear inside the edit's footprint."""
        mask = np.zeros((self.h, self.w), bool)
        for ch in good.changes:
            mask |= ch["mask"]
        img = good.image.astype(np.float32)
        kind = int(self.rng.integers(3))
        damaged = to_uint8(np.where(mask[..., None], self._degraded(img, kind), img))
        # Blocking or smearing a flat area (an inpainted hole on a gradient) shows nothing;
        # then the damage is noise, which always shows.
        if (delta_e(good.image, damaged)[mask] > TRUE_DELTA_E).mean() < 0.2:
            damaged = to_uint8(np.where(mask[..., None], self._degraded(img, 1), img))
        return damaged

    def _degraded(self, img: np.ndarray, kind: int) -> np.ndarray:
        if kind == 0:  # blocking: 8x8 block means, like a very low JPEG quality
            small = cv2.resize(img, (max(1, self.w // 8), max(1, self.h // 8)),
                               interpolation=cv2.INTER_AREA)
            bad = cv2.resize(small, (self.w, self.h), interpolation=cv2.INTER_NEAREST)
        elif kind == 1:  # heavy noise
            bad = img + self.rng.normal(0, 28, img.shape).astype(np.float32)
        else:  # smear: a long motion blur
            k = int(self.rng.integers(9, 16))
            kernel = np.zeros((k, k), np.float32)
            kernel[k // 2, :] = 1.0 / k
            bad = cv2.filter2D(img, -1, cv2.warpAffine(
                kernel, cv2.getRotationMatrix2D((k / 2, k / 2), float(self.rng.uniform(0, 180)),
                                                1.0), (k, k)))
        return bad

    def _collateral(self, task: EditTask, good: Candidate) -> Candidate:
        rng = self.rng
        others = [i for i in range(len(self.scene.objects)) if i != task.target]
        if others and rng.random() < 0.6:  # another object recoloured too
            so = self.scene.objects[int(rng.choice(others))]
            color = str(rng.choice([c for c in COLORS if c != so.color]))
            obj = replace(so.obj, color=color_rgb(color, rng), shadow=(0.0, 0.0, 1.0, 0.0))
            image = self._draw(good.image, obj)
            change = {"mask": _footprint(so.obj, self.h, self.w), "role": "collateral",
                      "before": so.facts(), "after": replace(so, color=color).facts()}
            return Candidate("", image, [*good.changes, change])
        # a background patch recoloured: a soft blob in a free cell
        cells = self.scene.free_cells() or list(range(9))
        cell = int(rng.choice([c for c in cells if c != task.cell] or cells))
        cx, cy = place(rng, "circle", cell, 0.1 * min(self.h, self.w), self.h, self.w)
        blob: np.ndarray = np.zeros((self.h, self.w), np.float32)
        axes = (int(self.w * rng.uniform(0.05, 0.1)), int(self.h * rng.uniform(0.05, 0.1)))
        cv2.ellipse(blob, (int(cx), int(cy)), axes, float(rng.uniform(0, 180)), 0, 360, 1.0, -1)
        blob = cv2.GaussianBlur(blob, (0, 0), 3)
        tint = rng.uniform(-90, 90, 3).astype(np.float32)
        image = to_uint8(good.image + blob[..., None] * tint)
        change = {"mask": blob > 0.05, "role": "collateral", "before": None, "after": None}
        return Candidate("", image, [*good.changes, change])


def random_task(scene: Scene, rng: np.random.Generator, op: str | None = None) -> EditTask:
    """A feasible task on ``scene`` (an op that needs a free cell only when one exists)."""
    ops = ["recolor", "remove", "add", "replace", "move", "resize"]
    if len(scene.free_cells()) < 2:
        ops = [o for o in ops if o not in ("add", "move")]
    if len(scene.objects) < 2:
        ops = [o for o in ops if o not in ("remove", "recolor", "replace", "move", "resize")]
    op = op or str(rng.choice(ops))
    used = {(o.color, o.shape) for o in scene.objects}
    if op == "add":
        free = [(c, s) for c in COLORS for s in SHAPES if (c, s) not in used]
        color, shape = free[int(rng.integers(len(free)))]
        return EditTask("add", None, color=color, shape=shape,
                        cell=int(rng.choice(scene.free_cells())))
    target = int(rng.integers(len(scene.objects)))
    so = scene.objects[target]
    if op == "recolor":
        pool = NEAR_COLORS[so.color] if scene.hard else tuple(c for c in COLORS if c != so.color)
        options = [c for c in pool if (c, so.shape) not in used]
        color = str(rng.choice(options or [c for c in COLORS if c != so.color]))
        return EditTask("recolor", target, color=color)
    if op == "replace":
        shape = str(rng.choice([s for s in SHAPES if s != so.shape]))
        color = so.color if rng.random() < 0.5 else str(rng.choice(COLORS))
        return EditTask("replace", target, color=color, shape=shape)
    if op == "move":
        return EditTask("move", target, cell=int(rng.choice(scene.free_cells())))
    if op == "resize":
        return EditTask("resize", target, direction=str(rng.choice(["bigger", "smaller"])))
    return EditTask(op, target)
