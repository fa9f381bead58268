"""Checkpoints that resume exactly: policy, optimiser, RNG states, step and run state.

A checkpoint is a folder:

- ``policy.safetensors`` + ``policy.json``: the trainable weights, and (for evaluation)
  the whole editor as an editor checkpoint in ``editor/``;
- ``optimizer.pt``: the optimiser's state dict (tensors, numbers and lists only; read
  back with ``torch.load(..., weights_only=True)``, which refuses arbitrary objects);
- ``rng.safetensors``: torch's global RNG state;
- ``state.json``: the step, the metric history the hacking alert needs, the numpy RNG
  state (JSON), and the config the run started with.

The trainer draws every random number from seeds derived from (seed, step, row), so
these states are all it needs; resuming after N steps and running M more gives the
same weights as N + M steps straight. The folder is written next to the old one and
swapped in by renames, so a crash mid-save leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ..errors import ConfigError

FOLDER = "checkpoint"


def save_checkpoint(out: Path, *, policy_state: dict[str, torch.Tensor],
                    optimizer: torch.optim.Optimizer, state: dict[str, Any],
                    np_rng: np.random.Generator | None = None) -> Path:
    final = out / FOLDER
    tmp = out / f"{FOLDER}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in policy_state.items()},
              str(tmp / "policy.safetensors"))
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    save_file({"torch": torch.get_rng_state()}, str(tmp / "rng.safetensors"))
    payload = dict(state)
    if np_rng is not None:
        payload["numpy_rng"] = np_rng.bit_generator.state
    (tmp / "state.json").write_text(json.dumps(payload, indent=1))
    old = out / f"{FOLDER}.old"
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    if old.exists():
        shutil.rmtree(old)
    return final


def has_checkpoint(out: Path) -> bool:
    return (out / FOLDER / "state.json").is_file()


def load_checkpoint(out: Path, optimizer: torch.optim.Optimizer,
                    np_rng: np.random.Generator | None = None
                    ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(policy trainable state, state dict); restores the optimiser and RNG states."""
    folder = out / FOLDER
    if not has_checkpoint(out):
        raise ConfigError(f"no checkpoint in {folder} to resume from; start the run afresh")
    policy_state = load_file(str(folder / "policy.safetensors"))
    opt_state = torch.load(folder / "optimizer.pt", weights_only=True)
    optimizer.load_state_dict(opt_state)
    torch.set_rng_state(load_file(str(folder / "rng.safetensors"))["torch"])
    state = json.loads((folder / "state.json").read_text())
    if np_rng is not None and "numpy_rng" in state:
        np_rng.bit_generator.state = state["numpy_rng"]
    return policy_state, state
