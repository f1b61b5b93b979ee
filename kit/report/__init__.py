"""`python -m kit report`: a static HTML report of the models, their errors and the submissions.

Writes ``reports/<name>/index.html`` and its PNG figures. Each section reads its own inputs;
a section whose inputs are missing or unreadable becomes a one-line skip note, never a crash.
"""

from __future__ import annotations

import argparse
import functools
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from kit import metric, survey
from kit import models as registry
from kit.config import Config
from kit.files import load_proba, read_json

log = logging.getLogger(__name__)

#: Models of the pipeline, in the report's order: the registered ones, then the blend.
MODELS: tuple[str, ...] = (*registry.names(), *registry.DERIVED)


@dataclass
class OOF:
    """One model's out-of-fold predictions aligned with the training labels."""

    model: str
    object_ids: np.ndarray
    y: np.ndarray
    proba: np.ndarray
    score: float


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--worst", type=int, default=12, help="light curves in the gallery of worst objects")
    parser.add_argument("--top-features", type=int, default=30, help="features in the importance chart")


def run(args: argparse.Namespace, config: Config) -> int:
    path = write_report(config, worst=args.worst, top_features=args.top_features)
    print(path)
    return 0


# --- inputs -----------------------------------------------------------------------------------
def _train_metadata(config: Config) -> pd.DataFrame | None:
    if not config.train_metadata.exists():
        return None
    return pd.read_csv(config.train_metadata).set_index(survey.OBJECT_ID)


def _load_oofs(config: Config, targets: pd.Series | None, page) -> list[OOF]:
    models = list(MODELS) + sorted(
        p.parent.name for p in Path(config.models_dir).glob("*/oof.parquet") if p.parent.name not in MODELS
    )
    oofs = []
    for model in models:
        path = config.oof_path(model)
        if not path.exists():
            continue
        try:
            ids, proba = load_proba(path)
        except (OSError, ValueError, KeyError) as err:
            page.note(f"{path} unreadable: {err}")
            continue
        keep = np.isin(ids, targets.index)
        if not keep.any():
            page.note(f"{path}: no object_id matches the training metadata")
            continue
        y = targets.loc[ids[keep]].to_numpy()
        proba = proba[keep]
        oofs.append(OOF(model, ids[keep], y, proba, metric.weighted_log_loss(y, proba)))
    return oofs


def _submissions(config: Config) -> list[Path]:
    """Submission files of this competition folder, blend first."""
    found = sorted(Path(config.submissions_dir).glob(f"{config.name}-*.csv.gz"))
    return sorted(found, key=lambda p: (not p.name.endswith("-blend.csv.gz"), p.name))


def _truth(config: Config) -> pd.DataFrame | None:
    if not config.truth.exists():
        return None
    truth = pd.read_csv(config.truth)
    raw = truth["true_target"] if "true_target" in truth.columns else truth[survey.TARGET]
    truth["scored"] = survey.truth_to_scored(raw.to_numpy())
    return truth.set_index(survey.OBJECT_ID)


# --- sections ---------------------------------------------------------------------------------
def _section_models(page, oofs: list[OOF], config: Config) -> None:
    from kit.report import figures

    page.section("Out-of-fold scores")
    if not oofs:
        page.note(f"no OOF predictions under {config.models_dir} (run the training commands first)")
        return
    rows = []
    for o in oofs:
        stored = None
        if config.score_path(o.model).exists():
            try:
                stored = read_json(config.score_path(o.model)).get("oof")
            except (ValueError, AttributeError):
                stored = None
        rows.append({"model": o.model, "objects": len(o.y), "OOF weighted log loss": o.score,
                     "score.json oof": stored})
    page.table(pd.DataFrame(rows))

    page.section("Confusion matrices (OOF, row-normalised)")
    for o in oofs:
        page.figure(f"confusion_{o.model}.png",
                    figures.confusion_matrix(o.y, o.proba, f"{o.model}: OOF confusion matrix (loss {o.score:.3f})"))

    page.section("Per-class contribution to the weighted log loss")
    contrib = {o.model: metric.class_contributions(o.y, o.proba) for o in oofs}
    page.figure("class_contributions.png",
                figures.grouped_bars(contrib, "Per-class contribution to the OOF weighted log loss",
                                     "contribution (sums to the metric)"),
                "Each bar is w_c * mean(-ln p) / sum(w): the bars of one model add up to its score.")


def _section_importance(page, config: Config, top: int) -> None:
    from kit.report import figures

    page.section("LightGBM feature importance")
    path = config.model_dir("lgbm") / "importance.csv"
    if not path.exists():
        page.note(f"{path} not found")
        return
    frame = pd.read_csv(path)
    if not {"feature", "gain"} <= set(frame.columns) or frame.empty:
        page.note(f"{path} has no feature,gain columns")
        return
    page.figure("feature_importance.png", figures.feature_importance(frame, top))


def _section_transfer(page, config: Config) -> None:
    """The transfer study (``make transfer-study``): its table by arm and label share, and its figure."""
    from kit import transfer

    page.section("Transfer learning: from scratch vs pretrained, by share of the labels")
    path = config.model_dir("transfer") / "study.csv"
    if not path.exists():
        page.note(f"{path} not found (make transfer-study)")
        return
    table = pd.read_csv(path)
    page.table(transfer.summarise(table), f"{path}: weighted log loss, out of fold and on the local test truth "
                                          "(mean and standard deviation over label seeds).")
    page.figure("transfer_study.png", transfer.study_figure(table))


def _section_reliability(page, oofs: list[OOF]) -> None:
    from kit.report import figures

    page.section("Calibration")
    if not oofs:
        page.note("no OOF predictions for reliability curves")
        return
    chosen = next((o for o in oofs if o.model == "blend"), min(oofs, key=lambda o: o.score))
    page.figure("reliability.png", figures.reliability(chosen.y, chosen.proba, f"{chosen.model}: OOF reliability"))


def learning_history(score: dict) -> list[tuple[str, dict[str, list[float]]]]:
    """Per-fold metric series from an LSTM score JSON, tolerant of several layouts.

    Understood: ``{"history": [{"fold": k, "loss": [...], "val_wloss": [...]}, ...]}``, a Keras
    ``history`` dict, and ``"per_epoch"`` as a list of per-fold lists (of numbers or of dicts of
    metrics) or a list of per-epoch dicts (optionally with a ``fold`` key).
    Returns an empty list when nothing usable is found.
    """

    def numeric_lists(d: dict) -> dict[str, list[float]]:
        out = {}
        for k, v in d.items():
            if isinstance(v, list) and v and all(isinstance(x, int | float) for x in v) and k not in ("fold", "epoch"):
                out[str(k)] = [float(x) for x in v]
        return out

    def from_epochs(epochs: list) -> dict[str, list[float]]:
        if all(isinstance(e, int | float) for e in epochs):
            return {"val": [float(e) for e in epochs]}
        series: dict[str, list[float]] = {}
        for e in epochs:
            if isinstance(e, dict):
                for k, v in e.items():
                    if k not in ("fold", "epoch") and isinstance(v, int | float):
                        series.setdefault(str(k), []).append(float(v))
        return series

    out: list[tuple[str, dict[str, list[float]]]] = []
    hist = score.get("history")
    if isinstance(hist, dict):
        out.append(("all", numeric_lists(hist)))
    elif isinstance(hist, list):
        for i, d in enumerate(hist):
            if isinstance(d, dict):
                out.append((str(d.get("fold", i)), numeric_lists(d)))
    per_epoch = score.get("per_epoch")
    if not out and isinstance(per_epoch, list) and per_epoch:
        if all(isinstance(x, list) for x in per_epoch):
            out = [(str(i), from_epochs(x)) for i, x in enumerate(per_epoch)]
        elif all(isinstance(x, dict) for x in per_epoch):
            if any(numeric_lists(x) for x in per_epoch):
                out = [(str(x.get("fold", i)), numeric_lists(x)) for i, x in enumerate(per_epoch)]
            else:
                folds: dict[str, list] = {}
                for x in per_epoch:
                    folds.setdefault(str(x.get("fold", 0)), []).append(x)
                out = [(k, from_epochs(v)) for k, v in folds.items()]
        elif all(isinstance(x, int | float) for x in per_epoch):
            out = [("all", from_epochs(per_epoch))]
    return [(f, s) for f, s in out if s]


def _section_learning(page, config: Config) -> None:
    """Learning curves of every registered model whose score.json holds a per-epoch history (the networks)."""
    from kit.report import figures

    page.section("Learning curves of the networks")
    shown = 0
    for model in registry.names():
        path = config.score_path(model)
        if not path.exists():
            continue
        try:
            history = learning_history(read_json(path))
        except (ValueError, AttributeError) as err:
            page.note(f"{path} unreadable: {err}")
            continue
        if history:
            page.figure(f"{model}_learning_curves.png",
                        figures.learning_curves(history, f"{model.upper()}: metrics per epoch"),
                        "Dashed: training; solid: validation.")
            shown += 1
    if not shown:
        page.note(f"no per-epoch history in the score.json of any model under {config.models_dir}")


def _section_settings(page, config: Config) -> None:
    page.section("Blend weights and class-99 settings")
    path = config.model_dir("blend") / "weights.json"
    if path.exists():
        try:
            w = read_json(path)
            rows = [{"model": m, "weight": float(v)} for m, v in (w.get("weights") or {}).items()]
            page.table(pd.DataFrame(rows or [{"model": "", "weight": np.nan}]),
                       f"blend method: {w.get('method', '?')}; blend OOF: {w.get('oof', '?')}")
        except (ValueError, AttributeError, TypeError) as err:
            page.note(f"{path} unreadable: {err}")
    else:
        page.note(f"{path} not found")
    page.table(pd.DataFrame([
        {"setting": "class99_method (kit/class99.py)", "value": config.class99_method},
        {"setting": "class99_galactic (galactic scale: product, constant, second)", "value": config.class99_galactic},
        {"setting": "class99_extragalactic (extragalactic scale: product, constant, second)",
         "value": config.class99_extragalactic},
    ]))


def _section_gallery(page, config: Config, oofs: list[OOF], worst: int) -> None:
    from kit.report import figures
    from kit.report.plot_object import read_lightcurves

    page.section("Worst-classified training objects")
    if not oofs or worst <= 0:
        page.note("no OOF predictions to find the worst-classified objects")
        return
    if not config.train_lightcurves.exists():
        page.note(f"{config.train_lightcurves} not found")
        return
    best = min(oofs, key=lambda o: o.score)
    col = np.searchsorted(np.asarray(survey.CLASSES), best.y)
    p_true = best.proba[np.arange(len(best.y)), col]
    order = np.argsort(p_true)[:worst]
    ids = best.object_ids[order]
    lcs = read_lightcurves(config.train_lightcurves, ids, config.chunk_rows)
    items = []
    for i in order:
        oid = int(best.object_ids[i])
        lc = lcs[lcs[survey.OBJECT_ID] == oid]
        if lc.empty:
            continue
        pred = survey.CLASSES[int(best.proba[i].argmax())]
        title = (f"{oid}: true {figures.class_label(best.y[i])} (p={p_true[i]:.3f})\n"
                 f"predicted {figures.class_label(pred)} (p={best.proba[i].max():.2f})")
        items.append((lc, title))
    if not items:
        page.note(f"none of the worst objects is in {config.train_lightcurves}")
        return
    page.figure("worst_objects.png",
                figures.light_curve_gallery(items, f"{len(items)} lowest p(true class), {best.model} OOF"),
                "Draw any object with: python -m kit plot-object OBJECT_ID")


def _read_submission(path: Path) -> pd.DataFrame:
    """A submission indexed by object_id; read once per report (the real one holds 3.5 million rows)."""
    return _read_submission_cached(Path(path), Path(path).stat().st_mtime_ns)


@functools.lru_cache(maxsize=1)
def _read_submission_cached(path: Path, mtime_ns: int) -> pd.DataFrame:
    frame = pd.read_csv(path)
    missing = set(survey.SUBMISSION_COLUMNS) - set(frame.columns)
    if missing:
        raise ValueError(f"missing columns {sorted(missing)}")
    return frame.set_index(survey.OBJECT_ID)


def local_scores(sub: pd.DataFrame, truth: pd.DataFrame, meta: pd.DataFrame | None) -> dict:
    """Local test score of a submission: overall, per class and per object group.

    Parameters
    ----------
    sub : submission indexed by object_id, columns survey.SUBMISSION_COLUMNS[1:]
    truth : indexed by object_id with a ``scored`` column (classes, 99 for unknowns)
    meta : test metadata indexed by object_id (``hostgal_photoz``, ``ddf``) or None
    """
    common = truth.index.intersection(sub.index)
    y = truth.loc[common, "scored"].to_numpy()
    p = sub.loc[common, list(survey.SUBMISSION_COLUMNS[1:])].to_numpy(np.float64)
    classes = survey.SUBMISSION_CLASSES
    groups = {"all": metric.weighted_log_loss(y, p, classes)}
    if meta is not None:
        m = meta.reindex(common)
        masks = {}
        if "hostgal_photoz" in m.columns:
            gal = survey.is_galactic(m["hostgal_photoz"].to_numpy())
            masks.update(galactic=gal, extragalactic=~gal)
        if "ddf" in m.columns:
            ddf = m["ddf"].to_numpy() == 1
            masks.update(DDF=ddf, WFD=~ddf)
        for name, mask in masks.items():
            if mask.any():
                groups[name] = metric.weighted_log_loss(y[mask], p[mask], classes)
    return {"objects": len(common), "groups": groups, "per_class": metric.per_class_log_loss(y, p, classes),
            "y": y, "p99": p[:, -1]}


def _section_test(page, config: Config, subs: list[Path], truth: pd.DataFrame | None) -> None:
    from kit.report import figures

    page.section("Local test score")
    if truth is None:
        page.note(f"no truth file {config.truth}")
        return
    if not subs:
        page.note(f"no submission {config.name}-*.csv.gz in {config.submissions_dir}")
        return
    meta = None
    if config.test_metadata.exists():
        meta = pd.read_csv(config.test_metadata, usecols=lambda c: c in (survey.OBJECT_ID, "hostgal_photoz", "ddf"))
        meta = meta.set_index(survey.OBJECT_ID)
    rows, first = [], None
    for path in subs:
        try:
            scores = local_scores(_read_submission(path), truth, meta)
        except (ValueError, KeyError) as err:
            page.note(f"{path}: cannot score ({err})")
            continue
        rows.append({"submission": path.name, "objects": scores["objects"], **scores["groups"]})
        first = first or (path, scores)
    if not rows:
        return
    page.table(pd.DataFrame(rows), "Weighted log loss against the truth file, overall and by object group.")
    path, scores = first
    per_class = dict(sorted(scores["per_class"].items(), key=lambda kv: survey.SUBMISSION_CLASSES.index(kv[0])))
    page.figure("test_scores.png", figures.scores_by_group(per_class, scores["groups"], f"{path.name}: local score"))
    unknown = scores["y"] == survey.CLASS_UNKNOWN
    page.figure("class99_hist.png",
                figures.class99_histogram(scores["p99"], unknown, f"{path.name}: predicted class-99 probability"))


def _section_distribution(page, config: Config, subs: list[Path], targets: pd.Series | None) -> None:
    from kit.report import figures

    page.section("Predicted class distribution on the test set")
    classes, proba, source = survey.SUBMISSION_CLASSES, None, ""
    for path in subs:
        try:
            proba, source = _read_submission(path)[list(survey.SUBMISSION_COLUMNS[1:])].to_numpy(), path.name
            break
        except (ValueError, KeyError):
            continue
    if proba is None:
        for model in ("blend", *MODELS):
            if config.test_pred_path(model).exists():
                proba = load_proba(config.test_pred_path(model))[1]
                classes, source = survey.CLASSES, f"{model} test predictions"
                break
    if proba is None:
        page.note("no submission or test predictions")
        return
    series = {}
    if targets is not None:
        series["training prior"] = {c: float(np.mean(targets.to_numpy() == c)) for c in classes}
    series[f"mean probability ({source})"] = dict(zip(classes, proba.mean(axis=0).tolist(), strict=True))
    argmax = np.asarray(classes)[proba.argmax(axis=1)]
    series["share of arg-max"] = {c: float(np.mean(argmax == c)) for c in classes}
    page.figure("class_distribution.png",
                figures.class_distribution(series, "Test-set predictions vs the training prior", classes))


def _section_ledger(page, config: Config) -> None:
    """Kaggle's ledger, then the local stand-in's (labelled as such), each row with its endpoint."""
    from kit.kaggle import ledger as kit_ledger

    page.section("Submissions ledger")
    kaggle_path = config.ledger_path
    standin_path = kaggle_path.with_name(kit_ledger.STANDIN_FILE)
    if not kaggle_path.exists() and not standin_path.exists():
        page.note(f"{kaggle_path} not found (no upload yet)")
        return
    for path, caption in (
        (kaggle_path, "Uploads to Kaggle: cross-validation (oof), local test score and Kaggle's scores."),
        (standin_path, "Uploads to the LOCAL STAND-IN, not Kaggle: its scores are on its own truth file, "
                       "its leaderboard holds invented teams."),
    ):
        if not path.exists():
            continue
        rows = pd.DataFrame(kit_ledger.read(path), columns=list(kit_ledger.COLUMNS))
        if rows.empty:
            page.note(f"{path} is empty")
            continue
        rows["endpoint"] = rows["endpoint"].replace("", "(not recorded)")
        for board in ("public", "private"):
            gap = pd.to_numeric(rows[f"{board}_score"], errors="coerce") - pd.to_numeric(rows["oof_score"],
                                                                                          errors="coerce")
            rows[f"{board} - oof"] = gap
        cols = ["time", "endpoint", "file", "model", "message", "status", "oof_score", "local_score",
                "public_score", "private_score", "public - oof", "private - oof"]
        page.table(rows[cols], f"{path}. {caption}")


# --- the whole page ---------------------------------------------------------------------------
def write_report(config: Config, worst: int = 12, top_features: int = 30) -> Path:
    """Write the HTML report and its figures to ``config.reports_dir``; returns the page's path."""
    from kit.report.page import Page

    page = Page(f"PLAsTiCC report: {config.name}", config.reports_dir)
    meta = _train_metadata(config)
    targets = None
    if meta is None or survey.TARGET not in meta.columns:
        page.note(f"{config.train_metadata} not found or without target: no OOF analysis")
        oofs: list[OOF] = []
    else:
        targets = meta[survey.TARGET]
        oofs = _load_oofs(config, targets, page)
    sections = [
        lambda: _section_models(page, oofs, config),
        lambda: _section_importance(page, config, top_features),
        lambda: _section_reliability(page, oofs),
        lambda: _section_learning(page, config),
        lambda: _section_transfer(page, config),
        lambda: _section_settings(page, config),
        lambda: _section_gallery(page, config, oofs, worst),
        lambda: _section_test(page, config, _submissions(config), _truth(config)),
        lambda: _section_distribution(page, config, _submissions(config), targets),
        lambda: _section_ledger(page, config),
    ]
    for section in sections:
        try:
            section()
        except (OSError, ValueError, KeyError, TypeError) as err:  # an unreadable input skips its section
            log.warning("report section skipped: %s", err)
            page.note(f"unreadable input: {err}")
    _read_submission_cached.cache_clear()
    path = page.write()
    log.info("report: %d figures, %d skip notes -> %s", len(page.figures), len(page.notes), path)
    return path
