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


def test_the_collector_alert_runner_opens_the_agreement_alert(tmp_path):
    import datetime as dt

    from amgs.server.alerts.service import AlertRunner
    from amgs.server.rating import sessions
    from amgs.server.rating.pool import fill_pool
    from amgs.server.rating.sampling import local_day_bounds
    from tests.rating_helpers import add_score, open_db
    from tests.server_support import server_config

    t0, _ = local_day_bounds(dt.date(2026, 3, 2), "UTC")
    config = server_config(
        tmp_path,
        notify={"mqtt": {"enabled": False}},
        alerts={"enabled": True},
        rating={"per_cage_per_day": 40, "repeat_share": 0, "alert": {"min_items": 30, "icc_below": 0.5}},
    )
    db = open_db(config)
    conn = db.local().conn
    rng = np.random.default_rng(5)
    truth = {}
    for i in range(40):
        truth[f"m{i}"] = rng.uniform(0, 2)
        # the model's AU-MGS has nothing to do with the face: a camera moved, say
        add_score(
            conn, config.storage.state_dir, f"m{i}", "C1", t0 + i * 2000, 0.5, mgs_au=float(rng.uniform(0, 2))
        )
    add_score(conn, config.storage.state_dir, "next", "C1", t0 + 86400 + 5, 0.5, crop=False)
    fill_pool(conn, config, now=t0 + 86400 + 3600)
    now = t0 + 2 * 86400
    clock = lambda: dt.datetime.fromtimestamp(now, dt.UTC)  # noqa: E731
    runner = AlertRunner(db.local, config.alerts, config.notify, None, clock=clock, rating=config.rating)

    def rate(n):
        ref = sessions.open_session(conn, "ann", config.rating, now)
        for _ in range(n):
            v = sessions.view(conn, ref)
            msg = conn.execute(
                "SELECT msg_id FROM rater_queue q JOIN rating_items i USING (item_id) WHERE q.token = ?",
                [v["token"]],
            ).fetchone()[0]
            level = int(round(truth[msg]))
            sessions.submit(
                conn, ref, v["token"], dict.fromkeys(("ot", "nb", "cb", "ep", "wc"), level), now=now
            )

    rate(20)
    runner.evaluate_once()  # 20 rated faces: too few to judge
    assert conn.execute("SELECT count(*) FROM alerts WHERE rule = 'model_agreement'").fetchone()[0] == 0
    rate(20)
    runner.evaluate_once()
    rows = conn.execute(
        "SELECT cage_id, severity, state, message FROM alerts WHERE rule = 'model_agreement'"
    ).fetchall()
    assert len(rows) == 1 and rows[0][:3] == ("model-agreement", "warning", "open")
    assert "40 rated faces" in rows[0][3]
