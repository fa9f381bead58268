"""The judgment store: items, images, model and human judgments, runs, over SQLite.

A :class:`Store` wraps a ``sqlite_utils.Database`` that the caller passes in (or
:meth:`Store.open` makes one from a path, ``data/studio.db`` by default). Opening a store
applies pending migrations (:mod:`storage.schema`), turns on WAL, a busy timeout and
foreign keys (:mod:`storage.connection`: writes are serialised, each in ``BEGIN
IMMEDIATE``).

The store owns the SQL: every other module asks it through the public methods below.
``Store`` is assembled from parts, one per concept: the connection
(:mod:`storage.connection`), images (:mod:`storage.images`), annotators and the
append-only human judgments (:mod:`storage.humans`), and here items, flags, model
judgments, runs and health (:mod:`storage.integrity` holds the checks).

Every text field is checked at this boundary (:mod:`storage.validation`): it must be
valid Unicode (encodable as UTF-8, so no lone surrogate) and within the limits
(``MAX_*``, importable from here); a bad one is refused with an
:class:`~spatialreward.errors.InvalidJudgmentError` that names the field.

>>> import sqlite_utils
>>> store = Store(sqlite_utils.Database(memory=True), data_dir=None)
>>> store.schema_version
5
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sqlite_utils import Database
from sqlite_utils.db import NotFoundError

from spatialreward.errors import InvalidJudgmentError, UnknownItemError
from spatialreward.judgment import Judgment

from . import integrity as _integrity
from .connection import BUSY_TIMEOUT_MS, LOCK_RETRIES, now
from .humans import HumanJudgment, HumanJudgmentStore
from .images import ImageStore, image_sha256
from .integrity import ORPHAN_MIN_AGE_S
from .pairs import DIMENSIONS, ranking_to_json
from .paths import protect_database
from .schema import migrations
from .validation import (
    MAX_COMMENT_CHARS,
    MAX_INSTRUCTION_CHARS,
    MAX_LABEL_CHARS,
    MAX_NAME_CHARS,
    MAX_REGIONS,
    MIN_PASSWORD_CHARS,
    ROLES,
    SCORE_DIMENSIONS,
    check_comment,
    check_item_text,
    check_ranking,
    check_text,
    replace_surrogates,
)

__all__ = [
    "BUSY_TIMEOUT_MS", "DEFAULT_DB", "LOCK_RETRIES", "MAX_COMMENT_CHARS",
    "MAX_INSTRUCTION_CHARS", "MAX_LABEL_CHARS", "MAX_NAME_CHARS", "MAX_REGIONS",
    "MIN_PASSWORD_CHARS", "ORPHAN_MIN_AGE_S", "ROLES", "RUN_KINDS", "RUN_STATUSES",
    "SCORE_DIMENSIONS", "HumanJudgment", "Store", "check_comment", "check_item_text",
    "image_sha256", "now", "replace_surrogates",
]

DEFAULT_DB = Path("data/studio.db")
RUN_KINDS = ("bench", "rl")
RUN_STATUSES = ("queued", "running", "done", "failed", "cancelled", "interrupted")


class Store(ImageStore, HumanJudgmentStore):
    """The judgment store over ``db``; images live under ``data_dir/images``."""

    def __init__(self, db: Database, data_dir: str | os.PathLike[str] | None = None) -> None:
        super().__init__(db, data_dir)
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
                   else check_ranking(truth_ranking, len(candidates)))
        src = self.put_image(source)
        cands = [self.put_image(c) for c in candidates]
        if uid is None:
            uid = origin_id or "sha256:" + hashlib.sha256(
                "\n".join([instruction, src, *cands]).encode()).hexdigest()[:24]
        with self.write() as db:
            row = self._one("SELECT id FROM items WHERE uid = ?", [uid])
            if row is not None:
                return int(row["id"])
            item_id = self._insert("items", {
                "uid": uid, "instruction": instruction, "source_sha256": src,
                "n_candidates": len(cands), "category": category, "dimension": dimension,
                "truth_ranking": None if ranking is None else json.dumps(ranking_to_json(ranking)),
                "truth_regions": (None if truth_regions is None
                                  else json.dumps([list(b) for b in truth_regions])),
                "origin_dataset": origin_dataset, "origin_file": origin_file,
                "origin_id": origin_id, "metadata": json.dumps(dict(metadata or {})),
                "created_at": now()})
            db.table("candidates").insert_all(
                {"item_id": item_id, "idx": k, "image_sha256": sha}
                for k, sha in enumerate(cands))
        return item_id

    def item(self, item_id: int) -> dict[str, Any]:
        """An item's row with its JSON decoded and ``candidates``, the candidates' image
        hashes in index order."""
        row = self._one("SELECT * FROM items WHERE id = ?", [item_id])
        if row is None:
            raise UnknownItemError(f"no item {item_id} in the store")
        row["candidates"] = [r["image_sha256"] for r in self._all(
            "SELECT image_sha256 FROM candidates WHERE item_id = ? ORDER BY idx", [item_id])]
        for key in ("truth_ranking", "truth_regions", "metadata"):
            row[key] = None if row[key] is None else json.loads(row[key])
        return row

    def item_ids(self) -> list[int]:
        """Every item's id, oldest first."""
        return [int(r[0]) for r in self._rows("SELECT id FROM items ORDER BY id")]

    def item_by_uid(self, uid: str) -> int:
        """The id of the item with this ``uid``."""
        row = self._one("SELECT id FROM items WHERE uid = ?", [uid])
        if row is None:
            raise UnknownItemError(f"no item {uid!r} in the store")
        return int(row["id"])

    def candidate_counts(self) -> dict[int, int]:
        """Item id -> its number of candidates, for every item."""
        return {int(i): int(n) for i, n in self._rows("SELECT id, n_candidates FROM items")}

    def truth_rankings(self) -> dict[int, Any]:
        """Gold items (those with a ground-truth ranking): item id -> the ranking's JSON
        form (tie groups, best first), oldest item first."""
        return {int(i): json.loads(t) for i, t in self._rows(
            "SELECT id, truth_ranking FROM items WHERE truth_ranking IS NOT NULL ORDER BY id")}

    # -- flags --------------------------------------------------------------------

    def flag_item(self, item_id: int, reason: str = "", flagged_by: str | None = None) -> int:
        """Send an item to the annotation queue (Inspect's "I disagree"); ``reason`` is
        kept to its first :data:`MAX_COMMENT_CHARS` characters."""
        reason = check_text(reason or "", "the flag reason", strip=True)[:MAX_COMMENT_CHARS]
        if flagged_by is not None:
            check_text(flagged_by, "flagged_by")
        self.item(item_id)  # UnknownItemError for a bad id
        with self.write():
            return self._insert("flags", {"item_id": item_id, "reason": reason,
                                          "flagged_by": flagged_by, "created_at": now()})

    def flagged_items(self) -> list[int]:
        """Flagged item ids, most recently flagged first."""
        return [int(r[0]) for r in self._rows(
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
        j = judgment
        with self.write():
            self._insert("model_judgments", {
                "cache_key": key, "item_id": item_id, "candidate": candidate,
                "backend": j.backend, "backend_version": j.backend_version,
                "status": j.status, "overall": j.overall,
                "semantic_consistency": j.semantic_consistency,
                "perceptual_quality": j.perceptual_quality,
                "prompt_following": j.prompt_following, "consistency": j.consistency,
                "n_regions": len(j.regions), "judgment": json.dumps(j.to_dict()),
                "latency_ms": latency_ms, "created_at": created_at or now()}, ignore=True)
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

    def model_judgments(self, item_id: int, backend: str | None = None
                        ) -> list[dict[str, Any]]:
        """Every stored model judgment of an item (by ``backend``, when given), oldest
        first: ``candidate``, ``backend``, ``backend_version``, ``judgment`` (the decoded
        ``Judgment.to_dict()``), ``latency_ms``, ``created_at``."""
        sql = ("SELECT candidate, backend, backend_version, judgment, latency_ms, created_at "
               "FROM model_judgments WHERE item_id = ?")
        params: list[Any] = [item_id]
        if backend is not None:
            sql += " AND backend = ?"
            params.append(backend)
        rows = self._all(sql + " ORDER BY id", params)
        for r in rows:
            r["judgment"] = json.loads(r["judgment"])
        return rows

    def latest_model_judgments(self, item_id: int, backend: str | None = None
                               ) -> dict[int, dict[str, Any]]:
        """Candidate -> the decoded judgment dict of its latest stored model judgment (by
        ``backend``, when given); candidates never judged are left out."""
        return {int(r["candidate"]): r["judgment"]
                for r in self.model_judgments(item_id, backend)}

    def backend_counts(self) -> dict[str, int]:
        """Backend -> its number of stored model judgments, most first (ties by name)."""
        return {str(b): int(n) for b, n in self._rows(
            "SELECT backend, COUNT(*) AS n FROM model_judgments GROUP BY backend "
            "ORDER BY n DESC, backend")}

    def overall_scores(self, backend: str) -> dict[int, dict[int, float]]:
        """Item -> candidate -> ``overall`` of the latest judgment of that candidate by
        ``backend`` (judgments without an overall score are left out)."""
        # The covering index (backend, item_id, candidate, id, overall) yields rows in
        # this order without a sort; a later judgment of a candidate overwrites an older.
        scores: dict[int, dict[int, float]] = {}
        for item_id, candidate, overall in self._rows(
                "SELECT item_id, candidate, overall FROM model_judgments "
                "WHERE backend = ? AND overall IS NOT NULL ORDER BY item_id, candidate, id",
                [backend]):
            scores.setdefault(item_id, {})[candidate] = overall
        return scores

    # -- runs ---------------------------------------------------------------------

    def create_run(self, kind: str, name: str, config: Mapping[str, Any],
                   out_dir: str | None = None) -> int:
        if kind not in RUN_KINDS:
            raise InvalidJudgmentError(f"run kind must be one of {RUN_KINDS}, got {kind!r}")
        check_text(name, "the run name")
        with self.write():
            return self._insert("runs", {
                "kind": kind, "name": name, "config": json.dumps(dict(config)),
                "status": "queued", "out_dir": out_dir, "created_at": now()})

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
            try:
                db.table("runs").update(run_id, sets)
            except NotFoundError:
                raise UnknownItemError(f"no run {run_id}") from None

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
            t = now()
            db.table("metrics").insert_all(
                {"run_id": run_id, "step": step, "key": k, "value": float(v), "created_at": t}
                for k, v in values.items())

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
        check_text(instruction, "the RL sample's instruction")
        src = None if source is None else self.put_image(source)
        shas = [self.put_image(im) for im in images]
        with self.write():
            return self._insert("rl_samples", {
                "run_id": run_id, "step": step, "instruction": instruction,
                "source_sha256": src, "images": json.dumps(shas),
                "rewards": json.dumps([float(r) for r in rewards]), "created_at": now()})

    def rl_samples(self, run_id: int) -> list[dict[str, Any]]:
        rows = self._all("SELECT * FROM rl_samples WHERE run_id = ? ORDER BY step, id", [run_id])
        for r in rows:
            r["images"], r["rewards"] = json.loads(r["images"]), json.loads(r["rewards"])
        return rows

    # -- health -------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Rows per table, current human judgments, schema version and journal mode."""
        tables = ("images", "items", "candidates", "model_judgments", "annotators",
                  "human_judgments", "runs", "metrics", "rl_samples", "flags")
        counts = {t: int(self._rows(f"SELECT COUNT(*) FROM {t}")[0][0]) for t in tables}
        current = self._rows("SELECT COUNT(*) FROM current_human_judgments")[0][0]
        return {"schema_version": self.schema_version, "tables": counts,
                "current_human_judgments": int(current), "journal_mode": self.db.journal_mode}

    def integrity(self) -> list[str]:
        """Problems found (empty: healthy): SQLite's integrity and foreign-key checks, the
        supersede and restore chains and ``human_current`` checked against the history,
        image files that are missing or do not match their hash, and orphan image files
        (:mod:`storage.integrity`)."""
        with self._lock:
            return _integrity.problems(self.db, self.data_dir)

    def orphan_images(self, min_age_s: float = 0) -> list[tuple[str, int]]:
        """Files under ``<data_dir>/images`` that no ``images`` row references and that
        were last modified at least ``min_age_s`` ago: (path relative to the data folder,
        bytes), sorted by path."""
        if self.data_dir is None:
            return []
        with self._lock:
            return _integrity.orphan_images(self.db, self.data_dir, min_age_s)

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
