"""Service functions: the one API the CLI, the UI and scripts call.

Front ends hold no model code: they call :meth:`Services.judge` or
:meth:`Services.inspect` and show the returned :class:`~spatialreward.Judgment`.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from . import backends
from .backends.base import Backend
from .config import StudioConfig
from .errors import InputError
from .images import ASPECT_TOLERANCE, align_to_source, aspect_mismatch, load_image
from .judgment import Judgment
from .regions import PixelEvidence, propose_regions

if TYPE_CHECKING:
    from storage.store import Store

log = logging.getLogger(__name__)

MAX_CANDIDATES = 4
STABLE_SPREAD = 0.5
"""A verdict is unstable when a harmless perturbation moves an overall score (0..10) by
more than this, or changes the ranking."""


@dataclass(frozen=True)
class Inspection:
    """A judgment plus the pictures a front end needs to explain it."""

    judgment: Judgment
    source: Image.Image
    edited: Image.Image
    """The edited image stretched onto the source frame (same size as ``source``)."""
    evidence: PixelEvidence


class Services:
    """Owns the backends (built lazily, once, shared between requests)."""

    def __init__(self, config: StudioConfig | None = None, store: Store | None = None) -> None:
        self.config = config or StudioConfig()
        self._backends: dict[str, Backend] = {}
        self._lock = threading.Lock()
        self._store = store

    @property
    def store(self) -> Store:
        """The judgment store (``config.db``), opened on first use and shared."""
        with self._lock:
            if self._store is None:
                from storage.store import Store

                self._store = Store.open(self.config.db)
            return self._store

    def backend(self, spec: str | None = None) -> Backend:
        spec = (spec or self.config.backend).strip()
        with self._lock:  # two first requests must not load the same model twice
            if spec not in self._backends:
                self._backends[spec] = backends.create(spec)
            return self._backends[spec]

    def add_backend(self, spec: str, backend: Backend) -> None:
        """Serve ``backend`` under ``spec`` in this app only (tests, notebooks); the
        process-wide registry is left alone."""
        with self._lock:
            self._backends[spec.strip()] = backend

    def available_backends(self) -> dict[str, str]:
        """Backend specs to offer: the registry's names, plus the configured default when
        it carries an argument (``vlm:/models/x``)."""
        names = backends.available()
        if ":" in self.config.backend:
            names = {self.config.backend: "the configured default backend", **names}
        return names

    def load(self, obj: Any, name: str) -> Image.Image:
        return load_image(
            obj,
            max_pixels=self.config.max_pixels,
            max_bytes=self.config.max_upload_bytes,
            name=name,
        )

    def check_instruction(self, instruction: str | None) -> str:
        text = (instruction or "").strip()
        if not text:
            raise InputError("the instruction is empty; type the edit that was asked for")
        if len(text) > self.config.max_instruction_chars:
            raise InputError(
                f"the instruction has {len(text)} characters, more than the "
                f"{self.config.max_instruction_chars} accepted; shorten it"
            )
        return text

    def _run(
        self, source: Any, edited: Any, instruction: str | None, backend: str | None
    ) -> tuple[Judgment, Image.Image, Image.Image, PixelEvidence]:
        """Load, propose regions, judge: (judgment, source, edited as given, evidence)."""
        text = self.check_instruction(instruction)
        t0 = time.perf_counter()
        src = self.load(source, "source image")
        edt = self.load(edited, "edited image")
        t1 = time.perf_counter()
        model = self.backend(backend)
        evidence = propose_regions(src, edt)
        try:
            judgment = model.judge(src, edt, text, evidence=evidence)
        except Exception as err:  # a backend failure is reported, never turned into a score
            log.exception("backend %s failed", model.name)
            judgment = Judgment(
                status="backend_error",
                backend=model.name,
                backend_version=model.version,
                error=f"{type(err).__name__}: {err}",
            )
        t2 = time.perf_counter()
        return _with_frame_info(judgment, src, edt, t1 - t0, t2 - t1), src, edt, evidence

    def inspect(
        self, source: Any, edited: Any, instruction: str | None, backend: str | None = None
    ) -> Inspection:
        """Judge one edit and keep the aligned images and pixel evidence for display."""
        judgment, src, edt, evidence = self._run(source, edited, instruction, backend)
        return Inspection(judgment, src, align_to_source(src.size, edt), evidence)

    def judge(
        self, source: Any, edited: Any, instruction: str | None, backend: str | None = None
    ) -> Judgment:
        """Judge one edit (no display work: what bench and the CLI call per candidate)."""
        return self._run(source, edited, instruction, backend)[0]

    def inspect_group(self, source: Any, candidates: Sequence[Any], instruction: str | None,
                      backend: str | None = None) -> list[Inspection]:
        """Judge 1..MAX_CANDIDATES candidate edits of one source, in the given order."""
        candidates = [c for c in candidates if c is not None]
        if not 1 <= len(candidates) <= MAX_CANDIDATES:
            raise InputError(f"give 1 to {MAX_CANDIDATES} edited candidates, got "
                             f"{len(candidates)}")
        src = self.load(source, "source image")  # fail on a bad source before any model call
        return [self.inspect(src, c, instruction, backend) for c in candidates]

    def attention(self, inspection: Inspection, instruction: str, backend: str | None = None,
                  layer: int | None = None, head: int | None = None
                  ) -> tuple[np.ndarray, np.ndarray, tuple[int, int]] | None:
        """Attention from the instruction to the (source, edited) patches as two maps in
        [0, 1], for one layer/head or averaged (None), and the model's (layers, heads);
        None when the backend has no attention to show (the pixel baseline)."""
        model = self.backend(backend)
        maps_fn = getattr(model, "attention_maps", None)
        if maps_fn is None:
            return None
        maps = np.asarray(maps_fn(inspection.source, inspection.edited,
                                  self.check_instruction(instruction)))  # (L, H, 2, g, g)
        layout = (int(maps.shape[0]), int(maps.shape[1]))
        if layer is not None:
            if not 0 <= layer < maps.shape[0]:
                raise InputError(f"layer must be 0..{maps.shape[0] - 1}, got {layer}")
            maps = maps[layer : layer + 1]
        if head is not None:
            if not 0 <= head < maps.shape[1]:
                raise InputError(f"head must be 0..{maps.shape[1] - 1}, got {head}")
            maps = maps[:, head : head + 1]
        both = maps.mean(axis=(0, 1))  # (2, g, g); one scale for both images
        peak = float(both.max()) or 1.0
        return both[0] / peak, both[1] / peak, layout

    def stability(self, source: Any, candidates: Sequence[Any], instruction: str | None,
                  backend: str | None = None) -> dict[str, Any]:
        """Re-judge under perturbations a verdict should not depend on (re-encoding the
        edit as JPEG, resampling it by 3%, reversing the candidate order) and report how
        far the scores move and whether the ranking changes."""
        from .synth.degrade import jpeg

        text = self.check_instruction(instruction)
        src = self.load(source, "source image")
        edits = [self.load(c, f"candidate {k + 1}") for k, c in enumerate(candidates)]
        if not edits:
            raise InputError("nothing to check: judge at least one candidate first")

        def rescaled(im: Image.Image) -> Image.Image:
            w, h = im.size
            small = im.resize((max(1, round(w * 0.97)), max(1, round(h * 0.97))),
                              Image.Resampling.BICUBIC)
            return small.resize((w, h), Image.Resampling.BICUBIC)

        variants = {
            "as given": edits,
            "edit re-encoded (JPEG 90)": [Image.fromarray(jpeg(np.asarray(e), 90)) for e in edits],
            "edit resampled by 3%": [rescaled(e) for e in edits],
            "candidates in reverse order": edits[::-1],
        }
        scores: dict[str, list[float | None]] = {}
        for name, images in variants.items():
            got = [self._run(src, im, text, backend)[0].overall for im in images]
            scores[name] = got[::-1] if name == "candidates in reverse order" else got

        def order(values: list[float | None]) -> list[int]:
            return sorted(range(len(values)), key=lambda k: -(values[k] or -1.0))

        base = scores["as given"]
        spread = [max(abs((v[k] or 0.0) - (base[k] or 0.0)) for v in scores.values())
                  for k in range(len(edits))]
        flips = [name for name, v in scores.items() if len(edits) > 1 and order(v) != order(base)]
        stable = not flips and max(spread) <= STABLE_SPREAD
        return {"scores": scores, "max_change": spread, "ranking_changed_under": flips,
                "stable": stable, "threshold": STABLE_SPREAD}

    def save(self, source: Any, candidates: Sequence[Any], instruction: str | None,
             judgments: Sequence[Judgment]) -> int:
        """Store an inspected item and its model judgments; returns the item id."""
        text = self.check_instruction(instruction)
        if len(judgments) != len(candidates):
            raise InputError("judge the candidates before saving them")
        store = self.store
        item_id = store.add_item(text, _stored_image(source), [_stored_image(c)
                                                               for c in candidates],
                                 origin_dataset="inspect")
        for k, j in enumerate(judgments):
            store.add_model_judgment(item_id, k, j, j.timings_ms.get("total"))
        return item_id


def _stored_image(obj: Any) -> Any:
    """What the store keeps of an input: a file's original bytes, else the image."""
    if isinstance(obj, (str, Path)):
        return Path(obj).read_bytes()
    return obj


def _with_frame_info(
    j: Judgment, src: Image.Image, edt: Image.Image, load_s: float, judge_s: float
) -> Judgment:
    warnings = list(j.warnings)
    mismatch = aspect_mismatch(src.size, edt.size)
    if mismatch > ASPECT_TOLERANCE:
        warnings.append(
            f"the edited image's aspect ratio differs from the source's by {100 * mismatch:.0f}%; "
            "it was stretched onto the source frame, so shapes may look distorted"
        )
    meta = {
        **j.meta,
        "source_size": list(src.size),
        "edited_size": list(edt.size),
        "frame": "stretch",
    }
    timings = {
        **j.timings_ms,
        "load": round(load_s * 1e3, 2),
        "total": round((load_s + judge_s) * 1e3, 2),
    }
    return dataclasses.replace(j, warnings=tuple(warnings), meta=meta, timings_ms=timings)


def judge(source: Any, edited: Any, instruction: str, backend: str = "pixel") -> Judgment:
    """One-off judgment for scripts: ``judge("a.png", "b.png", "make the cup red")``."""
    return Services(StudioConfig(backend=backend)).judge(source, edited, instruction)
