"""The benchmark types every reader shares: the formats, one item, one dataset read.

:mod:`.loaders` builds these and :mod:`.formats` picks the loader, so both import this
module (and :mod:`.tables`); it imports neither of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from storage.pairs import PairItem, Ranking

from .tables import ImageRef

if TYPE_CHECKING:
    from storage.store import Store

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class Format:
    name: str
    title: str
    needs: tuple[str, ...]
    """Columns a table must have (or, for file formats, what the file must be)."""
    by: tuple[str, ...] = ()
    """Metadata keys every run of this format is broken down by."""


FORMATS: dict[str, Format] = {f.name: f for f in (
    Format("editscore", "EditReward-Bench (EditScore)",
           ("key", "instruction", "task_type", "dimension", "input_image", "output_images"),
           ("dimension",)),
    Format("tiger", "EditReward-Bench (TIGER-Lab, 2/3/4-pair)",
           ("id", "instruction", "source_image", "candidate_1", "candidate_2", "ranking")),
    Format("merbench", "MER-Bench (MultiEditReward-Bench)",
           ("pair_id", "label", "instruction", "original_image", "edited_images"), ("k",)),
    Format("mmrb2", "MMRB2 edit task (HF columns, or the built edit.json)",
           ("pair_id", "prompt_text", "prompt_images", "response_a_images",
            "response_b_images", "chosen")),
    Format("gedit", "GEdit-Bench (prompt set; --edits judges a model's outputs)",
           ("task_type", "key", "instruction", "instruction_language", "input_image"),
           ("language",)),
    Format("pairs", "our pair format (.jsonl) or Parquet export",
           ("id", "instruction", "source", "candidates")),
    Format("store", "the store's items with human votes (a studio .db file)",
           ("a SQLite store file",)),
)}
TABLE_FORMATS = ("editscore", "tiger", "merbench", "mmrb2", "gedit", "pairs")
"""Detection order for table files (their required columns do not overlap)."""


@dataclass(frozen=True)
class BenchItem:
    """One benchmark item in the common form (the fields of :class:`PairItem`, with
    images that may live in a table or the store, and ``store_item`` for store items)."""

    id: str
    instruction: str
    source: ImageRef
    candidates: tuple[ImageRef, ...]
    ranking: Ranking | None = None
    dimension: str = "overall"
    category: str | None = None
    regions: tuple[Box, ...] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    store_item: int | None = None
    more_sources: tuple[ImageRef, ...] = ()
    """Further input images after ``source`` (MMRB2 prompts that combine several): every
    candidate is judged against all of them."""

    @classmethod
    def from_pair(cls, item: PairItem) -> BenchItem:
        return cls(item.id, item.instruction, item.source, item.candidates, item.ranking,
                   item.dimension, item.category, item.regions, dict(item.metadata))


@dataclass
class Benchmark:
    """A dataset read from disk: its format, items, and what was left out and why."""

    format: str
    path: Path
    items: list[BenchItem]
    store: Store | None = None
    notes: dict[str, Any] = field(default_factory=dict)
    owns_store: bool = False
    """True when reading the benchmark opened ``store`` (a store file that is not the
    caller's live store): :meth:`close` closes it."""

    @property
    def by(self) -> tuple[str, ...]:
        return FORMATS[self.format].by

    def close(self) -> None:
        """Close what reading opened (a store database); the caller's live store stays open."""
        if self.owns_store and self.store is not None:
            self.store.close()
            self.store = None

    def __enter__(self) -> Benchmark:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
