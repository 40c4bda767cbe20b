"""The collector's writer on a real SQLite file: idempotency, gaps, watermark, quarantine, status, crops,
and thousands of fuzzed payloads (hypothesis) that must all end up quarantined without a crash."""

from __future__ import annotations

import datetime as dt
import json
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from server_support import server_config

from amgs.contract import AU_KEYS, crop_topic, encode, score_topic, status_topic
from amgs.demo import loadgen
from amgs.server.ingest.classify import Incoming
from amgs.server.ingest.store import Ingestor
from amgs.server.storage.db import open_database


@pytest.fixture
def ingestor(tmp_path):
    config = server_config(tmp_path, ingest={"gap_timeout_s": 100})
    return Ingestor(open_database(config), config)


def scores(ingestor, messages, mid0: int = 1):
    items = [
        Incoming(*loadgen.score_payload(m), mid=mid0 + i, qos=1, received_at=time.time())
        for i, m in enumerate(messages)
    ]
    return ingestor.process(items)


def q(ingestor, sql, *params):
    return ingestor.conn.execute(sql, params).fetchall()


def test_redelivery_never_duplicates(ingestor):
    msgs = [loadgen.score_message("d1", s) for s in range(1, 11)]
    first = scores(ingestor, msgs)
    again = scores(ingestor, msgs + msgs[:3])  # broker redelivery + duplicates inside one batch
    assert first.stored == 10 and again.stored == 0 and again.duplicates == 13
    assert q(ingestor, "SELECT count(*) FROM scores") == [(10,)]
    assert q(ingestor, "SELECT scores_total, duplicates, committed_seq FROM devices") == [(10, 13, 10)]
    assert len(again.acks) == 13  # duplicates are acknowledged too, or the broker would resend them forever
    assert again.watermarks == {"d1": ("lab", 10)}
    (n,) = q(ingestor, "SELECT sum(n) FROM rollup_5m")[0]
    assert n == 10  # rollups count each score once


def test_gap_counted_then_filled_and_watermark_contiguous(ingestor):
    msgs = {s: loadgen.score_message("d1", s) for s in range(1, 11)}
    r = scores(ingestor, [msgs[s] for s in (1, 2, 3, 7, 8)])
    assert r.watermarks["d1"] == ("lab", 3)  # 4-6 missing: the watermark stops below the gap
    assert q(ingestor, "SELECT first_seq, last_seq, size, filled, state FROM seq_gaps") == [
        (4, 6, 3, 0, "open")
    ]
    assert q(ingestor, "SELECT gaps_total, missing_open FROM devices") == [(1, 3)]
    r = scores(ingestor, [msgs[5], msgs[4]])
    assert r.watermarks["d1"] == ("lab", 5)
    r = scores(ingestor, [msgs[6], msgs[9], msgs[10]])
    assert r.watermarks["d1"] == ("lab", 10)
    assert q(ingestor, "SELECT filled, state FROM seq_gaps") == [(3, "filled")]
    assert q(ingestor, "SELECT gaps_total, missing_open, lost_total FROM devices") == [(1, 0, 0)]


def test_gap_given_up_after_timeout_moves_watermark_and_late_record_still_counts(ingestor):
    msgs = {s: loadgen.score_message("d1", s) for s in range(1, 6)}
    scores(ingestor, [msgs[1], msgs[4], msgs[5]])
    assert ingestor.expire_gaps(time.time()) == {}  # not old enough yet
    moved = ingestor.expire_gaps(time.time() + 101)
    assert moved == {"d1": ("lab", 5)}
    assert q(ingestor, "SELECT missing_open, lost_total, committed_seq FROM devices") == [(0, 2, 5)]
    scores(ingestor, [msgs[2]])  # arrives after being given up: stored, the loss count shrinks
    assert q(ingestor, "SELECT missing_open, lost_total FROM devices") == [(0, 1)]
    assert q(ingestor, "SELECT count(*) FROM scores") == [(4,)]


def test_state_survives_a_new_writer(tmp_path):
    config = server_config(tmp_path)
    db = open_database(config)
    msgs = {s: loadgen.score_message("d1", s) for s in range(1, 6)}
    scores(Ingestor(db, config), [msgs[1], msgs[2], msgs[4]])
    again = Ingestor(db, config)  # a restart: watermark and pending seqs come from the database
    assert scores(again, [msgs[3]]).watermarks["d1"] == ("lab", 4)


def test_sequence_restart_starts_a_new_epoch_that_survives_a_collector_restart(tmp_path):
    config = server_config(tmp_path)
    db = open_database(config)
    ing = Ingestor(db, config)
    scores(ing, [loadgen.score_message("d1", s) for s in (1, 2, 3, 4, 5, 6, 8)])  # 7 missing (old numbering)
    time.sleep(0.01)
    new = {s: loadgen.score_message("d1", s) for s in range(1, 5)}
    r = scores(ing, [new[1], new[2], new[4]])  # a fresh outbox numbering from 1 again, 3 not yet here
    assert r.stored == 3 and r.watermarks["d1"] == ("lab", 2)
    assert q(ing, "SELECT seq_resets, missing_open, lost_total FROM devices") == [(1, 1, 1)]
    again = Ingestor(db, config)  # collector restart: old records 3..8 must not count as pending
    assert again._seq("d1", "lab").pending == {4}
    assert scores(again, [new[3]]).watermarks["d1"] == ("lab", 4)


def test_origin_mismatch_and_unregistered_devices_are_quarantined(tmp_path):
    config = server_config(tmp_path, ingest={"require_registered_devices": True})
    db = open_database(config)
    db.local().execute("INSERT INTO devices (device_id, site, registered) VALUES ('known', 'lab', 1)")
    ing = Ingestor(db, config)
    spoof = loadgen.score_message("other", 1)
    items = [
        Incoming(score_topic("lab", "known"), encode(spoof), 1, 1),  # another device's record on my topic
        Incoming(*loadgen.score_payload(loadgen.score_message("stranger", 1)), 2, 1),
        Incoming(*loadgen.score_payload(loadgen.score_message("known", 1)), 3, 1),
    ]
    r = ing.process(items)
    assert r.stored == 1 and r.quarantined == 2
    reasons = [row[0] for row in q(ing, "SELECT reason FROM quarantine ORDER BY id")]
    assert "arrived on the topic of device 'known'" in reasons[0]
    assert "unknown device 'stranger'" in reasons[1]
    from amgs.server.query.metadata import save

    save(db.local().conn, "devices", {"device_id": "stranger", "site": "lab"})  # provisioned just now
    assert (
        ing.process([Incoming(*loadgen.score_payload(loadgen.score_message("stranger", 1)), 4, 1)]).stored
        == 1
    )
    db.local().execute("UPDATE devices SET registered = 0 WHERE device_id = 'stranger'")  # revoked
    ing.refresh_registered()
    assert (
        ing.process([Incoming(*loadgen.score_payload(loadgen.score_message("stranger", 2)), 5, 1)]).stored
        == 0
    )


def test_status_last_will_and_crops(ingestor, tmp_path):
    online = loadgen.status_message("d1", queue_depth=7, model=loadgen.MODEL, rejected={"blur": 3})
    offline = loadgen.status_message("d1", "offline", reason="connection lost (last will)")
    jpeg = b"\xff\xd8\xff\xe0" + b"x" * 100
    items = [
        Incoming(status_topic("lab", "d1"), encode(online), 1, 1),
        Incoming(status_topic("lab", "d1"), encode(online), 2, 1, retain=True),  # retained copy again
        Incoming(crop_topic("lab", "d1", "a" * 32), jpeg, 0, 0),
        Incoming(crop_topic("lab", "d1", "b" * 32), b"not a jpeg", 0, 0),
    ]
    r = ingestor.process(items)
    assert (r.statuses, r.crops, r.quarantined) == (2, 1, 1)
    assert q(ingestor, "SELECT state, queue_depth, model_name, rejected_json FROM devices") == [
        ("online", 7, "amgs-synthetic", '{"blur": 3}')
    ]
    assert q(ingestor, "SELECT count(*) FROM status_log") == [(1,)]  # the retained repeat is not logged twice
    ingestor.process([Incoming(status_topic("lab", "d1"), encode(offline), 3, 1)])
    assert q(ingestor, "SELECT state, reason FROM devices") == [("offline", "connection lost (last will)")]
    (path,) = q(ingestor, "SELECT path FROM crops")[0]
    assert (tmp_path / "state" / path).read_bytes() == jpeg


def test_quarantine_keeps_capped_evidence_and_counts_repeats(ingestor):
    huge = b"{" + b"x" * 100_000
    items = [Incoming("amgs/v1/lab/d1/score", huge, i, 1) for i in range(3)]
    ingestor.process(items)
    rows = q(ingestor, "SELECT count, payload_size, length(payload), reason FROM quarantine")
    assert len(rows) == 1
    count, size, kept, reason = rows[0]
    assert (count, size, kept) == (3, 100_001, 4096)
    assert "exceeds" in reason


def test_commit_failure_rolls_back_state_and_acknowledges_nothing(tmp_path):
    """A full database (storage.max_db_mb) fails the commit: nothing stored, nothing acked, state intact."""
    config = server_config(tmp_path, storage={"max_db_mb": 0.5})
    ing = Ingestor(open_database(config), config)
    many = [loadgen.score_message("d1", s) for s in range(1, 3001)]
    with pytest.raises(Exception, match="full"):
        scores(ing, many)
    assert q(ing, "SELECT count(*) FROM scores") == [(0,)]
    assert ing.seqs.get("d1") is None or ing.seqs["d1"].committed == 0
    assert scores(ing, many[:5]).watermarks["d1"] == ("lab", 5)  # small batches still fit


def test_retention_deletes_raw_scores_but_keeps_rollups(tmp_path):
    config = server_config(tmp_path, storage={"raw_retention_days": 1})
    ing = Ingestor(open_database(config), config)
    now = time.time()
    scores(ing, [loadgen.score_message("d1", 1, t=now - 3 * 86400), loadgen.score_message("d1", 2, t=now)])
    assert ing.apply_retention(now)["scores"] == 1
    assert q(ing, "SELECT seq FROM scores") == [(2,)]
    assert q(ing, "SELECT sum(n) FROM rollup_1h") == [(2,)]


# ------------------------------------------------------------------ fuzz

_valid = loadgen.score_message("d1", 1)


def _mutations():
    keys = st.sampled_from(sorted(_valid))
    junk = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=300),
        st.lists(st.integers(), max_size=5),
        st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
    )
    wrong_type = st.tuples(keys, junk).map(lambda kv: {**_valid, kv[0]: kv[1]})
    missing = keys.map(lambda k: {x: v for x, v in _valid.items() if x != k})
    huge = st.sampled_from(["cage_id", "animal_id", "view", "device_id"]).map(
        lambda k: {**_valid, k: "c" * 70_000}
    )
    schema = st.sampled_from(["amgs.score/2", "amgs.score/0", "amgs.status/1", "", None]).map(
        lambda s: {**_valid, "schema": s}
    )
    au = st.floats(allow_nan=False, allow_infinity=False).map(
        lambda v: {**_valid, "au": {k: v for k in AU_KEYS}, "p_pain": 3}
    )
    unknown_device = st.just({**_valid, "device_id": "someone-else"})
    as_json = st.one_of(wrong_type, missing, huge, schema, au, unknown_device).map(
        lambda m: json.dumps(m, allow_nan=False).encode()
    )
    raw = st.one_of(
        st.binary(max_size=200),
        st.binary(max_size=50).map(lambda b: b'{"schema": "amgs.score/1", "x": "' + b + b"\xff\xfe" + b'"}'),
        st.just(b""),
        st.just(b"[]"),
        st.just(b"null"),
        st.integers(65_000, 70_000).map(lambda n: b'{"schema": "amgs.score/1"' + b" " * n + b"}"),
        st.just(b"\xc3\x28"),
    )
    return st.one_of(as_json, raw)


@settings(max_examples=2500, deadline=None, suppress_health_check=list(HealthCheck))
@given(payloads=st.lists(_mutations(), min_size=1, max_size=4))
def test_fuzzed_payloads_are_all_quarantined(tmp_path_factory, payloads):
    ing = _fuzz_ingestor(tmp_path_factory)
    before = ing.conn.execute("SELECT coalesce(sum(count), 0) FROM quarantine").fetchone()[0]
    r = ing.process([Incoming(score_topic("lab", "d1"), p, i, 1) for i, p in enumerate(payloads)])
    assert r.stored == 0 and r.quarantined == len(payloads)
    assert len(r.acks) == len(payloads)
    after = ing.conn.execute("SELECT coalesce(sum(count), 0) FROM quarantine").fetchone()[0]
    assert after - before == len(payloads)


_FUZZ: dict[str, Ingestor] = {}


def _fuzz_ingestor(tmp_path_factory) -> Ingestor:
    if "ing" not in _FUZZ:
        config = server_config(tmp_path_factory.mktemp("fuzz"), ingest={"require_registered_devices": True})
        _FUZZ["ing"] = Ingestor(open_database(config), config)
    return _FUZZ["ing"]


def test_unsynchronized_clock_is_re_anchored_from_its_boot(ingestor):
    """A Pi booting with a stale clock: its early records carry wrong wall times; once a synchronized
    record of the same boot arrives, their times become anchor + monotonic time, and the rollups follow."""
    true_start = time.time() - 3600
    stale = dt.datetime(2001, 1, 1, tzinfo=dt.UTC).timestamp()  # the clock the Pi woke up with

    def msg(seq, synced, wall, mono):
        m = loadgen.score_message("d1", seq, t=wall, synced=synced)
        m["clock"] = {"synced": synced, "boot_id": "boot-7", "monotonic_s": mono}
        return m

    scores(ingestor, [msg(1, False, stale + 10, 10.0), msg(2, False, stale + 20, 20.0)])
    assert q(ingestor, "SELECT count(*) FROM rollup_1h WHERE bucket < 1e9") == [(1,)]  # filed under 2001
    assert ingestor.reanchor(time.time()) == 0  # nothing to anchor to yet
    status = loadgen.status_message("d1", clock={"synced": True, "boot_id": "boot-7", "monotonic_s": 30.0})
    status["at"] = (
        dt.datetime.fromtimestamp(true_start + 30, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    )
    ingestor.process([Incoming(status_topic("lab", "d1"), encode(status), 1, 1)])
    scores(ingestor, [msg(3, False, stale + 40, 40.0)])  # anchored on arrival
    assert ingestor.reanchor(time.time()) == 2  # the two early ones, moved afterwards
    rows = q(ingestor, "SELECT seq, t, clock_synced, clock_corrected FROM scores ORDER BY seq")
    for (_seq, t, synced, corrected), mono in zip(rows, (10, 20, 40), strict=True):
        assert t == pytest.approx(true_start + mono, abs=0.01) and (synced, corrected) == (0, 1)
    assert q(ingestor, "SELECT count(*) FROM rollup_1h WHERE bucket < 1e9 AND n != 0") == [(0,)]
    assert q(ingestor, "SELECT sum(n), sum(n_unsynced) FROM rollup_5m") == [(3, 3)]  # still flagged
    assert q(ingestor, "SELECT captured_at FROM scores WHERE seq = 1")[0][0].startswith(
        "2001-01-01"
    )  # as sent


def test_status_history_is_thinned_and_a_stale_last_will_still_sets_offline(ingestor):
    t0 = time.time() - 3600

    def status(minute, state="online", blur=None, **extra):
        msg = loadgen.status_message("d1", state, **extra)
        if blur is not None:
            msg["rejected"] = {"blur": blur}
        msg["at"] = dt.datetime.fromtimestamp(t0 + minute * 60, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        return Incoming(status_topic("lab", "d1"), encode(msg), minute, 1)

    for minute in range(31):  # a status a minute, reject counter +2 each
        ingestor.process([status(minute, blur=2 * minute)])
    logged = [round((t - t0) / 60) for (t,) in q(ingestor, "SELECT t FROM status_log ORDER BY t")]
    assert logged == [0, 10, 20, 30]
    assert (
        q(ingestor, "SELECT sum(n) FROM rejects_5m")
        == [(60,)]
        == q(ingestor, "SELECT sum(n) FROM rejects_1h")
    )
    # the last will was set at connect (minute 0) and carries the counters of then
    before = time.time()
    ingestor.process([status(0, "offline", blur=0, reason="connection lost")])
    state, since, rejected = q(ingestor, "SELECT state, state_since, rejected_json FROM devices")[0]
    assert state == "offline" and since >= before  # offline since it was noticed, not since minute 0
    assert json.loads(rejected) == {"blur": 60}  # the stale counters did not replace the newest
    assert q(ingestor, "SELECT sum(n) FROM rejects_5m") == [(60,)]  # and made no false delta
    assert q(ingestor, "SELECT state FROM status_log ORDER BY id DESC LIMIT 1") == [("offline",)]


# ------------------------------------------------------------------ values that validate but broke later (issue 17)


def test_a_far_seq_jump_is_quarantined_not_counted_as_missing(ingestor):
    scores(ingestor, [loadgen.score_message("d1", s) for s in (1, 2)])
    far = loadgen.score_message("d1", 2**53 - 1)  # the contract's maximum: valid, but no device gets there
    r = scores(ingestor, [far, loadgen.score_message("d1", 3)])
    assert (r.stored, r.quarantined) == (1, 1)
    (reason,) = q(ingestor, "SELECT reason FROM quarantine")[0]
    assert reason.startswith("seq: ") and "ingest.max_seq_jump" in reason
    assert q(ingestor, "SELECT committed_seq, max_seq, missing_open, gaps_total FROM devices") == [
        (3, 3, 0, 0)
    ]
    assert r.watermarks["d1"] == ("lab", 3)


@pytest.mark.parametrize("seq", [2**62, 2**63, 1e308])
def test_seq_beyond_the_contract_is_a_contract_refusal_not_an_internal_error(ingestor, seq):
    msg = loadgen.score_message("d1", 1)
    msg["seq"] = seq
    r = ingestor.process([Incoming(score_topic("lab", "d1"), json.dumps(msg).encode(), 1, 1)])
    assert r.quarantined == 1
    (reason,) = q(ingestor, "SELECT reason FROM quarantine")[0]
    assert reason.startswith("seq: ")
    assert q(ingestor, "SELECT count(*) FROM seq_gaps") == [(0,)]


def _at(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def test_capture_time_far_ahead_of_the_collector_clock_is_quarantined(ingestor):
    now = time.time()
    ok = loadgen.score_message("d1", 1, t=now + 30)  # within the tolerance: clocks differ a little
    ahead = loadgen.score_message("d1", 2, t=now + 3600)
    year9999 = loadgen.score_message("d1", 3)
    year9999["captured_at"] = "9999-12-31T23:59:59.000Z"  # valid for the contract, not for this collector
    r = scores(ingestor, [ok, ahead, year9999])
    assert (r.stored, r.quarantined) == (1, 2)
    reasons = [row[0] for row in q(ingestor, "SELECT reason FROM quarantine ORDER BY id")]
    assert all(x.startswith("captured_at: ") and "ingest.max_clock_ahead_s" in x for x in reasons), reasons
    (last,) = q(ingestor, "SELECT last_score_t FROM devices")[0]
    assert last <= now + 60


@pytest.mark.parametrize("when", ["0000-01-01T00:00:00.000Z", "2026-02-30T12:00:00.000Z"])
def test_impossible_dates_get_a_contract_reason(ingestor, when):
    msg = loadgen.score_message("d1", 1)
    msg["captured_at"] = when
    ingestor.process([Incoming(score_topic("lab", "d1"), json.dumps(msg).encode(), 1, 1)])
    (reason,) = q(ingestor, "SELECT reason FROM quarantine")[0]
    assert reason.startswith("captured_at: ") and "unexpected" not in reason


def _boot_score(seq: int, wall: float, mono: float, synced: bool = False) -> dict:
    m = loadgen.score_message("d1", seq, t=wall, synced=synced)
    m["clock"] = {"synced": synced, "boot_id": "boot-9", "monotonic_s": mono}
    return m


def test_1970_scores_of_an_unset_clock_are_re_anchored_before_any_time_check(ingestor):
    """A Pi without RTC boots at 1970; its status (synced) anchors the boot; the scores are stored re-anchored."""
    true_start = time.time() - 600
    status = loadgen.status_message("d1", clock={"synced": True, "boot_id": "boot-9", "monotonic_s": 50.0})
    status["at"] = _at(true_start + 50)
    ingestor.process([Incoming(status_topic("lab", "d1"), encode(status), 1, 1)])
    r = scores(ingestor, [_boot_score(1, 10.0, 10.0), _boot_score(2, 20.0, 20.0)])  # 1970-01-01T00:00:10
    assert (r.stored, r.quarantined) == (2, 0)
    assert r.watermarks["d1"] == ("lab", 2)
    rows = q(ingestor, "SELECT t, clock_corrected FROM scores ORDER BY seq")
    assert [round(t - true_start) for t, _ in rows] == [10, 20] and [c for _, c in rows] == [1, 1]


def test_1970_scores_without_an_anchor_yet_are_stored_flagged_and_do_not_block_the_watermark(ingestor):
    r = scores(ingestor, [_boot_score(1, 10.0, 10.0), _boot_score(2, 20.0, 20.0)])
    assert (r.stored, r.quarantined) == (2, 0)
    assert r.watermarks["d1"] == ("lab", 2)
    true_start = time.time() - 600
    scores(ingestor, [_boot_score(3, true_start + 30, 30.0, synced=True)])  # the clock got set
    assert ingestor.reanchor(time.time()) == 2
    rows = q(ingestor, "SELECT t FROM scores WHERE seq < 3 ORDER BY seq")
    assert [round(t - true_start) for (t,) in rows] == [10, 20]


def test_a_synchronized_clock_before_2000_is_still_refused(ingestor):
    scores(ingestor, [_boot_score(1, 10.0, 10.0, synced=True)])
    (reason,) = q(ingestor, "SELECT reason FROM quarantine")[0]
    assert reason.startswith("captured_at: ")


def test_same_msg_id_with_different_content_is_a_quarantined_conflict(ingestor, caplog):
    first = loadgen.score_message("d1", 1, cage_id="c1", amgs=0.1)
    scores(ingestor, [first])
    forged = {**first, "cage_id": "c2", "p_pain": 0.9, "amgs": 0.9, "label": "pain", "seq": 2}
    with caplog.at_level("WARNING"):
        r = scores(ingestor, [forged, first])  # plus a plain redelivery of the original
    assert (r.stored, r.duplicates, r.conflicts, r.quarantined) == (0, 1, 1, 1)
    assert q(ingestor, "SELECT cage_id, p_pain, seq FROM scores") == [("c1", 0.1, 1)]  # the first kept
    reason, payload = q(ingestor, "SELECT reason, payload FROM quarantine")[0]
    assert reason.startswith("msg_id: ") and "different content" in reason
    assert "cage_id" in reason and "'c1'" in reason and "'c2'" in reason  # both versions in the evidence
    assert json.loads(payload)["cage_id"] == "c2"
    assert any(
        "conflicting" in rec.getMessage() and first["msg_id"] in rec.getMessage() for rec in caplog.records
    )
    # inside one batch too
    a = loadgen.score_message("d1", 2)
    r = scores(ingestor, [a, {**a, "cage_id": "c9"}])
    assert (r.stored, r.conflicts) == (1, 1)


# ------------------------------------------------------------------ fuzz: numeric and time extremes

_NUMBERS = st.one_of(
    st.sampled_from([0, 1, -1, 2**31, 2**53 - 1, 2**53, 2**62, 2**63 - 1, 2**63, 2**64, 10**30]),
    st.sampled_from([0.0, -0.0, 0.5, 1.0, 2.0, 1e15, 1e308, -1e308, 5e-324, 9007199254740992.0]),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
)
_TIMES = st.one_of(
    st.sampled_from(
        [
            "0000-01-01T00:00:00Z",
            "0001-01-01T00:00:00.000Z",
            "1969-12-31T23:59:59.999Z",
            "1970-01-01T00:00:00.000Z",
            "1999-12-31T23:59:59Z",
            "2026-02-30T12:00:00Z",
            "2024-02-29T12:00:00Z",
            "2026-11-29T24:00:00Z",
            "2026-11-29T23:59:60Z",
            "9999-12-31T23:59:59.999999Z",
        ]
    ),
    st.datetimes(min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30)).map(
        lambda d: d.strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"
    ),
    st.floats(-1e10, 4e10).map(lambda t: _at(time.time() + t) if -6e10 < time.time() + t < 2.5e11 else "x"),
)
_NUMERIC_PATHS = [
    ("seq",),
    ("p_pain",),
    ("amgs",),
    ("confidence",),
    ("mgs_au",),
    ("inference_ms",),
    ("clock", "monotonic_s"),
    ("quality", "face_px"),
    ("quality", "sharpness"),
    ("quality", "exposure"),
    ("au", "ot"),
]


def _extreme(draw_path, value, synced):
    msg = loadgen.score_message("d1", 1, synced=synced)
    target = msg
    for key in draw_path[:-1]:
        target = target[key]
    target[draw_path[-1]] = value
    return msg


@settings(max_examples=600, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    changes=st.lists(
        st.one_of(
            st.tuples(st.sampled_from(_NUMERIC_PATHS), _NUMBERS),
            st.tuples(st.just(("captured_at",)), _TIMES),
        ),
        min_size=1,
        max_size=3,
    ),
    synced=st.booleans(),
    seq=st.one_of(st.integers(1, 50), st.sampled_from([2**53 - 1, 10**7, 10**7 + 60])),
)
def test_numeric_and_time_extremes_end_as_rows_or_quarantine_never_as_errors(
    tmp_path_factory, changes, synced, seq
):
    ing = _extremes_ingestor(tmp_path_factory)
    msg = loadgen.score_message("d1", seq, synced=synced)
    for path, value in changes:
        target = msg
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    now = time.time()
    r = ing.process([Incoming(score_topic("lab", "d1"), json.dumps(msg).encode(), 1, 1)], now)
    assert r.stored + r.quarantined + r.duplicates == 1
    reasons = [x for (x,) in ing.conn.execute("SELECT reason FROM quarantine")]
    assert not [x for x in reasons if x.startswith(("unexpected", "internal"))], reasons
    (widest,) = ing.conn.execute("SELECT coalesce(max(size), 0) FROM seq_gaps").fetchone()
    assert widest <= ing.config.ingest.max_seq_jump  # no jump declares more missing than the bound
    (last,) = ing.conn.execute("SELECT max(last_score_t) FROM devices").fetchone()
    assert last is None or last <= now + ing.config.ingest.max_clock_ahead_s


def _extremes_ingestor(tmp_path_factory) -> Ingestor:
    if "extremes" not in _FUZZ:
        config = server_config(tmp_path_factory.mktemp("extremes"))
        _FUZZ["extremes"] = Ingestor(open_database(config), config)
    return _FUZZ["extremes"]


def test_a_vanishing_probability_is_stored_as_zero_and_its_square_never_underflows(tmp_path):
    """Found by the fuzz test on PostgreSQL: an aMGS of 1e-308, squared in the rollup sums, is an underflow
    error there (SQLite gives 0). Probabilities are stored to 12 decimals, on both engines."""
    config = server_config(tmp_path)
    ing = Ingestor(open_database(config), config)
    msg = loadgen.score_message("d1", 1)
    msg.update(p_pain=1e-308, amgs=1e-308, label="no pain", confidence=1.0)
    r = ing.process([Incoming(score_topic("lab", "d1"), json.dumps(msg).encode(), 1, 1)], time.time())
    assert (r.stored, r.quarantined) == (1, 0)
    assert q(ing, "SELECT p_pain, amgs FROM scores") == [(0.0, 0.0)]
    assert q(ing, "SELECT n, sumsq_amgs FROM rollup_5m") == [(1, 0.0)]


def test_a_shadow_score_travels_with_its_record_and_is_stored_apart(tmp_path):
    """Shadow mode through the ingest (on both engines): the candidate's score of the face goes to
    shadow_scores with both outcomes, once, and never into scores or the rollups."""
    config = server_config(tmp_path)
    ing = Ingestor(open_database(config), config)
    cand = {"name": "cand", "version": "2", "sha256": "c" * 64}
    msgs = []
    for seq in (1, 2):
        msg = loadgen.score_message("d1", seq)
        msg["outcome"] = msg["label"]
        msg["shadow"] = {"model": cand, "p_pain": 0.7, "label": "pain", "confidence": 0.7, "outcome": "pain"}
        if seq == 2:
            msg["shadow"].update(outcome="unscorable", unscorable_reason="out_of_domain")
        msgs.append(Incoming(score_topic("lab", "d1"), json.dumps(msg).encode(), seq, 1))
    r = ing.process(msgs, time.time())
    assert (r.stored, r.quarantined) == (2, 0)
    again = ing.process(msgs, time.time())  # a redelivery stores nothing twice
    assert again.duplicates == 2
    assert q(ing, "SELECT seq, candidate_sha256, outcome FROM shadow_scores ORDER BY seq") == [
        (1, "c" * 64, "pain"),
        (2, "c" * 64, "unscorable"),
    ]
    assert q(ing, "SELECT count(*) FROM scores") == [(2,)]


def test_hourly_bins_up_to_now_include_the_hour_still_filling(tmp_path):
    """A time course that ends now shows the newest images: 1 h rollup buckets used to be taken only once
    their midpoint had passed, which hid up to the last 30 minutes from a 1 h chart."""
    from amgs.server.query import timecourse

    config = server_config(tmp_path)
    ing = Ingestor(open_database(config), config)
    hour = (int(time.time()) // 3600 - 3) * 3600
    now = hour + 20 * 60  # 20 minutes into the hour
    items = [
        Incoming(
            *loadgen.score_payload(loadgen.score_message("d1", i + 1, cage_id="C1", t=t)), mid=i + 1, qos=1
        )
        for i, t in enumerate((hour - 40 * 60, hour - 10 * 60, hour + 5 * 60, hour + 15 * 60))
    ]
    assert ing.process(items, now).stored == 4
    conn = ing.conn
    tc = timecourse.cage_timecourse(conn, "C1", start=hour - 3600, end=None, bin_s=3600, now=now)
    assert [(b["start_t"] - hour, b["n"]) for b in tc["bins"]] == [(-3600, 2), (0, 2)]
    past = timecourse.cage_timecourse(conn, "C1", start=hour - 3600, end=hour, bin_s=3600, now=now)
    assert [b["n"] for b in past["bins"]] == [2]  # a window that ends in the past keeps its edges


def test_incoming_crosses_the_process_boundary_as_itself():
    """The receiver sends ``Incoming`` objects (pickled as class + fields), not positional tuples."""
    import pickle
    from multiprocessing.reduction import ForkingPickler

    item = Incoming(score_topic("lab", "d1"), b"{}", mid=7, qos=1, retain=True, received_at=1.5, generation=3)
    back = pickle.loads(ForkingPickler.dumps(("in", [item])))[1][0]
    assert type(back) is Incoming and back == item and back.generation == 3


def test_score_row_is_the_one_mapping_onto_the_scores_columns():
    from amgs.server.ingest.classify import score_row
    from amgs.server.storage.db import SCORE_COLUMNS

    row = score_row(loadgen.score_message("d1", 1), 0.0)
    assert sorted(row) == sorted(SCORE_COLUMNS) and len(row) == len(SCORE_COLUMNS)
