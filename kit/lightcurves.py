"""Reading Kaggle light-curve CSVs (``.csv`` or ``.csv.gz``) fast, with compact dtypes.

The file is read in raw byte blocks cut at line ends and each block is parsed by pyarrow, so the
row number of every block is known and a bad value can be reported by line. Three ways in:

- :func:`read_lightcurves`: the whole file as one frame (training set);
- :func:`iter_object_chunks`: whole-object chunks of about ``chunk_rows`` rows, memory bounded by
  the chunk size whatever the file size (test set, streamed);
- :func:`object_byte_ranges` + :func:`read_byte_range`: byte ranges of an uncompressed file that
  start at object boundaries, so that workers can read their own share (parallel featurisation).

Line numbers in messages count the header as line 1.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from kit import fastcsv, idsets, survey
from kit.data import check_columns
from kit.errors import InputError
from kit.files import gzip_errors

#: Bytes per row of Kaggle's light-curve CSVs (19.3 GB / 453.6 M rows), to turn rows into bytes.
BYTES_PER_ROW = 42
#: Smallest raw block read at once (the header and a few rows must fit).
MIN_BLOCK_BYTES = 4096
#: Largest raw block parsed at once. Measured on a 77 MB byte range: blocks of 16-20 MB parse
#: in 0.32 s; one 77 MB block costs 0.6-0.9 s in a fresh worker (fresh allocator memory) and
#: 1 MB blocks 0.6 s (per-call costs).
MAX_BLOCK_BYTES = 16 * 2**20
#: File line number of the first data row (the header is line 1).
_FIRST_DATA_LINE = 2
_ARROW_TYPES: dict[str, pa.DataType] = {c: pa.from_numpy_dtype(t) for c, t in survey.LIGHTCURVE_DTYPES.items()}
_INT_COLUMNS = {c for c, t in survey.LIGHTCURVE_DTYPES.items() if t.kind == "i"}
#: Values pyarrow reads as missing (NaN): the kit rejects them in light curves.
_NULL_VALUES = frozenset(pacsv.ConvertOptions().null_values)


# --- header and files ------------------------------------------------------------------------
def _check_exists(path: Path) -> None:
    if not path.exists():
        raise InputError(
            f"{path}: light-curve file not found. Run `make download` (Kaggle) or `make simulate`, "
            "or point DATA= at a competition folder."
        )


def is_compressed(path: Path) -> bool:
    """True for ``.gz`` files (they can be streamed but not split into byte ranges)."""
    return Path(path).suffix == ".gz"


def read_header(path: Path) -> tuple[list[str], int]:
    """The column names of the file and the byte length of its header line (newline included).

    Raises
    ------
    InputError
        When the file is missing or a light-curve column is missing or misspelled.
    """
    path = Path(path)
    _check_exists(path)
    with gzip_errors(path), pa.input_stream(str(path), compression="detect") as stream:
        head = stream.read(MIN_BLOCK_BYTES)
        while b"\n" not in head:
            more = stream.read(MIN_BLOCK_BYTES)
            if not more:
                break
            head += more
    line = head.split(b"\n", 1)[0]
    columns = [c.strip().strip('"') for c in line.decode("utf-8", errors="replace").rstrip("\r").split(",")]
    check_columns(path, columns, survey.LIGHTCURVE_COLUMNS)
    return columns, len(line) + 1


# --- parsing one block ---------------------------------------------------------------------
def _parse_block(
    data: bytes, columns: list[str], path: Path, first_line: int, at_eof: bool
) -> tuple[pd.DataFrame, int]:
    """Parse complete CSV lines (no header) into a frame of ``survey.LIGHTCURVE_DTYPES``; also its line count.

    Long data is parsed in pieces of about ``MAX_BLOCK_BYTES`` cut at line ends. ``first_line`` is
    the file line number of the first line, for messages. Values outside what a PLAsTiCC light
    curve can hold (see :func:`_check_values`) are errors naming their line and column.
    """
    frames, begin, line = [], 0, first_line
    while begin < len(data):
        cut = data.find(b"\n", begin + MAX_BLOCK_BYTES) + 1 or len(data)
        frame, n_lines = _parse_one(data[begin:cut], columns, path, line, at_eof and cut == len(data))
        frames.append(frame)
        line += n_lines
        begin = cut
    if len(frames) <= 1:
        return (frames[0] if frames else _empty_frame()), line - first_line
    return pd.concat(frames, ignore_index=True), line - first_line


def _parse_one(
    data: bytes, columns: list[str], path: Path, first_line: int, at_eof: bool
) -> tuple[pd.DataFrame, int]:
    """Parse one block of at most about ``MAX_BLOCK_BYTES`` (see :func:`_parse_block`)."""
    if not data or data.isspace():
        return _empty_frame(), data.count(b"\n")
    fast = fastcsv.parse(data, columns)
    if fast is not None:  # one row per line: the fast path gives way on empty lines
        _check_values(fast, data, path, first_line)
        return fast, len(fast)
    try:
        table = pacsv.read_csv(
            pa.py_buffer(data),
            # One arrow block per call: the columns come out contiguous and convert without copies.
            read_options=pacsv.ReadOptions(column_names=columns, use_threads=False, block_size=len(data) + 1),
            convert_options=pacsv.ConvertOptions(
                column_types={c: _ARROW_TYPES[c] for c in survey.LIGHTCURVE_COLUMNS},
                include_columns=list(survey.LIGHTCURVE_COLUMNS),
            ),
        )
    except pa.ArrowInvalid:
        raise InputError(_locate_bad_line(data, columns, path, first_line, at_eof)) from None
    if any(table.column(c).null_count for c in survey.LIGHTCURVE_COLUMNS):
        raise InputError(_locate_bad_line(data, columns, path, first_line, at_eof))
    frame = table.to_pandas()
    _check_values(frame, data, path, first_line)
    return frame, data.count(b"\n") + (not data.endswith(b"\n"))


def _check_values(frame: pd.DataFrame, data: bytes, path: Path, first_line: int) -> None:
    """Raise :class:`InputError` at the first row whose value no PLAsTiCC light curve holds.

    ``mjd`` must lie in ``survey.MJD_RANGE``, ``flux`` and ``flux_err`` must be finite, ``passband``
    in 0..5 and ``detected`` 0 or 1. Vectorised: a few min/max reductions per block, and the rows
    are searched only when one fails.
    """
    if frame.empty:
        return
    lo, hi = survey.MJD_RANGE
    mjd, flux, err = (frame[c].to_numpy() for c in ("mjd", "flux", "flux_err"))
    band, det = frame["passband"].to_numpy(), frame["detected"].to_numpy()
    if (
        mjd.min() >= lo and mjd.max() <= hi
        and np.isfinite(flux.min()) and np.isfinite(flux.max())
        and np.isfinite(err.min()) and np.isfinite(err.max())
        and band.min() >= 0 and band.max() < survey.N_PASSBANDS and det.min() >= 0 and det.max() <= 1
    ):
        return
    problems = {
        "mjd": (~((mjd >= lo) & (mjd <= hi)),
                f"outside the survey's dates (MJD {survey.SURVEY_MJD[0]:.0f}..{survey.SURVEY_MJD[1]:.0f}, "
                f"accepted {lo:.0f}..{hi:.0f}): is the column in MJD days?"),
        "flux": (~np.isfinite(flux), "not a finite number"),
        "flux_err": (~np.isfinite(err), "not a finite number"),
        "passband": ((band < 0) | (band >= survey.N_PASSBANDS), f"not a passband (0..{survey.N_PASSBANDS - 1})"),
        "detected": ((det < 0) | (det > 1), "not 0 or 1"),
    }
    row, column, why = min((int(np.argmax(bad)), col, why) for col, (bad, why) in problems.items() if bad.any())
    raise InputError(
        f"{path}: line {_line_of_row(data, first_line, row)}, column '{column}': "
        f"{frame[column].iloc[row]} is {why}. Fix the file or download it again."
    )


def _line_of_row(data: bytes, first_line: int, row: int) -> int:
    """File line number of parsed row ``row`` of ``data`` (pyarrow skips empty lines; error path only)."""
    seen = -1
    for i, raw in enumerate(data.split(b"\n")):
        if raw.strip(b"\r"):
            seen += 1
            if seen == row:
                return first_line + i
    return first_line + row


def _empty_frame() -> pd.DataFrame:
    return pd.DataFrame({c: np.empty(0, dtype=t) for c, t in survey.LIGHTCURVE_DTYPES.items()})


def _locate_bad_line(data: bytes, columns: list[str], path: Path, first_line: int, at_eof: bool) -> str:
    """Describe the first line of ``data`` that does not parse (error path only: pure Python)."""
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    last = len(lines) - 1
    for i, raw in enumerate(lines):
        fields = raw.decode("utf-8", errors="replace").rstrip("\r").split(",")
        problem = _line_problem(fields, columns)
        if problem is None:
            continue
        line_no = first_line + i
        if i == last and at_eof and not data.endswith(b"\n"):
            return (
                f"{path}: line {line_no} is cut mid-row ({problem}): the file ends in the middle of a row, "
                "so the download is probably incomplete. Download the file again."
            )
        return f"{path}: line {line_no}: {problem}. Fix the line or download the file again."
    return f"{path}: a value near line {first_line} does not fit its column's type. Download the file again."


def _line_problem(fields: list[str], columns: list[str]) -> str | None:
    if len(fields) != len(columns):
        return f"expected {len(columns)} values, found {len(fields)}"
    for name, value in zip(columns, fields, strict=True):
        if name not in survey.LIGHTCURVE_DTYPES:
            continue
        if value.strip() == "":
            return f"column '{name}' is empty"
        if value in _NULL_VALUES:
            return f"column '{name}': '{value}' is a missing value (NaN); every observation needs one"
        try:
            number = int(value) if name in _INT_COLUMNS else float(value)
        except ValueError:
            return f"column '{name}': '{value}' is not a number"
        if name in _INT_COLUMNS:
            info = np.iinfo(survey.LIGHTCURVE_DTYPES[name])
            if not info.min <= number <= info.max:
                return f"column '{name}': {value} does not fit {info.dtype} ({info.min}..{info.max})"
    return None


def _count_lines(path: Path, end: int) -> int:
    """Newlines in the first ``end`` bytes of ``path``, read in blocks (error path only)."""
    count, done = 0, 0
    with open(path, "rb") as f:
        while done < end:
            block = f.read(min(MAX_BLOCK_BYTES, end - done))
            if not block:
                break
            count += block.count(b"\n")
            done += len(block)
    return count


# --- contiguity -----------------------------------------------------------------------------
def check_contiguous(ids: np.ndarray, path: Path, first_line: int, seen: np.ndarray | None = None) -> None:
    """Raise :class:`InputError` if an object's rows are split, within ``ids`` or against ``seen``.

    ``seen`` holds the sorted ids of earlier chunks; ``first_line`` is the file line of ``ids[0]``.
    """
    starts = idsets.run_starts(ids)
    run_ids = ids[starts]
    if idsets.unique(run_ids).size != run_ids.size:
        order = np.argsort(run_ids, kind="stable")
        dup = np.flatnonzero(run_ids[order][1:] == run_ids[order][:-1])
        again = order[dup + 1]
        oid = int(run_ids[again[0]])
        first_run = int(order[dup[0]])
        raise InputError(
            f"{path}: the rows of object {oid} are not contiguous: seen at line {first_line + starts[first_run]}, "
            f"then again at line {first_line + starts[again[0]]} after other objects "
            f"({len(again)} object(s) affected, e.g. {run_ids[again[:5]].tolist()}). "
            "The kit streams objects in file order; sort the file by object_id (keeping each object's rows together)."
        )
    if seen is None or seen.size == 0:
        return
    pos = np.searchsorted(seen, run_ids).clip(max=seen.size - 1)
    repeated = seen[pos] == run_ids
    if repeated.any():
        i = int(np.flatnonzero(repeated)[0])
        raise InputError(
            f"{path}: the rows of object {int(run_ids[i])} are not contiguous: it appears again at line "
            f"{first_line + starts[i]} after other objects ({int(repeated.sum())} object(s) affected, e.g. "
            f"{run_ids[repeated][:5].tolist()}). Sort the file by object_id (keeping each object's rows together)."
        )


# --- reading --------------------------------------------------------------------------------
def _iter_blocks(path: Path, block_bytes: int) -> Iterator[tuple[int, pd.DataFrame]]:
    """Yield ``(first_line, frame)`` for raw blocks of about ``block_bytes`` cut at line ends."""
    columns, _ = read_header(path)
    block_bytes = max(int(block_bytes), MIN_BLOCK_BYTES)
    line = _FIRST_DATA_LINE
    with gzip_errors(path), pa.input_stream(str(path), compression="detect") as stream:
        rest = b""
        header_done = False
        while True:
            chunk = stream.read(block_bytes)
            at_eof = not chunk
            buf = rest + chunk
            if not header_done:
                cut = buf.find(b"\n")
                if cut < 0 and not at_eof:
                    rest = buf
                    continue
                buf = buf[cut + 1 :] if cut >= 0 else b""
                header_done = True
            if at_eof:
                data, rest = buf, b""
            else:
                cut = buf.rfind(b"\n")
                if cut < 0:
                    rest = buf
                    continue
                data, rest = buf[: cut + 1], buf[cut + 1 :]
            if data:
                try:
                    frame, n_lines = _parse_block(data, columns, path, line, at_eof)
                except InputError:
                    if is_compressed(path):  # garbage from a corrupt gzip file: its own error is the one to show
                        while stream.read(MAX_BLOCK_BYTES):
                            pass
                    raise
                yield line, frame
                line += n_lines
            if at_eof:
                return


def read_lightcurves(path: Path) -> pd.DataFrame:
    """Read a whole light-curve CSV (``.csv`` or ``.csv.gz``).

    Parameters
    ----------
    path
        Kaggle-format file with the columns of ``survey.LIGHTCURVE_COLUMNS``.

    Returns
    -------
    pandas.DataFrame
        One row per observation, in file order, with ``survey.LIGHTCURVE_DTYPES``.

    Raises
    ------
    InputError
        Missing file, bad header, unparsable or truncated line, or an object whose rows are split.
    """
    path = Path(path)
    frames = [frame for _, frame in _iter_blocks(path, MAX_BLOCK_BYTES)]
    if not frames:
        return _empty_frame()
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    check_contiguous(frame[survey.OBJECT_ID].to_numpy(), path, _FIRST_DATA_LINE)
    return frame


def iter_object_chunks(path: Path, chunk_rows: int) -> Iterator[pd.DataFrame]:
    """Stream the file as chunks of whole objects of about ``chunk_rows`` rows.

    The last (possibly incomplete) object of each block is carried over to the next chunk, so no
    object is ever split. Memory stays bounded by the chunk size (plus one object).

    Yields
    ------
    pandas.DataFrame
        Consecutive rows of the file with ``survey.LIGHTCURVE_DTYPES`` and a fresh RangeIndex.
    """
    path = Path(path)
    carry, carry_line = _empty_frame(), _FIRST_DATA_LINE
    seen = np.empty(0, dtype=np.int64)
    for line, frame in _iter_blocks(path, max(1, int(chunk_rows)) * BYTES_PER_ROW):
        if len(carry):
            frame, line = pd.concat([carry, frame], ignore_index=True), carry_line
        ids = frame[survey.OBJECT_ID].to_numpy()
        check_contiguous(ids, path, line, seen)
        last_start = int(idsets.run_starts(ids)[-1]) if len(ids) else 0
        carry, carry_line = frame.iloc[last_start:].reset_index(drop=True), line + last_start
        if last_start == 0:
            continue
        seen = idsets.merge(seen, ids[:last_start])
        yield frame.iloc[:last_start].reset_index(drop=True)
    if len(carry):
        yield carry


def object_byte_ranges(path: Path, n_parts: int) -> list[tuple[int, int]]:
    """Split an uncompressed CSV into about ``n_parts`` byte ranges that each start at an object.

    Each boundary is found by seeking to an even share of the file, reading forward to the next line
    and then forward until ``object_id`` changes. The ranges cover every data byte exactly once.

    Returns
    -------
    list of (int, int)
        ``(start, end)`` byte offsets, ``start`` of the first range just after the header.
    """
    path = Path(path)
    if is_compressed(path):
        raise InputError(f"{path}: a compressed file cannot be split into byte ranges; stream it instead or gunzip it.")
    columns, header_len = read_header(path)
    id_field = columns.index(survey.OBJECT_ID)
    size = path.stat().st_size
    if size <= header_len:
        return []
    bounds = [header_len]
    n_parts = max(1, int(n_parts))
    with open(path, "rb") as f:
        for k in range(1, n_parts):
            target = header_len + (size - header_len) * k // n_parts
            if target <= bounds[-1]:
                continue
            bounds.append(_next_object_start(f, target, size, id_field))
    bounds.append(size)
    bounds = sorted(set(bounds))
    return [(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=False) if b > a]


def _next_object_start(f, target: int, size: int, id_field: int) -> int:
    """Offset of the first line at or after the line following ``target`` whose object_id changes.

    ``id_field`` is the position of ``object_id`` in the header (not always first).
    """

    def object_id(line: bytes) -> bytes:
        fields = line.rstrip(b"\r\n").split(b",", id_field + 1)
        return fields[id_field].strip() if len(fields) > id_field else b""

    f.seek(target - 1)
    f.readline()  # finish the line in progress (target-1 so that a line starting at target is kept)
    pos = f.tell()
    line = f.readline()
    if not line:
        return size
    first_id = object_id(line)
    while True:
        pos = f.tell()
        line = f.readline()
        if not line or object_id(line) != first_id:
            return pos if line else size


def read_byte_range(path: Path, start: int, end: int) -> pd.DataFrame:
    """Read the rows of ``path`` between byte offsets ``start`` and ``end`` (from :func:`object_byte_ranges`).

    Returns
    -------
    pandas.DataFrame
        The rows of whole objects with ``survey.LIGHTCURVE_DTYPES``.
    """
    path = Path(path)
    columns, _ = read_header(path)
    with open(path, "rb") as f:
        f.seek(start)
        data = f.read(end - start)
    at_eof = end >= path.stat().st_size
    try:
        frame, _ = _parse_block(data, columns, path, _FIRST_DATA_LINE, at_eof)
        check_contiguous(frame[survey.OBJECT_ID].to_numpy(), path, _FIRST_DATA_LINE)
    except InputError:
        # Rare path: redo with the true line number of the range's start for the message.
        first_line = _count_lines(path, start) + 1
        frame, _ = _parse_block(data, columns, path, first_line, at_eof)
        check_contiguous(frame[survey.OBJECT_ID].to_numpy(), path, first_line)
    return frame

