"""Service functions: the one API the CLI, the UI and scripts call.

Front ends hold no model code: they call :meth:`Services.judge` or
:meth:`Services.inspect` and show the returned :class:`~spatialreward.Judgment`.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from PIL import Image

from . import backends
from .backends.base import Backend
from .config import StudioConfig
from .errors import InputError
from .images import ASPECT_TOLERANCE, align_to_source, aspect_mismatch, load_image
from .judgment import Judgment
from .regions import PixelEvidence, propose_regions

log = logging.getLogger(__name__)


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

    def __init__(self, config: StudioConfig | None = None) -> None:
        self.config = config or StudioConfig()
        self._backends: dict[str, Backend] = {}
        self._lock = threading.Lock()

    def backend(self, spec: str | None = None) -> Backend:
        spec = (spec or self.config.backend).strip()
        with self._lock:  # two first requests must not load the same model twice
            if spec not in self._backends:
                self._backends[spec] = backends.create(spec)
            return self._backends[spec]

    def available_backends(self) -> dict[str, str]:
        return backends.available()

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
