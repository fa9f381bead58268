"""How the official SpatialReward evaluation reads a score out of an answer (``parse=official``).

Our parser (:mod:`spatialreward.protocol`) never invents a score: an answer without one is
a failed judgment, counted. The official evaluation scripts do invent one, and a number
compared with the paper's has to be computed their way. Their rule, re-implemented here
from its documented behaviour:

1. ``<think>`` blocks are removed;
2. no ``{`` in the answer: the midpoint ``[12.5, 12.5]``;
3. the text from the first ``{`` to the last ``}`` is read as JSON; when that fails, the
   first ``"score": [n, n, ...]`` list with at least two numbers gives its first two,
   else the midpoint;
4. from JSON: no ``score`` key, or an empty list: the midpoint; a single number (bare or
   in a list) is duplicated; more than two are cut to the first two;
5. no clamping to 0..25.

Each result says how it was obtained, so a report can count the scores that were invented
(``midpoint``) or half-invented (``duplicated``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

MIDPOINT = (12.5, 12.5)
HOWS = ("parsed", "truncated", "duplicated", "regex", "midpoint")
_SCORE_LIST = re.compile(r'"score"\s*:\s*\[([^\]]*)\]')
_THINK = re.compile(r"<think>.*?</think>", re.DOTALL)
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


@dataclass(frozen=True)
class OfficialScore:
    pair: tuple[float, float]
    how: str
    """One of ``HOWS``: parsed as two numbers, ``truncated`` from more, ``duplicated`` from
    one, found by the ``regex`` fallback, or the invented ``midpoint``."""

    @property
    def invented(self) -> bool:
        return self.how in ("midpoint", "duplicated")


def official_score(text: str | None) -> OfficialScore:
    """The score pair the official evaluation would read from ``text``.

    >>> official_score('{"score": [20, 7]}')
    OfficialScore(pair=(20.0, 7.0), how='parsed')
    >>> official_score('no json at all').how
    'midpoint'
    >>> official_score('{"score": [18]}').pair
    (18.0, 18.0)
    >>> official_score('{"score": [30, 2, 9]}')  # cut to two, not clamped
    OfficialScore(pair=(30.0, 2.0), how='truncated')
    >>> official_score('{"reasoning": "broken "quote", "score": [11, 4]}').how
    'regex'
    """
    body = _THINK.sub("", text or "")  # closed blocks only; an unclosed one stays
    start, end = body.find("{"), body.rfind("}")
    if start < 0:
        return OfficialScore(MIDPOINT, "midpoint")
    try:
        data: Any = json.loads(body[start : end + 1]) if end > start else None
    except json.JSONDecodeError:
        data = None
    if not isinstance(data, dict):
        match = _SCORE_LIST.search(body)
        numbers = [float(n) for n in _NUMBER.findall(match.group(1))] if match else []
        if len(numbers) >= 2:
            return OfficialScore((numbers[0], numbers[1]), "regex")
        return OfficialScore(MIDPOINT, "midpoint")
    score = data.get("score")
    if score is None:
        return OfficialScore(MIDPOINT, "midpoint")
    values = score if isinstance(score, list) else [score]
    try:
        numbers = [float(v) for v in values]
    except (TypeError, ValueError):
        # the official scripts then fail on this item and leave it out of the results;
        # the closest faithful reading here is the midpoint, counted as invented
        return OfficialScore(MIDPOINT, "midpoint")
    if not numbers:
        return OfficialScore(MIDPOINT, "midpoint")
    if len(numbers) == 1:
        return OfficialScore((numbers[0], numbers[0]), "duplicated")
    return OfficialScore((numbers[0], numbers[1]), "parsed" if len(numbers) == 2 else "truncated")


def in_range(pair: Sequence[float]) -> tuple[float, float]:
    """An official reading clamped into the Judgment contract's 0..25 (the official scripts
    do not clamp; a value outside is rare and said where it happens).

    >>> in_range([30.0, -1.0])
    (25.0, 0.0)
    """
    return (min(25.0, max(0.0, float(pair[0]))), min(25.0, max(0.0, float(pair[1]))))
