"""The ``mini`` backend: SpatialReward-Mini, the embedded spatial reward model.

``mini`` loads the checkpoint that ships in ``models/spatialreward-mini``;
``mini:PATH`` loads another folder holding ``model.safetensors`` + ``config.json``
(weights are read with safetensors: nothing is unpickled).

Everything a judgment shows comes from the model's own outputs: the regions are its
proposals, each labelled with its predicted facts (colour and shape before and
after) and its predicted match with the instruction; the reasoning is composed from
those predictions and the predicted scores; the attention summary is computed from
the text-to-image attention of the forward pass that produced the scores.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..attention import summarise
from ..checkpoints import read_checkpoint
from ..judgment import AttentionSummary, Coverage, Judgment, Mask, Region, low_coverage_warning
from ..mini import domain
from ..mini.coverage import read_instruction
from ..mini.features import PAD, SIZE, UNK, Features, Tokenizer, prepare
from ..mini.model import MiniConfig, MiniRewardModel, box_masks
from ..reasoning import compose_reasoning
from ..regions import EVIDENCE_VERSION, PixelEvidence
from ..synth.language import COLORS, SHAPES
from . import register
from .base import Attended, global_region

DEFAULT_CHECKPOINT = Path(__file__).resolve().parents[2] / "models" / "spatialreward-mini"


def _thing(color: int, shape: int) -> str | None:
    c = COLORS[color] if color < len(COLORS) else None
    s = SHAPES[shape] if shape < len(SHAPES) else None
    if c is None or s is None:
        return None
    return f"{c} {s}"


def _a(thing: str) -> str:
    """``thing`` with its indefinite article: "an orange star", "a red circle"."""
    return f"{'an' if thing[:1] in 'aeiou' else 'a'} {thing}"


UNANCHORED = 12.5
"""Half the scale: a score on the other side of it from what the located regions show is
not anchored to them, and the judgment says so."""


def _unanchored(sc: tuple[float, ...], best: float, stray: int, preservation: float
                ) -> list[str]:
    """Sentences for scores the region facts do not support. Mini's score head reads the
    region facts together with learned image features; where the two disagree the
    reasoning states it instead of presenting the number as following from the regions.
    (Capping such scores instead cost 0.6-1.0 points of SynthEdit hard accuracy.)"""
    out = []
    if sc[0] >= UNANCHORED and best < 0.5:
        out.append(f"Caution: edit success {sc[0]:.1f}/25 comes from the score head alone: "
                   "no located region matches the instruction (best match "
                   f"{best:.2f}), so this score is not anchored to the evidence.")
    if sc[1] < UNANCHORED and stray == 0 and preservation >= 0.9:
        out.append(f"Caution: over-editing {sc[1]:.1f}/25 comes from the score head alone: "
                   f"the image is preserved at {preservation:.2f} and no located change "
                   "goes beyond the instruction.")
    return out


def _n_words(tokens: torch.Tensor) -> int:
    """Word positions of one instruction (at least one: the model always attends from one)."""
    return max(1, int((tokens != PAD).sum()))


def _maps(out: dict, k: int) -> np.ndarray:
    """(layers, heads, 2, 16, 16): row ``k``'s attention from the instruction's words to
    the source (index 0) and edited (index 1) patches, averaged over the words."""
    n_words = _n_words(out["tokens"][k])
    grid = SIZE // 8
    return np.stack([w[k, :, :n_words].mean(1).reshape(-1, 2, grid, grid).numpy()
                     for w in out["attention"]])


@cache
def _pool() -> ThreadPoolExecutor:
    """Threads that prepare a batch's pixel evidence side by side (OpenCV and NumPy
    release the GIL): one per core (measured on 2 cores: 2 threads 48 pairs/s, 3 or 4
    threads 40-46)."""
    return ThreadPoolExecutor(max_workers=min(8, len(os.sched_getaffinity(0))),
                              thread_name_prefix="mini-prepare")


def _prepare_all(triples: Sequence[tuple[Image.Image, Image.Image, str]],
                 evidences: Sequence[PixelEvidence | None]) -> list[Features]:
    if len(triples) == 1:
        return [prepare(triples[0][0], triples[0][1], evidences[0])]
    return list(_pool().map(lambda t, ev: prepare(t[0], t[1], ev), triples, evidences))


class MiniBackend:
    name = "mini"

    def __init__(self, path: Path = DEFAULT_CHECKPOINT) -> None:
        ckpt = read_checkpoint(path, "model.safetensors", "config.json",
                               what="SpatialReward-Mini",
                               hint="train one with `python -m spatialreward train-reward`")

        def make(meta: dict[str, Any]) -> MiniRewardModel:
            self.tokenizer = Tokenizer(meta["vocab"])
            model = MiniRewardModel(MiniConfig(**meta["model"]))
            model.load_state_dict(ckpt.state)
            return model

        self.model = ckpt.build("SpatialReward-Mini", make)
        self.model.eval()
        meta, digest = ckpt.meta, ckpt.digest
        kind = "regions" if meta["model"].get("use_regions", True) else "global"
        # The version names the pixel evidence too: the model reads it, so judgments
        # cached from older evidence are not this model's answers.
        self.version = f"{kind}-{digest}-e{EVIDENCE_VERSION}"
        # Out-of-domain images: a check calibrated beside the checkpoint (None: not
        # calibrated, e.g. a fine-tune; its judgments then carry no domain distance).
        self.domain = domain.load(Path(path))
        if self.domain is not None:
            self.version += f"-d{self.domain.digest}"

    # -- batched inference ----------------------------------------------------------
    @torch.no_grad()
    def _forward(self, feats: Sequence[Features], instructions: Sequence[str]) -> dict:
        f32 = torch.float32

        def stack(name: str) -> torch.Tensor:
            return torch.from_numpy(np.stack([getattr(f, name) for f in feats]))

        tokens = torch.tensor([self.tokenizer.encode(t) for t in instructions])
        out = self.model(stack("source").to(f32) / 255, stack("edited").to(f32) / 255,
                         stack("heat").to(f32) / 255, stack("boxes"), stack("valid"),
                         stack("stats"), tokens)
        # The word ids are read again for the unknown-word count and the attention rows.
        return {**out, "tokens": tokens}

    def judge_many(self, triples: Sequence[tuple[Image.Image, Image.Image, str]],
                   evidences: Sequence[PixelEvidence | None] | None = None) -> list[Judgment]:
        """Judge several (source, edited, instruction) triples in one forward pass."""
        return [a.judgment for a in self._attended_many(triples, evidences)]

    def _attended_many(self, triples: Sequence[tuple[Image.Image, Image.Image, str]],
                       evidences: Sequence[PixelEvidence | None] | None = None
                       ) -> list[Attended]:
        """Judgments and attention maps of several triples, from one forward pass."""
        t0 = time.perf_counter()
        evidences = evidences or [None] * len(triples)
        if len(evidences) != len(triples):
            raise ValueError(f"{len(triples)} pairs but {len(evidences)} evidences")
        feats = _prepare_all(triples, evidences)
        t1 = time.perf_counter()
        out = self._forward(feats, [t for _, _, t in triples])
        t2 = time.perf_counter()
        per = (t2 - t1) * 1e3 / len(triples)
        return [Attended(self._judgment(out, k, feats[k], triples[k][2],
                                        {"evidence": round((t1 - t0) * 1e3 / len(triples), 2),
                                         "model": round(per, 2)}),
                         _maps(out, k))
                for k in range(len(triples))]

    def judge(self, source: Image.Image, edited: Image.Image, instruction: str,
              evidence: PixelEvidence | None = None) -> Judgment:
        return self.judge_many([(source, edited, instruction)], [evidence])[0]

    def judge_attended(self, source: Image.Image, edited: Image.Image, instruction: str,
                       evidence: PixelEvidence | None = None) -> Attended:
        """The judgment and its attention maps (:func:`_maps`), from one forward pass."""
        return self._attended_many([(source, edited, instruction)], [evidence])[0]

    def attention_maps(self, source: Image.Image, edited: Image.Image, instruction: str
                       ) -> np.ndarray:
        """(layers, heads, 2, 16, 16): attention from the instruction's words to the
        source (index 0) and edited (index 1) patches, averaged over the words."""
        maps = self.judge_attended(source, edited, instruction).maps
        assert maps is not None
        return maps

    # -- composing the judgment from the outputs ---------------------------------------
    def _coverage(self, instruction: str, out: dict, k: int) -> Coverage:
        """What Mini could read: the instruction's words, and whether the images look
        like its training scenes (:mod:`spatialreward.mini.domain`)."""
        coverage = read_instruction(instruction, self.tokenizer.index)
        if self.domain is None:
            return coverage
        distance = float(self.domain.distance(out["pooled"][k : k + 1].numpy())[0])
        reasons = coverage.reasons + ((domain.reason(distance),) if distance > 1.0 else ())
        return replace(coverage, domain_distance=round(distance, 3), reasons=reasons)

    def _judgment(self, out: dict, k: int, f: Features, instruction: str,
                  timings: dict[str, float]) -> Judgment:
        sc = tuple(round(float(v), 3) for v in out["sc"][k])
        pq = tuple(round(float(v), 3) for v in out["pq"][k])
        match = torch.sigmoid(out["match"][k]).numpy()
        facts = {name: out[name][k].argmax(-1).numpy()
                 for name in ("before_color", "after_color", "before_shape", "after_shape")}
        regions, sentences = [], []
        # The global ablation judges one "region", the whole image: its facts and match
        # stand for every proposal it is shown.
        last = len(match) - 1
        for r, ev_region in enumerate(f.evidence.regions[: len(f.valid)]):
            m = min(r, last)
            before = _thing(facts["before_color"][m], facts["before_shape"][m])
            after = _thing(facts["after_color"][m], facts["after_shape"][m])
            label = after or (f"removed {before}" if before else "changed area")
            regions.append(Region(id=r, label=label, bbox_2d=ev_region.bbox_2d,
                                  mask=Mask.from_array(ev_region.mask),
                                  confidence=round(float(match[m]), 4)))
            what = (f"{_a(before)} became {_a(after)}" if before and after and before != after
                    else f"{_a(before)} is there before and after, changed in size, place or "
                         "detail" if before and after
                    else f"{_a(after)} appeared" if after
                    else f"the {before} is gone" if before else "the pixels changed")
            verdict = ("this is the change the instruction asks for" if match[m] >= 0.5
                       else "this is not the change the instruction asks for")
            sentences.append((r, f"Before and after: {what}; {verdict} "
                                 f"(match {match[m]:.2f})."))
        best = max((r.confidence or 0.0 for r in regions), default=0.0)
        change = f.evidence.global_change
        if regions:
            found = f"the best-matching region scores {best:.2f}"
        elif change is not None:
            found = f"no local region changed, but {change.describe()}"
        else:
            found = "no change above the re-encoding noise was found"
        if regions and "counts" in out:  # the tally the score head read
            n, gone, came, stay = out["counts"][k].tolist()
            found += (f"; the matched regions add up to {n:.1f} changes ({gone:.1f} leaving, "
                      f"{came:.1f} arriving, {stay:.1f} changing in place)")
        stray = sum(1 for r in regions if (r.confidence or 0.0) < 0.5)
        kept = (f"outside the regions the image is preserved at {f.evidence.preservation:.2f}"
                f"; {stray} located change(s) do not match the instruction")
        if change is not None:  # the whole frame: a local region's facts cannot cover it
            rid = len(regions)
            region, sentence = global_region(rid, change.describe())
            regions.append(region)
            sentences.append((rid, sentence))
        caveats = _unanchored(sc, best, stray, f.evidence.preservation)
        verdict = (f"Edit success {sc[0]:.1f}/25: {found}. Over-editing {sc[1]:.1f}/25: "
                   f"{kept}." + "".join(f" {c}" for c in caveats))
        coverage = self._coverage(instruction, out, k)
        warnings: tuple[str, ...] = tuple(caveats)
        if coverage.low:
            warnings = (low_coverage_warning("SpatialReward-Mini", coverage), *warnings)
        return Judgment(
            status="low_coverage" if coverage.low else "ok",
            sc=sc, pq=pq, regions=tuple(regions),  # type: ignore[arg-type]
            coverage=coverage, warnings=warnings,
            reasoning=compose_reasoning(sentences, verdict),
            pq_reasoning=(f"Naturalness {pq[0]:.1f}/25 and artifacts {pq[1]:.1f}/25, predicted "
                          "from both images' features inside and outside the regions."),
            backend=self.name, backend_version=self.version, timings_ms=timings,
            attention=self._attention_summary(out, k, f),
            meta={"instruction_read": True,
                  "unknown_words": int((out["tokens"][k] == UNK).sum())},
        )

    def _attention_summary(self, out: dict, k: int, f: Features) -> AttentionSummary:
        n_words = _n_words(out["tokens"][k])
        # (layers, heads, words, 2P) -> one distribution over the 2P patches
        w = torch.stack([a[k, :, :n_words] for a in out["attention"]]).mean((0, 1, 2)).numpy()
        p = len(w) // 2
        inside = None
        if f.valid.any():  # the same patch grid on both images
            masks = box_masks(torch.from_numpy(f.boxes[None]), SIZE // 8)[0].numpy()
            inside = masks[f.valid].max(0) > 0
        return summarise(w[:p], w[p:], inside, inside)


@register("mini")
def build(argument: str | None) -> MiniBackend:
    return MiniBackend(Path(argument) if argument else DEFAULT_CHECKPOINT)
