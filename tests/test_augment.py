"""Redshift augmentation (kit/augment.py): what every copy must keep, and the same seed gives the same copies."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kit import augment, survey


@pytest.fixture(scope="module")
def augmented(competition):
    lc = pd.read_csv(competition / survey.TRAIN_LIGHTCURVES)
    meta = pd.read_csv(competition / survey.TRAIN_METADATA)
    galactic = meta[meta["hostgal_photoz"] == 0].head(8)
    extragalactic = pd.concat([meta[(meta["hostgal_photoz"] > 0) & (meta["ddf"] == 1)].head(4),
                               meta[(meta["hostgal_photoz"] > 0) & (meta["ddf"] == 0)].head(8)])
    meta = pd.concat([galactic, extragalactic]).sort_values(survey.OBJECT_ID)
    lc = lc[lc[survey.OBJECT_ID].isin(meta[survey.OBJECT_ID])].reset_index(drop=True)
    pairs = augment.photoz_pairs(pd.read_csv(competition / survey.TEST_METADATA), meta, minimum=5)
    pools = augment.error_pools(lc, meta)
    settings = augment.AugmentSettings(copies=3, galactic_copies=2)

    def run(seed: int):
        return augment.augment(lc, meta, pairs, pools, settings, np.random.default_rng(seed))

    return lc, meta, settings, run


def test_copies_keep_what_they_must(augmented):
    lc, meta, settings, run = augmented
    out_lc, out_meta = run(0)
    parent = meta.set_index(survey.OBJECT_ID).loc[out_meta[augment.PARENT]]
    ids = out_meta[survey.OBJECT_ID].to_numpy()
    assert len(out_meta) > len(meta)  # most parents got their copies
    assert np.unique(ids).size == ids.size and ids.min() >= augment.ID_BASE
    assert set(out_lc[survey.OBJECT_ID]) == set(ids)
    np.testing.assert_array_equal(out_meta[survey.TARGET].to_numpy(), parent[survey.TARGET].to_numpy())
    # at most the wanted number of copies per parent
    per_parent = out_meta[augment.PARENT].value_counts()
    wanted = np.where(parent.groupby(level=0)["hostgal_photoz"].first() > 0, settings.copies,
                      settings.galactic_copies)
    assert (per_parent.sort_index().to_numpy() <= wanted).all()
    # every copy has at least two detections
    detections = out_lc.groupby(survey.OBJECT_ID)["detected"].sum()
    assert (detections.reindex(ids) >= settings.min_detections).all()

    exg = parent["hostgal_photoz"].to_numpy() > 0
    assert exg.any() and (~exg).any()
    z_parent = np.where(parent["hostgal_specz"].notna() & (parent["hostgal_specz"] > 0),
                        parent["hostgal_specz"], parent["hostgal_photoz"])[exg]
    assert (out_meta["hostgal_specz"].to_numpy()[exg] >= 0.95 * z_parent * (1 - 1e-12)).all()
    assert (out_meta["hostgal_photoz"].to_numpy()[exg] > 0).all()
    assert (out_meta["hostgal_photoz"].to_numpy()[~exg] == 0).all()
    # galactic copies are observed at (some of) their parent's times
    for copy_id, parent_id in out_meta.loc[~exg, [survey.OBJECT_ID, augment.PARENT]].to_numpy():
        copy_t = out_lc.loc[out_lc[survey.OBJECT_ID] == copy_id, "mjd"].to_numpy()
        parent_t = lc.loc[lc[survey.OBJECT_ID] == parent_id, "mjd"].to_numpy()
        assert copy_t.size and np.isin(copy_t, parent_t).all()
    assert (out_meta["ddf"] == 0).all()
    assert np.isfinite(out_lc[["flux", "flux_err"]].to_numpy()).all() and (out_lc["flux_err"] > 0).all()


def test_same_seed_same_copies(augmented):
    *_, run = augmented
    lc_a, meta_a = run(1)
    lc_b, meta_b = run(1)
    pd.testing.assert_frame_equal(lc_a, lc_b, check_exact=True)
    pd.testing.assert_frame_equal(meta_a, meta_b, check_exact=True)
    lc_c, _ = run(2)
    assert not (len(lc_c) == len(lc_a) and np.array_equal(lc_c["flux"].to_numpy(), lc_a["flux"].to_numpy()))


def test_galactic_copies_are_their_parents_observed_fluxes_with_test_like_errors(augmented):
    """A galactic copy is its parent's points, brightness-shifted, with errors drawn from the WFD pools (topped up,
    never below the scaled parent's): not a GP's mean and uncertainty, which between a periodic star's points
    (the GP's 10-day uncertainty grid) would be its whole amplitude."""
    lc, meta, settings, run = augmented
    out_lc, out_meta = run(3)
    gal = out_meta.loc[out_meta["hostgal_photoz"] == 0, [survey.OBJECT_ID, augment.PARENT]]
    rows = out_lc.merge(gal, on=survey.OBJECT_ID).merge(
        lc.rename(columns={survey.OBJECT_ID: augment.PARENT}), on=[augment.PARENT, "mjd", "passband"],
        suffixes=("", "_parent"))
    assert len(rows) == out_lc[survey.OBJECT_ID].isin(gal[survey.OBJECT_ID]).sum()  # every point is a parent's
    pools = augment.error_pools(lc, meta)
    for band, part in rows.groupby("passband"):
        assert part["flux_err"].median() <= 2 * max(np.median(pools[band]), part["flux_err_parent"].median())
    for _, copy in rows.groupby(survey.OBJECT_ID):
        parent = copy["flux_parent"].to_numpy()
        slope = np.polyfit(parent, copy["flux"].to_numpy(), 1)[0]  # the brightness factor, 0.5 mag sigma: ~0.25-4
        residual = copy["flux"].to_numpy() - slope * parent
        assert 0.2 < slope < 5
        assert np.std(residual) <= 3 * np.sqrt(np.mean(copy["flux_err"] ** 2))
