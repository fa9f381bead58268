"""Drawing SynthEdit scenes: colours, procedural backgrounds, anti-aliased shapes with soft
shadows, and removal the way an inpainting editor does it.

All images are float32 RGB 0..255 while composing and uint8 RGB once finished
(``to_uint8``). Every random choice comes from the ``np.random.Generator`` passed in,
so a scene is rebuilt exactly from its seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

TRUE_DELTA_E = 6.0  # CIE76 difference that makes a clean pixel "changed"

PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 35),
    "green": (40, 170, 60),
    "blue": (35, 70, 210),
    "yellow": (240, 220, 40),
    "orange": (245, 140, 30),
    "purple": (130, 50, 170),
    "white": (250, 250, 250),
    "black": (12, 12, 12),
}
SHAPES = ("circle", "square", "triangle", "star")
STYLES = ("solid", "solid", "solid", "striped", "outline")
PROCEDURAL_BACKGROUNDS = ("gradient", "fractal", "stripes", "texture")
# area factor: polygon area / circumradius**2 for each shape
_AREA_FACTOR = {"circle": np.pi, "square": 2.0, "triangle": 1.299, "star": 1.469}


# ---------------------------------------------------------------- colour helpers
def rgb_to_lab(img: np.ndarray) -> np.ndarray:
    """(h, w, 3) uint8 RGB -> (h, w, 3) float32 CIE Lab (L 0..100)."""
    return cv2.cvtColor(img.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)


def lab_to_rgb_color(lab: tuple[float, float, float]) -> np.ndarray:
    """One Lab colour -> float RGB in 0..1 (may be out of gamut, not clipped)."""
    px = np.array([[lab]], dtype=np.float32)
    return cv2.cvtColor(px, cv2.COLOR_Lab2RGB)[0, 0]


def equal_lightness_color(rgb: tuple[int, int, int], rng: np.random.Generator,
                          min_delta_e: float = 35.0) -> tuple[int, int, int] | None:
    """A different hue with the same CIE L as ``rgb`` (None if none fits the gamut)."""
    L, a, b = rgb_to_lab(np.array([[rgb]], dtype=np.uint8))[0, 0]
    for _ in range(200):
        hue = rng.uniform(0, 2 * np.pi)
        chroma = rng.uniform(25, 90)
        cand = (L, chroma * np.cos(hue), chroma * np.sin(hue))
        if np.hypot(cand[1] - a, cand[2] - b) < min_delta_e:
            continue
        out = lab_to_rgb_color(cand)
        if np.all(out >= 0.0) and np.all(out <= 1.0):
            red, green, blue = (int(round(v * 255)) for v in out)
            return red, green, blue
    return None


def _color_distance(c0, c1) -> float:
    """CIE76 distance between two RGB colours."""
    lab = rgb_to_lab(np.array([[c0, c1]], dtype=np.uint8))[0]
    return float(np.linalg.norm(lab[0] - lab[1]))


def delta_e(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-pixel CIE76 difference of two same-size uint8 RGB images, (h, w) float32."""
    return np.linalg.norm(rgb_to_lab(a) - rgb_to_lab(b), axis=2)


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """Bounding box (0..1000, rounded outwards) of the True pixels of a (h, w) mask.

    >>> mask_box(np.eye(4, dtype=bool)[:2])
    (0, 0, 500, 1000)
    """
    if not mask.any():
        return None
    h, w = mask.shape
    ys, xs = np.nonzero(mask)
    return (int(np.floor(xs.min() * 1000 / w)), int(np.floor(ys.min() * 1000 / h)),
            int(np.ceil((xs.max() + 1) * 1000 / w)), int(np.ceil((ys.max() + 1) * 1000 / h)))


def true_box(source: np.ndarray, edited: np.ndarray,
             threshold: float = TRUE_DELTA_E) -> tuple[int, int, int, int] | None:
    """Bounding box (0..1000) of pixels changed by more than ``threshold``."""
    return mask_box(delta_e(source, edited) > threshold)


# ---------------------------------------------------------------- backgrounds
def _fractal(rng, h, w, base_cell, octaves, persistence=0.55, channels=1):
    """Multi-octave value noise in ~[-1, 1], (h, w, channels) float32."""
    out = np.zeros((h, w, channels), np.float32)
    amp, total, cell = 1.0, 0.0, float(base_cell)
    for _ in range(octaves):
        gh, gw = max(2, int(np.ceil(h / cell)) + 1), max(2, int(np.ceil(w / cell)) + 1)
        grid = rng.uniform(-1, 1, (gh, gw, channels)).astype(np.float32)
        up = cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
        out += amp * up.reshape(h, w, channels)
        total += amp
        amp *= persistence
        cell = max(1.5, cell / 2)
    return out / total


def _rand_color(rng, lo=30, hi=225):
    return rng.uniform(lo, hi, 3).astype(np.float32)


def _coords(h, w, angle):
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return xx * np.cos(angle) + yy * np.sin(angle)


def make_background(rng, h, w, kind):
    """(h, w, 3) float32 RGB 0..255 background of the given kind."""
    if kind == "gradient":
        c0, c1 = _rand_color(rng), _rand_color(rng)
        u = _coords(h, w, rng.uniform(0, 2 * np.pi))
        u = (u - u.min()) / max(1e-6, float(u.max() - u.min()))
        return c0 + (c1 - c0) * u[..., None]
    if kind == "fractal":
        c0, c1 = _rand_color(rng), _rand_color(rng)
        n = _fractal(rng, h, w, rng.uniform(48, 160), 5)
        t = np.clip(0.5 + 0.9 * n, 0, 1)
        return c0 + (c1 - c0) * t
    if kind == "stripes":
        c0, c1 = _rand_color(rng), _rand_color(rng)
        period = rng.uniform(10, 48)
        u = _coords(h, w, rng.uniform(0, np.pi))
        t = np.clip(np.sin(2 * np.pi * u / period) * 4 + 0.5, 0, 1)[..., None]
        return c0 + (c1 - c0) * t
    if kind == "texture":  # photo-like: smooth colour field + coloured multi-octave grain
        base = _fractal(rng, h, w, rng.uniform(150, 300), 3, channels=3)
        detail = _fractal(rng, h, w, rng.uniform(12, 32), 4, persistence=0.7, channels=3)
        mean = _rand_color(rng, 70, 180)
        return mean + 70 * base + rng.uniform(12, 28) * detail
    raise ValueError(kind)


# ---------------------------------------------------------------- objects
@dataclass
class Obj:
    shape: str
    cx: float
    cy: float
    r: float  # circumradius in pixels
    angle: float
    color: tuple[int, int, int]
    style: str = "solid"
    stripe_color: tuple[int, int, int] = (250, 250, 250)
    shadow: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 0.0)  # dx, dy, sigma, strength


def _polygon(o: Obj) -> np.ndarray:
    if o.shape == "square":
        ang = o.angle + np.pi / 4 + np.arange(4) * np.pi / 2
        rad = np.full(4, o.r)
    elif o.shape == "triangle":
        ang = o.angle - np.pi / 2 + np.arange(3) * 2 * np.pi / 3
        rad = np.full(3, o.r)
    else:  # star
        ang = o.angle - np.pi / 2 + np.arange(10) * np.pi / 5
        rad = np.where(np.arange(10) % 2 == 0, o.r, 0.5 * o.r)
    return np.stack([o.cx + rad * np.cos(ang), o.cy + rad * np.sin(ang)], 1)


def _roi(o: Obj, h: int, w: int) -> tuple[int, int, int, int]:
    """Pixel window (x0, y0, x1, y1) that holds the object and its shadow."""
    dx, dy, sigma, _ = o.shadow
    m = o.r + max(abs(dx), abs(dy)) + 3 * sigma + 3
    return (max(0, int(o.cx - m)), max(0, int(o.cy - m)),
            min(w, int(np.ceil(o.cx + m)) + 1), min(h, int(np.ceil(o.cy + m)) + 1))


def object_alpha(o: Obj, h: int, w: int, filled: bool = False, roi=None) -> np.ndarray:
    """Anti-aliased coverage of the object (cv2.LINE_AA, 1/16 px), float32.

    Shape (h, w), or the window ``roi`` = (x0, y0, x1, y1) of it when given.
    """
    x0, y0, x1, y1 = roi or (0, 0, w, h)
    canvas = np.zeros((y1 - y0, x1 - x0), np.uint8)
    thick = -1 if (filled or o.style != "outline") else max(3, int(round(o.r * 0.18)))
    s = 16
    if o.shape == "circle":
        centre = (int((o.cx - x0) * s), int((o.cy - y0) * s))
        cv2.circle(canvas, centre, int(o.r * s), 255, thick, cv2.LINE_AA, 4)
    else:
        pts = ((_polygon(o) - (x0, y0)) * s).astype(np.int32)
        if thick < 0:
            cv2.fillPoly(canvas, [pts], 255, cv2.LINE_AA, 4)
        else:
            cv2.polylines(canvas, [pts], True, 255, thick, cv2.LINE_AA, 4)
    return canvas.astype(np.float32) / 255.0


def shadow_alpha(o: Obj, h: int, w: int, roi=None) -> np.ndarray:
    """Darkening factor of the object's soft shadow (0 = none), float32, like object_alpha."""
    x0, y0, x1, y1 = roi or (0, 0, w, h)
    dx, dy, sigma, strength = o.shadow
    if strength <= 0:
        return np.zeros((y1 - y0, x1 - x0), np.float32)
    a = object_alpha(o, h, w, filled=o.style != "outline", roi=roi)
    shift = np.array([[1, 0, dx], [0, 1, dy]], np.float32)
    moved = cv2.warpAffine(a, shift, (x1 - x0, y1 - y0))
    return strength * np.asarray(cv2.GaussianBlur(moved, (0, 0), sigma), np.float32)


def draw_object(img: np.ndarray, o: Obj) -> np.ndarray:
    """Composite shadow then object onto a float32 RGB image (returns a new array)."""
    h, w = img.shape[:2]
    out = img.astype(np.float32, copy=True)
    x0, y0, x1, y1 = roi = _roi(o, h, w)
    if x1 <= x0 or y1 <= y0:
        return out
    win = out[y0:y1, x0:x1] * (1.0 - shadow_alpha(o, h, w, roi))[..., None]
    a = object_alpha(o, h, w, roi=roi)[..., None]
    fill = np.array(o.color, np.float32)
    if o.style == "striped":
        period = max(6.0, o.r / 3.0)
        ang = o.angle + 0.7  # stripes in image coordinates, independent of the window
        u = _coords(y1 - y0, x1 - x0, ang) + x0 * np.cos(ang) + y0 * np.sin(ang)
        t = np.clip(np.sin(2 * np.pi * u / period) * 3 + 0.5, 0, 1)[..., None]
        fill = fill * t + np.array(o.stripe_color, np.float32) * (1 - t)
    elif o.style == "shaded":
        # Light from the top left: up to 30% brighter there, darker toward the bottom right.
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        u = np.clip(((xx - o.cx) + (yy - o.cy)) / (2.0 * o.r), -1.0, 1.0)
        fill = np.clip(fill * (1.0 - 0.3 * u)[..., None], 0, 255)
    out[y0:y1, x0:x1] = win * (1 - a) + fill * a
    return out


def random_object(rng, h, w, area_range=(0.01, 0.12), color=None, shape=None) -> Obj:
    shape = shape or SHAPES[rng.integers(len(SHAPES))]
    frac = float(np.exp(rng.uniform(np.log(area_range[0]), np.log(area_range[1]))))
    r = float(np.sqrt(frac * h * w / _AREA_FACTOR[shape]))
    r = min(r, 0.45 * min(h, w))
    cx = rng.uniform(r + 2, max(r + 3, w - r - 2))
    cy = rng.uniform(r + 2, max(r + 3, h - r - 2))
    if color is None:
        color = PALETTE[list(PALETTE)[rng.integers(len(PALETTE))]]
    stripe = PALETTE[list(PALETTE)[rng.integers(len(PALETTE))]]
    shadow_dir = rng.uniform(0.2, 1.4)  # mostly down-right
    off = r * rng.uniform(0.06, 0.15)
    shadow = (off * np.cos(shadow_dir), off * np.sin(shadow_dir), r * rng.uniform(0.06, 0.15),
              rng.uniform(0.3, 0.55) if rng.random() < 0.75 else 0.0)
    return Obj(shape, cx, cy, r, rng.uniform(0, 2 * np.pi), tuple(color),
               STYLES[rng.integers(len(STYLES))], stripe, shadow)


def to_uint8(img: np.ndarray) -> np.ndarray:
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def remove_object(img: np.ndarray, o: Obj) -> np.ndarray:
    """Inpaint the object and its visible shadow from the surroundings, uint8 in/out."""
    h, w = img.shape[:2]
    x0, y0, x1, y1 = roi = _roi(o, h, w)
    hole = (object_alpha(o, h, w, True, roi) > 0) | (shadow_alpha(o, h, w, roi) > 0.03)
    mask = cv2.dilate(hole.astype(np.uint8) * 255, np.ones((5, 5), np.uint8))
    # inpainting only reads a few pixels around the hole: work on a padded window
    m = 12
    X0, Y0, X1, Y1 = max(0, x0 - m), max(0, y0 - m), min(w, x1 + m), min(h, y1 + m)
    full = np.zeros((Y1 - Y0, X1 - X0), np.uint8)
    full[y0 - Y0:y1 - Y0, x0 - X0:x1 - X0] = mask
    out = img.copy()
    out[Y0:Y1, X0:X1] = cv2.inpaint(np.ascontiguousarray(img[Y0:Y1, X0:X1]), full, 3,
                                    cv2.INPAINT_TELEA)
    return out
