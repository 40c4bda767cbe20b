"""Generated parts of the docs are in step with the code (cog blocks, as sqlite-utils does)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GENERATED = ["docs/server.md"]


def test_config_reference_is_current():
    # this interpreter's cog (a copied virtual environment's bin/cog may start another Python)
    r = subprocess.run(
        [sys.executable, "-m", "cogapp", "--check", *GENERATED], capture_output=True, text=True, cwd=ROOT
    )
    assert r.returncode == 0, f"{r.stdout}{r.stderr}\nregenerate: .venv/bin/cog -r {' '.join(GENERATED)}"
