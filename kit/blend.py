"""Blend the models' probabilities with weights fitted on their out-of-fold predictions.

Weights live on the simplex (a softmax of free parameters, minimised with scipy). Two ways are tried,
arithmetic (sum_k w_k p_k) and geometric (exp(sum_k w_k ln p_k), renormalised), and each single model
as well; the lowest OOF weighted log loss wins, so the blend is never worse than the best model on OOF.
(The weights are fitted on the same OOF rows they are scored on: with 1-2 free parameters the optimism is small.)
"""

from __future__ import annotations

import argparse
import logging

import numpy as np
import pandas as pd
from scipy.optimize import minimize

from kit import metric, survey
from kit import models as registry
from kit.config import Config
from kit.errors import InputError
from kit.files import load_proba, save_proba, write_json

log = logging.getLogger(__name__)
MODEL = "blend"
METHODS = ("arithmetic", "geometric")


def blend_arithmetic(probas: list[np.ndarray], w: np.ndarray) -> np.ndarray:
    """sum_k w_k p_k, rows renormalised. ``probas``: K arrays (n, 14); ``w``: (K,) on the simplex."""
    p = np.tensordot(np.asarray(w, np.float64), np.stack(probas).astype(np.float64), axes=1)
    return p / p.sum(axis=1, keepdims=True)


def blend_geometric(probas: list[np.ndarray], w: np.ndarray) -> np.ndarray:
    """exp(sum_k w_k ln p_k), rows renormalised; classes every model gives 0 (group masking) stay 0."""
    stack = np.stack(probas).astype(np.float64)
    logp = np.tensordot(np.asarray(w, np.float64), np.log(np.clip(stack, metric.EPS, None)), axes=1)
    p = np.exp(logp - logp.max(axis=1, keepdims=True))
    p[np.all(stack == 0, axis=0)] = 0.0
    return p / p.sum(axis=1, keepdims=True)


BLENDERS = {"arithmetic": blend_arithmetic, "geometric": blend_geometric}


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max())
    return e / e.sum()


def fit_weights(probas: list[np.ndarray], y: np.ndarray, method: str) -> tuple[np.ndarray, float]:
    """Simplex weights minimising the OOF weighted log loss of ``method``; ``(weights, score)``."""
    blender = BLENDERS[method]
    if len(probas) == 1:
        return np.ones(1), metric.weighted_log_loss(y, blender(probas, np.ones(1)))

    def loss(z):
        return metric.weighted_log_loss(y, blender(probas, _softmax(z)))

    res = minimize(loss, np.zeros(len(probas)), method="Nelder-Mead", options={"xatol": 1e-4, "fatol": 1e-7})
    return _softmax(res.x), float(res.fun)


def fit_blend(oofs: dict[str, np.ndarray], y: np.ndarray) -> tuple[str, dict[str, float], float]:
    """Best of arithmetic, geometric and each single model on OOF: ``(method, weights by model, score)``."""
    names = list(oofs)
    probas = [oofs[n] for n in names]
    candidates = []
    for method in METHODS:
        w, score = fit_weights(probas, y, method)
        candidates.append((score, method, w))
    for i in range(len(names)):
        w = np.eye(len(names))[i]
        candidates.append((metric.weighted_log_loss(y, blend_arithmetic(probas, w)), "arithmetic", w))
    score, method, w = min(candidates, key=lambda c: c[0])
    return method, {n: float(v) for n, v in zip(names, w, strict=True)}, float(score)


def apply_blend(probas: dict[str, np.ndarray], method: str, weights: dict[str, float]) -> np.ndarray:
    names = list(weights)
    return BLENDERS[method]([probas[n] for n in names], np.array([weights[n] for n in names]))


def _aligned(path, ids: np.ndarray | None, name: str) -> tuple[np.ndarray, np.ndarray]:
    got_ids, proba = load_proba(path)
    if ids is None:
        return got_ids, proba
    frame = pd.DataFrame(proba, index=got_ids)
    missing = ~pd.Index(ids).isin(frame.index)
    if missing.any():
        raise InputError(f"{path}: {name} lacks {int(missing.sum())} objects (e.g. {int(ids[missing][0])}) "
                         "that the other models predicted; rerun its training / prediction.")
    return ids, frame.loc[ids].to_numpy()


def blend(config: Config, models: list[str] | None = None) -> dict:
    """Fit the blend on the OOF predictions of ``models`` and write its outputs.

    ``models`` default to every registered model with OOF predictions (:func:`kit.models.trained`); named ones
    without OOF predictions are an error.
    """
    if models:
        models = registry.check(models, "blend")
        untrained = [m for m in models if not config.oof_path(m).exists()]
        if untrained:
            raise InputError(f"{config.oof_path(untrained[0])}: no OOF predictions of {untrained[0]}; "
                             f"train it first (make train-{untrained[0]}).")
    models = models or registry.trained(config)
    if not models:
        raise InputError(f"no OOF predictions under {config.models_dir}: train a model first (make train-lgbm).")
    oofs, tests = {}, {}
    oof_ids = test_ids = None
    for m in models:
        if not config.test_pred_path(m).exists():
            raise InputError(f"{config.test_pred_path(m)}: no test predictions of {m}; run `make predict` first.")
        oof_ids, oofs[m] = _aligned(config.oof_path(m), oof_ids, m)
        test_ids, tests[m] = _aligned(config.test_pred_path(m), test_ids, m)
    path = config.features_path("train")
    truth = pd.read_parquet(path, columns=[survey.OBJECT_ID, survey.TARGET]).set_index(survey.OBJECT_ID)
    y = truth[survey.TARGET].reindex(oof_ids).to_numpy()
    if np.isnan(y.astype(np.float64)).any():
        raise InputError(f"{path}: no target for some OOF objects; rebuild the features and retrain.")
    y = y.astype(np.int64)
    method, weights, score = fit_blend(oofs, y)
    summary = {
        "oof": score,
        "method": method,
        "weights": weights,
        "models": {m: metric.weighted_log_loss(y, oofs[m]) for m in models},
        "methods": {k: fit_weights(list(oofs.values()), y, k)[1] for k in METHODS},
    }
    out = config.model_dir(MODEL)
    write_json(out / "weights.json", {"method": method, "weights": weights, "models": models})
    save_proba(config.oof_path(MODEL), oof_ids, apply_blend(oofs, method, weights))
    save_proba(config.test_pred_path(MODEL), test_ids, apply_blend(tests, method, weights))
    write_json(config.score_path(MODEL), summary)
    return summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", nargs="+", choices=registry.names(), default=None,
                        help="models to blend (default: every registered one with OOF predictions)")


def run(args: argparse.Namespace, config: Config) -> int:
    s = blend(config, args.models)
    singles = ", ".join(f"{m} {v:.4f}" for m, v in s["models"].items())
    weights = ", ".join(f"{m} {w:.3f}" for m, w in s["weights"].items())
    print(f"blend ({s['method']}; {weights}): OOF {s['oof']:.4f}  [{singles}]")
    return 0
