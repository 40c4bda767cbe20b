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

    enabled: bool = Field(True, description="false = this rule never fires")
    window_min: float = Field(60, gt=0, le=7 * 24 * 60, description="look back this far")
    min_images: int = Field(20, ge=1, description="scored images the window needs before the rule judges")
    fraction_pain: float | None = Field(
        0.5, ge=0, le=1, description="fire at this fraction of images called pain; none = off"
    )
    mean_amgs: float | None = Field(0.6, ge=0, le=1, description="fire at this mean aMGS; none = off")
    severity: Severity = Field("alert", description="severity of the alert it raises")

    @model_validator(mode="after")
    def _one_threshold(self) -> SustainedPainRule:
        if self.enabled and self.fraction_pain is None and self.mean_amgs is None:
            raise ValueError("set fraction_pain or mean_amgs (or enabled = false)")
        return self


class HumaneEndpointRule(SustainedPainRule):
    """Escalation level of the sustained-pain alert: stronger thresholds over a longer window, or pain
    that has stayed open longer than ``sustained_h``. Escalation re-notifies even when acknowledged."""

    window_min: float = Field(240, gt=0, le=7 * 24 * 60, description="look back this far")
    min_images: int = Field(60, ge=1, description="scored images the window needs before the rule judges")
    fraction_pain: float | None = Field(
        0.8, ge=0, le=1, description="fire at this fraction of images called pain; none = off"
    )
    mean_amgs: float | None = Field(0.8, ge=0, le=1, description="fire at this mean aMGS; none = off")
    sustained_h: float | None = Field(
        None, gt=0, description="also escalate a pain alert open this long; none = off"
    )
    severity: Literal["humane_endpoint"] = Field("humane_endpoint", description="always humane_endpoint")


class BaselineRiseRule(_Strict):
    """Fire when the window's mean aMGS exceeds the animal's (or cage's) own pre-event baseline by ``rise``."""

    enabled: bool = Field(True, description="false = this rule never fires")
    window_min: float = Field(60, gt=0, le=7 * 24 * 60, description="look back this far")
    min_images: int = Field(20, ge=1, description="scored images the window needs before the rule judges")
    rise: float = Field(0.25, gt=0, le=1, description="fire when the mean aMGS exceeds the baseline by this")
    baseline_min_images: int = Field(20, ge=1, description="images the baseline needs to count")
    baseline_hours: float = Field(
        24, gt=0, le=24 * 14, description="baseline = this long before the first surgery"
    )
    severity: Severity = Field("warning", description="severity of the alert it raises")


class DeviceOfflineRule(_Strict):
    """Fire when a device has been offline (last will or silence) for longer than ``after_min``."""

    enabled: bool = Field(True, description="false = this rule never fires")
    after_min: float = Field(15, gt=0, description="offline this long before the alert")
    severity: Severity = Field("alert", description="severity of the alert it raises")


class NoFacesRule(_Strict):
    """Fire when an online device has delivered no usable (scored) face for a cage for ``after_min``."""

    enabled: bool = Field(True, description="false = this rule never fires")
    after_min: float = Field(120, gt=0, description="no usable face this long before the alert")
    severity: Severity = Field("warning", description="severity of the alert it raises")


class NoUsableFacesRule(_Strict):
    """Fire when, over the last ``window_min`` with at least ``min_images`` images, the share the device
    found unscorable (out of the model's domain, no face, poor quality) is >= ``unscorable_share``: the
    cage is effectively unmonitored although images arrive (camera moved, fogged, lights, bedding)."""

    enabled: bool = Field(True, description="false = this rule never fires")
    window_min: float = Field(120, gt=0, le=7 * 24 * 60, description="look back this far")
    min_images: int = Field(
        6, ge=1, description="images (scorable or not) the window needs before the rule judges"
    )
    unscorable_share: float = Field(
        0.8, gt=0, le=1, description="fire at this share of the window's images unscorable"
    )
    severity: Severity = Field("warning", description="severity of the alert it raises")


class DeviceErrorRule(_Strict):
    """Fire while a device reports camera/model errors (status ``degraded``, ``errors``, a view error)."""

    enabled: bool = Field(True, description="false = this rule never fires")
    severity: Severity = Field("warning", description="severity of the alert it raises")


class AlertsConfig(_Strict):
    enabled: bool = Field(
        True, description="false = no alert rule runs (notifications of stored alerts still go out)"
    )
    evaluate_every_s: float = Field(60, gt=0, le=3600, description="run the rules this often")
    renotify_after_min: float = Field(60, gt=0, description="re-send an unacknowledged open alert this often")
    auto_resolve: bool = Field(True, description="resolve an alert when its condition has cleared")
    resolve_after_min: float = Field(10, ge=0, description="condition must stay clear this long to resolve")
    notify_on_resolve: bool = Field(True, description="notify when an alert resolves")
    pain: SustainedPainRule = SustainedPainRule()
    humane_endpoint: HumaneEndpointRule = HumaneEndpointRule()
    baseline_rise: BaselineRiseRule = BaselineRiseRule()
    device_offline: DeviceOfflineRule = DeviceOfflineRule()
    no_faces: NoFacesRule = NoFacesRule()
    no_usable_faces: NoUsableFacesRule = NoUsableFacesRule()
    device_errors: DeviceErrorRule = DeviceErrorRule()


class MqttNotify(_Strict):
    """Publish each cage's current alert state, retained, on ``amgs.contract.alert_topic`` (QoS 1)."""

    enabled: bool = Field(True, description="publish alert states over MQTT")
    username: str | None = Field(
        None,
        description="the alert publisher's own broker account (provisioned as '<mqtt.username>-alerts'); "
        "default: the collector's [mqtt] account",
    )
    password_file: Path | None = Field(None, description="file holding that account's password")
    publish_timeout_s: float = Field(10, gt=0, description="a publish not acknowledged by then is retried")


class WebhookNotify(_Strict):
    """POST the ``amgs.alert/1`` JSON to ``url``; a 2xx answer is delivery."""

    url: str = Field(pattern=r"^https?://", description="where to POST")
    timeout_s: float = Field(10, gt=0, description="give up on one attempt after this")
    min_severity: Severity = Field("warning", description="send alerts of this severity and above")
    secret_file: Path | None = Field(None, description="HMAC-SHA256 key: X-Amgs-Signature header")


class EmailNotify(_Strict):
    """Send through an SMTP relay (e.g. the facility's, or a local Postfix)."""

    host: str = Field("localhost", description="SMTP relay")
    port: int = Field(25, ge=1, le=65535, description="its port")
    sender: str = Field("amgs@localhost", alias="from", description="From address")
    to: list[str] = Field(min_length=1, description="recipients")
    starttls: bool = Field(False, description="upgrade the connection with STARTTLS")
    ssl: bool = Field(False, description="connect over TLS from the start (port 465)")
    username: str | None = Field(None, description="relay account, when it requires one")
    password_file: Path | None = Field(None, description="file holding that account's password")
    timeout_s: float = Field(20, gt=0, description="give up on one attempt after this")
    min_severity: Severity = Field("alert", description="send alerts of this severity and above")
    subject_prefix: str = Field("[aMGS]", description="start of every subject line")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class NotifyConfig(_Strict):
    retry_initial_s: float = Field(10, gt=0, description="first retry of a failed notification after this")
    retry_max_s: float = Field(900, gt=0, description="retries back off (doubling) up to this")
    deliver_every_s: float = Field(5, gt=0, description="look for notifications to deliver this often")
    mqtt: MqttNotify = MqttNotify()
    webhooks: list[WebhookNotify] = Field([], description="each `[[notify.webhooks]]` table is one receiver")
    email: EmailNotify | None = None
