"""Studio configuration: one frozen, validated dataclass passed down explicitly."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path

from .errors import ConfigError
from .images import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS


def _help(text: str, default: object) -> object:
    return field(default=default, metadata={"help": text})


@dataclass(frozen=True)
class StudioConfig:
    """Settings shared by the app, the CLI and the services."""

    host: str = _help("address to bind; 127.0.0.1 keeps the Studio private to this machine",
                      "127.0.0.1")  # type: ignore[assignment]
    port: int = _help("HTTP port of the app", 7860)  # type: ignore[assignment]
    share: bool = _help("create a public gradio.live link (opt-in)", False)  # type: ignore[assignment]
    backend: str = _help("default reward-model backend spec, e.g. 'pixel'",
                         "pixel")  # type: ignore[assignment]
    data_dir: Path = _help("folder for the store and its images",
                           Path("data"))  # type: ignore[assignment]
    max_pixels: int = _help("largest accepted image, in pixels (decompression-bomb guard)",
                            DEFAULT_MAX_PIXELS)  # type: ignore[assignment]
    max_upload_bytes: int = _help("largest accepted upload, in bytes",
                                  DEFAULT_MAX_BYTES)  # type: ignore[assignment]
    max_candidates: int = _help("edited candidates judged per request in the UI",
                                4)  # type: ignore[assignment]
    max_instruction_chars: int = _help("longest accepted instruction",
                                       2000)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if not 1 <= self.port <= 65535:
            raise ConfigError(f"port must be in 1..65535, got {self.port}; pass --port 7860")
        if self.max_pixels < 1 or self.max_upload_bytes < 1:
            raise ConfigError("max_pixels and max_upload_bytes must be positive")
        if not 1 <= self.max_candidates <= 16:
            raise ConfigError(f"max_candidates must be in 1..16, got {self.max_candidates}")
        object.__setattr__(self, "data_dir", Path(self.data_dir))

    @classmethod
    def from_env(cls, **overrides: object) -> StudioConfig:
        """Defaults, then ``STUDIO_*`` environment variables (and ``PORT``), then overrides."""
        values: dict[str, object] = {}
        for f in fields(cls):
            raw = os.environ.get(f"STUDIO_{f.name.upper()}")
            if raw is not None:
                values[f.name] = _convert(f.name, raw, type(f.default))
        if "PORT" in os.environ and "port" not in values:
            values["port"] = _convert("port", os.environ["PORT"], int)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]


def _convert(name: str, raw: str, kind: type) -> object:
    try:
        if kind is bool:
            if raw.lower() not in {"1", "0", "true", "false", "yes", "no"}:
                raise ValueError(raw)
            return raw.lower() in {"1", "true", "yes"}
        if issubclass(kind, Path):
            return Path(raw)
        return kind(raw)
    except ValueError:
        raise ConfigError(f"setting {name} = {raw!r} is not a valid {kind.__name__}") from None
