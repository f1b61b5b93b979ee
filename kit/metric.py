"""The competition's weighted multi-class log loss, exactly as Kaggle scores it.

LogLoss = - ( sum_c w_c * (1/N_c) * sum_{i in c} ln p_ic ) / sum_c w_c

Rows are first divided by their sum, then clipped to [1e-15, 1 - 1e-15]; w_c = 2 for classes
15, 64 and 99, 1 otherwise; classes absent from the truth do not count.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from kit import class99, survey

EPS = 1e-15


def _check(y_true: np.ndarray, proba: np.ndarray, classes: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true).astype(np.int64).ravel()
    p = np.asarray(proba, dtype=np.float64)
    if p.ndim != 2 or p.shape != (len(y), len(classes)):
        raise ValueError(f"proba has shape {p.shape}, expected ({len(y)}, {len(classes)})")
    unknown = np.setdiff1d(np.unique(y), np.asarray(classes))
    if unknown.size:
        raise ValueError(f"truth holds classes {unknown.tolist()} that are not among the columns {list(classes)}")
    return y, p


def per_class_log_loss(
    y_true: np.ndarray, proba: np.ndarray, classes: Sequence[int] = survey.CLASSES
) -> dict[int, float]:
    """Mean of -ln p over the objects of each class present in the truth.

    Parameters
    ----------
    y_true : (n,) class labels
    proba : (n, len(classes)) probabilities, columns in the order of ``classes``
    """
    y, p = _check(y_true, proba, classes)
    p = p / p.sum(axis=1, keepdims=True)
    p = np.clip(p, EPS, 1 - EPS)
    col = np.searchsorted(np.sort(classes), y)
    col = np.argsort(classes)[col]  # position of each object's class among the columns
    nll = -np.log(p[np.arange(len(y)), col])
    return {int(c): float(nll[y == c].mean()) for c in classes if np.any(y == c)}


def weighted_log_loss(
    y_true: np.ndarray,
    proba: np.ndarray,
    classes: Sequence[int] = survey.CLASSES,
    weights: dict[int, float] = survey.CLASS_WEIGHTS,
) -> float:
    """The competition metric. ``proba`` columns follow ``classes``; lower is better."""
    losses = per_class_log_loss(y_true, proba, classes)
    w = np.array([weights[c] for c in losses])
    return float(np.dot(w, list(losses.values())) / w.sum())


def class_contributions(
    y_true: np.ndarray,
    proba: np.ndarray,
    classes: Sequence[int] = survey.CLASSES,
    weights: dict[int, float] = survey.CLASS_WEIGHTS,
) -> dict[int, float]:
    """Each class's share of the weighted log loss; the values add up to the metric."""
    losses = per_class_log_loss(y_true, proba, classes)
    total_w = sum(weights[c] for c in losses)
    return {c: weights[c] * loss / total_w for c, loss in losses.items()}


def sample_weights(
    y_true: np.ndarray, classes: Sequence[int] = survey.CLASSES, weights: dict[int, float] = survey.CLASS_WEIGHTS
) -> np.ndarray:
    """Per-object weights w_class / N_class, so that a weighted mean of -ln p equals the metric.

    Normalised to mean 1 over the objects (a constant factor changes neither the optimum nor
    the metric, and keeps learning rates on their usual scale).
    """
    y = np.asarray(y_true).astype(np.int64)
    present, counts = np.unique(y, return_counts=True)
    per_class = {int(c): weights[int(c)] / n for c, n in zip(present, counts, strict=True)}
    w = np.array([per_class[int(c)] for c in y], dtype=np.float64)
    return w * (len(w) / w.sum())


def lgbm_eval(preds: np.ndarray, data, galactic: np.ndarray | None = None) -> tuple[str, float, bool]:
    """LightGBM evaluation function: the competition metric on a validation set.

    Labels of the dataset are class indices 0..13 (positions in survey.CLASSES). With ``galactic`` (one flag per
    row of the dataset) the probabilities are first masked by group (:func:`kit.class99.mask_by_group`), as the
    kit's predictions and reported scores are; bind it with ``functools.partial`` to pass this as ``feval``.
    """
    labels = np.asarray(data.get_label()).astype(np.int64)
    p = np.asarray(preds, dtype=np.float64)
    if p.ndim == 1:  # older LightGBM hands over a flat, class-major array
        p = p.reshape(len(survey.CLASSES), -1).T
    if galactic is not None:
        p = class99.mask_by_group(p, galactic)
    y = np.asarray(survey.CLASSES)[labels]
    return "wloss", weighted_log_loss(y, p), False


def class_prior_proba(y_train: np.ndarray, n: int, classes: Sequence[int] = survey.CLASSES) -> np.ndarray:
    """The class-prior baseline: every object gets the training class frequencies."""
    y = np.asarray(y_train)
    prior = np.array([np.mean(y == c) for c in classes], dtype=np.float64)
    return np.tile(prior, (n, 1))
