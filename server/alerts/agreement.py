"""The model-vs-human agreement rule (``[rating.alert]``): a pure function, like the rules in ``rules.py``.

Input: per site and model, the rolling model-vs-human figures of ``amgs.server.rating.data.rolling``
(ratings of the last ``window_days``). The rule judges a model only when its ICC(A,1) rests on at least
``min_items`` rated faces; with fewer, it is :class:`Unknown` (an open alert is neither updated nor
resolved on sparse data). One alert per site, under the pseudo-cage id ``model-agreement`` (alert topics
and ids are per cage); its message names the model, the figure with its 95 % interval, the number of
faces and the site setting.
"""

from __future__ import annotations

from amgs.server.rating.data import pool_sites, rolling

from .rules import Condition, Unknown

RULE = "model_agreement"
PSEUDO_CAGE = "model-agreement"


def _fmt(x) -> str:
    return "-" if x is None else f"{x:.2f}"


def agreement_condition(
    cfg, site: str, results: list[dict], window_days: float
) -> Condition | Unknown | None:
    """``cfg``: the ``RatingAlertConfig``; ``results``: this site's entries of ``rolling()``."""
    if not cfg.enabled or (cfg.icc_below is None and cfg.kappa_below is None):
        return None
    hits, judged = [], 0
    for r in results:
        mh = r["model_vs_human"]
        icc, kappa = mh["icc_a1"], mh["pain"]["kappa"]
        if cfg.icc_below is not None and icc["n"] >= cfg.min_items and icc["icc"] is not None:
            judged += 1
            if icc["icc"] < cfg.icc_below:
                hits.append((icc["icc"], cfg.icc_below, r["model"], "ICC(A,1) of AU-MGS", icc, icc["n"]))
        if (
            cfg.kappa_below is not None
            and mh["pain"]["n"] >= cfg.min_items
            and kappa.get("kappa") is not None
        ):
            judged += 1
            if kappa["kappa"] < cfg.kappa_below:
                hits.append(
                    (
                        kappa["kappa"],
                        cfg.kappa_below,
                        r["model"],
                        "pain/no-pain kappa",
                        kappa,
                        mh["pain"]["n"],
                    )
                )
    if not hits:
        return Unknown(RULE, site, PSEUDO_CAGE) if not judged else None
    value, threshold, model, what, fig, n = min(hits, key=lambda h: h[0] - h[1])
    others = f"; {len(hits) - 1} more figure(s) below their setting" if len(hits) > 1 else ""
    message = (
        f"model {model or '(unnamed)'} disagrees with the human raters: {what} {value:.2f} "
        f"(95 % CI {_fmt(fig.get('ci_low'))} to {_fmt(fig.get('ci_high'))}) over {n} rated faces in the last "
        f"{window_days:g} days, below the site setting {threshold:g}{others}. Check the camera, lighting and "
        "bedding, and consider retraining on the lab's rated faces (amgs server export-ratings)."
    )
    return Condition(RULE, site, PSEUDO_CAGE, cfg.severity, message, round(value, 4), threshold)


def rating_findings(conn, rating_cfg, now: float) -> tuple[list[Condition], set[str]]:
    """The rule over the collector's rating tables: conditions, and the keys too sparse to judge."""
    if not rating_cfg.alert.enabled:
        return [], set()
    results = rolling(conn, rating_cfg, now)
    conditions, unknown = [], set()
    for site in sorted(set(pool_sites(conn)) | {r["site"] for r in results}):
        if not site:
            continue
        found = agreement_condition(
            rating_cfg.alert, site, [r for r in results if r["site"] == site], rating_cfg.alert.window_days
        )
        if isinstance(found, Unknown):
            unknown.add(found.key)
        elif found is not None:
            conditions.append(found)
    return conditions, unknown
