"""`python -m kit plot-object OBJECT_ID`: one object's light curve with its predicted probabilities.

Training objects are read from training_set.csv and shown with their out-of-fold probabilities;
test objects are streamed from test_set.csv (an object's rows are contiguous, so the read stops
once the object has been passed) and shown with the submission's or the test predictions'.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from kit import models as registry
from kit import survey
from kit.config import Config
from kit.errors import InputError

log = logging.getLogger(__name__)

#: Models whose predictions are looked for, best first: the blend, then the registered models.
MODELS: tuple[str, ...] = (*registry.DERIVED, *(m for m in registry.names() if m != "prior"))


def read_lightcurves(path: Path, object_ids: Iterable[int], chunk_rows: int, contiguous: bool = False) -> pd.DataFrame:
    """Rows of ``object_ids`` from a light-curve CSV, read in chunks.

    Parameters
    ----------
    path : training_set.csv or test_set.csv (``.gz`` too)
    object_ids : the objects wanted
    chunk_rows : rows per chunk
    contiguous : stop reading once every wanted object was seen and a later chunk holds none of
        them (valid when an object's rows are contiguous, as in Kaggle's files)
    """
    wanted = np.unique(np.asarray(list(object_ids), dtype=np.int64))
    parts: list[pd.DataFrame] = []
    seen: set[int] = set()
    try:
        reader = pd.read_csv(path, usecols=list(survey.LIGHTCURVE_COLUMNS), dtype=survey.LIGHTCURVE_DTYPES,
                             chunksize=max(1, chunk_rows))
        for chunk in reader:
            rows = chunk[chunk[survey.OBJECT_ID].isin(wanted)]
            if rows.empty:
                if contiguous and len(seen) == len(wanted):
                    break
                continue
            parts.append(rows)
            seen.update(rows[survey.OBJECT_ID].unique().tolist())
    except (ValueError, pd.errors.ParserError) as err:
        raise InputError(f"{path}: cannot read light curves ({err}); expected columns "
                         f"{','.join(survey.LIGHTCURVE_COLUMNS)}") from err
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in survey.LIGHTCURVE_DTYPES.items()})
    return pd.concat(parts, ignore_index=True)


def _row_of(path: Path, object_id: int, columns: list[str]) -> dict[int, float] | None:
    """Probabilities of one object from a parquet or CSV probability file, or None."""
    if path.suffix == ".parquet":
        frame = pd.read_parquet(path, filters=[(survey.OBJECT_ID, "==", object_id)])
    else:
        frame = pd.concat(chunk[chunk[survey.OBJECT_ID] == object_id]
                          for chunk in pd.read_csv(path, chunksize=500_000))
    if frame.empty or not set(columns) <= set(frame.columns):
        return None
    row = frame.iloc[0]
    return {int(c.removeprefix("class_")): float(row[c]) for c in columns}


def predictions_for(config: Config, object_id: int, train: bool) -> tuple[dict[int, float] | None, str]:
    """The best available predicted probabilities of one object and where they came from."""
    proba_cols = list(survey.PROBA_COLUMNS)
    if train:
        candidates = [(config.oof_path(m), proba_cols, f"{m} OOF") for m in MODELS]
    else:
        candidates = [(config.submission_path(m), list(survey.SUBMISSION_COLUMNS[1:]), f"{m} submission")
                      for m in MODELS]
        candidates += [(config.test_pred_path(m), proba_cols, f"{m} test predictions") for m in MODELS]
    for path, columns, source in candidates:
        if Path(path).exists():
            proba = _row_of(Path(path), object_id, columns)
            if proba is not None:
                return proba, source
    return None, ""


def _train_targets(config: Config) -> pd.Series:
    path = config.train_metadata
    if not path.exists():
        return pd.Series(dtype=np.int64)
    meta = pd.read_csv(path, usecols=[survey.OBJECT_ID, survey.TARGET])
    return meta.set_index(survey.OBJECT_ID)[survey.TARGET]


def plot_object(config: Config, object_id: int, out: Path) -> Path:
    """Draw ``object_id``'s light curve and predictions to the PNG ``out``.

    Raises
    ------
    InputError
        When the object is in neither the training nor the test light curves.
    """
    from kit.report.figures import class_label, object_figure
    from kit.report.page import save_figure

    targets = _train_targets(config)
    train = object_id in targets.index
    if train:
        lc = read_lightcurves(config.train_lightcurves, [object_id], config.chunk_rows, contiguous=True)
    else:
        lc = pd.DataFrame()
        if config.test_lightcurves.exists():
            log.info("streaming %s for object %d", config.test_lightcurves, object_id)
            lc = read_lightcurves(config.test_lightcurves, [object_id], config.chunk_rows, contiguous=True)
    if lc.empty:
        raise InputError(
            f"object {object_id} was found in neither {config.train_lightcurves} nor {config.test_lightcurves}; "
            "check the id and the --data folder"
        )
    proba, source = predictions_for(config, object_id, train)
    if train:
        title = f"training object {object_id}: true class {class_label(targets.loc[object_id])}"
    else:
        title = f"test object {object_id}"
    if proba:
        best = max(proba, key=proba.get)
        title += f"\npredicted {class_label(best)}, p={proba[best]:.2f} ({source})"
    save_figure(object_figure(lc, title, proba, source), out, dpi=90)
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("object_id", metavar="OBJECT_ID", type=int, help="object to draw (training or test)")
    parser.add_argument("--out", type=Path, default=None, help="PNG to write (default: REPORTS/object_<id>.png)")


def run(args: argparse.Namespace, config: Config) -> int:
    out = args.out or config.reports_dir / f"object_{args.object_id}.png"
    plot_object(config, args.object_id, out)
    print(out)
    return 0
