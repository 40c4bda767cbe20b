"""Notification channels: MQTT (retained per-cage alert state), webhook (JSON POST), e-mail (SMTP relay).

Each ``send`` either delivers or raises; the outbox decides about retries. Secrets (SMTP password,
webhook signing key) are read from files named in the config and never logged.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import smtplib
import ssl
import threading
import urllib.error
import urllib.request
from email.message import EmailMessage
from typing import Any

from .config import EmailNotify, NotifyConfig, WebhookNotify
from .outbox import Channel, DeliveryError
from .rules import SYNTHETIC_MODEL

log = logging.getLogger(__name__)


def _secret(path) -> str:
    try:
        return path.read_text().strip()
    except OSError as e:
        raise DeliveryError(f"cannot read secret file {path}: {e.strerror}") from None


class MqttChannel:
    """Publishes retained QoS 1 alert state through its own paho client (connects in the background)."""

    name = "mqtt"

    def __init__(self, host: str, port: int, client_id: str, timeout_s: float = 10.0, **auth: Any) -> None:
        import paho.mqtt.client as mqtt

        self.timeout_s = timeout_s
        self._connected = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
        if auth.get("username"):
            self.client.username_pw_set(auth["username"], auth.get("password"))
        tls = auth.get("tls")
        if tls is not None:
            self.client.tls_set(
                ca_certs=str(tls.ca_file),
                certfile=str(tls.cert_file) if tls.cert_file else None,
                keyfile=str(tls.key_file) if tls.key_file else None,
            )
            self.client.tls_insecure_set(tls.insecure)
        self.client.on_connect = lambda c, u, f, rc, p=None: (
            self._connected.set() if not rc.is_failure else None
        )
        self.client.on_disconnect = lambda *a: self._connected.clear()
        self.client.reconnect_delay_set(1, 30)
        self.client.connect_async(host, port, keepalive=30)
        self.client.loop_start()

    def send(self, target: str, payload: dict[str, Any]) -> None:
        if not self._connected.wait(min(self.timeout_s, 5.0)):
            raise DeliveryError("not connected to the MQTT broker")
        info = self.client.publish(target, json.dumps(payload, separators=(",", ":")), qos=1, retain=True)
        try:
            info.wait_for_publish(self.timeout_s)
        except (RuntimeError, ValueError) as e:
            raise DeliveryError(f"publish failed: {e}") from None
        if not info.is_published():
            raise DeliveryError(f"broker did not acknowledge within {self.timeout_s:g} s")

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


class WebhookChannel:
    """POSTs ``{"event": ..., "alert": {amgs.alert/1}}``; any non-2xx answer or network error is a failure."""

    def __init__(self, cfg: WebhookNotify, index: int) -> None:
        self.cfg = cfg
        self.name = f"webhook:{index}"

    def send(self, target: str, payload: dict[str, Any]) -> None:
        body = json.dumps(payload, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", "User-Agent": "amgs-collector"}
        if self.cfg.secret_file:
            key = _secret(self.cfg.secret_file).encode()
            headers["X-Amgs-Signature"] = "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()
        request = urllib.request.Request(self.cfg.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.cfg.timeout_s) as response:
                status = response.status
        except urllib.error.HTTPError as e:
            raise DeliveryError(f"{self.cfg.url} answered HTTP {e.code}") from None
        except (urllib.error.URLError, OSError) as e:
            raise DeliveryError(f"{self.cfg.url} unreachable: {getattr(e, 'reason', e)}") from None
        if not 200 <= status < 300:
            raise DeliveryError(f"{self.cfg.url} answered HTTP {status}")


def email_text(event: str, alert: dict[str, Any]) -> tuple[str, str]:
    """Subject and body a person on call can act on without opening the dashboard."""
    what = {"opened": "", "renotified": "STILL OPEN: ", "escalated": "ESCALATED: ", "resolved": "resolved: "}
    sev = alert["severity"].replace("_", " ").upper()
    subject = (
        f"{what.get(event, event + ': ')}{sev} cage {alert['cage_id']} - {alert['rule'].replace('_', ' ')}"
    )
    if (alert.get("message") or "").startswith(SYNTHETIC_MODEL):
        subject = f"{SYNTHETIC_MODEL}: {subject}"
    lines = [
        alert.get("message") or "",
        "",
        f"site: {alert['site']}   cage: {alert['cage_id']}   animal: {alert.get('animal_id') or '-'}"
        f"   device: {alert.get('device_id') or '-'}",
        f"state: {alert['state']}   opened: {alert['opened_at']}   updated: {alert['updated_at']}",
        f"value: {alert.get('value')}   threshold: {alert.get('threshold')} (a site setting, not a validated cut-off)",
        f"alert id: {alert['alert_id']}",
        "",
        "Acknowledge on the collector's dashboard (Alerts page) to stop reminders.",
    ]
    return subject, "\n".join(lines)


class EmailChannel:
    name = "email"

    def __init__(self, cfg: EmailNotify) -> None:
        self.cfg = cfg

    def send(self, target: str, payload: dict[str, Any]) -> None:
        subject, body = email_text(payload["event"], payload["alert"])
        msg = EmailMessage()
        msg["Subject"] = f"{self.cfg.subject_prefix} {subject}".strip()
        msg["From"] = self.cfg.sender
        msg["To"] = ", ".join(self.cfg.to)
        msg["X-Amgs-Alert-Id"] = payload["alert"]["alert_id"]
        msg.set_content(body)
        try:
            smtp_cls = smtplib.SMTP_SSL if self.cfg.ssl else smtplib.SMTP
            with smtp_cls(self.cfg.host, self.cfg.port, timeout=self.cfg.timeout_s) as smtp:
                if self.cfg.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if self.cfg.username:
                    password = _secret(self.cfg.password_file) if self.cfg.password_file else ""
                    smtp.login(self.cfg.username, password)
                refused = smtp.send_message(msg)
        except (smtplib.SMTPException, OSError) as e:
            raise DeliveryError(f"SMTP relay {self.cfg.host}:{self.cfg.port}: {e}") from None
        if refused:  # some recipients accepted: resending would duplicate their copies
            log.error("SMTP relay refused alert e-mail for %s", sorted(refused))


def build_channels(notify: NotifyConfig, mqtt: dict[str, Any] | None) -> dict[str, Channel]:
    """Channels named as the outbox names them. ``mqtt``: host, port, client_id (+ username/password)."""
    channels: dict[str, Channel] = {}
    if notify.mqtt.enabled and mqtt:
        channels["mqtt"] = MqttChannel(timeout_s=notify.mqtt.publish_timeout_s, **mqtt)
    for i, hook in enumerate(notify.webhooks):
        channels[f"webhook:{i}"] = WebhookChannel(hook, i)
    if notify.email:
        channels["email"] = EmailChannel(notify.email)
    return channels
