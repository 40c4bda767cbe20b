"""Cage tile states on the overview, most urgent first (pure function over a tile and its open alerts)."""

from __future__ import annotations

from amgs.server.alerts.config import AlertsConfig
from amgs.server.http.views import tile_state

NOW = 1_800_000_000.0
CFG = AlertsConfig()


def tile(devices=(), last_hour=None, last=NOW - 60):
    return {"devices": list(devices), "last_hour": last_hour or {"n": 0}, "last_score_t": last}


def alert(rule, severity, device_id=None):
    return {"rule": rule, "severity": severity, "message": f"{rule} message", "device_id": device_id}


def test_states_in_order_of_urgency():
    offline = [{"device_id": "dev1", "state": "offline"}]
    pain = alert("sustained_pain", "alert")
    assert tile_state(tile(offline), [pain], CFG, NOW) == ("alert", "sustained_pain message")
    assert tile_state(tile(), [alert("sustained_pain", "humane_endpoint")], CFG, NOW)[0] == "alert"
    assert tile_state(tile(offline), [], CFG, NOW) == ("device offline", "device dev1 offline")
    assert tile_state(tile(), [alert("device_offline", "alert", "dev9")], CFG, NOW) == (
        "device offline",
        "device dev9 offline",
    )
    assert tile_state(tile(), [alert("baseline_rise", "warning")], CFG, NOW) == (
        "elevated",
        "baseline_rise message",
    )
    hot_hour = {"n": 5, "frac_pain": 0.6, "mean_amgs": 0.4}
    state, why = tile_state(tile(last_hour=hot_hour), [], CFG, NOW)
    assert state == "elevated" and "fraction pain 0.60 (5 images)" in why
    assert tile_state(tile(last=NOW - 3 * 3600), [], CFG, NOW)[0] == "no data"
    assert tile_state(tile(last=None), [], CFG, NOW)[0] == "no data"
    assert tile_state(tile(last_hour={"n": 10, "frac_pain": 0.1, "mean_amgs": 0.2}), [], CFG, NOW) == (
        "ok",
        "",
    )
