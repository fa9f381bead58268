"""The Studio's data on disk: the pair format and the SQLite judgment store (``storage.store``).

:func:`resolve_inside` is the guard every loader uses for paths that come from a data
file (a JSONL row, a dataset column): such a path may not escape its folder.
"""

from __future__ import annotations

from .pairs import PairFormatError, PairItem, iter_pairs, read_pairs, write_pairs
from .paths import resolve_inside

__all__ = ["PairFormatError", "PairItem", "iter_pairs", "read_pairs", "resolve_inside",
           "write_pairs"]
