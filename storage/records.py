"""The records of an import file, checked before anything is written.

:func:`check_entry` turns one item of a file (a pair-format line or a Parquet row, already
read as a :class:`~storage.pairs.PairItem`) into an :class:`Entry`: its origin and
metadata, and its human and model judgments, each checked with the store's own rules
(:mod:`storage.validation`). The histories are checked as a whole: every ``supersedes``
and ``restores`` names an earlier judgment of the same item in the file (by the ``id``
local to that list), as the store would have written it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from spatialreward.errors import StudioError
from spatialreward.judgment import Judgment

from .pairs import PairItem
from .validation import (
    KINDS,
    RETRACTION,
    ROLES,
    check_item_text,
    check_ranking,
    check_text,
    check_time,
    is_int,
    judgment_columns,
)


@dataclass(frozen=True)
class Human:
    """One human judgment of a file."""

    ref: int  # the id local to the item's list in the file
    annotator: str
    role: str | None  # None: the file does not say
    kind: str
    supersedes: int | None  # a ref, not a database id
    restores: int | None  # a ref, not a database id
    created_at: str
    content: Mapping[str, Any]  # validation.CONTENT_COLUMNS, as stored


@dataclass(frozen=True)
class Model:
    """One model judgment of a file."""

    candidate: int
    judgment: Judgment
    latency_ms: float | None
    created_at: str | None


@dataclass(frozen=True)
class Entry:
    """One item of an import file, fully validated; images by SHA-256 (source first)."""

    where: str
    item: PairItem
    shas: tuple[str, ...]
    origin: tuple[str | None, str | None, str | None]
    metadata: dict[str, Any]
    humans: tuple[Human, ...]
    models: tuple[Model, ...]
    dropped: int  # human judgments left out (human_judgments=False)


def check_entry(item: PairItem, shas: Sequence[str], where: str, dataset: str | None,
                default_origin: tuple[str, str], keep_humans: bool) -> Entry:
    """``item`` of an import file, checked; ``shas``: its images' hashes (source first),
    ``where``: the line or row, ``dataset``: the origin dataset to record (None: the
    file's), ``default_origin``: (dataset, file) for a plain pair-format file,
    ``keep_humans``: False drops the human judgments unchecked."""
    if not item.instruction.strip():
        raise ValueError("instruction must not be empty")
    extras = dict(item.metadata)
    origin = extras.pop("origin", None)
    metadata = extras.pop("metadata", None)
    humans = extras.pop("human_judgments", None)
    models = extras.pop("model_judgments", None)
    if origin is None:  # a plain pair-format file
        origin = {"dataset": default_origin[0], "file": default_origin[1], "id": item.id}
    if not isinstance(origin, dict) or not all(
            isinstance(origin.get(k), str | None) for k in ("dataset", "file", "id")):
        raise ValueError("origin must be an object of strings {dataset, file, id}")
    if metadata is not None and not isinstance(metadata, dict):
        raise ValueError(f"metadata must be an object, got {type(metadata).__name__}")
    n = len(item.candidates)
    origin = (dataset if dataset is not None else origin.get("dataset"), origin.get("file"),
              origin.get("id"))
    metadata = {**extras, **(metadata or {})}
    # The store's own checks (text, limits) now, before anything is written.
    check_item_text(item.instruction, metadata, uid=item.id, category=item.category,
                    origin_dataset=origin[0], origin_file=origin[1], origin_id=origin[2])
    humans = humans or []
    if not isinstance(humans, list):
        raise ValueError("human_judgments must be a list")
    return Entry(
        where=where, item=item, shas=tuple(shas), origin=origin, metadata=metadata,
        humans=_check_humans(humans, n) if keep_humans else (),
        models=_check_models(models or [], n), dropped=0 if keep_humans else len(humans))


# -- human judgments ------------------------------------------------------------------------


def _check_humans(values: list[Any], n: int) -> tuple[Human, ...]:
    refs: dict[int, Human] = {}
    superseded: set[int] = set()
    for k, h in enumerate(values):
        try:
            ref = _ref(h, k, refs)
            refs[ref] = _check_human(h, ref, n, refs, superseded)
        except (StudioError, ValueError, TypeError) as err:
            raise ValueError(f"human_judgments[{k}]: {err}") from err
    return tuple(refs.values())


def _ref(h: Any, k: int, refs: dict[int, Human]) -> int:
    if not isinstance(h, dict):
        raise ValueError(f"must be an object, got {type(h).__name__}")
    ref = h.get("id", k + 1)
    if not is_int(ref) or ref in refs:
        raise ValueError(f"id {ref!r} must be an integer, unique within the item")
    return int(ref)


def _check_human(h: dict[str, Any], ref: int, n: int, refs: dict[int, Human],
                 superseded: set[int]) -> Human:
    name = h.get("annotator")
    if not isinstance(name, str) or not name.strip():
        raise ValueError("needs an annotator name")
    name = check_text(name, "the annotator name", strip=True)  # length: when created
    role = h.get("annotator_role")
    if role is not None and role not in ROLES:
        raise ValueError(f"annotator_role must be one of {', '.join(ROLES)}, got {role!r}")
    kind = h.get("kind", "judgment")
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    created_at = check_time(h.get("created_at"), required=True)
    sup = h.get("supersedes")
    if sup is not None:
        target = refs.get(sup) if is_int(sup) else None
        if target is None:
            raise ValueError(f"supersedes {sup!r} is not the id of an earlier judgment of "
                             "this item in the file")
        if target.annotator != name:
            raise ValueError(f"supersedes judgment {sup} of {target.annotator!r}; annotators "
                             "can only edit or undo their own judgments")
        if target.kind != "judgment" or sup in superseded:
            raise ValueError(f"judgment {sup} is edited or undone twice")
        superseded.add(sup)
    elif kind == "retraction":
        raise ValueError("a retraction needs supersedes: the id of the judgment it undoes")
    if kind == "retraction":
        content: Mapping[str, Any] = RETRACTION
    else:
        content = judgment_columns(
            _preference_of(h, n), n, scores=h.get("scores"), regions=h.get("regions"),
            comment=h.get("comment") or "", seconds_spent=h.get("seconds_spent"))
        if "preferred" in h and h["preferred"] != content["preferred"]:
            raise ValueError(f"preferred {h['preferred']!r} does not match the ranking "
                             f"{json.loads(content['ranking'])} "
                             f"(its best is {content['preferred']!r})")
    restores = _check_restores(h.get("restores"), kind, sup, content, refs)
    return Human(ref=ref, annotator=name, role=role, kind=kind,
                 supersedes=None if sup is None else int(sup), restores=restores,
                 created_at=created_at, content=content)


def _check_restores(value: Any, kind: str, sup: Any, content: Mapping[str, Any],
                    refs: dict[int, Human]) -> int | None:
    """``restores`` of an undo that went back to the previous vote: the version before
    the judgment it supersedes (see :mod:`storage.humans`), with the same content."""
    if value is None:
        return None
    if kind != "judgment" or sup is None:
        raise ValueError("only a judgment that supersedes another can restore a vote")
    expected = _version_before(refs, int(sup))
    if not is_int(value) or value != expected:
        raise ValueError(
            f"restores {value!r}, but undoing judgment {sup} goes back to "
            f"{'no vote' if expected is None else f'judgment {expected}'}")
    if dict(refs[value].content) != dict(content):
        raise ValueError(f"restores judgment {value} but holds another vote or other "
                         "scores, regions, comment or time")
    return int(value)


def _version_before(refs: dict[int, Human], ref: int) -> int | None:
    """The ref whose content an undo of ``ref`` restores (None: it retracts)."""
    row = refs[ref]
    origin = refs[row.restores] if row.restores is not None else row
    if origin.supersedes is None:
        return None
    previous = refs[origin.supersedes]
    return previous.restores if previous.restores is not None else previous.ref


def _preference_of(h: dict[str, Any], n: int) -> Any:
    """The preference in Store.add_human_judgment's terms: ``preference`` (hand-written
    files) or the exported ``ranking`` and ``both_bad``."""
    if "preference" in h:
        return h["preference"]
    both_bad = h.get("both_bad", False)
    if not isinstance(both_bad, bool):
        raise ValueError(f"both_bad must be true or false, got {both_bad!r}")
    if both_bad:
        if h.get("ranking") is not None and check_ranking(h["ranking"], n) != (
                tuple(range(n)),):
            raise ValueError("a both_bad judgment ranks all candidates as one tie")
        return "both_bad"
    if h.get("ranking") is None:
        raise ValueError("a judgment needs a ranking (or a preference)")
    return h["ranking"]


# -- model judgments ------------------------------------------------------------------------


def _check_models(values: Any, n: int) -> tuple[Model, ...]:
    if not isinstance(values, list):
        raise ValueError("model_judgments must be a list")
    out = []
    for k, m in enumerate(values):
        try:
            out.append(_check_model(m, n))
        except (StudioError, ValueError, TypeError) as err:
            raise ValueError(f"model_judgments[{k}]: {err}") from err
    return tuple(out)


def _check_model(m: Any, n: int) -> Model:
    if not isinstance(m, dict):
        raise ValueError(f"must be an object, got {type(m).__name__}")
    cand: Any = m.get("candidate")
    if not is_int(cand) or not 0 <= cand < n:
        raise ValueError(f"candidate {cand!r} is not a candidate of this item (0..{n - 1})")
    if not isinstance(m.get("judgment"), dict):
        raise ValueError("needs the judgment object (Judgment.to_dict())")
    judgment = Judgment.from_dict(m["judgment"])
    for key in ("backend", "backend_version"):
        if key in m and m[key] != getattr(judgment, key):
            raise ValueError(f"{key} {m[key]!r} differs from the judgment's "
                             f"{getattr(judgment, key)!r}")
    latency = m.get("latency_ms")
    if latency is not None and (isinstance(latency, bool) or not isinstance(latency, int | float)
                                or not math.isfinite(latency) or latency < 0):
        raise ValueError(f"latency_ms must be a non-negative number, got {latency!r}")
    return Model(candidate=int(cand), judgment=judgment,
                 latency_ms=None if latency is None else float(latency),
                 created_at=check_time(m.get("created_at"), required=False))
