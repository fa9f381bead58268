"""The judgment card drawn as one PNG with PIL: the same content as the HTML card
(:mod:`spatialreward.card`), for places that show pictures but not pages."""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import datetime
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont

from . import __version__
from .card import (
    FAIL_COLOR,
    LOW_COLOR,
    MUTED,
    OK_COLOR,
    CardEntry,
    _Card,
    _card,
    _fit,
    _own_warnings,
    _pictures,
    coverage_text,
    score_rows,
    status_note,
    wrap_words,
)
from .judgment import Judgment
from .overlay import region_color

PNG_WIDTH = 1200
_PAD = 24


@lru_cache(maxsize=16)
def _font(size: int, bold: bool = False) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """DejaVu Sans when the system has it (wide glyph coverage, a bold face), else
    Pillow's own font at the same size."""
    try:
        return ImageFont.truetype("DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf", size)
    except OSError:
        return ImageFont.load_default(size=size)


class _Canvas:
    """A white strip of the card's width that grows as text and pictures are placed."""

    def __init__(self, width: int = PNG_WIDTH, background: str = "white") -> None:
        self.width, self.background = width, background
        self.image = Image.new("RGB", (width, 2000), background)
        self.draw = ImageDraw.Draw(self.image)
        self.y = _PAD

    def room(self, height: int) -> None:
        """Grow the strip so that ``height`` more pixels fit below ``self.y``."""
        if self.y + height + _PAD > self.image.height:
            grown = Image.new("RGB", (self.width, self.image.height * 2 + height),
                              self.background)
            grown.paste(self.image, (0, 0))
            self.image, self.draw = grown, ImageDraw.Draw(grown)

    def text(self, text: str, size: int = 16, *, bold: bool = False, color: str = "#222",
             x: int = _PAD, width: int | None = None, advance: bool = True) -> int:
        """Word-wrapped text from ``(x, self.y)``; returns its height."""
        font = _font(size, bold)
        lines = wrap_words(text, width or self.width - x - _PAD,
                           lambda s: self.draw.textlength(s, font=font))
        step = round(size * 1.35)
        self.room(step * len(lines))
        for i, line in enumerate(lines):
            self.draw.text((x, self.y + i * step), line, fill=color, font=font)
        if advance:
            self.y += step * len(lines)
        return step * len(lines)

    def crop(self) -> Image.Image:
        return self.image.crop((0, 0, self.width, self.y + _PAD))


def _paste_row(canvas: _Canvas, items: Sequence[tuple[str, Image.Image]], cell: int) -> None:
    """Pictures side by side, each fitted into a ``cell`` square, captions below."""
    heights = [round(im.height * min(cell / im.width, cell / im.height)) for _, im in items]
    row_h = max(heights) + 22
    canvas.room(row_h)
    for i, (caption, im) in enumerate(items):
        scale = min(cell / im.width, cell / im.height)
        thumb = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))),
                          Image.Resampling.LANCZOS)
        x = _PAD + i * (cell + 12)
        canvas.image.paste(thumb, (x, canvas.y))
        canvas.draw.text((x, canvas.y + thumb.height + 4), caption, fill="#555",
                         font=_font(13))
    canvas.y += row_h + 8


def _png_bars(canvas: _Canvas, j: Judgment, x: int, y: int) -> int:
    """The score chart drawn at (x, y); returns its height."""
    draw, font = canvas.draw, _font(14)
    low = j.status == "low_coverage"
    colors = ["#0072B2", "#0072B2", "#009E73", "#009E73", "#D55E00"]
    for i, (label, value, scale) in enumerate(score_rows(j)):
        top = y + i * 28
        draw.text((x, top), label, fill="#222", font=font)
        bx = x + 200
        draw.rectangle((bx, top + 2, bx + 150, top + 18), fill="#EEEEEE")
        if value is not None:
            w = round(150 * min(1.0, max(0.0, value / scale)))
            if w:
                draw.rectangle((bx, top + 2, bx + w, top + 18),
                               fill="#B5B5B5" if low else colors[i])
        draw.text((bx + 158, top), "n/a" if value is None else f"{value:.2f} / {scale:g}",
                  fill="#222", font=font)
    height = 5 * 28
    if low:
        draw.text((x, y + height), "Grey: low coverage, not stood behind", fill=LOW_COLOR,
                  font=font)
        height += 24
    return height


def _png_reasoning(canvas: _Canvas, j: Judgment, x: int, width: int) -> None:
    """Each reasoning segment as a paragraph with a bar in its region's colour."""
    segments = list(j.segments)
    for seg in segments:
        if seg.kind == "bbox" and seg.region_id is not None:
            color = region_color(seg.region_id)
            region = j.region(seg.region_id)
            head = f"region {seg.region_id}" + (f" ({region.label})" if region and region.label
                                                else "")
        else:
            color, head = "#BBBBBB", "verdict" if seg.kind == "global" else ""
        top = canvas.y
        if head:
            canvas.text(head, 13, bold=True, color="#444", x=x + 12, width=width - 12)
        canvas.text(seg.text, 15, x=x + 12, width=width - 12)
        canvas.draw.rectangle((x, top, x + 4, canvas.y - 2), fill=color)
        canvas.y += 6
    if j.pq_reasoning:
        canvas.text(f"Quality: {j.pq_reasoning}", 14, color="#444", x=x, width=width)
    if j.error:
        canvas.text(f"Error: {j.error}", 14, color=FAIL_COLOR, x=x, width=width)


def _png_candidate(canvas: _Canvas, card: _Card, rank: int, k: int) -> None:
    e, j = card.entries[k], card.entries[k].judgment
    canvas.draw.line((_PAD, canvas.y, canvas.width - _PAD, canvas.y), fill="#CCCCCC", width=2)
    canvas.y += 12
    color = {"ok": OK_COLOR, "low_coverage": LOW_COLOR}.get(j.status, FAIL_COLOR)
    if j.overall is not None:
        score = f"{j.overall:.2f} / 10"
        score_w = canvas.draw.textlength(score, font=_font(26, True))
        canvas.draw.text((canvas.width - _PAD - score_w, canvas.y), score, font=_font(26, True),
                         fill=MUTED if j.status == "low_coverage" else "#222")
    canvas.text(f"#{rank + 1}  {card.labels[k]}", 22, bold=True, width=700)
    canvas.text(status_note(j), 15, bold=True, color=color, width=700)
    canvas.y += 6
    pictures = _pictures(e)
    cell = (canvas.width - 2 * _PAD - 12 * (len(pictures) - 1)) // len(pictures)
    _paste_row(canvas, pictures, min(cell, 300))
    top = canvas.y
    bars = (_png_bars(canvas, j, _PAD, top) if j.scored else
            canvas.text(f"No scores: status {j.status}", 15, advance=False, width=400))
    _png_reasoning(canvas, j, _PAD + 470, canvas.width - 2 * _PAD - 470)
    canvas.y = max(canvas.y, top + bars) + 6
    canvas.text(f"{j.backend} {j.backend_version} · {coverage_text(j)}", 13, color="#555")
    for w in _own_warnings(j):
        canvas.text(f"warning: {w}", 14, color="#7A4A00")
    canvas.y += 10


def render_png(entries: Sequence[CardEntry], instruction: str, *,
               created: datetime | None = None) -> bytes:
    """The card drawn as one PNG (no browser needed): the same content as the HTML."""
    card = _card(entries, instruction, created)
    canvas = _Canvas()
    source = _fit(card.entries[0].source, 260)
    canvas.image.paste(source, (_PAD, canvas.y))
    x = _PAD + source.width + 20
    top = canvas.y
    canvas.text("SPATIALREWARD JUDGMENT CARD", 13, bold=True, color="#666", x=x)
    canvas.text(f"“{card.instruction}”", 28, bold=True, x=x)
    canvas.y += 4
    canvas.text(card.headline(), 20, bold=True, x=x)
    canvas.text(f"Judged by {card.judged_by} · {card.created}", 14, color="#555", x=x)
    canvas.y = max(canvas.y, top + source.height + 18) + 4
    canvas.draw.text((_PAD, top + source.height + 2), "Source", fill="#555", font=_font(13))
    if card.low:
        _png_warning(canvas, card)
    canvas.y += 8
    for rank, k in enumerate(card.order):
        _png_candidate(canvas, card, rank, k)
    canvas.text(f"SpatialReward Studio {__version__} · {card.created} · sc = [edit success, "
                "over-editing], pq = [naturalness, artifacts] on 0..25, high is good; overall "
                "on 0..10", 12, color="#777")
    buf = io.BytesIO()
    canvas.crop().save(buf, "PNG", optimize=True)
    return buf.getvalue()


def _png_warning(canvas: _Canvas, card: _Card) -> None:
    """The low-coverage box: the warnings and reasons on yellow in a thick orange frame."""
    box = _Canvas(canvas.width - 2 * _PAD, background="#FFF4CE")
    box.text("LOW COVERAGE: the scores below are not stood behind", 20, bold=True,
             color="#7A4A00")
    for line in (*card.low_warnings, *(f"It could not read: {r}" for r in card.low_reasons)):
        box.text(f"- {line}", 15)
    strip = box.crop()
    ImageDraw.Draw(strip).rectangle((0, 0, strip.width - 1, strip.height - 1),
                                    outline=LOW_COLOR, width=4)
    canvas.room(strip.height)
    canvas.image.paste(strip, (_PAD, canvas.y))
    canvas.y += strip.height + 12
