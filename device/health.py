"""What the device knows about itself: counters, clock trust, disk, CPU temperature, and the status message.

The status message (``amgs.status/1``, retained) is built here from the agent's counters, the
delivery thread's queue figures and the crop store's storage warning.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import shutil
import subprocess
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from amgs import __version__
from amgs.contract import Status, format_time

BOOT_ID_PATH = Path("/proc/sys/kernel/random/boot_id")
_TIME_ERROR = 5  # adjtimex() return value: clock not synchronized


def boot_id() -> str:
    try:
        return BOOT_ID_PATH.read_text().strip()[:64]
    except OSError:
        return "unknown"


def _synced_timedatectl() -> bool | None:
    try:
        out = subprocess.run(
            ["timedatectl", "show", "-p", "NTPSynchronized", "--value"],
            capture_output=True,
            text=True,
            timeout=2,
            # systemd tools report their own failures to $NOTIFY_SOCKET (ERRNO=...): keep them away from ours.
            env={k: v for k, v in os.environ.items() if not k.startswith(("NOTIFY_", "WATCHDOG_"))},
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    value = out.stdout.strip().lower()
    return {"yes": True, "no": False}.get(value) if out.returncode == 0 else None


def _synced_adjtimex() -> bool | None:
    """The kernel's own view (works without systemd): adjtimex() returns TIME_ERROR when unsynchronized."""
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        libc = ctypes.CDLL(name, use_errno=True)
        buf = ctypes.create_string_buffer(512)  # struct timex with modes = 0: read only
        state = libc.adjtimex(buf)
    except (OSError, AttributeError):
        return None
    return None if state < 0 else state != _TIME_ERROR


class ClockInfo:
    """boot id, CLOCK_MONOTONIC and whether the wall clock is synchronized (re-checked every minute)."""

    def __init__(self, recheck_s: float = 60.0) -> None:
        self.boot_id = boot_id()
        self.recheck_s = recheck_s
        self._synced = False
        self._checked = -1e9

    def synced(self) -> bool:
        now = time.monotonic()
        if now - self._checked > self.recheck_s:
            value = _synced_timedatectl()
            if value is None:
                value = _synced_adjtimex()
            self._synced = bool(value)
            self._checked = now
        return self._synced

    def record(self, monotonic_s: float) -> dict[str, Any]:
        return {"synced": self.synced(), "boot_id": self.boot_id, "monotonic_s": round(monotonic_s, 3)}


def cpu_temp_c() -> float | None:
    """CPU temperature where the kernel exposes it (Raspberry Pi: thermal_zone0)."""
    for zone in sorted(Path("/sys/class/thermal").glob("thermal_zone*")):
        try:
            return round(int((zone / "temp").read_text().strip()) / 1000.0, 1)
        except (OSError, ValueError):
            continue
    return None


def disk_free_bytes(path: Path) -> int | None:
    try:
        return int(shutil.disk_usage(path).free)
    except OSError:
        return None


class Health:
    """Thread-safe counters and last-known facts the status message reports."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self.frames: Counter = Counter()
        self.rejected: Counter = Counter()
        self.last_capture_at: datetime | None = None
        self.inference_ms: float | None = None
        self.errors: list[str] = []

    def count(self, what: str, n: int = 1) -> None:
        with self._lock:
            self.frames[what] += n

    def reject(self, reasons: Counter | dict[str, int]) -> None:
        with self._lock:
            self.rejected.update(reasons)

    def captured(self, at: datetime) -> None:
        with self._lock:
            self.last_capture_at = at

    def error(self, message: str) -> None:
        with self._lock:
            self.errors = (self.errors + [message[:500]])[-20:]

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "uptime_s": round(time.monotonic() - self.started, 1),
                "frames": dict(self.frames),
                "rejected": dict(self.rejected),
                "last_capture_at": format_time(self.last_capture_at) if self.last_capture_at else None,
                "inference_ms": self.inference_ms,
                "errors": list(self.errors),
            }


def status_message(
    *,
    device_id: str,
    site: str,
    state: str,
    health: Health,
    delivery_stats: dict[str, Any],
    last_seq: int,
    model: dict[str, str] | None,
    clock: dict[str, Any] | None,
    views: list[dict[str, Any]],
    storage_warning: str | None,
    state_dir: Path,
) -> dict[str, Any]:
    """An ``amgs.status/1`` message. ``state`` online becomes degraded when something needs a person."""
    snap = health.snapshot()
    reasons = []
    if storage_warning:
        reasons.append(storage_warning)
    bad_views = [v["view"] for v in views if not v.get("source_ok", True)]
    if bad_views:
        reasons.append(f"source failing for view(s) {', '.join(bad_views)}")
    if delivery_stats.get("last_error"):
        reasons.append(str(delivery_stats["last_error"]))
    if state == "online" and reasons:
        state = "degraded"
    return Status.build(
        device_id=device_id,
        site=site,
        state=state,
        at=format_time(datetime.now(UTC)),
        reason="; ".join(reasons)[:500] if reasons else ("stopped" if state == "offline" else None),
        software=f"amgs {__version__}",
        uptime_s=snap["uptime_s"],
        queue_depth=int(delivery_stats.get("queue_depth", 0)),
        unconfirmed=int(delivery_stats.get("unconfirmed", 0)),
        last_seq=last_seq,
        last_capture_at=snap["last_capture_at"],
        inference_ms=snap["inference_ms"],
        frames=snap["frames"],
        rejected=snap["rejected"],
        disk_free_bytes=disk_free_bytes(state_dir),
        cpu_temp_c=cpu_temp_c(),
        model=model,
        clock=clock,
        views=views,
        storage_warning=storage_warning[:500] if storage_warning else None,
        errors=snap["errors"],
    ).wire()
