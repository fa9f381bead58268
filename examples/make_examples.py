"""Write the Inspect tab's example gallery (committed; rerun to reproduce byte for byte).

    python examples/make_examples.py

- ``synth-*``: SynthEdit test items (seed 99, never used in training): the correct edit
  and flawed ones, re-encoded like editor output.
- ``photo-*``: real photographs shipped with scikit-image, edited the way the instruction
  language describes (an object added, recoloured or removed) and saved as JPEG like an
  editor's output; each has a correct candidate and flawed ones.
- ``photo-bw-*``: an honest failure, shown as one: a real photo made black and white, a
  request SpatialReward-Mini cannot read (it knows 4 shapes in 8 colours), so its
  judgment is flagged ``low_coverage`` instead of passing for a verdict.

``examples/examples.json`` lists them: source, candidates (correct first), instruction,
and what the default backend (Mini) measured on each: its overall scores, statuses, and
``gallery``, the place the Inspect tab shows it in: clear correct rankings first (by
margin), then the flagged failures, then close calls and mis-rankings. The list order
itself never changes (tests name examples by position).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from spatialreward.synth.generate import make_item  # noqa: E402
from spatialreward.synth.render import PALETTE, Obj, draw_object, remove_object, to_uint8  # noqa: E402


def save(img: np.ndarray, name: str, quality: int | None = None) -> str:
    path = HERE / name
    if quality is None:
        Image.fromarray(img).save(path, optimize=True)
    else:
        Image.fromarray(img).save(path, quality=quality)
    return path.name


def synth_examples() -> list[dict]:
    out = []
    for index in (0, 3, 5):
        item, source, images = make_item("test", 99, index, 3)
        order = item["ranking"]
        best = order[0] if isinstance(order[0], int) else order[0][0]
        ranked = [best] + [k for k in range(len(images)) if k != best]
        out.append({
            "name": f"SynthEdit: {item['instruction']}",
            "source": save(source, f"synth-{index}-source.png"),
            "candidates": [save(images[k], f"synth-{index}-c{n}.png")
                           for n, k in enumerate(ranked)],
            "instruction": item["instruction"],
        })
    return out


def obj(shape: str, color: str, cx: float, cy: float, r: float) -> Obj:
    return Obj(shape=shape, cx=cx, cy=cy, r=r, angle=0.0, color=PALETTE[color],
               shadow=(3.0, 4.0, 4.0, 0.35))


def add(photo: np.ndarray, o: Obj) -> np.ndarray:
    return to_uint8(draw_object(photo.astype(np.float32), o))


def photo_examples() -> list[dict]:
    from skimage import data

    out = []
    astro = np.ascontiguousarray(data.astronaut())  # 512 x 512
    h, w = astro.shape[:2]
    right = obj("circle", "red", 0.85 * w, 0.15 * h, 28)
    out.append({
        "name": "Photo: add a red circle (astronaut)",
        "source": save(astro, "photo-astronaut-source.jpg", 92),
        "candidates": [
            save(add(astro, right), "photo-astronaut-c0.jpg", 90),
            save(add(astro, obj("circle", "blue", 0.85 * w, 0.15 * h, 28)),
                 "photo-astronaut-c1.jpg", 90),
            save(add(astro, obj("circle", "red", 0.15 * w, 0.85 * h, 28)),
                 "photo-astronaut-c2.jpg", 90),
        ],
        "instruction": "add a red circle at the top right",
    })
    coffee = np.ascontiguousarray(data.coffee())  # 400 x 600
    h, w = coffee.shape[:2]
    star = obj("star", "yellow", 0.18 * w, 0.2 * h, 30)
    with_star = add(coffee, star)
    out.append({
        "name": "Photo: remove the yellow star (coffee)",
        "source": save(with_star, "photo-coffee-source.jpg", 92),
        "candidates": [
            save(remove_object(with_star, star), "photo-coffee-c0.jpg", 90),
            save(add(coffee, obj("star", "green", 0.18 * w, 0.2 * h, 30)),
                 "photo-coffee-c1.jpg", 90),
        ],
        "instruction": "remove the yellow star",
    })
    cat = np.ascontiguousarray(data.chelsea())  # 300 x 451
    h, w = cat.shape[:2]
    square = obj("square", "blue", 0.8 * w, 0.75 * h, 22)
    with_square = add(cat, square)
    recolored = add(cat, obj("square", "orange", 0.8 * w, 0.75 * h, 22))
    shifted = cv2.addWeighted(recolored, 0.8, np.full_like(recolored, (40, 20, 90)), 0.2, 0)
    out.append({
        "name": "Photo: make the blue square orange (cat)",
        "source": save(with_square, "photo-cat-source.jpg", 92),
        "candidates": [
            save(recolored, "photo-cat-c0.jpg", 90),
            save(shifted, "photo-cat-c1.jpg", 90),  # right colour, whole photo tinted
        ],
        "instruction": "make the blue square orange",
    })
    return out


def honest_failure() -> dict:
    from skimage import data

    cat = np.ascontiguousarray(data.chelsea())  # 300 x 451
    gray = cv2.cvtColor(cv2.cvtColor(cat, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
    half = cat.copy()
    half[:, : cat.shape[1] // 2] = gray[:, : cat.shape[1] // 2]
    return {
        "name": "Out of its depth (flagged): make the cat black and white",
        "source": save(cat, "photo-bw-source.jpg", 92),
        "candidates": [save(gray, "photo-bw-c0.jpg", 90),
                       save(half, "photo-bw-c1.jpg", 90)],  # only the left half
        "instruction": "make the cat black and white",
    }


CLEAR_MARGIN = 1.0
"""Overall points (0..10) the correct edit must lead by for a "works" demo."""


def measure(examples: list[dict]) -> None:
    """Judge every example with the default backend; record the outcome and the gallery
    order (clear correct rankings first, then flagged failures, then the rest)."""
    from spatialreward.service import Services

    services = Services()
    keys = []
    for k, e in enumerate(examples):
        results = services.inspect_group(str(HERE / e["source"]),
                                         [str(HERE / c) for c in e["candidates"]],
                                         e["instruction"])
        scores = [r.judgment.overall for r in results]
        statuses = [r.judgment.status for r in results]
        others = [s if s is not None else -1.0 for s in scores[1:]]
        margin = (scores[0] or -1.0) - max(others)
        if "low_coverage" in statuses:
            outcome, group = "flagged: out of its depth", 1
        elif margin >= CLEAR_MARGIN:
            outcome, group = "works: the correct edit ranks first", 0
        elif margin > 0:
            outcome, group = "close call: the correct edit ranks first narrowly", 2
        else:
            outcome, group = "mis-ranked: a flawed edit scores higher", 2
        e["measured"] = {"backend": results[0].judgment.backend,
                         "overall": [None if s is None else round(s, 2) for s in scores],
                         "status": statuses, "outcome": outcome}
        keys.append((group, -margin, k))
    for place, (_, _, k) in enumerate(sorted(keys), start=1):
        examples[k]["gallery"] = place


def main() -> None:
    examples = synth_examples() + photo_examples() + [honest_failure()]
    measure(examples)
    (HERE / "examples.json").write_text(json.dumps(examples, indent=2) + "\n")
    total = sum(p.stat().st_size for p in HERE.iterdir() if p.suffix in (".png", ".jpg"))
    print(f"wrote {len(examples)} examples ({total / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
