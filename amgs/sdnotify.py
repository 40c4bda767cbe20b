"""A minimal sd_notify(3): tell systemd we are ready, alive (watchdog) and stopping.

Used by both services (the device agent and the collector). Without $NOTIFY_SOCKET (not run by
systemd with Type=notify) every call is a no-op, so they run the same from a shell. The watchdog
interval comes from $WATCHDOG_USEC; the main loop pings at half of it.
"""

from __future__ import annotations

import logging
import os
import socket
import time

log = logging.getLogger(__name__)


class Notifier:
    def __init__(self) -> None:
        self.address = os.environ.get("NOTIFY_SOCKET") or None
        usec = os.environ.get("WATCHDOG_USEC")
        pid = os.environ.get("WATCHDOG_PID")
        wanted = usec and usec.isdigit() and (pid is None or pid == str(os.getpid()))
        self.watchdog_interval_s = int(usec) / 2e6 if wanted else None
        self._last_ping = 0.0
        self._sock: socket.socket | None = None
        if self.address:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            if self.address.startswith("@"):  # abstract namespace
                self.address = "\0" + self.address[1:]

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def notify(self, *fields: str) -> bool:
        if self._sock is None or self.address is None:
            return False
        try:
            self._sock.sendto("\n".join(fields).encode(), self.address)
            return True
        except OSError as e:
            log.warning("sd_notify to %s failed: %s", self.address.lstrip("\0"), e)
            return False

    def ready(self, status: str = "") -> None:
        self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> None:
        self.notify(f"STATUS={text}")

    def stopping(self) -> None:
        self.notify("STOPPING=1")

    def watchdog(self) -> None:
        """Ping when half the watchdog interval has passed since the last ping (cheap to call often)."""
        if self.watchdog_interval_s is None:
            return
        now = time.monotonic()
        if now - self._last_ping >= self.watchdog_interval_s:
            self.notify("WATCHDOG=1")
            self._last_ping = now

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
