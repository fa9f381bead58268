"""Reading a model checkpoint folder: a JSON config beside safetensors weights.

One reader for every embedded model (SpatialReward-Mini, the RL editor): the files must
exist, the config must be JSON, the weights safetensors (never unpickled), and any
failure is a :class:`~spatialreward.errors.ConfigError` that says what to do. The weights
are read once: the tensors and the version digest come from the same bytes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_tensors

from .errors import ConfigError

T = TypeVar("T")


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint folder read into memory."""

    folder: Path
    meta: dict[str, Any]
    """The config file's JSON object."""
    state: dict[str, torch.Tensor]
    """The weights, by parameter name."""
    digest: str
    """The first 12 hex digits of the weights file's SHA-256 (a version string)."""

    def build(self, what: str, make: Callable[[dict[str, Any]], T]) -> T:
        """``make(meta)`` (the model, its weights loaded), with a config or weights that
        do not fit turned into one clear error."""
        try:
            return make(self.meta)
        except (KeyError, TypeError, ValueError, RuntimeError) as err:
            raise unusable(self.folder, what, err) from None


def unusable(folder: Path, what: str, err: BaseException) -> ConfigError:
    return ConfigError(f"{folder.name} is not a usable {what} checkpoint ({type(err).__name__}"
                       f": {str(err)[:200]}); point at a folder its training command wrote")


def read_checkpoint(folder: str | Path, weights: str, config: str, *, what: str, hint: str
                    ) -> Checkpoint:
    """The checkpoint in ``folder`` (files ``weights`` and ``config``); ``what`` names the
    model in errors, ``hint`` says how to make one."""
    folder = Path(folder)
    w, c = folder / weights, folder / config
    if not w.is_file() or not c.is_file():
        raise ConfigError(f"no {what} checkpoint in {folder} (need {weights} and {config}); "
                          f"{hint}")
    try:
        meta = json.loads(c.read_text(encoding="utf-8"))
        data = w.read_bytes()
        state = load_tensors(data)
    except (ValueError, OSError, SafetensorError) as err:  # not JSON / not safetensors
        raise unusable(folder, what, err) from None
    if not isinstance(meta, dict):
        raise unusable(folder, what, ValueError(f"{config} holds no JSON object"))
    return Checkpoint(folder, meta, state, hashlib.sha256(data).hexdigest()[:12])
