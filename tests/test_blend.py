"""Blending and stacking: the pure blends, nested evaluation without leaks, per-class weights, the stacker,
the choice, and the stage's files."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from kit import blend as bl
from kit import class99, metric, survey
from kit.config import Config
from kit.errors import InputError
from kit.files import load_proba, save_proba

CLASSES = np.asarray(survey.CLASSES)
EXTRAGALACTIC = np.asarray(survey.EXTRAGALACTIC_CLASSES)


def noisy_predictions(y: np.ndarray, strength: float | np.ndarray, seed: int) -> np.ndarray:
    """Probabilities leaning toward the truth by ``strength`` (per row if an array), with independent noise."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(len(y), 14)) + np.reshape(strength, (-1, 1)) * (y[:, None] == CLASSES[None, :])
    p = np.exp(logits)
    return p / p.sum(axis=1, keepdims=True)


def extras_of(y: np.ndarray, seed: int = 0) -> pd.DataFrame:
    """Metadata consistent with the labels: photo-z 0 for galactic classes, else in (0.05, 1.5)."""
    galactic = np.isin(y, survey.GALACTIC_CLASSES)
    z = np.where(galactic, 0.0, np.random.default_rng(seed).uniform(0.05, 1.5, len(y)))
    return pd.DataFrame({"hostgal_photoz": z, "galactic": galactic})


def folds_of(n: int, k: int = 3) -> np.ndarray:
    return np.arange(n) % k


def nested_scores(probas, y, extras, names=("arithmetic", "geometric", "per-class", "stack")) -> dict[str, float]:
    cands = bl.candidates(len(probas))
    folds = folds_of(len(y))
    return {n: metric.weighted_log_loss(y, bl.nested_oof(cands[n], probas, y, extras, folds)) for n in names}


def test_blends_are_probabilities_and_weights_act():
    a = np.array([[0.7, 0.3] + [0.0] * 12])
    b = np.array([[0.1, 0.9] + [0.0] * 12])
    np.testing.assert_allclose(bl.blend_arithmetic([a, b], [0.5, 0.5])[0, :2], [0.4, 0.6])
    g = bl.blend_geometric([a, b], [0.5, 0.5])
    np.testing.assert_allclose(g[0, :2], np.sqrt([0.07, 0.27]) / np.sqrt([0.07, 0.27]).sum())
    assert np.all(g[0, 2:] == 0)  # classes no model allows stay impossible
    np.testing.assert_allclose(bl.blend_geometric([a, b], [1.0, 0.0]), a)
    same = np.tile([0.25, 0.75], (14, 1))
    np.testing.assert_allclose(bl.blend_per_class([a, b], same), bl.blend_arithmetic([a, b], [0.25, 0.75]))
    w = np.tile([1.0, 0.0], (14, 1))
    w[1] = [0.0, 1.0]  # class 15 from b, the rest from a: (0.7, 0.9) renormalised
    np.testing.assert_allclose(bl.blend_per_class([a, b], w)[0, :2], [0.7 / 1.6, 0.9 / 1.6])


def test_fitted_weights_on_simplex_and_useless_model_gets_little_weight():
    y = CLASSES[np.random.default_rng(3).integers(0, 14, 500)]
    good = noisy_predictions(y, 3.0, 4)
    uniform = np.full_like(good, 1 / 14)
    for method in set(bl.BLENDERS) - set(bl.UNCONSTRAINED):
        w = bl.fit_weights([good, uniform], y, method)
        assert np.all(w >= 0) and w.sum() == pytest.approx(1.0) and w[0] > 0.9
    # tempered: ln of a uniform model is a constant, so its weight is free; the good model's is its calibration,
    # 3 (noisy_predictions' posterior is exp(3 x its logits), i.e. it is 3 times too soft)
    assert 2.5 < bl.fit_weights([good, uniform], y, "tempered")[0] < 4.0
    w = bl.fit_per_class([good, uniform], y)
    assert w.shape == (14, 2) and np.allclose(w.sum(axis=1), 1) and np.all(w[:, 0] > 0.8)


def test_nested_oof_never_fits_on_the_rows_it_scores():
    y = CLASSES[np.random.default_rng(1).integers(0, 14, 300)]
    extras = extras_of(y).assign(row=np.arange(len(y)))
    # a candidate that memorises the labels of the rows it was fitted on: perfect on them, uniform elsewhere
    memoriser = bl.Candidate(
        fit=lambda probas, y, extras: dict(zip(extras["row"], y, strict=True)),
        apply=lambda seen, probas, extras: np.array(
            [CLASSES == seen[r] if r in seen else np.ones(14) for r in extras["row"]], dtype=float),
        weights=lambda seen, n: np.ones(n) / n)
    probas = [np.full((len(y), 14), 1 / 14)]
    nested = bl.nested_oof(memoriser, probas, y, extras, folds_of(len(y)))
    uniform_within_group = bl.predict(memoriser, {}, probas, extras)  # nothing seen: uniform over the group
    np.testing.assert_allclose(nested, uniform_within_group)
    in_sample = bl.predict(memoriser, memoriser.fit(probas, y, extras), probas, extras)
    assert metric.weighted_log_loss(y, in_sample) < 1e-6 < metric.weighted_log_loss(y, nested) - 1.0


def test_tempered_blend_sharpens_models_that_are_too_soft():
    """Two independent calibrated models made twice too soft (p ** 0.5): their posterior is the product of the
    calibrated ones, i.e. weights (2, 2). The simplex geometric blend cannot sharpen them; the tempered one learns
    weights summing to about 4 and scores better out of fold."""
    y = CLASSES[np.random.default_rng(3).integers(0, 14, 1500)]
    soft = [noisy_predictions(y, 2.0, seed) ** (2.0 * 0.5) for seed in (8, 9)]  # calibrated: p ** 2, then ** 0.5
    soft = [p / p.sum(axis=1, keepdims=True) for p in soft]
    s = nested_scores(soft, y, extras_of(y), names=("geometric", "tempered"))
    assert s["tempered"] < s["geometric"] - 0.05
    w = bl.fit_weights(soft, y, "tempered")
    assert 3.0 < w.sum() < 5.0 and np.all(w > 1.2)
    assert np.isclose(bl.fit_weights(soft, y, "geometric").sum(), 1.0)


def test_per_class_weights_beat_global_weights_when_models_know_different_classes():
    y = CLASSES[np.random.default_rng(5).integers(0, 14, 1200)]
    first_half = np.isin(y, CLASSES[:7])
    a = noisy_predictions(y, np.where(first_half, 4.0, 0.0), 6)  # right on classes 1-7, guessing on 8-14
    b = noisy_predictions(y, np.where(first_half, 0.0, 4.0), 7)  # the other way round
    s = nested_scores([a, b], y, extras_of(y), names=("arithmetic", "geometric", "per-class"))
    assert s["per-class"] < min(s["arithmetic"], s["geometric"]) - 0.1
    w = bl.fit_per_class([a, b], y)
    assert np.all(w[:7, 0] > 0.7) and np.all(w[7:, 1] > 0.7)


def test_stacker_learns_what_photoz_tells_and_the_simplex_blends_cannot():
    rng = np.random.default_rng(8)
    y = EXTRAGALACTIC[rng.integers(0, len(EXTRAGALACTIC), 1500)]
    extras = extras_of(y, seed=9)
    pair = np.isin(y, (42, 90))
    y[pair] = np.where(extras["hostgal_photoz"].to_numpy()[pair] > 0.7, 42, 90)  # photo-z tells 42 from 90
    cols = np.isin(CLASSES, (42, 90))
    probas = []
    for seed in (10, 11):
        p = noisy_predictions(y, 3.0, seed)
        p[:, cols] = p[:, cols].mean(axis=1, keepdims=True)  # the models cannot tell them apart
        probas.append(p)
    s = nested_scores(probas, y, extras)
    assert s["stack"] < min(s["arithmetic"], s["geometric"], s["per-class"]) - 0.1


@pytest.fixture
def staged(tmp_path, competition):
    """A config on the tiny competition with two models' OOF (masked) and test predictions (noisy, unmasked)."""
    config = Config(data_dir=competition, build_root=tmp_path / "build", models_root=tmp_path / "models",
                    n_folds=3, workers=1)
    train = pd.read_csv(config.train_metadata)
    test_ids = pd.read_csv(config.test_metadata, usecols=["object_id"])["object_id"].to_numpy()
    ids, y = train["object_id"].to_numpy(), train["target"].to_numpy()
    galactic = survey.is_galactic(train["hostgal_photoz"].to_numpy())
    for m, strength, seed in (("lgbm", 2.0, 1), ("lstm", 1.5, 2)):
        p = class99.mask_by_group(noisy_predictions(y, strength, seed), galactic)  # as the models save them
        order = slice(None) if m == "lgbm" else slice(None, None, -1)  # another order: aligned by id
        save_proba(config.oof_path(m), ids[order], p[order])
        save_proba(config.test_pred_path(m), test_ids, noisy_predictions(np.full(len(test_ids), 90), 1.0, seed))
    return config, y


def test_blend_stage_keeps_the_best_nested_candidate_and_writes_its_files(staged):
    config, y = staged
    summary = bl.blend(config)
    saved = json.loads(config.score_path("blend").read_text())
    nested = {n: s["nested_oof"] for n, s in saved["candidates"].items()}
    assert set(nested) == {"lgbm", "lstm", *bl.METHODS}
    assert saved["method"] == summary["method"] == min(nested, key=nested.get)  # auto: the lowest nested score
    assert saved["oof"] == pytest.approx(nested[saved["method"]])
    assert saved["oof"] < min(saved["models"].values())
    assert nested["lgbm"] == pytest.approx(saved["models"]["lgbm"], rel=1e-6)  # nothing fitted: same score
    weights = json.loads((config.model_dir("blend") / "weights.json").read_text())
    assert weights["method"] == saved["method"] and weights["models"] == ["lgbm", "lstm"]
    assert sum(weights["weights"].values()) == pytest.approx(1.0)
    _, oof = load_proba(config.oof_path("blend"))
    assert metric.weighted_log_loss(y, oof) == pytest.approx(saved["oof"], rel=1e-5)  # the nested OOF is saved
    assert config.folds_path.exists()  # the shared folds, made when absent

    meta = pd.read_csv(config.test_metadata)
    tid, tp = load_proba(config.test_pred_path("blend"))
    np.testing.assert_array_equal(tid, meta["object_id"].to_numpy())
    np.testing.assert_allclose(tp.sum(axis=1), 1, rtol=1e-5)
    allowed = survey.allowed_classes_mask(survey.is_galactic(meta["hostgal_photoz"].to_numpy()))
    assert np.all(tp[~allowed] == 0) and allowed.all(axis=0).sum() == 0


def test_blend_method_forces_a_candidate(staged):
    config, _ = staged
    summary = bl.blend(config, method="stack")
    assert summary["method"] == "stack"
    assert summary["oof"] == pytest.approx(summary["candidates"]["stack"]["nested_oof"])
    assert (config.model_dir("blend") / bl.STACKER_FILE).exists()
    assert bl.blend(config, ["lgbm"], method="lgbm")["weights"] == {"lgbm": 1.0}
    assert not (config.model_dir("blend") / bl.STACKER_FILE).exists()
    with pytest.raises(InputError, match="no blend candidate 'lstm'"):
        bl.blend(config, ["lgbm"], method="lstm")
