"""The judgment contract: what every backend returns and every front end shows.

A :class:`Judgment` holds the located edit regions, the region-anchored reasoning,
the raw sub-scores (``sc``, ``pq`` on 0..25) and the scores derived from them
(0..10 dimensions, 0..1 reward). Its JSON form (:meth:`Judgment.to_dict`) is the
one contract between the model core, the store, the CLI and the UI; it round-trips
losslessly: ``Judgment.from_dict(j.to_dict()) == j``.

Regions are always in the **source frame**, as ``bbox_2d = (x1, y1, x2, y2)``
normalised to 0..1000 (0 = left/top edge, 1000 = right/bottom edge). An edited image
of another size is stretched onto the source frame (see :mod:`spatialreward.images`),
so normalised coordinates are shared between the two images.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from .errors import JudgmentFormatError
from .reasoning import ReasoningSegment, split_reasoning
from .scoring import DEFAULT_AGGREGATION, SCORE_RANGE, dimension, get_aggregator

SCHEMA_VERSION = 1

Status = Literal["ok", "low_coverage", "parse_failed", "backend_error"]
STATUSES: tuple[str, ...] = ("ok", "low_coverage", "parse_failed", "backend_error")
SCORED: tuple[str, ...] = ("ok", "low_coverage")
"""Statuses whose judgment carries scores. ``low_coverage``: the backend judged, but
could not read part of the request (see :class:`Coverage`); its scores are shown
greyed, kept out of RL rewards and counted apart in bench."""

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class Mask:
    """A binary mask as row-major run lengths, starting with a run of False.

    >>> m = Mask.from_array(np.array([[0, 1, 1], [1, 0, 0]], dtype=bool))
    >>> m.counts
    (1, 3, 2)
    >>> m.to_array().astype(int).tolist()
    [[0, 1, 1], [1, 0, 0]]
    """

    height: int
    width: int
    counts: tuple[int, ...]

    def __post_init__(self) -> None:
        if self.height < 0 or self.width < 0 or any(c < 0 for c in self.counts):
            raise JudgmentFormatError("mask sizes and run lengths must be non-negative")
        if sum(self.counts) != self.height * self.width:
            raise JudgmentFormatError(
                f"mask run lengths sum to {sum(self.counts)}, expected "
                f"{self.height}x{self.width} = {self.height * self.width}"
            )

    @classmethod
    def from_array(cls, mask: np.ndarray) -> Mask:
        flat = np.asarray(mask, dtype=bool).ravel()
        # Run boundaries are where the value flips; prepend False so runs start with False.
        padded = np.concatenate([[False], flat, [not flat[-1]] if flat.size else [True]])
        edges = np.flatnonzero(padded[1:] != padded[:-1])
        counts = np.diff(np.concatenate([[0], edges])).tolist()
        h, w = np.asarray(mask).shape[:2]
        return cls(int(h), int(w), tuple(int(c) for c in counts))

    def to_array(self) -> np.ndarray:
        values = np.arange(len(self.counts)) % 2 == 1
        return np.repeat(values, self.counts).reshape(self.height, self.width)

    def to_dict(self) -> dict[str, Any]:
        return {"size": [self.height, self.width], "counts": list(self.counts)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Mask:
        h, w = d["size"]
        return cls(int(h), int(w), tuple(int(c) for c in d["counts"]))


@dataclass(frozen=True)
class Region:
    """One located edit region, in the source frame."""

    id: int
    label: str
    bbox_2d: Box
    mask: Mask | None = None
    confidence: float | None = None

    def __post_init__(self) -> None:
        x1, y1, x2, y2 = self.bbox_2d
        if not (0 <= x1 < x2 <= 1000 and 0 <= y1 < y2 <= 1000):
            raise JudgmentFormatError(
                f"region {self.id}: bbox_2d {list(self.bbox_2d)} must satisfy "
                "0 <= x1 < x2 <= 1000 and 0 <= y1 < y2 <= 1000"
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "label": self.label,
            "bbox_2d": list(self.bbox_2d),
            "mask": None if self.mask is None else self.mask.to_dict(),
            "confidence": self.confidence,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Region:
        box = tuple(int(v) for v in d["bbox_2d"])
        if len(box) != 4:
            raise JudgmentFormatError(f"bbox_2d needs 4 numbers, got {d['bbox_2d']!r}")
        mask = d.get("mask")
        return cls(
            id=int(d["id"]),
            label=str(d.get("label", "")),
            bbox_2d=box,  # type: ignore[arg-type]
            mask=None if mask is None else Mask.from_dict(mask),
            confidence=d.get("confidence"),
        )


@dataclass(frozen=True)
class Coverage:
    """What a backend could read of one request, stated with its judgment.

    ``reasons`` holds one plain sentence per thing it could not read; a judgment with
    reasons has status ``low_coverage``. The pixel evidence (the regions) does not
    depend on it: it is measured on any image.

    >>> c = Coverage(unknown_words=("collar", "dog"), operation="recolor", target=None,
    ...              reasons=("it cannot read 'collar', 'dog'",))
    >>> c.low, Coverage.from_dict(c.to_dict()) == c
    (True, True)
    """

    unknown_words: tuple[str, ...] = ()
    """Instruction words outside what the backend understands."""
    operation: str | None = None
    """The operation it recognised in the instruction (None: none found)."""
    target: str | None = None
    """The object it recognised as the edit's target (None: none found)."""
    domain_distance: float | None = None
    """How far the images lie from its training images, in units of the documented
    threshold (above 1: out of domain); None when the backend does not measure it."""
    reasons: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "unknown_words", tuple(self.unknown_words))
        object.__setattr__(self, "reasons", tuple(self.reasons))

    @property
    def low(self) -> bool:
        return bool(self.reasons)

    def to_dict(self) -> dict[str, Any]:
        return {"unknown_words": list(self.unknown_words), "operation": self.operation,
                "target": self.target, "domain_distance": self.domain_distance,
                "reasons": list(self.reasons), "low": self.low}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Coverage:
        distance = d.get("domain_distance")
        return cls(unknown_words=tuple(d.get("unknown_words", ())),
                   operation=d.get("operation"), target=d.get("target"),
                   domain_distance=None if distance is None else float(distance),
                   reasons=tuple(d.get("reasons", ())))


def low_coverage_warning(model: str, coverage: Coverage) -> str:
    """The one sentence every front end shows for a low-coverage judgment.

    >>> low_coverage_warning("SpatialReward-Mini", Coverage(reasons=("it cannot read 'dog'",)))
    "SpatialReward-Mini is out of its depth here: it cannot read 'dog'. Its scores measure \
only pixel changes; the regions are still measured on any image. For real photographs \
load a VLM checkpoint: docs/vlm.md"
    """
    return (f"{model} is out of its depth here: {'; '.join(coverage.reasons)}. Its scores "
            "measure only pixel changes; the regions are still measured on any image. For "
            "real photographs load a VLM checkpoint: docs/vlm.md")


@dataclass(frozen=True)
class AttentionSummary:
    """Attention-collapse diagnostics of one judgment (all shares and concentrations in 0..1).

    ``entropy_*`` are in nats over each image's patch grid; ``concentration`` is the
    attention mass on the top 5% of patches of both images together.
    """

    source_share: float
    entropy_source: float
    entropy_edited: float
    concentration: float
    in_region_share: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AttentionSummary:
        return cls(**d)


def _pair(values: Any, what: str) -> tuple[float, float] | None:
    if values is None:
        return None
    pair = tuple(float(v) for v in values)
    if len(pair) != 2 or not all(math.isfinite(v) and 0.0 <= v <= SCORE_RANGE for v in pair):
        raise JudgmentFormatError(
            f"{what} must be two finite numbers in 0..{SCORE_RANGE:g}, got {values!r}"
        )
    return pair  # type: ignore[return-value]


@dataclass(frozen=True)
class Judgment:
    """A reward model's verdict on one (source, edited, instruction) triple."""

    status: Status
    sc: tuple[float, float] | None = None
    """[edit_success, over_editing] on 0..25; high over_editing = minimal, faithful edit."""
    pq: tuple[float, float] | None = None
    """[naturalness, artifacts] on 0..25; high artifacts = clean image."""
    regions: tuple[Region, ...] = ()
    reasoning: str = ""
    """SC reasoning, with ``<|bbox_ID|>`` / ``<|global|>`` markers."""
    pq_reasoning: str = ""
    aggregation: str = DEFAULT_AGGREGATION
    backend: str = ""
    backend_version: str = ""
    raw_sc: str | None = None
    raw_pq: str | None = None
    error: str | None = None
    warnings: tuple[str, ...] = ()
    timings_ms: dict[str, float] = field(default_factory=dict)
    attention: AttentionSummary | None = None
    coverage: Coverage | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    ensemble_overall: float | None = None
    """Set by a self-ensemble that averages each sample's overall score (EditScore's
    ``average_last``): the overall score is then this mean, not the aggregate of the
    mean SC / PQ pairs."""

    # Derived in __post_init__, never passed in.
    prompt_following: float | None = field(init=False, default=None)
    consistency: float | None = field(init=False, default=None)
    semantic_consistency: float | None = field(init=False, default=None)
    perceptual_quality: float | None = field(init=False, default=None)
    overall: float | None = field(init=False, default=None)
    reward: float | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise JudgmentFormatError(f"status must be one of {STATUSES}, got {self.status!r}")
        sc, pq = _pair(self.sc, "sc"), _pair(self.pq, "pq")
        set_ = object.__setattr__  # frozen: derived fields are set once, here
        set_(self, "sc", sc)
        set_(self, "pq", pq)
        set_(self, "regions", tuple(self.regions))
        set_(self, "warnings", tuple(self.warnings))
        ids = [r.id for r in self.regions]
        if len(set(ids)) != len(ids):
            raise JudgmentFormatError(f"region ids must be unique, got {ids}")
        agg = get_aggregator(self.aggregation)(sc, pq)
        set_(self, "prompt_following", None if sc is None else dimension(sc[0]))
        set_(self, "consistency", None if sc is None else dimension(sc[1]))
        set_(self, "semantic_consistency", agg.semantic_consistency)
        set_(self, "perceptual_quality", agg.perceptual_quality)
        if self.status == "low_coverage" and not (self.coverage and self.coverage.low):
            raise JudgmentFormatError("a low_coverage judgment needs a coverage with reasons")
        # Only a complete, successful judgment yields an overall score and a reward: a
        # failed parse must never turn into a plausible-looking number. A low-coverage
        # one keeps its overall score (shown greyed, benched apart) but no reward.
        overall = agg.overall if self.ensemble_overall is None else self.ensemble_overall
        if overall is not None and not 0.0 <= overall <= 10.0:
            raise JudgmentFormatError(f"ensemble_overall must be in 0..10, got {overall}")
        set_(self, "overall", overall if self.scored else None)
        set_(self, "reward", overall / 10.0 if self.ok and overall is not None else None)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def scored(self) -> bool:
        """True when the judgment carries scores (``ok`` or ``low_coverage``)."""
        return self.status in SCORED

    @property
    def segments(self) -> tuple[ReasoningSegment, ...]:
        """The SC reasoning split at its ``<|bbox_ID|>`` / ``<|global|>`` markers."""
        return split_reasoning(self.reasoning)

    def region(self, region_id: int) -> Region | None:
        return next((r for r in self.regions if r.id == region_id), None)

    # --- JSON -----------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready contract; ``scores`` and ``reasoning_segments`` are derived."""
        return {
            "schema_version": SCHEMA_VERSION,
            "status": self.status,
            "backend": self.backend,
            "backend_version": self.backend_version,
            "regions": [r.to_dict() for r in self.regions],
            "reasoning": self.reasoning,
            "reasoning_segments": [s.to_dict() for s in self.segments],
            "pq_reasoning": self.pq_reasoning,
            "sc": None if self.sc is None else list(self.sc),
            "pq": None if self.pq is None else list(self.pq),
            "aggregation": self.aggregation,
            "scores": {
                "prompt_following": self.prompt_following,
                "consistency": self.consistency,
                "semantic_consistency": self.semantic_consistency,
                "perceptual_quality": self.perceptual_quality,
                "overall": self.overall,
                "reward": self.reward,
            },
            "raw_sc": self.raw_sc,
            "raw_pq": self.raw_pq,
            "error": self.error,
            "warnings": list(self.warnings),
            "timings_ms": dict(self.timings_ms),
            "attention": None if self.attention is None else self.attention.to_dict(),
            "coverage": None if self.coverage is None else self.coverage.to_dict(),
            "meta": self.meta,
            **({} if self.ensemble_overall is None
               else {"ensemble_overall": self.ensemble_overall}),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Judgment:
        version = d.get("schema_version", SCHEMA_VERSION)
        if version != SCHEMA_VERSION:
            raise JudgmentFormatError(
                f"judgment schema_version {version} is not supported (this build reads "
                f"{SCHEMA_VERSION}); upgrade SpatialReward Studio"
            )
        try:
            attention, coverage = d.get("attention"), d.get("coverage")
            return cls(
                status=d["status"],
                sc=d.get("sc"),
                pq=d.get("pq"),
                regions=tuple(Region.from_dict(r) for r in d.get("regions", [])),
                reasoning=d.get("reasoning", ""),
                pq_reasoning=d.get("pq_reasoning", ""),
                aggregation=d.get("aggregation", DEFAULT_AGGREGATION),
                backend=d.get("backend", ""),
                backend_version=d.get("backend_version", ""),
                raw_sc=d.get("raw_sc"),
                raw_pq=d.get("raw_pq"),
                error=d.get("error"),
                warnings=tuple(d.get("warnings", ())),
                timings_ms={k: float(v) for k, v in d.get("timings_ms", {}).items()},
                attention=None if attention is None else AttentionSummary.from_dict(attention),
                coverage=None if coverage is None else Coverage.from_dict(coverage),
                meta=dict(d.get("meta", {})),
                ensemble_overall=d.get("ensemble_overall"),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise JudgmentFormatError(f"not a valid judgment: {err!r}") from err

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> Judgment:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise JudgmentFormatError(f"judgment JSON does not parse: {err}") from err
        return cls.from_dict(data)


def served_reward(j: Judgment) -> float | None:
    """The reward a reward server answers for ``j``: its own, or the weighted mean of a
    reward mix when one judged it (``serve-reward --mix``: ``meta["reward_mix"]``)."""
    mix = j.meta.get("reward_mix")
    return mix.get("reward") if isinstance(mix, dict) else j.reward
