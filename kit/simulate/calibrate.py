"""Difficulty check of the simulator: OOF weighted log loss of a quick LightGBM on aggregate features.

``python -m kit.simulate.calibrate [N_TRAIN] [SEED]`` simulates a training set, builds simple features
(per-band flux mean/std/max/min, band ratios, mjd range, detected window, photo-z, distmod) and prints the
5-fold out-of-fold metric. Real PLAsTiCC baselines of this kind score about 0.4-0.6 on their training set;
the simulator aims a little harder (about 0.6-0.8), never trivially separable.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold

from kit import metric, survey
from kit.simulate import simulate

N_FOLDS = 5
LGBM_PARAMS = dict(objective="multiclass", num_class=len(survey.CLASSES), learning_rate=0.05, num_leaves=15,
                   min_child_samples=10, subsample=0.8, subsample_freq=1, colsample_bytree=0.7,
                   reg_lambda=1.0, verbose=-1, n_jobs=1)
N_ROUNDS, EARLY_STOP = 1000, 50


def aggregate_features(lc: pd.DataFrame, meta: pd.DataFrame) -> pd.DataFrame:
    """Simple per-object aggregates (one row per object_id, aligned with ``meta``)."""
    g = lc.groupby(["object_id", "passband"])["flux"].agg(["mean", "std", "max", "min"]).unstack()
    g.columns = [f"{s}_{b}" for s, b in g.columns]
    for b in range(1, survey.N_PASSBANDS):
        g[f"ratio_max_{b}"] = g[f"max_{b}"] / (g["max_2"].abs() + 1.0)
    det = lc[lc["detected"] == 1].groupby("object_id")["mjd"].agg(["min", "max"])
    g["det_window"] = det["max"] - det["min"]
    span = lc.groupby("object_id")["mjd"].agg(["min", "max"])
    g["mjd_range"] = span["max"] - span["min"]
    feats = meta.set_index("object_id")[["hostgal_photoz", "distmod", "ddf"]].join(g)
    feats["log_abs_max"] = np.log10(feats[[f"max_{b}" for b in range(6)]].max(axis=1).clip(lower=1.0))
    return feats


def oof_score(folder: Path, seed: int = 0) -> float:
    meta = pd.read_csv(folder / survey.TRAIN_METADATA)
    lc = pd.read_csv(folder / survey.TRAIN_LIGHTCURVES)
    x = aggregate_features(lc, meta).loc[meta["object_id"]].to_numpy(np.float64)
    y = meta["target"].to_numpy()
    code = np.searchsorted(np.array(survey.CLASSES), y)
    w = metric.sample_weights(y)
    oof = np.zeros((len(y), len(survey.CLASSES)))
    for tr, va in StratifiedKFold(N_FOLDS, shuffle=True, random_state=seed).split(x, code):
        model = lgb.train(LGBM_PARAMS, lgb.Dataset(x[tr], code[tr], weight=w[tr]), N_ROUNDS,
                          valid_sets=[lgb.Dataset(x[va], code[va], weight=w[va])],
                          callbacks=[lgb.early_stopping(EARLY_STOP, verbose=False)])
        oof[va] = model.predict(x[va], num_iteration=model.best_iteration)
    per = metric.per_class_log_loss(y, oof)
    print({c: round(v, 2) for c, v in per.items()})
    return metric.weighted_log_loss(y, oof)


def main(argv: list[str]) -> None:
    n_train = int(argv[0]) if argv else 2000
    seed = int(argv[1]) if len(argv) > 1 else 0
    with tempfile.TemporaryDirectory() as tmp:
        simulate(Path(tmp), n_train, 10, seed, progress=False)
        print(f"OOF weighted log loss: {oof_score(Path(tmp), seed):.3f}")


if __name__ == "__main__":
    main(sys.argv[1:])
