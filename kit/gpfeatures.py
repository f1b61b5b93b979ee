"""Features from each object's 2-D Gaussian-process model (:mod:`kit.gp`), the kinds avocado used.

For every object the GP mean (background removed) is evaluated on a time grid in all six passbands; the
sum over passbands, ``S(t)``, defines the peak. Features (flux units, days; ``*_rest`` divided by
1 + photo-z for extragalactic objects):

- the GP's fitted time scale, amplitude and log likelihood per point;
- peak and minimum of ``S``, positive and negative widths (area of the positive / negative part over the
  peak / minimum), the number of separate excursions above half the peak;
- rise and fall times from / to 0.8, 0.5 and 0.2 of the peak, and per passband the time to rise and fall
  to half that band's maximum;
- per passband: flux at the peak time, its share of the peak, its maximum and when that comes relative to
  the peak; colours at the peak between neighbouring bands; the GP's relative uncertainty at the peak;
- from the raw points: counts of points above S/N 3, 5, 10, 20 and the time between the first and last
  such point; counts of points and their mean flux over the peak in time bins around the peak, which tell
  where the GP is unconstrained;
- the peak luminosity from the photo-z (log10 of peak flux times luminosity distance squared).

An object's features depend only on its own rows, so chunked and whole featurisation agree exactly.
Undefined features (a fall time that the light curve never reaches, no photo-z) are NaN.
"""

from __future__ import annotations

import numba
import numpy as np
import pandas as pd

from kit import gp, survey
from kit.features import _ratio, _to_feature_dtype, luminosity_distance_mpc

#: Objects fitted at a time: a fit holds each object's Cholesky factor (n x n: about 130 kB for a WFD object),
#: which for a whole chunk of 2M rows would be 2 GB per worker (1,000 objects a batch left the heap growing).
BATCH_OBJECTS = 250
#: Time-grid step (days): a fraction of the fitted time scale, within bounds.
GRID_STEP_FRACTION, GRID_STEP_BOUNDS_D = 0.25, (0.5, 5.0)
#: The grid extends this far beyond the first and last observation (days).
GRID_MARGIN_D = 20.0
#: Rise and fall levels, as fractions of the peak.
LEVELS = (0.8, 0.5, 0.2)
#: S/N thresholds for point counts.
SNR_LEVELS = (3.0, 5.0, 10.0, 20.0)
#: Edges of the time bins around the peak (days) for the coverage features.
COVERAGE_EDGES_D = (-800.0, -250.0, -100.0, -50.0, -20.0, -5.0, 5.0, 20.0, 50.0, 100.0, 250.0, 800.0)

_B = survey.PASSBANDS
_CURVE = (
    ["gp_peak", "gp_min", "gp_width_pos", "gp_width_neg", "gp_n_peaks"]
    + [f"gp_rise_{int(f * 100)}" for f in LEVELS]
    + [f"gp_fall_{int(f * 100)}" for f in LEVELS]
    + [f"gp_flux_at_peak_{b}" for b in _B]
    + [f"gp_max_{b}" for b in _B]
    + [f"gp_dt_max_{b}" for b in _B]
    + [f"gp_rise_50_{b}" for b in _B]
    + [f"gp_fall_50_{b}" for b in _B]
)
_POINTS = (
    [f"snr{int(s)}_count" for s in SNR_LEVELS]
    + [f"snr{int(s)}_span" for s in SNR_LEVELS]
    + [f"coverage_count_{i}" for i in range(len(COVERAGE_EDGES_D) - 1)]
    + [f"coverage_flux_{i}" for i in range(len(COVERAGE_EDGES_D) - 1)]
)
#: Times that get a rest-frame copy.
_REST = ["gp_time_scale", "gp_width_pos", "gp_width_neg"] + [f"gp_rise_{int(f * 100)}" for f in LEVELS] + [
    f"gp_fall_{int(f * 100)}" for f in LEVELS
]


def build_gp_features(lightcurves: pd.DataFrame, metadata: pd.DataFrame | None) -> pd.DataFrame:
    """GP features of every object in ``lightcurves`` (same conventions as :func:`kit.features.build_features`).

    Returns
    -------
    pandas.DataFrame
        One row per object, indexed by ``object_id`` (ascending), float32 columns.
    """
    object_ids, starts, col = gp.object_arrays(lightcurves)
    if metadata is not None and len(metadata):
        metadata = metadata[metadata[survey.OBJECT_ID].isin(object_ids)]
    parts = []
    for lo in range(0, max(object_ids.size, 1), BATCH_OBJECTS):
        hi = min(lo + BATCH_OBJECTS, object_ids.size)
        a, b = starts[lo], starts[hi]
        sub = {k: v[a:b] for k, v in col.items()}
        sub_starts = starts[lo:hi + 1] - a
        fit = gp.fit(sub_starts, sub["mjd"], sub["passband"], sub["flux"], sub["flux_err"])
        parts.append(gp_features(fit, sub_starts, sub, object_ids[lo:hi], metadata))
    return parts[0] if len(parts) == 1 else pd.concat(parts)


def gp_features(fit: gp.GPFit, starts: np.ndarray, col: dict, object_ids: np.ndarray,
                metadata: pd.DataFrame | None) -> pd.DataFrame:
    """Features of fitted GPs (``col``: the objects' raw rows, ``starts``: their boundaries)."""
    n = fit.n_objects
    curve = np.full((n, len(_CURVE)), np.nan)
    t_peak = np.full(n, np.nan)
    _curve_features(fit.time, fit.wavelength, fit.alpha, fit.starts, fit.time_scale, fit.amplitude / fit.scale,
                    fit.scale, 1.0 / fit.wavelength_scale, np.asarray(survey.PASSBAND_WAVELENGTH_A), curve, t_peak)
    points = np.full((n, len(_POINTS)), np.nan)
    _point_features(starts, np.asarray(col["mjd"], np.float64), np.asarray(col["flux"], np.float64),
                    np.asarray(col["flux_err"], np.float64), t_peak, curve[:, 0], np.asarray(SNR_LEVELS),
                    np.asarray(COVERAGE_EDGES_D), points)
    f: dict[str, np.ndarray] = {
        "gp_time_scale": fit.time_scale,
        "gp_amplitude": fit.amplitude,
        "gp_loglik_per_point": fit.log_likelihood / np.maximum(np.diff(fit.starts), 1),
    }
    f.update({k: curve[:, i] for i, k in enumerate(_CURVE)})
    f.update({k: points[:, i] for i, k in enumerate(_POINTS)})
    peak = f["gp_peak"]
    with np.errstate(invalid="ignore", divide="ignore"):
        for b in _B:
            f[f"gp_share_at_peak_{b}"] = _ratio(f[f"gp_flux_at_peak_{b}"], peak)
        for i in range(survey.N_PASSBANDS - 1):
            a, c = f[f"gp_flux_at_peak_{_B[i]}"], f[f"gp_flux_at_peak_{_B[i + 1]}"]
            f[f"gp_colour_{_B[i]}{_B[i + 1]}"] = (a - c) / (np.abs(a) + np.abs(c))
        f["gp_min_over_peak"] = _ratio(f["gp_min"], peak)
        f["gp_peak_rel_std"] = _ratio(_peak_std(fit, t_peak), np.abs(peak))
    z = _photoz(object_ids, metadata)
    extragalactic = z > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        d2 = np.where(extragalactic, luminosity_distance_mpc(np.where(extragalactic, z, 0.0)) ** 2, np.nan)
        f["gp_log_lum_peak"] = np.where(peak > 0, np.log10(np.where(peak > 0, peak, 1.0) * d2), np.nan)
        stretch = 1.0 + np.where(extragalactic, z, 0.0)
        for k in _REST:
            f[f"{k}_rest"] = f[k] / stretch
    out = pd.DataFrame(_to_feature_dtype(f, object_ids))
    out.index = pd.Index(object_ids.astype(np.int64), name=survey.OBJECT_ID)
    return out


def gp_feature_names() -> list[str]:
    """Names of the GP feature columns, in order."""
    example = pd.DataFrame({c: np.zeros(1, dtype=t) for c, t in survey.LIGHTCURVE_DTYPES.items()})
    example["flux_err"] = 1.0
    return build_gp_features(example, None).columns.tolist()


def _peak_std(fit: gp.GPFit, t_peak: np.ndarray) -> np.ndarray:
    """Summed GP standard deviation of the six bands at each object's peak time."""
    ok = np.flatnonzero(np.isfinite(t_peak))
    total = np.full(t_peak.size, np.nan)
    if ok.size:
        obj = np.repeat(ok, survey.N_PASSBANDS)
        band = np.tile(np.arange(survey.N_PASSBANDS), ok.size)
        _, std = gp.predict(fit, obj, t_peak[obj], band)
        total[ok] = std.reshape(ok.size, survey.N_PASSBANDS).sum(axis=1)
    return total


def _photoz(object_ids: np.ndarray, metadata: pd.DataFrame | None) -> np.ndarray:
    if metadata is None or len(metadata) == 0:
        return np.full(object_ids.size, np.nan)
    z = metadata.set_index(survey.OBJECT_ID)["hostgal_photoz"]
    return z.reindex(object_ids).to_numpy(dtype=np.float64)


# --- compiled parts -----------------------------------------------------------------------------------
@numba.njit(cache=True)
def _crossing(grid, s, i_peak, level, direction):
    """Days from the peak to where ``s`` first falls below ``level`` walking in ``direction``; NaN if never."""
    i = i_peak
    while 0 <= i + direction < s.size:
        j = i + direction
        if s[j] < level:
            frac = (s[i] - level) / (s[i] - s[j])
            return abs(grid[i] + frac * (grid[j] - grid[i]) - grid[i_peak])
        i = j
    return np.nan


@numba.njit(cache=True, fastmath={"contract"})
def _curve_features(t, w, alpha, pstarts, time_scale, amp_scaled, scale, inv_lw, wavelengths, out, t_peak):
    nb = wavelengths.size
    for o in range(pstarts.size - 1):
        a, b = pstarts[o], pstarts[o + 1]
        if b == a or not np.isfinite(time_scale[o]):
            continue
        lt = time_scale[o]
        step = min(max(lt * GRID_STEP_FRACTION, GRID_STEP_BOUNDS_D[0]), GRID_STEP_BOUNDS_D[1])
        t0 = t[a:b].min() - GRID_MARGIN_D
        m = int((t[a:b].max() + GRID_MARGIN_D - t0) / step) + 1
        grid = t0 + step * np.arange(m)
        inv_lt = 1.0 / lt
        amp2 = amp_scaled[o] * amp_scaled[o]
        cutoff = 12.0 * lt
        mean = np.zeros((nb, m))
        for i in range(a, b):
            ai = alpha[i] * amp2 * scale[o]
            ti = t[i]
            lo = max(0, int((ti - cutoff - t0) / step))
            hi = min(m, int((ti + cutoff - t0) / step) + 1)
            window = grid[lo:hi]
            for band in range(nb):
                dw = (wavelengths[band] - w[i]) * inv_lw
                dw2 = dw * dw
                row = mean[band, lo:hi]
                for g in range(window.size):  # branch-free from 0 (no negative-index wraparound): vectorised
                    dt = (window[g] - ti) * inv_lt
                    row[g] += ai * gp._matern_r2(dt * dt + dw2)
        s = mean.sum(axis=0)
        ip = int(np.argmax(s))
        peak = s[ip]
        t_peak[o] = grid[ip]
        smin = s.min()
        out[o, 0] = peak
        out[o, 1] = smin
        pos = 0.0
        neg = 0.0
        n_peaks = 0
        above = False
        for g in range(m):
            pos += max(s[g], 0.0) * step
            neg += max(-s[g], 0.0) * step
            if s[g] > 0.5 * peak and not above:
                n_peaks += 1
            above = s[g] > 0.5 * peak
        out[o, 2] = pos / peak if peak > 0 else np.nan
        out[o, 3] = neg / -smin if smin < 0 else np.nan
        out[o, 4] = n_peaks
        k = 5
        for f in LEVELS:
            out[o, k] = _crossing(grid, s, ip, f * peak, -1) if peak > 0 else np.nan
            k += 1
        for f in LEVELS:
            out[o, k] = _crossing(grid, s, ip, f * peak, 1) if peak > 0 else np.nan
            k += 1
        for band in range(nb):
            mb = mean[band]
            ib = int(np.argmax(mb))
            out[o, k + band] = mb[ip]
            out[o, k + nb + band] = mb[ib]
            out[o, k + 2 * nb + band] = grid[ib] - grid[ip]
            out[o, k + 3 * nb + band] = _crossing(grid, mb, ib, 0.5 * mb[ib], -1) if mb[ib] > 0 else np.nan
            out[o, k + 4 * nb + band] = _crossing(grid, mb, ib, 0.5 * mb[ib], 1) if mb[ib] > 0 else np.nan


@numba.njit(cache=True)
def _point_features(starts, mjd, flux, flux_err, t_peak, peak, snr_levels, edges, out):
    ns = snr_levels.size
    nbins = edges.size - 1
    for o in range(starts.size - 1):
        a, b = starts[o], starts[o + 1]
        for j in range(ns):
            first, last, count = np.inf, -np.inf, 0
            for r in range(a, b):
                if flux_err[r] > 0 and abs(flux[r]) / flux_err[r] > snr_levels[j]:
                    count += 1
                    first = min(first, mjd[r])
                    last = max(last, mjd[r])
            out[o, j] = count
            out[o, ns + j] = last - first if count > 0 else np.nan
        if not np.isfinite(t_peak[o]):
            continue
        counts = np.zeros(nbins)
        sums = np.zeros(nbins)
        for r in range(a, b):
            dt = mjd[r] - t_peak[o]
            for q in range(nbins):
                if edges[q] <= dt < edges[q + 1]:
                    counts[q] += 1
                    sums[q] += flux[r]
                    break
        for q in range(nbins):
            out[o, 2 * ns + q] = counts[q]
            out[o, 2 * ns + nbins + q] = sums[q] / counts[q] / peak[o] if counts[q] > 0 and peak[o] > 0 else np.nan
