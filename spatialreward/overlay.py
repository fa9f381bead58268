"""Pictures that explain a judgment: regions drawn on images, heatmaps blended over them.

Pure functions of (image, data) -> new image; the inputs are never modified.
"""

from __future__ import annotations

from collections.abc import Iterable

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .judgment import Region

# Colour-blind-friendly categorical palette (Okabe-Ito, then Tol's bright).
PALETTE = (
    "#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7",
    "#EE6677", "#228833", "#4477AA", "#CCBB44", "#66CCEE", "#AA3377",
)


def region_color(region_id: int) -> str:
    """The colour a region is drawn in everywhere (boxes, reasoning highlights).

    >>> region_color(0), region_color(13)
    ('#E69F00', '#E69F00')
    """
    return PALETTE[region_id % len(PALETTE)]


def box_to_pixels(bbox_2d: tuple[int, int, int, int], size: tuple[int, int]) -> tuple[int, ...]:
    """Normalised 0..1000 box -> pixel corners in an image of ``size`` = (width, height).

    >>> box_to_pixels((0, 500, 1000, 1000), (640, 480))
    (0, 240, 639, 479)
    """
    w, h = size
    x1, y1, x2, y2 = bbox_2d
    return (
        round(x1 * w / 1000),
        round(y1 * h / 1000),
        max(round(x1 * w / 1000), round(x2 * w / 1000) - 1),
        max(round(y1 * h / 1000), round(y2 * h / 1000) - 1),
    )


TOP_CLEARANCE = 0.12
"""Share of an image's height, from the top, where no label is drawn: front ends put
their badges and buttons there (gradio's label badge top left, download and fullscreen
top right), and a label under them cannot be read."""


def label_position(box: tuple[int, int, int, int], text_size: tuple[int, int],
                   size: tuple[int, int]) -> tuple[int, int]:
    """Top-left corner of a box's label of ``text_size`` = (w, h) in an image of ``size``:
    just below the box, else just above it, never in the top :data:`TOP_CLEARANCE` band,
    always inside the image (when the label fits in it).

    >>> label_position((10, 0, 60, 20), (30, 12), (200, 200))  # box at the very top
    (10, 24)
    >>> label_position((150, 180, 199, 199), (30, 12), (200, 200))  # at the bottom right
    (150, 166)
    """
    w, h = size
    tw, th = text_size
    x1, y1, _, y2 = box
    gap = 2
    y = y2 + gap if y2 + gap + th <= h else y1 - gap - th
    y = max(y, round(TOP_CLEARANCE * h))
    x = min(max(0, x1), max(0, w - tw))
    return x, min(max(0, y), max(0, h - th))


def draw_regions(image: Image.Image, regions: Iterable[Region]) -> Image.Image:
    """Each region's box and ``id: label`` in the region's colour; labels sit below their
    box (:func:`label_position`), clear of the badges a front end draws at the top."""
    out = image.convert("RGB").copy()
    draw = ImageDraw.Draw(out)
    line = max(2, round(min(out.size) / 200))
    font_px = max(12, round(min(out.size) / 32))
    font = ImageFont.load_default(size=font_px)
    taken: list[tuple[int, int, int, int]] = []  # labels drawn so far
    for r in regions:
        color = region_color(r.id)
        x1, y1, x2, y2 = box_to_pixels(r.bbox_2d, out.size)
        draw.rectangle((x1, y1, x2, y2), outline=color, width=line)
        text = f"{r.id}: {r.label}" if r.label else str(r.id)
        left, top, right, bottom = (round(v) for v in draw.textbbox((0, 0), text, font=font))
        pad = 2
        tw, th = right - left + 2 * pad, bottom - top + 2 * pad
        tx, ty = label_position((x1, y1, x2, y2), (tw, th), out.size)
        ty = _below_taken((tx, ty, tx + tw, ty + th), taken, out.size[1])
        taken.append((tx, ty, tx + tw, ty + th))
        draw.rectangle((tx, ty, tx + tw, ty + th), fill=color)
        draw.text((tx + pad - left, ty + pad - top), text, fill="black", font=font)
    return out


def _below_taken(rect: tuple[int, int, int, int], taken: list[tuple[int, int, int, int]],
                 height: int) -> int:
    """The top of ``rect`` moved down past the labels it would cover (two regions with
    the same box would print one label over the other), while it fits in the image.

    >>> _below_taken((0, 10, 30, 22), [(5, 10, 40, 22)], 100)
    24
    """
    x1, y, x2, y2 = rect
    h = y2 - y
    while True:
        below = [b2 for a1, b1, a2, b2 in taken if x1 < a2 and a1 < x2 and y < b2 and b1 < y + h]
        if not below or max(below) + 2 + h > height:
            return y
        y = max(below) + 2


def heatmap_overlay(image: Image.Image, heatmap: np.ndarray, alpha: float = 0.75,
                    gamma: float = 0.6) -> Image.Image:
    """Blend a (h, w) map in [0, 1] over ``image`` in the turbo colours (blue = low, red =
    high; :func:`scale_colors`); cold areas stay close to the photo. ``gamma`` < 1 lifts
    the weak values attention spreads over most patches, so a map is not a faint tint."""
    rgb = np.asarray(image.convert("RGB"))
    heat = np.clip(np.nan_to_num(heatmap.astype(np.float32)), 0.0, 1.0) ** gamma
    # (h, w) -> image size; bilinear keeps the map smooth at the photo's resolution
    heat = np.asarray(
        cv2.resize(heat, (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_LINEAR), np.float32
    )
    colored = cv2.applyColorMap((heat * 255).astype(np.uint8), cv2.COLORMAP_TURBO)[..., ::-1]
    # Weight by the map itself so unchanged areas are not tinted blue.
    weight = (alpha * heat)[..., None]
    blended = rgb * (1.0 - weight) + colored * weight
    return Image.fromarray(blended.round().astype(np.uint8))


def scale_colors(n: int = 7) -> list[str]:
    """``n`` evenly spaced colours of the heatmap scale, low to high, for a legend.

    >>> scale_colors(2)
    ['#30123b', '#7a0403']
    """
    ramp = np.linspace(0, 255, n).round().astype(np.uint8).reshape(-1, 1)
    bgr = cv2.applyColorMap(ramp, cv2.COLORMAP_TURBO).reshape(-1, 3)
    return ["#{:02x}{:02x}{:02x}".format(*px[::-1]) for px in bgr]
