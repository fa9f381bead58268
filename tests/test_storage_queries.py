"""The store owns the SQL: its public query methods, and the modules of storage/ that may
hold SQL (the rest ask the store)."""

from __future__ import annotations

import ast
import io
from pathlib import Path

import numpy as np
import pytest
import sqlite_utils
from PIL import Image

from spatialreward.errors import UnknownAnnotatorError, UnknownItemError
from spatialreward.judgment import Judgment
from storage.store import Store

ROOT = Path(__file__).resolve().parents[1]
SQL_OWNERS = {"connection.py", "images.py", "humans.py", "store.py", "integrity.py",
              "schema.py"}
"""The store's own modules: the only ones in storage/ that hold SQL."""
SQL_WORDS = ("SELECT ", "INSERT ", "UPDATE ", "DELETE ", "PRAGMA ", "CREATE ")


def png(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (8, 8, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def store() -> Store:
    s = Store(sqlite_utils.Database(memory=True))
    s.add_annotator("ann")
    s.add_annotator("bob", role="researcher", password="long enough")
    return s


def add_item(store: Store, seed: int, n: int = 2, truth=None) -> int:
    return store.add_item(f"edit {seed}", png(1000 + seed), [png(seed * 10 + k) for k in range(n)],
                          truth_ranking=truth)


def model(store: Store, item: int, candidate: int, overall: float, backend: str = "m",
          version: str = "1") -> None:
    store.add_model_judgment(item, candidate, Judgment(
        status="ok", sc=(overall, overall), pq=(20.0, 20.0), backend=backend,
        backend_version=version))


# -- the query methods ----------------------------------------------------------------------


def test_item_queries(store: Store) -> None:
    plain, gold = add_item(store, 1), add_item(store, 2, n=3, truth=[2, [0, 1]])
    assert store.item_ids() == [plain, gold]
    assert store.candidate_counts() == {plain: 2, gold: 3}
    assert store.truth_rankings() == {gold: [2, [0, 1]]}


def test_image_queries(store: Store) -> None:
    sha = store.put_image(png(7))
    assert store.image_exists(sha) and not store.image_exists("0" * 64)
    info = store.image_info(sha)
    assert (info["format"], info["width"], info["height"], info["bytes"]) == (
        "PNG", 8, 8, len(png(7)))
    with pytest.raises(UnknownItemError):
        store.image_info("0" * 64)


def test_annotator_queries(store: Store) -> None:
    bob = store.annotator("bob")
    assert (bob["name"], bob["role"], bob["has_password"]) == ("bob", "researcher", 1)
    assert "password_hash" not in bob
    with pytest.raises(UnknownAnnotatorError):
        store.annotator("nobody")


def test_human_judgment_queries(store: Store) -> None:
    x, y = add_item(store, 1), add_item(store, 2)
    first = store.add_human_judgment(x, "ann", 0)
    edit = store.add_human_judgment(x, "ann", 1, supersedes=first)
    on_y = store.add_human_judgment(y, "ann", "tie")
    store.add_human_judgment(y, "bob", "both_bad")
    assert store.last_human_judgment("ann").id == on_y
    assert store.last_human_judgment("ann", x).id == edit
    assert store.last_human_judgment("bob", x) is None
    assert store.judged_item_ids("ann") == {x, y} and store.judged_item_ids("bob") == {y}
    assert store.human_judgment(first).label == "0"  # superseded rows stay readable
    with pytest.raises(UnknownItemError):
        store.human_judgment(999)
    rows = store.human_history(x)
    assert [(r["id"], r["annotator"], r["annotator_role"], r["supersedes"]) for r in rows] == [
        (first, "ann", "annotator", None), (edit, "ann", "annotator", first)]
    assert all("password_hash" not in r for r in rows)
    assert sorted(store.vote_counts()) == sorted([(x, 1, 0, 1), (y, None, 0, 1),
                                                  (y, None, 1, 1)])
    assert [(v["item_id"], v["annotator"], v["preferred"], v["both_bad"])
            for v in store.current_votes()] == [(x, "ann", 1, 0), (y, "ann", None, 0),
                                                (y, "bob", None, 1)]


def test_model_judgment_queries(store: Store) -> None:
    x, y = add_item(store, 1), add_item(store, 2)
    model(store, x, 0, 9.0)
    model(store, x, 1, 2.0)
    model(store, x, 1, 4.0, version="2")  # a later judgment of candidate 1
    model(store, y, 0, 5.0, backend="other")
    assert store.backend_counts() == {"m": 3, "other": 1}
    assert store.overall_scores("m")[x][1] == pytest.approx(
        Judgment(status="ok", sc=(4.0, 4.0), pq=(20.0, 20.0)).overall)
    assert set(store.overall_scores("other")) == {y}
    rows = store.model_judgments(x)
    assert [(r["candidate"], r["backend_version"]) for r in rows] == [(0, "1"), (1, "1"),
                                                                      (1, "2")]
    assert rows[0]["judgment"]["backend"] == "m"  # decoded Judgment.to_dict()
    latest = store.latest_model_judgments(x)
    assert set(latest) == {0, 1} and latest[1]["backend_version"] == "2"
    assert store.latest_model_judgments(x, backend="other") == {}


def test_inserts_keep_ids_and_insert_or_ignore(store: Store) -> None:
    """Rows go in through sqlite-utils' table methods: ids returned as before, repeats
    ignored where they were."""
    x = add_item(store, 1)
    assert add_item(store, 1) == x  # same uid: the stored id
    sha = store.put_image(png(1000 + 1))  # the source again: one row
    assert store.stats()["tables"]["images"] == 3 and store.image_exists(sha)
    model(store, x, 0, 9.0)
    first = store.stats()["tables"]["model_judgments"]
    model(store, x, 0, 9.0)  # same cache key
    assert store.stats()["tables"]["model_judgments"] == first == 1
    run = store.create_run("bench", "r", {"a": 1})
    store.log_metrics(run, 1, {"loss": 0.5, "acc": 0.25})
    store.log_metrics(run, 2, {})
    assert [m["key"] for m in store.metrics(run)] == ["acc", "loss"]
    store.update_run(run, status="running", pid=42, pid_start=7)
    assert (store.run(run)["status"], store.run(run)["pid"]) == ("running", 42)
    with pytest.raises(UnknownItemError, match="no run 999"):
        store.update_run(999, status="done")
    assert store.flag_item(x, "odd") == 1 and store.flagged_items() == [x]
    assert store.integrity() == []


# -- who holds SQL ----------------------------------------------------------------------------


def _modules() -> list[Path]:
    return sorted((ROOT / "storage").glob("*.py"))


@pytest.mark.parametrize("path", [p for p in _modules() if p.name not in SQL_OWNERS],
                         ids=lambda p: p.name)
def test_only_the_store_holds_sql(path: Path) -> None:
    """Outside the store's own modules, storage/ neither writes SQL nor reaches into
    the store (``store._one``, ``store.db``, ``store._lock``...)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, (ast.Name, ast.Attribute)):
            owner = node.value.id if isinstance(node.value, ast.Name) else node.value.attr
            if owner in ("store", "Store") and (node.attr.startswith("_") or node.attr == "db"):
                found.append(f"line {node.lineno}: {owner}.{node.attr}")
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and any(
                node.value.lstrip().upper().startswith(w) for w in SQL_WORDS):
            found.append(f"line {node.lineno}: SQL {node.value[:40]!r}")
    assert not found, f"{path.name} reaches past the store's API: {found}"


def test_no_storage_module_is_over_500_lines() -> None:
    long = {p.name: n for p in _modules()
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > 500}
    assert not long, f"split these modules (one concept each): {long}"
