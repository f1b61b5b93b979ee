"""The LSTM-plus-features network (Keras 3): settings, construction, and the feature scaler.

Imports Keras, so only the LSTM commands import this module; the other modules get Keras from here, so that
TensorFlow's start-up log lines are hidden (:func:`_import_keras`) unless ``-v`` asks for them.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from kit import survey
from kit.files import atomic_path, read_json
from kit.sequences import MAX_LEN, N_FEATURES


def _import_keras():
    """Import Keras (and TensorFlow behind it); quietly unless ``TF_CPP_MIN_LOG_LEVEL`` is 0.

    TensorFlow 2.21 writes its C++ start-up lines (oneDNN, CUDA drivers, CPU instructions) to the process's
    stderr before its own log level applies, so stderr is pointed at /dev/null while it loads. The CLI sets
    ``TF_CPP_MIN_LOG_LEVEL`` to 3 by default and to 0 with ``-v``; an error still raises as usual.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    quiet = os.environ["TF_CPP_MIN_LOG_LEVEL"] not in ("", "0") and "keras" not in sys.modules
    with _stderr_to_devnull() if quiet else contextlib.nullcontext():
        import keras
    return keras


@contextlib.contextmanager
def _stderr_to_devnull():
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


keras = _import_keras()
layers = keras.layers


@dataclass(frozen=True)
class LSTMSettings:
    """Every size of the network and of its training. Defaults are the seed architecture."""

    units: int = 100
    lstm_layers: int = 2
    lstm_dropout: float = 0.1
    dense_units: tuple[int, ...] = (512, 256, 128, 64)
    dense_dropout: tuple[float, ...] = (0.25, 0.3, 0.4, 0.5)
    learning_rate: float = 1e-3
    batch_size: int = 128
    epochs: int = 40
    patience: int = 8
    max_len: int = MAX_LEN

    def to_dict(self) -> dict:
        d = asdict(self)
        return d | {"dense_units": list(self.dense_units), "dense_dropout": list(self.dense_dropout)}


#: Small network for the 2,000-object demo on a laptop CPU.
DEMO = LSTMSettings(units=32, dense_units=(128, 64, 32, 16), epochs=15, patience=4, batch_size=64)


def build_model(settings: LSTMSettings, n_aggregates: int) -> keras.Model:
    """Masked stacked LSTM over the steps, concatenated with the standardised aggregates, then dense blocks.

    Inputs: ``{"seq": (batch, steps, 10) zero-padded, "agg": (batch, n_aggregates)}``; output: (batch, 14)
    softmax over ``survey.CLASSES``. The LSTM settings keep Keras on its cuDNN kernel when a GPU is there.
    """
    seq_in = keras.Input(shape=(None, N_FEATURES), name="seq")
    agg_in = keras.Input(shape=(n_aggregates,), name="agg")
    h = layers.Masking(mask_value=0.0)(seq_in)
    for i in range(settings.lstm_layers):
        h = layers.LSTM(
            settings.units,
            activation="tanh",
            recurrent_activation="sigmoid",
            recurrent_dropout=0.0,
            unroll=False,
            use_bias=True,
            dropout=settings.lstm_dropout,
            return_sequences=i < settings.lstm_layers - 1,
        )(h)
    h = layers.BatchNormalization()(h)
    h = layers.Concatenate()([h, agg_in])
    for units, rate in zip(settings.dense_units, settings.dense_dropout, strict=True):
        h = layers.Dense(units)(h)
        h = layers.ReLU()(h)
        h = layers.BatchNormalization()(h)
        h = layers.Dropout(rate)(h)
    out = layers.Dense(len(survey.CLASSES), activation="softmax", name="proba")(h)
    model = keras.Model({"seq": seq_in, "agg": agg_in}, out)
    model.compile(
        optimizer=keras.optimizers.Adam(settings.learning_rate),
        loss=keras.losses.CategoricalCrossentropy(),
    )
    return model


class FoldMean(keras.Model):
    """The mean of several models' outputs as one model (the fold models of a trained network).

    Predicting through it compiles one function for all folds; calling each fold model's ``predict_on_batch``
    in turn compiles one per fold, which TensorFlow reports as retracing.
    """

    def __init__(self, members: list[keras.Model], **kwargs):
        super().__init__(**kwargs)
        self.members = list(members)

    def call(self, inputs, training=False):
        return keras.ops.mean(keras.ops.stack([m(inputs, training=False) for m in self.members]), axis=0)


@dataclass
class Scaler:
    """Standardisation of the aggregate features; NaN and infinities become 0 (the mean) afterwards."""

    columns: list[str]
    mean: np.ndarray = field(default_factory=lambda: np.zeros(0))
    std: np.ndarray = field(default_factory=lambda: np.ones(0))

    @classmethod
    def fit(cls, x: np.ndarray, columns: list[str]) -> Scaler:
        x = np.where(np.isfinite(x), x, np.nan).astype(np.float64)
        with np.errstate(all="ignore"):
            mean = np.nan_to_num(np.nanmean(x, axis=0)) if len(x) else np.zeros(x.shape[1])
            std = np.nan_to_num(np.nanstd(x, axis=0)) if len(x) else np.ones(x.shape[1])
        return cls(list(columns), mean, np.where(std > 0, std, 1.0))

    def transform(self, x: np.ndarray) -> np.ndarray:
        z = (np.asarray(x, np.float64) - self.mean) / self.std
        return np.where(np.isfinite(z), z, 0.0).astype(np.float32)

    def save(self, path: Path) -> None:
        with atomic_path(path) as tmp:
            payload = {"columns": self.columns, "mean": self.mean.tolist(), "std": self.std.tolist()}
            tmp.write_text(json.dumps(payload, indent=1) + "\n")

    @classmethod
    def load(cls, path: Path) -> Scaler:
        d = read_json(path)
        return cls(d["columns"], np.asarray(d["mean"], np.float64), np.asarray(d["std"], np.float64))
