"""Fine-tune SpatialReward-Mini from the store's votes: ``train-reward --from-store``.

Starting from a checkpoint (the shipped Mini or an earlier fine-tune), each step mixes:

- pair votes (:mod:`.votes`): a Bradley-Terry loss on the predicted overall score,
  ``softplus(-(overall(better) - overall(worse)))``, the same form as the SynthEdit
  ranking loss (``train.losses``), so a human "A beats B" is read exactly as a
  ground-truth ranking is;
- human scores, where given: regression of the matching 0..10 dimension;
- corrected regions: the proposals a human box covers (IoU >= 0.5) should match the
  instruction, those clear of every box should not (the ``match`` head, as in data.py);
- SynthEdit replay (``replay`` share of the loss): items made by
  ``synth.generate`` on the train split, prepared as data.py does and cached, with the
  normal training losses, so the model keeps what it knew.

A stated share of voted items (split by a stable hash of the item uid) is held out and
never trained on; model-vs-human pair accuracy on it is measured before and after, beside
the human ceiling (how often one annotator agrees with the others' majority). The result
is a new checkpoint folder that ``mini:PATH`` loads at once, with ``finetune.json``
saying what it was made from; the run is recorded in the store where it can hold one.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import sqlite3
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..checkpoints import read_checkpoint
from ..errors import ConfigError, InputError, StudioError
from . import domain
from .data import IGNORE, Arrays
from .features import Tokenizer
from .model import MiniConfig, MiniRewardModel
from .train import INPUTS, cached_arrays, losses, overall_torch, save, tensors
from .votes import (
    KINDS,
    PairVote,
    VoteArrays,
    VoteSet,
    build_examples,
    human_ceiling,
    is_holdout,
    pair_accuracy,
    read_votes,
)

Progress = Callable[[int, int, dict[str, float]], None]
TUNE: dict[str, tuple[str, ...] | None] = {"head": ("head.", "match.", "outside."), "all": None}
"""Which parameters learn (name prefixes; None: all). 'head' is the default because with
few votes it generalises to unseen items far better: on 34 items of votes contradicting
Mini, hold-out agreement after 40 steps was 0.79 tuning the head and 0.50 tuning all
(measured with tests/test_finetune.py's store)."""


MIN_STEPS = 2
"""The warm-up takes at least one of them (OneCycleLR divides by its length)."""


@dataclass(frozen=True)
class FinetuneConfig:
    """One fine-tune of Mini from the store's votes (every field has a CLI flag)."""

    db: str = field(default="data/studio.db", metadata={"help": "the store to read votes from"})
    base: str = field(default="mini", metadata={
        "help": "checkpoint to start from: 'mini' (the shipped one), 'mini:PATH' or a folder "
                "(an earlier fine-tune)"})
    out: str | None = field(default=None, metadata={
        "help": "output folder; None: OUT_ROOT/NAME-vN with N the next free version"})
    out_root: str = field(default="data/reward-models", metadata={
        "help": "where versioned fine-tunes go when out is None"})
    name: str = field(default="mini-votes", metadata={"help": "name of the versioned folder"})
    kinds: tuple[str, ...] = field(default=("human",), metadata={
        "help": "annotator kinds to learn from: human, simulated or both"})
    annotators: tuple[str, ...] = field(default=(), metadata={
        "help": "learn from these annotators only (empty: every annotator of the kinds)"})
    holdout: float = field(default=0.2, metadata={
        "help": "share of voted items held out (by a stable hash of the uid), never trained on"})
    steps: int = field(default=300, metadata={"help": "optimiser steps"})
    batch: int = field(default=32, metadata={"help": "pair votes per step"})
    lr: float = field(default=2e-3, metadata={"help": "peak AdamW learning rate"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay"})
    score_weight: float = field(default=1.0, metadata={"help": "weight of human-score regression"})
    region_weight: float = field(default=0.3, metadata={"help": "weight of corrected regions"})
    replay: float = field(default=0.3, metadata={
        "help": "share of each step's loss (and about that share of its examples) from "
                "SynthEdit replay; 0 = votes only"})
    replay_items: int = field(default=256, metadata={"help": "SynthEdit train items to replay"})
    replay_group: int = field(default=4, metadata={"help": "candidates per replay item"})
    replay_cache: str = field(default="data/reward-models/.replay", metadata={
        "help": "folder where replay items and their prepared arrays are cached"})
    tune: str = field(default="head", metadata={
        "help": "what learns: 'head' (the score head, the region matcher and the outside "
                "summary: how located evidence becomes scores; the image and text encoders "
                "stay as they are) or 'all' (every weight)"})
    seed: int = field(default=0, metadata={"help": "seed for batch order and replay draws"})
    threads: int = field(default=2, metadata={"help": "torch CPU threads"})
    eval_every: int = field(default=25, metadata={"help": "hold-out accuracy every k steps"})
    min_train_pairs: int = field(default=50, metadata={
        "help": "fewest training pair votes to fine-tune on (refused below)"})
    min_holdout_pairs: int = field(default=10, metadata={
        "help": "fewest hold-out pair votes to measure on (refused below)"})

    def __post_init__(self) -> None:
        object.__setattr__(self, "kinds", tuple(self.kinds))
        object.__setattr__(self, "annotators", tuple(self.annotators))
        bad = [k for k in self.kinds if k not in KINDS]
        if bad or not self.kinds:
            raise ConfigError(f"kinds must be some of {', '.join(KINDS)}, got {self.kinds!r}")
        if not 0 < self.holdout < 1:
            raise ConfigError(f"holdout must be a share between 0 and 1, got {self.holdout}")
        if not 0 <= self.replay < 1:
            raise ConfigError(f"replay must be in [0, 1), got {self.replay}")
        if min(self.steps, self.batch, self.eval_every, self.replay_items) < 1 or self.lr <= 0:
            raise ConfigError("steps, batch, eval_every, replay_items and lr must be positive")
        if self.steps < MIN_STEPS:
            raise ConfigError(f"steps must be at least {MIN_STEPS}: the learning rate warms up "
                              "over the first of them")
        if self.tune not in TUNE:
            raise ConfigError(f"tune must be one of {', '.join(TUNE)}, got {self.tune!r}")
        if not 2 <= self.replay_group <= 8:
            raise ConfigError(f"replay_group must be 2..8, got {self.replay_group}")
        if self.min_train_pairs < 1 or self.min_holdout_pairs < 1:
            raise ConfigError("min_train_pairs and min_holdout_pairs must be at least 1")

    def command(self) -> str:
        """The CLI command that runs this fine-tune."""
        parts = ["python", "-m", "spatialreward", "train-reward", "--from-store",
                 "--db", self.db, "--base", self.base, "--kinds", ",".join(self.kinds),
                 *(["--annotators", ",".join(self.annotators)] if self.annotators else []),
                 "--holdout", str(self.holdout), "--steps", str(self.steps),
                 "--batch", str(self.batch), "--lr", str(self.lr),
                 "--replay", str(self.replay), "--tune", self.tune, "--seed", str(self.seed)]
        if self.out is not None:
            parts += ["--out", self.out]
        return shlex.join(parts)


# -- the base checkpoint and the output folder --------------------------------------------


def base_folder(base: str) -> Path:
    """The checkpoint folder ``base`` names ('mini', 'mini:PATH' or a folder)."""
    from ..backends.mini import DEFAULT_CHECKPOINT

    if base == "mini":
        return DEFAULT_CHECKPOINT
    return Path(base.removeprefix("mini:"))


def load_base(base: str) -> tuple[MiniRewardModel, Tokenizer, str, Path]:
    """(model, its tokenizer, weights digest, folder) of a Mini checkpoint."""
    folder = base_folder(base)
    ckpt = read_checkpoint(folder, "model.safetensors", "config.json", what="SpatialReward-Mini",
                           hint="give --base mini or a folder train-reward wrote")

    def make(meta: dict[str, Any]) -> MiniRewardModel:
        model = MiniRewardModel(MiniConfig(**meta["model"]))
        model.load_state_dict(ckpt.state)
        return model

    model = ckpt.build("SpatialReward-Mini", make)
    return model, Tokenizer(ckpt.meta["vocab"]), ckpt.digest, folder


def next_out(root: Path, name: str) -> Path:
    """``root/name-vN`` with N one more than the highest version there (1 when none)."""
    pattern = re.compile(rf"{re.escape(name)}-v(\d+)$")
    versions = [int(m.group(1)) for p in (root.iterdir() if root.is_dir() else [])
                if (m := pattern.match(p.name))]
    return root / f"{name}-v{max(versions, default=0) + 1}"


# -- measuring ------------------------------------------------------------------------------


@torch.no_grad()
def predict(model: MiniRewardModel, batch_inputs: Callable[[np.ndarray], list[torch.Tensor]],
            n: int, chunk: int = 128) -> np.ndarray:
    """(n,) predicted overall (0..10) of every example, in eval mode."""
    was = model.training
    model.eval()
    out = []
    for start in range(0, n, chunk):
        o = model(*batch_inputs(np.arange(start, min(n, start + chunk))))
        out.append(overall_torch(o["sc"], o["pq"]).numpy())
    if was:
        model.train()
        _freeze_norms(model)
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def holdout_accuracy(model: MiniRewardModel, a: VoteArrays, rows: np.ndarray) -> float:
    """Model-vs-human pair accuracy on the (better, worse) ``rows`` (at least one); only
    the candidates they name are judged."""
    need = np.unique(rows)
    pred = np.zeros(len(a), np.float32)
    pred[need] = predict(model, lambda i: a.inputs(need[i]), len(need))
    acc = pair_accuracy(pred, rows)
    assert acc is not None, "no hold-out pairs to measure on"
    return acc


# -- batches --------------------------------------------------------------------------------


def trainable(model: MiniRewardModel, tune: str) -> list[torch.nn.Parameter]:
    """Mark the parameters that learn under ``tune`` (the rest frozen, their batch-norm
    statistics too, so frozen features stay exactly the base model's) and return them."""
    prefixes = TUNE[tune]
    for name, p in model.named_parameters():
        p.requires_grad_(prefixes is None or name.startswith(prefixes))
    return [p for p in model.parameters() if p.requires_grad]


def _freeze_norms(model: MiniRewardModel) -> None:
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d) and not m.weight.requires_grad:
            m.eval()


def vote_losses(out: dict[str, Any], a: VoteArrays, rows: np.ndarray, pairs: np.ndarray
                ) -> dict[str, torch.Tensor]:
    """Bradley-Terry on the voted pairs (``pairs`` index into ``rows``), score regression
    and region matching on the rows that carry them."""
    pred = overall_torch(out["sc"], out["pq"])  # (B,) 0..10
    bt = F.softplus(-(pred[pairs[:, 0]] - pred[pairs[:, 1]])).mean()
    # Predicted SCORE_DIMENSIONS on 0..10: instruction, preservation, quality, overall.
    dims = torch.stack([out["sc"][:, 0] / 2.5, out["sc"][:, 1] / 2.5,
                        out["pq"].mean(1) / 2.5, pred], 1)
    target = torch.from_numpy(a.scores[rows])
    given = ~torch.isnan(target)
    score = (F.mse_loss(dims[given] / 10, target[given] / 10) if given.any()
             else pred.sum() * 0)
    m = torch.from_numpy(a.match[rows])
    known = m != IGNORE
    region = (F.binary_cross_entropy_with_logits(out["match"][known], m[known])
              if known.any() else pred.sum() * 0)
    return {"bt": bt, "score": score, "region": region}


def replay_loss(out: dict[str, Any], batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The SynthEdit training loss with train.py's default weights."""
    p = losses(out, batch)
    return p["regression"] + p["rank"] + 0.3 * (p["facts"] + p["match"] + p["slots"])


def replay_arrays(config: FinetuneConfig, tok: Tokenizer) -> Arrays:
    """SynthEdit train items for replay, generated once and cached with their arrays.

    They are made in a fresh (spawned) process: generating and preparing fork worker
    processes, and a fork of this one, whose OpenCV and torch thread pools have run, can
    deadlock in the child (seen: children stuck on a futex). Later calls read the cache."""
    import multiprocessing

    folder = Path(config.replay_cache) / (f"train-s{config.seed}-n{config.replay_items}"
                                          f"-g{config.replay_group}")
    if not (folder / "pairs.jsonl").is_file() or not list(folder.glob("pairs.mini-*.npz")):
        child = multiprocessing.get_context("spawn").Process(
            target=_make_replay, args=(str(folder), config.replay_items, config.seed,
                                       config.replay_group, config.threads, tok.vocab))
        child.start()
        child.join()
        if child.exitcode != 0:
            raise RuntimeError(f"making the SynthEdit replay set in {folder} failed "
                               f"(exit code {child.exitcode}); see the messages above")
    return cached_arrays(folder / "pairs.jsonl", tok, None)[0]


def _make_replay(folder: str, n: int, seed: int, group: int, workers: int,
                 vocab: list[str]) -> None:
    """(In the spawned process.) Write the replay items and their cached arrays."""
    from ..synth.generate import SynthConfig, generate

    target = Path(folder)
    if not (target / "pairs.jsonl").is_file():
        tmp = target.with_name(target.name + f".tmp{os.getpid()}")
        generate(SynthConfig(out=tmp, n=n, seed=seed, split="train", group_size=group,
                             workers=workers), progress=False)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, target)  # a half-written set is never taken for a whole one
    cached_arrays(target / "pairs.jsonl", Tokenizer(vocab), None)


# -- the store run ---------------------------------------------------------------------------


def _start_run(store: Any, name: str, config: dict[str, Any], out: Path,
               log: Callable[[str], None]) -> int | None:
    """A store run of kind "reward", or None where the store cannot hold one yet."""
    try:
        run_id = int(store.create_run(kind="reward", name=name, config=config, out_dir=str(out)))
        store.update_run(run_id, status="running")
    except (StudioError, sqlite3.IntegrityError) as err:
        log(f"(not recorded as a store run: {err})")
        return None
    return run_id


# -- the fine-tune ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Split:
    """The votes of the kinds asked for, split by item into training and hold-out."""

    votes: VoteSet
    train_items: set[int]
    holdout_items: set[int]
    train: list[PairVote]
    holdout: list[PairVote]

    def counts(self) -> dict[str, int]:
        return {"train_pairs": len(self.train), "holdout_pairs": len(self.holdout),
                "train_items": len(self.train_items), "holdout_items": len(self.holdout_items)}


def split_votes(store: Any, config: FinetuneConfig) -> Split:
    """The store's votes split for ``config``; :class:`InputError` (with the numbers and
    how to get more) when there are too few to train or to measure on."""
    votes = read_votes(store, config.kinds, config.annotators)
    hold = {i for i, uid in votes.uids.items() if is_holdout(uid, config.holdout)}
    train = set(votes.uids) - hold
    split = Split(votes, train, hold, [v for v in votes.pairs if v.item_id in train],
                  [v for v in votes.pairs if v.item_id in hold])
    if len(split.train) < config.min_train_pairs or len(split.holdout) < config.min_holdout_pairs:
        others = len(read_votes(store, set(KINDS) - set(config.kinds)).pairs)
        raise _refuse(config, len(split.train), len(split.holdout), others)
    return split


def count_votes(config: FinetuneConfig) -> dict[str, int]:
    """Pair votes and items on each side of the split, checked as :func:`finetune` checks
    them (a form can refuse before starting a process)."""
    from storage.store import Store

    _check_db(config)
    with Store.open(config.db) as store:
        return split_votes(store, config).counts()


def _check_db(config: FinetuneConfig) -> None:
    if not Path(config.db).is_file():
        raise InputError(f"no store at {config.db}; give --db the studio.db that holds the votes")


def _refuse(config: FinetuneConfig, train: int, hold: int, others: int) -> InputError:
    kinds = " and ".join(config.kinds)
    hint = (f" The store also holds {others} pair votes by other kinds of annotators: "
            "choose them with --kinds human,simulated." if others else "")
    return InputError(
        f"too few votes to fine-tune: {config.db} has {train + hold} pair votes by {kinds} "
        f"annotators ({train} on training items, {hold} on hold-out items, the "
        f"{config.holdout:.0%} of voted items kept for measuring); a fine-tune needs at least "
        f"{config.min_train_pairs} training and {config.min_holdout_pairs} hold-out pair "
        "votes. Vote on more items in the Annotate tab, or, for an experiment, add simulated "
        "votes with `python -m spatialreward db simulate-votes` and pass --kinds simulated."
        + hint)


def finetune(config: FinetuneConfig, progress: Progress | None = None,
             log: Callable[[str], None] = lambda _line: None,
             run_id: int | None = None) -> dict[str, Any]:
    """Fine-tune, write the checkpoint folder, and return what happened (also written to
    ``finetune.json`` there): hold-out accuracy before/after with the human ceiling, the
    training curve, votes used, the split. ``progress(step, total, metrics)`` each step.

    Recorded as a new store run of kind "reward" (config, metrics per step, final hold-out
    figures, status) unless ``run_id`` names one the caller recorded (the Studio's
    launcher): then the per-step metrics are the caller's to log (from ``progress``), and
    only the final figures and status "done" are written here."""
    from storage.store import Store

    t0 = time.perf_counter()
    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads)
    rng = np.random.default_rng(config.seed)
    _check_db(config)
    out = Path(config.out) if config.out else next_out(Path(config.out_root), config.name)
    if (out / "model.safetensors").exists():
        raise InputError(f"{out} already holds a checkpoint; choose another --out")
    model, tok, digest, base_path = load_base(config.base)
    with Store.open(config.db) as store:
        split = split_votes(store, config)
        votes, train_items, hold_items = split.votes, split.train_items, split.holdout_items
        train_pairs, hold_pairs = split.train, split.holdout
        log(f"preparing {len(votes.keys())} voted candidates (pixel evidence on each)")
        examples = build_examples(store, votes, tok)
        prepared = time.perf_counter() - t0
        if config.replay > 0:
            log(f"SynthEdit replay: {config.replay_items} train items (cached in "
                f"{config.replay_cache})")
        replay = replay_arrays(config, tok) if config.replay > 0 else None
        train_rows, hold_rows = examples.rows(train_pairs), examples.rows(hold_pairs)
        before = holdout_accuracy(model, examples, hold_rows)
        ceiling = human_ceiling(hold_pairs)
        used = {"pairs": len(train_pairs), "holdout_pairs": len(hold_pairs),
                "by_kind": VoteSet(pairs=train_pairs).by_kind(), "judgments": votes.judgments,
                "scores": len(votes.scores), "regions": len(votes.regions)}
        config = replace(config, out=str(out))
        own_run = run_id is None
        if own_run:
            run_id = _start_run(store, out.name, {
                "base": str(base_path), "base_digest": digest, "votes": used,
                "holdout_before": before, "human_ceiling": ceiling, **asdict(config)}, out, log)
        log(f"{len(train_pairs)} training / {len(hold_pairs)} hold-out pair votes on "
            f"{len(train_items)} / {len(hold_items)} items; {len(examples)} candidates prepared "
            f"in {prepared:.0f} s; hold-out accuracy before {before:.3f}")
        try:
            trained = _train(model, config, examples, train_rows, train_items, hold_rows,
                             replay, rng, store, run_id if own_run else None, progress)
        except BaseException as err:
            if run_id is not None:
                store.update_run(run_id, status="failed", error=str(err) or type(err).__name__)
            raise
        after = trained["holdout_curve"][-1]["accuracy"]
        seconds = time.perf_counter() - t0
        result = {
            "out": str(out), "base": str(base_path), "base_digest": digest, "votes": used,
            "holdout": {"before": before, "after": after, "ceiling": ceiling,
                        "pairs": len(hold_pairs), "items": len(hold_items)},
            "split": {"train_items": sorted(train_items), "holdout_items": sorted(hold_items)},
            "trained_items": trained["trained_items"], "curve": trained["curve"],
            "holdout_curve": trained["holdout_curve"], "run_id": run_id,
            "seconds": round(seconds, 1), "prepare_seconds": round(prepared, 1),
            "seconds_per_step": round(trained["train_seconds"] / config.steps, 4),
            "config": asdict(config), "command": config.command(),
        }
        out.mkdir(parents=True, exist_ok=True)
        save(model, tok, out, {"finetune": {k: result[k] for k in
                                            ("base", "base_digest", "votes", "holdout")}})
        (out / "finetune.json").write_text(json.dumps(result, indent=1))
        if config.tune == "head" and (base_path / domain.FILENAME).is_file():
            # The image encoder is frozen: the pooled features, and so the base's domain
            # check, are exactly the base model's.
            shutil.copy(base_path / domain.FILENAME, out / domain.FILENAME)
        if run_id is not None:
            store.log_metrics(run_id, config.steps, {
                "holdout_after": after, "holdout_before": before,
                **({"human_ceiling": ceiling["accuracy"]} if ceiling else {})})
            store.update_run(run_id, status="done")
    return result


def _train(model: MiniRewardModel, config: FinetuneConfig, a: VoteArrays,
           train_rows: np.ndarray, train_items: set[int], hold_rows: np.ndarray,
           replay: Arrays | None, rng: np.random.Generator, store: Any, run_id: int | None,
           progress: Progress | None) -> dict[str, Any]:
    """The optimisation loop; returns the curves and the items it trained on."""
    t0 = time.perf_counter()
    params = trainable(model, config.tune)
    model.train()
    _freeze_norms(model)
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    # a tenth of the steps warm up, at least 1.5 of them (a shorter warm-up divides by 0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, config.lr, total_steps=config.steps,
                                                pct_start=min(0.75, max(0.1, 1.5 / config.steps)))
    in_train = np.isin(a.item, sorted(train_items))
    # Training rows that carry a score or a region target (vote-less ones too).
    supervised = np.flatnonzero(in_train & (~np.isnan(a.scores).all(1)
                                            | (a.match != IGNORE).any(1)))
    by_item = ({} if replay is None else
               {int(i): np.flatnonzero(replay.item == i) for i in np.unique(replay.item)})
    replay_ids = np.array(sorted(by_item))
    curve: list[dict[str, float]] = []
    holdout_curve: list[dict[str, float]] = []
    trained: set[int] = set()
    for step in range(1, config.steps + 1):
        pick = rng.choice(len(train_rows), min(config.batch, len(train_rows)), replace=False)
        pairs = train_rows[pick]
        extra = (rng.choice(supervised, min(len(supervised), max(1, config.batch // 2)),
                            replace=False) if len(supervised) else np.zeros(0, np.int64))
        rows = np.unique(np.concatenate([pairs.ravel(), extra]))
        assert in_train[rows].all(), "a hold-out item reached a training batch"
        trained.update(int(i) for i in np.unique(a.item[rows]))
        parts = vote_losses(model(*a.inputs(rows)), a, rows, np.searchsorted(rows, pairs))
        loss = parts["bt"] + config.score_weight * parts["score"] + (
            config.region_weight * parts["region"])
        metrics = {"loss": loss.item(), **{k: v.item() for k, v in parts.items()}}
        if replay is not None:
            share = config.replay / (1 - config.replay)  # replay examples per vote example
            k = min(len(replay_ids), max(1, round(share * len(rows) / config.replay_group)))
            idx = np.concatenate([by_item[int(i)] for i in rng.choice(replay_ids, k,
                                                                      replace=False)])
            batch = tensors(replay, idx)
            r_loss = replay_loss(model(*(batch[n] for n in INPUTS)), batch)
            loss = (1 - config.replay) * loss + config.replay * r_loss
            metrics["replay"] = r_loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        metrics["total"] = loss.item()
        if step % config.eval_every == 0 or step == config.steps:
            acc = holdout_accuracy(model, a, hold_rows)
            metrics["holdout_accuracy"] = acc
            holdout_curve.append({"step": step, "accuracy": acc})
        curve.append({"step": step, **{k: round(v, 5) for k, v in metrics.items()}})
        if run_id is not None:
            store.log_metrics(run_id, step, metrics)
        if progress is not None:
            progress(step, config.steps, metrics)
    model.eval()
    return {"curve": curve, "holdout_curve": holdout_curve, "trained_items": sorted(trained),
            "train_seconds": time.perf_counter() - t0}
