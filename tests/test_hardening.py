"""The hardening review's attacks, each performed as described, each now harmless.

1. Votes lost after a bench call on the live store's own file (two processes).
2. ``/stop_rl`` with a bench run's id (the server's own pid), or a stale run's reused pid.
3. Remote callers choosing the backend spec; one cached model per spelling of a path.
4. An annotator importing an edited export to forge other people's votes.
6. Resource bounds of the app layer: zips, RL caps, stale runs, session state.
8. Instructions rendered as Markdown / HTML in Annotate.
Low: login back-off, launch warning, export folder, CLI backend errors, server paths.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from gradio_client import Client
from PIL import Image

from spatialreward.config import StudioConfig
from spatialreward.errors import (
    InputError,
    PermissionDeniedError,
    UnknownBackendError,
    UnsafePathError,
)
from spatialreward.service import Services
from storage import datasets
from storage.pairs import PairFormatError
from storage.paths import is_live_database, resolve_inside
from storage.store import Store

ROOT = Path(__file__).resolve().parents[1]


def png(value: int, size: int = 24) -> bytes:
    import io

    buf = io.BytesIO()
    Image.fromarray(np.full((size, size, 3), value, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def db_stats(db: Path) -> dict:
    """``db stats`` from another process, as an operator would run it."""
    out = subprocess.run([sys.executable, "-m", "spatialreward", "db", "stats", "--db", str(db),
                          "--json"], cwd=ROOT, capture_output=True, text=True, timeout=60,
                         check=True)
    return json.loads(out.stdout)


def start_server(db: Path, port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "app.py", "--db", str(db), "--port", str(port),
                             "--backend", "pixel"], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise AssertionError("the app did not start")


def server_fds(pid: int) -> list[str]:
    return [os.readlink(f) for f in Path(f"/proc/{pid}/fd").iterdir() if os.path.islink(f)]


# -- 1. no lost votes --------------------------------------------------------------------


def test_votes_cast_after_a_bench_on_the_store_file_reach_other_processes_and_survive(
        tmp_path):
    db = tmp_path / "studio.db"
    with Store.open(db) as store:
        item = store.add_item("make the square red", png(0), [png(1), png(2)], uid="i0")
        store.add_annotator("ana")
    port = free_port()
    server = start_server(db, port)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        # The attack: bench the store's own file (it fails: no item has votes yet).
        with pytest.raises(Exception, match="holds no items"):
            client.predict("studio.db", "pixel", 0, api_name="/bench")
        db_stats(db)  # another process opens and closes the store
        ids = [client.predict("ana", item, choice, api_name="/annotate")
               for choice in ("A", "B", "A")]  # a vote, then two undo-and-revote rounds
        client.predict("ana", api_name="/undo")
        ids.append(client.predict("ana", item, "B", api_name="/annotate"))
        assert all(isinstance(i, int) for i in ids)
        stats = db_stats(db)
        assert stats["tables"]["human_judgments"] >= len(ids)
        fds = server_fds(server.pid)
        assert not [f for f in fds if "(deleted)" in f and "studio.db" in f], fds
        opened = sum("studio.db" == Path(f).name for f in fds)
        for _ in range(3):  # each bench on the store used to leave a connection open
            assert client.predict("studio.db", "pixel", 0, api_name="/bench")["n"] == 1
        assert sum("studio.db" == Path(f).name for f in server_fds(server.pid)) == opened
        # 2. /stop_rl with the bench run's id (its pid is the server's own): refused.
        bench_run = max(r["id"] for r in Store.open(db).runs("bench"))
        with pytest.raises(Exception, match="runs inside the app"):
            client.predict(str(bench_run), api_name="/stop_rl")
        assert server.poll() is None and client.predict(api_name="/stats")
    finally:
        server.kill()  # kill -9: no clean shutdown
        server.wait(30)
    with Store.open(db) as store:  # the restart
        history = store.human_judgments(history=True)
        assert [h.id for h in history if h.kind == "judgment"][-1] == ids[-1]
        assert len(history) == stats["tables"]["human_judgments"]
        assert store.integrity() == []


def test_data_files_cannot_name_the_live_store_by_any_path(tmp_path):
    db = tmp_path / "data" / "studio.db"
    services = Services(StudioConfig(db=db, backend="pixel"))
    services.store.add_annotator("ana")
    root = services.data_root
    (root / "link.parquet").symlink_to(db)
    os.link(db, root / "hard.db")
    for name in ("studio.db-wal", "link.parquet", "hard.db", "sub/../studio.db-shm"):
        with pytest.raises(UnsafePathError, match="live judgment store"):
            resolve_inside(root, name)
    assert is_live_database(root / "link.parquet") and not is_live_database(root / "x.png")
    # a pair file whose "images" are the store's files is refused before anything opens them
    (root / "evil.jsonl").write_text(json.dumps(
        {"id": "x", "instruction": "make it red", "source": "studio.db",
         "candidates": ["studio.db-wal", "hard.db"]}) + "\n")
    for path in ("evil.jsonl", "link.parquet", "studio.db-wal"):
        with pytest.raises((UnsafePathError, PairFormatError), match="live judgment store"):
            services.bench(path=path, backend="pixel")
    with pytest.raises((UnsafePathError, PairFormatError), match="live judgment store"):
        services.import_data(path="evil.jsonl")
    # benching the store itself reads it through the open connection, none left open
    # (SQLite may keep one closed descriptor for reuse while the store holds its locks)
    with pytest.raises(InputError, match="holds no items"):
        services.bench(path="studio.db", backend="pixel")
    before = _store_fds(db)
    for _ in range(3):
        with pytest.raises(InputError, match="holds no items"):
            services.bench(path="studio.db", backend="pixel")
    assert _store_fds(db) == before <= 2


def _store_fds(db: Path) -> int:
    return sum(1 for f in Path("/proc/self/fd").iterdir()
               if os.path.realpath(f) == str(db.resolve()))


# -- 2. stopping runs -------------------------------------------------------------------


@pytest.fixture()
def services(tmp_path):
    return Services(StudioConfig(db=tmp_path / "data" / "studio.db", backend="pixel"))


def test_stop_never_signals_the_server_or_a_stranger(services):
    store = services.store
    bench = store.create_run("bench", "pixel on x", {})
    store.update_run(bench, status="running", pid=os.getpid())
    with pytest.raises(InputError, match="runs inside the app"):
        services.stop_run(bench)
    stranger = subprocess.Popen(["sleep", "30"])  # a reused pid: some other program
    try:
        for pid in (stranger.pid, os.getpid()):
            run = store.create_run("rl", "stale", {"processes": 1})
            store.update_run(run, status="running", pid=pid)
            with pytest.raises(InputError, match="not running"):
                services.stop_run(run)  # found to be gone: marked failed, not signalled
            assert store.run(run)["status"] == "failed"
        time.sleep(0.2)
        assert stranger.poll() is None  # still alive: it was never signalled
    finally:
        stranger.kill()
        stranger.wait()


def test_stop_reaches_a_run_started_outside_the_app_and_only_it(services):
    import signal

    from spatialreward.rl.runs import process_start, record_process

    store = services.store
    trainer = subprocess.Popen(["sleep", "30"])  # stands in for `python -m spatialreward rl`
    try:
        run = store.create_run("rl", "from a shell", {"processes": 1})
        store.update_run(run, status="running")
        record_process(store, run, trainer.pid)
        twin = store.create_run("rl", "an older run whose pid was reused", {"processes": 1})
        store.update_run(twin, status="running", pid=trainer.pid,
                         pid_start=(process_start(trainer.pid) or 0) - 1)
        assert services.launcher.status(twin)["status"] == "failed"  # not its process
        assert services.launcher.status(run)["status"] == "running"
        services.stop_run(run)
        assert trainer.wait(10) == -signal.SIGTERM
    finally:
        trainer.kill()
        trainer.wait()


def test_start_up_marks_runs_of_a_gone_process_interrupted(services):
    store = services.store
    gone = subprocess.Popen(["true"])
    gone.wait()
    bench = store.create_run("bench", "pixel on x", {})
    store.update_run(bench, status="running", pid=gone.pid)
    rl = store.create_run("rl", "rl pixel", {"processes": 1})
    store.update_run(rl, status="running", pid=gone.pid, out_dir=f"runs/rl-{rl}")
    done = store.create_run("bench", "finished", {})
    store.update_run(done, status="done")
    assert sorted(services.recover_runs()) == [bench, rl]
    assert store.run(bench)["status"] == "interrupted"
    row = store.run(rl)
    assert row["status"] == "interrupted" and "--resume" in row["error"]
    assert f"--run-id {rl} --db" in row["error"]
    assert store.run(done)["status"] == "done"


# -- 3. the offered backends --------------------------------------------------------------


def test_only_offered_backend_specs_are_served(services, tmp_path, monkeypatch):
    secret = tmp_path / "secret.toml"
    secret.write_text('sc = "x"\n')
    opened: list[str] = []
    real_open = Path.open

    def spy(self, *a, **k):
        opened.append(str(self))
        return real_open(self, *a, **k)

    monkeypatch.setattr(Path, "open", spy)
    messages = set()
    for spec in (f"vlm:/tmp,prompts={secret}", "vlm:/tmp,prompts=/no/such/file",
                 "mini:/etc", "mini:/nonexistent"):
        with pytest.raises(UnknownBackendError) as err:
            services.backend(spec)
        messages.add(str(err.value).split("'")[1])  # only the name is echoed
        assert "secret" not in str(err.value) and "/etc" not in str(err.value)
    assert messages == {"vlm:...", "mini:..."}
    assert not [p for p in opened if "secret" in p or p.startswith("/etc")]


def test_one_cached_model_per_backend_however_its_path_is_spelled(tmp_path):
    spellings = ["mini:models/spatialreward-mini", "mini:./models/spatialreward-mini",
                 "mini:models//spatialreward-mini/", "mini:models/x/../spatialreward-mini"]
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        services = Services(StudioConfig(db=tmp_path / "studio.db", backend=spellings[0]))
        models = {id(services.backend(s)) for s in spellings}
        assert len(models) == 1 and len(services._backends) == 1
    finally:
        os.chdir(cwd)
    with pytest.raises(UnknownBackendError):
        services.backend("mini:models/editor")  # a path nobody offered


def test_the_model_cache_is_bounded(tmp_path):
    from spatialreward import backends

    if "any-arg" not in backends.available():  # a backend that takes any argument
        backends.register("any-arg", "tests")(lambda argument: backends.create("pixel"))
    services = Services(StudioConfig(db=tmp_path / "studio.db", backend="pixel",
                                     backends=("any-arg:a", "any-arg:b", "any-arg:c"),
                                     max_loaded_backends=2))
    for spec in ("pixel", "any-arg:a", "any-arg:b", "any-arg:c", "any-arg:b"):
        services.backend(spec)
    loaded = [key.rsplit("/", 1)[-1] for key in services._backends]
    assert loaded == ["c", "b"]  # the least recently used ones were freed


def test_remote_judge_refuses_unoffered_specs_with_one_message(studio, tmp_path):
    from gradio_client import handle_file

    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "a.png")
    client = Client(studio.url, verbose=False)
    errors = []
    for spec in ("vlm:/tmp,prompts=/etc/shadow", "vlm:/tmp,prompts=/no/such"):
        with pytest.raises(Exception) as err:
            client.predict(handle_file(str(tmp_path / "a.png")),
                           handle_file(str(tmp_path / "a.png")), "make it red", spec,
                           api_name="/judge")
        errors.append(str(err.value))
    assert errors[0] == errors[1] and "shadow" not in errors[0] and "not offered" in errors[0]


# -- 4. roles: import, export, runs ---------------------------------------------------------


@pytest.fixture()
def team(tmp_path):
    services = Services(StudioConfig(db=tmp_path / "data" / "studio.db", backend="pixel",
                                     auth=True))
    store = services.store
    for name, role in (("ana", "annotator"), ("bob", "annotator"), ("cy", "researcher"),
                       ("root", "admin")):
        store.add_annotator(name, role, password=f"{name}-password")
    item = store.add_item("make the square red", png(0), [png(1), png(2)], uid="i0")
    store.add_human_judgment(item, "ana", 0)
    return services, item


def forged_export(services: Services, item: int, tmp_path: Path) -> Path:
    """The store exported, then edited: ana's vote retracted and recast, mallory the admin."""
    from storage.exchange import export_pairs

    folder = tmp_path / "export"
    export_pairs(services.store, folder)
    lines = [json.loads(line) for line in (folder / "pairs.jsonl").read_text().splitlines()]
    humans = lines[0]["human_judgments"]
    first = humans[0]
    humans += [
        {**first, "id": 2, "kind": "retraction", "ranking": None, "preferred": None,
         "supersedes": 1, "created_at": "2026-12-01T00:00:01+00:00"},
        {**first, "id": 3, "preferred": 1, "ranking": [1, 0], "supersedes": None,
         "created_at": "2026-12-01T00:00:02+00:00"},
        {**first, "id": 4, "annotator": "mallory", "annotator_role": "admin",
         "created_at": "2026-12-01T00:00:03+00:00"}]
    (folder / "pairs.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    archive = tmp_path / "edited.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for f in folder.rglob("*"):
            if f.is_file():
                zf.write(f, f.relative_to(folder).as_posix())
    return archive


def test_an_annotator_cannot_forge_votes_through_an_import(team, tmp_path):
    services, item = team
    store = services.store
    archive = forged_export(services, item, tmp_path)
    before = [(h.annotator, h.preferred) for h in store.human_judgments(item)]
    with pytest.raises(PermissionDeniedError):
        services.export("jsonl", user="bob")
    with pytest.raises(PermissionDeniedError):
        services.import_data(upload=str(archive), user="bob")
    counts = services.import_data(upload=str(archive), user="cy")  # a researcher
    assert counts["human_judgments"] == 0 and counts["dropped_human_judgments"] == 4
    assert [(h.annotator, h.preferred) for h in store.human_judgments(item)] == before
    assert "mallory" not in {a["name"] for a in store.annotators()}
    with pytest.raises(PermissionDeniedError):
        services.import_data(upload=str(archive))  # no login at all


def test_roles_decide_who_starts_and_stops_runs(team):
    from spatialreward.rl.tiny import tiny_rl_config

    services, _ = team
    with pytest.raises(PermissionDeniedError, match="start run"):
        services.start_rl(tiny_rl_config(services.data_root), user="ana")
    with pytest.raises(PermissionDeniedError, match="stop run"):
        services.stop_run(1, user="ana")
    with pytest.raises(PermissionDeniedError, match="bench"):
        services.bench(path="x", user="bob")


def test_rl_runs_from_the_app_are_capped(services):
    from spatialreward.rl.tiny import tiny_rl_config

    config = tiny_rl_config(services.data_root)
    with pytest.raises(InputError, match="steps = 1000000 is more than the 20,000"):
        services.start_rl(replace(config, steps=10**6))
    with pytest.raises(InputError, match="group_size = 1000000 is more than"):
        services.start_rl(replace(config, group_size=10**6))
    with pytest.raises(InputError, match="run name has 5000 characters"):
        services.start_rl(config, name="x" * 5000)
    with pytest.raises(InputError, match="processes must be"):
        services.start_rl(config, processes=10**4)
    with pytest.raises(UnknownBackendError, match="reward backend"):
        services.start_rl(replace(config, rewards="vlm:/etc"))
    with pytest.raises(InputError, match="under models/ or the data folder"):
        services.start_rl(replace(config, policy="/tmp"))
    store = services.store
    for _ in range(services.config.max_active_runs):
        run = store.create_run("rl", "busy", {})
        store.update_run(run, status="running", pid=os.getpid())
    services.launcher.owns = lambda run, pid: True  # type: ignore[method-assign]
    with pytest.raises(InputError, match="active already"):
        services.start_rl(config)
    stopped = store.create_run("rl", "stopped", {"processes": 1})
    store.update_run(stopped, status="cancelled")
    with pytest.raises(InputError, match="active already"):
        services.resume_run(stopped)  # a resume counts like a start


# -- 6. zips, session state ----------------------------------------------------------------


def zip_of(target: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return target


def test_a_zip_is_checked_before_its_images_are_unpacked(services, tmp_path):
    uploads = services.data_root / "uploads"
    line = {"id": "a", "instruction": "make it red", "source": "images/s.png",
            "candidates": ["images/c0.png", "images/c1.png"]}
    images = {f"images/{n}.png": png(k) for k, n in enumerate(("s", "c0", "c1"))}
    junk = {"images/junk.bin": b"\0" * 5_000_000}  # compresses to a few kB
    cases = {
        "bad json": {"pairs.jsonl": b"{not json\n", **images, **junk},
        "missing image": {"pairs.jsonl": json.dumps({**line, "source": "images/gone.png"})
                          .encode(), **images, **junk},
    }
    for why, files in cases.items():
        archive = zip_of(tmp_path / f"{why}.zip", files)
        written: list[int] = []
        real = datasets._unpack

        def spy(zf, name, info, target, budget, _real=real, _w=written):
            _w.append(info.file_size)
            return _real(zf, name, info, target, budget)

        datasets._unpack = spy
        try:
            with pytest.raises(Exception, match="not valid JSON|does not hold"):
                services.import_data(upload=str(archive))
        finally:
            datasets._unpack = real
        assert written == [len(files["pairs.jsonl"])], why  # only pairs.jsonl was written
    assert not any(p.is_file() for p in uploads.rglob("*"))  # and nothing is left
    # a good zip unpacks what pairs.jsonl names, not the 5 MB of junk beside it
    good = zip_of(tmp_path / "good.zip",
                  {"pairs.jsonl": json.dumps(line).encode(), **images, **junk})
    with datasets.open_dataset(services.data_root, upload=str(good)) as dataset:
        names = sorted(p.name for p in dataset.path.parent.rglob("*") if p.is_file())
    assert names == ["c0.png", "c1.png", "pairs.jsonl", "s.png"]
    bomb = zip_of(tmp_path / "bomb.zip", {"data/x.parquet": b"\0" * 2_000_000})
    small = Services(StudioConfig(db=services.config.db, backend="pixel", max_zip_bytes=10**6))
    with pytest.raises(InputError, match="more than the 1,000,000 accepted"):
        small.bench(upload=str(bomb), backend="pixel")


def test_inspect_sessions_are_freed_after_idle(tmp_path):
    import gradio as gr

    from ui import build_demo

    services = Services(StudioConfig(db=tmp_path / "studio.db", backend="pixel",
                                     session_ttl_s=123))
    demo = build_demo(services)
    states = [b for b in demo.blocks.values() if isinstance(b, gr.State)]
    assert 123 in {s.time_to_live for s in states}


# -- 8. user text is text --------------------------------------------------------------------


def test_annotate_shows_an_instruction_as_text_not_html(studio):
    from tests.browser import browser_page

    store = studio.services.store
    text = 'make it red <img src="http://127.0.0.1:9/track.png"> **now** $x$'
    item = store.add_item(text, png(3), [png(4), png(5)], uid="html-item")
    store.add_annotator("hana")
    for other in store.item_ids():
        if other != item:
            store.add_human_judgment(other, "hana", 0)  # leave only this item to judge
    with browser_page() as page:
        page.goto(studio.url)
        page.get_by_role("tab", name="Annotate").click()
        for attempt in range(3):  # the tab may still be restoring the remembered name
            page.locator("#annotator-name").get_by_role("textbox").fill("hana")
            page.click("#annotator-start")
            try:
                page.wait_for_selector(f"#annotate-instruction :text('Item {item}')",
                                       timeout=15_000)
                break
            except Exception:
                if attempt == 2:
                    raise
        shown = page.inner_text("#annotate-instruction")
        assert text in shown
        assert page.locator("#annotate-instruction img").count() == 0


# -- low -----------------------------------------------------------------------------------


def test_failed_logins_back_off_per_name(team, monkeypatch):
    services, _ = team
    clock = [0.0]
    services.logins._clock = lambda: clock[0]
    assert services.login("ana", "ana-password")
    for _ in range(services.logins.free):
        assert not services.login("ana", "wrong")
    assert not services.login("ana", "ana-password")  # locked for a while, even if right
    assert services.login("bob", "bob-password")  # other names are not affected
    clock[0] += 1.5
    assert services.login("ana", "ana-password")
    assert not services.login("nobody", "x") and services.logins.wait("nobody") == 0


def test_launch_warns_when_shared_without_a_login(tmp_path, capsys, monkeypatch):
    import app

    launched = []
    monkeypatch.setattr("gradio.Blocks.launch", lambda self, **kw: launched.append(kw))
    for extra, warned in ((["--host", "0.0.0.0"], True), (["--host", "0.0.0.0", "--auth"], False),
                          (["--share"], True), ([], False)):
        args = ["--db", str(tmp_path / "s.db"), "--backend", "pixel", *extra]
        assert app.main(args) == 0
        assert ("without --auth" in capsys.readouterr().err) is warned
    assert [kw["server_name"] for kw in launched] == ["0.0.0.0", "0.0.0.0", "127.0.0.1",
                                                      "127.0.0.1"]
    assert [kw["share"] for kw in launched] == [False, False, True, False]


def test_exports_go_to_a_private_folder_per_store(tmp_path):
    a = datasets.export_folder(tmp_path / "a")
    b = datasets.export_folder(tmp_path / "b")
    assert a != b and a == datasets.export_folder(tmp_path / "a")
    assert (a.stat().st_mode & 0o777) == 0o700


def test_cli_backend_mistakes_are_one_line_errors(tmp_path):
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "a.png")
    bad = tmp_path / "ckpt"
    bad.mkdir()
    (bad / "config.json").write_text((ROOT / "models/spatialreward-mini/config.json")
                                     .read_text())
    (bad / "model.safetensors").write_bytes(b"pickled? no: junk")
    for spec, says in ((f"mini:{bad}", "not a usable SpatialReward-Mini checkpoint"),
                       ("nosuch", "known backends: mini, openai, pixel, vlm")):
        out = subprocess.run([sys.executable, "-m", "spatialreward", "judge", "--source",
                              str(tmp_path / "a.png"), "--edited", str(tmp_path / "a.png"),
                              "--instruction", "make it red", "--backend", spec], cwd=ROOT,
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 2 and says in out.stderr
        assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_error_messages_shown_in_the_browser_hide_server_paths(studio):
    client = Client(studio.url, verbose=False)
    with pytest.raises(Exception) as err:
        client.predict("no/such/pairs.jsonl", "pixel", 0, api_name="/bench")
    assert str(studio.services.data_root) not in str(err.value)
    assert "pairs.jsonl" in str(err.value)


def test_an_animated_edit_is_judged_on_its_first_frame_with_a_warning(services, tmp_path):
    frames = [Image.fromarray(np.full((32, 32, 3), v, np.uint8)) for v in (0, 200, 90)]
    frames[0].save(tmp_path / "src.png")
    frames[1].save(tmp_path / "edit.gif", save_all=True, append_images=[frames[2], frames[0]],
                   duration=50)
    judgment = services.judge(tmp_path / "src.png", tmp_path / "edit.gif", "make it brighter")
    assert any("3 frames" in w and "first frame" in w for w in judgment.warnings)
