"""The Studio's store: where items, judgments and runs are kept on disk.

This package owns every path the Studio writes or reads from data files.
:func:`resolve_inside` is the guard all loaders use for paths that come from a data
file (a JSONL row, a dataset column): such a path may not escape its folder.
"""

from __future__ import annotations

from .paths import resolve_inside

__all__ = ["resolve_inside"]
