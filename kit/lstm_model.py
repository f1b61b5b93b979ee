"""The LSTM-plus-features network (Keras 3): settings, construction, and the feature scaler.

Imports Keras, so only the LSTM commands import this module; the other modules get Keras from here, so that
TensorFlow's start-up log lines are hidden (:func:`_import_keras`) unless ``-v`` asks for them.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import warnings
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np

from kit import survey
from kit.errors import InputError
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
    """Every size of the network, its step inputs and its training. The dataclass defaults are the seed
    architecture (:data:`SEED`); :data:`PRESETS` names the others (``train-lstm --preset``)."""

    #: "lstm": stacked masked LSTMs, last state out (the seed); "gru": a per-step projection (the passband
    #: embedding), GRU layers (``bidirectional``), attention pooling over the steps (``attention``).
    encoder: str = "lstm"
    units: int = 100
    lstm_layers: int = 2
    lstm_dropout: float = 0.1
    bidirectional: bool = False
    attention: bool = False
    #: Width of the per-step Dense layer before the recurrent layers (0: none). On the one-hot columns it is
    #: a learned passband embedding added to the projection of the other step features.
    step_units: int = 0
    dense_units: tuple[int, ...] = (512, 256, 128, 64)
    dense_dropout: tuple[float, ...] = (0.25, 0.3, 0.4, 0.5)
    learning_rate: float = 1e-3
    batch_size: int = 128
    epochs: int = 40
    patience: int = 8
    max_len: int = MAX_LEN
    #: Training batches (:func:`kit.sequences.mixed_batches`): 1 = random batches (most padding: 3x slower epochs in
    #: the demo); more buckets by length save padding, and ``bucket_mix`` of the objects change bucket at random so
    #: batches still mix DDF and WFD objects. Batch-norm statistics are recalibrated on the training part anyway.
    length_buckets: int = 4
    bucket_mix: float = 0.25
    #: Step inputs (:func:`kit.lstm.network_steps`): time between observations in the host's rest frame
    #: (days / (1 + photo-z) for extragalactic objects), and asinh(flux / flux_err) as an 11th feature.
    rest_frame: bool = False
    snr: bool = False
    #: Feature sets on the dense side (``aggregate``, ``gp``); GP features not built: aggregate only, logged.
    features: tuple[str, ...] = ("aggregate",)
    #: Training-time augmentation (never at prediction): each object drops a share of its observations drawn
    #: uniformly from [0, drop_points]; fluxes move by ``flux_jitter`` x their errors (Gaussian); (1 + photo-z)
    #: of extragalactic objects is multiplied by exp(N(0, z_jitter)) in the rest-frame time.
    drop_points: float = 0.0
    flux_jitter: float = 0.0
    z_jitter: float = 0.0
    #: Redshift-augmented copies (`make augment`) per training object that join each fold's training part, drawn at
    #: random once per fold from the object's copies (0: none). Validation and OOF stay the original objects.
    augmented_copies: int = 0

    @property
    def n_features(self) -> int:
        """Step features the network sees (after :func:`kit.lstm.network_steps`): 10, or 11 with ``snr``."""
        return N_FEATURES + int(self.snr)

    @property
    def augments(self) -> bool:
        return bool(self.drop_points or self.flux_jitter or self.z_jitter)

    def to_dict(self) -> dict:
        d = asdict(self)
        return d | {k: list(getattr(self, k)) for k in ("dense_units", "dense_dropout", "features")}

    @classmethod
    def from_dict(cls, d: dict) -> LSTMSettings:
        """Settings saved by :meth:`to_dict` (those of an older kit lack the new fields: the seed's values)."""
        known = {f.name for f in fields(cls)}
        d = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k in known}
        return cls(**d)


#: The seed architecture: two masked LSTM layers of 100 units on the stored steps, 4 dense layers.
SEED = LSTMSettings()
#: The default: rest-frame time, S/N steps, bidirectional GRU with attention pooling, aggregate + GP features
#: on the dense side, and training-time augmentation.
DEFAULT = LSTMSettings(
    encoder="gru", units=64, lstm_layers=1, lstm_dropout=0.0, bidirectional=True, attention=True, step_units=32,
    dense_units=(256, 128, 64), dense_dropout=(0.25, 0.35, 0.5), rest_frame=True, snr=True,
    features=("aggregate", "gp"), drop_points=0.3, flux_jitter=0.5, z_jitter=0.05,
)
#: The default made small, for the 2,000-object demo on a laptop CPU.
DEMO = replace(DEFAULT, units=32, step_units=16, dense_units=(128, 64, 32), epochs=15, patience=4, batch_size=64)
PRESETS: dict[str, LSTMSettings] = {"seed": SEED, "default": DEFAULT, "demo": DEMO}


@keras.saving.register_keras_serializable(package="kit")
class AttentionPooling(layers.Layer):
    """(batch, steps, d) -> (batch, d): softmax-weighted mean over the unmasked steps (one learned score each).

    Masked steps get weight exactly 0, so padding changes nothing.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True
        self.score = layers.Dense(1, name="score")

    def build(self, input_shape):
        self.score.build(input_shape)

    def call(self, h, mask=None):
        s = keras.ops.squeeze(self.score(h), -1)
        if mask is not None:
            s = keras.ops.where(mask, s, keras.ops.full_like(s, -1e9))
        w = keras.ops.softmax(s, axis=1)
        return keras.ops.sum(keras.ops.expand_dims(w, -1) * h, axis=1)

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[2])


def build_encoder(settings: LSTMSettings) -> keras.Model:
    """The sequence encoder: ``{"seq": (batch, steps, settings.n_features) zero-padded}`` -> (batch, d), named
    ``"encoder"``.

    The input is what :func:`kit.lstm.network_steps` makes of the stored steps for these settings. ``d`` is
    ``units`` (seed: the last state of stacked LSTMs), twice that when bidirectional. Zero steps are padding
    (every real step has a passband): a Masking layer carries the mask through every layer. It is the part of
    the network that sees the light curve, so it is also what self-supervised pretraining trains and
    fine-tuning loads (by this name). The recurrent settings keep Keras on its cuDNN kernel when a GPU is there.
    """
    seq_in = keras.Input(shape=(None, settings.n_features), name="seq")
    h = layers.Masking(mask_value=0.0)(seq_in)
    if settings.step_units:
        h = layers.Dense(settings.step_units, activation="relu", name="step")(h)
    cell = {"lstm": layers.LSTM, "gru": layers.GRU}[settings.encoder]
    for i in range(settings.lstm_layers):
        rnn = cell(
            settings.units,
            activation="tanh",
            recurrent_activation="sigmoid",
            recurrent_dropout=0.0,
            unroll=False,
            use_bias=True,
            dropout=settings.lstm_dropout,
            return_sequences=settings.attention or i < settings.lstm_layers - 1,
        )
        h = (layers.Bidirectional(rnn) if settings.bidirectional else rnn)(h)
    if settings.attention:
        h = AttentionPooling(name="attention")(h)
    return keras.Model({"seq": seq_in}, h, name="encoder")


def build_model(settings: LSTMSettings, n_aggregates: int, encoder: keras.Model | None = None) -> keras.Model:
    """The encoder (:func:`build_encoder`, or a pretrained one) concatenated with the aggregates, then dense blocks.

    Inputs: ``{"seq": (batch, steps, settings.n_features) zero-padded, "agg": (batch, n_aggregates)}``; output:
    (batch, 14) softmax over ``survey.CLASSES``.
    """
    seq_in = keras.Input(shape=(None, settings.n_features), name="seq")
    h = (encoder or build_encoder(settings))({"seq": seq_in})
    return classifier({"seq": seq_in}, h, n_aggregates, settings)


def classifier(inputs: dict, h, n_aggregates: int, settings) -> keras.Model:
    """The compiled network from an encoding ``h`` of ``inputs``: ``h`` batch-normalised, concatenated with the
    aggregates (a new input ``"agg"``), then per entry of ``settings.dense_units`` a dense block (dense, ReLU,
    batch norm, dropout ``settings.dense_dropout``) and the (batch, 14) softmax; Adam, cross-entropy."""
    agg_in = keras.Input(shape=(n_aggregates,), name="agg")
    h = layers.BatchNormalization()(h)
    h = layers.Concatenate()([h, agg_in])
    for units, rate in zip(settings.dense_units, settings.dense_dropout, strict=True):
        h = layers.Dense(units)(h)
        h = layers.ReLU()(h)
        h = layers.BatchNormalization()(h)
        h = layers.Dropout(rate)(h)
    out = layers.Dense(len(survey.CLASSES), activation="softmax", name="proba")(h)
    model = keras.Model({**inputs, "agg": agg_in}, out)
    model.compile(
        optimizer=keras.optimizers.Adam(settings.learning_rate),
        loss=keras.losses.CategoricalCrossentropy(),
    )
    return model


class FoldMean(keras.Model):
    """The mean of several models' outputs as one model (the fold models of a trained network).

    Predicting through it compiles one function for all folds; calling each fold model's ``predict_on_batch``
    in turn compiles one per fold, which TensorFlow reports as retracing. Every input but ``agg`` goes to every
    member as it is (``seq`` for the LSTM, ``img`` for the CNN); ``agg`` is either shared,
    (batch, n_aggregates), or one per member, (batch, n_members, n_aggregates): each fold scales the aggregates
    with its own scaler.
    """

    def __init__(self, members: list[keras.Model], **kwargs):
        super().__init__(**kwargs)
        self.members = list(members)

    def call(self, inputs, training=False):
        agg = inputs["agg"]
        own = len(agg.shape) == 3
        outs = [m({**inputs, "agg": agg[:, k] if own else agg}, training=False)
                for k, m in enumerate(self.members)]
        return keras.ops.mean(keras.ops.stack(outs), axis=0)


def squash(x: np.ndarray) -> np.ndarray:
    """sign(x) * ln(1 + |x|): a monotone map that keeps small values and tames heavy tails (1e30 -> 69)."""
    x = np.asarray(x, np.float64)
    with np.errstate(invalid="ignore"):
        return np.sign(x) * np.log1p(np.abs(x))


@dataclass
class Scaler:
    """Bounded scaling of the aggregate features: :func:`squash`, standardise, clip to the training range.

    Heavy-tailed features standardised as they are reach |z| ~ 1e14 on the test set; squashed first and clipped
    to what the training rows gave, every input stays within the range the network was trained on.
    NaN becomes 0 (the training mean); +-inf the training maximum / minimum.
    """

    columns: list[str]
    mean: np.ndarray = field(default_factory=lambda: np.zeros(0))
    std: np.ndarray = field(default_factory=lambda: np.ones(0))
    low: np.ndarray = field(default_factory=lambda: np.zeros(0))
    high: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @classmethod
    def fit(cls, x: np.ndarray, columns: list[str]) -> Scaler:
        t = squash(x)
        t = np.where(np.isfinite(t), t, np.nan)
        n = t.shape[1]
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns
            mean = np.nan_to_num(np.nanmean(t, axis=0)) if len(t) else np.zeros(n)
            std = np.nan_to_num(np.nanstd(t, axis=0)) if len(t) else np.ones(n)
            std = np.where(std > 0, std, 1.0)
            z = (t - mean) / std
            low = np.nan_to_num(np.nanmin(z, axis=0)) if len(t) else np.zeros(n)
            high = np.nan_to_num(np.nanmax(z, axis=0)) if len(t) else np.zeros(n)
        return cls(list(columns), mean, std, np.minimum(low, 0.0), np.maximum(high, 0.0))

    def transform(self, x: np.ndarray) -> np.ndarray:
        z = (squash(x) - self.mean) / self.std
        z = np.clip(z, self.low, self.high)  # inf -> the bounds; NaN stays NaN
        return np.where(np.isnan(z), 0.0, z).astype(np.float32)

    def save(self, path: Path) -> None:
        with atomic_path(path) as tmp:
            payload = {"transform": "squash-standardise-clip", "columns": self.columns, "mean": self.mean.tolist(),
                       "std": self.std.tolist(), "low": self.low.tolist(), "high": self.high.tolist()}
            tmp.write_text(json.dumps(payload, indent=1) + "\n")

    @classmethod
    def load(cls, path: Path) -> Scaler:
        d = read_json(path)
        if d.get("transform") != "squash-standardise-clip":
            raise InputError(f"{path}: a scaler of an older kit (unbounded z-scores); retrain the LSTM "
                             "(make train-lstm).")
        return cls(d["columns"], *(np.asarray(d[k], np.float64) for k in ("mean", "std", "low", "high")))
