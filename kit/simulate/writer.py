"""Writing competition files with Kaggle's column order and number formatting."""

from __future__ import annotations

from typing import TextIO

import numpy as np
import pandas as pd

from kit import survey

LIGHTCURVE_HEADER = ",".join(survey.LIGHTCURVE_COLUMNS) + "\n"
#: Kaggle's formatting: mjd to 4 decimals, flux and flux_err to 6.
LIGHTCURVE_ROW = "%d,%.4f,%d,%.6f,%.6f,%d\n"
#: Decimals of each metadata column in Kaggle's files (None: integer).
METADATA_DECIMALS: dict[str, int | None] = {
    "object_id": None, "ra": 6, "decl": 6, "gal_l": 6, "gal_b": 6, "ddf": None, "hostgal_specz": 4,
    "hostgal_photoz": 4, "hostgal_photoz_err": 4, "distmod": 4, "mwebv": 3, "target": None,
}


def write_lightcurve_rows(fh: TextIO, object_id, mjd, passband, flux, flux_err, detected) -> None:
    """Append light-curve rows (arrays of equal length) to an open text file."""
    rows = zip(np.asarray(object_id).tolist(), np.asarray(mjd).tolist(), np.asarray(passband).tolist(),
               np.asarray(flux).tolist(), np.asarray(flux_err).tolist(), np.asarray(detected).tolist(), strict=True)
    fh.write("".join([LIGHTCURVE_ROW % r for r in rows]))


def format_metadata(frame: pd.DataFrame) -> pd.DataFrame:
    """Round/format metadata columns as strings the way Kaggle's files show them ('nan' for missing)."""
    out = pd.DataFrame(index=frame.index)
    for col in frame.columns:
        decimals = METADATA_DECIMALS.get(col)
        values = frame[col].to_numpy()
        if decimals is None:
            out[col] = values.astype(np.int64).astype(str)
        else:
            fmt = f"%.{decimals}f"
            out[col] = [fmt % v for v in values.astype(np.float64).tolist()]
    return out


def write_metadata(fh: TextIO, frame: pd.DataFrame) -> None:
    """Write a metadata frame (Kaggle's columns, in order) with header to an open text file."""
    format_metadata(frame).to_csv(fh, index=False, lineterminator="\n")


def write_sample_submission(fh: TextIO, object_ids: np.ndarray) -> None:
    """Kaggle's sample submission: every object gets probability 1 for class 99, 0 for the rest."""
    fh.write(",".join(survey.SUBMISSION_COLUMNS) + "\n")
    tail = ",0" * len(survey.CLASSES) + ",1\n"
    fh.write("".join([f"{i}{tail}" for i in np.asarray(object_ids).tolist()]))


def write_truth(fh: TextIO, object_ids: np.ndarray, true_target: np.ndarray) -> None:
    """The truth file: object_id,target,true_target (target: the scored class, 99 for unknowns)."""
    frame = pd.DataFrame({survey.OBJECT_ID: np.asarray(object_ids, dtype=np.int64),
                          survey.TARGET: survey.truth_to_scored(true_target),
                          "true_target": np.asarray(true_target, dtype=np.int64)})
    frame.to_csv(fh, index=False, lineterminator="\n")
