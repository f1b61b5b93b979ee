"""Class 99 (objects unlike any training class) and the galactic/extragalactic mask.

Pure functions: arrays in, arrays out. Columns of 14-class matrices follow ``survey.CLASSES``;
the 15-column result follows ``survey.SUBMISSION_CLASSES`` (class 99 last).

Class 99 follows the public-kernel approach: ``p99 = prod_i (1 - p_i)`` is high when no known class
is confident. It is rescaled within each group so that its mean over the group's objects equals
the group's scale (``Config.class99_galactic`` / ``class99_extragalactic``); the known classes
share the rest of each row, so rows sum to 1 and the group means are exactly the scales.
"""

from __future__ import annotations

import numpy as np

from kit import survey

#: Cap on class 99 so that the known classes keep some probability after rescaling.
_MAX_P99 = 0.999


def _check(proba: np.ndarray, galactic: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(proba, dtype=np.float64)
    g = np.asarray(galactic, dtype=bool).ravel()
    if p.ndim != 2 or p.shape[1] != len(survey.CLASSES) or p.shape[0] != len(g):
        raise ValueError(f"proba has shape {p.shape}, expected ({len(g)}, {len(survey.CLASSES)})")
    return p, g


def mask_by_group(proba: np.ndarray, galactic: np.ndarray) -> np.ndarray:
    """Zero the classes of the other group and renormalise each row.

    Parameters
    ----------
    proba : (n, 14) array
        Probabilities, columns in ``survey.CLASSES`` order.
    galactic : (n,) bool array
        True for galactic objects (``survey.is_galactic``).

    Returns
    -------
    (n, 14) float64 array
        Rows sum to 1; a row with no mass left on its allowed classes becomes uniform over them.
    """
    p, g = _check(proba, galactic)
    allowed = survey.allowed_classes_mask(g)
    p = np.where(allowed, np.clip(p, 0.0, None), 0.0)
    total = p.sum(axis=1, keepdims=True)
    uniform = allowed / allowed.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, p / total, uniform)


def wrong_group_rows(proba: np.ndarray, galactic: np.ndarray) -> np.ndarray:
    """(n,) bool: rows with no probability on the classes their group allows.

    :func:`mask_by_group` makes these rows uniform over the allowed classes: the model put all its mass on the
    other group, a sign of inputs it has not seen (the callers count and report them).
    """
    p, g = _check(proba, galactic)
    return ~(np.where(survey.allowed_classes_mask(g), np.clip(p, 0.0, None), 0.0).sum(axis=1) > 0)


def add_class99(
    proba: np.ndarray, galactic: np.ndarray, scale_galactic: float, scale_extragalactic: float
) -> np.ndarray:
    """Append a class-99 column and renormalise rows.

    Parameters
    ----------
    proba : (n, 14) array
        Probabilities in ``survey.CLASSES`` order (usually already :func:`mask_by_group`-ed).
    galactic : (n,) bool array
        Galactic flag of each object.
    scale_galactic, scale_extragalactic : float
        Mean class-99 probability given to each group's objects (e.g. 0.014 and 0.14).

    Returns
    -------
    (n, 15) float64 array
        Columns in ``survey.SUBMISSION_CLASSES`` order; rows sum to 1. The known classes are
        first normalised to sum 1, then scaled by ``1 - p99``, so the final class-99 column has
        exactly the group's scale as its mean (unless the cap of 0.999 on one object bites).
    """
    p, g = _check(proba, galactic)
    p = np.clip(p, 0.0, None)
    total = p.sum(axis=1, keepdims=True)
    n_known = p.shape[1]
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.where(total > 0, p / total, 1.0 / n_known)
    p99 = np.prod(1.0 - p, axis=1)
    for group, scale in ((g, scale_galactic), (~g, scale_extragalactic)):
        if not group.any():
            continue
        mean = p99[group].mean()
        # all products zero (every row certain): give each object the scale instead of dividing by 0
        p99[group] = p99[group] * (scale / mean) if mean > 0 else scale
    p99 = np.clip(p99, 0.0, _MAX_P99)
    return np.column_stack([p * (1.0 - p99)[:, None], p99])
