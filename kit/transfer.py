"""Transfer learning for the LSTM: fine-tuning plans, label fractions, and the transfer study.

* :class:`Plan` is how :func:`kit.lstm.train` is told to train otherwise: under another name, from a pretrained
  encoder (:mod:`kit.pretrain`) frozen for the first epochs then unfrozen (at the network's own learning rate
  by default: see :func:`default_finetune_lr`), on a fraction of the labels.
* :func:`label_mask` keeps a stratified fraction of the labelled training objects, nested in the shared folds.
* ``python -m kit transfer-study`` (``make transfer-study``): the network from scratch vs pretrained and
  fine-tuned (on the test light curves, and on other surveys' with ``--also-pretrained``), on 5 %, 25 % and 100 %
  of the labels (several seeds for the smallest fraction), OOF and local
  test score, as ``models/<name>/transfer/study.{json,csv,png}``; each run's models under
  ``models/<name>/transfer/<arm>-f<fraction>-s<seed>/``.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from kit.config import Config
from kit.errors import InputError
from kit.files import atomic_path, load_proba, read_json, write_json

log = logging.getLogger(__name__)

DEFAULT_FRACTIONS = (0.05, 0.25, 1.0)


def label_mask(y: np.ndarray, folds: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Which training objects keep their label: (n,) bool, ``fraction`` of each (fold, class) cell.

    Every cell (the objects of one class in one fold) keeps ``max(1, round(fraction * size))`` objects drawn at
    random (seed ``[seed, fold, class]``), so the kept set is stratified by class within every fold: fold k's
    training part keeps the labelled objects of the other folds, and its validation fold is left whole (OOF is
    scored on every object). For one seed the kept sets are nested: a smaller fraction keeps a subset of a larger
    one's objects.
    """
    if not 0.0 < fraction <= 1.0:
        raise InputError(f"label fraction {fraction}: choose a share in (0, 1], e.g. 0.05")
    y, folds = np.asarray(y), np.asarray(folds)
    keep = np.zeros(len(y), bool)
    if fraction >= 1.0:
        keep[:] = True
        return keep
    for k in np.unique(folds):
        for c in np.unique(y):
            members = np.flatnonzero((folds == k) & (y == c))
            if len(members):
                order = members[np.random.default_rng([seed, int(k), int(c)]).permutation(len(members))]
                keep[order[: max(1, int(round(fraction * len(members))))]] = True
    return keep


@dataclass(frozen=True)
class Plan:
    """How :func:`kit.lstm.train` trains: the model's name, a pretrained encoder, frozen epochs, label fraction.

    ``encoder``: path of an ``encoder.keras`` (:mod:`kit.pretrain`); each fold's network starts from its weights,
    frozen for ``freeze_epochs`` epochs, then trained with the rest at ``finetune_lr`` (default: the settings'
    learning rate). Early stopping counts its patience afresh once the encoder is unfrozen. ``equal_steps``: see
    :meth:`train_rows` (False here, for plans saved before it existed; the command line's default is True; always
    False on all the labels, where it changes nothing).
    """

    name: str = "lstm"
    encoder: str | None = None
    freeze_epochs: int = 0
    finetune_lr: float | None = None
    label_fraction: float = 1.0
    label_seed: int = 0
    equal_steps: bool = False

    def __post_init__(self):
        if self.label_fraction >= 1.0:  # all the labels: nothing to repeat, the same run either way
            object.__setattr__(self, "equal_steps", False)

    def train_rows(self, tr: np.ndarray, y: np.ndarray, folds: np.ndarray) -> np.ndarray:
        """The training part ``tr`` of a fold, reduced to the objects that keep their labels.

        With ``equal_steps`` the kept objects are repeated (each as often, about 1 / fraction times) so that the
        part is as long as ``tr``: an epoch then takes as many steps as one on all the labels, and a fixed number of
        epochs and of early-stopping patience spends the same compute at every fraction. Each repeat draws its own
        training-time augmentation.
        """
        if self.label_fraction >= 1.0:
            return tr
        kept = tr[label_mask(y, folds, self.label_fraction, self.label_seed)[tr]]
        return np.tile(kept, max(1, int(round(len(tr) / len(kept))))) if self.equal_steps else kept

    def build(self, settings, n_aggregates: int):
        from kit import lstm_model

        encoder = load_encoder(self.encoder) if self.encoder else None
        if encoder is not None and encoder.inputs[0].shape[-1] != settings.n_features:
            raise InputError(f"{self.encoder}: an encoder of {encoder.inputs[0].shape[-1]} step features, but the "
                             f"network being trained reads {settings.n_features}: pretrain with the preset you "
                             "fine-tune with (make pretrain PRETRAIN_ARGS='--preset ...' and the same --preset "
                             "in LSTM_ARGS).")
        return lstm_model.build_model(settings, n_aggregates, encoder)

    def fit(self, model, dataset, settings, monitor) -> None:
        """Fit ``model`` for ``settings.epochs`` epochs in all: the first ``freeze_epochs`` with the encoder frozen."""
        frozen = min(self.freeze_epochs, settings.epochs) if self.encoder else 0
        fit = dict(callbacks=[monitor], verbose=0, shuffle=False)
        if frozen:
            encoder = model.get_layer("encoder")
            encoder.trainable = False
            _compile(model, settings.learning_rate)
            model.fit(dataset, epochs=frozen, **fit)
            encoder.trainable = True
            monitor.wait = 0  # the unfrozen phase gets its own patience
            _open_steps(dataset)
        if frozen < settings.epochs:
            if frozen or self.finetune_lr:
                _compile(model, self.finetune_lr or settings.learning_rate)
            model.fit(dataset, epochs=settings.epochs, initial_epoch=frozen, **fit)

    def summary(self, y: np.ndarray, folds: np.ndarray) -> dict:
        keep = label_mask(y, folds, self.label_fraction, self.label_seed)
        return {"plan": asdict(self), "n_labelled": int(keep.sum())}


def _open_steps(dataset, tries: int = 50) -> None:
    """Reshuffle ``dataset`` until its first two batches differ in width, so that a new fit leaves the step axis open.

    Keras takes a fit's input signature from the first two batches of the order a dataset has when the fit starts
    (then reshuffles): two equally wide batches fix the step axis at their width, and a narrower batch later fails.
    :func:`kit.lstm._training_dataset` guards its first order only; the unfrozen phase is a second fit.
    """
    for _ in range(tries):
        if len(dataset) < 2 or dataset[0][0]["seq"].shape[1] != dataset[1][0]["seq"].shape[1]:
            return
        dataset.on_epoch_end()


def _compile(model, learning_rate: float) -> None:
    from kit.lstm_model import keras

    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=keras.losses.CategoricalCrossentropy())


def load_encoder(path: str | Path):
    """A pretrained encoder (:func:`kit.pretrain.pretrain`'s ``encoder.keras``); InputError if absent or not one."""
    from kit.lstm_model import keras

    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no pretrained encoder. Run `make pretrain` first (or pass --pretrained PATH).")
    encoder = keras.saving.load_model(path, compile=False)
    if encoder.name != "encoder" or list(encoder.input) != ["seq"]:
        raise InputError(f"{path}: not a sequence encoder of the kit (a model named 'encoder' with input 'seq').")
    return encoder


def default_encoder(config: Config) -> Path:
    from kit.pretrain import output_dir

    return output_dir(config, None) / "encoder.keras"


# --- options -------------------------------------------------------------------------------------------------


def add_label_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--label-fraction", type=float, default=1.0,
                        help="train on this stratified share of the labels, nested in the shared folds (default 1)")
    parser.add_argument("--label-seed", type=int, default=0, help="which objects keep their labels (default 0)")
    parser.add_argument("--equal-steps", action=argparse.BooleanOptionalAction, default=True,
                        help="with --label-fraction: repeat the kept objects about 1/fraction times per epoch, so an "
                             "epoch takes as many steps as on all the labels (default; --no-equal-steps: once)")


def label_plan(args: argparse.Namespace, name: str) -> Plan | None:
    """A plan for ``--label-fraction`` below 1, else None (train as usual)."""
    if args.label_fraction >= 1.0:
        return None
    label_mask(np.zeros(0), np.zeros(0), args.label_fraction, 0)  # checks the fraction
    return Plan(name=name, label_fraction=args.label_fraction, label_seed=args.label_seed,
                equal_steps=args.equal_steps)


def default_finetune_lr(settings) -> float:
    """The unfrozen phase's learning rate: the network's own.

    On the acceptance competition with 25 % of the labels (10 epochs, 2 of them frozen), a tenth (1e-4) left the
    fine-tuned network behind the one from scratch (OOF 0.986 against 0.724, test 1.207 against 0.990, at
    35587b4); the network's own (1e-3) put it ahead (OOF 0.574 against 0.603, test 0.895 against 0.916, after
    the constant-batches fix e187988).
    """
    return settings.learning_rate


def add_finetune_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pretrained", type=Path, default=None,
                        help="encoder.keras of `make pretrain` (default models/<name>/pretrain/encoder.keras)")
    parser.add_argument("--freeze-epochs", type=int, default=2,
                        help="first epochs with the pretrained encoder frozen (default 2)")
    parser.add_argument("--finetune-lr", type=float, default=None,
                        help="learning rate once the encoder is unfrozen (default: the network's own)")


def finetune_plan(args: argparse.Namespace, name: str, config: Config, settings) -> Plan:
    return Plan(name=name, encoder=str(args.pretrained or default_encoder(config)), freeze_epochs=args.freeze_epochs,
                finetune_lr=args.finetune_lr or default_finetune_lr(settings), label_fraction=args.label_fraction,
                label_seed=args.label_seed, equal_steps=args.equal_steps)


# --- the study ---------------------------------------------------------------------------------------------------


def run_name(arm: str, fraction: float, seed: int) -> str:
    return f"transfer/{arm}-f{fraction:g}-s{seed}"


def local_test_score(config: Config, name: str) -> float | None:
    """Local test score (the competition metric, class 99 by the config's method) of a trained run, if the truth
    exists; the run's test predictions are made first unless it has some newer than its models."""
    if not config.truth.exists():
        return None
    from kit import lstm, submission
    from kit.class99_study import submission_frame
    from kit.score import score_submission

    pred = config.test_pred_path(name)
    if not pred.exists() or pred.stat().st_mtime < config.score_path(name).stat().st_mtime:
        lstm.predict_test(config, name)
    ids, proba, galactic = submission.aligned_predictions(config, name)
    frame = submission_frame(ids, submission.build_submission(ids, proba, galactic, config))
    return float(score_submission(frame, config.truth, config.test_metadata)["overall"])


def arm_name(encoder: Path) -> str:
    """The study's arm of an encoder: ``pretrained`` for ``make pretrain``'s, ``pretrained-<source>`` for the encoder
    of another folder's light curves (``models/<name>/pretrain-<source>/encoder.keras``, ``SOURCE=``)."""
    folder = Path(encoder).parent.name
    return "pretrained" + (folder[len("pretrain"):] if folder.startswith("pretrain-") else "")


def study(config: Config, settings, encoder: Path, fractions=DEFAULT_FRACTIONS, seeds: int = 3,
          freeze_epochs: int = 2, finetune_lr: float | None = None, max_folds: int | None = None,
          more_encoders: tuple[Path, ...] = (), equal_steps: bool = True) -> pd.DataFrame:
    """Train every arm at every fraction (``seeds`` seeds for the smallest fraction below 1, one for the others).

    The arms: ``scratch``, ``pretrained`` (fine-tuned from ``encoder``) and one more per encoder of
    ``more_encoders`` (e.g. pretrained on another survey), named by :func:`arm_name`. ``equal_steps``: every
    fraction's epochs take as many steps as one on all the labels (:meth:`Plan.train_rows`).
    A run whose saved score has the same settings and plan (and test predictions, when there is a truth) is reused.
    Returns the table of runs (arm, fraction, seed, n_labelled, oof, test); writes ``study.{json,csv,png}``.
    """
    encoders = {"scratch": None}
    for path in (encoder, *more_encoders):
        if not Path(path).exists():
            raise InputError(f"{path}: no pretrained encoder. Run `make pretrain` first (SOURCE=folder for another "
                             "folder's light curves), or pass the path of one.")
        if arm_name(path) in encoders:
            raise InputError(f"{path}: a second encoder of arm {arm_name(path)!r}; give each source once.")
        encoders[arm_name(path)] = str(path)
    fractions = sorted(set(fractions))
    rows = []
    for fraction in fractions:
        n_seeds = seeds if fraction == fractions[0] and fraction < 1.0 else 1
        for seed in range(n_seeds):
            for arm, path in encoders.items():
                name = run_name(arm, fraction, seed)
                plan = Plan(name=name, label_fraction=fraction, label_seed=seed, equal_steps=equal_steps, **(
                    {"encoder": path, "freeze_epochs": freeze_epochs,
                     "finetune_lr": finetune_lr or default_finetune_lr(settings)} if path else {}))
                rows.append({"arm": arm, "fraction": fraction, "seed": seed, **_run(config, settings, plan, max_folds)})
                log.info("transfer study: %s", rows[-1])
    table = pd.DataFrame(rows)
    out = config.model_dir("transfer")
    write_json(out / "study.json", {"runs": rows, "summary": summarise(table).to_dict(orient="records"),
                                    "settings": settings.to_dict(), "encoders": encoders,
                                    "equal_steps": equal_steps})
    with atomic_path(out / "study.csv") as tmp:
        table.to_csv(tmp, index=False)
    plot_study(table, out / "study.png")
    return table


def _plan_key(plan: dict) -> dict:
    """A saved plan without its name, the encoder as an absolute path: what decides whether two runs are the same.
    Fields a plan saved before them lacks take their defaults."""
    plan = {**asdict(Plan()), **plan}
    return {**plan, "name": None, "encoder": plan["encoder"] and str(Path(plan["encoder"]).resolve())}


def registered_run(config: Config, settings, plan: Plan) -> str | None:
    """The registered model (``lstm``, or ``lstm_ft`` from an encoder) that is this run of the study, if trained.

    A run on all the labels is ``make train-lstm`` / ``make train-lstm_ft`` when their saved settings and plan (the
    encoder, frozen epochs, learning rate) are this run's: the study then scores that model instead of training
    the same network again, and a user's trained models count. A model trained otherwise is left alone.
    """
    name = "lstm_ft" if plan.encoder else "lstm"
    path = config.score_path(name)
    if plan.label_fraction < 1.0 or not path.exists() or not config.oof_path(name).exists():
        return None
    saved = read_json(path)
    same = _plan_key(saved.get("plan", asdict(Plan(name=name)))) == _plan_key(asdict(plan))
    return name if same and saved.get("settings") == settings.to_dict() else None


def _run(config: Config, settings, plan: Plan, max_folds: int | None) -> dict:
    from kit import lstm

    path = config.score_path(plan.name)
    saved = read_json(path) if path.exists() else {}
    settings = replace(settings, features=lstm.feature_sets(config, settings.features))  # as train() saves them
    if max_folds is None and (name := registered_run(config, settings, plan)):
        log.info("transfer study: %s is the trained %s: scoring it", plan.name, name)
        return {"n_labelled": len(load_proba(config.oof_path(name))[0]),
                "oof": read_json(config.score_path(name))["oof"], "test": local_test_score(config, name), "model": name}
    same_plan = "plan" in saved and _plan_key(saved["plan"]) == _plan_key(asdict(plan))
    if saved.get("settings") == settings.to_dict() and same_plan and "test" in saved.get("transfer", {}):
        log.info("transfer study: %s already trained", plan.name)
        return saved["transfer"]
    summary = lstm.train(config, settings, max_folds, plan=plan)
    result = {"n_labelled": summary["n_labelled"], "oof": summary["oof"], "test": local_test_score(config, plan.name)}
    write_json(path, {**read_json(path), "transfer": result})
    return result


def summarise(table: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation over seeds of each (arm, fraction)."""
    g = table.groupby(["arm", "fraction"], sort=True)
    out = g[["oof", "test"]].agg(["mean", "std"])
    out.columns = [f"{a}_{b}" for a, b in out.columns]
    return out.assign(runs=g.size(), n_labelled=g["n_labelled"].mean()).reset_index()


def plot_study(table: pd.DataFrame, path: Path) -> None:
    """The study's figure (:func:`study_figure`) as a PNG at ``path``."""
    from kit.report.page import save_figure

    save_figure(study_figure(table), path)


def study_figure(table: pd.DataFrame):
    """OOF and local test score against the label fraction, one line per arm (error bars: seeds)."""
    from matplotlib.figure import Figure

    summary = summarise(table)
    panels = [c for c in ("oof", "test") if table[c].notna().any()]
    fig = Figure(figsize=(5 * len(panels), 4))
    axes = fig.subplots(1, len(panels), squeeze=False)
    for ax, col in zip(axes[0], panels, strict=True):
        for arm in dict.fromkeys(table["arm"]):
            s = summary[summary["arm"] == arm]
            ax.errorbar(s["fraction"], s[f"{col}_mean"], yerr=s[f"{col}_std"].fillna(0), marker="o", capsize=3,
                        label=arm)
        ax.set_xscale("log")
        ax.set_xticks(sorted(summary["fraction"].unique()))
        ax.set_xticklabels([f"{f:.0%}" for f in sorted(summary["fraction"].unique())])
        ax.minorticks_off()
        ax.set_xlabel("share of the training labels")
        ax.set_ylabel("weighted log loss")
        ax.set_title("OOF" if col == "oof" else "local test")
        ax.legend()
    fig.tight_layout()
    return fig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from kit import lstm

    lstm.add_arguments(parser)
    add_finetune_arguments(parser)
    parser.add_argument("--fractions", type=float, nargs="+", default=list(DEFAULT_FRACTIONS),
                        help="label fractions (default 0.05 0.25 1)")
    parser.add_argument("--seeds", type=int, default=3, help="label seeds of the smallest fraction (default 3)")
    parser.add_argument("--also-pretrained", type=Path, nargs="+", default=[],
                        help="more encoders, one arm each: e.g. models/<name>/pretrain-sim-wide/encoder.keras of "
                             "`make pretrain SOURCE=data/sim-wide` (another survey), arm pretrained-sim-wide")


def run(args: argparse.Namespace, config: Config) -> int:
    from kit import lstm

    settings = lstm.settings_from_args(args)
    table = study(config, settings, args.pretrained or default_encoder(config), args.fractions, args.seeds,
                  args.freeze_epochs, args.finetune_lr, args.max_folds, tuple(args.also_pretrained),
                  args.equal_steps)
    print(summarise(table).to_string(index=False))
    print(f"{config.model_dir('transfer')}/study.csv, study.json, study.png")
    return 0
