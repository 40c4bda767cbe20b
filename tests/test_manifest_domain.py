"""Manifests with and without the in-domain check and calibration: old ones load (and say there is no
check), new ones round-trip exactly, damaged statistics are refused with the fix named."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from amgs.cli import main
from amgs.domain import DomainScorer
from amgs.manifest import Array, Calibration, DomainCheck, ManifestError, read_manifest
from amgs.models import DEFAULT_MODEL

SHIPPED = DEFAULT_MODEL.with_suffix(".manifest.json")


def _old_style(tmp_path):
    """The shipped manifest as an older release wrote it: no features/logits, no check, no calibration."""
    data = json.loads(SHIPPED.read_text())
    data.pop("domain_check", None)
    data.pop("calibration", None)
    data["outputs"] = [o for o in data["outputs"] if o["kind"] in ("softmax", "au_regression")]
    path = tmp_path / "old.manifest.json"
    path.write_text(json.dumps(data))
    return path


def _check(d=6, k=3, threshold=10.0):
    rng = np.random.default_rng(0)
    axes = np.linalg.qr(rng.normal(size=(d, k)))[0].T  # k orthonormal rows
    return DomainCheck(
        class_means=Array.of(rng.normal(size=(2, d))),
        components=Array.of(axes),
        variances=Array.of(np.array([4.0, 2.0, 1.0][:k])),
        residual_variance=0.25,
        threshold=threshold,
        quantile=0.99,
        fitted_on="unit test",
        n_fit=100,
        heldout="unit test held out",
        n_heldout=50,
    )


def test_old_manifest_loads_and_reports_no_check(tmp_path):
    m = read_manifest(_old_style(tmp_path))
    assert m.domain_check is None and m.calibration is None
    assert m.output_of_kind("features") is None
    from amgs.batch import model_banner

    assert any("no in-domain check" in line for line in model_banner(m))


def test_info_says_no_in_domain_check_for_an_old_manifest(tmp_path):
    import shutil

    model = tmp_path / "m.tflite"
    shutil.copy(DEFAULT_MODEL, model)
    _old_style(tmp_path).replace(tmp_path / "m.manifest.json")
    data = json.loads((tmp_path / "m.manifest.json").read_text())
    data["file"] = "m.tflite"
    (tmp_path / "m.manifest.json").write_text(json.dumps(data))
    r = CliRunner().invoke(main, ["model", "info", str(model)])
    assert "no in-domain check" in r.output
    # the file has outputs the old manifest does not list: info says so (exit 1), it does not hide it
    assert r.exit_code == 1 and "output features" in r.output


def test_manifest_round_trip_keeps_the_statistics_exactly():
    m = read_manifest(SHIPPED)
    check = m.domain_check
    assert check is not None and m.calibration is not None, "the shipped model carries its check"
    again = type(m).model_validate(json.loads(m.to_json()))
    assert again == m
    for field in ("class_means", "components", "variances"):
        a, b = getattr(check, field).to_numpy(), getattr(again.domain_check, field).to_numpy()
        assert a.dtype == np.float32 and np.array_equal(a, b)


def test_array_encoding_and_damage():
    a = np.arange(12, dtype=np.float32).reshape(3, 4) / 7
    assert np.array_equal(Array.of(a).to_numpy(), a)
    with pytest.raises(ManifestError, match="damaged"):
        Array(shape=(5, 4), data=Array.of(a).data).to_numpy()


def test_domain_scorer_is_the_mahalanobis_distance_to_the_nearest_class():
    """Against the textbook form: (f - m)^T C^-1 (f - m) with C = V diag(var) V^T + res (I - V^T V)."""
    check = _check()
    scorer = DomainScorer(check)
    v, var = check.components.to_numpy().astype(np.float64), check.variances.to_numpy().astype(np.float64)
    cov = v.T @ np.diag(var) @ v + check.residual_variance * (np.eye(6) - v.T @ v)
    inv = np.linalg.inv(cov)
    f = np.random.default_rng(1).normal(size=6).astype(np.float32)
    want = min(float((f - m) @ inv @ (f - m)) for m in check.class_means.to_numpy())
    assert scorer.distance(f) == pytest.approx(want, rel=1e-4)
    assert scorer.distance(np.stack([f, f])) == pytest.approx([want, want], rel=1e-5)
    assert scorer.in_domain(check.threshold) and not scorer.in_domain(check.threshold + 1e-3)


def test_statistics_that_do_not_fit_the_features_output_are_refused(tmp_path):
    data = json.loads(SHIPPED.read_text())
    data["domain_check"] = json.loads(_check(d=6).model_dump_json())  # 6 features, the model has 768
    path = tmp_path / "bad.manifest.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ManifestError, match="do not fit the 'features_mixed5' output"):
        read_manifest(path)
    data["domain_check"]["output"] = "pain"
    path.write_text(json.dumps(data))
    with pytest.raises(ManifestError, match="amgs model calibrate"):
        read_manifest(path)


def test_calibration_needs_its_logits_output(tmp_path):
    data = json.loads(_old_style(tmp_path).read_text())
    data["calibration"] = json.loads(
        Calibration(temperature=1.5, source="logits", fitted_on="x", n=20).model_dump_json()
    )
    path = tmp_path / "c.manifest.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ManifestError, match="logits"):
        read_manifest(path)
