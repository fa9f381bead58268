"""Safe paths: a path read from a data file stays inside the folder it belongs to."""

from __future__ import annotations

import os
from pathlib import Path

from spatialreward.errors import UnsafePathError


def resolve_inside(base: str | os.PathLike[str], relative: str | os.PathLike[str]) -> Path:
    """Join ``relative`` onto ``base`` and refuse anything that lands outside ``base``.

    Absolute paths, ``..`` segments and symlinks that lead out of ``base`` are all
    refused with :class:`UnsafePathError`.

    >>> resolve_inside("/data/set", "images/a.png").as_posix()
    '/data/set/images/a.png'
    >>> resolve_inside("/data/set", "../secret.txt")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    spatialreward.errors.UnsafePathError: '../secret.txt' points outside /data/set; ...
    """
    root = Path(base).resolve()
    text = os.fspath(relative)
    if "\x00" in text:
        raise UnsafePathError(f"{text!r} contains a NUL byte; it is not a usable path")
    candidate = (root / text).resolve()
    if candidate != root and root not in candidate.parents:
        raise UnsafePathError(
            f"{text!r} points outside {root}; paths in data files must be relative to their folder"
        )
    return candidate
