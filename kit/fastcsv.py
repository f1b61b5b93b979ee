"""A compiled fast path for the light-curve CSV's plain lines, bit-identical to pyarrow's parse.

Parsing is most of the featurisation time: pyarrow takes 0.30-0.6 s for a 2M-row part on one core
of the bench machine. :func:`parse` reads lines of exactly the Kaggle layout
(``object_id,mjd,passband,flux,flux_err,detected``, plain decimals, ``\\n`` or ``\\r\\n`` ends) in
one pass, in 0.18-0.3 s. Anything else (an exponent, ``nan``, quotes, an empty line or field, a
value out of its type's range, a number with more than 15 significant digits, a float32 value
at a rounding tie) makes it give up and return ``None``: the caller then parses the block with
pyarrow, which also produces the error messages. So the fast path never changes a result.

Decimals are converted exactly: a mantissa below 2**53 divided by a power of ten up to 1e22 is
one correctly rounded IEEE division (Clinger's fast path), as pyarrow's parser rounds.
"""

from __future__ import annotations

import numba
import numpy as np
import pandas as pd

from kit import survey

#: The column order the fast path reads (Kaggle's; ``_parse`` takes the fields in this order);
#: files with another header go through pyarrow.
LAYOUT: tuple[str, ...] = survey.LIGHTCURVE_COLUMNS
_POW10 = np.array([10.0**k for k in range(23)])
_MAX_MANTISSA = 2**53
_MAX_DIGITS = 15
#: The shortest line of the layout: "0,0,0,0,0,0\n".
_MIN_LINE_BYTES = 12


def parse(data: bytes, columns: list[str]) -> pd.DataFrame | None:
    """Parse complete lines (no header) into a frame of ``survey.LIGHTCURVE_DTYPES``, or ``None``.

    ``None`` means the block needs the general parser (see the module docstring).
    """
    if tuple(columns) != LAYOUT or not data:
        return None
    buf = np.frombuffer(data, dtype=np.uint8)
    n_max = len(data) // _MIN_LINE_BYTES + 1  # untouched pages of the excess cost no memory
    out = {c: np.empty(n_max, dtype=survey.LIGHTCURVE_DTYPES[c]) for c in LAYOUT}
    n = _parse(buf, _POW10, *(out[c] for c in LAYOUT))
    if n < 0:
        return None
    return pd.DataFrame({c: out[c][:n] for c in LAYOUT}, copy=False)


_ReadOnlyBytes = numba.types.Array(numba.uint8, 1, "C", readonly=True)
_ReadOnlyFloats = numba.types.Array(numba.float64, 1, "C", readonly=True)
_SIGNATURE = numba.int64(
    _ReadOnlyBytes, _ReadOnlyFloats, numba.int32[::1], numba.float64[::1], numba.int8[::1], numba.float32[::1],
    numba.float32[::1], numba.int8[::1],
)
_jit = numba.njit(cache=True, nogil=True, inline="always")


@_jit
def _comma(buf, i, end):
    """The index after the ',' at ``i``, or -1 when there is none (or ``i`` is already -1)."""
    return i + 1 if 0 <= i < end and buf[i] == 44 else -1


@_jit
def _int(buf, i, end, lo, hi):
    """Parse an integer field starting at ``i`` (-1: an earlier failure); (value, next index) or (0, -1)."""
    if i < 0:
        return 0, -1
    negative = False
    if i < end and buf[i] == 45:  # '-'
        negative = True
        i += 1
    start = i
    value = 0
    while i < end and 48 <= buf[i] <= 57 and i - start < 12:
        value = value * 10 + (buf[i] - 48)
        i += 1
    if i == start or (i < end and 48 <= buf[i] <= 57):
        return 0, -1
    if negative:
        value = -value
    if value < lo or value > hi:
        return 0, -1
    return value, i


@_jit
def _float(buf, i, end, pow10):
    """Parse a plain decimal (digits, optionally '.' and digits) at ``i``: (value, next index) or (0.0, -1)."""
    if i < 0:
        return 0.0, -1
    negative = False
    if i < end and (buf[i] == 45 or buf[i] == 43):  # '-' or '+'
        negative = buf[i] == 45
        i += 1
    mantissa = 0
    digits = 0  # significant digits: leading zeros do not count
    start = i
    while i < end and 48 <= buf[i] <= 57:
        digits += mantissa > 0 or buf[i] != 48
        mantissa = mantissa * 10 + (buf[i] - 48)
        i += 1
    if i == start:
        return 0.0, -1
    fraction = 0
    if i < end and buf[i] == 46:  # '.'
        i += 1
        while i < end and 48 <= buf[i] <= 57:
            digits += mantissa > 0 or buf[i] != 48
            mantissa = mantissa * 10 + (buf[i] - 48)
            fraction += 1
            i += 1
        if fraction == 0:
            return 0.0, -1
    if digits > _MAX_DIGITS or fraction > 22 or mantissa >= _MAX_MANTISSA:
        return 0.0, -1
    value = mantissa / pow10[fraction]
    return (-value if negative else value), i


@_jit
def _float32(value, scratch):
    """``value`` as float32, and False when it may lie on a float32 rounding tie.

    A double is halfway between two float32 when the 29 mantissa bits that float32 drops are
    exactly 1000...0; then (and outside float32's normal range) the decimal is left to pyarrow.
    """
    magnitude = abs(value)
    if magnitude != 0.0 and not (1e-37 < magnitude < 1e38):
        return np.float32(0.0), False
    scratch[0] = value
    bits = scratch.view(np.int64)[0]
    return np.float32(value), (bits & 0x1FFFFFFF) != 0x10000000


@numba.njit(_SIGNATURE, cache=True, nogil=True)
def _parse(buf, pow10, object_id, mjd, passband, flux, flux_err, detected):
    end = buf.size
    i = 0
    row = 0
    scratch = np.empty(1)
    while i < end:
        oid, i = _int(buf, i, end, -(2**31), 2**31 - 1)
        t, i = _float(buf, _comma(buf, i, end), end, pow10)
        band, i = _int(buf, _comma(buf, i, end), end, -128, 127)
        f, i = _float(buf, _comma(buf, i, end), end, pow10)
        e, i = _float(buf, _comma(buf, i, end), end, pow10)
        det, i = _int(buf, _comma(buf, i, end), end, -128, 127)
        if i < 0:
            return -1
        if i < end and buf[i] == 13:  # '\r'
            i += 1
        if i < end:
            if buf[i] != 10:
                return -1
            i += 1
        f32, ok_f = _float32(f, scratch)
        e32, ok_e = _float32(e, scratch)
        if not (ok_f and ok_e):
            return -1
        object_id[row] = oid
        mjd[row] = t
        passband[row] = band
        flux[row] = f32
        flux_err[row] = e32
        detected[row] = det
        row += 1
    return row
