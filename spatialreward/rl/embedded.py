"""The embedded editor as a policy: :class:`EmbeddedEditor` implements
:class:`~spatialreward.rl.policy.EditPolicy` for :class:`~spatialreward.rl.editor.EditorNet`.

A checkpoint is a folder with ``editor.safetensors`` (every weight, adapters included)
and ``config.json`` (``{"editor": EditorConfig, "lora": {"rank", "alpha"} | null, ...}``);
weights are read with safetensors, nothing is unpickled.

Fine-tuning modes: ``lora`` adds adapters (the reference policy is the model with its
adapters off), ``full`` trains every weight (the reference is a frozen copy of the
initial weights), ``none`` trains nothing (evaluation).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn

from ..checkpoints import read_checkpoint
from ..errors import ConfigError
from .editor import EditorConfig, EditorNet, encode
from .lora import add_lora, lora_parameters, set_lora_enabled
from .policy import Rollout, StepLogProb, chunks
from .sde import sde_step, sigma_schedule

WEIGHTS, CONFIG = "editor.safetensors", "config.json"
FINETUNE = ("lora", "full", "none")


def to_tensor(images: Sequence[np.ndarray] | np.ndarray) -> torch.Tensor:
    """(N, S, S, 3) uint8 -> (N, 3, S, S) float in [-1, 1]."""
    arr = np.ascontiguousarray(np.stack(list(images)))
    return torch.from_numpy(arr).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(N, 3, S, S) in [-1, 1] -> (N, S, S, 3) uint8."""
    x = ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).contiguous().numpy()


def decode(source: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
    """The edited image from the generated residual: source + 2 * residual, clipped."""
    return (source + 2.0 * residual).clamp(-1, 1)


def residual_target(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """What the flow generates for a (source, target) pair: (target - source) / 2."""
    return (target - source) / 2.0


def _noise(gens: Sequence[torch.Generator], shape: tuple[int, ...]) -> torch.Tensor:
    return torch.stack([torch.randn(shape, generator=g) for g in gens])


class EmbeddedEditor:
    """The embedded editor behind the policy protocol (see :mod:`.policy`)."""

    name = "embedded-editor"

    def __init__(self, net: EditorNet, *, finetune: str = "none", lora_rank: int = 8,
                 lora_alpha: float = 16.0, shift: float = 1.0, micro_batch: int = 64,
                 version: str = "") -> None:
        if finetune not in FINETUNE:
            raise ConfigError(f"finetune must be one of {FINETUNE}, got {finetune!r}")
        self.net = net
        self.config = net.config
        self.shift = shift
        self.micro_batch = micro_batch
        self.finetune = finetune
        self.lora: dict[str, float] | None = getattr(net, "_lora_spec", None)
        self._ref: nn.Module | None = None
        self._use_ref = False
        if finetune == "lora" and self.lora is None:
            add_lora(net, lora_rank, lora_alpha, skip=("text.",))
            self.lora = {"rank": lora_rank, "alpha": lora_alpha}
            net._lora_spec = self.lora  # type: ignore[assignment]
        elif finetune == "full":
            self._ref = copy.deepcopy(net).requires_grad_(False)
            for p in net.parameters():
                p.requires_grad_(True)
        elif finetune == "none":
            net.requires_grad_(False)
        self._wrapped: nn.Module = net
        self.version = version
        self.net.eval()  # no dropout or batch statistics: train and eval behave alike

    @property
    def image_size(self) -> int:
        return self.config.size

    # -- checkpoints ------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path, **kwargs: Any) -> EmbeddedEditor:
        ckpt = read_checkpoint(path, WEIGHTS, CONFIG, what="editor",
                               hint="train one with `python -m spatialreward train-editor "
                                    "--config configs/editor.json`")

        def make(meta: dict[str, Any]) -> EditorNet:
            net = EditorNet(EditorConfig(**meta["editor"]))
            lora = meta.get("lora")
            if lora:
                add_lora(net, int(lora["rank"]), float(lora["alpha"]), skip=("text.",))
                net._lora_spec = {"rank": int(lora["rank"]),  # type: ignore[assignment]
                                  "alpha": float(lora["alpha"])}
            net.load_state_dict(ckpt.state)
            return net

        net = ckpt.build("editor", make)
        kwargs.setdefault("shift", float(ckpt.meta.get("shift", 1.0)))
        return cls(net, version=ckpt.digest, **kwargs)

    def save(self, folder: str | Path, extra: dict[str, Any] | None = None) -> Path:
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous() for k, v in self.net.state_dict().items()}
        save_file(state, str(out / WEIGHTS))
        meta = {"editor": self.config.to_dict(), "lora": self.lora, "shift": self.shift,
                **(extra or {})}
        (out / CONFIG).write_text(json.dumps(meta, indent=1))
        return out

    # -- the protocol -----------------------------------------------------------------
    def _condition(self, sources: Sequence[np.ndarray], instructions: Sequence[str],
                   group_size: int) -> dict[str, torch.Tensor]:
        size = self.config.size
        for s in sources:
            if s.shape != (size, size, 3) or s.dtype != np.uint8:
                raise ConfigError(f"the editor takes ({size}, {size}, 3) uint8 sources, got "
                                  f"{s.shape} {s.dtype}")
        src = to_tensor(sources).repeat_interleave(group_size, 0)
        tokens = torch.tensor([encode(t) for t in instructions]).repeat_interleave(group_size, 0)
        return {"source": src, "tokens": tokens}

    def _forward(self, module: nn.Module, x: torch.Tensor, sigma: torch.Tensor,
                 cond: dict[str, torch.Tensor], rows: torch.Tensor | slice) -> torch.Tensor:
        return module(x, sigma, cond["source"][rows], cond["tokens"][rows])

    def _module(self) -> nn.Module:
        if self._use_ref:
            return self._ref if self._ref is not None else self.net
        return self._wrapped if torch.is_grad_enabled() else self.net

    @torch.no_grad()
    def sample(self, sources: Sequence[np.ndarray], instructions: Sequence[str],
               group_size: int, seeds: Sequence[int], *, steps: int,
               noise_level: float, sde_window: int = 0) -> Rollout:
        if len(sources) != len(instructions):
            raise ConfigError("give one instruction per source")
        cond = self._condition(sources, instructions, group_size)
        b = len(cond["tokens"])
        if len(seeds) != b:
            raise ConfigError(f"need one seed per row ({b}), got {len(seeds)}")
        gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
        shape = (3, self.config.size, self.config.size)
        sig = sigma_schedule(steps, self.shift)
        cap = float(sig[1]) if steps > 1 else 0.5
        # The last step is always the plain ODE step: in pixel space its noise would
        # stay in the image (a latent model's decoder would smooth it away).
        last = min(sde_window, steps - 1) if sde_window > 0 else steps - 1
        stochastic = torch.tensor([noise_level > 0 and i < last for i in range(steps)])
        x = _noise(gens, shape)
        states, means, scales, lps = [x], [], [], []
        module = self._module()
        for i in range(steps):
            v = torch.cat([self._forward(module, x[c], sig[i].expand(c.stop - c.start), cond, c)
                           for c in chunks(b, self.micro_batch)])
            level = noise_level if bool(stochastic[i]) else 0.0
            noise = _noise(gens, shape) if level > 0 else None
            st = sde_step(x, v, sig[i].expand(b), sig[i + 1].expand(b), noise_level=level,
                          sigma_cap=cap, noise=noise)
            x = st.sample
            states.append(x)
            means.append(st.mean)
            scales.append(st.scale)
            lps.append(st.log_prob)
        images = to_uint8(decode(cond["source"], x))
        return Rollout(torch.stack(states, 1), torch.stack(means, 1), torch.stack(scales, 1),
                       torch.stack(lps, 1), sig, stochastic, float(noise_level), images,
                       group_size, {**cond, "cap": cap})

    def log_prob(self, rollout: Rollout, rows: torch.Tensor, steps: torch.Tensor
                 ) -> StepLogProb:
        x = rollout.states[rows, steps]
        nxt = rollout.states[rows, steps + 1]
        sigma, sigma_next = rollout.sigmas[steps], rollout.sigmas[steps + 1]
        v = self._forward(self._module(), x, sigma, rollout.cond, rows)
        st = sde_step(x, v, sigma, sigma_next, noise_level=rollout.noise_level,
                      sigma_cap=float(rollout.cond["cap"]), prev=nxt)
        return StepLogProb(st.log_prob, st.mean, st.scale)

    def velocity(self, rollout: Rollout, rows: torch.Tensor, x: torch.Tensor,
                 sigma: torch.Tensor) -> torch.Tensor:
        return self._forward(self._module(), x, sigma, rollout.cond, rows)

    @contextmanager
    def reference(self) -> Iterator[None]:
        if self.finetune == "lora":
            set_lora_enabled(self.net, False)
        self._use_ref = True
        try:
            yield
        finally:
            self._use_ref = False
            if self.finetune == "lora":
                set_lora_enabled(self.net, True)

    def trainable_parameters(self) -> list[nn.Parameter]:
        if self.finetune == "lora":
            return lora_parameters(self.net)
        if self.finetune == "full":
            return list(self.net.parameters())
        return []

    def wrap(self, wrapper: Callable[[nn.Module], nn.Module]) -> nn.Module:
        self._wrapped = wrapper(self.net)
        return self._wrapped

    def trainable_state(self) -> dict[str, torch.Tensor]:
        keep = {id(p) for p in self.trainable_parameters()}
        return {k: v.detach().clone().contiguous() for k, v in self.net.named_parameters()
                if id(v) in keep}

    def load_trainable_state(self, state: dict[str, torch.Tensor]) -> None:
        params = dict(self.net.named_parameters())
        missing = sorted({k for k in params if params[k].requires_grad} - set(state))
        if missing:
            raise ConfigError(f"checkpoint lacks {len(missing)} trainable weights "
                              f"(first: {missing[0]}); was it made with another finetune mode?")
        with torch.no_grad():
            for k, v in state.items():
                params[k].copy_(v)

    # -- plain generation ---------------------------------------------------------------
    def generate(self, sources: Sequence[np.ndarray], instructions: Sequence[str],
                 seeds: Sequence[int], *, steps: int = 10) -> np.ndarray:
        """One deterministic (ODE) edit per source: (N, S, S, 3) uint8."""
        return self.sample(sources, instructions, 1, seeds, steps=steps, noise_level=0.0).images


__all__ = ["EmbeddedEditor", "decode", "residual_target", "to_tensor", "to_uint8"]
