"""The metrics of the public benchmarks, computed the way each benchmark's paper does.

Every function reads the per-item entries of a results file (``ItemResult.to_dict()``:
``scores``, ``ranking`` in the JSON form, ``category``, ``dimension``, ``correct``,
``failed`` and the format's ``info``), so a saved run can be re-scored and compared.
Conventions shared with :mod:`.metrics`: a failed score is wrong everywhere; a model tie
is wrong unless the benchmark calibrates a tie threshold (TIGER-Lab's with-ties accuracy).

- EditScore's EditReward-Bench: a row is right iff score(first) > score(second) on the
  row's dimension; accuracy per task type, then the plain mean over task types (macro),
  per dimension; plus the four-group table (object / appearance / scene / advanced).
- TIGER-Lab's EditReward-Bench: per comparison, human label h in {1, 0, -1} and model
  margin m = s1 - s2. Accuracy with ties = max over thresholds eps in {0} U {|m|} of
  (concordant + both-tie) / all, where |m| <= eps is a model tie (Deutsch et al. 2023's
  tie calibration, as in TIGER-Lab's eval); without ties = C / (C + D) over pairs people
  did not tie (an exact model tie is discordant). Group accuracy: every comparison of a
  source item right (at the calibrated eps).
- MER-Bench, two sets of figures, both named. ``official`` (the headline): the rules of
  the SpatialReward repository's ``calculate_accuracy``: candidates sorted by score with a
  stable sort, so tied scores stay in ground-truth order; exact order right unless any two
  scores tie; Kendall's tau-a and Spearman's rho (1 - 6 sum d^2 / (n (n^2 - 1))) of that
  predicted order against the true one; top-1 = the true best sorted first; NDCG = sum over
  predicted positions i of (n - i) / log2(r_i + 2), r_i the true rank of the candidate at
  i, over the ideal sum. ``standard`` (ours): Kendall's tau-b and Spearman's rho between
  scores and the human order with ties counted against (scipy), NDCG with gain
  K-1-position (sklearn), top-1 only for a unique best score. Means per K, per category,
  overall.
- MMRB2 (edit): A and B scored pointwise, the higher overall wins, ties wrong; accuracy
  per prompt source. Pointwise scores do not depend on the order the pair is shown in;
  :func:`position_consistency` measures that for pairwise judges.
- GEdit-Bench: VIEScore-style, semantics = min(SC pair) / 2.5, quality = min(PQ pair) /
  2.5, overall = sqrt(semantics * quality) (0..10); means per task type, then over task
  types, per language (EN and CN apart, as the official statistics are) on the full set
  and the ``Intersection_exist`` subset; the headline is the English full set.
- Human judgments: the model's unique best vs the human majority pick, beside the
  leave-one-out human ceiling (:func:`storage.agreement.agreement`).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..scoring import SCORE_RANGE

EDITSCORE_GROUPS = {
    "object": ("subject-add", "subject-remove", "subject-replace"),
    "appearance": ("color_alter", "material_alter", "style_change", "tone_transfer"),
    "scene": ("background_change", "extract"),
    "advanced": ("ps_human", "text_change", "motion_change", "compose"),
}
"""EditScore's grouping of its 13 task types (its statistics script's table)."""

Item = Mapping[str, Any]


def _mean(values: Iterable[float]) -> float | None:
    xs = list(values)
    return float(sum(xs) / len(xs)) if xs else None


def groups_of(ranking: Sequence[Any]) -> list[tuple[int, ...]]:
    """Tie groups of a ranking in the JSON form.

    >>> groups_of([2, [0, 1]])
    [(2,), (0, 1)]
    """
    return [tuple(g) if isinstance(g, list) else (g,) for g in ranking]


def _evaluated(items: Iterable[Item]) -> list[Item]:
    return [it for it in items if it.get("ranking") is not None and len(it["scores"]) >= 2]


# --- EditScore's EditReward-Bench ---------------------------------------------------------


def editscore_metrics(items: Sequence[Item]) -> dict[str, Any]:
    """Accuracy per (dimension, task type), the macro average per dimension, the group
    table, and the headline: the macro average on ``overall`` (else the mean of the
    dimensions' macro averages)."""
    hits: dict[str, dict[str, list[bool]]] = defaultdict(lambda: defaultdict(list))
    for it in _evaluated(items):
        task = (it.get("info") or {}).get("task_type") or it.get("category") or "(missing)"
        hits[it["dimension"]][task].append(it["correct"] is True)
    table = {dim: {task: {"n": len(h), "accuracy": sum(h) / len(h)}
                   for task, h in sorted(tasks.items())} for dim, tasks in sorted(hits.items())}
    macro = {dim: _mean(r["accuracy"] for r in rows.values()) for dim, rows in table.items()}
    # A task type missing from a dimension (possible with --limit): the official statistics
    # (SpatialReward's calculate_accuracy) count that empty cell as 0.0 in the average; we
    # average the cells that have items. Both are reported when they differ.
    all_tasks = sorted({t for rows in table.values() for t in rows})
    empty = [[dim, t] for dim, rows in table.items() for t in all_tasks if t not in rows]
    official = {dim: sum(rows[t]["accuracy"] if t in rows else 0.0 for t in all_tasks)
                / len(all_tasks) for dim, rows in table.items()}
    groups = {}
    for name, tasks in EDITSCORE_GROUPS.items():
        row = {dim: _mean(rows[t]["accuracy"] for t in tasks if t in rows)
               for dim, rows in table.items()}
        if any(v is not None for v in row.values()):
            groups[name] = row
    head = macro.get("overall")
    if head is None:
        head = _mean(v for v in macro.values() if v is not None)
    out = {"headline": {"name": "macro accuracy over task types (overall dimension)",
                        "value": head},
           "macro_accuracy": macro, "by_task_type": table, "groups": groups,
           "n": sum(r["n"] for rows in table.values() for r in rows.values())}
    if empty:
        head_official = official.get("overall")
        if head_official is None:
            head_official = _mean(official.values())
        out.update(empty_cells=empty, macro_accuracy_official=official,
                   headline_official={"name": "macro accuracy with each empty task x "
                                              "dimension cell counted as 0.0 (the official "
                                              "statistics)", "value": head_official})
    return out


# --- TIGER-Lab's EditReward-Bench: accuracy with and without ties --------------------------


@dataclass(frozen=True)
class TieCounts:
    """Pairs by (human, model) verdict: concordant, discordant, human tie only, model tie
    only, both tie."""

    C: int = 0
    D: int = 0
    Th: int = 0
    Tm: int = 0
    Thm: int = 0

    @property
    def total(self) -> int:
        return self.C + self.D + self.Th + self.Tm + self.Thm

    @property
    def accuracy(self) -> float | None:
        return (self.C + self.Thm) / self.total if self.total else None


def tie_counts(h: Sequence[int], m: Sequence[float | None], epsilon: float) -> TieCounts:
    """Count pairs: ``h`` human labels (1 first better, -1 second, 0 tie), ``m`` model
    margins (None: a failed judgment, always wrong); ``|m| <= epsilon`` is a model tie.

    >>> tie_counts([1, -1, 0, 1, 0], [2.0, 1.0, 0.1, 0.0, None], 0.5)
    TieCounts(C=1, D=1, Th=1, Tm=1, Thm=1)
    """
    c = d = th = tm = thm = 0
    for hi, mi in zip(h, m, strict=True):
        if mi is None:
            if hi == 0:
                th += 1
            else:
                d += 1
        elif hi == 0 and abs(mi) <= epsilon:
            thm += 1
        elif hi == 0:
            th += 1
        elif abs(mi) <= epsilon:
            tm += 1
        elif hi * mi > 0:
            c += 1
        else:
            d += 1
    return TieCounts(c, d, th, tm, thm)


def accuracy_with_ties(h: Sequence[int], m: Sequence[float | None]
                       ) -> tuple[float | None, float]:
    """(best accuracy, its threshold) over eps in {0} U {|m|}; the smallest eps wins a tie.

    >>> accuracy_with_ties([1, 0, -1, 0], [3.0, 0.2, -1.0, 0.5])
    (1.0, 0.5)
    """
    if not h:
        return None, 0.0
    best, best_eps = -1.0, 0.0
    for eps in [0.0, *sorted({abs(x) for x in m if x is not None})]:
        acc = tie_counts(h, m, eps).accuracy or 0.0
        if acc > best:
            best, best_eps = acc, eps
    return best, best_eps


def accuracy_without_ties(h: Sequence[int], m: Sequence[float | None]) -> float | None:
    """C / (C + D) over the pairs people did not tie; a model tie is discordant.

    >>> accuracy_without_ties([1, -1, 0, 1], [2.0, 1.0, 0.3, 0.0])
    0.3333333333333333
    """
    t = tie_counts(h, m, -1.0)
    return t.C / (t.C + t.D + t.Tm) if t.C + t.D + t.Tm else None


def item_pairs(item: Item) -> list[tuple[int, int, int, float | None]]:
    """(i, j, human label, model margin s_i - s_j) for every candidate pair i < j."""
    rank = {c: g for g, group in enumerate(groups_of(item["ranking"])) for c in group}
    scores = item["scores"]
    out = []
    for i in range(len(scores)):
        for j in range(i + 1, len(scores)):
            h = 0 if rank[i] == rank[j] else (1 if rank[i] < rank[j] else -1)
            margin = None if scores[i] is None or scores[j] is None else scores[i] - scores[j]
            out.append((i, j, h, margin))
    return out


def _pair_right(h: int, m: float | None, eps: float) -> bool:
    if m is None:
        return False
    if h == 0:
        return abs(m) <= eps
    return abs(m) > eps and h * m > 0


def _tiger_block(items: Sequence[Item]) -> dict[str, Any]:
    pairs = [(it, p) for it in items for p in item_pairs(it)]
    h = [p[2] for _, p in pairs]
    m = [p[3] for _, p in pairs]
    with_ties, eps = accuracy_with_ties(h, m)
    groups: dict[str, list[bool]] = defaultdict(list)
    for it, (_, _, hi, mi) in pairs:
        group = (it.get("info") or {}).get("group") or it["id"]
        groups[group].append(_pair_right(hi, mi, eps))
    counts = tie_counts(h, m, eps)
    return {"pairs": len(pairs), "human_ties": sum(x == 0 for x in h),
            "accuracy_with_ties": with_ties, "tie_threshold": eps,
            "accuracy_without_ties": accuracy_without_ties(h, m),
            "group_accuracy": _mean(all(g) for g in groups.values()), "groups": len(groups),
            "counts": vars(counts)}


def tiger_metrics(items: Sequence[Item]) -> dict[str, Any]:
    """Per subset (2pair / 3pair / 4pair) and over all comparisons; the headline is the
    overall accuracy with ties (threshold calibrated on all comparisons)."""
    evaluated = _evaluated(items)
    subsets: dict[str, list[Item]] = defaultdict(list)
    for it in evaluated:
        subsets[(it.get("info") or {}).get("subset") or it.get("category") or "all"].append(it)
    overall = _tiger_block(evaluated)
    return {"headline": {"name": "accuracy with ties (calibrated threshold)",
                         "value": overall["accuracy_with_ties"]},
            "overall": overall,
            "by_subset": {name: _tiger_block(its) for name, its in sorted(subsets.items())}}


# --- MER-Bench: ranking agreement ---------------------------------------------------------


def relevance(ranking: Sequence[Any], k: int) -> list[int]:
    """Gain of each candidate: number of tie groups below it (best of K strict: K-1).

    >>> relevance([0, 1, 2], 3), relevance([1, [0, 2]], 3)
    ([2, 1, 0], [0, 1, 0])
    """
    groups = groups_of(ranking)
    rel = [0] * k
    for g, group in enumerate(groups):
        for c in group:
            rel[c] = len(groups) - 1 - g
    return rel


def ranking_scores(scores: Sequence[float | None], ranking: Sequence[Any]) -> dict[str, Any]:
    """Exact order, top-1, Kendall's tau-b, Spearman's rho and NDCG of one item.

    A failed score ranks below every other (and fails exact and top-1); a constant
    judge's undefined correlation counts 0.

    >>> r = ranking_scores([3.0, 2.0, 1.0], [0, 1, 2])
    >>> r["exact"], r["top1"], r["kendall_tau"], r["spearman_rho"], r["ndcg"]
    (True, True, 1.0, 1.0, 1.0)
    """
    from scipy.stats import kendalltau, spearmanr
    from sklearn.metrics import ndcg_score

    from .metrics import ranking_exact

    k = len(scores)
    rel = relevance(ranking, k)
    valid = [s for s in scores if s is not None]
    floor = (min(valid) - 1.0) if valid else 0.0
    filled = [floor if s is None else float(s) for s in scores]
    failed = len(valid) != k
    top = max(filled)
    best_group = groups_of(ranking)[0]
    top1 = (not failed and sum(1 for s in filled if s == top) == 1
            and filled.index(top) in best_group)

    def corr(value: float) -> float:
        return 0.0 if value is None or math.isnan(value) else float(value)

    return {
        "exact": bool(ranking_exact(list(scores), tuple(groups_of(ranking)))),
        "top1": bool(top1),
        "kendall_tau": corr(kendalltau(filled, rel).statistic) if len(set(filled)) > 1 else 0.0,
        "spearman_rho": corr(spearmanr(filled, rel).statistic) if len(set(filled)) > 1 else 0.0,
        "ndcg": float(ndcg_score(np.asarray([rel]), np.asarray([filled]))),
    }


def official_ranking_scores(scores: Sequence[float | None], ranking: Sequence[Any]
                            ) -> dict[str, Any]:
    """The official MER-Bench figures of one item (see the module docstring).

    Ties in the scores keep the ground-truth order, which can only help; a failed score
    sorts last and fails exact order. NDCG credits predicted position i with gain n - i,
    discounted by the true rank of the candidate placed there:

    >>> r = official_ranking_scores([1.0, 3.0, 2.0], [0, 1, 2])  # predicted 1, 2, 0
    >>> round(r["ndcg"], 4), r["top1"], r["kendall_tau"], r["spearman_rho"]
    (0.8175, False, -0.3333333333333333, -0.5)
    >>> official_ranking_scores([2.0, 2.0], [0, 1])["top1"]  # a tie in true order
    True
    """
    truth = [c for group in groups_of(ranking) for c in group]  # best first
    n = len(truth)
    position = {c: i for i, c in enumerate(truth)}
    key = {c: -math.inf for c in truth}
    key.update({c: float(v) for c in truth if (v := scores[c]) is not None})
    predicted = sorted(truth, key=lambda c: key[c], reverse=True)  # stable: ties in order
    rank = [position[c] for c in predicted]  # true rank of each predicted position
    valid = [s for s in scores if s is not None]
    exact = rank == list(range(n)) and len(valid) == n and len(set(valid)) == n
    pairs = n * (n - 1) / 2
    tau = (sum(1 if rank[i] < rank[j] else -1 for i in range(n) for j in range(i + 1, n))
           / pairs) if n > 1 else 0.0
    rho = 1 - 6 * sum((r - i) ** 2 for i, r in enumerate(rank)) / (n * (n * n - 1)) \
        if n > 1 else 0.0
    dcg = sum((n - i) / math.log2(r + 2) for i, r in enumerate(rank))
    ideal = sum((n - i) / math.log2(i + 2) for i in range(n))
    return {"exact": bool(exact), "top1": bool(n and rank[0] == 0), "kendall_tau": tau,
            "spearman_rho": rho, "ndcg": dcg / ideal if ideal else 0.0}


_RANK_KEYS = ("exact", "top1", "kendall_tau", "spearman_rho", "ndcg")


def _rank_block(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"n": len(rows)}
    for key in _RANK_KEYS:
        out[key] = _mean(float(r[key]) for r in rows)
    return out


def _merbench_tables(items: Sequence[Item], score: Any) -> dict[str, Any]:
    rows = [(it, score(it["scores"], it["ranking"])) for it in items]
    by_k: dict[int, list[dict[str, Any]]] = defaultdict(list)
    by_cat: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for it, r in rows:
        by_k[len(it["scores"])].append(r)
        by_cat[it.get("category") or "(missing)"].append(r)
    return {"overall": _rank_block([r for _, r in rows]),
            "by_k": {str(k): _rank_block(v) for k, v in sorted(by_k.items())},
            "by_category": {c: _rank_block(v) for c, v in sorted(by_cat.items())}}


def merbench_metrics(items: Sequence[Item]) -> dict[str, Any]:
    """The official figures (:func:`official_ranking_scores`) overall, per K (2/3/4
    candidates) and per category, as the headline block; ours (:func:`ranking_scores`)
    beside them under ``standard``. The headline is exact-order accuracy."""
    rows = _evaluated(items)
    official = _merbench_tables(rows, official_ranking_scores)
    return {"headline": {"name": "exact ranking accuracy (official rules)",
                         "value": official["overall"]["exact"]},
            "rules": "official: SpatialReward's calculate_accuracy (stable sort, ties in "
                     "true order, its NDCG); standard: tau-b / rho with ties against, "
                     "sklearn NDCG",
            **official, "standard": _merbench_tables(rows, ranking_scores)}


# --- MMRB2 and position swaps -------------------------------------------------------------


def mmrb2_metrics(items: Sequence[Item]) -> dict[str, Any]:
    """Accuracy of the pointwise comparison (ties wrong), overall and per prompt source."""
    rows = _evaluated(items)
    by_source: dict[str, list[bool]] = defaultdict(list)
    for it in rows:
        by_source[it.get("category") or "(missing)"].append(it["correct"] is True)
    acc = _mean(it["correct"] is True for it in rows)
    return {"headline": {"name": "accuracy (pointwise overall, ties wrong)", "value": acc},
            "accuracy": acc, "n": len(rows),
            "by_prompt_source": {s: {"n": len(v), "accuracy": sum(v) / len(v)}
                                 for s, v in sorted(by_source.items())},
            "position_consistency": None,
            "position_note": "pointwise backends score each image on its own, so the order "
                             "a pair is shown in cannot change their verdict"}


_FLIP = {"A": "B", "B": "A"}


def position_consistency(forward: Sequence[str | None], reverse: Sequence[str | None],
                         chosen: Sequence[str] | None = None) -> dict[str, Any]:
    """How often a pairwise judge picks the same image when the pair is shown swapped.

    ``forward[i]``: its pick ("A", "B", "tie" or None for no verdict) for pair i as
    given; ``reverse[i]``: its pick with the two images swapped, in the swapped labels.
    With ``chosen`` also MMRB2's accuracy, which counts both orders as judgments.

    >>> r = position_consistency(["A", "A", "B", None], ["B", "A", "A", "B"], "AAAB")
    >>> r["consistency"], r["accuracy_both_orders"]
    (0.5, 0.375)
    """
    n = len(forward)
    agree = sum(1 for f, r in zip(forward, reverse, strict=True)
                if f is not None and r is not None and _FLIP.get(r, r) == f)
    out: dict[str, Any] = {"n": n, "consistency": agree / n if n else None}
    if chosen is not None:
        right = sum((f == c) + (_FLIP.get(r or "", r) == c) for f, r, c in
                    zip(forward, reverse, chosen, strict=True))
        out["accuracy_both_orders"] = right / (2 * n) if n else None
    return out


# --- GEdit-Bench ----------------------------------------------------------------------------


def gedit_scores(sc: Sequence[float] | None, pq: Sequence[float] | None
                 ) -> tuple[float, float, float] | None:
    """(semantics, quality, overall) on 0..10 from raw 0..25 sub-scores, VIEScore-style.

    >>> gedit_scores((20.0, 10.0), (25.0, 15.0))
    (4.0, 6.0, 4.898979485566356)
    """
    if sc is None or pq is None:
        return None
    unit = SCORE_RANGE / 10
    semantics, quality = min(sc) / unit, min(pq) / unit
    return semantics, quality, math.sqrt(semantics * quality)


def _gedit_block(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    by_task: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for r in rows:
        by_task[r["task_type"]].append(r)
    tasks: dict[str, dict[str, Any]] = {
        t: {"n": len(v), **{k: _mean(x[k] for x in v) for k in ("semantics", "quality", "overall")}}
        for t, v in sorted(by_task.items())}
    out: dict[str, Any] = {"n": len(rows), "by_task_type": tasks}
    for k in ("semantics", "quality", "overall"):
        out[k] = _mean(t[k] for t in tasks.values())  # mean over task types
        out[f"{k}_all_items"] = _mean(r[k] for r in rows)
    return out


def gedit_metrics(items: Sequence[Item]) -> dict[str, Any]:
    """Per language, all prompts and the intersection subset; the headline is the overall
    score (mean over task types) over every judged output."""
    rows, failed = [], 0
    for it in items:
        info = it.get("info") or {}
        if info.get("overall") is None:
            failed += 1
            continue
        rows.append({**info, "task_type": info.get("task_type") or it.get("category")})
    by_lang: dict[str, Any] = {}
    for lang in sorted({r.get("language") or "(missing)" for r in rows}):
        mine = [r for r in rows if (r.get("language") or "(missing)") == lang]
        by_lang[lang] = {"fullset": _gedit_block(mine),
                         "intersection": _gedit_block([r for r in mine if r.get("intersection")])}
    overall = _gedit_block(rows)
    # The official table is per language (its statistics script filters on one), full set
    # and intersection side by side; the headline is the English full set when there is
    # one, and the all-language mean stays as ``overall`` (no official figure is that).
    table = {lang: {subset: {k: block[subset][k] for k in ("n", "semantics", "quality",
                                                           "overall")}
                    for subset in ("fullset", "intersection")}
             for lang, block in by_lang.items()}
    lead = "en" if "en" in by_lang else next(iter(by_lang), None)
    value = None if lead is None else by_lang[lead]["fullset"]["overall"]
    return {"headline": {"name": f"GEdit overall, {(lead or 'no').upper()} full set (0..10, "
                                 "mean over task types)", "value": value},
            "official_table": table, "overall": overall, "by_language": by_lang,
            "overall_note": "overall mixes every language; the official figures are per "
                            "language (official_table)", "failed": failed}


# --- human judgments ------------------------------------------------------------------------


def model_pick(scores: Sequence[float | None]) -> int | None:
    """The candidate with the unique best score; None for a tie or a failed score.

    >>> model_pick([1.0, 3.0, 2.0]), model_pick([3.0, 3.0]), model_pick([1.0, None])
    (1, None, None)
    """
    if any(s is None for s in scores) or not scores:
        return None
    best = max(scores)  # type: ignore[type-var]
    tops = [k for k, s in enumerate(scores) if s == best]
    return tops[0] if len(tops) == 1 else None


def human_metrics(items: Sequence[Item], agreement: Mapping[str, Any] | None = None
                  ) -> dict[str, Any]:
    """Accuracy of the model's pick against the human majority, per category, beside the
    inter-annotator ceiling and agreement from ``agreement`` (the store's report)."""
    hits: dict[str, list[bool]] = defaultdict(list)
    all_hits = []
    for it in items:
        pick = (it.get("info") or {}).get("human_pick")
        if pick is None:
            continue
        hit = model_pick(it["scores"]) == pick
        all_hits.append(hit)
        hits[it.get("category") or "(missing)"].append(hit)
    acc = _mean(all_hits)
    agreement = agreement or {}
    return {"headline": {"name": "agreement with the human majority", "value": acc},
            "accuracy": acc, "n": len(all_hits),
            "by_category": {c: {"n": len(v), "accuracy": sum(v) / len(v)}
                            for c, v in sorted(hits.items())},
            "human_ceiling": agreement.get("human_ceiling"),
            "inter_annotator": agreement.get("inter_annotator")}


# --- confusion for ties (reports) ----------------------------------------------------------

VERDICTS = ("first", "tie", "second")


def tie_confusion(items: Sequence[Item], epsilon: float = 0.0) -> dict[str, dict[str, int]]:
    """Counts of (human verdict -> model verdict) over two-candidate items; a model
    margin within ``epsilon`` is a tie, a failed judgment is ``failed``."""
    table = {h: dict.fromkeys((*VERDICTS, "failed"), 0) for h in VERDICTS}
    for it in _evaluated(items):
        if len(it["scores"]) != 2:
            continue
        (_, _, h, m), = item_pairs(it)
        human = VERDICTS[1 - h]
        model = ("failed" if m is None else "tie" if abs(m) <= epsilon
                 else "first" if m > 0 else "second")
        table[human][model] += 1
    return table


def benchmark_metrics(fmt: str, items: Sequence[Item],
                      agreement: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
    """The published metrics of benchmark ``fmt`` (None for formats without any)."""
    fn = {"editscore": editscore_metrics, "tiger": tiger_metrics,
          "merbench": merbench_metrics, "mmrb2": mmrb2_metrics, "gedit": gedit_metrics}
    if fmt == "store":
        return human_metrics(items, agreement)
    return fn[fmt](items) if fmt in fn else None
