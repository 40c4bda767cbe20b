"""The shipped model: its file and manifest agree, it is honestly labelled, and it does its job on fresh
SYNTHETIC faces (real LiteRT int8 inference at 299 px)."""

import json
import re
import shutil

import numpy as np
from click.testing import CliRunner

from amgs.cli import main
from amgs.manifest import read_manifest
from amgs.models import DEFAULT_MODEL, MODELS_DIR
from amgs.synth.dataset import write_dataset


def test_info_agrees_on_the_shipped_model():
    r = CliRunner().invoke(main, ["model", "info", str(DEFAULT_MODEL)])
    assert r.exit_code == 0, r.output
    assert "MISMATCH" not in r.output
    assert "Edge TPU ops" in r.output and "SYNTHETIC" in r.output


def test_info_detects_a_replaced_file(tmp_path):
    copy = tmp_path / DEFAULT_MODEL.name
    shutil.copy(DEFAULT_MODEL, copy)
    shutil.copy(DEFAULT_MODEL.with_suffix(".manifest.json"), copy.with_suffix(".manifest.json"))
    data = bytearray(copy.read_bytes())
    data[len(data) // 2] ^= 0xFF
    copy.write_bytes(bytes(data))
    r = CliRunner().invoke(main, ["model", "info", str(copy)])
    assert r.exit_code == 1
    assert "MISMATCH sha256" in r.output


def test_shipped_model_is_evaluated_and_honest():
    m = read_manifest(DEFAULT_MODEL.with_suffix(".manifest.json"))
    assert m.synthetic and "SYNTHETIC" in m.training_data
    held_out = [e for e in m.evaluation if "held-out" in e.dataset]
    assert held_out, "the shipped model carries its held-out evaluation"
    figs = held_out[0].figures
    for key in ("accuracy", "roc_auc", "pearson_r_au_vs_generator_mgs", "float_int8_identical_decisions"):
        assert figs.get(key) is not None, key
    card = (MODELS_DIR / "MODEL_CARD.md").read_text()
    assert "not validated on real mice" in card and m.sha256 in card


def test_shipped_model_scores_fresh_synthetic_faces(scorer, tmp_path):
    root = write_dataset(tmp_path / "fresh", 24, seed=9090, size=299, n_animals=4).root
    correct = []
    for label, sub in ((0, "no pain"), (1, "pain")):
        for f in sorted((root / sub).iterdir()):
            s = scorer.score(f)
            correct.append((s.label == "pain") == bool(label))
            assert s.au is not None and s.mgs_au is not None
    accuracy = float(np.mean(correct))
    assert accuracy >= 0.85, f"shipped model: {accuracy:.2f} on 24 fresh synthetic faces"


def test_evaluate_a_folder_only_set_without_touching_the_manifest(tmp_path):
    """Labs may have only pain/ and no pain/ folders: no AU figures, no animals, still a full report."""
    root = write_dataset(tmp_path / "full", 8, seed=4242, size=299, n_animals=2).root
    bare = tmp_path / "bare"
    for sub in ("pain", "no pain"):
        shutil.copytree(root / sub, bare / sub)
    (bare / "pain" / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    before = DEFAULT_MODEL.with_suffix(".manifest.json").read_text()
    r = CliRunner().invoke(
        main,
        ["model", "evaluate", str(DEFAULT_MODEL), str(bare), "-o", str(tmp_path / "rep"), "--no-manifest"],
    )
    assert r.exit_code == 0, r.output
    assert DEFAULT_MODEL.with_suffix(".manifest.json").read_text() == before
    figs = json.loads((tmp_path / "rep" / "figures.json").read_text())
    assert figs["tp"] + figs["fp"] + figs["tn"] + figs["fn"] == 8 and figs["n_animals"] == 1
    assert "pearson_r_amgs_vs_human_mgs" not in figs and "float_int8_identical_decisions" not in figs
    report = (tmp_path / "rep" / "report.md").read_text()
    assert "broken.jpg" in report and "1 unreadable" in report


def test_shipped_face_detector_is_evaluated_honest_and_meets_its_targets():
    """The detector's manifest says SYNTHETIC and carries its held-out evaluations, its card agrees with the
    file, and `amgs model info` finds it integer-only with Edge TPU ops.

    The floors are what the shipped 1.0.0 reaches, so a worse file cannot replace it unnoticed. Issue 13's
    targets (AP@0.5 >= 0.95 on every held-out set, recall >= 0.97 at the working threshold) are not all met
    yet (docs/models.md, "The shipped detector"); raise these floors to them when a better one ships."""
    import pytest

    from amgs.models import DEFAULT_DETECTOR

    if not DEFAULT_DETECTOR.is_file():
        pytest.skip(f"no shipped face detector at {DEFAULT_DETECTOR}")
    m = read_manifest(DEFAULT_DETECTOR.with_suffix(".manifest.json"))
    assert m.kind == "detector" and m.synthetic and "SYNTHETIC" in m.training_data
    held_out = [e.figures for e in m.evaluation if "held-out" in e.dataset]
    assert len(held_out) >= 2, "the shipped detector carries its held-out evaluations"
    for figs in held_out:
        assert figs["threshold"] == m.threshold and figs["faces"] >= 200, figs
        assert figs["ap50"] >= 0.94 and figs["recall"] >= 0.93 and figs["precision"] >= 0.9, figs
    card = DEFAULT_DETECTOR.with_suffix(".card.md").read_text()
    assert m.sha256 in card and "SYNTHETIC" in card and "not all met" in card
    assert all(f"| {figs['ap50']} |" in card for figs in held_out)
    r = CliRunner().invoke(main, ["model", "info", str(DEFAULT_DETECTOR)])
    assert r.exit_code == 0 and "MISMATCH" not in r.output, r.output
    assert re.search(r"integer-only tensors\s+yes", r.output) and re.search(r"Edge TPU ops\s+yes", r.output)
