"""The fold assignment: stratified, saved once, refused when it does not match."""

import numpy as np
import pytest

from kit import folds
from kit.config import Config
from kit.errors import InputError


def test_stratified_and_reused(tmp_path):
    cfg = Config(data_dir=tmp_path / "sim-x", models_root=tmp_path / "models", n_folds=5, seed=3)
    y = np.repeat([6, 15, 90], [50, 25, 100])
    ids = np.arange(len(y)) + 1000
    first = folds.load_or_make_folds(cfg, ids, y)
    assert cfg.folds_path.exists()
    for c in (6, 15, 90):  # every fold holds a fifth of each class
        assert np.all(np.bincount(first[y == c], minlength=5) == (y == c).sum() // 5)
    again = folds.load_or_make_folds(cfg.with_(seed=99), ids[::-1], y[::-1])
    assert np.array_equal(again, first[::-1])  # read back by object_id, not remade


def test_mismatched_saved_folds_are_refused(tmp_path):
    cfg = Config(data_dir=tmp_path / "sim-x", models_root=tmp_path / "models")
    y = np.repeat([6, 90], 20)
    folds.load_or_make_folds(cfg, np.arange(40), y)
    with pytest.raises(InputError, match="does not match"):
        folds.load_or_make_folds(cfg, np.arange(1, 41), y)
