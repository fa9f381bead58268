"""``python -m spatialreward db ...`` end to end, and the schema documentation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spatialreward.cli import main
from spatialreward.synth.generate import SynthConfig, generate
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
    assert stats["schema_version"] == 2 and stats["journal_mode"] == "wal"
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
