"""`amgs provision`: accounts, ACL, registry, collector registration and device bundles (no broker needed)."""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import stat

import pytest
from click.testing import CliRunner
from deploy_site import IS_ROOT, Site, new_site_root

from amgs import contract
from amgs.deploy import provision

pytestmark = pytest.mark.skipif(
    shutil.which("mosquitto_passwd") is None or shutil.which("openssl") is None,
    reason="needs mosquitto_passwd and openssl (scripts/setup.sh test --system-packages)",
)


@pytest.fixture
def site():
    root = new_site_root("amgs-prov-")
    s = Site(root)
    (s.amgs_etc / "server.toml").write_text(f'[storage]\nstate_dir = "{root / "collector"}"\n')
    yield s
    shutil.rmtree(root, ignore_errors=True)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def ok(result):
    assert result.exit_code == 0, result.output
    return result


def test_device_bundle_is_a_valid_device_config(site, tmp_path):
    from amgs.device.config import load_config

    ok(site.provision("collector"))
    bundle = site.state / "bundles" / "box-01"
    out = ok(site.provision("device", "box-01", "--cage", "C1", "--device-etc", str(bundle)))
    assert str(bundle) in out.output
    assert sorted(p.name for p in bundle.iterdir()) == ["ca.crt", "device.toml", "mqtt-password"]
    cfg = load_config(bundle / "device.toml")
    assert (cfg.device.id, cfg.device.site) == ("box-01", site.site)
    assert cfg.mqtt.username == "box-01"
    assert (cfg.mqtt.host, cfg.mqtt.port) == (site.host, site.tls_port)
    assert cfg.mqtt.tls_ca_file.read_text() == site.ca.read_text()
    assert [(v.cage_id, v.source) for v in cfg.views] == [("C1", "cam0")]
    assert cfg.sources[0].kind == "picamera2"
    assert mode(bundle) == 0o700 and mode(bundle / "mqtt-password") == 0o600


def test_default_bundle_points_at_the_installed_paths(site):
    ok(site.provision("device", "box-02", "--cage", "C2"))
    text = (site.state / "bundles" / "box-02" / "device.toml").read_text()
    assert 'password_file = "/etc/amgs/mqtt-password"' in text
    assert 'tls_ca_file = "/etc/amgs/ca.crt"' in text


def test_passwords_are_never_printed_logged_or_stored_in_clear(site, caplog):
    caplog.set_level(logging.DEBUG)
    outputs = [ok(site.provision("collector")).output]
    outputs.append(ok(site.provision("device", "box-01", "--cage", "C1")).output)
    outputs.append(ok(site.provision("device", "box-01", "--cage", "C1", "--rotate")).output)
    alerts_password = (site.amgs_etc / "collector-alerts-mqtt-password").read_text().strip()
    secrets = [site.password("box-01"), site.collector_password(), alerts_password]
    assert all(len(s) >= 40 for s in secrets)
    clear_text = [
        *outputs,
        caplog.text,
        (site.etc / "passwd").read_text(),
        (site.etc / "acl").read_text(),
        (site.state / "devices.json").read_text(),
        (site.state / "bundles" / "box-01" / "device.toml").read_text(),
    ]
    for secret in secrets:
        assert not any(secret in text for text in clear_text)
    hashes = dict(line.split(":", 1) for line in (site.etc / "passwd").read_text().splitlines())
    assert set(hashes) == {"collector", "collector-alerts", "box-01"}
    assert all(h.startswith("$7$") for h in hashes.values())  # PBKDF2-SHA512, mosquitto 2.0


def test_broker_files_are_private_to_the_broker(site):
    ok(site.provision("collector"))
    ok(site.provision("device", "box-01", "--cage", "C1"))
    for f in (site.etc / "passwd", site.etc / "acl"):
        assert mode(f) == 0o640
        if IS_ROOT:
            assert f.group() == "mosquitto"


def test_acl_is_generated_from_the_contract(site):
    ok(site.provision("collector"))
    ok(site.provision("device", "box-01", "--cage", "C1"))
    ok(site.provision("device", "box-02", "--cage", "C2", "--cage", "C3"))
    acl = (site.etc / "acl").read_text()
    blocks = {b.splitlines()[0]: b.splitlines()[1:] for b in acl.split("\n\n")[1:]}
    assert blocks["user box-01"] == [
        f"topic write {contract.score_topic('lab1', 'box-01')}",
        f"topic write {contract.status_topic('lab1', 'box-01')}",
        f"topic write {contract.TOPIC_ROOT}/lab1/box-01/crop/+",
        f"topic read {contract.ack_topic('lab1', 'box-01')}",
        f"topic read {contract.command_topic('lab1', 'box-01')}",
    ]
    # every topic a device publishes parses back to that device
    for line in blocks["user box-02"]:
        topic = line.split()[-1].replace("+", contract.new_msg_id())
        assert contract.parse_topic(topic).device == "box-02"
    assert blocks["user collector"][:3] == [f"topic read {t}" for t in contract.collector_subscriptions("+")]
    assert "topic" not in acl.split("user collector")[0], "nothing may be granted to anonymous/all users"


def test_collector_registration_and_revocation(site):
    ok(
        site.provision(
            "device",
            "box-01",
            "--cage",
            "C1",
            "--cage",
            "C2",
            "--region",
            "0,0,10,10",
            "--region",
            "10,0,10,10",
        )
    )
    db = sqlite3.connect(site.root / "collector" / "collector.db")
    assert db.execute("SELECT site, registered FROM devices WHERE device_id = 'box-01'").fetchall() == [
        ("lab1", 1)
    ]
    rows = db.execute(
        "SELECT cage_id, end_t FROM device_assignments WHERE device_id = 'box-01' ORDER BY cage_id"
    )
    assert [(c, e) for c, e in rows] == [("C1", None), ("C2", None)]
    assert {r[0] for r in db.execute("SELECT cage_id FROM cages")} == {"C1", "C2"}
    db.execute("UPDATE devices SET state = 'online' WHERE device_id = 'box-01'")  # as its last status said
    db.commit()
    ok(site.provision("revoke", "box-01"))
    assert db.execute("SELECT registered, state FROM devices WHERE device_id = 'box-01'").fetchone() == (
        0,
        "revoked",
    )
    assert db.execute("SELECT count(*) FROM device_assignments WHERE end_t IS NULL").fetchone() == (0,)


def test_revoke_removes_password_acl_and_bundle(site):
    ok(site.provision("collector"))
    ok(site.provision("device", "box-01", "--cage", "C1"))
    ok(site.provision("device", "box-02", "--cage", "C2"))
    ok(site.provision("revoke", "box-01"))
    users = [line.split(":")[0] for line in (site.etc / "passwd").read_text().splitlines()]
    assert users == ["collector", "collector-alerts", "box-02"]
    acl = (site.etc / "acl").read_text()
    assert "box-01" not in acl and "user box-02" in acl
    assert not (site.state / "bundles" / "box-01").exists()
    listing = ok(site.provision("list")).output
    assert "box-01" in listing and "revoked" in listing
    again = site.provision("revoke", "box-01")
    assert again.exit_code != 0 and "not provisioned" in again.output
    # provisioning it again later works (a repaired device)
    ok(site.provision("device", "box-01", "--cage", "C1"))
    assert "user box-01" in (site.etc / "acl").read_text()


def test_provisioning_twice_needs_rotate(site):
    ok(site.provision("device", "box-01", "--cage", "C1"))
    first = site.password("box-01")
    again = site.provision("device", "box-01", "--cage", "C1")
    assert again.exit_code != 0 and "--rotate" in again.output
    ok(site.provision("device", "box-01", "--cage", "C1", "--rotate"))
    assert site.password("box-01") != first


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["device", "box/1", "--cage", "C1"], "not allowed"),
        (["device", "box+", "--cage", "C1"], "not allowed"),
        (["device", "box-1", "--cage", "C 1"], "not allowed"),
        (["device", "collector", "--cage", "C1"], "collector's account"),
        (["device", "box-1", "--cage", "C1", "--cage", "C2", "--source", "opencv:/dev/video0"], "--region"),
        (["device", "box-1", "--cage", "C1", "--region", "1,2,3"], "x,y,w,h"),
        (["device", "box-1", "--cage", "C1", "--source", "webcam"], "picamera2[:N]"),
        (["device", "box-1"], "--cage"),
    ],
)
def test_bad_arguments_are_refused_by_name(site, args, complaint):
    result = site.provision(*args)
    assert result.exit_code != 0
    assert complaint in result.output
    assert not (site.etc / "passwd").exists() or "box" not in (site.etc / "passwd").read_text()


def test_multi_cage_layouts(site):
    from amgs.device.config import DeviceConfig

    cfg = provision.load_config(site.config_path)
    two_cameras = provision.device_config(cfg, "d", ["C1", "C2"], "picamera2", [])
    assert [(s["name"], s["camera"]) for s in two_cameras["sources"]] == [("cam0", 0), ("cam1", 1)]
    one_frame = provision.device_config(
        cfg, "d", ["C1", "C2"], "opencv:/dev/video0", [[0, 0, 9, 9], [9, 0, 9, 9]]
    )
    assert len(one_frame["sources"]) == 1
    assert [v["source"] for v in one_frame["views"]] == ["cam0", "cam0"]
    for doc in (two_cameras, one_frame):
        doc["mqtt"].update(password_file=None, tls_ca_file=None, username=None)
        DeviceConfig.model_validate(doc)


def test_config_errors_name_the_key(site):
    site.config_path.write_text(site.config_path.read_text() + "brokr_port = 1\n")
    result = site.provision("list")
    assert result.exit_code != 0 and "brokr_port" in result.output and "broker_port" in result.output
    site.config_path.write_text('site = "bad site"\nbroker_host = "x"\n')
    result = site.provision("list")
    assert result.exit_code != 0 and "site" in result.output
    missing = site.root / "nope.toml"
    result = CliRunner().invoke(provision.cli, ["--config", str(missing), "list"])
    assert result.exit_code != 0 and "install-collector.sh" in result.output


def test_missing_mosquitto_passwd_and_failed_reload_are_explained(site):
    text = site.config_path.read_text()
    site.config_path.write_text(text + 'mosquitto_passwd = "no-such-mosquitto_passwd"\n')
    result = site.provision("device", "box-01", "--cage", "C1")
    assert result.exit_code != 0 and "install the mosquitto package" in result.output
    site.config_path.write_text(text.replace('reload_command = ["sh"', 'reload_command = ["false", "sh"'))
    result = site.provision("device", "box-01", "--cage", "C1")
    assert result.exit_code != 0 and "reload Mosquitto by hand" in result.output


def test_missing_ca_is_explained(site):
    site.ca.unlink()
    result = site.provision("device", "box-01", "--cage", "C1")
    assert result.exit_code != 0 and "make-ca.sh" in result.output


@pytest.mark.skipif(not IS_ROOT, reason="switching to the database owner needs root")
def test_registration_writes_the_database_as_its_owner(site):
    """Run as root, provisioning must not leave root-owned files the collector (user amgs) cannot open."""
    import pwd

    nobody = pwd.getpwnam("nobody")
    state = site.root / "collector"
    state.mkdir()
    os.chown(state, nobody.pw_uid, nobody.pw_gid)
    ok(site.provision("device", "box-01", "--cage", "C1"))
    files = list(state.rglob("*"))
    assert files and all(f.stat().st_uid == nobody.pw_uid for f in files), [(f, f.owner()) for f in files]
    db = sqlite3.connect(state / "collector.db")
    assert db.execute("SELECT registered FROM devices WHERE device_id = 'box-01'").fetchone() == (1,)
    os.chmod(state / "collector.db", 0o400)  # the owner can no longer write: explained, nothing crashes
    result = site.provision("device", "box-02", "--cage", "C2")
    assert result.exit_code != 0 and "collector database is not" in result.output


def test_viewer_accounts(site):
    ok(site.provision("viewer", "display-1"))
    acl = (site.etc / "acl").read_text()
    assert "user display-1\ntopic read amgs/v1/+/alert/+\n" in acl
    bundle = site.state / "bundles" / "display-1"
    assert sorted(p.name for p in bundle.iterdir()) == ["ca.crt", "mqtt-password"]
    assert "viewer" in ok(site.provision("list")).output
    clash = site.provision("device", "display-1", "--cage", "C1", "--rotate")
    assert clash.exit_code != 0 and "viewer account" in clash.output
    again = site.provision("viewer", "display-1")
    assert again.exit_code != 0 and "--rotate" in again.output
    ok(site.provision("viewer", "display-1", "--rotate"))
    ok(site.provision("revoke", "display-1"))
    assert "display-1" not in (site.etc / "acl").read_text()
    assert not (site.root / "collector" / "collector.db").exists(), "a viewer is not a collector device"
