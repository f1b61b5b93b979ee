"""GP features (kit/gpfeatures.py): a row per object whatever the input, never inf, the same whole or in chunks,
and the right peak and widths on a clean pulse."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kit import gpfeatures, survey


def _object(rng, oid: int, n: int, flux=None, band=None, err=None) -> pd.DataFrame:
    t = np.sort(rng.uniform(60000.0, 60500.0, n))
    return pd.DataFrame({
        survey.OBJECT_ID: oid,
        "mjd": t,
        "passband": rng.integers(0, 6, n) if band is None else np.full(n, band),
        "flux": rng.normal(0, 5, n) + 30 * np.exp(-0.5 * ((t - 60250) / 20) ** 2) if flux is None else flux,
        "flux_err": np.full(n, 2.0) if err is None else err,
        "detected": 0,
    })


def bad_objects() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Objects 1..11 with every kind of awkward light curve, and metadata with NaN photo-zs."""
    rng = np.random.default_rng(0)
    every_third = np.arange(40) % 3 == 0
    objects = [
        _object(rng, 1, 1),  # one point
        _object(rng, 2, 30, band=3),  # one band only
        _object(rng, 3, 40, flux=-np.abs(rng.normal(50, 10, 40))),  # all negative
        _object(rng, 4, 40, flux=rng.uniform(0.5, 1, 40) * 1e30),  # huge
        _object(rng, 5, 40, flux=np.where(every_third, np.nan, rng.normal(0, 5, 40))),  # NaN rows
        _object(rng, 6, 10, flux=np.full(10, np.nan)),  # no finite flux
        _object(rng, 7, 40, err=np.where(every_third, rng.choice([0.0, -1.0], 40), 2.0)),  # zero/negative errors
        _object(rng, 8, 40),  # ordinary, NaN photo-z
        _object(rng, 9, 40, err=np.zeros(40)),  # no usable error
        _object(rng, 10, 40, flux=rng.uniform(0.5, 1, 40) * 1e38, err=np.full(40, 1e36)),  # beyond float32
        _object(rng, 11, 40, flux=np.full(40, 7.0)),  # constant
    ]
    meta = pd.DataFrame({survey.OBJECT_ID: np.arange(1, 12),
                         "hostgal_photoz": [0.3, 0, 0.5, np.nan, 0.2, 0.1, 0, np.nan, 0.4, 1.0, 0.0]})
    return pd.concat(objects, ignore_index=True), meta


@pytest.mark.parametrize("with_metadata", [True, False])
def test_bad_input_gives_a_row_per_object_and_never_inf(with_metadata):
    lc, meta = bad_objects()
    f = gpfeatures.build_gp_features(lc, meta if with_metadata else None)
    assert f.index.tolist() == list(range(1, 12))
    assert f.columns.tolist() == gpfeatures.gp_feature_names()
    assert (f.dtypes == np.float32).all()
    assert not np.isinf(f.to_numpy()).any(), f.columns[np.isinf(f.to_numpy()).any(axis=0)].tolist()
    # objects without a usable point have no GP; the others have one
    assert f.loc[[6, 9], "gp_time_scale"].isna().all()
    assert f.drop(index=[6, 9])["gp_time_scale"].notna().all()
    # point counts come from the raw rows: one-band object 2 has its 30 points somewhere
    assert f.loc[2, "snr3_count"] <= 30 and f.loc[9, "snr3_count"] == 0
    lum = f["gp_log_lum_peak"]
    assert lum.loc[[4, 8, 2, 7, 11]].isna().all()  # NaN or zero photo-z: no luminosity
    if with_metadata:
        assert np.isfinite(lum.loc[[3, 5]]).all()
    else:
        assert lum.isna().all()


def test_whole_and_chunked_features_are_identical(competition, monkeypatch):
    lc = pd.read_csv(competition / survey.TEST_LIGHTCURVES)
    meta = pd.read_csv(competition / survey.TEST_METADATA)
    ids = lc[survey.OBJECT_ID].unique()[:60]
    lc = lc[lc[survey.OBJECT_ID].isin(ids)].reset_index(drop=True)
    whole = gpfeatures.build_gp_features(lc, meta)
    split = int(np.flatnonzero(lc[survey.OBJECT_ID].to_numpy() == ids[25])[0])
    chunked = pd.concat([gpfeatures.build_gp_features(lc.iloc[:split], meta),
                         gpfeatures.build_gp_features(lc.iloc[split:], meta)])
    pd.testing.assert_frame_equal(whole, chunked, check_exact=True)
    assert whole.index.tolist() == sorted(ids.tolist())
    # fitted a few objects at a time, or with the objects shuffled: the same bits
    monkeypatch.setattr(gpfeatures, "BATCH_OBJECTS", 7)
    shuffled = pd.concat([g for _, g in lc.groupby(survey.OBJECT_ID)][::-1], ignore_index=True)
    pd.testing.assert_frame_equal(whole, gpfeatures.build_gp_features(shuffled, meta), check_exact=True)


def test_clean_pulse_has_its_peak_and_half_widths():
    """A Gaussian pulse (sigma 15 days) in all bands, densely sampled with small noise."""
    rng = np.random.default_rng(5)
    t = np.sort(rng.uniform(59900.0, 60600.0, 180))
    band = rng.integers(0, 6, t.size)
    sigma, peak_t = 15.0, 60250.0
    flux = (100.0 + 20 * band) * np.exp(-0.5 * ((t - peak_t) / sigma) ** 2)
    lc = pd.DataFrame({survey.OBJECT_ID: 1, "mjd": t, "passband": band, "flux": flux + rng.normal(0, 0.5, t.size),
                       "flux_err": 0.5, "detected": 0})
    f = gpfeatures.build_gp_features(lc, None).iloc[0]
    half = sigma * np.sqrt(2 * np.log(2))
    assert f["gp_n_peaks"] == 1
    assert f["gp_rise_50"] == pytest.approx(half, rel=0.15) and f["gp_fall_50"] == pytest.approx(half, rel=0.15)
    assert f["gp_peak"] == pytest.approx(sum(100.0 + 20 * b for b in range(6)), rel=0.1)
    assert f["gp_max_Y"] > f["gp_max_u"] and abs(f["gp_dt_max_r"]) < 3.0
