"""Qwen-VL architectures built in code: tiny checkpoints for tests and benchmarks, and the
Qwen3-VL-8B shape (SpatialReward-8B's base) for the GPU check. Nothing is downloaded.

A tiny checkpoint is a real checkpoint directory - ``config.json``, ``model.safetensors``,
tokenizer files, ``preprocessor_config.json``, ``generation_config.json`` - with random
weights and a byte-level BPE tokenizer trained in a few milliseconds, so it loads through
exactly the path users take (``vlm:PATH``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# The special tokens of the Qwen-VL family, in their usual order.
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>",
                  "<|vision_end|>", "<|image_pad|>", "<|video_pad|>")

# ChatML with image parts, as the Qwen-VL chat templates render it; also the fallback for
# checkpoints that ship no chat template.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\n' -}}"
    "{%- if message['content'] is string -%}{{- message['content'] -}}"
    "{%- else -%}{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'image' -%}{{- '<|vision_start|><|image_pad|><|vision_end|>' -}}"
    "{%- elif part['type'] == 'text' -%}{{- part['text'] -}}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{{- '<|im_end|>\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\n' -}}{%- endif -%}"
)

ARCHITECTURES = ("qwen3_vl", "qwen2_5_vl")


def build_tokenizer(vocab_size: int = 600) -> Any:
    """A byte-level BPE tokenizer with the Qwen-VL special tokens (any text round-trips)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from .prompts import builtin_names, load_prompts

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = [c.prompt for name in builtin_names() for c in load_prompts(name).calls]
    corpus += ['{"edit_region": [{"id": 0, "label": "red cup", "bbox_2d": [120, 340, 560, 880]}],'
               ' "reasoning": "<|bbox_0|> The cup is red now. <|global|> Done.", '
               '"score": [22, 19]}'] * 4
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>",
                                   pad_token="<|endoftext|>")
    fast.chat_template = CHAT_TEMPLATE
    return fast


def _token_ids(tokenizer: Any) -> dict[str, Any]:
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    return {"image_token_id": ids["<|image_pad|>"], "video_token_id": ids["<|video_pad|>"],
            "vision_start_token_id": ids["<|vision_start|>"],
            "vision_end_token_id": ids["<|vision_end|>"]}


def tiny_config(architecture: str, tokenizer: Any, *, layers: int = 2, hidden: int = 64,
                heads: int = 4, vision_depth: int = 2) -> Any:
    """A tiny config of one architecture (a few hundred thousand parameters)."""
    head_dim = hidden // heads
    quarter = head_dim // 4  # mrope_section sums to head_dim / 2
    rope = {"rope_type": "default", "rope_theta": 10000.0,
            "mrope_section": [head_dim // 2 - 2 * quarter, quarter, quarter]}
    text = dict(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden,
                num_hidden_layers=layers, num_attention_heads=heads,
                num_key_value_heads=max(1, heads // 2), rope_parameters=rope,
                max_position_embeddings=8192, eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id)
    vision = dict(depth=vision_depth, hidden_size=32, intermediate_size=64, num_heads=2,
                  spatial_merge_size=2, temporal_patch_size=2, out_hidden_size=hidden)
    if architecture == "qwen3_vl":
        from transformers import Qwen3VLConfig

        rope["mrope_interleaved"] = True
        return Qwen3VLConfig(
            text_config={**text, "head_dim": head_dim},
            vision_config={**vision, "patch_size": 16, "num_position_embeddings": 64,
                           "deepstack_visual_indexes": list(range(min(vision_depth, layers)))},
            **_token_ids(tokenizer))
    if architecture == "qwen2_5_vl":
        from transformers import Qwen2_5_VLConfig

        return Qwen2_5_VLConfig(
            text_config={**text, "bos_token_id": None},
            vision_config={**vision, "patch_size": 14, "window_size": 56,
                           "fullatt_block_indexes": [vision_depth - 1]},
            # The released configs name a BOS id outside a tiny vocabulary; Qwen uses none.
            **{**_token_ids(tokenizer), "bos_token_id": None})
    raise ValueError(f"unknown architecture {architecture!r}; choose from {ARCHITECTURES}")


def qwen3_vl_8b_config(tokenizer: Any) -> Any:
    """The Qwen3-VL-8B-Instruct architecture (SpatialReward-8B's base), for random weights.

    The vocabulary keeps its real size (151,936 rows); the tokenizer's special-token ids
    are used for the image tokens, so any tokenizer that has them works.
    """
    from transformers import Qwen3VLConfig

    return Qwen3VLConfig(
        text_config=dict(
            vocab_size=151_936, hidden_size=4096, intermediate_size=12_288, num_hidden_layers=36,
            num_attention_heads=32, num_key_value_heads=8, head_dim=128,
            max_position_embeddings=262_144, rms_norm_eps=1e-6,
            rope_parameters={"rope_type": "default", "rope_theta": 5_000_000.0,
                             "mrope_section": [24, 20, 20], "mrope_interleaved": True},
            eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id),
        vision_config=dict(
            depth=27, hidden_size=1152, intermediate_size=4304, num_heads=16, patch_size=16,
            spatial_merge_size=2, temporal_patch_size=2, out_hidden_size=4096,
            num_position_embeddings=2304, deepstack_visual_indexes=[8, 16, 24]),
        **_token_ids(tokenizer))


def preprocessor_config(architecture: str) -> dict[str, Any]:
    """``preprocessor_config.json`` as the released checkpoints of each architecture have it."""
    if architecture == "qwen3_vl":
        return {"image_processor_type": "Qwen2VLImageProcessorFast", "patch_size": 16,
                "temporal_patch_size": 2, "merge_size": 2, "image_mean": [0.5, 0.5, 0.5],
                "image_std": [0.5, 0.5, 0.5],
                "size": {"shortest_edge": 65_536, "longest_edge": 16_777_216}}
    return {"image_processor_type": "Qwen2VLImageProcessor", "patch_size": 14,
            "temporal_patch_size": 2, "merge_size": 2,
            "image_mean": [0.48145466, 0.4578275, 0.40821073],
            "image_std": [0.26862954, 0.26130258, 0.27577711],
            "min_pixels": 3136, "max_pixels": 12_845_056}


def model_class(architecture: str) -> Any:
    import transformers

    names = {"qwen3_vl": "Qwen3VLForConditionalGeneration",
             "qwen2_5_vl": "Qwen2_5_VLForConditionalGeneration"}
    return getattr(transformers, names[architecture])


def save_tiny_checkpoint(path: Path, architecture: str = "qwen3_vl", *, seed: int = 0,
                         **sizes: int) -> Path:
    """Write a random-weight tiny checkpoint of ``architecture`` to ``path``; returns it."""
    import torch

    tokenizer = build_tokenizer()
    config = tiny_config(architecture, tokenizer, **sizes)
    torch.manual_seed(seed)
    model = model_class(architecture)(config).eval()
    model.generation_config.eos_token_id = [tokenizer.eos_token_id, tokenizer.pad_token_id]
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    (path / "preprocessor_config.json").write_text(
        json.dumps(preprocessor_config(architecture), indent=2))
    return path


_CACHED: dict[tuple[str, int], Path] = {}


def cached_tiny_checkpoint(architecture: str = "qwen3_vl", seed: int = 0) -> Path:
    """A tiny checkpoint written once per process into a temporary folder (removed at
    exit); tests and benchmarks share it."""
    import atexit
    import shutil
    import tempfile

    key = (architecture, seed)
    if key not in _CACHED:
        folder = Path(tempfile.mkdtemp(prefix=f"tiny-{architecture}-"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        _CACHED[key] = save_tiny_checkpoint(folder, architecture, seed=seed)
    return _CACHED[key]
