"""The shipped broker config + provisioning, attacked with a real Mosquitto over TLS and loopback.

A device's credentials must not let it speak for another device, read other devices' data, forge its own
watermark or take over another device's session; anonymous and wrong-password clients are refused; a
client that does not trust the site CA cannot connect; revoking a device shuts it out.
"""

from __future__ import annotations

import json
import shutil
import ssl

import pytest
from deploy_site import Client, Site, make_ca, new_site_root

from amgs import contract
from amgs.broker import mosquitto_path

pytestmark = pytest.mark.skipif(
    mosquitto_path() is None or shutil.which("openssl") is None,
    reason="needs mosquitto and openssl (scripts/setup.sh test --system-packages)",
)

SITE = "lab1"


@pytest.fixture(scope="module")
def site():
    root = new_site_root()
    s = Site(root, site=SITE)
    assert s.provision("collector").exit_code == 0
    for name, cage in (("cage-a", "c1"), ("cage-b", "c2"), ("cage-r", "c3")):
        r = s.provision("device", name, "--cage", cage)
        assert r.exit_code == 0, r.output
    assert s.provision("viewer", "display-1").exit_code == 0
    s.start()
    yield s
    s.stop()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def clients():
    made: list[Client] = []
    yield made
    for c in made:
        c.close()


def device(site: Site, clients: list, name: str, **kw) -> Client:
    c = Client(site.tls_port, name, site.password(name), ca=site.ca, **kw)
    clients.append(c)
    rc = c.connect()
    assert not rc.is_failure, f"{name} could not connect: {rc}"
    return c


def collector(site: Site, clients: list) -> Client:
    c = Client(site.plain_port, "collector", site.collector_password())
    clients.append(c)
    assert not c.connect().is_failure
    for t in contract.collector_subscriptions("+"):
        assert not c.subscribe(t)[0].is_failure
    return c


def score_payload(dev: str, cage: str, seq: int = 1) -> bytes:
    return json.dumps({"device_id": dev, "cage_id": cage, "seq": seq}).encode()


def test_device_publishes_its_own_scores_to_the_collector(site, clients):
    col = collector(site, clients)
    a = device(site, clients, "cage-a")
    assert not a.publish(contract.score_topic(SITE, "cage-a"), score_payload("cage-a", "c1")).is_failure
    assert not a.publish(contract.status_topic(SITE, "cage-a"), b"{}", retain=True).is_failure
    expected = {contract.score_topic(SITE, "cage-a"), contract.status_topic(SITE, "cage-a")}
    got = {t for t, _, retained in col.wait_for(expected) + col.drain(0.5) if not retained}
    assert got == expected


def test_device_cannot_publish_into_another_devices_topics(site, clients):
    col = collector(site, clients)
    a = device(site, clients, "cage-a")
    forged = [
        contract.score_topic(SITE, "cage-b"),
        contract.status_topic(SITE, "cage-b"),
        contract.crop_topic(SITE, "cage-b", contract.new_msg_id()),
        contract.score_topic("other-site", "cage-a"),  # its own id under another site
        contract.ack_topic(SITE, "cage-a"),  # forging its own watermark
        contract.command_topic(SITE, "cage-b"),
        contract.alert_topic(SITE, "c2"),
    ]
    for topic in forged:
        rc = a.publish(topic, score_payload("cage-b", "c2"))
        assert rc.is_failure and rc.getName() == "Not authorized", (topic, rc)
    assert [t for t, _, _ in col.drain(wait=0.5) if t in forged] == []


def test_device_cannot_read_other_devices_data(site, clients):
    b = device(site, clients, "cage-b")
    col = collector(site, clients)
    # The collector's retained watermark for b, and b's retained status and a score.
    ack_b = contract.ack_topic(SITE, "cage-b")
    assert not col.publish(ack_b, b'{"committed_seq": 7}', retain=True).is_failure
    a = device(site, clients, "cage-a")
    for pattern in (
        f"{contract.TOPIC_ROOT}/#",
        f"{contract.TOPIC_ROOT}/{SITE}/cage-b/#",
        ack_b,
        "#",
        "$SYS/#",
    ):
        a.subscribe(pattern)  # granted or not, nothing of b's may arrive
    b.publish(contract.status_topic(SITE, "cage-b"), b'{"state": "online"}', retain=True)
    b.publish(contract.score_topic(SITE, "cage-b"), score_payload("cage-b", "c2"))
    col.publish(contract.command_topic(SITE, "cage-b"), b"{}")
    leaked = [t for t, _, _ in a.drain(wait=1.0) if "/cage-b/" in t or t.startswith("$SYS")]
    assert leaked == []


def test_device_reads_its_own_ack_and_command(site, clients):
    col = collector(site, clients)
    ack_a = contract.ack_topic(SITE, "cage-a")
    assert not col.publish(ack_a, b'{"committed_seq": 3}', retain=True).is_failure
    a = device(site, clients, "cage-a")
    assert not a.subscribe(ack_a)[0].is_failure
    assert not a.subscribe(contract.command_topic(SITE, "cage-a"))[0].is_failure
    col.publish(contract.command_topic(SITE, "cage-a"), b'{"command": "publish_status"}')
    got = {t: p for t, p, _ in a.wait_for({ack_a, contract.command_topic(SITE, "cage-a")})}
    assert got[ack_a] == b'{"committed_seq": 3}'
    assert contract.command_topic(SITE, "cage-a") in got


@pytest.mark.parametrize("victim", ["cage-b", "collector"])
def test_device_cannot_take_over_another_session(site, clients, victim):
    """Over TLS the broker uses the user name as client id, so a stolen client id does nothing."""
    if victim == "collector":
        v = Client(site.plain_port, "collector", site.collector_password(), client_id="amgs-collector")
        clients.append(v)
        assert not v.connect().is_failure
        topic = contract.ack_topic(SITE, "cage-b")
    else:
        v = device(site, clients, victim)
        topic = contract.score_topic(SITE, "cage-b")
    device(site, clients, "cage-a", client_id=v.c._client_id.decode())
    assert v.drain(wait=1.0) == []
    assert v.disconnects.empty(), f"cage-a's login kicked {victim} off the broker"
    assert not v.publish(topic, score_payload("cage-b", "c2")).is_failure


@pytest.mark.parametrize("listener", ["plain", "tls"])
@pytest.mark.parametrize(
    "who", ["anonymous", "wrong password", "unknown user", "collector name with a device password"]
)
def test_refused_logins(site, clients, listener, who):
    user, password = {
        "anonymous": (None, None),
        "wrong password": ("cage-a", "not-the-password"),
        "unknown user": ("cage-zz", "whatever"),
        "collector name with a device password": ("collector", site.password("cage-a")),
    }[who]
    port, ca = (site.plain_port, None) if listener == "plain" else (site.tls_port, site.ca)
    c = Client(port, user, password, ca=ca)
    clients.append(c)
    rc = c.connect()
    assert rc.is_failure and rc.getName() in {"Not authorized", "Bad user name or password"}, rc


def test_tls_with_the_wrong_ca_fails(site, clients, tmp_path):
    other = tmp_path / "other-ca"
    make_ca(other, "localhost", "127.0.0.1")
    c = Client(site.tls_port, "cage-a", site.password("cage-a"), ca=other / "ca.crt")
    with pytest.raises(ssl.SSLCertVerificationError):
        c.connect()


def test_tls_with_a_host_name_not_in_the_certificate_fails(site, clients):
    c = Client(site.tls_port, "cage-a", site.password("cage-a"), ca=site.ca, host="127.0.0.2")
    with pytest.raises(ssl.SSLCertVerificationError):
        c.connect()


def test_plain_listener_is_loopback_only(site):
    conf = (site.root / "conf.d" / "amgs.conf").read_text()
    assert f"listener {site.plain_port} 127.0.0.1\n" in conf


def test_revoked_device_is_shut_out(site, clients):
    col = collector(site, clients)
    password = site.password("cage-r")
    r = device(site, clients, "cage-r")
    assert not r.publish(contract.score_topic(SITE, "cage-r"), score_payload("cage-r", "c3")).is_failure
    assert contract.score_topic(SITE, "cage-r") in {
        t for t, _, _ in col.wait_for({contract.score_topic(SITE, "cage-r")})
    }
    col.drain(0.5)
    result = site.provision("revoke", "cage-r")
    assert result.exit_code == 0, result.output
    site.reloaded()
    # Still connected at the moment of revocation: its publishes no longer reach anyone.
    if r.disconnects.empty():
        r.publish(contract.score_topic(SITE, "cage-r"), score_payload("cage-r", "c3", 2))
    assert [t for t, _, retained in col.drain(wait=0.5) if not retained] == []
    again = Client(site.tls_port, "cage-r", password, ca=site.ca)
    clients.append(again)
    assert again.connect().is_failure


def test_viewer_reads_alerts_and_nothing_else(site, clients):
    col = collector(site, clients)
    alert = contract.alert_topic(SITE, "c1")
    assert not col.publish(alert, b'{"state": "open"}', retain=True).is_failure
    v = Client(site.tls_port, "display-1", site.password("display-1"), ca=site.ca)
    clients.append(v)
    assert not v.connect().is_failure
    assert not v.subscribe(f"{contract.TOPIC_ROOT}/+/alert/+")[0].is_failure
    v.subscribe(f"{contract.TOPIC_ROOT}/#")
    a = device(site, clients, "cage-a")
    a.publish(contract.score_topic(SITE, "cage-a"), score_payload("cage-a", "c1"))
    got = {t for t, _, _ in v.wait_for({alert}) + v.drain()}
    assert got == {alert}
    for topic in (alert, contract.score_topic(SITE, "cage-a"), contract.ack_topic(SITE, "cage-a")):
        assert v.publish(topic, b"{}").is_failure


def test_alert_publisher_account_writes_alert_state_and_nothing_else(site, clients):
    """The collector's second connection has its own account: alert topics only."""
    password = (site.amgs_etc / "collector-alerts-mqtt-password").read_text().strip()
    pub = Client(site.plain_port, "collector-alerts", password)
    clients.append(pub)
    assert not pub.connect().is_failure
    col = collector(site, clients)  # both of the collector's connections at once: neither kicks the other
    alert = contract.alert_topic(SITE, "c2")
    assert not pub.publish(alert, b'{"state": "open"}', retain=True).is_failure
    for topic in (contract.ack_topic(SITE, "cage-a"), contract.command_topic(SITE, "cage-a")):
        assert pub.publish(topic, b"{}").is_failure
    pub.subscribe(f"{contract.TOPIC_ROOT}/{SITE}/+/score")
    a = device(site, clients, "cage-a")
    a.publish(contract.score_topic(SITE, "cage-a"), score_payload("cage-a", "c1"))
    assert [t for t, _, _ in pub.drain(1.0) if t.endswith("/score")] == []
    assert pub.disconnects.empty() and col.disconnects.empty()


def _session_client(port: int, user: str, password: str, client_id: str, clean: bool):
    """A raw paho v5 client with a persistent (or clean) session, as the collector's receiver uses."""
    import queue

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    c.username_pw_set(user, password)
    got: queue.Queue = queue.Queue()
    acks: queue.Queue = queue.Queue()
    c.on_connect = lambda c_, u, f, rc, p: acks.put(rc)
    c.on_message = lambda c_, u, m: got.put(m.payload)
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 0 if clean else 3600
    c.connect("127.0.0.1", port, keepalive=30, clean_start=clean, properties=props)
    c.loop_start()
    assert not acks.get(timeout=10).is_failure
    return c, got


def test_no_account_can_take_the_collectors_session_on_any_listener(site, clients):
    """The collector's queued backlog survives any other account connecting with the collector's client id,
    on the loopback listener too (outside test: 0 of 20 queued scores survived a 3 s takeover)."""
    import queue
    import time

    collector_id = "collector"  # its account name: the broker binds client ids to accounts
    col, got = _session_client(site.plain_port, "collector", site.collector_password(), collector_id, False)
    col.subscribe(f"{contract.TOPIC_ROOT}/{SITE}/+/score", qos=1)
    time.sleep(0.5)
    col.loop_stop()
    col.disconnect()
    time.sleep(0.5)
    a = device(site, clients, "cage-a")
    for seq in range(1, 21):
        assert not a.publish(
            contract.score_topic(SITE, "cage-a"), score_payload("cage-a", "c1", seq)
        ).is_failure
    for stolen_id in (collector_id, "amgs-collector"):
        for port in (site.plain_port, site.tls_port):
            if port == site.tls_port:
                thief = Client(port, "cage-b", site.password("cage-b"), ca=site.ca, client_id=stolen_id)
                clients.append(thief)
                assert not thief.connect().is_failure
                time.sleep(1.0)
                thief.close()
            else:
                t, _ = _session_client(port, "cage-b", site.password("cage-b"), stolen_id, True)
                time.sleep(1.0)
                t.loop_stop()
                t.disconnect()
    col, got = _session_client(site.plain_port, "collector", site.collector_password(), collector_id, False)
    received = []
    deadline = time.monotonic() + 10
    while len(received) < 20 and time.monotonic() < deadline:
        try:
            received.append(json.loads(got.get(timeout=0.5))["seq"])
        except queue.Empty:
            pass
    col.loop_stop()
    col.disconnect()
    assert sorted(received) == list(range(1, 21)), f"the collector's queue lost {20 - len(received)} scores"
