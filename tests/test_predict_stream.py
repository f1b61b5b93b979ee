"""Every registered model through train -> predict -> predict-stream -> blend on the tiny competition; the test set
predicted chunk by chunk from its light curves equals `predict` from disk."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("keras")

from kit import blend, featurize, predict, sequences  # noqa: E402
from kit import models as registry  # noqa: E402
from kit.cli import main  # noqa: E402
from kit.config import Config  # noqa: E402
from kit.errors import InputError  # noqa: E402
from kit.files import load_proba  # noqa: E402
from kit.lightcurves import iter_object_chunks  # noqa: E402
from kit.predict_stream import predict_stream  # noqa: E402

#: Tiny training options per model (a model not named trains with its defaults).
TINY_ARGS = {
    "lgbm": ["--max-rounds", "20"],
    "lstm": ["--preset", "demo", "--epochs", "1", "--patience", "1", "--batch-size", "32", "--units", "8",
             "--dense-units", "16", "8"],
    "cnn": ["--preset", "demo", "--epochs", "1", "--patience", "1", "--batch-size", "32", "--filters", "4",
            "--dense-units", "16"],
}
TINY_ARGS["lstm_ft"] = [*TINY_ARGS["lstm"], "--freeze-epochs", "1"]  # from the encoder pretrained below


@pytest.fixture(scope="module")
def trained(competition, tmp_path_factory):
    """Every registered model trained through its train-<name> command on the tiny competition, and its test
    predictions made the usual way, from disk."""
    root = tmp_path_factory.mktemp("stream")
    config = Config(data_dir=competition, build_root=root / "build", models_root=root / "models",
                    n_folds=2, seed=5, workers=1)
    featurize.build_train(config)
    featurize.build_test(config)
    for split, src in (("train", config.train_lightcurves), ("test", config.test_lightcurves)):
        sequences.build_sequences(iter_object_chunks(src, config.chunk_rows), config.sequences_dir(split))
    common = ["--data", str(competition), "--build-root", str(config.build_root), "--models-root",
              str(config.models_root), "--folds", "2", "--seed", "5", "--workers", "1"]
    assert main(["pretrain", *common, "--preset", "demo", "--units", "8", "--epochs", "1", "--max-objects", "200"]) == 0
    for name in registry.names():
        assert main([f"train-{name}", *common, *TINY_ARGS.get(name, [])]) == 0, name
    expected = {m: predict.predict(config, m) for m in registry.names()}
    return config, expected


def test_every_registered_model_is_trained_and_blended(trained):
    config, expected = trained
    assert registry.trained(config) == registry.names()
    summary = blend.blend(config)  # default: every trained model
    assert set(summary["weights"]) == set(registry.names())
    assert summary["oof"] <= min(summary["models"].values()) + 1e-9
    ids, proba = load_proba(config.test_pred_path("blend"))
    assert len(ids) == len(expected["lgbm"][0])
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-5)


def test_streamed_predictions_equal_the_ones_from_built_features_and_sequences(trained):
    config, expected = trained
    # no build/ folder at all: the stream must not need the test features or sequences
    streamed = config.with_(build_root=config.build_root.parent / "no-build", chunk_rows=7_000)
    counts = predict_stream(streamed, registry.names())
    assert not streamed.build_dir.exists()
    n_test = len(expected["lgbm"][0])
    assert counts == {m: n_test for m in registry.names()}
    for model, (ids, proba) in expected.items():
        got_ids, got = load_proba(config.test_pred_path(model))
        order = np.argsort(got_ids)
        np.testing.assert_array_equal(got_ids[order], np.sort(ids))
        np.testing.assert_allclose(got[order], proba[np.argsort(ids)], atol=1e-5, err_msg=model)
        np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-4)


def test_stream_reads_the_file_in_many_chunks(trained, monkeypatch):
    import kit.lightcurves as lc_module

    config, _ = trained
    sizes = []
    real = lc_module.iter_object_chunks

    def spy(path, chunk_rows):
        for chunk in real(path, chunk_rows):
            sizes.append(len(chunk))
            yield chunk

    monkeypatch.setattr(lc_module, "iter_object_chunks", spy)
    predict_stream(config.with_(chunk_rows=10_000), ["lgbm"])
    assert len(sizes) >= 5 and max(sizes) < 20_000  # bounded chunks, not the whole file


def test_unknown_model_and_missing_model_are_clear(trained, tmp_path, capsys):
    config, _ = trained
    with pytest.raises(InputError, match="choose among prior, lgbm, lstm"):
        predict_stream(config, ["gp"])
    code = main(["predict-stream", "--data", str(config.data_dir), "--models-root", str(tmp_path)])
    assert code == 2 and "no trained LSTM" in capsys.readouterr().err
