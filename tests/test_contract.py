import json
import re
from datetime import datetime
from pathlib import Path

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from amgs import contract as c

ROOT = Path(__file__).resolve().parents[1]
FIELDS = [f.alias or name for name, f in c.Score.model_fields.items()]
EXTREMES = st.one_of(
    st.sampled_from(
        [0, 1, 2**31, 2**53 - 1, 2**53, 2**63 - 1, 2**63, 2**64, -(2**63), 1e308, -1e308, 5e-324]
    ),
    st.sampled_from([1.0, 2.0, 2.0000001, 1e15, 9007199254740991.0, 9007199254740992.0, -0.0]),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from(
        [
            "0000-01-01T00:00:00Z",
            "0001-01-01T00:00:00Z",
            "1970-01-01T00:00:00.000Z",
            "2026-02-29T00:00:00Z",
            "2028-02-29T23:59:59.999999Z",
            "2026-02-30T12:00:00Z",
            "2026-04-31T12:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-11-29T24:00:00Z",
            "2026-11-29T23:60:00Z",
            "2026-11-29T23:59:60Z",
            "9999-12-31T23:59:59.999Z",
            "2026-11-29T12:00:00.000Z\n",
            "\uff12\uff10\uff12\uff16-11-29T12:00:00Z",
        ]
    ),
)


def make_score(**over):
    rec = {
        "schema": "amgs.score/1",
        "msg_id": c.new_msg_id(),
        "seq": 1,
        "device_id": "dev-1",
        "site": "site1",
        "cage_id": "cage-A1",
        "animal_id": "M1",
        "captured_at": "2026-11-29T12:00:00.000Z",
        "clock": {"synced": True, "boot_id": "b", "monotonic_s": 12.5},
        "model": {"name": "m", "version": "1", "sha256": "0" * 64},
        "p_pain": 0.8,
        "label": "pain",
        "amgs": 0.8,
        "confidence": 0.8,
        "needs_review": False,
        "au": {"ot": 1.0, "nb": 1.5, "cb": 0.5, "ep": 2.0, "wc": 1.0},
        "quality": {"sharpness": 120.0, "exposure": 110.0, "face_px": 299, "motion": 0.1},
        "face_box": [1, 2, 300, 300],
    }
    rec.update(over)
    return rec


def test_round_trip():
    rec = make_score()
    assert c.decode(c.encode(rec), "amgs.score/1") == rec


@pytest.mark.parametrize(
    "field,value,where",
    [
        ("p_pain", 1.5, "p_pain"),
        ("label", "maybe", "label"),
        ("seq", 0, "seq"),
        ("seq", True, "seq"),
        ("device_id", "a/b", "device_id"),
        ("captured_at", "2026-11-29 12:00", "captured_at"),
        ("extra", 1, "extra"),
        ("au", {"ot": 1}, "au.nb"),
    ],
)
def test_invalid_fields_are_named(field, value, where):
    with pytest.raises(c.ContractError) as e:
        c.validate(make_score(**{field: value}))
    assert e.value.path == where


def test_missing_field_and_bad_payloads():
    rec = make_score()
    del rec["model"]
    with pytest.raises(c.ContractError, match="model: is required"):
        c.validate(rec)
    for payload, msg in [
        (b"\xff\xfe", "not UTF-8"),
        (b"{", "not JSON"),
        (b"[]", "JSON object"),
        (b'{"schema":"amgs.score/9"}', "unknown schema"),
    ]:
        with pytest.raises(c.ContractError, match=msg):
            c.decode(payload)
    with pytest.raises(c.ContractError, match="exceeds"):
        c.decode(b" " * (c.MAX_PAYLOAD_BYTES + 1))


def test_topics_round_trip_and_refuse_wildcards():
    t = c.parse_topic(c.crop_topic("s1", "d1", "a" * 32))
    assert (t.site, t.device, t.kind, t.item) == ("s1", "d1", "crop", "a" * 32)
    assert c.parse_topic(c.alert_topic("s1", "cage-1")).kind == "alert"
    for bad in ("+", "#", "a/b", "", "x" * 65):
        with pytest.raises(c.ContractError):
            c.score_topic("s1", bad)
    with pytest.raises(c.ContractError):
        c.parse_topic("other/v1/s/d/score")


def test_schema_files_in_docs_are_generated_from_code():
    for sid in c.MESSAGES:
        path = ROOT / "docs" / "contract" / (sid.replace("/", ".v") + ".schema.json")
        assert json.loads(path.read_text()) == c.json_schema_document(sid), (
            f"{path} is stale: run `amgs contract schema docs/contract`"
        )


def _ecma_pattern(validator, pattern, instance, schema):
    """JSON Schema patterns are ECMA-262, where ``$`` is the end of the text; Python's ``re`` (which
    ``jsonschema`` uses) also lets ``$`` match before a final newline. The models follow ECMA."""
    if isinstance(instance, str) and not re.search(pattern.removesuffix("$") + r"\Z", instance):
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


def _real_time(text):
    if not isinstance(text, str):
        return True  # formats apply to strings only
    try:
        datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


_FORMATS = jsonschema.FormatChecker(formats=())
_FORMATS.checks("date-time")(_real_time)
Reference = jsonschema.validators.extend(jsonschema.Draft202012Validator, {"pattern": _ecma_pattern})


def _agrees(message, sid="amgs.score/1"):
    ours = None
    try:
        c.validate(message)
        ours = True
    except c.ContractError:
        ours = False
    theirs = Reference(c.json_schema_document(sid), format_checker=_FORMATS).is_valid(message)
    return ours, theirs


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(FIELDS + ["junk"]),
        st.one_of(
            st.none(),
            st.booleans(),
            st.integers(-5, 10**6),
            st.floats(allow_nan=False, allow_infinity=False),
            st.text(max_size=80),
            EXTREMES,
        ),
    )
)
def test_validator_agrees_with_reference_jsonschema(fields):
    message = make_score()
    message.update(fields)
    message["schema"] = "amgs.score/1"
    ours, theirs = _agrees(message)
    assert ours == theirs, message


@pytest.mark.parametrize("sid", [["amgs.score/1"], {"a": 1}, None, 1])
def test_non_string_schema_is_a_contract_error(sid):
    with pytest.raises(c.ContractError, match="unknown schema"):
        c.validate({"schema": sid})


# ------------------------------------------------------------------ numeric and time extremes (issue 17)


@pytest.mark.parametrize("seq", [2**53, 2**62, 2**63, 2**64, 1e308, 9.1e15])
def test_seq_has_a_maximum(seq):
    with pytest.raises(c.ContractError) as e:
        c.validate(make_score(seq=seq))
    assert e.value.path == "seq"


def test_seq_maximum_itself_is_valid():
    assert c.validate(make_score(seq=c.MAX_SEQ))["seq"] == 2**53 - 1


@pytest.mark.parametrize(
    "field,value",
    [
        ("face_box", [0, 0, 2**63, 1]),
        ("quality", {"face_px": 2**64}),
    ],
)
def test_every_integer_is_bounded(field, value):
    with pytest.raises(c.ContractError) as e:
        c.validate(make_score(**{field: value}))
    assert e.value.path.startswith(field)


@pytest.mark.parametrize(
    "when,why",
    [
        ("0000-01-01T00:00:00.000Z", "year"),
        ("2026-02-30T12:00:00.000Z", "day"),
        ("2026-13-01T12:00:00.000Z", "month"),
        ("2026-11-29T24:00:00.000Z", "hour"),
        ("2026-11-29T12:61:00.000Z", "minute"),
    ],
)
def test_impossible_calendar_times_name_the_field(when, why):
    with pytest.raises(c.ContractError) as e:
        c.validate(make_score(captured_at=when))
    assert e.value.path == "captured_at"
    assert "not a real UTC time" in str(e.value) and why in str(e.value)


def test_status_and_ack_integers_are_bounded():
    status = {"schema": "amgs.status/1", "device_id": "d", "site": "s", "state": "online"}
    status["at"] = "2026-11-29T12:00:00.000Z"
    for field in ("queue_depth", "unconfirmed", "last_seq", "disk_free_bytes"):
        with pytest.raises(c.ContractError) as e:
            c.validate({**status, field: 2**63})
        assert e.value.path == field
    ack = {"schema": "amgs.ack/1", "device_id": "d", "committed_seq": 2**53, "at": "2026-11-29T12:00:00Z"}
    with pytest.raises(c.ContractError) as e:
        c.validate(ack)
    assert e.value.path == "committed_seq"


def _examples():
    at = "2026-11-29T12:00:00.000Z"
    clock = {"synced": True, "boot_id": "b", "monotonic_s": 12.5}
    return {
        "amgs.score/1": make_score(),
        "amgs.status/1": c.Status(
            device_id="d1",
            site="s1",
            state="online",
            at=at,
            queue_depth=3,
            rejected={"blur": 1},
            clock=clock,
            views=[{"view": "v", "cage_id": "c"}],
            last_capture_at=at,
            errors=["x"],
        ).wire(),
        "amgs.ack/1": c.Ack(device_id="d1", committed_seq=5, at=at).wire(),
        "amgs.command/1": c.Command(command="send_crops", msg_ids=["a" * 32], seq=3, at=at).wire(),
        "amgs.alert/1": c.Alert(
            alert_id="a1",
            rule="r",
            site="s1",
            cage_id="c1",
            severity="alert",
            state="open",
            opened_at=at,
            updated_at=at,
            value=0.7,
            threshold=0.5,
        ).wire(),
    }


EXAMPLES = _examples()
EXAMPLE_FIELDS = [(sid, k) for sid, m in EXAMPLES.items() for k in m if k != "schema"]


@settings(max_examples=500, deadline=None)
@given(
    choice=st.sampled_from(EXAMPLE_FIELDS),
    value=st.one_of(EXTREMES, st.none(), st.booleans(), st.text(max_size=30)),
    nested=st.booleans(),
)
def test_every_message_kind_agrees_with_reference_jsonschema_on_extremes(choice, value, nested):
    sid, field = choice
    message = json.loads(json.dumps(EXAMPLES[sid]))
    target = message[field]
    if nested and isinstance(target, dict) and target:
        target[sorted(target)[0]] = value
    elif nested and isinstance(target, list) and target:
        target[0] = value
    else:
        message[field] = value
    ours, theirs = _agrees(message, sid)
    assert ours == theirs, message


def test_examples_are_valid_and_built_without_a_literal_schema():
    for sid, message in EXAMPLES.items():
        assert message["schema"] == sid and c.validate(message) == message
        assert c.MESSAGES[sid].check(message).encode() == c.encode(message)


def test_parse_gives_the_contracts_error_messages():
    good = c.encode(make_score())
    assert c.Score.parse(good).seq == 1
    bad = make_score(p_pain=1.5)
    with pytest.raises(c.ContractError) as e:
        c.Score.parse(json.dumps(bad).encode())
    assert str(e.value) == "p_pain: 1.5 is above the maximum 1" and e.value.path == "p_pain"
    for raw, text in [
        (b"\xff\xfe{}", "not UTF-8"),
        ("{}".encode("utf-16"), "not UTF-8"),
        (b"[1]", "JSON object"),
        (b"{", "not JSON"),
        (json.dumps(make_score(schema="amgs.score/2")).encode(), "expected 'amgs.score/1'"),
        (json.dumps({k: v for k, v in make_score().items() if k != "schema"}).encode(), "expected"),
        (json.dumps(make_score(seq=float("nan"))).encode(), "seq: "),
    ]:
        with pytest.raises(c.ContractError, match=text):
            c.Score.parse(raw)


def test_integral_numbers_are_integers_but_not_booleans_or_strings():
    assert c.validate(make_score(seq=3.0))["seq"] == 3
    for value in (True, "3", 3.5):
        with pytest.raises(c.ContractError) as e:
            c.validate(make_score(seq=value))
        assert e.value.path == "seq"


def test_no_message_is_built_by_hand_outside_the_contract():
    """One way to build each message: ``Model.build``; no literal ``"schema": "amgs...."`` dict elsewhere."""
    literal = re.compile(r"""["']schema["']\s*:\s*["']amgs\.""")
    offenders = [
        str(path.relative_to(ROOT))
        for folder in ("amgs", "device", "server", "models", "bench")
        for path in (ROOT / folder).rglob("*.py")
        if path.name != "contract.py" and literal.search(path.read_text())
    ]
    assert offenders == []


@pytest.mark.parametrize(
    "fields,ok",
    [
        ({}, True),  # a device older than the outcome: the label is the outcome
        ({"outcome": "pain"}, True),
        ({"outcome": "pain", "unscorable_reason": None, "domain_distance": 3.5}, True),
        ({"outcome": "unscorable", "unscorable_reason": "out_of_domain", "domain_distance": 91.0}, True),
        ({"outcome": "unscorable", "unscorable_reason": "quality"}, True),
        ({"outcome": "unscorable", "unscorable_reason": "no_face"}, True),
        ({"outcome": "no pain"}, False),  # disagrees with label "pain"
        ({"outcome": "unscorable"}, False),  # no reason
        ({"outcome": "unscorable", "unscorable_reason": None}, False),
        ({"unscorable_reason": "quality"}, False),  # a reason without the outcome
        ({"outcome": "pain", "unscorable_reason": "quality"}, False),
        ({"outcome": "maybe"}, False),
        ({"outcome": "unscorable", "unscorable_reason": "dark"}, False),
        ({"domain_distance": -1.0}, False),
    ],
)
def test_outcome_reason_and_label_agree_and_the_json_schema_says_the_same(fields, ok):
    ours, theirs = _agrees(make_score(**fields))
    assert (ours, theirs) == (ok, ok)


def test_an_unscorable_record_is_not_scorable_and_says_which_field_is_wrong():
    rec = c.check(make_score(outcome="unscorable", unscorable_reason="out_of_domain"))
    assert not rec.scorable and c.check(make_score()).scorable
    with pytest.raises(c.ContractError, match="unscorable_reason: is required"):
        c.validate(make_score(outcome="unscorable"))
    with pytest.raises(c.ContractError, match="outcome: 'no pain' disagrees with label 'pain'"):
        c.validate(make_score(outcome="no pain"))
