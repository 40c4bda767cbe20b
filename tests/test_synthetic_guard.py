"""A synthetic-trained model never scores real cages unnoticed: the device refuses it unless told."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
AMGS = shutil.which("amgs") or str(Path(__file__).resolve().parents[1] / ".venv" / "bin" / "amgs")


def _config(tmp_path: Path, frames: Path, allow: bool | None) -> Path:
    model = "" if allow is None else f"[model]\nallow_synthetic = {str(allow).lower()}\n"
    path = tmp_path / "device.toml"
    path.write_text(
        f'[device]\nid = "box-01"\nsite = "lab"\nstate_dir = "{tmp_path / "state"}"\n{model}'
        f'[[sources]]\nkind = "folder"\nname = "replay"\npath = "{frames}"\n'
        '[[views]]\nname = "v1"\nsource = "replay"\ncage_id = "C1"\n'
        '[mqtt]\nhost = "127.0.0.1"\nport = 1\n'
    )
    return path


def test_device_refuses_the_shipped_synthetic_model_unless_allowed(tmp_path, synth_set):
    frames = synth_set / "pain"
    for allow in (None, False):
        config = _config(tmp_path, frames, allow)
        for command in ("check", "run"):
            r = subprocess.run(
                [AMGS, "device", command, "--config", str(config)],
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert r.returncode == 3, (command, r.stdout, r.stderr)
            assert "SYNTHETIC faces only" in r.stderr and "model.allow_synthetic = true" in r.stderr, r.stderr
            assert "Traceback" not in r.stderr
    assert not (tmp_path / "state").exists()  # refused before anything was scored or queued
    r = subprocess.run(
        [AMGS, "device", "check", "--config", str(_config(tmp_path, frames, True))],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert "SYNTHETIC-trained, allowed by model.allow_synthetic" in r.stdout


def _synthetic_detector_manifest(tmp_path: Path, model_path: Path) -> Path:
    """A detector manifest saying SYNTHETIC (the guard reads it before the file is loaded)."""
    import json

    data = json.loads(model_path.with_suffix(".manifest.json").read_text())
    data.update(
        kind="detector",
        name="amgs-face-detector-synthetic",
        synthetic=True,
        detector={"stride": 8},
        outputs=[{"name": "grid", "kind": "centernet", "dtype": "uint8", "shape": [1, 24, 24, 5]}],
    )
    for key in ("domain_check", "calibration"):
        data.pop(key, None)
    det = tmp_path / "det.tflite"
    det.write_bytes(b"not loaded before the guard")
    det.with_suffix(".manifest.json").write_text(json.dumps(data))
    return det


def test_device_refuses_a_synthetic_face_detector_unless_allowed(tmp_path, model_path):
    from amgs.device.config import DetectorSection
    from amgs.device.detector import DetectorError, load_detector
    from amgs.manifest import read_manifest

    det = _synthetic_detector_manifest(tmp_path, model_path)
    assert read_manifest(det.with_suffix(".manifest.json")).synthetic
    try:
        load_detector(DetectorSection(path=det))
    except DetectorError as e:
        assert "SYNTHETIC scenes only" in str(e) and "detector.allow_synthetic = true" in str(e)
    else:
        raise AssertionError("a synthetic detector was loaded without detector.allow_synthetic")
    try:  # allowed: it gets as far as loading the file (which this one is not)
        load_detector(DetectorSection(path=det, allow_synthetic=True))
    except DetectorError as e:
        assert "SYNTHETIC" not in str(e)
