"""Image sizes as the official Qwen-VL evaluation pipeline chooses them (``resize=official``).

The SpatialReward and EditScore evaluations hand each image to ``qwen_vl_utils`` before
the model's processor sees it. Its rule, implemented here from its documented behaviour
(we do not depend on the package): with ``factor`` = patch size x merge size (28 for
Qwen2.5-VL, 32 for Qwen3-VL),

1. an aspect ratio above 200 is refused;
2. each side is rounded to the nearest multiple of ``factor`` (at least ``factor``);
3. when that area exceeds ``max_pixels``, both sides are scaled by
   ``sqrt(h * w / max_pixels)`` and rounded *down* to the factor; when it falls below
   ``min_pixels``, scaled up by ``sqrt(min_pixels / (h * w))`` and rounded *up*;
4. the defaults are 4 and 16,384 tokens: ``min_pixels = 4 * factor**2``,
   ``max_pixels = 16384 * factor**2`` (no practical cap);
5. RGBA images are composited onto white, others converted to RGB, and the image is
   resized with Pillow's default filter (bicubic).

The model's own image processor then runs with the checkpoint's ``preprocessor_config.json``
limits, as vLLM's does.
"""

from __future__ import annotations

import math

from PIL import Image

from ..errors import InputError

MAX_RATIO = 200
MIN_TOKENS, MAX_TOKENS = 4, 16_384


def official_size(height: int, width: int, factor: int, min_pixels: int | None = None,
                  max_pixels: int | None = None) -> tuple[int, int]:
    """(height, width) after the official rule above.

    >>> official_size(768, 1024, 32)            # already multiples: unchanged
    (768, 1024)
    >>> official_size(1000, 1000, 28, max_pixels=589_824)  # scaled down, floored
    (756, 756)
    >>> official_size(20, 30, 32)               # scaled up to 4 tokens, ceiled
    (64, 96)
    """
    lo = MIN_TOKENS * factor**2 if min_pixels is None else min_pixels
    hi = MAX_TOKENS * factor**2 if max_pixels is None else max_pixels
    if lo > hi:
        raise InputError(f"min_pixels ({lo}) is above max_pixels ({hi})")
    if max(height, width) / min(height, width) > MAX_RATIO:
        raise InputError(f"an image of {width}x{height} has an aspect ratio above {MAX_RATIO}, "
                         "which the official Qwen-VL preprocessing refuses; crop it")
    h = max(factor, round(height / factor) * factor)
    w = max(factor, round(width / factor) * factor)
    if h * w > hi:
        beta = math.sqrt(height * width / hi)
        h = math.floor(height / beta / factor) * factor
        w = math.floor(width / beta / factor) * factor
    elif h * w < lo:
        beta = math.sqrt(lo / (height * width))
        h = math.ceil(height * beta / factor) * factor
        w = math.ceil(width * beta / factor) * factor
    return h, w


def official_resize(image: Image.Image, factor: int, min_pixels: int | None = None,
                    max_pixels: int | None = None) -> Image.Image:
    """The image as the official pipeline passes it on: RGB (alpha onto white), resized to
    :func:`official_size` with Pillow's default filter."""
    if image.mode == "RGBA":
        flat = Image.new("RGB", image.size, (255, 255, 255))
        flat.paste(image, mask=image.getchannel("A"))
        image = flat
    else:
        image = image.convert("RGB")
    h, w = official_size(image.height, image.width, factor, min_pixels, max_pixels)
    return image if (w, h) == image.size else image.resize((w, h))
