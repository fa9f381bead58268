"""Benchmark loaders: format detection, every schema read into the common item form,
errors that name the columns, and paths that cannot leave their folder."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

from spatialreward.bench import command
from spatialreward.bench.formats import (
    FORMATS,
    BenchFormatError,
    detect_format,
    load_items,
    load_prompts,
    open_benchmark,
)
from spatialreward.bench.loaders import parse_letter_ranking
from spatialreward.bench.tables import EmbeddedImage, TableFile, image_bytes, split_name
from spatialreward.errors import ImageError, StudioError, UnsafePathError
from storage.pairs import PairFormatError
from tests.test_bench_factories import (
    EDITSCORE_ROWS,
    grey,
    hf_image,
    hf_table,
    png,
    write_editscore,
    write_gedit,
    write_merbench,
    write_mmrb2,
    write_mmrb2_json,
    write_parquet,
    write_tiger,
)


def colour(ref) -> tuple[int, int, int]:
    import io

    from PIL import Image

    data = ref.read_bytes() if isinstance(ref, Path) else ref.read()
    return Image.open(io.BytesIO(data)).convert("RGB").getpixel((0, 0))


def test_command_lists_every_format():
    assert command.FORMAT_NAMES == tuple(FORMATS)


def test_detects_each_format(tmp_path):
    gedit, _ = write_gedit(tmp_path)
    (tmp_path / "pairs").mkdir()
    (tmp_path / "pairs" / "pairs.jsonl").write_text("")
    cases = {
        write_editscore(tmp_path): "editscore",
        write_editscore(tmp_path).parents[1]: "editscore",  # the dataset folder
        write_tiger(tmp_path): "tiger",
        write_merbench(tmp_path): "merbench",  # a saved DatasetDict (Arrow)
        write_merbench(tmp_path / "again") / "2pair": "merbench",  # one saved split
        write_mmrb2(tmp_path): "mmrb2",
        write_mmrb2_json(tmp_path): "mmrb2",  # the folder holding edit.json
        write_mmrb2_json(tmp_path / "again") / "edit.json": "mmrb2",
        gedit: "gedit",
        tmp_path / "pairs": "pairs",
        tmp_path / "pairs" / "pairs.jsonl": "pairs",
    }
    for path, name in cases.items():
        assert detect_format(path) == name, path


def test_unknown_columns_name_what_each_format_needs(tmp_path):
    path = write_parquet(tmp_path / "odd.parquet", hf_table({
        "prompt": ("string", ["x"]), "image": ("image", [hf_image(grey(1))])}))
    with pytest.raises(BenchFormatError) as err:
        detect_format(path)
    text = str(err.value)
    assert "Its columns: prompt, image" in text
    assert "editscore (EditReward-Bench (EditScore)) needs key, instruction, task_type" in text
    assert "merbench" in text and "--format" in text
    # a named format that does not fit says which columns are missing
    with pytest.raises(BenchFormatError, match="lacks column.*pair_id.*it has prompt, image"):
        open_benchmark(path, "merbench")
    with pytest.raises(BenchFormatError, match="unknown format 'nope'"):
        open_benchmark(path, "nope")
    with pytest.raises(BenchFormatError, match="no dataset at"):
        detect_format(tmp_path / "missing")
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(BenchFormatError, match="not a benchmark file"):
        detect_format(tmp_path / "notes.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BenchFormatError, match="holds no .parquet"):
        detect_format(tmp_path / "empty")
    with pytest.raises(PairFormatError, match="does not exist"):
        load_items(tmp_path / "gone.jsonl")


def test_editscore_items(tmp_path):
    items = load_items(write_editscore(tmp_path))
    assert len(items) == len(EDITSCORE_ROWS)
    first = items[0]
    assert first.id == "k0a|k0b:overall" and first.category == "color_alter"
    assert first.ranking == ((0,), (1,)) and first.dimension == "overall"
    assert first.metadata == {"task_type": "color_alter", "key": ["k0a", "k0b"]}
    assert [it.dimension for it in items][4:6] == ["prompt_following", "consistency"]
    # images are read lazily, each from its own row group (2 rows per group)
    assert isinstance(items[5].candidates[1], EmbeddedImage)
    assert colour(items[5].candidates[1]) == (100, 250, 255)
    assert colour(items[0].candidates[0]) == grey(200)
    assert colour(items[6].source) == grey(0)
    assert len(load_items(write_editscore(tmp_path / "b"), limit=3)) == 3


def test_tiger_pairs_and_letters(tmp_path):
    items = load_items(write_tiger(tmp_path))
    by_id = {it.id: it for it in items}
    assert [it.category for it in items] == ["2pair"] * 4 + ["3pair"] * 3
    assert by_id["a_1"].ranking == ((0,), (1,)) and by_id["b_1"].ranking == ((1,), (0,))
    assert by_id["c_1"].ranking == ((0, 1),) and by_id["d_1"].ranking == ((0, 1),)
    g = by_id["g_AvsC"]  # candidate_1 is A, candidate_2 is C; "C>A": the second wins
    assert g.ranking == ((1,), (0,)) and g.metadata["comparison"] == "AC"
    assert g.metadata["group"] == "g" and g.metadata["subset"] == "3pair"
    assert g.metadata["models"] == ["m1", "m2"] and g.metadata["human_scores"] == [5.0, 3.0]
    assert colour(g.candidates[1]) == grey(250)


def test_tiger_full_rows_with_more_candidates(tmp_path):
    path = write_parquet(tmp_path / "t.parquet", hf_table({
        "id": ("string", ["r1", "r2"]), "instruction": ("string", ["x", "x"]),
        "source_image": ("image", [hf_image(grey(0))] * 2),
        "candidate_1": ("image", [hf_image(grey(1))] * 2),
        "candidate_2": ("image", [hf_image(grey(2))] * 2),
        "candidate_3": ("image", [hf_image(grey(3))] * 2),
        "ranking": ("string", ["C>A>B", "B>C"]),
        "comparison_type": ("string", ["", "BvsC"]),
    }))
    full, pair = load_items(path, "tiger")
    assert full.ranking == ((2,), (0,), (1,)) and len(full.candidates) == 3
    assert pair.ranking == ((0,), (1,)) and [colour(c) for c in pair.candidates] == [
        grey(2), grey(3)]  # only B and C, as compared


def test_letter_rankings():
    assert parse_letter_ranking("A > B", "AB") == ((0,), (1,))
    assert parse_letter_ranking("a=b=bad", "AB") == ((0, 1),)
    for bad in ("A>C", "A>B>A", "A>B<C", "A"):
        with pytest.raises(ValueError):
            parse_letter_ranking(bad, "AB")


def test_merbench_from_a_saved_dataset_dict(tmp_path):
    items = load_items(write_merbench(tmp_path))
    assert [it.id for it in items] == ["p1", "p2", "p3", "p4"]
    p3 = items[2]
    assert p3.ranking == ((0,), (1,), (2,)) and p3.category == "add"
    assert p3.metadata == {"k": 3, "split": "3pair"}
    assert [colour(c) for c in p3.candidates] == [grey(250), grey(150), grey(200)]


def test_mmrb2_table_and_built_json_agree(tmp_path):
    table = load_items(write_mmrb2(tmp_path))
    built = load_items(write_mmrb2_json(tmp_path))
    assert [it.id for it in table] == [it.id for it in built] == ["x1", "x2", "x3"]
    for a, b in zip(table, built, strict=True):
        assert a.instruction == b.instruction == "Make the sky purple."
        assert a.ranking == b.ranking and a.category == b.category
        assert [colour(c) for c in a.candidates] == [colour(c) for c in b.candidates]
        assert colour(a.source) == colour(b.source) == grey(0)  # the first prompt image
    assert table[0].metadata["prompt_images"] == 1 and table[1].ranking == ((1,), (0,))
    assert table[0].more_sources == built[0].more_sources == ()


def test_mmrb2_edits_from_several_images_keep_every_input_and_the_words(tmp_path):
    from spatialreward.bench.runner import run_bench
    from spatialreward.config import StudioConfig
    from spatialreward.service import Services
    from tests.test_bench_factories import grey, hf_image, hf_table, png, write_parquet

    text = "Put the cup from <image_1> onto the table in <image_2>."
    path = write_parquet(tmp_path / "multi" / "edit" / "test-00000-of-00001.parquet", hf_table({
        "pair_id": ("string", ["m1", "s1"]), "prompt_text": ("string", [text, "Make it red."]),
        "prompt_images": ("images", [[hf_image(grey(0)), hf_image(grey(9))],
                                     [hf_image(grey(0))]]),
        "response_a_text": ("string", ["", ""]), "response_b_text": ("string", ["", ""]),
        "response_a_images": ("images", [[hf_image(grey(200))]] * 2),
        "response_b_images": ("images", [[hf_image(grey(100))]] * 2),
        "response_a_model": ("string", ["a", "a"]), "response_b_model": ("string", ["b", "b"]),
        "chosen": ("string", ["A", "A"]), "prompt_source": ("string", ["x", "x"]),
        "prompt_metadata": ("string", ["{}"] * 2), "human_annotations": ("string", ["[]"] * 2)}))
    multi, single = load_items(path)
    assert multi.instruction == text  # the <image_N> markers stay: they name the inputs
    assert colour(multi.source) == grey(0) and [colour(s) for s in multi.more_sources] == [
        grey(9)]
    assert single.more_sources == ()
    # the built JSON: every prompt image, the last text part as the instruction
    root = tmp_path / "built"
    (root / "im").mkdir(parents=True)
    for name, level in (("s1", 0), ("s2", 9), ("a", 200), ("b", 100)):
        (root / "im" / f"{name}.png").write_bytes(png(grey(level)))
    (root / "edit.json").write_text(json.dumps({"pairs": [{
        "id": "m1", "chosen": "A", "prompt_source": "x",
        "prompt_content": [["image", "im/s1.png"], ["text", "ignored"], ["image", "im/s2.png"],
                           ["text", text]],
        "response_a": {"response_content": [["image", "im/a.png"]]},
        "response_b": {"response_content": [["image", "im/b.png"]]}}]}))
    [built] = load_items(root)
    assert built.instruction == text and len(built.more_sources) == 1
    # the fingerprint covers every input image, not only the first
    from spatialreward.bench.identity import fingerprint

    before = fingerprint([built], root)
    (root / "im" / "s2.png").write_bytes(png(grey(10)))
    [rebuilt] = load_items(root)
    assert fingerprint([rebuilt], root) != before
    # a backend that judges against one source says so: failed, counted, never a score
    services = Services(StudioConfig(db=tmp_path / "s.db"))
    res = run_bench(path, services, "pixel", progress=False)
    assert res["failed"] == 1 and res["n"] == 2
    bad = next(it for it in res["items"] if it["id"] == "m1")
    assert bad["statuses"] == ["backend_error"] * 2 and "not supported" in bad["error"]


def test_mmrb2_json_paths_stay_inside_their_folder(tmp_path):
    root = write_mmrb2_json(tmp_path)
    data = json.loads((root / "edit.json").read_text())
    data["pairs"][0]["response_a"]["response_content"] = [["image", "../../secret.png"]]
    (root / "edit.json").write_text(json.dumps(data))
    with pytest.raises(UnsafePathError):
        load_items(root)


def test_gedit_is_a_prompt_set_until_edits_are_given(tmp_path):
    path, edits = write_gedit(tmp_path)
    prompts = load_prompts(path)
    assert [p.candidates for p in prompts] == [(), (), (), ()]
    assert prompts[0].metadata == {"task_type": "background_change", "language": "en",
                                   "key": "k1", "intersection": True}
    bench = open_benchmark(path, edits=edits)
    assert [it.id for it in bench.items] == ["k1:en", "k2:en", "k4:cn"]
    assert bench.notes == {"missing_edits": 1, "missing_edit_keys": ["k3"]}
    assert colour(bench.items[1].candidates[0]) == (51, 255, 102)
    with pytest.raises(BenchFormatError, match="--edits is for GEdit-Bench"):
        open_benchmark(write_mmrb2(tmp_path), edits=edits)


def test_our_parquet_export_reads_as_pairs(tmp_path):
    from storage.exchange import export_parquet
    from storage.store import Store

    store = Store.open(tmp_path / "s" / "studio.db")
    store.add_item("make it red", png(grey(0)), [png(grey(9)), png(grey(99))], uid="u1",
                   category="recolor", truth_ranking=[1, 0], metadata={"flaw": "none"})
    export_parquet(store, tmp_path / "export.parquet")
    assert detect_format(tmp_path / "export.parquet") == "pairs"
    (item,) = load_items(tmp_path / "export.parquet")
    assert item.id == "u1" and item.ranking == ((1,), (0,)) and item.category == "recolor"
    assert item.metadata["flaw"] == "none" and colour(item.candidates[1]) == grey(99)


def test_store_items_with_a_human_majority(tmp_path):
    from storage.store import Store

    store = Store.open(tmp_path / "studio.db")
    ids = [store.add_item("x", png(grey(0)), [png(grey(k)), png(grey(k + 1))], uid=f"i{k}")
           for k in range(3)]
    for name in ("ann", "bob", "cy"):
        store.add_annotator(name)
    votes = {ids[0]: [0, 0, 1], ids[1]: [1, 1, "tie"], ids[2]: ["tie", "tie", 0]}
    for item_id, prefs in votes.items():
        for name, pref in zip(("ann", "bob", "cy"), prefs, strict=True):
            store.add_human_judgment(item_id, name, pref)
    store.close()
    assert detect_format(tmp_path / "studio.db") == "store"
    bench = open_benchmark(tmp_path / "studio.db")
    assert [it.id for it in bench.items] == ["i0", "i1"]
    assert bench.items[0].ranking == ((0,), (1,)) and bench.items[1].ranking == ((1,), (0,))
    assert bench.items[0].metadata["votes"] == {"0": 2, "1": 1}
    assert bench.items[0].store_item == ids[0]
    assert bench.notes == {"skipped_items": {"no single human pick": 1}}
    assert colour(bench.items[1].candidates[1]) == grey(2)


def test_image_cells(tmp_path):
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "a.png").write_bytes(png(grey(7)))
    assert image_bytes({"bytes": None, "path": "imgs/a.png"}, tmp_path, "cell") == png(grey(7))
    assert image_bytes(b"raw", tmp_path, "cell") == b"raw"
    with pytest.raises(ImageError, match="outside the dataset"):
        image_bytes({"bytes": None, "path": "/etc/passwd"}, tmp_path, "cell")
    with pytest.raises(UnsafePathError):
        image_bytes("../x.png", tmp_path, "cell")
    with pytest.raises(ImageError, match="holds no image"):
        image_bytes({"bytes": None, "path": None}, tmp_path, "cell")
    with pytest.raises(ImageError, match="cannot be read"):
        image_bytes("imgs/missing.png", tmp_path, "cell")
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"PAR1 not really")
    with pytest.raises(StudioError, match="not a readable"):
        TableFile(bad, tmp_path)


def test_split_names_and_shapes(tmp_path):
    assert split_name(Path("2pair/data-00000-of-00001.arrow")) == "2pair"
    table = TableFile(write_parquet(tmp_path / "s.parquet", hf_table({
        "imgs": ("images", [[hf_image(grey(1))] * 3, [], None]),
        "one": ("image", [hf_image(grey(1)), None, hf_image(grey(2))])})), tmp_path)
    assert table.shape("imgs") == [3, 0, 0] and table.shape("one") == [1, 0, 1]
    assert table.image_columns() == ["imgs", "one"]
    assert isinstance(table.schema, pa.Schema)


def test_duplicate_ids_are_reported_identical_or_conflicting_and_the_data_fingerprinted(
        tmp_path):
    from spatialreward.bench.identity import fingerprint
    from tests.test_bench_factories import grey, hf_image, hf_table, write_parquet

    rows = [("x", "A>B", 200), ("x", "A>B", 200), ("y", "A>B", 200), ("y", "B>A", 200),
            ("z", "A>B", 200)]  # y: the same comparison with opposite rankings

    def write(level_of_z: int) -> Path:
        path = tmp_path / "tiger" / "2pair" / "train-00000-of-00001.parquet"
        write_parquet(path, hf_table({
            "id": ("string", [r[0] for r in rows]),
            "instruction": ("string", ["add a hat"] * len(rows)),
            "source_image": ("image", [hf_image(grey(0)) for _ in rows]),
            "candidate_1": ("image", [hf_image(grey(r[2] if r[0] != "z" else level_of_z))
                                      for r in rows]),
            "candidate_2": ("image", [hf_image(grey(100)) for _ in rows]),
            "ranking": ("string", [r[1] for r in rows])}))
        return tmp_path / "tiger"

    folder = write(200)
    bench = open_benchmark(folder)
    dup = bench.notes["duplicates"]
    assert dup["identical"] == ["x"] and dup["conflicting"] == ["y"]
    assert dup["counts"] == {"x": 2, "y": 2} and "renamed" in dup
    assert [it.id for it in bench.items] == ["x", "x#2", "y", "y#2", "z"]
    # the fingerprint follows content: one changed image changes it
    first = fingerprint(bench.items, folder)
    assert first["items"] == 5 and first["revision"] is None
    assert fingerprint(open_benchmark(folder).items, folder) == first
    assert fingerprint(open_benchmark(write(201)).items, folder) != first
    # a git checkout's commit is its revision (read from the files, nothing is run)
    git = folder / ".git"
    (git / "refs" / "heads").mkdir(parents=True)
    (git / "HEAD").write_text("ref: refs/heads/main\n")
    (git / "refs" / "heads" / "main").write_text("a" * 40 + "\n")
    assert fingerprint(bench.items, folder / "2pair")["revision"] == {
        "kind": "git", "id": "a" * 40, "ref": "refs/heads/main"}


def test_the_official_json_layouts_read_like_their_tables(tmp_path):
    from tests.test_bench_factories import grey, png

    root = tmp_path / "sr"
    (root / "images").mkdir(parents=True)
    for level in (0, 100, 150, 200):
        (root / "images" / f"g{level}.png").write_bytes(png(grey(level)))
    # MER-Bench as the SpatialReward repository's 2pair.json / 3pair.json
    (root / "2pair.json").write_text(json.dumps([
        {"pair_id": "2pair_1", "instruction": "remove the cup", "label": "remove",
         "original_image": "images/g0.png",
         "edited_images": [{"edited_image": "images/g200.png", "quality": 2},
                           {"edited_image": "images/g100.png", "quality": 1}]}]))
    (root / "3pair.json").write_text(json.dumps([
        {"pair_id": "3pair_1", "instruction": "add a hat", "original_image": "images/g0.png",
         "edited_images": [{"edited_image": f"images/g{v}.png"} for v in (200, 150, 100)]}]))
    bench = open_benchmark(root)
    assert bench.format == "merbench" and [it.id for it in bench.items] == ["2pair_1", "3pair_1"]
    assert bench.items[1].ranking == ((0,), (1,), (2,)) and bench.items[0].category == "remove"
    assert bench.items[0].metadata == {"k": 2, "split": "2pair"}
    # EditReward-Bench as bench.jsonl, relative paths
    line = {"idx": 0, "key": ["a", "b"], "instruction": "make it red", "task_type": "color_alter",
            "dimension": "overall", "input_image": "images/g0.png",
            "output_images": ["images/g200.png", "images/g100.png"]}
    (root / "bench.jsonl").write_text(json.dumps(line) + "\n")
    erb = open_benchmark(root / "bench.jsonl")
    assert erb.format == "editscore" and erb.items[0].id == "a|b:overall"
    assert erb.items[0].metadata == {"task_type": "color_alter", "key": ["a", "b"]}
    # the released file's absolute paths: refused unless asked for, then read and counted
    line.update(input_image=str(root / "images" / "g0.png"),
                output_images=[str(root / "images" / "g200.png"), "images/g100.png"])
    (root / "bench.jsonl").write_text(json.dumps(line) + "\n")
    with pytest.raises(UnsafePathError, match="--allow-absolute-paths"):
        open_benchmark(root / "bench.jsonl")
    allowed = open_benchmark(root / "bench.jsonl", allow_absolute_paths=True)
    assert allowed.notes["absolute_paths"] == 2
    assert allowed.items[0].source == root / "images" / "g0.png"
    # a relative path still may not leave the folder
    line["output_images"] = ["../outside.png", "images/g100.png"]
    (root / "bench.jsonl").write_text(json.dumps(line) + "\n")
    with pytest.raises(UnsafePathError):
        open_benchmark(root / "bench.jsonl", allow_absolute_paths=True)
