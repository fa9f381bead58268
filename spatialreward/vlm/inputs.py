"""Model inputs: prompts and images -> token ids and vision features.

Each image is preprocessed (resized to the pixel budget, cut into patches) and encoded by
the vision tower once per distinct content: when K candidates of one source are judged,
or an edit appears in both its SC and PQ call, the encoded image is reused. Images are
encoded independently by the Qwen-VL vision towers (attention never crosses images), so a
reused encoding is exactly the one a fresh forward would compute. The features go to the
model as ``mm_encoder_outputs``, the transformers input for pre-encoded images.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from PIL import Image

from .attention import Layout

IMAGE_TOKEN = "<|image_pad|>"
VISION_END = "<|vision_end|>"


@dataclass(frozen=True)
class PreparedImage:
    """One image as the vision tower takes it."""

    key: str
    """Content hash: equal images share it."""
    pixel_values: torch.Tensor  # (patches, channels * temporal * patch * patch)
    grid_thw: tuple[int, int, int]
    merge: int

    @property
    def tokens(self) -> int:
        t, h, w = self.grid_thw
        return t * h * w // self.merge**2

    @property
    def token_grid(self) -> tuple[int, int]:
        """(rows, cols) of this image's tokens in the language model."""
        return self.grid_thw[1] // self.merge, self.grid_thw[2] // self.merge


def image_key(image: Image.Image) -> str:
    """A content hash of an image (size, mode and pixels)."""
    h = hashlib.blake2b(f"{image.size}{image.mode}".encode(), digest_size=16)
    h.update(image.tobytes())
    return h.hexdigest()


@dataclass
class EncodeStats:
    """How many image occurrences were encoded, how many reused an encoding, and the time
    spent preprocessing and in the vision tower."""

    encoded: int = 0
    reused: int = 0
    seconds: float = 0.0


class ImageEncoder:
    """Preprocesses and encodes images, keeping the last ``capacity`` encodings for reuse."""

    def __init__(self, model: Any, image_processor: Any, *, reuse: bool = True,
                 capacity: int = 16,
                 pre_resize: Callable[[Image.Image], Image.Image] | None = None) -> None:
        self.model = model
        self.processor = image_processor
        self.pre_resize = pre_resize
        """Applied before the processor (``resize=official``: :mod:`.resize`)."""
        self.reuse = reuse
        self.capacity = capacity
        self._prepared: OrderedDict[str, PreparedImage] = OrderedDict()
        self._features: OrderedDict[str, tuple[torch.Tensor, list[torch.Tensor]]] = OrderedDict()
        self._output_cls: Any = None
        self.stats = EncodeStats()

    def prepare(self, image: Image.Image) -> PreparedImage:
        """Resize and cut into patches (reused for an image seen before, when reusing)."""
        t0 = time.perf_counter()
        key = image_key(image)
        if self.reuse and key in self._prepared:
            self._prepared.move_to_end(key)
            return self._prepared[key]
        image = self.pre_resize(image) if self.pre_resize else image.convert("RGB")
        out = self.processor([image], return_tensors="pt")
        t, h, w = (int(v) for v in out["image_grid_thw"][0])
        prepared = PreparedImage(key, out["pixel_values"], (t, h, w),
                                 int(self.processor.merge_size))
        if self.reuse:
            self._prepared[key] = prepared
            while len(self._prepared) > self.capacity:
                self._prepared.popitem(last=False)
        self.stats.seconds += time.perf_counter() - t0
        return prepared

    def _run_tower(self, images: Sequence[PreparedImage]
                   ) -> list[tuple[torch.Tensor, list[torch.Tensor]]]:
        t0 = time.perf_counter()
        device = self.model.device
        pixels = torch.cat([im.pixel_values for im in images]).to(device)
        grids = torch.tensor([im.grid_thw for im in images], device=device)
        out = self.model.model.get_image_features(pixels, grids, return_dict=True)
        self._output_cls = type(out)
        deep = getattr(out, "deepstack_features", None) or []
        if device.type == "cuda":
            torch.cuda.synchronize(device)  # so the time is the tower's, not a later kernel's
        self.stats.seconds += time.perf_counter() - t0
        return [(out.pooler_output[i], [layer[i] for layer in deep])
                for i in range(len(images))]

    def encode(self, images: Sequence[PreparedImage]) -> Any:
        """Vision features for ``images`` (in order) as the model's ``mm_encoder_outputs``."""
        if not self.reuse:
            per_image = self._run_tower(images)
            self.stats.encoded += len(images)
        else:
            missing: dict[str, PreparedImage] = {}
            for im in images:
                if im.key not in self._features and im.key not in missing:
                    missing[im.key] = im
            if missing:
                for im, feats in zip(missing.values(), self._run_tower(list(missing.values())),
                                     strict=True):
                    self._features[im.key] = feats
            self.stats.encoded += len(missing)
            self.stats.reused += len(images) - len(missing)
            per_image = []
            for im in images:
                self._features.move_to_end(im.key)
                per_image.append(self._features[im.key])
            while len(self._features) > self.capacity:  # per_image keeps what this call needs
                self._features.popitem(last=False)
        fields: dict[str, Any] = {"pooler_output": tuple(p for p, _ in per_image)}
        if per_image and per_image[0][1]:
            fields["deepstack_features"] = [tuple(d[j] for _, d in per_image)
                                            for j in range(len(per_image[0][1]))]
        return {"image": self._output_cls(**fields)}


def render_prompt(tokenizer: Any, chat_template: str, messages: list[dict[str, Any]],
                  answer_prefix: str = "") -> str:
    """The chat-formatted prompt, one image placeholder per image, ready for generation."""
    text = tokenizer.apply_chat_template(messages, chat_template=chat_template, tokenize=False,
                                         add_generation_prompt=True)
    return str(text) + answer_prefix


@dataclass
class Batch:
    """Tensors for one generate() call, plus where images and queries sit in them."""

    inputs: dict[str, Any]
    layout: Layout
    images: list[PreparedImage] = field(default_factory=list)

    @property
    def prompt_len(self) -> int:
        return int(self.inputs["input_ids"].shape[1])


def build_batch(tokenizer: Any, prompts: Sequence[str], images: Sequence[Sequence[PreparedImage]],
                image_token: str = IMAGE_TOKEN) -> Batch:
    """Tokenize prompts (left-padded), expanding each image placeholder to its token count."""
    texts = []
    for prompt, ims in zip(prompts, images, strict=True):
        pieces = prompt.split(image_token)
        if len(pieces) - 1 != len(ims):
            raise ValueError(f"the chat template placed {len(pieces) - 1} image placeholders "
                             f"for {len(ims)} images; check the template and the prompt file")
        text = pieces[0]
        for im, piece in zip(ims, pieces[1:], strict=True):
            text += image_token * im.tokens + piece
        texts.append(text)
    enc = tokenizer(texts, add_special_tokens=False, padding=True, padding_side="left",
                    return_tensors="pt")
    ids, mask = enc["input_ids"], enc["attention_mask"].bool()
    image_id = tokenizer.convert_tokens_to_ids(image_token)
    end_id = tokenizer.convert_tokens_to_ids(VISION_END)
    is_image = ids == image_id
    width = max(1, max(int(r.sum()) for r in is_image))
    index = torch.zeros(len(texts), width, dtype=torch.long)
    valid = torch.zeros(len(texts), width, dtype=torch.bool)
    queries = torch.zeros_like(mask)
    for b, ims in enumerate(images):
        positions = torch.nonzero(is_image[b]).flatten()
        if len(positions) != sum(im.tokens for im in ims):
            raise ValueError("image tokens were merged or split by the tokenizer; the "
                             f"tokenizer must keep {image_token} a single special token")
        index[b, : len(positions)] = positions
        valid[b, : len(positions)] = True
        last = int(positions[-1]) if len(positions) else -1
        after = torch.arange(ids.shape[1]) > last
        queries[b] = mask[b] & after & (ids[b] != end_id)
    flat = [im for ims in images for im in ims]
    inputs = {"input_ids": ids, "attention_mask": enc["attention_mask"],
              "mm_token_type_ids": is_image.int()}
    if flat:
        inputs["image_grid_thw"] = torch.tensor([im.grid_thw for im in flat])
    layout = Layout(image_index=index, image_valid=valid,
                    splits=[[im.tokens for im in ims] for ims in images],
                    grids=[[im.token_grid for im in ims] for ims in images],
                    prompt_queries=queries, key_valid=mask)
    return Batch(inputs=inputs, layout=layout, images=flat)
