"""Settings of the VLM backend: one frozen, validated dataclass, parsed from the backend spec.

A spec is ``vlm:PATH`` optionally followed by ``,key=value`` settings::

    vlm:/models/SpatialReward-8B
    vlm:/models/Qwen3-VL-8B-Instruct,adapter=/models/sr-lora,max_pixels=401408
    vlm:/models/EditScore-7B,prompts=editscore,samples=4

The keys are the field names of :class:`VLMConfig`; ``python -m spatialreward backends``
lists the backends and ``docs/vlm.md`` every setting.
"""

from __future__ import annotations

import re
from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from ..errors import ConfigError

DEVICES = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")
DTYPES = ("auto", "bfloat16", "float16", "float32")
ATTENTION = ("sdpa", "eager")
QUERIES = ("prompt", "answer")
SINKS = ("suppress", "keep")
RESIZE = ("cap", "official")
PARSE = ("ours", "official")
SELF_ENSEMBLE_TEMPERATURE = 0.7
CAP_PIXELS = 589_824
"""The default pixel budget under ``resize=cap`` (768 x 768)."""


def _help(default: Any, text: str) -> Any:
    return field(default=default, metadata={"help": text})


@dataclass(frozen=True)
class VLMConfig:
    """Everything that decides how a checkpoint is loaded and run."""

    path: Path = _help(MISSING, "checkpoint directory (config.json, *.safetensors, tokenizer)")
    adapter: Path | None = _help(None, "LoRA adapter directory (adapter_config.json + "
                                       "adapter_model.safetensors), merged into the weights")
    prompts: str = _help("spatialreward", "judging protocol: 'spatialreward', 'editscore' "
                                          "or the path of your own .toml template file")
    device: str = _help("auto", "'auto' (CUDA when available), 'cpu', 'cuda' or 'cuda:N'")
    dtype: str = _help("auto", "'auto' (bfloat16 on CUDA, float32 on CPU), 'bfloat16', "
                               "'float16' or 'float32'")
    attn: str = _help("sdpa", "attention kernel of the language model: 'sdpa' or 'eager'")
    resize: str = _help("cap", "how images are sized for the model: 'cap' (each image is "
                               "shrunk to fit max_pixels by the model's processor) or "
                               "'official' (the qwen-vl-utils rules of the official "
                               "evaluations, then the checkpoint's own processor limits)")
    max_pixels: int | None = _help(None, "largest image, in pixels: under resize=cap the "
                                         "budget (default 589,824 = 768x768), under "
                                         "resize=official qwen-vl-utils' max_pixels (default "
                                         "16,384 tokens, no practical cap)")
    min_pixels: int | None = _help(None, "smallest image, in pixels (default: the "
                                         "checkpoint's preprocessor setting under cap, "
                                         "4 tokens under official)")
    max_new_tokens: int = _help(4096, "longest answer per call (4,096 = the official "
                                      "evaluation; an answer cut off here is a failed "
                                      "judgment counted as truncated)")
    min_new_tokens: int = _help(0, "shortest answer per call (benchmarks set it to fix the "
                                   "answer length; judging leaves it at 0)")
    parse: str = _help("ours", "reading scores from answers: 'ours' (an answer without a "
                               "score is a failed judgment, counted) or 'official' (the "
                               "official scripts' fill: midpoint 12.5, a single score "
                               "duplicated, extra ones cut; spatialreward.official_parse)")
    samples: int = _help(1, "answers per call; above 1 they are sampled and their scores "
                            "averaged (EditScore's self-ensemble)")
    temperature: float | None = _help(None, "sampling temperature; 0 = greedy (default: the "
                                            "protocol's; with samples > 1 and a greedy "
                                            "protocol, 0.7)")
    top_p: float | None = _help(None, "nucleus sampling threshold (default: the protocol's)")
    top_k: int | None = _help(None, "top-k sampling cut, 0 = none (default: the protocol's)")
    seed: int = _help(0, "random seed for sampling")
    batch_size: int = _help(8, "sequences per generate() call")
    reuse_images: bool = _help(True, "encode each distinct image once and reuse it (a shared "
                                     "source across candidates, an edit across SC and PQ)")
    reuse_prefix: bool = _help(True, "judge the K candidates of one source from one "
                                     "computation of their SC prompts' shared prefix "
                                     "(system text + source image): its KV cache is "
                                     "reused, as vLLM's prefix caching does (greedy "
                                     "decoding only, not while attention is captured)")
    image_cache: int = _help(16, "encoded images kept for reuse across calls")
    attention_summary: bool = _help(True, "capture the SC call's attention to compute the "
                                          "judgment's attention diagnostics")
    attention_queries: str = _help("prompt", "which tokens' attention the maps and "
                                             "diagnostics read: 'prompt' (the instruction "
                                             "text after the images) or 'answer' (the "
                                             "generated tokens)")
    sinks: str = _help("suppress", "sink tokens in attention maps: 'suppress' (replace them "
                                   "by the map's median) or 'keep'")
    sink_factor: float = _help(10.0, "an image token is a sink when it holds more than this "
                                     "many times the uniform share in most layers and heads")

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "path", Path(self.path).expanduser())
        if self.adapter is not None:
            set_(self, "adapter", Path(self.adapter).expanduser())
        if not DEVICES.match(self.device):
            raise ConfigError(f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        for name, allowed in (("dtype", DTYPES), ("attn", ATTENTION),
                              ("attention_queries", QUERIES), ("sinks", SINKS),
                              ("resize", RESIZE), ("parse", PARSE)):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name} must be one of {', '.join(allowed)}, "
                                  f"got {getattr(self, name)!r}")
        positive = ("max_new_tokens", "samples", "batch_size", "image_cache")
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.max_pixels is not None and self.max_pixels < 1:
            raise ConfigError(f"max_pixels must be at least 1, got {self.max_pixels}")
        top = self.pixel_cap or 2**62
        if self.min_pixels is not None and not 1 <= self.min_pixels <= top:
            raise ConfigError(f"min_pixels must be in 1..max_pixels ({top}), "
                              f"got {self.min_pixels}")
        if not 0 <= self.min_new_tokens <= self.max_new_tokens:
            raise ConfigError("min_new_tokens must be in 0..max_new_tokens")
        if self.temperature is not None and self.temperature < 0:
            raise ConfigError(f"temperature must be >= 0 (0 = greedy), got {self.temperature}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k is not None and self.top_k < 0:
            raise ConfigError(f"top_k must be >= 0 (0 = no cut), got {self.top_k}")
        if self.sink_factor <= 1:
            raise ConfigError(f"sink_factor must be above 1, got {self.sink_factor}")

    @property
    def pixel_cap(self) -> int | None:
        """``max_pixels`` with its default filled in: 589,824 under ``resize=cap``; under
        ``official`` None means qwen-vl-utils' own default."""
        if self.max_pixels is not None:
            return self.max_pixels
        return CAP_PIXELS if self.resize == "cap" else None

    @property
    def sampling(self) -> bool:
        """Whether answers are sampled (a resolved temperature above 0)."""
        return (self.temperature or 0.0) > 0 or (self.temperature is None and self.samples > 1)

    def with_protocol(self, temperature: float, top_p: float, top_k: int) -> VLMConfig:
        """These settings with the unset decoding keys taken from a protocol's
        ``[generation]``; several samples of a greedy protocol are drawn at 0.7
        (EditScore's self-ensemble temperature)."""
        t, p, k = protocol_decoding(self.temperature, self.top_p, self.top_k, self.samples,
                                    (temperature, top_p, top_k))
        return replace(self, temperature=t, top_p=p, top_k=k)

    @classmethod
    def from_argument(cls, argument: str | None) -> VLMConfig:
        """Parse ``PATH[,key=value...]`` (the part of the spec after ``vlm:``).

        >>> c = VLMConfig.from_argument("/m/sr8b,max_pixels=401408,reuse_images=no")
        >>> str(c.path), c.max_pixels, c.reuse_images
        ('/m/sr8b', 401408, False)
        """
        if not argument or not argument.strip():
            raise ConfigError(
                "the vlm backend needs a checkpoint directory: --backend vlm:/path/to/checkpoint "
                "(optionally followed by ,key=value settings; see docs/vlm.md)"
            )
        return cls(**spec_settings(argument, cls, "path", "vlm"))

    def describe(self) -> dict[str, Any]:
        """The settings as plain JSON values (for meta fields and logs)."""
        return {f.name: (str(v) if isinstance(v := getattr(self, f.name), Path) else v)
                for f in fields(self)}


def protocol_decoding(temperature: float | None, top_p: float | None, top_k: int | None,
                      samples: int, protocol: tuple[float, float, int]
                      ) -> tuple[float, float, int]:
    """(temperature, top_p, top_k): the settings given, the protocol's ``[generation]``
    for those left unset; several samples of a greedy protocol are drawn at 0.7
    (EditScore's self-ensemble temperature).

    >>> protocol_decoding(None, None, None, 4, (0.0, 1.0, 0))
    (0.7, 1.0, 0)
    """
    t = protocol[0] if temperature is None else temperature
    if samples > 1 and t == 0:
        t = SELF_ENSEMBLE_TEMPERATURE
    return (t, protocol[1] if top_p is None else top_p, protocol[2] if top_k is None else top_k)


def spec_settings(argument: str, cls: Any, head: str, what: str) -> dict[str, Any]:
    """``HEAD[,key=value...]`` (a backend spec's argument) as keyword arguments of the
    dataclass ``cls``: HEAD under ``head``, each value converted to its field's type.
    Splits only before ``key=``, so a path or URL may contain commas not followed by one.

    >>> spec_settings("/m/x,samples=2", VLMConfig, "path", "vlm")
    {'path': '/m/x', 'samples': 2}
    """
    first, *pairs = re.split(r",(?=\s*\w+\s*=)", argument.strip())
    known = {f.name: f for f in fields(cls)}
    values: dict[str, Any] = {head: first.strip()}
    for pair in pairs:
        key, _, raw = (p.strip() for p in pair.partition("="))
        if key not in known or key == head:
            names = ", ".join(n for n in known if n != head)
            raise ConfigError(f"unknown {what} setting {key!r}; known settings: {names}")
        values[key] = _convert(key, raw, known[key].type, what)
    return values


def _convert(key: str, raw: str, kind: Any, what: str = "vlm") -> Any:
    kind = str(kind)
    try:
        if kind.startswith("bool"):
            if raw.lower() not in {"1", "0", "true", "false", "yes", "no"}:
                raise ValueError(raw)
            return raw.lower() in {"1", "true", "yes"}
        if kind.startswith("int"):
            return None if raw.lower() == "none" else int(raw.replace("_", ""))
        if kind.startswith("float"):
            return None if raw.lower() == "none" else float(raw)
        if kind.startswith("Path"):
            return None if raw.lower() == "none" else Path(raw)
        return raw
    except ValueError:
        raise ConfigError(f"{what} setting {key}={raw!r} is not a valid {kind}") from None
