"""A rater's sitting: a random queue of pool items under opaque tokens, ratings saved one at a time.

- :func:`open_session` resumes the rater's unfinished session, or builds a new one: items still open
  that this rater has not scored (those other raters already scored first, so raters overlap), plus the
  second showing of repeat items the rater scored in an earlier session; a repeat first shown in this
  session gets its second showing at least ``repeat_gap`` items later when the session is long enough.
  The order is random (``secrets``), and each position gets a fresh random token: the only identifier
  the page, its URLs and the image requests ever see. Two showings of one item have unrelated tokens.
- :func:`view` says where the session stands (position, total, done) and, for a position already
  rated, the rater's own values (so going back shows what was entered). Nothing else about the item.
- :func:`submit` stores (or changes, keeping the previous values in ``rating_changes``) one rating and
  returns the next position's view in the same round trip.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import time
from dataclasses import dataclass

from amgs.contract import AU_KEYS

_sysrand = secrets.SystemRandom()


class RatingError(ValueError):
    """A rating request that cannot be honoured (unknown token, bad values); the message says why."""


@dataclass(frozen=True)
class SessionRef:
    session_id: int
    rater: str


def _tx(conn: sqlite3.Connection):
    class _T:
        def __enter__(self):
            conn.execute("BEGIN IMMEDIATE")

        def __exit__(self, exc_type, exc, tb):
            if exc_type is None:
                conn.execute("COMMIT")
            elif conn.in_transaction:
                conn.execute("ROLLBACK")
            return False

    return _T()


def _undone(conn, session_id: int) -> int:
    return conn.execute(
        "SELECT count(*) FROM rater_queue WHERE session_id = ? AND rating_id IS NULL", [session_id]
    ).fetchone()[0]


def open_session(conn: sqlite3.Connection, rater: str, cfg, now: float | None = None) -> SessionRef | None:
    """Resume or start a session for ``rater`` (``cfg`` = ``RatingConfig``); None when nothing is left to rate."""
    now = time.time() if now is None else now
    with _tx(conn):
        row = conn.execute(
            "SELECT session_id FROM rater_sessions WHERE rater = ? AND ended_at IS NULL ORDER BY session_id DESC LIMIT 1",
            [rater],
        ).fetchone()
        if row and _undone(conn, row[0]):
            conn.execute("UPDATE rater_sessions SET last_at = ? WHERE session_id = ?", [now, row[0]])
            return SessionRef(row[0], rater)
        if row:
            conn.execute("UPDATE rater_sessions SET ended_at = ? WHERE session_id = ?", [now, row[0]])
        queue = _build_queue(conn, rater, cfg)
        if not queue:
            return None
        sid = conn.execute(
            "INSERT INTO rater_sessions (rater, started_at, last_at, n_items) VALUES (?, ?, ?, ?)",
            [rater, now, now, len(queue)],
        ).lastrowid
        conn.executemany(
            "INSERT INTO rater_queue (session_id, pos, token, item_id, occasion) VALUES (?, ?, ?, ?, ?)",
            [(sid, pos, secrets.token_urlsafe(18), item, occ) for pos, (item, occ) in enumerate(queue)],
        )
        return SessionRef(sid, rater)


def _build_queue(conn, rater: str, cfg) -> list[tuple[int, int]]:
    limit = cfg.session_items
    second = [
        r[0]
        for r in conn.execute(
            "SELECT i.item_id FROM rating_items i JOIN ratings r ON r.item_id = i.item_id AND r.rater = ? "
            "AND r.occasion = 1 WHERE i.repeat = 1 AND i.image IS NOT NULL AND NOT EXISTS "
            "(SELECT 1 FROM ratings q WHERE q.item_id = i.item_id AND q.rater = ? AND q.occasion = 2)",
            [rater, rater],
        )
    ]
    _sysrand.shuffle(second)
    second = second[: max(0, limit // 2)]
    fresh = conn.execute(
        "SELECT i.item_id, i.repeat, (SELECT count(DISTINCT r.rater) FROM ratings r WHERE r.item_id = i.item_id) "
        "FROM rating_items i WHERE i.state = 'open' AND i.image IS NOT NULL AND NOT EXISTS "
        "(SELECT 1 FROM ratings r WHERE r.item_id = i.item_id AND r.rater = ?)",
        [rater],
    ).fetchall()
    fresh = [f for f in fresh if f[2] < cfg.raters_per_item]
    _sysrand.shuffle(fresh)
    fresh.sort(key=lambda f: -f[2])  # stable: random within each count, others' items first
    fresh = fresh[: max(0, limit - len(second))]
    queue = [(f[0], 1) for f in fresh] + [(i, 2) for i in second]
    _sysrand.shuffle(queue)
    gap = cfg.repeat_gap
    for item_id, is_repeat, _ in fresh:
        if not is_repeat:
            continue
        first = queue.index((item_id, 1))
        if first + gap + 1 <= len(queue):
            queue.insert(_sysrand.randint(first + gap + 1, len(queue)), (item_id, 2))
    return queue


def session_for(conn: sqlite3.Connection, rater: str, session_id: int) -> SessionRef:
    row = conn.execute(
        "SELECT rater FROM rater_sessions WHERE session_id = ? AND ended_at IS NULL", [session_id]
    ).fetchone()
    if row is None or row[0] != rater:
        raise RatingError("no such open session for this rater")
    return SessionRef(session_id, rater)


def view(conn: sqlite3.Connection, ref: SessionRef, pos: int | None = None) -> dict:
    """Where the session stands; ``pos`` None = the first position not yet rated (or the end)."""
    total, done = conn.execute(
        "SELECT count(*), count(rating_id) FROM rater_queue WHERE session_id = ?", [ref.session_id]
    ).fetchone()
    if pos is None:
        row = conn.execute(
            "SELECT min(pos) FROM rater_queue WHERE session_id = ? AND rating_id IS NULL", [ref.session_id]
        ).fetchone()
        pos = row[0] if row[0] is not None else total
    pos = max(0, min(int(pos), total))
    out: dict = {"pos": pos, "total": total, "done": done, "token": None, "values": None}
    if pos < total:
        token, rating_id = conn.execute(
            "SELECT token, rating_id FROM rater_queue WHERE session_id = ? AND pos = ?", [ref.session_id, pos]
        ).fetchone()
        out["token"] = token
        if rating_id is not None:
            r = conn.execute(
                f"SELECT unscorable, {', '.join(f'au_{k}' for k in AU_KEYS)} FROM ratings WHERE rating_id = ?",
                [rating_id],
            ).fetchone()
            out["values"] = {"unscorable": bool(r[0]), "au": dict(zip(AU_KEYS, r[1:], strict=True))}
    return out


def image_path(conn: sqlite3.Connection, ref: SessionRef, token: str) -> str | None:
    """The blinded image (relative to ``state_dir``) behind a token of this session."""
    row = conn.execute(
        "SELECT i.image FROM rater_queue q JOIN rating_items i ON i.item_id = q.item_id "
        "WHERE q.token = ? AND q.session_id = ?",
        [token, ref.session_id],
    ).fetchone()
    return row[0] if row else None


def _check_values(au: dict | None, unscorable: bool) -> dict[str, int | None]:
    if unscorable:
        return dict.fromkeys(AU_KEYS)
    if not isinstance(au, dict) or set(au) != set(AU_KEYS):
        raise RatingError(f"give all five action units ({', '.join(AU_KEYS)}): 0, 1, 2 or null (not visible)")
    for k, v in au.items():
        if v is not None and (isinstance(v, bool) or v not in (0, 1, 2)):
            raise RatingError(f"{k} = {v!r}: an action unit is 0, 1, 2 or null (not visible)")
    return {k: au[k] for k in AU_KEYS}


def submit(
    conn: sqlite3.Connection,
    ref: SessionRef,
    token: str,
    au: dict | None,
    unscorable: bool = False,
    duration_ms: int | None = None,
    raters_per_item: int = 2,
    now: float | None = None,
) -> dict:
    """Store the rating for ``token`` and return the view of the next position to rate."""
    now = time.time() if now is None else now
    values = _check_values(au, bool(unscorable))
    cols = [f"au_{k}" for k in AU_KEYS]
    with _tx(conn):
        q = conn.execute(
            "SELECT pos, item_id, occasion, rating_id FROM rater_queue WHERE token = ? AND session_id = ?",
            [token, ref.session_id],
        ).fetchone()
        if q is None:
            raise RatingError("unknown item for this session")
        pos, item_id, occasion, rating_id = q
        if rating_id is None:
            rating_id = conn.execute(
                "SELECT rating_id FROM ratings WHERE item_id = ? AND rater = ? AND occasion = ?",
                [item_id, ref.rater, occasion],
            ).fetchone()
            rating_id = rating_id[0] if rating_id else None
        dur = None if duration_ms is None else max(0, min(int(duration_ms), 86_400_000))
        if rating_id is None:
            rating_id = conn.execute(
                f"INSERT INTO ratings (item_id, rater, occasion, session_id, rated_at, {', '.join(cols)}, "
                f"unscorable, duration_ms) VALUES (?, ?, ?, ?, ?, {', '.join('?' * len(cols))}, ?, ?)",
                [
                    item_id,
                    ref.rater,
                    occasion,
                    ref.session_id,
                    now,
                    *values.values(),
                    int(bool(unscorable)),
                    dur,
                ],
            ).lastrowid
        else:
            prev = conn.execute(
                f"SELECT rated_at, unscorable, {', '.join(cols)} FROM ratings WHERE rating_id = ?",
                [rating_id],
            ).fetchone()
            conn.execute(
                "INSERT INTO rating_changes (rating_id, changed_at, previous) VALUES (?, ?, ?)",
                [rating_id, now, json.dumps(dict(zip(["rated_at", "unscorable", *cols], prev, strict=True)))],
            )
            conn.execute(
                f"UPDATE ratings SET {', '.join(f'{c} = ?' for c in cols)}, unscorable = ?, changed_at = ? "
                "WHERE rating_id = ?",
                [*values.values(), int(bool(unscorable)), now, rating_id],
            )
        conn.execute(
            "UPDATE rater_queue SET rating_id = ? WHERE session_id = ? AND pos = ?",
            [rating_id, ref.session_id, pos],
        )
        conn.execute("UPDATE rater_sessions SET last_at = ? WHERE session_id = ?", [now, ref.session_id])
        n = conn.execute(
            "SELECT count(DISTINCT rater) FROM ratings WHERE item_id = ? AND occasion = 1", [item_id]
        ).fetchone()[0]
        if n >= raters_per_item:
            conn.execute(
                "UPDATE rating_items SET state = 'done', state_at = ? WHERE item_id = ? AND state = 'open'",
                [now, item_id],
            )
    return view(conn, ref)


def end_session(conn: sqlite3.Connection, ref: SessionRef, now: float | None = None) -> None:
    conn.execute(
        "UPDATE rater_sessions SET ended_at = ? WHERE session_id = ? AND ended_at IS NULL",
        [time.time() if now is None else now, ref.session_id],
    )
