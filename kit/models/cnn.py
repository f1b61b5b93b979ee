"""The dmdt-image CNN (Mahabal et al. 2017's second system): a small Keras CNN on each object's dmdt images
(:mod:`kit.dmdt`), with the aggregate and GP features (``--features``) on the dense side like the LSTM's.

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
from dataclasses import asdict, dataclass

import numpy as np

from kit.config import Config
from kit.errors import InputError
from kit.files import read_json
from kit.sequences import SCALE_FEATURE, Sequences, mixed_batches

NAME = "cnn"
NEEDS_SEQUENCES = True
#: Training options of a kernel smoke run: small, one fold, two epochs.
SMOKE_ARGS = ["--preset", "demo", "--epochs", "2", "--patience", "2", "--max-folds", "1"]
#: Images are multiplied by this before the first convolution: pixels are densities summing to 1 over a channel's
#: 576 pixels, so an occupied pixel is a few hundredths; times 24 (the square root of 576) it is of order 1.
PIXEL_SCALE = 24.0


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
    #: Feature sets on the dense side (``gp`` left out, with a warning, where the GP features are not built).
    features: tuple[str, ...] = ("aggregate", "gp")
    #: Redshift-augmented copies per training object in each fold's training part (see the LSTM's setting).
    augmented_copies: int = 0

    def to_dict(self) -> dict:
        d = asdict(self)
        return d | {k: list(d[k]) for k in ("filters", "dense_units", "dense_dropout", "features")}


#: Small network for the 2,000-object demo on a laptop CPU.
DEMO = CNNSettings(filters=(8, 16), dense_units=(64, 32), epochs=10, patience=3, batch_size=64)


def build_model(settings: CNNSettings, n_aggregates: int, background: np.ndarray | None = None):
    """Inputs ``{"img": (batch, 24, 24, 11) dmdt images, "agg": (batch, n_aggregates)}``; output (batch, 14) softmax.

    ``background`` (24, 24, 11), when given, is subtracted from every image (in the first layer, so it is saved
    with the model).
    """
    from kit.dmdt import SHAPE
    from kit.lstm_model import classifier, keras, layers

    img_in = keras.Input(shape=SHAPE, name="img")
    offset = 0.0 if background is None else -PIXEL_SCALE * np.asarray(background, np.float32)
    h = layers.Rescaling(PIXEL_SCALE, offset, name="pixels")(img_in)
    for filters in settings.filters:
        h = layers.Conv2D(filters, settings.kernel_size, padding="same", activation="relu")(h)
        h = layers.MaxPooling2D(2)(h)
        h = layers.Dropout(settings.conv_dropout)(h)
    return classifier({"img": img_in}, layers.Flatten()(h), n_aggregates, settings)


def image_batches(seqs: Sequences, pos: np.ndarray, agg: np.ndarray, batch_size: int, settings=None, photoz=None):
    """Yield ``(inputs, rows)`` (as :func:`kit.lstm.input_batches`): the dmdt images of objects ``pos[rows]``, built
    now, and their aggregates, in order, every batch padded with zero rows to ``batch_size`` (one shape for the
    compiled predict function). ``agg`` is (n, n_aggregates), or (n, folds, n_aggregates) for a FoldMean.
    ``settings`` and ``photoz`` are unused (the images are in observed time): :class:`kit.lstm.Network`'s signature."""
    from kit.dmdt import dmdt_images
    from kit.lstm import _pad_rows

    for i in range(0, len(pos), batch_size):
        rows = np.arange(i, min(i + batch_size, len(pos)))
        images = dmdt_images(seqs.values, seqs.offsets, pos[rows])
        yield {"img": _pad_rows(images, batch_size), "agg": _pad_rows(agg[rows], batch_size)}, rows


def _training_dataset(seqs, pos, agg, onehot, weights, settings: CNNSettings, seed: int, photoz=None):
    """Random batches of images built on the fly, as a Keras PyDataset; new batches each epoch (``photoz`` unused)."""
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
            self.batches = mixed_batches(np.zeros(len(pos), np.int64), settings.batch_size, rng)

        def __len__(self):
            return len(self.batches)

        def __getitem__(self, i):
            b = self.batches[i]
            images = dmdt_images(seqs.values, seqs.offsets, pos[b])
            return {"img": images, "agg": agg[b]}, onehot[b], weights[b].astype(np.float32)

    return ImageBatches()


def _build(settings: CNNSettings, n_aggregates: int, seqs: Sequences, pos: np.ndarray):
    """One fold's model; with ``settings.background``, the mean image of the fold's training objects ``pos``."""
    from kit.dmdt import mean_image

    background = mean_image(seqs.values, seqs.offsets, pos) if settings.background else None
    return build_model(settings, n_aggregates, background)


def train(config: Config, settings: CNNSettings | None = None, max_folds: int | None = None) -> dict:
    """Train one model per fold on the shared folds (:func:`kit.lstm.train` with the CNN); save the fold models, their
    scalers, OOF predictions and the score summary, the model directory replaced whole."""
    from kit.lstm import Network
    from kit.lstm import train as train_network

    return train_network(config, settings or CNNSettings(), max_folds,
                         network=Network(NAME, _build, _training_dataset, image_batches))


class Predictor:
    """Streamed test chunks: dmdt images + each fold's scaled aggregates through the fold models, mean softmax."""

    def __init__(self, config: Config, streamed: bool = True) -> None:
        """``streamed``: for chunks of :mod:`kit.predict_stream` (aggregate features only: a model trained with
        the GP features is refused here, before any chunk is read)."""
        from kit.lstm_model import FoldMean, Scaler, keras

        out = config.model_dir(NAME)
        if not (out / "settings.json").exists():
            raise InputError(f"{out}: no trained CNN. Run `make train-cnn` first.")
        saved = read_json(out / "settings.json")
        self.features = tuple(saved["settings"].get("features", ("aggregate",)))
        if streamed:
            from kit.lstm import check_streamable

            check_streamable(out, NAME, self.features)
        self.model = FoldMean([keras.saving.load_model(out / f"fold{k}.keras") for k in range(saved["n_folds"])])
        self.scalers = [Scaler.load(out / f"scaler_fold{k}.json") for k in range(saved["n_folds"])]
        self.batch_size = 2 * saved["settings"]["batch_size"]
        self.where = str(config.test_lightcurves)

    def predict(self, chunk) -> np.ndarray:
        from kit.lstm import fold_aggregates, predict_batches

        seqs = chunk.sequences
        pos = seqs.positions(chunk.object_ids, self.where)
        frame = chunk.features.assign(**{SCALE_FEATURE: seqs.log_scale[pos]})
        agg = fold_aggregates(self.scalers, frame, f"{self.where} (streamed features)", NAME)
        return predict_batches(self.model, image_batches(seqs, pos, agg, self.batch_size), len(pos))


def predict_test(config: Config) -> tuple[np.ndarray, np.ndarray]:
    """The test set from its built features and sequences (:func:`kit.lstm.predict_test_set`); masked, saved."""
    from kit.lstm import predict_batches, predict_test_set

    p = Predictor(config, streamed=False)
    return predict_test_set(config, p.scalers, lambda seqs, pos, agg, photoz: predict_batches(
        p.model, image_batches(seqs, pos, agg, p.batch_size), len(pos)), NAME, p.features)


def settings_from_args(args: argparse.Namespace) -> CNNSettings:
    from kit.lstm import parse_features, with_overrides

    s = DEMO if args.preset == "demo" else CNNSettings()
    overrides = {
        "filters": tuple(args.filters) if args.filters else None,
        "dense_units": tuple(args.dense_units) if args.dense_units else None,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "patience": args.patience,
        "learning_rate": args.learning_rate,
        "background": {"on": True, "off": False}.get(args.background),
        "features": parse_features(args.features) if args.features else None,
        "augmented_copies": args.augmented_copies,
    }
    return with_overrides(s, overrides)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from kit.lstm import add_copies_argument

    parser.add_argument("--preset", choices=["default", "demo"], default="default",
                        help="default: 3 conv layers of 16, 32, 64 filters, dense 128 64, 40 epochs; demo: 8, 16 "
                             "filters, dense 64 32, 10 epochs")
    parser.add_argument("--background", choices=["on", "off"], default=None,
                        help="subtract the mean training image (of each fold's training part) from every image, "
                             "as Mahabal et al. (default off)")
    parser.add_argument("--features", default=None,
                        help="feature sets on the dense side, comma-separated: aggregate,gp (default) or aggregate")
    parser.add_argument("--filters", type=int, nargs="+", default=None, help="filters of each conv layer")
    parser.add_argument("--dense-units", type=int, nargs="+", default=None, help="dense layers after the concat")
    parser.add_argument("--epochs", type=int, default=None, help="maximum epochs (default 40, demo 10)")
    parser.add_argument("--batch-size", type=int, default=None, help="(default 128, demo 64)")
    parser.add_argument("--patience", type=int, default=None, help="epochs without improvement (default 8, demo 3)")
    parser.add_argument("--learning-rate", type=float, default=None)
    add_copies_argument(parser)
    parser.add_argument("--max-folds", type=int, default=None, help="train only the first folds (no OOF file)")


def run(args: argparse.Namespace, config: Config) -> int:
    summary = train(config, settings_from_args(args), args.max_folds)
    print(f"cnn OOF weighted log loss {summary['oof']:.4f} ({summary['seconds_per_epoch']:.1f} s per epoch)")
    return 0

