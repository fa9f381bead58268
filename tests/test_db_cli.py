"""``python -m spatialreward db ...`` end to end, and the schema documentation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spatialreward.cli import main
from spatialreward.synth.generate import SynthConfig, generate
from storage.schema import SCHEMA_VERSION
from storage.store import Store

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    generate(SynthConfig(out=out, n=3, seed=5, split="test", workers=1), progress=False)
    return out


def test_import_stats_export_backup_integrity(tmp_path: Path, synth: Path, capsys) -> None:
    db = str(tmp_path / "store" / "studio.db")
    assert main(["db", "import", str(synth), "--db", db]) == 0
    assert "imported 3 items" in capsys.readouterr().out
    assert main(["db", "stats", "--json", "--db", db]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["tables"]["items"] == 3 and stats["tables"]["candidates"] == 6
    assert stats["schema_version"] == SCHEMA_VERSION and stats["journal_mode"] == "wal"
    assert main(["db", "export", str(tmp_path / "out.parquet"), "--db", db]) == 0
    assert (tmp_path / "out.parquet").stat().st_size > 0
    assert main(["db", "export", str(tmp_path / "out"), "--db", db]) == 0
    assert len((tmp_path / "out" / "pairs.jsonl").read_text().splitlines()) == 3
    assert main(["db", "backup", str(tmp_path / "bak" / "studio.db"), "--db", db]) == 0
    assert main(["db", "integrity", "--db", str(tmp_path / "bak" / "studio.db")]) == 0
    assert capsys.readouterr().out.strip().endswith("ok")


def test_integrity_exits_1_on_a_damaged_image(tmp_path: Path, synth: Path, capsys) -> None:
    db = tmp_path / "studio.db"
    assert main(["db", "import", str(synth), "--db", str(db)]) == 0
    with Store.open(db) as store:
        sha = store.item(store.item_ids()[0])["source_sha256"]
        store.image_path(sha).write_bytes(b"garbage")
    capsys.readouterr()
    assert main(["db", "integrity", "--db", str(db)]) == 1
    assert "do not match" in capsys.readouterr().out


def test_a_bad_import_is_one_error_line_and_changes_nothing(tmp_path: Path, synth: Path,
                                                            capsys) -> None:
    db = str(tmp_path / "studio.db")
    assert main(["db", "import", str(synth), "--db", db]) == 0
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "pairs.jsonl").write_text('{"id": "x", "instruction": "y"\n')
    capsys.readouterr()
    assert main(["db", "import", str(bad), "--db", db]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err
    assert main(["db", "stats", "--json", "--db", db]) == 0
    assert json.loads(capsys.readouterr().out)["tables"]["items"] == 3


def test_agreement_and_queue_commands_run_on_a_store_with_votes(tmp_path: Path, synth: Path,
                                                                 capsys) -> None:
    db = tmp_path / "studio.db"
    assert main(["db", "import", str(synth), "--db", str(db)]) == 0
    assert main(["db", "add-annotator", "ana", "--db", str(db)]) == 0
    with Store.open(db) as store:
        for item in store.item_ids():
            store.add_human_judgment(item, "ana", 0)
    capsys.readouterr()
    assert main(["db", "agreement", "--json", "--db", str(db)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["per_annotator"][0]["judgments"] == 3
    assert report["per_annotator"][0]["gold_items"] == 3
    assert main(["db", "queue", "--db", str(db)]) == 0
    assert "3 items with fewer than 2 judgments" in capsys.readouterr().out


def test_every_table_is_documented() -> None:
    import sqlite_utils

    store = Store(sqlite_utils.Database(memory=True))
    doc = (ROOT / "docs" / "store.md").read_text()
    for table in store.db.table_names():
        if table != "_sqlite_migrations":
            assert f"`{table}`" in doc, f"docs/store.md does not describe {table}"
        for column in store.db[table].columns if table != "_sqlite_migrations" else []:
            assert f"`{column.name}`" in doc or column.name in ("id",), (
                f"docs/store.md does not describe {table}.{column.name}")
    assert "`current_human_judgments`" in doc


def test_integrity_remove_orphans_deletes_only_old_unreferenced_files(tmp_path: Path,
                                                                      capsys) -> None:
    import os
    import time

    import numpy as np

    from storage.store import ORPHAN_MIN_AGE_S

    db = tmp_path / "studio.db"
    with Store.open(db) as store:
        pixels = np.zeros((8, 8, 3), np.uint8)
        store.add_item("make it red", pixels, [pixels + 1])
    orphan = tmp_path / "images" / "00" / ("00" * 32 + ".png")  # left by a killed import
    orphan.parent.mkdir(parents=True, exist_ok=True)
    orphan.write_bytes(b"x" * 1000)
    then = time.time() - 2 * ORPHAN_MIN_AGE_S
    os.utime(orphan, (then, then))
    young = tmp_path / "images" / "00" / ".in-flight.tmp"
    young.write_bytes(b"y" * 10)
    assert main(["db", "integrity", "--db", str(db)]) == 1
    assert "orphan image files: 1 file(s), 1,000 bytes" in capsys.readouterr().out
    assert main(["db", "integrity", "--remove-orphans", "--db", str(db)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [f"removed images/00/{'00' * 32}.png (1,000 bytes)",
                   "removed 1 orphan image file(s), 1,000 bytes", "ok"]
    assert not orphan.exists() and young.exists()


def test_the_store_limits_and_integrity_options_are_documented() -> None:
    import storage.store as store_module

    doc = (ROOT / "docs" / "store.md").read_text()
    for name in dir(store_module):
        if name.startswith(("MAX_", "MIN_")) or name == "ORPHAN_MIN_AGE_S":
            value = getattr(store_module, name)
            assert f"`{name}`" in doc and f"{value:,}" in doc, f"docs/store.md lacks {name}"
    for text in ("--remove-orphans", "human_judgments=False", "dropped_human_judgments",
                 "U+FFFD", "m003"):
        assert text in doc, f"docs/store.md does not mention {text}"
