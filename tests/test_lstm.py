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
from kit.errors import InputError  # noqa: E402
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
from kit.lstm_model import PRESETS, FoldMean, LSTMSettings, Scaler, build_encoder, build_model  # noqa: E402
from kit.sequences import N_FEATURES, build_sequences, length_batches, load_sequences  # noqa: E402
from tests.test_sequences import fake_lightcurves  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TINY = LSTMSettings(units=8, dense_units=(16, 8), dense_dropout=(0.25, 0.5), epochs=2, patience=1, batch_size=32)
#: The default preset (rest-frame time, S/N, bidirectional GRU + attention, GP features, augmentation), tiny.
TINY_V2 = replace(PRESETS["default"], units=8, step_units=8, dense_units=(16, 8), dense_dropout=(0.25, 0.5),
                  epochs=2, patience=1, batch_size=32)


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


def tiny_competition(root: Path, gp: bool = False) -> Config:
    """Sequences and features (+ GP features: two columns) of 120 training and 50 test objects."""
    config = Config(data_dir=root / "data" / "tiny", build_root=root / "build", models_root=root / "models",
                    n_folds=2, seed=3, workers=1)
    for split, n, seed in (("train", 120, 0), ("test", 50, 1)):
        lc = fake_lightcurves(n, seed=seed, max_len=40)
        build_sequences([lc], config.sequences_dir(split))
        ids = lc["object_id"].unique()
        config.features_path(split).parent.mkdir(parents=True, exist_ok=True)
        fake_features(ids, seed, split == "train").to_parquet(config.features_path(split), index=False)
        if gp:
            rng = np.random.default_rng(seed + 10)
            frame = pd.DataFrame({"object_id": ids, "gp_peak": rng.normal(size=n), "gp_width": rng.uniform(1, 9, n)})
            frame.to_parquet(config.features_path(split, "gp"), index=False)
    return config


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    config = tiny_competition(tmp_path_factory.mktemp("lstm"))
    summary = train(config, TINY)
    return config, summary


@pytest.fixture(scope="module")
def trained_v2(tmp_path_factory):
    """The default preset, tiny, trained with GP features on the dense side."""
    config = tiny_competition(tmp_path_factory.mktemp("lstm_v2"), gp=True)
    summary = train(config, TINY_V2)
    return config, summary


def test_output_shape_and_softmax():
    model = build_model(TINY, 5)
    x = {"seq": np.random.default_rng(0).normal(size=(3, 7, N_FEATURES)).astype(np.float32),
         "agg": np.zeros((3, 5), np.float32)}
    p = np.asarray(model.predict_on_batch(x))
    assert p.shape == (3, len(survey.CLASSES))
    np.testing.assert_allclose(p.sum(axis=1), 1, rtol=1e-5)


@pytest.mark.parametrize("fixture", ["trained", "trained_v2"])
def test_padding_does_not_change_predictions(fixture, request):
    config, _ = request.getfixturevalue(fixture)
    models, scalers, saved = load_models(config)
    settings = LSTMSettings.from_dict(saved)
    seqs = load_sequences(config.sequences_dir("train"))
    index = np.arange(6)
    agg = np.random.default_rng(1).normal(size=(6, len(scalers[0].columns))).astype(np.float32)
    photoz = np.array([0.0, 0.3, 0.0, 1.2, 0.5, 0.0])
    x_short, mask = seqs.pad(index)
    x_long, _ = seqs.pad(index, length=x_short.shape[1] + 37)
    assert not mask.all()  # some objects are padded already
    short, long = network_steps(x_short, settings, photoz), network_steps(x_long, settings, photoz)
    assert short.shape[-1] == settings.n_features and not long[:, x_short.shape[1]:].any()  # padding stays zero
    p_short = np.asarray(models[0].predict_on_batch({"seq": short, "agg": agg}))
    p_long = np.asarray(models[0].predict_on_batch({"seq": long, "agg": agg}))
    np.testing.assert_allclose(p_short, p_long, atol=1e-5)
    one = np.asarray(models[0].predict_on_batch({"seq": short[:1, : seqs.lengths[0]], "agg": agg[:1]}))
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
    bucketed = replace(TINY, length_buckets=4, bucket_mix=0.0, batch_size=8)  # full batches in every bucket
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
    if config.features_path("train", "gp").exists():
        frame = frame.merge(pd.read_parquet(config.features_path("train", "gp")), on="object_id")
    seqs = load_sequences(config.sequences_dir("train"))
    pos = seqs.positions(frame["object_id"].to_numpy())
    frame["log_flux_scale"] = seqs.log_scale[pos]
    folds = pd.read_csv(config.folds_path).set_index("object_id")["fold"].reindex(frame["object_id"]).to_numpy()
    return frame, seqs, pos, folds


@pytest.mark.parametrize("fixture", ["trained", "trained_v2"])
def test_batch_norm_statistics_match_the_training_inputs(fixture, request):
    """After training, each BN layer's moving mean/variance are those of its inputs over the training part."""
    config, _ = request.getfixturevalue(fixture)
    models, scalers, saved = load_models(config)
    settings = LSTMSettings.from_dict(saved)
    model, scaler = models[0], scalers[0]
    frame, seqs, pos, folds = _fold0(config)
    tr = np.flatnonzero(folds != 0)
    agg = scaler.transform(frame[scaler.columns].to_numpy(np.float64))[tr]
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(norms) == 1 + len(settings.dense_units)
    probe = keras.Model(model.input, [layer.input for layer in norms])
    x, _ = seqs.pad(pos[tr], settings.max_len, length=int(seqs.lengths.max()))  # one batch, padded wide
    steps = network_steps(x, settings, frame["hostgal_photoz"].to_numpy()[tr])
    inputs = probe({"seq": steps, "agg": agg}, training=False)
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

    def all_extragalactic(model, seqs, pos, agg, *args):
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


# --- issue 11 part 2: the better sequence network (presets, rest-frame time, S/N, GP features, augmentation) ---


def _hand_steps() -> np.ndarray:
    """Two objects of stored steps (see kit.sequences): observations 10 and 30 days after the first, padded to 5."""
    x = np.zeros((2, 5, N_FEATURES), np.float32)
    for row in x:
        row[:3, 0] = np.log1p([0.0, 10.0, 20.0])  # log1p(days since the previous observation)
        row[:3, 1] = [0.5, -1.0, 0.25]  # flux / s
        row[:3, 2] = [0.25, 0.5, 0.05]  # flux_err / s
        row[:3, 3] = [1, 0, 1]
        row[np.arange(3), 4 + np.array([0, 2, 5])] = 1.0
    return x


def test_rest_frame_time_and_snr_are_applied_to_extragalactic_objects_only():
    settings = PRESETS["default"]
    photoz = np.array([0.0, 1.0])  # galactic, then extragalactic at z = 1
    steps = network_steps(_hand_steps(), settings, photoz)
    assert steps.shape == (2, 5, 11) and settings.n_features == 11
    np.testing.assert_allclose(steps[0, :3, 0], np.log1p([0.0, 10.0, 20.0]), rtol=1e-6)  # observed days
    np.testing.assert_allclose(steps[1, :3, 0], np.log1p([0.0, 5.0, 10.0]), rtol=1e-6)  # days / (1 + z)
    for row in steps:
        np.testing.assert_allclose(row[:3, 1], [0.5, -1.0, 0.25])
        np.testing.assert_allclose(row[:3, 2], np.log1p([0.25, 0.5, 0.05]), rtol=1e-6)
        np.testing.assert_allclose(row[:3, 4], np.arcsinh([2.0, -2.0, 5.0]), rtol=1e-6)  # asinh(flux / flux_err)
        np.testing.assert_array_equal(row[:3, 5:].argmax(axis=1), [0, 2, 5])
    assert not steps[:, 3:].any()  # padding stays zero
    seed = network_steps(_hand_steps(), PRESETS["seed"], photoz)  # the seed: observed days, 10 features
    assert seed.shape == (2, 5, 10)
    np.testing.assert_allclose(seed[1, :3, 0], np.log1p([0.0, 10.0, 20.0]), rtol=1e-6)


def test_dropped_points_keep_the_times_of_the_observations_left():
    settings = replace(PRESETS["default"], drop_points=0.9, flux_jitter=0.0, z_jitter=0.0, rest_frame=False)
    x = np.zeros((1, 12, N_FEATURES), np.float32)
    days = np.array([0, 1, 3, 6, 10, 15, 21, 28, 36, 45], np.float64)  # observation times
    x[0, :10, 0] = np.log1p(np.diff(days, prepend=0.0))
    x[0, :10, 1] = np.arange(10) / 10 + 0.05  # flux / s names each observation
    x[0, :10, 2] = 1.0
    x[0, :10, 4] = 1.0
    dropped = 0
    for seed in range(5):
        out = network_steps(x.copy(), settings, np.zeros(1), np.random.default_rng(seed))
        kept = out[0, :, 5:].any(axis=1)
        n = int(kept.sum())
        assert 3 <= n <= 10 and kept[:n].all()  # at least 3 kept, moved to the front
        which = np.rint((out[0, :n, 1] - 0.05) * 10).astype(int)
        assert np.all(np.diff(which) > 0)  # in time order
        np.testing.assert_allclose(np.expm1(out[0, :n, 0]), np.diff(days[which], prepend=days[which[0]]), rtol=1e-5)
        dropped += 10 - n
    assert dropped > 0


def test_augmentation_changes_training_inputs_but_never_prediction_inputs(trained_v2):
    config, _ = trained_v2
    seqs = load_sequences(config.sequences_dir("train"))
    n = len(seqs)
    pos = np.arange(n)
    photoz = np.where(np.arange(n) % 2, 0.5, 0.0)
    onehot = np.zeros((n, len(survey.CLASSES)), np.float32)
    dataset = _training_dataset(seqs, pos, np.zeros((n, 3), np.float32), onehot, np.ones(n), TINY_V2, 0, photoz)
    batch = dataset.batches[0]
    x, _ = seqs.pad(pos[batch], TINY_V2.max_len, length=dataset.width)
    plain = network_steps(x.copy(), TINY_V2, photoz[batch])
    first = dataset[0][0]["seq"]
    assert first.shape == plain.shape and not np.allclose(first, plain)
    np.testing.assert_array_equal(dataset[0][0]["seq"], first)  # one draw per batch and epoch (seeded)
    other = network_steps(x.copy(), TINY_V2, photoz[batch], np.random.default_rng(99))
    assert not np.allclose(other, first)  # another epoch's seed, another draw
    # redshift jitter alone: extragalactic times move, galactic ones never
    z_only = replace(TINY_V2, drop_points=0.0, flux_jitter=0.0)
    jittered = network_steps(x.copy(), z_only, photoz[batch], np.random.default_rng(1))
    galactic = photoz[batch] == 0
    np.testing.assert_array_equal(jittered[galactic], plain[galactic])
    assert not np.allclose(jittered[~galactic, :, 0], plain[~galactic, :, 0])
    # prediction: the same inputs every time, with no augmentation
    models, scalers, saved = load_models(config)
    settings = LSTMSettings.from_dict(saved)
    assert settings.augments
    agg = np.random.default_rng(2).normal(size=(n, len(scalers[0].columns))).astype(np.float32)
    p1 = predict_proba(models[0], seqs, pos, agg, 16, 64, settings, photoz)
    p2 = predict_proba(models[0], seqs, pos, agg, 16, 64, settings, photoz)
    np.testing.assert_array_equal(p1, p2)
    first_batch = length_batches(seqs.lengths[pos], 16, 64)[0]
    xb, _ = seqs.pad(pos[first_batch], 64)
    direct = models[0].predict_on_batch({"seq": network_steps(xb, settings, photoz[first_batch]),
                                         "agg": agg[first_batch]})
    np.testing.assert_allclose(p1[first_batch], np.asarray(direct), atol=1e-6)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_presets_build_and_predict(preset):
    settings = replace(PRESETS[preset], units=8, step_units=min(PRESETS[preset].step_units, 8))
    encoder = build_encoder(settings)
    assert encoder.name == "encoder" and encoder.input["seq"].shape[-1] == settings.n_features
    x = network_steps(_hand_steps(), settings, np.array([0.0, 0.4]))
    d = np.asarray(encoder.predict_on_batch({"seq": x})).shape
    assert d == (2, 8 * (1 + settings.bidirectional))
    model = build_model(settings, 4, encoder=encoder)  # a given (pretrained) encoder is used as it is
    assert model.get_layer("encoder") is encoder
    p = np.asarray(model.predict_on_batch({"seq": x, "agg": np.zeros((2, 4), np.float32)}))
    assert p.shape == (2, len(survey.CLASSES))
    np.testing.assert_allclose(p.sum(axis=1), 1, rtol=1e-5)


def test_default_preset_trains_on_gp_features_and_predicts_the_test_set(trained_v2, tmp_path):
    config, summary = trained_v2
    assert summary["settings"]["features"] == ["aggregate", "gp"] and summary["settings"]["encoder"] == "gru"
    _, scalers, _ = load_models(config)
    assert {"gp_peak", "gp_width", "flux_mean", "log_flux_scale"} <= set(scalers[0].columns)
    ids, proba = predict_test(config)
    assert proba.shape == (50, 14) and np.isfinite(proba).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-5)
    with pytest.raises(InputError, match="features aggregate"):
        lstm_module.Predictor(config)  # streamed chunks have no GP features: say how to retrain
    other = config.with_(build_root=tmp_path / "build", models_root=config.models_root)
    shutil.copytree(config.sequences_dir("test"), other.sequences_dir("test"))
    shutil.copy(config.features_path("test"), other.features_path("test"))
    with pytest.raises(InputError, match="make gp-features"):
        predict_test(other)


def test_without_gp_features_the_dense_side_falls_back_to_aggregate(tmp_path, caplog):
    config = Config(data_dir=tmp_path / "data" / "x", build_root=tmp_path / "build")
    with caplog.at_level(logging.WARNING):
        assert lstm_module.feature_sets(config, ("aggregate", "gp")) == ("aggregate",)
    assert any("make gp-features" in r.getMessage() for r in caplog.records)
    config.features_path("train", "gp").parent.mkdir(parents=True)
    config.features_path("train", "gp").write_bytes(b"")
    assert lstm_module.feature_sets(config, ("aggregate", "gp")) == ("aggregate", "gp")


def test_feature_option_accepts_spaces_and_refuses_sets_without_aggregate():
    assert lstm_module.parse_features("aggregate, gp") == ("aggregate", "gp")
    assert lstm_module.parse_features("aggregate") == ("aggregate",)
    for bad in ("gp", "aggregate,gps", ""):
        with pytest.raises(InputError):
            lstm_module.parse_features(bad)
