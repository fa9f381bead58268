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


def draw_regions(image: Image.Image, regions: Iterable[Region]) -> Image.Image:
    """Each region's box and ``id: label`` in the region's colour."""
    out = image.convert("RGB").copy()
    draw = ImageDraw.Draw(out)
    line = max(2, round(min(out.size) / 200))
    font_px = max(12, round(min(out.size) / 32))
    font = ImageFont.load_default(size=font_px)
    for r in regions:
        color = region_color(r.id)
        x1, y1, x2, y2 = box_to_pixels(r.bbox_2d, out.size)
        draw.rectangle((x1, y1, x2, y2), outline=color, width=line)
        text = f"{r.id}: {r.label}" if r.label else str(r.id)
        tx, ty = x1, max(0, y1 - font_px - 4)
        left, top, right, bottom = draw.textbbox((tx, ty), text, font=font)
        draw.rectangle((left - 2, top - 2, right + 2, bottom + 2), fill=color)
        draw.text((tx, ty), text, fill="black", font=font)
    return out


def heatmap_overlay(image: Image.Image, heatmap: np.ndarray, alpha: float = 0.55) -> Image.Image:
    """Blend a (h, w) map in [0, 1] over ``image``; cold areas stay close to the photo."""
    rgb = np.asarray(image.convert("RGB"))
    heat = np.clip(np.nan_to_num(heatmap.astype(np.float32)), 0.0, 1.0)
    # (h, w) -> image size; bilinear keeps the map smooth at the photo's resolution
    heat = np.asarray(
        cv2.resize(heat, (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_LINEAR), np.float32
    )
    colored = cv2.applyColorMap((heat * 255).astype(np.uint8), cv2.COLORMAP_TURBO)[..., ::-1]
    # Weight by the map itself so unchanged areas are not tinted blue.
    weight = (alpha * heat)[..., None]
    blended = rgb * (1.0 - weight) + colored * weight
    return Image.fromarray(blended.round().astype(np.uint8))
