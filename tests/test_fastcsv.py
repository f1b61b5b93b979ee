"""The compiled CSV fast path gives pyarrow's bits, or steps aside."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from kit import fastcsv, survey
from kit.lightcurves import _ARROW_TYPES

COLUMNS = list(survey.LIGHTCURVE_COLUMNS)


def _pyarrow(data: bytes) -> pd.DataFrame:
    table = pacsv.read_csv(
        pa.py_buffer(data),
        read_options=pacsv.ReadOptions(column_names=COLUMNS),
        convert_options=pacsv.ConvertOptions(column_types={c: _ARROW_TYPES[c] for c in COLUMNS}),
    )
    return table.to_pandas()


def _assert_same_bits(got: pd.DataFrame, want: pd.DataFrame) -> None:
    assert list(got.columns) == list(want.columns) and len(got) == len(want)
    for c in got:
        assert got[c].dtype == want[c].dtype, c
        np.testing.assert_array_equal(got[c].to_numpy().view(np.uint8), want[c].to_numpy().view(np.uint8), err_msg=c)


def _random_lines(n: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    lines = []
    for _ in range(n):
        digits = int(rng.integers(1, 10))
        flux = rng.normal(0, 10.0 ** rng.integers(-3, 6))
        err = abs(rng.normal(0, 10.0 ** rng.integers(-3, 4)))
        lines.append(
            f"{rng.integers(-2**31, 2**31)},{rng.uniform(59000, 61000):.{rng.integers(0, 7)}f},{rng.integers(0, 6)},"
            f"{flux:.{digits}g},{err:.{digits}f},{rng.integers(0, 2)}"
        )
    return ("\n".join(lines) + "\n").encode()


@pytest.mark.parametrize("seed", range(4))
def test_random_plain_lines_match_pyarrow_bit_for_bit(seed):
    data = _random_lines(3000, seed)
    if b"e" in data:  # %g may write exponents: those lines are not plain, so test the plain ones only
        data = b"".join(line + b"\n" for line in data.splitlines() if b"e" not in line)
    got = fastcsv.parse(data, COLUMNS)
    assert got is not None
    _assert_same_bits(got, _pyarrow(data))


def test_awkward_but_plain_values_and_crlf():
    data = b"-5,0059000.50,0,-0.0,000.25,1\r\n7,59000,5,+12.5,16777216,0\n8,1.5,2,123456789012345,3.4,1"
    got = fastcsv.parse(data, COLUMNS)
    assert got is not None
    _assert_same_bits(got, _pyarrow(data))
    assert np.signbit(got["flux"][0]) and got["object_id"].tolist() == [-5, 7, 8]


@pytest.mark.parametrize(
    "line",
    [
        b"1,59000.5,1,1e3,2.0,0",  # exponent
        b"1,59000.5,1,nan,2.0,0",  # not a plain number
        b"1,59000.5,1,,2.0,0",  # empty field
        b'1,59000.5,1,"3.5",2.0,0',  # quotes
        b"1,59000.5,1,3.5,2.0,0,9",  # extra field
        b"1,59000.5,1,3.5,2.0",  # missing field
        b"1,59000.5,300,3.5,2.0,0",  # passband out of int8
        b"1,59000.5,1,1234567890123456,2.0,0",  # 16 significant digits
        b"1,59000.5,1,16777217,2.0,0",  # a float32 rounding tie
        b"1,59000.5,1,.5,2.0,0",  # no digit before the point
        b"1,59000.5,1,5.,2.0,0",  # no digit after the point
        b"",
    ],
)
def test_anything_else_is_left_to_pyarrow(line):
    assert fastcsv.parse(b"2,59000.25,3,1.5,0.5,1\n" + line + b"\n", COLUMNS) is None


def test_other_column_orders_are_left_to_pyarrow():
    assert fastcsv.parse(b"1,2,3,4,5,6\n", ["mjd", *COLUMNS[1:], "object_id"][:6]) is None
