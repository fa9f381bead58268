"""The SpatialReward output protocol: raw model text <-> :class:`Judgment`.

A generative judge answers two calls (see ``shared/PROTOCOL.md``):

- **SC** on [source, edited] + instruction::

    {"edit_region": [{"id": 0, "label": "cup", "bbox_2d": [x1, y1, x2, y2]}],
     "reasoning": "<|bbox_0|> ... <|global|> ...", "score": [edit_success, over_editing]}

- **PQ** on [edited]: ``{"reasoning": "...", "score": [naturalness, artifacts]}``

Boxes are 0..1000 in the edited image; with the stretch convention of
:mod:`spatialreward.images` that is the same box in the source frame.

Parsing is forgiving about form (``<think>`` blocks, code fences, prose around the
JSON, broken JSON repaired with ``json_repair``, numbers as strings, swapped or
out-of-range corners) and strict about substance: when no scores can be read the
result is ``status="parse_failed"`` with the raw text kept and no score at all.
Every repair is recorded in ``Judgment.warnings``.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

import json_repair

from .errors import ProtocolParseError
from .judgment import Judgment, Region
from .reasoning import referenced_regions
from .scoring import DEFAULT_AGGREGATION, SCORE_RANGE

_THINK_BLOCK = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.DOTALL)
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


@dataclass(frozen=True)
class ScoredAnswer:
    """One parsed call: its two scores, reasoning, regions (SC only) and repair notes."""

    score: tuple[float, float]
    reasoning: str
    regions: tuple[Region, ...]
    warnings: tuple[str, ...]


def strip_think(text: str) -> str:
    """Remove ``<think>...</think>`` blocks (and anything before a stray ``</think>``).

    >>> strip_think("<think>hmm</think>{}")
    '{}'
    >>> strip_think("hidden prompt part</think> {}")
    ' {}'
    """
    text = _THINK_BLOCK.sub("", text)
    lower = text.lower()
    if "</think>" in lower:  # the opening tag was in the prompt (chat templates do this)
        text = text[lower.rindex("</think>") + len("</think>") :]
    elif "<think>" in lower:
        text = text[: lower.index("<think>")]
        if "{" not in text:
            raise ProtocolParseError(
                "the <think> block is never closed, so the answer was cut off; "
                "raise max_new_tokens"
            )
    return text


def extract_json(text: str) -> tuple[dict[str, Any], list[str]]:
    """Find the answer object in model text; returns it and the repairs made.

    >>> extract_json('Sure! ```json\\n{"score": [20, "18"],}\\n```')
    ({'score': [20, '18']}, ['repaired malformed JSON'])
    """
    warnings: list[str] = []
    body = strip_think(text)
    fenced = _FENCE.search(body)
    if fenced and "{" in fenced.group(1):
        body = fenced.group(1)
    start = body.find("{")
    if start < 0:
        raise ProtocolParseError("no JSON object in the output")
    end = body.rfind("}")
    candidate = body[start : end + 1] if end > start else body[start:]
    try:
        obj = json.loads(candidate)
    except json.JSONDecodeError:
        obj = json_repair.loads(candidate)
        warnings.append("repaired malformed JSON")
    if not isinstance(obj, dict):
        raise ProtocolParseError(f"expected a JSON object, found {type(obj).__name__}")
    return obj, warnings


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool):
        raise ProtocolParseError(f"{what} is a boolean, not a number")
    if isinstance(value, (int, float)):
        x = float(value)
    elif isinstance(value, str) and (m := _NUMBER.search(value)):
        x = float(m.group())
    else:
        raise ProtocolParseError(f"{what} is not a number: {value!r}")
    if not math.isfinite(x):
        raise ProtocolParseError(f"{what} is not finite: {value!r}")
    return x


def parse_score_pair(value: Any, warnings: list[str]) -> tuple[float, float]:
    """Read ``[a, b]`` (numbers, numeric strings or one string "a, b"), clamped to 0..25.

    >>> parse_score_pair(["20", 30], w := [])
    (20.0, 25.0)
    >>> w
    ['score 30 clamped to 0..25']
    """
    if isinstance(value, str):
        value = _NUMBER.findall(value)
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ProtocolParseError(f"score must be a list of two numbers, got {value!r}")
    pair = []
    for i, v in enumerate(value):
        x = _number(v, f"score[{i}]")
        if not 0.0 <= x <= SCORE_RANGE:
            warnings.append(f"score {x:g} clamped to 0..{SCORE_RANGE:g}")
            x = min(SCORE_RANGE, max(0.0, x))
        pair.append(x)
    return pair[0], pair[1]


def parse_box(value: Any, warnings: list[str]) -> tuple[int, int, int, int]:
    """Four numbers -> integer box with ordered corners, clamped to 0..1000, non-empty.

    >>> parse_box(["900", 40, 100, 1200], [])
    (100, 40, 900, 1000)
    """
    if not isinstance(value, (list, tuple)) or len(value) != 4:
        raise ProtocolParseError(f"bbox_2d must be 4 numbers, got {value!r}")
    x1, y1, x2, y2 = (round(_number(v, "bbox_2d value")) for v in value)
    clamped = [min(1000, max(0, v)) for v in (x1, y1, x2, y2)]
    if clamped != [x1, y1, x2, y2]:
        warnings.append(f"box {[x1, y1, x2, y2]} clamped to 0..1000")
    x1, y1, x2, y2 = clamped
    if x1 > x2 or y1 > y2:
        warnings.append("box corners were swapped")
    x1, x2 = sorted((x1, x2))
    y1, y2 = sorted((y1, y2))
    # A zero-width box still points somewhere; widen it to one unit instead of dropping it.
    if x1 == x2:
        x1, x2 = (x1, x1 + 1) if x1 < 1000 else (999, 1000)
    if y1 == y2:
        y1, y2 = (y1, y1 + 1) if y1 < 1000 else (999, 1000)
    return x1, y1, x2, y2


def _parse_regions(value: Any, warnings: list[str]) -> tuple[Region, ...]:
    if value is None:
        warnings.append("no edit_region in the answer; read as no regions")
        return ()
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        warnings.append(f"edit_region is not a list ({type(value).__name__}); ignored")
        return ()
    regions: list[Region] = []
    used: set[int] = set()
    for index, item in enumerate(value):
        if not isinstance(item, dict) or "bbox_2d" not in item:
            warnings.append(f"edit_region[{index}] has no bbox_2d; dropped")
            continue
        try:
            box = parse_box(item["bbox_2d"], warnings)
            rid = int(_number(item.get("id", index), "region id"))
        except ProtocolParseError as err:
            warnings.append(f"edit_region[{index}] dropped: {err}")
            continue
        if rid in used:
            new = max(used) + 1
            warnings.append(f"duplicate region id {rid} renumbered to {new}")
            rid = new
        used.add(rid)
        regions.append(Region(id=rid, label=str(item.get("label", "")), bbox_2d=box))
    return tuple(regions)


def parse_answer(text: str, *, with_regions: bool) -> ScoredAnswer:
    """Parse one call's raw text; raises :class:`ProtocolParseError` when unusable."""
    obj, warnings = extract_json(text)
    if "score" not in obj:
        raise ProtocolParseError(f"the answer has no 'score' (keys: {sorted(obj)})")
    score = parse_score_pair(obj["score"], warnings)
    reasoning = obj.get("reasoning", "")
    if not isinstance(reasoning, str):
        reasoning = json.dumps(reasoning, ensure_ascii=False)
        warnings.append("reasoning was not a string; kept as JSON text")
    regions = _parse_regions(obj.get("edit_region"), warnings) if with_regions else ()
    if with_regions:
        unknown = referenced_regions(reasoning) - {r.id for r in regions}
        if unknown:
            warnings.append(f"reasoning mentions unknown region ids {sorted(unknown)}")
    return ScoredAnswer(score, reasoning, regions, tuple(warnings))


def parse_judgment(
    sc_text: str | None,
    pq_text: str | None,
    *,
    backend: str = "",
    backend_version: str = "",
    aggregation: str = DEFAULT_AGGREGATION,
    meta: dict[str, Any] | None = None,
) -> Judgment:
    """Turn the raw SC and PQ outputs into a Judgment. Never raises on bad text.

    >>> j = parse_judgment('{"edit_region": [], "reasoning": "<|global|> fine", "score": [20, 25]}',
    ...                    '{"reasoning": "clean", "score": [25, 25]}')
    >>> j.status, j.prompt_following, round(j.overall, 3)
    ('ok', 8.0, 9.028)
    >>> bad = parse_judgment("I cannot judge this.", None)
    >>> bad.status, bad.overall, bad.raw_sc
    ('parse_failed', None, 'I cannot judge this.')
    """
    errors: list[str] = []
    warnings: list[str] = []
    sc = pq = None
    if sc_text is not None:
        try:
            sc = parse_answer(sc_text, with_regions=True)
            warnings += [f"sc: {w}" for w in sc.warnings]
        except ProtocolParseError as err:
            errors.append(f"SC output unusable: {err}")
    if pq_text is not None:
        try:
            pq = parse_answer(pq_text, with_regions=False)
            warnings += [f"pq: {w}" for w in pq.warnings]
        except ProtocolParseError as err:
            errors.append(f"PQ output unusable: {err}")
    if sc_text is None and pq_text is None:
        errors.append("the backend returned no output")
    return Judgment(
        status="parse_failed" if errors else "ok",
        sc=None if sc is None else sc.score,
        pq=None if pq is None else pq.score,
        regions=() if sc is None else sc.regions,
        reasoning="" if sc is None else sc.reasoning,
        pq_reasoning="" if pq is None else pq.reasoning,
        aggregation=aggregation,
        backend=backend,
        backend_version=backend_version,
        raw_sc=sc_text,
        raw_pq=pq_text,
        error="; ".join(errors) or None,
        warnings=tuple(warnings),
        meta=dict(meta or {}),
    )


def render_sc(judgment: Judgment) -> str:
    """The SC answer a SpatialReward judge would write for this judgment."""
    if judgment.sc is None:
        raise ValueError("this judgment has no SC scores to render")
    return json.dumps(
        {
            "edit_region": [
                {"id": r.id, "label": r.label, "bbox_2d": list(r.bbox_2d)}
                for r in judgment.regions
            ],
            "reasoning": judgment.reasoning,
            "score": list(judgment.sc),
        },
        ensure_ascii=False,
    )


def render_pq(judgment: Judgment) -> str:
    """The PQ answer a SpatialReward judge would write for this judgment."""
    if judgment.pq is None:
        raise ValueError("this judgment has no PQ scores to render")
    return json.dumps(
        {"reasoning": judgment.pq_reasoning, "score": list(judgment.pq)}, ensure_ascii=False
    )
