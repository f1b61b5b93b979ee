"""Everything survey-specific about PLAsTiCC-2018, in one place.

Class ids, names, weights, the galactic/extragalactic split, file and column names and the
compact dtypes. No other module hard-codes a class number or a column name of Kaggle's files.
Facts from the PLAsTiCC team's data release (DOI 10.5281/zenodo.2539456, CC BY 4.0).
"""

from __future__ import annotations

import numpy as np

COMPETITION = "plasticc-2018"

#: The 14 classes of the training set, in the submission's column order.
CLASSES: tuple[int, ...] = (6, 15, 16, 42, 52, 53, 62, 64, 65, 67, 88, 90, 92, 95)
#: The catch-all class of objects unlike any training class (test set only).
CLASS_UNKNOWN = 99
#: Every class a submission carries, in the submission's column order.
SUBMISSION_CLASSES: tuple[int, ...] = CLASSES + (CLASS_UNKNOWN,)
#: True targets of the unblinded test set that score as class 99.
UNKNOWN_TRUE_TARGETS: tuple[int, ...] = (991, 992, 993, 994)

CLASS_NAMES: dict[int, str] = {
    6: "microlens",
    15: "TDE",
    16: "eclipsing binary",
    42: "SN II",
    52: "SN Iax",
    53: "Mira",
    62: "SN Ibc",
    64: "kilonova",
    65: "M-dwarf flare",
    67: "SN Ia-91bg",
    88: "AGN",
    90: "SN Ia",
    92: "RR Lyrae",
    95: "SLSN-I",
    99: "unknown",
}

#: Metric weights: 2 for classes 15, 64 and 99, 1 for every other class.
CLASS_WEIGHTS: dict[int, float] = {c: (2.0 if c in (15, 64, 99) else 1.0) for c in SUBMISSION_CLASSES}

GALACTIC_CLASSES: tuple[int, ...] = (6, 16, 53, 65, 92)
EXTRAGALACTIC_CLASSES: tuple[int, ...] = tuple(c for c in CLASSES if c not in GALACTIC_CLASSES)

PASSBANDS = "ugrizY"
N_PASSBANDS = len(PASSBANDS)
#: Effective wavelengths of the LSST passbands u, g, r, i, z, Y (Å).
PASSBAND_WAVELENGTH_A: tuple[float, ...] = (3670.0, 4830.0, 6220.0, 7560.0, 8690.0, 9710.0)

# --- files of the competition -------------------------------------------------------------
TRAIN_LIGHTCURVES = "training_set.csv"
TRAIN_METADATA = "training_set_metadata.csv"
TEST_LIGHTCURVES = "test_set.csv"
TEST_METADATA = "test_set_metadata.csv"
SAMPLE_SUBMISSION = "sample_submission.csv"
#: Not Kaggle's: the kit's truth file for a simulated or unblinded test set (object_id,target[,true_target]).
TEST_TRUTH = "test_truth.csv"

#: Row counts of the real competition files (for checks after a download).
REAL_ROW_COUNTS: dict[str, int] = {
    TRAIN_LIGHTCURVES: 1_421_705,
    TRAIN_METADATA: 7_848,
    TEST_LIGHTCURVES: 453_653_104,
    TEST_METADATA: 3_492_890,
}

# --- observing window ---------------------------------------------------------------------
#: MJD of the first and last observation of the simulated survey (three years of LSST).
SURVEY_MJD: tuple[float, float] = (59_580.0, 60_675.0)
#: Days of slack around the survey when checking light-curve dates (rounding, a longer simulation).
MJD_MARGIN_DAYS = 100.0
#: Dates outside this range are not PLAsTiCC observations: the light-curve readers reject them.
MJD_RANGE: tuple[float, float] = (SURVEY_MJD[0] - MJD_MARGIN_DAYS, SURVEY_MJD[1] + MJD_MARGIN_DAYS)

# --- columns and dtypes -------------------------------------------------------------------
OBJECT_ID = "object_id"
#: Column of an augmented copy naming the training object it was made from.
PARENT_ID = "parent_id"
TARGET = "target"
LIGHTCURVE_COLUMNS: tuple[str, ...] = ("object_id", "mjd", "passband", "flux", "flux_err", "detected")
#: mjd needs float64 for sub-day precision; the rest fits compact types (9.3 GB vs 20.3 GB for the test set).
LIGHTCURVE_DTYPES: dict[str, np.dtype] = {
    "object_id": np.dtype(np.int32),
    "mjd": np.dtype(np.float64),
    "passband": np.dtype(np.int8),
    "flux": np.dtype(np.float32),
    "flux_err": np.dtype(np.float32),
    "detected": np.dtype(np.int8),
}
METADATA_COLUMNS: tuple[str, ...] = (
    "object_id", "ra", "decl", "gal_l", "gal_b", "ddf", "hostgal_specz",
    "hostgal_photoz", "hostgal_photoz_err", "distmod", "mwebv",
)
METADATA_DTYPES: dict[str, np.dtype] = {
    "object_id": np.dtype(np.int32),
    "ra": np.dtype(np.float32),
    "decl": np.dtype(np.float32),
    "gal_l": np.dtype(np.float32),
    "gal_b": np.dtype(np.float32),
    "ddf": np.dtype(np.int8),
    "hostgal_specz": np.dtype(np.float32),
    "hostgal_photoz": np.dtype(np.float32),
    "hostgal_photoz_err": np.dtype(np.float32),
    "distmod": np.dtype(np.float32),
    "mwebv": np.dtype(np.float32),
    "target": np.dtype(np.int16),
}
SUBMISSION_COLUMNS: tuple[str, ...] = ("object_id",) + tuple(f"class_{c}" for c in SUBMISSION_CLASSES)
#: Columns of per-model probability files: the 14 known classes, before class 99 is added.
PROBA_COLUMNS: tuple[str, ...] = tuple(f"class_{c}" for c in CLASSES)


def class_column(c: int) -> str:
    """Name of the submission column of class ``c``."""
    return f"class_{c}"


def is_galactic(hostgal_photoz: np.ndarray) -> np.ndarray:
    """Galactic objects are exactly those with host-galaxy photo-z of 0 (and no distmod)."""
    return np.asarray(hostgal_photoz) == 0


def allowed_classes_mask(galactic: np.ndarray) -> np.ndarray:
    """Boolean (n_objects, 14) mask of the classes an object may belong to, by its galactic flag.

    Galactic and extragalactic objects never share a class, so the other group's classes are
    impossible for every object.
    """
    gal_cols = np.isin(np.array(CLASSES), GALACTIC_CLASSES)
    galactic = np.asarray(galactic, dtype=bool)[:, None]
    return np.where(galactic, gal_cols[None, :], ~gal_cols[None, :])


def truth_to_scored(true_target: np.ndarray) -> np.ndarray:
    """Map unblinded true targets to scored classes: 991-994 (and anything unseen) score as 99."""
    t = np.asarray(true_target).astype(np.int64)
    return np.where(np.isin(t, CLASSES), t, CLASS_UNKNOWN)
