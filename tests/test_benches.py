"""Every benchmark under bench/ still runs: each at a tiny size, checked for the figures it prints.

The figures themselves are not judged here (the machine is shared and noisy; docs/benchmarks.md records
real runs); this keeps the scripts from rotting between those runs.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NUMBER = r"[\d,.]+"

pytestmark = pytest.mark.slow


def run_bench(script: str, *args: str, timeout: float = 300) -> str:
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / script), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, f"{script} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


def test_bench_server_ingest(tmp_path):
    out = run_bench(
        "bench_server.py",
        "--ingest-only",
        "--messages",
        "2000",
        "--per-message",
        "200",
        "--workdir",
        str(tmp_path),
    )
    assert re.search(rf"one commit per message\s+200\s+{NUMBER}", out), out
    assert re.search(rf"batched \(<= 1000 / commit\)\s+2000\s+{NUMBER}", out), out
    assert re.search(r"batched / per-message: [\d.]+x", out), out


def test_bench_deploy_drain():
    out = run_bench("bench_deploy_drain.py", "--scores", "300", "--inflight", "100")
    assert re.search(rf"^\s+100\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}\s+1\.00x$", out, re.M), out


def test_bench_device():
    out = run_bench("bench_device.py", "--frames", "4", "--invokes", "3", "--backlog", "200")
    for line in (
        "raw invoke",
        "device pipeline, burst 1",
        "backlog drain 200 scores, collector ack",
        "agent RSS",
    ):
        assert line in out, out


def test_bench_scoring():
    out = run_bench("bench_scoring.py", "--n", "2", "--rounds", "1", timeout=600)
    assert re.search(rf"^litert\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}$", out, re.M), out
    assert out.count("overhead ratio") == 3, out


def test_bench_shadow():
    out = run_bench("bench_shadow.py", "--n", "2")
    assert re.search(rf"active \+ candidate:\s+{NUMBER} ms per face \(median\)\s+ratio {NUMBER}", out), out


def test_bench_lab_training():
    out = run_bench("bench_lab_training.py", "--n", "16", "--size", "75", "--batch-size", "4", timeout=900)
    for line in ("decode + preprocess", "head: one epoch", "finetune: whole run"):
        assert line in out, out


def test_bench_scoring_in_domain_check_cost():
    out = run_bench("bench_scoring.py", "--n", "2", "--rounds", "1", "--int8-only", timeout=600)
    assert re.search(rf"In-domain check .* {NUMBER} ms per image beside an invoke of {NUMBER} ms", out), out


def test_bench_domain(tmp_path):
    from amgs.models import DEFAULT_MODEL
    from amgs.synth.dataset import write_dataset

    sets = [
        write_dataset(tmp_path / n, 80, seed=s, size=299, n_animals=4).root
        for n, s in (("a", 61), ("b", 62), ("c", 63))
    ]
    out = run_bench(
        "bench_domain.py",
        str(DEFAULT_MODEL),
        "--train",
        str(sets[0]),
        "--heldout",
        str(sets[1]),
        "--test",
        str(sets[2]),
        "--train-count",
        "80",
        "--test-count",
        "20",
        "--controls",
        "1",
        "--cache",
        str(tmp_path / "cache"),
        "--dims",
        "8,32",
        timeout=600,
    )
    assert re.search(
        rf"\| Mahalanobis PPCA-32, mixed5 means \| {NUMBER} % \| {NUMBER} % \| {NUMBER} \|", out
    ), out


def test_bench_rating(tmp_path):
    out = run_bench("bench_rating.py", "--quick", "--workdir", str(tmp_path))
    assert re.search(rf"rating: POST /api/rating/rate/\{{token\}}\s+{NUMBER}", out), out
    assert re.search(rf"plain page: GET /devices\s+{NUMBER}", out), out
    assert re.search(r"rating / page render \(medians\): [\d.]+", out), out


def test_bench_detector():
    from amgs.models import DEFAULT_DETECTOR

    if not DEFAULT_DETECTOR.is_file():
        pytest.skip(f"no shipped face detector at {DEFAULT_DETECTOR} yet")
    out = run_bench(
        "bench_detector.py", "--n", "2", "--rounds", "1", "--seconds", "6", "--window", "3", timeout=600
    )
    assert re.search(rf"detector / scorer = {NUMBER}", out), out
    assert re.search(rf"cores 0\s*: \d+ s of video in {NUMBER} s = {NUMBER}x real time", out), out


def test_bench_pg_retention():
    from pg_support import pg_reason

    if pg_reason():
        pytest.skip(pg_reason())
    out = run_bench("bench_pg_retention.py", "--cages", "3", "--days", "2", "--every", "600")
    assert re.search(rf"retention deleted 432 \(kept 432\) in {NUMBER} s: {NUMBER} rows/s", out), out
