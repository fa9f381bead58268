"""Tiny benchmark files in each public schema, written the way Hugging Face writes them.

Images are solid-colour PNGs embedded as HF's Image struct ``{bytes, path}`` (lists of
them for ``Sequence(Image)`` columns), with the ``huggingface`` schema metadata that
``datasets`` reads its features from; Parquet files get row groups of 2 rows, so the
lazy row-group reader is exercised. The tests at the bottom load every fixture with the
``datasets`` library itself, proving the layout is the one users' local copies have.

:class:`ColourJudge` is a backend whose scores are read off the edited image's colour
(red -> edit success, green -> over-editing, blue -> both quality scores), so every
expected number in the benchmark tests can be worked out by hand.
"""

from __future__ import annotations

import io
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from spatialreward.config import StudioConfig
from spatialreward.judgment import Judgment
from spatialreward.service import Services

RGB = tuple[int, int, int]


def grey(v: int, b: int = 255) -> RGB:
    """A colour whose red and green are ``v`` (so s1 = s2): its overall grows with v."""
    return (v, v, b)


def png(rgb: RGB, size: int = 24) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), rgb).save(buf, format="PNG")
    return buf.getvalue()


def hf_image(rgb: RGB, name: str | None = None) -> dict[str, Any]:
    return {"bytes": png(rgb), "path": name}


def judgment_of(rgb: RGB) -> Judgment:
    """What :class:`ColourJudge` says about an image of colour ``rgb``."""
    r, g, b = (v / 255 * 25 for v in rgb)
    return Judgment(status="ok", sc=(r, g), pq=(b, b), backend="colour", backend_version="1")


def score(rgb: RGB, dimension: str = "overall") -> float:
    j = judgment_of(rgb)
    value = {"overall": j.overall, "prompt_following": j.prompt_following,
             "consistency": j.consistency}[dimension]
    assert value is not None
    return value


class ColourJudge:
    """A backend that scores the edited image's mean colour (see the module docstring)."""

    name = "colour"

    def __init__(self, version: str = "1", delay: float = 0.0) -> None:
        self.version = version
        self.delay = delay
        self.calls = 0

    def judge(self, source: Any, edited: Any, instruction: str, evidence: Any = None
              ) -> Judgment:
        self.calls += 1
        if self.delay:
            time.sleep(self.delay)
        rgb = np.asarray(edited.convert("RGB"), dtype=np.float64).reshape(-1, 3).mean(0)
        j = judgment_of(tuple(int(round(v)) for v in rgb))  # type: ignore[arg-type]
        return Judgment(status="ok", sc=j.sc, pq=j.pq, backend=self.name,
                        backend_version=self.version)


def services(tmp_path: Path, judge: ColourJudge | None = None) -> Services:
    s = Services(StudioConfig(db=tmp_path / "store" / "studio.db", backend="pixel"))
    s.add_backend("colour", judge or ColourJudge())
    return s


# -- HF-layout tables -----------------------------------------------------------------------

_VALUE = {"string": pa.string(), "bool": pa.bool_(), "int": pa.int64(), "float": pa.float64()}
_IMAGE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])


def _feature(kind: str) -> dict[str, Any]:
    if kind == "image":
        return {"_type": "Image"}
    if kind == "images":
        return {"feature": {"_type": "Image"}, "_type": "List"}
    if kind == "strings":
        return {"feature": {"dtype": "string", "_type": "Value"}, "_type": "List"}
    return {"dtype": {"int": "int64", "float": "float64"}.get(kind, kind), "_type": "Value"}


def _type(kind: str) -> pa.DataType:
    return {"image": _IMAGE, "images": pa.list_(_IMAGE),
            "strings": pa.list_(pa.string())}.get(kind) or _VALUE[kind]


def hf_table(columns: dict[str, tuple[str, list[Any]]]) -> pa.Table:
    """A table with HF feature metadata: ``{name: (kind, values)}``; kinds: image,
    images, string, strings, bool, int, float."""
    features = {name: _feature(kind) for name, (kind, _) in columns.items()}
    schema = pa.schema([(name, _type(kind)) for name, (kind, _) in columns.items()],
                       metadata={"huggingface": json.dumps({"info": {"features": features}})})
    return pa.table({name: values for name, (_, values) in columns.items()}, schema=schema)


def write_parquet(path: Path, table: pa.Table) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, row_group_size=2)
    return path


def write_saved_dataset(folder: Path, table: pa.Table) -> Path:
    """``Dataset.save_to_disk`` layout: an Arrow IPC stream plus its JSON files."""
    folder.mkdir(parents=True, exist_ok=True)
    with pa.OSFile(str(folder / "data-00000-of-00001.arrow"), "wb") as sink, \
            pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    info = json.loads(table.schema.metadata[b"huggingface"])["info"]
    (folder / "dataset_info.json").write_text(json.dumps(info))
    (folder / "state.json").write_text(json.dumps({
        "_data_files": [{"filename": "data-00000-of-00001.arrow"}], "_fingerprint": "x",
        "_format_columns": None, "_format_kwargs": {}, "_format_type": None,
        "_output_all_columns": False, "_split": None}))
    return folder


# -- the fixtures ---------------------------------------------------------------------------

EDITSCORE_ROWS = [  # task type, dimension, preferred image, other image
    ("color_alter", "overall", grey(200), grey(100)),  # right
    ("color_alter", "overall", grey(100), grey(200)),  # wrong
    ("subject-add", "overall", grey(150), grey(150)),  # tie: wrong
    ("subject-add", "overall", grey(250), grey(10)),  # right
    ("subject-add", "prompt_following", (200, 10, 255), (100, 250, 255)),  # red: right
    ("subject-add", "consistency", (200, 10, 255), (100, 250, 255)),  # green: wrong
    ("background_change", "overall", grey(30), grey(20)),  # right
]


def write_editscore(folder: Path) -> Path:
    rows = EDITSCORE_ROWS
    return write_parquet(folder / "editscore" / "data" / "train-00000-of-00001.parquet",
                         hf_table({
        "key": ("strings", [[f"k{i}a", f"k{i}b"] for i in range(len(rows))]),
        "instruction": ("string", ["make it brighter"] * len(rows)),
        "task_type": ("string", [r[0] for r in rows]),
        "dimension": ("string", [r[1] for r in rows]),
        "input_image": ("image", [hf_image(grey(0), "in.png") for _ in rows]),
        "output_images": ("images", [[hf_image(r[2]), hf_image(r[3])] for r in rows]),
    }))


TIGER_2PAIR = [  # id, ranking, candidate_1, candidate_2
    ("a_1", "A>B", grey(200), grey(100)),
    ("b_1", "B>A", grey(200), grey(100)),
    ("c_1", "A=B=Good", grey(150), grey(150)),
    ("d_1", "A=B=Bad", grey(160), grey(150)),
]
TIGER_3PAIR = [  # id, comparison, ranking, candidate_1, candidate_2 (the pair compared)
    ("g_AvsB", "AvsB", "A>B", grey(200), grey(100)),
    ("g_AvsC", "AvsC", "C>A", grey(200), grey(250)),
    ("g_BvsC", "BvsC", "C>B", grey(100), grey(100)),
]


def write_tiger(folder: Path) -> Path:
    root = folder / "tiger"
    for split, rows, comparisons in (
            ("2pair", TIGER_2PAIR, ["AvsB"] * len(TIGER_2PAIR)),
            ("3pair", [(r[0], r[2], r[3], r[4]) for r in TIGER_3PAIR],
             [r[1] for r in TIGER_3PAIR])):
        write_parquet(root / split / "train-00000-of-00001.parquet", hf_table({
            "id": ("string", [r[0] for r in rows]),
            "instruction": ("string", ["add a hat"] * len(rows)),
            "source_image": ("image", [hf_image(grey(0)) for _ in rows]),
            "candidate_1": ("image", [hf_image(r[2]) for r in rows]),
            "candidate_2": ("image", [hf_image(r[3]) for r in rows]),
            "ranking": ("string", [r[1] for r in rows]),
            "comparison_type": ("string", comparisons),
            "score_1": ("float", [5.0] * len(rows)),
            "score_2": ("float", [3.0] * len(rows)),
            "model_1": ("string", ["m1"] * len(rows)),
            "model_2": ("string", ["m2"] * len(rows)),
        }))
    return root


MERBENCH = {  # split -> [(pair_id, label, edited images best first)]
    "2pair": [("p1", "add", [grey(200), grey(100)]), ("p2", "remove", [grey(100), grey(200)])],
    "3pair": [("p3", "add", [grey(250), grey(150), grey(200)]),
              ("p4", "remove", [grey(150), grey(150), grey(100)])],
}


def write_merbench(folder: Path) -> Path:
    """A saved DatasetDict (``save_to_disk``): one Arrow folder per split."""
    root = folder / "merbench"
    root.mkdir(parents=True)
    (root / "dataset_dict.json").write_text(json.dumps({"splits": list(MERBENCH)}))
    for split, rows in MERBENCH.items():
        write_saved_dataset(root / split, hf_table({
            "pair_id": ("string", [r[0] for r in rows]),
            "label": ("string", [r[1] for r in rows]),
            "instruction": ("string", ["remove the cup"] * len(rows)),
            "original_image": ("image", [hf_image(grey(0)) for _ in rows]),
            "edited_images": ("images", [[hf_image(c) for c in r[2]] for r in rows]),
        }))
    return root


MMRB2 = [  # pair_id, chosen, A, B, prompt source
    ("x1", "A", grey(200), grey(100), "emu-edit"),
    ("x2", "B", grey(200), grey(100), "emu-edit"),
    ("x3", "B", grey(120), grey(120), "dreambench"),
]


def write_mmrb2(folder: Path) -> Path:
    rows = MMRB2
    return write_parquet(folder / "mmrb2" / "edit" / "test-00000-of-00001.parquet", hf_table({
        "pair_id": ("string", [r[0] for r in rows]),
        "prompt_text": ("string", ["Make the sky purple."] * len(rows)),
        "prompt_images": ("images", [[hf_image(grey(0))] for _ in rows]),
        "response_a_text": ("string", [""] * len(rows)),
        "response_a_images": ("images", [[hf_image(r[2])] for r in rows]),
        "response_b_text": ("string", [""] * len(rows)),
        "response_b_images": ("images", [[hf_image(r[3])] for r in rows]),
        "response_a_model": ("string", ["ma"] * len(rows)),
        "response_b_model": ("string", ["mb"] * len(rows)),
        "chosen": ("string", [r[1] for r in rows]),
        "prompt_source": ("string", [r[4] for r in rows]),
        "prompt_metadata": ("string", ["{}"] * len(rows)),
        "human_annotations": ("string", ["[6, 6, 5]"] * len(rows)),
    }))


def write_mmrb2_json(folder: Path) -> Path:
    """MMRB2's ``build_from_hf.py`` output: ``edit.json`` + ``images/`` + ``input_images/``."""
    root = folder / "mmrb2-built"
    (root / "images").mkdir(parents=True)
    (root / "input_images").mkdir()
    (root / "input_images" / "src.png").write_bytes(png(grey(0)))
    pairs = []
    for pid, chosen, a, b, source in MMRB2:
        for side, rgb in (("a", a), ("b", b)):
            (root / "images" / f"{pid}_{side}_0.png").write_bytes(png(rgb))
        pairs.append({
            "id": pid, "chosen": chosen, "prompt_source": source, "prompt_metadata": {},
            "human_annotations": [6, 6, 5],
            "prompt_content": [["image", "input_images/src.png"],
                               ["text", "Make the sky purple."]],
            "response_a": {"model_name": "ma",
                           "response_content": [["image", f"images/{pid}_a_0.png"]]},
            "response_b": {"model_name": "mb",
                           "response_content": [["image", f"images/{pid}_b_0.png"]]}})
    (root / "edit.json").write_text(json.dumps({"pairs": pairs}, indent=1))
    return root


GEDIT = [  # task type, language, key, intersection, the model's edit (None: not made)
    ("background_change", "en", "k1", True, (255, 102, 255)),  # semantics 4, quality 10
    ("color_alter", "en", "k2", False, (51, 255, 102)),  # semantics 2, quality 4
    ("color_alter", "cn", "k3", True, None),
    ("background_change", "cn", "k4", False, (51, 255, 102)),  # semantics 2, quality 4
]


def write_gedit(folder: Path) -> tuple[Path, Path]:
    """(the benchmark's Parquet file, a folder of edits in GEdit's own layout)."""
    rows = GEDIT
    path = write_parquet(folder / "gedit" / "data" / "train-00000-of-00001.parquet", hf_table({
        "task_type": ("string", [r[0] for r in rows]),
        "key": ("string", [r[2] for r in rows]),
        "instruction": ("string", ["change the background"] * len(rows)),
        "instruction_language": ("string", [r[1] for r in rows]),
        "input_image": ("image", [hf_image(grey(0)) for _ in rows]),
        "input_image_raw": ("image", [hf_image(grey(0)) for _ in rows]),
        "Intersection_exist": ("bool", [r[3] for r in rows]),
    }))
    edits = folder / "gedit-edits"
    for task, lang, key, _, rgb in rows:
        if rgb is not None:
            out = edits / "fullset" / task / lang / f"{key}.png"
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(png(rgb))
    return path, edits


# -- the layouts are the ones `datasets` reads --------------------------------------------------


def test_parquet_fixtures_load_with_datasets(tmp_path):
    import datasets  # a test dependency (requirements-dev.txt)
    for path in (write_editscore(tmp_path), write_mmrb2(tmp_path),
                 write_gedit(tmp_path)[0]):
        ds = datasets.load_dataset("parquet", data_files=str(path), split="train")
        row = ds[0]
        images = [v for v in row.values() if isinstance(v, Image.Image)]
        images += [x for v in row.values() if isinstance(v, list) for x in v
                   if isinstance(x, Image.Image)]
        assert images and all(im.size == (24, 24) for im in images), path


def test_saved_dataset_fixtures_load_with_datasets(tmp_path):
    import datasets
    ds = datasets.load_from_disk(str(write_merbench(tmp_path) / "3pair"))
    assert len(ds) == 2 and len(ds[0]["edited_images"]) == 3
    assert ds[0]["edited_images"][0].getpixel((0, 0)) == grey(250)
