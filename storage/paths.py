"""Safe paths: a path read from a data file stays inside the folder it belongs to, and
never names a live database of this process.

Why the second rule: on POSIX, closing *any* descriptor of a file drops every lock the
process holds on it (sqlite.org, "How To Corrupt An SQLite Database File", 2.2). A plain
``open()`` + ``close()`` of the store file inside the server - to sniff its header, or to
read it as an "image" a data file names - silently releases the server's SQLite locks;
another process then checkpoints and deletes the WAL the server is still committing
into, and acknowledged votes vanish. So :meth:`storage.store.Store.open` registers its
file with :func:`protect_database`, and :func:`resolve_inside` (the guard every loader
uses) and :func:`check_not_database` refuse those files and their ``-wal`` / ``-shm`` /
``-journal`` companions, through any symlink or hard link.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from spatialreward.errors import UnsafePathError

SQLITE_COMPANIONS = ("", "-wal", "-shm", "-journal")
_protected: set[Path] = set()
_lock = threading.Lock()


def protect_database(path: str | os.PathLike[str]) -> None:
    """Mark ``path`` as a live SQLite database of this process: data-file paths may not
    name it (or its companions) from now on."""
    with _lock:
        _protected.add(Path(path).resolve())


def is_live_database(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is (a link to) a file that :func:`protect_database` marked, or
    one of its ``-wal`` / ``-shm`` / ``-journal`` files. Uses ``stat`` only, never
    ``open``."""
    target = Path(path).resolve()
    with _lock:
        protected = list(_protected)
    if not protected:
        return False
    names = {Path(f"{db}{tail}") for db in protected for tail in SQLITE_COMPANIONS}
    if target in names:
        return True
    try:
        st = target.stat()
    except OSError:
        return False
    for name in names:
        try:
            other = name.stat()
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == (other.st_dev, other.st_ino):
            return True  # a hard link to the store
    return False


def check_not_database(path: str | os.PathLike[str], shown: str | None = None) -> Path:
    """``path`` resolved, or :class:`UnsafePathError` when it is a live database file."""
    if is_live_database(path):
        raise UnsafePathError(
            f"{shown or Path(path).name!r} is the Studio's live judgment store (or one of its "
            "files); data files may not read it. To use its votes as a benchmark, bench the "
            "store itself (format 'store'), or snapshot it first with "
            "`python -m spatialreward db backup SNAPSHOT.db`")
    return Path(path).resolve()


def resolve_inside(base: str | os.PathLike[str], relative: str | os.PathLike[str]) -> Path:
    """Join ``relative`` onto ``base`` and refuse anything that lands outside ``base``.

    Absolute paths, ``..`` segments and symlinks that lead out of ``base`` are all
    refused with :class:`UnsafePathError`, and so are the live store's files.

    >>> resolve_inside("/data/set", "images/a.png").as_posix()
    '/data/set/images/a.png'
    >>> resolve_inside("/data/set", "../secret.txt")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    spatialreward.errors.UnsafePathError: '../secret.txt' points outside the folder ...
    """
    root = Path(base).resolve()
    text = os.fspath(relative)
    if "\x00" in text:
        raise UnsafePathError(f"{text!r} contains a NUL byte; it is not a usable path")
    candidate = (root / text).resolve()
    if candidate != root and root not in candidate.parents:
        raise UnsafePathError(
            f"{text!r} points outside the folder {root.name!r}; paths in data files must be "
            "relative to their folder"
        )
    return check_not_database(candidate, text)
