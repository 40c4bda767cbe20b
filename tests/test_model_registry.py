"""The collector's model registry and the device's model checks, without a broker (fast).

End to end over Mosquitto with a running device: tests/test_model_rollout.py.
"""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest
from lab_helpers import variant_of

from amgs.contract import decode


@pytest.fixture
def db(tmp_path):
    from amgs.server.storage.db import CollectorDB

    d = CollectorDB(tmp_path / "c.db")
    d.migrate()
    return d


def test_add_checks_the_file_against_its_manifest_and_keeps_evaluations(db, tmp_path, model_path):
    from amgs.server.models import registry

    conn = db.local().conn
    new = variant_of(model_path, tmp_path / "v", "1.0.0")
    (tmp_path / "rep").mkdir()
    (tmp_path / "rep" / "figures.json").write_text(
        json.dumps({"accuracy": 0.91, "tp": 3, "fp": 1, "tn": 5, "fn": 1})
    )
    m = registry.add_model(
        conn, tmp_path / "models", new, evaluations=[(tmp_path / "rep" / "figures.json", None)]
    )
    assert m["name"] == "lab-mgs" and m["synthetic"] and m["evaluations"][0]["dataset"] == "rep"
    assert m["evaluations"][0]["n_images"] == 10
    stored = tmp_path / "models" / f"{m['sha256']}.tflite"
    assert hashlib.sha256(stored.read_bytes()).hexdigest() == m["sha256"]
    assert registry.add_model(conn, tmp_path / "models", new)["sha256"] == m["sha256"]  # idempotent

    tampered = tmp_path / "t" / "x.tflite"
    tampered.parent.mkdir()
    shutil.copy(new, tampered)
    shutil.copy(new.with_suffix(".manifest.json"), tampered.with_suffix(".manifest.json"))
    with open(tampered, "ab") as f:
        f.write(b"!")
    with pytest.raises(registry.RegistryError, match="changed or replaced"):
        registry.add_model(conn, tmp_path / "models", tampered)
    other = variant_of(model_path, tmp_path / "w", "1.0.0")  # same name and version, other bytes
    other.write_bytes(other.read_bytes() + b"x")
    mf = json.loads(other.with_suffix(".manifest.json").read_text())
    mf["sha256"] = hashlib.sha256(other.read_bytes()).hexdigest()
    other.with_suffix(".manifest.json").write_text(json.dumps(mf))
    with pytest.raises(registry.RegistryError, match="new version"):
        registry.add_model(conn, tmp_path / "models", other)


def test_assign_promote_abandon_and_the_retained_message(db, tmp_path, model_path):
    from amgs.server.models import registry

    conn = db.local().conn
    a = registry.add_model(conn, tmp_path / "models", variant_of(model_path, tmp_path / "a", "1.0.0"))
    b = registry.add_model(conn, tmp_path / "models", variant_of(model_path, tmp_path / "b", "2.0.0"))
    conn.execute("INSERT INTO devices (device_id, site) VALUES ('dev1', 'lab')")
    assert registry.find(conn, "lab-mgs:2.0.0") == b["sha256"] == registry.find(conn, b["sha256"][:10])
    with pytest.raises(registry.RegistryError, match="no registered model"):
        registry.find(conn, "nope:1")
    registry.assign(conn, "dev1", active=a["sha256"], candidate=b["sha256"])
    sent = []
    assert registry.publish_due(conn, lambda *args, **kw: sent.append((args, kw))) == 1
    (topic, payload), kw = sent[0]
    msg = decode(payload, "amgs.command/1")  # valid against the contract
    assert topic == "amgs/v1/lab/dev1/command" and kw == {"qos": 1, "retain": True}
    assert msg["active"]["version"] == "1.0.0" and msg["candidate"]["version"] == "2.0.0"
    assert registry.publish_due(conn, lambda *a, **k: sent.append(a)) == 0  # nothing changed
    registry.promote(conn, "dev1")
    assert registry.assignment_message(conn, "dev1")["active"]["sha256"] == b["sha256"]
    assert registry.assignment_message(conn, "dev1")["candidate"] is None
    with pytest.raises(registry.RegistryError, match="no candidate"):
        registry.abandon(conn, "dev1")
    assert [e["action"] for e in registry.events(conn)][:3] == ["assigned", "promoted", "assigned"]


def test_shadow_scores_are_stored_apart_and_compared_per_cage(db):
    from amgs.server.models import registry

    conn = db.local().conn
    ref = {"name": "cand", "version": "1", "sha256": "c" * 64}
    items = []
    for i in range(6):
        p_active, p_cand = (0.9, 0.8) if i % 2 else (0.1, 0.6 if i == 0 else 0.2)
        row = {
            "msg_id": f"{i:032x}", "device_id": "d", "cage_id": "C1", "animal_id": None, "seq": i + 1,
            "t": 1000.0 + i, "model_sha256": "a" * 64, "p_pain": p_active,
            "label": "pain" if p_active >= 0.5 else "no pain", "mgs_au": None, "inference_ms": 40.0,
        }  # fmt: skip
        shadow = {"model": ref, "p_pain": p_cand, "label": "pain" if p_cand >= 0.5 else "no pain", "confidence": 0.8,
                  "inference_ms": 12.0}  # fmt: skip
        items.append(({"shadow": shadow}, row))
    assert registry.store_shadow(conn, items) == 6
    registry.store_shadow(conn, items)  # a redelivery is ignored
    (g,) = registry.agreement(conn)
    assert g["n"] == 6 and g["same_decision"] == pytest.approx(5 / 6, abs=1e-4)
    assert g["inference_ms_active"] == 40.0 and g["inference_ms_candidate"] == 12.0
    assert conn.execute("SELECT count(*) FROM scores").fetchone()[0] == 0  # never into scores
    assert (g["unscorable_active"], g["unscorable_candidate"]) == (0, 0)


def test_faces_either_model_found_unscorable_are_counted_apart_not_compared(db):
    """Issue 11 in shadow mode: a face the candidate's (or the active model's) in-domain check or quality
    gate refused says nothing about how the two agree; it is counted per model and left out."""
    from amgs.contract import ShadowScore
    from amgs.server.models import registry

    conn = db.local().conn
    ref = {"name": "cand", "version": "1", "sha256": "c" * 64}
    kinds = ["both", "both", "active_out", "cand_out", "cand_out"]
    items = []
    for i, kind in enumerate(kinds):
        row = {
            "msg_id": f"{i:032x}", "device_id": "d", "cage_id": "C1", "animal_id": None, "seq": i + 1,
            "t": 1000.0 + i, "model_sha256": "a" * 64, "p_pain": 0.9, "label": "pain", "mgs_au": None,
            "inference_ms": 40.0, "outcome": "unscorable" if kind == "active_out" else "pain",
        }  # fmt: skip
        shadow = {"model": ref, "p_pain": 0.95 if kind == "both" else 0.1, "label": "pain" if kind == "both" else "no pain",
                  "confidence": 0.9, "outcome": "pain" if kind == "both" else "no pain"}  # fmt: skip
        if kind == "cand_out":
            shadow.update(outcome="unscorable", unscorable_reason="out_of_domain")
        ShadowScore.model_validate(shadow)  # as the contract takes it from a device
        items.append(({"shadow": shadow}, row))
    registry.store_shadow(conn, items)
    (g,) = registry.agreement(conn)
    assert (g["n"], g["same_decision"], g["unscorable_active"], g["unscorable_candidate"]) == (2, 1.0, 1, 2)
    conn.execute("DELETE FROM shadow_scores WHERE msg_id IN (?, ?)", [f"{0:032x}", f"{1:032x}"])
    (g,) = registry.agreement(conn)
    assert g["n"] == 0 and g["same_decision"] is None and g["pearson_r"] is None


def test_device_refuses_bytes_that_are_not_the_assigned_model(tmp_path, model_path):
    from amgs.device.model_update import ModelRefused, verify

    new = variant_of(model_path, tmp_path / "v", "1.0.0")
    data, manifest = new.read_bytes(), new.with_suffix(".manifest.json").read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    ref = {"name": "lab-mgs", "version": "1.0.0", "sha256": sha}
    assert verify(sha, data, manifest, ref).version == "1.0.0"
    with pytest.raises(ModelRefused, match="corrupted in transit"):
        verify(sha, data[:-1] + b"?", manifest, ref)
    with pytest.raises(ModelRefused, match="assigned lab-mgs 9"):
        verify(sha, data, manifest, {**ref, "version": "9"})
    with pytest.raises(ModelRefused, match="manifest refused"):
        verify(sha, data, b"{}", ref)


def test_device_rolls_back_when_the_new_model_fails_while_scoring(tmp_path, model_path):
    """A model that passed its checks but fails while scoring is replaced by the previous one at once."""
    from amgs.device.config import DeviceConfig
    from amgs.device.model_update import ModelUpdater
    from amgs.runtime import Model
    from amgs.scoring import Scorer

    cfg = DeviceConfig.model_validate(
        {
            "device": {"id": "d", "site": "s"},
            "model": {"allow_synthetic": True},
            "model_update": {"collector_url": "http://127.0.0.1:9"},
            "sources": [{"name": "f", "kind": "folder", "path": str(tmp_path)}],
            "views": [{"name": "v", "source": "f", "cage_id": "C1"}],
        }
    )
    new = variant_of(model_path, tmp_path / "v", "1.0.0")
    data = new.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    configured = Scorer(Model(model_path))

    class FakeAgent:
        def __init__(self):
            self.use_scorer(configured)

        def configured_scorer(self):
            return configured

        def use_scorer(self, s):
            self.scorer = s
            m = s.manifest
            self.model_ref = {"name": m.name, "version": m.version, "sha256": m.sha256}

    agent = FakeAgent()
    up = ModelUpdater(cfg, tmp_path / "state", lambda p: Scorer(Model(p)), lambda m: None)
    up.store.put(sha, data, new.with_suffix(".manifest.json").read_bytes())
    up.assign({"active": {"name": "lab-mgs", "version": "1.0.0", "sha256": sha}, "candidate": None})
    up.apply(agent)
    assert agent.model_ref["sha256"] == sha and up.status_fields()["model_update"]["state"] == "active"
    assert up.status_fields()["model_previous"]["sha256"] == configured.manifest.sha256
    assert up.on_scoring_error(agent, RuntimeError("interpreter failed"))
    assert agent.model_ref["sha256"] == configured.manifest.sha256
    st = up.status_fields()["model_update"]
    assert st["state"] == "rolled_back" and "interpreter failed" in st["error"]
    up.apply(agent)  # the bad model is not tried again at once
    assert agent.model_ref["sha256"] == configured.manifest.sha256
    # a restart reads the state: still on the configured model
    again = ModelUpdater(cfg, tmp_path / "state", lambda p: Scorer(Model(p)), lambda m: None)
    assert again.active_ref is None and again.update["state"] == "rolled_back"
