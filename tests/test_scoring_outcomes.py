"""The third outcome: unscorable images carry a reason and never enter a mean, a fraction pain or a review count;
the quality gate; temperature-scaled P(pain)."""

import math

import numpy as np
import pytest

from amgs.manifest import Calibration
from amgs.scoring import (
    NO_FACE,
    OUT_OF_DOMAIN,
    OUTCOMES,
    QUALITY,
    UNSCORABLE,
    UNSCORABLE_REASONS,
    ImageScore,
    calibrated_p_pain,
    mark_unscorable,
    pixel_quality,
    score_from_outputs,
    summarize,
)


def _s(a, label, review=False):
    return ImageScore(p_pain=a, label=label, confidence=max(a, 1 - a), amgs=a, needs_review=review)


def test_outcome_defaults_to_the_label_and_unscorable_needs_a_reason():
    s = score_from_outputs(np.array([0.2, 0.8]), 0.5, 0.65)
    assert s.outcome == "pain" and s.unscorable_reason is None and s.scorable
    u = mark_unscorable(s, OUT_OF_DOMAIN)
    assert (u.outcome, u.unscorable_reason, u.scorable) == (UNSCORABLE, OUT_OF_DOMAIN, False)
    assert (u.p_pain, u.label) == (s.p_pain, s.label), "the raw verdict is kept for the record"
    assert set(OUTCOMES) == {"pain", "no pain", "unscorable"}
    assert set(UNSCORABLE_REASONS) == {"out_of_domain", "no_face", "quality"}
    with pytest.raises(ValueError, match="reason"):
        ImageScore(0.9, "pain", 0.9, 0.9, False, outcome=UNSCORABLE)
    with pytest.raises(ValueError, match="not one of"):
        mark_unscorable(s, "blurry")


def test_summary_leaves_unscorable_out_of_every_figure():
    scores = [
        _s(0.2, "no pain"),
        _s(0.4, "no pain", review=True),
        _s(0.9, "pain"),
        mark_unscorable(_s(0.99, "pain", review=True), OUT_OF_DOMAIN),
        mark_unscorable(_s(0.98, "pain"), QUALITY),
        mark_unscorable(_s(0.97, "pain"), OUT_OF_DOMAIN),
    ]
    s = summarize(scores)
    assert (s.n, s.n_unscorable, s.n_total) == (3, 3, 6)
    assert s.mean_amgs == pytest.approx(0.5)
    assert s.fraction_pain == pytest.approx(1 / 3)
    assert s.n_review == 1
    assert s.unscorable_by_reason == {OUT_OF_DOMAIN: 2, QUALITY: 1}
    only_bad = summarize([mark_unscorable(_s(0.9, "pain"), NO_FACE)])
    assert (only_bad.n, only_bad.mean_amgs, only_bad.fraction_pain, only_bad.n_unscorable) == (
        0,
        None,
        None,
        1,
    )


def test_quality_gate_flags_flat_and_clipped_frames_only():
    rng = np.random.default_rng(0)
    assert pixel_quality(np.full((64, 64, 3), 128, np.uint8)) == QUALITY
    assert pixel_quality(np.full((64, 64, 3), 255, np.uint8)) == QUALITY
    nearly_flat = np.clip(rng.normal(90, 1.0, (64, 64, 3)), 0, 255).astype(np.uint8)
    assert pixel_quality(nearly_flat) == QUALITY
    blown = np.full((64, 64, 3), 255, np.uint8)
    blown[:20] = rng.integers(0, 200, (20, 64, 3))
    assert pixel_quality(blown) == QUALITY
    textured = rng.integers(40, 220, (64, 64, 3)).astype(np.uint8)
    assert pixel_quality(textured) is None


def test_temperature_scales_the_log_odds_and_keeps_the_decision():
    cal = Calibration(temperature=2.0, source="logits", fitted_on="t", n=10)
    p = calibrated_p_pain(cal, np.array([0.0, 1.0]), np.array([-1.0, 3.0]))
    assert p == pytest.approx(1 / (1 + math.exp(-4.0 / 2.0)))
    assert calibrated_p_pain(cal, np.array([0.5, 0.5]), np.array([2.0, 2.0])) == pytest.approx(0.5)
    soft = Calibration(temperature=1.0, source="softmax", fitted_on="t", n=10)
    assert calibrated_p_pain(soft, np.array([0.25, 0.75])) == pytest.approx(0.75)
    # a saturated int8 softmax is clipped half a step from 1, not turned into infinite log-odds
    assert 0.99 < calibrated_p_pain(soft, np.array([0.0, 1.0])) < 1.0
    with pytest.raises(ValueError, match="logits"):
        calibrated_p_pain(cal, np.array([0.5, 0.5]))
    s = score_from_outputs(np.array([0.1, 0.9]), 0.5, 0.65, p_pain=0.6)
    assert (s.p_pain, s.label, s.needs_review) == (0.6, "pain", True)
