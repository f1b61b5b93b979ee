"""The fold assignment every model shares: stratified K folds over the training objects, saved once."""

from __future__ import annotations

import argparse
import logging

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold

from kit import data, survey
from kit.config import Config
from kit.errors import InputError
from kit.files import atomic_path

log = logging.getLogger(__name__)


def make_folds(y: np.ndarray, n_folds: int, seed: int) -> np.ndarray:
    """Fold number (0..n_folds-1) of each object, stratified by class."""
    folds = np.empty(len(y), dtype=np.int8)
    splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    for k, (_, valid) in enumerate(splitter.split(np.zeros(len(y)), y)):
        folds[valid] = k
    return folds


def load_or_make_folds(config: Config, object_ids: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Folds of ``object_ids`` from ``config.folds_path``; made and saved first if absent.

    A saved assignment that does not cover exactly these objects is an error: mixing fold
    assignments would leak validation objects into training between models.
    """
    path = config.folds_path
    if not path.exists():
        folds = make_folds(y, config.n_folds, config.seed)
        with atomic_path(path) as tmp:
            pd.DataFrame({survey.OBJECT_ID: object_ids, "fold": folds}).to_csv(tmp, index=False)
        log.info("wrote %s (%d folds)", path, config.n_folds)
        return folds
    saved = pd.read_csv(path).set_index(survey.OBJECT_ID)["fold"]
    ids = pd.Index(np.asarray(object_ids))
    if len(saved) != len(ids) or not ids.isin(saved.index).all():
        raise InputError(
            f"{path}: the saved fold assignment does not match the training objects "
            f"({len(saved)} saved, {len(ids)} now). Delete it (make clean-models) to start over."
        )
    return saved.reindex(ids).to_numpy().astype(np.int8)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`folds` has only the common options (--folds, --seed)."""


def run(args: argparse.Namespace, config: Config) -> int:
    meta = data.read_metadata(config.train_metadata, require_target=True)
    folds = load_or_make_folds(config, meta[survey.OBJECT_ID].to_numpy(), data.labels(meta, config.train_metadata))
    print(f"{config.folds_path}: {len(folds):,} objects in {folds.max() + 1} folds")
    return 0
