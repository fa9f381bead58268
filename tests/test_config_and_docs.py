"""Settings resolve as documented, and the README documents every command and setting."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from spatialreward.cli import build_parser
from spatialreward.config import StudioConfig
from spatialreward.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_defaults_are_private_and_safe():
    c = StudioConfig()
    assert c.host == "127.0.0.1" and c.share is False and c.port == 7860
    assert c.max_pixels == 40_000_000


def test_environment_then_overrides(monkeypatch):
    monkeypatch.setenv("PORT", "8123")
    monkeypatch.setenv("STUDIO_SHARE", "no")
    monkeypatch.setenv("STUDIO_MAX_PIXELS", "1000")
    c = StudioConfig.from_env()
    assert (c.port, c.share, c.max_pixels) == (8123, False, 1000)
    assert StudioConfig.from_env(port=9000).port == 9000


@pytest.mark.parametrize("name, value, message", [
    ("PORT", "http", "not a valid int"),
    ("STUDIO_PORT", "70000", "port must be in 1..65535"),
    ("STUDIO_SHARE", "maybe", "not a valid bool"),
])
def test_bad_settings_say_what_to_fix(monkeypatch, name, value, message):
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=message):
        StudioConfig.from_env()


def test_app_rejects_a_bad_port_with_one_line():
    out = subprocess.run([sys.executable, "app.py", "--port", "0"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert out.stderr.strip() == "error: port must be in 1..65535, got 0; pass --port 7860"


def test_every_cli_command_is_in_the_readme():
    commands = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    for name in commands:
        assert f"python -m spatialreward {name}" in README, f"README lacks the `{name}` command"


def test_every_db_action_is_in_the_readme():
    commands = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    actions = commands["db"]._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert {"stats", "import", "export", "backup", "integrity"} <= set(actions)
    for name in actions:
        assert f"python -m spatialreward db {name}" in README, f"README lacks `db {name}`"


def test_every_setting_with_an_environment_variable_is_in_the_readme():
    for f in fields(StudioConfig):
        assert f"STUDIO_{f.name.upper()}" in README, f"README lacks STUDIO_{f.name.upper()}"
        assert f.metadata.get("help"), f"StudioConfig.{f.name} has no help text"


def test_readme_screenshot_exists():
    assert "docs/screenshot.png" in README and (ROOT / "docs" / "screenshot.png").is_file()
