"""The readers of each benchmark format: table rows (or JSON, or the store) to BenchItems.

:func:`~.formats.open_benchmark` picks the reader (this module imports only
:mod:`.types` and :mod:`.tables`, not :mod:`.formats`); each gets the rows of the dataset's
table files with the small columns read and the image columns left in place
(:class:`~.tables.EmbeddedImage`), checks them, and names the file and row of anything
malformed. ``docs/benchmarks.md`` describes each layout.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

from storage.pairs import DIMENSIONS, Ranking
from storage.paths import resolve_inside

from ..errors import BenchFormatError
from .tables import EmbeddedImage, ImageRef, StoredImage, TableFile, is_sqlite
from .types import BenchItem, Benchmark

if TYPE_CHECKING:
    from storage.store import Store

EDIT_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


@dataclass(frozen=True)
class _Row:
    table: TableFile
    index: int
    values: dict[str, Any]
    shape: dict[str, int]
    """Length of each image list column (1/0 for a single image column)."""

    def image(self, column: str, index: int | None = None) -> EmbeddedImage:
        return EmbeddedImage(self.table, self.index, column, index)

    def where(self) -> str:
        return f"{self.table.label} row {self.index}"


_SHAPED = {"editscore": ["output_images"], "merbench": ["edited_images"],
           "mmrb2": ["prompt_images", "response_a_images", "response_b_images"],
           "pairs": ["candidates"]}


def rows(tables: list[TableFile], fmt: str, limit: int | None) -> Iterator[_Row]:
    needed = limit
    for table in tables:
        if needed is not None and needed <= 0:
            return
        images = set(table.image_columns())
        shaped = list(_SHAPED.get(fmt, []))
        if fmt == "tiger":
            shaped = sorted((c for c in table.columns if re.fullmatch(r"candidate_\d+", c)),
                            key=lambda c: int(c.split("_")[1]))
        values = table.read([c for c in table.columns if c not in images])
        values = values[:needed] if needed is not None else values
        shapes = {c: table.shape(c)[: len(values)] for c in shaped if c in table.columns}
        for i, row in enumerate(values):
            yield _Row(table, i, row, {c: s[i] for c, s in shapes.items()})
        if needed is not None:
            needed -= len(values)


def unique_ids(items: list[BenchItem]) -> list[BenchItem]:
    """Repeated ids made unique (``id#2``, ``id#3``) so results can be matched by id."""
    counts = Counter(it.id for it in items)
    seen: Counter[str] = Counter()
    out = []
    for it in items:
        if counts[it.id] > 1:
            seen[it.id] += 1
            if seen[it.id] > 1:
                it = replace(it, id=f"{it.id}#{seen[it.id]}")
        out.append(it)
    return out


def _text(value: Any, where: str, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise BenchFormatError(f"{where}: {what} must be non-empty text, got {value!r}")
    return value


def _strict(k: int) -> Ranking:
    return tuple((i,) for i in range(k))


# -- the formats ----------------------------------------------------------------------------


def _load_editscore(rows: Iterator[_Row], bench: Benchmark, _: Path | None
                    ) -> list[BenchItem]:
    items = []
    for row in rows:
        v, where = row.values, row.where()
        if row.shape["output_images"] != 2:
            raise BenchFormatError(f"{where}: output_images must hold 2 images (preferred "
                                   f"first), it holds {row.shape['output_images']}")
        dimension = v["dimension"]
        if dimension not in DIMENSIONS:
            raise BenchFormatError(f"{where}: dimension {dimension!r} is not one of "
                                   f"{', '.join(DIMENSIONS)}")
        key = v["key"] if isinstance(v["key"], list) else [v["key"]]
        items.append(BenchItem(
            id=f"{'|'.join(str(k) for k in key)}:{dimension}",
            instruction=_text(v["instruction"], where, "instruction"),
            source=row.image("input_image"),
            candidates=(row.image("output_images", 0), row.image("output_images", 1)),
            ranking=_strict(2), dimension=dimension, category=str(v["task_type"]),
            metadata={"task_type": str(v["task_type"]), "key": [str(k) for k in key]}))
    return items


def parse_letter_ranking(text: str, letters: Sequence[str]) -> Ranking:
    """A ranking string over letter-named candidates, as tie groups of indices.

    ``letters[i]`` names candidate ``i``; ``=Good`` / ``=Bad`` after a tie is dropped.

    >>> parse_letter_ranking("B>A", "AB"), parse_letter_ranking("A=B=Good", "AB")
    (((1,), (0,)), ((0, 1),))
    >>> parse_letter_ranking("C>A", "AC"), parse_letter_ranking("A<B", "AB")
    (((1,), (0,)), ((1,), (0,)))
    >>> parse_letter_ranking("C>A=B", "ABC")
    ((2,), (0, 1))
    """
    s = re.sub(r"\s+", "", str(text)).upper()
    s = re.sub(r"=(GOOD|BAD)$", "", s)
    if "<" in s:
        if ">" in s:
            raise ValueError(f"ranking {text!r} mixes > and <")
        s = ">".join(reversed(s.split("<")))
    index = {letter.upper(): i for i, letter in enumerate(letters)}
    groups = []
    for part in s.split(">"):
        names = part.split("=")
        if not all(n in index for n in names):
            raise ValueError(f"ranking {text!r} names a candidate outside {', '.join(letters)}")
        groups.append(tuple(index[n] for n in names))
    if sorted(i for g in groups for i in g) != list(range(len(letters))):
        raise ValueError(f"ranking {text!r} must name each of {', '.join(letters)} once")
    return tuple(groups)


def _load_tiger(rows: Iterator[_Row], bench: Benchmark, _: Path | None) -> list[BenchItem]:
    items = []
    for row in rows:
        v, where = row.values, row.where()
        present = [c for c, n in row.shape.items() if n]  # candidate_k columns, in order
        letters = [chr(ord("A") + int(c.split("_")[1]) - 1) for c in present]
        compared = re.fullmatch(r"\s*([A-Za-z])\s*vs\s*([A-Za-z])\s*",
                                str(v.get("comparison_type") or ""))
        if compared and len(present) == 2:
            # The pair layout: candidate_1 and candidate_2 are the two letters compared.
            letters = [compared.group(1).upper(), compared.group(2).upper()]
        elif compared:
            wanted = [compared.group(1).upper(), compared.group(2).upper()]
            if not set(wanted) <= set(letters):
                raise BenchFormatError(f"{where}: comparison {v['comparison_type']!r} names "
                                       f"a candidate the row lacks ({', '.join(letters)})")
            present = [present[letters.index(w)] for w in wanted]
            letters = wanted
        if len(present) < 2:
            raise BenchFormatError(f"{where}: a comparison needs 2+ candidate images, "
                                   f"found {len(present)}")
        try:
            ranking = parse_letter_ranking(v["ranking"], letters)
        except ValueError as err:
            raise BenchFormatError(f"{where}: {err}") from None
        ident = str(v["id"])
        subset = str(v.get("dataset") or row.table.split or f"{len(present)}pair")
        numbers = [c.split("_")[1] for c in present]
        items.append(BenchItem(
            id=ident, instruction=_text(v["instruction"], where, "instruction"),
            source=row.image("source_image"),
            candidates=tuple(row.image(c) for c in present), ranking=ranking,
            category=subset,
            metadata={"subset": subset, "group": ident.split("_")[0],
                      "comparison": "".join(letters),
                      "models": [v.get(f"model_{n}") for n in numbers],
                      "human_scores": [v.get(f"score_{n}") for n in numbers]}))
    return items


def _load_merbench(rows: Iterator[_Row], bench: Benchmark, _: Path | None
                   ) -> list[BenchItem]:
    items = []
    for row in rows:
        v, where = row.values, row.where()
        k = row.shape["edited_images"]
        if k < 2:
            raise BenchFormatError(f"{where}: edited_images must hold 2+ images, best first")
        items.append(BenchItem(
            id=str(v["pair_id"]), instruction=_text(v["instruction"], where, "instruction"),
            source=row.image("original_image"),
            candidates=tuple(row.image("edited_images", i) for i in range(k)),
            ranking=_strict(k), category=str(v["label"]),
            metadata={"k": k, "split": row.table.split}))
    return items


def _chosen(value: Any, where: str) -> Ranking:
    chosen = str(value or "").strip().upper()
    if chosen not in ("A", "B"):
        raise BenchFormatError(f"{where}: chosen must be A or B, got {value!r}")
    return ((0,), (1,)) if chosen == "A" else ((1,), (0,))


def _load_mmrb2(rows: Iterator[_Row], bench: Benchmark, _: Path | None) -> list[BenchItem]:
    items = []
    for row in rows:
        v, where = row.values, row.where()
        for column in ("prompt_images", "response_a_images", "response_b_images"):
            if row.shape[column] < 1:
                raise BenchFormatError(f"{where}: {column} holds no image")
        n = row.shape["prompt_images"]
        items.append(BenchItem(
            id=str(v["pair_id"]),
            # verbatim: "<image_1>" markers name the input images, which the judge sees
            instruction=_text(str(v["prompt_text"] or "").strip(), where, "prompt_text"),
            source=row.image("prompt_images", 0),
            more_sources=tuple(row.image("prompt_images", i) for i in range(1, n)),
            candidates=(row.image("response_a_images", 0), row.image("response_b_images", 0)),
            ranking=_chosen(v["chosen"], where), category=str(v.get("prompt_source") or ""),
            metadata={"models": [v.get("response_a_model"), v.get("response_b_model")],
                      "prompt_images": row.shape["prompt_images"]}))
    return items


def load_mmrb2_json(file: Path, limit: int | None) -> list[BenchItem]:
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
        pairs = data["pairs"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise BenchFormatError(f"{file} is not MMRB2's built JSON ({err})") from None
    folder = file.resolve().parent
    items = []
    for k, pair in enumerate(islice(pairs, limit)):
        where = f"{file} pair {k}"
        try:
            prompt = pair["prompt_content"]
            texts = [c for kind, c in prompt if kind == "text"]
            images = [c for kind, c in prompt if kind == "image"]
            responses = [[c for kind, c in pair[side]["response_content"] if kind == "image"]
                         for side in ("response_a", "response_b")]
            if not images or not all(responses):
                raise ValueError("the prompt and both responses need an image")
            items.append(BenchItem(
                id=str(pair["id"]),
                # the official evaluation's instruction: the last text part, as written
                instruction=_text(texts[-1].strip() if texts else "", where,
                                  "the prompt text"),
                source=resolve_inside(folder, images[0]),
                more_sources=tuple(resolve_inside(folder, im) for im in images[1:]),
                candidates=tuple(resolve_inside(folder, r[0]) for r in responses),
                ranking=_chosen(pair["chosen"], where),
                category=str(pair.get("prompt_source") or ""),
                metadata={"models": [pair[s].get("model_name")
                                     for s in ("response_a", "response_b")],
                          "prompt_images": len(images)}))
        except (KeyError, TypeError, ValueError) as err:
            raise BenchFormatError(f"{where}: {err}") from None
    return items  # open_benchmark reports repeated ids, then renames them


def find_edit(edits: Path, task_type: str, language: str, key: str) -> Path | None:
    """The output image for one GEdit-Bench prompt in ``edits``, laid out as GEdit's own
    scripts save them (``fullset/<task_type>/<language>/<key>.png``) or flatter."""
    for rel in (f"fullset/{task_type}/{language}/{key}", f"{task_type}/{language}/{key}",
                f"{task_type}/{key}", key):
        for suffix in EDIT_SUFFIXES:
            candidate = resolve_inside(edits, rel + suffix)
            if candidate.is_file():
                return candidate
    return None


def _load_gedit(rows: Iterator[_Row], bench: Benchmark, edits: Path | None
                ) -> list[BenchItem]:
    items, missing = [], []
    for row in rows:
        v, where = row.values, row.where()
        task, lang, key = str(v["task_type"]), str(v["instruction_language"]), str(v["key"])
        candidates: tuple[ImageRef, ...] = ()
        if edits is not None:
            found = find_edit(edits, task, lang, key)
            if found is None:
                missing.append(key)
                continue
            candidates = (found,)
        items.append(BenchItem(
            id=f"{key}:{lang}", instruction=_text(v["instruction"], where, "instruction"),
            source=row.image("input_image"), candidates=candidates, category=task,
            metadata={"task_type": task, "language": lang, "key": key,
                      "intersection": bool(v.get("Intersection_exist"))}))
    if missing:
        bench.notes["missing_edits"] = len(missing)
        bench.notes["missing_edit_keys"] = missing[:20]
    return items


_EXPORT_SKIP = {"human_judgments", "model_judgments", "origin_dataset", "origin_file",
                "origin_id"}


def _load_pairs_table(rows: Iterator[_Row], bench: Benchmark, _: Path | None
                      ) -> list[BenchItem]:
    from storage.pairs import item_from_dict

    items = []
    for row in rows:
        v, where = dict(row.values), row.where()
        n = row.shape["candidates"]
        d: dict[str, Any] = {k: x for k, x in v.items() if k not in _EXPORT_SKIP}
        for name in ("ranking", "regions", "metadata"):
            if isinstance(d.get(name), str):
                d[name] = json.loads(d[name])
        meta = d.pop("metadata", None) or {}
        d.update({"source": "source", "candidates": [f"c/{k}" for k in range(n)]})
        try:
            pair = item_from_dict({k: x for k, x in d.items() if x is not None}, row.table.root)
        except (ValueError, TypeError) as err:
            raise BenchFormatError(f"{where}: {err}") from None
        items.append(BenchItem(
            pair.id, pair.instruction, row.image("source"),
            tuple(row.image("candidates", k) for k in range(n)), pair.ranking,
            pair.dimension, pair.category, pair.regions, {**pair.metadata, **meta}))
    return items


def load_store(path: Path, limit: int | None, live: Store | None = None) -> Benchmark:
    """The human bench of the store at ``path``: items with a single human pick. Reads
    through ``live`` when ``path`` is its file; otherwise the Benchmark owns a new
    connection, closed by ``Benchmark.close``."""
    from storage.store import Store

    if not path.is_file():
        raise BenchFormatError(f"no store database at {path.name}; give the studio .db that "
                               "holds the human votes (--dataset, --db or STUDIO_DB)")
    if not is_sqlite(path):
        raise BenchFormatError(f"{path.name} is not a store database (a studio .db file)")
    live_file = live.path if live is not None else None
    owns = live_file is None or not os.path.samefile(live_file, path)
    store = Store.open(path) if owns else live
    assert store is not None
    try:
        return _store_bench(store, path, limit, owns)
    except BaseException:
        if owns:
            store.close()
        raise


def _store_bench(store: Store, path: Path, limit: int | None, owns: bool) -> Benchmark:
    from storage.agreement import human_votes, majority

    votes = human_votes(store)
    items: list[BenchItem] = []
    skipped = Counter[str]()
    for item_id in store.item_ids():
        if limit is not None and len(items) >= limit:
            break
        labels = votes.get(item_id)
        if not labels:
            continue
        pick = majority(labels)
        row = store.item(item_id)
        n = int(row["n_candidates"])
        if pick is None or pick in ("tie", "both_bad") or n < 2:
            skipped["no single human pick" if n >= 2 else "one candidate"] += 1
            continue
        best = int(pick)
        rest = tuple(k for k in range(n) if k != best)
        items.append(BenchItem(
            id=str(row["uid"]), instruction=str(row["instruction"]),
            source=StoredImage(store, row["source_sha256"]),
            candidates=tuple(StoredImage(store, s) for s in row["candidates"]),
            ranking=((best,), rest), category=row["category"],
            metadata={"human_pick": best, "votes": dict(labels),
                      "judgments": sum(labels.values())},
            store_item=item_id))
    bench = Benchmark("store", path, items, store=store, owns_store=owns)
    if skipped:
        bench.notes["skipped_items"] = dict(skipped)
    return bench


TABLE_LOADERS = {"editscore": _load_editscore, "tiger": _load_tiger,
                  "merbench": _load_merbench, "mmrb2": _load_mmrb2, "gedit": _load_gedit,
                  "pairs": _load_pairs_table}
