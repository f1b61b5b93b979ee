"""Predict the test set straight from its light curves, chunk by chunk: no test features or sequences on disk.

``make predict`` reads ``build/<name>/features_test.parquet`` and ``sequences_test/``, which for the real
test set (453M rows, 3.5M objects) take about 3 GB and 18 GB. A Kaggle kernel has 20 GB of output space,
so there the test set is streamed instead: each chunk of whole objects of ``test_set.csv`` is parsed, its
model inputs (aggregate features, ragged sequences) are built in memory, every model predicts it, and only
the probabilities are kept. The next chunk is read and prepared in a thread while the models predict.
Memory stays at about two chunks (``--chunk-rows``) plus the probabilities.

Features and sequences are identical whether built whole or per chunk, so the predictions equal those of
``python -m kit predict`` (to float rounding of the batched networks).

Every registered model takes part (:mod:`kit.models`) through its ``Predictor`` class and ``NEEDS_SEQUENCES``:
``Predictor(config).predict(chunk) -> (n, 14)`` probabilities; masking by galactic group is done here.
"""

from __future__ import annotations

import argparse
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd

from kit import class99, data, survey
from kit import models as registry
from kit.config import Config
from kit.errors import InputError
from kit.files import save_proba
from kit.sequences import Sequences

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Chunk:
    """The model inputs of one chunk of whole test objects, ``features`` rows in ``object_ids`` order."""

    object_ids: np.ndarray
    features: pd.DataFrame  # object_id column + the aggregate features (build_features' columns)
    sequences: Sequences | None  # None when no model needs them


def needs_sequences(models: list[str]) -> bool:
    return any(registry.get(m).NEEDS_SEQUENCES for m in models)


def check_models(models: list[str]) -> list[str]:
    return registry.check(models, "stream-predict")


def prepare(lightcurves: pd.DataFrame, metadata: pd.DataFrame, with_sequences: bool) -> Chunk:
    """Features (and sequences) of one chunk of whole objects, in memory."""
    from kit.features import build_features
    from kit.sequences import sequence_features

    features = build_features(lightcurves, metadata).reset_index()
    seqs = None
    if with_sequences:
        seq_ids, offsets, values, log_scale = sequence_features(lightcurves)
        seqs = Sequences(values=values, offsets=offsets, object_ids=seq_ids, log_scale=log_scale)
    return Chunk(features[survey.OBJECT_ID].to_numpy(), features, seqs)


def predict_stream(config: Config, models: list[str]) -> dict[str, int]:
    """Predict ``models`` on the whole test set, streamed; save each at ``config.test_pred_path(model)``.

    Returns the number of test objects predicted per model.
    """
    from kit.lightcurves import iter_object_chunks

    models = check_models(models)
    source = config.test_lightcurves
    if not source.exists():
        raise InputError(f"{source}: test light curves not found. Point --data at the competition folder.")
    predictors = {m: registry.get(m).Predictor(config) for m in models}
    from kit.features import METADATA_FEATURES

    meta = data.read_metadata(config.test_metadata)[[survey.OBJECT_ID, *METADATA_FEATURES]]
    with_sequences = needs_sequences(models)
    ids: list[np.ndarray] = []
    probas: dict[str, list[np.ndarray]] = {m: [] for m in models}
    started, rows = time.perf_counter(), 0
    chunks = iter_object_chunks(source, config.chunk_rows)

    def next_chunk():
        lc = next(chunks, None)
        return None if lc is None else (len(lc), prepare(lc, meta, with_sequences))

    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(next_chunk)
        while (item := pending.result()) is not None:
            pending = pool.submit(next_chunk)  # read and prepare the next chunk while this one is predicted
            n_rows, chunk = item
            galactic = survey.is_galactic(chunk.features["hostgal_photoz"].to_numpy())
            for m, predictor in predictors.items():
                probas[m].append(class99.mask_by_group(predictor.predict(chunk), galactic))
            ids.append(chunk.object_ids)
            rows += n_rows
            n_objects = sum(len(i) for i in ids)
            log.info("predict-stream: %d objects (%d rows) in %.0f s", n_objects, rows, time.perf_counter() - started)
    all_ids = np.concatenate(ids) if ids else np.zeros(0, np.int64)
    for m in models:
        proba = np.concatenate(probas[m]) if probas[m] else np.zeros((0, len(survey.CLASSES)))
        save_proba(config.test_pred_path(m), all_ids, proba)
    return {m: len(all_ids) for m in models}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", default="lstm",
                        help=f"comma-separated trained models to predict with ({', '.join(registry.names())}; "
                             "default %(default)s)")


def run(args: argparse.Namespace, config: Config) -> int:
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    for m, n in predict_stream(config, models).items():
        print(f"{config.test_pred_path(m)}: {n:,} test objects")
    return 0
