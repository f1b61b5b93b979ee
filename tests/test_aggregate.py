"""The compiled per-object reductions against pandas, for every object size and awkward values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kit.aggregate import BAND_STATS, OBJECT_STATS, aggregate


def _objects(sizes: np.ndarray, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = int(sizes.sum())
    frame = pd.DataFrame({
        "object": np.repeat(np.arange(sizes.size), sizes),
        "mjd": rng.uniform(59_580, 60_670, n),
        "passband": rng.integers(0, 6, n).astype(np.int8),
        "flux": rng.normal(0, 50, n).astype(np.float32),
        "flux_err": rng.uniform(1, 30, n).astype(np.float32),
        "detected": (rng.random(n) < 0.3).astype(np.int8),
    })
    ties = rng.random(n) < 0.2
    frame.loc[ties, "flux"] = np.float32(3.0)
    return frame


def _run(frame: pd.DataFrame, sizes: np.ndarray) -> tuple[pd.DataFrame, np.ndarray]:
    starts = np.concatenate(([0], np.cumsum(sizes)))
    cols = [frame[c].to_numpy() for c in ("mjd", "passband", "flux", "flux_err", "detected")]
    objects, bands = aggregate(starts, *cols)
    return pd.DataFrame(objects, columns=list(OBJECT_STATS)), bands


SIZES = np.concatenate((np.arange(1, 70), np.random.default_rng(1).integers(1, 400, 150), [1000]))


def test_matches_pandas_for_every_size():
    frame = _objects(SIZES)
    got, _ = _run(frame, SIZES)
    g = frame.assign(flux=frame.flux.astype(np.float64), flux_err=frame.flux_err.astype(np.float64)).groupby("object")
    exact = {"n_obs": g.size(), "mjd_min": g.mjd.min(), "mjd_max": g.mjd.max(), "flux_min": g.flux.min(),
             "flux_max": g.flux.max(), "flux_median": g.flux.median(), "flux_err_median": g.flux_err.median(),
             "passband_median": g.passband.median(), "passband_max": g.passband.max(), "n_detected": g.detected.sum()}
    for name, want in exact.items():
        np.testing.assert_array_equal(got[name].to_numpy(), want.to_numpy(np.float64), err_msg=name)
    close = {"flux_mean": g.flux.mean(), "flux_std": g.flux.std(), "flux_skew": g.flux.skew(),
             "flux_err_skew": g.flux_err.skew(), "passband_std": g.passband.std()}
    for name, want in close.items():
        np.testing.assert_allclose(got[name].to_numpy(), want.to_numpy(np.float64), rtol=1e-9, atol=1e-9,
                                   err_msg=name)


def test_passbands_outside_0_to_5_still_give_the_true_median():
    sizes = np.array([5, 6])
    frame = _objects(sizes)
    frame["passband"] = np.array([0, 9, 9, 1, 2, -1, 3, 3, 7, 7, 7], dtype=np.int8)
    got, _ = _run(frame, sizes)
    assert got["passband_median"].tolist() == [2.0, 5.0]


def test_per_band_statistics_and_empty_bands():
    sizes = np.array([4])
    frame = pd.DataFrame({"mjd": [1.0, 2.0, 3.0, 4.0], "passband": np.array([1, 1, 3, 1], np.int8),
                          "flux": np.array([2.0, -4.0, 8.0, 5.0], np.float32),
                          "flux_err": np.array([1.0, 2.0, 4.0, 1.0], np.float32),
                          "detected": np.array([1, 0, 1, 1], np.int8)})
    got, bands = _run(frame, sizes)
    band = {k: bands[0, :, i] for i, k in enumerate(BAND_STATS)}
    assert band["n_obs"].tolist() == [0, 3, 0, 1, 0, 0]
    assert band["flux_mean"][1] == 1.0 and band["flux_max"][1] == 5.0 and band["flux_min"][1] == -4.0
    assert band["flux_std"][1] == pytest.approx(np.std([2, -4, 5], ddof=1))
    assert band["det_flux_max"][1] == 5.0 and band["snr_max"][3] == 2.0
    assert band["w_num"][1] == pytest.approx(2 * 4 + -4 * 4 + 5 * 25) and band["w_den"][1] == 4 + 4 + 25
    for stat in ("flux_mean", "flux_std", "flux_max", "flux_min", "snr_max"):
        assert np.isnan(band[stat][0]), stat
    assert np.isneginf(band["det_flux_max"][0])  # no detection: the caller turns it into NaN
    assert got["peak_mjd"][0] == 3.0 and got["det_mjd_min"][0] == 1.0 and got["det_mjd_max"][0] == 4.0


def test_nan_values_propagate_and_no_rows_give_no_objects():
    sizes = np.array([3, 3])
    frame = _objects(sizes)
    frame.loc[1, "flux"] = np.nan
    got, _ = _run(frame, sizes)
    assert np.isnan(got.loc[0, ["flux_min", "flux_max", "flux_median", "flux_mean"]].astype(float)).all()
    assert not np.isnan(got.loc[1, ["flux_min", "flux_max", "flux_median", "flux_mean"]].astype(float)).any()
    objects, bands = aggregate(np.zeros(1, np.int64), *(np.empty(0) for _ in range(5)))
    assert objects.shape == (0, len(OBJECT_STATS)) and bands.shape == (0, 6, len(BAND_STATS))
