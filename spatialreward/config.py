"""Studio configuration: one frozen, validated dataclass passed down explicitly."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .images import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS


@dataclass(frozen=True)
class StudioConfig:
    """Settings shared by the app, the CLI and the services."""

    host: str = field(
        default="127.0.0.1",
        metadata={"help": "address to bind; 127.0.0.1 keeps the Studio private to this machine"},
    )
    port: int = field(
        default=7860,
        metadata={"help": "HTTP port of the app"},
    )
    share: bool = field(
        default=False,
        metadata={"help": "create a public gradio.live link (opt-in)"},
    )
    backend: str = field(
        default="mini",
        metadata={"help": "default reward-model backend spec: 'mini' (embedded model) or 'pixel'"},
    )
    backends: tuple[str, ...] = field(
        default=(),
        metadata={"help": "more backend specs the app offers besides mini, pixel and --backend "
                          "(STUDIO_BACKENDS, separated by ';', e.g. 'vlm:/models/sr8b;"
                          "mini:data/runs/mini-global'); remote callers can use no others"},
    )
    db: Path = field(
        default=Path("data/studio.db"),
        metadata={"help": "the judgment store (SQLite); images are kept beside it in images/"},
    )
    auth: bool = field(
        default=False,
        metadata={"help": "require a login for annotators registered in the store (db add-annotator"
                          " --password)"},
    )
    max_pixels: int = field(
        default=DEFAULT_MAX_PIXELS,
        metadata={"help": "largest accepted image, in pixels (decompression-bomb guard)"},
    )
    max_upload_bytes: int = field(
        default=DEFAULT_MAX_BYTES,
        metadata={"help": "largest accepted upload, in bytes"},
    )
    exif_orientation: bool = field(
        default=True,
        metadata={"help": "turn photos upright by their EXIF orientation on intake; false "
                          "keeps the stored pixels, as the official evaluation scripts "
                          "read them (the setting that reproduces their numbers)"},
    )
    max_instruction_chars: int = field(
        default=2000,
        metadata={"help": "longest accepted instruction"},
    )
    max_zip_bytes: int = field(
        default=512 * 1024**2,
        metadata={"help": "largest total size an uploaded or server .zip may unpack to"},
    )
    max_loaded_backends: int = field(
        default=4,
        metadata={"help": "models kept loaded at once (least recently used ones are freed)"},
    )
    max_active_runs: int = field(
        default=2,
        metadata={"help": "RL runs that may train at the same time"},
    )
    max_rl_steps: int = field(
        default=20_000,
        metadata={"help": "most RL steps one run started from the app may ask for"},
    )
    max_rl_processes: int = field(
        default=max(1, os.cpu_count() or 1),
        metadata={"help": "most processes one RL run started from the app may use"},
    )
    session_ttl_s: int = field(
        default=900,
        metadata={"help": "seconds a browser session's last inspection (its images and "
                          "maps) is kept after its last use"},
    )

    def __post_init__(self) -> None:
        if not 1 <= self.port <= 65535:
            raise ConfigError(f"port must be in 1..65535, got {self.port}; pass --port 7860")
        if self.max_pixels < 1 or self.max_upload_bytes < 1:
            raise ConfigError("max_pixels and max_upload_bytes must be positive")
        for name in ("max_instruction_chars", "max_zip_bytes", "max_loaded_backends",
                     "max_active_runs", "max_rl_steps", "max_rl_processes", "session_ttl_s"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        specs = tuple(s.strip() for s in self.backends if s and s.strip())
        object.__setattr__(self, "backends", specs)

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


def _convert(name: str, raw: str, kind: type[Any]) -> object:
    try:
        if kind is bool:
            if raw.lower() not in {"1", "0", "true", "false", "yes", "no"}:
                raise ValueError(raw)
            return raw.lower() in {"1", "true", "yes"}
        if issubclass(kind, Path):
            return Path(raw)
        if kind is tuple:  # a list of backend specs (which contain commas): ';' separates
            return tuple(part.strip() for part in raw.split(";") if part.strip())
        return kind(raw)
    except ValueError:
        raise ConfigError(f"setting {name} = {raw!r} is not a valid {kind.__name__}") from None
