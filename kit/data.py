"""Reading competition metadata, and checking a competition folder before the pipeline runs."""

from __future__ import annotations

import argparse
import difflib
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from kit import idsets, survey
from kit.config import Config
from kit.errors import InputError
from kit.files import gzip_errors

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
    with gzip_errors(path):
        header = pd.read_csv(path, nrows=0).columns.tolist()
        expected = survey.METADATA_COLUMNS + ((survey.TARGET,) if require_target else ())
        check_columns(path, header, expected)
        usecols = [c for c in header if c in survey.METADATA_DTYPES]
        try:
            frame = pd.read_csv(path, usecols=usecols, dtype={c: survey.METADATA_DTYPES[c] for c in usecols})
        except (ValueError, TypeError) as err:
            raise InputError(
                f"{path}: {_locate_bad_value(path, usecols)} ({err}). Fix or re-download the file."
            ) from None
    dup = frame[survey.OBJECT_ID].duplicated()
    if dup.any():
        rows = (np.flatnonzero(dup.to_numpy())[:5] + 2).tolist()
        raise InputError(f"{path}: object_id repeated at line(s) {rows}; metadata has one row per object.")
    return frame


def _locate_bad_value(path: Path, usecols: list[str]) -> str:
    """Name the first line and column whose value does not parse as its column's type (error path only)."""
    raw = pd.read_csv(path, usecols=usecols, dtype=str, keep_default_na=False, skip_blank_lines=False)
    found = []  # (row, column, why) of the first bad value of each column
    for col in usecols:
        values = raw[col].str.strip()
        number = pd.to_numeric(values.replace("", "nan"), errors="coerce")
        missing = values.eq("") | values.str.lower().eq("nan")
        bad = number.isna() & ~missing
        why = "is not a number"
        dtype = survey.METADATA_DTYPES[col]
        if dtype.kind == "i":
            info = np.iinfo(dtype)
            bad_int = missing | (number.notna() & ((number < info.min) | (number > info.max) | (number % 1 != 0)))
            bad = bad | bad_int
            why = f"is not an integer of {info.dtype} ({info.min}..{info.max})"
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            found.append((i, col, "is not a number" if number.isna().iloc[i] and not missing.iloc[i] else why))
    if not found:
        return "a value does not fit its column's type"
    i, col, why = min(found)
    return f"line {i + 2}, column '{col}': '{raw[col].iloc[i]}' {why}"


def labels(metadata: pd.DataFrame, path: Path | str = "training metadata") -> np.ndarray:
    """The training targets, checked to be classes of the competition."""
    y = metadata[survey.TARGET].to_numpy().astype(np.int64)
    unknown = np.setdiff1d(np.unique(y), survey.CLASSES)
    if unknown.size:
        raise InputError(f"{path}: target holds classes {unknown.tolist()} unknown to PLAsTiCC ({survey.CLASSES}).")
    return y


#: Examples of unmatched object ids shown in messages.
N_EXAMPLES = 5


def compare_ids(
    lc_ids: np.ndarray, meta_ids: np.ndarray, lc_path: Path, meta_path: Path, split: str, strict: bool = False
) -> None:
    """Check that the light curves and the metadata of ``split`` ('train' or 'test') hold the same objects.

    Errors (:class:`InputError`, with example ids): light curves without rows, no object in common,
    training objects without light curves (folds and models take every object of the metadata), test
    light curves without metadata (the submission has one row per metadata object). Warnings: training
    light curves without metadata (left out: no label) and test metadata without light curves (an error
    with ``strict``: those objects get no features, so no submission can cover them).
    """
    lc_ids, meta_ids = idsets.unique(lc_ids), idsets.unique(meta_ids)
    if lc_ids.size == 0:
        raise InputError(
            f"{lc_path}: no light-curve rows (a header only?), while {meta_path} lists {meta_ids.size:,} objects. "
            "The file is incomplete: download it again (make download) or simulate the folder again."
        )
    only_lc, only_meta = idsets.absent(lc_ids, meta_ids), idsets.absent(meta_ids, lc_ids)
    if only_lc.size == lc_ids.size:
        raise InputError(
            f"{lc_path} and {meta_path} share no object_id (e.g. light curves of {only_lc[:N_EXAMPLES].tolist()}, "
            f"metadata of {meta_ids[:N_EXAMPLES].tolist()}): are they from the same competition folder?"
        )
    if only_lc.size:
        text = (
            f"{only_lc.size:,} object(s) of {lc_path} have no row in {meta_path} "
            f"(e.g. {only_lc[:N_EXAMPLES].tolist()})"
        )
        if split == "train":
            log.warning("%s: they have no label and are left out of training", text)
        else:
            raise InputError(
                f"{text}: the submission has one row per metadata object, so they cannot be submitted. Are both "
                "files from the same download? Download them again, or remove those objects' rows."
            )
    if only_meta.size:
        text = (
            f"{only_meta.size:,} object(s) of {meta_path} have no light-curve rows in {lc_path} "
            f"(e.g. {only_meta[:N_EXAMPLES].tolist()})"
        )
        if split == "train":
            raise InputError(
                f"{text}: the folds and every model take all the objects of the training metadata. "
                f"{lc_path.name} is probably incomplete: download it again, or remove those objects from the metadata."
            )
        advice = (
            f"they get no features, so no submission can cover them (`make submission` will refuse the "
            f"predictions). Kaggle's test set has light curves for every metadata object: {lc_path.name} is "
            "probably incomplete; download it again"
        )
        if strict:
            raise InputError(f"{text}: {advice}.")
        log.warning("%s: %s", text, advice)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `check-data`."""
    parser.add_argument(
        "--quick", action="store_true",
        help="do not read the test light curves in full (Kaggle's: 20 GB, a few minutes)",
    )


def scan_lightcurves(path: Path, chunk_rows: int) -> tuple[int, np.ndarray]:
    """Read a light-curve file in full, checking every value; its row count and its object ids (sorted).

    Raises :class:`InputError` for what the readers reject: a corrupt or truncated gzip file, a line
    cut short, a bad value, an object whose rows are not together.
    """
    from kit import lightcurves

    rows, ids = 0, []
    for chunk in lightcurves.iter_object_chunks(path, chunk_rows):
        oid = chunk[survey.OBJECT_ID].to_numpy()
        rows += oid.size
        ids.append(oid[idsets.run_starts(oid)])
    return rows, idsets.unique(np.concatenate(ids)) if ids else np.empty(0, dtype=np.int32)


def _check_tail(path: Path) -> None:
    """Cheap check of a light-curve file that is not read in full: its header, and a plain file ends a line."""
    from kit import lightcurves

    _, header_len = lightcurves.read_header(path)
    size = path.stat().st_size
    if lightcurves.is_compressed(path) or size <= header_len:
        return
    with open(path, "rb") as f:
        f.seek(size - 1)
        if f.read(1) != b"\n":
            raise InputError(
                f"{path}: the file ends in the middle of a row: the download is probably incomplete. "
                "Download the file again."
            )


def check_folder(config: Config, quick: bool = False) -> tuple[list[str], list[str]]:
    """Check a competition folder as far as its files allow; ``(checked, not_checked)`` in words.

    Raises :class:`InputError` at the first problem. Metadata and training light curves are read in
    full (gzip integrity, values, ids), the test light curves too unless ``quick``. Row counts are
    compared with Kaggle's only when the metadata's row counts say the folder is the real competition.
    """
    checked, skipped = [], []
    train = read_metadata(config.train_metadata, require_target=True)
    labels(train, config.train_metadata)
    test = read_metadata(config.test_metadata)
    checked.append(f"metadata: {len(train):,} training and {len(test):,} test objects, values and labels readable")
    counts = {survey.TRAIN_METADATA: len(train), survey.TEST_METADATA: len(test)}
    real = any(counts[name] == survey.REAL_ROW_COUNTS[name] for name in counts)

    sides = [("train", config.train_lightcurves, config.train_metadata, train, True),
             ("test", config.test_lightcurves, config.test_metadata, test, not quick)]
    for split, lc_path, meta_path, meta, full in sides:
        if not lc_path.exists():
            raise InputError(f"{lc_path}: file not found in {config.data_dir}. Run `make download` or set DATA=.")
        if not full:
            _check_tail(lc_path)
            skipped.append(
                f"{lc_path.name}: only its header and end were read (--quick): gzip integrity, values, ids and "
                "row count are left to `make features`"
            )
            continue
        rows, ids = scan_lightcurves(lc_path, config.chunk_rows)
        compare_ids(ids, meta[survey.OBJECT_ID].to_numpy(), lc_path, meta_path, split, strict=True)
        counts[lc_path.name.removesuffix(".gz")] = rows
        checked.append(f"{lc_path.name}: read in full, {rows:,} rows of {ids.size:,} objects, ids as {meta_path.name}")

    if real:
        wrong = {n: c for n, c in counts.items() if c != survey.REAL_ROW_COUNTS[n]}
        if wrong:
            detail = "; ".join(f"{n}: {c:,} rows, Kaggle's has {survey.REAL_ROW_COUNTS[n]:,}" for n, c in wrong.items())
            raise InputError(
                f"{config.data_dir}: the metadata's size says this is Kaggle's competition, but {detail}. "
                "A file is incomplete or from another release: download the competition again (make download)."
            )
        checked.append(f"row counts equal Kaggle's for {', '.join(sorted(counts))}")
        skipped += [f"row count of {n} (not read in full)" for n in survey.REAL_ROW_COUNTS if n not in counts]
    else:
        skipped.append(
            "row counts against Kaggle's files: the metadata's sizes are not the competition's "
            f"({survey.REAL_ROW_COUNTS[survey.TRAIN_METADATA]:,} / {survey.REAL_ROW_COUNTS[survey.TEST_METADATA]:,}"
            " objects), so this is a simulation, an import or a subset"
        )
    return checked, skipped


def run(args: argparse.Namespace, config: Config) -> int:
    """Check the competition folder: files, headers, values, gzip integrity, ids and (real data) row counts."""
    checked, skipped = check_folder(config, quick=args.quick)
    print(f"{config.data_dir}: OK")
    for line in checked:
        print(f"  checked:     {line}")
    for line in skipped:
        print(f"  not checked: {line}")
    return 0
