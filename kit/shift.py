"""The train/test shift: photo-z reweighting of the training set, and adversarial validation.

PLAsTiCC's training set is brighter, nearer and richer in deep-drilling (DDF) objects than its test set.
Two tools measure and soften that:

- :func:`photoz_weights` (4th place's recipe): a weight per training object, the ratio of the test and
  training ``hostgal_photoz`` histograms at its photo-z, within its galactic / extragalactic group; clipped,
  then scaled so each class keeps its total weight (the metric's class balance is untouched, only which
  objects of a class count more). Bins are quantiles of the test set's photo-z, so each holds the same
  share of the test objects. Galactic objects all have photo-z 0: their weights stay 1.
- :func:`adversarial_validation`: a LightGBM classifier of train (0) vs test (1) on the feature frames,
  5-fold cross-validated; its out-of-fold AUC says how far apart the two sets are (0.5: indistinguishable,
  1: disjoint) and its most important features say where. ``python -m kit adversarial`` runs it on the
  kit's features, with the photo-z weights, and with the augmented copies
  (``build/<name>/features_augment.parquet``) when they exist, and writes ``build/<name>/adversarial.json``.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from kit import files, survey
from kit.config import Config
from kit.errors import InputError

log = logging.getLogger(__name__)

PHOTOZ = "hostgal_photoz"
#: Bins of the photo-z histograms (quantiles of the test set's photo-z within each group).
PHOTOZ_BINS = 20
#: Weights are clipped to this range before the per-class normalisation, so that a few training objects
#: in a bin the training set barely covers do not carry a class.
PHOTOZ_CLIP: tuple[float, float] = (0.1, 10.0)
#: Test objects the adversarial classifier sees (a random subset of the 3.5M; the training set has 7,848).
ADVERSARIAL_TEST_SIZE = 50_000
AUGMENT_FEATURES = "features_augment.parquet"


# --- photo-z reweighting --------------------------------------------------------------------------------


def quantile_edges(values: np.ndarray, bins: int = PHOTOZ_BINS) -> np.ndarray:
    """Bin edges at the quantiles of ``values`` (duplicates merged), the outer ones at -inf and +inf."""
    edges = np.unique(np.quantile(np.asarray(values, dtype=np.float64), np.linspace(0.0, 1.0, bins + 1)))
    if edges.size < 2:
        return np.array([-np.inf, np.inf])
    edges[0], edges[-1] = -np.inf, np.inf
    return edges


def _bin(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    return np.clip(np.searchsorted(edges, values, side="right") - 1, 0, len(edges) - 2)


def photoz_weights(
    train_photoz: np.ndarray,
    train_target: np.ndarray,
    test_photoz: np.ndarray,
    bins: int = PHOTOZ_BINS,
    clip: tuple[float, float] | None = PHOTOZ_CLIP,
    base_weights: np.ndarray | None = None,
) -> np.ndarray:
    """Weights that move the training set's photo-z distribution to the test set's.

    Parameters
    ----------
    train_photoz, train_target : (n,) arrays
        ``hostgal_photoz`` and class of each training object.
    test_photoz : (m,) array
        ``hostgal_photoz`` of the test objects (all of them, or a fair sample).
    bins : int
        Histogram bins per group, at the quantiles of the group's test photo-z.
    clip : (low, high) or None
        Range of the histogram ratio before normalisation; None: no clipping.
    base_weights : (n,) array, optional
        Weights to start from (e.g. ``kit.metric.sample_weights``); ones by default.

    Returns
    -------
    (n,) float64 array
        ``base * ratio``, scaled within each class so the class's total equals its total of ``base``. When
        every class has the same photo-z distribution (and no clipping bites), the weighted training
        histogram of each group equals the test histogram.
    """
    z_train = np.asarray(train_photoz, dtype=np.float64)
    z_test = np.asarray(test_photoz, dtype=np.float64)
    y = np.asarray(train_target)
    base = np.ones(len(z_train)) if base_weights is None else np.asarray(base_weights, dtype=np.float64)
    if len(y) != len(z_train) or len(base) != len(z_train):
        raise ValueError(f"{len(z_train)} training photo-z, {len(y)} targets and {len(base)} base weights")
    ratio = np.ones(len(z_train))
    for group_train, group_test in (
        (survey.is_galactic(z_train), survey.is_galactic(z_test)),
        (~survey.is_galactic(z_train), ~survey.is_galactic(z_test)),
    ):
        tr, te = z_train[group_train], z_test[group_test]
        if tr.size == 0 or te.size == 0:
            continue
        edges = quantile_edges(te, bins)
        itr, ite = _bin(tr, edges), _bin(te, edges)
        share_train = np.bincount(itr, minlength=len(edges) - 1) / tr.size
        share_test = np.bincount(ite, minlength=len(edges) - 1) / te.size
        ratio[group_train] = share_test[itr] / share_train[itr]  # share_train > 0 wherever a training object is
    if clip is not None:
        ratio = np.clip(ratio, *clip)
    weights = base * ratio
    for c in np.unique(y):
        members = y == c
        total = weights[members].sum()
        if total > 0:
            weights[members] *= base[members].sum() / total
    return weights


def training_photoz_weights(train: pd.DataFrame, test: pd.DataFrame, **kwargs) -> pd.Series:
    """:func:`photoz_weights` for two feature frames (``hostgal_photoz`` in both, ``target`` in ``train``).

    Returns a Series of weights indexed by the training frame's ``object_id``.
    """
    for name, frame in (("training", train), ("test", test)):
        if PHOTOZ not in frame:
            raise InputError(f"the {name} features have no '{PHOTOZ}' column; rebuild them (make features)")
    w = photoz_weights(train[PHOTOZ].to_numpy(), train[survey.TARGET].to_numpy(), test[PHOTOZ].to_numpy(), **kwargs)
    return pd.Series(w, index=train[survey.OBJECT_ID].to_numpy(), name="photoz_weight")


# --- adversarial validation -----------------------------------------------------------------------------


def feature_columns(*frames: pd.DataFrame) -> list[str]:
    """Numeric columns every frame has, but the id and the label (in the first frame's order)."""
    shared = set.intersection(*(set(f.columns) for f in frames))
    numeric = pd.api.types.is_numeric_dtype
    return [c for c in frames[0].columns
            if c in shared and c not in (survey.OBJECT_ID, survey.TARGET) and numeric(frames[0][c])]


def adversarial_validation(
    train: pd.DataFrame,
    test: pd.DataFrame,
    n_test: int = ADVERSARIAL_TEST_SIZE,
    n_folds: int = 5,
    seed: int = 0,
    top: int = 20,
    train_weights: np.ndarray | None = None,
    threads: int = 1,
    rounds: int = 200,
) -> dict:
    """Out-of-fold AUC of a LightGBM classifier telling ``train`` (0) from ``test`` (1).

    Parameters
    ----------
    train, test : DataFrame
        Feature frames; the columns both have (but ``object_id`` and ``target``) are used.
    n_test : int
        Test rows kept (a random subset without replacement when there are more).
    n_folds : int
        Stratified cross-validation folds.
    top : int
        How many of the most important features to return.
    train_weights : (len(train),) array, optional
        Weights of the training rows (e.g. :func:`photoz_weights`), rescaled to average 1; the AUC is
        weighted too, so it measures the reweighted training set against the test set.

    Returns
    -------
    dict
        ``auc`` (out of fold, all folds together), ``fold_auc``, ``n_train``, ``n_test``, ``n_features`` and
        ``top_features``: [{feature, gain_share}] by mean gain over the folds, shares of the total.
    """
    import lightgbm as lgb
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold

    columns = feature_columns(train, test)
    if not columns:
        raise InputError("the training and test features share no numeric column")
    rng = np.random.default_rng(seed)
    if len(test) > n_test:
        test = test.iloc[np.sort(rng.choice(len(test), n_test, replace=False))]
    x = np.vstack([train[columns].to_numpy(np.float32), test[columns].to_numpy(np.float32)])
    y = np.r_[np.zeros(len(train)), np.ones(len(test))]
    w_train = np.ones(len(train)) if train_weights is None else np.asarray(train_weights, dtype=np.float64)
    w = np.r_[w_train * (len(w_train) / w_train.sum()), np.ones(len(test))]
    params = {
        "objective": "binary", "learning_rate": 0.05, "num_leaves": 31, "min_data_in_leaf": 20,
        "feature_fraction": 0.8, "bagging_fraction": 0.8, "bagging_freq": 1, "seed": seed,
        "num_threads": threads, "verbosity": -1,
    }
    oof = np.zeros(len(y))
    gain = np.zeros(len(columns))
    fold_auc = []
    for tr, va in StratifiedKFold(n_folds, shuffle=True, random_state=seed).split(x, y):
        booster = lgb.train(params, lgb.Dataset(x[tr], y[tr], weight=w[tr], feature_name=columns),
                            num_boost_round=rounds)
        oof[va] = booster.predict(x[va])
        fold_auc.append(float(roc_auc_score(y[va], oof[va], sample_weight=w[va])))
        gain += booster.feature_importance("gain")
    share = gain / gain.sum() if gain.sum() > 0 else gain
    order = np.argsort(-share, kind="stable")[:top]
    return {
        "auc": float(roc_auc_score(y, oof, sample_weight=w)),
        "fold_auc": fold_auc,
        "n_train": int(len(train)),
        "n_test": int(len(test)),
        "n_features": len(columns),
        "top_features": [{"feature": columns[i], "gain_share": float(share[i])} for i in order],
    }


def format_report(results: dict[str, dict], top: int = 10) -> str:
    """AUC per comparison, then each comparison's most telling features."""
    lines = [f"{'comparison':<32} {'train rows':>10} {'test rows':>10} {'AUC':>7}"]
    for name, r in results.items():
        lines.append(f"{name:<32} {r['n_train']:>10} {r['n_test']:>10} {r['auc']:>7.4f}")
    for name, r in results.items():
        lines += ["", f"{name}: features that tell train from test (share of gain)"]
        lines += [f"  {f['feature']:<36} {f['gain_share']:.3f}" for f in r["top_features"][:top]]
    return "\n".join(lines)


# --- command ------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--test-size", type=int, default=ADVERSARIAL_TEST_SIZE,
                        help="test objects sampled for the classifier (default %(default)s)")
    parser.add_argument("--top", type=int, default=20, help="most important features reported")
    parser.add_argument("--no-photoz-weights", action="store_true",
                        help="skip the comparison with the training set reweighted by photo-z")


def adversarial_path(config: Config) -> Path:
    return config.build_dir / "adversarial.json"


def run(args: argparse.Namespace, config: Config) -> int:
    paths = {split: config.features_path(split) for split in ("train", "test")}
    for split, path in paths.items():
        if not path.exists():
            raise InputError(f"{path}: {split} features not built yet; run `make features` first")
    train, test = (pd.read_parquet(paths[s]) for s in ("train", "test"))
    settings = {"n_test": args.test_size, "n_folds": config.n_folds, "seed": config.seed, "top": args.top,
                "threads": config.workers}
    results = {"train vs test": adversarial_validation(train, test, **settings)}
    if not args.no_photoz_weights:
        weights = training_photoz_weights(train, test).to_numpy()
        results["photo-z weighted train vs test"] = adversarial_validation(train, test, train_weights=weights,
                                                                            **settings)
    augment_path = config.build_dir / AUGMENT_FEATURES
    if augment_path.exists():
        copies = pd.read_parquet(augment_path)
        shared = [c for c in train.columns if c in copies.columns]  # a column the copies lack is not compared
        both = pd.concat([train[shared], copies[shared]], ignore_index=True)
        results["train + augmented vs test"] = adversarial_validation(both, test, **settings)
    print(format_report(results))
    out = adversarial_path(config)
    files.write_json(out, {"data": str(config.data_dir), "augmented": str(augment_path) if augment_path.exists()
                           else None, "results": results})
    print(f"wrote {out}")
    return 0
