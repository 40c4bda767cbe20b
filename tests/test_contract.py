import json
from pathlib import Path

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from amgs import contract as c

ROOT = Path(__file__).resolve().parents[1]


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
    for sid in c.SCHEMAS:
        path = ROOT / "docs" / "contract" / (sid.replace("/", ".v") + ".schema.json")
        assert json.loads(path.read_text()) == c.json_schema_document(sid), (
            f"{path} is stale: run `amgs contract schema docs/contract`"
        )


def _agrees(message):
    ours = None
    try:
        c.validate(message)
        ours = True
    except c.ContractError:
        ours = False
    theirs = jsonschema.Draft202012Validator(c.json_schema_document("amgs.score/1")).is_valid(message)
    return ours, theirs


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(list(c.SCORE["properties"]) + ["junk"]),
        st.one_of(
            st.none(),
            st.booleans(),
            st.integers(-5, 10**6),
            st.floats(allow_nan=False, allow_infinity=False),
            st.text(max_size=80),
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
