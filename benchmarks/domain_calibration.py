"""Calibrate SpatialReward-Mini's domain check: SynthEdit pairs vs edits of real photographs.

    python benchmarks/domain_calibration.py [--write models/spatialreward-mini/domain.json]

Features: Mini's pooled patch features (``out["pooled"]``) of
- SynthEdit training-split pairs (600 items x 3 candidates): the in-domain class;
- SynthEdit test and hard pairs (300 + 150 items x 3): never fitted on; their 99th
  percentile sets the threshold;
- edits of real photographs: the examples' three photos and the skimage.data photographs
  SynthEdit does not use as backgrounds, 16 random crops each, edited by a brightness
  change, a blur, a desaturation or nothing, a third of them with a painted patch.

Prints, side by side: a Mahalanobis distance from the training features (Ledoit-Wolf
covariance, the 99th-percentile threshold) and the logistic check, each with its share
of real-photo pairs flagged and of SynthEdit test/hard pairs flagged. The logistic
figures are leave-one-photograph-out: each photograph's pairs are scored by a check
fitted without it. ``--write`` then fits on everything and writes ``domain.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from PIL import Image, ImageEnhance, ImageFilter  # noqa: E402

from spatialreward.backends.mini import MiniBackend, _prepare_all  # noqa: E402
from spatialreward.mini import domain  # noqa: E402
from spatialreward.synth.generate import make_item  # noqa: E402
from spatialreward.synth.scenes import PHOTOS  # noqa: E402

VARIANTS = 16
# skimage.data pictures SynthEdit never uses as backgrounds (photographs and scans)
UNSEEN = ("motorcycle_left.png", "motorcycle_right.png", "gravel.png", "brick.png",
          "grass.png", "moon.png", "text.png", "page.png", "color.png", "clock_motion.png",
          "logo.png", "cell.png", "microaneurysms.png")

Triple = tuple[Image.Image, Image.Image, str]


def pooled(backend: MiniBackend, triples: list[Triple], batch: int = 32) -> np.ndarray:
    parts = []
    for i in range(0, len(triples), batch):
        chunk = triples[i:i + batch]
        out = backend._forward(_prepare_all(chunk, [None] * len(chunk)),
                               [t[2] for t in chunk])
        parts.append(out["pooled"].numpy())
    return np.concatenate(parts)


def synthedit(split: str, n: int) -> list[Triple]:
    triples = []
    for i in range(n):
        item, source, images = make_item(split, 0, i, 3)
        src = Image.fromarray(source)
        triples += [(src, Image.fromarray(im), item["instruction"]) for im in images]
    return triples


def photographs() -> list[Path]:
    import skimage.data

    folder = Path(os.path.dirname(skimage.data.__file__))
    assert not {Path(f).stem for f in UNSEEN} & set(PHOTOS)
    return ([ROOT / "examples" / f"photo-{p}-source.jpg" for p in ("astronaut", "cat", "coffee")]
            + [folder / f for f in UNSEEN])


def photo_edits(path: Path, rng: np.random.Generator) -> list[Triple]:
    """VARIANTS crops of one photograph, each with an everyday edit."""
    whole = Image.open(path).convert("RGB")
    out = []
    for k in range(VARIANTS):
        w, h = whole.size
        s = rng.uniform(0.5, 1.0)
        cw, ch = int(w * s), int(h * s)
        x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        im = whole.crop((x, y, x + cw, y + ch)).resize(
            (int(rng.integers(256, 513)), int(rng.integers(256, 513))))
        edit = [ImageEnhance.Brightness(im).enhance(rng.uniform(0.7, 1.3)),
                im.filter(ImageFilter.GaussianBlur(2)), im.copy(),
                ImageEnhance.Color(im).enhance(0.0)][k % 4]
        if k % 3 == 0:  # a local change: a painted patch
            edit = edit.copy()
            px, py = int(rng.integers(0, edit.width - 60)), int(rng.integers(0, edit.height - 60))
            colour = tuple(int(v) for v in rng.integers(0, 255, 3))
            edit.paste(colour, (px, py, px + int(rng.integers(20, 60)),
                                py + int(rng.integers(20, 60))))
        out.append((im, edit, "make it red"))
    return out


def mahalanobis_figures(train: np.ndarray, held: np.ndarray, real: np.ndarray) -> dict:
    from sklearn.covariance import LedoitWolf

    lw = LedoitWolf().fit(train)
    held_d, real_d = np.sqrt(lw.mahalanobis(held)), np.sqrt(lw.mahalanobis(real))
    threshold = float(np.percentile(held_d, domain.QUANTILE))
    return {"threshold": round(threshold, 2),
            "real_flagged": round(float((real_d > threshold).mean()), 4),
            "synthedit_flagged": round(float((held_d > threshold).mean()), 4),
            "real_median": round(float(np.median(real_d)), 2),
            "synthedit_median": round(float(np.median(held_d)), 2)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--write", default=None, help="fit on everything and write domain.json here")
    p.add_argument("--train-items", type=int, default=600)
    args = p.parse_args()
    import torch

    torch.set_num_threads(max(1, (os.cpu_count() or 1)))
    backend = MiniBackend()
    rng = np.random.default_rng(0)
    train = pooled(backend, synthedit("train", args.train_items))
    held = pooled(backend, synthedit("test", 300) + synthedit("hard", 150))
    paths = photographs()
    groups, real_parts = [], []
    for g, path in enumerate(paths):
        real_parts.append(pooled(backend, photo_edits(path, rng)))
        groups += [g] * VARIANTS
    real, group = np.concatenate(real_parts), np.array(groups)

    maha = mahalanobis_figures(train, held, real)
    per_photo, flagged, held_flags = {}, np.zeros(len(real), bool), []
    for g, path in enumerate(paths):
        check = domain.fit(train, real[group != g], held)
        flagged[group == g] = check.distance(real[group == g]) > 1.0
        held_flags.append(float((check.distance(held) > 1.0).mean()))
        per_photo[path.name] = round(float(flagged[group == g].mean()), 3)
    logistic = {"real_flagged": round(float(flagged.mean()), 4),
                "synthedit_flagged": round(float(np.mean(held_flags)), 4),
                "per_photo": per_photo}
    print(f"pairs: SynthEdit train {len(train)}, SynthEdit test+hard {len(held)}, "
          f"real {len(real)} ({len(paths)} photographs x {VARIANTS})")
    print(f"{'check':<34}{'real flagged':>14}{'SynthEdit flagged':>20}")
    print(f"{'Mahalanobis (Ledoit-Wolf)':<34}{maha['real_flagged']:>14.3f}"
          f"{maha['synthedit_flagged']:>20.3f}")
    print(f"{'logistic, leave-one-photo-out':<34}{logistic['real_flagged']:>14.3f}"
          f"{logistic['synthedit_flagged']:>20.3f}")
    for name, share in per_photo.items():
        print(f"  {name:<32}{share:>14.3f}")
    if args.write:
        check = domain.fit(train, real, held)
        final = {"in_sample_real_flagged": round(float((check.distance(real) > 1).mean()), 4),
                 "synthedit_flagged": round(float((check.distance(held) > 1).mean()), 4)}
        figures = {"mahalanobis": maha, "leave_one_photo_out": logistic, "final_fit": final,
                   "command": "python benchmarks/domain_calibration.py --write "
                              f"{args.write}"}
        check = domain.DomainCheck(check.mean, check.scale, check.weights, check.bias,
                                   check.threshold, figures=figures)
        Path(args.write).write_text(json.dumps(check.to_dict(), indent=1) + "\n")
        print(f"wrote {args.write} (final fit: {final})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
