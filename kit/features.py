"""Aggregate light-curve features: pure and vectorised (no Python loop over objects).

Rows are grouped by runs of ``object_id`` (rows of one object are contiguous; other input is
stably sorted first). Sums and extremes are ``ufunc.reduceat`` over each object's segment of rows
and medians sort each segment, so an object's features depend only on its own rows and are
bit-identical whether a file is featurised whole or in chunks. Statistics follow pandas'
conventions: ``std`` with ddof=1, ``skew`` the adjusted Fisher-Pearson coefficient (NaN below 3
rows, 0 for constant).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from kit import survey

#: Metadata columns used as features (hostgal_specz is left out: it is missing for most test objects).
METADATA_FEATURES: tuple[str, ...] = ("hostgal_photoz", "hostgal_photoz_err", "distmod", "mwebv", "ddf")
#: Flat Lambda-CDM cosmology for the photo-z luminosity distance.
HUBBLE_DISTANCE_MPC = 299_792.458 / 70.0
OMEGA_MATTER = 0.3
_Z_GRID = np.linspace(0.0, 5.0, 2001)
FEATURE_DTYPE = np.float32
#: Group sizes are rounded up to a multiple of this to lay groups out as rows for medians.
MEDIAN_WIDTH_STEP = 32
#: Rows aggregated at once: small enough for the temporaries to stay in cache-friendly, reused memory.
BATCH_ROWS = 250_000
_LIGHTCURVE_VALUES = ("mjd", "passband", "flux", "flux_err", "detected")


class _Segments:
    """Reductions over groups stored as consecutive segments of rows (sorted group codes).

    Sums are ``np.add.reduceat`` over each segment (pairwise summation of that segment's values
    only), extremes ``reduceat`` too and medians a sort of each segment, so a group's result
    depends only on its own rows.
    """

    def __init__(self, codes: np.ndarray, n: int) -> None:
        self.codes = codes
        self.n = n
        self.sizes = np.bincount(codes, minlength=n)
        self.count = self.sizes.astype(np.float64)
        self.starts = np.concatenate(([0], np.cumsum(self.sizes[:-1]))).astype(np.int64)
        self.nonempty = self.sizes > 0

    def _reduce(self, ufunc: np.ufunc, x: np.ndarray, empty: float) -> np.ndarray:
        out = np.full(self.n, empty)
        if x.size:
            out[self.nonempty] = ufunc.reduceat(x, self.starts[self.nonempty])
        return out

    def expand(self, per_group: np.ndarray) -> np.ndarray:
        """Each group's value repeated on its rows."""
        return np.repeat(per_group, self.sizes)

    def sum(self, x: np.ndarray) -> np.ndarray:
        return self._reduce(np.add, np.asarray(x, dtype=np.float64), 0.0)

    def min(self, x: np.ndarray) -> np.ndarray:
        return self._reduce(np.minimum, x, np.nan)

    def max(self, x: np.ndarray) -> np.ndarray:
        return self._reduce(np.maximum, x, np.nan)

    def mean(self, x: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.sum(x) / self.count

    def std(self, x: np.ndarray) -> np.ndarray:
        d = x - self.expand(self.mean(x))
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.sqrt(self.sum(d * d) / (self.count - 1))

    def skew(self, x: np.ndarray) -> np.ndarray:
        n = self.count
        mean = self.mean(x)
        d = x - self.expand(mean)
        d2 = d * d
        m2 = self.sum(d2) / n
        m3 = self.sum(d2 * d) / n
        with np.errstate(invalid="ignore", divide="ignore"):
            g1 = m3 / m2**1.5 * np.sqrt(n * (n - 1)) / (n - 2)
        g1 = np.where(m2 <= 1e-14 * np.maximum(1.0, mean**2), 0.0, g1)
        return np.where(n < 3, np.nan, g1)

    def median(self, x: np.ndarray) -> np.ndarray:
        """Per-group median (mean of the two middle values) of values exact in float32.

        Groups of similar size are laid out as the rows of a float32 matrix padded with +inf
        (widths rounded up to ``MEDIAN_WIDTH_STEP``) and sorted along the rows: many short sorts
        are far faster than one long one.
        """
        x32 = np.ascontiguousarray(x, dtype=np.float32)
        if not np.array_equal(x32, x, equal_nan=True):
            raise ValueError("median expects values exact in float32")
        out = np.full(self.n, np.nan)
        widths = -(-self.sizes // MEDIAN_WIDTH_STEP) * MEDIAN_WIDTH_STEP
        row_width = self.expand(widths)
        position = np.arange(x32.size) - self.expand(self.starts)
        for width in np.unique(widths[self.nonempty]):
            groups = np.flatnonzero(widths == width)
            rows = row_width == width
            slot = np.zeros(self.n, dtype=np.int64)
            slot[groups] = np.arange(groups.size)
            matrix = np.full((groups.size, width), np.inf, dtype=np.float32)
            matrix[slot[self.codes[rows]], position[rows]] = x32[rows]
            matrix.sort(axis=1)
            size = self.sizes[groups]
            line = np.arange(groups.size)
            low = matrix[line, (size - 1) // 2].astype(np.float64)
            high = matrix[line, size // 2].astype(np.float64)
            out[groups] = 0.5 * (low + high)
        return out


def luminosity_distance_mpc(z: np.ndarray) -> np.ndarray:
    """Luminosity distance (Mpc) of redshift ``z`` in a flat Lambda-CDM cosmology (H0=70, Om=0.3)."""
    inv_e = 1.0 / np.sqrt(OMEGA_MATTER * (1 + _Z_GRID) ** 3 + (1 - OMEGA_MATTER))
    comoving = np.concatenate(([0.0], np.cumsum(0.5 * (inv_e[1:] + inv_e[:-1]) * np.diff(_Z_GRID))))
    z = np.asarray(z, dtype=np.float64)
    return (1 + z) * HUBBLE_DISTANCE_MPC * np.interp(z, _Z_GRID, comoving)


def _log10_positive(x: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(x > 0, np.log10(np.where(x > 0, x, 1.0)), np.nan)


def _ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(b != 0, a / np.where(b != 0, b, 1.0), np.nan)


def build_features(lightcurves: pd.DataFrame, metadata: pd.DataFrame | None) -> pd.DataFrame:
    """Aggregate features of every object in ``lightcurves``.

    Parameters
    ----------
    lightcurves
        Rows ``object_id, mjd, passband, flux, flux_err, detected`` (the rows of one object should
        be contiguous; otherwise they are stably sorted by object_id first).
    metadata
        Competition metadata (``survey.METADATA_COLUMNS``); objects absent from it get NaN metadata
        features. ``None`` leaves every metadata feature NaN.

    Returns
    -------
    pandas.DataFrame
        One row per object, indexed by ``object_id`` (ascending), float32 feature columns. Fluxes
        are in Kaggle's calibrated units, times in days (``*_rest`` divided by 1 + photo-z).
    """
    ids = lightcurves[survey.OBJECT_ID].to_numpy()
    order = None
    if ids.size and not (ids[1:] >= ids[:-1]).all():
        order = np.argsort(ids, kind="stable")
        ids = ids[order]
    columns = []
    for name in _LIGHTCURVE_VALUES:
        values = lightcurves[name].to_numpy()
        columns.append(values if order is None else values[order])
    starts = _run_starts(ids)
    object_ids = ids[starts]
    cuts = _batch_cuts(starts, ids.size, BATCH_ROWS)
    batches = [
        _light_curve_features(ids[lo:hi], *(x[lo:hi] for x in columns))
        for lo, hi in zip(cuts[:-1], cuts[1:], strict=True)
    ]
    f = {k: np.concatenate([batch[k] for batch in batches]) for k in batches[0]}
    _add_metadata_features(f, _metadata_for(object_ids, metadata))
    out = pd.DataFrame({k: np.asarray(v, dtype=FEATURE_DTYPE) for k, v in f.items()})
    out.index = pd.Index(object_ids.astype(np.int64), name=survey.OBJECT_ID)
    return out


def _run_starts(ids: np.ndarray) -> np.ndarray:
    """Positions where a new run of equal ids begins."""
    if ids.size == 0:
        return np.empty(0, dtype=np.int64)
    return np.flatnonzero(np.concatenate(([True], ids[1:] != ids[:-1])))


def _batch_cuts(starts: np.ndarray, n_rows: int, batch_rows: int) -> np.ndarray:
    """Row offsets that cut the rows into batches of about ``batch_rows`` whole objects."""
    if n_rows == 0:
        return np.zeros(2, dtype=np.int64)  # one empty batch
    wanted = np.arange(batch_rows, n_rows, batch_rows)
    cuts = starts[np.searchsorted(starts, wanted).clip(max=starts.size - 1)]
    return np.unique(np.concatenate(([0], cuts, [n_rows])))


def _light_curve_features(
    ids: np.ndarray, mjd: np.ndarray, band: np.ndarray, flux: np.ndarray, flux_err: np.ndarray, detected: np.ndarray
) -> dict[str, np.ndarray]:
    """Features of the light curves alone, for rows sorted by (contiguous) ``ids``."""
    mjd, band, flux, flux_err, detected = (x.astype(np.float64) for x in (mjd, band, flux, flux_err, detected))
    starts = _run_starts(ids)
    n = starts.size
    codes = np.repeat(np.arange(n), np.diff(np.append(starts, ids.size)))
    g = _Segments(codes, n)
    f: dict[str, np.ndarray] = {}
    # --- the public kernel's seed set, and a few cheap extras -----------------------------
    f["mjd_min"], f["mjd_max"], f["n_obs"] = g.min(mjd), g.max(mjd), g.count
    f["mjd_range"] = f["mjd_max"] - f["mjd_min"]
    for name, x in (("passband", band), ("flux", flux), ("flux_err", flux_err)):
        f[f"{name}_min"], f[f"{name}_max"] = g.min(x), g.max(x)
        f[f"{name}_mean"], f[f"{name}_median"], f[f"{name}_std"] = g.mean(x), g.median(x), g.std(x)
        if name != "passband":
            f[f"{name}_skew"] = g.skew(x)
    with np.errstate(invalid="ignore", divide="ignore"):
        snr = flux / flux_err
    ratio_sq = snr**2
    flux_by_ratio_sq = flux * ratio_sq
    f["detected_mean"], f["n_detected"] = g.mean(detected), g.sum(detected)
    f["flux_ratio_sq_sum"], f["flux_ratio_sq_skew"] = g.sum(ratio_sq), g.skew(ratio_sq)
    f["flux_by_flux_ratio_sq_sum"], f["flux_by_flux_ratio_sq_skew"] = g.sum(flux_by_ratio_sq), g.skew(flux_by_ratio_sq)
    f["flux_w_mean"] = _ratio(f["flux_by_flux_ratio_sq_sum"], f["flux_ratio_sq_sum"])
    f["flux_diff"] = f["flux_max"] - f["flux_min"]
    f["flux_diff_by_mean"] = _ratio(f["flux_diff"], f["flux_mean"])
    f["flux_diff_by_w_mean"] = _ratio(f["flux_diff"], f["flux_w_mean"])
    f["snr_max"], f["snr_min"] = g.max(snr), g.min(snr)
    f["abs_flux_max"] = g.max(np.abs(flux))

    # --- timing: detected window, rise and decline around the peak --------------------------
    is_det = detected > 0
    f["det_mjd_min"] = g.min(np.where(is_det, mjd, np.inf))
    f["det_mjd_max"] = g.max(np.where(is_det, mjd, -np.inf))
    f["det_window"] = f["det_mjd_max"] - f["det_mjd_min"]
    peak_mjd = g.min(np.where(flux == g.expand(f["flux_max"]), mjd, np.inf))
    f["rise_time"] = peak_mjd - f["det_mjd_min"]
    f["decline_time"] = f["det_mjd_max"] - peak_mjd
    f["det_flux_mean"] = _ratio(g.sum(np.where(is_det, flux, 0.0)), f["n_detected"])
    for key in ("det_mjd_min", "det_mjd_max", "det_window", "rise_time", "decline_time"):
        f[key] = np.where(np.isfinite(f[key]), f[key], np.nan)
    del f["det_mjd_min"], f["det_mjd_max"]  # absolute dates say nothing about the class

    # --- per passband ------------------------------------------------------------------------
    nb = survey.N_PASSBANDS
    band_codes = codes * nb + band.astype(np.int64).clip(0, nb - 1)
    border = np.argsort(band_codes, kind="stable")
    b = _Segments(band_codes[border], n * nb)
    bflux, bsnr, bdet = flux[border], snr[border], is_det[border]
    per_band = {
        "n_obs": b.count,
        "flux_mean": b.mean(bflux),
        "flux_std": b.std(bflux),
        "flux_max": b.max(bflux),
        "flux_min": b.min(bflux),
        "flux_err_mean": b.mean(flux_err[border]),
        "snr_max": b.max(bsnr),
        "det_flux_max": b.max(np.where(bdet, bflux, -np.inf)),
        "flux_w_mean": _ratio(b.sum(bflux * bsnr**2), b.sum(bsnr**2)),
    }
    per_band["det_flux_max"] = np.where(np.isfinite(per_band["det_flux_max"]), per_band["det_flux_max"], np.nan)
    grids = {k: v.reshape(n, nb) for k, v in per_band.items()}
    for k, grid in grids.items():
        for i, letter in enumerate(survey.PASSBANDS):
            f[f"{k}_{letter}"] = grid[:, i]
    peaks = grids["flux_max"]
    for i, letter in enumerate(survey.PASSBANDS):
        f[f"peak_ratio_{letter}"] = _ratio(peaks[:, i], f["abs_flux_max"])
    for i in range(nb - 1):
        a, c = peaks[:, i], peaks[:, i + 1]
        f[f"colour_{survey.PASSBANDS[i]}{survey.PASSBANDS[i + 1]}"] = _ratio(a - c, np.abs(a) + np.abs(c))
    return f


def _add_metadata_features(f: dict[str, np.ndarray], meta: dict[str, np.ndarray]) -> None:
    """Add the metadata columns and the features made from them (luminosities, rest-frame times)."""
    for k in METADATA_FEATURES:
        f[k] = meta[k]
    z = meta["hostgal_photoz"]
    extragalactic = z > 0
    d2 = np.where(extragalactic, luminosity_distance_mpc(np.where(extragalactic, z, 0.0)) ** 2, np.nan)
    f["log_lum_peak"] = _log10_positive(f["flux_max"] * d2)
    f["log_lum_det_mean"] = _log10_positive(f["det_flux_mean"] * d2)
    f["log_lum_w_mean"] = _log10_positive(f["flux_w_mean"] * d2)
    stretch = 1.0 + np.where(extragalactic, z, 0.0)
    for key in ("det_window", "rise_time", "decline_time"):
        f[f"{key}_rest"] = f[key] / stretch


def _metadata_for(object_ids: np.ndarray, metadata: pd.DataFrame | None) -> dict[str, np.ndarray]:
    """The metadata features of ``object_ids`` (NaN where an object has no metadata row)."""
    if metadata is None or len(metadata) == 0:
        return {k: np.full(object_ids.size, np.nan) for k in METADATA_FEATURES}
    meta_ids = metadata[survey.OBJECT_ID].to_numpy()
    ascending = meta_ids.size < 2 or bool((meta_ids[1:] >= meta_ids[:-1]).all())
    sorter = np.arange(meta_ids.size) if ascending else np.argsort(meta_ids, kind="stable")
    pos = np.searchsorted(meta_ids, object_ids, sorter=sorter).clip(max=meta_ids.size - 1)
    rows = sorter[pos]
    found = meta_ids[rows] == object_ids
    out = {}
    for k in METADATA_FEATURES:
        values = metadata[k].to_numpy().astype(np.float64)[rows]
        out[k] = np.where(found, values, np.nan)
    return out


def feature_names() -> list[str]:
    """Names of the feature columns, in order (computed on a one-row example)."""
    example = pd.DataFrame({c: np.zeros(1, dtype=t) for c, t in survey.LIGHTCURVE_DTYPES.items()})
    return build_features(example, None).columns.tolist()
