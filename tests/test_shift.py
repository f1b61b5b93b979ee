import json

import numpy as np
import pandas as pd
import pytest

from kit import cli, survey
from kit.shift import adversarial_validation, photoz_weights, quantile_edges


def _toy(seed=0):
    """Three classes with the same training photo-z sample, a test set at higher photo-z; some galactic."""
    rng = np.random.default_rng(seed)
    z_class = rng.gamma(2.0, 0.15, 400)
    z_train = np.r_[z_class, z_class, z_class, np.zeros(50)]
    y = np.r_[np.full(400, 42), np.full(400, 90), np.full(400, 62), np.full(50, 16)]
    z_test = np.r_[rng.gamma(3.0, 0.2, 6000), np.zeros(500)]
    return z_train, y, z_test


def test_weighted_train_histogram_equals_the_test_histogram():
    z_train, y, z_test = _toy()
    w = photoz_weights(z_train, y, z_test, bins=12, clip=None)
    extra_train, extra_test = z_train > 0, z_test > 0
    edges = quantile_edges(z_test[extra_test], 12)
    train_hist = np.histogram(z_train[extra_train], edges, weights=w[extra_train])[0]
    test_hist = np.histogram(z_test[extra_test], edges)[0]
    assert np.allclose(train_hist / train_hist.sum(), test_hist / test_hist.sum(), rtol=1e-12, atol=1e-15)
    # before: the training histogram was far from the test one
    raw = np.histogram(z_train[extra_train], edges)[0]
    assert np.abs(raw / raw.sum() - test_hist / test_hist.sum()).max() > 0.05
    # galactic objects (photo-z 0) keep weight 1; each class keeps its total
    assert np.allclose(w[y == 16], 1.0)
    for c in (42, 90, 62, 16):
        assert w[y == c].sum() == pytest.approx((y == c).sum())


def test_weights_are_clipped_and_keep_each_class_total_of_the_base():
    z_train, y, z_test = _toy(1)
    z_train = z_train.copy()
    z_train[y == 90] *= 0.5  # another distribution for one class: the class total still holds
    base = np.where(y == 42, 3.0, 1.0)
    w = photoz_weights(z_train, y, z_test, bins=10, clip=(0.5, 2.0), base_weights=base)
    for c in np.unique(y):
        assert w[y == c].sum() == pytest.approx(base[y == c].sum())
    ratio = w / base
    for c in np.unique(y):  # within a class, the spread of the clipped ratio is at most 2 / 0.5
        r = ratio[y == c]
        assert r.max() / r.min() <= 4.0 + 1e-9
    assert w[y == 42].max() / w[y == 42].min() == pytest.approx(4.0)  # the clip bites on this toy


def _frames(n_train, n_test, shift, seed=0):
    rng = np.random.default_rng(seed)
    cols = {f"f{i}": rng.normal(size=n_train + n_test) for i in range(4)}
    cols["f2"][n_train:] += shift
    frame = pd.DataFrame(cols)
    frame.insert(0, survey.OBJECT_ID, np.arange(n_train + n_test))
    return frame.iloc[:n_train].assign(target=90), frame.iloc[n_train:]


def test_adversarial_auc_is_half_for_identical_distributions():
    train, test = _frames(1500, 1500, shift=0.0)
    result = adversarial_validation(train, test, rounds=100)
    assert abs(result["auc"] - 0.5) < 0.06
    assert result["n_features"] == 4  # object_id and target are not features


def test_adversarial_auc_is_one_for_disjoint_distributions_and_names_the_feature():
    train, test = _frames(1000, 4000, shift=20.0)
    result = adversarial_validation(train, test, n_test=1500, rounds=50)
    assert result["auc"] > 0.99
    assert result["n_test"] == 1500
    assert result["top_features"][0]["feature"] == "f2"
    assert result["top_features"][0]["gain_share"] > 0.9


def test_adversarial_command_with_photoz_weights_and_augmented_copies(tmp_path, capsys):
    rng = np.random.default_rng(3)
    n_train, n_test = 800, 2000
    frame = lambda z, n: pd.DataFrame({"hostgal_photoz": z, "other": rng.normal(size=n)})  # noqa: E731
    train = frame(rng.gamma(2.0, 0.15, n_train), n_train)
    train.insert(0, survey.OBJECT_ID, np.arange(n_train))
    train[survey.TARGET] = rng.choice([42, 90], n_train)
    test = frame(rng.gamma(3.0, 0.3, n_test), n_test)
    test.insert(0, survey.OBJECT_ID, np.arange(n_train, n_train + n_test))
    # augmented copies at the test's photo-z: with them the training side looks more like the test
    copies = frame(rng.gamma(3.0, 0.3, 4000), 4000).assign(target=90, object_id=-1)
    build = tmp_path / "build" / "comp"
    build.mkdir(parents=True)
    train.to_parquet(build / "features_train.parquet")
    test.to_parquet(build / "features_test.parquet")
    copies.to_parquet(build / "features_augment.parquet")
    data = tmp_path / "comp"
    data.mkdir()
    args = ["adversarial", "--data", str(data), "--build-root", str(tmp_path / "build"), "--workers", "1"]
    assert cli.main(args) == 0
    assert "AUC" in capsys.readouterr().out
    results = json.loads((build / "adversarial.json").read_text())["results"]
    plain = results["train vs test"]["auc"]
    assert plain > 0.75
    assert results["train vs test"]["top_features"][0]["feature"] == "hostgal_photoz"
    assert results["photo-z weighted train vs test"]["auc"] < plain - 0.15
    assert results["train + augmented vs test"]["auc"] < plain - 0.1


def test_adversarial_command_without_features_says_what_to_do(tmp_path, capsys):
    assert cli.main(["adversarial", "--data", str(tmp_path / "x"), "--build-root", str(tmp_path / "b")]) == 2
    assert "make features" in capsys.readouterr().err
