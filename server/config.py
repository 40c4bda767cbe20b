"""Collector configuration: one TOML file, validated up front.

Every section is a strict pydantic model (``extra="forbid"``): an unknown key or a bad value is refused
before anything starts, and the error names the key, the value given and what is allowed.

Sections owned by this module: ``[mqtt]``, ``[storage]``, ``[ingest]``, ``[http]``, ``[photoperiod]``.
The dashboard and the alert engine add their sections (``[alerts]``, ``[notify]``, ``[web]``/``[auth]``) to
:class:`ServerConfig` below, in the block marked for it.

Secrets are never written into this file: the MQTT password lives in ``mqtt.password_file``.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import tomllib
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from amgs.config_errors import format_errors
from amgs.contract import ID_PATTERN

from .alerts.config import AlertsConfig, NotifyConfig
from .rating.config import RatingConfig
from .web.config import WebConfig


class ConfigError(ValueError):
    """The collector configuration is missing, unreadable or invalid; the message says what to fix."""


def read_secret(path: Path | None, key: str) -> str | None:
    """A password from its own file (stripped), or None when no file is set; never logged."""
    if path is None:
        return None
    try:
        return path.read_text().strip()
    except OSError as e:
        raise ConfigError(f"{key} {str(path)!r} cannot be read: {e}") from None


class Section(BaseModel):
    """Base of every config section: unknown keys are refused."""

    model_config = ConfigDict(extra="forbid", validate_default=True)


class TlsConfig(Section):
    """TLS to the broker (host name verified unless ``insecure``)."""

    ca_file: Path = Field(description="CA certificate that signed the broker's certificate (PEM)")
    cert_file: Path | None = Field(None, description="client certificate, when the broker requires one")
    key_file: Path | None = Field(None, description="key of the client certificate")
    insecure: bool = Field(False, description="skip host-name verification (never in production)")


class MqttConfig(Section):
    host: str = Field("127.0.0.1", description="the broker")
    port: int = Field(1883, ge=1, le=65535, description="the broker's port (8883 for TLS)")
    username: str | None = Field(None, description="the collector's broker account")
    password_file: Path | None = Field(None, description="file holding the collector's MQTT password")
    tls: TlsConfig | None = None
    client_id: str | None = Field(
        None,
        pattern=ID_PATTERN,
        description="the broker keeps the collector's persistent session under it; default: the username "
        "(the shipped broker config makes every client id its account name), else amgs-collector",
    )
    site: str = Field("+", description="site to collect ('+' = every site on this broker)")
    keepalive_s: int = Field(30, ge=5, le=3600, description="MQTT keep-alive")
    reconnect_max_s: float = Field(
        2,
        gt=0,
        le=60,
        description="longest wait between reconnect attempts: the broker is usually on this host, so a short "
        "wait costs nothing and the collector is back before devices, which wait for its watermark",
    )
    protocol: Literal["5", "3.1.1"] = Field(
        "5",
        description="MQTT version; 3.1.1 only for brokers without MQTT 5 (e.g. the demo's embedded amqtt)",
    )
    session_expiry_s: int = Field(
        7 * 24 * 3600,
        ge=0,
        description="how long the broker queues QoS 1 messages while the collector is down",
    )
    receive_maximum: int = Field(
        2000, ge=1, le=65535, description="unacknowledged messages the broker may have in flight to us"
    )

    @field_validator("site")
    @classmethod
    def _site(cls, v: str) -> str:
        import re

        if v != "+" and not re.match(ID_PATTERN, v):
            raise ValueError("must be '+' or a site id (letters, digits, '_', '.', '-')")
        return v

    @property
    def session_id(self) -> str:
        """The client id of the collector's ingest session."""
        return self.client_id or self.username or "amgs-collector"

    def password(self) -> str | None:
        """Read the password file (stripped); never logged."""
        return read_secret(self.password_file, "mqtt.password_file")


class StorageConfig(Section):
    state_dir: Path = Field(Path("/var/lib/amgs-collector"), description="database, crops and backups")
    db_file: str = Field("collector.db", description="database file name in state_dir")
    url: str | None = Field(
        None,
        pattern=r"^postgres(ql)?://",
        description="PostgreSQL instead of the SQLite file: postgresql://user@host:5432/db (password in "
        "~/.pgpass or PGPASSFILE, never here); the same schema and migrations; pg_dump before a schema upgrade "
        "and by `amgs server backup`; periodic backups are the database's (backup_every_h applies to SQLite)",
    )
    wal: bool = Field(True, description="SQLite write-ahead log (readers never block the writer)")
    backup_before_migrate: bool = Field(
        True, description="copy the database to backups/ before a schema upgrade"
    )
    backups_keep: int = Field(
        5, ge=0, description="backups kept in state_dir/backups (pre-migration and periodic)"
    )
    backup_every_h: float = Field(
        24, ge=0, description="online backup of the live database this often; 0 = off"
    )
    raw_retention_days: float = Field(
        400, ge=0, description="raw scores older than this are deleted (rollups are kept); 0 = keep forever"
    )
    quarantine_retention_days: float = Field(90, ge=0, description="0 = keep forever")
    quarantine_payload_bytes: int = Field(4096, ge=0, le=1 << 20, description="raw payload kept per entry")
    crop_max_bytes: int = Field(512 * 1024, ge=1024, description="larger crops are quarantined")
    crops_max_total_mb: float = Field(
        2048, ge=0, description="oldest crops deleted beyond this; 0 = no crops"
    )
    max_db_mb: float = Field(0, ge=0, description="refuse writes beyond this database size; 0 = no limit")

    @property
    def db_path(self) -> Path:
        return self.state_dir / self.db_file

    @property
    def crops_dir(self) -> Path:
        return self.state_dir / "crops"

    @property
    def backups_dir(self) -> Path:
        return self.state_dir / "backups"


class IngestConfig(Section):
    batch_max: int = Field(1000, ge=1, le=100_000, description="messages per transaction at most")
    batch_wait_ms: float = Field(20, ge=0, le=10_000, description="wait this long to fill a batch")
    queue_max: int = Field(100_000, ge=100, description="received messages held in memory at most")
    require_registered_devices: bool = Field(
        False, description="quarantine scores from devices not registered with `amgs server device add`"
    )
    gap_timeout_s: float = Field(
        3600,
        ge=0,
        description="a missing seq still absent after this is declared lost and the watermark moves past it",
    )
    max_seq_jump: int = Field(
        10_000_000,
        ge=1000,
        le=2**53 - 1,
        description="a score whose seq lies more than this above its device's highest is quarantined, not counted "
        "as that many missing (a device bug or a forged record); 10 million = years of one device's scores",
    )
    max_clock_ahead_s: float = Field(
        300,
        ge=0,
        le=86400,
        description="a capture time (after re-anchoring) more than this ahead of the collector's clock is "
        "quarantined; keep the collector's clock synchronized (NTP)",
    )
    retry_backoff_s: float = Field(2, gt=0, le=600, description="wait before retrying a failed commit")
    ack_heartbeat_s: float = Field(
        5,
        gt=0,
        le=3600,
        description="re-publish every device's watermark this often (and at once after each reconnect): "
        "devices wait for a live one before sending, so nothing is sent while the collector is away",
    )
    crop_request_every_s: float = Field(
        60, ge=0, description="ask devices for the JPEG crops of recent scores this often; 0 = never ask"
    )
    crops_per_cage: int = Field(12, ge=0, le=200, description="most recent crops to keep fetched per cage")


class StreamConfig(Section):
    """Many collector workers on one message engine (docs/scale-out.md); ``engine = "mqtt"`` = one collector."""

    engine: Literal["mqtt", "nats"] = Field(
        "mqtt",
        description="'mqtt': this collector alone holds the broker session ([mqtt]); 'nats': it is one of "
        "many workers sharing a NATS JetStream durable consumer (devices still speak MQTT, to NATS)",
    )
    url: str = Field("nats://127.0.0.1:4222", description="NATS server(s), comma-separated")
    creds_file: Path | None = Field(None, description="NATS credentials file of the collector's user")
    stream: str = Field(
        "AMGS", pattern=ID_PATTERN, description="JetStream stream holding the device messages"
    )
    durable: str = Field(
        "amgs-collector",
        pattern=ID_PATTERN,
        description="durable consumer the workers share (each message goes to one worker)",
    )
    create: bool = Field(
        True, description="create or update the stream and the consumer at start (else they must exist)"
    )
    max_age_days: float = Field(
        7,
        gt=0,
        description="the stream keeps messages this long (a site keeps them for the centre's outages)",
    )
    replicas: int = Field(1, ge=1, le=5, description="stream replicas (3 on a JetStream cluster)")
    sources: list[str] = Field(
        [],
        description="centre only: JetStream domains of the sites whose streams this one copies over leaf "
        "nodes; a stream with sources captures no device subjects itself",
    )
    ack_wait_s: float = Field(
        60,
        ge=1,
        description="a message a worker took but did not acknowledge goes to another worker after this",
    )
    max_ack_pending: int = Field(
        20_000, ge=1, description="messages handed to the workers and not yet acknowledged, at most"
    )
    fetch_batch: int = Field(1000, ge=1, le=10_000, description="messages asked for per pull request")
    publish_to_devices: bool = Field(
        True,
        description="publish watermarks and commands to devices through the server's MQTT listener "
        "([mqtt] host/port); false at the centre: the site collector owns its devices' watermarks",
    )


def _is_loopback(host: str) -> bool:
    if host.strip().lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class HttpConfig(Section):
    bind: str = Field(
        "127.0.0.1", description="address the API and dashboard listen on; anything but loopback needs HTTPS"
    )
    port: int = Field(8080, ge=0, le=65535, description="0 = any free port (tests)")
    root_path: str = Field("", description="set when served behind a reverse proxy under a prefix")
    tls_cert_file: Path | None = Field(
        None,
        description="serve HTTPS with this certificate (PEM, chain after it); install-collector.sh copies the "
        "site's broker certificate to /etc/amgs/tls/server.crt",
    )
    tls_key_file: Path | None = Field(
        None, description="its private key (PEM, unencrypted, not readable by other users)"
    )
    allow_plain_http: bool = Field(
        False,
        description="serve plain HTTP on a non-loopback address anyway: log-ins and study data can then be "
        "read on the network (only for a TLS proxy on another host over a trusted link)",
    )

    @model_validator(mode="after")
    def _https_off_loopback(self) -> HttpConfig:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            given, missing = (
                ("tls_cert_file", "tls_key_file")
                if self.tls_key_file is None
                else ("tls_key_file", "tls_cert_file")
            )
            raise ValueError(f"http.{given} is set but http.{missing} is not: HTTPS needs both")
        if self.tls_cert_file is None and not self.allow_plain_http and not _is_loopback(self.bind):
            raise ValueError(
                f"http.bind = {self.bind!r} would serve log-ins and study data as plain HTTP on the network: "
                "set http.tls_cert_file and http.tls_key_file (install-collector.sh uses the site certificate), "
                "or bind to 127.0.0.1 behind a TLS reverse proxy, or set http.allow_plain_http = true to accept "
                "plain HTTP"
            )
        return self


class PhotoperiodConfig(Section):
    lights_on: dt.time = Field(dt.time(7, 0), description="start of the light phase (local time)")
    lights_off: dt.time = Field(dt.time(19, 0), description="start of the dark phase (local time)")
    timezone: str = Field(
        "UTC", description="IANA time zone of the room; also of metadata times written without one"
    )

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("must be an IANA time zone such as 'Europe/London' or 'UTC'") from None
        return v

    @model_validator(mode="after")
    def _distinct(self) -> PhotoperiodConfig:
        if self.lights_on == self.lights_off:
            raise ValueError("lights_on and lights_off must differ")
        return self

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class ServerConfig(Section):
    mqtt: MqttConfig = MqttConfig()
    storage: StorageConfig = StorageConfig()
    ingest: IngestConfig = IngestConfig()
    stream: StreamConfig = StreamConfig()
    http: HttpConfig = HttpConfig()
    photoperiod: PhotoperiodConfig = PhotoperiodConfig()
    log_level: str = Field(
        "INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$", description="DEBUG, INFO, WARNING or ERROR"
    )

    # ---- sections owned by the dashboard and the alert engine (server/web, server/alerts) ----
    alerts: AlertsConfig = AlertsConfig()
    notify: NotifyConfig = NotifyConfig()
    web: WebConfig = WebConfig()

    # ---- blinded human scoring and model-vs-human agreement (server/rating) ----
    rating: RatingConfig = RatingConfig()


def parse_config(data: dict[str, Any], source: str = "config") -> ServerConfig:
    """Validate a config mapping (as read from TOML)."""
    try:
        return ServerConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(f"{source}: {format_errors(e, ServerConfig)}") from None


def load_config(path: Path | str | None) -> ServerConfig:
    """Read and validate a TOML config file; ``None`` gives the defaults."""
    if path is None:
        return ServerConfig()
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {str(path)!r} does not exist (see examples/server.toml)") from None
    except OSError as e:
        raise ConfigError(f"config file {str(path)!r} cannot be read: {e}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    return parse_config(data, str(path))
