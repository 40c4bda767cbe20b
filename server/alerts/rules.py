"""Alert rules as pure functions: snapshots of cages and devices in, :class:`Condition` objects out.

The engine (``engine.py``) turns conditions into alerts with de-duplication, re-notification,
acknowledgement and auto-resolve; the data for the snapshots comes from ``inputs.py``. Keeping the
rules free of I/O makes every threshold testable with plain numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from .config import SEVERITY_RANK, AlertsConfig, SustainedPainRule


@dataclass(frozen=True)
class WindowStats:
    """Scores of one cage over a time window. ``n``, the mean, the fraction and ``synthetic`` are over the
    scorable records only; the records the device found unscorable are only counted (by reason)."""

    n: int
    mean_amgs: float | None
    fraction_pain: float | None
    synthetic: bool = False  # some of these scores came from a model trained on synthetic faces
    n_unscorable: int = 0
    unscorable_reasons: tuple[tuple[str, int], ...] = ()  # (reason, count), the reasons with a count
    unscorable_synthetic: bool = False  # some unscorable records came from a synthetic-trained model


SYNTHETIC_MODEL = "SYNTHETIC MODEL"
"""Starts the message (and the e-mail subject) of every alert raised from a synthetic-trained model's scores."""


def _honest(message: str, window: WindowStats, synthetic: bool | None = None) -> str:
    """Say so when the scores behind an alert come from a model that has never seen a real mouse
    (``synthetic``: whether they do, when not the window's scorable records)."""
    if not (window.synthetic if synthetic is None else synthetic):
        return message
    return (
        f"{SYNTHETIC_MODEL}: {message}. These scores come from a model trained on synthetic faces only: "
        "they are not a validated reading of this animal"
    )


@dataclass(frozen=True)
class CageSnapshot:
    site: str
    cage_id: str
    animal_id: str | None = None
    device_id: str | None = None
    last_score_at: datetime | None = None
    baseline_mean: float | None = None
    baseline_n: int = 0


@dataclass(frozen=True)
class DeviceSnapshot:
    site: str
    device_id: str
    state: str  # online / offline / degraded
    state_since: datetime | None
    cages: tuple[str, ...] = ()
    errors: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class Condition:
    """A rule that currently holds. ``key`` de-duplicates: one alert per key until it resolves."""

    rule: str
    site: str
    cage_id: str
    severity: str
    message: str
    value: float | None = None
    threshold: float | None = None
    animal_id: str | None = None
    device_id: str | None = None

    @property
    def key(self) -> str:
        return f"{self.rule}:{self.site}:{self.cage_id}"


@dataclass(frozen=True)
class Unknown:
    """Too few images in the window to say either way: an open alert is neither updated nor resolved
    (sparse data is not recovery; the no-faces rule covers a cage that goes quiet)."""

    rule: str
    site: str
    cage_id: str

    @property
    def key(self) -> str:
        return f"{self.rule}:{self.site}:{self.cage_id}"


@dataclass(frozen=True)
class Findings:
    conditions: list[Condition]
    unknown: set[str]


StatsFn = Callable[[CageSnapshot, datetime, datetime], WindowStats]
"""(cage, since, until) -> the cage's scores in that window."""


def _pain_hit(rule: SustainedPainRule, s: WindowStats) -> tuple[str, float, float] | None:
    """Which threshold the window crosses, with its value and threshold (fraction first: it is the paper's)."""
    if s.n < rule.min_images:
        return None
    if (
        rule.fraction_pain is not None
        and s.fraction_pain is not None
        and s.fraction_pain >= rule.fraction_pain
    ):
        return "fraction pain", s.fraction_pain, rule.fraction_pain
    if rule.mean_amgs is not None and s.mean_amgs is not None and s.mean_amgs >= rule.mean_amgs:
        return "mean aMGS", s.mean_amgs, rule.mean_amgs
    return None


def sustained_pain(
    cfg: AlertsConfig, cage: CageSnapshot, now: datetime, stats: StatsFn, open_since: datetime | None = None
) -> Condition | Unknown | None:
    """The sustained-pain rule with its humane-endpoint escalation level (same alert, higher severity).

    ``open_since`` is when this cage's pain alert opened, for the ``sustained_h`` escalation."""
    rule = cfg.pain
    if not rule.enabled:
        return None
    window = stats(cage, now - timedelta(minutes=rule.window_min), now)
    if window.n < rule.min_images:
        return Unknown("sustained_pain", cage.site, cage.cage_id)
    hit = _pain_hit(rule, window)
    if hit is None:
        return None
    what, value, threshold = hit
    severity = rule.severity
    message = (
        f"sustained pain in cage {cage.cage_id}: {what} {value:.2f} >= {threshold:.2f} "
        f"over {rule.window_min:g} min ({window.n} images)"
    )
    he = cfg.humane_endpoint
    if he.enabled:
        long = stats(cage, now - timedelta(minutes=he.window_min), now)
        he_hit = _pain_hit(he, long)
        overdue = (
            he.sustained_h is not None
            and open_since is not None
            and now - open_since >= timedelta(hours=he.sustained_h)
        )
        if he_hit or overdue:
            severity = "humane_endpoint"
            if he_hit:
                what, value, threshold = he_hit
                message = (
                    f"HUMANE ENDPOINT level in cage {cage.cage_id}: {what} {value:.2f} >= {threshold:.2f} "
                    f"over {he.window_min:g} min ({long.n} images); check the animal now"
                )
            else:
                message = (
                    f"HUMANE ENDPOINT level in cage {cage.cage_id}: pain alert open for more than "
                    f"{he.sustained_h:g} h; check the animal now"
                )
    return Condition(
        "sustained_pain",
        cage.site,
        cage.cage_id,
        severity,
        _honest(message, window),
        round(value, 4),
        threshold,
        cage.animal_id,
        cage.device_id,
    )


def baseline_rise(
    cfg: AlertsConfig, cage: CageSnapshot, now: datetime, stats: StatsFn
) -> Condition | Unknown | None:
    rule = cfg.baseline_rise
    if not rule.enabled or cage.baseline_mean is None or cage.baseline_n < rule.baseline_min_images:
        return None
    window = stats(cage, now - timedelta(minutes=rule.window_min), now)
    if window.n < rule.min_images or window.mean_amgs is None:
        return Unknown("baseline_rise", cage.site, cage.cage_id)
    rise = window.mean_amgs - cage.baseline_mean
    if rise < rule.rise:
        return None
    return Condition(
        "baseline_rise",
        cage.site,
        cage.cage_id,
        rule.severity,
        _honest(
            f"cage {cage.cage_id}: mean aMGS {window.mean_amgs:.2f} is {rise:.2f} above its baseline "
            f"{cage.baseline_mean:.2f} over {rule.window_min:g} min ({window.n} images)",
            window,
        ),
        round(rise, 4),
        rule.rise,
        cage.animal_id,
        cage.device_id,
    )


def no_faces(
    cfg: AlertsConfig, cage: CageSnapshot, device: DeviceSnapshot | None, now: datetime
) -> Condition | None:
    """No scored face for a cage whose device is online (an offline device has its own alert)."""
    rule = cfg.no_faces
    if not rule.enabled or device is None or device.state == "offline":
        return None
    since = cage.last_score_at or device.state_since
    if since is None:
        return None
    quiet_min = (now - since).total_seconds() / 60
    if quiet_min < rule.after_min:
        return None
    last = cage.last_score_at.isoformat() if cage.last_score_at else "never"
    return Condition(
        "no_faces",
        cage.site,
        cage.cage_id,
        rule.severity,
        f"no usable face frames from cage {cage.cage_id} (device {device.device_id}) for {quiet_min:.0f} min "
        f"(last scored: {last}); check camera position, lighting and bedding",
        round(quiet_min, 1),
        rule.after_min,
        cage.animal_id,
        device.device_id,
    )


def _span(minutes: float) -> str:
    return f"{minutes / 60:g} h" if minutes >= 60 and minutes % 60 == 0 else f"{minutes:g} min"


def no_usable_faces(
    cfg: AlertsConfig, cage: CageSnapshot, now: datetime, stats: StatsFn
) -> Condition | Unknown | None:
    """Images arrive but the device finds (nearly) all of them unscorable: the cage is not monitored."""
    rule = cfg.no_usable_faces
    if not rule.enabled:
        return None
    window = stats(cage, now - timedelta(minutes=rule.window_min), now)
    total = window.n + window.n_unscorable
    if total < rule.min_images:
        return Unknown("no_usable_faces", cage.site, cage.cage_id)
    share = window.n_unscorable / total
    if share < rule.unscorable_share:
        return None
    why = ", ".join(f"{reason} {k}" for reason, k in window.unscorable_reasons)
    message = (
        f"no usable faces in cage {cage.cage_id}: {window.n_unscorable} of {total} images unscorable"
        f"{f' ({why})' if why else ''} in the last {_span(rule.window_min)}: check the camera and the cage"
    )
    return Condition(
        "no_usable_faces",
        cage.site,
        cage.cage_id,
        rule.severity,
        _honest(message, window, window.synthetic or window.unscorable_synthetic),
        round(share, 4),
        rule.unscorable_share,
        cage.animal_id,
        cage.device_id,
    )


def device_conditions(cfg: AlertsConfig, device: DeviceSnapshot, now: datetime) -> list[Condition]:
    """Offline and error conditions, one per cage the device watches (each cage is unmonitored)."""
    cages = device.cages or (device.device_id,)
    found: list[tuple[str, str, str, float | None, float | None]] = []
    off = cfg.device_offline
    if off.enabled and device.state == "offline" and device.state_since is not None:
        minutes = (now - device.state_since).total_seconds() / 60
        if minutes >= off.after_min:
            found.append(
                (
                    "device_offline",
                    off.severity,
                    f"device {device.device_id} offline for {minutes:.0f} min: cage(s) {', '.join(cages)} "
                    "are not monitored; check power and network",
                    round(minutes, 1),
                    off.after_min,
                )
            )
    err = cfg.device_errors
    if err.enabled and device.state != "offline" and (device.state == "degraded" or device.errors):
        detail = "; ".join(device.errors) or "device reports degraded state"
        found.append(
            ("device_error", err.severity, f"device {device.device_id}: {detail}"[:1000], None, None)
        )
    return [
        Condition(rule, device.site, cage, sev, msg, value, threshold, None, device.device_id)
        for cage in cages
        for rule, sev, msg, value, threshold in found
    ]


def evaluate(
    cfg: AlertsConfig,
    now: datetime,
    cages: list[CageSnapshot],
    devices: list[DeviceSnapshot],
    stats: StatsFn,
    pain_open_since: dict[str, datetime] | None = None,
) -> Findings:
    """Every condition that holds now. Where several rules hit one cage, each is its own alert."""
    pain_open_since = pain_open_since or {}
    by_device = {(d.site, d.device_id): d for d in devices}
    out: list[Condition] = []
    unknown: set[str] = set()
    for cage in cages:
        key = f"sustained_pain:{cage.site}:{cage.cage_id}"
        unusable = no_usable_faces(cfg, cage, now, stats)
        quiet = no_faces(cfg, cage, by_device.get((cage.site, cage.device_id or "")), now)
        if isinstance(unusable, Condition) and quiet is not None:
            # no scorable face for long because the images are unscorable: one alert says why, the
            # no-faces one is neither opened nor resolved meanwhile
            quiet = Unknown(quiet.rule, quiet.site, quiet.cage_id)
        for cond in (
            sustained_pain(cfg, cage, now, stats, pain_open_since.get(key)),
            baseline_rise(cfg, cage, now, stats),
            quiet,
            unusable,
        ):
            if isinstance(cond, Unknown):
                unknown.add(cond.key)
            elif cond is not None:
                out.append(cond)
    for device in devices:
        out.extend(device_conditions(cfg, device, now))
    return Findings(out, unknown)


def more_severe(a: str, b: str) -> bool:
    return SEVERITY_RANK[a] > SEVERITY_RANK[b]
