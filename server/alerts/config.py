"""Alert rules and notification settings, validated up front (``[alerts]`` and ``[notify]`` in server.toml).

No validated intervention cut-off exists for the mouse MGS, and the shipped model is trained on synthetic
faces: every number here is a site decision, not a scientific constant. The defaults only make the
demo and a first install do something sensible; a facility sets its own with its veterinarian.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Severity = Literal["info", "warning", "alert", "humane_endpoint"]
SEVERITY_RANK: dict[str, int] = {"info": 0, "warning": 1, "alert": 2, "humane_endpoint": 3}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SustainedPainRule(_Strict):
    """Fire when, over the last ``window_min`` with at least ``min_images`` scored images, the fraction
    classified pain is >= ``fraction_pain`` OR the mean aMGS is >= ``mean_amgs`` (either may be off)."""

    enabled: bool = True
    window_min: float = Field(60, gt=0, le=7 * 24 * 60)
    min_images: int = Field(20, ge=1)
    fraction_pain: float | None = Field(0.5, ge=0, le=1)
    mean_amgs: float | None = Field(0.6, ge=0, le=1)
    severity: Severity = "alert"

    @model_validator(mode="after")
    def _one_threshold(self) -> SustainedPainRule:
        if self.enabled and self.fraction_pain is None and self.mean_amgs is None:
            raise ValueError("set fraction_pain or mean_amgs (or enabled = false)")
        return self


class HumaneEndpointRule(SustainedPainRule):
    """Escalation level of the sustained-pain alert: stronger thresholds over a longer window, or pain
    that has stayed open longer than ``sustained_h``. Escalation re-notifies even when acknowledged."""

    window_min: float = Field(240, gt=0, le=7 * 24 * 60)
    min_images: int = Field(60, ge=1)
    fraction_pain: float | None = Field(0.8, ge=0, le=1)
    mean_amgs: float | None = Field(0.8, ge=0, le=1)
    sustained_h: float | None = Field(None, gt=0)
    severity: Literal["humane_endpoint"] = "humane_endpoint"


class BaselineRiseRule(_Strict):
    """Fire when the window's mean aMGS exceeds the animal's (or cage's) own pre-event baseline by ``rise``."""

    enabled: bool = True
    window_min: float = Field(60, gt=0, le=7 * 24 * 60)
    min_images: int = Field(20, ge=1)
    rise: float = Field(0.25, gt=0, le=1)
    baseline_min_images: int = Field(20, ge=1)
    baseline_hours: float = Field(
        24, gt=0, le=24 * 14, description="baseline = this long before the first surgery"
    )
    severity: Severity = "warning"


class DeviceOfflineRule(_Strict):
    """Fire when a device has been offline (last will or silence) for longer than ``after_min``."""

    enabled: bool = True
    after_min: float = Field(15, gt=0)
    severity: Severity = "alert"


class NoFacesRule(_Strict):
    """Fire when an online device has delivered no usable (scored) face for a cage for ``after_min``."""

    enabled: bool = True
    after_min: float = Field(120, gt=0)
    severity: Severity = "warning"


class DeviceErrorRule(_Strict):
    """Fire while a device reports camera/model errors (status ``degraded``, ``errors``, a view error)."""

    enabled: bool = True
    severity: Severity = "warning"


class AlertsConfig(_Strict):
    enabled: bool = True
    evaluate_every_s: float = Field(60, gt=0, le=3600)
    renotify_after_min: float = Field(60, gt=0, description="re-send an unacknowledged open alert this often")
    auto_resolve: bool = True
    resolve_after_min: float = Field(10, ge=0, description="condition must stay clear this long to resolve")
    notify_on_resolve: bool = True
    pain: SustainedPainRule = SustainedPainRule()
    humane_endpoint: HumaneEndpointRule = HumaneEndpointRule()
    baseline_rise: BaselineRiseRule = BaselineRiseRule()
    device_offline: DeviceOfflineRule = DeviceOfflineRule()
    no_faces: NoFacesRule = NoFacesRule()
    device_errors: DeviceErrorRule = DeviceErrorRule()


class MqttNotify(_Strict):
    """Publish each cage's current alert state, retained, on ``amgs.contract.alert_topic`` (QoS 1)."""

    enabled: bool = True
    publish_timeout_s: float = Field(10, gt=0)


class WebhookNotify(_Strict):
    """POST the ``amgs.alert/1`` JSON to ``url``; a 2xx answer is delivery."""

    url: str = Field(pattern=r"^https?://")
    timeout_s: float = Field(10, gt=0)
    min_severity: Severity = "warning"
    secret_file: Path | None = Field(None, description="HMAC-SHA256 key: X-Amgs-Signature header")


class EmailNotify(_Strict):
    """Send through an SMTP relay (e.g. the facility's, or a local Postfix)."""

    host: str = "localhost"
    port: int = Field(25, ge=1, le=65535)
    sender: str = Field("amgs@localhost", alias="from")
    to: list[str] = Field(min_length=1)
    starttls: bool = False
    ssl: bool = False
    username: str | None = None
    password_file: Path | None = None
    timeout_s: float = Field(20, gt=0)
    min_severity: Severity = "alert"
    subject_prefix: str = "[aMGS]"

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class NotifyConfig(_Strict):
    retry_initial_s: float = Field(10, gt=0)
    retry_max_s: float = Field(900, gt=0)
    deliver_every_s: float = Field(5, gt=0)
    mqtt: MqttNotify = MqttNotify()
    webhooks: list[WebhookNotify] = []
    email: EmailNotify | None = None
