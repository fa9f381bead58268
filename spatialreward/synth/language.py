"""The SynthEdit instruction language: how an edit is put into words.

Objects are ``<color> <shape>``; places are cells of a 3 x 3 grid. Every operation
has several phrasings; one per operation (``HELD_OUT``) never appears in the
training split, so paraphrase robustness can be measured on the others.

Surface variation: "a"/"an", letter case (lower, Sentence, Title, UPPER) and an
optional trailing period. The engine writes instructions from structured edits; it
never needs to parse them (the reward model reads the words, not this grammar).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

COLORS = ("red", "green", "blue", "yellow", "orange", "purple", "white", "black")
SHAPES = ("circle", "square", "triangle", "star")
POSITIONS = (
    "top left", "top", "top right",
    "left", "center", "right",
    "bottom left", "bottom", "bottom right",
)
OPERATIONS = ("recolor", "remove", "add", "replace", "move", "resize")

# {X}: the target object ("red circle"), {C}: a colour, {Y}: a new object, {P}: a place,
# {a}/{aY}: the article before X/Y, {D}: bigger|smaller.
TEMPLATES: dict[str, tuple[str, ...]] = {
    "recolor": (
        "change the color of the {X} to {C}",
        "make the {X} {C}",
        "turn the {X} {C}",
        "recolor the {X} {C}",
        "paint the {X} {C}",
    ),
    "remove": ("remove the {X}", "delete the {X}", "erase the {X}", "get rid of the {X}"),
    "add": (
        "add {a} {X} at the {P}",
        "put {a} {X} in the {P}",
        "place {a} {X} at the {P}",
        "draw {a} {X} in the {P}",
    ),
    "replace": (
        "replace the {X} with {aY} {Y}",
        "swap the {X} for {aY} {Y}",
        "change the {X} into {aY} {Y}",
    ),
    "move": ("move the {X} to the {P}", "shift the {X} to the {P}"),
    "resize": ("make the {X} {D}", "resize the {X} to be {D}"),
}
HELD_OUT: dict[str, str] = {
    "recolor": "paint the {X} {C}",
    "remove": "get rid of the {X}",
    "add": "draw {a} {X} in the {P}",
    "replace": "swap the {X} for {aY} {Y}",
    "move": "shift the {X} to the {P}",
    "resize": "resize the {X} to be {D}",
}
CASES = ("lower", "sentence", "title", "upper")
_CASE_WEIGHTS = (0.55, 0.3, 0.1, 0.05)


@dataclass(frozen=True)
class Phrase:
    """A written instruction and how it was written."""

    text: str
    template: str
    held_out: bool


def article(word: str) -> str:
    """The indefinite article for ``word``.

    >>> article("orange"), article("red")
    ('an', 'a')
    """
    return "an" if word[:1].lower() in "aeiou" else "a"


def apply_case(text: str, case: str) -> str:
    """Write ``text`` in one of the letter cases of ``CASES``.

    >>> apply_case("make the red star blue", "title")
    'Make The Red Star Blue'
    """
    if case == "sentence":
        return text[:1].upper() + text[1:]
    if case == "title":
        return " ".join(w[:1].upper() + w[1:] for w in text.split(" "))
    if case == "upper":
        return text.upper()
    return text


def phrase(
    op: str,
    rng: np.random.Generator,
    *,
    allow_held_out: bool,
    obj: str,
    color: str = "",
    new_obj: str = "",
    position: str = "",
    direction: str = "",
) -> Phrase:
    """Write one instruction for ``op``; ``allow_held_out=False`` for the training split.

    >>> p = phrase("recolor", np.random.default_rng(1), allow_held_out=True,
    ...            obj="red circle", color="blue")
    >>> p.text.lower().rstrip(".") in {t.format(X="red circle", C="blue")
    ...                                for t in TEMPLATES["recolor"]}
    True
    """
    if op not in TEMPLATES:
        raise ValueError(f"unknown operation {op!r}; expected one of {OPERATIONS}")
    templates = [t for t in TEMPLATES[op] if allow_held_out or t != HELD_OUT[op]]
    template = templates[int(rng.integers(len(templates)))]
    text = template.format(
        X=obj, C=color, Y=new_obj, P=position, D=direction,
        a=article(obj), aY=article(new_obj) if new_obj else "a",
    )
    text = apply_case(text, CASES[int(rng.choice(len(CASES), p=_CASE_WEIGHTS))])
    if rng.random() < 0.5:
        text += "."
    return Phrase(text, template, template == HELD_OUT[op])
