"""Predict the test set with a trained model: probabilities of the 14 classes, masked by group.

Galactic objects get zero probability for extragalactic classes and vice versa; class 99 is added
later, when the submission is written.
"""

from __future__ import annotations

import argparse
import logging
import time

import numpy as np
import pyarrow.parquet as pq
from tqdm import tqdm

from kit import class99, survey
from kit.config import Config
from kit.errors import InputError
from kit.featurize import MAKE_TARGET
from kit.files import save_proba

log = logging.getLogger(__name__)
BATCH_ROWS = 200_000


def predict_lgbm(config: Config) -> tuple[np.ndarray, np.ndarray]:
    """Stream the test features (every feature set the model used) through the LightGBM fold models."""
    from kit import lgbm

    boosters, columns = lgbm.load_models(config)
    kinds = lgbm.feature_sets(config)
    files, wanted = [], []
    for i, kind in enumerate(kinds):
        path = config.features_path("test", kind)
        if not path.exists():
            raise InputError(f"{path}: {kind} test features not built yet. Run `make {MAKE_TARGET[kind]}` first.")
        table = pq.ParquetFile(path)
        names = set(table.schema_arrow.names)
        own = [c for c in columns if c in names and not any(c in w for w in wanted)]
        if i == 0:
            own = list(dict.fromkeys([survey.OBJECT_ID, "hostgal_photoz", *own]))
        files.append((path, table, own))
        wanted.append(set(own))
    missing = [c for c in columns if not any(c in w for w in wanted)]
    if missing:
        raise InputError(f"test features lack the model's columns {missing[:5]}; rerun make features / gp-features.")
    ids, probas = [], []
    n_rows = files[0][1].metadata.num_rows
    for path, table, _ in files[1:]:
        if table.metadata.num_rows != n_rows:
            raise InputError(f"{path}: {table.metadata.num_rows} objects, {files[0][0]} has {n_rows}: rebuild it.")
    batches = zip(*(t.iter_batches(batch_size=BATCH_ROWS, columns=own + ([survey.OBJECT_ID] if j else []))
                    for j, (_, t, own) in enumerate(files)), strict=True)
    with tqdm(total=n_rows, desc="predict lgbm", unit="obj", unit_scale=True) as bar:
        for parts in batches:
            frames = [b.to_pandas() for b in parts]
            frame = frames[0]
            for (path, _, own), other in zip(files[1:], frames[1:], strict=True):
                if not np.array_equal(other[survey.OBJECT_ID].to_numpy(), frame[survey.OBJECT_ID].to_numpy()):
                    raise InputError(f"{path}: objects in another order than {files[0][0]}: rebuild it.")
                frame = frame.join(other[own])
            proba = lgbm.predict_proba(boosters, frame[columns].to_numpy(np.float32))
            probas.append(class99.mask_by_group(proba, survey.is_galactic(frame["hostgal_photoz"].to_numpy())))
            ids.append(frame[survey.OBJECT_ID].to_numpy())
            bar.update(len(frame))
    return np.concatenate(ids), np.concatenate(probas)


def predict_prior(config: Config) -> tuple[np.ndarray, np.ndarray]:
    """The class-prior baseline: training class frequencies for every test object, masked by group."""
    from kit import data, metric

    train = data.read_metadata(config.train_metadata, require_target=True)
    test = data.read_metadata(config.test_metadata)
    prior = metric.class_prior_proba(data.labels(train, config.train_metadata), len(test))
    galactic = survey.is_galactic(test["hostgal_photoz"].to_numpy())
    return test[survey.OBJECT_ID].to_numpy(), class99.mask_by_group(prior, galactic)


def predict(config: Config, model: str) -> tuple[np.ndarray, np.ndarray]:
    """Predict and save ``model``'s test probabilities at ``config.test_pred_path(model)``."""
    started = time.perf_counter()
    if model in ("lgbm", "prior"):
        ids, proba = predict_lgbm(config) if model == "lgbm" else predict_prior(config)
        save_proba(config.test_pred_path(model), ids, proba)
    elif model == "lstm":
        from kit import lstm

        ids, proba = lstm.predict_test(config)
    else:
        raise InputError(f"unknown model '{model}': choose lgbm, lstm or prior")
    log.info("predicted %d test objects with %s in %.1f s", len(ids), model, time.perf_counter() - started)
    return ids, proba


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="lgbm", choices=["lgbm", "lstm", "prior"],
                        help="prior: the class-prior baseline, for comparison")


def run(args: argparse.Namespace, config: Config) -> int:
    ids, _ = predict(config, args.model)
    print(f"{config.test_pred_path(args.model)}: {len(ids):,} test objects")
    return 0
