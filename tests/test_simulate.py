"""Tests of the competition simulator: files like Kaggle's, determinism, physics and test-set shift."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kit import survey
from kit.simulate import simulate, tiny_competition
from kit.simulate.cadence import DETECTION_SNR, LSST, SURVEYS, make_cadence
from kit.simulate.metadata import sample_metadata
from kit.simulate.physics import CLASS_PHYSICS, bazin, draw_params, mag_to_flux, model_flux

FILES = (survey.TRAIN_LIGHTCURVES, survey.TRAIN_METADATA, survey.TEST_LIGHTCURVES, survey.TEST_METADATA,
         survey.SAMPLE_SUBMISSION, survey.TEST_TRUTH)


@pytest.fixture(scope="module")
def sim(tmp_path_factory) -> Path:
    return tiny_competition(tmp_path_factory.mktemp("simtest") / "sim", n_train=300, n_test=600, seed=1)


def _digest(folder: Path) -> dict[str, str]:
    return {f: hashlib.sha256((folder / f).read_bytes()).hexdigest() for f in FILES}


def test_same_seed_same_bytes_other_seed_differs(sim, tmp_path):
    again = tiny_competition(tmp_path / "again", n_train=300, n_test=600, seed=1)
    assert _digest(again) == _digest(sim)
    other = tiny_competition(tmp_path / "other", n_train=300, n_test=600, seed=2)
    assert _digest(other)[survey.TEST_LIGHTCURVES] != _digest(sim)[survey.TEST_LIGHTCURVES]


def test_headers_exactly_as_kaggle(sim):
    first = {f: (sim / f).read_text().split("\n", 1)[0] for f in FILES}
    assert first[survey.TRAIN_LIGHTCURVES] == "object_id,mjd,passband,flux,flux_err,detected"
    assert first[survey.TEST_LIGHTCURVES] == first[survey.TRAIN_LIGHTCURVES]
    assert first[survey.TRAIN_METADATA] == ",".join(survey.METADATA_COLUMNS) + ",target"
    assert first[survey.TEST_METADATA] == ",".join(survey.METADATA_COLUMNS)
    assert first[survey.SAMPLE_SUBMISSION] == ",".join(survey.SUBMISSION_COLUMNS)
    assert first[survey.TEST_TRUTH] == "object_id,target,true_target"
    row = (sim / survey.TRAIN_LIGHTCURVES).read_text().split("\n")[1].split(",")
    assert len(row[1].split(".")[1]) == 4 and len(row[3].split(".")[1]) == 6


def _lc(sim, name):
    return pd.read_csv(sim / name)


def test_rows_sorted_and_contiguous_ids_disjoint(sim):
    ids = {}
    for name, meta_name in ((survey.TRAIN_LIGHTCURVES, survey.TRAIN_METADATA),
                            (survey.TEST_LIGHTCURVES, survey.TEST_METADATA)):
        lc = _lc(sim, name)
        key = lc["object_id"].to_numpy()
        assert np.all(np.diff(key) >= 0)
        same = np.diff(key) == 0
        assert np.all(np.diff(lc["mjd"].to_numpy())[same] >= 0)
        meta = pd.read_csv(sim / meta_name)
        assert np.array_equal(np.unique(key), meta["object_id"].to_numpy())
        assert lc["mjd"].between(59580, 60676).all()
        ids[name] = set(meta["object_id"])
    assert not ids[survey.TRAIN_LIGHTCURVES] & ids[survey.TEST_LIGHTCURVES]
    sub = pd.read_csv(sim / survey.SAMPLE_SUBMISSION)
    assert sub["object_id"].tolist() == sorted(ids[survey.TEST_LIGHTCURVES])
    assert np.allclose(sub.iloc[:, 1:].sum(axis=1), 1.0)


def test_classes_and_unknowns(sim):
    train = pd.read_csv(sim / survey.TRAIN_METADATA)
    assert set(train["target"]) == set(survey.CLASSES)
    truth = pd.read_csv(sim / survey.TEST_TRUTH)
    unknown = truth[truth["target"] == survey.CLASS_UNKNOWN]
    assert 0.01 <= len(unknown) / len(truth) <= 0.03
    assert set(unknown["true_target"]) <= set(survey.UNKNOWN_TRUE_TARGETS)
    meta = pd.read_csv(sim / survey.TEST_METADATA).merge(truth, on="object_id")
    gal = meta["hostgal_photoz"] == 0
    assert (gal & (meta["target"] == 99)).any() and (~gal & (meta["target"] == 99)).any()
    assert (truth["target"] == survey.truth_to_scored(truth["true_target"])).all()


def test_galactic_objects_have_no_redshift(sim):
    for name in (survey.TRAIN_METADATA, survey.TEST_METADATA):
        meta = pd.read_csv(sim / name)
        gal = meta["hostgal_photoz"] == 0
        assert gal.any() and meta.loc[gal, "distmod"].isna().all()
        assert meta.loc[~gal, "distmod"].notna().all()
    train = pd.read_csv(sim / survey.TRAIN_METADATA)
    assert (survey.is_galactic(train["hostgal_photoz"]) == train["target"].isin(survey.GALACTIC_CLASSES)).all()


def test_test_set_is_fainter_higher_z_and_mostly_wfd(sim):
    train = pd.read_csv(sim / survey.TRAIN_METADATA)
    test = pd.read_csv(sim / survey.TEST_METADATA)
    xg = lambda m: m[m["hostgal_photoz"] > 0]  # noqa: E731
    assert xg(test)["hostgal_photoz"].median() > 1.2 * xg(train)["hostgal_photoz"].median()
    assert 0.15 < train["ddf"].mean() < 0.4 and test["ddf"].mean() < 0.06
    assert xg(train)["hostgal_specz"].notna().all() and xg(test)["hostgal_specz"].isna().mean() > 0.9
    peak = lambda lc: lc.groupby("object_id")["flux"].max().median()  # noqa: E731
    assert peak(_lc(sim, survey.TEST_LIGHTCURVES)) < peak(_lc(sim, survey.TRAIN_LIGHTCURVES))


#: Real PLAsTiCC WFD test-set host photo-z quantiles 25/50/75/90% and median photo-z error per supernova class
#: (5,000-object sample of the unblinded test metadata, the kit's PLAsTiCC notes).
REAL_TEST_SN_PHOTOZ = {90: ((0.42, 0.57, 0.73, 0.87), 0.034), 42: ((0.28, 0.42, 0.58, 0.80), 0.036),
                       62: ((0.22, 0.33, 0.47, 0.59), 0.041)}


def test_test_supernova_redshifts_follow_real_test_set():
    kinds = np.repeat(list(REAL_TEST_SN_PHOTOZ), 2000)
    test = sample_metadata(kinds, test=True, rng=np.random.default_rng(5))
    train = sample_metadata(kinds, test=False, rng=np.random.default_rng(6))
    wfd = test["ddf"].to_numpy() == 0
    for kind, (quantiles, err) in REAL_TEST_SN_PHOTOZ.items():
        x = test[wfd & (kinds == kind)]
        sim = x["hostgal_photoz"].quantile([0.25, 0.5, 0.75, 0.9]).to_numpy()
        assert np.all(np.abs(sim / np.array(quantiles) - 1) < 0.2), (kind, sim)
        assert abs(x["hostgal_photoz_err"].median() / err - 1) < 0.25  # failures lift it by ~5%
        # catastrophic photo-z failures: a few percent, at real failed photo-zs (the real maximum is 3.0)
        assert 0.005 < (x["hostgal_photoz"] > 1.9).mean() < 0.06 and x["hostgal_photoz"].max() <= 3.0
        # the test set stays farther than the training set (real SN II median 0.22 -> 0.42)
        assert sim[1] > 1.3 * train.loc[kinds == kind, "hostgal_photoz"].median()
    assert x["true_z"].between(0.0, 3.0).all() and (x["hostgal_specz"].isna().mean() > 0.9)


@pytest.mark.parametrize("name", [survey.TRAIN_LIGHTCURVES, survey.TEST_LIGHTCURVES])
def test_detections_follow_snr_and_trigger(sim, name):
    lc = _lc(sim, name)
    snr = lc["flux"].abs() / lc["flux_err"]
    assert lc.loc[snr > DETECTION_SNR + 1, "detected"].mean() > 0.9
    assert lc.loc[snr < DETECTION_SNR - 2, "detected"].mean() < 0.01
    assert lc.groupby("object_id")["detected"].sum().min() >= 2
    assert (lc["flux_err"] > 0).all()


def test_cadence_like_real_survey(sim):
    lc = _lc(sim, survey.TRAIN_LIGHTCURVES)
    meta = pd.read_csv(sim / survey.TRAIN_METADATA).set_index("object_id")
    n = lc.groupby("object_id").size()
    ddf = meta.loc[n.index, "ddf"] == 1
    assert 90 < n[~ddf].median() < 170 and 250 < n[ddf].median() < 450
    span = lc.groupby("object_id")["mjd"].agg(lambda t: t.max() - t.min())
    assert span.median() > 800
    gaps = lc.groupby("object_id")["mjd"].diff().dropna()
    assert (gaps > 100).groupby(lc["object_id"]).sum().min() >= 1 or gaps.max() > 100


def test_class_light_curves_differ(sim):
    lc = _lc(sim, survey.TRAIN_LIGHTCURVES)
    meta = pd.read_csv(sim / survey.TRAIN_METADATA).set_index("object_id")
    det = lc[lc["detected"] == 1].groupby("object_id")["mjd"].agg(lambda t: t.max() - t.min())
    window = det.groupby(meta.loc[det.index, "target"]).median()
    assert window[90] < window[88] and window[64] < window[90]  # kilonovae fast, AGN vary all survey long


def test_simulate_rejects_empty(tmp_path):
    with pytest.raises(ValueError):
        simulate(tmp_path, 0, 10, 1)
    with pytest.raises(ValueError, match="lsst, wide-fast"):
        simulate(tmp_path, 10, 10, 1, survey_name="ztf")


def test_source_survey_has_its_own_cadence_and_depth():
    """wide-fast: twice LSST's visits, flux errors one magnitude (x 2.512) larger; LSST's design changes nothing."""
    ddf = np.zeros(2000, bool)
    ddf[:100] = True
    lsst, wide = (make_cadence(ddf, np.random.default_rng(5), d) for d in (LSST, SURVEYS["wide-fast"]))
    again = make_cadence(ddf, np.random.default_rng(5))
    assert np.array_equal(again.mjd, lsst.mjd) and np.array_equal(again.base_err, lsst.base_err)
    visits = [np.bincount(c.obj, minlength=2000) for c in (lsst, wide)]
    for group in (~ddf, ddf):
        assert np.median(visits[1][group]) / np.median(visits[0][group]) == pytest.approx(2.0, rel=0.08)
    band_err = [pd.Series(c.base_err).groupby(c.band).median() for c in (lsst, wide)]
    assert np.allclose(band_err[1] / band_err[0], 10 ** 0.4, rtol=0.06)


def test_survey_statistics_of_a_hand_made_test_set():
    from kit.simulate.calibrate import survey_statistics

    # object 1: WFD SN Ia, 3 rows in bands 0, 0, 2 with gaps 1 and 3 d, one detected; object 2: DDF AGN
    lc = pd.DataFrame({"object_id": [1, 1, 1, 2, 2], "mjd": [0.0, 1.0, 4.0, 0.0, 0.01],
                       "passband": [0, 0, 2, 1, 1], "flux": 1.0, "flux_err": [2.0, 4.0, 6.0, 1.0, 1.0],
                       "detected": [1, 0, 0, 1, 1]})
    meta = pd.DataFrame({"object_id": [1, 2], "ddf": [0, 1]})
    stats = survey_statistics(lc, meta, pd.Series([90, 88], index=[1, 2]))
    wfd = stats["sim WFD"]
    assert wfd["observations per object (10/50/90%)"] == "3 / 3 / 3"
    assert wfd["median count per band u,g,r,i,z,Y"] == "2, 0, 1, 0, 0, 0"
    assert wfd["median flux_err per band u,g,r,i,z,Y"] == "3.0, nan, 6.0, nan, nan, nan"
    assert wfd["gaps between observations (10/50/90%, d)"] == "1.200 / 2.000 / 2.800"
    assert wfd["share of rows detected (SN classes)"] == "33.3%"
    assert stats["real WFD"]["share of rows detected (SN classes)"] == "8%"
    assert stats["sim DDF"]["share of rows detected (SN classes)"] == "n/a"  # no SN in the DDF
def test_bazin_shape_is_bounded_by_its_peak_for_any_rise_and_fall():
    tau = np.linspace(-5000.0, 5000.0, 200_001)
    for rise, fall in [(1.0, 0.3), (60.0, 20.0), (18.0, 18.0), (1.0, 1.1), (1.0, 1.5), (3.2, 26.0), (0.6, 2.5)]:
        shape = bazin(tau, rise, fall)
        assert np.all(np.isfinite(shape)) and shape.max() <= 1.0
        assert shape.max() > 0.999  # the peak is 1, reached on the grid
        if fall > 2 * rise:  # a slow fall keeps the curve unchanged: the peak is where Bazin's formula says
            assert tau[shape.argmax()] == pytest.approx(rise * np.log(fall / rise - 1), abs=0.1)


@pytest.mark.parametrize("kind", sorted(k for k, spec in CLASS_PHYSICS.items() if spec["model"] == "bazin"))
def test_bazin_classes_never_outshine_their_peak_magnitude(kind):
    """Fluxes used to reach 1e18 when a drawn fall was quicker than the rise (classes 64, 95, 994)."""
    rng = np.random.default_rng(kind)
    n, steps = 4000, 60
    p = draw_params(kind, n, rng)
    obj = np.repeat(np.arange(n), steps)
    t = np.tile(np.linspace(-600.0, 600.0, steps), n)
    band = np.full(n * steps, 2)  # rest r at z = 0: the black-body factor is exactly 1
    zeros = np.zeros(n)
    flux = model_flux(kind, p, obj, t, band, zeros, zeros, zeros, rng)
    peak = mag_to_flux(p["M"]) * (1.0 + p["bump"])
    assert np.all(np.isfinite(flux)) and np.all(flux <= peak[obj] * (1 + 1e-9))
