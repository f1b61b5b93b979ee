"""Aggregate features: hand-checked values, pandas agreement, chunk independence."""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pandas as pd
import pytest

from kit import survey
from kit.bench import write_synthetic
from kit.features import build_features, feature_names, luminosity_distance_mpc
from kit.lightcurves import iter_object_chunks, read_lightcurves

SEED_FEATURE_COUNT = 30


def _tiny() -> tuple[pd.DataFrame, pd.DataFrame]:
    lc = pd.DataFrame(
        {
            # object 7: band g (1) twice, band r (2) twice; object 3: band u (0) three times
            "object_id": [7, 7, 7, 7, 3, 3, 3],
            "mjd": [100.0, 110.0, 120.0, 150.0, 10.0, 11.0, 13.0],
            "passband": [1, 2, 1, 2, 0, 0, 0],
            "flux": [10.0, 40.0, 20.0, 5.0, 1.0, 2.0, 6.0],
            "flux_err": [1.0, 2.0, 1.0, 1.0, 1.0, 1.0, 2.0],
            "detected": [1, 1, 1, 0, 0, 1, 1],
        }
    ).astype(survey.LIGHTCURVE_DTYPES)
    meta = pd.DataFrame({
        "object_id": [3, 7], "ddf": [0, 1], "hostgal_photoz": [0.0, 0.5], "hostgal_photoz_err": [0.0, 0.05],
        "distmod": [np.nan, 42.0], "mwebv": [0.1, 0.2],
    })
    return lc, meta


def test_hand_checked_two_objects():
    lc, meta = _tiny()
    f = build_features(lc, meta)
    assert f.index.tolist() == [3, 7] and f.index.name == survey.OBJECT_ID
    o7, o3 = f.loc[7], f.loc[3]
    assert o7["n_obs"] == 4 and o7["n_detected"] == 3
    assert o7["det_window"] == 20.0  # detected at 100, 110, 120
    assert o7["mjd_range"] == 50.0
    assert o7["flux_mean_g"] == 15.0 and o7["flux_mean_r"] == 22.5 and np.isnan(o7["flux_mean_u"])
    assert o7["flux_max_r"] == 40.0 and o7["det_flux_max_r"] == 40.0 and o7["n_obs_u"] == 0
    assert o7["rise_time"] == 10.0 and o7["decline_time"] == 10.0  # peak at mjd 110
    assert o7["peak_ratio_r"] == 1.0 and o7["peak_ratio_g"] == pytest.approx(0.5)
    assert o7["colour_gr"] == pytest.approx((20 - 40) / 60)
    assert o7["flux_ratio_sq_sum"] == pytest.approx(100 + 400 + 400 + 25)
    assert o3["det_window"] == 2.0 and o3["flux_median"] == 2.0 and o3["flux_err_max"] == 2.0
    assert o7["hostgal_photoz"] == pytest.approx(0.5) and o7["ddf"] == 1
    d_l = luminosity_distance_mpc(np.array([0.5]))[0]
    assert 2700 < d_l < 2900  # flat LCDM, H0=70, Om=0.3: 2.83 Gpc
    assert o7["log_lum_peak"] == pytest.approx(np.log10(40 * d_l**2), rel=1e-6)
    assert np.isnan(o3["log_lum_peak"])  # galactic: no distance
    assert o7["det_window_rest"] == pytest.approx(20 / 1.5)


def test_matches_pandas_groupby(tmp_path):
    lc = read_lightcurves(write_synthetic(tmp_path, 6_000, seed=3)[0])
    f = build_features(lc, None)
    g = lc.assign(
        r=lambda d: (d.flux.astype(float) / d.flux_err) ** 2).groupby(survey.OBJECT_ID)
    ref = pd.DataFrame({
        "flux_mean": g.flux.mean(), "flux_median": g.flux.median(), "flux_std": g.flux.std(),
        "flux_skew": g.flux.skew(), "flux_err_skew": g.flux_err.skew(), "passband_median": g.passband.median(),
        "passband_std": g.passband.std(), "mjd_min": g.mjd.min(), "flux_ratio_sq_sum": g.r.sum(),
        "flux_ratio_sq_skew": g.r.skew(), "detected_mean": g.detected.mean(),
    })
    for col in ref:
        np.testing.assert_allclose(f[col].to_numpy(np.float64), ref[col].to_numpy(np.float64), rtol=2e-4, atol=1e-4)


def test_chunked_equals_whole_exactly(tmp_path):
    lc_path, meta_path = write_synthetic(tmp_path, 8_000, seed=4)
    meta = pd.read_csv(meta_path)
    whole = build_features(read_lightcurves(lc_path), meta)
    for chunk_rows in (150, 1_000):
        parts = [build_features(chunk, meta) for chunk in iter_object_chunks(lc_path, chunk_rows)]
        pd.testing.assert_frame_equal(pd.concat(parts), whole, check_exact=True)


def test_row_order_and_unsorted_ids_do_not_matter():
    lc, meta = _tiny()
    shuffled = lc.sample(frac=1.0, random_state=0)
    pd.testing.assert_frame_equal(build_features(shuffled, meta), build_features(lc, meta), check_exact=True)


def test_many_cheap_features_all_float32():
    names = feature_names()
    assert len(names) >= 3 * SEED_FEATURE_COUNT
    assert len(set(names)) == len(names) and "hostgal_specz" not in names
    lc, meta = _tiny()
    assert set(build_features(lc, meta).dtypes) == {np.dtype(np.float32)}


def test_values_beyond_float32_are_clipped_and_their_objects_named(caplog):
    lc, meta = _tiny()
    lc.loc[lc["object_id"] == 7, "flux"] = 1e30  # (flux / flux_err)^2 sums overflow float32
    lc.loc[lc["object_id"] == 7, "flux_err"] = 1e-3
    with warnings.catch_warnings(), caplog.at_level(logging.WARNING, logger="kit.features"):
        warnings.simplefilter("error", RuntimeWarning)  # no "overflow encountered in cast"
        f = build_features(lc, meta)
    limit = np.finfo(np.float32).max
    assert f.loc[7, "flux_ratio_sq_sum"] == limit and f.loc[7, "flux_by_flux_ratio_sq_sum"] == limit
    assert np.isfinite(f.loc[3]).sum() == np.isfinite(build_features(*_tiny()).loc[3]).sum()  # others untouched
    assert not np.isinf(f.to_numpy()).any()
    (record,) = caplog.records
    assert "flux_ratio_sq_sum" in record.message and "of 1 object(s) (e.g. object_id 7)" in record.message
