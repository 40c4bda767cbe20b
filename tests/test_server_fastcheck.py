"""The collector's compiled schema check agrees with the contract's validator (the definition)."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from amgs.contract import SCHEMAS, ContractError, validate
from amgs.demo import loadgen
from amgs.server.ingest import fastcheck

JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**66), max_value=2**66),
    st.floats(),
    st.sampled_from([0, 1, 2, 0.5, 1.0, 2.0000001, -0.0, 255, 256, 1e308]),
    st.text(max_size=70),
    st.sampled_from(
        ["pain", "no pain", "online", "0" * 64, "a" * 32, "2026-03-01T08:00:00Z", "x/y", "a" * 65]
    ),
    st.lists(st.integers(min_value=-2, max_value=400), max_size=6),
    st.dictionaries(
        st.sampled_from(["synced", "boot_id", "monotonic_s", "ot", "x", "name"]), st.integers(), max_size=4
    ),
)


def _examples():
    score = loadgen.score_message("d1", 1)
    status = loadgen.status_message(
        "d1",
        queue_depth=1,
        model=loadgen.MODEL,
        clock=score["clock"],
        rejected={"blur": 1},
        views=[{"view": "v", "cage_id": "c"}],
    )
    return [score, status]


def _mutate(base: dict, path: list, value, delete: bool) -> dict:
    msg = json.loads(json.dumps(base))
    target = msg
    for key in path[:-1]:
        if not isinstance(target.get(key), dict):
            return msg
        target = target[key]
    if delete:
        target.pop(path[-1], None)
    else:
        target[path[-1]] = value
    return msg


def _paths(d: dict, prefix=()):
    for k, v in d.items():
        yield [*prefix, k]
        if isinstance(v, dict):
            yield from _paths(v, (*prefix, k))


BASES = _examples()
PATHS = [(i, p) for i, b in enumerate(BASES) for p in _paths(b)] + [(0, ["extra_field"]), (1, ["au", "ot"])]


@settings(max_examples=3000, deadline=None)
@given(
    choice=st.sampled_from(PATHS),
    value=JUNK,
    delete=st.booleans(),
    more=st.lists(st.tuples(st.sampled_from(PATHS), JUNK), max_size=2),
)
def test_compiled_check_agrees_with_the_contract(choice, value, delete, more):
    index, path = choice
    msg = _mutate(BASES[index], path, value, delete)
    for (i, p), v in more:
        if i == index:
            msg = _mutate(msg, p, v, False)
    try:
        validate(msg)
        expected = True
    except (ContractError, TypeError):  # TypeError: amgs.contract.validate on an unhashable "schema" value
        expected = False
    schema = msg.get("schema")
    sid = schema if isinstance(schema, str) and schema in SCHEMAS else BASES[index]["schema"]
    assert fastcheck._COMPILED[sid](msg) == (expected and msg.get("schema") == sid)


def test_decode_gives_the_contracts_error_messages():
    topic, payload = loadgen.score_payload(loadgen.score_message("d1", 1))
    assert fastcheck.decode(payload, "amgs.score/1")["seq"] == 1
    bad = json.loads(payload)
    bad["p_pain"] = 1.5
    try:
        fastcheck.decode(json.dumps(bad).encode(), "amgs.score/1")
    except ContractError as e:
        assert str(e) == "p_pain: 1.5 is above the maximum 1"
    else:
        raise AssertionError("accepted an invalid record")
    for raw in (b"\xff\xfe{}", "{}".encode("utf-16"), b"[1]"):
        try:
            fastcheck.decode(raw, "amgs.score/1")
        except ContractError:
            pass
        else:
            raise AssertionError(f"accepted {raw!r}")
