"""Shared fixtures: a tiny simulated competition, made once per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

TINY_TRAIN = 400
TINY_TEST = 800


@pytest.fixture(scope="session")
def competition(tmp_path_factory) -> Path:
    """A simulated competition folder (Kaggle's files + test_truth.csv), read-only for tests."""
    from kit.simulate import simulate

    out = tmp_path_factory.mktemp("sim") / "sim-tiny"
    simulate(out, n_train=TINY_TRAIN, n_test=TINY_TEST, seed=7)
    return out
