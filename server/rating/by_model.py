"""Human agreement per model version, and of shadow candidates on the faces humans rated: what the
Models page and ``GET /api/models/human-agreement`` show.

The definitions are those of :mod:`.agreement` (one each): an item's human MGS is the consensus of its
raters' first showings (raters who marked it "not scorable" give no values; an item at least half of its
raters marked so is left out), human pain = human MGS >= ``rating.human_pain_cutoff``, model pain = the
model's own call. The figures come from :func:`.agreement.model_vs_human` and :mod:`.stats`:

- ``pearson_p_pain``: Pearson r of the model's P(pain) vs the human MGS;
- ``pearson_au``: Pearson r of the model's AU-head MGS (0-2) vs the human MGS;
- ``icc_au``: ICC(A,1) of the AU-head MGS vs the human MGS (absolute agreement);
- ``accuracy`` and ``kappa``: the model's pain call vs human pain.

Small numbers are not shown as figures: below :data:`MIN_ITEMS` items behind a figure its value and
interval are ``None`` and ``too_few`` is true (the page says "n < 10: too few").

Shadow candidates: a candidate's score is stored in ``shadow_scores`` under the msg_id of the active
score it shadowed, and a rating item keeps the msg_id of the score it was sampled from; where both exist,
the candidate and the active model are compared with the humans on the same faces, per candidate and cage.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from . import stats
from .agreement import RatedItem, Rating, consensus, model_vs_human
from .data import load, ratings_version

MIN_ITEMS = 10
"""Items behind a figure below which it is withheld (shown as too few)."""

FIGURES = ("pearson_p_pain", "pearson_au", "icc_au", "accuracy", "kappa")


def _figure(d: dict[str, Any], key: str, n: int | None = None) -> dict[str, Any]:
    n = d.get("n", 0) if n is None else n
    too_few = n < MIN_ITEMS
    return {
        "value": None if too_few else d.get(key),
        "ci_low": None if too_few else d.get("ci_low"),
        "ci_high": None if too_few else d.get("ci_high"),
        "n": n,
        "too_few": too_few,
    }


def figures(
    items: Sequence[RatedItem], ratings: Sequence[Rating], cutoff: float, conf: float = 0.95
) -> dict[str, Any]:
    """Model vs human figures of one model on ITEMS (its scores on them) with their RATINGS."""
    ids = {it.item_id for it in items}
    mine = [r for r in ratings if r.item_id in ids]
    cons = consensus(mine)
    mh = model_vs_human(items, cons, cutoff, conf)
    scored = [
        (it.p_pain, c.mgs)
        for it in items
        if (c := cons.get(it.item_id)) is not None
        and not c.unscorable
        and c.mgs is not None
        and it.p_pain is not None
    ]
    pain = mh["pain"]
    return {
        "n_items": mh["n_items"],
        "n_raters": len({r.rater for r in mine}),
        "n_unscorable": mh["n_unscorable"],
        "n_scored": mh["n_scored"],
        "pearson_p_pain": _figure(stats.pearson([p for p, _ in scored], [h for _, h in scored], conf), "r"),
        "pearson_au": _figure(mh["pearson"], "r"),
        "icc_au": _figure(mh["icc_a1"], "icc"),
        "accuracy": _figure(pain["accuracy"], "value"),
        "kappa": _figure(pain["kappa"], "kappa", pain["n"]),
    }


def _registered(conn) -> dict[str, dict[str, Any]]:
    return {
        r[0]: {"name": r[1], "version": r[2], "synthetic": bool(r[3])}
        for r in conn.execute("SELECT sha256, name, version, synthetic FROM models")
    }


_CANDIDATE = """
SELECT i.item_id, s.candidate_sha256, s.candidate_name, s.candidate_version, s.p_pain, s.label, s.mgs_au
FROM shadow_scores s JOIN rating_items i ON i.msg_id = s.msg_id
WHERE EXISTS (SELECT 1 FROM ratings r WHERE r.item_id = i.item_id)
  AND coalesce(s.outcome, '') <> 'unscorable' ORDER BY i.item_id
"""


def compute(
    items: Sequence[RatedItem],
    ratings: Sequence[Rating],
    shadow: Sequence[tuple],
    registered: dict[str, dict[str, Any]],
    cutoff: float,
    conf: float = 0.95,
) -> dict[str, Any]:
    """Per model version (sha256; "name version" where a score named none) and per shadow candidate.

    ``shadow``: rows of (item_id, candidate sha256, name, version, P(pain), label, AU-MGS)."""
    groups: dict[str, list[RatedItem]] = defaultdict(list)
    for it in items:
        groups[it.model_sha256 or it.model].append(it)
    models = []
    for key, its in groups.items():
        reg = registered.get(key)
        models.append(
            {
                "sha256": its[0].model_sha256 or None,
                "model": f"{reg['name']} {reg['version']}" if reg else its[0].model,
                "registered": reg is not None,
                "synthetic": reg["synthetic"] if reg else None,
                **figures(its, ratings, cutoff, conf),
            }
        )
    models.sort(key=lambda m: (not m["registered"], m["model"]))

    by_id = {it.item_id: it for it in items}
    faces: dict[str, list[tuple[RatedItem, RatedItem]]] = defaultdict(list)
    names: dict[str, str] = {}
    for item_id, cand, name, version, p, label, mgs_au in shadow:
        active = by_id.get(item_id)
        if active is None:
            continue
        names[cand] = f"{name or ''} {version or ''}".strip()
        is_pain = {"pain": True, "no pain": False}.get(label)
        faces[cand].append(
            (active, dataclasses.replace(active, p_pain=p, is_pain=is_pain, mgs_au=mgs_au, model=names[cand]))
        )
    candidates = []
    for cand in sorted(faces, key=lambda c: names[c]):
        pairs = faces[cand]
        per_cage: dict[str, list[tuple[RatedItem, RatedItem]]] = defaultdict(list)
        for a, c in pairs:
            per_cage[a.cage_id].append((a, c))
        for cage, ps in [("all", pairs), *sorted(per_cage.items())]:
            candidates.append(
                {
                    "candidate_sha256": cand,
                    "candidate": names[cand],
                    "cage_id": cage,
                    "active": sorted({a.model for a, _ in ps}),
                    "active_vs_human": figures([a for a, _ in ps], ratings, cutoff, conf),
                    "candidate_vs_human": figures([c for _, c in ps], ratings, cutoff, conf),
                }
            )
    return {"human_pain_cutoff": cutoff, "min_items": MIN_ITEMS, "models": models, "shadow": candidates}


_CACHE: dict[tuple, dict] = {}


def human_agreement(conn, cutoff: float, conf: float = 0.95) -> dict[str, Any]:
    """:func:`compute` over every rated item of the collector (cached per state of ratings, shadow
    scores and registry)."""
    key = (
        cutoff,
        conf,
        ratings_version(conn),
        # the newest row (PostgreSQL: its ctid; None when empty): new shadow scores change the key
        conn.execute("SELECT count(*), max(rowid) FROM shadow_scores").fetchone(),
        conn.execute("SELECT count(*), group_concat(sha256) FROM models").fetchone(),
    )
    out = _CACHE.get(key)
    if out is None:
        items, ratings = load(conn)
        shadow = conn.execute(_CANDIDATE).fetchall() if items else []
        out = compute(items, ratings, shadow, _registered(conn), cutoff, conf)
        _CACHE.clear()
        _CACHE[key] = out
    return out
