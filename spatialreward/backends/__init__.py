"""Reward-model backends: a registry and a short factory.

A backend spec is ``NAME`` or ``NAME:ARGUMENT`` (for example ``pixel`` or, once the
VLM backend lands, ``vlm:/models/SpatialReward-8B``). Builders register themselves
under a name; :func:`create` parses the spec, finds the builder and builds. Unknown
names fail loudly with the list of known ones. Nothing heavy is imported until a
backend is actually built.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable

from ..errors import UnknownBackendError
from .base import Backend

Builder = Callable[[str | None], Backend]

_BUILDERS: dict[str, tuple[Builder, str]] = {}
# Built-in backends register when their module is imported; listing them must not
# import torch, so their names and descriptions are also known here.
_BUILTIN = {
    "pixel": ("spatialreward.backends.pixel",
              "pixel-evidence baseline: finds changed regions; does not read the instruction"),
    "mini": ("spatialreward.backends.mini",
             "SpatialReward-Mini: locates the edit regions, then judges them (embedded)"),
    "vlm": ("spatialreward.backends.vlm",
            "a Qwen3-VL / Qwen2.5-VL judge checkpoint on disk, e.g. vlm:/models/SpatialReward-8B"),
    "openai": ("spatialreward.backends.openai",
               "a judge behind an OpenAI-compatible server (vLLM, SGLang, an API), e.g. "
               "openai:http://127.0.0.1:8000/v1"),
}


def register(name: str, description: str | None = None) -> Callable[[Builder], Builder]:
    """Decorator: make ``builder(argument) -> Backend`` available under ``name``."""

    def decorate(builder: Builder) -> Builder:
        if name in _BUILDERS:
            raise ValueError(f"backend {name!r} is registered twice")
        _BUILDERS[name] = (builder, description or _BUILTIN.get(name, ("", ""))[1])
        return builder

    return decorate


def parse_spec(spec: str) -> tuple[str, str | None]:
    """Split ``NAME[:ARGUMENT]``.

    >>> parse_spec("vlm:/models/x:y")
    ('vlm', '/models/x:y')
    >>> parse_spec(" pixel ")
    ('pixel', None)
    """
    name, sep, argument = spec.strip().partition(":")
    return name.strip().lower(), (argument if sep else None)


def normalize_spec(spec: str) -> str:
    """One spelling per backend: the name lower-cased, a path argument (and path-valued
    ``key=value`` options) made absolute, the options sorted. Two specs that load the
    same model normalise alike, so a cache keyed by this holds one copy of it.

    >>> normalize_spec(" MINI ")
    'mini'
    >>> normalize_spec("vlm:/m/x/../sr8b,samples=2,device=cpu")
    'vlm:/m/sr8b,device=cpu,samples=2'
    >>> normalize_spec("openai:http://127.0.0.1:8000/v1/,model=sr")
    'openai:http://127.0.0.1:8000/v1,model=sr'
    """
    name, argument = parse_spec(spec)
    if argument is None:
        return name
    first, *options = [part.strip() for part in argument.split(",")]

    def path(text: str) -> str:
        return os.path.abspath(os.path.expanduser(text)) if text else text

    if "=" in first:
        head = first
    elif name == "openai":  # a URL, not a path
        head = first.rstrip("/")
    else:
        head = path(first)
    opts = []
    for opt in options:
        key, sep, value = opt.partition("=")
        if sep and value.startswith(("/", ".", "~")):
            value = path(value)
        opts.append(f"{key.strip().lower()}{sep}{value}")
    return ",".join([f"{name}:{head}", *sorted(opts)])


def needs_argument(name: str) -> bool:
    """True for backends that cannot be built from their bare name (``vlm``, ``openai``)."""
    return name in ("vlm", "openai")


def available() -> dict[str, str]:
    """Backend names and their one-line descriptions (imports no backend)."""
    names = {name: desc for name, (_, desc) in _BUILTIN.items()}
    names.update({name: desc for name, (_, desc) in _BUILDERS.items()})
    return dict(sorted(names.items()))


def create(spec: str) -> Backend:
    """Build the backend a spec names."""
    name, argument = parse_spec(spec)
    if name in _BUILTIN and name not in _BUILDERS:
        importlib.import_module(_BUILTIN[name][0])  # runs its @register
    if name not in _BUILDERS:
        known = ", ".join(available())
        raise UnknownBackendError(
            f"unknown backend {spec!r}; known backends: {known} "
            "(run `python -m spatialreward backends` to see what each does)"
        )
    builder, _ = _BUILDERS[name]
    return builder(argument)


def load_reward_model(spec: str = "mini") -> Backend:
    """The reward model a spec names, e.g. ``load_reward_model("mini")``; unknown names fail
    loudly. Same as :func:`create`; the name reads better in scripts."""
    return create(spec)


__all__ = ["Backend", "available", "create", "load_reward_model", "needs_argument",
           "normalize_spec", "parse_spec", "register"]
