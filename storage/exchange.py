"""Export and import the judgment store: a pair-format folder, or one Parquet file.

The code lives in :mod:`storage.export` and :mod:`storage.imports` (checks of a file's
records: :mod:`storage.records`; names and the Parquet schema: :mod:`storage.layout`);
this module holds the formats' description and the public names.

Both formats carry everything needed to rebuild a store's items and judgments elsewhere:

- **Pair format** (:func:`export_pairs`): ``out_dir/pairs.jsonl`` in the pair format of
  :mod:`storage.pairs` (``id`` is the item's uid, ``ranking`` and ``regions`` its ground
  truth) plus ``out_dir/images/<sha256>.<ext>``, the original bytes. Any pair-format
  reader (``iter_pairs``) reads it; the keys it does not know are::

      "origin": {"dataset": ..., "file": ..., "id": ...},
      "metadata": {...},
      "human_judgments": [{"id": 1, "annotator": "ana", "annotator_role": "annotator",
                           "annotator_kind": "human", "kind": "judgment",
                           "ranking": [1, 0], "preferred": 1,
                           "both_bad": false, "scores": {"1": {"overall": 8.0}},
                           "regions": [...], "comment": "", "seconds_spent": 12.5,
                           "supersedes": null, "restores": null,
                           "created_at": "2025-..."}, ...],
      "model_judgments": [{"candidate": 0, "backend": "pixel", "backend_version": "1",
                           "judgment": {...Judgment.to_dict()...}, "latency_ms": 9.1,
                           "created_at": "2025-..."}, ...]

  ``human_judgments`` is the full append-only history of the item, oldest first; ``id``,
  ``supersedes`` and ``restores`` are numbers local to that list (1, 2, ...), not database
  ids, so an export does not depend on the store it came from. ``restores`` is set on the
  judgment an undo of an edit wrote: the row whose vote it brought back (it must be the
  version before the row it supersedes, with the same content; see
  :mod:`storage.humans`). Files written before it existed have no ``restores``: they
  import as before.
- **Parquet** (:func:`export_parquet`): one file in the Hugging Face ``datasets`` layout,
  ``datasets.load_dataset("parquet", data_files=...)`` decodes ``source`` to a PIL image
  and ``candidates`` to a list of them. The other columns hold the same values as the
  JSONL (JSON strings where they are not plain strings).

Password hashes are never exported (only annotator names, roles and kinds): an imported
annotator keeps the role and the kind (``human`` or ``simulated``) from the file but has
no password, so no app login.

Text that is not valid Unicode (a lone surrogate, U+D800..U+DFFF) cannot be written as
UTF-8. The store refuses it, but a store written before that check may hold some (in its
JSON columns); an export replaces each such character with U+FFFD (the replacement
character) instead of failing (:func:`~storage.validation.replace_surrogates`).

Imports accept our exports and plain pair-format files (SynthEdit output, no judgments).
They are all or nothing: the whole file is validated first (JSON, paths, images, every
judgment), then written in one transaction; a malformed file raises
:class:`~spatialreward.errors.DataImportError` naming the line or row and leaves the store
as it was. Importing the same file again changes nothing: items are matched by uid, human
judgments by (item, annotator, kind, created_at), model judgments by their cache key.

Annotators: an import never changes a stored annotator. A file that gives an existing
annotator another role than the store's (``annotator_role``) is refused; one without
``annotator_role`` makes no claim. Kinds are never mixed silently: a file that gives an
existing annotator another kind than the store's (``annotator_kind``) is refused, and a
judgment without ``annotator_kind`` (files written before kinds existed) is a person's,
``human``; one annotator has one kind in the whole file. With ``human_judgments=False``
the file's human judgments are dropped without being checked (counted as
``dropped_human_judgments``) and no annotator is created: items and model judgments
import as usual. The app imports files from people this way; ``db import`` keeps
everything.
"""

from __future__ import annotations

from .export import export_pairs, export_parquet, export_rows
from .imports import import_pairs, import_parquet
from .layout import IMAGES_DIR, PAIRS_FILE, PARQUET_SCHEMA, REQUIRED_COLUMNS, ROW_GROUP
from .validation import KINDS

__all__ = ["IMAGES_DIR", "KINDS", "PAIRS_FILE", "PARQUET_SCHEMA", "REQUIRED_COLUMNS",
           "ROW_GROUP", "export_pairs", "export_parquet", "export_rows", "import_pairs",
           "import_parquet"]
