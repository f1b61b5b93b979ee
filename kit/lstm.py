"""Train the LSTM-plus-features network on the shared folds; predict the test set with the fold models.

Artefacts in ``config.model_dir("lstm")``: ``fold{k}.keras`` with its ``scaler_fold{k}.json`` (the bounded
aggregate scaling, fitted on that fold's training part only), ``settings.json``, ``oof.parquet``, ``score.json``,
``test.parquet`` (and ``inference_bench.json`` after ``train-lstm --bench-inference``).

The loss is categorical cross-entropy weighted by :func:`kit.metric.sample_weights`, so the training loss
is the competition metric of the training fold; early stopping watches the metric on the validation fold.
Training batches mix the objects (:func:`kit.sequences.mixed_batches`) and, once a fold is trained, every
batch-normalisation layer gets the exact statistics of its inputs over the training part
(:func:`recalibrate_batch_norm`). Rows whose probability falls entirely on the other galactic group (made
uniform by the group mask) are counted in ``score.json`` (``wrong_group_rows``) and logged.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from functools import partial

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from kit import data, metric, survey, transfer
from kit.class99 import mask_by_group, wrong_group_rows
from kit.config import Config
from kit.errors import InputError
from kit.files import atomic_dir, read_json, save_proba, write_json
from kit.sequences import PAD_QUANTUM, SCALE_FEATURE, Sequences, iter_batches, load_sequences, mixed_batches

log = logging.getLogger(__name__)
MODEL = NAME = "lstm"
NEEDS_SEQUENCES = True
#: Training options of a kernel smoke run: small, one fold, two epochs.
SMOKE_ARGS = ["--preset", "demo", "--epochs", "2", "--patience", "2", "--max-folds", "1"]
PREDICT_BLOCK = 100_000  # test objects per block of the streamed prediction


def aggregate_columns(frame: pd.DataFrame) -> list[str]:
    """Aggregate inputs: every feature column but id and label, plus the sequences' flux scale."""
    return [c for c in frame.columns if c not in (survey.OBJECT_ID, survey.TARGET, SCALE_FEATURE)] + [SCALE_FEATURE]


def network_steps(x: np.ndarray, settings=None, photoz: np.ndarray | None = None,
                  rng: np.random.Generator | None = None) -> np.ndarray:
    """Padded stored steps (:mod:`kit.sequences`, (batch, steps, 10)) as the network of ``settings`` sees them.

    Always bounded: ``flux_err / s`` (large for faint objects) becomes ln(1 + .); the others are bounded already
    (log1p of days, flux / s in [-1, 1], flags). Without ``settings`` (or with the seed's) that is all, in place.
    With ``settings.rest_frame`` feature 0 is ln(1 + days / (1 + z)), ``z = photoz`` (one per object; 0 for
    galactic objects, whose times stay as observed); with ``settings.snr`` asinh(flux / flux_err) is inserted as
    feature 4 (before the one-hot passband), so ``settings.n_features`` columns come out.
    With ``rng`` (training only) the augmentation of ``settings`` is drawn: observations dropped (the remaining
    ones moved to the front, their time steps recomputed), fluxes jittered by their errors, (1 + z) jittered.
    Zero (padding) steps stay zero.
    """
    if settings is None or not (settings.rest_frame or settings.snr or (rng is not None and settings.augments)):
        x[..., 2] = np.log1p(np.maximum(x[..., 2], 0.0))
        return x
    x = np.array(x, np.float32)
    real = x[..., 4:].any(axis=-1)
    dt = np.expm1(x[..., 0].astype(np.float64))
    if rng is not None and settings.drop_points:
        x, dt, real = _drop_points(x, dt, real, settings.drop_points, rng)
    if rng is not None and settings.flux_jitter:
        x[..., 1] += (settings.flux_jitter * rng.standard_normal(x.shape[:2]) * x[..., 2]).astype(np.float32)
    if settings.rest_frame and photoz is not None:
        z = np.nan_to_num(np.asarray(photoz, np.float64))
        factor = 1.0 + np.maximum(z, 0.0)
        if rng is not None and settings.z_jitter:
            factor = np.where(z > 0, factor * np.exp(settings.z_jitter * rng.standard_normal(len(z))), factor)
        dt = dt / factor[:, None]
    x[..., 0] = np.log1p(np.maximum(dt, 0.0))
    err = x[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        snr = np.where(err > 0, np.arcsinh(x[..., 1] / err), 0.0).astype(np.float32)
    x[..., 2] = np.log1p(np.maximum(err, 0.0))
    x = np.where(real[..., None], x, np.float32(0.0))
    if settings.snr:
        x = np.concatenate([x[..., :4], snr[..., None] * real[..., None], x[..., 4:]], axis=-1)
    return x


def _drop_points(x, dt, real, most, rng):
    """Drop a share U(0, most) of each object's observations (3 kept at least); kept steps first, times recomputed."""
    t = np.cumsum(dt, axis=1)  # days since the first observation (padding adds 0)
    rate = rng.uniform(0.0, most, (len(x), 1))
    keep = real & (rng.random(real.shape) >= rate)
    short = keep.sum(axis=1) < np.minimum(real.sum(axis=1), 3)
    keep[short] = real[short]
    order = np.argsort(~keep, axis=1, kind="stable")
    x = np.take_along_axis(x, order[..., None], axis=1)
    t = np.take_along_axis(t, order, axis=1)
    keep = np.take_along_axis(keep, order, axis=1)
    dt = np.zeros_like(t)
    dt[:, 1:] = np.where(keep[:, 1:], t[:, 1:] - t[:, :-1], 0.0)
    return x, dt, keep


def predict_proba(model, seqs: Sequences, pos: np.ndarray, agg: np.ndarray, batch_size: int, max_len: int,
                  settings=None, photoz: np.ndarray | None = None):
    """Softmax of ``model`` over objects ``pos`` of ``seqs`` (aggregates ``agg`` and ``photoz``, same order).

    ``model`` is one fold model or the mean of all (:class:`kit.lstm_model.FoldMean`; ``agg`` then
    (n, folds, n_aggregates), each fold's own scaling); its step inputs are :func:`network_steps` of ``settings``
    (no augmentation). Every batch is padded to
    ``batch_size`` rows (the steps are already padded to a multiple of ``PAD_QUANTUM``), so the compiled
    predict function sees one batch size and traces at most twice: once, then once with the steps relaxed.
    """
    return predict_batches(model, input_batches(seqs, pos, agg, batch_size, max_len, settings, photoz), len(pos))


def input_batches(seqs: Sequences, pos: np.ndarray, agg: np.ndarray, batch_size: int, max_len: int,
                  settings=None, photoz: np.ndarray | None = None) -> Iterator[tuple[dict, np.ndarray]]:
    """Yield ``(inputs, rows)``: the network's inputs for objects ``pos[rows]`` in length-bucketed batches, every
    batch padded to ``batch_size`` rows (the first ``len(rows)`` are real); steps as :func:`network_steps` of
    ``settings`` (``photoz``: one per object of ``pos``, for the rest-frame time)."""
    for batch, x, _ in iter_batches(seqs, pos, batch_size, max_len):
        steps = network_steps(x, settings, None if photoz is None else photoz[batch])
        yield {"seq": _pad_rows(steps, batch_size), "agg": _pad_rows(agg[batch], batch_size)}, batch


def predict_batches(model, batches: Iterable[tuple[dict, np.ndarray]], n: int) -> np.ndarray:
    """(n, 14) softmax of ``model`` over ``(inputs, rows)`` batches (:func:`input_batches`) that cover rows 0..n-1."""
    out = np.zeros((n, len(survey.CLASSES)), np.float64)
    for inputs, rows in batches:
        out[rows] = np.asarray(model.predict_on_batch(inputs), np.float64)[: len(rows)]
    return out


def _pad_rows(x: np.ndarray, rows: int) -> np.ndarray:
    """``x`` with zero rows appended up to ``rows`` (a fully masked sequence; its output is dropped)."""
    if len(x) >= rows:
        return x
    return np.concatenate([x, np.zeros((rows - len(x), *x.shape[1:]), x.dtype)])


def _training_dataset(seqs, pos, agg, onehot, weights, settings, seed, photoz=None):
    """Mixed batches (:func:`kit.sequences.mixed_batches`) as a Keras PyDataset (any backend); new ones each epoch.

    Steps are :func:`network_steps` of ``settings`` with its augmentation drawn anew for every batch and epoch.

    Keras takes the input signature of the whole fit from the first two batches of the order the dataset has when
    fit starts, then reshuffles (``on_epoch_end``) before the first epoch. The narrowest and the widest batch go
    first, so the step axis is left open whenever the batches differ in width. When they all have one width
    (random batches: nearly every one holds a long object) the signature is fixed at that width, which is the
    widest any batch can have: every batch of every later shuffle is then padded to it, never narrower.
    """
    from kit.lstm_model import keras

    lengths = np.minimum(seqs.lengths[pos], settings.max_len)

    class MixedBatches(keras.utils.PyDataset):
        def __init__(self):
            super().__init__()
            self.epoch = 0
            self.width = None
            widths = self.on_epoch_end()
            if len(set(widths)) == 1:
                self.width = widths[0]

        def on_epoch_end(self):
            rng = np.random.default_rng([seed, self.epoch])
            self.epoch += 1
            batches = mixed_batches(lengths, settings.batch_size, rng, settings.max_len,
                                    settings.length_buckets, settings.bucket_mix)
            # the padded widths (Sequences.pad rounds up to PAD_QUANTUM)
            widths = [min(-(-int(lengths[b].max()) // PAD_QUANTUM) * PAD_QUANTUM, settings.max_len) for b in batches]
            first = list(dict.fromkeys([int(np.argmin(widths)), int(np.argmax(widths))]))
            order = first + [i for i in range(len(batches)) if i not in first]
            self.batches = [batches[i] for i in order]
            return [widths[i] for i in order]

        def __len__(self):
            return len(self.batches)

        def __getitem__(self, i):
            batch = self.batches[i]
            x, _ = seqs.pad(pos[batch], settings.max_len, length=self.width)
            rng = np.random.default_rng([seed, self.epoch, i, 1])
            steps = network_steps(x, settings, None if photoz is None else photoz[batch], rng)
            return {"seq": steps, "agg": agg[batch]}, onehot[batch], weights[batch].astype(np.float32)

    return MixedBatches()


def _monitor(val_loss, patience: int):
    """Keras callback: the competition metric on the validation fold each epoch, early stopping, best restore."""
    from kit.lstm_model import keras

    class WeightedLossMonitor(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.history: list[float] = []
            self.seconds: list[float] = []
            self.best, self.best_weights, self.wait = np.inf, None, 0

        def on_epoch_begin(self, epoch, logs=None):
            self._t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self._t0)
            score = val_loss(self.model)
            self.history.append(score)
            if logs is not None:
                logs["val_wloss"] = score
            print(f"  epoch {epoch + 1}: loss {logs.get('loss', float('nan')):.4f}  val wloss {score:.4f}"
                  f"  ({self.seconds[-1]:.1f} s)", flush=True)
            if score < self.best:
                self.best, self.best_weights, self.wait = score, self.model.get_weights(), 0
            else:
                self.wait += 1
                if self.wait >= patience:
                    self.model.stop_training = True

        def on_train_end(self, logs=None):
            if self.best_weights is not None:
                self.model.set_weights(self.best_weights)

    return WeightedLossMonitor()


def recalibrate_batch_norm(model, batches: Callable[[], Iterable[tuple[dict, np.ndarray]]], n: int) -> int:
    """Give every batch-normalisation layer of ``model`` the exact statistics of its inputs over ``n`` objects.

    ``batches()`` yields ``(inputs, rows)`` over the objects (:func:`input_batches`: of each batch, the first
    ``len(rows)`` rows are real, the others padding). The moving averages kept during training lag behind the
    weights and follow whatever batches came last; at the end of training each layer's moving mean and (population)
    variance are set to those of its inputs over the training objects, in inference mode (the mode they serve in),
    layer after layer in network order so each sees the inputs the already recalibrated layers before it give.
    Returns the number of layers set.
    """
    from kit.lstm_model import keras

    layers = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    if not layers or not n:
        return 0
    probe = keras.Model(model.input, [layer.input for layer in layers])
    for i, layer in enumerate(layers):
        total = squares = 0.0
        for inputs, rows in batches():
            h = np.asarray(probe.predict_on_batch(inputs)[i], np.float64)[: len(rows)]
            total = total + h.sum(axis=0)
            squares = squares + (h * h).sum(axis=0)
        mean = total / n
        layer.moving_mean.assign(mean.astype(np.float32))
        layer.moving_variance.assign(np.maximum(squares / n - mean**2, 0.0).astype(np.float32))
    return len(layers)


@dataclass(frozen=True)
class Network:
    """What :func:`train` needs of a network that reads the sequences and the aggregates.

    ``name``: the registry name (its folder under models/<name>/). ``build(settings, n_aggregates, seqs, pos)``: one
    fold's compiled Keras model (``pos``: the fold's training objects in ``seqs``). ``dataset(seqs, pos, agg, onehot,
    weights, settings, seed, photoz)``: its training batches (a Keras PyDataset). ``batches(seqs, pos, agg,
    batch_size, settings, photoz)``: its inputs in batches, ``(inputs, rows)`` as :func:`input_batches` (prediction,
    batch norm). ``photoz``: one per object of ``pos`` (or None), for networks that use rest-frame time.
    The LSTM's is :data:`LSTM_NETWORK`; the dmdt CNN's is in :mod:`kit.models.cnn`.
    """

    name: str
    build: Callable
    dataset: Callable
    batches: Callable


def _build_lstm(settings, n_aggregates: int, seqs: Sequences, pos: np.ndarray):
    from kit import lstm_model

    return lstm_model.build_model(settings, n_aggregates)


LSTM_NETWORK = Network(
    MODEL, _build_lstm, _training_dataset,
    lambda seqs, pos, agg, batch_size, settings, photoz=None: input_batches(seqs, pos, agg, batch_size,
                                                                            settings.max_len, settings, photoz))


def train(config: Config, settings=None, max_folds: int | None = None, *, network: Network = LSTM_NETWORK,
          plan=None) -> dict:
    """Train one model per fold; save the fold models, their scalers, OOF predictions and the score summary.

    ``plan`` (:class:`kit.transfer.Plan`) changes the model's name (its folder), which training objects keep
    their labels, and how each fold's network starts and is fitted (a pretrained encoder, frozen epochs).

    Each fold's aggregate scaler is fitted on its training part only (the validation rows never shape it).
    The model directory is replaced whole at the end (:func:`kit.files.atomic_dir`): an interrupted re-training
    leaves the previous models untouched, never old and new folds side by side. ``network``: the LSTM by default
    (``settings`` default :class:`kit.lstm_model.LSTMSettings`), or another network on the sequences (:class:`Network`).
    """
    from kit.featurize import load_train_features
    from kit.folds import load_or_make_folds
    from kit.lstm_model import DEFAULT, Scaler, keras

    settings = settings or DEFAULT
    settings = replace(settings, features=feature_sets(config, settings.features))
    name = network.name
    path = config.features_path("train")
    frame = load_train_features(config, settings.features)
    seqs = load_sequences(config.sequences_dir("train"))
    ids = frame[survey.OBJECT_ID].to_numpy()
    pos = seqs.positions(ids, str(config.sequences_dir("train")))
    frame[SCALE_FEATURE] = seqs.log_scale[pos]
    y = data.labels(frame, path)
    folds = load_or_make_folds(config, ids, y)
    columns = aggregate_columns(frame)
    copies = getattr(settings, "augmented_copies", 0)
    if copies:  # rows past len(y): the copies, each with its parent's row; originals keep their positions
        frame, seqs, pos, parent_row = with_copies(config, settings.features, frame, seqs, pos)
    y_fit = frame[survey.TARGET].to_numpy()
    raw = frame[columns].to_numpy(np.float64)
    onehot = (y_fit[:, None] == np.asarray(survey.CLASSES)[None, :]).astype(np.float32)
    photoz = frame["hostgal_photoz"].to_numpy(np.float64) if "hostgal_photoz" in frame else None
    galactic = None if photoz is None else survey.is_galactic(photoz)
    if getattr(settings, "rest_frame", False) and photoz is None:
        raise InputError(f"{path}: no hostgal_photoz column for the rest-frame time; rebuild it (make features).")

    def masked(p, rows):
        return p if galactic is None else mask_by_group(p, galactic[rows])

    name = plan.name if plan else name
    n_folds = int(folds.max()) + 1 if max_folds is None else min(max_folds, int(folds.max()) + 1)
    oof = np.full((len(y), len(survey.CLASSES)), np.nan)
    per_epoch, seconds, fold_scores, before_bn, wrong, n_copies, n_rows = [], [], [], [], 0, [], []
    batch = settings.batch_size * 2
    with atomic_dir(config.model_dir(name)) as out:
        for k in range(n_folds):
            tr, va = np.flatnonzero(folds != k), np.flatnonzero(folds == k)
            tr = plan.train_rows(tr, y, folds) if plan else tr
            if copies:
                tr = np.concatenate([tr, copy_rows(tr, parent_row, copies, np.random.default_rng([config.seed, k]))])
                n_copies.append(int(len(tr) - np.sum(tr < len(y))))
            n_rows.append(int(len(tr)))
            scaler = Scaler.fit(raw[tr], columns)  # the training part only
            scaler.save(out / f"scaler_fold{k}.json")
            agg = scaler.transform(raw)
            keras.utils.set_random_seed(config.seed + k)
            model = plan.build(settings, len(columns)) if plan else network.build(settings, len(columns), seqs, pos[tr])

            def val_loss(m, va=va, agg=agg):
                p = predict_batches(m, network.batches(seqs, pos[va], agg[va], batch, settings, _rows(photoz, va)),
                                    len(va))
                return metric.weighted_log_loss(y[va], masked(p, va))

            monitor = _monitor(val_loss, settings.patience)
            print(f"{name} fold {k}: {len(tr)} train{f' ({n_copies[-1]} augmented copies)' if copies else ''}, "
                  f"{len(va)} validation objects", flush=True)
            # training-fold weights, so the weighted mean loss is the metric of the training fold
            weights = metric.sample_weights(y_fit[tr])
            dataset = network.dataset(seqs, pos[tr], agg[tr], onehot[tr], weights, settings, config.seed + k,
                                      _rows(photoz, tr))
            if plan:
                plan.fit(model, dataset, settings, monitor)
            else:
                model.fit(dataset, epochs=settings.epochs, callbacks=[monitor], verbose=0, shuffle=False)
            before_bn.append(float(min(monitor.history)) if monitor.history else float("nan"))
            train_batches = partial(network.batches, seqs, pos[tr], agg[tr], batch, settings, _rows(photoz, tr))
            recalibrate_batch_norm(model, train_batches, len(tr))
            p = predict_batches(model, network.batches(seqs, pos[va], agg[va], batch, settings, _rows(photoz, va)),
                                len(va))
            if galactic is not None:
                wrong += int(wrong_group_rows(p, galactic[va]).sum())
            oof[va] = masked(p, va)
            fold_scores.append(metric.weighted_log_loss(y[va], oof[va]))
            per_epoch.append(monitor.history)
            seconds.extend(monitor.seconds)
            log.info("%s fold %d: best epoch %d, weighted log loss %.4f (%.4f before the batch-norm statistics "
                     "were recalibrated)", name, k, int(np.argmin(monitor.history)) + 1, fold_scores[-1], before_bn[-1])
            model.save(out / f"fold{k}.keras")
            keras.backend.clear_session()

        done = ~np.isnan(oof[:, 0])
        if wrong:
            log.warning("%s: %d of %d OOF rows put all their probability on the other galactic group "
                        "(made uniform by the group mask)", name, wrong, int(done.sum()))
        summary = {
            "model": name,
            "oof": metric.weighted_log_loss(y[done], oof[done]),
            "folds": fold_scores,
            "folds_before_bn_recalibration": before_bn,
            "wrong_group_rows": {"oof": wrong},
            "per_epoch": per_epoch,
            "seconds_per_epoch": float(np.mean(seconds)),
            "n_aggregates": len(columns),
            "augmented_copies": n_copies,
            "train_rows": n_rows,
            "settings": settings.to_dict(),
            **(plan.summary(y, folds) if plan else {}),
        }
        write_json(out / "settings.json", {"n_folds": n_folds, "settings": settings.to_dict()})
        write_json(out / config.score_path(name).name, summary)
        if done.all():  # last: make's target for the whole directory
            save_proba(out / config.oof_path(name).name, ids, oof)
        else:
            log.warning("only %d of %d folds trained: no oof.parquet written", n_folds, int(folds.max()) + 1)
    return summary


def with_copies(config: Config, kinds: tuple[str, ...], frame: pd.DataFrame, seqs: Sequences, pos: np.ndarray):
    """The training frame, sequences and positions followed by the augmented copies (`make augment`) of its objects.

    Returns the frame with the copies' features (``kinds``, their flux scale) appended, one store in memory of the
    training and the copies' sequences (built from the copies' light curves), the positions of every row in it, and
    each row's parent row in ``frame`` (-1 for the originals). Copies of objects not in ``frame`` are left out.
    """
    from kit import augment, sequences
    from kit.featurize import load_train_features

    features = load_train_features(config, kinds, split="augment")
    parent_row = pd.Series(np.arange(len(frame)), index=frame[survey.OBJECT_ID].to_numpy()).reindex(
        features[survey.PARENT_ID].to_numpy()).to_numpy()
    keep = np.isfinite(parent_row)
    features = features[keep]
    lightcurves = augment.copies_lightcurves(config)
    lightcurves = lightcurves[lightcurves[survey.OBJECT_ID].isin(features[survey.OBJECT_ID])]
    copy_seqs = sequences.sequences_of(lightcurves)
    copy_pos = copy_seqs.positions(features[survey.OBJECT_ID].to_numpy(), str(config.build_dir / "augment.parts"))
    features = features.assign(**{SCALE_FEATURE: copy_seqs.log_scale[copy_pos]})
    missing = [c for c in frame.columns if c not in features.columns]
    if missing:
        raise InputError(f"{config.features_path('augment')}: the copies lack {missing[:5]}; rerun `make augment`.")
    log.info("%d augmented copies of %d training objects", len(features), len(np.unique(parent_row[keep])))
    return (pd.concat([frame, features[frame.columns]], ignore_index=True), sequences.concat(seqs, copy_seqs),
            np.concatenate([pos, len(seqs) + copy_pos]),
            np.concatenate([np.full(len(frame), -1), parent_row[keep].astype(np.int64)]))


def copy_rows(train_rows: np.ndarray, parent_row: np.ndarray, per_parent: int, rng: np.random.Generator) -> np.ndarray:
    """Rows of at most ``per_parent`` copies, drawn at random, of each object among ``train_rows`` (so a copy is in
    training exactly where its parent is: never in its parent's validation fold)."""
    candidates = np.flatnonzero(np.isin(parent_row, train_rows))
    candidates = candidates[rng.permutation(len(candidates))]
    parents = parent_row[candidates]
    order = np.argsort(parents, kind="stable")
    sorted_parents = parents[order]
    first = np.searchsorted(sorted_parents, sorted_parents, side="left")
    rank = np.arange(len(order)) - first  # 0, 1, ... within each parent, in the random order
    return np.sort(candidates[order[rank < per_parent]])


def _rows(x: np.ndarray | None, rows: np.ndarray) -> np.ndarray | None:
    return None if x is None else x[rows]


def feature_sets(config: Config, wanted: tuple[str, ...]) -> tuple[str, ...]:
    """The feature sets of ``wanted`` whose training features are built; GP features missing: logged, left out."""
    if "gp" in wanted and not config.features_path("train", "gp").exists():
        log.warning("%s not built (make gp-features): the dense side gets the aggregate features only",
                    config.features_path("train", "gp"))
        return tuple(k for k in wanted if k != "gp")
    return tuple(wanted)


def load_models(config: Config, name: str = MODEL) -> tuple[list, list, dict]:
    """The fold models, each fold's aggregate scaler and the saved settings of a trained LSTM (model ``name``)."""
    from kit.lstm_model import Scaler, keras

    out = config.model_dir(name)
    if not (out / "settings.json").exists():
        raise InputError(f"{out}: no trained LSTM ({name}). Run `make train-{name}` first.")
    saved = read_json(out / "settings.json")
    n = saved["n_folds"]
    if not (out / "scaler_fold0.json").exists():
        raise InputError(f"{out}: a network of an older kit (one scaler for all folds); retrain it "
                         f"(make train-{name}).")
    models = [keras.saving.load_model(out / f"fold{k}.keras") for k in range(n)]
    return models, [Scaler.load(out / f"scaler_fold{k}.json") for k in range(n)], saved["settings"]


def fold_aggregates(scalers: list, frame: pd.DataFrame, where: str, model: str = MODEL) -> np.ndarray:
    """(n, folds, n_aggregates): the frame's aggregates scaled by each fold's scaler (for :class:`FoldMean`)."""
    columns = scalers[0].columns
    missing = [c for c in columns if c not in frame]
    if missing:
        raise InputError(f"{where}: lacks columns {missing[:5]} the {model} network was trained on; rebuild the "
                         f"features (make features) or retrain it (make train-{model}).")
    raw = frame[columns].to_numpy(np.float64)
    return np.stack([s.transform(raw) for s in scalers], axis=1)


def count_wrong_group(config: Config, proba: np.ndarray, galactic: np.ndarray, model: str = MODEL) -> int:
    """Log and record in ``model``'s score.json the test rows with all their probability on the other group."""
    n = int(wrong_group_rows(proba, galactic).sum())
    if n:
        log.warning("%s: %d of %d test rows put all their probability on the other galactic group "
                    "(made uniform by the group mask)", model, n, len(proba))
    path = config.score_path(model)
    if path.exists():
        score = read_json(path)
        score["wrong_group_rows"] = {**score.get("wrong_group_rows", {}), "test": n}
        write_json(path, score)
    return n


def predict_test(config: Config, name: str = MODEL) -> tuple[np.ndarray, np.ndarray]:
    """Stream the test set through every fold model in length-bucketed batches; average, mask by group, save."""
    from kit.lstm_model import FoldMean, LSTMSettings

    models, scalers, saved = load_models(config, name)
    settings = LSTMSettings.from_dict(saved)
    model = FoldMean(models)
    return predict_test_set(config, scalers, lambda seqs, pos, agg, photoz: predict_proba(
        model, seqs, pos, agg, 2 * settings.batch_size, settings.max_len, settings, photoz), name, settings.features)


def predict_test_set(config: Config, scalers: list, predict: Callable, model: str = MODEL,
                     features: tuple[str, ...] = ("aggregate",)) -> tuple[np.ndarray, np.ndarray]:
    """The test set from its built features and sequences, block by block; wrong-group rows counted
    (:func:`count_wrong_group`), masked by group, saved at ``config.test_pred_path(model)``; (ids, proba).

    ``predict(seqs, pos, agg, photoz)``: (n, 14) unmasked probabilities of objects ``pos`` of the test sequences,
    ``agg`` their aggregates (of the feature sets ``features``) scaled by each fold's scaler (:func:`fold_aggregates`).
    """
    from kit.featurize import MAKE_TARGET

    seqs = load_sequences(config.sequences_dir("test"))
    wanted = [c for c in scalers[0].columns if c != SCALE_FEATURE]
    tables, names = [], set()  # (path, file, its columns to read), the aggregate features first
    for kind in dict.fromkeys(("aggregate", *features)):
        path = config.features_path("test", kind)
        if not path.exists():
            raise InputError(f"{path}: {kind} test features not built yet. Run `make {MAKE_TARGET[kind]}` first.")
        table = pq.ParquetFile(path)
        own = [c for c in table.schema_arrow.names if c in wanted and c not in names]
        first = [] if tables else ["hostgal_photoz"]  # for the rest-frame time and the group mask
        names |= set(table.schema_arrow.names)
        tables.append((path, table, list(dict.fromkeys([survey.OBJECT_ID, *first, *own]))))
    missing = [c for c in [survey.OBJECT_ID, "hostgal_photoz", *wanted] if c not in names]
    if missing:
        raise InputError(f"{tables[-1][0]}: lacks columns {missing[:5]} the {model} network was trained on; "
                         "rebuild the test features (make features / make gp-features).")
    ids, raw, galactic, done = [], [], [], 0
    blocks = zip(*(t.iter_batches(batch_size=PREDICT_BLOCK, columns=read) for _, t, read in tables), strict=True)
    for parts in blocks:
        frame = parts[0].to_pandas()
        block_ids = frame[survey.OBJECT_ID].to_numpy()
        for (path, _, _), part in zip(tables[1:], parts[1:], strict=True):
            other = part.to_pandas()
            if not np.array_equal(other.pop(survey.OBJECT_ID).to_numpy(), block_ids):
                raise InputError(f"{path}: objects in another order than {tables[0][0]}: rebuild it.")
            frame = pd.concat([frame, other], axis=1)
        pos = seqs.positions(block_ids, str(config.sequences_dir("test")))
        frame[SCALE_FEATURE] = seqs.log_scale[pos]
        agg = fold_aggregates(scalers, frame, str(tables[0][0]), model)
        photoz = frame["hostgal_photoz"].to_numpy(np.float64)
        raw.append(predict(seqs, pos, agg, photoz))
        galactic.append(survey.is_galactic(photoz))
        ids.append(block_ids)
        done += len(block_ids)
        log.info("%s: predicted %d of %d test objects", model, done, tables[0][1].metadata.num_rows)
    ids_all = np.concatenate(ids) if ids else np.zeros(0, np.int64)
    raw_all = np.concatenate(raw) if raw else np.zeros((0, len(survey.CLASSES)))
    galactic_all = np.concatenate(galactic) if galactic else np.zeros(0, bool)
    count_wrong_group(config, raw_all, galactic_all, model)
    proba = mask_by_group(raw_all, galactic_all)
    save_proba(config.test_pred_path(model), ids_all, proba)
    return ids_all, proba


def check_streamable(where, name: str, features) -> None:
    """InputError unless a network trained on ``features`` can predict streamed chunks (aggregate features only)."""
    if set(features) - {"aggregate"}:
        raise InputError(f"{where}: the network was trained on {'+'.join(features)} features; streamed chunks make "
                         f"the aggregate set only. Retrain it with `--features aggregate` "
                         f"(make train-{name} LSTM_FEATURES=aggregate).")


class Predictor:
    """Streamed test chunks: sequences + each fold's scaled aggregates through the fold models, mean softmax."""

    def __init__(self, config: Config, name: str = MODEL) -> None:
        from kit.lstm_model import FoldMean, LSTMSettings

        models, self.scalers, saved = load_models(config, name)
        self.settings = LSTMSettings.from_dict(saved)
        check_streamable(config.model_dir(name), name, self.settings.features)
        self.model = FoldMean(models)
        self.where = str(config.test_lightcurves)

    def predict(self, chunk) -> np.ndarray:
        seqs = chunk.sequences
        pos = seqs.positions(chunk.object_ids, self.where)
        frame = chunk.features.assign(**{SCALE_FEATURE: seqs.log_scale[pos]})
        agg = fold_aggregates(self.scalers, frame, f"{self.where} (streamed features)")
        s = self.settings
        photoz = frame["hostgal_photoz"].to_numpy(np.float64)
        return predict_proba(self.model, seqs, pos, agg, 2 * s.batch_size, s.max_len, s, photoz)


def inference_benchmark(
    model, seqs: Sequences, n_aggregates: int, n_objects: int = 2000, batch_size: int = 256, max_len: int = 352,
    settings=None,
) -> dict:
    """Objects per second through ``model``: length-bucketed batches vs every batch padded to ``max_len``.

    Same objects (the first ``n_objects``) and batch size; each way runs once to warm up (tracing), then is timed.
    """
    pos = np.arange(min(n_objects, len(seqs)))
    agg = np.zeros((len(pos), n_aggregates), np.float32)
    photoz = np.zeros(len(pos))

    def bucketed():
        for batch, x, _ in iter_batches(seqs, pos, batch_size, max_len):
            model.predict_on_batch({"seq": network_steps(x, settings, photoz[batch]), "agg": agg[batch]})

    def padded():
        for i in range(0, len(pos), batch_size):
            x, _ = seqs.pad(pos[i : i + batch_size], max_len, length=max_len)
            steps = network_steps(x, settings, photoz[i : i + batch_size])
            model.predict_on_batch({"seq": steps, "agg": agg[i : i + batch_size]})

    rates = {}
    for name, fn in (("bucketed", bucketed), ("padded", padded)):
        fn()
        t0 = time.perf_counter()
        fn()
        rates[name] = len(pos) / (time.perf_counter() - t0)
    lengths = np.minimum(seqs.lengths[pos], max_len)
    return {
        "objects": int(len(pos)),
        "batch_size": batch_size,
        "max_len": max_len,
        "mean_length": float(lengths.mean()) if len(pos) else 0.0,
        "bucketed_objects_per_s": rates["bucketed"],
        "padded_objects_per_s": rates["padded"],
        "ratio": rates["bucketed"] / rates["padded"],
    }


def parse_features(text: str) -> tuple[str, ...]:
    """``--features`` of the networks: 'aggregate' or 'aggregate,gp' (spaces allowed)."""
    kinds = tuple(k.strip() for k in text.split(",") if k.strip())
    unknown = sorted(set(kinds) - {"aggregate", "gp"})
    if unknown or "aggregate" not in kinds:
        raise InputError(f"--features {text}: choose aggregate or aggregate,gp")
    return kinds


def settings_from_args(args: argparse.Namespace):
    from kit.lstm_model import PRESETS

    s = PRESETS[args.preset]
    if args.no_augment:
        s = replace(s, drop_points=0.0, flux_jitter=0.0, z_jitter=0.0)
    if args.features:
        s = replace(s, features=parse_features(args.features))
    overrides = {
        "units": args.units,
        "lstm_layers": args.lstm_layers,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "patience": args.patience,
        "max_len": args.max_len,
        "learning_rate": args.learning_rate,
        "dense_units": tuple(args.dense_units) if args.dense_units else None,
        "length_buckets": args.length_buckets,
        "bucket_mix": args.bucket_mix,
        "augmented_copies": args.augmented_copies,
    }
    return with_overrides(s, overrides)


def with_overrides(settings, overrides: dict):
    """``settings`` (a frozen dataclass with ``dense_units`` and ``dense_dropout``) with the options given (not None);
    new dense layers get dropout rates from 0.25 to 0.5."""
    s = replace(settings, **{k: v for k, v in overrides.items() if v is not None})
    if len(s.dense_dropout) != len(s.dense_units):
        s = replace(s, dense_dropout=tuple(np.linspace(0.25, 0.5, len(s.dense_units)).round(3).tolist()))
    return s


def add_copies_argument(parser: argparse.ArgumentParser) -> None:
    """``--augmented-copies`` of the networks."""
    def count(text: str) -> int:
        n = int(text)
        if n < 0:
            raise argparse.ArgumentTypeError(f"{text}: a number of copies, 0 or more")
        return n

    parser.add_argument("--augmented-copies", type=count, default=None, metavar="N",
                        help="train each fold also on up to N redshift-augmented copies (make augment) of each of its "
                             "training objects, drawn once per fold; validation and OOF stay the originals (default 0)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", choices=["default", "seed", "demo"], default="default",
                        help="default: rest-frame time, S/N steps, bidirectional GRU + attention, aggregate + GP "
                             "features, augmentation; seed: the seed's stacked LSTM on the stored steps; demo: the "
                             "default made small for CPUs (kit/lstm_model.py PRESETS)")
    parser.add_argument("--features", default=None,
                        help="feature sets on the dense side: aggregate or aggregate,gp (default and demo: aggregate,gp"
                             " when the GP features are built; seed: aggregate)")
    parser.add_argument("--no-augment", action="store_true",
                        help="no training-time augmentation (dropped points, flux and redshift jitter)")
    parser.add_argument("--epochs", type=int, default=None, help="maximum epochs (default and seed 40, demo 15)")
    parser.add_argument("--batch-size", type=int, default=None, help="(default and seed 128, demo 64)")
    parser.add_argument("--patience", type=int, default=None, help="epochs without improvement (8, demo 4)")
    parser.add_argument("--max-len", type=int, default=None, help="observations per object kept (first ones; 352)")
    parser.add_argument("--units", type=int, default=None, help="recurrent units (default 64, seed 100, demo 32)")
    parser.add_argument("--lstm-layers", type=int, default=None, help="recurrent layers (default 1, seed 2)")
    parser.add_argument("--dense-units", type=int, nargs="+", default=None,
                        help="default: 256 128 64; seed: 512 256 128 64")
    parser.add_argument("--learning-rate", type=float, default=None)
    parser.add_argument("--length-buckets", type=int, default=None,
                        help="training batches from this many length buckets (default 4; --bucket-mix of the objects "
                             "move at random, so batches mix DDF and WFD; 1: random batches, most padding)")
    parser.add_argument("--bucket-mix", type=float, default=None,
                        help="share of objects moved to a random bucket when --length-buckets > 1 (default 0.25)")
    add_copies_argument(parser)
    parser.add_argument("--max-folds", type=int, default=None, help="train only the first folds (no OOF file)")
    parser.add_argument("--bench-inference", action="store_true",
                        help="measure objects/s of the trained fold-0 model, bucketed vs padded to --max-len")
    parser.add_argument("--bench-objects", type=int, default=2000)
    transfer.add_label_arguments(parser)


def run(args: argparse.Namespace, config: Config) -> int:
    if args.bench_inference:
        models, scalers, saved = load_models(config)
        split = "test" if (config.sequences_dir("test") / ".done").exists() else "train"
        from kit.lstm_model import LSTMSettings

        result = inference_benchmark(models[0], load_sequences(config.sequences_dir(split)), len(scalers[0].columns),
                                     args.bench_objects, 2 * saved["batch_size"], args.max_len or saved["max_len"],
                                     LSTMSettings.from_dict(saved))
        result["split"] = split
        write_json(config.model_dir(MODEL) / "inference_bench.json", result)
        print(f"inference on {result['objects']} {split} objects: bucketed {result['bucketed_objects_per_s']:.0f}/s, "
              f"padded to {result['max_len']} {result['padded_objects_per_s']:.0f}/s, ratio {result['ratio']:.2f}")
        return 0
    summary = train(config, settings_from_args(args), args.max_folds, plan=transfer.label_plan(args, MODEL))
    print(f"lstm OOF weighted log loss {summary['oof']:.4f} ({summary['seconds_per_epoch']:.1f} s per epoch)")
    return 0
