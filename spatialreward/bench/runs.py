"""Bench runs started from the app, recorded in the store.

:func:`run_recorded` runs the bench of :mod:`spatialreward.bench` over a dataset file
(:class:`storage.datasets.DatasetFile`) and records it as a ``bench`` run: status
``running`` -> ``done`` (or ``failed`` with the error), progress metrics while it judges,
the headline figures at the end, and the full results JSON (the dict ``bench --out``
writes, plus ``run_id``) in ``<data>/runs/bench-<id>/result.json``; the run's
``out_dir`` is that folder, relative to the data folder. :func:`load_result`,
:func:`compare_runs` and the table helpers read the results back for the UI and the API.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from storage.datasets import DatasetFile, check_images, data_root
from storage.paths import resolve_inside

from ..errors import InputError, StudioError

if TYPE_CHECKING:
    from storage.store import Store

    from ..service import Services
    from .formats import Benchmark

RUNS_DIR = "runs"
RESULT_FILE = "result.json"
PROGRESS_STEPS = 20
"""Progress metrics logged per run (plus the final figures)."""

Progress = Callable[[int, int], None]
"""``progress(done, total)``, called after each judged item."""


def run_dir(root: Path, run_id: int) -> Path:
    return root / RUNS_DIR / f"bench-{run_id}"


def _running_figures(results: Sequence[Any], done: int) -> dict[str, float]:
    evaluated = [r for r in results if r.kind == "evaluated"]
    pairs = sum(r.pairs for r in evaluated)
    figures = {"items_done": float(done), "failed": float(sum(r.failed for r in results))}
    if pairs:
        figures["accuracy"] = sum(r.pairs_correct for r in evaluated) / pairs
    return figures


def final_figures(result: Mapping[str, Any]) -> dict[str, float]:
    """The numbers logged at a run's last step: headline figures and per-group accuracy."""
    figures: dict[str, float] = {"items_done": float(len(result.get("items", [])))}
    for key in ("accuracy", "n", "n_pairs", "region_recall", "failed", "seconds_per_item",
                "ranking_accuracy"):
        if result.get(key) is not None:
            figures[key] = float(result[key])
    if result.get("accuracy_ci"):
        figures["accuracy_ci_low"], figures["accuracy_ci_high"] = result["accuracy_ci"]
    for label, row in result.get("by_category", {}).items():
        if row["accuracy"] is not None:
            figures[f"category/{label}"] = float(row["accuracy"])
    for key, table in result.get("by", {}).items():
        for label, row in table.items():
            if row["accuracy"] is not None:
                figures[f"{key}/{label}"] = float(row["accuracy"])
    return figures


def run_recorded(services: Services, dataset: DatasetFile, backend: str, *,
                 limit: int | None = None, by: Sequence[str] = (),
                 progress: Progress | None = None, add_to_store: bool = False
                 ) -> dict[str, Any]:
    """Bench ``backend`` on the first ``limit`` items of ``dataset`` (all when None) and
    record the run in ``services.store``; returns the results dict (with ``run_id``).
    The judged items are stored with their judgments (the cache), but join the
    annotation queues only with ``add_to_store``.

    Mistakes (bad limit, unknown backend, malformed file, images outside the data) are
    raised before a run is recorded; a failure while judging marks the run ``failed``."""
    from .formats import open_benchmark

    if limit is not None and limit < 1:
        raise InputError(f"the limit must be at least 1 (or empty for all), got {limit}")
    backend = (backend or "").strip() or services.config.backend
    services.backend(backend)  # an unknown backend fails before any work
    store = services.store
    # Detects the format, or says why not; the live store is read through `store`.
    with open_benchmark(dataset.path, limit=limit, live=store) as bench:
        if bench.format == "pairs" and dataset.path.suffix == ".jsonl":
            check_images(dataset, limit)
        if not bench.items:
            raise InputError(f"{dataset.label} holds no items")
        return _record(services, bench, dataset, backend, limit=limit,
                       by=[k.strip() for k in by if k and k.strip()], progress=progress,
                       add_to_store=add_to_store)


def _record(services: Services, bench: Benchmark, dataset: DatasetFile, backend: str, *,
            limit: int | None, by: list[str], progress: Progress | None,
            add_to_store: bool) -> dict[str, Any]:
    """Run the bench of :func:`run_recorded` and record it as a ``bench`` run."""
    from ..rl.runs import record_process
    from .command import write_results
    from .metrics import ItemResult
    from .runner import evaluate

    root = data_root(services.config)
    store = services.store
    model = services.backend(backend)
    run_id = store.create_run("bench", f"{backend} on {dataset.label}",
                              {"dataset": dataset.label, "backend": backend, "limit": limit,
                               "by": by, "format": bench.format,
                               "add_to_store": add_to_store})
    out = run_dir(root, run_id)
    # The folder is named after the run id, so it is set once the id exists. The pid is
    # the server's own: a bench run has no process of its own, and is never signalled.
    store.update_run(run_id, status="running", out_dir=out.relative_to(root).as_posix())
    record_process(store, run_id)
    try:
        results: list[ItemResult] = []
        every = max(1, len(bench.items) // PROGRESS_STEPS)

        def on_item(k: int, total: int, r: ItemResult) -> None:
            results.append(r)
            if k % every == 0 and k < total:
                store.log_metrics(run_id, k, _running_figures(results, k))
            if progress is not None:
                progress(k, total)

        result = {"run_id": run_id,
                  **evaluate(bench, services, backend, by=by, progress=False, store=store,
                             on_item=on_item, add_to_store=add_to_store),
                  "dataset": dataset.label,
                  "backend": {"spec": backend, "name": model.name, "version": model.version}}
        write_results(result, out / RESULT_FILE)
        store.log_metrics(run_id, len(bench.items), final_figures(result))
    except BaseException as err:
        store.update_run(run_id, status="failed", error=f"{type(err).__name__}: {err}")
        raise
    store.update_run(run_id, status="done")
    return result


def summary(result: Mapping[str, Any]) -> dict[str, Any]:
    """The headline of a results dict (what ``/bench`` answers)."""
    out = {
        "run_id": result.get("run_id"),
        "dataset": result["dataset"],
        "backend": result["backend"]["spec"],
        "backend_version": result["backend"]["version"],
        "accuracy": result["accuracy"],
        "accuracy_ci": result["accuracy_ci"],
        "n": result["n"],
        "n_pairs": result["n_pairs"],
        "region_recall": result.get("region_recall"),
        "failed": result["failed"],
        "seconds_per_item": result.get("seconds_per_item"),
        "by_category": {k: v["accuracy"] for k, v in result["by_category"].items()},
        "by": {key: {k: v["accuracy"] for k, v in table.items()}
               for key, table in result.get("by", {}).items()},
    }
    if result.get("run_id") is not None:
        out["result"] = f"{RUNS_DIR}/bench-{result['run_id']}/{RESULT_FILE}"
    return out


def parse_run_id(value: Any) -> int:
    """A run id from an int or a label like ``"#12 pixel on ..."``.

    >>> parse_run_id(12), parse_run_id("#12 pixel on x"), parse_run_id(" 7 ")
    (12, 12, 7)
    """
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    match = re.match(r"\s*#?(\d+)\b", str(value or ""))
    if match is None:
        raise InputError(f"pick a run first (got {value!r})")
    return int(match.group(1))


def load_result(store: Store, root: Path, run_id: Any) -> dict[str, Any]:
    """The stored results of a finished bench run."""
    run = store.run(parse_run_id(run_id))
    if run["kind"] != "bench":
        raise InputError(f"run {run['id']} is an {run['kind']} run, not a bench run")
    if run["status"] != "done":
        why = f": {run['error']}" if run.get("error") else ""
        raise InputError(f"run {run['id']} is {run['status']}{why}; it has no results to show")
    try:
        folder = resolve_inside(root, run["out_dir"] or "")
        with (folder / RESULT_FILE).open(encoding="utf-8") as fh:
            result: dict[str, Any] = json.load(fh)
    except (OSError, ValueError, StudioError) as err:
        raise InputError(f"the results of run {run['id']} cannot be read ({err}); "
                         "run the bench again") from None
    result.setdefault("run_id", run["id"])
    return result


def bench_runs(store: Store, limit: int = 200) -> list[dict[str, Any]]:
    """The latest bench runs, newest first: id, name, status, created_at, accuracy."""
    rows = []
    for run in store.runs("bench")[:limit]:
        acc = store.metrics(run["id"], "accuracy")
        rows.append({"id": run["id"], "name": run["name"], "status": run["status"],
                     "created_at": run["created_at"], "error": run["error"],
                     "accuracy": acc[-1]["value"] if acc and run["status"] == "done" else None})
    return rows


def run_label(row: Mapping[str, Any]) -> str:
    """``#3 pixel on synth/pairs.jsonl: 0.833`` (or the status when not done)."""
    tail = (f"{row['accuracy']:.3f}" if row.get("accuracy") is not None
            else str(row["status"]))
    return f"#{row['id']} {row['name']}: {tail}"


def accuracy_rows(result: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per accuracy figure: overall, then per category, then per ``by`` key."""

    def row(group: str, label: str, r: Mapping[str, Any]) -> dict[str, Any]:
        ci = r.get("accuracy_ci") or [None, None]
        return {"group": group, "label": label, "n": r["n"],
                "pairs": r.get("pairs", r.get("n_pairs")), "accuracy": r["accuracy"],
                "ci_low": ci[0], "ci_high": ci[1], "failed": r.get("failed", 0)}

    rows = [row("overall", "all", result)]
    rows += [row("category", k, v) for k, v in result.get("by_category", {}).items()]
    for key, table in result.get("by", {}).items():
        rows += [row(key, k, v) for k, v in table.items()]
    return rows


def score_samples(result: Mapping[str, Any]) -> dict[str, list[float]]:
    """Model scores of the humans' preferred candidates and of the others, over items
    with a strict human order (the score distribution chart)."""
    preferred: list[float] = []
    other: list[float] = []
    for item in result.get("items", []):
        ranking = item.get("ranking")
        if item.get("kind") != "evaluated" or not ranking:
            continue
        top = ranking[0] if isinstance(ranking[0], list) else [ranking[0]]
        for k, score in enumerate(item["scores"]):
            if score is not None:
                (preferred if k in top else other).append(float(score))
    return {"preferred": preferred, "other": other}


def compare_runs(store: Store, root: Path, a: Any, b: Any) -> dict[str, Any]:
    """Two runs' accuracies side by side: ``{"a": headline, "b": headline, "rows":
    [{group, label, a, b, delta, n_a, n_b}]}`` over the union of their groups."""
    ra, rb = load_result(store, root, a), load_result(store, root, b)
    ta = {(r["group"], r["label"]): r for r in accuracy_rows(ra)}
    tb = {(r["group"], r["label"]): r for r in accuracy_rows(rb)}
    rows = []
    for key in [*ta, *(k for k in tb if k not in ta)]:
        x, y = ta.get(key, {}), tb.get(key, {})
        acc_a, acc_b = x.get("accuracy"), y.get("accuracy")
        rows.append({"group": key[0], "label": key[1], "a": acc_a, "b": acc_b,
                     "delta": None if acc_a is None or acc_b is None else acc_b - acc_a,
                     "n_a": x.get("n"), "n_b": y.get("n")})
    return {"a": summary(ra), "b": summary(rb), "rows": rows}


__all__ = [
    "accuracy_rows", "bench_runs", "compare_runs", "final_figures", "load_result",
    "parse_run_id", "run_label", "run_recorded", "score_samples", "summary",
]
