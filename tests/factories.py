"""Synthetic (source, edited, true box) cases for the pixel-evidence tests.

Everything is generated in code from a seed (``np.random.default_rng(seed)``), so a
failing case can be rebuilt exactly from its seed and printed parameters.

Scenes are drawn with :mod:`spatialreward.synth.render`: a background (gradient,
value-noise fractal, stripes or a photo-like coloured multi-octave texture) with 2-6
anti-aliased objects (circle, square,
triangle, star; solid, striped or outlined) that cast soft shadows. An edit changes
ONE object: recolour (often to a hue of equal CIE L), remove (the hole is filled by
``cv2.inpaint`` like an editor would, not by restoring the background), add a new
object, replace its shape, or resize it. The edited object is always the top-most,
so recolouring it does not have to reach under other objects.

The TRUE box is the bounding box of the pixels where the clean edited image differs
from the clean source by more than ``TRUE_DELTA_E`` (CIE76), normalised to 0..1000;
shadows therefore count. Then the edited image is passed through a random mix of
the degradations real editors cause (JPEG, blur, brightness/contrast drift,
resampling to another size, a VAE-like round trip, sensor-like noise).

Cases whose edit is nearly invisible (a black object removed from a dark patch, an
edit covered by less than 0.4 % of the image) are ambiguous by construction; the
factory re-draws them (deterministically) instead of shipping them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from spatialreward.regions import box_iou
from spatialreward.synth.degrade import global_shift, jpeg, reencode
from spatialreward.synth.render import (
    _AREA_FACTOR,
    PALETTE,
    PROCEDURAL_BACKGROUNDS,
    SHAPES,
    TRUE_DELTA_E,
    Obj,
    _color_distance,
    delta_e,
    draw_object,
    equal_lightness_color,
    lab_to_rgb_color,
    make_background,
    random_object,
    remove_object,
    rgb_to_lab,
    to_uint8,
    true_box,
)

__all__ = ["BACKGROUNDS", "EDIT_KINDS", "SIZES", "Case", "box_iou", "delta_e", "jpeg",
           "make_edit_case", "make_overedit_case", "make_unedited_case", "equal_lightness_case"]

BACKGROUNDS = PROCEDURAL_BACKGROUNDS
EDIT_KINDS = ("recolor", "remove", "add", "replace", "resize")
SIZES = ((512, 512), (480, 640), (640, 480), (512, 768), (1024, 1024))  # (h, w)


# ---------------------------------------------------------------- cases
@dataclass
class Case:
    seed: int
    kind: str
    background: str
    source: np.ndarray  # (H, W, 3) uint8 RGB as given to the detector
    edited: np.ndarray  # (h, w, 3) uint8 RGB, possibly another size
    clean_edited: np.ndarray  # the edit before degradation, source size
    box: tuple[int, int, int, int] | None
    ops: list[str] = field(default_factory=list)

    def describe(self) -> str:
        return (f"seed={self.seed} kind={self.kind} bg={self.background} "
                f"size={self.source.shape[1]}x{self.source.shape[0]} "
                f"edited={self.edited.shape[1]}x{self.edited.shape[0]} ops={self.ops} "
                f"box={self.box}")


def make_scene(rng, h, w, background, top_area=None):
    """(base image: background + all objects but the top one, float32; all objects).

    ``top_area``: (lo, hi) area fraction of the top (to be edited) object.
    """
    img = make_background(rng, h, w, background)
    objs = [random_object(rng, h, w) for _ in range(int(rng.integers(2, 7)))]
    if top_area is not None:
        objs[-1] = random_object(rng, h, w, area_range=top_area)
    for o in objs[:-1]:
        img = draw_object(img, o)
    return img, objs


def _edit(rng, kind, base, top, h, w):
    """(clean source, clean edited) uint8 for one edit of the top object."""
    src = to_uint8(draw_object(base, top))
    if kind == "recolor":
        new = None
        if top.color not in (PALETTE["white"], PALETTE["black"]) and rng.random() < 0.6:
            new = equal_lightness_color(top.color, rng)
        while new is None or _color_distance(new, top.color) < 30:
            new = PALETTE[list(PALETTE)[rng.integers(len(PALETTE))]]
        o2 = Obj(**{**top.__dict__, "color": tuple(new)})
        return src, to_uint8(draw_object(base, o2))
    if kind == "add":
        return src, to_uint8(draw_object(src.astype(np.float32), random_object(rng, h, w)))
    hole = remove_object(src, top)
    if kind == "remove":
        return src, hole
    if kind == "replace":
        shape = [s for s in SHAPES if s != top.shape][rng.integers(3)]
        r = top.r * np.sqrt(_AREA_FACTOR[top.shape] / _AREA_FACTOR[shape])
        o2 = Obj(**{**top.__dict__, "shape": shape, "r": float(r)})
    elif kind == "resize":
        f = rng.uniform(0.55, 0.75) if rng.random() < 0.5 else rng.uniform(1.3, 1.6)
        r = min(top.r * f, 0.45 * min(h, w))
        o2 = Obj(**{**top.__dict__, "r": float(r), "cx": float(np.clip(top.cx, r, w - r)),
                    "cy": float(np.clip(top.cy, r, h - r))})
    else:
        raise ValueError(kind)
    o2.shadow = tuple(v * o2.r / top.r if i < 3 else v for i, v in enumerate(top.shadow))
    return src, to_uint8(draw_object(hole.astype(np.float32), o2))


def _acceptable(src, edited) -> bool:
    de = delta_e(src, edited)
    changed = de > TRUE_DELTA_E
    return changed.mean() >= 0.004 and float(np.median(de[changed])) >= 12.0


def make_edit_case(seed: int, kind: str | None = None, background: str | None = None,
                   size: tuple[int, int] | None = None, degrade: bool = True,
                   allow_resize: bool = True, top_area: tuple[float, float] | None = None) -> Case:
    """One seeded single-object edit with its true box (see module docstring).

    ``top_area`` sets the size range (fraction of the image) of the edited object.
    """
    rng = np.random.default_rng(seed)
    kind = kind or EDIT_KINDS[rng.integers(len(EDIT_KINDS))]
    background = background or BACKGROUNDS[rng.integers(len(BACKGROUNDS))]
    h, w = size or SIZES[rng.integers(len(SIZES))]
    for _ in range(30):
        base, objs = make_scene(rng, h, w, background, top_area)
        src, clean = _edit(rng, kind, base, objs[-1], h, w)
        if _acceptable(src, clean):
            break
    box = true_box(src, clean)
    edited, ops = (reencode(clean, rng, allow_resize) if degrade else (clean.copy(), []))
    source = src
    if degrade and rng.random() < 0.5:  # inputs are often JPEGs themselves
        q = int(rng.integers(85, 96))
        source = jpeg(src, q)
        ops.append(f"source_jpeg({q})")
    return Case(seed, kind, background, source, edited, clean, box, ops)


def make_unedited_case(seed: int, background: str | None = None,
                       size: tuple[int, int] | None = None) -> Case:
    """Source vs a degraded copy of itself: nothing was edited, no box."""
    rng = np.random.default_rng(seed)
    background = background or BACKGROUNDS[rng.integers(len(BACKGROUNDS))]
    h, w = size or SIZES[rng.integers(len(SIZES))]
    base, objs = make_scene(rng, h, w, background)
    src = to_uint8(draw_object(base, objs[-1]))
    edited, ops = reencode(src, rng)
    source = src
    if rng.random() < 0.5:
        q = int(rng.integers(85, 96))
        source = jpeg(src, q)
        ops.append(f"source_jpeg({q})")
    return Case(seed, "unedited", background, source, edited, src, None, ops)


def make_overedit_case(seed: int, **kw) -> tuple[Case, Case]:
    """(a clean edit, the same edit followed by a strong global hue/brightness shift)."""
    case = make_edit_case(seed, **kw)
    rng = np.random.default_rng(seed + 10_000)
    shifted = global_shift(case.edited, rng)
    over = Case(seed, case.kind + "+global", case.background, case.source, shifted,
                global_shift(case.clean_edited, np.random.default_rng(seed + 10_000)),
                case.box, case.ops + ["global_shift"])
    return case, over


def equal_lightness_case(seed: int, size: tuple[int, int] = (384, 512)) -> Case:
    """A red square turned green of the SAME CIE L on a flat grey background.

    A grey-level difference barely sees this edit; a Lab comparison must.
    """
    rng = np.random.default_rng(seed)
    h, w = size
    red = PALETTE["red"]
    L = float(rgb_to_lab(np.array([[red]], np.uint8))[0, 0, 0])
    green = None
    for hue in np.linspace(np.deg2rad(120), np.deg2rad(170), 26):  # greens, most chroma first
        for chroma in np.linspace(70, 30, 9):
            rgb = lab_to_rgb_color((L, chroma * np.cos(hue), chroma * np.sin(hue)))
            if np.all(rgb >= 0) and np.all(rgb <= 1):
                green = tuple(int(round(v * 255)) for v in rgb)
                break
        if green is not None:
            break
    assert green is not None, "no in-gamut green of the red's lightness"
    base = np.full((h, w, 3), 128.0, np.float32) + rng.normal(0, 2, (h, w, 3)).astype(np.float32)
    top = random_object(rng, h, w, area_range=(0.03, 0.06), color=red, shape="square")
    top.style, top.shadow = "solid", (0.0, 0.0, 1.0, 0.0)
    src = to_uint8(draw_object(base, top))
    clean = to_uint8(draw_object(base, Obj(**{**top.__dict__, "color": green})))
    edited = jpeg(clean, 85)
    return Case(seed, "recolor_equal_L", "flat", src, edited, clean, true_box(src, clean),
                ["jpeg(85)"])
