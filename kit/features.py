"""Aggregate light-curve features of every object, from its light curve and metadata.

Rows are grouped by runs of ``object_id`` (rows of one object are contiguous; other input is
stably sorted first). :func:`kit.aggregate.aggregate` reduces each object's rows in one compiled
pass; this module turns those statistics into features (ratios, colours, timing, luminosities) with
vectorised numpy over objects. An object's features depend only on its own rows, so they are
bit-identical whether a file is featurised whole or in chunks.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from kit import idsets, survey
from kit.aggregate import BAND_STATS, OBJECT_STATS, aggregate

#: Metadata columns used as features (hostgal_specz is left out: it is missing for most test objects).
METADATA_FEATURES: tuple[str, ...] = ("hostgal_photoz", "hostgal_photoz_err", "distmod", "mwebv", "ddf")
#: Flat Lambda-CDM cosmology for the photo-z luminosity distance.
HUBBLE_DISTANCE_MPC = 299_792.458 / 70.0
OMEGA_MATTER = 0.3
_Z_GRID = np.linspace(0.0, 5.0, 2001)
FEATURE_DTYPE = np.float32
_LIGHTCURVE_VALUES = ("mjd", "passband", "flux", "flux_err", "detected")
#: Objects named in a warning.
N_EXAMPLES = 5
log = logging.getLogger(__name__)


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
    if not idsets.is_sorted(ids):
        order = np.argsort(ids, kind="stable")
        ids = ids[order]
    columns = []
    for name in _LIGHTCURVE_VALUES:
        values = lightcurves[name].to_numpy()
        columns.append(values if order is None else values[order])
    starts = idsets.run_starts(ids)
    object_ids = ids[starts]
    objects, bands = aggregate(np.append(starts, ids.size), *columns)
    f = _light_curve_features(objects, bands)
    _add_metadata_features(f, _metadata_for(object_ids, metadata))
    out = pd.DataFrame(_to_feature_dtype(f, object_ids))
    out.index = pd.Index(object_ids.astype(np.int64), name=survey.OBJECT_ID)
    return out


def _to_feature_dtype(f: dict[str, np.ndarray], object_ids: np.ndarray) -> dict[str, np.ndarray]:
    """Cast every feature to ``FEATURE_DTYPE``; finite values beyond its range are clipped to it, not made inf.

    A clip is logged as a warning naming the columns and objects, whose fluxes deserve a look.
    """
    limit = float(np.finfo(FEATURE_DTYPE).max)
    out, clipped = {}, {}
    for k, v in f.items():
        v = np.asarray(v)
        if v.dtype.kind == "f" and v.dtype.itemsize > np.dtype(FEATURE_DTYPE).itemsize:
            big = np.abs(v) > limit
            if big.any() and (big := big & np.isfinite(v)).any():
                clipped[k] = big
                v = np.where(big, np.copysign(limit, v), v)
        out[k] = v.astype(FEATURE_DTYPE)
    if clipped:
        rows = np.flatnonzero(np.logical_or.reduce(list(clipped.values())))
        log.warning(
            "features %s of %d object(s) (e.g. object_id %s) exceed the range of %s: clipped to +-%.3g. "
            "Their fluxes are likely wrong.", ", ".join(clipped), rows.size,
            ", ".join(str(i) for i in object_ids[rows[:N_EXAMPLES]]), np.dtype(FEATURE_DTYPE).name, limit,
        )
    return out


def _light_curve_features(objects: np.ndarray, bands: np.ndarray) -> dict[str, np.ndarray]:
    """Features of the light curves alone, from :func:`kit.aggregate.aggregate`'s statistics."""
    raw = {k: objects[:, i] for i, k in enumerate(OBJECT_STATS)}
    f: dict[str, np.ndarray] = {}
    # --- the public kernel's seed set, and a few cheap extras -----------------------------
    f["mjd_min"], f["mjd_max"], f["n_obs"] = raw["mjd_min"], raw["mjd_max"], raw["n_obs"]
    f["mjd_range"] = f["mjd_max"] - f["mjd_min"]
    for name in ("passband", "flux", "flux_err"):
        stats = ("min", "max", "mean", "median", "std") + (("skew",) if name != "passband" else ())
        f.update({f"{name}_{stat}": raw[f"{name}_{stat}"] for stat in stats})
    f["detected_mean"], f["n_detected"] = _ratio(raw["n_detected"], raw["n_obs"]), raw["n_detected"]
    for key in ("flux_ratio_sq_sum", "flux_ratio_sq_skew", "flux_by_flux_ratio_sq_sum", "flux_by_flux_ratio_sq_skew"):
        f[key] = raw[key]
    f["flux_w_mean"] = _ratio(f["flux_by_flux_ratio_sq_sum"], f["flux_ratio_sq_sum"])
    f["flux_diff"] = f["flux_max"] - f["flux_min"]
    f["flux_diff_by_mean"] = _ratio(f["flux_diff"], f["flux_mean"])
    f["flux_diff_by_w_mean"] = _ratio(f["flux_diff"], f["flux_w_mean"])
    f["snr_max"], f["snr_min"], f["abs_flux_max"] = raw["snr_max"], raw["snr_min"], raw["abs_flux_max"]

    # --- timing: detected window, rise and decline around the peak (absolute dates left out) --
    with np.errstate(invalid="ignore"):
        f["det_window"] = raw["det_mjd_max"] - raw["det_mjd_min"]
        f["rise_time"] = raw["peak_mjd"] - raw["det_mjd_min"]
        f["decline_time"] = raw["det_mjd_max"] - raw["peak_mjd"]
    for key in ("det_window", "rise_time", "decline_time"):
        f[key] = _finite_or_nan(f[key])
    f["det_flux_mean"] = _ratio(raw["det_flux_sum"], f["n_detected"])

    # --- per passband ------------------------------------------------------------------------
    grids = {k: bands[:, :, i] for i, k in enumerate(BAND_STATS)}
    grids["det_flux_max"] = _finite_or_nan(grids["det_flux_max"])
    grids["flux_w_mean"] = _ratio(grids.pop("w_num"), grids.pop("w_den"))
    for k, grid in grids.items():
        for i, letter in enumerate(survey.PASSBANDS):
            f[f"{k}_{letter}"] = grid[:, i]
    peaks = grids["flux_max"]
    for i, letter in enumerate(survey.PASSBANDS):
        f[f"peak_ratio_{letter}"] = _ratio(peaks[:, i], f["abs_flux_max"])
    for i in range(survey.N_PASSBANDS - 1):
        a, c = peaks[:, i], peaks[:, i + 1]
        f[f"colour_{survey.PASSBANDS[i]}{survey.PASSBANDS[i + 1]}"] = _ratio(a - c, np.abs(a) + np.abs(c))
    return f


def _finite_or_nan(x: np.ndarray) -> np.ndarray:
    return np.where(np.isfinite(x), x, np.nan)


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
    sorter = None if idsets.is_sorted(meta_ids) else np.argsort(meta_ids, kind="stable")
    pos = np.searchsorted(meta_ids, object_ids, sorter=sorter).clip(max=meta_ids.size - 1)
    rows = pos if sorter is None else sorter[pos]
    found = meta_ids[rows] == object_ids
    return {k: np.where(found, metadata[k].to_numpy()[rows].astype(np.float64), np.nan) for k in METADATA_FEATURES}


def feature_names() -> list[str]:
    """Names of the feature columns, in order (computed on a one-row example)."""
    example = pd.DataFrame({c: np.zeros(1, dtype=t) for c, t in survey.LIGHTCURVE_DTYPES.items()})
    return build_features(example, None).columns.tolist()
