"""What the Train tab shows of RL and what its form builds: the service layer's side of
the tab (the tab itself imports no ``rl`` module and no torch).

- :func:`build_config`: the form's values as a validated :class:`RLConfig`;
- :func:`policy_choices`: the editor checkpoints to offer;
- :func:`sample_gallery`: the latest sample group, regions drawn, captions written.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from ..errors import InputError
from ..judgment import Judgment, Region
from ..overlay import draw_regions
from .config import ORACLE, RLConfig, parse_reward_mix, recorded_scenes
from .runs import REPO

GALLERY_PX = 192
DEFAULTS = RLConfig()


def policy_choices(root: Path, repo: Path = REPO) -> list[str]:
    """Editor checkpoints to offer: under models/ and the RL runs' last checkpoints."""
    found = []
    for base in (repo / "models", root / "runs"):
        if base.is_dir():
            for weights in sorted(base.rglob("editor.safetensors")):
                folder = weights.parent
                try:
                    found.append(folder.relative_to(repo).as_posix())
                except ValueError:
                    found.append(str(folder))
    return found or [DEFAULTS.policy]


def sample_gallery(store: Any, folder: Path | None, run_id: int, groups: int = 1
                   ) -> list[tuple[Image.Image, str]]:
    """The latest sample groups: the source, then each edit with its judge's regions drawn
    and its reward, ground truth and reasoning as the caption."""
    rows = store.rl_samples(run_id)[-groups:]
    out: list[tuple[Image.Image, str]] = []
    for row in reversed(rows):
        detail: dict[str, Any] = {}
        if folder is not None and (folder / "samples" / f"{row['id']}.json").is_file():
            detail = json.loads((folder / "samples" / f"{row['id']}.json").read_text())
        if row["source_sha256"]:
            src = _big(store.image_bytes(row["source_sha256"]))
            out.append((src, f"step {row['step']} source: {row['instruction']}"))
        for k, (sha, reward) in enumerate(zip(row["images"], row["rewards"], strict=True)):
            img = _big(store.image_bytes(sha))
            caption = [f"reward {reward:.3f}" if reward is not None and math.isfinite(reward)
                       else "reward: excluded (judgment failed)"]
            truth = (detail.get("truth") or [None] * (k + 1))[k]
            if truth:
                caption.append(f"ground truth {'✓' if truth['success'] else '✗'} "
                               f"(progress {truth['progress']:.2f}, spill {truth['spill']:.2f})")
            judgments = (detail.get("judgments") or [{}] * (k + 1))[k]
            judged = next((j for spec, j in judgments.items() if spec != ORACLE), None)
            for spec, other in judgments.items():  # an external run's spot check
                if spec.startswith("spot check") and other is not judged:
                    second = Judgment.from_dict(other).reward
                    caption.append(f"{spec}: reward "
                                   + ("failed" if second is None else f"{second:.3f}"))
            if judged is not None:
                regions = [Region.from_dict(r) for r in judged.get("regions", [])]
                img = draw_regions(img, regions)
                reasoning = " ".join(judged.get("reasoning", "").split())
                if judged.get("status") != "ok":
                    reasoning = f"{judged.get('status')}: {judged.get('error') or ''}"
                caption.append(reasoning[:220])
            out.append((img, " · ".join(caption)))
    return out


def _big(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data)).convert("RGB")
    return img.resize((GALLERY_PX, GALLERY_PX), Image.Resampling.BICUBIC)


def build_config(policy: str, rewards: str, prompts: Any, ops: Sequence[str] | None,
                 eval_prompts: Any, steps: Any, prompts_per_step: Any, group_size: Any,
                 sampling_steps: Any, lr: Any, noise_level: Any, kl_weight: Any,
                 clip_range: Any, timestep_fraction: Any, finetune: str,
                 threads: Any = DEFAULTS.threads, scenes: str | None = None,
                 method: str | None = None) -> RLConfig:
    """The form's values as a validated RLConfig (a bad value is a clear error)."""
    def whole(x: Any, name: str) -> int:
        if x is None or x == "":
            raise InputError(f"{name} is empty")
        return int(x)

    def real(x: Any, name: str) -> float:
        if x is None or x == "":
            raise InputError(f"{name} is empty")
        return float(x)

    policy = (policy or DEFAULTS.policy).strip()
    return RLConfig(
        policy=policy, rewards=parse_reward_mix(rewards or ""),
        scenes=scenes or recorded_scenes(policy),
        prompts=whole(prompts, "training prompts"), ops=tuple(ops or ()),
        eval_prompts=whole(eval_prompts, "held-out prompts"), steps=whole(steps, "steps"),
        prompts_per_step=whole(prompts_per_step, "prompts per step"),
        group_size=whole(group_size, "group size"),
        sampling_steps=whole(sampling_steps, "sampling steps"), lr=real(lr, "learning rate"),
        noise_level=real(noise_level, "noise level"), kl_weight=real(kl_weight, "KL weight"),
        clip_range=real(clip_range, "clip range"),
        timestep_fraction=real(timestep_fraction, "timestep fraction"),
        finetune=finetune or DEFAULTS.finetune, threads=whole(threads, "threads"),
        method=method or DEFAULTS.method)
