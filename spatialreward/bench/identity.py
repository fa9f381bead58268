"""Which data a bench run read: a content fingerprint, the revision, and duplicate rows.

Users of public benchmarks have filed duplicated ids, the same comparison with opposite
rankings, and silently re-released data. A number is only comparable with another if both
were computed on the same rows, so every results.json records:

- ``fingerprint.sha256``: a hash over every item read, in order: its id, instruction,
  ranking, dimension, category, regions and the SHA-256 of each image's bytes (every
  input image, for an edit made from several);
- ``fingerprint.revision``: the dataset folder's revision when it has one (the commit of a
  git checkout, or the snapshot hash of a Hugging Face cache folder);
- duplicates (``notes.duplicates``): ids that occur more than once, split into identical
  repeats and conflicting ones (the same id with other content: another ranking, other
  images). Repeated ids are still renamed ``id#2``, ``id#3`` so results match by id, and
  the note says so.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from storage.images import image_sha256

from ..errors import StudioError
from .tables import ref_bytes
from .types import BenchItem

_HEX = re.compile(r"^[0-9a-f]{40}$")


def content_digest(item: BenchItem, *, with_id: bool = True) -> str:
    """A hash of what an item says and shows (its id included unless ``with_id=False``)."""
    try:
        refs = (item.source, *item.more_sources, *item.candidates)
        images = [image_sha256(ref_bytes(ref)) for ref in refs]
    except (StudioError, OSError) as err:  # judged as a failure later; hashed as missing
        images = [f"unreadable: {type(err).__name__}"]
    fields = {"instruction": item.instruction, "ranking": item.ranking,
              "dimension": item.dimension, "category": item.category,
              "regions": item.regions, "images": images}
    if with_id:
        fields["id"] = item.id
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=list).encode()).hexdigest()


def revision(path: Path) -> dict[str, str] | None:
    """The dataset's revision: a git checkout's commit, or a Hugging Face cache snapshot's
    hash (``.../snapshots/<40 hex>/...``); None when the folder records neither. Read from
    the files, no command is run."""
    path = path.resolve()
    for folder in (path, *path.parents):
        if folder.parent.name == "snapshots" and _HEX.match(folder.name):
            return {"kind": "huggingface-snapshot", "id": folder.name}
        head = folder / ".git" / "HEAD"
        if head.is_file():
            text = head.read_text().strip()
            if text.startswith("ref: "):
                ref = folder / ".git" / text[5:]
                if ref.is_file():
                    return {"kind": "git", "id": ref.read_text().strip(), "ref": text[5:]}
                packed = folder / ".git" / "packed-refs"
                if packed.is_file():
                    for line in packed.read_text().splitlines():
                        if line.endswith(" " + text[5:]):
                            return {"kind": "git", "id": line.split()[0], "ref": text[5:]}
                return None
            return {"kind": "git", "id": text}
    return None


def fingerprint(items: Sequence[BenchItem], path: Path) -> dict[str, Any]:
    """The ``fingerprint`` a results.json records (see the module docstring)."""
    h = hashlib.sha256()
    for item in items:
        h.update(content_digest(item).encode())
    return {"sha256": h.hexdigest(), "items": len(items), "revision": revision(path),
            "covers": "ids, instructions, rankings, dimensions, categories, regions and "
                      "image bytes of every item read, in order"}


def duplicates(items: Sequence[BenchItem]) -> dict[str, Any] | None:
    """Ids that occur more than once, identical or conflicting; None when all are unique."""
    counts = Counter(it.id for it in items)
    repeated = {i: n for i, n in counts.items() if n > 1}
    if not repeated:
        return None
    contents: dict[str, set[str]] = defaultdict(set)
    for it in items:
        if it.id in repeated:
            contents[it.id].add(content_digest(it, with_id=False))
    conflicting = sorted(i for i in repeated if len(contents[i]) > 1)
    return {"ids": len(repeated), "rows": sum(repeated.values()),
            "conflicting": conflicting, "identical": sorted(set(repeated) - set(conflicting)),
            "counts": dict(sorted(repeated.items())),
            "renamed": "repeats were renamed id#2, id#3, ... so results match by id; "
                       "conflicting ones differ in ranking, images or text: check which "
                       "release of the data you have"}
