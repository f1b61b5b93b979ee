"""Checks of the simulator: difficulty, and the survey statistics of a simulated test set.

``python -m kit.simulate.calibrate [N_TRAIN] [SEED]`` simulates a training set, builds simple features
(per-band flux mean/std/max/min, band ratios, mjd range, detected window, photo-z, distmod) and prints the
5-fold out-of-fold metric. Real PLAsTiCC baselines of this kind score about 0.4-0.6 on their training set;
the simulator aims a little harder (about 0.6-0.8), never trivially separable.

``python -m kit.simulate.calibrate --stats FOLDER`` prints the cadence, noise and supernova-redshift
statistics of a simulated test set (from ``python -m kit simulate``) next to the real PLAsTiCC test set's.
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
from kit.simulate.metadata import TEST_Z_QUANTILE_PROBS, TEST_Z_QUANTILES

N_FOLDS = 5
LGBM_PARAMS = dict(objective="multiclass", num_class=len(survey.CLASSES), learning_rate=0.05, num_leaves=15,
                   min_child_samples=10, subsample=0.8, subsample_freq=1, colsample_bytree=0.7,
                   reg_lambda=1.0, verbose=-1, n_jobs=1)
N_ROUNDS, EARLY_STOP = 1000, 50
#: Supernova classes whose share of detected rows the real statistics give.
SN_CLASSES = (42, 52, 62, 67, 90)
STAT_QUANTILES = (0.1, 0.5, 0.9)
#: Real PLAsTiCC test-set statistics (WFD, DDF) per statistic, for comparison (the kit's PLAsTiCC notes).
REAL_SURVEY_STATS: dict[str, tuple[str, str]] = {
    "observations per object (10/50/90%)": ("97 / 129 / 156", "255 / 350 / 352"),
    "median count per band u,g,r,i,z,Y": ("13, 11, 22, 20, 30, 33", "70, 56, 56, 56, 56, 55"),
    "median flux_err per band u,g,r,i,z,Y": ("10.1, 2.5, 3.6, 5.9, 13.1, 28.1", "2.0, 1.2, 1.2, 1.8, 2.5, 5.8"),
    "gaps between observations (10/50/90%, d)": ("0.96 / 3.0 / 13", "0.008 / 0.011 / 3.0"),
    "share of rows detected (SN classes)": ("8%", "16%"),
}


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


def _fmt(values, digits: int = 1, sep: str = ", ") -> str:
    return sep.join(f"{v:.{digits}f}" for v in values)


def survey_statistics(lc: pd.DataFrame, meta: pd.DataFrame, true_target: pd.Series) -> pd.DataFrame:
    """Cadence and noise statistics of a test set, WFD and DDF side by side with the real ones.

    ``lc`` and ``meta`` are Kaggle-shaped light curves and metadata; ``true_target`` is indexed by object_id.
    Returns one row per statistic with columns sim WFD, real WFD, sim DDF, real DDF (formatted text).
    """
    ddf = meta.set_index("object_id")["ddf"].reindex(lc["object_id"]).to_numpy() == 1
    target = true_target.reindex(lc["object_id"]).to_numpy()
    bands = range(survey.N_PASSBANDS)
    out = {}
    for label, part in (("WFD", ~ddf), ("DDF", ddf)):
        rows = lc[part]
        per_obj = rows.groupby("object_id").size()
        counts = rows.groupby(["object_id", "passband"]).size().unstack(fill_value=0)
        counts = counts.reindex(columns=bands, fill_value=0)
        gaps = rows.groupby("object_id")["mjd"].diff().dropna()
        sn_detected = rows["detected"].to_numpy()[np.isin(target[part], SN_CLASSES)]
        out[label] = {
            "objects": str(len(per_obj)),
            "observations per object (10/50/90%)": _fmt(per_obj.quantile(STAT_QUANTILES), 0, " / "),
            "median count per band u,g,r,i,z,Y": _fmt(counts.median(), 0),
            "median flux_err per band u,g,r,i,z,Y": _fmt(rows.groupby("passband")["flux_err"].median().reindex(bands)),
            "gaps between observations (10/50/90%, d)": _fmt(gaps.quantile(STAT_QUANTILES), 3, " / "),
            "share of rows detected (SN classes)": f"{sn_detected.mean():.1%}" if len(sn_detected) else "n/a",
        }
    real = {"objects": ("", ""), **REAL_SURVEY_STATS}
    return pd.DataFrame({"sim WFD": out["WFD"], "real WFD": {k: v[0] for k, v in real.items()},
                         "sim DDF": out["DDF"], "real DDF": {k: v[1] for k, v in real.items()}})


def redshift_quantiles(meta: pd.DataFrame, true_target: np.ndarray) -> pd.DataFrame:
    """Simulated vs real host photo-z quantiles of the WFD test supernovae, one row per class.

    ``meta`` is test metadata, ``true_target`` its true classes (aligned). Columns: objects, then for each
    quantile of TEST_Z_QUANTILE_PROBS the simulated value, the real one and their ratio - 1; then the
    simulated 99% quantile, share of photo-z > 1.9 and median photo-z error.
    """
    probs = list(TEST_Z_QUANTILE_PROBS)
    wfd = meta["ddf"].to_numpy() == 0
    out = {}
    for kind, real in TEST_Z_QUANTILES.items():
        x = meta[wfd & (np.asarray(true_target) == kind)]
        sim = x["hostgal_photoz"].quantile(probs).to_numpy()
        row = {"objects": len(x)}
        for p, s, r in zip(probs, sim, real, strict=True):
            row[f"q{p * 100:.0f} sim"], row[f"q{p * 100:.0f} real"] = round(s, 3), r
            row[f"q{p * 100:.0f} dev"] = f"{s / r - 1:+.0%}"
        row["q99 sim"] = round(x["hostgal_photoz"].quantile(0.99), 2)
        row["photo-z > 1.9"] = f"{(x['hostgal_photoz'] > 1.9).mean():.1%}"
        row["median err"] = round(x["hostgal_photoz_err"].median(), 3)
        out[kind] = row
    return pd.DataFrame(out).T


def print_statistics(folder: Path) -> None:
    """Print the survey statistics and the WFD supernova redshift quantiles of a simulated test set."""
    meta = pd.read_csv(folder / survey.TEST_METADATA)
    truth = pd.read_csv(folder / survey.TEST_TRUTH).set_index("object_id")["true_target"]
    lc = pd.read_csv(folder / survey.TEST_LIGHTCURVES)
    with pd.option_context("display.width", 200, "display.max_colwidth", 40):
        print(survey_statistics(lc, meta, truth).to_string())
        print(redshift_quantiles(meta, truth.reindex(meta["object_id"]).to_numpy()).to_string())


def main(argv: list[str]) -> None:
    if argv[:1] == ["--stats"]:
        print_statistics(Path(argv[1]))
        return
    n_train = int(argv[0]) if argv else 2000
    seed = int(argv[1]) if len(argv) > 1 else 0
    with tempfile.TemporaryDirectory() as tmp:
        simulate(Path(tmp), n_train, 10, seed, progress=False)
        print(f"OOF weighted log loss: {oof_score(Path(tmp), seed):.3f}")


if __name__ == "__main__":
    main(sys.argv[1:])
