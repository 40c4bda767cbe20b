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
