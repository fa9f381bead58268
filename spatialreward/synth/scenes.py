"""SynthEdit scenes: named objects in the cells of a 3 x 3 grid over a background.

Each object is a ``<color> <shape>`` that is unique in its scene (so "the red circle"
names exactly one object) and sits inside one grid cell (so "the top left" names a
place). Backgrounds are procedural (gradient, fractal noise, stripes, photo-like
texture) or real photographs that scikit-image ships (random crop, flip and colour
jitter). Objects are drawn with :mod:`spatialreward.synth.render`: anti-aliased,
rotated, solid / shaded / striped / outlined, most with a soft shadow.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace

import cv2
import numpy as np

from .language import POSITIONS
from .render import (
    _AREA_FACTOR,
    PALETTE,
    PROCEDURAL_BACKGROUNDS,
    SHAPES,
    Obj,
    draw_object,
    make_background,
    to_uint8,
)

BACKGROUND_KINDS = (*PROCEDURAL_BACKGROUNDS, "photo")
# (height, width): square, landscape and portrait, all small enough to train on a CPU.
IMAGE_SIZES = ((256, 256), (240, 320), (320, 240), (256, 384), (384, 256), (384, 384))
STYLES = ("solid", "solid", "shaded", "shaded", "striped", "outline")
# skimage.data photographs that ship inside the wheel (no download).
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry",
          "hubble_deep_field", "retina", "camera", "coins")
# Colours that are easy to confuse, used by the hard split.
NEAR_COLORS = {
    "red": ("orange", "purple"), "orange": ("red", "yellow"), "yellow": ("orange", "white"),
    "green": ("blue", "yellow"), "blue": ("purple", "green"), "purple": ("blue", "red"),
    "white": ("yellow",), "black": ("purple", "blue"),
}


@dataclass(frozen=True)
class SceneObject:
    """One nameable object: its words and its geometry."""

    color: str
    shape: str
    cell: int
    obj: Obj

    @property
    def name(self) -> str:
        return f"{self.color} {self.shape}"

    @property
    def position(self) -> str:
        return POSITIONS[self.cell]

    def facts(self) -> dict[str, str]:
        return {"color": self.color, "shape": self.shape, "position": self.position}


@dataclass
class Scene:
    """A background plus objects; ``render`` composes them (uint8 RGB)."""

    height: int
    width: int
    background_kind: str
    background: np.ndarray  # (h, w, 3) float32 RGB 0..255
    objects: list[SceneObject]
    hard: bool = False

    def render(self, objects: list[SceneObject] | None = None) -> np.ndarray:
        img = self.background
        for o in self.objects if objects is None else objects:
            img = draw_object(img, o.obj)
        return to_uint8(img)

    def free_cells(self) -> list[int]:
        used = {o.cell for o in self.objects}
        return [c for c in range(9) if c not in used]


def cell_bounds(cell: int, h: int, w: int) -> tuple[float, float, float, float]:
    """(x0, y0, x1, y1) of a grid cell in pixels.

    >>> cell_bounds(4, 300, 300)
    (100.0, 100.0, 200.0, 200.0)
    """
    row, col = divmod(cell, 3)
    return col * w / 3, row * h / 3, (col + 1) * w / 3, (row + 1) * h / 3


def radius_for(shape: str, area_fraction: float, h: int, w: int) -> float:
    """Circumradius giving ``area_fraction`` of the image, capped to fit a grid cell."""
    r = float(np.sqrt(area_fraction * h * w / _AREA_FACTOR[shape]))
    return min(r, 0.42 * min(h, w) / 3)


def place(rng: np.random.Generator, shape: str, cell: int, r: float, h: int, w: int
          ) -> tuple[float, float]:
    """A centre inside ``cell`` that keeps the whole object in the cell."""
    x0, y0, x1, y1 = cell_bounds(cell, h, w)
    cx = rng.uniform(x0 + r, max(x0 + r, x1 - r)) if x1 - x0 > 2 * r else (x0 + x1) / 2
    cy = rng.uniform(y0 + r, max(y0 + r, y1 - r)) if y1 - y0 > 2 * r else (y0 + y1) / 2
    return float(cx), float(cy)


def color_rgb(name: str, rng: np.random.Generator) -> tuple[int, int, int]:
    """A named colour with a little jitter, as real renders never hit the exact value."""
    r, g, b = np.clip(np.array(PALETTE[name], np.float32) + rng.uniform(-8, 8, 3), 0, 255)
    return int(r), int(g), int(b)


def make_object(rng: np.random.Generator, color: str, shape: str, cell: int, h: int, w: int,
                area: tuple[float, float], hard: bool) -> SceneObject:
    frac = float(np.exp(rng.uniform(np.log(area[0]), np.log(area[1]))))
    r = radius_for(shape, frac, h, w)
    cx, cy = place(rng, shape, cell, r, h, w)
    style = STYLES[int(rng.integers(len(STYLES)))]
    stripe = (245, 245, 245) if color != "white" else (20, 20, 20)
    off = r * rng.uniform(0.06, 0.15)
    ang = rng.uniform(0.2, 1.4)  # light from the top left: shadows fall down-right
    strength = 0.0 if hard or rng.random() < 0.25 else rng.uniform(0.3, 0.55)
    shadow = (off * np.cos(ang), off * np.sin(ang), r * rng.uniform(0.06, 0.15), strength)
    obj = Obj(shape, cx, cy, r, float(rng.uniform(0, 2 * np.pi)), color_rgb(color, rng),
              style, stripe, tuple(float(v) for v in shadow))  # type: ignore[arg-type]
    return SceneObject(color, shape, cell, obj)


@functools.cache
def _photo(name: str) -> np.ndarray:
    from skimage import data  # imported on demand: only photo backgrounds need it

    img = getattr(data, name)()
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    return np.ascontiguousarray(img[..., :3])


def photo_background(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, str]:
    """A random crop of a shipped photograph, flipped and colour-jittered, float32."""
    name = PHOTOS[int(rng.integers(len(PHOTOS)))]
    photo = _photo(name)
    ph, pw = photo.shape[:2]
    scale = rng.uniform(0.5, 1.0) * min(ph / h, pw / w)  # crop size in photo pixels per output px
    ch, cw = max(8, int(h * scale)), max(8, int(w * scale))
    y = int(rng.integers(0, ph - ch + 1))
    x = int(rng.integers(0, pw - cw + 1))
    crop = cv2.resize(photo[y:y + ch, x:x + cw], (w, h), interpolation=cv2.INTER_AREA)
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    gain = rng.uniform(0.85, 1.15, 3).astype(np.float32)
    out = crop.astype(np.float32) * gain + rng.uniform(-15, 15)
    return np.clip(out, 0, 255), name


def make_scene(rng: np.random.Generator, *, hard: bool = False,
               size: tuple[int, int] | None = None, n_objects: int | None = None,
               backgrounds: tuple[str, ...] | None = None,
               area: tuple[float, float] | None = None) -> Scene:
    """A random scene; ``hard``: 5-6 small, low-contrast, shadowless objects.

    ``backgrounds`` restricts the background kinds (default: all of
    ``BACKGROUND_KINDS``) and ``area`` sets the range of an object's share of the image
    (default: (0.01, 0.05), hard (0.004, 0.012)); left at None, the scene and the random
    stream are exactly as before."""
    h, w = size or IMAGE_SIZES[int(rng.integers(len(IMAGE_SIZES)))]
    kinds = BACKGROUND_KINDS if backgrounds is None else backgrounds
    kind = kinds[int(rng.integers(len(kinds)))]
    if kind == "photo":
        background, photo = photo_background(rng, h, w)
        kind = f"photo:{photo}"
    else:
        background = make_background(rng, h, w, kind).astype(np.float32)
    n = n_objects or int(rng.integers(5, 7) if hard else rng.integers(2, 7))
    if area is None:
        area = (0.004, 0.012) if hard else (0.01, 0.05)
    cells = rng.permutation(9)[:n]
    pairs = [(c, s) for c in PALETTE for s in SHAPES]
    chosen = rng.permutation(len(pairs))[:n]
    objects = [make_object(rng, pairs[k][0], pairs[k][1], int(cell), h, w, area, hard)
               for k, cell in zip(chosen, cells, strict=True)]
    if hard:  # low contrast: pull each fill 30% toward the background around it
        objects = [_low_contrast(o, background) for o in objects]
    return Scene(h, w, kind, background, objects, hard)


def _low_contrast(o: SceneObject, background: np.ndarray) -> SceneObject:
    h, w = background.shape[:2]
    y, x = int(np.clip(o.obj.cy, 0, h - 1)), int(np.clip(o.obj.cx, 0, w - 1))
    local = background[max(0, y - 8):y + 8, max(0, x - 8):x + 8].reshape(-1, 3).mean(0)
    r, g, b = 0.7 * np.array(o.obj.color, np.float32) + 0.3 * local
    return replace(o, obj=replace(o.obj, color=(int(r), int(g), int(b))))
