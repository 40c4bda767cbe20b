"""Helpers shared by the collector tests (tests/test_server_*.py)."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from amgs.server.config import parse_config


def server_config(tmp_path: Path, broker=None, **sections):
    data = {
        "storage": {"state_dir": str(tmp_path / "state")},
        "http": {"port": 0},
        "ingest": {"batch_wait_ms": 5},
    }
    if broker is not None:
        data["mqtt"] = {"port": broker.port, "client_id": "collector-test"}
    for key, value in sections.items():
        data.setdefault(key, {}).update(value)
    return parse_config(data)


def wait_for(predicate, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.loads(r.read())


def get_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as r:
        return r.read().decode()


def http_error(url: str, data: bytes | None = None, method: str = "GET") -> tuple[int, dict]:
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


class Watcher:
    """Subscribes to topics and keeps the last payload per topic (e.g. the retained ack watermarks)."""

    def __init__(self, port: int, topics: list[str]) -> None:
        self.last: dict[str, bytes] = {}
        self.history: list[tuple[str, bytes]] = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"watcher-{time.time_ns()}")
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, *a: c.subscribe([(t, 1) for t in topics])
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, client, userdata, msg) -> None:
        with self.lock:
            self.last[msg.topic] = msg.payload
            self.history.append((msg.topic, msg.payload))

    def json(self, topic: str):
        with self.lock:
            payload = self.last.get(topic)
        return None if payload is None else json.loads(payload)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
