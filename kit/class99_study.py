"""Which class-99 method scores best: every method of :mod:`kit.class99` on one model's test predictions.

Needs the truth (``test_truth.csv``: a simulated competition or the unblinded Zenodo import). Each method's
submission is built exactly as ``python -m kit submission --class99 <method>`` builds it (mask, class 99,
rounding to the written digits) and scored as ``python -m kit score`` scores the file: the total weighted
log loss, the galactic and extragalactic figures, and class 99's own term (its share of the total, i.e.
``2 * mean(-ln p99 over the true unknowns) / sum of the weights``), and per group how well the method's
class-99 column ranks the unknowns above the known objects (ROC AUC: 0.5 for any method that gives a group one
value, so only an AUC above it can take the gap below the floor of :func:`gap_floor`). With ``--write`` the
submissions are also written (``submissions/<name>-<model>[-<method>].csv.gz``) for uploading the ones a user
wants to compare on the real leaderboard.

Result: ``models/<name>/<model>/class99_study.json``.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from kit import class99, files, score, submission, survey
from kit.config import Config
from kit.errors import InputError

log = logging.getLogger(__name__)


def study_path(config: Config, model: str) -> Path:
    return config.model_dir(model) / "class99_study.json"


def submission_frame(object_ids: np.ndarray, proba15: np.ndarray, digits: int = submission.SIGNIFICANT_DIGITS):
    """The frame ``kit.score`` reads back from a written submission: rounded, float32 columns."""
    rounded = submission.round_significant(proba15, digits).astype(np.float32)
    frame = pd.DataFrame(rounded, columns=list(survey.SUBMISSION_COLUMNS[1:]))
    frame.insert(0, survey.OBJECT_ID, np.asarray(object_ids, dtype=np.int64))
    return frame


def truth_of(truth_path: Path, object_ids: np.ndarray) -> np.ndarray:
    """The scored class of each of ``object_ids`` (unknowns as 99; NaN where the truth has no such object)."""
    return score.read_truth(truth_path).set_index(survey.OBJECT_ID)[survey.TARGET].reindex(object_ids).to_numpy()


def score_methods(
    object_ids: np.ndarray,
    proba: np.ndarray,
    galactic: np.ndarray,
    truth_path: Path,
    metadata_path: Path,
    config: Config,
    methods: tuple[str, ...] = class99.METHODS,
) -> dict[str, dict]:
    """Score each class-99 method on one set of test predictions.

    Parameters
    ----------
    object_ids, proba, galactic
        The test objects (metadata order), their (n, 14) probabilities and galactic flags
        (:func:`kit.submission.aligned_predictions`).
    truth_path, metadata_path
        ``test_truth.csv`` and ``test_set_metadata.csv``.
    config
        Supplies the class-99 scales (``product``, ``constant``, ``second``).

    Returns
    -------
    dict
        method -> {overall, galactic, extragalactic, class99_term, class99_loss, mean_p99_galactic,
        mean_p99_extragalactic, auc_galactic, auc_extragalactic}; losses are the competition metric, as
        ``kit.score`` reports them; the AUCs are :func:`unknown_auc` of the written class-99 column.
    """
    g = np.asarray(galactic, dtype=bool)
    truth = truth_of(truth_path, object_ids)
    results = {}
    for method in methods:
        proba15 = submission.build_submission(object_ids, proba, g, config.with_(class99_method=method))
        written = submission_frame(object_ids, proba15)
        scored = score.score_submission(written, truth_path, metadata_path)
        unknown = scored["per_class"].get(str(survey.CLASS_UNKNOWN))
        written_p99 = written[survey.SUBMISSION_COLUMNS[-1]].to_numpy()
        results[method] = {
            "overall": scored["overall"],
            "galactic": scored["groups"].get("galactic", {}).get("loss"),
            "extragalactic": scored["groups"].get("extragalactic", {}).get("loss"),
            "class99_term": unknown["contribution"] if unknown else 0.0,
            "class99_loss": unknown["loss"] if unknown else None,
            "mean_p99_galactic": float(proba15[g, -1].mean()) if g.any() else None,
            "mean_p99_extragalactic": float(proba15[~g, -1].mean()) if (~g).any() else None,
            "auc_galactic": unknown_auc(written_p99[g], truth[g]),
            "auc_extragalactic": unknown_auc(written_p99[~g], truth[~g]),
        }
        log.info("class 99 %s: %.5f", method, scored["overall"])
    return results


def unknown_auc(p99: np.ndarray, truth: np.ndarray) -> float | None:
    """How well ``p99`` ranks the unknowns above the known objects: the ROC AUC (0.5: not at all, as any method
    that gives a group one value; 1: every unknown above every known object). None without both kinds.

    ``truth``: the scored classes (unknowns as 99; NaN, objects without truth, are left out).
    """
    from sklearn.metrics import roc_auc_score

    truth = np.asarray(truth, dtype=np.float64)
    has = ~np.isnan(truth)
    unknown = truth[has] == survey.CLASS_UNKNOWN
    if unknown.all() or not unknown.any():
        return None
    return float(roc_auc_score(unknown, np.asarray(p99)[has]))


def best_method(results: dict[str, dict], key: str = "overall") -> str:
    """The method with the lowest ``key`` (ties: the first in ``class99.METHODS`` order)."""
    scored = {m: r[key] for m, r in results.items() if r[key] is not None}
    return min(scored, key=scored.get)


def format_table(results: dict[str, dict]) -> str:
    """Plain-text table: one row per method, the best overall marked with ``*``."""
    best = best_method(results)

    def num(x) -> str:
        return f"{x:>9.5f}" if x is not None else f"{'-':>9}"

    lines = [f"{'method':<10} {'overall':>9} {'galactic':>9} {'extragal':>9} {'99 term':>9} {'99 loss':>9} "
             f"{'p99 gal':>9} {'p99 ext':>9} {'AUC gal':>9} {'AUC ext':>9}"]
    for method, r in results.items():
        lines.append(
            f"{method:<10} {num(r['overall'])} {num(r['galactic'])} {num(r['extragalactic'])} "
            f"{num(r['class99_term'])} {num(r['class99_loss'])} {num(r['mean_p99_galactic'])} "
            f"{num(r['mean_p99_extragalactic'])} {num(r.get('auc_galactic'))} {num(r.get('auc_extragalactic'))}"
            + ("  *" if method == best else "")
        )
    return "\n".join(lines)


def gap_floor(oof_loss: dict[int, float], galactic_class: dict[int, bool], unknown_galactic_share: float,
              weights: dict[int, float] = survey.CLASS_WEIGHTS) -> dict:
    """The smallest OOF-to-test gap that class 99 allows when the known classes meet no shift at all.

    Suppose each known class scores on the test set exactly its out-of-fold loss ``oof_loss`` (before class 99),
    and class 99 gets one probability per group, ``p_gal`` and ``p_ext`` (any method that does not tell the
    unknowns apart from the known objects of their group). The known objects of group g then lose
    ``-ln(1 - p_g)`` more each and the unknowns ``-ln p_g``; the total is lowest at
    ``p_g = w99 f_g / (W_g + w99 f_g)`` (``W_g``: the weights of the group's known classes, ``f_g``: the share of
    the unknowns in the group). Returns that lowest test score, the OOF score and their difference ("gap"),
    with both probabilities.
    """
    w99 = weights[survey.CLASS_UNKNOWN]
    known = list(oof_loss)
    total_w = sum(weights[c] for c in known)
    oof = sum(weights[c] * oof_loss[c] for c in known) / total_w
    extra, probs = 0.0, {}
    for name, in_group, share in (("galactic", True, unknown_galactic_share),
                                  ("extragalactic", False, 1.0 - unknown_galactic_share)):
        w_group = sum(weights[c] for c in known if galactic_class[c] == in_group)
        p = w99 * share / (w_group + w99 * share) if share > 0 else 0.0
        probs[name] = p
        extra += -w_group * np.log1p(-p) - (w99 * share * np.log(p) if share > 0 else 0.0)
    test = (oof * total_w + extra) / (total_w + w99)
    return {"oof": oof, "test": test, "gap": test - oof, "p99_galactic": probs["galactic"],
            "p99_extragalactic": probs["extragalactic"]}


def gap_report(config: Config, model: str, ids: np.ndarray, proba: np.ndarray, galactic: np.ndarray,
               results: dict[str, dict]) -> dict | None:
    """Where ``model``'s OOF-to-test gap comes from: the known classes' shift and class 99 (None without OOF).

    ``ids``, ``proba``, ``galactic``: the test predictions as :func:`kit.submission.aligned_predictions` gives them.

    ``known_test`` scores the known objects alone (the unknowns left out, the 14 predicted columns); its
    difference from ``oof`` is the shift the known classes meet. ``gaps`` is each method's total minus ``oof``;
    ``floor`` is :func:`gap_floor` for this model's per-class OOF losses.
    """
    from kit import data, files, metric

    if not config.oof_path(model).exists():
        return None
    oof_ids, oof_proba = files.load_proba(config.oof_path(model))
    train = data.read_metadata(config.train_metadata, require_target=True).set_index(survey.OBJECT_ID)
    train = train.loc[oof_ids]
    y_train = train[survey.TARGET].to_numpy()
    oof_loss = metric.per_class_log_loss(y_train, oof_proba)
    train_galactic = survey.is_galactic(train["hostgal_photoz"].to_numpy())
    galactic_class = {c: bool(train_galactic[y_train == c].mean() > 0.5) for c in oof_loss}
    truth = truth_of(config.truth, ids)
    test_galactic = np.asarray(galactic, dtype=bool)
    unknown = truth == survey.CLASS_UNKNOWN
    scored = ~unknown & ~pd.isna(truth)
    masked = class99.mask_by_group(proba, test_galactic)
    known_test = metric.weighted_log_loss(truth[scored].astype(np.int64), masked[scored])
    oof = metric.weighted_log_loss(y_train, oof_proba)
    floor = gap_floor(oof_loss, galactic_class, float(test_galactic[unknown].mean()) if unknown.any() else 0.0)
    return {"oof": oof, "known_test": known_test, "known_shift": known_test - oof,
            "gaps": {m: r["overall"] - oof for m, r in results.items()}, "floor": floor}


def format_gap(gap: dict) -> str:
    floor = gap["floor"]
    return (f"OOF {gap['oof']:.5f}; the known objects alone on the test set {gap['known_test']:.5f} (their shift "
            f"{gap['known_shift']:+.5f}); OOF-to-test gap by method: "
            + ", ".join(f"{m} {g:.5f}" for m, g in gap["gaps"].items())
            + f".\nWith no shift of the known classes, one class-99 probability per group (best: galactic "
              f"{floor['p99_galactic']:.3f}, extragalactic {floor['p99_extragalactic']:.3f}) still leaves a gap of "
              f"{floor['gap']:.5f}: below that only a method that tells the unknowns apart.")


# --- command ------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None,
                        help="model whose test predictions to study (default: blend if present, else lgbm)")
    parser.add_argument("--methods", nargs="+", choices=class99.METHODS, default=list(class99.METHODS),
                        help="methods to score (default: all)")
    parser.add_argument("--write", action="store_true",
                        help="also write each method's submission (submissions/<name>-<model>[-<method>].csv.gz)")


def run(args: argparse.Namespace, config: Config) -> int:
    if not config.truth.exists():
        raise InputError(
            f"{config.truth} does not exist: the class-99 study needs the truth (a simulated competition or "
            "`python -m kit import-zenodo`); on Kaggle's own data submit with --class99 METHOD and compare "
            "the leaderboard scores instead"
        )
    model = args.model or submission.default_model(config)
    ids, proba, galactic = submission.aligned_predictions(config, model)
    results = score_methods(ids, proba, galactic, config.truth, config.test_metadata, config, tuple(args.methods))
    if args.write:
        for method in args.methods:
            cfg = config.with_(class99_method=method)
            out = submission.write_submission(cfg.submission_path(model), ids,
                                              submission.build_submission(ids, proba, galactic, cfg))
            print(f"wrote {out}")
    best = best_method(results)
    gap = gap_report(config, model, ids, proba, galactic, results)
    summary = {
        "model": model,
        "data": str(config.data_dir),
        "scales": {"galactic": config.class99_galactic, "extragalactic": config.class99_extragalactic},
        "default": class99.DEFAULT_METHOD,
        "best": best,
        "methods": results,
        "gap": gap,
    }
    print(f"class 99 on {model}'s test predictions ({len(ids)} objects), weighted log loss:")
    print(format_table(results))
    print(f"best: {best} (--class99 {best}; default {class99.DEFAULT_METHOD})")
    if gap:
        print(format_gap(gap))
    out = study_path(config, model)
    files.write_json(out, summary)
    print(f"wrote {out}")
    return 0
