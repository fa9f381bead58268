"""What SpatialReward-Mini can read of an instruction: its coverage of a request.

Mini knows a small language (SynthEdit's: 8 colours, 4 shapes, six operations, grid
places) and reads the edit's target from the colour and shape words. The rule, stated
with every judgment (:class:`~spatialreward.judgment.Coverage`):

- **target**: the instruction must name an object Mini knows: one of its shapes,
  optionally with a colour ("the red circle"). Without one it cannot tell what was to be
  edited, and its scores measure only pixel changes.
- **unknown words** after the leading verb phrase (the words before the first
  article, e.g. "paint" in "paint the red circle blue") are not understood: each is
  named. Unknown words of the verb phrase are listed but tolerated: Mini reads the edit
  from the objects and colours named and the pixels (held-out verbs such as "paint",
  "get rid of", "swap", "shift" score 0.925 on SynthEdit test), and a few function words
  (:data:`FUNCTION_WORDS`) carry no meaning it needs.
- **operation**: the operation whose verbs appear ("make ... bigger" is a resize).

Either failure makes the judgment ``low_coverage``. SynthEdit's own instructions never
are (tested over the test and hard splits).
"""

from __future__ import annotations

import re
from collections.abc import Collection

from ..judgment import Coverage
from ..synth.language import COLORS, SHAPES, TEMPLATES

_WORD = re.compile(r"[a-z]+")
ARTICLES = frozenset({"the", "a", "an"})
FUNCTION_WORDS = frozenset({"for", "be", "of", "to", "so", "it", "is", "please"})
SIZE_WORDS = frozenset({"bigger", "smaller", "larger"})


def _verbs() -> dict[str, tuple[str, ...]]:
    """Leading verb of every SynthEdit phrasing -> the operations it can start."""
    out: dict[str, list[str]] = {}
    for op, templates in TEMPLATES.items():
        for template in templates:
            verb = template.split()[0]
            if op not in out.setdefault(verb, []):
                out[verb].append(op)
    return {v: tuple(ops) for v, ops in out.items()}


VERBS = _verbs()


def _operation(words: list[str]) -> str | None:
    ops = next((VERBS[w] for w in words if w in VERBS), ())
    if not ops:
        return None
    if len(ops) == 1:
        return ops[0]
    if "resize" in ops and SIZE_WORDS & set(words):
        return "resize"
    if "replace" in ops and sum(w in SHAPES for w in words) >= 2:
        return "replace"
    return next(op for op in ops if op in ("recolor", "replace", "add", "remove"))


def _target(words: list[str]) -> str | None:
    for i, w in enumerate(words):
        if w in SHAPES:
            return f"{words[i - 1]} {w}" if i and words[i - 1] in COLORS else w
    return None


def _quoted(words: Collection[str]) -> str:
    return ", ".join(f"'{w}'" for w in words)


def read_instruction(text: str, vocabulary: Collection[str]) -> Coverage:
    """Mini's coverage of ``text`` given its tokeniser's ``vocabulary``.

    >>> vocab = {"make", "the", "red", "circle", "blue", "bigger"}
    >>> c = read_instruction("Make the dog's collar red", vocab)
    >>> c.target, c.unknown_words, c.low
    (None, ('dog', 's', 'collar'), True)
    >>> c = read_instruction("paint the red circle blue", vocab)
    >>> c.operation, c.target, c.unknown_words, c.low
    ('recolor', 'red circle', ('paint',), False)
    >>> read_instruction("make the red circle bigger", vocab).operation
    'resize'
    """
    words = _WORD.findall(text.lower())
    unknown = tuple(dict.fromkeys(w for w in words if w not in vocabulary))
    first_article = next((i for i, w in enumerate(words) if w in ARTICLES), len(words))
    unread = tuple(dict.fromkeys(w for w in words[first_article:]
                                 if w not in vocabulary and w not in FUNCTION_WORDS))
    target = _target(words)
    reasons = []
    if unread:
        reasons.append(f"it cannot read {_quoted(unread)}")
    if target is None:
        reasons.append(f"it found no object it knows to edit (it reads {len(SHAPES)} "
                       f"shapes: {', '.join(SHAPES)}, in {len(COLORS)} colours)")
    return Coverage(unknown_words=unknown, operation=_operation(words), target=target,
                    reasons=tuple(reasons))
