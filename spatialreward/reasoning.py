"""Region-anchored reasoning: split and compose the ``<|bbox_ID|>`` / ``<|global|>`` format.

A SpatialReward judge writes ``<|bbox_0|>`` before it talks about region 0 and
``<|global|>`` before its overall verdict. The markers are plain text, so any text
before the first marker is kept as a ``text`` segment rather than dropped.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

SegmentKind = Literal["text", "bbox", "global"]

_MARKER = re.compile(r"<\|\s*(?:bbox_(\d+)|(global))\s*\|>", re.IGNORECASE)


@dataclass(frozen=True)
class ReasoningSegment:
    """A stretch of reasoning about one region (``bbox``), the verdict (``global``) or neither."""

    kind: SegmentKind
    text: str
    region_id: int | None = None

    def to_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "region_id": self.region_id, "text": self.text}


def bbox_marker(region_id: int) -> str:
    """The marker that opens the reasoning about one region.

    >>> bbox_marker(3)
    '<|bbox_3|>'
    """
    return f"<|bbox_{region_id}|>"


GLOBAL_MARKER = "<|global|>"


def split_reasoning(text: str) -> tuple[ReasoningSegment, ...]:
    """Split reasoning into segments at each marker; whitespace around segments is trimmed.

    >>> [(s.kind, s.region_id, s.text) for s in split_reasoning(
    ...     "Looking. <|bbox_0|> The cup is red now. <|global|> Done well.")]
    [('text', None, 'Looking.'), ('bbox', 0, 'The cup is red now.'), ('global', None, 'Done well.')]
    """
    segments: list[ReasoningSegment] = []
    kind: SegmentKind = "text"
    region_id: int | None = None
    pos = 0
    for match in _MARKER.finditer(text):
        _append(segments, kind, text[pos : match.start()], region_id)
        if match.group(1) is not None:
            kind, region_id = "bbox", int(match.group(1))
        else:
            kind, region_id = "global", None
        pos = match.end()
    _append(segments, kind, text[pos:], region_id)
    return tuple(segments)


def _append(out: list[ReasoningSegment], kind: SegmentKind, text: str, rid: int | None) -> None:
    text = text.strip()
    # A marker followed by nothing still says "this region was discussed", so keep it;
    # empty free text before the first marker carries nothing and is dropped.
    if text or kind != "text":
        out.append(ReasoningSegment(kind, text, rid))


def compose_reasoning(
    region_sentences: Iterable[tuple[int, str]], verdict: str, preamble: str = ""
) -> str:
    """Write reasoning in the marker format from per-region sentences and a verdict.

    >>> compose_reasoning([(0, "Red circle became green.")], "The edit matches.")
    '<|bbox_0|> Red circle became green. <|global|> The edit matches.'
    """
    parts = [preamble.strip()] if preamble.strip() else []
    parts += [f"{bbox_marker(rid)} {sentence.strip()}" for rid, sentence in region_sentences]
    parts.append(f"{GLOBAL_MARKER} {verdict.strip()}")
    return " ".join(parts)


def referenced_regions(text: str) -> set[int]:
    """Region ids that the reasoning mentions with a ``<|bbox_ID|>`` marker."""
    return {s.region_id for s in split_reasoning(text) if s.region_id is not None}
