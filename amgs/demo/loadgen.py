"""Synthetic device traffic for load tests and benchmarks: valid score/status messages and a fast publisher.

Not a device simulator (the device agent is the real one); this produces contract-valid records at
a chosen rate so the collector's ingest and queries can be measured without cameras or models.
"""

from __future__ import annotations

import datetime as dt
import random
import threading
import time
from collections.abc import Iterable

from amgs.contract import AU_KEYS, Score, Status, encode, format_time, new_msg_id, score_topic, utc_now

MODEL = {"name": "amgs-synthetic", "version": "0", "sha256": "0" * 64}


def score_message(
    device_id: str,
    seq: int,
    *,
    site: str = "lab",
    cage_id: str = "c1",
    animal_id: str | None = None,
    t: float | None = None,
    amgs: float | None = None,
    with_au: bool = True,
    synced: bool = True,
    rng: random.Random | None = None,
) -> dict:
    rng = rng or random
    p = rng.random() if amgs is None else amgs
    au = (
        {k: round(min(2.0, max(0.0, p * 2 + rng.uniform(-0.3, 0.3))), 3) for k in AU_KEYS}
        if with_au
        else None
    )
    when = dt.datetime.fromtimestamp(time.time() if t is None else t, dt.UTC)
    return Score.build(
        msg_id=new_msg_id(),
        seq=seq,
        device_id=device_id,
        site=site,
        cage_id=cage_id,
        animal_id=animal_id,
        view=None,
        captured_at=format_time(when),
        clock={"synced": synced, "boot_id": "boot-1", "monotonic_s": 100.0 + seq},
        model=MODEL,
        p_pain=p,
        label="pain" if p >= 0.5 else "no pain",
        amgs=p,
        confidence=max(p, 1 - p),
        needs_review=max(p, 1 - p) < 0.65,
        au=au,
        mgs_au=None if au is None else sum(au.values()) / len(au),
        quality={
            "sharpness": 120.0,
            "exposure": 110.0,
            "face_px": 299,
            "motion": rng.random(),
            "asleep": False,
        },
        face_box=[10, 20, 299, 299],
        inference_ms=38.0,
        has_crop=False,
    ).wire()


def status_message(device_id: str, state: str = "online", *, site: str = "lab", **fields) -> dict:
    return Status.build(device_id=device_id, site=site, state=state, at=utc_now(), **fields).wire()


def score_payload(msg: dict) -> tuple[str, bytes]:
    return score_topic(msg["site"], msg["device_id"]), encode(msg)


def publish_all(
    host: str,
    port: int,
    items: Iterable[tuple[str, bytes]],
    *,
    qos: int = 1,
    retain: bool = False,
    client_id: str = "amgs-loadgen",
) -> int:
    """Publish (topic, payload) pairs at QoS ``qos`` as fast as the broker accepts; return once all are PUBACKed."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    done = threading.Condition()
    state = {"acked": 0}

    def on_publish(client, userdata, mid, reason_code, properties):
        with done:
            state["acked"] += 1
            done.notify_all()

    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
    c.max_inflight_messages_set(1000)
    c.max_queued_messages_set(0)
    c.on_publish = on_publish
    c.connect(host, port)
    c.loop_start()
    sent = 0
    try:
        for topic, payload in items:
            c.publish(topic, payload, qos=qos, retain=retain)
            sent += 1
        if qos:
            with done:
                if not done.wait_for(lambda: state["acked"] >= sent, timeout=120):
                    raise TimeoutError(f"only {state['acked']} of {sent} messages acknowledged by the broker")
    finally:
        c.disconnect()
        c.loop_stop()
    return sent
