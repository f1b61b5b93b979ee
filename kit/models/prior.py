"""The class-prior baseline: every object gets the training class frequencies, masked by galactic group.

A yardstick, and the smallest example of the model interface (:mod:`kit.models`). ``train-prior`` writes
out-of-fold predictions (the frequencies of each fold's training part) so that it can be scored and blended
like any model; ``predict --model prior`` needs no training.
"""

from __future__ import annotations

import argparse

import numpy as np

from kit import class99, data, metric, survey
from kit.config import Config
from kit.files import atomic_dir, save_proba, write_json

NAME = "prior"
NEEDS_SEQUENCES = False
SMOKE_ARGS: list[str] = []


def _train_labels(config: Config) -> tuple[np.ndarray, np.ndarray]:
    meta = data.read_metadata(config.train_metadata, require_target=True)
    return meta, data.labels(meta, config.train_metadata)


def train(config: Config) -> dict:
    """OOF predictions on the shared folds: each fold gets its training part's class frequencies."""
    from kit.folds import load_or_make_folds

    meta, y = _train_labels(config)
    ids = meta[survey.OBJECT_ID].to_numpy()
    folds = load_or_make_folds(config, ids, y)
    galactic = survey.is_galactic(meta["hostgal_photoz"].to_numpy())
    oof = np.zeros((len(y), len(survey.CLASSES)))
    for k in range(int(folds.max()) + 1):
        va = folds == k
        oof[va] = class99.mask_by_group(metric.class_prior_proba(y[~va], int(va.sum())), galactic[va])
    summary = {"model": NAME, "oof": metric.weighted_log_loss(y, oof),
               "folds": [metric.weighted_log_loss(y[folds == k], oof[folds == k]) for k in range(int(folds.max()) + 1)]}
    with atomic_dir(config.model_dir(NAME)) as out:
        write_json(out / config.score_path(NAME).name, summary)
        save_proba(out / config.oof_path(NAME).name, ids, oof)
    return summary


def predict_test(config: Config) -> tuple[np.ndarray, np.ndarray]:
    """The training class frequencies for every test object, masked by group; saved."""
    test = data.read_metadata(config.test_metadata)
    proba = Predictor(config).proba(len(test))
    ids = test[survey.OBJECT_ID].to_numpy()
    proba = class99.mask_by_group(proba, survey.is_galactic(test["hostgal_photoz"].to_numpy()))
    save_proba(config.test_pred_path(NAME), ids, proba)
    return ids, proba


class Predictor:
    """Streamed test chunks: the training class frequencies for each object."""

    def __init__(self, config: Config) -> None:
        _, y = _train_labels(config)
        self.prior = metric.class_prior_proba(y, 1)[0]

    def proba(self, n: int) -> np.ndarray:
        return np.tile(self.prior, (n, 1))

    def predict(self, chunk) -> np.ndarray:
        return self.proba(len(chunk.object_ids))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """No settings of its own."""


def run(args: argparse.Namespace, config: Config) -> int:
    summary = train(config)
    print(f"class prior OOF weighted log loss {summary['oof']:.4f}")
    return 0
