"""Settings read from a JSON file into a frozen dataclass, with every mistake a ConfigError.

The one loader behind ``TrainConfig.from_file``, ``EditorTrainConfig.from_file`` and
``RLConfig.from_file``: a file that is missing, unreadable, not JSON or not a JSON
object, an unknown key (the message lists the known ones), a missing or mistyped
argument, and the dataclass's own ``__post_init__`` checks all raise
:class:`~spatialreward.errors.ConfigError` naming the file, so each front end shows them
as they are.

>>> from dataclasses import dataclass
>>> @dataclass(frozen=True)
... class Run:
...     steps: int = 10
...     lr: float = 1e-3
>>> config_from_dict(Run, {"steps": 3})
Run(steps=3, lr=0.001)
>>> config_from_dict(Run, {"step": 3}, "run.json")
Traceback (most recent call last):
...
spatialreward.errors.ConfigError: unknown keys in run.json: ['step']; known: ['lr', 'steps']
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from .errors import ConfigError

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

    C = TypeVar("C", bound=DataclassInstance)
else:
    C = TypeVar("C")


def read_config_file(path: str | Path, what: str = "config") -> dict[str, Any]:
    """The JSON object in ``path``; ``what`` names the file in errors ("training config")."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(f"cannot read {what} {path}: {err}") from err
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a JSON object of settings, "
                          f"found {type(data).__name__}")
    return data


def _check_keys(cls: type[DataclassInstance], keys: Iterable[str], where: str) -> None:
    known = {f.name for f in fields(cls)}
    unknown = set(keys) - known
    if unknown:
        raise ConfigError(f"unknown keys in {where}: {sorted(unknown)}; "
                          f"known: {sorted(known)}")


def config_from_dict(cls: type[C], data: Mapping[str, Any], where: str = "the config") -> C:
    """``cls(**data)``, refusing keys ``cls`` has no field for; ``where`` names the source."""
    _check_keys(cls, data, where)
    try:
        return cls(**data)
    except TypeError as err:  # a required field missing, or a value of the wrong kind
        raise ConfigError(f"{where}: {err}") from None


def load_config(cls: type[C], path: str | Path, *, what: str = "config",
                overrides: Mapping[str, Any] | None = None) -> C:
    """The ``cls`` settings in the JSON file ``path``, with ``overrides`` put over them.

    ``what`` names the file in errors ("cannot read training config PATH: ...");
    override keys are checked like the file's.
    """
    data = read_config_file(path, what)
    if overrides:
        _check_keys(cls, overrides, f"the overrides of {path}")
        data = {**data, **overrides}
    return config_from_dict(cls, data, str(path))
