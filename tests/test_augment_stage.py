"""The `augment` stage and LightGBM on augmented copies: parents and copies never straddle folds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kit import augment, featurize, lgbm, survey
from kit.config import Config
from kit.folds import load_or_make_folds


@pytest.fixture(scope="module")
def built(competition, tmp_path_factory):
    root = tmp_path_factory.mktemp("aug")
    config = Config(data_dir=competition, build_root=root / "build", models_root=root / "models", workers=2, seed=3)
    settings = augment.AugmentSettings(copies=3, galactic_copies=1)
    augment.build_augmented(config, settings, ("aggregate", "gp"))
    for kind in ("aggregate", "gp"):
        featurize.build_train(config, kind=kind)
    return config, settings


def test_copies_have_parents_targets_and_both_feature_sets(built):
    config, settings = built
    copies = featurize.load_train_features(config, ("aggregate", "gp"), split="augment")
    train = featurize.load_train_features(config, ("aggregate",))
    parents = train.set_index(survey.OBJECT_ID)
    assert len(copies) > 0 and copies[survey.OBJECT_ID].is_unique
    assert (copies[survey.OBJECT_ID] >= augment.ID_BASE).all()
    assert copies[survey.PARENT_ID].isin(parents.index).all()
    assert (copies[survey.TARGET].to_numpy() == parents.loc[copies[survey.PARENT_ID], survey.TARGET].to_numpy()).all()
    assert "gp_time_scale" in copies and "flux_mean" in copies
    per_parent = copies.groupby(survey.PARENT_ID).size()
    exg = parents.loc[per_parent.index, "hostgal_photoz"] > 0
    assert per_parent[exg.to_numpy()].max() <= settings.copies
    assert per_parent[~exg.to_numpy()].max() <= settings.galactic_copies
    galactic_copies = copies[copies[survey.PARENT_ID].isin(parents.index[parents["hostgal_photoz"] == 0])]
    assert (galactic_copies["hostgal_photoz"] == 0).all()


def test_stage_resumes_from_its_parts(built, caplog):
    config, settings = built
    before = pd.read_parquet(config.features_path("augment", "gp"))
    parts = sorted((config.build_dir / "augment.parts").glob("part-*-gp.parquet"))
    parts[0].unlink()
    config.features_path("augment").unlink()
    augment.build_augmented(config, settings, ("aggregate", "gp"))
    pd.testing.assert_frame_equal(pd.read_parquet(config.features_path("augment", "gp")), before, check_exact=True)


def test_lgbm_on_copies_keeps_them_in_their_parents_fold_and_scores_originals_only(built, monkeypatch):
    config, _ = built
    seen = []
    real_dataset = lgbm.lgb.Dataset

    def spy(x, *args, **kw):
        seen.append(np.asarray(x))
        return real_dataset(x, *args, **kw)

    monkeypatch.setattr(lgbm.lgb, "Dataset", spy)
    settings = lgbm.LGBMSettings(max_rounds=15, early_stopping=5)
    summary = lgbm.train(config, settings, ("aggregate", "gp"), augmented=True)
    train = featurize.load_train_features(config, ("aggregate", "gp"))
    copies = featurize.load_train_features(config, ("aggregate", "gp"), split="augment")
    columns = lgbm.feature_columns(train)
    folds = pd.Series(load_or_make_folds(config, train[survey.OBJECT_ID].to_numpy(),
                                         train[survey.TARGET].to_numpy()), index=train[survey.OBJECT_ID])
    key = {row.tobytes(): oid for oid, row in zip(train[survey.OBJECT_ID], train[columns].to_numpy(np.float32),
                                                      strict=True)}
    ckey = {row.tobytes(): pid for pid, row in zip(copies[survey.PARENT_ID], copies[columns].to_numpy(np.float32),
                                                       strict=True)}
    for k in range(int(folds.max()) + 1):
        fit, valid = seen[2 * k], seen[2 * k + 1]
        valid_ids = {key[r.tobytes()] for r in valid}
        assert valid_ids == set(folds.index[folds == k])  # validation: originals of fold k only
        fit_parents = {ckey[r.tobytes()] for r in fit if r.tobytes() in ckey}
        fit_originals = {key[r.tobytes()] for r in fit if r.tobytes() in key}
        assert fit_parents and not fit_parents & valid_ids  # no copy of a validation object trains
        assert not fit_originals & valid_ids
    oof = pd.read_parquet(config.oof_path("lgbm"))
    assert len(oof) == len(train) and summary["augmented_copies"] == len(copies)
    assert summary["feature_sets"] == ["aggregate", "gp"]


def test_pseudo_labels_are_the_confident_sn_predictions_capped_and_train_in_every_fold(built, tmp_path, monkeypatch):
    from kit.files import save_proba

    config, _ = built
    featurize.build_test(config)
    test_ids = pd.read_parquet(config.features_path("test"), columns=[survey.OBJECT_ID])[survey.OBJECT_ID].to_numpy()
    proba = np.full((test_ids.size, len(survey.CLASSES)), 1.0 / len(survey.CLASSES))
    i90, i42 = survey.CLASSES.index(90), survey.CLASSES.index(42)
    proba[:5] = 0.0
    proba[:5, i90] = [0.999, 0.99, 0.986, 0.5, 0.984]  # three above the threshold
    proba[5:7] = 0.0
    proba[5:7, i42] = 1.0
    save_proba(tmp_path / "test.parquet", test_ids, proba)
    picked = lgbm.pseudo_labelled(config, tmp_path / "test.parquet", ("aggregate",), n_train=100)
    assert dict(zip(picked[survey.OBJECT_ID], picked[survey.TARGET], strict=True)) == {
        test_ids[0]: 90, test_ids[1]: 90, test_ids[2]: 90, test_ids[5]: 42, test_ids[6]: 42}
    monkeypatch.setattr(lgbm, "PSEUDO_RATIO", 2 / 100)
    assert len(lgbm.pseudo_labelled(config, tmp_path / "test.parquet", ("aggregate",), n_train=100)) == 2
    monkeypatch.setattr(lgbm, "PSEUDO_RATIO", 1.0)
    summary = lgbm.train(config, lgbm.LGBMSettings(max_rounds=5, early_stopping=2), ("aggregate",),
                         pseudo_from=tmp_path / "test.parquet")
    assert summary["pseudo_labels"] == 5


def test_reweighting_moves_photoz_weights_and_keeps_each_class_total(built, monkeypatch):
    config, _ = built
    weights = []
    real_dataset = lgbm.lgb.Dataset

    def spy(x, label=None, weight=None, **kw):
        weights.append((np.asarray(label), np.asarray(weight)))
        return real_dataset(x, label, weight=weight, **kw)

    monkeypatch.setattr(lgbm.lgb, "Dataset", spy)
    summary = lgbm.train(config, lgbm.LGBMSettings(max_rounds=3, early_stopping=2), ("aggregate",), reweight=True)
    assert summary["photoz_reweighting"] is True
    label, weight = weights[0]  # fold 0's training part
    plain = lgbm.metric.sample_weights(np.asarray(survey.CLASSES)[label])
    assert not np.allclose(weight, plain)
    for c in np.unique(label):
        assert weight[label == c].sum() == pytest.approx(plain[label == c].sum())


def test_copy_rows_draws_at_most_n_copies_of_training_parents_only():
    from kit import lstm

    parent_row = np.array([-1, -1, -1, 0, 0, 0, 1, 1, 2, 2, 2, 2])
    train = np.array([0, 2])
    rows = lstm.copy_rows(train, parent_row, 2, np.random.default_rng(0))
    counts = np.bincount(parent_row[rows], minlength=3)
    assert counts.tolist() == [2, 0, 2]  # two of each training parent's copies, none of object 1's
    assert (lstm.copy_rows(train, parent_row, 2, np.random.default_rng(0)) == rows).all()  # seeded
    draws = {tuple(lstm.copy_rows(train, parent_row, 2, np.random.default_rng(s))) for s in range(20)}
    assert len(draws) > 1  # a random choice, not always the first copies
    assert lstm.copy_rows(train, parent_row, 10, np.random.default_rng(0)).tolist() == [3, 4, 5, 8, 9, 10, 11]


def test_network_on_copies_keeps_them_in_their_parents_fold_and_scores_originals_only(built, monkeypatch):
    from kit import sequences
    from kit.lightcurves import iter_object_chunks
    from kit.models import cnn

    config, _ = built
    sequences.build_sequences(iter_object_chunks(config.train_lightcurves, config.chunk_rows),
                              config.sequences_dir("train"))
    seen = []
    real = cnn._training_dataset

    def spy(seqs, pos, *args, **kw):
        seen.append(seqs.object_ids[pos])
        return real(seqs, pos, *args, **kw)

    monkeypatch.setattr(cnn, "_training_dataset", spy)
    settings = cnn.CNNSettings(filters=(4,), dense_units=(8,), dense_dropout=(0.3,), epochs=1, patience=1,
                               batch_size=32, augmented_copies=2)
    summary = cnn.train(config, settings)
    train = featurize.load_train_features(config, ("aggregate",))
    copies = featurize.load_train_features(config, ("aggregate",), split="augment")
    parent = dict(zip(copies[survey.OBJECT_ID], copies[survey.PARENT_ID], strict=True))
    ids = train[survey.OBJECT_ID].to_numpy()
    folds = pd.Series(load_or_make_folds(config, ids, train[survey.TARGET].to_numpy()), index=ids)
    assert len(seen) == folds.max() + 1
    for k, fit_ids in enumerate(seen):
        originals = {i for i in fit_ids if i < augment.ID_BASE}
        fit_parents = pd.Series([parent[i] for i in fit_ids if i >= augment.ID_BASE])
        assert originals == set(folds.index[folds != k])  # every training original, no validation object
        assert len(fit_parents) == summary["augmented_copies"][k] > 0
        assert set(fit_parents) <= originals  # no copy of a validation object trains
        assert fit_parents.value_counts().max() <= 2
    oof = pd.read_parquet(config.oof_path("cnn"))
    assert sorted(oof[survey.OBJECT_ID]) == sorted(ids)  # OOF: the originals, every one, and nothing else


def test_copies_light_curves_are_refused_when_missing_or_from_another_run(tmp_path):
    import os

    from kit.errors import InputError

    config = Config(data_dir=tmp_path / "sim-x", build_root=tmp_path / "build", models_root=tmp_path / "models")
    with pytest.raises(InputError, match="make augment"):
        augment.copies_lightcurves(config)  # nothing made yet
    features = config.features_path("augment")
    features.parent.mkdir(parents=True)
    features.write_bytes(b"")
    with pytest.raises(InputError, match="missing or newer"):
        augment.copies_lightcurves(config)  # features without the parts
    parts = config.build_dir / "augment.parts"
    parts.mkdir()
    pd.DataFrame({"object_id": [1]}).to_parquet(parts / "part-00000-lightcurves.parquet")
    (parts / "manifest.json").write_text("{}")
    os.utime(features, ns=(1, 1))  # a later `make augment` started over: its manifest is newer than the features
    with pytest.raises(InputError, match="rerun `make augment`"):
        augment.copies_lightcurves(config)
    os.utime(features, None)
    assert augment.copies_lightcurves(config)["object_id"].tolist() == [1]
