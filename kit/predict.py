"""Predict the test set with a trained model: probabilities of the 14 classes, masked by group.

Galactic objects get zero probability for extragalactic classes and vice versa; class 99 is added
later, when the submission is written. Each model's own ``predict_test`` does the work (:mod:`kit.models`).
"""

from __future__ import annotations

import argparse
import logging
import time

import numpy as np

from kit import models as registry
from kit.config import Config

log = logging.getLogger(__name__)


def predict(config: Config, model: str) -> tuple[np.ndarray, np.ndarray]:
    """Predict and save ``model``'s test probabilities at ``config.test_pred_path(model)``."""
    module = registry.get(model)
    started = time.perf_counter()
    ids, proba = module.predict_test(config)
    log.info("predicted %d test objects with %s in %.1f s", len(ids), model, time.perf_counter() - started)
    return ids, proba


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="lgbm", choices=registry.names(),
                        help="a registered model (prior: the class-prior baseline, needs no training)")


def run(args: argparse.Namespace, config: Config) -> int:
    ids, _ = predict(config, args.model)
    print(f"{config.test_pred_path(args.model)}: {len(ids):,} test objects")
    return 0
