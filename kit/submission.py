"""Write the Kaggle submission: mask by group, add class 99, round, gzip CSV.

Rounding keeps the file small without costing score: each probability is rounded to
``SIGNIFICANT_DIGITS`` significant digits (not decimals), so a small positive probability stays
positive and keeps its relative precision; only exact zeros (the other group's classes after
masking) are written as ``0``. Rows are renormalised by the scorer, and the relative error (at most
5e-5 with 4 digits, 5e-4 with 3) moves ln p by at most that much.

Measured with ``measure_rounding(1_000_000)`` (Dirichlet(0.3) probabilities over 14 classes,
masked by group, class 99 added with scales 0.014 / 0.14, truth drawn from the rows themselves;
weighted log loss 1.37585): score cost (after minus before rounding) +2.8e-8 with 4 significant
digits and -5.6e-7 with 3 (noise either way); file size 33 MB per million rows with 4 digits
(27 MB with 3), so about 116 MB for the 3.5M-row test set; writing (rounding, pyarrow CSV,
gzip level 3) 0.26-0.30 M rows/s on one core, about 13 s for the test set. 4 digits is the default.
"""

from __future__ import annotations

import argparse
import gzip
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from kit import class99, files, idsets, metric, survey
from kit.config import Config
from kit.errors import InputError

SIGNIFICANT_DIGITS = 4
#: gzip level 3: 10% larger than level 6 but twice as fast to write.
GZIP_LEVEL = 3


def round_significant(values: np.ndarray, digits: int = SIGNIFICANT_DIGITS) -> np.ndarray:
    """Round to ``digits`` significant digits; zeros stay zero and positive values stay positive.

    The result is the float64 nearest to a short decimal, so it prints compactly.
    """
    x = np.asarray(values, dtype=np.float64)
    positive = x > 0
    exponent = np.floor(np.log10(np.where(positive, x, 1.0)))
    k = (digits - 1) - exponent
    # divide by an exact power of ten (|k| <= 22) so the quotient is the double nearest the decimal
    k = np.clip(k, -22, 22)
    scale = 10.0 ** np.abs(k)
    rounded = np.where(k >= 0, np.rint(x * scale) / scale, np.rint(x / scale) * scale)
    return np.where(positive, np.maximum(rounded, np.finfo(np.float64).tiny), rounded)


def write_submission(
    path: Path, object_ids: np.ndarray, proba15: np.ndarray, digits: int = SIGNIFICANT_DIGITS
) -> Path:
    """Write a submission as gzip CSV, atomically.

    Parameters
    ----------
    path : Path
        Destination, normally ``Config.submission_path(model)`` (``.csv.gz``).
    object_ids : (n,) int array
        One id per row.
    proba15 : (n, 15) array
        Probabilities in ``survey.SUBMISSION_CLASSES`` order.
    digits : int
        Significant digits kept (see the module docstring for the score cost).

    Returns
    -------
    Path
        ``path``.
    """
    ids = np.asarray(object_ids)
    p = np.asarray(proba15, dtype=np.float64)
    if p.shape != (len(ids), len(survey.SUBMISSION_CLASSES)):
        raise ValueError(f"proba15 has shape {p.shape}, expected ({len(ids)}, {len(survey.SUBMISSION_CLASSES)})")
    rounded = round_significant(p, digits)
    columns = {survey.OBJECT_ID: pa.array(ids.astype(np.int64))}
    for j, name in enumerate(survey.SUBMISSION_COLUMNS[1:]):
        columns[name] = pa.array(rounded[:, j])
    table = pa.table(columns)
    header = (",".join(survey.SUBMISSION_COLUMNS) + "\n").encode()
    path = Path(path)
    opener = (lambda p: gzip.open(p, "wb", compresslevel=GZIP_LEVEL)) if path.name.endswith(".gz") else (
        lambda p: open(p, "wb")
    )
    with files.atomic_path(path) as tmp, opener(tmp) as out:
        out.write(header)
        pacsv.write_csv(table, out, pacsv.WriteOptions(include_header=False, batch_size=65536))
    return path


def measure_rounding(n: int = 1_000_000, digits: int = SIGNIFICANT_DIGITS, seed: int = 0) -> dict[str, float]:
    """Score cost, size and speed of rounding on a realistic random probability matrix.

    Returns a dict with ``score_before``, ``score_after``, ``cost``, ``mb_per_million_rows`` and
    ``rows_per_s`` (writing). Used to back the numbers in the module docstring.
    """
    import tempfile

    rng = np.random.default_rng(seed)
    galactic = rng.random(n) < 0.3
    raw = rng.dirichlet(np.full(len(survey.CLASSES), 0.3), size=n)
    proba = class99.add_class99(class99.mask_by_group(raw, galactic), galactic, 0.014, 0.14, "product")
    # truth: drawn from each row's own probabilities over the allowed classes plus 99
    cum = np.cumsum(proba, axis=1)
    idx = np.minimum((cum < rng.random(n)[:, None]).sum(axis=1), 14)
    y = np.asarray(survey.SUBMISSION_CLASSES)[idx]
    before = metric.weighted_log_loss(y, proba, survey.SUBMISSION_CLASSES)
    after = metric.weighted_log_loss(y, round_significant(proba, digits), survey.SUBMISSION_CLASSES)
    with tempfile.TemporaryDirectory() as d:
        target = Path(d) / "m.csv.gz"
        started = time.perf_counter()
        write_submission(target, np.arange(n), proba, digits)
        elapsed = time.perf_counter() - started
        size = target.stat().st_size
    return {
        "score_before": before,
        "score_after": after,
        "cost": after - before,
        "mb_per_million_rows": size / 1e6 * 1e6 / n,
        "rows_per_s": n / elapsed,
    }


# --- command ------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", default=None, help="model whose test predictions to submit (default: blend if present, else lgbm)"
    )


def default_model(config: Config) -> str:
    """The model a submission is made from when none is named: the blend if it exists, else LightGBM."""
    return "blend" if config.test_pred_path("blend").exists() else "lgbm"


def read_galactic(metadata_path: Path) -> pd.DataFrame:
    """Test metadata reduced to ``object_id`` and the ``galactic`` flag."""
    path = Path(metadata_path)
    if not path.exists():
        raise InputError(f"{path}: test metadata not found; point --data at a competition folder")
    cols = [survey.OBJECT_ID, "hostgal_photoz", "ddf"]
    meta = pd.read_csv(path, usecols=cols, dtype={c: survey.METADATA_DTYPES[c] for c in cols})
    return pd.DataFrame({survey.OBJECT_ID: meta[survey.OBJECT_ID].to_numpy(),
                         "galactic": survey.is_galactic(meta["hostgal_photoz"].to_numpy()),
                         "ddf": meta["ddf"].to_numpy()})


def build_submission(object_ids: np.ndarray, proba: np.ndarray, galactic: np.ndarray, config: Config) -> np.ndarray:
    """Mask by group and add class 99 by the config's method and scales: (n, 15) in submission order."""
    masked = class99.mask_by_group(proba, galactic)
    return class99.add_class99(masked, galactic, config.class99_galactic, config.class99_extragalactic,
                               config.class99_method)


def aligned_predictions(config: Config, model: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``model``'s test predictions in the test metadata's order: (object_ids, (n, 14) proba, galactic)."""
    pred_path = config.test_pred_path(model)
    if not pred_path.exists():
        raise InputError(f"{pred_path}: no test predictions for model '{model}'; run `python -m kit predict` first")
    ids, proba = files.load_proba(pred_path)
    meta = read_galactic(config.test_metadata)
    meta_ids = meta[survey.OBJECT_ID].to_numpy()
    order = pd.Index(ids).get_indexer(meta_ids)
    missing = meta_ids[order < 0]
    extra = idsets.absent(ids, meta_ids)
    if missing.size or extra.size or len(ids) != len(meta_ids):
        raise InputError(
            f"{pred_path}: object_ids do not match {config.test_metadata}: "
            f"{missing.size} in the metadata but not predicted (e.g. {missing[:5].tolist()}), "
            f"{extra.size} predicted but not in the metadata (e.g. {extra[:5].tolist()}), "
            f"{len(ids)} predictions for {len(meta_ids)} objects; predict the test set again"
        )
    return meta_ids, proba[order], meta["galactic"].to_numpy()


def make_submission(config: Config, model: str) -> Path:
    """Mask, add class 99 to ``model``'s test predictions and write its submission; the file's path.

    The class-99 method is ``config.class99_method``; the file is ``config.submission_path(model)``.
    """
    ids, proba, galactic = aligned_predictions(config, model)
    return write_submission(config.submission_path(model), ids, build_submission(ids, proba, galactic, config))


def run(args: argparse.Namespace, config: Config) -> int:
    from kit import validate

    out = make_submission(config, args.model or default_model(config))
    validate.check_submission(out, config.test_metadata)
    print(out)
    return 0
