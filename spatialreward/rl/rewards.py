"""Rewards for sampled edits: any backend, or a weighted mix, judged in batches.

Each edit (and its source) is upscaled to ``judge_size`` pixels and judged by every
backend of the mix; the reward is the weighted mean of the judgments' ``reward`` (0..1).
A judgment that is not ``ok`` (``parse_failed``, ``backend_error``, ...) has no reward:
the edit is **excluded** from its group's statistics and from the loss, and counted per
backend and status, never replaced by a constant. A backend that raises fails the edits
of that batch the same way (``backend_error``).

Besides the reward, every edit gets its ground truth (:mod:`.groundtruth`): the reward
says what the judge thinks, the ground truth what actually happened.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from ..backends import create
from ..backends.base import Backend, judge_in_batches
from ..judgment import Judgment
from .config import ORACLE, RewardTerm
from .groundtruth import GroundTruth, ground_truth
from .prompts import EditPrompt


@dataclass
class RewardBatch:
    """Rewards of N edits."""

    reward: np.ndarray  # (N,) float64, NaN where excluded
    valid: np.ndarray  # (N,) bool
    per_term: dict[str, np.ndarray]  # backend spec -> (N,) its reward (NaN where failed)
    truth: list[GroundTruth]
    judgments: list[dict[str, Judgment]]  # per edit: backend spec -> judgment
    failures: Counter = field(default_factory=Counter)  # "spec:status" -> count
    seconds: float = 0.0

    @property
    def gt_success(self) -> np.ndarray:
        return np.array([t.success for t in self.truth], np.float64)

    @property
    def gt_score(self) -> np.ndarray:
        return np.array([t.score for t in self.truth], np.float64)


def _oracle_judgment(t: GroundTruth) -> Judgment:
    """The ground truth dressed as a judgment (sc from progress and spill, pq perfect)."""
    return Judgment(status="ok", sc=(25 * t.progress, 25 * max(0.0, 1 - t.spill)),
                    pq=(25.0, 25.0), backend=ORACLE, backend_version="1",
                    reasoning=f"<|global|> ground truth: progress {t.progress:.2f}, "
                              f"spill {t.spill:.2f}, success {t.success}.")


class RewardMix:
    """The reward of a run: builds its backends once, then scores batches of edits."""

    def __init__(self, terms: Sequence[RewardTerm], *, judge_size: int = 256,
                 batch: int = 32, build: Callable[[str], Backend] = create) -> None:
        self.terms = tuple(terms)
        self.judge_size = judge_size
        self.batch = batch
        self.backends: dict[str, Backend] = {t.backend: build(t.backend) for t in self.terms
                                             if t.backend != ORACLE}

    def _image(self, arr: np.ndarray) -> Image.Image:
        img = Image.fromarray(arr)
        if img.size != (self.judge_size, self.judge_size):
            img = img.resize((self.judge_size, self.judge_size), Image.Resampling.BICUBIC)
        return img

    def score(self, prompts: Sequence[EditPrompt], images: np.ndarray) -> RewardBatch:
        """Reward and ground truth of ``images[k]`` ((N, S, S, 3) uint8) as the edit of
        ``prompts[k]``."""
        t0 = time.perf_counter()
        n = len(prompts)
        truth = [ground_truth(p.source, p.target, p.footprint, img)
                 for p, img in zip(prompts, images, strict=True)]
        judgments: list[dict[str, Judgment]] = [{} for _ in range(n)]
        sources = {id(p): self._image(p.source) for p in prompts}
        triples = [(sources[id(p)], self._image(img), p.instruction)
                   for p, img in zip(prompts, images, strict=True)]
        for term in self.terms:
            if term.backend == ORACLE:
                got = [_oracle_judgment(t) for t in truth]
            else:
                got = judge_in_batches(self.backends[term.backend], triples, self.batch)
            for k, j in enumerate(got):
                judgments[k][term.backend] = j
        per_term = {t.backend: np.array([np.nan if judgments[k][t.backend].reward is None
                                         else judgments[k][t.backend].reward
                                         for k in range(n)], np.float64) for t in self.terms}
        failures: Counter = Counter()
        for k in range(n):
            for spec, j in judgments[k].items():
                if not j.ok:
                    failures[f"{spec}:{j.status}"] += 1
        weights = np.array([t.weight for t in self.terms], np.float64)
        stacked = np.stack([per_term[t.backend] for t in self.terms], 1)  # (N, terms)
        valid = np.asarray(~np.isnan(stacked).any(1), bool)
        reward = np.full(n, np.nan)
        reward[valid] = (stacked[valid] * weights).sum(1) / weights.sum()
        return RewardBatch(reward, valid, per_term, truth, judgments, failures,
                           time.perf_counter() - t0)
