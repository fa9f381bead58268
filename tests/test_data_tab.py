"""The Data tab through gradio_client: import, export (loaded back with pyarrow, zipfile
and the pair reader), statistics, and a malformed upload that changes nothing."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import sqlite_utils
from gradio_client import Client, handle_file
from PIL import Image

from spatialreward.synth.generate import SynthConfig, generate
from storage import datasets
from storage.exchange import import_parquet
from storage.pairs import read_pairs
from storage.store import Store

N = 6


def zip_synth(folder: Path, target: Path, n: int = N) -> Path:
    """A SynthEdit set written to ``folder`` and zipped (pairs.jsonl + images/ at the top)."""
    generate(SynthConfig(out=folder, n=n, seed=3, split="test", workers=1), progress=False)
    with zipfile.ZipFile(target, "w") as zf:
        for file in sorted(folder.rglob("*")):
            if file.is_file():
                zf.write(file, file.relative_to(folder).as_posix())
    return target


@pytest.fixture(scope="module")
def app(studio, tmp_path_factory):
    """(client, store, synth zip), after the zip was imported through /import_data."""
    work = tmp_path_factory.mktemp("data-tab")
    archive = zip_synth(work / "synth", work / "synth.zip")
    client = Client(studio.url, verbose=False)
    message, stats, _table = client.predict(handle_file(str(archive)), "",
                                            api_name="/import_data")
    assert f"{N} new items" in message and "upload synth.zip" in message
    assert stats["tables"]["items"] == N
    return client, studio.services.store, archive


def _counts(store: Store) -> dict[str, int]:
    return store.stats()["tables"]


def test_import_of_a_synthedit_zip_adds_its_items(app):
    client, store, archive = app
    uids = {store.item(i)["uid"] for i in store.item_ids()}
    assert uids == {f"test-3-{k:06d}" for k in range(N)}
    assert store.item(store.item_ids()[0])["origin_dataset"] == "synth"
    # Importing the same file again adds nothing.
    message, stats, _ = client.predict(handle_file(str(archive)), "", api_name="/import_data")
    assert "0 new items" in message and stats["tables"]["items"] == N


def test_stats_and_integrity(app):
    client, store, _ = app
    stats, table = client.predict(api_name="/stats")
    assert stats == store.stats()
    rows = {what: value for what, value in table["data"]}
    assert rows["items rows"] == str(N) and rows["schema version"] == str(store.schema_version)
    assert client.predict(api_name="/integrity").startswith("**Integrity: ok**")


def test_export_parquet_round_trips(app):
    client, store, _ = app
    file, message = client.predict("parquet", api_name="/export")
    assert Path(file).suffix == ".parquet" and f"{N} items" in message
    table = pq.read_table(file)
    assert table.num_rows == N
    rows = table.to_pylist()
    assert {r["id"] for r in rows} == {store.item(i)["uid"] for i in store.item_ids()}
    first = rows[0]
    assert Image.open(io.BytesIO(first["source"]["bytes"])).size == (384, 384)
    assert len(first["candidates"]) == 2
    assert json.loads(first["ranking"]) in ([0, 1], [1, 0])
    # Loaded back into a fresh store, it holds the same items.
    fresh = Store(sqlite_utils.Database(memory=True), data_dir=None)
    assert import_parquet(fresh, file)["items"] == N


def test_export_jsonl_zip_round_trips(app, tmp_path):
    client, store, _ = app
    file, _message = client.predict("jsonl", api_name="/export")
    assert Path(file).suffix == ".zip"
    with zipfile.ZipFile(file) as zf:
        names = zf.namelist()
        assert "pairs.jsonl" in names
        assert len([n for n in names if n.startswith("images/")]) == 3 * N  # src + 2 cands
        zf.extractall(tmp_path)
    items = read_pairs(tmp_path / "pairs.jsonl")
    assert {i.id for i in items} == {store.item(k)["uid"] for k in store.item_ids()}
    assert all(p.is_file() for i in items for p in (i.source, *i.candidates))


def test_malformed_uploads_are_errors_and_change_nothing(app, tmp_path):
    client, store, archive = app
    before = _counts(store)
    # A zip whose pairs.jsonl breaks on its last line (after valid, new items).
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(archive) as src, zipfile.ZipFile(bad, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "pairs.jsonl":
                lines = data.decode().splitlines()
                lines = [line.replace('"test-3-', '"new-') for line in lines]
                data = ("\n".join(lines) + "\n{not json\n").encode()
            dst.writestr(info, data)
    with pytest.raises(Exception, match="not valid JSON"):
        client.predict(handle_file(str(bad)), "", api_name="/import_data")
    # Bytes that are not Parquet at all.
    junk = tmp_path / "junk.parquet"
    junk.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(Exception, match="not a readable Parquet"):
        client.predict(handle_file(str(junk)), "", api_name="/import_data")
    assert _counts(store) == before
    assert store.integrity() == []


def test_server_paths_must_be_under_the_data_folder(app, studio):
    client, store, _ = app
    root = datasets.data_root(studio.services.config)
    with pytest.raises(Exception, match="outside the data folder"):
        client.predict(None, "../", api_name="/import_data")
    with pytest.raises(Exception, match="nothing to import"):
        client.predict(None, "", api_name="/import_data")
    # A dataset folder under data/ imports from the server (here: nothing new).
    generate(SynthConfig(out=root / "again", n=2, seed=3, split="test", workers=1),
             progress=False)
    message, stats, _ = client.predict(None, "again", api_name="/import_data")
    assert "`again/pairs.jsonl`" in message and stats["tables"]["items"] == N
