"""Export the store's human judgments in the training layouts of the public judges.

Each export is a self-contained folder: images copied into ``OUT/images/`` by content
hash, every path relative to ``OUT``, and ``OUT/manifest.json`` (counts, annotator kinds,
the command). ``docs/learning.md`` shows a record of each layout and how to train on it.

- ``editreward``: ``OUT/train.json``, TIGER-Lab EditReward's pairwise JSON list
  (``path_src``, ``path1`` = the preferred edit, ``path2``, ``prompt``, scores where given);
  a ranking gives one record per ordered pair, ties and both-bad votes none (counted).
- ``sft``: ``OUT/train.jsonl`` (``messages`` + ``images``) and ``OUT/dataset_info.json``,
  what LLaMA-Factory and ms-swift read for a LoRA fine-tune of a Qwen-VL judge: our own
  judging prompt (:mod:`spatialreward.vlm.prompts`), answered with the SpatialReward output
  built from the vote, which :func:`spatialreward.protocol.parse_judgment` reads back.

Only ``human`` annotators are exported unless asked: simulated votes never pass as people.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shlex
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from storage.images import image_sha256
from storage.store import HumanJudgment, Store

from .errors import InputError, StoreError
from .judgment import Judgment, Region
from .learning_targets import (
    PREFERRED_SCORE,
    REJECTED_SCORE,
    pq_scores,
    preference_pairs,
    rank_scores,
    region_reasoning,
    sc_answer,
    sc_scores,
    verdict,
)
from .protocol import render_pq
from .vlm.prompts import IMAGE_MARKER, Call, Prompts, load_prompts

FORMATS = ("editreward", "sft")
ANNOTATOR_KINDS = ("human", "simulated")
IMAGES_DIR = "images"
EDITREWARD_FILE = "train.json"
SFT_FILE = "train.jsonl"
DATASET_INFO_FILE = "dataset_info.json"
MANIFEST_FILE = "manifest.json"
SFT_DATASET_NAME = "spatialreward_votes"

@dataclass(frozen=True)
class Vote:
    """One current human judgment with its item, ready to export."""

    item_uid: str
    instruction: str
    source: str  # image sha256
    candidates: tuple[str, ...]  # image sha256, by candidate index
    models: tuple[str | None, ...]  # generator names from the item's metadata, if known
    human: HumanJudgment
    model_regions: Mapping[int, tuple[Region, ...]]  # candidate -> a model's regions

    def model(self, candidate: int) -> str:
        """The generator of a candidate, when the item's metadata names it."""
        name = self.models[candidate] if candidate < len(self.models) else None
        return str(name) if name else f"candidate_{candidate}"


# -- reading the store -----------------------------------------------------------------


def annotator_kind(human: HumanJudgment) -> str:
    """The kind of the annotator behind a judgment; ``human`` for a store whose
    annotators have no kind yet (older schema)."""
    return str(getattr(human, "annotator_kind", None) or "human")


def _model_regions(store: Store, item_id: int) -> dict[int, tuple[Region, ...]]:
    """Candidate -> the regions of its latest usable model judgment (any backend)."""
    out: dict[int, tuple[Region, ...]] = {}
    for row in store.model_judgments(item_id):
        j = row["judgment"]
        if j.get("status") in ("ok", "low_coverage") and j.get("sc") is not None:
            out[int(row["candidate"])] = tuple(Region.from_dict(r) for r in j.get("regions", []))
    return out


def iter_votes(store: Store, kinds: Sequence[str], counts: dict[str, int]) -> Iterator[Vote]:
    """Every current human judgment by annotators of ``kinds``, items oldest first;
    ``counts`` gets ``judgments``, ``skipped_other_kinds`` and per-kind tallies."""
    by_item: dict[int, list[HumanJudgment]] = {}
    for h in store.human_judgments():
        kind = annotator_kind(h)
        if kind not in kinds:
            counts["skipped_other_kinds"] += 1
            continue
        counts[f"judgments_{kind}"] = counts.get(f"judgments_{kind}", 0) + 1
        counts["judgments"] += 1
        by_item.setdefault(h.item_id, []).append(h)
    for item_id in sorted(by_item):
        item = store.item(item_id)
        models = tuple((item.get("metadata") or {}).get("models") or ())
        regions = _model_regions(store, item_id)
        counts["items"] += 1
        for h in by_item[item_id]:
            yield Vote(item_uid=str(item["uid"]), instruction=item["instruction"],
                       source=item["source_sha256"], candidates=tuple(item["candidates"]),
                       models=models, human=h, model_regions=regions)


class _Images:
    """Names store images ``images/<sha256>.<ext>`` (relative to the export folder) as the
    records ask for them; :meth:`copy` writes them once the records are known."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.names: dict[str, str] = {}  # sha256 -> path relative to the export folder

    def __call__(self, sha: str) -> str:
        if sha not in self.names:
            fmt = str(self.store.image_info(sha)["format"]).lower()
            self.names[sha] = f"{IMAGES_DIR}/{sha}.{fmt}"
        return self.names[sha]

    def copy(self, out: Path) -> None:
        """Copy every named image into ``out`` (content-addressed: a file there is kept)."""
        for sha, rel in self.names.items():
            target = out / rel
            if target.is_file():
                continue
            data = self.store.image_bytes(sha)
            if image_sha256(data) != sha:
                raise StoreError(f"image {sha} does not match its hash; the store's image "
                                 "files are damaged (check with `db integrity`)")
            _write_atomic(target, data)


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)  # readers never see half a file
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# -- the two layouts -------------------------------------------------------------------


def _editreward_scores(human: Mapping[str, float] | None) -> dict[str, float | None]:
    """A candidate's human scores (0..10) on EditReward's scales: dim1 (instruction
    following) and dim2 (visual quality) 1..4, overall their sum 2..8 (from the human
    ``overall`` when one of the two is missing); None where the vote gave nothing."""
    human = human or {}

    def to4(v: Any) -> float | None:
        return None if v is None else round(1 + 0.3 * float(v), 2)

    dim1, dim2 = to4(human.get("instruction")), to4(human.get("quality"))
    overall = (dim1 + dim2 if dim1 is not None and dim2 is not None
               else None if human.get("overall") is None
               else round(2 + 0.6 * float(human["overall"]), 2))
    return {"dim1": dim1, "dim2": dim2, "overall": overall}


def editreward_records(vote: Vote, image: _Images, counts: dict[str, int]
                       ) -> list[dict[str, Any]]:
    """The EditReward pairwise records of one vote (path1 is always the preferred edit)."""
    h = vote.human
    if h.both_bad:
        counts["both_bad"] += 1
        return []
    pairs, tied = preference_pairs(h.ranking or ())
    counts["tied_pairs"] += tied
    if not pairs:
        counts["ties"] += 1
    records = []
    for better, worse in pairs:
        record: dict[str, Any] = {
            "prompt": vote.instruction, "choice_dist": None, "confidence": None,
            "path_src": image(vote.source), "path1": image(vote.candidates[better]),
            "path2": image(vote.candidates[worse]),
            "model1": vote.model(better), "model2": vote.model(worse)}
        for slot, cand in (("model1", better), ("model2", worse)):
            for dim, value in _editreward_scores((h.scores or {}).get(cand)).items():
                record[f"{slot}_{dim}_score"] = value
        record.update({"tie_case": False, "item": vote.item_uid,
                       "candidates": [better, worse], "annotator_kind": annotator_kind(h)})
        records.append(record)
    counts["pairs"] += len(records)
    return records


def _user_turn(call: Call, instruction: str) -> str:
    """The prompt as one string with an ``<image>`` marker per image (LLaMA-Factory and
    ms-swift both read that marker); images go first unless the template places them,
    exactly as :meth:`Call.messages` shows them to the model at judging time."""
    text = call.text(instruction)
    return text if IMAGE_MARKER in text else IMAGE_MARKER * len(call.images) + text


def _chat(call: Call, instruction: str, answer: str, images: dict[str, str]
          ) -> dict[str, Any]:
    messages = [{"role": "system", "content": call.system}] if call.system else []
    messages += [{"role": "user", "content": _user_turn(call, instruction)},
                 {"role": "assistant", "content": answer}]
    return {"messages": messages, "images": [images[role] for role in call.images]}


def sft_records(vote: Vote, prompts: Prompts, image: _Images, counts: dict[str, int],
                require_regions: bool = False) -> list[dict[str, Any]]:
    """The SC (and, where a quality score was given, PQ) chats of one vote: one per
    ranked candidate that the vote gives a score to. ``require_regions`` leaves out the
    SC chats of candidates with neither drawn nor model regions: their empty
    ``edit_region`` would read as "nothing changed" to the judge being trained."""
    h = vote.human
    ranking = h.ranking or ()
    implied = rank_scores(ranking, h.both_bad)
    ranked = [k for g in ranking for k in g]
    scored = sorted(set(ranked) | {int(k) for k in (h.scores or {})})
    records = []
    for cand in scored:
        given = (h.scores or {}).get(cand)
        sc = sc_scores(given, implied.get(cand))
        pq = pq_scores(given)
        if sc is None and pq is None:
            counts["sft_skipped_no_score"] += 1
            continue
        images = {"source": image(vote.source), "edited": image(vote.candidates[cand])}
        meta = {"item": vote.item_uid, "candidate": cand, "annotator_kind": annotator_kind(h)}
        regions, origin = _regions_for(vote, cand)
        if sc is not None and origin == "none" and require_regions and prompts.regions:
            counts["sft_skipped_no_regions"] += 1
            sc = None
        if sc is not None:
            counts[f"regions_{origin}"] += 1
            text = " ".join(t for t in (region_reasoning(regions, origin == "human"),
                                        "<|global|> " + verdict(h, cand)) if t)
            answer = sc_answer(regions if prompts.regions else (), text, sc, prompts.regions)
            records.append({**_chat(prompts.sc, vote.instruction, answer, images),
                            "call": "sc", **meta})
            counts["sc_records"] += 1
        if pq is not None and prompts.pq is not None:
            given_q = float((given or {})["quality"])
            answer = render_pq(Judgment(status="ok", pq=pq, pq_reasoning=(
                f"The annotator rated the image quality {given_q:g}/10.")))
            records.append({**_chat(prompts.pq, vote.instruction, answer, images),
                            "call": "pq", **meta})
            counts["pq_records"] += 1
    return records


def _regions_for(vote: Vote, candidate: int) -> tuple[tuple[Region, ...], str]:
    """The regions the annotator drew (numbered 0, 1, ...), else a stored model
    judgment's, else none; and which of the three."""
    drawn = tuple(Region(id=k, label=str(r.get("label", "")),
                         bbox_2d=tuple(int(v) for v in r["bbox_2d"]))  # type: ignore[arg-type]
                  for k, r in enumerate(b for b in vote.human.regions or ()
                                        if int(b.get("candidate", 0)) == candidate))
    if drawn:
        return drawn, "human"
    if candidate in vote.model_regions:
        return vote.model_regions[candidate], "model"
    return (), "none"


# -- the export ------------------------------------------------------------------------


_COUNT_KEYS = {
    "editreward": ("items", "judgments", "skipped_other_kinds", "pairs", "tied_pairs",
                   "ties", "both_bad", "images"),
    "sft": ("items", "judgments", "skipped_other_kinds", "sc_records", "pq_records",
            "sft_skipped_no_score", "sft_skipped_no_regions", "regions_human",
            "regions_model", "regions_none", "images"),
}


def _check(store: Store, out: Path, fmt: str, kinds: Sequence[str]) -> tuple[str, ...]:
    if fmt not in FORMATS:
        raise InputError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")
    wanted = tuple(dict.fromkeys(kinds))
    bad = [k for k in wanted if k not in ANNOTATOR_KINDS]
    if not wanted or bad:
        raise InputError(f"annotator kinds must be some of {', '.join(ANNOTATOR_KINDS)}, "
                         f"got {list(kinds)!r}")
    if out.exists() and not out.is_dir():
        raise InputError(f"{out} is a file; give a folder to export into")
    data_dir = getattr(store, "data_dir", None)
    if data_dir is not None and out.resolve() == Path(data_dir).resolve():
        raise InputError(f"{out} is the store's own data folder; export into a new folder")
    return wanted


def export_training(store: Store, out_dir: str | os.PathLike[str], fmt: str = "editreward",
                    kinds: Sequence[str] = ("human",), *, prompts: str = "spatialreward",
                    require_regions: bool = False) -> dict[str, int]:
    """Write the store's current human judgments (by annotators of ``kinds``) under
    ``out_dir`` in layout ``fmt`` (``editreward`` or ``sft``; module docstring) with the
    images and ``manifest.json``; returns the counts. ``prompts``: the judging protocol
    whose prompt the SFT user turn carries (a built-in name or a template path);
    ``require_regions``: SFT only, see :func:`sft_records`.

    Refuses (:class:`InputError`, nothing written) when no record would come out, saying
    why, so an empty training file never reaches a GPU job."""
    out = Path(out_dir).expanduser()
    wanted = _check(store, out, fmt, kinds)
    protocol = load_prompts(prompts) if fmt == "sft" else None
    counts: dict[str, int] = dict.fromkeys(_COUNT_KEYS[fmt], 0)
    image = _Images(store)
    records: list[dict[str, Any]] = []
    for vote in iter_votes(store, wanted, counts):
        records += (editreward_records(vote, image, counts) if protocol is None
                    else sft_records(vote, protocol, image, counts, require_regions))
    if not records:
        raise InputError(_nothing_message(fmt, wanted, counts))
    image.copy(out)
    counts["images"] = len(image.names)
    files = _write_layout(out, fmt, records)
    command = shlex.join([
        "python", "-m", "spatialreward", "export-training", str(out), "--format", fmt,
        *(["--db", str(store.path)] if getattr(store, "path", None) else []),
        "--kinds", *wanted, *(["--prompts", prompts] if protocol else []),
        *(["--require-regions"] if require_regions and protocol else [])])
    _write_manifest(out, fmt, wanted, counts, files, prompts if protocol else None, command)
    return {k: counts[k] for k in _COUNT_KEYS[fmt]}


def _nothing_message(fmt: str, kinds: Sequence[str], counts: Mapping[str, int]) -> str:
    who = " or ".join(kinds)
    if not counts["judgments"]:
        other = (f" ({counts['skipped_other_kinds']} by other kinds: pass --kinds to "
                 "include them)" if counts["skipped_other_kinds"] else "")
        return (f"the store holds no current judgments by {who} annotators{other}; vote in "
                "the Annotate tab first")
    if fmt == "editreward":
        return (f"the {counts['judgments']} judgments by {who} annotators state no "
                "preference (all ties or both bad), so there is no pair to export")
    if counts.get("sft_skipped_no_regions"):
        return (f"none of the edits the {counts['judgments']} judgments by {who} annotators "
                "score has regions (drawn, or from a stored model judgment); judge the items "
                "first, or export without --require-regions")
    return (f"the {counts['judgments']} judgments by {who} annotators give no candidate a "
            "score (ties without scores); give scores or a preference")


def _write_layout(out: Path, fmt: str, records: list[dict[str, Any]]) -> list[str]:
    if fmt == "editreward":
        _write_atomic(out / EDITREWARD_FILE,
                      json.dumps(records, ensure_ascii=False, indent=1).encode())
        return [EDITREWARD_FILE]
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    _write_atomic(out / SFT_FILE, lines.encode())
    _write_atomic(out / DATASET_INFO_FILE,
                  json.dumps(dataset_info(), indent=2).encode())
    return [SFT_FILE, DATASET_INFO_FILE]


def dataset_info() -> dict[str, Any]:
    """LLaMA-Factory's ``dataset_info.json`` entry for the SFT file (sharegpt style,
    OpenAI-like ``role``/``content`` messages, images by path relative to the folder)."""
    return {SFT_DATASET_NAME: {
        "file_name": SFT_FILE, "formatting": "sharegpt",
        "columns": {"messages": "messages", "images": "images"},
        "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                 "assistant_tag": "assistant", "system_tag": "system"}}}


def _write_manifest(out: Path, fmt: str, kinds: Sequence[str], counts: Mapping[str, int],
                    files: list[str], prompts: str | None, command: str) -> None:
    manifest = {
        "format": fmt, "files": files, "images_dir": IMAGES_DIR, "kinds": list(kinds),
        "judgments_by_kind": {k: counts.get(f"judgments_{k}", 0) for k in ANNOTATOR_KINDS},
        "counts": {k: counts[k] for k in _COUNT_KEYS[fmt]}, "prompts": prompts,
        "score_mapping": _SCORE_MAPPING[fmt], "command": command,
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    _write_atomic(out / MANIFEST_FILE, json.dumps(manifest, indent=2).encode())


_SCORE_MAPPING = {
    "editreward": "human 0..10 -> dim1 (instruction) and dim2 (quality) = 1 + 0.3*s on "
                  "1..4; overall = dim1 + dim2, else 2 + 0.6*overall; null when not given",
    "sft": f"SC: instruction/preservation (else overall) 0..10 x 2.5; without scores "
           f"best place {PREFERRED_SCORE:g}, worst {REJECTED_SCORE:g}, evenly between; "
           f"both bad {REJECTED_SCORE:g}. PQ only from a human quality score x 2.5",
}


# -- command line ----------------------------------------------------------------------


def add_parser(sub: Any) -> None:
    """Add ``export-training`` to the ``python -m spatialreward`` subcommands."""
    p = sub.add_parser(
        "export-training",
        help="export human judgments for GPU fine-tuning (EditReward pairs or SFT chats)",
        description="Write the store's current human judgments to OUT: 'editreward' "
        "(train.json, EditReward's pairwise JSON) or 'sft' (train.jsonl + dataset_info.json "
        "for LLaMA-Factory / ms-swift LoRA fine-tunes), images in OUT/images. "
        "See docs/learning.md.")
    p.add_argument("out", metavar="OUT", help="folder to write (created if missing)")
    p.add_argument("--format", dest="fmt", required=True, choices=FORMATS,
                   help="training layout")
    p.add_argument("--db", default=None,
                   help="the store (default: $STUDIO_DB, else data/studio.db)")
    p.add_argument("--kinds", nargs="+", default=["human"], choices=ANNOTATOR_KINDS,
                   help="annotator kinds to export (default: human only)")
    p.add_argument("--prompts", default="spatialreward",
                   help="judging protocol of the SFT user turn: a built-in name or a "
                   ".toml template path (default: spatialreward)")
    p.add_argument("--require-regions", action="store_true",
                   help="sft: leave out SC chats of edits without drawn or model-judged "
                   "regions (judge the items first to give them regions)")
    p.set_defaults(func=cmd_export_training)


def cmd_export_training(args: Any) -> int:
    """Open the store, export, print the counts (errors go to the CLI's one handler)."""
    from .config import StudioConfig

    path = Path(args.db) if args.db else StudioConfig.from_env().db
    if not path.is_file():
        raise InputError(f"no store at {path}; pass --db PATH of an existing studio.db")
    with Store.open(path) as store:
        counts = export_training(store, args.out, args.fmt, args.kinds,
                                 prompts=args.prompts, require_regions=args.require_regions)
    main = EDITREWARD_FILE if args.fmt == "editreward" else SFT_FILE
    print(f"wrote {Path(args.out) / main}: " + ", ".join(
        f"{v} {k.replace('_', ' ')}" for k, v in counts.items()))
    return 0
