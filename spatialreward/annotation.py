"""The Annotate tab's service: who votes, what they see, their votes, undos and the
model's verdict, bound to the app's store (``Services.annotation``).

Each method is one call of :mod:`storage.annotate` (queues, blind side order, votes,
undo) or of the service layer (the model's verdict judges through
``Services.judge_item``), so the tab imports neither ``storage`` nor a model.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from PIL import Image

from storage import annotate as ann
from storage import samples
from storage.store import SCORE_DIMENSIONS

if TYPE_CHECKING:
    from .service import Services


class Annotation:
    """Annotation calls for one app (``Services.annotation``)."""

    QUEUES: Mapping[str, str] = ann.QUEUES
    """Queue key -> label (all items, disagreements, flagged, ...)."""
    SCORE_DIMENSIONS: Sequence[str] = SCORE_DIMENSIONS
    parse_regions = staticmethod(ann.parse_regions)
    parse_scores = staticmethod(ann.parse_scores)

    def __init__(self, services: Services) -> None:
        self._services = services

    @property
    def _store(self) -> Any:
        return self._services.store

    def identify(self, name: str | None, logged_in: str | None) -> str:
        """The registered annotator a request acts for (the logged-in one with ``--auth``;
        asking for anyone else is refused)."""
        return ann.resolve_annotator(self._store, name, logged_in, self._services.config.auth)

    def is_registered(self, name: str) -> bool:
        return ann.is_registered(self._store, name)

    def register(self, name: str) -> str:
        """Register a new annotator (no password: only without ``--auth``)."""
        return ann.register(self._store, name)

    def next_item(self, annotator: str, queue: str = "all", *, after: int | None = None
                  ) -> int | None:
        return ann.next_item(self._store, annotator, queue, after=after)

    def progress(self, annotator: str, queue: str) -> ann.Progress:
        return ann.progress(self._store, annotator, queue)

    def shown_item(self, annotator: str, item_id: int) -> dict[str, Any]:
        """The item as this annotator sees it (shuffled sides, labels, image hashes)."""
        return ann.shown_item(self._store, annotator, item_id)

    def image(self, sha: str) -> Image.Image:
        return Image.open(io.BytesIO(self._store.image_bytes(sha))).convert("RGB")

    def vote(self, annotator: str, item_id: int, choice: str, **details: Any) -> int:
        """Store a vote made on screen (``choice`` in shown labels); returns its id."""
        return ann.annotate(self._store, annotator, item_id, choice, **details)

    def vote_label(self, judgment_id: int, order: Sequence[int]) -> str:
        return ann.vote_label(self._store, judgment_id, order)

    def undo(self, annotator: str) -> ann.Undone:
        """Undo the annotator's latest vote: an edit goes back to the vote before it."""
        return ann.undo_last(self._store, annotator)

    def verdict(self, item_id: int, order: Sequence[int]) -> dict[str, Any]:
        """The model's verdict on the item in shown labels (judged once, then cached)."""
        return ann.model_verdict(self._services.judge_item(item_id), order)

    # -- the RL samples queue: a pair of a group at a time ---------------------------------

    PAIR_QUEUES: Sequence[str] = ("rl_samples",)
    """Queues whose items are voted a pair at a time (use the ``*_pair`` calls)."""

    def next_pair(self, annotator: str, after: tuple[int, Sequence[int]] | None = None
                  ) -> dict[str, Any] | None:
        """The next RL pair for ``annotator`` (least sure reward first): ``{"item_id",
        "pair": [i, j], "gap", "votes"}``, or None; ``after``: the (item, pair) on screen."""
        return samples.next_pair(self._store, annotator, after=after)

    def shown_pair(self, annotator: str, item_id: int, pair: Sequence[int]) -> dict[str, Any]:
        """The pair as shown (``order``, ``labels`` A/B, ``source``, ``candidates``)."""
        return samples.shown_pair(self._store, annotator, item_id, pair)

    def vote_pair(self, annotator: str, item_id: int, pair: Sequence[int], choice: str,
                  **details: Any) -> int:
        """Store a vote on a shown pair (``choice``: A, B, tie, both bad; ``order``,
        ``scores``, ``regions``, ``comment``, ``seconds_spent`` as for :meth:`vote`)."""
        return samples.record_pair_vote(self._store, annotator, item_id, pair, choice,
                                        **details)

    def empty_reason(self, annotator: str, queue: str) -> str:
        """Why the queue has nothing for ``annotator`` now, and what to do about it."""
        return ann.empty_queue_reason(self._store, annotator, queue)

    def model_regions(self, item_id: int, order: Sequence[int]) -> str:
        """The model's stored regions of each shown candidate as text (``A: x1,y1,x2,y2
        label`` lines): shown after the vote only, so the vote stays blind."""
        return ann.format_regions(ann.predicted_regions(self._store, item_id, order))
