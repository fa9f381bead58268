"""The people: annotators, and their append-only history of human judgments.

Human judgments are append-only (triggers refuse UPDATE and DELETE): an edit is a new
row that ``supersedes`` the old one. An undo goes back one step: undoing an edit writes
a judgment that copies the previous version's content, supersedes the current row and
``restores`` the row that content first came from; undoing a first version writes a
``retraction`` that supersedes it. ``current_human_judgments`` is the view of the
judgments nobody superseded.

The version before a row ``r`` is the row superseded by ``r.restores or r``: so a second
undo continues down the chain instead of toggling between the two latest versions.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from spatialreward.errors import (
    InvalidJudgmentError,
    NotYourJudgmentError,
    UnknownAnnotatorError,
    UnknownItemError,
)

from .connection import StoreConnection, now
from .pairs import Ranking
from .validation import (
    ANNOTATOR_KINDS,
    CONTENT_COLUMNS,
    KINDS,
    MAX_NAME_CHARS,
    RETRACTION,
    ROLES,
    check_annotator_kind,
    check_kinds,
    check_new_password,
    check_text,
    is_text,
    judgment_columns,
)


@dataclass(frozen=True)
class HumanJudgment:
    """One row of ``human_judgments`` with its JSON decoded."""

    id: int
    item_id: int
    annotator: str
    kind: str
    ranking: Ranking | None
    preferred: int | None
    both_bad: bool
    scores: dict[int, dict[str, float]] | None
    regions: list[dict[str, Any]] | None
    comment: str
    seconds_spent: float | None
    supersedes: int | None
    created_at: str
    restores: int | None = None
    """Set on an undo of an edit: the row whose content this one copies."""
    annotator_kind: str = "human"
    """``human`` or ``simulated`` (:data:`~storage.validation.ANNOTATOR_KINDS`)."""

    @property
    def label(self) -> str:
        """The preference as one nominal label (agreement metrics): the preferred
        candidate's index, ``tie`` or ``both_bad``."""
        if self.both_bad:
            return "both_bad"
        return "tie" if self.preferred is None else str(self.preferred)


def _human(r: dict[str, Any]) -> HumanJudgment:
    ranking = None if r["ranking"] is None else tuple(
        tuple(g) if isinstance(g, list) else (g,) for g in json.loads(r["ranking"]))
    scores = None if r["scores"] is None else {
        int(k): v for k, v in json.loads(r["scores"]).items()}
    return HumanJudgment(
        id=r["id"], item_id=r["item_id"], annotator=r["annotator"], kind=r["kind"],
        ranking=ranking, preferred=r["preferred"], both_bad=bool(r["both_bad"]), scores=scores,
        regions=None if r["regions"] is None else json.loads(r["regions"]),
        comment=r["comment"], seconds_spent=r["seconds_spent"], supersedes=r["supersedes"],
        created_at=r["created_at"], restores=r["restores"],
        annotator_kind=r.get("annotator_kind", "human"))


@functools.cache
def _dummy_hash() -> str:
    """An argon2 hash of a random secret, made once on first use: verifying a password
    against it costs what verifying against a real hash costs."""
    import secrets

    from argon2 import PasswordHasher

    return PasswordHasher().hash(secrets.token_urlsafe(16))


# Never the password hash: whether there is one.
_ANNOTATORS = ("SELECT id, name, role, password_hash IS NOT NULL AS has_password, created_at, "
               "kind FROM annotators")
_WITH_NAME = ("SELECT h.*, a.name AS annotator, a.kind AS annotator_kind FROM {table} h "
              "JOIN annotators a ON a.id = h.annotator_id")


def _kind_filter(kinds: Any, column: str = "a.kind") -> tuple[str, list[Any]]:
    """SQL ``AND ...`` and its parameters for a filter on annotator kinds (None: all)."""
    wanted = check_kinds(kinds)
    if wanted is None:
        return "", []
    return f" AND {column} IN ({', '.join('?' * len(wanted))})", list(wanted)


class HumanJudgmentStore(StoreConnection):
    """The ``annotators`` and ``human_judgments`` tables (a part of
    :class:`~storage.store.Store`)."""

    # -- annotators -----------------------------------------------------------------

    def add_annotator(self, name: str, role: str = "annotator", password: str | None = None,
                      kind: str = "human") -> int:
        """Register an annotator (a name of up to :data:`MAX_NAME_CHARS` characters);
        ``password`` (optional, at least ``MIN_PASSWORD_CHARS`` characters) is stored as
        an argon2id hash. ``kind``: ``human``, or ``simulated`` (votes from the ground
        truth, :mod:`storage.simulated`; never a password, so never an app login)."""
        kind = check_annotator_kind(kind, password)
        name = check_text(name or "", "the annotator name", MAX_NAME_CHARS, strip=True)
        if not name:
            raise InvalidJudgmentError("an annotator needs a name")
        if role not in ROLES:
            raise InvalidJudgmentError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
        pw_hash = None
        if password is not None:
            from argon2 import PasswordHasher

            pw_hash = PasswordHasher().hash(check_new_password(password))
        with self.write():
            if self._one("SELECT id FROM annotators WHERE name = ?", [name]) is not None:
                raise InvalidJudgmentError(f"an annotator named {name!r} already exists")
            return self._insert("annotators", {"name": name, "role": role, "kind": kind,
                                               "password_hash": pw_hash, "created_at": now()})

    def annotator_id(self, name: str) -> int:
        """The id of the annotator named ``name``."""
        return int(self.annotator(name)["id"])

    def annotator(self, name: str) -> dict[str, Any]:
        """The annotator named ``name``: ``id``, ``name``, ``role``, ``has_password``,
        ``created_at``, ``kind`` (never the password hash)."""
        row = self._one(_ANNOTATORS + " WHERE name = ?", [name])
        if row is None:
            raise UnknownAnnotatorError(
                f"no annotator named {name!r}; register one first (Store.add_annotator)")
        return row

    def annotators(self, kinds: Any = None) -> list[dict[str, Any]]:
        """Every annotator (of ``kinds``: None or ``"all"``, a kind or several), as
        :meth:`annotator` describes one, oldest first."""
        where, params = _kind_filter(kinds, "kind")
        return self._all(_ANNOTATORS + " WHERE 1" + where + " ORDER BY id", params)

    def annotator_kinds(self) -> dict[str, str]:
        """Annotator name -> kind (``human`` or ``simulated``), every annotator."""
        return {str(n): str(k) for n, k in self._rows("SELECT name, kind FROM annotators")}

    def check_password(self, name: str, password: str) -> bool:
        """True when ``password`` matches the annotator's stored hash.

        An unknown name, or one without a password, is checked against a dummy hash: every
        call costs one argon2 verify, so the time taken does not tell which names exist."""
        from argon2 import PasswordHasher
        from argon2.exceptions import InvalidHashError, VerificationError

        # A simulated annotator never logs in (it has no hash; the kind says so twice).
        row = (self._one("SELECT password_hash FROM annotators WHERE name = ? AND kind = ?",
                         [name, ANNOTATOR_KINDS[0]]) if is_text(name) else None)
        stored = None if row is None else row["password_hash"]
        # surrogatepass: text that is not valid Unicode still costs a verify (and fails).
        secret = password.encode("utf-8", "surrogatepass")
        try:
            matches = PasswordHasher().verify(stored or _dummy_hash(), secret)
        except (VerificationError, InvalidHashError):
            return False
        return matches and stored is not None

    # -- writing human judgments ----------------------------------------------------

    def add_human_judgment(self, item_id: int, annotator: str, preference: Any, *,
                           scores: Mapping[Any, Mapping[str, float]] | None = None,
                           regions: Sequence[Mapping[str, Any]] | None = None,
                           comment: str = "", seconds_spent: float | None = None,
                           supersedes: int | None = None, both_bad: bool = False) -> int:
        """Record a judgment; returns its id.

        ``preference``: the index of the better candidate, ``"tie"``, ``"both_bad"``, or a
        full ranking in the pair format (``[2, [0, 1]]``). ``supersedes``: the id of this
        annotator's earlier judgment of the item that this one replaces (an edit). On an
        item of more than ``validation.MAX_FULL_RANKING`` candidates the ranking may be
        partial (the pair shown: ``[7, 2]``; a tie ``[[7, 2]]``, with ``both_bad`` when
        both are bad).
        ``comment``: up to ``MAX_COMMENT_CHARS`` characters; ``regions``: up to
        ``MAX_REGIONS``, each label up to ``MAX_LABEL_CHARS``."""
        return self.add_human_judgments([dict(
            item_id=item_id, annotator=annotator, preference=preference, scores=scores,
            regions=regions, comment=comment, seconds_spent=seconds_spent,
            supersedes=supersedes, both_bad=both_bad)])[0]

    def add_human_judgments(self, judgments: Iterable[Mapping[str, Any]]) -> list[int]:
        """Record many judgments in one transaction (all or none); each a mapping with
        the keyword arguments of :meth:`add_human_judgment`."""
        sizes: dict[int, int] = {}
        annotators: dict[str, int] = {}
        rows = []
        for j in judgments:
            item_id = int(j["item_id"])
            if item_id not in sizes:
                sizes[item_id] = self._n_candidates(item_id)
            name = j["annotator"]
            if name not in annotators:
                annotators[name] = self.annotator_id(name)
            content = judgment_columns(
                j["preference"], sizes[item_id], scores=j.get("scores"),
                regions=j.get("regions"), comment=j.get("comment"),
                seconds_spent=j.get("seconds_spent"), both_bad=bool(j.get("both_bad")))
            rows.append({"item_id": item_id, "annotator_id": annotators[name],
                         "kind": "judgment", **content, "supersedes": j.get("supersedes"),
                         "created_at": now()})
        with self.write():
            for r in rows:
                if r["supersedes"] is not None:
                    self._check_supersede(int(r["supersedes"]), r["annotator_id"], r["item_id"])
            return self._insert_rows("human_judgments", rows)

    def undo_human_judgment(self, judgment_id: int, annotator: str) -> int:
        """Undo one of ``annotator``'s current judgments; returns the id of the row written.

        An edit goes back to the version before it: a new judgment with that version's
        content supersedes ``judgment_id`` and ``restores`` the row the content comes
        from. A first version is retracted: a ``retraction`` row supersedes it. Undoing
        the restored vote again continues back along the edits, one step each time."""
        with self.write():
            row = self._one("SELECT * FROM human_judgments WHERE id = ?", [judgment_id])
            if row is None:
                raise UnknownItemError(f"no human judgment {judgment_id}")
            who = self.annotator_id(annotator)
            self._check_supersede(judgment_id, who, int(row["item_id"]))
            base = {"item_id": row["item_id"], "annotator_id": who,
                    "supersedes": judgment_id, "created_at": now()}
            previous = self._previous_version(row)
            if previous is None:
                return self._insert("human_judgments", {
                    **base, "kind": "retraction", **RETRACTION, "restores": None})
            return self._insert("human_judgments", {
                **base, "kind": "judgment", **{c: previous[c] for c in CONTENT_COLUMNS},
                "restores": previous["restores"] or previous["id"]})

    def append_human_rows(self, rows: Iterable[Mapping[str, Any]]) -> list[int]:
        """Append rows of a history written elsewhere (an import), in order, all or none;
        returns their ids.

        Each row maps ``item_id``, ``annotator`` (a name), ``kind``, ``content`` (the
        checked content columns: ``validation.judgment_columns``, or
        ``validation.RETRACTION``), ``created_at`` (the original time) and, optionally,
        ``supersedes`` and ``restores``: ids of rows already in the store. ``supersedes``
        is checked as for an edit, ``restores`` as for an undo (it must name the version
        before the superseded row, and ``content`` must be that version's)."""
        names: dict[str, int] = {}
        out = []
        for r in rows:
            kind = r["kind"]
            if kind not in KINDS:
                raise InvalidJudgmentError(
                    f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
            if kind == "retraction" and dict(r["content"]) != dict(RETRACTION):
                raise InvalidJudgmentError("a retraction holds no vote, scores or comment")
            if r["annotator"] not in names:
                names[r["annotator"]] = self.annotator_id(r["annotator"])
            out.append({"item_id": int(r["item_id"]), "annotator_id": names[r["annotator"]],
                        "kind": kind, **{c: r["content"][c] for c in CONTENT_COLUMNS},
                        "supersedes": r.get("supersedes"), "restores": r.get("restores"),
                        "created_at": r["created_at"]})
        with self.write():
            superseded: set[int] = set()
            for item_id in {row["item_id"] for row in out}:
                self._n_candidates(item_id)  # UnknownItemError for a bad id
            for row in out:
                old = row["supersedes"]
                if old is not None:
                    if old in superseded:
                        raise InvalidJudgmentError(f"judgment {old} is edited or undone twice")
                    superseded.add(old)
                    self._check_supersede(old, row["annotator_id"], row["item_id"])
                elif row["kind"] == "retraction":
                    raise InvalidJudgmentError("a retraction needs the judgment it undoes")
                if row["restores"] is not None:
                    self._check_restore(row)
            return self._insert_rows("human_judgments", out)

    def _n_candidates(self, item_id: int) -> int:
        row = self._one("SELECT n_candidates FROM items WHERE id = ?", [item_id])
        if row is None:
            raise UnknownItemError(f"no item {item_id} in the store")
        return int(row["n_candidates"])

    def _check_supersede(self, old: int, annotator_id: int, item_id: int) -> None:
        row = self._one("SELECT h.annotator_id, h.item_id, h.kind, a.name FROM human_judgments h "
                        "JOIN annotators a ON a.id = h.annotator_id WHERE h.id = ?", [old])
        if row is None:
            raise UnknownItemError(f"no human judgment {old} to supersede")
        if row["annotator_id"] != annotator_id:
            raise NotYourJudgmentError(
                f"judgment {old} belongs to {row['name']!r}; annotators can only edit or undo "
                "their own judgments")
        if row["item_id"] != item_id:
            raise InvalidJudgmentError(f"judgment {old} is about item {row['item_id']}, "
                                       f"not item {item_id}")
        if row["kind"] != "judgment" or self._one(
                "SELECT 1 AS x FROM human_judgments WHERE supersedes = ?", [old]) is not None:
            raise InvalidJudgmentError(
                f"judgment {old} was already edited or undone; edit its latest version")

    def _previous_version(self, row: Mapping[str, Any]) -> dict[str, Any] | None:
        """The version an undo of ``row`` goes back to: the row that ``row.restores or
        row`` superseded; None when that is a first version."""
        origin = row if row["restores"] is None else self._one(
            "SELECT supersedes FROM human_judgments WHERE id = ?", [row["restores"]])
        if origin is None or origin["supersedes"] is None:
            return None
        return self._one("SELECT * FROM human_judgments WHERE id = ?", [origin["supersedes"]])

    def _check_restore(self, row: Mapping[str, Any]) -> None:
        """A row that restores a vote is the undo of the row it supersedes."""
        undone = self._one("SELECT * FROM human_judgments WHERE id = ?", [row["supersedes"]])
        previous = None if undone is None else self._previous_version(undone)
        expected = None if previous is None else previous["restores"] or previous["id"]
        if row["kind"] != "judgment" or row["restores"] != expected:
            raise InvalidJudgmentError(
                f"a judgment that supersedes {row['supersedes']} can only restore "
                f"{'nothing' if expected is None else expected}, the version before it, "
                f"not {row['restores']}")
        assert previous is not None
        if any(row[c] != previous[c] for c in CONTENT_COLUMNS):
            raise InvalidJudgmentError(
                f"a judgment that restores {expected} must hold its content (ranking, "
                "scores, regions, comment, seconds)")

    # -- reading human judgments ----------------------------------------------------

    def human_judgments(self, item_id: int | None = None, annotator: str | None = None,
                        history: bool = False, kinds: Any = None) -> list[HumanJudgment]:
        """Current judgments (or, with ``history``, every row ever written), oldest first,
        each with its ``annotator_kind``; ``kinds`` (None or ``"all"``: every kind;
        ``"human"``, ``"simulated"`` or a list) keeps those annotators' only."""
        table = "human_judgments" if history else "current_human_judgments"
        kind_sql, params = _kind_filter(kinds)
        where = ["1" + kind_sql]
        if item_id is not None:
            where.append("h.item_id = ?")
            params.append(item_id)
        if annotator is not None:
            where.append("h.annotator_id = ?")
            params.append(self.annotator_id(annotator))
        sql = (_WITH_NAME.format(table=table)
               + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY h.id")
        return [_human(r) for r in self._all(sql, params)]

    def human_judgment(self, judgment_id: int) -> HumanJudgment:
        """One row of the history, current or not."""
        row = self._one(_WITH_NAME.format(table="human_judgments") + " WHERE h.id = ?",
                        [judgment_id])
        if row is None:
            raise UnknownItemError(f"no human judgment {judgment_id}")
        return _human(row)

    def last_human_judgment(self, annotator: str, item_id: int | None = None
                            ) -> HumanJudgment | None:
        """``annotator``'s most recent current judgment (of ``item_id``, when given), or
        None when there is none."""
        sql = _WITH_NAME.format(table="current_human_judgments") + " WHERE h.annotator_id = ?"
        params: list[Any] = [self.annotator_id(annotator)]
        if item_id is not None:
            sql += " AND h.item_id = ?"
            params.append(item_id)
        row = self._one(sql + " ORDER BY h.id DESC LIMIT 1", params)
        return None if row is None else _human(row)

    def human_history(self, item_id: int) -> list[dict[str, Any]]:
        """Every row ever written about an item, oldest first, as stored (JSON columns as
        text), with the annotator's ``annotator`` name, ``annotator_role`` and
        ``annotator_kind`` (never the password hash): what an export writes and an import
        compares with."""
        return self._all(
            "SELECT h.*, a.name AS annotator, a.role AS annotator_role, "
            "a.kind AS annotator_kind FROM human_judgments h "
            "JOIN annotators a ON a.id = h.annotator_id WHERE h.item_id = ? ORDER BY h.id",
            [item_id])

    def judged_item_ids(self, annotator: str) -> set[int]:
        """The items ``annotator`` has a current (not undone, not superseded) judgment of."""
        return {int(r[0]) for r in self._rows(
            "SELECT DISTINCT item_id FROM current_human_judgments WHERE annotator_id = ?",
            [self.annotator_id(annotator)])}

    def vote_counts(self, kinds: Any = None) -> list[tuple[int, int | None, int, int]]:
        """Current votes counted per item and vote: ``(item_id, preferred, both_bad, n)``,
        in SQL over ``human_current`` (one scan of a covering index; with ``kinds``, a
        filter on the annotators' kind, joined through the history)."""
        wanted = check_kinds(kinds)
        present = {str(k) for (k,) in self._rows("SELECT DISTINCT kind FROM annotators")}
        if wanted is None or present <= set(wanted):  # nothing to leave out: no join
            return [(int(i), p, int(b), int(n)) for i, p, b, n in self._rows(
                "SELECT item_id, preferred, both_bad, COUNT(*) FROM human_current "
                "GROUP BY item_id, preferred, both_bad")]
        where, params = _kind_filter(kinds)
        return [(int(i), p, int(b), int(n)) for i, p, b, n in self._rows(
            "SELECT c.item_id, c.preferred, c.both_bad, COUNT(*) FROM human_current c "
            "JOIN human_judgments h ON h.id = c.judgment_id "
            "JOIN annotators a ON a.id = h.annotator_id WHERE 1" + where
            + " GROUP BY c.item_id, c.preferred, c.both_bad", params)]

    def current_votes(self, kinds: Any = None) -> list[dict[str, Any]]:
        """Every current judgment's vote (of annotators of ``kinds``, None: all), oldest
        first: ``item_id``, ``annotator`` (the name), ``annotator_kind``, ``preferred``,
        ``both_bad``, ``ranking`` (JSON text: a pair vote on an RL group ranks two)."""
        where, params = _kind_filter(kinds)
        return self._all("SELECT h.item_id, a.name AS annotator, a.kind AS annotator_kind, "
                         "h.preferred, h.both_bad, h.ranking FROM current_human_judgments h "
                         "JOIN annotators a ON a.id = h.annotator_id WHERE 1" + where
                         + " ORDER BY h.id", params)

    def item_votes(self, item_ids: Sequence[int] | None = None, kinds: Any = None
                   ) -> list[dict[str, Any]]:
        """Current judgments (of ``item_ids``, of annotators of ``kinds``), oldest first:
        ``id``, ``item_id``, ``annotator``, ``annotator_kind``, ``ranking`` (decoded: a
        pair vote on an RL group ranks two), ``both_bad``."""
        where, params = _kind_filter(kinds)
        if item_ids is not None:
            where += f" AND h.item_id IN ({', '.join('?' * len(item_ids))})"
            params.extend(int(i) for i in item_ids)
        rows = self._all(
            "SELECT h.id, h.item_id, a.name AS annotator, a.kind AS annotator_kind, "
            "h.ranking, h.both_bad FROM current_human_judgments h JOIN annotators a "
            "ON a.id = h.annotator_id WHERE 1" + where + " ORDER BY h.id", params)
        for r in rows:
            r["ranking"] = None if r["ranking"] is None else json.loads(r["ranking"])
        return rows

    def origin_item_ids(self, origin: str) -> list[int]:
        """Items in the annotation queues that an add from ``origin`` (an
        ``origin_dataset``, e.g. ``rl-samples``) named, oldest first."""
        return [int(i) for (i,) in self._rows(
            "SELECT DISTINCT s.item_id FROM item_sources s WHERE s.origin_dataset = ? "
            "AND EXISTS (SELECT 1 FROM item_sources q WHERE q.item_id = s.item_id AND "
            "q.queued) ORDER BY s.item_id", [origin])]
