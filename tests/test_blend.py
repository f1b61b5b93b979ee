"""Blending: the pure blends, fitted weights on the simplex, never worse than the best model, the stage's files."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from kit import metric, survey
from kit.blend import blend, blend_arithmetic, blend_geometric, fit_blend
from kit.config import Config
from kit.files import load_proba, save_proba

CLASSES = np.asarray(survey.CLASSES)


def noisy_predictions(y: np.ndarray, strength: float, seed: int) -> np.ndarray:
    """Probabilities leaning toward the truth by ``strength``, with independent noise."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(len(y), 14)) + strength * (y[:, None] == CLASSES[None, :])
    p = np.exp(logits)
    return p / p.sum(axis=1, keepdims=True)


@pytest.fixture
def oofs():
    y = CLASSES[np.random.default_rng(0).integers(0, 14, 600)]
    return y, {"lgbm": noisy_predictions(y, 2.0, 1), "lstm": noisy_predictions(y, 1.5, 2)}


def test_blends_are_probabilities_and_weights_act():
    a = np.array([[0.7, 0.3] + [0.0] * 12])
    b = np.array([[0.1, 0.9] + [0.0] * 12])
    np.testing.assert_allclose(blend_arithmetic([a, b], [0.5, 0.5])[0, :2], [0.4, 0.6])
    g = blend_geometric([a, b], [0.5, 0.5])
    np.testing.assert_allclose(g[0, :2], np.sqrt([0.07, 0.27]) / np.sqrt([0.07, 0.27]).sum())
    assert np.all(g[0, 2:] == 0)  # classes no model allows stay impossible
    np.testing.assert_allclose(blend_geometric([a, b], [1.0, 0.0]), a)


def test_fit_blend_on_simplex_and_not_worse_than_best_single(oofs):
    y, p = oofs
    method, weights, score = fit_blend(p, y)
    assert method in ("arithmetic", "geometric")
    w = np.array(list(weights.values()))
    assert np.all(w >= 0) and w.sum() == pytest.approx(1.0)
    singles = {m: metric.weighted_log_loss(y, q) for m, q in p.items()}
    assert score <= min(singles.values()) - 0.01  # two independent-noise models blend better
    assert 0.2 < weights["lgbm"] < 0.9


def test_useless_model_gets_little_weight():
    y = CLASSES[np.random.default_rng(3).integers(0, 14, 500)]
    good = noisy_predictions(y, 3.0, 4)
    uniform = np.full_like(good, 1 / 14)
    _, weights, score = fit_blend({"lgbm": good, "lstm": uniform}, y)
    assert weights["lgbm"] > 0.9
    assert score <= metric.weighted_log_loss(y, good) + 1e-9


def test_blend_stage_writes_files(tmp_path, oofs):
    y, p = oofs
    config = Config(data_dir=tmp_path / "data" / "t", build_root=tmp_path / "build", models_root=tmp_path / "models")
    ids = np.arange(len(y)) + 100
    config.features_path("train").parent.mkdir(parents=True)
    pd.DataFrame({"object_id": ids, "target": y}).to_parquet(config.features_path("train"))
    test_ids = np.arange(30) + 5000
    save_proba(config.oof_path("lgbm"), ids, p["lgbm"])
    save_proba(config.oof_path("lstm"), ids[::-1], p["lstm"][::-1])  # another order: aligned by id
    for m, seed in (("lgbm", 5), ("lstm", 6)):
        save_proba(config.test_pred_path(m), test_ids, noisy_predictions(np.full(30, 90), 1.0, seed))
    summary = blend(config)
    saved = json.loads(config.score_path("blend").read_text())
    assert saved["oof"] == pytest.approx(summary["oof"]) and set(saved["models"]) == {"lgbm", "lstm"}
    assert saved["oof"] < min(saved["models"].values())
    assert json.loads((config.model_dir("blend") / "weights.json").read_text())["method"] == saved["method"]
    oof_ids, oof = load_proba(config.oof_path("blend"))
    assert metric.weighted_log_loss(y, oof) == pytest.approx(saved["oof"], rel=1e-5)
    tid, tp = load_proba(config.test_pred_path("blend"))
    np.testing.assert_array_equal(tid, test_ids)
    np.testing.assert_allclose(tp.sum(axis=1), 1, rtol=1e-5)
