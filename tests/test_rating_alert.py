"""The model-vs-human agreement alert rule (server/alerts/agreement.py) at and around its settings."""

import numpy as np

from amgs.server.alerts.agreement import PSEUDO_CAGE, RULE, agreement_condition
from amgs.server.alerts.rules import Condition, Unknown
from amgs.server.rating.agreement import consensus, model_vs_human
from amgs.server.rating.config import RatingAlertConfig
from tests.test_rating_agreement import simulate


def rolling_of(items, ratings, model="m 1.0"):
    return {
        "site": "lab1",
        "model": model,
        "model_vs_human": model_vs_human(items, consensus(ratings), 1.0, 0.95),
    }


def test_good_model_no_alert_bad_model_alert_sparse_unknown():
    cfg = RatingAlertConfig(min_items=30, icc_below=0.5)
    items, ratings = simulate(n=60, bias=0.0)
    assert agreement_condition(cfg, "lab1", [rolling_of(items, ratings)], 30) is None
    rng = np.random.default_rng(3)
    for it in items:  # a model that no longer tracks the faces (new camera, say)
        it.mgs_au = float(rng.uniform(0, 2))
    cond = agreement_condition(cfg, "lab1", [rolling_of(items, ratings)], 30)
    assert isinstance(cond, Condition) and cond.rule == RULE and cond.cage_id == PSEUDO_CAGE
    assert cond.value < 0.5 and cond.threshold == 0.5 and cond.severity == "warning"
    assert "m 1.0" in cond.message and "60 rated faces" in cond.message and "95 % CI" in cond.message
    few = agreement_condition(cfg, "lab1", [rolling_of(items[:20], ratings)], 30)
    assert isinstance(few, Unknown) and few.key == f"{RULE}:lab1:{PSEUDO_CAGE}"
    assert (
        agreement_condition(RatingAlertConfig(enabled=False), "lab1", [rolling_of(items, ratings)], 30)
        is None
    )


def test_kappa_setting_and_threshold_edge():
    items, ratings = simulate(n=60, bias=0.0)
    r = rolling_of(items, ratings)
    icc = r["model_vs_human"]["icc_a1"]["icc"]
    at = agreement_condition(RatingAlertConfig(min_items=30, icc_below=icc), "lab1", [r], 30)
    above = agreement_condition(RatingAlertConfig(min_items=30, icc_below=icc + 0.001), "lab1", [r], 30)
    assert at is None and isinstance(above, Condition)  # fires strictly below the setting
    kappa = r["model_vs_human"]["pain"]["kappa"]["kappa"]
    cond = agreement_condition(
        RatingAlertConfig(min_items=30, icc_below=None, kappa_below=kappa + 0.01), "lab1", [r], 14
    )
    assert isinstance(cond, Condition) and "kappa" in cond.message and "14 days" in cond.message
