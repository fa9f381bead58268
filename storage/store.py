"""The judgment store: items, images, model and human judgments, runs, over SQLite.

A :class:`Store` wraps a ``sqlite_utils.Database`` that the caller passes in (or
:meth:`Store.open` makes one from a path, ``data/studio.db`` by default). Opening a store
applies pending migrations (:mod:`storage.schema`), turns on WAL, a busy timeout and
foreign keys.

Concurrency: one ``Store`` may be shared by threads (the app's request handlers); its
writes are serialised by a lock and each runs in ``BEGIN IMMEDIATE``, so a writer waits
for the database lock up front (busy timeout, then retries) instead of failing half way.
Other processes open their own ``Store`` on the same file.

Human judgments are append-only (triggers refuse UPDATE and DELETE): an edit is a new
row that ``supersedes`` the old one, an undo is a ``retraction`` row that supersedes
it. ``current_human_judgments`` is the view of rows nobody superseded.

Every text field is checked at this boundary: it must be valid Unicode (encodable as
UTF-8, so no lone surrogate) and within the limits below (``MAX_*``); a bad one is
refused with an :class:`~spatialreward.errors.InvalidJudgmentError` that names the field.

>>> import sqlite_utils
>>> store = Store(sqlite_utils.Database(memory=True), data_dir=None)
>>> store.schema_version
4
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import hashlib
import io
import json
import os
import re
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from spatialreward.errors import (
    InvalidJudgmentError,
    NotYourJudgmentError,
    StoreError,
    UnknownAnnotatorError,
    UnknownItemError,
)
from spatialreward.judgment import Judgment

from .pairs import DIMENSIONS, Ranking, parse_ranking, ranking_to_json
from .paths import protect_database, resolve_inside
from .schema import migrations

DEFAULT_DB = Path("data/studio.db")
ROLES = ("annotator", "researcher", "admin")
SCORE_DIMENSIONS = ("instruction", "preservation", "quality", "overall")
"""Per-candidate human scores, each 0..10."""
RUN_KINDS = ("bench", "rl")
RUN_STATUSES = ("queued", "running", "done", "failed", "cancelled", "interrupted")
BUSY_TIMEOUT_MS = 5_000
LOCK_RETRIES = 20  # after the busy timeout; a writer gives up only after ~2 minutes

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
ORPHAN_MIN_AGE_S = 300
"""``remove_orphan_images`` leaves younger files alone: ``put_image`` writes the file
before its row, so a young unreferenced file may be another process's write in flight."""


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")


def image_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


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

    @property
    def label(self) -> str:
        """The preference as one nominal label (agreement metrics): the preferred
        candidate's index, ``tie`` or ``both_bad``."""
        if self.both_bad:
            return "both_bad"
        return "tie" if self.preferred is None else str(self.preferred)


class Store:
    """The judgment store over ``db``; images live under ``data_dir/images``."""

    def __init__(self, db: Database, data_dir: str | os.PathLike[str] | None = None) -> None:
        self.db = db
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self.path: Path | None = None
        """The database file, when :meth:`open` made the store from one."""
        self._lock = threading.RLock()
        conn = db.conn
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA foreign_keys = ON")
        # The rows that INSERT OR REPLACE deletes fire DELETE triggers too (defence in
        # depth beside m003's triggers, which refuse such inserts outright).
        conn.execute("PRAGMA recursive_triggers = ON")
        if not db.memory:
            db.enable_wal()
            # WAL + NORMAL: a commit survives the process being killed (it is in the
            # WAL file); only an OS crash or power cut can lose the last commits.
            conn.execute("PRAGMA synchronous = NORMAL")
        with self.write():
            migrations.apply(db)

    @classmethod
    def open(cls, path: str | os.PathLike[str] = DEFAULT_DB) -> Store:
        """The store in the file ``path`` (created with its folder if missing); images
        go beside it in ``<folder>/images``."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        # From now on no data-file path may name this file (see storage.paths: a plain
        # open + close of it in this process would drop our SQLite locks).
        protect_database(path)
        conn = sqlite3.connect(path, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000)
        try:
            store = cls(Database(conn), data_dir=path.parent)
        except BaseException:
            conn.close()
            raise
        store.path = path.resolve()
        return store

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        return len(migrations.applied(self.db))

    # -- transactions -------------------------------------------------------------

    @contextlib.contextmanager
    def write(self) -> Iterator[Database]:
        """One write transaction (``BEGIN IMMEDIATE``), serialised across threads.

        Nested calls join the outer transaction. A lock held by another process is
        waited out (busy timeout, then retries), never reported to the caller."""
        with self._lock:
            conn = self.db.conn
            if conn.in_transaction:
                yield self.db
                return
            for attempt in range(LOCK_RETRIES + 1):
                try:
                    conn.execute("BEGIN IMMEDIATE")
                    break
                except sqlite3.OperationalError as err:
                    if "locked" not in str(err) or attempt == LOCK_RETRIES:
                        raise
                    time.sleep(min(0.05 * 2**attempt, 1.0))
            try:
                yield self.db
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            else:
                conn.execute("COMMIT")

    def _one(self, sql: str, params: Sequence[Any] = ()) -> dict[str, Any] | None:
        with self._lock:
            rows = list(self.db.query(sql, params))
        return rows[0] if rows else None

    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.db.query(sql, params))

    # -- images -------------------------------------------------------------------

    def put_image(self, image: Any) -> str:
        """Store an image once, by the SHA-256 of its bytes; returns the hash.

        ``image``: encoded bytes, a path, or anything :func:`spatialreward.images.load_image`
        reads (a PIL image or an array is stored as PNG). The bytes are checked to be an
        image within the size caps first."""
        from PIL import Image

        from spatialreward.images import load_image

        if isinstance(image, (bytes, bytearray)):
            data = bytes(image)
        elif isinstance(image, (str, os.PathLike)):
            data = Path(image).read_bytes()
        else:
            buf = io.BytesIO()
            load_image(image).save(buf, format="PNG")
            data = buf.getvalue()
        rgb = load_image(data)  # raises a named ImageError on anything unusable
        with Image.open(io.BytesIO(data)) as im:
            fmt = (im.format or "PNG").upper()
        sha = image_sha256(data)
        if self._one("SELECT 1 AS x FROM images WHERE sha256 = ?", [sha]) is not None:
            return sha
        rel = f"images/{sha[:2]}/{sha}.{fmt.lower()}"
        if self.data_dir is None:
            self._memory_images[sha] = data
        else:
            self._write_image_file(rel, data)  # outside the lock: the slow part
        with self.write() as db:
            if self.data_dir is not None:
                # remove_orphan_images deletes under this lock: checked again here, the
                # file cannot vanish between this check and its row.
                self._write_image_file(rel, data)
            db.execute(
                "INSERT OR IGNORE INTO images (sha256, path, format, width, height, bytes, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [sha, rel, fmt, rgb.width, rgb.height, len(data), now()],
            )
        return sha

    def _write_image_file(self, rel: str, data: bytes) -> None:
        assert self.data_dir is not None
        target = self.data_dir / rel
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}")
            tmp.write_bytes(data)
            os.replace(tmp, target)  # readers never see half a file

    @property
    def _memory_images(self) -> dict[str, bytes]:
        # An in-memory store (tests, doctests) keeps image bytes in memory too.
        if not hasattr(self, "_mem"):
            self._mem: dict[str, bytes] = {}
        return self._mem

    def image_bytes(self, sha: str) -> bytes:
        row = self._one("SELECT path FROM images WHERE sha256 = ?", [sha])
        if row is None:
            raise UnknownItemError(f"no image {sha} in the store")
        if self.data_dir is None:
            return self._memory_images[sha]
        return resolve_inside(self.data_dir, row["path"]).read_bytes()

    def image_path(self, sha: str) -> Path:
        row = self._one("SELECT path FROM images WHERE sha256 = ?", [sha])
        if row is None or self.data_dir is None:
            raise UnknownItemError(f"no image file {sha} in the store")
        return resolve_inside(self.data_dir, row["path"])

    # -- items --------------------------------------------------------------------

    def add_item(self, instruction: str, source: Any, candidates: Sequence[Any], *,
                 uid: str | None = None, category: str | None = None,
                 dimension: str = "overall", truth_ranking: Any = None,
                 truth_regions: Sequence[Sequence[int]] | None = None,
                 origin_dataset: str | None = None, origin_file: str | None = None,
                 origin_id: str | None = None, metadata: Mapping[str, Any] | None = None
                 ) -> int:
        """Add an item (or return the id of the item with the same ``uid``).

        The instruction (stripped) may hold :data:`MAX_INSTRUCTION_CHARS` characters; it
        and every other text (``uid``, ``category``, ``origin_*``, strings in ``metadata``)
        must be valid Unicode."""
        instruction = check_item_text(
            instruction, metadata, uid=uid, category=category, origin_dataset=origin_dataset,
            origin_file=origin_file, origin_id=origin_id)
        if not candidates:
            raise InvalidJudgmentError("an item needs at least one candidate image")
        if dimension not in DIMENSIONS:
            raise InvalidJudgmentError(
                f"dimension must be one of {', '.join(DIMENSIONS)}, got {dimension!r}")
        ranking = (None if truth_ranking is None
                   else _ranking(truth_ranking, len(candidates)))
        src = self.put_image(source)
        cands = [self.put_image(c) for c in candidates]
        if uid is None:
            uid = origin_id or "sha256:" + hashlib.sha256(
                "\n".join([instruction, src, *cands]).encode()).hexdigest()[:24]
        with self.write() as db:
            row = self._one("SELECT id FROM items WHERE uid = ?", [uid])
            if row is not None:
                return int(row["id"])
            cur = db.execute(
                "INSERT INTO items (uid, instruction, source_sha256, n_candidates, category, "
                "dimension, truth_ranking, truth_regions, origin_dataset, origin_file, "
                "origin_id, metadata, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                [uid, instruction, src, len(cands), category, dimension,
                 None if ranking is None else json.dumps(ranking_to_json(ranking)),
                 None if truth_regions is None else json.dumps([list(b) for b in truth_regions]),
                 origin_dataset, origin_file, origin_id, json.dumps(dict(metadata or {})), now()],
            )
            item_id = int(cur.lastrowid or 0)
            db.conn.executemany(
                "INSERT INTO candidates (item_id, idx, image_sha256) VALUES (?, ?, ?)",
                [(item_id, k, sha) for k, sha in enumerate(cands)])
        return item_id

    def item(self, item_id: int) -> dict[str, Any]:
        row = self._one("SELECT * FROM items WHERE id = ?", [item_id])
        if row is None:
            raise UnknownItemError(f"no item {item_id} in the store")
        row["candidates"] = [r["image_sha256"] for r in self._all(
            "SELECT image_sha256 FROM candidates WHERE item_id = ? ORDER BY idx", [item_id])]
        for key in ("truth_ranking", "truth_regions", "metadata"):
            row[key] = None if row[key] is None else json.loads(row[key])
        return row

    def item_ids(self) -> list[int]:
        return [int(r["id"]) for r in self._all("SELECT id FROM items ORDER BY id")]

    def item_by_uid(self, uid: str) -> int:
        row = self._one("SELECT id FROM items WHERE uid = ?", [uid])
        if row is None:
            raise UnknownItemError(f"no item {uid!r} in the store")
        return int(row["id"])

    def flag_item(self, item_id: int, reason: str = "", flagged_by: str | None = None) -> int:
        """Send an item to the annotation queue (Inspect's "I disagree"); ``reason`` is
        kept to its first :data:`MAX_COMMENT_CHARS` characters."""
        reason = _text(reason or "", "the flag reason", strip=True)[:MAX_COMMENT_CHARS]
        if flagged_by is not None:
            _text(flagged_by, "flagged_by")
        self.item(item_id)  # UnknownItemError for a bad id
        with self.write() as db:
            cur = db.execute("INSERT INTO flags (item_id, reason, flagged_by, created_at) "
                             "VALUES (?, ?, ?, ?)", [item_id, reason, flagged_by, now()])
        return int(cur.lastrowid or 0)

    def flagged_items(self) -> list[int]:
        """Flagged item ids, most recently flagged first."""
        return [int(r["item_id"]) for r in self._all(
            "SELECT item_id, MAX(id) AS last FROM flags GROUP BY item_id ORDER BY last DESC")]

    # -- model judgments ----------------------------------------------------------

    def cache_key(self, item_id: int, candidate: int, backend: str, version: str) -> str:
        item = self.item(item_id)
        if not 0 <= candidate < item["n_candidates"]:
            raise UnknownItemError(f"item {item_id} has no candidate {candidate}")
        parts = [item["source_sha256"], item["candidates"][candidate], item["instruction"],
                 backend, version]
        return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()

    def cached_judgment(self, item_id: int, candidate: int, backend: str, version: str
                        ) -> Judgment | None:
        """The stored judgment of this candidate by this backend version, if any."""
        row = self._one("SELECT judgment FROM model_judgments WHERE cache_key = ?",
                        [self.cache_key(item_id, candidate, backend, version)])
        return None if row is None else Judgment.from_dict(json.loads(row["judgment"]))

    def add_model_judgment(self, item_id: int, candidate: int, judgment: Judgment,
                           latency_ms: float | None = None, created_at: str | None = None
                           ) -> int:
        """Store a model judgment (once per cache key; a repeat returns the stored id).
        ``created_at`` (ISO time) is for imports that keep the original time."""
        key = self.cache_key(item_id, candidate, judgment.backend, judgment.backend_version)
        with self.write() as db:
            db.execute(
                "INSERT OR IGNORE INTO model_judgments (cache_key, item_id, candidate, backend, "
                "backend_version, status, overall, semantic_consistency, perceptual_quality, "
                "prompt_following, consistency, n_regions, judgment, latency_ms, created_at) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                [key, item_id, candidate, judgment.backend, judgment.backend_version,
                 judgment.status, judgment.overall, judgment.semantic_consistency,
                 judgment.perceptual_quality, judgment.prompt_following, judgment.consistency,
                 len(judgment.regions), json.dumps(judgment.to_dict()), latency_ms,
                 created_at or now()])
            row = self._one("SELECT id FROM model_judgments WHERE cache_key = ?", [key])
        assert row is not None
        return int(row["id"])

    def judge_item(self, item_id: int, backend: Any) -> list[Judgment]:
        """Judge every candidate of an item with ``backend``, reusing stored judgments
        of the same backend version."""
        from spatialreward.images import load_image

        item = self.item(item_id)
        out = []
        source = None
        for k, sha in enumerate(item["candidates"]):
            cached = self.cached_judgment(item_id, k, backend.name, backend.version)
            if cached is not None:
                out.append(cached)
                continue
            if source is None:
                source = load_image(self.image_bytes(item["source_sha256"]))
            t0 = time.perf_counter()
            j = backend.judge(source, load_image(self.image_bytes(sha)), item["instruction"])
            self.add_model_judgment(item_id, k, j, (time.perf_counter() - t0) * 1000)
            out.append(j)
        return out

    # -- annotators ---------------------------------------------------------------

    def add_annotator(self, name: str, role: str = "annotator", password: str | None = None
                      ) -> int:
        """Register an annotator (a name of up to :data:`MAX_NAME_CHARS` characters);
        ``password`` (optional, at least :data:`MIN_PASSWORD_CHARS` characters) is stored as
        an argon2id hash."""
        name = _text(name or "", "the annotator name", MAX_NAME_CHARS, strip=True)
        if not name:
            raise InvalidJudgmentError("an annotator needs a name")
        if role not in ROLES:
            raise InvalidJudgmentError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
        pw_hash = None
        if password is not None:
            from argon2 import PasswordHasher

            pw_hash = PasswordHasher().hash(_password(password))
        with self.write() as db:
            if self._one("SELECT id FROM annotators WHERE name = ?", [name]) is not None:
                raise InvalidJudgmentError(f"an annotator named {name!r} already exists")
            cur = db.execute("INSERT INTO annotators (name, role, password_hash, created_at) "
                             "VALUES (?, ?, ?, ?)", [name, role, pw_hash, now()])
        return int(cur.lastrowid or 0)

    def annotator_id(self, name: str) -> int:
        row = self._one("SELECT id FROM annotators WHERE name = ?", [name])
        if row is None:
            raise UnknownAnnotatorError(
                f"no annotator named {name!r}; register one first (Store.add_annotator)")
        return int(row["id"])

    def annotators(self) -> list[dict[str, Any]]:
        return self._all("SELECT id, name, role, password_hash IS NOT NULL AS has_password, "
                         "created_at FROM annotators ORDER BY id")

    def check_password(self, name: str, password: str) -> bool:
        """True when ``password`` matches the annotator's stored hash.

        An unknown name, or one without a password, is checked against a dummy hash: every
        call costs one argon2 verify, so the time taken does not tell which names exist."""
        from argon2 import PasswordHasher
        from argon2.exceptions import InvalidHashError, VerificationError

        row = (self._one("SELECT password_hash FROM annotators WHERE name = ?", [name])
               if _is_text(name) else None)
        stored = None if row is None else row["password_hash"]
        # surrogatepass: text that is not valid Unicode still costs a verify (and fails).
        secret = password.encode("utf-8", "surrogatepass")
        try:
            matches = PasswordHasher().verify(stored or _dummy_hash(), secret)
        except (VerificationError, InvalidHashError):
            return False
        return matches and stored is not None

    # -- human judgments ----------------------------------------------------------

    def add_human_judgment(self, item_id: int, annotator: str, preference: Any, *,
                           scores: Mapping[Any, Mapping[str, float]] | None = None,
                           regions: Sequence[Mapping[str, Any]] | None = None,
                           comment: str = "", seconds_spent: float | None = None,
                           supersedes: int | None = None) -> int:
        """Record a judgment; returns its id.

        ``preference``: the index of the better candidate, ``"tie"``, ``"both_bad"``, or a
        full ranking in the pair format (``[2, [0, 1]]``). ``supersedes``: the id of this
        annotator's earlier judgment of the item that this one replaces (an edit).
        ``comment``: up to :data:`MAX_COMMENT_CHARS` characters; ``regions``: up to
        :data:`MAX_REGIONS`, each label up to :data:`MAX_LABEL_CHARS`."""
        return self.add_human_judgments([dict(
            item_id=item_id, annotator=annotator, preference=preference, scores=scores,
            regions=regions, comment=comment, seconds_spent=seconds_spent,
            supersedes=supersedes)])[0]

    def add_human_judgments(self, judgments: Iterable[Mapping[str, Any]]) -> list[int]:
        """Record many judgments in one transaction (all or none); each a mapping with
        the keyword arguments of :meth:`add_human_judgment`."""
        items: dict[int, int] = {}
        annotators: dict[str, int] = {}
        rows = []
        for j in judgments:
            item_id = int(j["item_id"])
            if item_id not in items:
                row = self._one("SELECT n_candidates FROM items WHERE id = ?", [item_id])
                if row is None:
                    raise UnknownItemError(f"no item {item_id} in the store")
                items[item_id] = int(row["n_candidates"])
            name = j["annotator"]
            if name not in annotators:
                annotators[name] = self.annotator_id(name)
            n = items[item_id]
            ranking, preferred, both_bad = _preference(j["preference"], n)
            rows.append((
                item_id, annotators[name], "judgment", json.dumps(ranking_to_json(ranking)),
                preferred, int(both_bad), _scores(j.get("scores"), n),
                _regions(j.get("regions"), n), check_comment(j.get("comment")),
                _seconds(j.get("seconds_spent")), j.get("supersedes"), now()))
        with self.write() as db:
            for r in rows:
                if r[10] is not None:
                    self._check_supersede(int(r[10]), r[1], r[0])
            ids = [self._insert_human(db, r) for r in rows]
        return ids

    def undo_human_judgment(self, judgment_id: int, annotator: str) -> int:
        """Retract one of ``annotator``'s current judgments (a new ``retraction`` row);
        returns the retraction's id."""
        with self.write() as db:
            row = self._one("SELECT item_id FROM human_judgments WHERE id = ?", [judgment_id])
            if row is None:
                raise UnknownItemError(f"no human judgment {judgment_id}")
            who = self.annotator_id(annotator)
            self._check_supersede(judgment_id, who, int(row["item_id"]))
            return self._insert_human(db, (int(row["item_id"]), who, "retraction", None, None,
                                           0, None, None, "", None, judgment_id, now()))

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

    @staticmethod
    def _insert_human(db: Database, row: tuple[Any, ...]) -> int:
        cur = db.execute(
            "INSERT INTO human_judgments (item_id, annotator_id, kind, ranking, preferred, "
            "both_bad, scores, regions, comment, seconds_spent, supersedes, created_at) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", list(row))
        return int(cur.lastrowid or 0)

    def human_judgments(self, item_id: int | None = None, annotator: str | None = None,
                        history: bool = False) -> list[HumanJudgment]:
        """Current judgments (or, with ``history``, every row ever written), oldest first."""
        table = "human_judgments" if history else "current_human_judgments"
        where, params = [], []
        if item_id is not None:
            where.append("h.item_id = ?")
            params.append(item_id)
        if annotator is not None:
            where.append("h.annotator_id = ?")
            params.append(self.annotator_id(annotator))
        sql = (f"SELECT h.*, a.name AS annotator FROM {table} h "
               "JOIN annotators a ON a.id = h.annotator_id"
               + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY h.id")
        return [_human(r) for r in self._all(sql, params)]

    # -- runs ---------------------------------------------------------------------

    def create_run(self, kind: str, name: str, config: Mapping[str, Any],
                   out_dir: str | None = None) -> int:
        if kind not in RUN_KINDS:
            raise InvalidJudgmentError(f"run kind must be one of {RUN_KINDS}, got {kind!r}")
        _text(name, "the run name")
        with self.write() as db:
            cur = db.execute("INSERT INTO runs (kind, name, config, status, out_dir, created_at) "
                             "VALUES (?, ?, ?, 'queued', ?, ?)",
                             [kind, name, json.dumps(dict(config)), out_dir, now()])
        return int(cur.lastrowid or 0)

    def update_run(self, run_id: int, *, status: str | None = None, pid: int | None = None,
                   error: str | None = None, out_dir: str | None = None,
                   pid_start: int | None = None) -> None:
        """Set a run's fields. ``pid`` and ``pid_start`` (the process's start time, which
        tells the recorded process from a later one that reuses its pid) go together."""
        if status is not None and status not in RUN_STATUSES:
            raise InvalidJudgmentError(f"run status must be one of {RUN_STATUSES}")
        sets: dict[str, Any] = {}
        if status is not None:
            sets["status"] = status
            if status == "running":
                sets["started_at"] = now()
            elif status in ("done", "failed", "cancelled", "interrupted"):
                sets["finished_at"] = now()
        if pid is not None:
            sets["pid"] = pid
            sets["pid_start"] = pid_start
        if error is not None:
            sets["error"] = replace_surrogates(error)  # an error text is kept, not refused
        if out_dir is not None:
            sets["out_dir"] = out_dir
        if not sets:
            return
        with self.write() as db:
            cur = db.execute(f"UPDATE runs SET {', '.join(f'{k} = ?' for k in sets)} "
                             "WHERE id = ?", [*sets.values(), run_id])
            if cur.rowcount == 0:
                raise UnknownItemError(f"no run {run_id}")

    def run(self, run_id: int) -> dict[str, Any]:
        row = self._one("SELECT * FROM runs WHERE id = ?", [run_id])
        if row is None:
            raise UnknownItemError(f"no run {run_id}")
        row["config"] = json.loads(row["config"])
        return row

    def runs(self, kind: str | None = None) -> list[dict[str, Any]]:
        if kind is None:
            return self._all("SELECT * FROM runs ORDER BY id DESC")
        return self._all("SELECT * FROM runs WHERE kind = ? ORDER BY id DESC", [kind])

    def log_metrics(self, run_id: int, step: int, values: Mapping[str, float]) -> None:
        with self.write() as db:
            if self._one("SELECT 1 AS x FROM runs WHERE id = ?", [run_id]) is None:
                raise UnknownItemError(f"no run {run_id}")
            db.conn.executemany(
                "INSERT INTO metrics (run_id, step, key, value, created_at) VALUES (?,?,?,?,?)",
                [(run_id, step, k, float(v), now()) for k, v in values.items()])

    def metrics(self, run_id: int, key: str | None = None) -> list[dict[str, Any]]:
        if key is None:
            return self._all("SELECT step, key, value FROM metrics WHERE run_id = ? "
                             "ORDER BY key, step", [run_id])
        return self._all("SELECT step, key, value FROM metrics WHERE run_id = ? AND key = ? "
                         "ORDER BY step", [run_id, key])

    def add_rl_sample(self, run_id: int, step: int, instruction: str, source: Any,
                      images: Sequence[Any], rewards: Sequence[float]) -> int:
        if len(images) != len(rewards):
            raise InvalidJudgmentError("an RL sample needs one reward per image")
        _text(instruction, "the RL sample's instruction")
        src = None if source is None else self.put_image(source)
        shas = [self.put_image(im) for im in images]
        with self.write() as db:
            cur = db.execute("INSERT INTO rl_samples (run_id, step, instruction, source_sha256, "
                             "images, rewards, created_at) VALUES (?,?,?,?,?,?,?)",
                             [run_id, step, instruction, src, json.dumps(shas),
                              json.dumps([float(r) for r in rewards]), now()])
        return int(cur.lastrowid or 0)

    def rl_samples(self, run_id: int) -> list[dict[str, Any]]:
        rows = self._all("SELECT * FROM rl_samples WHERE run_id = ? ORDER BY step, id", [run_id])
        for r in rows:
            r["images"], r["rewards"] = json.loads(r["images"]), json.loads(r["rewards"])
        return rows

    # -- health -------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        counts = {t: self._one(f"SELECT COUNT(*) AS n FROM {t}")["n"]  # type: ignore[index]
                  for t in ("images", "items", "candidates", "model_judgments", "annotators",
                            "human_judgments", "runs", "metrics", "rl_samples", "flags")}
        current = self._one("SELECT COUNT(*) AS n FROM current_human_judgments")
        return {"schema_version": self.schema_version, "tables": counts,
                "current_human_judgments": current["n"] if current else 0,
                "journal_mode": self.db.journal_mode}

    def integrity(self) -> list[str]:
        """Problems found (empty: healthy): SQLite's integrity and foreign-key checks, the
        supersede chains and ``human_current`` checked against the history, image files
        that are missing or do not match their hash, and orphan image files."""
        problems = [r["integrity_check"] for r in self._all("PRAGMA integrity_check")
                    if r["integrity_check"] != "ok"]
        problems += [f"foreign key: {r['table']} row {r['rowid']} -> {r['parent']}"
                     for r in self._all("PRAGMA foreign_key_check")]
        problems += self._chain_problems() + self._current_problems()
        if self.data_dir is not None:
            problems += self._image_problems() + self._orphan_problems()
        return problems

    def _chain_problems(self) -> list[str]:
        """Every ``supersedes`` names an earlier judgment (not a retraction) of the same
        annotator and item, once; every retraction supersedes something."""
        rows = self._all(
            "SELECT * FROM (SELECT h.id, CASE "
            "WHEN h.supersedes IS NULL THEN 'is a retraction that supersedes nothing' "
            "WHEN o.id IS NULL THEN 'supersedes ' || h.supersedes || ', which does not exist' "
            "WHEN o.id >= h.id THEN 'supersedes ' || o.id || ', a later row' "
            "WHEN o.annotator_id != h.annotator_id "
            "THEN 'supersedes ' || o.id || ' of another annotator' "
            "WHEN o.item_id != h.item_id THEN 'supersedes ' || o.id || ' of another item' "
            "WHEN o.kind != 'judgment' THEN 'supersedes ' || o.id || ', a retraction' "
            "END AS problem FROM human_judgments h "
            "LEFT JOIN human_judgments o ON o.id = h.supersedes "
            "WHERE h.supersedes IS NOT NULL OR h.kind = 'retraction') "
            "WHERE problem IS NOT NULL ORDER BY id")
        rows += self._all(
            "SELECT supersedes AS id, 'is superseded by ' || COUNT(*) || ' rows (' || "
            "GROUP_CONCAT(id, ', ') || ')' AS problem FROM human_judgments "
            "WHERE supersedes IS NOT NULL GROUP BY supersedes HAVING COUNT(*) > 1")
        return [f"human judgment {r['id']} {r['problem']}: the edit history was written "
                "around the store's checks; restore the store from a backup" for r in rows]

    def _current_problems(self) -> list[str]:
        """``human_current`` holds exactly the current judgments the history implies."""
        expected = ("SELECT id, item_id, preferred, both_bad FROM human_judgments h "
                    "WHERE kind = 'judgment' AND NOT EXISTS ("
                    "SELECT 1 FROM human_judgments s WHERE s.supersedes = h.id)")
        actual = "SELECT judgment_id, item_id, preferred, both_bad FROM human_current"
        wrong = self._all(f"SELECT judgment_id AS id FROM ({actual} EXCEPT {expected}) "
                          f"UNION SELECT id FROM ({expected} EXCEPT {actual}) ORDER BY id")
        if not wrong:
            return []
        return [f"human_current disagrees with human_judgments for {len(wrong)} judgment(s) "
                f"({_few([str(r['id']) for r in wrong])}): vote counts and queues are wrong; "
                "restore the store from a backup"]

    def _image_problems(self) -> list[str]:
        assert self.data_dir is not None
        problems = []
        for r in self._all("SELECT sha256, path FROM images"):
            try:
                data = resolve_inside(self.data_dir, r["path"]).read_bytes()
            except (OSError, StoreError) as err:
                problems.append(f"image {r['sha256']}: {err}")
                continue
            if image_sha256(data) != r["sha256"]:
                problems.append(f"image {r['path']}: contents do not match its hash")
        return problems

    def _orphan_problems(self) -> list[str]:
        orphans = self.orphan_images(ORPHAN_MIN_AGE_S)
        if not orphans:
            return []
        return [f"orphan image files: {len(orphans)} file(s), "
                f"{sum(size for _, size in orphans):,} bytes under images/ that no images row "
                f"references ({_few([rel for rel, _ in orphans])}), left by an interrupted "
                "write; remove them with `db integrity --remove-orphans`"]

    def orphan_images(self, min_age_s: float = 0) -> list[tuple[str, int]]:
        """Files under ``<data_dir>/images`` that no ``images`` row references and that
        were last modified at least ``min_age_s`` ago: (path relative to the data folder,
        bytes), sorted by path."""
        if self.data_dir is None:
            return []
        known = {r["path"] for r in self._all("SELECT path FROM images")}
        cutoff = time.time() - min_age_s
        out = []
        for folder, _, names in os.walk(self.data_dir / "images"):
            for name in names:
                path = Path(folder, name)
                rel = path.relative_to(self.data_dir).as_posix()
                with contextlib.suppress(FileNotFoundError):  # removed while we looked
                    info = path.lstat()
                    if rel not in known and info.st_mtime <= cutoff:
                        out.append((rel, info.st_size))
        return sorted(out)

    def remove_orphan_images(self, min_age_s: float = ORPHAN_MIN_AGE_S
                             ) -> list[tuple[str, int]]:
        """Delete the orphan image files at least ``min_age_s`` old (see
        :meth:`orphan_images`); returns what was removed. Younger files are left: one may
        be another process's ``put_image`` between writing its file and its row."""
        if self.data_dir is None:
            return []
        with self.write():  # put_image checks its file under this lock too
            orphans = self.orphan_images(min_age_s)
            for rel, _ in orphans:
                (self.data_dir / rel).unlink(missing_ok=True)
        return orphans

    def backup(self, target: str | os.PathLike[str]) -> Path:
        """Copy the database to ``target`` with SQLite's online backup API (consistent
        even while other threads or processes write), plus the image files."""
        import shutil

        target = Path(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        dest = sqlite3.connect(target)
        try:
            with self._lock:
                self.db.conn.backup(dest, pages=1024)
        finally:
            dest.close()
        if self.data_dir is not None and (self.data_dir / "images").is_dir():
            shutil.copytree(self.data_dir / "images", target.parent / "images",
                            dirs_exist_ok=True)
        return target


# -- validation -------------------------------------------------------------------


def _is_text(value: Any) -> bool:
    """True for a ``str`` that encodes as UTF-8 (SQLite stores only such text)."""
    try:
        value.encode("utf-8")
    except (AttributeError, UnicodeEncodeError):
        return False
    return True


def _text(value: Any, field: str, limit: int | None = None, *, strip: bool = False) -> str:
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


def _json_text(value: Any, field: str) -> None:
    """Every string inside ``value`` (keys too) is valid Unicode text."""
    if isinstance(value, str):
        _text(value, field)
    elif isinstance(value, Mapping):
        for key, v in value.items():
            _text(str(key), f"a key of {field}")
            _json_text(v, f"{field}[{key!r}]")
    elif isinstance(value, (list, tuple)):
        for k, v in enumerate(value):
            _json_text(v, f"{field}[{k}]")


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
    instruction = _text(instruction, "the instruction", MAX_INSTRUCTION_CHARS, strip=True)
    for name, value in fields.items():
        if value is not None:
            _text(value, name)
    _json_text(metadata or {}, "metadata")
    return instruction


def check_comment(value: Any) -> str:
    """A judgment's comment (None: empty), at most :data:`MAX_COMMENT_CHARS` long."""
    return _text("" if value is None else value, "the comment", MAX_COMMENT_CHARS)


def _password(value: Any) -> str:
    if not isinstance(value, str) or len(value) < MIN_PASSWORD_CHARS:
        raise InvalidJudgmentError(
            f"a password needs at least {MIN_PASSWORD_CHARS} characters; choose a longer one")
    return _text(value, "the password")


@functools.cache
def _dummy_hash() -> str:
    """An argon2 hash of a random secret, made once on first use: verifying a password
    against it costs what verifying against a real hash costs."""
    import secrets

    from argon2 import PasswordHasher

    return PasswordHasher().hash(secrets.token_urlsafe(16))


_SURROGATES = re.compile(r"[\ud800-\udfff]")


def replace_surrogates(text: str) -> str:
    r"""``text`` with every lone surrogate (U+D800..U+DFFF, which UTF-8 cannot encode)
    replaced by U+FFFD, the replacement character.

    >>> replace_surrogates("cup\ud800") == "cup\ufffd"
    True
    """
    return _SURROGATES.sub("\ufffd", text)


def _few(values: Sequence[str], n: int = 5) -> str:
    """The first ``n`` values, comma-separated, with ``...`` when there are more."""
    return ", ".join(values[:n]) + (", ..." if len(values) > n else "")


def _ranking(value: Any, n: int) -> Ranking:
    try:
        return parse_ranking(value, n)
    except StoreError:
        raise
    except Exception as err:  # PairFormatError and friends
        raise InvalidJudgmentError(f"invalid ranking {value!r}: {err}") from err


def _preference(value: Any, n: int) -> tuple[Ranking, int | None, bool]:
    """(ranking, single best candidate or None, both bad) from a preference."""
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
        ranking = _ranking(list(value), n)
        return ranking, ranking[0][0] if len(ranking[0]) == 1 else None, False
    raise InvalidJudgmentError(
        f"invalid preference {value!r}: give a candidate index, 'tie', 'both_bad' or a ranking")


def _scores(value: Any, n: int) -> str | None:
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


def _regions(value: Any, n: int) -> str | None:
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
        label = _text(str(r.get("label", "")), f"the label of region {k}", MAX_LABEL_CHARS)
        out.append({"candidate": cand, "bbox_2d": box, "label": label})
    return json.dumps(out)


def _seconds(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 86400:
        raise InvalidJudgmentError(f"seconds_spent must be 0..86400, got {value!r}")
    return float(value)


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
        created_at=r["created_at"])
