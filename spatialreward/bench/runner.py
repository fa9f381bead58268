"""Run a reward model over a pair-format dataset and measure it against the human rankings.

:func:`run_bench` reads the dataset (:mod:`storage.pairs`), judges every candidate
with :meth:`Services.judge`, and returns the results dict that ``bench --out``
writes (see :mod:`spatialreward.bench.metrics` for what each number means).
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import Any

from tqdm import tqdm

from storage.pairs import PairItem, iter_pairs

from ..errors import ImageError, InputError
from ..judgment import Judgment
from ..service import Services
from .metrics import (
    ItemResult,
    evaluate_item,
    group_value,
    reference_candidate,
    score_for,
    summarize,
)

CacheKey = tuple[str, str, str]
Outcome = Judgment | tuple[str, str]
"""A judgment, or (status, message) of the error that kept a candidate from being judged."""


def _group_labels(item: PairItem, by: Sequence[str]) -> dict[str, str]:
    # Metadata first (that is what --by is for); the item's own fields as a fallback,
    # so `--by dimension` works too.
    own = {"category": item.category, "dimension": item.dimension}
    return {
        key: group_value(item.metadata[key] if key in item.metadata else own.get(key))
        for key in by
    }


def _judge(
    services: Services,
    backend: str,
    item: PairItem,
    candidate: Path,
    cache: dict[CacheKey, Outcome],
) -> Outcome:
    key = (str(item.source), str(candidate), item.instruction)
    if key not in cache:
        try:
            cache[key] = services.judge(item.source, candidate, item.instruction, backend)
        except ImageError as err:
            # One unreadable image fails its item, not the run.
            cache[key] = ("image_error", str(err))
        except InputError as err:  # e.g. an empty instruction in one line of the dataset
            cache[key] = ("input_error", str(err))
    return cache[key]


def judge_item(
    services: Services,
    backend: str,
    item: PairItem,
    cache: dict[CacheKey, Outcome],
    by: Sequence[str] = (),
) -> ItemResult:
    """Judge every candidate of ``item`` (through ``cache``) and score the item."""
    outcomes = [_judge(services, backend, item, c, cache) for c in item.candidates]
    judgments = [o if isinstance(o, Judgment) else None for o in outcomes]
    statuses = [o.status if isinstance(o, Judgment) else o[0] for o in outcomes]
    errors = []
    for i, o in enumerate(outcomes):
        if isinstance(o, tuple):
            errors.append(f"candidate {i}: {o[1]}")
        elif o.status != "ok":
            errors.append(f"candidate {i}: {o.status}" + (f" ({o.error})" if o.error else ""))
    ref = reference_candidate(item.ranking, len(item.candidates))
    ref_judgment = None if ref is None else judgments[ref]
    predicted = [] if ref_judgment is None else [r.bbox_2d for r in ref_judgment.regions]
    result = evaluate_item(
        item.id,
        item.ranking,
        [score_for(j, item.dimension) for j in judgments],
        dimension=item.dimension,
        category=item.category,
        targets=item.regions,
        predicted=predicted,
        statuses=statuses,
        error="; ".join(errors) or None,
        groups=_group_labels(item, by),
    )
    counts = tuple(None if j is None else len(j.regions) for j in judgments)
    return dataclasses.replace(result, region_counts=counts)


def run_bench(
    dataset: Path,
    services: Services,
    backend: str,
    limit: int | None = None,
    by: Sequence[str] = (),
    progress: bool = True,
) -> dict[str, Any]:
    """Judge the first ``limit`` items of ``dataset`` (all when None) and measure accuracy.

    Returns a JSON-ready dict: the dataset and backend, the metrics of
    :func:`~spatialreward.bench.metrics.summarize`, ``seconds_per_item``,
    ``created`` and the per-item ``items`` list.
    """
    if limit is not None and limit < 1:
        raise InputError(f"--limit must be at least 1, got {limit}")
    # Build the backend first: an unknown backend fails before any work is done.
    model = services.backend(backend)
    # The (limited) file is read and validated up front, so a malformed line stops the
    # run before the judging time is spent rather than half-way through it.
    items = list(islice(iter_pairs(dataset), limit))
    cache: dict[CacheKey, Outcome] = {}
    show = progress and sys.stderr.isatty()
    t0 = time.perf_counter()
    results = [
        judge_item(services, backend, item, cache, by)
        for item in tqdm(items, desc="bench", unit="item", disable=not show, file=sys.stderr)
    ]
    elapsed = time.perf_counter() - t0
    return {
        "dataset": str(dataset),
        "backend": {"spec": backend, "name": model.name, "version": model.version},
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        **summarize(results, by),
        "judgments": len(cache),
        "seconds_per_item": elapsed / len(items) if items else None,
        "items": [r.to_dict() for r in results],
    }
