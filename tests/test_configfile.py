"""The one config-file loader: every mistake in a settings file is a ConfigError that
names the file, and the training configs read through it round-trip."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pytest

from spatialreward.configfile import config_from_dict, load_config, read_config_file
from spatialreward.errors import ConfigError
from spatialreward.mini.train import TrainConfig
from spatialreward.rl.config import RLConfig
from spatialreward.rl.editor_train import EditorTrainConfig


@dataclass(frozen=True)
class Run:
    name: str = field(metadata={"help": "required"})
    steps: int = field(default=10, metadata={"help": "optimiser steps"})
    tags: list[str] = field(default_factory=list, metadata={"help": "labels"})

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ConfigError(f"steps must be at least 1, got {self.steps}")


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.json"
    path.write_text(text)
    return path


def test_reads_a_file_into_the_dataclass(tmp_path: Path) -> None:
    path = _write(tmp_path, json.dumps({"name": "a", "steps": 3, "tags": ["x"]}))
    assert load_config(Run, path) == Run("a", 3, ["x"])
    assert load_config(Run, str(path)) == Run("a", 3, ["x"])


def test_unknown_key_lists_the_known_ones_and_names_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path, json.dumps({"name": "a", "step": 3}))
    with pytest.raises(ConfigError) as err:
        load_config(Run, path)
    assert str(err.value) == (f"unknown keys in {path}: ['step']; "
                              "known: ['name', 'steps', 'tags']")


@pytest.mark.parametrize("text, found", [("{not json", "Expecting property name"),
                                         ("", "Expecting value")])
def test_malformed_json(tmp_path: Path, text: str, found: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError, match=f"cannot read training config {path}: {found}"):
        load_config(Run, path, what="training config")


def test_not_an_object(tmp_path: Path) -> None:
    path = _write(tmp_path, "[1, 2]")
    with pytest.raises(ConfigError, match=f"{path} must hold a JSON object of settings, "
                                          "found list"):
        read_config_file(path)


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config .*nope.json: .*No such file"):
        load_config(Run, tmp_path / "nope.json")
    with pytest.raises(ConfigError, match="cannot read config .*: .*Is a directory"):
        load_config(Run, tmp_path)
    binary = tmp_path / "binary.json"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigError, match="cannot read config .*binary.json"):
        load_config(Run, binary)


def test_missing_field_and_post_init_errors_are_config_errors(tmp_path: Path) -> None:
    path = _write(tmp_path, json.dumps({"steps": 3}))
    with pytest.raises(ConfigError, match=f"{path}: .*missing 1 required .*'name'"):
        load_config(Run, path)
    path = _write(tmp_path, json.dumps({"name": "a", "steps": 0}))
    with pytest.raises(ConfigError, match="steps must be at least 1, got 0"):
        load_config(Run, path)


def test_overrides_go_over_the_file_and_are_checked(tmp_path: Path) -> None:
    path = _write(tmp_path, json.dumps({"name": "a", "steps": 3}))
    assert load_config(Run, path, overrides={"steps": 5}) == Run("a", 5)
    assert load_config(Run, path, overrides={}) == Run("a", 3)
    with pytest.raises(ConfigError, match=r"unknown keys in the overrides of .*run.json: "
                                          r"\['stepz'\]; known: \['name', 'steps', 'tags'\]"):
        load_config(Run, path, overrides={"stepz": 5})
    with pytest.raises(ConfigError, match="steps must be at least 1"):
        load_config(Run, path, overrides={"steps": 0})


def test_config_from_dict_names_its_source() -> None:
    assert config_from_dict(Run, {"name": "b"}) == Run("b")
    with pytest.raises(ConfigError, match="unknown keys in the config: "):
        config_from_dict(Run, {"name": "b", "x": 1})
    with pytest.raises(ConfigError, match="^somewhere: "):
        config_from_dict(Run, {}, "somewhere")


def test_training_configs_round_trip(tmp_path: Path) -> None:
    train = TrainConfig(train_data="t.jsonl", val_data="v.jsonl", out="o", epochs=2,
                        extra_train_data=["x.jsonl"], limit=5)
    path = _write(tmp_path, json.dumps(asdict(train)))
    assert TrainConfig.from_file(path) == train
    assert TrainConfig.from_file(path, epochs=3) == TrainConfig(**{**asdict(train), "epochs": 3})

    editor = EditorTrainConfig(steps=7, scenes="simple")
    path = _write(tmp_path, json.dumps(editor.to_dict()))
    assert EditorTrainConfig.from_file(path) == editor
    assert EditorTrainConfig.from_file(path, steps=8).steps == 8

    rl = RLConfig.from_dict({"rewards": "mini=2, pixel", "ops": ["recolor"], "steps": 4})
    path = tmp_path / "rl.json"
    rl.save(path)
    assert RLConfig.from_file(path) == rl
    assert RLConfig.from_file(path, steps=9) == RLConfig.from_dict({**rl.to_dict(), "steps": 9})


@pytest.mark.parametrize("cls, what", [(TrainConfig, "training config"),
                                       (EditorTrainConfig, "editor config"),
                                       (RLConfig, "RL config")])
def test_training_configs_keep_their_messages(tmp_path: Path, cls: type, what: str) -> None:
    with pytest.raises(ConfigError, match=f"cannot read {what} "):
        cls.from_file(tmp_path / "missing.json")
    path = _write(tmp_path, json.dumps({"no_such_setting": 1}))
    with pytest.raises(ConfigError, match=rf"unknown keys in {path}: \['no_such_setting'\]; "
                                          r"known: \[.*'out'.*\]"):
        cls.from_file(path)
