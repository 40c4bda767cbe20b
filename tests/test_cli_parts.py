"""The ``amgs`` command on machines with one extra each: missing parts are named, never skipped.

A Pi installs ``amgs[device]``, the collector host ``amgs[server]``, a training box ``amgs[models]``.
The in-process checks hide packages from the import system (a stand-in for a machine without them);
the slow check installs each extra alone into a fresh virtual environment and runs that machine's
commands for real.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run_cli(tmp_path: Path, args: list[str], hide: list[str]) -> subprocess.CompletedProcess:
    """Run ``amgs ARGS`` in a child Python where the modules in ``hide`` cannot be imported."""
    code = textwrap.dedent(
        f"""
        import sys
        class Hide:
            def find_spec(self, name, path=None, target=None):
                if any(name == h or name.startswith(h + ".") for h in {hide!r}):
                    raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        sys.meta_path.insert(0, Hide())
        for name in {hide!r}:
            sys.modules.pop(name, None)
        from amgs.cli import main
        main({args!r}, prog_name="amgs")
        """
    )
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )


def test_collector_refuses_to_start_without_its_alert_engine(tmp_path):
    config = tmp_path / "server.toml"
    config.write_text(f'[storage]\nstate_dir = "{tmp_path / "state"}"\n')
    for args in (["server", "check-config", str(config)], ["server", "run", "--config", str(config)]):
        r = _run_cli(tmp_path, args, hide=["amgs.server.alerts.engine"])
        assert r.returncode == 1, r.stdout + r.stderr
        assert "the collector cannot start" in r.stderr and "amgs.server.alerts.engine" in r.stderr, r.stderr
        assert "Traceback" not in r.stderr
    assert not (tmp_path / "state" / "collector.db").exists()  # refused before touching anything


def test_a_command_of_another_machine_names_the_extra_to_install(tmp_path):
    r = _run_cli(tmp_path, ["server", "migrate", "--db", str(tmp_path / "c.db")], hide=["sqlite_utils"])
    assert r.returncode == 1
    assert "'sqlite_utils'" in r.stderr and "pip install 'amgs[server]'" in r.stderr, r.stderr
    r = _run_cli(tmp_path, ["--help"], hide=["sqlite_utils", "fastapi", "tensorflow", "cv2"])
    assert r.returncode == 0 and "server" in r.stdout and "device" in r.stdout, r.stderr


@pytest.mark.slow
@pytest.mark.parametrize(
    ("extra", "commands"),
    [
        ("device", [["device", "check", "--config", "{device_toml}"], ["score", "{faces}"]]),
        (
            "server",
            [["server", "check-config", "{server_toml}"], ["server", "migrate", "--config", "{server_toml}"]],
        ),
        ("models", [["model", "info", "{model}"]]),
    ],
)
def test_each_extra_alone_runs_its_machines_commands(tmp_path, extra, commands, synth_set):
    """CI installs each extra alone (as a Pi, a collector host, a training box get it) and runs its commands."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    install = subprocess.run(
        [str(py), "-m", "pip", "install", "-q", f"{ROOT}[{extra}]"],
        capture_output=True,
        text=True,
        env=env,
        timeout=1200,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    server_toml = tmp_path / "server.toml"
    server_toml.write_text(f'[storage]\nstate_dir = "{tmp_path / "state"}"\n')
    device_toml = tmp_path / "device.toml"  # the example, with the synthetic-trained shipped model allowed
    example = (ROOT / "examples" / "device.toml").read_text()
    device_toml.write_text(example.replace("# allow_synthetic = false", "allow_synthetic = true"))
    values = {
        "device_toml": str(device_toml),
        "faces": str(synth_set / "pain"),
        "server_toml": str(server_toml),
        "model": str(ROOT / "models" / "amgs_inceptionv3_synthetic.tflite"),
    }
    for command in commands:
        args = [a.format(**values) for a in command]
        r = subprocess.run(
            [str(venv / "bin" / "amgs"), *args], capture_output=True, text=True, timeout=300, cwd=tmp_path
        )
        assert r.returncode == 0, f"amgs {' '.join(args)} on a '{extra}' machine:\n{r.stdout}\n{r.stderr}"
