"""The LightGBM baseline: early stopping on the reported (masked) score; re-training replaces the models whole."""

from __future__ import annotations

import json
import os

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from kit import lgbm, metric, survey
from kit.config import Config
from kit.files import load_proba

FAST = lgbm.LGBMSettings(learning_rate=0.1, max_rounds=300, early_stopping=10)


def fake_features(n: int = 600, seed: int = 0) -> pd.DataFrame:
    """Class-dependent features with noise; hostgal_photoz 0 exactly for the galactic classes."""
    rng = np.random.default_rng(seed)
    y = np.asarray(survey.CLASSES)[rng.integers(0, len(survey.CLASSES), n)]
    galactic = np.isin(y, survey.GALACTIC_CLASSES)
    centres = rng.normal(size=(len(survey.CLASSES), 6))
    x = centres[np.searchsorted(survey.CLASSES, y)] + rng.normal(scale=1.5, size=(n, 6))
    frame = pd.DataFrame(x.astype(np.float32), columns=[f"f{i}" for i in range(6)])
    frame.insert(0, survey.OBJECT_ID, np.arange(n, dtype=np.int64) * 7 + 13)
    # a noisy photo-z that does not give the group away: the model leaks probability across groups
    frame["hostgal_photoz"] = np.where(galactic, 0.0, rng.uniform(0.0, 1.0, n) * (rng.random(n) < 0.8)).astype(
        np.float32)
    frame.loc[~galactic & (frame["hostgal_photoz"] == 0), "hostgal_photoz"] = 1e-3
    frame["target"] = y
    return frame


@pytest.fixture
def config(tmp_path) -> Config:
    cfg = Config(data_dir=tmp_path / "data" / "tiny", build_root=tmp_path / "build", models_root=tmp_path / "models",
                 n_folds=3, seed=5, workers=1)
    cfg.features_path("train").parent.mkdir(parents=True)
    fake_features().to_parquet(cfg.features_path("train"), index=False)
    return cfg


def _recording(monkeypatch, fail_at_fold: int | None = None) -> list:
    """Wrap lgb.train to record each fold's booster and evaluation history (and optionally fail at a fold)."""
    calls = []
    real = lgb.train

    def train(*args, **kwargs):
        if len(calls) == fail_at_fold:
            raise KeyboardInterrupt
        history = {}
        kwargs["callbacks"] = [*kwargs.get("callbacks", []), lgb.record_evaluation(history)]
        booster = real(*args, **kwargs)
        calls.append((booster, history))
        return booster

    monkeypatch.setattr(lgbm.lgb, "train", train)
    return calls


def test_early_stopping_watches_the_reported_masked_score(config, monkeypatch):
    calls = _recording(monkeypatch)
    summary = lgbm.train(config, FAST)
    ids, oof = load_proba(config.oof_path("lgbm"))
    frame = pd.read_parquet(config.features_path("train")).set_index(survey.OBJECT_ID).loc[ids]
    y = frame["target"].to_numpy()
    folds = pd.read_csv(config.folds_path).set_index(survey.OBJECT_ID).loc[ids, "fold"].to_numpy()
    allowed = survey.allowed_classes_mask(survey.is_galactic(frame["hostgal_photoz"].to_numpy()))
    assert np.all(oof[~allowed] == 0)  # the saved OOF predictions are masked by group
    leaked = []
    for k, (booster, history) in enumerate(calls):
        logged = history["valid_0"]["wloss"]
        best = booster.best_iteration
        assert best == int(np.argmin(logged)) + 1 < len(logged)  # stopped early, on this curve's minimum
        reported = metric.weighted_log_loss(y[folds == k], oof[folds == k])  # oof.parquet holds float32
        assert logged[best - 1] == pytest.approx(reported, rel=1e-6)
        assert logged[best - 1] == pytest.approx(summary["folds"][k], rel=1e-9)
        raw = booster.predict(frame.loc[folds == k, lgbm.feature_columns(frame.reset_index())].to_numpy(np.float32))
        leaked.append(metric.weighted_log_loss(y[folds == k], raw) - reported)
    assert len(calls) == config.n_folds
    assert min(leaked) > 1e-3  # the unmasked score differs: the test tells the two apart


def _snapshot(path):
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(path.iterdir())}


def test_interrupted_retraining_leaves_the_old_models_whole(config, monkeypatch):
    lgbm.train(config, FAST)
    model_dir = config.model_dir("lgbm")
    before = _snapshot(model_dir)
    assert {"fold0.txt", "fold1.txt", "fold2.txt", "oof.parquet", "score.json"} <= set(before)

    _recording(monkeypatch, fail_at_fold=2)  # folds 0 and 1 are trained again, then Ctrl-C
    with pytest.raises(KeyboardInterrupt):
        lgbm.train(config, lgbm.LGBMSettings(learning_rate=0.2, max_rounds=300, early_stopping=10))
    assert _snapshot(model_dir) == before  # same files, same bytes, same times: make sees no change
    assert sorted(os.listdir(model_dir.parent)) == ["folds.csv", "lgbm"]  # no half-trained directory left
    boosters, _ = lgbm.load_models(config)
    assert len(boosters) == config.n_folds

    monkeypatch.undo()
    summary = lgbm.train(config, lgbm.LGBMSettings(learning_rate=0.2, max_rounds=300, early_stopping=10))
    after = _snapshot(model_dir)
    assert all(after[name][0] != before[name][0] for name in ("fold0.txt", "fold1.txt", "fold2.txt"))
    assert json.loads((model_dir / "score.json").read_text())["oof"] == pytest.approx(summary["oof"])
