"""dmdt images (Mahabal et al. 2017): 2-D histograms of every pair of an object's observations, made on the fly.

For every pair of observations of one object, ``dt`` is the time between them and ``dflux`` the difference of
their fluxes; an image counts the pairs on a grid of (dt, dflux) bins. Built from the ragged sequences
(:mod:`kit.sequences`): times are ``cumsum(expm1(step feature 0))`` (days since the first observation), fluxes
are step feature 1, ``flux / s`` with ``s`` the object's max |flux|, so in [-1, 1] and ``dflux`` in [-2, 2].

Channels (the last axis, :data:`CHANNELS`), 11 in all:

- ``u, g, r, i, z, Y``: pairs within one passband, earlier -> later: ``dt = t_j - t_i >= 0``,
  ``dflux = f_j - f_i`` (later minus earlier; positive while the object brightens).
- ``g-u, r-g, i-r, z-i, Y-z``: colour, pairs of one observation in each of two adjacent passbands:
  ``dt = |t_red - t_blue|``, ``dflux = f_red - f_blue`` (redder minus bluer band, whichever came first;
  at small ``dt`` this is the object's colour in flux).

Bins (24 x 24):

- ``dt`` (:data:`DT_EDGES_D`, days), semi-logarithmic for LSST's cadence: [0, 15 min) for visits of one field
  back to back, then 5 geometric bins from 15 min to 12 h (pairs within one night, 30-min visit pairs and
  filter changes), one bin [12 h, 1 d) that the day leaves nearly empty, then 17 geometric bins from 1 d to
  1,100 d (x1.51 each: revisits of days, weeks, a season, the yearly gap, the 3-year span). Longer pairs fall
  in the last bin.
- ``dflux`` (:data:`DFLUX_EDGES`): ``asinh(dflux / DFLUX_SOFTENING)``, linear within 1% of the peak flux and
  logarithmic beyond, cut into 24 equal bins over its whole range +-asinh(2 / 0.01), symmetric about 0.

Pixel = count / number of pairs of that channel (a normalised density; every pixel 0 when the channel has no
pair). Rows without a passband (all-zero padding) are ignored. Images of an object depend on its rows only:
identical whatever batch it is built in, whatever the other objects and their order (integer counts, then one
division), so building is deterministic and safe in any number of threads or processes (the compiled function
releases the GIL and shares nothing).

On the fly: images are built from the stored sequences batch by batch when a network trains or predicts
(24 x 24 x 11 float32 = 25,344 bytes per object in memory, for the batch only). Nothing is stored: the disk
per million objects beyond the sequences is 0 bytes (stored, they would take 25.3 GB per million objects).

Background subtraction (the paper's): :func:`mean_image` of the training objects, subtracted from every image
(:func:`subtract_background`), is a setting of the CNN (:mod:`kit.models.cnn`).
"""

from __future__ import annotations

import math

import numba
import numpy as np

from kit import survey
from kit.sequences import FEATURES

_BANDS = survey.N_PASSBANDS
#: Channel names, in the order of the images' last axis: one per passband, then the adjacent-band colours.
CHANNELS: tuple[str, ...] = tuple(survey.PASSBANDS) + tuple(
    f"{survey.PASSBANDS[b + 1]}-{survey.PASSBANDS[b]}" for b in range(_BANDS - 1))
#: Bin edges of dt in days (25 edges, 24 bins); see the module docstring.
DT_EDGES_D = np.concatenate([[0.0], np.geomspace(1 / 96, 0.5, 6), np.geomspace(1.0, 1100.0, 18)])
#: dflux (in units of the object's max |flux|) is binned as asinh(dflux / DFLUX_SOFTENING).
DFLUX_SOFTENING = 0.01
#: Bin edges of asinh(dflux / DFLUX_SOFTENING) (25 edges, 24 bins), symmetric, spanning every possible dflux.
DFLUX_EDGES = np.linspace(-math.asinh(2 / DFLUX_SOFTENING), math.asinh(2 / DFLUX_SOFTENING), 25)
SHAPE = (len(DT_EDGES_D) - 1, len(DFLUX_EDGES) - 1, len(CHANNELS))
BYTES_PER_OBJECT = int(np.prod(SHAPE)) * 4
_TIME, _FLUX, _BAND0 = FEATURES.index("log1p_dt"), FEATURES.index("flux"), FEATURES.index(f"band_{survey.PASSBANDS[0]}")


def _search_edges(edges: np.ndarray) -> np.ndarray:
    """``edges`` (at most 32) for :func:`_bin`: the inner edges at their places, -inf first, +inf up to 32."""
    padded = np.full(32, np.inf)
    padded[: len(edges) - 1] = edges[:-1]
    padded[0] = -np.inf
    return padded


#: The edges as :func:`_bin` searches them; dflux's in plain units (no asinh per pair).
_DT_SEARCH = _search_edges(DT_EDGES_D)
_DFLUX_SEARCH = _search_edges(np.sinh(DFLUX_EDGES) * DFLUX_SOFTENING)


def dmdt_images(values: np.ndarray, offsets: np.ndarray, index: np.ndarray | None = None) -> np.ndarray:
    """dmdt images of objects ``index`` (default: all) of ragged sequences.

    Parameters
    ----------
    values : (rows, 10) float32 step features (:mod:`kit.sequences`), objects end to end
    offsets : (n_objects + 1,) int64, rows of object ``o`` are ``values[offsets[o]:offsets[o + 1]]``
    index : positions of the objects wanted, in the order wanted

    Returns
    -------
    (len(index), 24, 24, 11) float32: axis 1 dt bins, axis 2 dflux bins, axis 3 :data:`CHANNELS`.
    """
    offsets = np.asarray(offsets, np.int64)
    index = np.arange(len(offsets) - 1, dtype=np.int64) if index is None else np.asarray(index, np.int64)
    out = np.zeros((len(index), *SHAPE), np.float32)
    if len(index):
        if index.min() < 0 or index.max() >= len(offsets) - 1:
            raise IndexError(f"object positions {index.min()}..{index.max()} outside 0..{len(offsets) - 2}")
        _images(values, offsets, index, _DT_SEARCH, _DFLUX_SEARCH, out)
    return out


def mean_image(values: np.ndarray, offsets: np.ndarray, index: np.ndarray, batch_size: int = 4096) -> np.ndarray:
    """The mean dmdt image of objects ``index`` (the paper's background), (24, 24, 11) float32; built in batches."""
    total = np.zeros(SHAPE, np.float64)
    index = np.asarray(index, np.int64)
    for i in range(0, len(index), batch_size):
        total += dmdt_images(values, offsets, index[i : i + batch_size]).sum(axis=0, dtype=np.float64)
    return (total / max(len(index), 1)).astype(np.float32)


def subtract_background(images: np.ndarray, background: np.ndarray | None) -> np.ndarray:
    """``images - background`` in place (nothing when ``background`` is None); returns ``images``."""
    if background is not None:
        images -= background
    return images


@numba.njit(cache=True, nogil=True, inline="always")
def _bin(padded, x):
    """The bin of ``x`` (values outside the edges go to the first or last bin) among the 32 edges of
    :func:`_search_edges`: a binary search in five fixed steps, without branches (a branch per step is
    mispredicted half the time: 3x slower)."""
    pos = 16 * (padded[16] <= x)
    pos += 8 * (padded[pos + 8] <= x)
    pos += 4 * (padded[pos + 4] <= x)
    pos += 2 * (padded[pos + 2] <= x)
    return pos + (padded[pos + 1] <= x)


@numba.njit(cache=True, nogil=True)
def _images(values, offsets, index, dt_edges, dflux_edges, out):
    n_dt, n_df, n_ch = out.shape[1], out.shape[2], out.shape[3]
    longest = 0
    for k in range(len(index)):
        longest = max(longest, offsets[index[k] + 1] - offsets[index[k]])
    row_t = np.empty(longest)  # times of one object's rows
    t = np.empty(longest)  # times and fluxes of one object, grouped by passband, in time order within each
    f = np.empty(longest)
    band = np.empty(longest, np.int64)
    starts = np.zeros(_BANDS + 1, np.int64)
    counts = np.zeros((n_ch, n_dt, n_df), np.int32)  # channel first: one channel's counts close together
    pairs = np.zeros(n_ch, np.int64)
    for k in range(len(index)):
        a, b = offsets[index[k]], offsets[index[k] + 1]
        starts[:] = 0
        now = 0.0
        for r in range(b - a):  # times back from the gaps; each row's passband
            now += math.expm1(np.float64(values[a + r, _TIME]))
            row_t[r] = now
            band[r] = -1
            for p in range(_BANDS):
                if values[a + r, _BAND0 + p] > 0.5:
                    band[r] = p
                    starts[p + 1] += 1
                    break
        for p in range(_BANDS):
            starts[p + 1] += starts[p]
        fill = starts[:_BANDS].copy()
        for r in range(b - a):  # counting sort by passband, stable: time order kept within a band
            if band[r] >= 0:
                t[fill[band[r]]] = row_t[r]
                f[fill[band[r]]] = values[a + r, _FLUX]
                fill[band[r]] += 1
        counts[:] = 0
        pairs[:] = 0
        for p in range(_BANDS):  # within a passband: later minus earlier
            for i in range(starts[p], starts[p + 1]):
                for j in range(i + 1, starts[p + 1]):
                    counts[p, _bin(dt_edges, t[j] - t[i]), _bin(dflux_edges, f[j] - f[i])] += 1
            m = starts[p + 1] - starts[p]
            pairs[p] = m * (m - 1) // 2
        for p in range(_BANDS - 1):  # colours: band p + 1 minus band p
            c = _BANDS + p
            for i in range(starts[p], starts[p + 1]):
                for j in range(starts[p + 1], starts[p + 2]):
                    counts[c, _bin(dt_edges, abs(t[j] - t[i])), _bin(dflux_edges, f[j] - f[i])] += 1
            pairs[c] = (starts[p + 1] - starts[p]) * (starts[p + 2] - starts[p + 1])
        for c in range(n_ch):
            if pairs[c]:
                for x in range(n_dt):
                    for y in range(n_df):
                        out[k, x, y, c] = counts[c, x, y] / pairs[c]
    return out
