"""Untrusted text (instructions, labels, model output) inside Markdown, shown as text.

A user's instruction or a model's reasoning is data, not markup: rendered as Markdown,
``<img src=...>`` would show a picture the model never read (and let a remote image track
annotators), and ``**`` or ``$`` would change what the words look like.
"""

from __future__ import annotations

import html
import re

# What Markdown (and gradio's LaTeX and tables) act on mid-line; the caller never puts
# user text at the start of a line, so list and heading markers need no escape.
_MARKDOWN = re.compile(r"([\\`*_\[\]|~$])")


def plain(text: str | None) -> str:
    """``text`` escaped so that gradio's Markdown shows it character for character.

    >>> plain("make it <b>red</b> *now*")
    'make it &lt;b&gt;red&lt;/b&gt; \\\\*now\\\\*'
    """
    escaped = html.escape(text or "", quote=False)
    return _MARKDOWN.sub(r"\\\1", escaped).replace("\n", " ")
