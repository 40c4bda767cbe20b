"""The import rule of docs/architecture.md, checked with import-linter on the installed layout.

The repository maps ``device/``, ``server/`` and ``models/`` into the one import package ``amgs``
(``[tool.setuptools] package-dir``); import-linter reads packages from the file system, so the test lays
the Python files out as an installed wheel would and checks ``[tool.importlinter]`` in pyproject.toml.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _installed_layout(dest: Path) -> Path:
    """Copy every package's .py files to where pyproject's package-dir puts them in site-packages."""
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    for package, folder in sorted(tool["package-dir"].items(), key=lambda kv: kv[0].count(".")):
        target = dest.joinpath(*package.split("."))
        for source in (ROOT / folder).rglob("*.py"):
            relative = source.relative_to(ROOT / folder)
            if relative.parts[0] in {"static", "templates"} or "__pycache__" in relative.parts:
                continue
            (target / relative).parent.mkdir(parents=True, exist_ok=True)
            if not (target / relative).exists():
                shutil.copyfile(source, target / relative)
    return dest


def test_imports_follow_the_architecture(tmp_path):
    site = _installed_layout(tmp_path / "site")
    lint = Path(sys.executable).with_name("lint-imports")
    r = subprocess.run(
        [str(lint), str(ROOT / "pyproject.toml"), "--no-cache"],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
        cwd=tmp_path,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-2000:]
    assert "BROKEN" not in r.stdout and "KEPT" in r.stdout
