"""The pair format: JSONL items of (instruction, source, candidates, optional ground truth).

One JSON object per line::

    {"id": "test-000017", "instruction": "make the red circle blue",
     "source": "images/000017_src.png",
     "candidates": ["images/000017_c0.png", "images/000017_c1.png"],
     "ranking": [0, 1], "dimension": "overall", "category": "recolor",
     "regions": [[120, 340, 310, 560]], "flaw": "wrong_object"}

- ``id`` (unique string), ``instruction``, ``source`` and ``candidates`` (1+) are required.
  Image paths are relative to the JSONL file's folder, or absolute; a relative path
  that leaves the folder (``../``, a symlink out) is refused.
- ``ranking`` (optional): candidate indices best first; an inner list holds ties:
  ``[1, 0]``, ``[[0, 1]]``, ``[2, [0, 1]]``. It must name every candidate once.
- ``dimension`` (optional): overall (default) | prompt_following | consistency |
  perceptual_quality.
- ``category`` (optional string), ``regions`` (optional target boxes, source frame,
  0..1000), and any other keys, kept as ``metadata``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spatialreward.errors import PairFormatError, UnsafePathError

from .paths import check_not_database, resolve_inside

DIMENSIONS = ("overall", "prompt_following", "consistency", "perceptual_quality")
_KNOWN = {"id", "instruction", "source", "candidates", "ranking", "dimension", "category",
          "regions"}

Ranking = tuple[tuple[int, ...], ...]
"""Tie groups best first: ((2,), (0, 1)) means 2 is best, 0 and 1 tie behind it."""


@dataclass(frozen=True)
class PairItem:
    """One item: an instruction, its source image and the candidate edits."""

    id: str
    instruction: str
    source: Path
    candidates: tuple[Path, ...]
    ranking: Ranking | None = None
    dimension: str = "overall"
    category: str | None = None
    regions: tuple[tuple[int, int, int, int], ...] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def best(self) -> tuple[int, ...] | None:
        """Indices of the best candidate(s), when a ranking is given."""
        return None if self.ranking is None else self.ranking[0]


def parse_ranking(value: Any, n_candidates: int) -> Ranking:
    """Read a ranking in the JSON form; every candidate index must appear exactly once.

    >>> parse_ranking([2, [0, 1]], 3)
    ((2,), (0, 1))
    >>> parse_ranking([[0, 1]], 2)
    ((0, 1),)
    """
    if not isinstance(value, list) or not value:
        raise ValueError(f"ranking must be a non-empty list, got {value!r}")
    groups: list[tuple[int, ...]] = []
    for entry in value:
        members = entry if isinstance(entry, list) else [entry]
        if not members or not all(isinstance(i, int) and not isinstance(i, bool)
                                  for i in members):
            raise ValueError(f"ranking entries must be indices or lists of indices: {entry!r}")
        groups.append(tuple(members))
    flat = sorted(i for g in groups for i in g)
    if flat != list(range(n_candidates)):
        raise ValueError(
            f"ranking {value!r} must name each of the {n_candidates} candidates "
            f"(0..{n_candidates - 1}) exactly once"
        )
    return tuple(groups)


def ranking_to_json(ranking: Ranking) -> list[Any]:
    """The JSON form of a ranking.

    >>> ranking_to_json(((2,), (0, 1)))
    [2, [0, 1]]
    """
    return [g[0] if len(g) == 1 else list(g) for g in ranking]


def _box(value: Any) -> tuple[int, int, int, int]:
    if not (isinstance(value, list) and len(value) == 4):
        raise ValueError(f"a region must be [x1, y1, x2, y2], got {value!r}")
    numbers = [float(v) for v in value]
    if not all(math.isfinite(v) for v in numbers):  # json reads Infinity and NaN
        raise ValueError(f"region {value!r} must hold finite numbers")
    x1, y1, x2, y2 = (int(round(v)) for v in numbers)
    if not (0 <= x1 < x2 <= 1000 and 0 <= y1 < y2 <= 1000):
        raise ValueError(
            f"region {value!r} must satisfy 0 <= x1 < x2 <= 1000 and 0 <= y1 < y2 <= 1000"
        )
    return x1, y1, x2, y2


def _image_path(folder: Path, value: Any, what: str) -> Path:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} must be a non-empty path string, got {value!r}")
    if os.path.isabs(value):
        return Path(value)
    return resolve_inside(folder, value)


def item_from_dict(d: dict[str, Any], folder: Path) -> PairItem:
    """Validate one decoded JSON object; paths resolve against ``folder``."""
    if not isinstance(d, dict):
        raise ValueError(f"each line must be a JSON object, got {type(d).__name__}")
    missing = [k for k in ("id", "instruction", "source", "candidates") if k not in d]
    if missing:
        raise ValueError(f"missing required key(s): {', '.join(missing)}")
    # str() would turn null into the id or instruction "None"; numbers are fine as ids.
    if isinstance(d["id"], bool) or not isinstance(d["id"], str | int) or d["id"] == "":
        raise ValueError(f"id must be a non-empty string, got {d['id']!r}")
    if not isinstance(d["instruction"], str):
        raise ValueError(f"instruction must be a string, got {d['instruction']!r}")
    candidates = d["candidates"]
    if not isinstance(candidates, list) or not candidates:
        raise ValueError("candidates must be a non-empty list of image paths")
    dimension = d.get("dimension", "overall")
    if dimension not in DIMENSIONS:
        raise ValueError(f"dimension {dimension!r} is not one of {', '.join(DIMENSIONS)}")
    regions = d.get("regions")
    if regions is not None and not isinstance(regions, list):
        raise ValueError(f"regions must be a list of [x1, y1, x2, y2] boxes, got {regions!r}")
    return PairItem(
        id=str(d["id"]),
        instruction=str(d["instruction"]),
        source=_image_path(folder, d["source"], "source"),
        candidates=tuple(_image_path(folder, c, f"candidates[{i}]")
                         for i, c in enumerate(candidates)),
        ranking=None if d.get("ranking") is None else parse_ranking(d["ranking"], len(candidates)),
        dimension=dimension,
        category=None if d.get("category") is None else str(d["category"]),
        regions=None if regions is None else tuple(_box(r) for r in regions),
        metadata={k: v for k, v in d.items() if k not in _KNOWN},
    )


def iter_pairs(path: str | os.PathLike[str]) -> Iterator[PairItem]:
    """Read a pair-format JSONL file item by item; errors name the line."""
    path = Path(path)
    if not path.is_file():
        raise PairFormatError(f"dataset {path} does not exist or is not a file")
    check_not_database(path)
    folder = path.resolve().parent
    seen: set[str] = set()
    # Bytes, decoded line by line: a stray non-UTF-8 byte becomes an error naming its line
    # (not a UnicodeDecodeError from the file object), and a leading BOM is dropped.
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            try:
                line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as err:
                raise PairFormatError(
                    f"{path}:{lineno}: not UTF-8 text (byte {err.start}); save the file as UTF-8"
                ) from None
            if not line.strip():
                continue
            try:
                item = item_from_dict(json.loads(line), folder)
            except json.JSONDecodeError as err:
                raise PairFormatError(f"{path}:{lineno}: not valid JSON ({err.msg})") from err
            except UnsafePathError as err:
                raise PairFormatError(f"{path}:{lineno}: {err}") from err
            except (ValueError, TypeError) as err:
                raise PairFormatError(f"{path}:{lineno}: {err}") from err
            if item.id in seen:
                raise PairFormatError(f"{path}:{lineno}: duplicate id {item.id!r}")
            seen.add(item.id)
            yield item


def read_pairs(path: str | os.PathLike[str]) -> list[PairItem]:
    return list(iter_pairs(path))


def item_to_dict(item: PairItem, folder: Path) -> dict[str, Any]:
    """The JSON object for ``item``; paths inside ``folder`` are written relative to it."""

    def rel(p: Path) -> str:
        try:
            return p.resolve().relative_to(folder.resolve()).as_posix()
        except ValueError:
            return str(p.resolve())

    d: dict[str, Any] = {
        "id": item.id,
        "instruction": item.instruction,
        "source": rel(item.source),
        "candidates": [rel(c) for c in item.candidates],
    }
    if item.ranking is not None:
        d["ranking"] = ranking_to_json(item.ranking)
    if item.dimension != "overall":
        d["dimension"] = item.dimension
    if item.category is not None:
        d["category"] = item.category
    if item.regions is not None:
        d["regions"] = [list(r) for r in item.regions]
    d.update(item.metadata)
    return d


def write_pairs(path: str | os.PathLike[str], items: Iterable[PairItem]) -> int:
    """Write items as JSONL (one line each, keys in a fixed order); returns the count."""
    path = Path(path)
    folder = path.resolve().parent
    count = 0
    with path.open("w", encoding="utf-8") as fh:
        for item in items:
            fh.write(json.dumps(item_to_dict(item, folder), ensure_ascii=False) + "\n")
            count += 1
    return count


def candidate_order(ranking: Ranking) -> Sequence[int]:
    """Flattened best-first order (ties keep their listed order)."""
    return [i for group in ranking for i in group]
