"""Judging protocols as data: which calls a judge answers, with which images and words.

A protocol is a TOML file (the built-in ones are in ``templates/``)::

    name = "my-judge"
    regions = true                      # the SC answer lists edit regions
    aggregation = "weighted_geometric"  # how SC and PQ combine (spatialreward.scoring)

    [sc]                                # semantic consistency: required
    images = ["source", "edited"]       # in the order the model sees them
    system = ""                         # optional system message
    prompt = "... {instruction} ..."    # {instruction} is the only placeholder
    answer_prefix = ""                  # optional text the answer is known to start with

    [pq]                                # perceptual quality: optional
    images = ["edited"]
    prompt = "..."

    edit_size = "as_is"                 # or "source": the edit is resized to the source's
                                        # size before judging (EditScore, GEdit-Bench)
    ensemble = "mean_scores"            # samples > 1: average the SC / PQ pairs, or
                                        # "mean_overall": each sample's overall (EditScore)
    [generation]                        # decoding; a backend setting overrides each key
    temperature = 0.0                   # 0 = greedy
    top_p = 1.0
    top_k = 0                           # 0 = no top-k cut

Images go before the prompt text unless the prompt marks their places with ``<image>``
(one marker per image). The prompt is wrapped in the checkpoint's own chat template, so a
file with a model's training prompt reproduces that prompt exactly. Answers are parsed by
:func:`spatialreward.protocol.parse_judgment`; a protocol only changes what is asked.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..scoring import AGGREGATORS

TEMPLATES = Path(__file__).resolve().parent / "templates"
IMAGE_MARKER = "<image>"
IMAGE_ROLES = ("source", "edited")
MULTI_ROLES = ("sources", "edited")
"""Roles of the ``[sc_multi]`` call: ``sources`` stands for every input image, in order."""


@dataclass(frozen=True)
class Call:
    """One model call of a protocol: ``sc`` or ``pq``."""

    name: str
    images: tuple[str, ...]
    prompt: str
    system: str = ""
    answer_prefix: str = ""

    def text(self, instruction: str, num_sources: int | None = None) -> str:
        """The prompt with the instruction (and, for ``[sc_multi]``, ``{num_sources}``)
        filled in (``str.format`` is not used, so the JSON braces of an answer example
        need no escaping).

        >>> Call("sc", ("edited",), 'Do "{instruction}". {"score": [a, b]}').text("x")
        'Do "x". {"score": [a, b]}'
        """
        text = self.prompt
        if num_sources is not None:
            text = text.replace("{num_sources}", str(num_sources))
        return text.replace("{instruction}", instruction)

    def messages(self, instruction: str, num_images: int | None = None
                 ) -> list[dict[str, Any]]:
        """Chat messages in the transformers format, images as ``{"type": "image"}`` parts
        (``num_images``: how many a ``[sc_multi]`` call shows).

        >>> Call("pq", ("edited",), "Rate it.").messages("")[0]["content"]
        [{'type': 'image'}, {'type': 'text', 'text': 'Rate it.'}]
        """
        sources = None if num_images is None else num_images - 1
        text = self.text(instruction, sources)
        pieces = text.split(IMAGE_MARKER)
        content: list[dict[str, Any]] = []
        if len(pieces) == 1:  # no markers: all images first, then the text
            content += [{"type": "image"} for _ in range(num_images or len(self.images))]
            content.append({"type": "text", "text": text})
        else:
            for k, piece in enumerate(pieces):
                if k:
                    content.append({"type": "image"})
                if piece:
                    content.append({"type": "text", "text": piece})
        messages: list[dict[str, Any]] = []
        if self.system:
            messages.append({"role": "system", "content": self.system})
        messages.append({"role": "user", "content": content})
        return messages


EDIT_SIZES = ("as_is", "source")
ENSEMBLES = ("mean_scores", "mean_overall")


@dataclass(frozen=True)
class Generation:
    """A protocol's decoding settings (temperature 0 = greedy)."""

    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0


@dataclass(frozen=True)
class Prompts:
    """A judging protocol: its calls, whether SC answers carry regions, its aggregation."""

    name: str
    sc: Call
    pq: Call | None
    regions: bool
    aggregation: str
    description: str
    origin: str
    """Where it came from: a built-in name or the template file's path."""
    digest: str
    """Hash of the template text; part of the backend version."""
    edit_size: str = "as_is"
    ensemble: str = "mean_scores"
    generation: Generation = Generation()
    sc_multi: Call | None = None
    """The SC call for an edit made from several input images (optional)."""

    @property
    def calls(self) -> tuple[Call, ...]:
        return (self.sc,) if self.pq is None else (self.sc, self.pq)

    @property
    def wording_sha256(self) -> str:
        """Hash of exactly what the model is asked: each call's images, system text,
        prompt and answer prefix. Two files with the same wording (whatever their
        comments or layout) share it, so a run can be checked against the official
        wording without shipping that wording.

        >>> a = load_prompts("editscore")
        >>> a.wording_sha256 == parse_prompts({"sc": {"images": list(a.sc.images),
        ...     "prompt": a.sc.prompt}, "pq": {"images": list(a.pq.images),
        ...     "prompt": a.pq.prompt}}).wording_sha256
        True
        """
        calls = self.calls if self.sc_multi is None else (*self.calls, self.sc_multi)
        parts = [[c.name, list(c.images), c.system, c.prompt, c.answer_prefix] for c in calls]
        return hashlib.sha256(json.dumps(parts, ensure_ascii=False).encode()).hexdigest()

    def record(self) -> dict[str, str]:
        """What a judgment's meta and a bench result say about the protocol."""
        return {"name": self.name, "origin": self.origin, "file_sha256": self.digest,
                "wording_sha256": self.wording_sha256}


def builtin_names() -> list[str]:
    """The protocols that ship with the Studio.

    >>> builtin_names()
    ['editscore', 'spatialreward']
    """
    return sorted(p.stem for p in TEMPLATES.glob("*.toml"))


def load_prompts(spec: str | Path) -> Prompts:
    """A protocol by built-in name (``spatialreward``, ``editscore``) or template file path.

    >>> p = load_prompts("spatialreward")
    >>> p.sc.images, p.pq.images, p.regions
    (('source', 'edited'), ('edited',), True)
    """
    text_spec = str(spec)
    if text_spec in builtin_names():
        path, origin = TEMPLATES / f"{text_spec}.toml", text_spec
    else:
        path, origin = Path(text_spec).expanduser(), str(Path(text_spec).expanduser())
        if not path.is_file():
            raise ConfigError(
                f"prompts {text_spec!r} is neither a built-in protocol "
                f"({', '.join(builtin_names())}) nor a template file; pass prompts=NAME or "
                "prompts=/path/to/template.toml (docs/vlm.md shows the format)"
            )
    raw = path.read_text(encoding="utf-8")
    try:
        data = tomllib.loads(raw)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"template {path} is not valid TOML: {err}") from None
    return parse_prompts(data, origin=origin, digest=hashlib.sha256(raw.encode()).hexdigest())


def parse_prompts(data: dict[str, Any], *, origin: str = "<dict>", digest: str = "") -> Prompts:
    """Validate a protocol given as a dict (what the TOML file holds)."""
    where = f"template {origin}"
    unknown = set(data) - {"name", "description", "regions", "aggregation", "sc", "pq",
                           "sc_multi", "edit_size", "ensemble", "generation"}
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}")
    if "sc" not in data:
        raise ConfigError(f"{where} has no [sc] section; the SC call is required")
    aggregation = str(data.get("aggregation", "weighted_geometric"))
    if aggregation not in AGGREGATORS:
        raise ConfigError(f"{where}: aggregation must be one of {sorted(AGGREGATORS)}, "
                          f"got {aggregation!r}")
    regions = data.get("regions", True)
    if not isinstance(regions, bool):
        raise ConfigError(f"{where}: regions must be true or false")
    sc = _call("sc", data["sc"], where)
    if "edited" not in sc.images:
        raise ConfigError(f"{where}: the [sc] call must show the model the edited image")
    if "{instruction}" not in sc.prompt:
        raise ConfigError(f"{where}: the [sc] prompt must contain {{instruction}}")
    pq = _call("pq", data["pq"], where) if "pq" in data else None
    sc_multi = _call("sc_multi", data["sc_multi"], where, MULTI_ROLES) \
        if "sc_multi" in data else None
    if sc_multi is not None:
        if IMAGE_MARKER in sc_multi.prompt or sc_multi.images != MULTI_ROLES:
            raise ConfigError(f'{where}: [sc_multi] shows images = ["sources", "edited"] '
                              f"before its text, without {IMAGE_MARKER} markers")
        if "{instruction}" not in sc_multi.prompt:
            raise ConfigError(f"{where}: the [sc_multi] prompt must contain {{instruction}}")
    edit_size, ensemble = data.get("edit_size", "as_is"), data.get("ensemble", "mean_scores")
    for key, value, allowed in (("edit_size", edit_size, EDIT_SIZES),
                                ("ensemble", ensemble, ENSEMBLES)):
        if value not in allowed:
            raise ConfigError(f"{where}: {key} must be one of {', '.join(allowed)}, "
                              f"got {value!r}")
    return Prompts(name=str(data.get("name", Path(origin).stem)), sc=sc, pq=pq, regions=regions,
                   aggregation=aggregation, description=str(data.get("description", "")),
                   origin=origin, digest=digest or hashlib.sha256(repr(data).encode()).hexdigest(),
                   edit_size=edit_size, ensemble=ensemble,
                   generation=_generation(data.get("generation", {}), where), sc_multi=sc_multi)


def _generation(section: Any, where: str) -> Generation:
    if not isinstance(section, dict):
        raise ConfigError(f"{where}: [generation] must be a table")
    unknown = set(section) - {"temperature", "top_p", "top_k"}
    if unknown:
        raise ConfigError(f"{where}: unknown keys in [generation]: {sorted(unknown)}")
    try:
        g = Generation(temperature=float(section.get("temperature", 0.0)),
                       top_p=float(section.get("top_p", 1.0)),
                       top_k=int(section.get("top_k", 0)))
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: [generation] values must be numbers") from None
    if g.temperature < 0 or not 0 < g.top_p <= 1 or g.top_k < 0:
        raise ConfigError(f"{where}: [generation] needs temperature >= 0, top_p in (0, 1] "
                          f"and top_k >= 0")
    return g


def _call(name: str, section: Any, where: str,
          roles: tuple[str, ...] = IMAGE_ROLES) -> Call:
    if not isinstance(section, dict):
        raise ConfigError(f"{where}: [{name}] must be a table")
    unknown = set(section) - {"images", "prompt", "system", "answer_prefix"}
    if unknown:
        raise ConfigError(f"{where}: unknown keys in [{name}]: {sorted(unknown)}")
    images = section.get("images")
    if (not isinstance(images, list) or not images
            or any(i not in roles for i in images) or len(set(images)) != len(images)):
        raise ConfigError(f"{where}: [{name}] images must be a non-empty list of distinct "
                          f"names from {list(roles)}, got {images!r}")
    prompt = section.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise ConfigError(f"{where}: [{name}] needs a prompt")
    markers = prompt.count(IMAGE_MARKER)
    if markers not in (0, len(images)):
        raise ConfigError(f"{where}: [{name}] has {markers} {IMAGE_MARKER} markers for "
                          f"{len(images)} images; use one per image or none")
    for key in ("system", "answer_prefix"):
        if not isinstance(section.get(key, ""), str):
            raise ConfigError(f"{where}: [{name}] {key} must be a string")
    # The text is kept byte for byte (a trailing newline included): a template with a
    # model's training prompt must reproduce it exactly.
    return Call(name=name, images=tuple(images), prompt=prompt,
                system=section.get("system", ""), answer_prefix=section.get("answer_prefix", ""))
