"""A lab's detector from its own boxes, end to end: train -> int8 -> evaluate -> the device uses it.

Tiny on purpose (a few steps at 128 px on 16 SYNTHETIC frames written in the lab layout): this checks
that every step reads what the previous one wrote, not that the detector is good (the shipped one's
figures are in docs/models.md). The device step calls ``run_burst`` directly, so it opens the folder
source itself (``ready()``), as the agent's loop does; without that the burst read nothing (issue 13's
"no record, empty reject counter").
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip("tensorflow")


@pytest.mark.slow
@pytest.mark.timeout(1800)  # TensorFlow training + int8 conversion; took > 600 s at load 12 on 2 cores
def test_lab_format_detector_train_quantize_evaluate_and_device(tmp_path, scorer):
    from amgs.cli import main
    from amgs.contract import decode
    from amgs.datasets import load_boxes
    from amgs.detect import FaceDetector
    from amgs.device.agent import Agent
    from amgs.device.config import load_config
    from amgs.manifest import read_manifest
    from amgs.models.detector_data import write_lab_scenes

    lab = tmp_path / "lab"
    write_lab_scenes(lab, 16, seed=4, frame=(640, 360), n_animals=4)
    boxes = load_boxes(lab / "boxes.json")
    assert any(len(v) > 1 for v in boxes.values()) or sum(len(v) for v in boxes.values()) > 8
    runner = CliRunner()
    run = tmp_path / "run"
    r = runner.invoke(
        main,
        [
            "model",
            "train-detector",
            str(lab),
            "-o",
            str(run),
            "--size",
            "128",
            "--steps",
            "4",
            "--batch-size",
            "8",
        ],
    )
    assert r.exit_code == 0, r.output
    record = json.loads((run / "train.json").read_text())
    assert record["steps_done"] == 4 and record["val_frames"] > 0
    # split by animal: no animal on both sides
    assert set(record["val_groups"]).isdisjoint({f"A4-{i}" for i in range(4)} - set(record["val_groups"]))
    assert (run / "model.keras").is_file() and (run / "history.csv").read_text().count("\n") >= 2

    det_path = tmp_path / "lab_det.tflite"
    r = runner.invoke(
        main,
        [
            "model", "quantize-detector", str(run / "model.keras"), "--calibration", str(lab), "-o", str(det_path),
            "--name", "lab-det", "--version", "0.1", "--training-data", "16 synthetic frames", "--synthetic",
            "--threshold", "0.02", "--no-edgetpu",
        ],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    m = read_manifest(det_path.with_suffix(".manifest.json"))
    assert m.kind == "detector" and m.synthetic and m.input.width == 128 and m.detector.stride == 8

    report = tmp_path / "report"
    r = runner.invoke(main, ["model", "evaluate-detector", str(det_path), str(lab), "-o", str(report)])
    assert r.exit_code == 0, r.output
    figures = json.loads((report / "figures.json").read_text())
    assert {"ap50", "ap75", "precision", "recall", "miss_rate"} <= set(figures)
    assert figures["faces"] == sum(len(v) for v in boxes.values())
    assert (report / "pr_curve.png").stat().st_size > 1000 and "AP@0.75" in (report / "report.md").read_text()
    m = read_manifest(det_path.with_suffix(".manifest.json"))
    assert m.evaluation[-1].dataset == "lab"
    r = runner.invoke(main, ["model", "card", str(det_path), "--train-dir", str(run)])
    assert r.exit_code == 0, r.output
    card = det_path.with_suffix(".card.md").read_text()
    assert "(face detector)" in card and "SYNTHETIC" in card and m.sha256 in card
    assert f"| {figures['ap50']} |" in card and "steps" in card  # the evaluation and the training record

    # The device, configured with this detector, finds (some) face box in each replayed frame and scores it.
    frames = tmp_path / "frames"
    frames.mkdir()
    for i, name in enumerate(sorted(boxes)[:3]):
        (frames / f"20260301_0800{i:02d}.jpg").write_bytes((lab / name).read_bytes())
    cfg = tmp_path / "d.toml"
    cfg.write_text(
        f"""
[device]
id = "dev1"
site = "lab"
state_dir = "{tmp_path / "state"}"
[model]
allow_synthetic = true
[detector]
path = "{det_path}"
allow_synthetic = true
[[sources]]
name = "replay"
kind = "folder"
path = "{frames}"
[[views]]
name = "box1"
source = "replay"
cage_id = "C1"
[schedule]
interval_s = 0
burst_frames = 1
[selection]
min_sharpness = 0
min_face_px = 4
[mqtt]
port = 1
"""
    )
    agent = Agent(load_config(cfg), scorer=scorer)
    detector = agent.selectors["box1"].detector
    assert isinstance(detector, FaceDetector) and detector.min_score == pytest.approx(0.02)
    assert agent.sources["replay"].ready()  # opens the folder, as the agent's loop does before a burst
    for _ in range(3):
        agent.run_burst("replay")
    records = [decode(p.payload) for p in agent.outbox.pending()]
    assert records, agent.health.rejected
    for rec in records:
        x, y, w, h = rec["face_box"]
        assert 0 <= x and 0 <= y and x + w <= 640 and y + h <= 360 and w >= 4
    assert np.isfinite([rec["amgs"] for rec in records]).all()
