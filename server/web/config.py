"""Dashboard access settings (``[web]`` in server.toml)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class WebConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(
        True,
        description="serve the dashboard (false: no pages, log-in or /static; the API with API tokens stays)",
    )
    view_requires_login: bool = Field(
        False,
        description="false: anyone on the network may view; acting (acknowledge, edit) always needs a login",
    )
    session_hours: float = Field(12, gt=0, le=24 * 30, description="a login expires after this")
    cookie_secure: bool = Field(
        False,
        description="always mark cookies Secure; they already are whenever a request arrives over HTTPS "
        "(the collector's own TLS, or a TLS reverse proxy on loopback sending X-Forwarded-Proto)",
    )
    title: str = Field("aMGS collector", max_length=80, description="shown in every page's header")
    recent_crops: int = Field(24, ge=0, le=200, description="face crops shown on a cage page")
