"""Set operations on object ids that stay fast at 3.5M ids.

numpy 2.4's ``np.unique`` (and so ``setdiff1d``/``union1d``) hashes integers first: measured here,
3.6 s for 3.5M already sorted ids, against 0.01 s for the checks below. Ids in the kit are
almost always sorted already (files, features and predictions are in object order), so these
helpers check that in one pass and sort (stably) only when needed.
"""

from __future__ import annotations

import numpy as np


def is_sorted(ids: np.ndarray, strict: bool = False) -> bool:
    """True when ``ids`` ascend (strictly: no repeats either)."""
    if ids.size < 2:
        return True
    return bool((ids[1:] > ids[:-1]).all() if strict else (ids[1:] >= ids[:-1]).all())


def run_starts(ids: np.ndarray) -> np.ndarray:
    """Positions where a new run of equal ids begins (an object's first row in a light curve)."""
    if ids.size == 0:
        return np.empty(0, dtype=np.int64)
    return np.flatnonzero(np.concatenate(([True], ids[1:] != ids[:-1])))


def unique_counts(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct ids, ascending, and how often each occurs (``np.unique(..., return_counts=True)``)."""
    ids = np.asarray(ids)
    if is_sorted(ids, strict=True):
        return ids, np.ones(ids.size, dtype=np.int64)
    ids = np.sort(ids, kind="stable")
    starts = run_starts(ids)
    return ids[starts], np.diff(np.append(starts, ids.size))


def unique(ids: np.ndarray) -> np.ndarray:
    """The distinct ids, ascending (``np.unique``)."""
    return unique_counts(ids)[0]


def absent(ids: np.ndarray, others: np.ndarray) -> np.ndarray:
    """The distinct ids of ``ids`` that are not in ``others``, ascending (``np.setdiff1d``)."""
    ids, others = unique(ids), unique(others)
    if others.size == 0:
        return ids
    pos = np.searchsorted(others, ids).clip(max=others.size - 1)
    return ids[others[pos] != ids]


def merge(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The distinct ids of ``a`` and ``b`` (``np.union1d``); linear when both are sorted."""
    both = np.concatenate((unique(a), unique(b)))
    both.sort(kind="stable")  # timsort: two sorted runs merge in one pass
    return both[run_starts(both)]
