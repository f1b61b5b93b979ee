"""Blend or stack the models' out-of-fold probabilities; the candidate that scores best out of fold wins.

Candidates (:func:`candidates`), each a pair ``fit(probas, y, extras) -> fitted`` and
``apply(fitted, probas, extras) -> (n, 14) proba`` (``probas``: one (n, 14) array per model; ``extras``: a
frame with :data:`EXTRA_COLUMNS` taken from the metadata):

``<model>``
    each single model as it is (nothing fitted);
``arithmetic`` / ``geometric``
    ``sum_k w_k p_k`` / ``exp(sum_k w_k ln p_k)`` renormalised, one weight per model on the simplex;
``tempered``
    the geometric blend with any positive weights: their sum is an inverse temperature, so the blend can be
    sharper (sum > 1) or softer than the simplex allows (a geometric mean of models that disagree is too soft);
``per-class``
    one simplex weight vector per class: column c is ``sum_k w_ck p_kc``, rows renormalised; fitted by L-BFGS on
    the weighted log loss plus ``PER_CLASS_SHRINK * sum_c |w_c - w|^2`` towards the global arithmetic weights ``w``;
``stack``
    a depth-2 LightGBM (:data:`STACK_SETTINGS`) on every model's log-probabilities, hostgal_photoz and the
    galactic flag, multiclass with the competition's sample weights; its rounds are chosen by early stopping on a
    hold-out of the fitting rows, then it is refitted on them all.

Every candidate's output is masked by galactic/extragalactic group (:func:`kit.class99.mask_by_group`).

Nested evaluation: the shared folds (``folds.csv``) split the OOF rows; for each fold k a candidate is fitted on
the other folds' rows and predicts fold k's rows. That nested OOF prediction and its weighted log loss are what
is reported, saved (``blend/oof.parquet``) and chosen on (``--method auto``: the lowest); the chosen candidate is
then fitted on all OOF rows to predict the test set (``blend/test.parquet``, 14 classes: class 99 comes after,
in :mod:`kit.submission`). ``blend/score.json`` holds every candidate's nested and in-sample scores.
"""

from __future__ import annotations

import argparse
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from scipy.optimize import minimize

from kit import class99, data, metric, survey
from kit import models as registry
from kit.config import Config
from kit.errors import InputError
from kit.files import atomic_path, load_proba, save_proba, write_json
from kit.folds import load_or_make_folds
from kit.lgbm import LGBMSettings, class_index

log = logging.getLogger(__name__)
MODEL = "blend"
AUTO = "auto"
#: The fitted candidates besides the single models, in the order they are listed.
METHODS = ("arithmetic", "geometric", "tempered", "per-class", "stack")
#: Metadata columns every candidate gets (the stacker's extra features; the group mask).
EXTRA_COLUMNS = ("hostgal_photoz", "galactic")
#: Strength of the per-class weights' pull towards the global arithmetic weights.
PER_CLASS_SHRINK = 0.01
#: The stacker: shallow, strongly regularised trees (hostgal_specz is left out: most test objects lack it).
STACK_SETTINGS = LGBMSettings(learning_rate=0.05, max_depth=2, num_leaves=4, min_child_weight=1.0,
                              colsample_bytree=0.5, reg_alpha=0.1, reg_lambda=10.0, max_rounds=300,
                              early_stopping=30)
#: The fitted stacker, in ``models/<name>/blend/`` when it is the chosen candidate.
STACKER_FILE = "stack.txt"
#: Share of the fitting rows the stacker holds out to choose its number of rounds.
STACK_HOLDOUT = 0.2

Probas = list[np.ndarray]


@dataclass(frozen=True)
class Candidate:
    """A way to combine the models: ``fit`` on OOF rows, ``apply`` to any rows, ``weights`` each model's share."""

    fit: Callable[[Probas, np.ndarray, pd.DataFrame], Any]
    apply: Callable[[Any, Probas, pd.DataFrame], np.ndarray]
    weights: Callable[[Any, int], np.ndarray]


# --- the pure blends -----------------------------------------------------------------------------------------
def blend_arithmetic(probas: Probas, w: np.ndarray) -> np.ndarray:
    """sum_k w_k p_k, rows renormalised. ``probas``: K arrays (n, 14); ``w``: (K,) on the simplex."""
    p = np.tensordot(np.asarray(w, np.float64), np.stack(probas).astype(np.float64), axes=1)
    return p / p.sum(axis=1, keepdims=True)


def blend_geometric(probas: Probas, w: np.ndarray) -> np.ndarray:
    """exp(sum_k w_k ln p_k), rows renormalised; classes every model gives 0 (group masking) stay 0."""
    stack = np.stack(probas).astype(np.float64)
    logp = np.tensordot(np.asarray(w, np.float64), np.log(np.clip(stack, metric.EPS, None)), axes=1)
    p = np.exp(logp - logp.max(axis=1, keepdims=True))
    p[np.all(stack == 0, axis=0)] = 0.0
    return p / p.sum(axis=1, keepdims=True)


def blend_per_class(probas: Probas, w: np.ndarray) -> np.ndarray:
    """Column c is sum_k w_ck p_kc, rows renormalised. ``w``: (14, K), each row on the simplex."""
    p = np.einsum("ck,kic->ic", np.asarray(w, np.float64), np.stack(probas).astype(np.float64))
    return p / p.sum(axis=1, keepdims=True)


BLENDERS = {"arithmetic": blend_arithmetic, "geometric": blend_geometric, "tempered": blend_geometric}
#: The blends whose weights are any positive numbers (exp of the free parameters) rather than on the simplex.
UNCONSTRAINED = ("tempered",)


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


# --- fitting -------------------------------------------------------------------------------------------------
def fit_weights(probas: Probas, y: np.ndarray, method: str) -> np.ndarray:
    """Weights (K,) minimising the weighted log loss of ``method`` (a key of :data:`BLENDERS`): on the simplex,
    or any positive weights for the :data:`UNCONSTRAINED` ones (started from equal weights summing to 1)."""
    blender = BLENDERS[method]
    free = method in UNCONSTRAINED
    if len(probas) == 1 and not free:
        return np.ones(1)
    weights = np.exp if free else _softmax

    def loss(z):
        return metric.weighted_log_loss(y, blender(probas, weights(z)))

    start = np.full(len(probas), -np.log(len(probas)) if free else 0.0)
    res = minimize(loss, start, method="Nelder-Mead", options={"xatol": 1e-4, "fatol": 1e-7})
    return weights(res.x)


def fit_per_class(probas: Probas, y: np.ndarray, shrink: float = PER_CLASS_SHRINK) -> np.ndarray:
    """Per-class simplex weights (14, K): the weighted log loss of :func:`blend_per_class` plus
    ``shrink * sum_c |w_c - w|^2``, ``w`` the global arithmetic weights, minimised by L-BFGS (exact gradient)."""
    stack = np.stack(probas).astype(np.float64)  # (K, n, 14)
    n_models, n_classes = len(probas), stack.shape[2]
    g = fit_weights(probas, y, "arithmetic")
    s = metric.sample_weights(y) / len(y)  # the weighted mean of -ln p is the metric
    truth = class_index(y)[:, None] == np.arange(n_classes)[None, :]

    def loss_and_grad(z):
        w = _softmax(z.reshape(n_classes, n_models))
        p = np.einsum("ck,kic->ic", w, stack)
        total = p.sum(axis=1)
        p_true = np.maximum(p[truth], metric.EPS)
        loss = np.dot(s, np.log(total) - np.log(p_true)) + shrink * np.sum((w - g) ** 2)
        # d loss / d p_ic = s_i (1/total_i - [c = y_i] / p_true_i)
        dp = s[:, None] / total[:, None] - truth * (s / p_true)[:, None]
        dw = np.einsum("ic,kic->ck", dp, stack) + 2 * shrink * (w - g)
        dz = w * (dw - np.sum(w * dw, axis=1, keepdims=True))  # through the softmax of each row
        return loss, dz.ravel()

    z0 = np.tile(np.log(np.clip(g, 1e-6, None)), (n_classes, 1)).ravel()
    res = minimize(loss_and_grad, z0, jac=True, method="L-BFGS-B", options={"maxiter": 500})
    return _softmax(res.x.reshape(n_classes, n_models))


def stack_features(probas: Probas, extras: pd.DataFrame) -> np.ndarray:
    """The stacker's inputs: every model's ln p (clipped at the metric's floor), then :data:`EXTRA_COLUMNS`."""
    logs = [np.log(np.clip(np.asarray(p, np.float64), metric.EPS, None)) for p in probas]
    return np.hstack([*logs, extras[list(EXTRA_COLUMNS)].to_numpy(np.float64)])


def fit_stack(probas: Probas, y: np.ndarray, extras: pd.DataFrame, seed: int = 0, threads: int = 1) -> lgb.Booster:
    """The depth-2 LightGBM stacker: rounds by early stopping on a hold-out, then refitted on every row."""
    x, labels = stack_features(probas, extras), class_index(y)
    galactic = extras["galactic"].to_numpy(bool)
    params = STACK_SETTINGS.params(seed, threads)
    held = np.random.default_rng(seed).random(len(y)) < STACK_HOLDOUT
    probe = lgb.train(
        params, lgb.Dataset(x[~held], labels[~held], weight=metric.sample_weights(y[~held])),
        num_boost_round=STACK_SETTINGS.max_rounds,
        valid_sets=[lgb.Dataset(x[held], labels[held], weight=metric.sample_weights(y[held]))],
        feval=functools.partial(metric.lgbm_eval, galactic=galactic[held]),
        callbacks=[lgb.early_stopping(STACK_SETTINGS.early_stopping, verbose=False)],
    )
    rounds = max(int(probe.best_iteration), 1)
    return lgb.train(params, lgb.Dataset(x, labels, weight=metric.sample_weights(y)), num_boost_round=rounds)


def _stack_weights(booster: lgb.Booster, n_models: int) -> np.ndarray:
    """Each model's share of the stacker's split gain (the metadata columns left out)."""
    gain = booster.feature_importance("gain")[: n_models * len(survey.CLASSES)].reshape(n_models, -1).sum(axis=1)
    return gain / gain.sum() if gain.sum() > 0 else np.full(n_models, 1 / n_models)


def candidates(n_models: int, names: list[str] | None = None, seed: int = 0, threads: int = 1) -> dict[str, Candidate]:
    """The candidates for ``n_models`` models: each single model (named by ``names``), then :data:`METHODS`."""
    names = names or [f"model{k}" for k in range(n_models)]
    found: dict[str, Candidate] = {
        name: Candidate(fit=lambda probas, y, extras: None,
                        apply=lambda _, probas, extras, k=k: np.asarray(probas[k], np.float64),
                        weights=lambda _, n, k=k: np.eye(n)[k])
        for k, name in enumerate(names)
    }
    for method, blender in BLENDERS.items():
        found[method] = Candidate(fit=lambda probas, y, extras, m=method: fit_weights(probas, y, m),
                                  apply=lambda w, probas, extras, b=blender: b(probas, w),
                                  weights=lambda w, n: w / w.sum())
    found["per-class"] = Candidate(fit=lambda probas, y, extras: fit_per_class(probas, y),
                                   apply=lambda w, probas, extras: blend_per_class(probas, w),
                                   weights=lambda w, n: w.mean(axis=0))
    found["stack"] = Candidate(fit=functools.partial(fit_stack, seed=seed, threads=threads),
                               apply=lambda b, probas, extras: b.predict(stack_features(probas, extras)),
                               weights=_stack_weights)
    return found


# --- nested evaluation ---------------------------------------------------------------------------------------
def predict(candidate: Candidate, fitted, probas: Probas, extras: pd.DataFrame) -> np.ndarray:
    """``candidate``'s probabilities for these rows, masked by group."""
    return class99.mask_by_group(candidate.apply(fitted, probas, extras), extras["galactic"].to_numpy(bool))


def nested_oof(candidate: Candidate, probas: Probas, y: np.ndarray, extras: pd.DataFrame,
               folds: np.ndarray) -> np.ndarray:
    """(n, 14): each fold's rows predicted by ``candidate`` fitted on the other folds' rows only."""
    out = np.zeros((len(y), len(survey.CLASSES)))
    for k in np.unique(folds):
        fit_rows = folds != k
        fitted = candidate.fit([p[fit_rows] for p in probas], y[fit_rows], extras[fit_rows])
        out[~fit_rows] = predict(candidate, fitted, [p[~fit_rows] for p in probas], extras[~fit_rows])
    return out


@dataclass
class Result:
    """One candidate evaluated: nested OOF prediction and score, in-sample score, the fit on all rows."""

    nested_oof: np.ndarray
    nested: float
    in_sample: float
    fitted: Any


def evaluate(cands: dict[str, Candidate], probas: Probas, y: np.ndarray, extras: pd.DataFrame,
             folds: np.ndarray) -> dict[str, Result]:
    """Every candidate's nested OOF (and score), and its fit on all rows with the in-sample score."""
    results = {}
    for name, cand in cands.items():
        oof = nested_oof(cand, probas, y, extras, folds)
        fitted = cand.fit(probas, y, extras)
        results[name] = Result(oof, metric.weighted_log_loss(y, oof),
                               metric.weighted_log_loss(y, predict(cand, fitted, probas, extras)), fitted)
        log.info("blend candidate %-12s nested OOF %.4f  in-sample %.4f", name, results[name].nested,
                 results[name].in_sample)
    return results


def choose(results: dict[str, Result], method: str = AUTO) -> str:
    """``method`` itself, or with ``auto`` the candidate of lowest nested OOF score."""
    if method == AUTO:
        return min(results, key=lambda name: results[name].nested)
    if method not in results:
        raise InputError(f"no blend candidate {method!r}: choose among {AUTO}, {', '.join(results)}")
    return method


# --- the stage -----------------------------------------------------------------------------------------------
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


def read_extras(path, ids: np.ndarray, require_target: bool = False) -> pd.DataFrame:
    """:data:`EXTRA_COLUMNS` (+ the target) of objects ``ids`` from a metadata file, in the order of ``ids``."""
    meta = data.read_metadata(path, require_target=require_target).set_index(survey.OBJECT_ID)
    missing = ~pd.Index(ids).isin(meta.index)
    if missing.any():
        raise InputError(f"{path}: {int(missing.sum())} predicted objects are not in the metadata "
                         f"(e.g. {int(ids[missing][0])}); predictions and metadata come from different data.")
    meta = meta.loc[ids]
    extras = pd.DataFrame({"hostgal_photoz": meta["hostgal_photoz"].to_numpy(np.float64),
                           "galactic": survey.is_galactic(meta["hostgal_photoz"].to_numpy())})
    if require_target:
        extras[survey.TARGET] = data.labels(meta, path)
    return extras


def blend(config: Config, models: list[str] | None = None, method: str = AUTO) -> dict:
    """Evaluate every candidate on nested OOF, keep ``method`` (``auto``: the best) and write its outputs.

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
    oofs, tests = [], []
    oof_ids = test_ids = None
    for m in models:
        if not config.test_pred_path(m).exists():
            raise InputError(f"{config.test_pred_path(m)}: no test predictions of {m}; run `make predict` first.")
        oof_ids, oof = _aligned(config.oof_path(m), oof_ids, m)
        test_ids, test = _aligned(config.test_pred_path(m), test_ids, m)
        oofs.append(oof)
        tests.append(test)
    train = read_extras(config.train_metadata, oof_ids, require_target=True)
    y = train.pop(survey.TARGET).to_numpy()
    folds = load_or_make_folds(config, oof_ids, y)
    cands = candidates(len(models), models, config.seed, config.workers)
    results = evaluate(cands, oofs, y, train, folds)
    chosen = choose(results, method)
    best = results[chosen]
    weights = dict(zip(models, map(float, cands[chosen].weights(best.fitted, len(models))), strict=True))
    summary = {
        "oof": best.nested,
        "method": chosen,
        "weights": weights,
        "models": {m: results[m].nested for m in models},  # each alone, masked by group
        "candidates": {n: {"nested_oof": r.nested, "in_sample": r.in_sample} for n, r in results.items()},
        "folds": int(folds.max()) + 1,
    }
    out = config.model_dir(MODEL)
    fitted = {"per_class": best.fitted.tolist()} if chosen == "per-class" else {}
    if chosen in UNCONSTRAINED:  # "weights" are shares; the exponents themselves carry the temperature
        fitted = {"exponents": dict(zip(models, map(float, best.fitted), strict=True))}
    (out / STACKER_FILE).unlink(missing_ok=True)
    if chosen == "stack":
        with atomic_path(out / STACKER_FILE) as tmp:
            best.fitted.save_model(str(tmp))  # LightGBM's native text model
        fitted = {"stacker": STACKER_FILE, "features": [*(f"{m}_{c}" for m in models for c in survey.CLASSES),
                                                       *EXTRA_COLUMNS]}
    write_json(out / "weights.json", {"method": chosen, "weights": weights, "models": models, "oof": best.nested,
                                      **fitted})
    test_extras = read_extras(config.test_metadata, test_ids)
    save_proba(config.oof_path(MODEL), oof_ids, best.nested_oof)
    save_proba(config.test_pred_path(MODEL), test_ids, predict(cands[chosen], best.fitted, tests, test_extras))
    write_json(config.score_path(MODEL), summary)
    return summary


def table(summary: dict) -> str:
    """The candidates' nested and in-sample scores, one line each, the chosen one marked."""
    lines = [f"  {'candidate':<12} {'nested OOF':>10} {'in-sample':>10}"]
    for name, s in summary["candidates"].items():
        mark = "  <- chosen" if name == summary["method"] else ""
        lines.append(f"  {name:<12} {s['nested_oof']:>10.4f} {s['in_sample']:>10.4f}{mark}")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", nargs="+", choices=registry.names(), default=None,
                        help="models to blend (default: every registered one with OOF predictions)")
    parser.add_argument("--method", default=AUTO, choices=[AUTO, *METHODS, *registry.names()],
                        help="the candidate to keep (default auto: the best nested OOF score); a model name keeps "
                             "that model alone")


def run(args: argparse.Namespace, config: Config) -> int:
    s = blend(config, args.models, args.method)
    weights = ", ".join(f"{m} {w:.3f}" for m, w in s["weights"].items())
    print(f"blend ({s['method']}; {weights}): nested OOF {s['oof']:.4f} over {s['folds']} folds\n{table(s)}")
    return 0
