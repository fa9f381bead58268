"""Training exports of the human judgments: EditReward pairs and SFT chats, loaded back
with the libraries the training tools use (``datasets``, ``json``) and our own parser."""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import datasets
import numpy as np
import pytest
from PIL import Image

from spatialreward.errors import InputError
from spatialreward.judgment import Judgment, Region
from spatialreward.learning_export import (
    DATASET_INFO_FILE,
    EDITREWARD_FILE,
    MANIFEST_FILE,
    REJECTED_SCORE,
    SFT_DATASET_NAME,
    SFT_FILE,
    add_parser,
    export_training,
    preference_pairs,
    rank_scores,
)
from spatialreward.protocol import parse_judgment
from spatialreward.vlm.prompts import load_prompts
from storage.paths import resolve_inside
from storage.store import Store


def tiny(seed: int) -> bytes:
    arr = np.random.default_rng(seed).integers(0, 255, (16, 20, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def add_item(store: Store, seed: int, n: int) -> int:
    return store.add_item(f"make object {seed} blue", tiny(seed * 100),
                          [tiny(seed * 100 + k + 1) for k in range(n)], uid=f"item-{seed}")


@pytest.fixture
def store(tmp_path: Path):
    """Four voted items by a person (2 candidates with scores and a drawn region; a
    3-candidate ranking with a model judgment's region; a tie; both bad) and one vote by
    a simulated annotator."""
    s = Store.open(tmp_path / "db" / "studio.db")
    s.add_annotator("alice")
    s.add_annotator("sim-10", kind="simulated")
    a, b, c, d = add_item(s, 1, 2), add_item(s, 2, 3), add_item(s, 3, 2), add_item(s, 4, 2)
    s.add_human_judgment(a, "alice", 1, scores={1: {"instruction": 8, "preservation": 6,
                                                    "quality": 9}, 0: {"instruction": 2}},
                         regions=[{"candidate": 1, "bbox_2d": [100, 200, 300, 400],
                                   "label": "cup"}])
    s.add_human_judgment(b, "alice", [2, 0, 1])
    s.add_human_judgment(c, "alice", "tie")
    s.add_human_judgment(d, "alice", "both_bad")
    s.add_human_judgment(a, "sim-10", 0)
    s.add_model_judgment(b, 0, Judgment(
        status="ok", sc=(20, 18), pq=(20, 20), backend="mini", backend_version="t",
        regions=(Region(id=0, label="hat", bbox_2d=(10, 20, 50, 60)),),
        reasoning="<|bbox_0|> hat <|global|> ok"))
    yield s
    s.close()


def load_rows(path: Path, cache: Path) -> list[dict]:
    """The file through Hugging Face ``datasets`` (what LLaMA-Factory and ms-swift load
    it with), checked against a plain ``json`` read."""
    ds = datasets.load_dataset("json", data_files=str(path), split="train",
                               cache_dir=str(cache))
    text = path.read_text(encoding="utf-8")
    plain = json.loads(text) if path.suffix == ".json" else [
        json.loads(line) for line in text.splitlines()]
    assert ds.num_rows == len(plain)
    for row, raw in zip(ds, plain, strict=True):
        for key in ("path_src", "path1", "path2", "prompt", "images", "messages"):
            if key in raw:
                assert row[key] == raw[key]
    return plain


def assert_inside(out: Path, rel: str) -> None:
    assert not Path(rel).is_absolute()
    assert resolve_inside(out, rel).is_file()  # refuses a path leading out of out


# -- pure helpers --------------------------------------------------------------------


def test_rankings_expand_to_their_pairs_and_ties_count_apart():
    assert preference_pairs([[0], [1], [2]]) == ([(0, 1), (0, 2), (1, 2)], 0)
    assert preference_pairs([[1, 2], [0]]) == ([(1, 0), (2, 0)], 1)
    assert rank_scores([[0, 1, 2]], False) == {}
    assert set(rank_scores([[3, 5]], True).values()) == {REJECTED_SCORE}


# -- EditReward ----------------------------------------------------------------------


def test_editreward_export_has_one_record_per_preferred_pair(store, tmp_path):
    out = tmp_path / "er"
    counts = export_training(store, out, "editreward")
    assert counts == {"items": 4, "judgments": 4, "skipped_other_kinds": 1, "pairs": 4,
                      "tied_pairs": 1, "ties": 1, "both_bad": 1, "images": 7}
    rows = load_rows(out / EDITREWARD_FILE, tmp_path / "cache")
    assert len(rows) == 4
    for r in rows:
        for key in ("path_src", "path1", "path2"):
            assert_inside(out, r[key])
        assert r["path1"] != r["path2"] and r["tie_case"] is False
    item_b = load_item_images(store, "item-2")
    pairs_b = [(r["path1"], r["path2"]) for r in rows if r["item"] == "item-2"]
    assert [(item_b.index(a), item_b.index(b)) for a, b in pairs_b] == [(2, 0), (2, 1),
                                                                        (0, 1)]
    (a,) = [r for r in rows if r["item"] == "item-1"]
    assert a["prompt"] == "make object 1 blue" and a["candidates"] == [1, 0]
    # human 0..10 on EditReward's 1..4 scales; overall = dim1 + dim2; missing -> null
    assert (a["model1_dim1_score"], a["model1_dim2_score"], a["model1_overall_score"]) == (
        3.4, 3.7, 7.1)
    assert (a["model2_dim1_score"], a["model2_dim2_score"]) == (1.6, None)
    assert rows[1]["model1_dim1_score"] is None  # item-2: a ranking without scores


def load_item_images(store: Store, uid: str) -> list[str]:
    item = store.item(store.item_by_uid(uid))
    return [f"images/{sha}.png" for sha in item["candidates"]]


def test_kinds_filter_and_manifest(store, tmp_path):
    out = tmp_path / "er"
    export_training(store, out, "editreward")
    manifest = json.loads((out / MANIFEST_FILE).read_text())
    assert manifest["kinds"] == ["human"]
    assert manifest["judgments_by_kind"] == {"human": 4, "simulated": 0}
    assert manifest["counts"]["pairs"] == 4 and "export-training" in manifest["command"]
    both = export_training(store, tmp_path / "all", "editreward", kinds=("human", "simulated"))
    assert (both["pairs"], both["judgments"], both["skipped_other_kinds"]) == (5, 5, 0)
    sim = export_training(store, tmp_path / "sim", "editreward", kinds=["simulated"])
    assert (sim["pairs"], sim["items"]) == (1, 1)
    (row,) = json.loads((tmp_path / "sim" / EDITREWARD_FILE).read_text())
    assert row["annotator_kind"] == "simulated"


# -- SFT -----------------------------------------------------------------------------


def test_sft_export_loads_and_parses_back_to_the_votes(store, tmp_path):
    out = tmp_path / "sft"
    counts = export_training(store, out, "sft")
    assert counts == {"items": 4, "judgments": 4, "skipped_other_kinds": 1, "sc_records": 7,
                      "pq_records": 1, "sft_skipped_no_score": 2,
                      "sft_skipped_no_regions": 0, "regions_human": 1, "regions_model": 1,
                      "regions_none": 5, "images": 10}
    rows = load_rows(out / SFT_FILE, tmp_path / "cache")
    prompts = load_prompts("spatialreward")
    got = {}
    for r in rows:
        user, answer = r["messages"]
        assert (user["role"], answer["role"]) == ("user", "assistant")
        assert user["content"].count("<image>") == len(r["images"])
        for rel in r["images"]:
            assert_inside(out, rel)
        instruction = store.item(store.item_by_uid(r["item"]))["instruction"]
        call = prompts.sc if r["call"] == "sc" else prompts.pq
        assert user["content"].endswith(call.text(instruction))  # our own prompt
        j = (parse_judgment(answer["content"], None) if r["call"] == "sc"
             else parse_judgment(None, answer["content"]))
        assert j.status == "ok" and j.warnings == ()
        got[(r["item"], r["candidate"], r["call"])] = j
    a1 = got[("item-1", 1, "sc")]
    assert a1.sc == (20.0, 15.0)  # instruction 8, preservation 6 (x 2.5)
    assert [(r.id, r.label, r.bbox_2d) for r in a1.regions] == [(0, "cup", (100, 200, 300, 400))]
    assert a1.reasoning.startswith("<|bbox_0|>") and "<|global|>" in a1.reasoning
    assert got[("item-1", 1, "pq")].pq == (22.5, 22.5)
    assert got[("item-1", 0, "sc")].sc == (5.0, REJECTED_SCORE)  # instruction 2; rest: rank
    assert [got[("item-2", k, "sc")].sc for k in (2, 0, 1)] == [(22.0, 22.0), (13.5, 13.5),
                                                                (5.0, 5.0)]
    assert got[("item-2", 0, "sc")].regions[0].bbox_2d == (10, 20, 50, 60)  # the model's
    assert got[("item-2", 1, "sc")].regions == ()
    assert {k for k in got if k[0] == "item-3"} == set()  # a tie without scores: nothing
    assert got[("item-4", 0, "sc")].sc == (REJECTED_SCORE, REJECTED_SCORE)
    assert "bad" in got[("item-4", 0, "sc")].reasoning


def test_require_regions_keeps_only_edits_with_known_regions(store, tmp_path):
    out = tmp_path / "sft"
    counts = export_training(store, out, "sft", require_regions=True)
    assert (counts["sc_records"], counts["sft_skipped_no_regions"]) == (2, 5)
    assert counts["pq_records"] == 1  # a quality score needs no region
    rows = load_rows(out / SFT_FILE, tmp_path / "cache")
    assert sorted((r["item"], r["candidate"]) for r in rows if r["call"] == "sc") == [
        ("item-1", 1), ("item-2", 0)]
    assert all(parse_judgment(r["messages"][1]["content"], None).regions
               for r in rows if r["call"] == "sc")
    assert "--require-regions" in json.loads((out / MANIFEST_FILE).read_text())["command"]


def test_sft_dataset_info_names_the_file_for_llama_factory(store, tmp_path):
    out = tmp_path / "sft"
    export_training(store, out, "sft")
    info = json.loads((out / DATASET_INFO_FILE).read_text())[SFT_DATASET_NAME]
    assert info["file_name"] == SFT_FILE and info["formatting"] == "sharegpt"
    assert info["columns"] == {"messages": "messages", "images": "images"}
    assert (out / info["file_name"]).is_file()


# -- refusals and the command line ---------------------------------------------------


def test_nothing_to_export_is_refused_with_the_reason(tmp_path):
    with Store.open(tmp_path / "studio.db") as s:
        s.add_annotator("bob")
        s.add_human_judgment(add_item(s, 7, 2), "bob", "tie")
        with pytest.raises(InputError, match="no preference"):
            export_training(s, tmp_path / "out", "editreward")
        with pytest.raises(InputError, match="no current judgments by simulated"):
            export_training(s, tmp_path / "out", "editreward", kinds=["simulated"])
        with pytest.raises(InputError, match="unknown export format"):
            export_training(s, tmp_path / "out", "csv")
        with pytest.raises(InputError, match="data folder"):
            export_training(s, tmp_path, "sft")
    assert not (tmp_path / "out").exists()


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m spatialreward")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return parser


def test_the_command_exports_from_a_store_file(store, tmp_path, capsys):
    out = tmp_path / "cli"
    args = make_parser().parse_args(["export-training", str(out), "--format", "sft",
                                     "--db", str(store.path)])
    assert args.kinds == ["human"]
    assert args.func(args) == 0
    assert "7 sc records" in capsys.readouterr().out
    manifest = json.loads((out / MANIFEST_FILE).read_text())
    assert manifest["command"].split()[3:6] == ["export-training", str(out), "--format"]
    assert manifest["counts"]["sc_records"] == 7
    missing = make_parser().parse_args(["export-training", str(out), "--format",
                                        "editreward", "--db", str(tmp_path / "none.db")])
    with pytest.raises(InputError, match="no store at"):
        missing.func(missing)
    assert not (tmp_path / "none.db").exists()
    with pytest.raises(SystemExit):
        make_parser().parse_args(["export-training", str(out), "--format", "csv"])
