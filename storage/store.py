"""The judgment store: items, images, model and human judgments, runs, over SQLite.

A :class:`Store` wraps a ``sqlite_utils.Database`` that the caller passes in (or
:meth:`Store.open` makes one from a path, ``data/studio.db`` by default). Opening a store
applies pending migrations (:mod:`storage.schema`), turns on WAL, a busy timeout and
foreign keys (:mod:`storage.connection`: writes are serialised, each in ``BEGIN
IMMEDIATE``).

The store owns the SQL: every other module asks it through the public methods below.
``Store`` is assembled from parts, one per concept: the connection
(:mod:`storage.connection`), images (:mod:`storage.images`), annotators and the
append-only human judgments (:mod:`storage.humans`), health (:mod:`storage.integrity`),
RL sample items (:mod:`storage.samples`, no SQL), here items, flags, model judgments, runs.

Items are content-addressed (:func:`~storage.images.item_content_key`, a unique index):
one row whatever uid, path or dataset, each kept in ``item_sources``; an item is in the
annotation queues when an add queued it (imports do, a bench run only when asked).

Every text field is checked at this boundary (:mod:`storage.validation`): it must be
valid Unicode (encodable as UTF-8, so no lone surrogate) and within the limits
(``MAX_*``, importable from here); a bad one is refused with an
:class:`~spatialreward.errors.InvalidJudgmentError` that names the field.

>>> import sqlite_utils
>>> store = Store(sqlite_utils.Database(memory=True), data_dir=None)
>>> store.schema_version
8
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

from .connection import BUSY_TIMEOUT_MS, LOCK_RETRIES, now
from .humans import HumanJudgment, HumanJudgmentStore
from .images import ImageStore, image_sha256, item_content_key
from .integrity import ORPHAN_MIN_AGE_S, HealthStore
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
    "image_sha256", "now", "replace_surrogates"]

DEFAULT_DB = Path("data/studio.db")
RUN_KINDS = ("bench", "rl", "reward", "external")  # reward: a fine-tune from votes;
# external: a trainer elsewhere calling serve-reward (its calls are the run's metrics)
RUN_STATUSES = ("queued", "running", "done", "failed", "cancelled", "interrupted")
# An item is in the annotation queues when some add of it queued it.
_QUEUED = "EXISTS (SELECT 1 FROM item_sources s WHERE s.item_id = items.id AND s.queued)"


class Store(ImageStore, HumanJudgmentStore, HealthStore):
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

    # -- items --------------------------------------------------------------------

    def add_item(self, instruction: str, source: Any, candidates: Sequence[Any], *,
                 uid: str | None = None, category: str | None = None,
                 dimension: str = "overall", truth_ranking: Any = None,
                 truth_regions: Sequence[Sequence[int]] | None = None,
                 origin_dataset: str | None = None, origin_file: str | None = None,
                 origin_id: str | None = None, metadata: Mapping[str, Any] | None = None,
                 queued: bool = True) -> int:
        """Add an item and return its id. An item is its content
        (:func:`~storage.images.item_content_key`) and truth ranking: a content the store
        holds with the same ranking (or none on one side), or a ``uid`` it knows, under
        whatever name, returns the stored item with what is new merged in
        (:meth:`merge_item`); a ranking that disagrees is another item. ``queued`` False (a
        bench run) keeps it out of the annotation queues, unless another add queues it.
        The instruction (stripped) may hold :data:`MAX_INSTRUCTION_CHARS` characters; it
        and every other text (``uid``, ``category``, ``origin_*``, ``metadata``) must be
        valid Unicode."""
        origin = {"origin_dataset": origin_dataset, "origin_file": origin_file,
                  "origin_id": origin_id}
        instruction = check_item_text(instruction, metadata, uid=uid, category=category,
                                      **origin)
        if not candidates:
            raise InvalidJudgmentError("an item needs at least one candidate image")
        if dimension not in DIMENSIONS:
            raise InvalidJudgmentError(
                f"dimension must be one of {', '.join(DIMENSIONS)}, got {dimension!r}")
        ranking = (None if truth_ranking is None
                   else ranking_to_json(check_ranking(truth_ranking, len(candidates))))
        merge: dict[str, Any] = dict(origin, category=category, truth_ranking=ranking,
                                     truth_regions=truth_regions, metadata=metadata,
                                     queued=queued)
        if uid is not None and (known := self._uid_item(uid)) is not None:
            self.merge_item(known, uid=uid, **merge)  # a known name: no image is read
            return known
        src = self.put_image(source)
        cands = [self.put_image(c) for c in candidates]
        key = item_content_key(instruction, dimension, src, cands)
        uid = uid or origin_id or "sha256:" + key[:24]
        ranking_text = None if ranking is None else json.dumps(ranking)
        with self.write() as db:
            if (known := self._uid_item(uid) or self._content_item(key, ranking_text)):
                self.merge_item(known, uid=uid, **merge)
                return known
            item_id = self._insert("items", {
                "uid": uid, "instruction": instruction, "source_sha256": src,
                "n_candidates": len(cands), "category": category, "dimension": dimension,
                "truth_ranking": ranking_text,
                "truth_regions": (None if truth_regions is None
                                  else json.dumps([list(b) for b in truth_regions])),
                **origin, "metadata": json.dumps(dict(metadata or {})),
                "content_key": key, "created_at": now()})
            db.table("candidates").insert_all(
                {"item_id": item_id, "idx": k, "image_sha256": sha}
                for k, sha in enumerate(cands))
            self.merge_item(item_id, uid=uid, **merge)  # its first name: item_sources
        return item_id

    def merge_item(self, item_id: int, *, uid: str, queued: bool = True,
                   category: str | None = None, truth_ranking: Any = None,
                   truth_regions: Sequence[Sequence[int]] | None = None,
                   origin_dataset: str | None = None, origin_file: str | None = None,
                   origin_id: str | None = None, metadata: Mapping[str, Any] | None = None
                   ) -> bool:
        """Merge another add of item ``item_id``'s content into it, losing nothing: ``uid``
        becomes a name of it (:meth:`item_by_uid`, ``item_sources`` with the origin and
        ranking given), a ranking, regions, category, origin or metadata key it lacks is
        taken, ``queued`` puts it in the annotation queues. An item no add had queued takes
        the uid and origin of the first that does (a bench run's names give way to a
        dataset's). Returns True when the item joined the queues now."""
        origin = {"origin_dataset": origin_dataset, "origin_file": origin_file,
                  "origin_id": origin_id}
        with self.write() as db:  # read and merged in one step
            item = self.item(item_id)
            check_item_text(item["instruction"], metadata, uid=uid, category=category,
                            **origin)
            ranking = (None if truth_ranking is None else json.dumps(ranking_to_json(
                check_ranking(truth_ranking, item["n_candidates"]))))
            joins = queued and not self.item_queued(item_id)
            held = self._one("SELECT item_id, queued FROM item_sources WHERE uid = ?", [uid])
            if held is None:
                self._insert("item_sources", {
                    "item_id": item_id, "uid": uid, "queued": int(queued), **origin,
                    "truth_ranking": ranking, "created_at": now()})
            elif int(held["item_id"]) != item_id:
                raise InvalidJudgmentError(
                    f"the uid {uid!r} names another item; give this item another uid")
            elif queued and not held["queued"]:
                db.execute("UPDATE item_sources SET queued = 1 WHERE uid = ?", [uid])
            sets: dict[str, Any] = {"uid": uid, **origin} if joins else {}
            new = {"truth_ranking": ranking, "category": category, **origin,
                   "truth_regions": None if truth_regions is None else json.dumps(
                       [list(b) for b in truth_regions])}
            sets |= {k: v for k, v in new.items()
                     if item[k] is None and v is not None and k not in sets}
            meta = {**dict(metadata or {}), **(item["metadata"] or {})}
            if meta != (item["metadata"] or {}):
                sets["metadata"] = json.dumps(meta)
            if sets:
                db.table("items").update(item_id, sets)
        return joins

    def _uid_item(self, uid: str) -> int | None:
        rows = self._rows("SELECT item_id FROM item_sources WHERE uid = ? UNION ALL "
                          "SELECT id FROM items WHERE uid = ? LIMIT 1", [uid, uid])
        return int(rows[0][0]) if rows else None

    def _content_item(self, key: str, ranking: str | None) -> int | None:
        rows = self._rows(
            "SELECT id FROM items WHERE content_key = ?1 AND (truth_ranking IS ?2 OR "
            "truth_ranking IS NULL OR ?2 IS NULL) ORDER BY truth_ranking IS ?2 DESC, "
            f"{_QUEUED} DESC, id LIMIT 1", [key, ranking])
        return int(rows[0][0]) if rows else None

    def item_by_content(self, instruction: str, dimension: str, shas: Sequence[str],
                        truth_ranking: Any = None) -> int | None:
        """The item an add of this content (``shas``: source first) and truth ranking
        merges into, or None: the one with that ranking, else one without a ranking, or
        (none given) any, queued and oldest first. Rankings that disagree are two items."""
        ranking = None if truth_ranking is None else json.dumps(
            ranking_to_json(check_ranking(truth_ranking, len(shas) - 1)))
        key = item_content_key(instruction, dimension, shas[0], shas[1:])
        return self._content_item(key, ranking)

    def item_queued(self, item_id: int) -> bool:
        """True when some add of the item put it in the annotation queues."""
        return bool(self._rows("SELECT 1 FROM item_sources WHERE item_id = ? AND queued",
                               [item_id]))

    def item_sources(self, item_id: int) -> list[dict[str, Any]]:
        """Every name (``uid``) the item was added under, oldest first, with ``queued``,
        ``origin_*``, ``truth_ranking`` (JSON text) and ``created_at``."""
        return self._all("SELECT uid, queued, origin_dataset, origin_file, origin_id, "
                         "truth_ranking, created_at FROM item_sources WHERE item_id = ? "
                         "ORDER BY id", [item_id])

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
        """Every item's id, oldest first (those kept out of the queues too)."""
        return [int(r[0]) for r in self._rows("SELECT id FROM items ORDER BY id")]

    def queued_item_ids(self) -> list[int]:
        """The items in the annotation queues, oldest first (not those only benched)."""
        return [int(r[0]) for r in self._rows(f"SELECT id FROM items WHERE {_QUEUED} ORDER BY id")]

    def item_by_uid(self, uid: str) -> int:
        """The id of the item with this ``uid`` (any name it was added under)."""
        if (item_id := self._uid_item(uid)) is None:
            raise UnknownItemError(f"no item {uid!r} in the store")
        return item_id

    def candidate_counts(self) -> dict[int, int]:
        """Item id -> its number of candidates, for every item in the annotation queues
        (what the vote queues are made of)."""
        return {int(i): int(n) for i, n in self._rows(
            f"SELECT id, n_candidates FROM items WHERE {_QUEUED}")}

    def truth_rankings(self) -> dict[int, Any]:
        """Gold items (those with a ground-truth ranking) in the annotation queues: item
        id -> the ranking's JSON form (tie groups, best first), oldest item first."""
        return {int(i): json.loads(t) for i, t in self._rows(
            "SELECT id, truth_ranking FROM items WHERE truth_ranking IS NOT NULL "
            f"AND {_QUEUED} ORDER BY id")}

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
