"""The alert rules as pure functions: every threshold fires at its value and not below it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from amgs.server.alerts.config import AlertsConfig
from amgs.server.alerts.rules import CageSnapshot, DeviceSnapshot, WindowStats, evaluate

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
CAGE = CageSnapshot("lab1", "C01", "M1", "dev1", last_score_at=NOW, baseline_mean=0.2, baseline_n=50)
ONLINE = DeviceSnapshot("lab1", "dev1", "online", NOW - timedelta(days=1), ("C01",))


def stats_of(short: WindowStats, long: WindowStats | None = None):
    """Window stats by window length: <= 60 min gets ``short``, longer windows get ``long``."""

    def stats(cage, since, until):
        return short if (until - since) <= timedelta(minutes=60) else (long or short)

    return stats


def rules(findings):
    return {(c.rule, c.cage_id): c for c in findings.conditions}


def test_sustained_pain_fires_on_fraction_at_threshold_and_not_below():
    cfg = AlertsConfig()
    hit = evaluate(cfg, NOW, [CAGE], [ONLINE], stats_of(WindowStats(20, 0.3, 0.5)))
    c = rules(hit)[("sustained_pain", "C01")]
    assert (c.severity, c.value, c.threshold, c.animal_id, c.device_id) == ("alert", 0.5, 0.5, "M1", "dev1")
    assert "fraction pain 0.50 >= 0.50" in c.message
    miss = evaluate(cfg, NOW, [CAGE], [ONLINE], stats_of(WindowStats(20, 0.3, 0.49)))
    assert ("sustained_pain", "C01") not in rules(miss)


def test_sustained_pain_needs_enough_images_and_uses_mean_as_second_threshold():
    cfg = AlertsConfig()
    few = evaluate(cfg, NOW, [CAGE], [ONLINE], stats_of(WindowStats(19, 0.9, 0.9)))
    assert ("sustained_pain", "C01") not in rules(few)
    assert few.unknown == {"sustained_pain:lab1:C01", "baseline_rise:lab1:C01"}  # too few images: no verdict
    by_mean = rules(evaluate(cfg, NOW, [CAGE], [ONLINE], stats_of(WindowStats(25, 0.65, 0.2))))
    assert by_mean[("sustained_pain", "C01")].message.startswith("sustained pain in cage C01: mean aMGS 0.65")
    only_fraction = AlertsConfig(pain={"mean_amgs": None})
    assert ("sustained_pain", "C01") not in rules(
        evaluate(only_fraction, NOW, [CAGE], [ONLINE], stats_of(WindowStats(25, 0.65, 0.2)))
    )


def test_humane_endpoint_escalation_by_long_window_or_by_duration():
    cfg = AlertsConfig(humane_endpoint={"sustained_h": 6})
    strong = stats_of(WindowStats(30, 0.9, 0.9), WindowStats(100, 0.85, 0.82))
    c = rules(evaluate(cfg, NOW, [CAGE], [ONLINE], strong))[("sustained_pain", "C01")]
    assert c.severity == "humane_endpoint" and "HUMANE ENDPOINT" in c.message
    mild_long = stats_of(WindowStats(30, 0.6, 0.6), WindowStats(100, 0.6, 0.6))
    assert (
        rules(evaluate(cfg, NOW, [CAGE], [ONLINE], mild_long))[("sustained_pain", "C01")].severity == "alert"
    )
    opened = {"sustained_pain:lab1:C01": NOW - timedelta(hours=6)}
    overdue = rules(evaluate(cfg, NOW, [CAGE], [ONLINE], mild_long, opened))[("sustained_pain", "C01")]
    assert overdue.severity == "humane_endpoint" and "open for more than 6 h" in overdue.message


def test_baseline_rise_against_own_baseline():
    cfg = AlertsConfig(pain={"enabled": False})
    hit = rules(evaluate(cfg, NOW, [CAGE], [ONLINE], stats_of(WindowStats(30, 0.45, 0.3))))
    assert hit[("baseline_rise", "C01")].value == pytest.approx(0.25)
    assert ("baseline_rise", "C01") not in rules(
        evaluate(cfg, NOW, [CAGE], [ONLINE], stats_of(WindowStats(30, 0.44, 0.3)))
    )
    thin_baseline = CageSnapshot("lab1", "C01", baseline_mean=0.1, baseline_n=5, last_score_at=NOW)
    assert not evaluate(cfg, NOW, [thin_baseline], [], stats_of(WindowStats(30, 0.9, 0.3))).conditions


def test_device_offline_after_t_for_each_watched_cage():
    cfg = AlertsConfig()
    dev = DeviceSnapshot("lab1", "dev2", "offline", NOW - timedelta(minutes=16), ("C02", "C03"))
    hit = rules(evaluate(cfg, NOW, [], [dev], stats_of(WindowStats(0, None, None))))
    assert set(hit) == {("device_offline", "C02"), ("device_offline", "C03")}
    assert hit[("device_offline", "C02")].device_id == "dev2"
    recent = DeviceSnapshot("lab1", "dev2", "offline", NOW - timedelta(minutes=14), ("C02",))
    assert not evaluate(cfg, NOW, [], [recent], stats_of(WindowStats(0, None, None))).conditions


def test_no_usable_faces_only_while_device_online():
    cfg = AlertsConfig(no_faces={"after_min": 30})
    quiet = CageSnapshot("lab1", "C01", device_id="dev1", last_score_at=NOW - timedelta(minutes=31))
    hit = rules(evaluate(cfg, NOW, [quiet], [ONLINE], stats_of(WindowStats(0, None, None))))
    assert "no usable face frames" in hit[("no_faces", "C01")].message
    offline = DeviceSnapshot("lab1", "dev1", "offline", NOW - timedelta(minutes=5), ("C01",))
    assert ("no_faces", "C01") not in rules(
        evaluate(cfg, NOW, [quiet], [offline], stats_of(WindowStats(0, None, None)))
    )


def test_device_errors_reported_by_status():
    cfg = AlertsConfig()
    dev = DeviceSnapshot("lab1", "dev1", "degraded", NOW, ("C01",), ("camera /dev/video0: no frames",))
    c = rules(evaluate(cfg, NOW, [], [dev], stats_of(WindowStats(0, None, None))))[("device_error", "C01")]
    assert "camera /dev/video0: no frames" in c.message and c.severity == "warning"


def test_config_refuses_bad_values_naming_them():
    with pytest.raises(ValidationError, match="fraction_pain"):
        AlertsConfig(pain={"fraction_pain": 1.5})
    with pytest.raises(ValidationError, match="set fraction_pain or mean_amgs"):
        AlertsConfig(pain={"fraction_pain": None, "mean_amgs": None})
    with pytest.raises(ValidationError, match="pain.windw_min"):
        AlertsConfig(pain={"windw_min": 5})
