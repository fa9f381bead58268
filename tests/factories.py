"""Synthetic (source, edited, true box) cases for the pixel-evidence tests.

Everything is generated in code from a seed (``np.random.default_rng(seed)``), so a
failing case can be rebuilt exactly from its seed and printed parameters.

A scene is a background (gradient, value-noise fractal, stripes or a "photo-like"
coloured multi-octave texture) with 2-6 anti-aliased objects (circle, square,
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
BACKGROUNDS = ("gradient", "fractal", "stripes", "photo")
EDIT_KINDS = ("recolor", "remove", "add", "replace", "resize")
SIZES = ((512, 512), (480, 640), (640, 480), (512, 768), (1024, 1024))  # (h, w)
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
            return tuple(int(round(v * 255)) for v in out)
    return None


def _color_distance(c0, c1) -> float:
    """CIE76 distance between two RGB colours."""
    lab = rgb_to_lab(np.array([[c0, c1]], dtype=np.uint8))[0]
    return float(np.linalg.norm(lab[0] - lab[1]))


def delta_e(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-pixel CIE76 difference of two same-size uint8 RGB images, (h, w) float32."""
    return np.linalg.norm(rgb_to_lab(a) - rgb_to_lab(b), axis=2)


def true_box(source: np.ndarray, edited: np.ndarray,
             threshold: float = TRUE_DELTA_E) -> tuple[int, int, int, int] | None:
    """Bounding box (0..1000) of pixels changed by more than ``threshold``."""
    changed = delta_e(source, edited) > threshold
    if not changed.any():
        return None
    h, w = changed.shape
    ys, xs = np.nonzero(changed)
    return (int(np.floor(xs.min() * 1000 / w)), int(np.floor(ys.min() * 1000 / h)),
            int(np.ceil((xs.max() + 1) * 1000 / w)), int(np.ceil((ys.max() + 1) * 1000 / h)))


def box_iou(a, b) -> float:
    """Intersection over union of two (x1, y1, x2, y2) boxes."""
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


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
    if kind == "photo":  # smooth colour field + coloured multi-octave grain
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
    a = cv2.warpAffine(a, np.float32([[1, 0, dx], [0, 1, dy]]), (x1 - x0, y1 - y0))
    return strength * cv2.GaussianBlur(a, (0, 0), sigma)


def draw_object(img: np.ndarray, o: Obj) -> np.ndarray:
    """Composite shadow then object onto a float32 RGB image (returns a new array)."""
    h, w = img.shape[:2]
    out = img.astype(np.float32, copy=True)
    x0, y0, x1, y1 = roi = _roi(o, h, w)
    if x1 <= x0 or y1 <= y0:
        return out
    win = out[y0:y1, x0:x1] * (1.0 - shadow_alpha(o, h, w, roi))[..., None]
    a = object_alpha(o, h, w, roi=roi)[..., None]
    fill = np.float32(o.color)
    if o.style == "striped":
        period = max(6.0, o.r / 3.0)
        ang = o.angle + 0.7  # stripes in image coordinates, independent of the window
        u = _coords(y1 - y0, x1 - x0, ang) + x0 * np.cos(ang) + y0 * np.sin(ang)
        t = np.clip(np.sin(2 * np.pi * u / period) * 3 + 0.5, 0, 1)[..., None]
        fill = fill * t + np.float32(o.stripe_color) * (1 - t)
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
               STYLES[rng.integers(len(STYLES))], tuple(stripe), shadow)


def to_uint8(img: np.ndarray) -> np.ndarray:
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def remove_object(img: np.ndarray, o: Obj) -> np.ndarray:
    """Inpaint the object and its visible shadow from the surroundings, uint8 in/out."""
    h, w = img.shape[:2]
    x0, y0, x1, y1 = roi = _roi(o, h, w)
    mask = (object_alpha(o, h, w, True, roi) > 0) | (shadow_alpha(o, h, w, roi) > 0.03)
    mask = cv2.dilate(mask.astype(np.uint8) * 255, np.ones((5, 5), np.uint8))
    # inpainting only reads a few pixels around the hole: work on a padded window
    m = 12
    X0, Y0, X1, Y1 = max(0, x0 - m), max(0, y0 - m), min(w, x1 + m), min(h, y1 + m)
    full = np.zeros((Y1 - Y0, X1 - X0), np.uint8)
    full[y0 - Y0:y1 - Y0, x0 - X0:x1 - X0] = mask
    out = img.copy()
    out[Y0:Y1, X0:X1] = cv2.inpaint(np.ascontiguousarray(img[Y0:Y1, X0:X1]), full, 3,
                                    cv2.INPAINT_TELEA)
    return out


# ---------------------------------------------------------------- degradations
def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1].copy()


def reencode(img: np.ndarray, rng: np.random.Generator, allow_resize: bool = True,
             strength: float = 1.0) -> tuple[np.ndarray, list[str]]:
    """Random mix of realistic editor degradations; returns (image, names of ops)."""
    out = img.astype(np.float32)
    ops: list[str] = []
    h, w = img.shape[:2]
    if rng.random() < 0.4:
        gain = 1 + rng.uniform(-0.04, 0.04) * strength
        bias = rng.uniform(-0.04, 0.04) * 255 * strength
        out = (out - 128) * gain + 128 + bias
        ops.append(f"drift({gain:.3f},{bias:+.1f})")
    if rng.random() < 0.4:
        blend = rng.uniform(0.5, 1.0)
        small = cv2.resize(out, (max(1, w // 2), max(1, h // 2)), interpolation=cv2.INTER_AREA)
        out = blend * cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC) + (1 - blend) * out
        ops.append(f"vae({blend:.2f})")
    if rng.random() < 0.4:
        sigma = rng.uniform(0.3, 0.8)
        out = cv2.GaussianBlur(out, (0, 0), sigma)
        ops.append(f"blur({sigma:.2f})")
    if allow_resize and rng.random() < 0.35:
        sx, sy = [(0.75, 0.75), (1.25, 1.0), (0.8, 1.0), (1.5, 1.5)][rng.integers(4)]
        nw, nh = max(1, int(round(w * sx))), max(1, int(round(h * sy)))
        interp = cv2.INTER_AREA if sx * sy < 1 else cv2.INTER_CUBIC
        out = cv2.resize(out, (nw, nh), interpolation=interp)
        if rng.random() < 0.5:
            out = cv2.resize(out, (w, h), interpolation=cv2.INTER_CUBIC)
            ops.append(f"resample({sx},{sy})+back")
        else:
            ops.append(f"resample({sx},{sy})")
    if rng.random() < 0.4:
        sigma = rng.uniform(1.0, 2.0)
        out = out + rng.normal(0, sigma, out.shape).astype(np.float32)
        ops.append(f"noise({sigma:.2f})")
    out = to_uint8(out)
    if rng.random() < 0.8 or not ops:
        q = int(rng.integers(70, 96))
        out = jpeg(out, q)
        ops.append(f"jpeg({q})")
    return out, ops


def global_shift(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A strong whole-image style change: hue rotation in Lab plus a brightness lift."""
    lab = rgb_to_lab(img)
    rot = rng.choice([-1, 1]) * rng.uniform(0.5, 0.9)  # radians of hue rotation
    a, b = lab[..., 1].copy(), lab[..., 2].copy()
    lab[..., 1] = a * np.cos(rot) - b * np.sin(rot)
    lab[..., 2] = a * np.sin(rot) + b * np.cos(rot)
    lab[..., 0] = np.clip(lab[..., 0] * 0.85 + rng.uniform(18, 25), 0, 100)
    return to_uint8(cv2.cvtColor(lab, cv2.COLOR_Lab2RGB) * 255)


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
