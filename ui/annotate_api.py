"""The pair-voting API of the Annotate tab: ``/next_pair`` and ``/annotate_pair``.

RL sample groups hold G edits; people vote on two of them at a time (the "RL samples"
queue). ``/next_item`` and ``/annotate`` serve whole items, so a script that votes on
the policy's samples uses these two instead.
"""

# No ``from __future__ import annotations`` here: gr.api reads the functions' return
# types to describe the endpoints.

from collections.abc import Callable
from typing import Any

import gradio as gr

from .errors import user_errors


def register_pair_api(ann: Any, identify: Callable[[str | None, Any], str],
                      documented_api: Callable[..., Any]) -> None:
    @user_errors
    def api_next_pair(request: gr.Request, annotator: str, after_item: int | None = None,
                      after_pair: list | None = None) -> dict:
        """The next pair of an RL sample group to vote on, shown blind as A and B
        (item_id None: nothing left).

        Args:
            annotator: a registered annotator (with a login: yourself)
            after_item: the item on screen, to skip its pair without voting
            after_pair: the pair on screen, [i, j] (with after_item)
        """
        who = identify(annotator, request)
        after = ((int(after_item), [int(k) for k in after_pair])
                 if after_item is not None and after_pair else None)
        nxt = ann.next_pair(who, after=after)
        if nxt is None:
            return {"item_id": None, "pair": [], "order": [], "labels": []}
        shown = ann.shown_pair(who, nxt["item_id"], nxt["pair"])
        return {k: v for k, v in shown.items() if k not in ("source", "candidates")}

    @user_errors
    def api_annotate_pair(request: gr.Request, annotator: str, item_id: int, pair: list,
                          order: list, choice: str, comment: str = "") -> int:
        """Store a vote on a pair from /next_pair; returns the stored judgment's id.

        Args:
            annotator: a registered annotator (with a login: yourself)
            item_id: the item of the pair (from /next_pair)
            pair: the pair's candidates, [i, j] (from /next_pair)
            order: the shown order (from /next_pair), so that A and B mean what was shown
            choice: A, B, tie or both bad
            comment: optional free text
        """
        who = identify(annotator, request)
        return ann.vote_pair(who, int(item_id), [int(k) for k in pair], choice,
                             order=[int(k) for k in order], comment=comment or "")

    documented_api(api_next_pair, api_name="next_pair")
    documented_api(api_annotate_pair, api_name="annotate_pair")
