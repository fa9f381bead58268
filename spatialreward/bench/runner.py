"""Run a reward model over a benchmark and measure it against the human verdicts.

:func:`run_bench` reads a benchmark in any format of :mod:`.formats`, judges every
candidate with :meth:`Services.judge` and returns the results dict that ``bench --out``
writes: the generic metrics of :func:`~spatialreward.bench.metrics.summarize`, the
benchmark's own published metrics (``benchmark``, from :mod:`.public_metrics`) and one
entry per item.

With a ``store`` the judgments are cached there (:meth:`Store.cached_judgment`): each item
is stored once (one item per content, shared with an import of the same data) under a
uid made from its content (image hashes, instruction, dimension, human order), kept out
of the annotation queues unless ``add_to_store``; each successful judgment is stored
under the store's cache key (image hashes + instruction + backend name and version), so
an interrupted run picks up where it stopped and another backend, or new weights, reuses
nothing. Failed judgments are not stored: the next run tries them again.

With a :class:`~.distributed.Dist` of several ranks each rank judges its shard and the
per-item results are gathered, so every rank computes the numbers one process would.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm import tqdm

from storage.pairs import PairItem, ranking_to_json

from ..errors import ImageError, InputError, StudioError
from ..judgment import Judgment
from ..official_parse import in_range
from ..service import Services
from .distributed import Dist
from .formats import FORMATS, BenchItem, Benchmark, open_benchmark
from .identity import fingerprint
from .metrics import (
    ItemResult,
    evaluate_item,
    group_value,
    reference_candidate,
    score_for,
    summarize,
)
from .public_metrics import benchmark_metrics, gedit_scores
from .tables import ImageRef, image_input, ref_bytes

if TYPE_CHECKING:
    from storage.store import Store

CacheKey = tuple[str, str, str]
Outcome = Judgment | tuple[str, str]
"""A judgment, or (status, message) of the error that kept a candidate from being judged."""
AnyItem = PairItem | BenchItem
INFO_KEYS = ("task_type", "subset", "group", "comparison", "k", "language", "intersection",
             "human_pick")
"""Item metadata a benchmark's own metrics read back from the results (``info``)."""


@dataclass
class CacheStats:
    """Where this run's judgments came from."""

    reused: int = 0
    """found in the store (an earlier or interrupted run)"""
    judged: int = 0
    """made by the backend now"""


def _group_labels(item: AnyItem, by: Sequence[str]) -> dict[str, str]:
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
    item: AnyItem,
    candidate: ImageRef,
    cache: dict[CacheKey, Outcome],
    stats: CacheStats | None = None,
) -> Outcome:
    more = tuple(getattr(item, "more_sources", ()))
    key = ("+".join(str(s) for s in (item.source, *more)), str(candidate), item.instruction)
    if key not in cache:
        try:
            cache[key] = services.judge(image_input(item.source), image_input(candidate),
                                        item.instruction, backend,
                                        more_sources=[image_input(s) for s in more])
            if stats is not None:
                stats.judged += 1
        except (ImageError, OSError) as err:
            # One unreadable image fails its item, not the run.
            cache[key] = ("image_error", str(err))
        except InputError as err:  # e.g. an empty instruction in one line of the dataset
            cache[key] = ("input_error", str(err))
        except StudioError as err:  # a path that leaves the dataset's folder
            cache[key] = ("image_error", str(err))
    return cache[key]


def item_uid(item: AnyItem, shas: Sequence[str]) -> str:
    """The store uid of a benchmark item: a hash of everything that defines it, so the
    same uid always means the same images, instruction, dimension and human order."""
    ranking = None if item.ranking is None else ranking_to_json(item.ranking)
    text = json.dumps([item.instruction.strip(), item.dimension, ranking, list(shas)])
    return "bench:" + hashlib.sha256(text.encode()).hexdigest()[:32]


def _json_safe(value: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(value, default=str))  # type: ignore[no-any-return]


def _judge_stored(services: Services, backend: str, item: AnyItem,
                  cache: dict[CacheKey, Outcome], store: Store, stats: CacheStats,
                  origin: str | None, add_to_store: bool = False) -> list[Outcome] | None:
    """Judge through the store's cache; None when the item cannot be stored (an
    unreadable image, an empty instruction): the caller then judges without it. The
    item is stored (its judgments need it) but joins the annotation queues only with
    ``add_to_store``."""
    from storage.store import image_sha256

    if getattr(item, "more_sources", ()):
        return None  # a store item has one source image: judged without the cache

    data: list[bytes | None]
    try:
        store_item = getattr(item, "store_item", None)
        if store_item is not None:
            item_id = store_item
            row = store.item(item_id)
            shas = [row["source_sha256"], *row["candidates"]]
            data = [None] * len(shas)  # read only if something must be judged
        else:
            data = [ref_bytes(ref) for ref in (item.source, *item.candidates)]
            shas = [image_sha256(b) for b in data if b is not None]
            # One item per content: an imported copy is reused (and stays queued); a
            # uid the store knows is merged without reading the images again.
            item_id = store.add_item(
                item.instruction, data[0], data[1:], uid=item_uid(item, shas),
                category=item.category, dimension=item.dimension,
                truth_ranking=None if item.ranking is None else ranking_to_json(item.ranking),
                truth_regions=item.regions, origin_dataset=origin, origin_id=item.id,
                metadata=_json_safe(item.metadata), queued=add_to_store)
    except (StudioError, OSError):
        return None

    def fresh(k: int) -> Outcome:
        try:
            j, reused = services.judge_stored(item_id, k, backend, source=data[0],
                                              edited=data[k + 1], store=store)
        except InputError as err:
            return ("input_error", str(err))
        except (StudioError, OSError) as err:  # an image the store lost, or cannot decode
            return ("image_error", str(err))
        if reused:
            stats.reused += 1
        else:
            stats.judged += 1
        return j

    outcomes: list[Outcome] = []
    for k in range(len(item.candidates)):
        key = (f"sha256:{shas[0]}", f"sha256:{shas[k + 1]}", item.instruction)
        if key not in cache:
            cache[key] = fresh(k)
        outcomes.append(cache[key])
    return outcomes


def judge_item(
    services: Services,
    backend: str,
    item: AnyItem,
    cache: dict[CacheKey, Outcome],
    by: Sequence[str] = (),
    *,
    store: Store | None = None,
    stats: CacheStats | None = None,
    fmt: str | None = None,
    origin: str | None = None,
    add_to_store: bool = False,
) -> ItemResult:
    """Judge every candidate of ``item`` (through ``cache``, and ``store`` when given,
    where ``add_to_store`` also puts the item in the annotation queues) and score it."""
    outcomes = None
    if store is not None:
        outcomes = _judge_stored(services, backend, item, cache, store,
                                 stats if stats is not None else CacheStats(), origin,
                                 add_to_store)
    if outcomes is None:
        outcomes = [_judge(services, backend, item, c, cache, stats) for c in item.candidates]
    judgments = [o if isinstance(o, Judgment) else None for o in outcomes]
    statuses = [o.status if isinstance(o, Judgment) else o[0] for o in outcomes]
    errors = []
    for i, o in enumerate(outcomes):
        if isinstance(o, tuple):
            errors.append(f"candidate {i}: {o[1]}")
        elif not o.scored:
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
    info = {k: item.metadata[k] for k in INFO_KEYS if k in item.metadata}
    if fmt == "gedit" and judgments:
        j = judgments[0]
        scores = None if j is None or not j.scored else gedit_scores(j.sc, j.pq)
        info.update(dict(zip(("semantics", "quality", "overall"), scores or (None,) * 3,
                             strict=True)))
    counts = tuple(None if j is None else len(j.regions) for j in judgments)
    truncated = sum(1 for j in judgments
                    if j is not None and not j.scored and j.meta.get("truncated"))
    official = [official_score_for(j, item.dimension) for j in judgments]
    if judgments and all(o is not None for o in official):
        info["official_scores"] = [o[0] for o in official if o is not None]
        info["official_invented"] = sum(bool(o[1]) for o in official if o is not None)
    return dataclasses.replace(result, region_counts=counts, info=info, truncated=truncated)


def official_score_for(j: Judgment | None, dimension: str) -> tuple[float | None, bool] | None:
    """The score the official scripts would give this candidate on ``dimension`` (from
    the answers' official reading, ``meta.official_scores``) and whether it was invented;
    None when the backend records no official reading (mini, pixel, a failed image)."""
    if j is None or "official_scores" not in j.meta:
        return None
    o = j.meta["official_scores"]
    clamp = [None if o.get(k) is None else in_range(o[k]) for k in ("sc", "pq")]
    filled = Judgment(status="ok", sc=clamp[0], pq=clamp[1], aggregation=j.aggregation)
    return score_for(filled, dimension), bool(o.get("invented"))


OnItem = Callable[[int, int, ItemResult], None]
"""``on_item(done, total, result)``, called after each item this rank judged."""


def official_parse_summary(results: Sequence[ItemResult], by: Sequence[str] = ()
                           ) -> dict[str, Any] | None:
    """The accuracy the official scripts would report, beside ours, when some judgments
    failed: each failed answer scored by their fill (midpoint, duplicated score, ...).
    None when nothing failed or the backend records no official reading."""
    if not any(r.failed for r in results) or not all(
            "official_scores" in r.info for r in results):
        return None
    filled = [dataclasses.replace(
        evaluate_item(r.id, r.ranking, r.info["official_scores"], dimension=r.dimension,
                      category=r.category, groups=r.groups), info=r.info) for r in results]
    table = summarize(filled, by)
    return {"accuracy": table["accuracy"], "accuracy_ci": table.get("accuracy_ci"),
            "failed": table["failed"],
            "invented_items": sum(r.info["official_invented"] > 0 for r in results),
            "rule": "spatialreward.official_parse: midpoint 12.5 for an answer without a "
                    "score, a single score duplicated, extra scores cut"}


def run_bench(
    dataset: Path,
    services: Services,
    backend: str,
    limit: int | None = None,
    by: Sequence[str] = (),
    progress: bool = True,
    *,
    fmt: str | None = None,
    store: Store | None = None,
    edits: Path | None = None,
    dist: Dist | None = None,
    on_item: OnItem | None = None,
    add_to_store: bool = False,
    allow_absolute_paths: bool = False,
) -> dict[str, Any]:
    """Judge the first ``limit`` items of ``dataset`` (all when None) and measure them.

    ``fmt`` names the format (None: detected); ``store`` caches judgments (None: only in
    memory, for this run), its items kept out of the annotation queues unless
    ``add_to_store``; ``edits`` is GEdit-Bench's folder of outputs; ``dist`` shards
    the items over ``torchrun`` ranks. Returns the JSON-ready results dict (see
    :func:`evaluate`)."""
    if limit is not None and limit < 1:
        raise InputError(f"--limit must be at least 1, got {limit}")
    # Build the backend first: an unknown backend fails before any work is done.
    services.backend(backend)
    # The (limited) dataset is read and validated up front, so a malformed row stops the
    # run before the judging time is spent rather than half-way through it.
    with open_benchmark(dataset, fmt, limit=limit, edits=edits,
                        live=services.store if store is not None else None,
                        allow_absolute_paths=allow_absolute_paths) as bench:
        return evaluate(bench, services, backend, by=by, progress=progress, store=store,
                        dist=dist, on_item=on_item, add_to_store=add_to_store)


def evaluate(
    bench: Benchmark,
    services: Services,
    backend: str,
    *,
    by: Sequence[str] = (),
    progress: bool = True,
    store: Store | None = None,
    dist: Dist | None = None,
    on_item: OnItem | None = None,
    add_to_store: bool = False,
) -> dict[str, Any]:
    """Judge the items of ``bench`` (``add_to_store``: and put them in the store's
    annotation queues; see :func:`run_bench`) and return the results dict: ``dataset``, ``format``,
    ``backend``, ``created``, the metrics of :func:`summarize`, ``benchmark`` (the
    format's published metrics), ``judgments``, ``cache``, ``seconds_per_item``,
    ``items_per_second``, ``world_size``, ``notes`` and the per-item ``items``."""
    model = services.backend(backend)
    items = bench.items
    if not items:
        why = f" ({json.dumps(bench.notes)})" if bench.notes else ""
        raise InputError(f"{bench.path} holds no items to judge{why}")
    if not all(it.candidates for it in items):
        raise InputError(f"{bench.path} is a prompt set (GEdit-Bench): there is nothing to "
                         "judge until an editing model has answered it; pass --edits DIR "
                         "with the model's outputs (DIR/<task_type>/<language>/<key>.png)")
    if bench.store is not None and store is not None:
        store = bench.store  # the human bench caches into the store it reads
    dist = dist or Dist()
    keys = tuple(dict.fromkeys([*bench.by, *by]))
    mine = dist.shard(len(items))
    cache: dict[CacheKey, Outcome] = {}
    stats = CacheStats()
    show = progress and dist.is_main and sys.stderr.isatty()
    t0 = time.perf_counter()
    local = []
    for done, i in enumerate(tqdm(mine, desc="bench", unit="item", disable=not show,
                                  file=sys.stderr), 1):
        result = judge_item(services, backend, items[i], cache, keys, store=store,
                            stats=stats, fmt=bench.format, origin=bench.format,
                            add_to_store=add_to_store)
        local.append((i, result))
        if on_item is not None:
            on_item(done, len(mine), result)
    parts = dist.gather((local, len(cache), stats.reused, stats.judged))
    elapsed = time.perf_counter() - t0
    results = [r for _, r in sorted((pair for part in parts for pair in part[0]),
                                    key=lambda p: p[0])]
    entries = [r.to_dict() for r in results]
    official = official_parse_summary(results, keys)
    agreement = None
    if bench.format == "store" and bench.store is not None:
        from storage.agreement import agreement as store_agreement

        agreement = store_agreement(bench.store, model.name)
    return {
        "dataset": str(bench.path),
        "format": bench.format,
        "format_title": FORMATS[bench.format].title,
        "backend": {"spec": backend, "name": model.name, "version": model.version,
                    **({"protocol": model.protocol} if hasattr(model, "protocol") else {})},
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        **summarize(results, keys),
        "benchmark": benchmark_metrics(bench.format, entries, agreement),
        "judgments": sum(p[1] for p in parts),
        "cache": {"store": store is not None, "reused": sum(p[2] for p in parts),
                  "judged": sum(p[3] for p in parts)},
        "seconds_per_item": elapsed / len(items),
        "items_per_second": len(items) / elapsed if elapsed > 0 else None,
        "world_size": dist.world_size,
        "notes": dict(bench.notes),
        "fingerprint": fingerprint(bench.items, bench.path),
        **({"official_parse": official} if official else {}),
        "items": entries,
    }
