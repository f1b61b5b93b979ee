"""The LightGBM baseline: one multiclass booster per fold, trained on the competition's weighted loss.

Sample weights w_class / N_class make LightGBM's multi_logloss objective the competition metric;
early stopping watches the metric itself (:func:`kit.metric.lgbm_eval`) on the validation fold, masked by
galactic/extragalactic group like the predictions it scores.
Artefacts in ``models/<name>/lgbm/``: ``fold<k>.txt`` (LightGBM's native text format),
``features.json`` (the column order), ``importance.csv``, ``oof.parquet``, ``score.json``.
"""

from __future__ import annotations

import argparse
import functools
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd

from kit import class99, data, metric, survey
from kit.config import Config
from kit.errors import InputError
from kit.featurize import MAKE_TARGET, load_train_features
from kit.files import atomic_dir, read_json, save_proba, write_json
from kit.folds import load_or_make_folds
from kit.survey import PARENT_ID as PARENT

log = logging.getLogger(__name__)
MODEL = NAME = "lgbm"
NEEDS_SEQUENCES = False
#: Training options of a kernel smoke run.
SMOKE_ARGS = ["--max-rounds", "50"]
#: Test objects per streamed batch of :func:`predict_test`.
BATCH_ROWS = 200_000


@dataclass(frozen=True)
class LGBMSettings:
    """Booster settings (the well-tried public-kernel values, shallow trees against overfitting)."""

    learning_rate: float = 0.03
    max_depth: int = 3
    num_leaves: int = 7
    min_child_weight: float = 10.0
    subsample: float = 0.9
    subsample_freq: int = 1
    colsample_bytree: float = 0.5
    reg_alpha: float = 0.01
    reg_lambda: float = 0.01
    min_split_gain: float = 0.01
    max_rounds: int = 2000
    early_stopping: int = 50

    def params(self, seed: int, threads: int) -> dict:
        p = asdict(self)
        for key in ("max_rounds", "early_stopping"):
            p.pop(key)
        return p | {
            "objective": "multiclass",
            "num_class": len(survey.CLASSES),
            "metric": "None",  # the competition metric comes in through feval
            "seed": seed,
            "num_threads": threads,
            "verbosity": -1,
        }


def feature_columns(frame: pd.DataFrame) -> list[str]:
    """Every column but the id, the label and an augmented copy's parent."""
    return [c for c in frame.columns if c not in (survey.OBJECT_ID, survey.TARGET, PARENT)]


def class_index(y: np.ndarray) -> np.ndarray:
    """Position of each label in survey.CLASSES (LightGBM's class ids)."""
    return np.searchsorted(np.asarray(survey.CLASSES), y)


#: Pseudo-labels (3rd place): test objects predicted as these classes with at least this probability join
#: training with that label, at most this many per labelled training object.
PSEUDO_CLASSES: tuple[int, ...] = (90, 42)
PSEUDO_THRESHOLD = 0.985
PSEUDO_RATIO = 1.0


def pseudo_labelled(config: Config, proba_path, kinds: tuple[str, ...], n_train: int) -> pd.DataFrame:
    """Test objects confidently predicted (``proba_path``, a model's test.parquet) as :data:`PSEUDO_CLASSES`,
    with their features of ``kinds`` and the predicted class as ``target`` (the most confident first, capped)."""
    from kit.files import load_proba

    ids, proba = load_proba(proba_path)
    cols = [survey.CLASSES.index(c) for c in PSEUDO_CLASSES]
    best = proba[:, cols].max(axis=1)
    pick = np.flatnonzero(best >= PSEUDO_THRESHOLD)
    pick = pick[np.argsort(-best[pick], kind="stable")][: int(PSEUDO_RATIO * n_train)]
    chosen = pd.Series(np.asarray(PSEUDO_CLASSES)[proba[pick][:, cols].argmax(axis=1)], index=ids[pick])
    frames = []
    for kind in kinds:
        path = config.features_path("test", kind)
        frame = pd.read_parquet(path, filters=[(survey.OBJECT_ID, "in", chosen.index.tolist())])
        frame = frame.set_index(survey.OBJECT_ID)
        if frames:
            frame = frame.drop(columns=[c for c in frame.columns if c in frames[0].columns])
        frames.append(frame)
    out = frames[0].join(frames[1:], how="inner") if len(frames) > 1 else frames[0]
    out[survey.TARGET] = chosen.reindex(out.index).to_numpy()
    return out.reset_index()


def train(
    config: Config,
    settings: LGBMSettings = LGBMSettings(),
    kinds: tuple[str, ...] = ("aggregate",),
    augmented: bool = False,
    pseudo_from=None,
    reweight: bool = False,
) -> dict:
    """Train the fold models, save them with the OOF predictions; return the score summary.

    ``kinds`` are the feature sets used side by side; with ``augmented`` the redshift-augmented copies
    (``make augment``) join the training part of every fold whose validation part does not hold their parent.
    With ``reweight`` each fold's training weights are moved toward the test set's photo-z distribution
    (:func:`kit.shift.photoz_weights`; each class keeps its total weight).
    ``pseudo_from`` (a test.parquet of an earlier model) adds confidently predicted test objects to the training
    part of every fold (:func:`pseudo_labelled`).
    Out-of-fold predictions and scores are of the original objects only. Sample weights are the metric's,
    computed over the objects each booster trains on (copies included), so every class keeps its weight.

    The model directory is replaced whole when every fold is done (:func:`kit.files.atomic_dir`): an interrupted
    re-training leaves the previous models untouched, never old and new folds side by side.
    """
    frame = load_train_features(config, kinds)
    ids = frame[survey.OBJECT_ID].to_numpy()
    y = data.labels(frame, config.features_path("train"))
    folds = load_or_make_folds(config, ids, y)
    columns = feature_columns(frame)
    x = frame[columns].to_numpy(np.float32)
    galactic = survey.is_galactic(frame["hostgal_photoz"].to_numpy())
    n_folds = int(folds.max()) + 1
    x_fit, y_fit, fold_fit = x, y, folds
    if augmented:
        copies = load_train_features(config, kinds, split="augment")
        parent_fold = pd.Series(folds, index=ids).reindex(copies[PARENT].to_numpy()).to_numpy()
        keep = np.isfinite(parent_fold)
        x_fit = np.concatenate([x, copies.loc[keep, columns].to_numpy(np.float32)])
        y_fit = np.concatenate([y, copies.loc[keep, survey.TARGET].to_numpy()])
        fold_fit = np.concatenate([folds, parent_fold[keep].astype(folds.dtype)])
        log.info("training on %d objects and %d augmented copies", len(y), int(keep.sum()))
    n_pseudo = 0
    if pseudo_from is not None:
        pseudo = pseudo_labelled(config, pseudo_from, kinds, len(y))
        n_pseudo = len(pseudo)
        x_fit = np.concatenate([x_fit, pseudo[columns].to_numpy(np.float32)])
        y_fit = np.concatenate([y_fit, pseudo[survey.TARGET].to_numpy()])
        fold_fit = np.concatenate([fold_fit, np.full(n_pseudo, -1, dtype=fold_fit.dtype)])
        log.info("training with %d pseudo-labelled test objects (%s)", n_pseudo,
                 pseudo[survey.TARGET].value_counts().to_dict())

    photoz_column = columns.index("hostgal_photoz")
    test_photoz = _test_photoz(config) if reweight else None

    def fit_weights(y_tr: np.ndarray, x_tr: np.ndarray) -> np.ndarray:
        base = metric.sample_weights(y_tr)
        if test_photoz is None:
            return base
        from kit.shift import photoz_weights

        return photoz_weights(x_tr[:, photoz_column], y_tr, test_photoz, base_weights=base)

    oof = np.zeros((len(y), len(survey.CLASSES)))
    importance = pd.DataFrame({"feature": columns, "gain": 0.0, "split": 0.0})
    fold_scores, rounds = [], []
    started = time.perf_counter()
    with atomic_dir(config.model_dir(MODEL)) as out:
        for k in range(n_folds):
            tr, va = fold_fit != k, folds == k
            # early stopping watches the masked metric: the score reported for the fold
            booster = lgb.train(
                settings.params(config.seed + k, config.workers),
                lgb.Dataset(x_fit[tr], class_index(y_fit[tr]), weight=fit_weights(y_fit[tr], x_fit[tr]),
                            feature_name=columns),
                num_boost_round=settings.max_rounds,
                valid_sets=[lgb.Dataset(x[va], class_index(y[va]), weight=metric.sample_weights(y[va]),
                                        feature_name=columns)],
                feval=functools.partial(metric.lgbm_eval, galactic=galactic[va]),
                callbacks=[lgb.early_stopping(settings.early_stopping, verbose=False)],
            )
            oof[va] = class99.mask_by_group(booster.predict(x[va], num_iteration=booster.best_iteration), galactic[va])
            fold_scores.append(metric.weighted_log_loss(y[va], oof[va]))
            rounds.append(booster.best_iteration)
            log.info("lgbm fold %d: %d rounds, weighted log loss %.4f", k, booster.best_iteration, fold_scores[-1])
            booster.save_model(str(out / f"fold{k}.txt"), num_iteration=booster.best_iteration)
            importance["gain"] += booster.feature_importance("gain") / n_folds
            importance["split"] += booster.feature_importance("split") / n_folds

        prior = class99.mask_by_group(metric.class_prior_proba(y, len(y)), galactic)
        summary = {
            "model": MODEL,
            "oof": metric.weighted_log_loss(y, oof),
            "oof_per_class": {str(c): v for c, v in metric.per_class_log_loss(y, oof).items()},
            "folds": fold_scores,
            "rounds": rounds,
            "class_prior_oof": metric.weighted_log_loss(y, prior),
            "seconds": time.perf_counter() - started,
            "n_features": len(columns),
            "feature_sets": list(kinds),
            "augmented_copies": int(len(y_fit) - len(y) - n_pseudo),
            "pseudo_labels": n_pseudo,
            "photoz_reweighting": reweight,
            "settings": asdict(settings),
        }
        write_json(out / "features.json", columns)
        importance.sort_values("gain", ascending=False).to_csv(out / "importance.csv", index=False)
        write_json(out / config.score_path(MODEL).name, summary)
        save_proba(out / config.oof_path(MODEL).name, ids, oof)  # last: make's target for the whole directory
    return summary


def load_models(config: Config) -> tuple[list[lgb.Booster], list[str]]:
    """The saved fold boosters and their feature columns."""
    out = config.model_dir(MODEL)
    paths = sorted(out.glob("fold*.txt"))
    if not paths:
        raise InputError(f"{out}: no LightGBM models. Run `make train-lgbm` first.")
    return [lgb.Booster(model_file=str(p)) for p in paths], read_json(out / "features.json")


def _test_photoz(config: Config) -> np.ndarray:
    """The test objects' photo-z, from the aggregate test features (or the test metadata if not built)."""
    path = config.features_path("test")
    if path.exists():
        return pd.read_parquet(path, columns=["hostgal_photoz"])["hostgal_photoz"].to_numpy(np.float64)
    return data.read_metadata(config.test_metadata)["hostgal_photoz"].to_numpy(np.float64)


def feature_sets(config: Config) -> tuple[str, ...]:
    """The feature sets the saved models were trained on (aggregate only for models of older kits)."""
    path = config.score_path(MODEL)
    return tuple(read_json(path).get("feature_sets", ["aggregate"])) if path.exists() else ("aggregate",)


def predict_proba(boosters: list[lgb.Booster], x: np.ndarray) -> np.ndarray:
    """Mean of the fold models' probabilities, (n, 14)."""
    return np.mean([b.predict(x) for b in boosters], axis=0)


def predict_test(config: Config) -> tuple[np.ndarray, np.ndarray]:
    """Stream the test features (every feature set the model used) through the fold models; mask by group, save."""
    import pyarrow.parquet as pq
    from tqdm import tqdm

    boosters, columns = load_models(config)
    kinds = feature_sets(config)
    files, wanted = [], []
    for i, kind in enumerate(kinds):
        path = config.features_path("test", kind)
        if not path.exists():
            raise InputError(f"{path}: {kind} test features not built yet. Run `make {MAKE_TARGET[kind]}` first.")
        table = pq.ParquetFile(path)
        names = set(table.schema_arrow.names)
        own = [c for c in columns if c in names and not any(c in w for w in wanted)]
        if i == 0:
            own = list(dict.fromkeys([survey.OBJECT_ID, "hostgal_photoz", *own]))
        files.append((path, table, own))
        wanted.append(set(own))
    missing = [c for c in columns if not any(c in w for w in wanted)]
    if missing:
        raise InputError(f"test features lack the model's columns {missing[:5]}; rerun make features / gp-features.")
    ids, probas = [], []
    n_rows = files[0][1].metadata.num_rows
    for path, table, _ in files[1:]:
        if table.metadata.num_rows != n_rows:
            raise InputError(f"{path}: {table.metadata.num_rows} objects, {files[0][0]} has {n_rows}: rebuild it.")
    batches = zip(*(t.iter_batches(batch_size=BATCH_ROWS, columns=own + ([survey.OBJECT_ID] if j else []))
                    for j, (_, t, own) in enumerate(files)), strict=True)
    with tqdm(total=n_rows, desc="predict lgbm", unit="obj", unit_scale=True) as bar:
        for parts in batches:
            frames = [b.to_pandas() for b in parts]
            frame = frames[0]
            for (path, _, own), other in zip(files[1:], frames[1:], strict=True):
                if not np.array_equal(other[survey.OBJECT_ID].to_numpy(), frame[survey.OBJECT_ID].to_numpy()):
                    raise InputError(f"{path}: objects in another order than {files[0][0]}: rebuild it.")
                frame = frame.join(other[own])
            proba = predict_proba(boosters, frame[columns].to_numpy(np.float32))
            probas.append(class99.mask_by_group(proba, survey.is_galactic(frame["hostgal_photoz"].to_numpy())))
            ids.append(frame[survey.OBJECT_ID].to_numpy())
            bar.update(len(frame))
    ids_all, proba = np.concatenate(ids), np.concatenate(probas)
    save_proba(config.test_pred_path(MODEL), ids_all, proba)
    return ids_all, proba


class Predictor:
    """Streamed test chunks: the aggregate features through the fold models, mean probabilities out."""

    def __init__(self, config: Config) -> None:
        self.boosters, self.columns = load_models(config)

    def predict(self, chunk) -> np.ndarray:
        missing = [c for c in self.columns if c not in chunk.features]
        if missing:
            raise InputError(f"LightGBM was trained on columns {missing[:5]} that the streamed features do not "
                             "make (they hold the aggregate set only); retrain it (make train-lgbm "
                             "LGBM_FEATURES=aggregate AUGMENT=0)")
        return predict_proba(self.boosters, chunk.features[self.columns].to_numpy(np.float32))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--learning-rate", type=float, default=LGBMSettings.learning_rate)
    parser.add_argument("--max-rounds", type=int, default=LGBMSettings.max_rounds)
    parser.add_argument("--features", default="aggregate",
                        help="comma-separated feature sets: aggregate, gp (default %(default)s)")
    parser.add_argument("--augmented", action="store_true", help="train on the augmented copies too (make augment)")
    parser.add_argument("--reweight", action="store_true",
                        help="weight training objects toward the test set's photo-z distribution")
    parser.add_argument("--pseudo-labels", type=Path, default=None, metavar="TEST_PARQUET",
                        help="add test objects an earlier model (its test.parquet) predicts as SN Ia/II with p>=0.985")


def run(args: argparse.Namespace, config: Config) -> int:
    kinds = tuple(k.strip() for k in args.features.split(",") if k.strip())
    settings = LGBMSettings(learning_rate=args.learning_rate, max_rounds=args.max_rounds)
    summary = train(config, settings, kinds, args.augmented, args.pseudo_labels, args.reweight)
    print(
        f"LightGBM OOF weighted log loss {summary['oof']:.4f} "
        f"(class prior {summary['class_prior_oof']:.4f}; folds {', '.join(f'{s:.3f}' for s in summary['folds'])}) "
        f"in {summary['seconds']:.0f} s"
    )
    return 0
