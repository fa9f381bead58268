"""The Annotate tab: blind votes on stored items, the model's verdict shown only after.

Who annotates: with ``--auth`` the logged-in user; otherwise a name typed once and kept
in the browser (``gr.BrowserState``), which must be a registered annotator (a new name
can be registered here, role ``annotator``, no password). Queues, the blind side order,
mapping a vote back to candidates, undo and progress are :mod:`storage.annotate`; this
module only lays them out. Keyboard: 1..N or A..D pick the best of N shown candidates
(only the keys of the candidates on screen: their buttons are the only ones visible), T,
X, N, U (the ``HEAD`` script clicks the buttons by ``elem_id``; keys typed into a text
field are left alone). The vote is blind: neither the model's verdict nor its regions are
shown before it. The RL samples queue (``PAIR_QUEUES``) shows two edits of a sample
group at a time and votes on that pair (:mod:`ui.annotate_pairs`).

API (``gradio_client``):

- ``/annotate`` (annotator, item_id, choice, scores=None, regions=None, comment="",
  seconds_spent=None) -> the stored judgment id. ``choice``: ``A``/``B``/... (or
  ``1``/``2``), ``tie``, ``both bad`` or a ranking ``B > A = C``, in the shown labels of
  ``/next_item``'s order; ``scores`` ``{"A": {"overall": 7}}``; ``regions``
  ``[{"candidate": "A", "bbox_2d": [x1, y1, x2, y2]}]`` (0..1000). With a login the
  logged-in user votes; another annotator name is refused.
- ``/undo`` (annotator) -> the id of the retraction of the annotator's last vote.
- ``/next_item`` (annotator, queue="all", after=None) -> ``{item_id, instruction,
  n_candidates, order, labels, queue, judged, total}``; ``item_id`` is None when the
  annotator has judged every item of the queue. ``order[k]`` is the candidate shown as
  ``labels[k]``.
"""

# No ``from __future__ import annotations`` here: gr.api reads the API functions' return
# annotations at runtime to describe the endpoints.

import json
import logging
import time
from typing import Any

import gradio as gr

from spatialreward.errors import InputError
from spatialreward.service import Services

from . import annotate_pairs as pairs
from .annotate_api import register_pair_api
from .errors import redact_paths, user_errors, username
from .text import plain

log = logging.getLogger(__name__)

LABELS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
VOTE_KEYS = "abcd"
"""Candidates with a vote button (and keys 1..4 / A..D); an item with more is ranked."""
KEYS = {**{str(k + 1): f"vote-{c}" for k, c in enumerate(VOTE_KEYS)},
        **{c: f"vote-{c}" for c in VOTE_KEYS},
        "t": "vote-tie", "x": "vote-bad", "n": "next-item", "u": "undo-vote"}
HEAD = """<script>
(() => {
  const keys = KEYS;
  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey || event.repeat) return;
    const target = event.target;
    if (target && (target.isContentEditable
        || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName))) return;
    const id = keys[event.key.toLowerCase()];
    const el = id && document.getElementById(id);
    const button = el && (el.tagName === "BUTTON" ? el : el.querySelector("button"));
    // Only a button on screen: the Annotate tab is open and the button applies.
    if (!button || button.disabled || button.getClientRects().length === 0) return;
    event.preventDefault();
    button.click();
  });
})();
</script>""".replace("KEYS", json.dumps(KEYS))


def shortcuts(n: int = 2) -> str:
    """The key hint for an item with ``n`` candidates: only keys that work on it.

    >>> shortcuts(3).split(" · ")[:3]
    ['**Keys:** `1`/`A` A is best', '`2`/`B` B is best', '`3`/`C` C is best']
    """
    if n > len(VOTE_KEYS):
        picks = [f"type a ranking of {', '.join(LABELS[:n])}"]
    else:
        better = "is better" if n == 2 else "is best"
        picks = [f"`{k + 1}`/`{LABELS[k]}` {LABELS[k]} {better}" for k in range(n)]
    tie, bad = ("tie", "both bad") if n == 2 else ("all tied", "all bad")
    return ("**Keys:** " + " · ".join([*picks, f"`T` {tie}", f"`X` {bad}", "`N` next item",
                                       "`U` undo my last vote"]))


SHORTCUTS = shortcuts(2)
HIDDEN_VERDICT = "*The model's verdict stays hidden until you vote.*"
STORAGE_KEY = "spatialreward-annotator"
# The saved name is not a secret; a fixed key only lets it survive an app restart.
STORAGE_SECRET = "spatialreward-annotator-name"


def build_annotate_tab(services: Services) -> None:
    auth = services.config.auth
    ann = services.annotation
    SCORE_DIMENSIONS = ann.SCORE_DIMENSIONS  # noqa: N806

    def identify(name: str | None, request: gr.Request | None) -> str:
        return ann.identify(name, username(request))

    saved_name = gr.BrowserState("", storage_key=STORAGE_KEY, secret=STORAGE_SECRET)
    session = gr.State({})  # item_id, order, shown_at, vote
    with gr.Row():
        name = gr.Textbox(label="Annotator" + (" (logged in)" if auth else ""),
                          placeholder="your name", interactive=not auth, scale=2,
                          elem_id="annotator-name")
        start = gr.Button("Start", scale=1, visible=not auth, elem_id="annotator-start")
        register = gr.Button("Register this name", scale=1, visible=False,
                             elem_id="register-annotator")
        queue = gr.Dropdown([(label, key) for key, label in ann.QUEUES.items()], value="all",
                            label="Queue", scale=2, elem_id="annotate-queue")
    who = gr.Markdown(elem_id="annotator-status")
    progress = gr.Markdown(elem_id="annotate-progress")
    instruction = gr.Markdown(elem_id="annotate-instruction")
    with gr.Row():
        source = gr.Image(label="Source", interactive=False, scale=1, height=360,
                          elem_id="annotate-source")
        candidates = gr.Gallery(label="Candidates (shuffled; which model made which is hidden)",
                                columns=2, height="auto", object_fit="contain", scale=2,
                                interactive=False, elem_id="annotate-candidates")
    with gr.Row():
        picks = [gr.Button(pick_label(k, 2), variant="primary", visible=k < 2,
                           elem_id=f"vote-{c}") for k, c in enumerate(VOTE_KEYS)]
        vote_tie = gr.Button("Tie (T)", elem_id="vote-tie")
        vote_bad = gr.Button("Both bad (X)", variant="stop", elem_id="vote-bad")
    with gr.Row():
        ranking = gr.Textbox(label="Ranking, best first ('=' for a tie)",
                             placeholder="B > A = C", visible=False, scale=3,
                             elem_id="annotate-ranking")
        vote_rank = gr.Button("Submit ranking", variant="primary", visible=False, scale=1,
                              elem_id="vote-rank")
    with gr.Accordion("Scores, regions and a comment (optional)", open=False):
        scores = gr.Dataframe(headers=["candidate", *SCORE_DIMENSIONS],
                              datatype=["str"] * (1 + len(SCORE_DIMENSIONS)), type="array",
                              static_columns=[0], label="Scores 0..10 (blank: not scored)",
                              elem_id="annotate-scores")
        regions = gr.Textbox(label="Regions you see: one box per line, 'A: x1,y1,x2,y2 "
                                   "label' (0..1000; the model's boxes are shown after "
                                   "your vote)", lines=3, elem_id="annotate-regions")
        comment = gr.Textbox(label="Comment", lines=2, elem_id="annotate-comment")
    verdict = gr.Markdown(HIDDEN_VERDICT, elem_id="model-verdict")
    with gr.Row():
        next_btn = gr.Button("Next item (N)", elem_id="next-item")
        undo_btn = gr.Button("Undo my last vote (U)", elem_id="undo-vote")
    status = gr.Markdown(elem_id="annotate-status")
    keys = gr.Markdown(SHORTCUTS, elem_id="annotate-keys")

    item_outputs = [session, instruction, source, candidates, *picks, vote_tie, vote_bad,
                    ranking, vote_rank, scores, regions, comment, verdict, progress, status,
                    keys]
    identity_outputs = [name, register, who]

    def blank_view(text: str, done: str, note: str) -> tuple[Any, ...]:
        """``item_outputs`` with no item on screen: ``text`` says why."""
        return ({}, text, None, [], *vote_buttons(2), gr.update(visible=False, value=""),
                gr.update(visible=False), [], "", "", HIDDEN_VERDICT, done, note,
                shortcuts(2))

    def item_view(annotator: str | None, queue_name: str, item_id: int | None,
                  note: str = "") -> tuple[Any, ...]:
        """Everything ``item_outputs`` shows for one item (or for none)."""
        if annotator is None or item_id is None:
            text = ("*Type your name and press Start.*" if annotator is None
                    else f"**Nothing to judge here.** {ann.empty_reason(annotator, queue_name)}")
            done = "" if annotator is None else str(ann.progress(annotator, queue_name))
            return blank_view(text, done, note)
        shown = ann.shown_item(annotator, item_id)
        return shown_view(shown, f"**Item {item_id}** · {plain(shown['instruction'])}",
                          str(ann.progress(annotator, queue_name)), note)

    def pair_view(annotator: str, queue_name: str, shown: dict[str, Any] | None,
                  note: str = "") -> tuple[Any, ...]:
        """``item_outputs`` for a pair of an RL sample group (``shown_pair``), or none."""
        if shown is None:
            reason = pairs.empty_reason(ann, annotator, queue_name)
            return blank_view(f"**Nothing to judge here.** {reason}",
                              pairs.progress_text(ann, annotator, queue_name), note)
        return shown_view(shown, pairs.heading(shown),
                          pairs.progress_text(ann, annotator, queue_name, shown["votes"]),
                          note, {"pair": shown["pair"], "group_size": shown["group_size"]})

    def shown_view(shown: dict[str, Any], head: str, done: str, note: str,
                   extra: dict[str, Any] | None = None) -> tuple[Any, ...]:
        """``item_outputs`` for what ``shown_item``/``shown_pair`` returned; ``extra``
        goes into the session state (a pair's ``pair`` and ``group_size``)."""
        item_id, n, labels = shown["item_id"], shown["n_candidates"], shown["labels"]
        # Blind: the regions box starts empty; the model's boxes come with its verdict.
        state = {"item_id": item_id, "order": shown["order"], "shown_at": time.monotonic(),
                 "vote": None, **(extra or {})}
        pair = n == 2
        return (state, head, ann.image(shown["source"]),
                gr.update(value=[(ann.image(sha), label)
                                 for sha, label in zip(shown["candidates"], labels, strict=True)],
                          columns=min(n, 4)),
                *vote_buttons(n), gr.update(visible=not pair, value=""),
                gr.update(visible=not pair),
                [[label] + [""] * len(SCORE_DIMENSIONS) for label in labels], "", "",
                HIDDEN_VERDICT, done, note, shortcuts(n))

    def identity_view(entered: str) -> tuple[Any, ...]:
        """(name, register button, who) for a typed or logged-in name; and the annotator
        when it is registered."""
        entered = (entered or "").strip()
        if not entered:
            return (entered, gr.update(visible=False),
                    "*Type your name and press Start (Enter).*"), None
        if ann.is_registered(entered):
            return (entered, gr.update(visible=False),
                    f"Annotating as **{entered}**."), entered
        return (entered, gr.update(visible=not auth, value=f"Register “{entered}”"),
                f"**{entered}** is not a registered annotator yet. Register this name as a "
                "new annotator?"), None

    def show_next(annotator: str | None, queue_name: str, after: Any = None,
                  note: str = "") -> tuple[Any, ...]:
        """The next item (``after``: the item id on screen) or, in a pair queue, the next
        pair (``after``: the ``(item_id, pair)`` on screen)."""
        if annotator is not None and pairs.is_pair_queue(ann, queue_name):
            return pair_view(annotator, queue_name, pairs.next_shown(ann, annotator, after),
                             note)
        item_id = None if annotator is None else ann.next_item(annotator, queue_name,
                                                               after=after)
        return item_view(annotator, queue_name, item_id, note)

    @user_errors
    def on_load(saved: str | None, queue_name: str, request: gr.Request) -> tuple[Any, ...]:
        entered = (request.username or "") if auth else (saved or "")
        identity, annotator = identity_view(entered)
        return (*identity, *show_next(annotator, queue_name))

    @user_errors
    def on_restore(saved: str | None, entered: str, queue_name: str) -> tuple[Any, ...]:
        # The browser reads the saved name when the tab first renders, after the page's
        # load event; it arrives here as a change. A name already on screen wins.
        if auth or not (saved or "").strip() or (entered or "").strip():
            return tuple(gr.skip() for _ in identity_outputs + item_outputs)
        identity, annotator = identity_view(saved or "")
        return (*identity, *show_next(annotator, queue_name))

    @user_errors
    def on_start(entered: str, queue_name: str) -> tuple[Any, ...]:
        identity, annotator = identity_view(entered)
        return (identity[0], *identity, *show_next(annotator, queue_name))

    @user_errors
    def on_register(entered: str, queue_name: str) -> tuple[Any, ...]:
        if auth:
            raise InputError("with login on, an admin registers annotators "
                             "(python -m spatialreward db add-annotator NAME --password)")
        added = ann.register(entered)
        identity, annotator = identity_view(added)
        return (added, *identity, *show_next(annotator, queue_name))

    @user_errors
    def on_next(entered: str, queue_name: str, state: dict[str, Any],
                request: gr.Request) -> tuple[Any, ...]:
        annotator = identify(entered, request)
        after = (pairs.on_screen(state) if pairs.is_pair_queue(ann, queue_name)
                 else (state or {}).get("item_id"))
        return show_next(annotator, queue_name, after=after)

    @user_errors
    def on_queue(entered: str, queue_name: str, request: gr.Request) -> tuple[Any, ...]:
        annotator = identify(entered, request) if (entered or auth) else None
        return show_next(annotator, queue_name)

    def make_vote(choice: str | None):
        @user_errors
        def on_vote(entered: str, queue_name: str, state: dict[str, Any], ranking_text: str,
                    score_rows: Any, region_text: str, note: str,
                    request: gr.Request) -> tuple[Any, ...]:
            annotator = identify(entered, request)
            if not (state or {}).get("item_id"):
                raise InputError("no item on screen to vote on; press Start or pick a queue")
            order = state["order"]
            boxes = ann.parse_regions((region_text or "").strip(), len(order))
            elapsed = time.monotonic() - state["shown_at"]
            details = {"scores": ann.parse_scores(_rows(score_rows)), "regions": boxes,
                       "comment": note, "seconds_spent": elapsed if elapsed < 86_400 else None}
            picked = choice if choice else ranking_text
            on_pair = state.get("pair") is not None
            jid = (pairs.vote(ann, annotator, state, picked, **details) if on_pair else
                   ann.vote(annotator, state["item_id"], picked, order=order, **details))
            label = ann.vote_label(jid, order)
            edited = " (replacing your earlier vote)" if state.get("vote") else ""
            return ({**state, "vote": jid}, "*Asking the model…*",
                    pairs.progress_line(ann, annotator, queue_name, state),
                    f"Stored your vote **{label}**{edited} (judgment #{jid}, {elapsed:.1f} s). "
                    f"Press **N** for the next {'pair' if on_pair else 'item'} or **U** to "
                    "undo.")
        return on_vote

    @user_errors
    def on_reveal(state: dict[str, Any]) -> str:
        if not (state or {}).get("vote"):
            return HIDDEN_VERDICT
        order = state["order"]
        on_pair = state.get("pair") is not None
        try:
            verdict = (pairs.verdict(ann, state) if on_pair
                       else ann.verdict(state["item_id"], order))
        except Exception as err:  # shown as it is, never turned into a verdict
            log.exception("the model failed on item %s", state["item_id"])
            return ("**The model could not judge this item:** "
                    f"{type(err).__name__}: {plain(redact_paths(str(err)))}")
        text = verdict_text(verdict, ann.vote_label(state["vote"], order))
        if on_pair:
            text += "\n\n" + pairs.unmasked(state)
        boxes = ann.model_regions(state["item_id"], order)
        if boxes:  # shown only now: before the vote they would have steered it
            text += "\n\n**The model's regions** (0..1000):\n\n" + "\n".join(
                f"- {plain(line)}" for line in boxes.splitlines())
        return text

    @user_errors
    def on_undo(entered: str, queue_name: str, state: dict[str, Any],
                request: gr.Request) -> tuple[Any, ...]:
        annotator = identify(entered, request)
        undone = ann.undo(annotator)
        state = dict(state or {})
        verdict_now: Any = gr.update()
        # A pair's vote is undone only when it is the one on screen (an item has many pairs).
        if (undone.judgment_id == state.get("vote") if state.get("pair") is not None
                else state.get("item_id") == undone.item_id):
            state["vote"] = undone.current_id  # the previous vote when an edit was undone
            verdict_now = HIDDEN_VERDICT
        what = (f"your previous vote is back (#{undone.current_id})" if undone.restored
                else f"retraction #{undone.retraction_id}")
        return (state, verdict_now, pairs.progress_line(ann, annotator, queue_name, state),
                f"Undid your vote on item {undone.item_id}: {what}.")

    # The UI's own events stay out of the API (their inputs are screen state); each still
    # has a stable name.
    root = gr.context.Context.root_block  # the Blocks being built: run on_load per page
    if root is None:
        raise RuntimeError("build_annotate_tab must be called inside a gr.Blocks")
    root.load(on_load, [saved_name, queue], identity_outputs + item_outputs,
              api_name="annotate_load", api_visibility="private")
    saved_name.change(on_restore, [saved_name, name, queue], identity_outputs + item_outputs,
                      api_name="annotate_restore", api_visibility="private")
    for trigger in (start.click, name.submit):
        trigger(on_start, [name, queue], [saved_name, *identity_outputs, *item_outputs],
                api_name="annotate_start", api_visibility="private")
    register.click(on_register, [name, queue], [saved_name, *identity_outputs, *item_outputs],
                   api_name="annotate_register", api_visibility="private")
    queue.input(on_queue, [name, queue], item_outputs, api_name="annotate_queue",
                api_visibility="private")
    next_btn.click(on_next, [name, queue, session], item_outputs, api_name="annotate_next",
                   api_visibility="private")
    vote_inputs = [name, queue, session, ranking, scores, regions, comment]
    vote_outputs = [session, verdict, progress, status]
    choices = [*((b, LABELS[k]) for k, b in enumerate(picks)), (vote_tie, "tie"),
               (vote_bad, "both_bad"), (vote_rank, None)]
    for button, choice in choices:
        event = f"annotate_{(button.elem_id or '').replace('-', '_')}"
        button.click(make_vote(choice), vote_inputs, vote_outputs, api_name=event,
                     api_visibility="private"
                     ).success(on_reveal, session, verdict, api_name=f"{event}_reveal",
                               api_visibility="private", concurrency_id="model",
                               concurrency_limit=1)
    undo_btn.click(on_undo, [name, queue, session], [session, verdict, progress, status],
                   api_name="annotate_undo", api_visibility="private")

    # -- the API -------------------------------------------------------------------------

    @user_errors
    def api_annotate(request: gr.Request, annotator: str, item_id: int, choice: str,
                     scores: dict | None = None, regions: list | None = None,
                     comment: str = "", seconds_spent: float | None = None) -> int:
        """Store a vote; choice, scores and regions use the shown labels (A, B, ...) of
        /next_item's order; returns the stored judgment's id.

        Args:
            annotator: a registered annotator (with a login: yourself)
            item_id: the item voted on (from /next_item)
            choice: A, B, ... (or 1, 2, ...), tie, both bad, or a ranking like B > A = C
            scores: optional scores 0..10 by label, e.g. {"A": {"overall": 7}}
            regions: optional boxes, e.g. [{"candidate": "A", "bbox_2d": [10, 20, 300, 400]}]
            comment: optional free text
            seconds_spent: optional time the vote took
        """
        who = identify(annotator, request)
        return ann.vote(who, int(item_id), choice, scores=scores,
                            regions=regions, comment=comment or "",
                            seconds_spent=seconds_spent)

    @user_errors
    def api_undo(request: gr.Request, annotator: str) -> int:
        """Retract the annotator's most recent current vote; returns the retraction id.

        Args:
            annotator: a registered annotator (with a login: yourself)
        """
        return ann.undo(identify(annotator, request)).retraction_id

    @user_errors
    def api_next_item(request: gr.Request, annotator: str, queue: str = "all",
                      after: int | None = None) -> dict:
        """The next item the annotator has not judged in the queue, with its shown order
        (item_id None: nothing left).

        Args:
            annotator: a registered annotator (with a login: yourself)
            queue: all, disagreements, needs_votes, gold or flagged
            after: the item on screen: search behind it (skip it without voting)
        """
        who = identify(annotator, request)
        item_id = ann.next_item(who, queue, after=after)
        done = ann.progress(who, queue)
        shown: dict[str, Any] = {"item_id": None, "instruction": None, "n_candidates": 0,
                                 "order": [], "labels": []}
        if item_id is not None:
            shown = {k: v for k, v in ann.shown_item(who, item_id).items()
                     if k not in ("source", "candidates")}
        return {**shown, "queue": queue, "judged": done.judged, "total": done.total}

    documented_api(api_annotate, api_name="annotate")
    documented_api(api_undo, api_name="undo")
    documented_api(api_next_item, api_name="next_item")
    register_pair_api(ann, identify, documented_api)


def documented_api(fn: Any, api_name: str, **options: Any) -> Any:
    """``gr.api(fn, ...)`` whose inputs are labelled ``name: description`` from the
    docstring's ``Args:`` (the API page says "the input provided in the <label>
    component"; gr.api alone labels them "1st", "2nd", ...)."""
    from gradio.utils import get_function_description, get_function_params

    dependency = gr.api(fn, api_name=api_name, **options)
    root = gr.context.Context.root_block
    _, described, _ = get_function_description(fn)
    block_fn = root.fns[dependency["id"]] if root is not None else None
    names = [param[0] for param in get_function_params(fn)]  # the inputs, in order
    for name, component in zip(names, block_fn.inputs if block_fn else [], strict=False):
        if described.get(name) and isinstance(component, gr.components.Component):
            component.label = f"{name}: {described[name]}"
    return dependency


def pick_label(k: int, n: int) -> str:
    """The vote button of shown candidate ``k`` on an item with ``n`` candidates."""
    return f"{LABELS[k]} is {'better' if n == 2 else 'best'} ({k + 1})"


def vote_buttons(n: int) -> tuple[Any, ...]:
    """Updates of the pick buttons (one per shown candidate, none past
    :data:`VOTE_KEYS`: such an item is ranked), then of the tie and bad buttons."""
    picks = [gr.update(visible=k < n <= len(VOTE_KEYS), value=pick_label(k, n))
             for k in range(len(VOTE_KEYS))]
    return (*picks, gr.update(value="Tie (T)" if n == 2 else "All tied (T)"),
            gr.update(value="Both bad (X)" if n == 2 else "All bad (X)"))


def _rows(value: Any) -> list[list[Any]]:
    """Table rows from a Dataframe value (a list of rows, or a pandas frame)."""
    if value is None:
        return []
    if hasattr(value, "values") and hasattr(value, "columns"):
        return value.values.tolist()
    if isinstance(value, dict):  # {"headers": [...], "data": [...]}
        return list(value.get("data") or [])
    return [list(r) for r in value]


def verdict_text(verdict: dict[str, Any], mine: str) -> str:
    """The model's verdict beside the annotator's vote, in the shown labels."""
    scores = " · ".join(f"{label} {'–' if v is None else f'{v:.2f}'}"
                        for label, v in verdict["overall"].items())
    head = f"**Model verdict** ({verdict['backend']} {verdict['version']}): "
    pick = verdict["pick"]
    if pick is None:
        errors = "; ".join(f"{k}: {plain(v)}" for k, v in verdict["errors"].items())
        return head + f"no complete judgment ({errors or 'a candidate has no score'})."
    says = "a tie" if pick == "tie" else f"**{pick}** is better"
    top = mine.split(" > ")[0]  # a ranking's best group
    same = top == pick or (pick == "tie" and "=" in top)
    agree = "you agree" if same else "you disagree"
    text = head + f"{says}. Overall: {scores}.\n\nYou voted **{mine}**: {agree}."
    low = verdict.get("low_coverage") or {}
    if low:
        text += ("\n\n⚠ **Low coverage** (" + ", ".join(low) + "): the model could not read "
                 f"all of this request ({plain(next(iter(low.values())))}); its verdict "
                 "measures only pixel changes here.")
    return text
