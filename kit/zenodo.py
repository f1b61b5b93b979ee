"""Import the unblinded PLAsTiCC release (Zenodo, DOI 10.5281/zenodo.2539456) as a competition folder.

Input folder: ``plasticc_train_metadata.csv.gz``, ``plasticc_train_lightcurves.csv.gz``,
``plasticc_test_metadata.csv.gz`` and ``plasticc_test_lightcurves_*.csv.gz`` (columns with ``_bool``
suffixes, space-padded numbers, distmod -9 for galactic objects, ``true_target``). Output: Kaggle's files
(training_set.csv, training_set_metadata.csv, test_set.csv, test_set_metadata.csv, sample_submission.csv)
plus test_truth.csv (object_id,target,true_target; 991-994 score as 99). Light curves are streamed in
chunks, so memory stays bounded. Data of the PLAsTiCC team, CC BY 4.0.
"""

from __future__ import annotations

import argparse
import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd

from kit import survey
from kit.config import Config
from kit.errors import InputError
from kit.files import atomic_path
from kit.simulate import writer

log = logging.getLogger(__name__)

TRAIN_METADATA = "plasticc_train_metadata.csv.gz"
TRAIN_LIGHTCURVES = "plasticc_train_lightcurves.csv.gz"
TEST_METADATA = "plasticc_test_metadata.csv.gz"
TEST_LIGHTCURVES_GLOB = "plasticc_test_lightcurves_*.csv.gz"
#: Zenodo's placeholder for a missing value (distmod of galactic objects, missing spec-z).
MISSING = -9.0
RENAMES = {"ddf_bool": "ddf", "detected_bool": "detected"}
CHUNK_ROWS = 2_000_000
#: J2000 north galactic pole (ra, decl) and the galactic longitude of the north celestial pole (degrees).
NGP_RA_DEG, NGP_DECL_DEG, NCP_L_DEG = 192.85948, 27.12825, 122.93192


def galactic_coordinates(ra_deg: np.ndarray, decl_deg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Galactic longitude and latitude (degrees) of equatorial J2000 coordinates (degrees)."""
    ra, dec = np.radians(np.asarray(ra_deg, float)), np.radians(np.asarray(decl_deg, float))
    ra_p, dec_p = np.radians(NGP_RA_DEG), np.radians(NGP_DECL_DEG)
    sin_b = np.sin(dec) * np.sin(dec_p) + np.cos(dec) * np.cos(dec_p) * np.cos(ra - ra_p)
    b = np.arcsin(np.clip(sin_b, -1.0, 1.0))
    y = np.cos(dec) * np.sin(ra - ra_p)
    x = np.sin(dec) * np.cos(dec_p) - np.cos(dec) * np.sin(dec_p) * np.cos(ra - ra_p)
    l_deg = np.mod(NCP_L_DEG - np.degrees(np.arctan2(y, x)), 360.0)
    return l_deg, np.degrees(b)


def _read_metadata(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise InputError(f"{path}: missing; download it from Zenodo (DOI 10.5281/zenodo.2539456)")
    frame = pd.read_csv(path, skipinitialspace=True).rename(columns=RENAMES)
    need = {"object_id", "ra", "decl", "ddf", "hostgal_photoz", "distmod", "mwebv", "true_target"}
    if missing := need - set(frame.columns):
        raise InputError(f"{path}: columns {sorted(missing)} missing; is this Zenodo's PLAsTiCC metadata?")
    for col in ("hostgal_specz", "distmod"):
        frame[col] = frame[col].where(frame[col] != MISSING)
    frame.loc[frame["hostgal_photoz"] == 0, "distmod"] = np.nan
    frame["gal_l"], frame["gal_b"] = galactic_coordinates(frame["ra"], frame["decl"])
    frame[survey.TARGET] = survey.truth_to_scored(frame["true_target"])
    return frame


def _natural_key(path: Path):
    return [int(s) if s.isdigit() else s for s in re.split(r"(\d+)", path.name)]


def _copy_lightcurves(sources: list[Path], target: Path, chunk_rows: int) -> int:
    """Stream Zenodo light-curve files into one Kaggle-format CSV; return the row count."""
    n = 0
    with atomic_path(target) as tmp, open(tmp, "w", newline="\n", encoding="ascii") as fh:
        fh.write(writer.LIGHTCURVE_HEADER)
        for src in sources:
            log.info("importing %s", src.name)
            for chunk in pd.read_csv(src, chunksize=chunk_rows, skipinitialspace=True):
                chunk = chunk.rename(columns=RENAMES)
                if missing := set(survey.LIGHTCURVE_COLUMNS) - set(chunk.columns):
                    raise InputError(f"{src}: columns {sorted(missing)} missing; expected {RENAMES} renamed")
                writer.write_lightcurve_rows(fh, *(chunk[c].to_numpy() for c in survey.LIGHTCURVE_COLUMNS))
                n += len(chunk)
    return n


def _write_frame(path: Path, write, *args) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="\n", encoding="ascii") as fh:
        write(fh, *args)


def import_zenodo(source: Path, out: Path, chunk_rows: int = CHUNK_ROWS) -> None:
    """Convert the Zenodo release in ``source`` into a competition folder ``out`` (see module docstring)."""
    source, out = Path(source), Path(out)
    test_sources = sorted(source.glob(TEST_LIGHTCURVES_GLOB), key=_natural_key)
    if not test_sources:
        raise InputError(f"{source}: no {TEST_LIGHTCURVES_GLOB}; point --source at the Zenodo download")
    if not (source / TRAIN_LIGHTCURVES).exists():
        raise InputError(f"{source / TRAIN_LIGHTCURVES}: missing; download it from Zenodo")
    train = _read_metadata(source / TRAIN_METADATA)
    test = _read_metadata(source / TEST_METADATA)
    _copy_lightcurves([source / TRAIN_LIGHTCURVES], out / survey.TRAIN_LIGHTCURVES, chunk_rows)
    _write_frame(out / survey.TRAIN_METADATA, writer.write_metadata,
                 train[list(survey.METADATA_COLUMNS) + [survey.TARGET]])
    _copy_lightcurves(test_sources, out / survey.TEST_LIGHTCURVES, chunk_rows)
    _write_frame(out / survey.TEST_METADATA, writer.write_metadata, test[list(survey.METADATA_COLUMNS)])
    ids = test[survey.OBJECT_ID].to_numpy()
    _write_frame(out / survey.SAMPLE_SUBMISSION, writer.write_sample_submission, ids)
    _write_frame(out / survey.TEST_TRUTH, writer.write_truth, ids, test["true_target"].to_numpy())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", type=Path, required=True, help="folder with Zenodo's plasticc_*.csv.gz files")
    parser.add_argument("--out", type=Path, default=None, help="competition folder to write (default: --data)")


def run(args: argparse.Namespace, config: Config) -> int:
    out = args.out or config.data_dir
    import_zenodo(args.source, out, chunk_rows=config.chunk_rows)
    print(f"imported {args.source} into {out}")
    return 0
