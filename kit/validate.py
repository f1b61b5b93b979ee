"""Check a submission file before it is uploaded: format, header, ids and values.

Every problem found is reported at once, each naming what is wrong with a few example rows or
object_ids. A 3.5M-row submission is read with pyarrow's CSV reader as float32 (about 0.3 GB).
"""

from __future__ import annotations

import argparse
import gzip
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from kit import idsets, survey
from kit.config import Config
from kit.errors import InputError

_GZIP_MAGIC = b"\x1f\x8b"
_SNIFF_BYTES = 1 << 16


def _examples(values: np.ndarray, max_examples: int) -> str:
    values = np.asarray(values)
    shown = ", ".join(str(v) for v in values[:max_examples].tolist())
    more = f", ... ({len(values)} in all)" if len(values) > max_examples else ""
    return f"[{shown}{more}]"


def _read_metadata_ids(path: Path) -> np.ndarray:
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: test metadata not found; point --data at a competition folder")
    table = pacsv.read_csv(
        path,
        convert_options=pacsv.ConvertOptions(
            include_columns=[survey.OBJECT_ID], column_types={survey.OBJECT_ID: pa.int64()}
        ),
    )
    return table.column(survey.OBJECT_ID).to_numpy()


def _check_format(path: Path) -> tuple[list[str], bool, bytes | None]:
    """Problems of compression; whether the file is gzip; its first decoded bytes (None: unreadable)."""
    problems: list[str] = []
    with open(path, "rb") as f:
        magic = f.read(2)
    is_gzip = magic == _GZIP_MAGIC
    named_gz = path.name.endswith(".gz")
    if named_gz and not is_gzip:
        problems.append(f"not gzip-compressed although named .gz (first bytes {magic!r}); compress it or rename it")
    if is_gzip and not named_gz:
        problems.append("gzip-compressed although not named .gz; add .gz to its name or decompress it")
    try:
        opener = gzip.open if is_gzip else open
        with opener(path, "rb") as f:
            head = f.read(_SNIFF_BYTES)
    except (OSError, EOFError) as err:
        problems.append(f"not a readable gzip stream ({err})")
        return problems, is_gzip, None
    return problems, is_gzip, head


def _check_text(head: bytes) -> str | None:
    if not head:
        return "empty file: expected a CSV with header " + ",".join(survey.SUBMISSION_COLUMNS)
    if b"\x00" in head:
        return "not a CSV text file: it holds binary data (NUL bytes) in its first 64 KB"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as err:
        if err.start < len(head) - 4:  # a multi-byte character cut at the sniff boundary is fine
            return f"not a CSV text file: bytes at offset {err.start} are not UTF-8 text"
    return None


def _check_header(head: bytes) -> list[str]:
    first = head.split(b"\n", 1)[0].decode("utf-8", "replace").strip().lstrip("\ufeff")
    found = [c.strip().strip('"') for c in first.split(",")]
    expected = list(survey.SUBMISSION_COLUMNS)
    if found == expected:
        return []
    missing = [c for c in expected if c not in found]
    extra = [c for c in found if c not in expected]
    duplicated = sorted({c for c in found if found.count(c) > 1})
    parts = []
    if missing:
        parts.append(f"missing columns {missing}")
    if extra:
        parts.append(f"unexpected columns {extra}")
    if duplicated:
        parts.append(f"duplicated columns {duplicated}")
    if not parts:
        parts.append("columns in the wrong order")
    return [f"{'; '.join(parts)}: expected header {','.join(expected)} but found {','.join(found)}"]


def _read_table(path: Path, is_gzip: bool) -> pa.Table:
    types = {survey.OBJECT_ID: pa.int64()} | {c: pa.float32() for c in survey.SUBMISSION_COLUMNS[1:]}
    with pa.input_stream(str(path), compression="gzip" if is_gzip else None) as stream:
        return pacsv.read_csv(
            stream,
            read_options=pacsv.ReadOptions(block_size=1 << 24),
            convert_options=pacsv.ConvertOptions(column_types=types),
        )


def _check_ids(ids: np.ndarray, meta_ids: np.ndarray, max_examples: int) -> list[str]:
    problems = []
    if len(ids) != len(meta_ids):
        problems.append(f"wrong row count: {len(ids)} rows for {len(meta_ids)} test objects (one row per object)")
    uniq, counts = idsets.unique_counts(ids)
    dup = uniq[counts > 1]
    if dup.size:
        problems.append(f"duplicate object_ids ({dup.size}): {_examples(dup, max_examples)}")
    unknown = idsets.absent(uniq, meta_ids)
    if unknown.size:
        problems.append(f"object_ids not in the test metadata ({unknown.size}): {_examples(unknown, max_examples)}")
    missing = idsets.absent(meta_ids, uniq)
    if missing.size:
        problems.append(f"object_ids of the test metadata missing ({missing.size}): {_examples(missing, max_examples)}")
    return problems


def _check_values(ids: np.ndarray, p: np.ndarray, max_examples: int) -> list[str]:
    problems = []
    nan = np.isnan(p)
    checks = [
        ("NaN or empty values", nan.any(axis=1)),
        ("infinite values", np.isinf(p).any(axis=1)),
        ("negative values", (p < 0).any(axis=1)),
        ("values above 1", (p > 1).any(axis=1)),
    ]
    for what, bad_rows in checks:
        if bad_rows.any():
            rows = np.flatnonzero(bad_rows)
            problems.append(
                f"{what} in {rows.size} rows; object_ids {_examples(ids[rows], max_examples)} "
                f"(lines {_examples(rows + 2, max_examples)})"
            )
    sums = np.where(nan, 0, p).sum(axis=1, dtype=np.float64)
    zero = np.flatnonzero(~nan.any(axis=1) & (sums <= 0))
    if zero.size:
        problems.append(
            f"rows summing to 0 ({zero.size}): object_ids {_examples(ids[zero], max_examples)} "
            f"(lines {_examples(zero + 2, max_examples)}); every row needs some probability"
        )
    return problems


def validate_submission(path: Path, test_metadata_path: Path, max_examples: int = 5) -> list[str]:
    """All problems of a submission file; an empty list means it is valid.

    Parameters
    ----------
    path : Path
        The submission (``.csv.gz`` or ``.csv``).
    test_metadata_path : Path
        ``test_set_metadata.csv``: the object_ids the submission must cover exactly once.
    max_examples : int
        Example ids or lines shown per problem.

    Returns
    -------
    list of str
        One message per problem.
    """
    problems, _ = _validate(Path(path), Path(test_metadata_path), max_examples)
    return problems


def _validate(path: Path, test_metadata_path: Path, max_examples: int) -> tuple[list[str], int]:
    if not path.exists():
        return [f"file not found: {path}"], 0
    problems, is_gzip, head = _check_format(path)
    if head is None:
        return problems, 0
    text_problem = _check_text(head)
    if text_problem:
        return problems + [text_problem], 0
    header_problems = _check_header(head)
    if header_problems:
        return problems + header_problems, 0
    try:
        table = _read_table(path, is_gzip)
    except (pa.ArrowInvalid, OSError, EOFError) as err:
        return problems + [f"not a parseable CSV: {err}"], 0
    ids = table.column(survey.OBJECT_ID).to_numpy(zero_copy_only=False)
    if table.column(survey.OBJECT_ID).null_count:
        problems.append("empty object_id values")
        ids = table.column(survey.OBJECT_ID).fill_null(-1).to_numpy()
    p = np.empty((table.num_rows, len(survey.SUBMISSION_CLASSES)), dtype=np.float32)
    for j, name in enumerate(survey.SUBMISSION_COLUMNS[1:]):
        p[:, j] = table.column(name).to_numpy(zero_copy_only=False)  # nulls become NaN
    del table
    problems += _check_ids(ids, _read_metadata_ids(test_metadata_path), max_examples)
    problems += _check_values(ids, p, max_examples)
    return problems, len(ids)


def check_submission(path: Path, test_metadata_path: Path, max_examples: int = 5) -> int:
    """Raise :class:`InputError` listing every problem of a submission; return its row count if valid."""
    problems, n_rows = _validate(Path(path), Path(test_metadata_path), max_examples)
    if problems:
        listed = "\n".join(f"  - {p}" for p in problems)
        raise InputError(f"{path} is not a valid submission ({len(problems)} problems):\n{listed}")
    return n_rows


def newest_submission(config: Config) -> Path:
    """The most recently written ``submissions/<name>-*.csv.gz``."""
    candidates = sorted(Path(config.submissions_dir).glob(f"{config.name}-*.csv.gz"), key=lambda p: p.stat().st_mtime)
    if not candidates:
        raise InputError(
            f"no submission {config.name}-*.csv.gz in {config.submissions_dir}; "
            "run `python -m kit submission` or pass --file"
        )
    return candidates[-1]


# --- command ------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--file", type=Path, default=None, help="submission (default: newest for this competition)")


def run(args: argparse.Namespace, config: Config) -> int:
    path = args.file or newest_submission(config)
    n_rows = check_submission(path, config.test_metadata)
    print(f"OK: {path}: {n_rows} rows, {len(survey.SUBMISSION_CLASSES)} classes")
    return 0
