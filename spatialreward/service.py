"""Service functions: the one API the CLI, the UI and scripts call.

Front ends hold no model code: they call :meth:`Services.judge` or
:meth:`Services.inspect` and show the returned :class:`~spatialreward.Judgment`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from storage import datasets

from . import access, backends
from .access import LOCAL_ROLE, LoginThrottle
from .backends.base import Backend, failed_judgment, judge_in_batches
from .bench import runs as bench_runs
from .config import StudioConfig
from .errors import (
    InputError,
    PermissionDeniedError,
    UnknownAnnotatorError,
    UnknownBackendError,
)
from .images import (
    ASPECT_TOLERANCE,
    align_to_source,
    aspect_mismatch,
    intake_warnings,
    load_image,
)
from .judgment import Judgment, served_reward
from .regions import PixelEvidence, propose_regions
from .service_learning import LearningServices
from .service_runs import RunServices

if TYPE_CHECKING:
    from storage.store import Store

    from .annotation import Annotation

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
    maps: np.ndarray | None = None
    """(layers, heads, 2, rows, cols) attention of the pass that produced ``judgment``
    (see :class:`~spatialreward.backends.base.Attended`); None without attention."""


class Services(RunServices, LearningServices):
    """Owns the backends (built lazily, once, shared between requests), the store and the
    RL launcher, and checks who may do what (:mod:`.access`)."""

    def __init__(self, config: StudioConfig | None = None, store: Store | None = None) -> None:
        self.config = config or StudioConfig()
        # Loaded models by normalised spec, least recently used first (bounded).
        self._backends: OrderedDict[str, Backend] = OrderedDict()
        self._added: dict[str, Backend] = {}
        self._lock = threading.Lock()  # the backends (held while a model loads)
        self._store_lock = threading.Lock()
        self._store = store
        self._launcher = None
        self._runs_lock = threading.Lock()
        self.logins = LoginThrottle()

    @property
    def store(self) -> Store:
        """The judgment store (``config.db``), opened on first use and shared."""
        with self._store_lock:
            if self._store is None:
                from storage.store import Store

                self._store = Store.open(self.config.db)
            return self._store

    # -- backends ---------------------------------------------------------------

    def offered(self) -> list[str]:
        """The backend specs this Studio serves, set at launch: the built-in backends that
        need no argument, ``config.backend``, ``config.backends`` and :meth:`add_backend`'s."""
        builtin = [name for name in backends.available() if not backends.needs_argument(name)]
        specs = [self.config.backend, *self.config.backends, *self._added, *builtin,
                 *self.reward_model_specs()]  # fine-tunes from votes: served at once
        return list(dict.fromkeys(s.strip() for s in specs))

    def offered_choices(self) -> list[tuple[str, str]]:
        """:meth:`offered` as dropdown choices: ``(label, spec)`` with a one-line description
        of what each backend is, e.g. ``("pixel - pixel-evidence baseline: ...", "pixel")``."""
        described = backends.available()
        choices = []
        for spec in self.offered():
            name, _ = backends.parse_spec(spec)
            note = described.get(name, "")
            if name == "vlm" and note:
                note = "a Qwen-VL judge checkpoint"
            elif name == "openai" and note:
                note = "a judge behind an OpenAI-compatible server"
            choices.append((f"{spec} - {note}" if note else spec, spec))
        return choices

    def backend(self, spec: str | None = None) -> Backend:
        """The backend ``spec`` names (default: ``config.backend``), loaded once. Only the
        :meth:`offered` specs are served: a caller cannot make the server read a path or
        load a model the person who launched it did not choose."""
        spec = (spec or self.config.backend).strip()
        key = backends.normalize_spec(spec)
        with self._lock:  # two first requests must not load the same model twice
            if key in self._added:
                return self._added[key]
            if key in self._backends:
                self._backends.move_to_end(key)
                return self._backends[key]
            self._check_offered(spec, key)
            model = backends.create(spec)
            self._backends[key] = model
            while len(self._backends) > self.config.max_loaded_backends:
                self._backends.popitem(last=False)  # freed once no request holds it
            return model

    def _check_offered(self, spec: str, key: str, what: str = "backend") -> None:
        """Refuse a spec that is not offered, with one message that names nothing on disk."""
        if key not in {backends.normalize_spec(s) for s in self.offered()}:
            name, argument = backends.parse_spec(spec)
            shown = f"{name[:20]}:..." if argument is not None else name[:20]
            raise UnknownBackendError(  # the argument is not echoed: it may be a probe
                f"{what} {shown!r} is not offered by this Studio; use one of: "
                f"{', '.join(self.offered())}. Whoever starts the app can offer more "
                "(--backend, or STUDIO_BACKENDS='spec;spec')")

    def add_backend(self, spec: str, backend: Backend) -> None:
        """Serve ``backend`` under ``spec`` in this app only (tests, notebooks); the
        process-wide registry is left alone."""
        with self._lock:
            self._added[backends.normalize_spec(spec)] = backend

    def available_backends(self) -> dict[str, str]:
        """The offered backend specs, each with a one-line description."""
        known = backends.available()
        out = {}
        for spec in self.offered():
            name = backends.parse_spec(spec)[0]
            default = " (the default)" if spec == self.config.backend.strip() else ""
            out[spec] = (known.get(name, "a backend added to this app")
                         if ":" not in spec else f"{known.get(name, name)}: {spec}") + default
        return out

    # -- who may do what ----------------------------------------------------------

    def role(self, user: str | None) -> str:
        """The role of ``user`` (the logged-in name, None without ``--auth``)."""
        if not self.config.auth:
            return LOCAL_ROLE
        if not user:
            raise PermissionDeniedError("log in first: this Studio requires a login")
        try:
            return str(self.store.annotator(user)["role"])
        except UnknownAnnotatorError:
            raise PermissionDeniedError(
                f"{user!r} is not a registered annotator; log in again") from None

    def require(self, user: str | None, action: str) -> str:
        """``user``'s role, or :class:`PermissionDeniedError` when it may not ``action``."""
        role = self.role(user)
        access.require(role, action, repr(user) if user else "the local user")
        return role

    def login(self, name: str, password: str) -> bool:
        """Check an app login, with a per-name back-off after repeated failures."""
        name = name or ""  # as typed: the request's user name is exactly this
        if self.logins.wait(name) > 0:
            return False
        ok = self.store.check_password(name, password or "")
        (self.logins.succeeded if ok else self.logins.failed)(name)
        return ok

    def load(self, obj: Any, name: str) -> Image.Image:
        return load_image(
            obj,
            max_pixels=self.config.max_pixels,
            max_bytes=self.config.max_upload_bytes,
            name=name,
            exif_orientation=self.config.exif_orientation,
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
        self, source: Any, edited: Any, instruction: str | None, backend: str | None,
        attended: bool = False, source_loaded: bool = False,
    ) -> tuple[Judgment, Image.Image, Image.Image, PixelEvidence, np.ndarray | None]:
        """Load, propose regions, judge once: (judgment, source, edited as given, evidence,
        attention maps of that pass when ``attended`` and the backend has them).
        ``source_loaded``: ``source`` is an image :meth:`load` returned already."""
        text = self.check_instruction(instruction)
        t0 = time.perf_counter()
        src = source if source_loaded else self.load(source, "source image")
        edt = self.load(edited, "edited image")
        t1 = time.perf_counter()
        model = self.backend(backend)
        evidence = propose_regions(src, edt)
        maps = None
        try:
            if attended:
                result = model.judge_attended(src, edt, text, evidence=evidence)
                judgment, maps = result.judgment, result.maps
            else:
                judgment = model.judge(src, edt, text, evidence=evidence)
        except Exception as err:  # a backend failure is reported, never turned into a score
            log.exception("backend %s failed", model.name)
            judgment = failed_judgment(model, err)
        t2 = time.perf_counter()
        return (_with_frame_info(judgment, src, edt, t1 - t0, t2 - t1), src, edt, evidence,
                maps)

    def inspect(
        self, source: Any, edited: Any, instruction: str | None, backend: str | None = None,
        *, source_loaded: bool = False,
    ) -> Inspection:
        """Judge one edit and keep, for display, the aligned images, the pixel evidence and
        the attention maps of the judging pass itself."""
        judgment, src, edt, evidence, maps = self._run(
            source, edited, instruction, backend, attended=True, source_loaded=source_loaded)
        return Inspection(judgment, src, align_to_source(src.size, edt), evidence, maps)

    def judge(
        self, source: Any, edited: Any, instruction: str | None, backend: str | None = None,
        *, more_sources: Sequence[Any] = (),
    ) -> Judgment:
        """Judge one edit (no display work: what bench and the CLI call per candidate).

        ``more_sources``: further input images of an edit made from several (MMRB2's
        multi-image prompts). Only a backend with ``judge_sources`` (``vlm:`` with a
        protocol that has an ``[sc_multi]`` call) judges those; any other returns a
        failed judgment that says so, counted like every failure."""
        if not more_sources:
            return self._run(source, edited, instruction, backend)[0]
        text = self.check_instruction(instruction)
        sources = [self.load(source, "source image")] + [
            self.load(s, f"source image {k + 2}") for k, s in enumerate(more_sources)]
        edt = self.load(edited, "edited image")
        model = self.backend(backend)
        judge_sources = getattr(model, "judge_sources", None)
        if judge_sources is None:
            return Judgment(status="backend_error", backend=model.name,
                            backend_version=model.version, meta={"sources": len(sources)},
                            error=f"not supported: {model.name} judges an edit against one "
                                  f"source image and this edit was made from "
                                  f"{len(sources)}; a vlm: checkpoint judges all of them")
        try:
            judgment: Judgment = judge_sources(sources, edt, text)
        except Exception as err:  # a backend failure is reported, never turned into a score
            log.exception("backend %s failed", model.name)
            judgment = failed_judgment(model, err)
        return judgment

    def judge_batch(self, triples: Sequence[tuple[Image.Image, Image.Image, str]],
                    backend: str | None = None, *, batch: int = 16) -> list[Judgment]:
        """Judge loaded (source, edited, instruction) triples in batches of ``batch``
        (``judge_many`` when the backend has it): the reward server's path. A backend
        that raises fails its batch with ``backend_error``, never a score."""
        return judge_in_batches(self.backend(backend), triples, batch)

    def open_external_run(self, name: str, config: Mapping[str, Any]) -> int:
        """A run of kind ``external`` in the store: a trainer elsewhere calling the reward
        server. Its reward calls become metrics and samples (:meth:`record_reward_call`);
        the samples' judgments and the alerts go to its folder (``runs/external-ID``
        beside the store), as an RL run's do."""
        run_id = self.store.create_run("external", name, config)
        folder = Path("runs") / f"external-{run_id}"  # beside the store, as RL runs' are
        (self.launcher.root / folder / "samples").mkdir(parents=True, exist_ok=True)
        self.store.update_run(run_id, status="running", out_dir=folder.as_posix())
        return run_id

    def record_reward_call(self, run_id: int, step: int,
                           triples: Sequence[tuple[Image.Image, Image.Image, str] | None],
                           judgments: Sequence[Judgment], latency_ms: float, *,
                           samples: int = 1, spot_check: str | None = None) -> None:
        """One reward call of an external run: its mean reward, failures, size and latency
        as the metrics of ``step``, and its first ``samples`` judged edits as stored
        samples (images, rewards, and in the run folder the judgments with regions and
        reasoning) the Train tab and the annotators can look at.

        With ``spot_check`` (a backend spec) those samples are judged again by it: the
        metrics ``spot_reward`` and ``reward_on_spot`` (the served reward of the same
        items) feed the run's hacking alert (:func:`spatialreward.rl.external.spot_alert`).
        ``triples[k]`` is None for an item that could not be read (it counts as failed)."""
        rewards = [served_reward(j) for j in judgments]
        values = {"items": float(len(judgments)), "latency_ms": float(latency_ms),
                  "reward_failed": float(sum(not j.ok for j in judgments))}
        if any(r is not None for r in rewards):
            values["reward_mean"] = float(np.mean([r for r in rewards if r is not None]))
        kept = [(t, j, r) for t, j, r in zip(triples, judgments, rewards, strict=True)
                if t is not None and r is not None][:samples]
        second: list[Judgment | None] = [None] * len(kept)
        if spot_check and kept:
            second = list(judge_in_batches(self.backend(spot_check),
                                           [t for t, _, _ in kept], len(kept)))
            pairs = [(r, s.reward) for (_, _, r), s in zip(kept, second, strict=True)
                     if s is not None and s.reward is not None]
            if pairs:
                values["reward_on_spot"] = float(np.mean([a for a, _ in pairs]))
                values["spot_reward"] = float(np.mean([b for _, b in pairs]))
        self.store.log_metrics(run_id, step, values)
        row = self.store.run(run_id)
        folder = self.launcher.folder(row) if row.get("out_dir") else None
        served = str(row["config"].get("backend") or "served")
        for (triple, j, reward), s in zip(kept, second, strict=True):
            src, edt, text = triple
            sample_id = self.store.add_rl_sample(run_id, step, text, src, [edt], [reward])
            if folder is not None:
                judged = {served: j.to_dict()}
                if s is not None:
                    judged[f"spot check {spot_check}"] = s.to_dict()
                (folder / "samples" / f"{sample_id}.json").write_text(
                    json.dumps({"judgments": [judged]}), encoding="utf-8")
        if "spot_reward" not in values:
            return
        from .rl.charts import history_from_metrics
        from .rl.external import spot_alert

        alert = spot_alert(history_from_metrics(self.store.metrics(run_id)))
        if alert is not None and alert.step == step:
            self.store.log_metrics(run_id, step, {"hacking_alert": 1.0})
            if folder is not None:
                with open(folder / "alerts.jsonl", "a", encoding="utf-8") as fh:
                    fh.write(json.dumps({"step": step, "message": alert.message}) + "\n")

    def judge_stored(self, item_id: int, candidate: int, backend: str | None = None, *,
                     source: Any = None, edited: Any = None, store: Store | None = None
                     ) -> tuple[Judgment, bool]:
        """The judgment of a stored item's candidate: the store's cached one for this
        backend version, else a fresh :meth:`judge` (stored when it succeeded; failures
        are tried again next time). ``source`` / ``edited``: the images when the caller
        has them, else they are read from the store. ``store``: another store than the
        app's (a bench of a snapshot caches into the file it reads). Returns (judgment,
        whether it came from the cache).

        The one judging path of the Annotate tab and the bench. With
        ``exif_orientation`` off the model sees other pixels than the store's cache was
        made from, so nothing is read from or written to the cache."""
        store = store if store is not None else self.store
        model = self.backend(backend)
        caching = self.config.exif_orientation
        cached = (store.cached_judgment(item_id, candidate, model.name, model.version)
                  if caching else None)
        if cached is not None:
            return cached, True
        item = store.item(item_id)
        if source is None:
            source = store.image_bytes(item["source_sha256"])
        if edited is None:
            edited = store.image_bytes(item["candidates"][candidate])
        judgment = self.judge(source, edited, item["instruction"], backend)
        if judgment.scored and caching:  # failures are tried again next time
            store.add_model_judgment(item_id, candidate, judgment,
                                     judgment.timings_ms.get("total"))
        return judgment, False

    def judge_item(self, item_id: int, backend: str | None = None) -> list[Judgment]:
        """Every candidate of a stored item judged through :meth:`judge_stored`."""
        store, model = self.store, self.backend(backend)
        item = store.item(item_id)
        cached = [store.cached_judgment(item_id, k, model.name, model.version)
                  if self.config.exif_orientation else None
                  for k in range(int(item["n_candidates"]))]
        # The source is read and decoded once, and only when something must be judged.
        source = None if all(cached) else self.load(
            store.image_bytes(item["source_sha256"]), "source image")
        return [j if j is not None else self.judge_stored(item_id, k, backend, source=source)[0]
                for k, j in enumerate(cached)]

    def inspect_group(self, source: Any, candidates: Sequence[Any], instruction: str | None,
                      backend: str | None = None) -> list[Inspection]:
        """Judge 1..MAX_CANDIDATES candidate edits of one source, in the given order: one
        model pass and one region proposal per candidate, the source loaded once."""
        candidates = [c for c in candidates if c is not None]
        if not 1 <= len(candidates) <= MAX_CANDIDATES:
            raise InputError(f"give 1 to {MAX_CANDIDATES} edited candidates, got "
                             f"{len(candidates)}")
        src = self.load(source, "source image")  # a bad source fails before any model call
        return [self.inspect(src, c, instruction, backend, source_loaded=True)
                for c in candidates]

    def attention(self, inspection: Inspection, layer: int | None = None,
                  head: int | None = None
                  ) -> tuple[np.ndarray, np.ndarray, tuple[int, int]] | None:
        """The inspection's attention from the instruction to the (source, edited) patches
        as two maps in [0, 1], for one layer/head or averaged (None), and the model's
        (layers, heads); None when the backend has no attention to show (the pixel
        baseline). Reads the maps of the judging pass: the model is not run again."""
        if inspection.maps is None:
            return None
        maps = np.asarray(inspection.maps)  # (L, H, 2, g, g)
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

    def card(self, results: Sequence[Inspection], instruction: str, fmt: str = "html", *,
             labels: Sequence[str] | None = None) -> bytes:
        """One inspection as a judgment card to share (:mod:`.card`): a self-contained HTML
        page (``fmt="html"``, UTF-8 bytes; opens offline) or a PNG of it (``"png"``).
        ``results``: :meth:`inspect_group`'s, in candidate order; ``labels``: how the card
        names each candidate (default "Candidate 1", ...). The attention shown is the
        mean over layers and heads (:meth:`attention`)."""
        from . import card as cards

        kind = cards.check_format(fmt)
        text = self.check_instruction(instruction)
        if not results:
            raise InputError("nothing to put on a card: judge at least one candidate first")
        if labels is not None and len(labels) != len(results):
            raise InputError(f"give one label per candidate: {len(labels)} labels for "
                             f"{len(results)} candidates")
        entries = []
        for k, r in enumerate(results):
            maps = self.attention(r)
            entries.append(cards.CardEntry(
                r.judgment, r.source, r.edited, r.evidence.heatmap,
                None if maps is None else (maps[0], maps[1]),
                label=labels[k] if labels is not None else ""))
        return cards.render(entries, text, kind)

    def judge_card(self, source: Any, candidates: Sequence[Any], instruction: str | None,
                   backend: str | None = None, fmt: str = "html") -> bytes:
        """Judge 1..MAX_CANDIDATES candidates (:meth:`inspect_group`) and return their
        :meth:`card`; a bad ``fmt`` is refused before any model runs."""
        from . import card as cards

        kind = cards.check_format(fmt)
        results = self.inspect_group(source, candidates, instruction, backend)
        return self.card(results, str(instruction), kind)

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


    # -- bench, data and runs (what the Bench, Data and Train tabs call) -----------

    @property
    def data_root(self) -> Path:
        """The data folder: where the store lives, and the only folder the app reads
        datasets from."""
        return datasets.data_root(self.config)

    def bench(self, *, path: str | None = None, upload: str | None = None,
              backend: str | None = None, limit: int | None = None, by: Sequence[str] = (),
              user: str | None = None, progress: Callable[[int, int], None] | None = None,
              add_to_store: bool = False) -> dict[str, Any]:
        """Bench ``backend`` on a dataset under the data folder (or an upload) and record
        the run; the store's own file means its human votes, read through the open store.
        The items are stored with their judgments (the cache) but join the annotation
        queues only with ``add_to_store``."""
        self.require(user, "bench")
        self.backend(backend)  # refuse an unoffered backend before touching any file
        with datasets.open_dataset(self.data_root, path=path, upload=upload,
                                   suffixes=datasets.BENCH_SUFFIXES,
                                   max_bytes=self.config.max_zip_bytes,
                                   store_file=Path(self.config.db)) as dataset:
            result = bench_runs.run_recorded(self, dataset, backend or self.config.backend,
                                             limit=limit, by=by, progress=progress,
                                             add_to_store=add_to_store)
        return {**result, "summary": bench_runs.summary(result)}

    def bench_result(self, run_id: Any) -> dict[str, Any]:
        """A finished bench run's results, with its accuracy rows and score samples
        (``{"result", "rows", "scores"}``), for a results view."""
        result = bench_runs.load_result(self.store, self.data_root, run_id)
        return {"result": result, "rows": bench_runs.accuracy_rows(result),
                "scores": bench_runs.score_samples(result)}

    def bench_runs(self) -> list[tuple[str, str]]:
        """The stored bench runs, newest first, as (label, id) choices."""
        return [(bench_runs.run_label(r), str(r["id"]))
                for r in bench_runs.bench_runs(self.store)]

    def compare_bench(self, a: Any, b: Any) -> dict[str, Any]:
        """Two bench runs' accuracies side by side (see ``bench.runs.compare_runs``)."""
        return bench_runs.compare_runs(self.store, self.data_root, a, b)

    def agreement(self, backend: str | None = None) -> dict[str, Any]:
        """Model vs human majority, the human ceiling, inter-annotator agreement."""
        from storage.agreement import agreement

        return agreement(self.store, backend=backend or None)

    def stats(self) -> dict[str, Any]:
        """The store's row counts, schema version and journal mode."""
        return self.store.stats()

    def integrity(self) -> list[str]:
        """Problems the store's integrity check finds (empty: healthy)."""
        return self.store.integrity()

    def import_data(self, *, path: str | None = None, upload: str | None = None,
                    user: str | None = None) -> dict[str, Any]:
        """Import a dataset into the store, all or nothing. Human judgments in the file are
        kept only for an admin (they carry other people's names); for anyone else they are
        dropped and counted, and no annotator is created."""
        role = self.require(user, "import")
        return datasets.import_dataset(
            self.store, self.data_root, path=path, upload=upload,
            human_judgments=access.allowed(role, "import_votes"),
            max_bytes=self.config.max_zip_bytes)

    def export(self, fmt: str, user: str | None = None) -> tuple[Path, int]:
        """Export the whole store for download: (file, items)."""
        self.require(user, "export")
        return datasets.export_store(self.store, fmt, datasets.export_folder(self.data_root))

    @property
    def annotation(self) -> Annotation:
        """The Annotate tab's calls (:class:`~spatialreward.annotation.Annotation`)."""
        from .annotation import Annotation

        return Annotation(self)

def _stored_image(obj: Any) -> Any:
    """What the store keeps of an input: a file's original bytes, else the image."""
    if isinstance(obj, (str, Path)):
        return Path(obj).read_bytes()
    return obj


def _with_frame_info(
    j: Judgment, src: Image.Image, edt: Image.Image, load_s: float, judge_s: float
) -> Judgment:
    warnings = [*j.warnings, *intake_warnings(src), *intake_warnings(edt)]
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
