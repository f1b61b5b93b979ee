"""Reading light-curve CSVs: formats, whole-object chunks, byte ranges and clear errors."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kit import lightcurves, survey
from kit.bench import write_synthetic
from kit.errors import InputError

HEADER = "object_id,mjd,passband,flux,flux_err,detected\n"


@pytest.fixture(scope="module")
def csv_file(tmp_path_factory) -> Path:
    lc, _ = write_synthetic(tmp_path_factory.mktemp("lc"), 5_000, seed=1)
    return lc


def _write(tmp_path: Path, text: str, name: str = "lc.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_reads_csv_and_gz_with_compact_dtypes(csv_file, tmp_path):
    gz = tmp_path / "lc.csv.gz"
    with open(csv_file, "rb") as src, gzip.open(gz, "wb") as dst:
        shutil.copyfileobj(src, dst)
    plain = lightcurves.read_lightcurves(csv_file)
    assert dict(plain.dtypes) == survey.LIGHTCURVE_DTYPES
    assert len(plain) == sum(1 for _ in open(csv_file)) - 1
    pd.testing.assert_frame_equal(plain, lightcurves.read_lightcurves(gz))
    reference = pd.read_csv(csv_file, dtype=survey.LIGHTCURVE_DTYPES)
    pd.testing.assert_frame_equal(plain, reference)


@pytest.mark.parametrize("chunk_rows", [1, 37, 400, 10**7])
def test_chunks_hold_whole_objects(csv_file, chunk_rows):
    whole = lightcurves.read_lightcurves(csv_file)
    chunks = list(lightcurves.iter_object_chunks(csv_file, chunk_rows))
    pd.testing.assert_frame_equal(pd.concat(chunks, ignore_index=True), whole)
    per_chunk = [set(c[survey.OBJECT_ID]) for c in chunks]
    assert sum(len(s) for s in per_chunk) == whole[survey.OBJECT_ID].nunique()
    if chunk_rows >= 400:
        assert max(len(c) for c in chunks) < chunk_rows + 2 * lightcurves.MIN_BLOCK_BYTES
    if chunk_rows == 10**7:
        assert len(chunks) <= 2  # the last object is carried, then flushed


@pytest.mark.parametrize("n_parts", [1, 2, 3, 7, 200])
def test_byte_ranges_cover_the_file_at_object_boundaries(csv_file, n_parts):
    ranges = lightcurves.object_byte_ranges(csv_file, n_parts)
    _, header_len = lightcurves.read_header(csv_file)
    assert ranges[0][0] == header_len and ranges[-1][1] == csv_file.stat().st_size
    assert all(a[1] == b[0] for a, b in zip(ranges[:-1], ranges[1:], strict=True))
    parts = [lightcurves.read_byte_range(csv_file, a, b) for a, b in ranges]
    whole = lightcurves.read_lightcurves(csv_file)
    pd.testing.assert_frame_equal(pd.concat(parts, ignore_index=True), whole)
    ids = [set(p[survey.OBJECT_ID]) for p in parts]
    assert sum(len(s) for s in ids) == len(set().union(*ids))  # no object split across ranges
    assert len(ranges) <= n_parts


def _all_readers(path: Path) -> list:
    return [
        lambda: lightcurves.read_lightcurves(path),
        lambda: list(lightcurves.iter_object_chunks(path, 2)),
    ]


def test_missing_file_says_what_to_do(tmp_path):
    with pytest.raises(InputError, match=r"nope\.csv: light-curve file not found.*make download"):
        lightcurves.read_lightcurves(tmp_path / "nope.csv")


@pytest.mark.parametrize(
    "header, message",
    [
        ("object_id,mjd,passbnd,flux,flux_err,detected\n", r"'passband' \(found 'passbnd': misspelled\?\)"),
        ("object_id,mjd,passband,flux,detected\n", r"lacks column\(s\) 'flux_err'"),
    ],
)
def test_bad_header_names_the_column(tmp_path, header, message):
    path = _write(tmp_path, header + "1,59750.1,2,-5.3,1.2,0\n")
    for read in _all_readers(path):
        with pytest.raises(InputError, match=message):
            read()


@pytest.mark.parametrize("tail", ["2,59752.1,3,5.3", "2,59752.1,3,5.3,1.2,", "2,5975"])
def test_truncated_last_line_says_download_incomplete(tmp_path, tail):
    rows = "1,59750.1,2,-5.3,1.2,0\n1,59751.1,3,5.3,1.2,1\n2,59751.1,3,5.3,1.2,1\n"
    path = _write(tmp_path, HEADER + rows + tail)
    for read in _all_readers(path):
        with pytest.raises(InputError, match=r"lc\.csv: line 5 is cut mid-row.*download is probably incomplete"):
            read()


def test_non_numeric_value_names_line_and_column(tmp_path):
    path = _write(tmp_path, HEADER + "1,59750.1,2,-5.3,1.2,0\n2,59751.1,3,abc,1.2,1\n")
    for read in _all_readers(path):
        with pytest.raises(InputError, match=r"line 3: column 'flux': 'abc' is not a number"):
            read()


def test_non_contiguous_object_names_ids_and_lines(tmp_path):
    rows = "".join(f"{oid},5975{i}.1,2,1.0,1.0,0\n" for i, oid in enumerate([1, 1, 2, 2, 3, 1, 3]))
    path = _write(tmp_path, HEADER + rows)
    for read in _all_readers(path):
        with pytest.raises(InputError, match=r"object 1 are not contiguous.*line 7"):
            read()


def test_empty_file_gives_empty_frame(tmp_path):
    path = _write(tmp_path, HEADER)
    assert lightcurves.read_lightcurves(path).empty
    assert list(lightcurves.iter_object_chunks(path, 10)) == []
    assert lightcurves.object_byte_ranges(path, 4) == []
    assert np.dtype(lightcurves.read_lightcurves(path)["mjd"].dtype) == np.float64


def _range_reader(path: Path):
    return lambda: [lightcurves.read_byte_range(path, a, b) for a, b in lightcurves.object_byte_ranges(path, 3)]


@pytest.mark.parametrize("damage", ["truncated", "corrupt", "not gzip"])
def test_damaged_gz_names_the_file_and_says_download_again(csv_file, tmp_path, damage):
    packed = gzip.compress(csv_file.read_bytes())
    if damage == "truncated":
        packed = packed[: len(packed) // 2]
    elif damage == "corrupt":
        middle = len(packed) // 2
        packed = packed[:middle] + bytes(b ^ 0xFF for b in packed[middle : middle + 64]) + packed[middle + 64 :]
    else:
        packed = csv_file.read_bytes()[:5000]
    path = tmp_path / "lc.csv.gz"
    path.write_bytes(packed)
    for read in _all_readers(path):
        with pytest.raises(InputError, match=r"lc\.csv\.gz: the gzip file is truncated or corrupt.*Download it again"):
            read()


def test_reordered_columns_split_at_object_boundaries(csv_file, tmp_path):
    order = ["flux", "passband", "object_id", "detected", "mjd", "flux_err"]
    whole = lightcurves.read_lightcurves(csv_file)
    path = tmp_path / "reordered.csv"
    pd.read_csv(csv_file, dtype=str)[order].to_csv(path, index=False)
    ranges = lightcurves.object_byte_ranges(path, 7)
    assert len(ranges) > 3
    parts = [lightcurves.read_byte_range(path, a, b) for a, b in ranges]
    ids = [set(p[survey.OBJECT_ID]) for p in parts]
    assert sum(len(s) for s in ids) == len(set().union(*ids))  # the first field is not object_id here
    pd.testing.assert_frame_equal(pd.concat(parts, ignore_index=True), whole)


def _rows_with(line_5001: str, n: int = 6_000) -> str:
    rows = [f"{1 + i // 50},{59600 + i * 0.1:.1f},{i % 6},{i % 7}.25,1.5,0\n" for i in range(n)]  # 50 rows/object
    rows[5001 - 2] = line_5001 + "\n"  # the header is line 1
    return HEADER + "".join(rows)


@pytest.mark.parametrize(
    "line, message",
    [
        ("100,59700.5,2,1.5,1.5,0", None),  # control: a plain line parses
        ("3000000000,59700.5,2,1.5,1.5,0", r"line 5001: column 'object_id': 3000000000 does not fit int32"),
        ("100,59700.5,2,NaN,1.5,0", r"line 5001: column 'flux': 'NaN' is a missing value"),
        ("100,59700.5,200,1.5,1.5,0", r"line 5001: column 'passband': 200 does not fit int8"),
        ("100,-3.5,2,1.5,1.5,0", r"line 5001, column 'mjd': -3.5 is outside the survey's dates"),
        ("100,71000.0,2,1.5,1.5,0", r"line 5001, column 'mjd': 71000.0 is outside the survey's dates"),
        ("100,59700.5,2,inf,1.5,0", r"line 5001, column 'flux': inf is not a finite number"),
        ("100,59700.5,7,1.5,1.5,0", r"line 5001, column 'passband': 7 is not a passband"),
    ],
)
def test_bad_value_deep_in_the_file_names_its_line_and_column(tmp_path, line, message):
    path = _write(tmp_path, _rows_with(line))  # line 5001 is row 4999, of object 1 + 4999 // 50 = 100
    for read in [*_all_readers(path), _range_reader(path)]:
        if message is None:
            read()
            continue
        with pytest.raises(InputError, match=r"lc\.csv: " + message):
            read()
