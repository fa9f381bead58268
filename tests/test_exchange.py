"""Export and import of the judgment store (storage/exchange.py): JSONL folders and Parquet."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from spatialreward.backends import load_reward_model
from spatialreward.errors import DataImportError, UnsafePathError
from storage.exchange import export_pairs, export_parquet, import_pairs, import_parquet
from storage.store import Store


def tiny(seed: int, size: int = 16) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8)


def encode(arr: np.ndarray, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt)
    return buf.getvalue()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def open_store(folder: Path) -> Store:
    return Store.open(folder / "studio.db")


def snapshot(store: Store) -> tuple[dict[str, int], list[str]]:
    """Row counts of every table and the image files on disk."""
    assert store.data_dir is not None
    files = sorted(p.relative_to(store.data_dir).as_posix()
                   for p in (store.data_dir / "images").rglob("*") if p.is_file())
    return store.stats()["tables"], files


def current(store: Store) -> list[tuple[Any, ...]]:
    """Current human judgments without the store's own ids."""
    uid = {i: store.item(i)["uid"] for i in store.item_ids()}
    return [(uid[j.item_id], j.annotator, j.ranking, j.preferred, j.both_bad, j.scores,
             j.regions, j.comment, j.seconds_spent, j.created_at)
            for j in store.human_judgments()]


@pytest.fixture
def populated(tmp_path: Path) -> Store:
    """3 items (PNG and JPEG), 3 annotators, edits, an undo, scores, regions, model judgments."""
    s = open_store(tmp_path / "a")
    edited = tiny(2)
    edited[4:10, 4:10] = (255, 0, 0)
    a = s.add_item("make the square red", encode(tiny(1)), [encode(tiny(3)), encode(edited)],
                   uid="item-a", category="recolor", truth_ranking=[1, 0],
                   truth_regions=[[250, 250, 625, 625]], origin_dataset="hand", origin_file="x",
                   origin_id="a", metadata={"flaw": "none", "nested": {"k": [1, 2]}})
    b = s.add_item("remove the cup", encode(tiny(4), "JPEG"),
                   [encode(tiny(5), "JPEG"), encode(tiny(6))], uid="item-b")
    c = s.add_item("add a star", encode(tiny(7)), [encode(tiny(k)) for k in (8, 9, 10)],
                   uid="item-c", dimension="consistency", truth_ranking=[2, [0, 1]])
    s.add_annotator("alice", password="secret-pass")
    s.add_annotator("bob", role="researcher")
    s.add_annotator("carol", role="admin")
    first = s.add_human_judgment(a, "alice", 1, scores={1: {"overall": 8, "quality": 6.5}},
                                 regions=[{"candidate": 1, "bbox_2d": [200, 200, 700, 700],
                                           "label": "square"}], seconds_spent=12.5)
    second = s.add_human_judgment(a, "alice", 0, comment="changed my mind", supersedes=first)
    s.add_human_judgment(a, "alice", "tie", supersedes=second)  # an edit of an edit
    s.add_human_judgment(a, "bob", "tie")
    bad = s.add_human_judgment(b, "bob", "both_bad")
    s.undo_human_judgment(bad, "bob")
    s.add_human_judgment(b, "carol", 0)
    s.add_human_judgment(c, "carol", [2, [0, 1]], seconds_spent=3.0, comment="ünïcode")
    s.judge_item(a, load_reward_model("pixel"))
    yield s
    s.close()


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def parquet_rows(path: Path) -> list[dict[str, Any]]:
    """Decoded rows; image structs compared by their bytes (paths are export file names)."""
    rows = pq.read_table(path).to_pylist()
    for r in rows:
        r["source"] = r["source"]["bytes"]
        r["candidates"] = [c["bytes"] for c in r["candidates"]]
        for key in ("ranking", "regions", "metadata", "human_judgments", "model_judgments"):
            r[key] = None if r[key] is None else json.loads(r[key])
    return rows


# -- round trips ------------------------------------------------------------------------------


def test_jsonl_round_trip(populated, tmp_path):
    assert export_pairs(populated, tmp_path / "out1") == 3
    rows = read_jsonl(tmp_path / "out1" / "pairs.jsonl")
    assert [r["id"] for r in rows] == ["item-a", "item-b", "item-c"]
    a = rows[0]
    assert a["ranking"] == [1, 0] and a["regions"] == [[250, 250, 625, 625]]
    assert a["origin"] == {"dataset": "hand", "file": "x", "id": "a"}
    assert a["metadata"] == {"flaw": "none", "nested": {"k": [1, 2]}}
    history = a["human_judgments"]
    assert [(h["id"], h["annotator"], h["supersedes"]) for h in history] == [
        (1, "alice", None), (2, "alice", 1), (3, "alice", 2), (4, "bob", None)]
    assert history[0]["scores"] == {"1": {"overall": 8.0, "quality": 6.5}}
    assert history[0]["annotator_role"] == "annotator"
    assert [h["kind"] for h in rows[1]["human_judgments"]] == ["judgment", "retraction",
                                                               "judgment"]
    assert len(a["model_judgments"]) == 2 and a["model_judgments"][0]["backend"] == "pixel"
    text = (tmp_path / "out1" / "pairs.jsonl").read_text(encoding="utf-8")
    assert "argon2" not in text and "password" not in text  # never exported
    for r in rows:  # relative paths to content-addressed copies of the original bytes
        for rel in [r["source"], *r["candidates"]]:
            data = (tmp_path / "out1" / rel).read_bytes()
            assert rel == f"images/{sha(data)}.{rel.rsplit('.', 1)[1]}"
            assert data == populated.image_bytes(sha(data))
    assert {p.suffix for p in (tmp_path / "out1" / "images").iterdir()} == {".png", ".jpeg"}

    with open_store(tmp_path / "b") as fresh:
        counts = import_pairs(fresh, tmp_path / "out1" / "pairs.jsonl")
        assert counts == {"items": 3, "human_judgments": 8, "model_judgments": 2, "skipped": 0,
                          "dropped_human_judgments": 0}
        assert export_pairs(fresh, tmp_path / "out2") == 3
        assert read_jsonl(tmp_path / "out2" / "pairs.jsonl") == rows
        assert current(fresh) == current(populated)
        assert fresh.integrity() == []
        assert {a["name"]: (a["role"], a["has_password"]) for a in fresh.annotators()} == {
            "alice": ("annotator", 0), "bob": ("researcher", 0), "carol": ("admin", 0)}
        item = fresh.item(fresh.item_by_uid("item-a"))
        assert item["candidates"] == populated.item(populated.item_by_uid("item-a"))["candidates"]
    files1 = {p.name: p.read_bytes() for p in (tmp_path / "out1" / "images").iterdir()}
    files2 = {p.name: p.read_bytes() for p in (tmp_path / "out2" / "images").iterdir()}
    assert files1 == files2


def test_parquet_round_trip(populated, tmp_path):
    assert export_parquet(populated, tmp_path / "one.parquet") == 3
    rows = parquet_rows(tmp_path / "one.parquet")
    jsonl = {r["id"]: r for r in (export_pairs(populated, tmp_path / "j") and
                                  read_jsonl(tmp_path / "j" / "pairs.jsonl"))}
    for r in rows:  # the same content as the JSONL export
        j = jsonl[r["id"]]
        assert r["human_judgments"] == j["human_judgments"]
        assert r["model_judgments"] == j["model_judgments"]
        assert r["metadata"] == j["metadata"] and r["ranking"] == j["ranking"]
        assert (r["origin_dataset"], r["origin_file"], r["origin_id"]) == tuple(
            j["origin"].values())
        assert sha(r["source"]) == Path(j["source"]).stem
    with open_store(tmp_path / "b") as fresh:
        counts = import_parquet(fresh, tmp_path / "one.parquet")
        assert counts == {"items": 3, "human_judgments": 8, "model_judgments": 2, "skipped": 0,
                          "dropped_human_judgments": 0}
        export_parquet(fresh, tmp_path / "two.parquet")
        assert parquet_rows(tmp_path / "two.parquet") == rows
        assert current(fresh) == current(populated)
        assert fresh.integrity() == []


def test_parquet_loads_with_datasets(populated, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    datasets = pytest.importorskip("datasets")
    path = tmp_path / "export.parquet"
    export_parquet(populated, path)
    ds = datasets.load_dataset("parquet", data_files=str(path), split="train",
                               cache_dir=str(tmp_path / "hf"))
    assert isinstance(ds.features["source"], datasets.Image)
    assert isinstance(ds.features["candidates"].feature, datasets.Image)
    assert len(ds) == 3
    ids = populated.item_ids()
    assert ds["instruction"] == [populated.item(i)["instruction"] for i in ids]
    for row, item_id in zip(ds, ids, strict=True):
        item = populated.item(item_id)
        shas = [item["source_sha256"], *item["candidates"]]
        images = [row["source"], *row["candidates"]]
        assert len(images) == len(shas)
        for image, digest in zip(images, shas, strict=True):
            original = Image.open(io.BytesIO(populated.image_bytes(digest)))
            assert isinstance(image, Image.Image)
            assert np.array_equal(np.asarray(image), np.asarray(original))
        assert json.loads(row["human_judgments"])[0]["created_at"]


def test_import_synthedit_folder(tmp_path):
    from spatialreward.synth.generate import SynthConfig, generate

    out = tmp_path / "synth"
    generate(SynthConfig(out=out, n=4, seed=3, split="test", group_size=2, workers=1),
             progress=False)
    lines = read_jsonl(out / "pairs.jsonl")
    with open_store(tmp_path / "s") as store:
        counts = import_pairs(store, out / "pairs.jsonl", dataset="synthedit-test")
        assert counts == {"items": 4, "human_judgments": 0, "model_judgments": 0, "skipped": 0,
                          "dropped_human_judgments": 0}
        for line in lines:
            item = store.item(store.item_by_uid(line["id"]))
            assert item["truth_ranking"] == line["ranking"]
            assert item["truth_regions"] == line["regions"]
            assert item["origin_dataset"] == "synthedit-test"
            assert item["origin_id"] == line["id"] and item["origin_file"] == "pairs.jsonl"
            assert item["metadata"]["flaw"] == line["flaw"]
            assert store.image_bytes(item["candidates"][1]) == (out / line["candidates"][1]
                                                                ).read_bytes()
        assert store.integrity() == []


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_importing_twice_changes_nothing(populated, tmp_path, fmt):
    if fmt == "jsonl":
        export_pairs(populated, tmp_path / "out")
        path, load = tmp_path / "out" / "pairs.jsonl", import_pairs
    else:
        path, load = tmp_path / "out.parquet", import_parquet
        export_parquet(populated, path)
    with open_store(tmp_path / "b") as fresh:
        load(fresh, path)
        before = snapshot(fresh), current(fresh)
        assert load(fresh, path) == {"items": 0, "human_judgments": 0, "model_judgments": 0,
                                     "skipped": 3 + 8 + 2,
                                     "dropped_human_judgments": 0}
        assert (snapshot(fresh), current(fresh)) == before
    # Into the store it came from: everything is already there.
    before = snapshot(populated)
    assert load(populated, path)["skipped"] == 13
    assert snapshot(populated) == before


def test_import_adds_new_history_to_an_existing_item(populated, tmp_path):
    export_pairs(populated, tmp_path / "out")
    with open_store(tmp_path / "b") as other:
        import_pairs(other, tmp_path / "out" / "pairs.jsonl")
        item = other.item_by_uid("item-c")
        (old,) = other.human_judgments(item, annotator="carol")
        other.add_human_judgment(item, "carol", 0, supersedes=old.id)
        other.add_annotator("dave")
        other.add_human_judgment(item, "dave", 1)
        export_pairs(other, tmp_path / "back")
    counts = import_pairs(populated, tmp_path / "back" / "pairs.jsonl")
    assert counts == {"items": 0, "human_judgments": 2, "model_judgments": 0, "skipped": 13,
                      "dropped_human_judgments": 0}
    item = populated.item_by_uid("item-c")
    assert {(j.annotator, j.preferred) for j in populated.human_judgments(item)} == {
        ("carol", 0), ("dave", 1)}
    assert populated.integrity() == []


# -- all or nothing -----------------------------------------------------------------------------


def good_lines(folder: Path) -> list[dict[str, Any]]:
    """Two valid plain items with images the populated store does not hold."""
    (folder / "img").mkdir(parents=True)
    lines = []
    for k in range(2):
        names = []
        for j in range(3):
            name = f"img/{k}_{j}.png"
            (folder / name).write_bytes(encode(tiny(100 + 10 * k + j)))
            names.append(name)
        lines.append({"id": f"new-{k}", "instruction": f"edit {k}", "source": names[0],
                      "candidates": names[1:], "ranking": [0, 1]})
    return lines


def judged(line: dict[str, Any], **human: Any) -> dict[str, Any]:
    h = {"annotator": "zed", "ranking": [0, 1], "created_at": "2025-01-02T03:04:05+00:00"}
    return {**line, "id": "new-judged", "human_judgments": [{**h, **human}]}


BAD_LINES = {
    "malformed JSON": lambda line: '{"id": "x", "instruction": ',
    "missing image": lambda line: {**line, "id": "x", "candidates": [line["candidates"][0],
                                                                     "img/missing.png"]},
    "not an image": lambda line: {**line, "id": "x", "source": "pairs.jsonl"},
    "preference out of range": lambda line: judged(line, preference=5),
    "preferred contradicts ranking": lambda line: judged(line, preferred=1),
    "supersedes unknown row": lambda line: judged(line, supersedes=7),
    "retraction without target": lambda line: judged(line, kind="retraction"),
    "score out of range": lambda line: judged(line, scores={"0": {"overall": 11}}),
    "missing created_at": lambda line: judged(line, created_at=None),
    "bad model judgment": lambda line: {**line, "id": "x", "model_judgments": [
        {"candidate": 0, "judgment": {"status": "maybe"}}]},
    "item id taken by other images": lambda line: {**line, "id": "item-a"},
}


@pytest.mark.parametrize("case", list(BAD_LINES))
def test_a_bad_last_line_imports_nothing(populated, tmp_path, case):
    folder = tmp_path / "in"
    lines: list[Any] = good_lines(folder)
    lines.append(BAD_LINES[case](lines[0]))
    path = folder / "pairs.jsonl"
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines),
                    encoding="utf-8")
    before = snapshot(populated), current(populated)
    with pytest.raises(DataImportError) as info:
        import_pairs(populated, path)
    assert f"{path}:3" in str(info.value) and "nothing was imported" in str(info.value)
    assert (snapshot(populated), current(populated)) == before


def test_a_path_out_of_the_folder_is_refused(populated, tmp_path):
    folder = tmp_path / "in"
    lines = good_lines(folder)
    (tmp_path / "x.png").write_bytes(encode(tiny(99)))
    lines.append({**lines[0], "id": "escape", "source": "../x.png"})
    path = folder / "pairs.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    before = snapshot(populated)
    with pytest.raises(UnsafePathError, match="points outside"):
        import_pairs(populated, path)
    assert snapshot(populated) == before


def test_a_write_failure_rolls_back_rows_and_image_files(populated, tmp_path, monkeypatch):
    """Past validation, a failure while writing (here: the model judgments of the last
    item) still leaves no rows and no image files behind."""
    folder = tmp_path / "in"
    lines: list[dict[str, Any]] = good_lines(folder)
    export_pairs(populated, tmp_path / "out")
    model = read_jsonl(tmp_path / "out" / "pairs.jsonl")[0]["model_judgments"][:1]
    lines[-1] = {**lines[-1], "model_judgments": model}
    path = folder / "pairs.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")

    def fail(*args: Any, **kw: Any) -> int:
        raise OSError("disk full")

    monkeypatch.setattr(populated, "add_model_judgment", fail)
    before = snapshot(populated)
    with pytest.raises(DataImportError, match="disk full"):
        import_pairs(populated, path)
    assert snapshot(populated) == before


def test_parquet_missing_a_column_imports_nothing(populated, tmp_path):
    path = tmp_path / "out.parquet"
    export_parquet(populated, path)
    table = pq.read_table(path)
    pq.write_table(table.drop_columns(["candidates"]), tmp_path / "bad.parquet")
    with open_store(tmp_path / "b") as fresh:
        before = snapshot(fresh)
        with pytest.raises(DataImportError, match="candidates"):
            import_parquet(fresh, tmp_path / "bad.parquet")
        assert snapshot(fresh) == before


def test_parquet_bad_last_row_imports_nothing(populated, tmp_path):
    path = tmp_path / "out.parquet"
    export_parquet(populated, path)
    table = pq.read_table(path)
    humans = table.column("human_judgments").to_pylist()
    broken = json.loads(humans[-1])
    broken[0]["preference"] = 9
    humans[-1] = json.dumps(broken)
    index = table.schema.get_field_index("human_judgments")
    table = table.set_column(index, "human_judgments", pa.array(humans, pa.string()))
    pq.write_table(table, tmp_path / "bad.parquet")
    with open_store(tmp_path / "b") as fresh:
        before = snapshot(fresh)
        with pytest.raises(DataImportError, match=r"row 2: human_judgments\[0\]: preference 9"):
            import_parquet(fresh, tmp_path / "bad.parquet")
        assert snapshot(fresh) == before
    before = snapshot(populated)
    for name, data in (("nothing.parquet", None), ("cut.parquet", path.read_bytes()[:-100])):
        if data is not None:
            (tmp_path / name).write_bytes(data)
        with pytest.raises(DataImportError, match="not a readable Parquet file"):
            import_parquet(populated, tmp_path / name)
    assert snapshot(populated) == before
