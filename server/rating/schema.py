"""Tables of the rating pool, the ratings and the raters' sessions (a schema migration of the collector).

- ``rating_items``    one row per crop sampled for rating: a snapshot of its score (cage, animal, group,
                      device, capture time, phase, model name/version/sha, P(pain), label, AU heads) so the
                      item and its ratings outlive raw-score retention and the crop cap; ``image`` is the
                      pool's own copy (``state_dir/rating/``), ``state`` open / done / expired
- ``rating_days``     which cage-days have been sampled (a cage whose crops arrive late is sampled later)
- ``ratings``         one row per rater, item and showing (``occasion`` 2 = the repeat): the five action
                      units 0/1/2 (NULL = not visible), ``unscorable``, when, how long it took
- ``rating_changes``  the previous values of a rating a rater went back and changed (nothing is lost)
- ``rater_sessions``  a rater's sitting: when started, last active, ended
- ``rater_queue``     the session's items in their random order, each under a random opaque ``token``
                      (the only name the page, the URLs and the image requests ever see)
"""

from __future__ import annotations

from amgs.contract import AU_KEYS

_AU_MODEL = ", ".join(f"au_{k} REAL" for k in AU_KEYS)
_AU_HUMAN = ", ".join(f"au_{k} INTEGER CHECK (au_{k} IN (0, 1, 2))" for k in AU_KEYS)

RATING_DDL = f"""
CREATE TABLE rating_items (
    item_id INTEGER PRIMARY KEY, msg_id TEXT NOT NULL UNIQUE, sampled_at REAL NOT NULL, day TEXT NOT NULL,
    stratum TEXT NOT NULL, repeat INTEGER NOT NULL DEFAULT 0, state TEXT NOT NULL DEFAULT 'open',
    state_at REAL, image TEXT, source TEXT,
    t REAL NOT NULL, site TEXT, device_id TEXT NOT NULL, cage_id TEXT NOT NULL, animal_id TEXT, group_id TEXT,
    phase TEXT, model_name TEXT, model_version TEXT, model_sha256 TEXT,
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
