"""Staff accounts, sessions, API tokens and CSRF protection for the dashboard.

- Passwords are hashed with Argon2id (argon2-cffi); only the hash is stored.
- A login creates a session: a random cookie value whose SHA-256 is stored with its expiry and its
  own CSRF token. Sessions expire after ``web.session_hours`` and on logout.
- Scripts use API tokens (``Authorization: Bearer ...``), stored as SHA-256 only; a bearer request
  carries no cookie, so it is not exposed to CSRF.
- Every state-changing request authenticated by cookie must echo the session's CSRF token
  (``X-CSRF-Token`` header or ``csrf_token`` form field). The login form itself uses a double-submit
  cookie.

Plain SQL on whatever connection the caller has (a ``sqlite_utils.Database``, a ``sqlite3.Connection`` or
PostgreSQL's :class:`~amgs.server.storage.pg.PgConnection`, which translates it): one code path for both
engines. Every write runs in :func:`~amgs.sqlite_tx.write_transaction`, so a connection that is not in
autocommit mode commits too.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from fastapi import HTTPException, Request

from amgs.server.storage.schema import SESSIONS, TOKENS, USERS  # tables made by the collector's migrations
from amgs.server.storage.sql import database
from amgs.sqlite_tx import write_transaction

SESSION_COOKIE = "amgs_session"
LOGIN_CSRF_COOKIE = "amgs_login_csrf"
ROLES = ("viewer", "rater", "staff", "admin")
"""viewer: reads; rater: reads and scores faces blind (/rate); staff and admin: also act (and score)."""
_hasher = PasswordHasher()


class AuthError(ValueError):
    pass


class NoSuchUser(AuthError, LookupError):
    """The user name is not in ``web_users``."""


def _one(db: Any, sql: str, params: list[Any]) -> dict[str, Any] | None:
    """The first row as a dict (or None), on any of the connections the module takes."""
    return next(iter(database(db).query(sql, params)), None)


def _user(db: Any, username: str) -> dict[str, Any] | None:
    return _one(db, f"SELECT * FROM {USERS} WHERE username = ?", [username])


def _sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def add_user(db: Any, username: str, password: str, role: str = "staff") -> None:
    if role not in ROLES:
        raise AuthError(f"role {role!r} is not one of {ROLES}")
    if not username or len(username) > 64 or not username.replace("_", "").replace(".", "").isalnum():
        raise AuthError(f"user name {username!r}: use 1-64 letters, digits, '_' or '.'")
    if len(password) < 8:
        raise AuthError("password too short: use at least 8 characters")
    password_hash = _hasher.hash(password)  # slow: before the write lock is taken
    with write_transaction(db):
        db.execute(
            f"INSERT INTO {USERS} (username, password_hash, role, created_at, disabled) VALUES (?, ?, ?, ?, 0) "
            "ON CONFLICT (username) DO UPDATE SET password_hash = excluded.password_hash, role = excluded.role, "
            "created_at = excluded.created_at, disabled = excluded.disabled",
            [username, password_hash, role, time.time()],
        )
        db.execute(
            f"DELETE FROM {SESSIONS} WHERE username = ?", [username]
        )  # a new password ends old sessions


def disable_user(db: Any, username: str) -> bool:
    """Refuse the user's log-ins, sessions and tokens from now on; False if there is no such user."""
    with write_transaction(db):
        if db.execute(f"UPDATE {USERS} SET disabled = 1 WHERE username = ?", [username]).rowcount == 0:
            return False
        db.execute(f"DELETE FROM {SESSIONS} WHERE username = ?", [username])
    return True


def check_password(db: Any, username: str, password: str) -> dict[str, Any] | None:
    user = _user(db, username)
    if user is None:
        _hasher.hash(password)  # same work either way: no user enumeration by timing
        return None
    if user["disabled"]:
        return None
    try:
        _hasher.verify(user["password_hash"], password)
    except (VerificationError, InvalidHashError):
        return None
    if _hasher.check_needs_rehash(user["password_hash"]):
        new_hash = _hasher.hash(password)
        with write_transaction(db):
            db.execute(f"UPDATE {USERS} SET password_hash = ? WHERE username = ?", [new_hash, username])
    return user


def create_session(db: Any, username: str, hours: float) -> tuple[str, str]:
    """Return (cookie value, csrf token)."""
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    now = time.time()
    with write_transaction(db):
        db.execute(f"DELETE FROM {SESSIONS} WHERE expires_at < ?", [now])
        db.execute(
            f"INSERT INTO {SESSIONS} (token_sha256, username, csrf, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
            [_sha(token), username, csrf, now, now + hours * 3600],
        )
    return token, csrf


def end_session(db: Any, token: str) -> None:
    db.execute(f"DELETE FROM {SESSIONS} WHERE token_sha256 = ?", [_sha(token)])


def create_token(db: Any, username: str, name: str) -> str:
    """A new API token for ``username`` (shown once: only its SHA-256 is stored); :class:`NoSuchUser` if
    there is no such user."""
    token = "amgs_" + secrets.token_urlsafe(32)
    with write_transaction(db):
        if _user(db, username) is None:
            raise NoSuchUser(f"no user {username!r}")
        db.execute(
            f"INSERT INTO {TOKENS} (token_sha256, name, username, created_at) VALUES (?, ?, ?, ?)",
            [_sha(token), name, username, time.time()],
        )
    return token


@dataclass(frozen=True)
class Principal:
    username: str
    role: str
    via: str  # "session" or "token"
    csrf: str | None = None

    @property
    def can_act(self) -> bool:
        return self.role in ("staff", "admin")

    @property
    def can_rate(self) -> bool:
        return self.role in ("rater", "staff", "admin")


def principal(db: Any, request: Request) -> Principal | None:
    """Who is making this request (None = anonymous)."""
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        token_sha = _sha(auth[7:].strip())
        row = _one(
            db,
            f"SELECT t.username, u.role, u.disabled FROM {TOKENS} t JOIN {USERS} u USING (username) "
            "WHERE t.token_sha256 = ?",
            [token_sha],
        )
        if row is None or row["disabled"]:
            raise HTTPException(401, "invalid API token", headers={"WWW-Authenticate": "Bearer"})
        db.execute(f"UPDATE {TOKENS} SET last_used_at = ? WHERE token_sha256 = ?", [time.time(), token_sha])
        return Principal(row["username"], row["role"], "token")
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        return None
    row = _one(
        db,
        f"SELECT s.username, u.role, s.csrf, s.expires_at, u.disabled FROM {SESSIONS} s JOIN {USERS} u "
        "USING (username) WHERE s.token_sha256 = ?",
        [_sha(cookie)],
    )
    if row is None or row["expires_at"] < time.time() or row["disabled"]:
        return None
    return Principal(row["username"], row["role"], "session", row["csrf"])


def check_csrf(request: Request, who: Principal, form_token: str | None = None) -> None:
    """Cookie-authenticated state changes must carry the session's CSRF token."""
    if who.via != "session":
        return
    sent = request.headers.get("x-csrf-token") or form_token or ""
    if not who.csrf or not hmac.compare_digest(sent, who.csrf):
        raise HTTPException(403, "missing or wrong CSRF token: reload the page and try again")


def new_login_csrf() -> str:
    return secrets.token_urlsafe(24)
