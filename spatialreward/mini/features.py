"""What SpatialReward-Mini sees: images at a fixed size, pixel evidence, region proposals, words.

The same function prepares training examples and live requests, so the model is
judged on exactly the inputs it was trained on.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from ..regions import PixelEvidence, propose_regions

SIZE = 128  # both images are stretched to SIZE x SIZE (the source frame, see images.py)
MAX_REGIONS = 3  # region proposals per candidate (largest changed areas first)
MAX_TOKENS = 16
PAD, UNK = 0, 1
_WORD = re.compile(r"[a-z]+")


class Tokenizer:
    """A word-level tokeniser whose vocabulary is learned from training instructions.

    Unknown words map to ``[UNK]`` rather than failing, so a paraphrase with new words
    degrades gracefully. Saved as JSON next to the weights.

    >>> tok = Tokenizer.build(["Make the red circle blue.", "remove the star"])
    >>> tok.encode("make the GREEN circle blue")[:5]
    [2, 3, 1, 5, 6]
    """

    def __init__(self, vocab: list[str]) -> None:
        self.vocab = vocab
        self.index = {w: i for i, w in enumerate(vocab)}

    @classmethod
    def build(cls, texts: list[str]) -> Tokenizer:
        words: list[str] = []
        for text in texts:
            for w in _WORD.findall(text.lower()):
                if w not in words:
                    words.append(w)
        return cls(["[PAD]", "[UNK]", *words])

    def encode(self, text: str) -> list[int]:
        ids = [self.index.get(w, UNK) for w in _WORD.findall(text.lower())][:MAX_TOKENS]
        return ids + [PAD] * (MAX_TOKENS - len(ids))

    def save(self, path: Path) -> None:
        path.write_text(json.dumps({"vocab": self.vocab}, indent=0))

    @classmethod
    def load(cls, path: Path) -> Tokenizer:
        return cls(json.loads(path.read_text())["vocab"])


@dataclass(frozen=True)
class Features:
    """One (source, edited) pair as arrays; ``boxes`` are (x1, y1, x2, y2) in 0..1."""

    source: np.ndarray  # (3, SIZE, SIZE) uint8
    edited: np.ndarray  # (3, SIZE, SIZE) uint8
    heat: np.ndarray  # (SIZE, SIZE) uint8, pixel-evidence change map x 255
    boxes: np.ndarray  # (MAX_REGIONS, 4) float32
    valid: np.ndarray  # (MAX_REGIONS,) bool
    stats: np.ndarray  # (4,) float32: preservation, global shift, noise floor, changed area
    evidence: PixelEvidence


def _square(img: Image.Image) -> np.ndarray:
    arr = np.asarray(img.convert("RGB"))
    out = cv2.resize(arr, (SIZE, SIZE), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(out.transpose(2, 0, 1))


def prepare(source: Image.Image, edited: Image.Image,
            evidence: PixelEvidence | None = None) -> Features:
    """Resize both images onto the source frame at SIZE, and propose regions."""
    if evidence is None:
        evidence = propose_regions(source, edited)
    heat = cv2.resize(evidence.heatmap.astype(np.float32), (SIZE, SIZE),
                      interpolation=cv2.INTER_LINEAR)
    boxes = np.zeros((MAX_REGIONS, 4), np.float32)
    valid = np.zeros(MAX_REGIONS, bool)
    for i, r in enumerate(evidence.regions[:MAX_REGIONS]):
        boxes[i] = np.array(r.bbox_2d, np.float32) / 1000.0
        valid[i] = True
    changed = float(sum(r.area_fraction for r in evidence.regions))
    stats = np.array([evidence.preservation, evidence.global_shift / 20.0,
                      evidence.noise_floor / 10.0, changed], np.float32)
    return Features(_square(source), _square(edited),
                    (np.clip(heat, 0, 1) * 255).astype(np.uint8), boxes, valid, stats, evidence)
