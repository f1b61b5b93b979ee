"""The LSTM: shapes, masking invariance, loss == metric, save/load, tiny end-to-end training and prediction."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("keras")

import keras  # noqa: E402

from kit import lstm as lstm_module  # noqa: E402
from kit import lstm_model, metric, survey  # noqa: E402
from kit.config import Config  # noqa: E402
from kit.files import load_proba  # noqa: E402
from kit.lstm import (  # noqa: E402
    _training_dataset,
    inference_benchmark,
    load_models,
    network_steps,
    predict_proba,
    predict_test,
    train,
)
from kit.lstm_model import FoldMean, LSTMSettings, Scaler, build_model  # noqa: E402
from kit.sequences import N_FEATURES, build_sequences, length_batches, load_sequences  # noqa: E402
from tests.test_sequences import fake_lightcurves  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TINY = LSTMSettings(units=8, dense_units=(16, 8), dense_dropout=(0.25, 0.5), epochs=2, patience=1, batch_size=32)


def fake_features(ids: np.ndarray, seed: int, with_target: bool) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = len(ids)
    galactic = rng.random(n) < 0.4
    frame = pd.DataFrame({
        "object_id": ids,
        "hostgal_photoz": np.where(galactic, 0.0, rng.uniform(0.1, 1.0, n)).astype(np.float32),
        "flux_mean": rng.normal(size=n).astype(np.float32),
        "flux_std": np.where(rng.random(n) < 0.1, np.nan, rng.uniform(1, 2, n)).astype(np.float32),
    })
    if with_target:
        gal, ext = np.asarray(survey.GALACTIC_CLASSES), np.asarray(survey.EXTRAGALACTIC_CLASSES)
        frame["target"] = np.where(galactic, gal[np.arange(n) % len(gal)], ext[np.arange(n) % len(ext)])
    return frame


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("lstm")
    config = Config(data_dir=root / "data" / "tiny", build_root=root / "build", models_root=root / "models",
                    n_folds=2, seed=3, workers=1)
    for split, n, seed in (("train", 120, 0), ("test", 50, 1)):
        lc = fake_lightcurves(n, seed=seed, max_len=40)
        build_sequences([lc], config.sequences_dir(split))
        ids = lc["object_id"].unique()
        config.features_path(split).parent.mkdir(parents=True, exist_ok=True)
        fake_features(ids, seed, split == "train").to_parquet(config.features_path(split), index=False)
    summary = train(config, TINY)
    return config, summary


def test_output_shape_and_softmax():
    model = build_model(TINY, 5)
    x = {"seq": np.random.default_rng(0).normal(size=(3, 7, N_FEATURES)).astype(np.float32),
         "agg": np.zeros((3, 5), np.float32)}
    p = np.asarray(model.predict_on_batch(x))
    assert p.shape == (3, len(survey.CLASSES))
    np.testing.assert_allclose(p.sum(axis=1), 1, rtol=1e-5)


def test_padding_does_not_change_predictions(trained):
    config, _ = trained
    models, scalers, _ = load_models(config)
    seqs = load_sequences(config.sequences_dir("train"))
    index = np.arange(6)
    agg = np.random.default_rng(1).normal(size=(6, len(scalers[0].columns))).astype(np.float32)
    x_short, mask = seqs.pad(index)
    x_long, _ = seqs.pad(index, length=x_short.shape[1] + 37)
    assert not mask.all()  # some objects are padded already
    p_short = np.asarray(models[0].predict_on_batch({"seq": x_short, "agg": agg}))
    p_long = np.asarray(models[0].predict_on_batch({"seq": x_long, "agg": agg}))
    np.testing.assert_allclose(p_short, p_long, atol=1e-5)
    one = np.asarray(models[0].predict_on_batch({"seq": x_short[:1, : seqs.lengths[0]], "agg": agg[:1]}))
    np.testing.assert_allclose(one, p_short[:1], atol=1e-5)


def test_weighted_cross_entropy_is_the_metric():
    rng = np.random.default_rng(2)
    y = np.asarray(survey.CLASSES)[rng.integers(0, 14, 300)]
    p = rng.dirichlet(np.ones(14), 300)
    onehot = (y[:, None] == np.asarray(survey.CLASSES)[None, :]).astype(np.float32)
    loss = keras.losses.CategoricalCrossentropy()(onehot, p.astype(np.float32), sample_weight=metric.sample_weights(y))
    assert float(loss) == pytest.approx(metric.weighted_log_loss(y, p), rel=1e-5)


def test_training_writes_models_oof_and_score(trained):
    config, summary = trained
    out = config.model_dir("lstm")
    assert (out / "fold0.keras").exists() and (out / "fold1.keras").exists()
    ids, oof = load_proba(config.oof_path("lstm"))
    assert oof.shape == (120, 14)
    np.testing.assert_allclose(oof.sum(axis=1), 1, rtol=1e-5)
    score = json.loads(config.score_path("lstm").read_text())
    assert set(score) >= {"oof", "per_epoch", "seconds_per_epoch"}
    assert len(score["per_epoch"]) == 2 and 1 <= len(score["per_epoch"][0]) <= TINY.epochs
    frame = pd.read_parquet(config.features_path("train")).set_index("object_id").loc[ids]
    assert score["oof"] == pytest.approx(metric.weighted_log_loss(frame["target"].to_numpy(), oof), rel=1e-5)
    folds = pd.read_csv(config.folds_path)
    assert len(folds) == 120 and folds["fold"].nunique() == 2


def test_save_load_gives_identical_predictions(tmp_path, trained):
    config, _ = trained
    keras.utils.set_random_seed(0)
    model = build_model(TINY, 3)
    rng = np.random.default_rng(3)
    x = {"seq": rng.normal(size=(8, 9, N_FEATURES)).astype(np.float32),
         "agg": rng.normal(size=(8, 3)).astype(np.float32)}
    model.train_on_batch(x, np.eye(14, dtype=np.float32)[rng.integers(0, 14, 8)])
    model.save(tmp_path / "m.keras")
    again = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_array_equal(model.predict_on_batch(x), again.predict_on_batch(x))
    raw = np.array([[1.0, np.nan, 3.0], [2.0, 5.0, np.inf], [4.0, 1.0, 0.0]])
    scaler = Scaler.fit(raw, ["a", "b", "c"])
    scaler.save(tmp_path / "scaler.json")
    z = Scaler.load(tmp_path / "scaler.json").transform(raw)
    np.testing.assert_array_equal(z, scaler.transform(raw))
    assert z[0, 1] == 0 and np.isfinite(z).all()
    assert z[1, 2] == z[:, 2].max()  # +inf: the top of the training range


def test_predict_test_masks_groups_and_saves(trained):
    config, _ = trained
    ids, proba = predict_test(config)
    saved_ids, saved = load_proba(config.test_pred_path("lstm"))
    np.testing.assert_array_equal(ids, saved_ids)
    assert proba.shape == (50, 14)
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-5)
    feats = pd.read_parquet(config.features_path("test")).set_index("object_id").loc[ids]
    allowed = survey.allowed_classes_mask(survey.is_galactic(feats["hostgal_photoz"].to_numpy()))
    assert np.all(proba[~allowed] == 0)


def test_inference_benchmark(trained):
    config, _ = trained
    models, scalers, _ = load_models(config)
    result = inference_benchmark(models[0], load_sequences(config.sequences_dir("test")), len(scalers[0].columns),
                                 n_objects=40, batch_size=16, max_len=64)
    assert result["objects"] == 40 and result["bucketed_objects_per_s"] > 0 and result["padded_objects_per_s"] > 0


def _snapshot(path):
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(path.iterdir())}


def test_interrupted_retraining_leaves_the_old_models_whole(trained, monkeypatch):
    config, _ = trained
    model_dir = config.model_dir("lstm")
    before = _snapshot(model_dir)
    assert {"fold0.keras", "fold1.keras", "oof.parquet", "scaler_fold0.json", "settings.json"} <= set(before)
    built = []

    def build_then_interrupt(settings, n_aggregates):
        if built:  # fold 0 is trained again, then Ctrl-C at fold 1
            raise KeyboardInterrupt
        built.append(build_model(settings, n_aggregates))
        return built[-1]

    monkeypatch.setattr(lstm_model, "build_model", build_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        train(config, TINY)
    assert len(built) == 1
    assert _snapshot(model_dir) == before  # same files, same bytes, same times: make sees no change
    assert sorted(p.name for p in model_dir.parent.iterdir()) == ["folds.csv", "lstm"]


def test_prediction_traces_once_for_all_folds_and_batch_shapes(trained, caplog):
    """Calling each fold model in turn on length-bucketed batches retraced TensorFlow's predict function."""
    config, _ = trained
    models, scalers, _ = load_models(config)
    seqs = load_sequences(config.sequences_dir("train"))
    pos = np.arange(len(seqs))
    agg = np.random.default_rng(4).normal(size=(len(pos), len(scalers[0].columns))).astype(np.float32)
    members = models * 3  # as many calls as five folds would make
    mean = FoldMean(members)
    with caplog.at_level(logging.WARNING):
        proba = predict_proba(mean, seqs, pos, agg, batch_size=16, max_len=64)
    widths = {seqs.pad(b, 64)[0].shape[1] for b in length_batches(seqs.lengths[pos], 16, 64)}
    assert len(widths) >= 3 and len(pos) % 16  # several step counts and a short last batch
    assert mean.predict_function.experimental_get_tracing_count() <= 2
    assert not [r for r in caplog.records if "retracing" in r.getMessage()]
    each = np.mean([predict_proba(m, seqs, pos, agg, 16, 64) for m in members], axis=0)
    np.testing.assert_allclose(proba, each, atol=1e-6)


def test_tensorflow_start_up_lines_only_with_verbose(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    stderr = {}
    for flag in ([], ["-v"]):
        done = subprocess.run(
            [sys.executable, "-m", "kit", "predict", "--model", "lstm", "--data", str(tmp_path / "sim-x"),
             "--models-root", str(tmp_path / "models"), *flag],
            capture_output=True, text=True, env=env, cwd=ROOT, timeout=300,
        )
        assert done.returncode == 2  # the kit's own error: no trained LSTM (TensorFlow was loaded first)
        stderr[bool(flag)] = done.stderr.splitlines()
    assert len(stderr[False]) == 1 and stderr[False][0].startswith("error:") and "no trained LSTM" in stderr[False][0]
    assert stderr[False][0] in stderr[True] and len(stderr[True]) > 1  # -v shows TensorFlow's lines


def test_training_batches_leave_the_step_axis_open(trained):
    """Keras fixes the input signature from the first two batches: they must differ in steps when any batches do."""
    config, _ = trained
    seqs = load_sequences(config.sequences_dir("train"))
    n = len(seqs)
    onehot = np.zeros((n, len(survey.CLASSES)), np.float32)
    bucketed = replace(TINY, length_buckets=4, bucket_mix=0.0)
    for settings in (bucketed, TINY, replace(TINY, batch_size=50)):  # TINY: random batches, the default
        dataset = _training_dataset(seqs, np.arange(n), np.zeros((n, 3), np.float32), onehot, np.ones(n), settings, 0)
        signature = [dataset[i][0]["seq"].shape[1] for i in (0, 1)]  # what Keras peeks at before fit
        assert settings is not bucketed or len(set(signature)) > 1
        for _ in range(6):  # Keras reshuffles before the first epoch, then after each
            dataset.on_epoch_end()
            widths = [dataset[i][0]["seq"].shape[1] for i in range(len(dataset))]
            # an open step axis, or one fixed width that every later batch keeps
            assert len(set(signature)) > 1 or set(widths) == {signature[0]}
            assert {widths[0], widths[1]} == {min(widths), max(widths)}


# --- the defects of issue 11: batch-norm statistics, unbounded scaling, wrong-group rows, the fold's scaler ---


def _fold0(config):
    """Fold 0's training positions in the features' order, its raw aggregates and columns."""
    frame = pd.read_parquet(config.features_path("train"))
    seqs = load_sequences(config.sequences_dir("train"))
    pos = seqs.positions(frame["object_id"].to_numpy())
    frame["log_flux_scale"] = seqs.log_scale[pos]
    folds = pd.read_csv(config.folds_path).set_index("object_id")["fold"].reindex(frame["object_id"]).to_numpy()
    return frame, seqs, pos, folds


def test_batch_norm_statistics_match_the_training_inputs(trained):
    """After training, each BN layer's moving mean/variance are those of its inputs over the training part."""
    config, _ = trained
    models, scalers, _ = load_models(config)
    model, scaler = models[0], scalers[0]
    frame, seqs, pos, folds = _fold0(config)
    tr = np.flatnonzero(folds != 0)
    agg = scaler.transform(frame[scaler.columns].to_numpy(np.float64))[tr]
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(norms) == 1 + len(TINY.dense_units)
    probe = keras.Model(model.input, [layer.input for layer in norms])
    x, _ = seqs.pad(pos[tr], TINY.max_len, length=int(seqs.lengths.max()))  # one batch, padded wide
    inputs = probe({"seq": network_steps(x), "agg": agg}, training=False)
    for layer, h in zip(norms, inputs, strict=True):
        h = np.asarray(h, np.float64)
        np.testing.assert_allclose(np.asarray(layer.moving_mean), h.mean(axis=0), rtol=1e-3, atol=1e-4)
        np.testing.assert_allclose(np.asarray(layer.moving_variance), h.var(axis=0), rtol=1e-3, atol=1e-4)


def test_scaler_keeps_a_huge_feature_within_the_training_range():
    rng = np.random.default_rng(5)
    train_x = np.column_stack([rng.lognormal(0, 3, 500), rng.normal(size=500)])
    scaler = Scaler.fit(train_x, ["heavy", "plain"])
    z_train = scaler.transform(train_x)
    z = scaler.transform(np.array([[1e30, -1e30], [-np.inf, np.nan]]))
    assert np.all(z >= z_train.min(axis=0)) and np.all(z <= z_train.max(axis=0))
    assert z[0, 0] == z_train[:, 0].max() and z[0, 1] == z_train[:, 1].min() and z[1, 1] == 0
    assert np.abs(z_train).max() < 10  # bounded transform: no heavy tail left in training either


def test_a_huge_test_feature_gives_finite_probabilities(trained, tmp_path):
    config, _ = trained
    other = config.with_(build_root=tmp_path / "build", models_root=tmp_path / "models")
    shutil.copytree(config.sequences_dir("test"), other.sequences_dir("test"))
    shutil.copytree(config.model_dir("lstm"), other.model_dir("lstm"))
    frame = pd.read_parquet(config.features_path("test"))
    frame.loc[0, "flux_mean"], frame.loc[1, "flux_std"], frame.loc[2, "flux_mean"] = 1e30, np.inf, -1e30
    frame.to_parquet(other.features_path("test"), index=False)
    _, scalers, _ = load_models(other)
    for scaler in scalers:
        z = scaler.transform(frame[[c for c in scaler.columns if c != "log_flux_scale"]].assign(
            log_flux_scale=0.0)[scaler.columns].to_numpy(np.float64))
        assert np.all(z >= scaler.low - 1e-6) and np.all(z <= scaler.high + 1e-6)
    ids, proba = predict_test(other)
    assert np.isfinite(proba).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-5)


def test_rows_on_the_wrong_group_are_counted_and_reported(trained, tmp_path, monkeypatch, caplog):
    config, summary = trained
    assert isinstance(summary["wrong_group_rows"]["oof"], int)
    other = config.with_(build_root=tmp_path / "build", models_root=tmp_path / "models")
    shutil.copytree(config.build_dir, other.build_dir)
    shutil.copytree(config.model_dir("lstm"), other.model_dir("lstm"))

    def all_extragalactic(model, seqs, pos, agg, batch_size, max_len):
        p = np.zeros((len(pos), len(survey.CLASSES)))
        p[:, survey.CLASSES.index(survey.EXTRAGALACTIC_CLASSES[0])] = 1.0
        return p

    monkeypatch.setattr(lstm_module, "predict_proba", all_extragalactic)
    with caplog.at_level(logging.WARNING):
        ids, _ = predict_test(other)
    feats = pd.read_parquet(other.features_path("test")).set_index("object_id").loc[ids]
    n_galactic = int(survey.is_galactic(feats["hostgal_photoz"].to_numpy()).sum())
    assert n_galactic > 0
    score = json.loads(other.score_path("lstm").read_text())
    assert score["wrong_group_rows"]["test"] == n_galactic
    assert any(f"{n_galactic} of {len(ids)} test rows" in r.getMessage() for r in caplog.records)


def test_each_fold_scaler_is_fitted_on_its_training_part_only(trained):
    config, _ = trained
    _, scalers, _ = load_models(config)
    frame, _, _, folds = _fold0(config)
    for k, saved in enumerate(scalers):
        raw = frame[saved.columns].to_numpy(np.float64)
        own = Scaler.fit(raw[folds != k], saved.columns)
        for field in ("mean", "std", "low", "high"):
            np.testing.assert_allclose(getattr(saved, field), getattr(own, field), rtol=1e-12, err_msg=field)
        everything = Scaler.fit(raw, saved.columns)
        assert not np.allclose(saved.mean, everything.mean)  # the validation rows would have moved it
