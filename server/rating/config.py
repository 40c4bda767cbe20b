"""The ``[rating]`` section: blinded human scoring of stored crops and model-vs-human agreement.

Every number here is a site decision. In particular **no validated mouse MGS pain cut-off exists**: the
human cut-off below only says which consensus scores the agreement figures (kappa, accuracy) and the
training export call "pain".
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class RatingAlertConfig(_Section):
    """Fire (existing alert channels) when rolling model-vs-human agreement falls below a site setting."""

    enabled: bool = Field(True, description="false = this rule never fires")
    window_days: float = Field(30, gt=0, le=3650, description="rolling window of rated items, by rating time")
    min_items: int = Field(
        30, ge=5, description="rated items the window needs (per model version) before the rule judges"
    )
    icc_below: float | None = Field(
        0.5,
        ge=-1,
        le=1,
        description="fire when ICC(A,1) of model AU-MGS vs human MGS is below this (Koo & Li 2016: < 0.5 "
        "poor); none = off",
    )
    kappa_below: float | None = Field(
        None, ge=-1, le=1, description="also fire when pain/no-pain Cohen's kappa is below this; none = off"
    )
    severity: Literal["info", "warning", "alert", "humane_endpoint"] = Field(
        "warning", description="severity of the alert it raises"
    )


class RatingConfig(_Section):
    """Blinded human MGS scoring (role `rater`), model-vs-human agreement and the training-set export."""

    enabled: bool = Field(True, description="sample crops into the rating pool every day")
    per_cage_per_day: int = Field(
        4, ge=0, le=200, description="crops sampled into the rating pool per cage and local day; 0 = none"
    )
    pain_strata: list[float] = Field(
        [0.0, 0.25, 0.5, 0.75, 1.0],
        description="edges of the model P(pain) strata the daily sample is spread across (0 to 1, rising)",
    )
    by_phase: bool = Field(True, description="also spread the sample across light and dark ([photoperiod])")
    random_share: float = Field(
        0.25, ge=0, le=1, description="share of each cage's daily sample drawn at random (unstratified)"
    )
    unscorable_share: float = Field(
        0.0,
        ge=0,
        le=1,
        description="share drawn from images flagged for review, as asleep or unscorable (out of domain, "
        "no face, quality); "
        "0 = such images are never sampled",
    )
    repeat_share: float = Field(
        0.1, ge=0, le=0.5, description="share of pool items each rater is shown twice (intra-rater agreement)"
    )
    repeat_gap: int = Field(
        10, ge=1, le=1000, description="at least this many other items between the two showings of a repeat"
    )
    days_back: int = Field(
        3, ge=1, le=60, description="complete local days looked back at for crops not yet sampled"
    )
    unrated_expire_days: float = Field(
        60, ge=0, description="an item nobody rated leaves the pool after this (its copy deleted); 0 = never"
    )
    raters_per_item: int = Field(
        2,
        ge=1,
        le=20,
        description="an item is offered until this many raters scored it (two or more give inter-rater "
        "agreement); then it is done",
    )
    session_items: int = Field(
        40, ge=1, le=1000, description="items offered per scoring session (a rater may stop any time)"
    )
    human_pain_cutoff: float = Field(
        1.0,
        ge=0,
        le=2,
        description="human consensus mean MGS (0-2) at or above which an item counts as pain, for kappa, "
        "accuracy and the export folders (site setting; amgs/datasets.py's default too)",
    )
    alert: RatingAlertConfig = RatingAlertConfig()

    @field_validator("pain_strata")
    @classmethod
    def _strata(cls, v: list[float]) -> list[float]:
        if len(v) < 2 or any(b <= a for a, b in zip(v, v[1:], strict=False)) or v[0] < 0 or v[-1] > 1:
            raise ValueError("needs at least two rising edges between 0 and 1, e.g. [0, 0.5, 1]")
        return v

    @model_validator(mode="after")
    def _shares(self) -> RatingConfig:
        if self.random_share + self.unscorable_share > 1:
            raise ValueError("random_share + unscorable_share must not exceed 1")
        return self
