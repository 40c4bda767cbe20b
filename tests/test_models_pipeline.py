"""The model tooling end to end on a small CPU budget: train from random weights at 96 px on a few
hundred SYNTHETIC faces, quantize to full int8, evaluate, explain, and check manifests.

One training run (module fixture) serves every test here.
"""

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from amgs.cli import main
from amgs.manifest import read_manifest
from amgs.runtime import Model
from amgs.synth.dataset import write_dataset

pytestmark = pytest.mark.slow

SIZE = 96


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("model-sets")
    train = write_dataset(root / "train", 320, seed=11, size=SIZE, n_animals=16, margin=0.5).root
    test = write_dataset(root / "test", 80, seed=12, size=SIZE, n_animals=6, margin=0.5).root
    return train, test


@pytest.fixture(scope="module")
def trained(sets, tmp_path_factory):
    from amgs.models.train import TrainConfig, train

    out = tmp_path_factory.mktemp("run")
    cfg = TrainConfig(
        size=SIZE,
        weights="none",
        epochs=8,
        batch_size=16,
        learning_rate=1e-3,
        warmup_steps=20,
        val_fraction=0.2,
        bn_recalibration_batches=10,
    )
    return train(sets[0], out, cfg, verbose=0, log_fn=lambda m: None)


@pytest.fixture(scope="module")
def quantized(trained, sets, tmp_path_factory):
    out = tmp_path_factory.mktemp("q") / "small.tflite"
    result = CliRunner().invoke(
        main,
        [
            "model",
            "quantize",
            str(trained.model_path),
            "--calibration",
            str(sets[0]),
            "-o",
            str(out),
            "--name",
            "test-small",
            "--version",
            "0.0.1",
            "--training-data",
            "pytest synthetic",
            "--synthetic",
            "--size",
            str(SIZE),
            "--calibration-count",
            "40",
        ],
    )
    assert result.exit_code == 0, result.output
    return out


def test_training_learns_and_never_leaks_an_animal(trained, sets):
    from amgs.models.data import load_arrays
    from amgs.models.train import load_keras, predict_arrays

    record = json.loads((trained.model_path.parent / "train.json").read_text())
    assert record["val_animals"] and trained.n_val > 0
    data = load_arrays(sets[0], SIZE)
    train_animals = set(data.animals) - set(record["val_animals"])
    assert train_animals.isdisjoint(record["val_animals"])
    # held-out: a separate set of new animals
    test = load_arrays(sets[1], SIZE)
    out = predict_arrays(load_keras(trained.model_path), test.pixels, SIZE)
    accuracy = float(np.mean((out["pain"][:, 1] >= 0.5) == (test.labels == 1)))
    assert accuracy >= 0.75, f"held-out accuracy {accuracy:.3f} (chance is 0.5)"
    assert out["au"].shape == (len(test), 5) and np.all((out["au"] >= 0) & (out["au"] <= 2))


def test_resume_continues_from_the_backup(trained, sets, tmp_path):
    """An interrupted run leaves backup/; rerunning the same command continues from its epoch."""
    from amgs.models.train import TrainConfig, train

    out = tmp_path / "run"
    shutil.copytree(trained.model_path.parent, out)
    (out / "backup").mkdir()
    shutil.copy(out / "model.weights.h5", out / "backup" / "latest.weights.h5")
    (out / "backup" / "training_metadata.json").write_text(json.dumps({"epoch": 1, "batch": 0}))
    lines = []
    cfg = TrainConfig(
        size=SIZE,
        weights="none",
        epochs=2,
        steps_per_epoch=2,
        batch_size=8,
        val_fraction=0.2,
        bn_recalibration_batches=0,
    )
    result = train(sets[0], out, cfg, verbose=0, log_fn=lines.append)
    assert any("resuming" in m for m in lines)
    assert len(result.history["loss"]) == 1  # only the second epoch ran
    assert not (out / "backup").exists()  # removed after a finished run


def test_quantized_model_keeps_decisions_and_loads_with_its_manifest(trained, quantized, sets):
    m = Model(quantized)
    assert m.input.dtype == "uint8" and m.input.shape == (1, SIZE, SIZE, 3)
    assert m.manifest.quantization == "full_int8" and m.manifest.synthetic
    assert set(m.outputs) == {"pain", "au", "features", "features_mixed5", "logits"}
    assert m.manifest.domain_check is not None and m.manifest.calibration is not None
    assert m.manifest.domain_check.output in m.outputs
    # the input quantization covers every pixel value (scale 2/255)
    assert m.manifest.input.quantization[0] == pytest.approx(2 / 255, rel=1e-3)
    from amgs.models.evaluate import predict

    pred = predict(quantized, sets[1], float_model=trained.model_path)
    same = np.mean((pred.p_float >= 0.5) == (pred.p_int8 >= 0.5))
    assert same >= 0.9, f"float and int8 agree on {same:.2%} of decisions"
    assert np.mean(np.abs(pred.p_float - pred.p_raw)) < 0.08


def test_manifest_round_trips(quantized):
    path = quantized.with_suffix(".manifest.json")
    m = read_manifest(path)
    assert read_manifest(path) == m
    assert json.loads(m.to_json()) == json.loads(path.read_text())


def test_evaluate_writes_report_plots_and_manifest_figures(quantized, sets, trained, tmp_path):
    out = tmp_path / "report"
    r = CliRunner().invoke(
        main,
        [
            "model",
            "evaluate",
            str(quantized),
            str(sets[1]),
            "-o",
            str(out),
            "--float-model",
            str(trained.model_path),
            "--dataset-name",
            "pytest-heldout",
            "--record",
        ],
    )
    assert r.exit_code == 0, r.output
    for name in (
        "report.md",
        "roc.png",
        "reliability.png",
        "confusion.png",
        "per_animal.png",
        "mgs_scatter.png",
        "float_vs_int8.png",
        "predictions.csv",
    ):
        assert (out / name).stat().st_size > 0, name
    figs = json.loads((out / "figures.json").read_text())
    ev = {e.dataset: e for e in read_manifest(quantized.with_suffix(".manifest.json")).evaluation}
    assert ev["pytest-heldout"].figures == figs and ev["pytest-heldout"].n_images == 80
    # the figures are those of the per-image predictions written beside them
    rows = np.genfromtxt(out / "predictions.csv", delimiter=",", names=True, dtype=None, encoding=None)
    acc = np.mean((rows["p_pain_int8"] >= 0.5) == (rows["label"] == 1))
    assert figs["accuracy"] == pytest.approx(acc, abs=1e-4)
    assert figs["tp"] + figs["fp"] + figs["tn"] + figs["fn"] == 80
    assert "SYNTHETIC" in (out / "report.md").read_text()


def test_info_agrees_then_detects_a_tampered_file(quantized, tmp_path):
    r = CliRunner().invoke(main, ["model", "info", str(quantized)])
    assert r.exit_code == 0, r.output
    assert "MISMATCH" not in r.output and "SYNTHETIC" in r.output
    copy = tmp_path / quantized.name
    shutil.copy(quantized, copy)
    shutil.copy(quantized.with_suffix(".manifest.json"), copy.with_suffix(".manifest.json"))
    with open(copy, "r+b") as f:
        f.seek(-64, 2)
        f.write(b"\x00" * 16)
    r = CliRunner().invoke(main, ["model", "info", str(copy)])
    assert r.exit_code == 1 and "MISMATCH" in r.output and "sha256" in r.output


def test_explain_occlusion_on_int8(quantized, sets, tmp_path):
    from amgs.models.explain import occlusion_map
    from amgs.scoring import Scorer

    image = next((sets[1] / "pain").iterdir())
    occ = occlusion_map(Scorer(Model(quantized)), image, patch=24, stride=12)
    assert occ.heat.shape == (SIZE, SIZE) and np.isfinite(occ.heat).all()
    r = CliRunner().invoke(
        main,
        [
            "model",
            "explain",
            str(quantized),
            str(image),
            "-o",
            str(tmp_path / "h.png"),
            "--patch",
            "24",
            "--stride",
            "12",
        ],
    )
    assert r.exit_code == 0, r.output
    assert (tmp_path / "h.png").stat().st_size > 0 and "P(pain)" in r.output
