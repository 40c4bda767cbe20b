"""The in-domain fit and the temperature fit, checked against direct computations on simulated features."""

import numpy as np
import pytest

from amgs.domain import DomainScorer
from amgs.models.indomain import fit_check, fit_mahalanobis, ledoit_wolf
from amgs.models.temperature import apply, fit_temperature, nll


def _features(rng, n, d=40):
    labels = np.arange(n) % 2
    means = np.stack([np.zeros(d), np.r_[3.0, np.zeros(d - 1)]])
    scales = np.linspace(3, 0.2, d)
    return means[labels] + rng.normal(size=(n, d)) * scales, labels


def test_ledoit_wolf_shrinks_towards_a_scaled_identity():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 20)) * np.linspace(2, 0.5, 20)
    x -= x.mean(axis=0)
    cov, shrink = ledoit_wolf(x)
    s = x.T @ x / len(x)
    mu = np.trace(s) / 20
    assert 0 < shrink < 1
    assert np.allclose(cov, (1 - shrink) * s + shrink * mu * np.eye(20))
    assert np.linalg.eigvalsh(cov).min() > 0, "well conditioned although n is close to p"


def test_fit_is_the_probabilistic_pca_mahalanobis_distance():
    rng = np.random.default_rng(1)
    f, y = _features(rng, 400)
    fit = fit_mahalanobis(f, y, dims=8)
    # the long way: class means, within-class covariance, top 8 eigenpairs kept, the rest averaged
    means = np.stack([f[y == k].mean(axis=0) for k in (0, 1)])
    r = f - means[y]
    w, e = np.linalg.eigh(r.T @ r / len(r))
    w, e = w[::-1], e[:, ::-1]
    rest = w[8:].mean()
    cov = e[:, :8] @ np.diag(w[:8]) @ e[:, :8].T + rest * (np.eye(40) - e[:, :8] @ e[:, :8].T)
    inv = np.linalg.inv(cov)
    q = rng.normal(size=(5, 40)) * 2
    want = np.min([np.einsum("ij,jk,ik->i", q - m, inv, q - m) for m in means], axis=0)
    assert np.allclose(fit.distance(q), want, rtol=1e-6)
    assert fit.residual_variance == pytest.approx(rest)


def test_the_remainder_term_catches_what_leaves_the_face_subspace():
    """An input that moves only along a low-variance direction is far, although its top-PC part is typical."""
    rng = np.random.default_rng(4)
    basis = np.linalg.qr(rng.normal(size=(40, 4)))[0].T  # faces live near a 4-d subspace of 40 features
    f = rng.normal(size=(600, 4)) * 3 @ basis + rng.normal(size=(600, 40)) * 0.1
    y = np.arange(600) % 2
    fit = fit_mahalanobis(f, y, dims=4)
    typical = f[:50]
    off = (
        typical + 1.0 * np.linalg.qr(np.c_[basis.T, rng.normal(size=40)])[0][:, -1]
    )  # 1 unit off the subspace
    gain = fit.distance(off) - fit.distance(typical)
    # the off-subspace unit step costs 1 / remainder variance (~100 here), against ~40 for a typical face
    assert np.mean(gain) == pytest.approx(1 / fit.residual_variance, rel=0.3)
    assert np.median(fit.distance(off)) > 3 * np.median(fit.distance(typical))


def test_threshold_is_the_heldout_quantile_and_far_inputs_are_out():
    rng = np.random.default_rng(2)
    f, y = _features(rng, 600)
    held, _ = _features(rng, 300)
    check, dist = fit_check(f, y, held, fitted_on="sim", heldout="sim", dims=8, quantile=0.95)
    assert check.threshold == pytest.approx(np.quantile(dist, 0.95))
    scorer = DomainScorer(check)
    inside = np.mean([scorer.in_domain(d) for d in scorer.distance(held)])
    assert 0.93 <= inside <= 0.97
    far = held + 25.0 * rng.normal(size=held.shape)
    assert not any(scorer.in_domain(d) for d in scorer.distance(far))
    with pytest.raises(ValueError, match="held-out"):
        fit_check(f, y, held[:5], fitted_on="sim", heldout="sim")
    with pytest.raises(ValueError, match="--dims"):
        fit_mahalanobis(f[:10], y[:10], dims=8)


def test_temperature_recovers_an_over_confident_model():
    rng = np.random.default_rng(3)
    true_odds = rng.normal(0, 2.0, 4000)
    labels = (rng.random(4000) < apply(true_odds, 1.0)).astype(int)
    t = fit_temperature(true_odds * 3.0, labels)  # a model 3x too confident
    assert t == pytest.approx(3.0, rel=0.1)
    assert nll(true_odds * 3.0, labels, t) < nll(true_odds * 3.0, labels, 1.0)
    with pytest.raises(ValueError, match="both classes"):
        fit_temperature(true_odds[:50], np.ones(50))
