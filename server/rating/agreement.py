"""Model vs human and human vs human agreement from stored ratings (pure: lists in, JSON-ready dicts out).

Definitions (the same everywhere: page, API, CSV export, alert, training export):

- A rating's **MGS** is the mean of the action units its rater could see (0-2; "not visible" left out).
- An item's **human MGS** is the mean of every action-unit value its raters gave on their first showing
  (the definition of ``amgs/datasets.py``, so the training export labels what the loader would). Raters
  who marked the item "not scorable" give no values; an item that at least half of its raters marked not
  scorable is left out of model-vs-human figures and counted as ``n_unscorable``.
- **Human pain** = human MGS >= ``rating.human_pain_cutoff``; **model pain** = the model's own call
  (``label`` pain, i.e. P(pain) at or above its manifest's threshold).
- Model vs human: the model's AU-head MGS (``mgs_au``, 0-2) against the human MGS: Pearson r,
  ICC(A,1) (absolute agreement: a model that scores everything higher is penalised), Bland-Altman
  (model minus human). Pain/no-pain: accuracy, sensitivity, specificity (human = reference), Cohen's kappa.
- Inter-rater: ICC(2,1) of the per-rating MGS over the items every rater of the largest complete
  block scored (two or more raters; raters are added while the block keeps most of its items), and the
  quadratic-weighted kappa per action unit for the two raters who share the most items.
- Intra-rater: ICC(A,1) of first vs second showing of the repeated items, pooled and per rater.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from zoneinfo import ZoneInfo

from amgs.contract import AU_KEYS

from . import stats

MAX_POINTS = 5000
"""Points sent for the scatter and Bland-Altman plots at most (every k-th item); figures use all items."""

AU_NAMES = {
    "ot": "orbital tightening",
    "nb": "nose bulge",
    "cb": "cheek bulge",
    "ep": "ear position",
    "wc": "whisker change",
}


@dataclass
class RatedItem:
    """What the agreement needs of a pool item (copied from the score when it was sampled)."""

    item_id: int
    t: float  # capture time
    model: str = ""  # "name version"
    device_id: str = ""
    cage_id: str = ""
    group_id: str = ""
    p_pain: float | None = None
    is_pain: bool | None = None
    mgs_au: float | None = None
    site: str = ""
    model_sha256: str = ""


@dataclass
class Rating:
    item_id: int
    rater: str
    occasion: int = 1  # 2 = the second showing of a repeated item
    au: dict[str, int | None] = field(default_factory=dict)  # None = not visible
    unscorable: bool = False
    rated_at: float = 0.0

    @cached_property
    def values(self) -> list[int]:
        return [] if self.unscorable else [v for k in AU_KEYS if (v := self.au.get(k)) is not None]

    @cached_property
    def mgs(self) -> float | None:
        v = self.values
        return sum(v) / len(v) if v else None


@dataclass
class Consensus:
    item_id: int
    mgs: float | None
    n_raters: int
    n_unscorable: int

    @property
    def unscorable(self) -> bool:
        return self.n_raters > 0 and self.n_unscorable * 2 >= self.n_raters


def consensus(ratings: Iterable[Rating]) -> dict[int, Consensus]:
    """Human MGS per item from first showings (one per rater: the earliest if a rater rated twice)."""
    first: dict[tuple[int, str], Rating] = {}
    for r in sorted(ratings, key=lambda r: (r.occasion, r.rated_at)):
        first.setdefault((r.item_id, r.rater), r)
    values: dict[int, list[int]] = defaultdict(list)
    raters: dict[int, int] = defaultdict(int)
    unscorable: dict[int, int] = defaultdict(int)
    for (item, _), r in first.items():
        raters[item] += 1
        unscorable[item] += r.unscorable
        values[item] += r.values
    return {
        i: Consensus(i, (sum(values[i]) / len(values[i])) if values[i] else None, raters[i], unscorable[i])
        for i in raters
    }


def human_pain(mgs: float, cutoff: float) -> bool:
    return mgs >= cutoff - 1e-12


def model_vs_human(
    items: Sequence[RatedItem], cons: dict[int, Consensus], cutoff: float, conf: float
) -> dict:
    usable = [(it, cons[it.item_id]) for it in items if it.item_id in cons]
    scorable = [(it, c) for it, c in usable if not c.unscorable and c.mgs is not None]
    with_au = [(it, c) for it, c in scorable if it.mgs_au is not None and math.isfinite(it.mgs_au)]
    human = [c.mgs for _, c in with_au]
    model = [it.mgs_au for it, _ in with_au]
    called = [(it, c) for it, c in scorable if it.is_pain is not None]
    return {
        "n_items": len(usable),
        "n_unscorable": sum(c.unscorable for _, c in usable),
        "n_scored": len(scorable),
        "pearson": stats.pearson(model, human, conf),
        "icc_a1": stats.icc([[m, h] for m, h in zip(model, human, strict=True)], "ICC2", conf),
        "bland_altman": stats.bland_altman(model, human, conf),
        "pain": stats.binary_agreement(
            [bool(it.is_pain) for it, _ in called], [human_pain(c.mgs, cutoff) for _, c in called], conf
        ),
        "points": [[round(h, 4), round(m, 4)] for h, m in zip(human, model, strict=True)][
            :: -(-len(human) // MAX_POINTS) or 1
        ],
        "points_total": len(human),
    }


def _complete_block(per_item: dict[int, dict[str, float]]) -> tuple[list[str], list[int]]:
    """Raters and items of the largest complete block: start with the pair sharing the most items, add
    the rater that keeps the most items while the block keeps at least 3/4 of them."""
    raters = sorted({r for d in per_item.values() for r in d})
    if len(raters) < 2:
        return [], []

    def common(rs: Sequence[str]) -> list[int]:
        return [i for i, d in per_item.items() if all(r in d for r in rs)]

    best: tuple[int, list[str]] = (0, [])
    for i, a in enumerate(raters):
        for b in raters[i + 1 :]:
            n = len(common([a, b]))
            if n > best[0]:
                best = (n, [a, b])
    chosen = best[1]
    if not chosen:
        return [], []
    while True:
        current = len(common(chosen))
        options = [(len(common([*chosen, r])), r) for r in raters if r not in chosen]
        options = [o for o in options if o[0] >= max(2, 0.75 * current)]
        if not options:
            break
        chosen.append(max(options)[1])
    return sorted(chosen), sorted(common(chosen))


def inter_rater(ratings: Sequence[Rating], conf: float) -> dict:
    first: dict[int, dict[str, Rating]] = defaultdict(dict)
    for r in sorted(ratings, key=lambda r: (r.occasion, r.rated_at)):
        if r.mgs is not None:
            first[r.item_id].setdefault(r.rater, r)
    per_item = {i: {k: v.mgs for k, v in d.items()} for i, d in first.items() if len(d) >= 2}
    raters, items = _complete_block(per_item)
    out: dict = {"raters": raters, "icc2": None, "au_kappa": {}, "n_raters": len(raters)}
    if raters:
        out["icc2"] = stats.icc([[per_item[i][r] for r in raters] for i in items], "ICC2", conf)
        a, b = max(
            ((x, y) for k, x in enumerate(raters) for y in raters[k + 1 :]),
            key=lambda p: sum(1 for d in per_item.values() if p[0] in d and p[1] in d),
        )
        shared = [d for d in first.values() if a in d and b in d]
        out["au_kappa"] = {
            k: stats.cohen_kappa(
                [d[a].au.get(k) for d in shared],
                [d[b].au.get(k) for d in shared],
                categories=[0, 1, 2],
                weights="quadratic",
                conf=conf,
            )
            for k in AU_KEYS
        }
        out["au_kappa_raters"] = [a, b]
    else:
        out["icc2"] = stats.icc([], "ICC2", conf)
    return out


def intra_rater(ratings: Sequence[Rating], conf: float) -> dict:
    shows: dict[tuple[str, int], dict[int, float]] = defaultdict(dict)
    for r in ratings:
        if r.mgs is not None:
            shows[(r.rater, r.item_id)].setdefault(r.occasion, r.mgs)
    pairs: dict[str, list[list[float]]] = defaultdict(list)
    for (rater, _), occ in shows.items():
        if 1 in occ and 2 in occ:
            pairs[rater].append([occ[1], occ[2]])
    pooled = [p for ps in pairs.values() for p in ps]
    return {
        "pooled": stats.icc(pooled, "ICC2", conf),
        "per_rater": {r: stats.icc(ps, "ICC2", conf) for r, ps in sorted(pairs.items())},
        "n_pairs": len(pooled),
    }


def agreement(
    items: Sequence[RatedItem], ratings: Sequence[Rating], cutoff: float, conf: float = 0.95
) -> dict:
    """Every figure for one set of items and their ratings."""
    ids = {it.item_id for it in items}
    mine = [r for r in ratings if r.item_id in ids]
    return _agreement(items, mine, cutoff, conf)


def _agreement(items: Sequence[RatedItem], mine: Sequence[Rating], cutoff: float, conf: float) -> dict:
    cons = consensus(mine)
    return {
        "n_ratings": len(mine),
        "raters": sorted({r.rater for r in mine}),
        "model_vs_human": model_vs_human(items, cons, cutoff, conf),
        "inter_rater": inter_rater(mine, conf),
        "intra_rater": intra_rater(mine, conf),
    }


GROUPINGS = ("all", "model", "device_id", "cage_id", "group_id", "week", "month")


def group_key(item: RatedItem, by: str, timezone: str = "UTC") -> str:
    if by == "all":
        return "all"
    if by in ("week", "month"):
        d = dt.datetime.fromtimestamp(item.t, ZoneInfo(timezone)).date()
        if by == "month":
            return f"{d.year:04d}-{d.month:02d}"
        y, w, _ = d.isocalendar()
        return f"{y:04d}-W{w:02d}"
    return getattr(item, by) or "(none)"


def agreement_by(
    items: Sequence[RatedItem],
    ratings: Sequence[Rating],
    by: str,
    cutoff: float,
    conf: float = 0.95,
    timezone: str = "UTC",
) -> list[dict]:
    """:func:`agreement` per model version, device, cage, cage group, ISO week or month of capture."""
    if by not in GROUPINGS:
        raise ValueError(f"by must be one of {', '.join(GROUPINGS)}")
    by_item: dict[int, list[Rating]] = defaultdict(list)
    for r in ratings:
        by_item[r.item_id].append(r)
    groups: dict[str, list[RatedItem]] = defaultdict(list)
    for it in items:
        if it.item_id in by_item:
            groups[group_key(it, by, timezone)].append(it)
    return [
        {
            "by": by,
            "key": k,
            **_agreement(groups[k], [r for it in groups[k] for r in by_item[it.item_id]], cutoff, conf),
        }
        for k in sorted(groups)
    ]


# ---------------------------------------------------------------- the tidy table

CSV_COLUMNS = ("by", "key", "comparison", "metric", "value", "ci_low", "ci_high", "n")


def tidy_rows(result: dict) -> list[dict]:
    """One :func:`agreement` result (with ``by``/``key``) as long rows: the CSV export and what a test
    compares with the API."""
    by, key = result.get("by", "all"), result.get("key", "all")
    rows: list[dict] = []

    def add(comparison: str, metric: str, value, low=None, high=None, n=None) -> None:
        rows.append(
            {
                "by": by,
                "key": key,
                "comparison": comparison,
                "metric": metric,
                "value": value,
                "ci_low": low,
                "ci_high": high,
                "n": n,
            }
        )

    mh = result["model_vs_human"]
    p, icc_, ba = mh["pearson"], mh["icc_a1"], mh["bland_altman"]
    add("model_vs_human", "pearson_r", p["r"], p["ci_low"], p["ci_high"], p["n"])
    add("model_vs_human", "icc_a1", icc_["icc"], icc_["ci_low"], icc_["ci_high"], icc_["n"])
    add("model_vs_human", "ba_bias", ba["bias"], ba["bias_ci_low"], ba["bias_ci_high"], ba["n"])
    add("model_vs_human", "ba_loa_low", ba["loa_low"], ba["loa_low_ci_low"], ba["loa_low_ci_high"], ba["n"])
    add(
        "model_vs_human",
        "ba_loa_high",
        ba["loa_high"],
        ba["loa_high_ci_low"],
        ba["loa_high_ci_high"],
        ba["n"],
    )
    pain = mh["pain"]
    k = pain["kappa"]
    add("model_vs_human", "pain_kappa", k.get("kappa"), k.get("ci_low"), k.get("ci_high"), pain["n"])
    for m in ("accuracy", "sensitivity", "specificity"):
        add("model_vs_human", m, pain[m]["value"], pain[m]["ci_low"], pain[m]["ci_high"], pain[m]["n"])
    add("model_vs_human", "n_unscorable", mh["n_unscorable"], n=mh["n_items"])
    ir = result["inter_rater"]["icc2"]
    add("inter_rater", "icc_2_1", ir["icc"], ir["ci_low"], ir["ci_high"], ir["n"])
    for unit, kk in result["inter_rater"].get("au_kappa", {}).items():
        add("inter_rater", f"kappa_w_{unit}", kk["kappa"], kk["ci_low"], kk["ci_high"], kk["n"])
    intra = result["intra_rater"]
    add(
        "intra_rater",
        "icc_a1",
        intra["pooled"]["icc"],
        intra["pooled"]["ci_low"],
        intra["pooled"]["ci_high"],
        intra["n_pairs"],
    )
    for rater, r in intra["per_rater"].items():
        add(f"intra_rater:{rater}", "icc_a1", r["icc"], r["ci_low"], r["ci_high"], r["n"])
    return rows
