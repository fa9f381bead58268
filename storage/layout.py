"""The layout of an export (:mod:`storage.exchange` describes the formats): file names,
the Parquet schema, and the JSON text of its columns."""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa

PAIRS_FILE = "pairs.jsonl"
IMAGES_DIR = "images"
ROW_GROUP = 64
"""Rows per Parquet row group: export and import hold one group's images at a time."""

_IMAGE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
STRING_COLUMNS = ("ranking", "dimension", "category", "regions", "origin_dataset",
                  "origin_file", "origin_id", "metadata", "human_judgments", "model_judgments")
"""The Parquet columns of plain strings (JSON text where the value is not a string)."""
_VALUE = {"dtype": "string", "_type": "Value"}
_FEATURES = {"id": _VALUE, "instruction": _VALUE, "source": {"_type": "Image"},
             "candidates": {"feature": {"_type": "Image"}, "_type": "List"},
             **{name: _VALUE for name in STRING_COLUMNS}}
PARQUET_SCHEMA = pa.schema(
    [("id", pa.string()), ("instruction", pa.string()), ("source", _IMAGE),
     ("candidates", pa.list_(_IMAGE)), *((name, pa.string()) for name in STRING_COLUMNS)],
    # `datasets` reads its feature types from this key: Image columns decode to PIL.
    metadata={"huggingface": json.dumps({"info": {"features": _FEATURES}})},
)
REQUIRED_COLUMNS = ("id", "instruction", "source", "candidates")
"""The columns an imported Parquet file must have."""


def loads(text: str | None) -> Any:
    """A JSON column's value (None stays None).

    >>> loads('[1, 0]'), loads(None)
    ([1, 0], None)
    """
    return None if text is None else json.loads(text)


def dumps(value: Any) -> str | None:
    """A value as a JSON column (None stays None; non-ASCII text kept as it is).

    >>> dumps({"comment": "ünï"}), dumps(None)
    ('{"comment": "ünï"}', None)
    """
    return None if value is None else json.dumps(value, ensure_ascii=False)
