"""What the store accepts: text, limits, and the content of a human judgment.

Every check here is a pure function that returns the value as it is stored, or raises an
:class:`~spatialreward.errors.InvalidJudgmentError` that names the field. The store
(:mod:`storage.store`) and the imports (:mod:`storage.imports`) both check through these
functions, so a vote typed in the app and one read from a file meet the same rules.

Text must be valid Unicode (encodable as UTF-8, so no lone surrogate) and within the
limits below (``MAX_*``).

>>> judgment_columns(1, 2)["ranking"], judgment_columns("tie", 2)["preferred"]
('[1, 0]', None)
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

from spatialreward.errors import InvalidJudgmentError, StoreError

from .pairs import Ranking, parse_ranking, ranking_to_json

ROLES = ("annotator", "researcher", "admin")
SCORE_DIMENSIONS = ("instruction", "preservation", "quality", "overall")
"""Per-candidate human scores, each 0..10."""
KINDS = ("judgment", "retraction")
"""Kinds of ``human_judgments`` rows: a vote, or the undo of a first vote."""
ANNOTATOR_KINDS = ("human", "simulated")
"""Kinds of annotators: a person, or a stand-in voting from the ground truth
(:mod:`storage.simulated`), which never logs into the app."""
MAX_FULL_RANKING = 4
"""Items with more candidates than this (an RL sample group of G edits) may be ranked
partially: a vote ranks the candidates it was shown (at least two), not all of them."""

MAX_INSTRUCTION_CHARS = 2_000
"""Longest item instruction (``add_item``, and so every import); the app's own limit,
``StudioConfig.max_instruction_chars``, is the same."""
MAX_COMMENT_CHARS = 2_000
"""Longest comment of one human judgment."""
MAX_REGIONS = 64
"""Most regions one human judgment may hold."""
MAX_LABEL_CHARS = 200
"""Longest label of one region."""
MAX_NAME_CHARS = 64
"""Longest annotator name."""
MIN_PASSWORD_CHARS = 8
"""Shortest password ``add_annotator`` accepts for an app login."""

CONTENT_COLUMNS = ("ranking", "preferred", "both_bad", "scores", "regions", "comment",
                   "seconds_spent")
"""The columns of ``human_judgments`` that hold what a judgment says (an undo that
restores a vote copies them)."""
RETRACTION: Mapping[str, Any] = MappingProxyType(
    {"ranking": None, "preferred": None, "both_bad": 0, "scores": None, "regions": None,
     "comment": "", "seconds_spent": None})
"""The content of a retraction row: nothing."""


# -- text -----------------------------------------------------------------------------


def is_text(value: Any) -> bool:
    """True for a ``str`` that encodes as UTF-8 (SQLite stores only such text).

    >>> is_text("cup"), is_text("cup\\ud800"), is_text(3)
    (True, False, False)
    """
    try:
        value.encode("utf-8")
    except (AttributeError, UnicodeEncodeError):
        return False
    return True


def check_text(value: Any, field: str, limit: int | None = None, *, strip: bool = False
               ) -> str:
    """``value`` (stripped with ``strip``) once it is valid Unicode text of at most
    ``limit`` characters; else an InvalidJudgmentError naming ``field``."""
    if not isinstance(value, str):
        raise InvalidJudgmentError(f"{field} must be text, got {type(value).__name__}")
    value = value.strip() if strip else value
    if limit is not None and len(value) > limit:
        raise InvalidJudgmentError(
            f"{field} is {len(value):,} characters long; the limit is {limit:,}: shorten it")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as err:
        raise InvalidJudgmentError(
            f"{field} is not valid Unicode text: character {err.start} is a lone surrogate "
            f"(U+{ord(value[err.start]):04X}, half of a UTF-16 pair); remove it or type the "
            "text again") from None
    return value


def check_json_text(value: Any, field: str) -> None:
    """Every string inside ``value`` (keys too) is valid Unicode text."""
    if isinstance(value, str):
        check_text(value, field)
    elif isinstance(value, Mapping):
        for key, v in value.items():
            check_text(str(key), f"a key of {field}")
            check_json_text(v, f"{field}[{key!r}]")
    elif isinstance(value, (list, tuple)):
        for k, v in enumerate(value):
            check_json_text(v, f"{field}[{k}]")


def check_item_text(instruction: Any, metadata: Mapping[str, Any] | None = None,
                    **fields: str | None) -> str:
    """The stripped instruction, once it is non-empty and at most
    :data:`MAX_INSTRUCTION_CHARS` long, and it and every other text of the item
    (``fields``: uid, category, origin, ...; every string in ``metadata``) are valid text.

    >>> check_item_text("  make it red ", {"flaw": "none"}, uid="a")
    'make it red'
    """
    if not isinstance(instruction, str) or not instruction.strip():
        raise InvalidJudgmentError("an item needs a non-empty instruction")
    instruction = check_text(instruction, "the instruction", MAX_INSTRUCTION_CHARS, strip=True)
    for name, value in fields.items():
        if value is not None:
            check_text(value, name)
    check_json_text(metadata or {}, "metadata")
    return instruction


def check_comment(value: Any) -> str:
    """A judgment's comment (None: empty), at most :data:`MAX_COMMENT_CHARS` long."""
    return check_text("" if value is None else value, "the comment", MAX_COMMENT_CHARS)


def check_annotator_kind(kind: Any, password: Any = None) -> str:
    """An annotator kind (:data:`ANNOTATOR_KINDS`); a simulated one has no password."""
    if kind not in ANNOTATOR_KINDS:
        raise InvalidJudgmentError(
            f"annotator kind must be one of {', '.join(ANNOTATOR_KINDS)}, got {kind!r}")
    if kind == "simulated" and password is not None:
        raise InvalidJudgmentError(
            "a simulated annotator cannot log into the app: register it without a password")
    return str(kind)


def check_kinds(kinds: Any) -> tuple[str, ...] | None:
    """A filter on annotator kinds: None (every kind), ``"all"``, one kind or several.

    >>> check_kinds("human"), check_kinds("all"), check_kinds(["human", "simulated"])
    (('human',), None, ('human', 'simulated'))
    """
    if kinds is None or kinds == "all":
        return None
    out = (kinds,) if isinstance(kinds, str) else tuple(kinds)
    for k in out:
        check_annotator_kind(k)
    return out


def check_new_password(value: Any) -> str:
    """A password for a new login: text of at least :data:`MIN_PASSWORD_CHARS`."""
    if not isinstance(value, str) or len(value) < MIN_PASSWORD_CHARS:
        raise InvalidJudgmentError(
            f"a password needs at least {MIN_PASSWORD_CHARS} characters; choose a longer one")
    return check_text(value, "the password")


_SURROGATES = re.compile(r"[\ud800-\udfff]")


def replace_surrogates(text: str) -> str:
    r"""``text`` with every lone surrogate (U+D800..U+DFFF, which UTF-8 cannot encode)
    replaced by U+FFFD, the replacement character.

    >>> replace_surrogates("cup\ud800") == "cup\ufffd"
    True
    """
    return _SURROGATES.sub("\ufffd", text)


def check_time(value: Any, required: bool = True) -> Any:
    """``value`` when it is an ISO 8601 time (None too, unless ``required``).

    >>> check_time("2025-01-02T03:04:05+00:00")
    '2025-01-02T03:04:05+00:00'
    """
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise InvalidJudgmentError("needs created_at, an ISO 8601 time (it tells a repeated "
                                   "import what is already in the store)")
    try:
        dt.datetime.fromisoformat(value)
    except ValueError:
        raise InvalidJudgmentError(f"created_at {value!r} is not an ISO 8601 time") from None
    return value


def is_int(value: Any) -> bool:
    """True for an ``int`` that is not a ``bool``.

    >>> is_int(3), is_int(True), is_int(3.0)
    (True, False, False)
    """
    return isinstance(value, int) and not isinstance(value, bool)


# -- the content of a human judgment ----------------------------------------------------


def check_ranking(value: Any, n: int) -> Ranking:
    """A ranking of ``n`` candidates in the pair format (``[2, [0, 1]]``), as tie groups.

    >>> check_ranking([2, [0, 1]], 3)
    ((2,), (0, 1))
    """
    try:
        return parse_ranking(value, n)
    except StoreError:
        raise
    except Exception as err:  # PairFormatError and friends
        raise InvalidJudgmentError(f"invalid ranking {value!r}: {err}") from err


def check_partial_ranking(value: Any, n: int) -> Ranking:
    """A ranking of some of the ``n`` candidates (at least two, each once), allowed when
    ``n`` > :data:`MAX_FULL_RANKING`: the vote on a pair shown out of an RL group.

    >>> check_partial_ranking([7, 2], 12)
    ((7,), (2,))
    >>> check_partial_ranking([[3, 5]], 12)
    ((3, 5),)
    """
    if not isinstance(value, (list, tuple)) or not value:
        raise InvalidJudgmentError(f"invalid ranking {value!r}: it must be a non-empty list")
    groups = []
    for entry in value:
        members = list(entry) if isinstance(entry, (list, tuple)) else [entry]
        if not members or not all(is_int(k) and 0 <= k < n for k in members):
            raise InvalidJudgmentError(
                f"invalid ranking {value!r}: {entry!r} is not a candidate (0..{n - 1}) "
                "or a list of candidates")
        groups.append(tuple(members))
    flat = [k for g in groups for k in g]
    if len(flat) < 2 or len(set(flat)) != len(flat):
        raise InvalidJudgmentError(
            f"invalid ranking {value!r}: a partial ranking names at least two candidates, "
            "each once")
    return tuple(groups)


def is_partial(value: Any, n: int) -> bool:
    """True when ``value`` is a list that leaves out some of more than
    :data:`MAX_FULL_RANKING` candidates (so :func:`check_partial_ranking` applies)."""
    if n <= MAX_FULL_RANKING or not isinstance(value, (list, tuple)):
        return False
    flat = [k for e in value for k in (e if isinstance(e, (list, tuple)) else [e])]
    return len(set(map(str, flat))) < n


def check_preference(value: Any, n: int) -> tuple[Ranking, int | None, bool]:
    """(ranking, single best candidate or None, both bad) from a preference: a candidate
    index, ``"tie"``, ``"both_bad"`` or a ranking (partial: some candidates only, on an
    item of more than :data:`MAX_FULL_RANKING`; ``"tie"``/``"both_bad"`` of the pair shown
    is then a ranking of one tie group, ``[[i, j]]``, with ``both_bad`` set apart).

    >>> check_preference(1, 3)
    (((1,), (0, 2)), 1, False)
    >>> check_preference("both_bad", 2)
    (((0, 1),), None, True)
    """
    if isinstance(value, str) and value in ("tie", "both_bad"):
        return (tuple(range(n)),), None, value == "both_bad"
    if isinstance(value, bool):
        raise InvalidJudgmentError(f"invalid preference {value!r}")
    if isinstance(value, int):
        if not 0 <= value < n:
            raise InvalidJudgmentError(
                f"preference {value} is not a candidate of this item (0..{n - 1})")
        rest = tuple(k for k in range(n) if k != value)
        return ((value,), rest) if rest else ((value,),), value, False
    if isinstance(value, (list, tuple)):
        ranking = (check_partial_ranking(value, n) if is_partial(value, n)
                   else check_ranking(list(value), n))
        return ranking, ranking[0][0] if len(ranking[0]) == 1 else None, False
    raise InvalidJudgmentError(
        f"invalid preference {value!r}: give a candidate index, 'tie', 'both_bad' or a ranking")


def check_scores(value: Any, n: int) -> str | None:
    """Scores ``{candidate: {dimension: 0..10}}`` as stored (JSON text), or None.

    >>> check_scores({1: {"overall": 8}}, 2)
    '{"1": {"overall": 8.0}}'
    """
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise InvalidJudgmentError("scores must map candidate index -> {dimension: 0..10}")
    out: dict[str, dict[str, float]] = {}
    for cand, dims in value.items():
        try:
            k = int(cand)
        except (TypeError, ValueError):
            raise InvalidJudgmentError(f"scores: {cand!r} is not a candidate index") from None
        if not 0 <= k < n or not isinstance(dims, Mapping):
            raise InvalidJudgmentError(f"scores: no candidate {cand!r} (0..{n - 1})")
        for dim, v in dims.items():
            if dim not in SCORE_DIMENSIONS:
                raise InvalidJudgmentError(
                    f"scores: unknown dimension {dim!r}; use {', '.join(SCORE_DIMENSIONS)}")
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 10:
                raise InvalidJudgmentError(f"scores: {dim} must be a number 0..10, got {v!r}")
        out[str(k)] = {d: float(v) for d, v in dims.items()}
    return json.dumps(out)


def check_regions(value: Any, n: int) -> str | None:
    """Regions ``[{candidate, bbox_2d: [x1, y1, x2, y2] (0..1000), label}]`` as stored
    (JSON text), or None; at most :data:`MAX_REGIONS`, labels at most
    :data:`MAX_LABEL_CHARS` long."""
    if value is None:
        return None
    if isinstance(value, (str, Mapping)) or not isinstance(value, Sequence):
        raise InvalidJudgmentError("regions must be a list of {candidate, bbox_2d, label}")
    if len(value) > MAX_REGIONS:
        raise InvalidJudgmentError(
            f"a judgment holds at most {MAX_REGIONS} regions, got {len(value):,}; keep the "
            "ones that matter")
    out = []
    for k, r in enumerate(value):
        try:
            cand = int(r.get("candidate", 0))
            box = [int(v) for v in r["bbox_2d"]]
        except (AttributeError, KeyError, TypeError, ValueError):
            raise InvalidJudgmentError(
                "a region needs bbox_2d [x1, y1, x2, y2] (0..1000) and a candidate index"
            ) from None
        if not 0 <= cand < n:
            raise InvalidJudgmentError(f"region on candidate {cand}: no such candidate")
        if (len(box) != 4 or not all(0 <= v <= 1000 for v in box)
                or box[0] >= box[2] or box[1] >= box[3]):
            raise InvalidJudgmentError(f"region box {box} must be x1 < x2, y1 < y2 in 0..1000")
        label = check_text(str(r.get("label", "")), f"the label of region {k}",
                           MAX_LABEL_CHARS)
        out.append({"candidate": cand, "bbox_2d": box, "label": label})
    return json.dumps(out)


def check_seconds(value: Any) -> float | None:
    """Seconds spent on a judgment, 0..86400, or None."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 86400:
        raise InvalidJudgmentError(f"seconds_spent must be 0..86400, got {value!r}")
    return float(value)


def judgment_columns(preference: Any, n: int, *, scores: Any = None, regions: Any = None,
                     comment: Any = "", seconds_spent: Any = None, both_bad: bool = False
                     ) -> dict[str, Any]:
    """The content of one human judgment of an item with ``n`` candidates, checked, as
    the :data:`CONTENT_COLUMNS` of its row (JSON columns as text).

    >>> judgment_columns([0, 1], 2, comment="clear")
    {'ranking': '[0, 1]', 'preferred': 0, 'both_bad': 0, 'scores': None, 'regions': None, \
'comment': 'clear', 'seconds_spent': None}
    """
    ranking, preferred, bad = check_preference(preference, n)
    if both_bad:  # both of a partial ranking's shown candidates are bad: a tie of them
        if len(ranking) != 1:
            raise InvalidJudgmentError("both bad means a tie of the candidates shown")
        preferred, bad = None, True
    return {"ranking": json.dumps(ranking_to_json(ranking)), "preferred": preferred,
            "both_bad": int(bad), "scores": check_scores(scores, n),
            "regions": check_regions(regions, n), "comment": check_comment(comment),
            "seconds_spent": check_seconds(seconds_spent)}
