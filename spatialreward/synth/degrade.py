"""What happens to an editor's output on its way out: re-encoding and global shifts.

Real edited images differ from their source everywhere by a little (JPEG, the VAE
round trip of a diffusion editor, slight blur, brightness drift, resampling to another
resolution). ``reencode`` applies a random mix of these; ``global_shift`` is the
strong whole-image style change of an over-edit.
"""

from __future__ import annotations

import cv2
import numpy as np

from .render import rgb_to_lab, to_uint8


# ---------------------------------------------------------------- degradations
def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    """Round-trip through a JPEG of the given quality, (h, w, 3) uint8 RGB in and out."""
    ok, buf = cv2.imencode(".jpg", img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    decoded = cv2.imdecode(buf, cv2.IMREAD_COLOR) if ok else None
    if decoded is None:
        raise ValueError("JPEG round trip failed")
    return np.asarray(decoded)[..., ::-1].copy()


def reencode(img: np.ndarray, rng: np.random.Generator, allow_resize: bool = True,
             strength: float = 1.0) -> tuple[np.ndarray, list[str]]:
    """Random mix of realistic editor degradations; returns (image, names of ops)."""
    out: np.ndarray = img.astype(np.float32)
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
