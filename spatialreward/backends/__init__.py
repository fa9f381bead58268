"""Reward-model backends: a registry and a short factory.

A backend spec is ``NAME`` or ``NAME:ARGUMENT`` (for example ``pixel`` or, once the
VLM backend lands, ``vlm:/models/SpatialReward-8B``). Builders register themselves
under a name; :func:`create` parses the spec, finds the builder and builds. Unknown
names fail loudly with the list of known ones. Nothing heavy is imported until a
backend is actually built.
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import UnknownBackendError
from .base import Backend

Builder = Callable[[str | None], Backend]

_BUILDERS: dict[str, tuple[Builder, str]] = {}


def register(name: str, description: str) -> Callable[[Builder], Builder]:
    """Decorator: make ``builder(argument) -> Backend`` available under ``name``."""

    def decorate(builder: Builder) -> Builder:
        if name in _BUILDERS:
            raise ValueError(f"backend {name!r} is registered twice")
        _BUILDERS[name] = (builder, description)
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


def available() -> dict[str, str]:
    """Registered backend names and their one-line descriptions."""
    _load_builtin()
    return {name: desc for name, (_, desc) in sorted(_BUILDERS.items())}


def create(spec: str) -> Backend:
    """Build the backend a spec names."""
    _load_builtin()
    name, argument = parse_spec(spec)
    if name not in _BUILDERS:
        known = ", ".join(sorted(_BUILDERS)) or "(none)"
        raise UnknownBackendError(
            f"unknown backend {spec!r}; known backends: {known} "
            "(run `python -m spatialreward backends` to see what each does)"
        )
    builder, _ = _BUILDERS[name]
    return builder(argument)


def _load_builtin() -> None:
    # Importing the modules runs their @register decorators; cheap, no model weights.
    from . import pixel  # noqa: F401


__all__ = ["Backend", "available", "create", "parse_spec", "register"]
