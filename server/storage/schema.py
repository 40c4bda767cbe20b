"""The collector's tables: names, columns and DDL, one definition each (migrations.py creates them).

Tables (one line each; times ending in ``_t``/``t``/``_at`` REAL are Unix seconds UTC, text ``*_at``
fields are the contract's RFC 3339 strings):

- ``scores``            one row per stored score record (``msg_id`` primary key = idempotency key)
- ``devices``           one row per device: status / last will, counters, committed watermark
- ``seq_gaps``          ranges of per-device sequence numbers found missing (open, filled or lost)
- ``quarantine``        messages that failed validation: topic, reason, raw payload (size-capped), repeats
- ``status_log``        device status history: every state/reason change, else one row per 10 min
- ``crops``             JPEG face crops received (file under ``state_dir/crops``), by score ``msg_id``
- ``sites``, ``rooms``, ``cages``   where cages are
- ``device_assignments`` which device watches which cage (and view) over which period
- ``animals``           animal id, strain, sex, coat, cage, housing (single/group), group
- ``groups``            treatment groups / cohorts (e.g. laparotomy, sham, laparotomy + analgesic)
- ``events``            timestamped events: surgery, analgesic, anaesthesia, handling, weight, other
- ``rollup_5m``, ``rollup_1h``  pre-aggregated score sums per (cage, animal, bucket) for fast time courses
  (scorable records only, plus counts of the unscorable ones by reason: see :func:`rollup_select`)
- ``rejects_5m``, ``rejects_1h`` frames rejected per (device, bucket, reason), from status counter deltas
- ``clock_anchors``     per device boot: wall time - monotonic time, from a synchronized record
- ``meta``              key/value facts about this database (created, migrations applied)
- ``web_users``, ``web_sessions``, ``web_tokens``  dashboard accounts (Argon2id hashes), log-in sessions and
  API tokens (SHA-256 only; see ``server/web/auth.py``)
- ``alerts``, ``alert_events``, ``alert_outbox``  one row per alert (current state), its history, and the
  durable notification outbox (text times are RFC 3339; see ``server/alerts/``)
- ``rating_items``      the rating pool: one row per crop sampled for blinded human scoring, with a snapshot of
  its score (cage, animal, group, device, capture time, phase, model, P(pain), AU heads) so it and its
  ratings outlive raw-score retention and the crop cap; its images are the pool's own copies under
  ``state_dir/rating/`` (see ``server/rating/``)
- ``rating_days``       which cage-days have been sampled into the pool
- ``ratings``           one row per rater, item and showing: the five action units 0/1/2 (NULL = not
  visible) or not scorable, when, how long it took; ``rating_changes`` keeps the values a rater replaced
- ``rater_sessions``, ``rater_queue``  a rater's sittings and their random order under opaque tokens
"""

from __future__ import annotations

import sqlite3

from amgs.contract import AU_KEYS

SCORE_COLUMNS = (
    "msg_id",
    "device_id",
    "site",
    "cage_id",
    "animal_id",
    "view",
    "seq",
    "captured_at",
    "t",
    "received_at",
    "clock_synced",
    "boot_id",
    "monotonic_s",
    "model_name",
    "model_version",
    "model_sha256",
    "model_synthetic",
    "p_pain",
    "label",
    "is_pain",
    "amgs",
    "confidence",
    "needs_review",
    *(f"au_{k}" for k in AU_KEYS),
    "mgs_au",
    "sharpness",
    "exposure",
    "face_px",
    "motion",
    "asleep",
    "inference_ms",
    "has_crop",
    "face_box",
    "outcome",
    "unscorable_reason",
    "domain_distance",
    "det_score",
)

ROLLUP_TABLES = {300: "rollup_5m", 3600: "rollup_1h"}
"""Rollup bucket width in seconds -> table."""

ROLLUP_SUMS_V2 = (
    "n",
    "sum_amgs",
    "sumsq_amgs",
    "n_pain",
    "n_review",
    "n_unsynced",
    "n_au",
    *(f"sum_{k}" for k in AU_KEYS),
    "sum_mgs_au",
    "n_motion",
    "sum_motion",
    "n_asleep",
)
"""The rollup sums as schema versions 2 to 9 held them (frozen: migration 2 creates these)."""

UNSCORABLE_SUMS = {"n_out_of_domain": "out_of_domain", "n_no_face": "no_face", "n_quality": "quality"}
"""Per-reason counts of unscorable records (``amgs.contract.UNSCORABLE_REASONS``), added by migration 10."""

ROLLUP_SUMS = (*ROLLUP_SUMS_V2, "n_unscorable", *UNSCORABLE_SUMS)
"""Every rollup sum. All but the ``n_unscorable``/``n_<reason>`` counts sum scorable records only."""

SCORABLE = "coalesce(outcome, '') != 'unscorable'"
"""SQL: a ``scores`` row that counts (NULL outcome: a device older than the outcome field = its label).
An unscorable record keeps its raw p_pain/label/amgs for the record only: it is never part of a mean,
a fraction pain, a rollup sum (other than the unscorable counts) or an alert rule."""
UNSCORABLE = "outcome = 'unscorable'"


V1_DDL = f"""
CREATE TABLE scores (
    msg_id TEXT PRIMARY KEY, device_id TEXT NOT NULL, site TEXT NOT NULL, cage_id TEXT NOT NULL,
    animal_id TEXT, view TEXT, seq INTEGER NOT NULL, captured_at TEXT NOT NULL, t REAL NOT NULL,
    received_at REAL NOT NULL, clock_synced INTEGER NOT NULL, boot_id TEXT, monotonic_s REAL,
    model_name TEXT, model_version TEXT, model_sha256 TEXT,
    p_pain REAL NOT NULL, label TEXT NOT NULL, is_pain INTEGER NOT NULL, amgs REAL NOT NULL,
    confidence REAL, needs_review INTEGER,
    {", ".join(f"au_{k} REAL" for k in AU_KEYS)}, mgs_au REAL,
    sharpness REAL, exposure REAL, face_px INTEGER, motion REAL, asleep INTEGER,
    inference_ms REAL, has_crop INTEGER, face_box TEXT
);
CREATE INDEX scores_cage_t ON scores (cage_id, t);
CREATE INDEX scores_animal_t ON scores (animal_id, t) WHERE animal_id IS NOT NULL;
CREATE INDEX scores_device_seq ON scores (device_id, seq);
CREATE INDEX scores_t ON scores (t);

CREATE TABLE devices (
    device_id TEXT PRIMARY KEY, site TEXT, registered INTEGER NOT NULL DEFAULT 0, notes TEXT,
    state TEXT, state_since REAL, reason TEXT, status_at TEXT, status_received_at REAL,
    last_seen REAL, last_score_t REAL, queue_depth INTEGER, unconfirmed INTEGER, reported_last_seq INTEGER,
    software TEXT, model_name TEXT, model_version TEXT, model_sha256 TEXT, last_capture_at TEXT,
    inference_ms REAL, disk_free_bytes INTEGER, cpu_temp_c REAL, clock_synced INTEGER,
    frames_json TEXT, rejected_json TEXT, errors_json TEXT, views_json TEXT, storage_warning TEXT,
    committed_seq INTEGER NOT NULL DEFAULT 0, max_seq INTEGER NOT NULL DEFAULT 0,
    scores_total INTEGER NOT NULL DEFAULT 0, duplicates INTEGER NOT NULL DEFAULT 0,
    gaps_total INTEGER NOT NULL DEFAULT 0, missing_open INTEGER NOT NULL DEFAULT 0,
    lost_total INTEGER NOT NULL DEFAULT 0, unsynced_total INTEGER NOT NULL DEFAULT 0,
    seq_resets INTEGER NOT NULL DEFAULT 0, seq_anomalies INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE seq_gaps (
    id INTEGER PRIMARY KEY, device_id TEXT NOT NULL, first_seq INTEGER NOT NULL, last_seq INTEGER NOT NULL,
    size INTEGER NOT NULL, filled INTEGER NOT NULL DEFAULT 0, state TEXT NOT NULL DEFAULT 'open',
    detected_at REAL NOT NULL, closed_at REAL
);
CREATE INDEX seq_gaps_device ON seq_gaps (device_id, state);

CREATE TABLE quarantine (
    id INTEGER PRIMARY KEY, received_at REAL NOT NULL, last_received_at REAL NOT NULL,
    topic TEXT NOT NULL, device_id TEXT, reason TEXT NOT NULL, payload BLOB, payload_size INTEGER NOT NULL,
    payload_sha1 TEXT NOT NULL, count INTEGER NOT NULL DEFAULT 1, UNIQUE (topic, payload_sha1)
);
CREATE INDEX quarantine_received ON quarantine (received_at);

CREATE TABLE status_log (
    id INTEGER PRIMARY KEY, device_id TEXT NOT NULL, at TEXT NOT NULL, t REAL NOT NULL, received_at REAL NOT NULL,
    state TEXT NOT NULL, reason TEXT, queue_depth INTEGER, frames_json TEXT, rejected_json TEXT
);
CREATE INDEX status_log_device_t ON status_log (device_id, t);

CREATE TABLE crops (
    msg_id TEXT PRIMARY KEY, device_id TEXT NOT NULL, received_at REAL NOT NULL, size INTEGER NOT NULL,
    path TEXT NOT NULL
);
CREATE INDEX crops_received ON crops (received_at);

CREATE TABLE sites (site_id TEXT PRIMARY KEY, name TEXT, notes TEXT);
CREATE TABLE rooms (room_id TEXT PRIMARY KEY, site_id TEXT, name TEXT, notes TEXT);
CREATE TABLE cages (cage_id TEXT PRIMARY KEY, site_id TEXT, room_id TEXT, name TEXT, notes TEXT);
CREATE TABLE device_assignments (
    id INTEGER PRIMARY KEY, device_id TEXT NOT NULL, cage_id TEXT NOT NULL, view TEXT,
    start_t REAL NOT NULL, end_t REAL, notes TEXT
);
CREATE INDEX device_assignments_device ON device_assignments (device_id);
CREATE TABLE groups (group_id TEXT PRIMARY KEY, name TEXT, description TEXT, study TEXT);
CREATE TABLE animals (
    animal_id TEXT PRIMARY KEY, cage_id TEXT, group_id TEXT, strain TEXT, sex TEXT, coat TEXT,
    housing TEXT, born TEXT, notes TEXT
);
CREATE INDEX animals_cage ON animals (cage_id);
CREATE INDEX animals_group ON animals (group_id);
CREATE TABLE events (
    id INTEGER PRIMARY KEY, kind TEXT NOT NULL, t REAL NOT NULL, at TEXT NOT NULL,
    animal_id TEXT, cage_id TEXT, value REAL, unit TEXT, notes TEXT, created_at REAL
);
CREATE INDEX events_animal ON events (animal_id, t);
CREATE INDEX events_cage ON events (cage_id, t);

CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);
"""


def rollup_ddl(table: str, sums: tuple[str, ...] = ROLLUP_SUMS) -> str:
    cols = ", ".join(f"{c} {'INTEGER' if c.startswith('n') else 'REAL'} NOT NULL DEFAULT 0" for c in sums)
    return (
        f"CREATE TABLE {table} (cage_id TEXT NOT NULL, animal_id TEXT NOT NULL DEFAULT '', "
        f"bucket INTEGER NOT NULL, {cols}, PRIMARY KEY (cage_id, bucket, animal_id)) WITHOUT ROWID;"
        f"CREATE INDEX {table}_bucket ON {table} (bucket);"
        f"CREATE INDEX {table}_animal ON {table} (animal_id, bucket) WHERE animal_id != '';"
    )


def _rollup_exprs(ok: str) -> dict[str, str]:
    """Each rollup sum as an aggregate over ``scores`` rows; the ``ROLLUP_SUMS_V2`` ones over rows
    where ``ok`` holds (the scorable ones)."""

    def only(expr: str) -> str:
        return f"CASE WHEN {ok} THEN {expr} END"

    return {
        "n": f"count({only('1')})",
        "sum_amgs": f"total({only('amgs')})",
        "sumsq_amgs": f"total({only('amgs * amgs')})",
        "n_pain": f"total({only('is_pain')})",
        "n_review": f"total({only('needs_review')})",
        "n_unsynced": f"total({only('1 - clock_synced')})",
        "n_au": f"count({only('au_ot')})",
        **{f"sum_{k}": f"total({only(f'au_{k}')})" for k in AU_KEYS},
        "sum_mgs_au": f"total({only('mgs_au')})",
        "n_motion": f"count({only('motion')})",
        "sum_motion": f"total({only('motion')})",
        "n_asleep": f"total({only('asleep')})",
        "n_unscorable": f"count(CASE WHEN {UNSCORABLE} THEN 1 END)",
        **{
            c: f"count(CASE WHEN {UNSCORABLE} AND unscorable_reason = '{reason}' THEN 1 END)"
            for c, reason in UNSCORABLE_SUMS.items()
        },
    }


def rollup_select(width: int, where: str = "1", sign: str = "", *, before_outcomes: bool = False) -> str:
    """SQL aggregating ``scores`` rows into rollup sums: the one definition. The migration backfills with
    it, the writer adds each batch with it, and re-anchoring moves scores with it (``sign="-"`` removes).

    Unscorable records count in ``n_unscorable`` and their reason's ``n_<reason>`` only. With
    ``before_outcomes`` it is the select of schema versions 2 to 9 (``ROLLUP_SUMS_V2``, every row scorable:
    ``scores.outcome`` came with version 10), for the migrations and tests that build such databases."""
    exprs = _rollup_exprs("1 = 1" if before_outcomes else SCORABLE)
    sums = ", ".join(f"{sign}{exprs[c]} AS {c}" for c in (ROLLUP_SUMS_V2 if before_outcomes else ROLLUP_SUMS))
    return (
        f"SELECT cage_id, coalesce(animal_id, '') AS animal_id, CAST(t / {width} AS INTEGER) * {width} AS bucket, "
        f"{sums} FROM scores WHERE {where} GROUP BY 1, 2, 3"
    )


REJECT_TABLES = {300: "rejects_5m", 3600: "rejects_1h"}
"""Frames rejected per device, reason and bucket (deltas of the devices' cumulative status counters)."""


def reject_deltas(previous: dict | None, current: dict | None) -> dict[str, int]:
    """Frames rejected between two cumulative counter snapshots (a counter that went down restarted)."""
    if not previous or not current:
        return {}
    out = {}
    for reason, value in current.items():
        try:
            value = int(value)
            delta = value - int(previous.get(reason, 0))
        except (TypeError, ValueError):
            continue
        delta = value if delta < 0 else delta
        if delta > 0:
            out[str(reason)] = delta
    return out


def add_rejects(conn: sqlite3.Connection, device_id: str, t: float, deltas: dict[str, int]) -> None:
    for width, table in REJECT_TABLES.items():
        conn.executemany(
            f"INSERT INTO {table} (device_id, bucket, reason, n) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (device_id, bucket, reason) DO UPDATE SET n = n + excluded.n",
            [(device_id, int(t // width) * width, reason, n) for reason, n in deltas.items()],
        )


USERS, SESSIONS, TOKENS = "web_users", "web_sessions", "web_tokens"
ALERTS, ALERT_EVENTS, ALERT_OUTBOX = "alerts", "alert_events", "alert_outbox"

AUTH_TABLES_DDL = {
    USERS: f"""CREATE TABLE {USERS} (
        username TEXT PRIMARY KEY, password_hash TEXT NOT NULL, role TEXT NOT NULL, created_at REAL,
        disabled INTEGER)""",
    SESSIONS: f"""CREATE TABLE {SESSIONS} (
        token_sha256 TEXT PRIMARY KEY, username TEXT, csrf TEXT, created_at REAL, expires_at REAL)""",
    TOKENS: f"""CREATE TABLE {TOKENS} (
        token_sha256 TEXT PRIMARY KEY, name TEXT, username TEXT, created_at REAL, last_used_at REAL)""",
}
AUTH_INDEXES = (
    f"CREATE INDEX {SESSIONS}_username ON {SESSIONS} (username)",
    f"CREATE INDEX {SESSIONS}_expires ON {SESSIONS} (expires_at)",
    f"CREATE INDEX {TOKENS}_username ON {TOKENS} (username)",
)

ALERT_TABLES_DDL = {
    ALERTS: f"""CREATE TABLE {ALERTS} (
        alert_id TEXT PRIMARY KEY, dedupe_key TEXT NOT NULL, rule TEXT NOT NULL, site TEXT NOT NULL,
        cage_id TEXT NOT NULL, animal_id TEXT, device_id TEXT, severity TEXT NOT NULL, state TEXT NOT NULL,
        opened_at TEXT NOT NULL, updated_at TEXT, last_active_at TEXT, last_notified_at TEXT,
        notify_count INTEGER, message TEXT, value REAL, threshold REAL, acknowledged_by TEXT,
        acknowledged_at TEXT, ack_comment TEXT, resolved_by TEXT, resolved_at TEXT, resolve_comment TEXT)""",
    ALERT_EVENTS: f"""CREATE TABLE {ALERT_EVENTS} (
        id INTEGER PRIMARY KEY, alert_id TEXT REFERENCES {ALERTS} (alert_id), at TEXT, kind TEXT, actor TEXT,
        detail TEXT)""",
    ALERT_OUTBOX: f"""CREATE TABLE {ALERT_OUTBOX} (
        id INTEGER PRIMARY KEY, alert_id TEXT, channel TEXT, target TEXT, payload TEXT, created_at TEXT,
        attempts INTEGER, next_attempt_at TEXT, delivered_at TEXT, last_error TEXT)""",
}
ALERT_INDEXES = (
    f"CREATE INDEX {ALERTS}_state_dedupe_key ON {ALERTS} (state, dedupe_key)",
    f"CREATE INDEX {ALERTS}_site_cage_state ON {ALERTS} (site, cage_id, state)",
    f"CREATE INDEX {ALERTS}_opened_at ON {ALERTS} (opened_at)",
    f"CREATE INDEX {ALERT_EVENTS}_alert_id ON {ALERT_EVENTS} (alert_id, id)",
    f"CREATE INDEX {ALERT_OUTBOX}_due ON {ALERT_OUTBOX} (delivered_at, next_attempt_at)",
)


# ---- blinded human scoring (server/rating): the pool, the ratings, the raters' sessions (version 8)

_AU_MODEL = ", ".join(f"au_{k} REAL" for k in AU_KEYS)
_AU_HUMAN = ", ".join(f"au_{k} INTEGER CHECK (au_{k} IN (0, 1, 2))" for k in AU_KEYS)

RATING_DDL = f"""
CREATE TABLE rating_items (
    item_id INTEGER PRIMARY KEY, msg_id TEXT NOT NULL UNIQUE, sampled_at REAL NOT NULL, day TEXT NOT NULL,
    stratum TEXT NOT NULL, repeat INTEGER NOT NULL DEFAULT 0, state TEXT NOT NULL DEFAULT 'open',
    state_at REAL, image TEXT, source TEXT,
    t REAL NOT NULL, site TEXT, device_id TEXT NOT NULL, cage_id TEXT NOT NULL, animal_id TEXT, group_id TEXT,
    phase TEXT, model_name TEXT, model_version TEXT, model_sha256 TEXT, model_synthetic INTEGER,
    p_pain REAL, is_pain INTEGER, amgs REAL, needs_review INTEGER, asleep INTEGER, {_AU_MODEL}, mgs_au REAL
);
CREATE INDEX rating_items_state ON rating_items (state, item_id);
CREATE INDEX rating_items_t ON rating_items (t);
CREATE TABLE rating_days (
    day TEXT NOT NULL, cage_id TEXT NOT NULL, n INTEGER NOT NULL, sampled_at REAL NOT NULL,
    PRIMARY KEY (day, cage_id)
) WITHOUT ROWID;
CREATE TABLE rater_sessions (
    session_id INTEGER PRIMARY KEY, rater TEXT NOT NULL, started_at REAL NOT NULL, last_at REAL NOT NULL,
    ended_at REAL, n_items INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX rater_sessions_rater ON rater_sessions (rater, ended_at);
CREATE TABLE rater_queue (
    session_id INTEGER NOT NULL, pos INTEGER NOT NULL, token TEXT NOT NULL UNIQUE, item_id INTEGER NOT NULL,
    occasion INTEGER NOT NULL, rating_id INTEGER, shown_at REAL, PRIMARY KEY (session_id, pos)
);
CREATE TABLE ratings (
    rating_id INTEGER PRIMARY KEY, item_id INTEGER NOT NULL REFERENCES rating_items (item_id),
    rater TEXT NOT NULL, occasion INTEGER NOT NULL DEFAULT 1, session_id INTEGER, rated_at REAL NOT NULL,
    {_AU_HUMAN}, unscorable INTEGER NOT NULL DEFAULT 0, duration_ms INTEGER, changed_at REAL,
    UNIQUE (item_id, rater, occasion)
);
CREATE INDEX ratings_rated_at ON ratings (rated_at);
CREATE INDEX ratings_rater ON ratings (rater, item_id);
CREATE TABLE rating_changes (
    id INTEGER PRIMARY KEY, rating_id INTEGER NOT NULL, changed_at REAL NOT NULL, previous TEXT NOT NULL
);
"""
