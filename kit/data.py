"""Reading competition metadata, and checking a competition folder before the pipeline runs."""

from __future__ import annotations

import argparse
import difflib
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from kit import survey
from kit.config import Config
from kit.errors import InputError

log = logging.getLogger(__name__)


def check_columns(path: Path, found: list[str], expected: tuple[str, ...]) -> None:
    """Raise :class:`InputError` naming each missing column and its likely misspelling."""
    missing = [c for c in expected if c not in found]
    if not missing:
        return
    hints = []
    for col in missing:
        close = difflib.get_close_matches(col, found, n=1)
        hints.append(f"'{col}'" + (f" (found '{close[0]}': misspelled?)" if close else ""))
    raise InputError(
        f"{path}: header lacks column(s) {', '.join(hints)}.\n"
        f"  expected: {','.join(expected)}\n  found:    {','.join(found)}\n"
        "  Fix the header or download the file again."
    )


def read_metadata(path: Path, require_target: bool = False) -> pd.DataFrame:
    """Read a training or test metadata CSV (``.csv`` or ``.csv.gz``) with compact dtypes.

    Returns a frame with the columns of ``survey.METADATA_COLUMNS`` (+ ``target`` when present),
    one row per object, sorted as in the file.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: file not found. Run `make download` (Kaggle) or `make simulate`, or set DATA=.")
    header = pd.read_csv(path, nrows=0).columns.tolist()
    expected = survey.METADATA_COLUMNS + ((survey.TARGET,) if require_target else ())
    check_columns(path, header, expected)
    usecols = [c for c in header if c in survey.METADATA_DTYPES]
    try:
        frame = pd.read_csv(path, usecols=usecols, dtype={c: survey.METADATA_DTYPES[c] for c in usecols})
    except (ValueError, TypeError) as err:
        raise InputError(f"{path}: {_locate_bad_value(path, usecols)} ({err}). Fix or re-download the file.") from None
    dup = frame[survey.OBJECT_ID].duplicated()
    if dup.any():
        rows = (np.flatnonzero(dup.to_numpy())[:5] + 2).tolist()
        raise InputError(f"{path}: object_id repeated at line(s) {rows}; metadata has one row per object.")
    return frame


def _locate_bad_value(path: Path, usecols: list[str]) -> str:
    """Name the first line and column whose value does not parse as a number."""
    raw = pd.read_csv(path, usecols=usecols, dtype=str, keep_default_na=False)
    for col in usecols:
        values = raw[col].replace("", "nan")
        bad = pd.to_numeric(values, errors="coerce").isna() & ~values.str.lower().eq("nan")
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            return f"line {i + 2}, column '{col}': '{raw[col].iloc[i]}' is not a number"
    return "a value does not fit its column's type"


def labels(metadata: pd.DataFrame, path: Path | str = "training metadata") -> np.ndarray:
    """The training targets, checked to be classes of the competition."""
    y = metadata[survey.TARGET].to_numpy().astype(np.int64)
    unknown = np.setdiff1d(np.unique(y), survey.CLASSES)
    if unknown.size:
        raise InputError(f"{path}: target holds classes {unknown.tolist()} unknown to PLAsTiCC ({survey.CLASSES}).")
    return y


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`check-data` has only the common options."""


def run(args: argparse.Namespace, config: Config) -> int:
    """Check that the folder holds the competition files with the right headers."""
    train = read_metadata(config.train_metadata, require_target=True)
    labels(train, config.train_metadata)
    test = read_metadata(config.test_metadata)
    for path in (config.train_lightcurves, config.test_lightcurves):
        if not path.exists():
            raise InputError(f"{path}: file not found in {config.data_dir}.")
        check_columns(path, pd.read_csv(path, nrows=0).columns.tolist(), survey.LIGHTCURVE_COLUMNS)
    print(f"{config.data_dir}: {len(train):,} training objects, {len(test):,} test objects; headers OK")
    return 0
