"""Scoring of uploaded submissions against a truth file, with a fixed public/private split."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd

from kit import survey
from kit.metric import weighted_log_loss

#: Share of the test objects on the public leaderboard (Kaggle's was about a third).
PUBLIC_SHARE = 0.34


def is_public(object_ids: np.ndarray) -> np.ndarray:
    """A fixed pseudo-random split by object_id: True for the public part."""
    h = (np.asarray(object_ids, dtype=np.uint64) * np.uint64(2654435761)) % np.uint64(2**32)
    return h.astype(np.float64) / 2**32 < PUBLIC_SHARE


def read_truth(path) -> pd.Series:
    truth = pd.read_csv(path)
    column = "true_target" if "true_target" in truth.columns else survey.TARGET
    return pd.Series(survey.truth_to_scored(truth[column].to_numpy()), index=truth[survey.OBJECT_ID].to_numpy())


def score(content: bytes, truth: pd.Series) -> tuple[float, float]:
    """(public, private) weighted log loss of a submission's bytes (CSV, gzipped or not)."""
    compression = "gzip" if content[:2] == b"\x1f\x8b" else None
    sub = pd.read_csv(io.BytesIO(content), compression=compression)
    missing = [c for c in survey.SUBMISSION_COLUMNS if c not in sub.columns]
    if missing:
        raise ValueError(f"missing columns {missing}")
    sub = sub.set_index(survey.OBJECT_ID)
    if sub.index.duplicated().any():
        raise ValueError("duplicated object_id rows")
    absent = truth.index.difference(sub.index)
    if len(absent):
        raise ValueError(f"{len(absent)} test objects have no row, e.g. {absent[:3].tolist()}")
    proba = sub.loc[truth.index, list(survey.SUBMISSION_COLUMNS[1:])].to_numpy(np.float64)
    if not np.isfinite(proba).all():
        raise ValueError("probabilities must be finite numbers")
    public = is_public(truth.index.to_numpy())
    y = truth.to_numpy()
    result = []
    for part in (public, ~public):
        result.append(weighted_log_loss(y[part], proba[part], classes=survey.SUBMISSION_CLASSES))
    return result[0], result[1]
