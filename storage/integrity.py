"""The store's health: checks (``Store.integrity``, ``db integrity``), orphan image files,
row counts and backups (:class:`HealthStore`, a part of :class:`~storage.store.Store`).

Each check returns problems as sentences that say what is wrong and what to do; an empty
list means healthy. The functions work on the raw database for
:class:`~storage.store.Store`, which calls them under its lock.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from spatialreward.errors import StoreError

from .connection import StoreConnection
from .images import image_sha256, item_content_key
from .paths import resolve_inside
from .schema import migrations
from .validation import CONTENT_COLUMNS

ORPHAN_MIN_AGE_S = 300
"""``remove_orphan_images`` leaves younger files alone: ``put_image`` writes the file
before its row, so a young unreferenced file may be another process's write in flight."""

def few(values: Sequence[str], n: int = 5) -> str:
    """The first ``n`` values, comma-separated, with ``...`` when there are more.

    >>> few(["a", "b", "c"], 2)
    'a, b, ...'
    """
    return ", ".join(values[:n]) + (", ..." if len(values) > n else "")


def _all(db: Database, sql: str) -> list[dict[str, Any]]:
    return list(db.query(sql))


def problems(db: Database, data_dir: Path | None) -> list[str]:
    """Every problem found: SQLite's integrity and foreign-key checks, the edit history,
    ``human_current`` against the history, items against their content keys, and (a
    store on disk) image files that are missing or do not match their hash, and orphan
    image files."""
    found = [r["integrity_check"] for r in _all(db, "PRAGMA integrity_check")
             if r["integrity_check"] != "ok"]
    found += [f"foreign key: {r['table']} row {r['rowid']} -> {r['parent']}"
              for r in _all(db, "PRAGMA foreign_key_check")]
    found += chain_problems(db) + current_problems(db) + item_problems(db)
    if data_dir is not None:
        found += image_problems(db, data_dir) + orphan_problems(db, data_dir)
    return found


# The version an undo of h goes back to: the row superseded by (h.restores or h), named by
# the row its content comes from (that row's restores, or itself).
_EXPECTED_RESTORE = (
    "(SELECT COALESCE(p.restores, p.id) FROM human_judgments s "
    "JOIN human_judgments o ON o.id = COALESCE(s.restores, s.id) "
    "JOIN human_judgments p ON p.id = o.supersedes WHERE s.id = h.supersedes)")


def chain_problems(db: Database) -> list[str]:
    """Every ``supersedes`` names an earlier judgment (not a retraction) of the same
    annotator and item, once; every retraction supersedes something; every ``restores``
    names the version before the row its row supersedes, and holds that version's content."""
    same_content = " AND ".join(f"r.{c} IS h.{c}" for c in CONTENT_COLUMNS)
    rows = _all(db,
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
    rows += _all(db,
        "SELECT supersedes AS id, 'is superseded by ' || COUNT(*) || ' rows (' || "
        "GROUP_CONCAT(id, ', ') || ')' AS problem FROM human_judgments "
        "WHERE supersedes IS NOT NULL GROUP BY supersedes HAVING COUNT(*) > 1")
    rows += _all(db,
        "SELECT * FROM (SELECT h.id, CASE "
        "WHEN h.kind != 'judgment' THEN 'is a retraction that restores ' || h.restores "
        "WHEN h.supersedes IS NULL THEN 'restores ' || h.restores || ' but supersedes nothing' "
        f"WHEN h.restores IS NOT {_EXPECTED_RESTORE} "
        "THEN 'restores ' || h.restores || ', not the version before ' || h.supersedes "
        f"WHEN NOT ({same_content}) "
        "THEN 'restores ' || h.restores || ' but holds other content' "
        "END AS problem FROM human_judgments h "
        "LEFT JOIN human_judgments r ON r.id = h.restores WHERE h.restores IS NOT NULL) "
        "WHERE problem IS NOT NULL ORDER BY id")
    return [f"human judgment {r['id']} {r['problem']}: the edit history was written "
            "around the store's checks; restore the store from a backup"
            for r in rows]


def current_problems(db: Database) -> list[str]:
    """``human_current`` holds exactly the current judgments the history implies."""
    expected = ("SELECT id, item_id, preferred, both_bad FROM human_judgments h "
                "WHERE kind = 'judgment' AND NOT EXISTS ("
                "SELECT 1 FROM human_judgments s WHERE s.supersedes = h.id)")
    actual = "SELECT judgment_id, item_id, preferred, both_bad FROM human_current"
    wrong = _all(db, f"SELECT judgment_id AS id FROM ({actual} EXCEPT {expected}) "
                     f"UNION SELECT id FROM ({expected} EXCEPT {actual}) ORDER BY id")
    if not wrong:
        return []
    return [f"human_current disagrees with human_judgments for {len(wrong)} judgment(s) "
            f"({few([str(r['id']) for r in wrong])}): vote counts and queues are wrong; "
            "restore the store from a backup"]


def item_problems(db: Database) -> list[str]:
    """Every item's ``content_key`` names its content, and it has a name in
    ``item_sources``: else a second copy could slip in, or the item lost its names."""
    cands: dict[int, list[str]] = {}
    for r in _all(db, "SELECT item_id, image_sha256 FROM candidates ORDER BY item_id, idx"):
        cands.setdefault(int(r["item_id"]), []).append(r["image_sha256"])
    wrong, nameless = [], []
    for r in _all(db, "SELECT id, instruction, dimension, source_sha256, content_key, "
                      "EXISTS (SELECT 1 FROM item_sources s WHERE s.item_id = items.id) AS named "
                      "FROM items ORDER BY id"):
        if r["content_key"] != item_content_key(r["instruction"], r["dimension"],
                                                r["source_sha256"], cands.get(r["id"], [])):
            wrong.append(str(r["id"]))
        if not r["named"]:
            nameless.append(str(r["id"]))
    found = []
    if wrong:
        found.append(f"items {few(wrong)}: content_key does not match the instruction and "
                     "images (they were changed around the store); restore from a backup")
    if nameless:
        found.append(f"items {few(nameless)}: no row in item_sources (written around the "
                     "store); restore from a backup")
    return found


def image_problems(db: Database, data_dir: Path) -> list[str]:
    """Image files that are missing, outside the data folder, or not their hash."""
    found = []
    for r in _all(db, "SELECT sha256, path FROM images"):
        try:
            data = resolve_inside(data_dir, r["path"]).read_bytes()
        except (OSError, StoreError) as err:
            found.append(f"image {r['sha256']}: {err}")
            continue
        if image_sha256(data) != r["sha256"]:
            found.append(f"image {r['path']}: contents do not match its hash")
    return found


def orphan_problems(db: Database, data_dir: Path) -> list[str]:
    """The orphan image files at least :data:`ORPHAN_MIN_AGE_S` old, as one problem."""
    orphans = orphan_images(db, data_dir, ORPHAN_MIN_AGE_S)
    if not orphans:
        return []
    return [f"orphan image files: {len(orphans)} file(s), "
            f"{sum(size for _, size in orphans):,} bytes under images/ that no images row "
            f"references ({few([rel for rel, _ in orphans])}), left by an interrupted "
            "write; remove them with `db integrity --remove-orphans`"]


def orphan_images(db: Database, data_dir: Path, min_age_s: float = 0
                  ) -> list[tuple[str, int]]:
    """Files under ``<data_dir>/images`` that no ``images`` row references and that were
    last modified at least ``min_age_s`` ago: (path relative to the data folder, bytes),
    sorted by path."""
    known = {r["path"] for r in _all(db, "SELECT path FROM images")}
    cutoff = time.time() - min_age_s
    out = []
    for folder, _, names in os.walk(data_dir / "images"):
        for name in names:
            path = Path(folder, name)
            rel = path.relative_to(data_dir).as_posix()
            with contextlib.suppress(FileNotFoundError):  # removed while we looked
                info = path.lstat()
                if rel not in known and info.st_mtime <= cutoff:
                    out.append((rel, info.st_size))
    return sorted(out)


class HealthStore(StoreConnection):
    """Row counts, health checks, orphan files and backups (a part of
    :class:`~storage.store.Store`)."""

    @property
    def schema_version(self) -> int:
        return len(migrations.applied(self.db))

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
            return problems(self.db, self.data_dir)

    def orphan_images(self, min_age_s: float = 0) -> list[tuple[str, int]]:
        """Files under ``<data_dir>/images`` that no ``images`` row references and that
        were last modified at least ``min_age_s`` ago: (path relative to the data folder,
        bytes), sorted by path."""
        if self.data_dir is None:
            return []
        with self._lock:
            return orphan_images(self.db, self.data_dir, min_age_s)

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
