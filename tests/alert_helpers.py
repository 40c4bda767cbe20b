"""Real local receivers for alert delivery tests (an HTTP webhook receiver, an SMTP server via aiosmtpd) and
contract-valid messages to feed the collector's ingest directly."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from aiosmtpd.controller import Controller

from amgs.broker import free_port
from amgs.contract import encode, format_time, new_msg_id, score_topic, status_topic
from amgs.server.ingest.classify import Incoming


class WebhookReceiver:
    """An HTTP server on 127.0.0.1 that records JSON POSTs; ``status`` sets what it answers."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.received: list[dict] = []
        self.headers: list[dict] = []
        self.status = 200
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> WebhookReceiver:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server API
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if outer.status == 200:
                    outer.received.append(json.loads(body))
                    outer.headers.append(dict(self.headers))
                self.send_response(outer.status)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class SmtpReceiver:
    """A real SMTP server (aiosmtpd) on 127.0.0.1 collecting parsed messages."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.messages: list = []
        outer = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd API
                outer.messages.append(message_from_bytes(envelope.content))
                return "250 Message accepted for delivery"

        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)

    def start(self) -> SmtpReceiver:
        self.controller.start()
        self.running = True
        return self

    def stop(self) -> None:
        if getattr(self, "running", False):
            self.controller.stop()
            self.running = False


# --------------------------------------------------------------------------- collector input

SITE = "lab1"
MODEL = {"name": "m", "version": "1", "sha256": "0" * 64}


def at(t: float) -> str:
    return format_time(datetime.fromtimestamp(t, UTC))


def score(device: str, cage: str, seq: int, t: float, p: float, animal: str | None = None) -> Incoming:
    """A contract-valid score record as the collector's MQTT callback would enqueue it."""
    msg = {
        "schema": "amgs.score/1",
        "msg_id": new_msg_id(),
        "seq": seq,
        "device_id": device,
        "site": SITE,
        "cage_id": cage,
        "animal_id": animal,
        "captured_at": at(t),
        "clock": {"synced": True, "boot_id": "b", "monotonic_s": float(seq)},
        "model": MODEL,
        "p_pain": p,
        "label": "pain" if p >= 0.5 else "no pain",
        "amgs": p,
        "confidence": max(p, 1 - p),
        "needs_review": False,
    }
    return Incoming(score_topic(SITE, device), encode(msg), received_at=time.time())


def status(device: str, t: float, state: str = "online", errors=(), cages=()) -> Incoming:
    """A device status message (views name the cages it watches)."""
    msg = {
        "schema": "amgs.status/1",
        "device_id": device,
        "site": SITE,
        "state": state,
        "at": at(t),
        "errors": list(errors),
        "views": [{"view": f"v{i}", "cage_id": c} for i, c in enumerate(cages)],
    }
    return Incoming(status_topic(SITE, device), encode(msg), received_at=time.time())
