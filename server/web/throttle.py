"""Log-in throttling, per account and per client address, decided before any password is hashed.

Each key (an account name, or a client address: IPv4 as is, IPv6 by its /64) counts failed log-ins. The
first ``free`` pass without delay; after that the next attempt must wait ``base_delay_s * 2**(n - free)``
seconds after the last one, up to ``max_delay_s``. A key with no failure for ``forget_after_s`` starts
again from zero, and a successful log-in clears both its keys.

- **Per account** (``ACCOUNT``: 5 free, at most 30 s): slows a guesser spread over many addresses down to
  about two guesses a minute per account, and since the delay never exceeds 30 s, a stranger hammering
  an account can keep its real user waiting for at most 30 s at a time.
- **Per address** (``ADDRESS``: 10 free, up to 15 min): one address guessing at many accounts soon waits
  15 min between guesses.

An attempt is counted when it starts (:meth:`LoginThrottle.begin`), so parallel requests cannot all slip
through before the first failure is recorded; :meth:`~LoginThrottle.succeeded` undoes it. Throttled
requests are answered (429, ``Retry-After``) from a dictionary look-up, without Argon2, and the Argon2
work itself runs at most :data:`MAX_PARALLEL_CHECKS` at a time, so many parallel guessers cannot load the
collector host (Argon2id here uses 64 MiB and 4 lanes per check). State is in memory: a restart forgets
it. Entries are bounded (``max_entries`` per kind; the least recently failed go first).
"""

from __future__ import annotations

import ipaddress
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

MAX_PARALLEL_CHECKS = 2
"""Password checks (Argon2id) running at once; more wait up to :data:`CHECK_WAIT_S`, then get 429."""
CHECK_WAIT_S = 3.0


@dataclass(frozen=True)
class Policy:
    free: int
    base_delay_s: float
    max_delay_s: float
    forget_after_s: float

    def delay(self, failures: int) -> float:
        if failures < self.free:
            return 0.0
        return min(self.max_delay_s, self.base_delay_s * 2.0 ** min(failures - self.free, 40))


ACCOUNT = Policy(free=5, base_delay_s=2.0, max_delay_s=30.0, forget_after_s=15 * 60)
ADDRESS = Policy(free=10, base_delay_s=2.0, max_delay_s=15 * 60, forget_after_s=60 * 60)


def address_key(address: str | None) -> str:
    """IPv4 as is, IPv6 by its /64 (one host usually has a whole /64), anything else as given."""
    if not address:
        return "?"
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address[:64]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


class LoginThrottle:
    def __init__(
        self,
        account: Policy = ACCOUNT,
        address: Policy = ADDRESS,
        clock: Callable[[], float] = time.monotonic,
        max_entries: int = 50_000,
    ) -> None:
        self.policies = {"account": account, "address": address}
        self.clock = clock
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._failures: dict[str, dict[str, tuple[int, float]]] = {"account": {}, "address": {}}
        self.checks = threading.BoundedSemaphore(MAX_PARALLEL_CHECKS)
        self.outcomes = {"ok": 0, "wrong": 0, "throttled": 0, "busy": 0}

    def __len__(self) -> int:
        return sum(len(d) for d in self._failures.values())

    def _keys(self, account: str, address: str | None) -> dict[str, str]:
        return {"account": account.strip().casefold()[:64], "address": address_key(address)}

    def _wait(self, kind: str, key: str, now: float) -> float:
        entry = self._failures[kind].get(key)
        if entry is None:
            return 0.0
        count, last = entry
        policy = self.policies[kind]
        if now - last > policy.forget_after_s:
            del self._failures[kind][key]
            return 0.0
        return max(0.0, last + policy.delay(count) - now)

    def begin(self, account: str, address: str | None) -> float:
        """0: go ahead (the attempt is counted as a failure until :meth:`succeeded`); else the seconds
        to wait, and nothing is counted."""
        keys = self._keys(account, address)
        with self._lock:
            now = self.clock()
            wait = max(self._wait(kind, key, now) for kind, key in keys.items())
            if wait > 0:
                self.outcomes["throttled"] += 1
                return wait
            for kind, key in keys.items():
                table = self._failures[kind]
                count = table.get(key, (0, now))[0] + 1
                table[key] = (count, now)
                if count == self.policies[kind].free:
                    log.warning(
                        "log-in: %d failures for %s %r: further attempts are slowed down", count, kind, key
                    )
                if len(table) > self.max_entries:
                    self._prune(kind, now)
            return 0.0

    def failed(self, account: str, address: str | None) -> None:
        """The attempt :meth:`begin` let through had a wrong user name or password (already counted)."""
        with self._lock:
            self.outcomes["wrong"] += 1

    def succeeded(self, account: str, address: str | None) -> None:
        keys = self._keys(account, address)
        with self._lock:
            self.outcomes["ok"] += 1
            for kind, key in keys.items():
                self._failures[kind].pop(key, None)

    def busy(self) -> None:
        with self._lock:
            self.outcomes["busy"] += 1

    def _prune(self, kind: str, now: float) -> None:
        table, policy = self._failures[kind], self.policies[kind]
        for key in [k for k, (_, last) in table.items() if now - last > policy.forget_after_s]:
            del table[key]
        if len(table) > self.max_entries:  # still too many: keep the most recently failed half
            keep = sorted(table.items(), key=lambda kv: kv[1][1], reverse=True)[: self.max_entries // 2]
            table.clear()
            table.update(keep)

    def prometheus_text(self) -> str:
        with self._lock:
            outcomes = dict(self.outcomes)
            sizes = {k: len(v) for k, v in self._failures.items()}
        lines = [
            "# HELP amgs_login_attempts_total Log-in attempts by outcome (throttled and busy: refused before "
            "any password check)",
            "# TYPE amgs_login_attempts_total counter",
            *(f'amgs_login_attempts_total{{outcome="{k}"}} {v}' for k, v in outcomes.items()),
            "# HELP amgs_login_throttle_keys Accounts and client addresses with recent failed log-ins",
            "# TYPE amgs_login_throttle_keys gauge",
            *(f'amgs_login_throttle_keys{{kind="{k}"}} {v}' for k, v in sizes.items()),
        ]
        return "\n".join(lines) + "\n"


def retry_after(seconds: float) -> int:
    """Whole seconds for a ``Retry-After`` header (at least 1)."""
    return max(1, math.ceil(seconds))
