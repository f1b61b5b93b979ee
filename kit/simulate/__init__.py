"""Simulated PLAsTiCC-shaped competitions: Kaggle's files plus the test truth.

``simulate(out_dir, n_train, n_test, seed)`` writes training_set.csv, training_set_metadata.csv,
test_set.csv, test_set_metadata.csv, sample_submission.csv and test_truth.csv. Object metadata is
resampled from the PLAsTiCC team's real training metadata (CC BY 4.0, see CREDIT.md). Tests call
:func:`tiny_competition` (or :func:`simulate` with small sizes).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from kit import survey
from kit.files import atomic_path
from kit.simulate import writer
from kit.simulate.cadence import LSST, SURVEYS, Design
from kit.simulate.generate import simulate_group

#: Real training-set class counts (PLAsTiCC), the training mix.
TRAIN_COUNTS: dict[int, int] = {6: 151, 15: 495, 16: 924, 42: 1193, 52: 183, 53: 30, 62: 484, 64: 102,
                                65: 981, 67: 208, 88: 370, 90: 2313, 92: 239, 95: 175}
#: Approximate real test-set class counts (unblinded release); the test mix blends them with the training mix.
REAL_TEST_COUNTS: dict[int, int] = {6: 1303, 15: 13555, 16: 96472, 42: 1000150, 52: 63664, 53: 1453,
                                    62: 175094, 64: 131, 65: 93494, 67: 40193, 88: 101424, 90: 1659831,
                                    92: 197155, 95: 35782}
TEST_MIX_REAL_WEIGHT = 0.6
#: Share of unknown objects in the test set, split between the unknown true targets.
UNKNOWN_FRACTION = 0.02
UNKNOWN_SPLIT: dict[int, float] = {991: 0.2, 992: 0.2, 993: 0.4, 994: 0.2}
MIN_TRAIN_PER_CLASS = 2
#: Objects per test batch: bounds memory (about 130 rows per object).
TEST_BATCH_OBJECTS = 5000
FIRST_OBJECT_ID = 615
MAX_ID_STEP = 40
SEED_TRAIN, SEED_TEST, SEED_LAYOUT = 1, 2, 0

TRUTH_EXTRA = ("true_target", "true_z", "true_distmod")


def _allocate(n: int, weights: dict[int, float], minimum: int = 0) -> dict[int, int]:
    """Integer counts summing to ``n`` proportional to ``weights`` (largest remainder), each >= minimum."""
    keys = list(weights)
    w = np.array([weights[k] for k in keys], dtype=np.float64)
    base = np.full(len(keys), minimum if n >= minimum * len(keys) else 0)
    share = (n - base.sum()) * w / w.sum()
    counts = base + np.floor(share).astype(int)
    remainder = n - counts.sum()
    counts[np.argsort(-(share - np.floor(share)), kind="stable")[:remainder]] += 1
    return dict(zip(keys, counts.tolist(), strict=True))


def test_mix() -> dict[int, float]:
    """Class shares of the simulated test set (known classes and unknown true targets 991-994)."""
    real_total, train_total = sum(REAL_TEST_COUNTS.values()), sum(TRAIN_COUNTS.values())
    known = 1.0 - UNKNOWN_FRACTION
    mix = {c: known * (TEST_MIX_REAL_WEIGHT * REAL_TEST_COUNTS[c] / real_total
                       + (1 - TEST_MIX_REAL_WEIGHT) * TRAIN_COUNTS[c] / train_total) for c in survey.CLASSES}
    mix.update({k: UNKNOWN_FRACTION * s for k, s in UNKNOWN_SPLIT.items()})
    return mix


def _test_counts(n_test: int) -> dict[int, int]:
    counts = _allocate(n_test, test_mix())
    if n_test >= 10:  # at least one galactic and one extragalactic unknown kind
        for kind in (991, 993):
            if counts[kind] == 0:
                counts[kind] = 1
                counts[max(counts, key=counts.get)] -= 1
    return counts


def _layout(n_train: int, n_test: int, seed: int):
    """True classes and object ids of both sets, shuffled; test ids follow the training ids."""
    rng = np.random.default_rng([seed, SEED_LAYOUT])
    train = _allocate(n_train, {c: float(v) for c, v in TRAIN_COUNTS.items()}, MIN_TRAIN_PER_CLASS)
    train_kinds = rng.permutation(np.repeat(list(train), list(train.values())))
    test = _test_counts(n_test)
    test_kinds = rng.permutation(np.repeat(list(test), list(test.values())))
    ids = FIRST_OBJECT_ID + np.cumsum(rng.integers(1, MAX_ID_STEP, n_train + n_test))
    return train_kinds, ids[:n_train], test_kinds, ids[n_train:]


def _open(tmp: Path):
    return open(tmp, "w", newline="\n", encoding="ascii")


def _write_split(lc_path: Path, kinds, ids, test: bool, seed: int, progress: bool, design: Design = LSST):
    """Simulate one set in batches, streaming its light curves; return its metadata."""
    metas = []
    starts = range(0, len(ids), TEST_BATCH_OBJECTS)
    with atomic_path(lc_path) as tmp, _open(tmp) as fh:
        fh.write(writer.LIGHTCURVE_HEADER)
        bar = tqdm(total=len(ids), desc=f"simulating {lc_path.name}", unit="obj", disable=not progress)
        for b, start in enumerate(starts):
            rng = np.random.default_rng([seed, SEED_TEST if test else SEED_TRAIN, b])
            sl = slice(start, start + TEST_BATCH_OBJECTS)
            meta, rows = simulate_group(kinds[sl], ids[sl], test, rng, design)
            writer.write_lightcurve_rows(fh, *(rows[c] for c in survey.LIGHTCURVE_COLUMNS))
            metas.append(meta)
            bar.update(len(meta))
        bar.close()
    return pd.concat(metas, ignore_index=True) if metas else None


def simulate(out_dir: Path, n_train: int, n_test: int, seed: int, progress: bool = True,
             survey_name: str = "lsst") -> None:
    """Write a simulated competition folder like Kaggle's, plus ``test_truth.csv``.

    Parameters
    ----------
    out_dir
        Folder to create or overwrite.
    n_train, n_test
        Objects in the training and test sets (the test set gets 2% unknown objects, class 99).
    seed
        Same seed, same bytes.
    progress
        Show a progress bar on stderr for the test set.
    survey_name
        The survey's cadence and depth, one of :data:`kit.simulate.cadence.SURVEYS`: ``lsst`` (PLAsTiCC's), or
        another survey to pretrain on (transfer learning's source survey).
    """
    if n_train < 1 or n_test < 1:
        raise ValueError("n_train and n_test must be at least 1")
    if survey_name not in SURVEYS:
        raise ValueError(f"survey {survey_name!r}: choose among {', '.join(SURVEYS)}")
    design = SURVEYS[survey_name]
    out_dir = Path(out_dir)
    train_kinds, train_ids, test_kinds, test_ids = _layout(n_train, n_test, seed)

    train_meta = _write_split(out_dir / survey.TRAIN_LIGHTCURVES, train_kinds, train_ids, False, seed, False, design)
    train_meta[survey.TARGET] = train_meta["true_target"]
    with atomic_path(out_dir / survey.TRAIN_METADATA) as tmp, _open(tmp) as fh:
        writer.write_metadata(fh, train_meta[list(survey.METADATA_COLUMNS) + [survey.TARGET]])

    test_meta = _write_split(out_dir / survey.TEST_LIGHTCURVES, test_kinds, test_ids, True, seed, progress, design)
    with atomic_path(out_dir / survey.TEST_METADATA) as tmp, _open(tmp) as fh:
        writer.write_metadata(fh, test_meta[list(survey.METADATA_COLUMNS)])
    with atomic_path(out_dir / survey.SAMPLE_SUBMISSION) as tmp, _open(tmp) as fh:
        writer.write_sample_submission(fh, test_meta[survey.OBJECT_ID].to_numpy())
    with atomic_path(out_dir / survey.TEST_TRUTH) as tmp, _open(tmp) as fh:
        writer.write_truth(fh, test_meta[survey.OBJECT_ID].to_numpy(), test_meta["true_target"].to_numpy())


def tiny_competition(path: Path, n_train: int = 300, n_test: int = 600, seed: int = 1) -> Path:
    """Simulate a small competition into ``path`` (for tests) and return ``path``."""
    simulate(Path(path), n_train, n_test, seed, progress=False)
    return Path(path)


__all__ = ["simulate", "tiny_competition", "test_mix"]
