"""Find, validate and load a Qwen-VL checkpoint directory (and an optional LoRA adapter).

Everything is read from local disk (``local_files_only=True``) and weights only from
safetensors (``use_safetensors=True``): nothing is downloaded and nothing is unpickled.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .architectures import ARCHITECTURES, CHAT_TEMPLATE, model_class, preprocessor_config
from .config import CAP_PIXELS, VLMConfig

log = logging.getLogger(__name__)

LAYOUT = (
    "a checkpoint directory must contain config.json (model_type qwen3_vl or qwen2_5_vl), "
    "the weights as safetensors (model.safetensors, or shards listed in "
    "model.safetensors.index.json), the tokenizer (tokenizer.json and tokenizer_config.json) "
    "and, preferably, preprocessor_config.json and a chat template - the files of a "
    "Qwen3-VL / Qwen2.5-VL release such as Qwen/Qwen3-VL-8B-Instruct; a LoRA adapter "
    "directory holds adapter_config.json and adapter_model.safetensors (see docs/vlm.md)"
)


@dataclass(frozen=True)
class CheckpointInfo:
    """A validated checkpoint: where its parts are and which architecture it has."""

    path: Path
    architecture: str
    adapter: Path | None
    weights: tuple[Path, ...]


@dataclass
class Loaded:
    """A loaded checkpoint, ready to run."""

    model: Any
    tokenizer: Any
    image_processor: Any
    chat_template: str
    chat_template_origin: str
    info: CheckpointInfo
    device: str
    dtype: str


def _json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ConfigError(f"{path} is unreadable or not JSON ({err}); {LAYOUT}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} is not a JSON object; {LAYOUT}")
    return data


def inspect_checkpoint(path: Path, adapter: Path | None = None) -> CheckpointInfo:
    """Check a directory's layout and read its architecture; ConfigError says what is missing."""
    path = Path(path).expanduser()
    if not path.is_dir():
        raise ConfigError(f"vlm checkpoint {str(path)!r} is not a directory; {LAYOUT}")
    if not (path / "config.json").is_file() and (path / "adapter_config.json").is_file():
        # PATH is a LoRA adapter: use its base model when that is a local directory.
        base = str(_json(path / "adapter_config.json").get("base_model_name_or_path") or "")
        if adapter is None and base and Path(base).expanduser().is_dir():
            return inspect_checkpoint(Path(base).expanduser(), path)
        raise ConfigError(
            f"{path} is a LoRA adapter (for {base or 'an unnamed base model'}), not a full "
            "checkpoint; pass the base model's directory with the adapter: "
            f"--backend vlm:/path/to/base,adapter={path}"
        )
    if not (path / "config.json").is_file():
        raise ConfigError(f"no config.json in {path}; {LAYOUT}")
    model_type = str(_json(path / "config.json").get("model_type", ""))
    if model_type not in ARCHITECTURES:
        raise ConfigError(
            f"{path} holds a {model_type or 'model without a model_type'}; the vlm backend runs "
            f"{' and '.join(ARCHITECTURES)} checkpoints; {LAYOUT}"
        )
    weights = tuple(sorted(path.glob("*.safetensors")))
    if not weights:
        pickled = sorted(p.name for p in path.glob("*.bin")) + sorted(
            p.name for p in path.glob("*.pt"))
        hint = (f" (found {', '.join(pickled[:3])}: pickled weights are refused; convert them "
                "to safetensors)") if pickled else ""
        raise ConfigError(f"no *.safetensors weights in {path}{hint}; {LAYOUT}")
    if not (path / "tokenizer.json").is_file() and not (path / "tokenizer_config.json").is_file():
        raise ConfigError(f"no tokenizer (tokenizer.json / tokenizer_config.json) in {path}; "
                          f"{LAYOUT}")
    if adapter is not None:
        adapter = Path(adapter).expanduser()
        if not (adapter / "adapter_config.json").is_file():
            raise ConfigError(f"adapter {adapter} has no adapter_config.json; {LAYOUT}")
        if not (adapter / "adapter_model.safetensors").is_file():
            raise ConfigError(f"adapter {adapter} has no adapter_model.safetensors (pickled "
                              "adapter_model.bin files are refused); convert it to safetensors")
    return CheckpointInfo(path=path, architecture=model_type, adapter=adapter, weights=weights)


def fingerprint(info: CheckpointInfo) -> str:
    """A short hash of the weights: config, each safetensors file's size, header and evenly
    spaced samples of its bytes (a fine-tune changes nearly every byte, and hashing 16 GB in
    full would take a minute), and the whole adapter."""
    h = hashlib.sha256((info.path / "config.json").read_bytes())
    for f in info.weights:
        size = f.stat().st_size
        h.update(f"{f.name}:{size}".encode())
        with f.open("rb") as fh:
            for k in range(9):
                fh.seek(size * k // 9)
                h.update(fh.read(1 << 16))
    if info.adapter is not None:
        for name in ("adapter_config.json", "adapter_model.safetensors"):
            with (info.adapter / name).open("rb") as fh:
                while chunk := fh.read(1 << 24):
                    h.update(chunk)
    return h.hexdigest()[:12]


def resolve_device(config: VLMConfig) -> tuple[str, str]:
    """(device, dtype name) for the settings: bfloat16 on CUDA, float32 on CPU by default."""
    import torch

    device = config.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={config.device} but no CUDA device is available; use "
                          "device=cpu (slow for 8B models) or run on a GPU machine")
    dtype = config.dtype
    if dtype == "auto":
        dtype = "bfloat16" if device.startswith("cuda") else "float32"
    if device == "cpu" and dtype != "float32":
        log.warning("%s on CPU is far slower than float32 on most CPUs", dtype)
    return device, dtype


def find_chat_template(path: Path, tokenizer: Any) -> tuple[str, str]:
    """The chat template a checkpoint's processor uses, and where it came from."""
    processor_file = path / "chat_template.json"
    if processor_file.is_file():
        template = _json(processor_file).get("chat_template")
        if isinstance(template, str) and template.strip():
            return template, "chat_template.json"
    if isinstance(getattr(tokenizer, "chat_template", None), str) and tokenizer.chat_template:
        return tokenizer.chat_template, "tokenizer"
    log.warning("%s ships no chat template; using the built-in ChatML layout", path)
    return CHAT_TEMPLATE, "built-in ChatML"


def build_image_processor(path: Path | None, architecture: str, config: VLMConfig) -> Any:
    """The PIL Qwen-VL image processor with the checkpoint's settings and our pixel budget
    (the PIL variant needs no torchvision)."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (
        Qwen2VLImageProcessorPil,
    )

    settings = preprocessor_config(architecture)
    if path is not None and (path / "preprocessor_config.json").is_file():
        settings = {**settings, **_json(path / "preprocessor_config.json")}
    size = settings.get("size") or {}
    min_pixels = int(settings.get("min_pixels") or size.get("shortest_edge") or 3136)
    if config.resize == "official":
        # the checkpoint's own limits, as vLLM's processor applies them after
        # qwen-vl-utils (vlm.resize) has sized the image with the config's settings
        max_pixels = int(settings.get("max_pixels") or size.get("longest_edge") or 12_845_056)
    else:
        max_pixels = int(config.pixel_cap or CAP_PIXELS)
        if config.min_pixels is not None:
            min_pixels = config.min_pixels
    return Qwen2VLImageProcessorPil(
        patch_size=int(settings["patch_size"]), merge_size=int(settings["merge_size"]),
        temporal_patch_size=int(settings["temporal_patch_size"]),
        image_mean=list(settings["image_mean"]), image_std=list(settings["image_std"]),
        min_pixels=min(min_pixels, max_pixels), max_pixels=max_pixels)


def load_checkpoint(config: VLMConfig) -> Loaded:
    """Load model, tokenizer, image processor and chat template for ``config``."""
    import torch
    from transformers import AutoTokenizer

    info = inspect_checkpoint(config.path, config.adapter)
    device, dtype = resolve_device(config)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(info.path), local_files_only=True)
        model = model_class(info.architecture).from_pretrained(
            str(info.path), dtype=getattr(torch, dtype), local_files_only=True,
            use_safetensors=True, attn_implementation=config.attn,
            device_map=None if device == "cpu" else {"": device})
    except (OSError, ValueError, KeyError) as err:
        raise ConfigError(f"could not load the checkpoint in {info.path}: {err}; {LAYOUT}"
                          ) from None
    if info.adapter is not None:
        model = _merge_adapter(model, info.adapter)
    model.eval()
    template, origin = find_chat_template(info.path, tokenizer)
    return Loaded(model=model, tokenizer=tokenizer,
                  image_processor=build_image_processor(info.path, info.architecture, config),
                  chat_template=template, chat_template_origin=origin, info=info,
                  device=device, dtype=dtype)


def _merge_adapter(model: Any, adapter: Path) -> Any:
    try:
        from peft import PeftModel
    except ImportError:
        raise ConfigError("LoRA adapters need the peft package: pip install peft==0.21.2"
                          ) from None
    try:
        wrapped = PeftModel.from_pretrained(model, str(adapter), is_trainable=False,
                                            local_files_only=True, use_safetensors=True)
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        raise ConfigError(f"could not apply the LoRA adapter in {adapter}: {err}") from None
    # Merged weights run as fast as the base model and keep every module name unchanged.
    return wrapped.merge_and_unload()
