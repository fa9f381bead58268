"""From a generative judge's answers to a Judgment: parse each sample, self-ensemble,
the official reading beside ours, truncation counted, the protocol recorded in meta.

Shared by every backend that talks to a Qwen-VL judge, whether it runs the model itself
(``vlm:``, :mod:`spatialreward.backends.vlm`) or asks a server for the text
(``openai:``, :mod:`spatialreward.backends.openai`): the same answer text makes the same
judgment whichever way it was generated.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
from PIL import Image

from ..judgment import Judgment
from ..official_parse import in_range, official_score
from ..protocol import parse_judgment
from .prompts import Prompts

_NO_REGIONS_WARNING = "sc: no edit_region in the answer; read as no regions"


class Answer(Protocol):
    """One generated answer (the runner's ``Output`` or a server's reply)."""

    text: str
    new_tokens: int
    truncated: bool
    timings_ms: dict[str, float]


def no_multi_image(prompts: Prompts, name: str, version: str, sources: int) -> Judgment:
    """The failed judgment of an edit made from several images, under a protocol without
    an ``[sc_multi]`` call."""
    return Judgment(status="backend_error", backend=name, backend_version=version,
                    meta={"sources": sources},
                    error=f"not supported: protocol {prompts.name!r} has no [sc_multi] "
                          "call for an edit made from several images")


def sized_edit(prompts: Prompts, edited: Image.Image, source: Image.Image) -> Image.Image:
    """The edit as the protocol shows it: resized to the source's size under
    ``edit_size = "source"`` (EditScore, GEdit-Bench; Pillow's default filter, as their
    evaluation code resizes), else as it is."""
    if prompts.edit_size == "source" and edited.size != source.size:
        return edited.resize(source.size)
    return edited


def assemble(sc: Sequence[Answer], pq: Sequence[Answer] | None, prompts: Prompts, *,
             name: str, version: str, parse: str, max_new_tokens: int, elapsed_ms: float,
             source_size: tuple[int, int], edited_size: tuple[int, int]) -> Judgment:
    """The judgment of one edit from its SC answers and PQ answers (one per sample)."""
    samples = [parse_judgment(s.text, None if pq is None else pq[i].text,
                              backend=name, backend_version=version,
                              aggregation=prompts.aggregation)
               for i, s in enumerate(sc)]
    judgment = (samples[0] if len(samples) == 1
                else _average(samples, mean_overall=prompts.ensemble == "mean_overall"))
    official = _official(sc, pq)
    if parse == "official":
        judgment = _official_judgment(judgment, official)
    if not prompts.regions:  # region-free protocols never answer edit_region
        judgment = dataclasses.replace(
            judgment, warnings=tuple(w for w in judgment.warnings if w != _NO_REGIONS_WARNING))
    everything = [*sc, *(pq or [])]
    timings = {k: round(sum(o.timings_ms.get(k, 0.0) for o in everything), 2)
               for k in ("prepare", "generate")}
    timings["model"] = round(elapsed_ms, 2)
    calls = [label for label, outs in (("sc", sc), ("pq", pq or []))
             if any(o.truncated for o in outs)]
    cut = [o for o in everything if o.truncated]
    if cut and not judgment.scored:
        judgment = dataclasses.replace(judgment, error=(
            f"answer cut off at max_new_tokens={max_new_tokens} ({', '.join(calls)}); raise "
            f"max_new_tokens (the official evaluation uses 4096). Parser: {judgment.error}"))
    meta = {**judgment.meta, "prompts": prompts.name,
            "prompts_sha256": prompts.wording_sha256,
            "new_tokens": [o.new_tokens for o in everything],
            "truncated": len(cut),
            "official_scores": official,
            "box_frame": "edited 0..1000 = source 0..1000 (stretch convention)",
            "image_sizes": {"source": list(source_size), "edited": list(edited_size)}}
    return dataclasses.replace(judgment, timings_ms=timings, meta=meta)


def _official(sc: Sequence[Answer], pq: Sequence[Answer] | None) -> dict[str, Any]:
    """What the official evaluation would read from these answers (mean over samples)."""
    out: dict[str, Any] = {"how": {}}
    for name, outputs in (("sc", sc), ("pq", pq)):
        if outputs is None:
            continue
        read = [official_score(o.text) for o in outputs]
        out[name] = [float(np.mean([r.pair[i] for r in read])) for i in (0, 1)]
        out["how"][name] = sorted({r.how for r in read})
    out["invented"] = any(h in ("midpoint", "duplicated") for hs in out["how"].values()
                          for h in hs)
    return out


def _official_judgment(judgment: Judgment, official: dict[str, Any]) -> Judgment:
    """``parse=official``: the scores the official scripts would use, marked as such.
    The Judgment contract keeps scores in 0..25, so values outside are clamped (and
    said); bench's official accuracy reads the same clamped numbers."""
    warnings = list(judgment.warnings)
    pairs: dict[str, tuple[float, float] | None] = {}
    for name in ("sc", "pq"):
        if name not in official:
            pairs[name] = None
            continue
        raw = official[name]
        pair = in_range(raw)
        if pair != tuple(raw):
            warnings.append(f"official parse: {name} {raw} outside 0..25, clamped")
        how = official["how"][name]
        if how != ["parsed"]:
            warnings.append(f"official parse: {name} read by {'/'.join(how)}")
        pairs[name] = pair
    return dataclasses.replace(judgment, status="ok", sc=pairs["sc"], pq=pairs["pq"],
                               error=None, coverage=None, warnings=tuple(warnings),
                               ensemble_overall=None,
                               meta={**judgment.meta, "parse": "official",
                                     "our_status": judgment.status,
                                     "our_error": judgment.error})


def _average(samples: Sequence[Judgment], *, mean_overall: bool = False) -> Judgment:
    """EditScore-style self-ensemble: the mean of the usable samples' scores; regions and
    reasoning from the first usable sample; every raw answer kept in ``meta``. With
    ``mean_overall`` the overall score is the mean of each complete sample's overall
    (EditScore's ``average_last``) instead of the aggregate of the mean pairs."""
    sc_ok = [s.sc for s in samples if s.sc is not None]
    pq_ok = [s.pq for s in samples if s.pq is not None]
    expects_pq = any(s.raw_pq is not None for s in samples)
    base = next((s for s in samples if s.status == "ok"),
                next((s for s in samples if s.sc is not None), samples[0]))
    n = len(samples)
    warnings = list(base.warnings)
    if 0 < len(sc_ok) < n:
        warnings.append(f"{n - len(sc_ok)} of {n} SC samples unusable; averaged the other "
                        f"{len(sc_ok)}")
    if expects_pq and 0 < len(pq_ok) < n:
        warnings.append(f"{n - len(pq_ok)} of {n} PQ samples unusable; averaged the other "
                        f"{len(pq_ok)}")

    def mean(pairs: list[tuple[float, float]]) -> tuple[float, float] | None:
        return (round(float(np.mean([p[0] for p in pairs])), 3),
                round(float(np.mean([p[1] for p in pairs])), 3)) if pairs else None

    sc, pq = mean(sc_ok), mean(pq_ok)
    ok = sc is not None and (pq is not None or not expects_pq)
    overalls = [s.overall for s in samples if s.overall is not None]
    ensemble = (float(np.mean(overalls))
                if mean_overall and ok and overalls else None)
    errors = "; ".join(dict.fromkeys(s.error for s in samples if s.error))
    return dataclasses.replace(
        base, status="ok" if ok else "parse_failed", sc=sc, pq=pq,
        error=None if ok else (errors or "no usable sample"), warnings=tuple(warnings),
        ensemble_overall=ensemble,
        meta={**base.meta, "samples": n, "sc_samples": [list(p) for p in sc_ok],
              "pq_samples": [list(p) for p in pq_ok],
              "raw_sc_samples": [s.raw_sc for s in samples],
              "raw_pq_samples": [s.raw_pq for s in samples],
              **({"overall_samples": overalls} if mean_overall else {})})
