"""Rater sessions (server/rating/sessions.py): random queue under opaque tokens, ratings stored and changed,
stop and resume, repeats shown again later, items done once enough raters scored them."""

import datetime as dt
import json

import pytest

from amgs.contract import AU_KEYS
from amgs.server.rating import sessions as S
from amgs.server.rating.pool import fill_pool
from amgs.server.rating.sampling import local_day_bounds
from tests.rating_helpers import add_score, open_db
from tests.server_support import server_config

DAY = dt.date(2026, 3, 2)
T0, _ = local_day_bounds(DAY, "UTC")
NOW = T0 + 86400 + 3600


def ones(v=1):
    return dict.fromkeys(AU_KEYS, v)


@pytest.fixture
def pool(tmp_path):
    config = server_config(
        tmp_path,
        rating={"per_cage_per_day": 10, "repeat_share": 0.2, "repeat_gap": 3, "session_items": 12},
    )
    conn = open_db(config).local().conn
    for cage in ("C1", "C2"):
        for i in range(30):
            add_score(conn, config.storage.state_dir, f"{cage}-{i}", cage, T0 + i * 2800, (i % 10) / 10)
        add_score(conn, config.storage.state_dir, f"{cage}-next", cage, T0 + 86400 + 60, 0.1, crop=False)
    assert fill_pool(conn, config, now=NOW)["added"] == 20
    return config, conn


def test_queue_is_random_opaque_and_repeats_come_later(pool):
    config, conn = pool
    ref = S.open_session(conn, "ann", config.rating, now=NOW)
    rows = conn.execute(
        "SELECT pos, token, item_id, occasion FROM rater_queue WHERE session_id = ? ORDER BY pos",
        [ref.session_id],
    ).fetchall()
    fresh = [r for r in rows if r[3] == 1]
    assert len(fresh) == 12 and len({r[2] for r in fresh}) == 12
    tokens = [r[1] for r in rows]
    assert len(set(tokens)) == len(tokens) and all(len(t) >= 24 for t in tokens)
    msg_ids = {m for (m,) in conn.execute("SELECT msg_id FROM rating_items")}
    assert not any(m in t or t == str(r[2]) for r in rows for t in [r[1]] for m in msg_ids)
    first = {r[2]: r[0] for r in rows if r[3] == 1}
    for pos, _, item, occ in rows:
        if occ == 2:
            assert pos >= first[item] + 4  # at least repeat_gap other items in between
    v = S.view(conn, ref)
    assert set(v) == {"pos", "total", "done", "token", "values"}
    assert v["pos"] == 0 and v["total"] == len(rows) and v["done"] == 0 and v["values"] is None


def test_rate_stop_resume_change_and_done(pool):
    config, conn = pool
    ref = S.open_session(conn, "ann", config.rating, now=NOW)
    v = S.view(conn, ref)
    total = v["total"]
    v = S.submit(conn, ref, v["token"], {**ones(2), "ep": None}, now=NOW + 1)
    assert v["pos"] == 1 and v["done"] == 1
    v = S.submit(conn, ref, v["token"], None, unscorable=True, now=NOW + 2)
    assert v["pos"] == 2
    # stop here; the same rater comes back later and resumes at the first unrated position
    again = S.open_session(conn, "ann", config.rating, now=NOW + 3600)
    assert again == ref and S.view(conn, again)["pos"] == 2
    # going back shows the rater's own values, and a change keeps the previous ones
    back = S.view(conn, ref, 0)
    assert back["values"] == {"unscorable": False, "au": {**ones(2), "ep": None}}
    S.submit(conn, ref, back["token"], ones(0), now=NOW + 3700)
    change = conn.execute("SELECT previous FROM rating_changes").fetchone()
    assert json.loads(change[0])["au_ot"] == 2
    assert conn.execute("SELECT count(*) FROM ratings WHERE rater = 'ann'").fetchone()[0] == 2
    # bad values are refused and nothing is stored
    with pytest.raises(S.RatingError):
        S.submit(conn, ref, S.view(conn, ref)["token"], {**ones(), "ot": 3})
    with pytest.raises(S.RatingError):
        S.submit(conn, ref, S.view(conn, ref)["token"], {"ot": 1})
    with pytest.raises(S.RatingError):
        S.submit(conn, ref, "not-a-token", ones())
    # another rater cannot use ann's session
    with pytest.raises(S.RatingError):
        S.session_for(conn, "bob", ref.session_id)
    while (v := S.view(conn, ref))["token"]:
        S.submit(conn, ref, v["token"], ones(1), now=NOW + 4000)
    assert v["done"] == total and v["pos"] == total
    # bob gets ann's items first (overlap for inter-rater agreement); two raters make an item done
    bob = S.open_session(conn, "bob", config.rating, now=NOW + 5000)
    bob_items = {
        i
        for (i,) in conn.execute(
            "SELECT item_id FROM rater_queue WHERE session_id = ? AND occasion = 1", [bob.session_id]
        )
    }
    ann_items = {i for (i,) in conn.execute("SELECT DISTINCT item_id FROM ratings WHERE rater = 'ann'")}
    assert bob_items == ann_items
    while (v := S.view(conn, bob))["token"]:
        S.submit(conn, bob, v["token"], ones(1), now=NOW + 6000)
    done = conn.execute("SELECT count(*) FROM rating_items WHERE state = 'done'").fetchone()[0]
    assert done == 12


def test_second_showing_of_earlier_repeats_in_a_later_session(pool):
    config, conn = pool
    conn.execute("UPDATE rating_items SET repeat = 0")
    ref = S.open_session(conn, "ann", config.rating, now=NOW)
    while (v := S.view(conn, ref))["token"]:
        S.submit(conn, ref, v["token"], ones(1), now=NOW + 10)
    firsts = {i for (i,) in conn.execute("SELECT item_id FROM ratings WHERE rater = 'ann'")}
    assert len(firsts) == 12
    conn.execute("UPDATE rating_items SET repeat = 1")  # now every item is a repeat
    nxt = S.open_session(conn, "ann", config.rating, now=NOW + 86400)
    assert nxt.session_id != ref.session_id
    rows = conn.execute(
        "SELECT item_id, occasion FROM rater_queue WHERE session_id = ?", [nxt.session_id]
    ).fetchall()
    carried = {i for i, o in rows if o == 2} - {i for i, o in rows if o == 1}
    assert carried <= firsts and len(carried) == config.rating.session_items // 2  # at most half a session
    assert not {i for i, o in rows if o == 1} & firsts  # nothing ann scored comes back as new
    while (v := S.view(conn, nxt))["token"]:
        S.submit(conn, nxt, v["token"], ones(2), now=NOW + 86500)
    seconds = conn.execute("SELECT count(*) FROM ratings WHERE rater = 'ann' AND occasion = 2").fetchone()[0]
    assert seconds >= 6
