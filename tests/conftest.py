"""Shared fixtures: the shipped model, a synthetic dataset, and a real Mosquitto on a free port."""

from __future__ import annotations

from pathlib import Path

import pytest

from amgs.broker import LocalBroker, mosquitto_path


@pytest.fixture(scope="session")
def model_path() -> Path:
    from amgs.models import DEFAULT_MODEL

    return DEFAULT_MODEL


@pytest.fixture(scope="session")
def scorer(model_path):
    from amgs.runtime import Model
    from amgs.scoring import Scorer

    return Scorer(Model(model_path, num_threads=1))


@pytest.fixture(scope="session")
def synth_set(tmp_path_factory) -> Path:
    """A small SYNTHETIC labelled set in every lab format (24 faces, 5 scenes)."""
    from amgs.synth.dataset import write_dataset

    root = tmp_path_factory.mktemp("synth")
    write_dataset(root, 24, seed=3, size=160, n_animals=6, scenes=5)
    return root


@pytest.fixture
def broker(tmp_path):
    """A real Mosquitto (the tests can .stop(), .stop(kill=True) and .start() it on the same port)."""
    if mosquitto_path() is None:
        pytest.fail("mosquitto is not installed: run .ci/run or `apt-get install mosquitto`")
    b = LocalBroker(workdir=tmp_path / "broker").start()
    yield b
    b.stop()
