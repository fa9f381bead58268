"""The store's health checks (``Store.integrity``, ``db integrity``) and orphan image files.

Each check returns problems as sentences that say what is wrong and what to do; an empty
list means healthy. The functions work on the raw database for
:class:`~storage.store.Store`, which calls them under its lock.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from spatialreward.errors import StoreError

from .images import image_sha256
from .paths import resolve_inside
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
    ``human_current`` against the history, and (a store on disk) image files that are
    missing or do not match their hash, and orphan image files."""
    found = [r["integrity_check"] for r in _all(db, "PRAGMA integrity_check")
             if r["integrity_check"] != "ok"]
    found += [f"foreign key: {r['table']} row {r['rowid']} -> {r['parent']}"
              for r in _all(db, "PRAGMA foreign_key_check")]
    found += chain_problems(db) + current_problems(db)
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
