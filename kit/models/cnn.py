"""The dmdt-image CNN (Mahabal et al. 2017's second system): a small Keras CNN on each object's dmdt images
(:mod:`kit.dmdt`), with the aggregate features on the dense side like the LSTM's.

Network: the image (24, 24, 11) scaled by :data:`PIXEL_SCALE` (minus the mean training image first when
``background`` is on), then per entry of ``filters`` a 3x3 convolution (ReLU), 2x2 max pooling and dropout;
flattened, batch-normalised, concatenated with the bounded aggregates (:class:`kit.lstm_model.Scaler`, fitted
on each fold's training part) and the dense blocks of the LSTM (dense, ReLU, batch norm, dropout), softmax over
the 14 classes. The background is part of each fold model (its first layer's offset), so a fold model takes
raw images whatever the setting.

Images are built on the fly from the ragged sequences, batch by batch (nothing stored). Training reuses the
LSTM's pieces (:mod:`kit.lstm`): the competition-weighted loss, early stopping on the validation fold's
metric, batch-norm statistics recalibrated on the training part, wrong-group rows counted in ``score.json``.

Artefacts in ``config.model_dir("cnn")``: ``fold{k}.keras``, ``scaler_fold{k}.json``, ``settings.json``,
``oof.parquet``, ``score.json``, ``test.parquet``.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import asdict, dataclass, replace

import numpy as np
import pyarrow.parquet as pq

from kit import data, metric, survey
from kit.class99 import mask_by_group, wrong_group_rows
from kit.config import Config
from kit.errors import InputError
from kit.files import atomic_dir, read_json, save_proba, write_json
from kit.sequences import SCALE_FEATURE, Sequences, load_sequences, mixed_batches

log = logging.getLogger(__name__)
NAME = "cnn"
NEEDS_SEQUENCES = True
#: Training options of a kernel smoke run: small, one fold, two epochs.
SMOKE_ARGS = ["--preset", "demo", "--epochs", "2", "--patience", "2", "--max-folds", "1"]
#: Images are multiplied by this before the first convolution: pixels are densities summing to 1 over a channel's
#: 576 pixels, so an occupied pixel is a few hundredths; times 24 (the square root of 576) it is of order 1.
PIXEL_SCALE = 24.0
PREDICT_BLOCK = 100_000  # test objects per block of the feature file read by predict_test


@dataclass(frozen=True)
class CNNSettings:
    """Every size of the network and of its training (the default preset)."""

    filters: tuple[int, ...] = (16, 32, 64)
    kernel_size: int = 3
    conv_dropout: float = 0.25
    dense_units: tuple[int, ...] = (128, 64)
    dense_dropout: tuple[float, ...] = (0.3, 0.4)
    learning_rate: float = 1e-3
    batch_size: int = 128
    epochs: int = 40
    patience: int = 8
    #: Subtract the mean training image (of the fold's training part) from every image, as in the paper.
    background: bool = False

    def to_dict(self) -> dict:
        d = asdict(self)
        return d | {k: list(d[k]) for k in ("filters", "dense_units", "dense_dropout")}


#: Small network for the 2,000-object demo on a laptop CPU.
DEMO = CNNSettings(filters=(8, 16), dense_units=(64, 32), epochs=10, patience=3, batch_size=64)


def build_model(settings: CNNSettings, n_aggregates: int, background: np.ndarray | None = None):
    """Inputs ``{"img": (batch, 24, 24, 11) dmdt images, "agg": (batch, n_aggregates)}``; output (batch, 14) softmax.

    ``background`` (24, 24, 11), when given, is subtracted from every image (in the first layer, so it is saved
    with the model).
    """
    from kit.dmdt import SHAPE
    from kit.lstm_model import keras, layers

    img_in = keras.Input(shape=SHAPE, name="img")
    agg_in = keras.Input(shape=(n_aggregates,), name="agg")
    offset = 0.0 if background is None else -PIXEL_SCALE * np.asarray(background, np.float32)
    h = layers.Rescaling(PIXEL_SCALE, offset, name="pixels")(img_in)
    for filters in settings.filters:
        h = layers.Conv2D(filters, settings.kernel_size, padding="same", activation="relu")(h)
        h = layers.MaxPooling2D(2)(h)
        h = layers.Dropout(settings.conv_dropout)(h)
    h = layers.Flatten()(h)
    h = layers.BatchNormalization()(h)
    h = layers.Concatenate()([h, agg_in])
    for units, rate in zip(settings.dense_units, settings.dense_dropout, strict=True):
        h = layers.Dense(units)(h)
        h = layers.ReLU()(h)
        h = layers.BatchNormalization()(h)
        h = layers.Dropout(rate)(h)
    out = layers.Dense(len(survey.CLASSES), activation="softmax", name="proba")(h)
    model = keras.Model({"img": img_in, "agg": agg_in}, out)
    model.compile(optimizer=keras.optimizers.Adam(settings.learning_rate),
                  loss=keras.losses.CategoricalCrossentropy())
    return model


def image_batches(seqs: Sequences, pos: np.ndarray, agg: np.ndarray, batch_size: int):
    """Yield ``(inputs, rows)``: the dmdt images of objects ``pos`` (built now) and their aggregates ``agg``, in
    order, every batch padded with zero rows to ``batch_size`` (one shape for the compiled predict function)."""
    from kit.dmdt import dmdt_images
    from kit.lstm import _pad_rows

    for i in range(0, len(pos), batch_size):
        images = dmdt_images(seqs.values, seqs.offsets, pos[i : i + batch_size])
        yield {"img": _pad_rows(images, batch_size), "agg": _pad_rows(agg[i : i + batch_size], batch_size)}, len(images)


def predict_proba(model, seqs: Sequences, pos: np.ndarray, agg: np.ndarray, batch_size: int) -> np.ndarray:
    """Softmax of ``model`` (one fold model, or :class:`kit.lstm_model.FoldMean` with ``agg`` (n, folds, n_agg))."""
    out = np.zeros((len(pos), len(survey.CLASSES)), np.float64)
    done = 0
    for inputs, rows in image_batches(seqs, pos, agg, batch_size):
        out[done : done + rows] = np.asarray(model.predict_on_batch(inputs), np.float64)[:rows]
        done += rows
    return out


def _training_dataset(seqs, pos, agg, onehot, weights, batch_size: int, seed: int):
    """Random batches of images built on the fly, as a Keras PyDataset; new batches each epoch."""
    from kit.dmdt import dmdt_images
    from kit.lstm_model import keras

    class ImageBatches(keras.utils.PyDataset):
        def __init__(self):
            super().__init__()
            self.epoch = 0
            self.on_epoch_end()

        def on_epoch_end(self):
            rng = np.random.default_rng([seed, self.epoch])
            self.epoch += 1
            self.batches = mixed_batches(np.zeros(len(pos), np.int64), batch_size, rng)

        def __len__(self):
            return len(self.batches)

        def __getitem__(self, i):
            b = self.batches[i]
            images = dmdt_images(seqs.values, seqs.offsets, pos[b])
            return {"img": images, "agg": agg[b]}, onehot[b], weights[b].astype(np.float32)

    return ImageBatches()


def train(config: Config, settings: CNNSettings | None = None, max_folds: int | None = None) -> dict:
    """Train one model per fold on the shared folds; save the fold models, their scalers, OOF and the summary.

    The model directory is replaced whole at the end (:func:`kit.files.atomic_dir`).
    """
    from kit.dmdt import mean_image
    from kit.featurize import load_train_features
    from kit.folds import load_or_make_folds
    from kit.lstm import _monitor, aggregate_columns, recalibrate_batch_norm_on
    from kit.lstm_model import Scaler, keras

    settings = settings or CNNSettings()
    path = config.features_path("train")
    frame = load_train_features(config)
    seqs = load_sequences(config.sequences_dir("train"))
    ids = frame[survey.OBJECT_ID].to_numpy()
    pos = seqs.positions(ids, str(config.sequences_dir("train")))
    frame[SCALE_FEATURE] = seqs.log_scale[pos]
    y = data.labels(frame, path)
    folds = load_or_make_folds(config, ids, y)
    columns = aggregate_columns(frame)
    raw = frame[columns].to_numpy(np.float64)
    onehot = (y[:, None] == np.asarray(survey.CLASSES)[None, :]).astype(np.float32)
    galactic = survey.is_galactic(frame["hostgal_photoz"].to_numpy()) if "hostgal_photoz" in frame else None

    def masked(p, rows):
        return p if galactic is None else mask_by_group(p, galactic[rows])

    n_folds = int(folds.max()) + 1 if max_folds is None else min(max_folds, int(folds.max()) + 1)
    oof = np.full((len(y), len(survey.CLASSES)), np.nan)
    per_epoch, seconds, fold_scores, before_bn, wrong = [], [], [], [], 0
    batch = settings.batch_size * 2
    with atomic_dir(config.model_dir(NAME)) as out:
        for k in range(n_folds):
            tr, va = np.flatnonzero(folds != k), np.flatnonzero(folds == k)
            scaler = Scaler.fit(raw[tr], columns)  # the training part only
            scaler.save(out / f"scaler_fold{k}.json")
            agg = scaler.transform(raw)
            background = mean_image(seqs.values, seqs.offsets, pos[tr]) if settings.background else None
            keras.utils.set_random_seed(config.seed + k)
            model = build_model(settings, len(columns), background)

            def val_loss(m, va=va, agg=agg):
                p = predict_proba(m, seqs, pos[va], agg[va], batch)
                return metric.weighted_log_loss(y[va], masked(p, va))

            monitor = _monitor(val_loss, settings.patience)
            print(f"cnn fold {k}: {len(tr)} train, {len(va)} validation objects", flush=True)
            weights = metric.sample_weights(y[tr])  # the training fold's metric as the loss
            dataset = _training_dataset(seqs, pos[tr], agg[tr], onehot[tr], weights, settings.batch_size,
                                        config.seed + k)
            model.fit(dataset, epochs=settings.epochs, callbacks=[monitor], verbose=0, shuffle=False)
            before_bn.append(float(min(monitor.history)) if monitor.history else float("nan"))
            recalibrate_batch_norm_on(model, lambda tr=tr, agg=agg: image_batches(seqs, pos[tr], agg[tr], batch),
                                      len(tr))
            p = predict_proba(model, seqs, pos[va], agg[va], batch)
            if galactic is not None:
                wrong += int(wrong_group_rows(p, galactic[va]).sum())
            oof[va] = masked(p, va)
            fold_scores.append(metric.weighted_log_loss(y[va], oof[va]))
            per_epoch.append(monitor.history)
            seconds.extend(monitor.seconds)
            log.info("cnn fold %d: best epoch %d, weighted log loss %.4f (%.4f before the batch-norm statistics "
                     "were recalibrated)", k, int(np.argmin(monitor.history)) + 1, fold_scores[-1], before_bn[-1])
            model.save(out / f"fold{k}.keras")
            keras.backend.clear_session()

        done = ~np.isnan(oof[:, 0])
        if wrong:
            log.warning("cnn: %d of %d OOF rows put all their probability on the other galactic group "
                        "(made uniform by the group mask)", wrong, int(done.sum()))
        summary = {
            "model": NAME,
            "oof": metric.weighted_log_loss(y[done], oof[done]),
            "folds": fold_scores,
            "folds_before_bn_recalibration": before_bn,
            "wrong_group_rows": {"oof": wrong},
            "per_epoch": per_epoch,
            "seconds_per_epoch": float(np.mean(seconds)),
            "n_aggregates": len(columns),
            "settings": settings.to_dict(),
        }
        write_json(out / "settings.json", {"n_folds": n_folds, "settings": settings.to_dict()})
        write_json(out / config.score_path(NAME).name, summary)
        if done.all():  # last: make's target for the whole directory
            save_proba(out / config.oof_path(NAME).name, ids, oof)
        else:
            log.warning("only %d of %d folds trained: no oof.parquet written", n_folds, int(folds.max()) + 1)
    return summary


class Predictor:
    """Streamed test chunks: dmdt images + each fold's scaled aggregates through the fold models, mean softmax."""

    def __init__(self, config: Config) -> None:
        from kit.lstm_model import FoldMean, Scaler, keras

        out = config.model_dir(NAME)
        if not (out / "settings.json").exists():
            raise InputError(f"{out}: no trained CNN. Run `make train-cnn` first.")
        saved = read_json(out / "settings.json")
        self.model = FoldMean([keras.saving.load_model(out / f"fold{k}.keras") for k in range(saved["n_folds"])])
        self.scalers = [Scaler.load(out / f"scaler_fold{k}.json") for k in range(saved["n_folds"])]
        self.batch_size = 2 * saved["settings"]["batch_size"]
        self.where = str(config.test_lightcurves)

    def predict(self, chunk) -> np.ndarray:
        from kit.lstm import fold_aggregates

        seqs = chunk.sequences
        pos = seqs.positions(chunk.object_ids, self.where)
        frame = chunk.features.assign(**{SCALE_FEATURE: seqs.log_scale[pos]})
        agg = fold_aggregates(self.scalers, frame, f"{self.where} (features)", NAME)
        return predict_proba(self.model, seqs, pos, agg, self.batch_size)


def predict_test(config: Config) -> tuple[np.ndarray, np.ndarray]:
    """The test set from its built features and sequences, block by block through :class:`Predictor`; masked, saved."""
    from kit.lstm import count_wrong_group
    from kit.predict_stream import Chunk

    predictor = Predictor(config)
    seqs = load_sequences(config.sequences_dir("test"))
    path = config.features_path("test")
    if not path.exists():
        raise InputError(f"{path}: test features not built yet. Run `make features` first.")
    table = pq.ParquetFile(path)
    wanted = [c for c in predictor.scalers[0].columns if c != SCALE_FEATURE]
    read = list(dict.fromkeys([survey.OBJECT_ID, "hostgal_photoz", *wanted]))
    missing = [c for c in read if c not in table.schema_arrow.names]
    if missing:
        raise InputError(f"{path}: lacks columns {missing[:5]} the CNN was trained on; rerun `make features`.")
    predictor.where = str(config.sequences_dir("test"))
    ids, raw, galactic = [], [], []
    for block in table.iter_batches(batch_size=PREDICT_BLOCK, columns=read):
        frame = block.to_pandas()
        chunk = Chunk(frame[survey.OBJECT_ID].to_numpy(), frame, seqs)
        raw.append(predictor.predict(chunk))
        galactic.append(survey.is_galactic(frame["hostgal_photoz"].to_numpy()))
        ids.append(chunk.object_ids)
        log.info("cnn: predicted %d of %d test objects", sum(map(len, ids)), table.metadata.num_rows)
    ids_all = np.concatenate(ids) if ids else np.zeros(0, np.int64)
    raw_all = np.concatenate(raw) if raw else np.zeros((0, len(survey.CLASSES)))
    galactic_all = np.concatenate(galactic) if galactic else np.zeros(0, bool)
    count_wrong_group(config, raw_all, galactic_all, NAME)
    proba = mask_by_group(raw_all, galactic_all)
    save_proba(config.test_pred_path(NAME), ids_all, proba)
    return ids_all, proba


def settings_from_args(args: argparse.Namespace) -> CNNSettings:
    s = DEMO if args.preset == "demo" else CNNSettings()
    overrides = {
        "filters": tuple(args.filters) if args.filters else None,
        "dense_units": tuple(args.dense_units) if args.dense_units else None,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "patience": args.patience,
        "learning_rate": args.learning_rate,
        "background": {"on": True, "off": False}.get(args.background),
    }
    s = replace(s, **{k: v for k, v in overrides.items() if v is not None})
    if len(s.dense_dropout) != len(s.dense_units):
        s = replace(s, dense_dropout=tuple(np.linspace(0.3, 0.5, len(s.dense_units)).round(3).tolist()))
    return s


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", choices=["default", "demo"], default="default",
                        help="default: 3 conv layers of 16, 32, 64 filters, dense 128 64, 40 epochs; demo: 8, 16 "
                             "filters, dense 64 32, 10 epochs")
    parser.add_argument("--background", choices=["on", "off"], default=None,
                        help="subtract the mean training image (of each fold's training part) from every image, "
                             "as Mahabal et al. (default off)")
    parser.add_argument("--filters", type=int, nargs="+", default=None, help="filters of each conv layer")
    parser.add_argument("--dense-units", type=int, nargs="+", default=None, help="dense layers after the concat")
    parser.add_argument("--epochs", type=int, default=None, help="maximum epochs (default 40, demo 10)")
    parser.add_argument("--batch-size", type=int, default=None, help="(default 128, demo 64)")
    parser.add_argument("--patience", type=int, default=None, help="epochs without improvement (default 8, demo 3)")
    parser.add_argument("--learning-rate", type=float, default=None)
    parser.add_argument("--max-folds", type=int, default=None, help="train only the first folds (no OOF file)")


def run(args: argparse.Namespace, config: Config) -> int:
    summary = train(config, settings_from_args(args), args.max_folds)
    print(f"cnn OOF weighted log loss {summary['oof']:.4f} ({summary['seconds_per_epoch']:.1f} s per epoch)")
    return 0

