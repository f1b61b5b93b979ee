"""Tests of the Zenodo importer: a fake unblinded release, written from a simulation, round-trips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kit import survey
from kit.errors import InputError
from kit.simulate import tiny_competition
from kit.zenodo import galactic_coordinates, import_zenodo


def _zenodo_metadata(meta: pd.DataFrame, truth: pd.Series, path: Path) -> None:
    out = meta.drop(columns=["gal_l", "gal_b", "target"], errors="ignore").rename(columns={"ddf": "ddf_bool"})
    out["distmod"] = out["distmod"].fillna(-9.0)
    out["hostgal_specz"] = out["hostgal_specz"].fillna(-9.0)
    out["target"] = truth.to_numpy()
    out["true_target"] = truth.to_numpy()
    formatted = out.copy()
    for col in ("ra", "decl", "hostgal_specz", "distmod"):  # Zenodo pads numbers with spaces
        formatted[col] = [f"{v:9.4f}" for v in out[col]]
    formatted.to_csv(path, index=False, compression="gzip")


def _zenodo_lightcurves(lc: pd.DataFrame, path: Path) -> None:
    lc.rename(columns={"detected": "detected_bool"}).to_csv(path, index=False, compression="gzip")


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("zenodo")
    sim = tiny_competition(root / "sim", n_train=120, n_test=300, seed=3)
    src = root / "zenodo"
    src.mkdir()
    train = pd.read_csv(sim / survey.TRAIN_METADATA)
    _zenodo_metadata(train, train["target"], src / "plasticc_train_metadata.csv.gz")
    test = pd.read_csv(sim / survey.TEST_METADATA)
    truth = pd.read_csv(sim / survey.TEST_TRUTH)
    _zenodo_metadata(test, truth["true_target"], src / "plasticc_test_metadata.csv.gz")
    _zenodo_lightcurves(pd.read_csv(sim / survey.TRAIN_LIGHTCURVES), src / "plasticc_train_lightcurves.csv.gz")
    lc = pd.read_csv(sim / survey.TEST_LIGHTCURVES)
    ids = test["object_id"].to_numpy()
    first = lc["object_id"].isin(ids[: len(ids) // 2])
    _zenodo_lightcurves(lc[first], src / "plasticc_test_lightcurves_01.csv.gz")
    _zenodo_lightcurves(lc[~first], src / "plasticc_test_lightcurves_02.csv.gz")
    out = root / "imported"
    import_zenodo(src, out, chunk_rows=5000)
    return sim, out


def test_light_curves_round_trip(folders):
    sim, out = folders
    for name in (survey.TRAIN_LIGHTCURVES, survey.TEST_LIGHTCURVES):
        assert (out / name).read_bytes() == (sim / name).read_bytes()


def test_metadata_and_truth(folders):
    sim, out = folders
    for name in (survey.TRAIN_METADATA, survey.TEST_METADATA):
        ours, theirs = pd.read_csv(out / name), pd.read_csv(sim / name)
        assert list(ours.columns) == list(theirs.columns)
        assert np.array_equal(ours["object_id"], theirs["object_id"])
        assert np.allclose(ours["ra"], theirs["ra"], atol=1e-3)
        assert ours["distmod"].isna().equals(theirs["distmod"].isna())
        assert ours["hostgal_specz"].isna().equals(theirs["hostgal_specz"].isna())
    targets = [pd.read_csv(f / survey.TRAIN_METADATA)["target"] for f in (out, sim)]
    assert (targets[0] == targets[1]).all()
    truth, sim_truth = pd.read_csv(out / survey.TEST_TRUTH), pd.read_csv(sim / survey.TEST_TRUTH)
    assert truth.equals(sim_truth)
    assert (truth.loc[truth["true_target"] > 900, "target"] == survey.CLASS_UNKNOWN).all()
    assert (truth["true_target"] > 900).any()
    assert (out / survey.SAMPLE_SUBMISSION).read_bytes() == (sim / survey.SAMPLE_SUBMISSION).read_bytes()


def test_galactic_coordinates_match_kaggle():
    # two real training objects (615, 713): Kaggle's gal_l, gal_b
    l_deg, b_deg = galactic_coordinates(np.array([349.046051, 53.085938]), np.array([-61.943836, -27.784405]))
    assert np.allclose(l_deg, [320.796530, 223.525509], atol=1e-4)
    assert np.allclose(b_deg, [-51.753706, -54.460748], atol=1e-4)


def test_missing_files_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="plasticc_test_lightcurves"):
        import_zenodo(tmp_path, tmp_path / "out")
