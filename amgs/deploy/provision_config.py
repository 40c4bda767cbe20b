"""The provisioning config (``/etc/amgs/provision.toml``) and the error every provisioning step raises."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated

import click
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from amgs import contract
from amgs.config_errors import format_errors

DEFAULT_CONFIG = Path("/etc/amgs/provision.toml")
Id = Annotated[str, Field(pattern=contract.ID_PATTERN)]


class ProvisionError(click.ClickException):
    """Provisioning could not finish; the message says what to do."""


class ProvisionConfig(BaseModel):
    """``/etc/amgs/provision.toml`` (written by scripts/install-collector.sh)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    site: Id = Field(description="site id every device of this collector publishes under")
    broker_host: str = Field(description="name devices connect to; must be in the broker certificate")
    broker_port: int = Field(8883, ge=1, le=65535, description="the broker's TLS listener")
    password_file: Path = Path("/etc/mosquitto/amgs/passwd")
    acl_file: Path = Path("/etc/mosquitto/amgs/acl")
    ca_cert: Path = Path("/etc/mosquitto/amgs/certs/ca.crt")
    broker_group: str | None = Field(
        "mosquitto", description="group the broker reads passwd/acl as; '' = leave the group alone"
    )
    state_dir: Path = Field(Path("/var/lib/amgs-provision"), description="registry and device bundles")
    collector_user: Id = Field("collector", description="the collector's broker account (its ingest session)")
    collector_password_file: Path = Path("/etc/amgs/collector-mqtt-password")
    alerts_password_file: Path = Field(
        Path("/etc/amgs/collector-alerts-mqtt-password"),
        description="password of the collector's alert publisher, account '<collector_user>-alerts'",
    )
    collector_group: str | None = Field(
        "amgs", description="group the collector service runs as; '' = leave the group alone"
    )
    server_config: Path | None = Field(
        Path("/etc/amgs/server.toml"), description="collector config: devices are registered in its database"
    )
    reload_command: list[str] = Field(
        ["systemctl", "try-reload-or-restart", "mosquitto"],
        description="makes a running broker re-read passwd/acl (SIGHUP); [] = skip",
    )
    device_etc: Path = Field(Path("/etc/amgs"), description="where the bundle is installed on the device")
    mosquitto_passwd: str = "mosquitto_passwd"

    @property
    def alerts_user(self) -> str:
        """The alert publisher's account: the broker binds client ids to accounts, one per connection."""
        return f"{self.collector_user}-alerts"

    @property
    def registry_path(self) -> Path:
        return self.state_dir / "devices.json"

    @property
    def bundles_dir(self) -> Path:
        return self.state_dir / "bundles"


def load_config(path: Path) -> ProvisionConfig:
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ProvisionError(
            f"{path}: no provisioning config; scripts/install-collector.sh writes it (or pass --config)"
        ) from None
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ProvisionError(f"{path}: cannot read it as TOML: {e}") from None
    try:
        return ProvisionConfig.model_validate(data)
    except ValidationError as e:
        raise ProvisionError(f"{path}: {format_errors(e, ProvisionConfig)}") from None
