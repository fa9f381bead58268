"""The store's schema, created and upgraded by sqlite-utils migrations.

Each function below is one migration, applied once, in order, inside a transaction
together with its record in ``_sqlite_migrations``. Never edit a migration that has
shipped: add a new one. The tables are described in ``docs/store.md``.
"""

from __future__ import annotations

import json
from typing import Any

from sqlite_utils import Database, Migrations

migrations = Migrations("spatialreward-studio")

SCHEMA_VERSION = 8  # number of migrations below; `db stats` reports the applied count


@migrations()
def m001_initial(db: Database) -> None:
    db.executescript(
        """
        CREATE TABLE images (
            sha256 TEXT PRIMARY KEY,          -- of the file's bytes
            path TEXT NOT NULL,               -- relative to the data folder
            format TEXT NOT NULL,             -- PNG, JPEG, WEBP, ...
            width INTEGER NOT NULL,
            height INTEGER NOT NULL,
            bytes INTEGER NOT NULL,
            created_at TEXT NOT NULL
        );
        CREATE TABLE items (
            id INTEGER PRIMARY KEY,
            uid TEXT NOT NULL UNIQUE,         -- stable name: the origin id, or a content hash
            instruction TEXT NOT NULL,
            source_sha256 TEXT NOT NULL REFERENCES images(sha256),
            n_candidates INTEGER NOT NULL,
            category TEXT,
            dimension TEXT NOT NULL DEFAULT 'overall',
            truth_ranking TEXT,               -- JSON tie groups, best first; NULL: unknown
            truth_regions TEXT,               -- JSON list of boxes (0..1000, source frame)
            origin_dataset TEXT,
            origin_file TEXT,
            origin_id TEXT,
            metadata TEXT NOT NULL DEFAULT '{}',
            created_at TEXT NOT NULL
        );
        CREATE TABLE candidates (
            item_id INTEGER NOT NULL REFERENCES items(id),
            idx INTEGER NOT NULL,
            image_sha256 TEXT NOT NULL REFERENCES images(sha256),
            PRIMARY KEY (item_id, idx)
        );
        CREATE TABLE model_judgments (
            id INTEGER PRIMARY KEY,
            cache_key TEXT NOT NULL UNIQUE,   -- sha256(images, instruction, backend, version)
            item_id INTEGER NOT NULL REFERENCES items(id),
            candidate INTEGER NOT NULL,
            backend TEXT NOT NULL,
            backend_version TEXT NOT NULL,
            status TEXT NOT NULL,
            overall REAL,
            semantic_consistency REAL,
            perceptual_quality REAL,
            prompt_following REAL,
            consistency REAL,
            n_regions INTEGER NOT NULL,
            judgment TEXT NOT NULL,           -- the full Judgment JSON
            latency_ms REAL,
            created_at TEXT NOT NULL,
            FOREIGN KEY (item_id, candidate) REFERENCES candidates(item_id, idx)
        );
        CREATE INDEX model_judgments_item ON model_judgments(item_id, backend, candidate);
        -- Covering index for the disagreement queue: latest score per (item, candidate).
        CREATE INDEX model_judgments_backend
            ON model_judgments(backend, item_id, candidate, id, overall);
        CREATE TABLE annotators (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            role TEXT NOT NULL CHECK (role IN ('annotator', 'researcher', 'admin')),
            password_hash TEXT,               -- argon2id (argon2-cffi); NULL: no app login
            created_at TEXT NOT NULL
        );
        CREATE TABLE human_judgments (
            id INTEGER PRIMARY KEY,
            item_id INTEGER NOT NULL REFERENCES items(id),
            annotator_id INTEGER NOT NULL REFERENCES annotators(id),
            kind TEXT NOT NULL CHECK (kind IN ('judgment', 'retraction')),
            ranking TEXT,                     -- JSON tie groups, best first
            preferred INTEGER,                -- the single best candidate; NULL: a tie at the top
            both_bad INTEGER NOT NULL DEFAULT 0 CHECK (both_bad IN (0, 1)),
            scores TEXT,                      -- JSON {candidate: {dimension: 0..10}}
            regions TEXT,                     -- JSON [{candidate, bbox_2d, label}]
            comment TEXT NOT NULL DEFAULT '',
            seconds_spent REAL,
            supersedes INTEGER UNIQUE REFERENCES human_judgments(id),
            created_at TEXT NOT NULL
        );
        CREATE INDEX human_judgments_item ON human_judgments(item_id);
        CREATE INDEX human_judgments_annotator ON human_judgments(annotator_id);
        -- Append-only: history is never rewritten; an edit or undo is a new row.
        CREATE TRIGGER human_judgments_no_update BEFORE UPDATE ON human_judgments
        BEGIN SELECT RAISE(ABORT, 'human_judgments is append-only'); END;
        CREATE TRIGGER human_judgments_no_delete BEFORE DELETE ON human_judgments
        BEGIN SELECT RAISE(ABORT, 'human_judgments is append-only'); END;
        CREATE TRIGGER human_judgments_own_rows BEFORE INSERT ON human_judgments
        WHEN NEW.supersedes IS NOT NULL AND NOT EXISTS (
            SELECT 1 FROM human_judgments
            WHERE id = NEW.supersedes AND annotator_id = NEW.annotator_id
              AND item_id = NEW.item_id)
        BEGIN SELECT RAISE(ABORT, 'only your own judgment of this item can be superseded');
        END;
        -- The current judgments (rows nobody superseded, retractions excluded), kept by a
        -- trigger so that vote counts do not scan the history. Derived data: it can be
        -- rebuilt from human_judgments at any time.
        CREATE TABLE human_current (
            judgment_id INTEGER PRIMARY KEY REFERENCES human_judgments(id),
            item_id INTEGER NOT NULL,
            preferred INTEGER,
            both_bad INTEGER NOT NULL
        );
        CREATE INDEX human_current_votes ON human_current(item_id, preferred, both_bad);
        CREATE TRIGGER human_judgments_current AFTER INSERT ON human_judgments
        BEGIN
            DELETE FROM human_current WHERE judgment_id = NEW.supersedes;
            INSERT INTO human_current (judgment_id, item_id, preferred, both_bad)
                SELECT NEW.id, NEW.item_id, NEW.preferred, NEW.both_bad
                WHERE NEW.kind = 'judgment';
        END;
        CREATE VIEW current_human_judgments AS
            SELECT h.* FROM human_judgments h JOIN human_current c ON c.judgment_id = h.id;
        CREATE TABLE runs (
            id INTEGER PRIMARY KEY,
            kind TEXT NOT NULL CHECK (kind IN ('bench', 'rl')),
            name TEXT NOT NULL,
            config TEXT NOT NULL,             -- JSON
            status TEXT NOT NULL CHECK (status IN
                ('queued', 'running', 'done', 'failed', 'cancelled')),
            pid INTEGER,
            out_dir TEXT,
            error TEXT,
            created_at TEXT NOT NULL,
            started_at TEXT,
            finished_at TEXT
        );
        CREATE TABLE metrics (
            run_id INTEGER NOT NULL REFERENCES runs(id),
            step INTEGER NOT NULL,
            key TEXT NOT NULL,
            value REAL NOT NULL,
            created_at TEXT NOT NULL
        );
        CREATE INDEX metrics_run ON metrics(run_id, key, step);
        CREATE TABLE rl_samples (
            id INTEGER PRIMARY KEY,
            run_id INTEGER NOT NULL REFERENCES runs(id),
            step INTEGER NOT NULL,
            instruction TEXT NOT NULL,
            source_sha256 TEXT REFERENCES images(sha256),
            images TEXT NOT NULL,             -- JSON list of image sha256
            rewards TEXT NOT NULL,            -- JSON list, one per image
            created_at TEXT NOT NULL
        );
        CREATE INDEX rl_samples_run ON rl_samples(run_id, step);
        """
    )


@migrations()
def m002_flags(db: Database) -> None:
    """Items someone sent to the annotation queue ("I disagree" in Inspect)."""
    db.executescript(
        """
        CREATE TABLE flags (
            id INTEGER PRIMARY KEY,
            item_id INTEGER NOT NULL REFERENCES items(id),
            reason TEXT NOT NULL DEFAULT '',
            flagged_by TEXT,                  -- annotator name, or NULL when anonymous
            created_at TEXT NOT NULL
        );
        CREATE INDEX flags_item ON flags(item_id);
        """
    )


# A human_current row is expected when human_judgments makes it current: a judgment (not
# a retraction) that nothing supersedes, with the same item and vote.
_EXPECTED = """EXISTS (
            SELECT 1 FROM human_judgments h
            WHERE h.id = {r}.judgment_id AND h.kind = 'judgment' AND h.item_id = {r}.item_id
              AND h.preferred IS {r}.preferred AND h.both_bad = {r}.both_bad
              AND NOT EXISTS (SELECT 1 FROM human_judgments s WHERE s.supersedes = h.id))"""


@migrations()
def m003_no_replace(db: Database) -> None:
    """Close ``INSERT OR REPLACE``: its conflict resolution deletes the old row without
    firing DELETE triggers, which let raw SQL flip a vote. Refuse an id or a
    ``supersedes`` that is taken, and keep ``human_current`` derived: a row goes in only
    when the history makes it current and out only when it no longer is; never updated."""
    db.executescript(
        f"""
        CREATE TRIGGER human_judgments_no_replace BEFORE INSERT ON human_judgments
        WHEN EXISTS (SELECT 1 FROM human_judgments WHERE id = NEW.id)
        BEGIN SELECT RAISE(ABORT, 'human_judgments is append-only: that id exists already');
        END;
        CREATE TRIGGER human_judgments_supersede_once BEFORE INSERT ON human_judgments
        WHEN NEW.supersedes IS NOT NULL AND EXISTS (
            SELECT 1 FROM human_judgments WHERE supersedes = NEW.supersedes)
        BEGIN SELECT RAISE(ABORT, 'human_judgments is append-only: already superseded');
        END;
        CREATE TRIGGER human_current_insert BEFORE INSERT ON human_current
        WHEN NOT {_EXPECTED.format(r="NEW")}
        BEGIN SELECT RAISE(ABORT, 'human_current is derived: not a current judgment');
        END;
        CREATE TRIGGER human_current_no_update BEFORE UPDATE ON human_current
        BEGIN SELECT RAISE(ABORT, 'human_current is derived: it is never updated');
        END;
        CREATE TRIGGER human_current_delete BEFORE DELETE ON human_current
        WHEN {_EXPECTED.format(r="OLD")}
        BEGIN SELECT RAISE(ABORT, 'human_current is derived: that judgment is current');
        END;
        """
    )


_RUN_STATUSES_V1 = "('queued', 'running', 'done', 'failed', 'cancelled')"
_RUN_STATUSES_V4 = "('queued', 'running', 'done', 'failed', 'cancelled', 'interrupted')"


def _edit_runs_check(db: Database, old: str, new: str, what: str) -> None:
    """Replace the value list ``old`` by ``new`` in the ``runs`` table's ``what`` CHECK,
    in place (SQLite's documented procedure for a constraint change, "ALTER TABLE"
    section 7: the stored rows do not change, so no rebuild; the schema version is
    bumped so that every connection re-reads the schema)."""
    conn = db.conn
    (version,) = conn.execute("PRAGMA schema_version").fetchone()
    conn.execute("PRAGMA writable_schema = ON")
    try:
        changed = conn.execute(
            "UPDATE sqlite_master SET sql = replace(sql, ?, ?) WHERE type = 'table' "
            "AND name = 'runs' AND instr(sql, ?) > 0", [old, new, old]).rowcount
        if changed != 1:
            raise RuntimeError(f"the runs table does not have the expected {what} constraint")
        conn.execute(f"PRAGMA schema_version = {int(version) + 1}")
    finally:
        conn.execute("PRAGMA writable_schema = OFF")


@migrations()
def m004_interrupted_runs(db: Database) -> None:
    """Runs get the status ``interrupted``: left ``running`` by a server or training
    process that is gone (marked at start-up, with the command that resumes them), and
    ``pid_start``, the recorded process's start time: a later process that reuses the pid
    has another, so it is never taken for the run's own (and never signalled).

    Only the CHECK constraint changes, which does not change how rows are stored, so it
    is edited in place (SQLite's documented procedure for such changes: "ALTER TABLE",
    section 7); rebuilding the table would break the foreign keys of ``metrics`` and
    ``rl_samples``, which cannot be turned off inside the migration's transaction."""
    db.conn.execute("ALTER TABLE runs ADD COLUMN pid_start INTEGER")
    _edit_runs_check(db, _RUN_STATUSES_V1, _RUN_STATUSES_V4, "status")


@migrations()
def m005_restores(db: Database) -> None:
    """Undo goes back one version: undoing an edit writes a judgment that copies the
    previous version's content, and its new column ``restores`` names the row that content
    comes from (``storage.humans``). A trigger refuses a ``restores`` that is not an
    earlier judgment of the same annotator and item, or that is set on a retraction or on
    a row that supersedes nothing. Old rows keep NULL: nothing they say changes."""
    db.executescript(
        """
        ALTER TABLE human_judgments ADD COLUMN restores INTEGER REFERENCES human_judgments(id);
        CREATE TRIGGER human_judgments_restores_own BEFORE INSERT ON human_judgments
        WHEN NEW.restores IS NOT NULL AND (
            NEW.kind != 'judgment' OR NEW.supersedes IS NULL OR NOT EXISTS (
                SELECT 1 FROM human_judgments
                WHERE id = NEW.restores AND annotator_id = NEW.annotator_id
                  AND item_id = NEW.item_id AND kind = 'judgment'))
        BEGIN SELECT RAISE(ABORT, 'restores must name your own earlier judgment of this item');
        END;
        """
    )


# The triggers that keep the human history append-only and human_current derived refuse
# every UPDATE; m006 drops them for its re-pointing updates and puts the same text back.
_NO_UPDATE_TRIGGERS = ("human_judgments_no_update", "human_current_no_update")


@migrations()
def m006_content_items(db: Database) -> None:
    """Items are content-addressed: ``items.content_key``
    (:func:`storage.images.item_content_key`: instruction, dimension and image hashes)
    with the truth ranking is unique, so a bench run and an import of the same folder, or
    two imports under other names, share one item (rankings that disagree stay two).
    Each name an item was added under is a row of the new ``item_sources`` (uid, origin,
    truth ranking) with ``queued``: whether that add put the item in the annotation
    queues (a bench run does not, unless asked).

    Items already stored twice are merged (see :func:`_merge_copies`) into one copy in
    the queues (one a dataset named before a bench run's, oldest first): the other
    copies' model and human judgments, ``human_current`` rows, flags and names are
    re-pointed to it, a truth ranking, regions, category, origin or metadata key it lacks
    is taken from them, and the copies are deleted. The human history's no-update
    triggers are dropped for those updates only and put back with the same text, in this
    migration's transaction. An item that only benching added (uid ``bench:...``), with
    no human judgment and no flag, leaves the queues."""
    from .images import item_content_key

    db.execute("""
        CREATE TABLE item_sources (
            id INTEGER PRIMARY KEY,
            item_id INTEGER NOT NULL REFERENCES items(id),
            uid TEXT NOT NULL UNIQUE,         -- a name the item was added under
            queued INTEGER NOT NULL CHECK (queued IN (0, 1)),
            origin_dataset TEXT,
            origin_file TEXT,
            origin_id TEXT,
            truth_ranking TEXT,               -- the ranking this add gave, JSON
            created_at TEXT NOT NULL
        )""")
    db.execute("CREATE INDEX item_sources_item ON item_sources(item_id, queued)")
    db.execute("ALTER TABLE items ADD COLUMN content_key TEXT")
    candidates: dict[int, list[str]] = {}
    for item_id, sha in db.execute(
            "SELECT item_id, image_sha256 FROM candidates ORDER BY item_id, idx").fetchall():
        candidates.setdefault(int(item_id), []).append(sha)
    used = {int(i) for (i,) in db.execute(
        "SELECT item_id FROM human_judgments UNION SELECT item_id FROM flags").fetchall()}
    groups: dict[str, list[tuple[int, str | None]]] = {}
    queued: set[int] = set()
    benched: set[int] = set()  # added by a bench run (uid bench:...)
    for item_id, uid, instruction, dimension, source, ranking in db.execute(
            "SELECT id, uid, instruction, dimension, source_sha256, truth_ranking FROM items "
            "ORDER BY id").fetchall():
        key = item_content_key(instruction, dimension, source, candidates.get(item_id, []))
        db.execute("UPDATE items SET content_key = ? WHERE id = ?", [key, item_id])
        groups.setdefault(key, []).append((int(item_id), ranking))
        if str(uid).startswith("bench:"):
            benched.add(int(item_id))
        if item_id not in benched or item_id in used:
            queued.add(int(item_id))
    db.execute("""
        INSERT INTO item_sources (item_id, uid, queued, origin_dataset, origin_file,
                                  origin_id, truth_ranking, created_at)
        SELECT id, uid, 0, origin_dataset, origin_file, origin_id, truth_ranking, created_at
        FROM items ORDER BY id""")
    for item_id in queued:
        db.execute("UPDATE item_sources SET queued = 1 WHERE item_id = ?", [item_id])
    copies = [ids for ids in groups.values() if len(ids) > 1]
    if copies:
        _merge_copies(db, copies, queued, benched)
    # One item per content and truth ranking: rankings that disagree stay two items.
    db.execute("CREATE UNIQUE INDEX items_content "
               "ON items(content_key, COALESCE(truth_ranking, ''))")
    db.execute("""
        CREATE TRIGGER items_content_key BEFORE INSERT ON items
        WHEN NEW.content_key IS NULL
        BEGIN SELECT RAISE(ABORT, 'an item needs its content_key: add items with Store.add_item');
        END""")


def _merge_copies(db: Database, copies: list[list[tuple[int, str | None]]],
                  queued: set[int], benched: set[int]) -> None:
    """Merge the copies of each content, queued items first, then those a dataset (not
    a bench run) named, oldest first (so the kept item keeps a dataset's uid): a copy goes
    into the kept item with its truth ranking, else one without a ranking (or, having
    none, into the first kept); a ranking that disagrees with every kept one is kept
    apart (see :meth:`Store.add_item`)."""
    saved = [sql for (sql,) in db.execute(
        f"SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name IN "
        f"({', '.join('?' * len(_NO_UPDATE_TRIGGERS))})", list(_NO_UPDATE_TRIGGERS)
        ).fetchall()]
    for name in _NO_UPDATE_TRIGGERS:
        db.execute(f"DROP TRIGGER IF EXISTS {name}")
    for rows in copies:
        kept: list[list[Any]] = []  # [item id, its ranking], as merged so far
        for item_id, ranking in sorted(
                rows, key=lambda r: (r[0] not in queued, r[0] in benched, r[0])):
            into = next((k for k in kept if k[1] == ranking), None) or next(
                (k for k in kept if ranking is None or k[1] is None), None)
            if into is None:
                kept.append([item_id, ranking])
                continue
            _merge_item_rows(db, into[0], item_id)
            into[1] = into[1] if into[1] is not None else ranking
    for sql in saved:
        db.execute(sql)


_FILLED = ("truth_ranking", "truth_regions", "category", "origin_dataset", "origin_file",
           "origin_id")
"""The item fields a merged copy fills in when the surviving item has none."""


def _merge_item_rows(db: Database, keep: int, other: int) -> None:
    """Re-point everything of item ``other`` to ``keep`` (same content, so the same
    candidates), fill what ``keep`` lacks from it, and delete it."""
    for table in ("model_judgments", "human_judgments", "human_current", "flags",
                  "item_sources"):
        db.execute(f"UPDATE {table} SET item_id = ? WHERE item_id = ?", [keep, other])
    cur = db.execute(f"SELECT {', '.join(_FILLED)}, metadata FROM items WHERE id IN (?, ?) "
                     "ORDER BY id = ? DESC", [keep, other, keep])
    mine, theirs = cur.fetchall()
    sets = {c: b for c, a, b in zip(_FILLED, mine, theirs, strict=False) if a is None}
    sets["metadata"] = json.dumps({**json.loads(theirs[-1] or "{}"),
                                   **json.loads(mine[-1] or "{}")})
    db.execute(f"UPDATE items SET {', '.join(f'{c} = ?' for c in sets)} WHERE id = ?",
               [*sets.values(), keep])
    db.execute("DELETE FROM candidates WHERE item_id = ?", [other])
    db.execute("DELETE FROM items WHERE id = ?", [other])


_RUN_KINDS_V1 = "CHECK (kind IN ('bench', 'rl'))"
_RUN_KINDS_V7 = "CHECK (kind IN ('bench', 'rl', 'reward'))"


@migrations()
def m007_kinds(db: Database) -> None:
    """Annotators get a ``kind``: ``human`` (every existing row, the default) or
    ``simulated`` (a stand-in that votes from the ground truth, :mod:`storage.simulated`),
    so that simulated votes are never mixed silently with people's. A simulated annotator
    never has a password: it cannot log into the app (triggers refuse one on insert and
    on update).

    Runs get the kind ``reward``: a fine-tune of the reward model from the store's votes.
    As in :func:`m004_interrupted_runs`, only the CHECK constraint of ``runs`` changes,
    which does not change how rows are stored, so it is edited in place (SQLite's
    documented procedure, "ALTER TABLE" section 7): every row, index, trigger and the
    foreign keys of ``metrics`` and ``rl_samples`` stay as they are. A copy-and-rename
    rebuild cannot do that here: foreign keys are on and cannot be turned off inside the
    migration's transaction, so dropping the old table would fail on (or, renamed first,
    re-point) the rows that reference it."""
    db.execute("ALTER TABLE annotators ADD COLUMN kind TEXT NOT NULL DEFAULT 'human' "
               "CHECK (kind IN ('human', 'simulated'))")
    for event in ("INSERT", "UPDATE"):
        db.execute(f"""
            CREATE TRIGGER annotators_simulated_no_login_{event.lower()}
            BEFORE {event} ON annotators
            WHEN NEW.kind = 'simulated' AND NEW.password_hash IS NOT NULL
            BEGIN SELECT RAISE(ABORT, 'a simulated annotator cannot have a password');
            END""")
    _edit_runs_check(db, _RUN_KINDS_V1, _RUN_KINDS_V7, "kind")


_RUN_KINDS_V8 = "CHECK (kind IN ('bench', 'rl', 'reward', 'external'))"


@migrations()
def m008_external_runs(db: Database) -> None:
    """Runs get the kind ``external``: a training run on another machine (a GPU trainer)
    that called the Studio's reward server; its reward calls are its metrics and its
    stored samples. Only the ``runs`` CHECK changes, edited in place as in
    :func:`m007_kinds`."""
    _edit_runs_check(db, _RUN_KINDS_V7, _RUN_KINDS_V8, "kind")
