"""Query parameters of the read side (HTTP API, CLI): times, bins, and the error that names the one at fault.

Every value is checked to a finite, representable range before any query runs, so a time course is never
asked for a NaN, an infinity or the year 9999 (which would otherwise fail deep inside the photoperiod or
bin arithmetic). Errors start with the parameter's name (``"start: ..."``), which the API returns with
HTTP 400.
"""

from __future__ import annotations

import datetime as dt
import math
import re

from amgs.contract import parse_time

MIN_BIN_S = 300
MAX_BIN_S = 86400

MIN_TIME = 0.0  # 1970-01-01T00:00:00Z
MAX_TIME = 4102444800.0  # 2100-01-01T00:00:00Z
"""Times a query may name. Scores before 2000 are refused at ingest; 1970 (Unix 0) stays allowed as
"from the beginning". The upper bound keeps every date computation (local midnight, light/dark edges,
bins) far inside what Python's datetime can represent."""

_RANGE = "1970-01-01 .. 2100-01-01"


class QueryError(ValueError):
    """A request cannot be answered as asked (bad parameter, unknown cage, no event...)."""


def parse_bin(value: str | int | float, name: str = "bin") -> int:
    """``"5m"``, ``"1h"``, ``"1d"``, ``"90m"`` or seconds -> seconds (multiple of 300, 300..86400)."""
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise QueryError(f"{name}: {value!r} is not a bin width: use e.g. 5m, 15m, 1h, 6h, 1d or seconds")
        seconds = int(value)
    else:
        m = re.fullmatch(r"\s*(\d{1,9})\s*([smhd]?)\s*", str(value))
        if not m:
            raise QueryError(
                f"{name}: {str(value)[:40]!r} is not understood: use e.g. 5m, 15m, 1h, 6h, 1d or seconds"
            )
        seconds = int(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
    if seconds % MIN_BIN_S or not MIN_BIN_S <= seconds <= MAX_BIN_S:
        raise QueryError(
            f"{name}: a bin of {seconds} s is not allowed: use a multiple of 5 min from 5 min to 1 day"
        )
    return seconds


def parse_when(value: str | float | int | None, default: float, name: str = "time") -> float:
    """RFC 3339 / ISO 8601 text or Unix seconds -> Unix seconds (``None`` or ``""`` -> ``default``).

    Refused with a :class:`QueryError` naming ``name``: text that is neither, NaN and infinities, and any
    time outside 1970-01-01 .. 2100-01-01.
    """
    if value is None or value == "":
        return default
    shown = str(value)[:40]
    if isinstance(value, int | float):
        t = float(value)
    else:
        try:
            t = float(value)
        except ValueError:
            try:
                parsed = parse_time(str(value))
                if parsed.tzinfo is None:
                    parsed = parsed.replace(tzinfo=dt.UTC)
                t = parsed.timestamp()
            except (ValueError, OverflowError):
                raise QueryError(
                    f"{name}: {shown!r} is not understood: use e.g. 2026-03-01T08:00:00Z or Unix seconds"
                ) from None
    if not math.isfinite(t):
        raise QueryError(f"{name}: {shown!r} is not a time: give a date or Unix seconds")
    if not MIN_TIME <= t < MAX_TIME:
        raise QueryError(f"{name}: {shown!r} is outside the times a query may name ({_RANGE})")
    return t
