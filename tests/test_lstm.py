"""The LSTM: shapes, masking invariance, loss == metric, save/load, tiny end-to-end training and prediction."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("keras")

import keras  # noqa: E402

from kit import lstm_model, metric, survey  # noqa: E402
from kit.config import Config  # noqa: E402
from kit.files import load_proba  # noqa: E402
from kit.lstm import _training_dataset, inference_benchmark, load_models, predict_proba, predict_test, train  # noqa: E402
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
    models, scaler, _ = load_models(config)
    seqs = load_sequences(config.sequences_dir("train"))
    index = np.arange(6)
    agg = np.random.default_rng(1).normal(size=(6, len(scaler.columns))).astype(np.float32)
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
    assert z[0, 1] == 0 and z[1, 2] == 0 and np.isfinite(z).all()


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
    models, scaler, _ = load_models(config)
    result = inference_benchmark(models[0], load_sequences(config.sequences_dir("test")), len(scaler.columns),
                                 n_objects=40, batch_size=16, max_len=64)
    assert result["objects"] == 40 and result["bucketed_objects_per_s"] > 0 and result["padded_objects_per_s"] > 0


def _snapshot(path):
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(path.iterdir())}


def test_interrupted_retraining_leaves_the_old_models_whole(trained, monkeypatch):
    config, _ = trained
    model_dir = config.model_dir("lstm")
    before = _snapshot(model_dir)
    assert {"fold0.keras", "fold1.keras", "oof.parquet", "scaler.json", "settings.json"} <= set(before)
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
    models, scaler, _ = load_models(config)
    seqs = load_sequences(config.sequences_dir("train"))
    pos = np.arange(len(seqs))
    agg = np.random.default_rng(4).normal(size=(len(pos), len(scaler.columns))).astype(np.float32)
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
    dataset = _training_dataset(seqs, np.arange(n), np.zeros((n, 3), np.float32), onehot, np.ones(n), TINY, 0)
    for _ in range(6):  # a new shuffle each epoch
        widths = [dataset[i][0]["seq"].shape[1] for i in range(len(dataset))]
        assert len(set(widths)) > 1
        assert {widths[0], widths[1]} == {min(widths), max(widths)}
        dataset.on_epoch_end()
