"""Agreement between the model and people, and among people; the disagreement queue.

Every human judgment becomes one nominal label: the preferred candidate's index, ``tie``
(no single best) or ``both_bad``. An item's human majority is the label with the most
current votes when it is unique. The model's label is the candidate with the highest
``overall`` among its judgments of the item's candidates (the latest judgment of each
candidate by the chosen backend).

- model vs human: accuracy of the model's label against the human majority, over items
  whose majority picks a candidate;
- inter-annotator: Cohen's kappa (scikit-learn) for two annotators, Krippendorff's alpha
  (the ``krippendorff`` package, nominal) for more;
- the human ceiling: how often one person's label matches the majority of the others on
  the same item (leave-one-out), the most a model can hope to agree with "the humans";
- per annotator: judgments, agreement with the others' majority, accuracy on gold items
  (items with a ground-truth ranking).

Annotators have a kind (``human`` or ``simulated``, :mod:`storage.simulated`). The figures
count people only unless asked (``kinds``), and say how many votes of the other kinds
they left out. Items of more than ``MAX_FULL_RANKING`` candidates (RL sample groups,
voted a pair at a time) disagree pairwise (:func:`storage.samples.pair_disagreements`).
"""

from __future__ import annotations

import heapq
import json
import operator
from collections import Counter, defaultdict
from collections.abc import Mapping
from typing import Any

from .samples import pair_disagreements
from .store import Store
from .validation import MAX_FULL_RANKING, check_kinds, is_partial

HUMANS = ("human",)
"""The default filter of the figures shown to users: people's votes only."""


def majority(labels: Mapping[str, int]) -> str | None:
    """The label with the most votes, or None when the top is shared (or no votes).

    >>> majority({"0": 2, "1": 1}), majority({"0": 1, "1": 1}), majority({})
    ('0', None, None)
    """
    best, best_n, shared = None, 0, False
    for label, n in labels.items():
        if n > best_n:
            best, best_n, shared = label, n, False
        elif n == best_n:
            shared = True
    return None if shared else best


def _label(preferred: int | None, both_bad: int) -> str:
    return "both_bad" if both_bad else ("tie" if preferred is None else str(preferred))


def human_votes(store: Store, kinds: Any = HUMANS) -> dict[int, dict[str, int]]:
    """Current votes per item (label -> count) of annotators of ``kinds`` (default:
    people; None or ``"all"``: every kind), counted in SQL over ``human_current`` (one
    scan of a covering index)."""
    votes: dict[int, dict[str, int]] = {}
    for item_id, preferred, both_bad, n in store.vote_counts(kinds):
        labels = votes.setdefault(item_id, {})
        label = _label(preferred, both_bad)
        labels[label] = labels.get(label, 0) + n
    return votes


def default_backend(store: Store) -> str | None:
    """The backend with the most stored judgments."""
    return next(iter(store.backend_counts()), None)


def model_scores(store: Store, backend: str, sizes: Mapping[int, int] | None = None
                 ) -> dict[int, dict[int, float]]:
    """item -> candidate -> overall, the latest judgment of each candidate by ``backend``
    (only items whose every candidate is judged). ``sizes``: item -> number of
    candidates, when the caller already read it."""
    scores = store.overall_scores(backend)
    if sizes is None:
        sizes = store.candidate_counts()
    return {i: s for i, s in scores.items() if len(s) == sizes.get(i)}


def model_label(scores: dict[int, float]) -> str:
    """The candidate the model scores highest, or ``tie``."""
    best = max(scores.values())
    top = [k for k, v in scores.items() if v >= best - 1e-9]
    return str(top[0]) if len(top) == 1 else "tie"


def disagreement_queue(store: Store, backend: str | None = None, min_judgments: int = 2,
                       limit: int | None = 100, kinds: Any = HUMANS) -> dict[str, Any]:
    """Items where the model's pick and the human majority differ, the most confident
    model mistakes (largest margin between the model's pick and the humans' pick) first;
    and items with fewer than ``min_judgments`` current judgments, fewest first. Votes
    are those of annotators of ``kinds`` (default: people). An item of more than
    ``MAX_FULL_RANKING`` candidates (an RL group) disagrees on a pair: the model prefers
    one edit of a voted pair, the majority the other; its row names the ``pair``."""
    backend = backend or default_backend(store)
    votes = human_votes(store, kinds)
    sizes = store.candidate_counts()
    scores = model_scores(store, backend, sizes) if backend else {}
    found: list[tuple[Any, ...]] = []  # (-margin, item, model's tops, human pick, n, pair)
    for row in pair_disagreements(store, backend, kinds, scores, sizes) if backend else []:
        if (n := sum(votes.get(row["item_id"], {}).values())) >= min_judgments:
            found.append((-row["margin"], row["item_id"], [row["model_pick"]],
                          row["human_pick"], n, row["pair"]))
    for item_id, s in scores.items():
        if sizes.get(item_id, 0) > MAX_FULL_RANKING:
            continue  # pairwise, above
        labels = votes.get(item_id)
        if labels is None or (n := sum(labels.values())) < min_judgments:
            continue
        human = majority(labels)
        if human is None or human == "tie" or human == "both_bad":
            continue
        h = int(human)
        best = max(s.values())
        tops = [k for k, v in s.items() if v >= best - 1e-9]
        if tops != [h]:
            found.append((s[h] - best, item_id, tops, h, n, None))
    # Only the first ``limit`` rows are needed in order: a heap, not a full sort.
    key = operator.itemgetter(0, 1)  # margin, item: a pair (or None) is never compared
    first = heapq.nsmallest(limit, found, key=key) if limit else sorted(found, key=key)
    queue = [{"item_id": item_id, "model_pick": str(tops[0]) if len(tops) == 1 else "tie",
              "human_pick": str(h), "margin": -neg, "votes": votes[item_id], "judgments": n,
              **({} if pair is None else {"pair": list(pair)})}
             for neg, item_id, tops, h, n, pair in first]
    totals = {i: sum(labels.values()) for i, labels in votes.items()}
    few = sorted(({"item_id": i, "judgments": totals.get(i, 0)}
                  for i in sizes if totals.get(i, 0) < min_judgments),
                 key=lambda r: (r["judgments"], r["item_id"]))
    return {"backend": backend, "disagreements": queue, "total_disagreements": len(found),
            "needs_judgments": few[:limit] if limit else few,
            "total_needing_judgments": len(few)}


def _gold_label(truth_ranking: list[Any]) -> str:
    """The nominal label of a truth ranking's best (``tie`` when shared).

    >>> _gold_label([2, [0, 1]]), _gold_label([[0, 1]])
    ('2', 'tie')
    """
    first = truth_ranking[0]
    if isinstance(first, list):
        return str(first[0]) if len(first) == 1 else "tie"
    return str(first)


def agreement(store: Store, backend: str | None = None, kinds: Any = HUMANS
              ) -> dict[str, Any]:
    """The agreement report (see the module docstring) over the votes of annotators of
    ``kinds`` (default: people; None or ``"all"``: every kind); ``None`` where there is
    too little data to compute a figure. ``kinds`` and ``left_out`` (kind -> current
    votes not counted) say what it covers."""
    import krippendorff
    import numpy as np
    from sklearn.metrics import cohen_kappa_score

    # label of each (annotator, item); an annotator has at most one current judgment of
    # an item unless they judged it twice without editing: the latest one counts.
    wanted = check_kinds(kinds)
    labels: dict[str, dict[int, str]] = defaultdict(dict)
    left_out: Counter[str] = Counter()
    sizes = store.candidate_counts()
    pair_votes = 0  # votes on a pair of an RL group: not an item-level label
    for r in store.current_votes():
        if wanted is not None and r["annotator_kind"] not in wanted:
            left_out[r["annotator_kind"]] += 1
            continue
        if sizes.get(r["item_id"], 0) > MAX_FULL_RANKING and _is_partial(r["ranking"],
                                                                          sizes[r["item_id"]]):
            pair_votes += 1
            continue
        labels[r["annotator"]][r["item_id"]] = _label(r["preferred"], r["both_bad"])
    gold = {i: _gold_label(t) for i, t in store.truth_rankings().items()}
    by_item: dict[int, dict[str, str]] = defaultdict(dict)
    for name, its in labels.items():
        for item_id, lab in its.items():
            by_item[item_id][name] = lab

    # Model vs human majority.
    backend = backend or default_backend(store)
    model = model_scores(store, backend, sizes) if backend else {}
    hits = []
    for item_id, who in by_item.items():
        maj = majority(Counter(who.values()))
        if maj is not None and maj not in ("tie", "both_bad") and item_id in model:
            hits.append(model_label(model[item_id]) == maj)
    model_vs_human = {"backend": backend, "items": len(hits),
                      "accuracy": float(np.mean(hits)) if hits else None}

    # Leave-one-out: each label against the majority of the others on that item.
    loo: dict[str, list[bool]] = defaultdict(list)
    for who in by_item.values():
        for name, lab in who.items():
            others = Counter(v for n, v in who.items() if n != name)
            maj = majority(others)
            if maj is not None:
                loo[name].append(lab == maj)
    all_loo = [x for v in loo.values() for x in v]
    ceiling = {"judgments": len(all_loo),
               "accuracy": float(np.mean(all_loo)) if all_loo else None}

    # Inter-annotator agreement.
    names = sorted(labels)
    inter: dict[str, Any] = {"annotators": len(names), "method": None, "value": None,
                             "items": 0}
    if len(names) == 2:
        a, b = names
        shared = sorted(set(labels[a]) & set(labels[b]))
        inter.update(method="cohen_kappa", items=len(shared))
        if shared:
            la = [labels[a][i] for i in shared]
            lb = [labels[b][i] for i in shared]
            # One label throughout: chance agreement is 1 and kappa is undefined.
            if len(set(la) | set(lb)) > 1:
                inter["value"] = float(cohen_kappa_score(la, lb))
    elif len(names) > 2:
        vocab = sorted({lab for its in labels.values() for lab in its.values()})
        code = {lab: k for k, lab in enumerate(vocab)}
        items = sorted(i for i, who in by_item.items() if len(who) >= 2)
        inter.update(method="krippendorff_alpha", items=len(items))
        if items and len(vocab) > 1:
            data = np.full((len(names), len(items)), np.nan)
            for row, name in enumerate(names):
                for col, item_id in enumerate(items):
                    if item_id in labels[name]:
                        data[row, col] = code[labels[name][item_id]]
            inter["value"] = float(krippendorff.alpha(reliability_data=data,
                                                      level_of_measurement="nominal"))

    per_annotator = []
    for name in names:
        g = [lab == gold[i] for i, lab in labels[name].items() if gold.get(i) is not None]
        per_annotator.append({
            "annotator": name, "judgments": len(labels[name]),
            "agreement_with_others": float(np.mean(loo[name])) if loo[name] else None,
            "gold_items": len(g), "gold_accuracy": float(np.mean(g)) if g else None})
    return {"model_vs_human": model_vs_human, "inter_annotator": inter,
            "human_ceiling": ceiling, "per_annotator": per_annotator,
            "kinds": "all" if wanted is None else list(wanted), "left_out": dict(left_out),
            "pair_votes": pair_votes}


def _is_partial(ranking: str | None, n: int) -> bool:
    """True for a stored ranking (JSON text) that leaves candidates out: a pair vote."""
    return ranking is not None and is_partial(json.loads(ranking), n)
