"""The judgment card: one inspection as a single self-contained HTML page, and as a PNG.

A card is what a researcher mails to someone who has no Studio: the instruction, the
source, the candidates ranked best first with their regions drawn, the pixel change map
and the attention, the region-anchored reasoning, the score chart, and who judged it,
when, and how much of the request the backend could read. The HTML holds everything
inline (images as ``data:`` URIs, CSS in ``<style>``, the chart as SVG, no script) under a
Content-Security-Policy that forbids every request, so it opens offline from an email.
The PNG is the same card drawn with PIL, so no browser is needed to make it.

Every text (the instruction is user input) is HTML-escaped. Images are downscaled to
:data:`IMAGE_SIDE` px on their long side and stored as JPEG or PNG, whichever is smaller.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import cv2
import numpy as np
from PIL import Image

from . import __version__
from .errors import InputError
from .judgment import Judgment
from .overlay import draw_regions, heatmap_overlay, region_color

FORMATS = ("html", "png")
MAX_ENTRIES = 4
"""As many candidates as one inspection judges (``service.MAX_CANDIDATES``)."""
IMAGE_SIDE = 512
"""Long side (px) of every image in the card: a 3-candidate card of photographs is ~1.3 MB."""
JPEG_QUALITY = 85
LOW_COLOR, OK_COLOR, FAIL_COLOR, MUTED = "#B26B00", "#007A5A", "#C0392B", "#9A9A9A"


@dataclass(frozen=True)
class CardEntry:
    """One judged candidate and the pictures that explain it (what an Inspection holds)."""

    judgment: Judgment
    source: Image.Image
    edited: Image.Image
    """The edit stretched onto the source frame (same size as ``source``)."""
    change_map: np.ndarray | None = None
    """(h, w) pixel change heat in [0, 1] (``PixelEvidence.heatmap``); None: not measured."""
    attention: tuple[np.ndarray, np.ndarray] | None = None
    """Attention over the (source, edited) patches in [0, 1] on one scale; None: the
    backend has none."""
    label: str = ""
    """How the card names the candidate (default "Candidate K", K from 1 in given order)."""


def ranked(judgments: Sequence[Judgment]) -> list[int]:
    """Indices best first by overall score; judgments without one (failed) go last, in
    their given order.

    >>> ok = Judgment(status="ok", sc=(20.0, 20.0), pq=(20.0, 20.0))
    >>> weak = Judgment(status="ok", sc=(5.0, 20.0), pq=(20.0, 20.0))
    >>> ranked([Judgment(status="parse_failed"), weak, ok])
    [2, 1, 0]
    """
    def key(k: int) -> tuple[bool, float]:
        overall = judgments[k].overall
        return overall is None, -(overall or 0.0)

    return sorted(range(len(judgments)), key=key)


def iso_utc(created: datetime | None = None) -> str:
    """The card's date: UTC, ISO 8601, to the second (a naive ``created`` is taken as UTC).

    >>> iso_utc(datetime(2025, 3, 1, 12, 30, 5, 999))
    '2025-03-01T12:30:05Z'
    """
    when = created or datetime.now(UTC)
    when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    return when.replace(microsecond=0).isoformat().replace("+00:00", "Z")


def wrap_words(text: str, width: float, measure: Callable[[str], float]) -> list[str]:
    """Greedy word wrap to ``width`` (in ``measure``'s unit); a word is split only when it
    alone is wider than a line.

    >>> wrap_words("the quick brown fox", 10, len)
    ['the quick', 'brown fox']
    >>> wrap_words("abcdefghij xy", 4, len)
    ['abcd', 'efgh', 'ij', 'xy']
    """
    lines: list[str] = []
    line = ""
    for word in text.split():
        while measure(word) > width and len(word) > 1:  # only an overlong word is split
            if line:
                lines.append(line)
                line = ""
            cut = max(1, max(n for n in range(1, len(word) + 1)
                             if n == 1 or measure(word[:n]) <= width))
            lines.append(word[:cut])
            word = word[cut:]
        candidate = f"{line} {word}" if line else word
        if line and measure(candidate) > width:
            lines.append(line)
            candidate = word
        line = candidate
    if line:
        lines.append(line)
    return lines


# -- what the card says (shared by the HTML and the PNG) ---------------------------------

def status_note(j: Judgment) -> str:
    """The status as the card labels it."""
    if j.status == "low_coverage":
        return "low coverage: scores not stood behind"
    return j.status.replace("_", " ")


def coverage_text(j: Judgment) -> str:
    """What the backend could read of the request, in one line."""
    c = j.coverage
    if c is None:
        return "coverage: not reported by this backend"
    parts = ["unknown words: " + (", ".join(repr(w) for w in c.unknown_words) or "none"),
             f"operation: {c.operation or 'none found'}", f"target: {c.target or 'none found'}"]
    if c.domain_distance is not None:
        parts.append(f"image domain distance {c.domain_distance:.2f} (above 1: outside its "
                     "training images)")
    return "coverage: " + "; ".join(parts)


def score_rows(j: Judgment) -> list[tuple[str, float | None, float]]:
    """(label, value, scale top) of each bar of the score chart."""
    sc, pq = j.sc or (None, None), j.pq or (None, None)
    return [("Edit success", sc[0], 25.0), ("Over-editing (high: faithful)", sc[1], 25.0),
            ("Naturalness", pq[0], 25.0), ("Artifacts (high: clean)", pq[1], 25.0),
            ("Overall", j.overall, 10.0)]


@dataclass(frozen=True)
class _Card:
    """The card's content, decided once for both renderings."""

    instruction: str
    created: str
    entries: tuple[CardEntry, ...]
    labels: tuple[str, ...]
    order: tuple[int, ...]
    low_warnings: tuple[str, ...]
    """Every warning of the low-coverage judgments, once (the warning box)."""
    low_reasons: tuple[str, ...]
    judged_by: str

    @property
    def low(self) -> bool:
        return bool(self.low_warnings or self.low_reasons)

    def headline(self) -> str:
        best = self.order[0]
        j = self.entries[best].judgment
        if j.overall is None:
            return f"No candidate was scored ({status_note(j)})"
        score = f"overall {j.overall:.2f} / 10"
        note = " (low coverage: not stood behind)" if j.status == "low_coverage" else ""
        lead = f"Best: {self.labels[best]}, " if len(self.entries) > 1 else ""
        return f"{lead}{score}{note}"


def _card(entries: Sequence[CardEntry], instruction: str, created: datetime | None) -> _Card:
    entries = tuple(entries)
    if not 1 <= len(entries) <= MAX_ENTRIES:
        raise InputError(f"a card shows 1 to {MAX_ENTRIES} judged candidates, got "
                         f"{len(entries)}; judge the candidates first")
    js = [e.judgment for e in entries]
    low = [j for j in js if j.status == "low_coverage"]
    low_warnings = dict.fromkeys(w for j in low for w in j.warnings)
    low_reasons = dict.fromkeys(r for j in low if j.coverage for r in j.coverage.reasons)
    judged_by = ", ".join(dict.fromkeys(
        f"{j.backend or 'unknown backend'} (version {j.backend_version or 'unknown'})"
        for j in js))
    return _Card(instruction.strip(), iso_utc(created), entries,
                 tuple(e.label or f"Candidate {k + 1}" for k, e in enumerate(entries)),
                 tuple(ranked(js)), tuple(low_warnings), tuple(low_reasons), judged_by)


def _fit(image: Image.Image, side: int = IMAGE_SIDE) -> Image.Image:
    out = image.convert("RGB")
    if max(out.size) > side:
        out = out.copy()
        out.thumbnail((side, side), Image.Resampling.LANCZOS)
    return out


def _pictures(e: CardEntry) -> list[tuple[str, Image.Image]]:
    """One candidate's pictures, downscaled, with their captions."""
    source, edited = _fit(e.source), _fit(e.edited)
    if edited.size != source.size:  # the aligned edit shares the source frame
        edited = edited.resize(source.size, Image.Resampling.BICUBIC)
    regions = e.judgment.regions
    items = [("Regions on the source", draw_regions(source, regions)),
             ("Regions on the edit", draw_regions(edited, regions))]
    if e.change_map is not None:
        items.append(("Pixel change map", heatmap_overlay(source, e.change_map)))
    if e.attention is not None:
        items += [("Attention over the source", heatmap_overlay(source, e.attention[0])),
                  ("Attention over the edit", heatmap_overlay(edited, e.attention[1]))]
    return items


def _turbo_stops(n: int = 9) -> list[str]:
    """Hex colours along the turbo colour map the heat overlays use (for the legend)."""
    ramp = np.linspace(0, 255, n).astype(np.uint8).reshape(-1, 1)
    bgr = cv2.applyColorMap(ramp, cv2.COLORMAP_TURBO).reshape(-1, 3)
    return ["#{:02X}{:02X}{:02X}".format(*px[::-1]) for px in bgr]


# -- HTML ---------------------------------------------------------------------------------

_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;
 margin:0;background:#f4f4f2;color:#222;line-height:1.45}
main{max-width:1120px;margin:0 auto;padding:24px}
section,header{background:#fff;border-radius:10px;padding:18px 22px;margin:0 0 18px;
 box-shadow:0 1px 3px rgba(0,0,0,.12)}
.kicker{color:#666;font-size:.85rem;margin:0;text-transform:uppercase;letter-spacing:.06em}
h1{font-size:1.7rem;margin:.2rem 0 .4rem}
.headline{font-size:1.25rem;font-weight:600;margin:.2rem 0}
.meta{color:#555;font-size:.9rem;margin:.3rem 0}
.warning{border:3px solid #B26B00;background:#FFF4CE}
.warning h2{color:#7A4A00;margin-top:0}
.figures{display:flex;flex-wrap:wrap;gap:12px}
figure{margin:0;flex:1 1 180px;max-width:260px}
figure img{width:100%;height:auto;border:1px solid #ccc;border-radius:4px;display:block}
figcaption{font-size:.8rem;color:#555;margin-top:2px}
.source figure{max-width:420px}
.legend{font-size:.8rem;color:#555;margin:8px 0}
.legend span.bar{display:inline-block;width:160px;height:10px;vertical-align:middle;
 border-radius:3px;margin:0 6px}
.columns{display:flex;flex-wrap:wrap;gap:18px;margin-top:12px}
.reasoning{flex:1 1 420px}
.chart{flex:0 0 440px}
.seg{display:inline;padding:1px 3px;border-radius:3px;border-bottom:3px solid #999;
 box-decoration-break:clone;-webkit-box-decoration-break:clone;line-height:1.9}
.chip{font-size:.75rem;font-weight:700;padding:0 5px;border-radius:3px;color:#111;
 margin-right:4px;white-space:nowrap}
.status{font-size:.8rem;font-weight:700;padding:2px 8px;border-radius:10px;color:#fff;
 vertical-align:middle}
.overall{float:right;font-size:1.3rem}
.not-stood{color:#888}
.error{color:#C0392B}
footer{color:#666;font-size:.8rem;text-align:center;padding:8px}
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _data_uri(image: Image.Image) -> str:
    """The smaller of a JPEG and a PNG encoding (synthetic scenes compress as PNG)."""
    encoded = []
    for fmt, mime, kwargs in (("JPEG", "image/jpeg", {"quality": JPEG_QUALITY}),
                              ("PNG", "image/png", {"compress_level": 6})):
        buf = io.BytesIO()
        image.save(buf, fmt, **kwargs)
        encoded.append((len(buf.getvalue()), mime, buf.getvalue()))
    _, mime, data = min(encoded)
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _figure(caption: str, image: Image.Image) -> str:
    w, h = image.size
    return (f'<figure><img src="{_data_uri(image)}" width="{w}" height="{h}" '
            f'alt="{_e(caption)}"><figcaption>{_e(caption)}</figcaption></figure>')


def score_chart_svg(j: Judgment, title: str) -> str:
    """The score chart as inline SVG: sc and pq on 0..25, overall on 0..10; the bars of a
    low-coverage judgment are grey, missing scores say n/a (never a zero bar)."""
    low = j.status == "low_coverage"
    colors = ["#0072B2", "#0072B2", "#009E73", "#009E73", "#D55E00"]
    label_w, bar_w, row_h, top = 190, 170, 26, 30
    height = top + row_h * 5 + (22 if low else 6)
    parts = [f'<svg class="score-chart" xmlns="http://www.w3.org/2000/svg" width="440" '
             f'height="{height}" viewBox="0 0 440 {height}" role="img">',
             f"<title>{_e(title)}</title>",
             f'<text x="0" y="16" font-size="14" font-weight="700">{_e(title)}</text>']
    for i, (label, value, scale) in enumerate(score_rows(j)):
        y = top + i * row_h
        parts.append(f'<text x="0" y="{y + 15}" font-size="12">{_e(label)}</text>')
        parts.append(f'<rect x="{label_w}" y="{y + 3}" width="{bar_w}" height="16" '
                     'fill="#eee"/>')
        if value is not None:
            w = round(bar_w * min(1.0, max(0.0, value / scale)), 1)
            fill = "#B5B5B5" if low else colors[i]
            parts.append(f'<rect class="bar" x="{label_w}" y="{y + 3}" width="{w}" '
                         f'height="16" fill="{fill}"/>')
        text = "n/a" if value is None else f"{value:.2f} / {scale:g}"
        parts.append(f'<text x="{label_w + bar_w + 8}" y="{y + 15}" font-size="12">'
                     f"{_e(text)}</text>")
    if low:
        parts.append(f'<text x="0" y="{height - 6}" font-size="12" fill="{LOW_COLOR}">'
                     "Grey: low coverage, the backend does not stand behind these</text>")
    parts.append("</svg>")
    return "".join(parts)


def reasoning_html(j: Judgment) -> str:
    """The reasoning with each ``<|bbox_ID|>`` segment highlighted in its region's colour
    (as the Inspect tab does) and the ``<|global|>`` verdict in grey."""
    spans = []
    for seg in j.segments:
        if seg.kind == "bbox" and seg.region_id is not None:
            color = region_color(seg.region_id)
            region = j.region(seg.region_id)
            name = f"region {seg.region_id}" + (f": {region.label}" if region and region.label
                                                else "")
            spans.append(f'<span class="seg region" data-region="{seg.region_id}" '
                         f'style="border-color:{color};background:{color}22">'
                         f'<span class="chip" style="background:{color}">{_e(name)}</span>'
                         f"{_e(seg.text)}</span>")
        elif seg.kind == "global":
            spans.append('<span class="seg verdict" style="background:#eee">'
                         f'<span class="chip" style="background:#ccc">verdict</span>'
                         f"{_e(seg.text)}</span>")
        else:
            spans.append(f"<span>{_e(seg.text)}</span>")
    body = " ".join(spans) or "<span>(no reasoning)</span>"
    out = f"<p>{body}</p>"
    if j.pq_reasoning:
        out += f"<p><b>Quality:</b> {_e(j.pq_reasoning)}</p>"
    if j.error:
        out += f'<p class="error"><b>Error:</b> {_e(j.error)}</p>'
    return out


def _own_warnings(j: Judgment) -> tuple[str, ...]:
    """The warnings shown with the candidate itself: a low-coverage judgment's are all in
    the warning box at the top."""
    return () if j.status == "low_coverage" else j.warnings


def _status_badge(j: Judgment) -> str:
    color = {"ok": OK_COLOR, "low_coverage": LOW_COLOR}.get(j.status, FAIL_COLOR)
    return (f'<span class="status status-{_e(j.status)}" style="background:{color}">'
            f"{_e(status_note(j))}</span>")


def _candidate_html(card: _Card, rank: int, k: int) -> str:
    e, label = card.entries[k], card.labels[k]
    j = e.judgment
    klass = "overall not-stood" if j.status == "low_coverage" else "overall"
    overall = ("" if j.overall is None else
               f'<span class="{klass}">{j.overall:.2f} / 10</span>')
    figures = "".join(_figure(c, im) for c, im in _pictures(e))
    stops = ",".join(_turbo_stops())
    legend = ('<p class="legend">Heat: low<span class="bar" style="background:'
              f'linear-gradient(to right,{stops})"></span>high (change: above the '
              "re-encoding noise; attention: share of the peak)</p>")
    chart = (score_chart_svg(j, f"Scores of {label}") if j.scored else
             f"<p><b>No scores:</b> the judgment's status is {_e(j.status)}.</p>")
    warn = "".join(f"<li>warning: {_e(w)}</li>" for w in _own_warnings(j))
    return (f'<section class="candidate" id="candidate-{k + 1}">'
            f"<h2>#{rank + 1} · {_e(label)} {_status_badge(j)}{overall}</h2>"
            f'<div class="figures">{figures}</div>{legend}'
            f'<div class="columns"><div class="reasoning"><h3>Region-anchored reasoning</h3>'
            f'{reasoning_html(j)}</div><div class="chart">{chart}</div></div>'
            f'<p class="meta">{_e(j.backend)} version {_e(j.backend_version)} · '
            f"{_e(coverage_text(j))}</p>"
            + (f'<ul class="meta">{warn}</ul>' if warn else "") + "</section>")


def _warning_html(card: _Card) -> str:
    out = ""
    if card.low:
        items = "".join(f"<li>{_e(w)}</li>" for w in card.low_warnings)
        reasons = "".join(f"<li>{_e(r)}</li>" for r in card.low_reasons)
        out += ('<section class="warning" id="low-coverage" role="alert">'
                "<h2>⚠ Low coverage: the scores below are not stood behind</h2>"
                f"<ul>{items}</ul><p><b>What the backend could not read:</b></p>"
                f"<ul>{reasons}</ul><p>The regions and the pixel change map are measured on "
                "the pixels and stay valid on any image.</p></section>")
    return out


def render_html(entries: Sequence[CardEntry], instruction: str, *,
                created: datetime | None = None) -> str:
    """The card as one self-contained HTML page (no script, no external asset)."""
    card = _card(entries, instruction, created)
    source = _fit(card.entries[0].source)
    candidates = "".join(_candidate_html(card, rank, k) for rank, k in enumerate(card.order))
    title = f"Judgment card: {card.instruction}"
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body><main>"
        '<header><p class="kicker">SpatialReward judgment card</p>'
        f'<h1 id="instruction">“{_e(card.instruction)}”</h1>'
        f'<p class="headline" id="headline">{_e(card.headline())}</p>'
        f'<p class="meta">Judged by {_e(card.judged_by)} · '
        f'<time datetime="{card.created}">{card.created}</time> · '
        f"{len(card.entries)} candidate(s), best first</p></header>"
        f"{_warning_html(card)}"
        f'<section class="source"><h2>Source</h2>{_figure("Source", source)}</section>'
        f"{candidates}"
        f"<footer>SpatialReward Studio {_e(__version__)} · {card.created} · sc = [edit "
        "success, over-editing], pq = [naturalness, artifacts] on 0..25, high is good; "
        "overall on 0..10.</footer></main></body></html>"
    )


def check_format(fmt: str | None) -> str:
    """``fmt`` as one of :data:`FORMATS`, or an InputError naming them.

    >>> check_format(" PNG ")
    'png'
    """
    kind = (fmt or "").strip().lower()
    if kind not in FORMATS:
        raise InputError(f"card format {fmt!r} is not supported; use one of: "
                         f"{', '.join(FORMATS)}")
    return kind


def render(entries: Sequence[CardEntry], instruction: str, fmt: str = "html", *,
           created: datetime | None = None) -> bytes:
    """The card in ``fmt`` ("html": UTF-8 bytes, or "png")."""
    if check_format(fmt) == "png":
        from .card_png import render_png  # the PNG half lives beside, drawn with PIL

        return render_png(entries, instruction, created=created)
    return render_html(entries, instruction, created=created).encode("utf-8")
