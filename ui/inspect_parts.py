"""The Inspect tab's pure parts: what it shows about a judged group, as text, spans and
gallery items. No gradio layout here (ui/inspect.py lays it out), so each is tested
alone."""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spatialreward.errors import InputError
from spatialreward.judgment import Judgment
from spatialreward.overlay import draw_regions, region_color, scale_colors
from spatialreward.service import Inspection, Services

from .charts import STATUS_WORDS
from .text import plain

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

# Highlight colours are fixed at build time so the API returns plain spans; region ids
# beyond this many reuse the palette anyway.
_MAX_COLORED_REGIONS = 64
REASONING_COLORS = {
    "verdict": "#999999",
    "error": "#D55E00",
    **{f"region {i}": region_color(i) for i in range(_MAX_COLORED_REGIONS)},
}
ALL = "mean"
CARD_FORMATS = ("HTML", "PNG")

# gradio's HighlightedText lays its spans out with ``word-break: break-all``, which cuts
# the reasoning mid-word ("plac / e") wherever a line ends; words break between words.
# Gallery captions are one clipped line; these say rank, score and status, so they wrap.
CSS = ("#reasoning .textfield { word-break: normal; overflow-wrap: break-word; }\n"
       "#example-gallery .caption-label, #ranked-gallery .caption-label "
       "{ white-space: normal; max-width: 96%; }")


def reasoning_highlights(j: Judgment) -> list[tuple[str, str | None]]:
    """HighlightedText spans: each ``<|bbox_ID|>`` segment tagged with its region."""
    spans: list[tuple[str, str | None]] = []
    for seg in j.segments:
        if seg.kind == "bbox" and seg.region_id is not None:
            label: str | None = f"region {seg.region_id}"
        elif seg.kind == "global":
            label = "verdict"
        else:
            label = None
        spans.append((seg.text + " ", label))
    if j.error:
        spans.append((j.error, "error"))
    return spans


def upload_path(payload: Any) -> str | None:
    """The server-side file of an unprocessed upload (a FileData dict) or a path."""
    if isinstance(payload, dict):
        return payload.get("path")
    return payload if isinstance(payload, str) else None


def upload_paths(payload: Any) -> list[str]:
    """Server-side files of an unprocessed multi-file upload."""
    if payload is None:
        return []
    items = payload if isinstance(payload, list) else [payload]
    return [p for p in (upload_path(x) for x in items) if p]


def diagnostics_markdown(j: Judgment) -> str:
    a = j.attention
    if a is None:
        why = j.meta.get("attention") if isinstance(j.meta.get("attention"), str) else None
        return f"**Attention diagnostics:** {why or 'this backend has no attention to report.'}"
    inside = "-" if a.in_region_share is None else f"{a.in_region_share:.2f}"
    return (
        "**Attention diagnostics** (collapse shows as a source share near 0, low entropy "
        "or high concentration): "
        f"source share {a.source_share:.2f} · entropy source {a.entropy_source:.2f} / "
        f"edit {a.entropy_edited:.2f} nats · top-5% concentration {a.concentration:.2f} · "
        f"inside the regions {inside}"
    )


def scale_legend(what: str = "Heatmaps") -> str:
    """HTML: the heatmaps' colour scale as a bar, low to high, with its words."""
    stops = ", ".join(scale_colors())
    return (f'<div class="heat-scale" style="display:flex;align-items:center;gap:8px">'
            f"<span>{what}: low</span>"
            f'<span style="width:180px;height:12px;border-radius:3px;'
            f'background:linear-gradient(to right, {stops})"></span>'
            "<span>high (blue = low, red = high)</span></div>")


# -- the example gallery ------------------------------------------------------------


def load_examples(folder: Path = EXAMPLES) -> list[dict[str, Any]]:
    """The gallery's examples in the order to show them (``gallery``: measured best demos
    first, see examples/make_examples.py); examples without a place go last."""
    path = folder / "examples.json"
    if not path.is_file():
        return []
    examples = json.loads(path.read_text())
    return sorted(examples, key=lambda e: e.get("gallery", len(examples) + 1))


def example_caption(e: dict[str, Any]) -> str:
    """A thumbnail's caption: the example's name and, in a word, what the default
    backend did on it (examples/examples.json has the measured scores).

    >>> example_caption({"name": "Photo: x", "measured": {"outcome": "works: it ranks"}})
    'Photo: x (works)'
    """
    outcome = str((e.get("measured") or {}).get("outcome", ""))
    return f"{e['name']} ({outcome.split(':')[0]})" if outcome else str(e["name"])


def example_files(e: dict[str, Any], folder: Path = EXAMPLES) -> tuple[str, list[str]]:
    """(source, candidates) of an example as files in the temp folder: gradio serves
    files from the working directory or the temp folder only, and the app may be
    started from anywhere."""
    out = Path(tempfile.gettempdir()) / "spatialreward-examples"
    out.mkdir(exist_ok=True)

    def copy(name: str) -> str:
        src, dst = folder / name, out / name
        if not dst.is_file() or dst.stat().st_size != src.stat().st_size:
            shutil.copyfile(src, dst)
        return str(dst)

    return copy(e["source"]), [copy(c) for c in e["candidates"]]


# -- one judged group -----------------------------------------------------------------


@dataclass
class Session:
    """What one browser session last judged (kept in gr.State)."""

    source: str
    candidates: list[str]
    instruction: str
    backend: str
    results: list[Inspection]
    order: list[int] = field(default_factory=list)  # candidate indices, best first
    item_id: int | None = None


def rank(results: list[Inspection]) -> list[int]:
    """Candidate indices, best overall score first; unscored ones last."""
    def score(k: int) -> float:
        overall = results[k].judgment.overall
        return -1.0 if overall is None else overall

    return sorted(range(len(results)), key=lambda k: -score(k))


def choice(k: int) -> str:
    return f"Candidate {k + 1}"


def parse_pick(pick: str | None, n: int) -> int:
    try:
        k = int(str(pick).rsplit(" ", 1)[-1]) - 1
    except ValueError:
        k = 0
    return k if 0 <= k < n else 0


def layer_head(value: str | None) -> int | None:
    return None if not value or value == ALL else int(value.rsplit(" ", 1)[-1]) - 1


def score_text(j: Judgment) -> str:
    if j.overall is None:
        return "n/a"
    if j.status == "low_coverage":  # shown, greyed: the backend does not stand behind it
        return (f'<span class="low-coverage" style="color:#888">{j.overall:.2f} '
                "(low coverage)</span>")
    return f"{j.overall:.2f}"


def headline(j: Judgment) -> str:
    """The one big line a single judgment leads with: overall X/10 and its status; a
    low-coverage score is greyed and flagged, an unscored one says why."""
    if j.overall is None:
        return f"## Not scored: {plain(STATUS_WORDS.get(j.status, j.status))}"
    if j.status == "low_coverage":
        return ('## <span class="low-coverage" style="color:#888">'
                f"Overall {j.overall:.2f}/10 (low coverage)</span>\n"
                "⚠ Flagged: the backend does not vouch for this score (see why below).")
    return f"## Overall {j.overall:.2f}/10 · {STATUS_WORDS.get(j.status, j.status)}"


def summary(results: list[Inspection], order: list[int]) -> str:
    """The ranking of several candidates (best first), or one candidate's headline."""
    if len(results) == 1:
        return headline(results[0].judgment)
    lines = [f"**#{place + 1}** {choice(k)}: overall {score_text(results[k].judgment)} "
             f"({len(results[k].judgment.regions)} regions)"
             for place, k in enumerate(order)]
    return "Ranking: " + " · ".join(lines)


def banner(results: list[Inspection]) -> str:
    """Every warning of the judged candidates and the words the backend could not read,
    shown beside the results (a note said about every candidate is said once); a
    low-coverage judgment leads it."""
    notes: dict[str, list[int]] = {}
    for k, r in enumerate(results):
        for w in r.judgment.warnings:
            notes.setdefault(w, []).append(k)
        words = r.judgment.coverage.unknown_words if r.judgment.coverage else ()
        if words:
            notes.setdefault("words the backend does not know: " + ", ".join(words),
                             []).append(k)
    if not notes:
        return ""
    lines = []
    for text, ks in notes.items():
        who = ("" if len(ks) == len(results) or len(results) == 1
               else ", ".join(choice(k) for k in ks) + ": ")
        lines.append(f"- {who}{plain(text)}")
    low = any(r.judgment.status == "low_coverage" for r in results)
    head = ("### ⚠ Low coverage: these scores are not vouched for\n" if low
            else "**Warnings**\n")
    return head + "\n".join(lines)


PAGE_WIDTH_PX = 1216
"""About the widest a gradio page's content gets (its container's max width)."""


def gallery_height(n: int) -> int:
    """Pixels that hold one row of ``n`` square tiles on the widest page, so no tile is
    cut (gradio's own "auto" caps a gallery at 55% of the window).

    >>> gallery_height(2), gallery_height(4)
    (648, 344)
    """
    return PAGE_WIDTH_PX // max(1, n) + 40


def gallery_items(results: list[Inspection], order: list[int]) -> list[tuple[Any, str]]:
    """(edit with its regions drawn, caption) per candidate, best first; the caption says
    the rank, the candidate, its overall score and its status."""
    items = []
    for place, k in enumerate(order):
        j = results[k].judgment
        overall = "n/a" if j.overall is None else f"{j.overall:.2f}"
        status = "low coverage" if j.status == "low_coverage" else j.status.replace("_", " ")
        items.append((draw_regions(results[k].edited, j.regions),
                      f"#{place + 1} · {choice(k)} · overall {overall} · {status}"))
    return items


def write_card(services: Services, s: Session | None, fmt: str | None) -> str:
    """The session's judgment card written to a temp file (.html or .png) to download."""
    if s is None or not s.results:
        raise InputError("nothing judged yet: press Judge (or pick an example) first, then "
                         "share its card")
    kind = (fmt or "html").strip().lower()
    data = services.card(s.results, s.instruction, kind)
    return save_card(data, kind)


def save_card(data: bytes, kind: str) -> str:
    """``data`` in a new temp file named like a card; gradio copies it to its cache."""
    with tempfile.NamedTemporaryFile(prefix="judgment-card-", suffix=f".{kind}",
                                     delete=False) as f:
        f.write(data)
    return f.name
