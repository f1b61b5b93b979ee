"""Self-supervised pretraining of the LSTM's sequence encoder on unlabelled light curves (masked fluxes).

Each object loses a random share (``--mask-fraction``) of its observations. The encoder
(:func:`kit.lstm_model.build_encoder`) sees the others only: the masked steps are removed, the time gaps
recomputed between the steps that are left, and the fluxes and errors rescaled by the largest |flux| left, so
a masked observation carries nothing into the encoder (not its flux, error, detection, time or its share in the
flux scale). A small decoder takes the encoder's vector and each masked observation's time (days since the
first visible one) and passband, and predicts its flux on that scale. The loss is the chi-square of the masked
observations, ``(pred - flux)^2 / max(flux_err, ERR_FLOOR)^2`` capped at ``CHI2_CAP``, averaged per object
and then over objects: the error floor keeps bright, precise points from dominating.

Batches stream from the memory-mapped ragged stores (:mod:`kit.sequences`; the test set's, with
``--with-train`` the training set's too), batched by length; memory holds one batch plus a few numbers per
object. After each epoch a checkpoint (network weights, optimizer state, epoch, history) replaces the previous
one whole, and a rerun continues from it. At the end the encoder is saved in Keras' native format::

    models/<name>/pretrain/encoder.keras     what fine-tuning loads (kit.models.finetune, --pretrained)
    models/<name>/pretrain/pretrain.json     settings, per-epoch loss and throughput (light curves per second)
    models/<name>/pretrain/checkpoint/       weights.weights.h5 (with the optimizer state), state.json

``--source DIR`` pretrains on another competition folder's test light curves (another simulated survey, the
kit's simulator at another cadence or depth): its sequences are read from ``build/<source name>/`` and the
encoder is written to ``models/<name>/pretrain-<source name>/``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from kit import survey
from kit.config import Config
from kit.errors import InputError
from kit.files import atomic_dir, atomic_path, read_json, write_json
from kit.sequences import MAX_LEN, N_FEATURES, PAD_QUANTUM, Sequences, length_batches, load_sequences

log = logging.getLogger(__name__)

#: Flux-error floor in units of the object's largest visible |flux| (so 2 % of its peak).
ERR_FLOOR = 0.02
#: Per-point chi-square cap: one wild point (a flare on a masked step) cannot dominate a batch.
CHI2_CAP = 1e4
#: Query time unit: days since the first visible observation, over this.
TIME_SCALE = 365.25
N_QUERY = 1 + N_FEATURES - 4  # time + one-hot passband
N_BANDS = N_FEATURES - 4


@dataclass(frozen=True)
class PretrainOptions:
    """What a pretraining run is; a checkpoint continues only a run with the same options."""

    epochs: int = 10
    mask_fraction: float = 0.25
    max_objects: int | None = None
    with_train: bool = False
    source: str | None = None
    decoder_units: int = 64

    def same_run(self, other: dict) -> bool:
        mine = self.__dict__ | {"epochs": None}
        return mine == {**other, "epochs": None}


# --- batches: pure numpy -------------------------------------------------------------------------------------


def masked_batch(seqs: Sequences, index: np.ndarray, mask_fraction: float, rng: np.random.Generator,
                 max_len: int = MAX_LEN, settings=None,
                 photoz: np.ndarray | None = None) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Inputs and targets of one batch of objects ``index`` (each with at least two observations).

    Each object keeps its first ``max_len`` observations; of those ``clip(round(f * n), 1, n - 1)`` are masked.

    Returns
    -------
    inputs : ``{"seq": (batch, steps, settings.n_features), "query": (batch, queries, 7)}``: the visible steps as
        the encoder of ``settings`` sees them (:func:`kit.lstm.network_steps`, ``photoz`` of the objects
        ``index`` for the rest-frame time; no augmentation), zero-padded; the masked observations' times (years since
        the first visible step) and one-hot passbands, zero-padded.
    targets : (batch, queries, 3) float32: flux and flux_err on the visible scale, and 1 for a real query
        (0 for padding).
    """
    from kit.lstm import network_steps

    index = np.asarray(index)
    lens = np.minimum(seqs.lengths[index], max_len)
    if np.any(lens < 2):
        raise ValueError("masked_batch needs objects with at least two observations")
    n = len(index)
    obj = np.repeat(np.arange(n), lens)
    starts = np.concatenate([[0], np.cumsum(lens)[:-1]])
    step = np.arange(len(obj)) - starts[obj]
    rows = np.asarray(seqs.values[seqs.offsets[index][obj] + step], np.float32)
    days = np.expm1(rows[:, 0].astype(np.float64))
    t = np.cumsum(days)
    t -= t[starts][obj]  # days since the object's first observation

    n_mask = np.clip(np.rint(mask_fraction * lens), 1, lens - 1).astype(np.int64)
    qry = choose_masked(lens, n_mask, rng)
    vis = ~qry

    # visible steps: gaps between visible steps, fluxes on the largest visible |flux|
    v_obj, v_t = obj[vis], t[vis]
    v_len = lens - n_mask
    v_start = np.concatenate([[0], np.cumsum(v_len)[:-1]])
    first = np.zeros(len(v_obj), bool)
    first[v_start] = True
    dt = np.where(first, 0.0, np.diff(v_t, prepend=0.0))
    scale = np.maximum.reduceat(np.abs(rows[vis, 1]), v_start)
    scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
    vis_rows = rows[vis].copy()
    vis_rows[:, 0] = np.log1p(np.maximum(dt, 0.0))
    vis_rows[:, 1:3] /= scale[v_obj, None]
    width = min(-(-int(v_len.max()) // PAD_QUANTUM) * PAD_QUANTUM, max(max_len, 1))
    seq = np.zeros((n, width, N_FEATURES), np.float32)
    seq[v_obj, np.arange(len(v_obj)) - v_start[v_obj]] = vis_rows

    # masked steps: queries and targets
    q_obj = obj[qry]
    q_start = np.concatenate([[0], np.cumsum(n_mask)[:-1]])
    q_pos = np.arange(len(q_obj)) - q_start[q_obj]
    n_query = int(n_mask.max())
    query = np.zeros((n, n_query, N_QUERY), np.float32)
    targets = np.zeros((n, n_query, 3), np.float32)
    t0 = v_t[v_start]  # the first visible step's time
    query[q_obj, q_pos, 0] = (t[qry] - t0[q_obj]) / TIME_SCALE
    query[q_obj, q_pos, 1:] = rows[qry, 4:]
    targets[q_obj, q_pos, 0] = rows[qry, 1] / scale[q_obj]
    targets[q_obj, q_pos, 1] = rows[qry, 2] / scale[q_obj]
    targets[q_obj, q_pos, 2] = 1.0
    return {"seq": network_steps(seq, settings, photoz), "query": query}, targets


def choose_masked(lens: np.ndarray, n_mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Flat (sum(lens),) bool over the objects' steps end to end: ``n_mask[i]`` random steps of object i."""
    obj = np.repeat(np.arange(len(lens)), lens)
    starts = np.concatenate([[0], np.cumsum(lens)[:-1]]).astype(np.int64)
    order = np.lexsort((rng.random(len(obj)), obj))  # a random order within each object
    rank = np.empty(len(obj), np.int64)
    rank[order] = np.arange(len(obj)) - starts[obj[order]]
    return rank < n_mask[obj]


def chi2_per_object(targets, pred):
    """Mean chi-square of each object's masked observations: (batch,). ``targets`` as :func:`masked_batch`'s.

    Works on numpy arrays and backend tensors alike (keras.ops); padding queries (weight 0) count for nothing.
    """
    from kit.lstm_model import keras

    ops = keras.ops
    flux, err, weight = targets[..., 0], targets[..., 1], targets[..., 2]
    pred = ops.reshape(pred, ops.shape(flux))
    chi2 = ops.minimum(ops.square(pred - flux) / ops.square(ops.maximum(err, ERR_FLOOR)), CHI2_CAP)
    return ops.sum(weight * chi2, axis=-1) / ops.maximum(ops.sum(weight, axis=-1), 1.0)


# --- the networks ---------------------------------------------------------------------------------------------


def build_decoder(vector_size: int, units: int = 64):
    """``{"vector": (batch, d), "query": (batch, queries, 7)}`` -> (batch, queries, 1): the masked fluxes."""
    from kit.lstm_model import keras, layers

    vec_in = keras.Input(shape=(vector_size,), name="vector")
    q_in = keras.Input(shape=(None, N_QUERY), name="query")
    h = layers.Reshape((1, units))(layers.Dense(units)(vec_in))  # broadcast over the queries
    h = layers.Add()([layers.Dense(units)(q_in), h])
    h = layers.ReLU()(h)
    h = layers.Dense(units, activation="relu")(h)
    out = layers.Dense(1, name="flux")(h)
    return keras.Model({"vector": vec_in, "query": q_in}, out, name="decoder")


def build_pretrainer(settings, options: PretrainOptions):
    """Encoder + decoder, compiled with the masked chi-square: ``{"seq", "query"}`` -> (batch, queries, 1)."""
    from kit.lstm_model import build_encoder, keras

    encoder = build_encoder(settings)
    decoder = build_decoder(int(encoder.output.shape[-1]), options.decoder_units)
    seq_in = keras.Input(shape=(None, settings.n_features), name="seq")
    q_in = keras.Input(shape=(None, N_QUERY), name="query")
    out = decoder({"vector": encoder({"seq": seq_in}), "query": q_in})
    model = keras.Model({"seq": seq_in, "query": q_in}, out, name="pretrainer")
    model.compile(optimizer=keras.optimizers.Adam(settings.learning_rate), loss=chi2_per_object)
    return model


# --- data and training -----------------------------------------------------------------------------------------


def pool(stores: list[Sequences], max_objects: int | None, seed: int) -> list[np.ndarray]:
    """Per store, the positions pretraining uses: objects with two or more observations; ``max_objects`` in all
    (a seeded random subset, spread over the stores in proportion)."""
    usable = [np.flatnonzero(s.lengths >= 2) for s in stores]
    total = sum(len(u) for u in usable)
    if max_objects is None or max_objects >= total:
        return usable
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(total, max_objects, replace=False))
    bounds = np.cumsum([0] + [len(u) for u in usable])
    return [u[keep[(keep >= lo) & (keep < hi)] - lo] for u, lo, hi in zip(usable, bounds[:-1], bounds[1:], strict=True)]


def epoch_batches(stores, positions, settings, seed: int, epoch: int) -> list[tuple[int, np.ndarray]]:
    """(store, positions) batches of one epoch: similar lengths together, order shuffled; narrowest and widest first
    (Keras takes the input signature from the first batches: the step axis stays open)."""
    rng = np.random.default_rng([seed, epoch])
    batches = []
    for k, (seqs, pos) in enumerate(zip(stores, positions, strict=True)):
        for b in length_batches(seqs.lengths[pos], settings.batch_size, settings.max_len, rng):
            batches.append((k, pos[b]))
    batches = [batches[i] for i in rng.permutation(len(batches))]
    if len(batches) > 2:
        width = [int(np.minimum(stores[k].lengths[p], settings.max_len).max()) for k, p in batches]
        first = list(dict.fromkeys([int(np.argmin(width)), int(np.argmax(width))]))
        batches = [batches[i] for i in first] + [b for i, b in enumerate(batches) if i not in first]
    return batches


def _dataset(stores, photoz, batches, mask_fraction: float, settings, seed: int, epoch: int):
    from kit.lstm_model import keras

    class MaskedBatches(keras.utils.PyDataset):
        def __len__(self):
            return len(batches)

        def __getitem__(self, i):
            k, pos = batches[i]
            rng = np.random.default_rng([seed, epoch, i])
            return masked_batch(stores[k], pos, mask_fraction, rng, settings.max_len, settings, photoz[k][pos])

    return MaskedBatches()


def store_photoz(source: Config, split: str, seqs: Sequences) -> np.ndarray:
    """hostgal_photoz of the objects of ``seqs`` (the ``split`` metadata's, in the store's order), for the
    rest-frame time; an object missing from the metadata gets NaN (its times stay as observed)."""
    path = source.test_metadata if split == "test" else source.train_metadata
    if not path.exists():
        raise InputError(f"{path}: not found; the rest-frame time of the {split} light curves needs its photo-z "
                         "(check --data / SOURCE=, or pretrain a preset without it: --preset seed).")
    meta = pd.read_csv(path, usecols=[survey.OBJECT_ID, "hostgal_photoz"])
    z = pd.Series(meta["hostgal_photoz"].to_numpy(np.float64), index=meta[survey.OBJECT_ID].to_numpy())
    return z.reindex(np.asarray(seqs.object_ids)).to_numpy(np.float64)


def output_dir(config: Config, source: str | None) -> Path:
    return config.model_dir("pretrain" if source is None else f"pretrain-{Path(source).resolve().name}")


def _save_checkpoint(model, folder: Path, state: dict) -> None:
    """Weights and optimizer state (Keras keeps both in the .weights.h5) and the run's state, replaced whole."""
    with atomic_dir(folder) as tmp:
        model.save_weights(tmp / "weights.weights.h5")
        write_json(tmp / "state.json", state)


def _load_checkpoint(model, folder: Path) -> dict:
    model.optimizer.build(model.trainable_variables)  # built first, so that its saved state is loaded too
    model.load_weights(folder / "weights.weights.h5")
    return read_json(folder / "state.json")


def pretrain(config: Config, settings, options: PretrainOptions, fresh: bool = False) -> dict:
    """Pretrain (or continue) the encoder; write ``encoder.keras`` and ``pretrain.json``; return the summary."""
    from kit.lstm_model import keras

    source = config if options.source is None else config.with_(data_dir=Path(options.source))
    splits = ["test", "train"] if options.with_train else ["test"]
    stores = [load_sequences(source.sequences_dir(s)) for s in splits]
    photoz = [store_photoz(source, s, seqs) if settings.rest_frame else np.full(len(seqs), np.nan)
              for s, seqs in zip(splits, stores, strict=True)]
    positions = pool(stores, options.max_objects, config.seed)
    n_objects = int(sum(len(p) for p in positions))
    if n_objects == 0:
        raise InputError(f"{source.sequences_dir('test')}: no light curve with two or more observations to "
                         "pretrain on.")
    out = output_dir(config, options.source)
    checkpoint = out / "checkpoint"
    keras.utils.set_random_seed(config.seed)
    model = build_pretrainer(settings, options)
    state = {"epoch": 0, "history": []}
    if checkpoint.exists() and not fresh:
        saved = read_json(checkpoint / "state.json")
        if saved.get("settings") != settings.to_dict() or not options.same_run(saved.get("options", {})):
            raise InputError(f"{checkpoint}: a checkpoint of another pretraining run (other settings or options); "
                             "rerun with --fresh to start over, or with that run's options.")
        state = _load_checkpoint(model, checkpoint)
        log.info("pretrain: continuing from %s after epoch %d", checkpoint, state["epoch"])
    verbose = 1 if sys.stdout.isatty() else 2
    for epoch in range(state["epoch"], options.epochs):
        batches = epoch_batches(stores, positions, settings, config.seed, epoch)
        dataset = _dataset(stores, photoz, batches, options.mask_fraction, settings, config.seed, epoch)
        started = time.perf_counter()
        fit = model.fit(dataset, epochs=epoch + 1, initial_epoch=epoch, verbose=verbose, shuffle=False)
        seconds = time.perf_counter() - started
        record = {"epoch": epoch + 1, "loss": float(fit.history["loss"][-1]), "seconds": seconds,
                  "light_curves_per_s": n_objects / seconds}
        log.info("pretrain epoch %d/%d: masked chi-square %.4f, %.1f s, %.0f light curves/s", epoch + 1,
                 options.epochs, record["loss"], seconds, record["light_curves_per_s"])
        state = {"epoch": epoch + 1, "history": [*state["history"], record], "settings": settings.to_dict(),
                 "options": options.__dict__}
        _save_checkpoint(model, checkpoint, state)
    encoder = model.get_layer("encoder")
    with atomic_path(out / "encoder.keras", keep_suffix=True) as tmp:
        encoder.save(tmp)
    history = state["history"]
    summary = {
        "encoder": str(out / "encoder.keras"),
        "splits": splits,
        "source": str(source.data_dir),
        "n_objects": n_objects,
        "epochs": state["epoch"],
        "history": history,
        "loss": history[-1]["loss"] if history else None,
        "light_curves_per_s": float(np.mean([h["light_curves_per_s"] for h in history])) if history else None,
        "settings": settings.to_dict(),
        "options": options.__dict__,
    }
    write_json(out / "pretrain.json", summary)
    return summary


def settings_for(preset: str, **overrides):
    """The LSTM settings of ``preset`` (:data:`kit.lstm_model.PRESETS`) with the given non-None fields replaced."""
    from kit.lstm_model import PRESETS

    return replace(PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", choices=["seed", "default", "demo"], default="default",
                        help="the encoder of this LSTM preset (fine-tune with the same one)")
    parser.add_argument("--epochs", type=int, default=10, help="epochs in all (a rerun continues; default 10)")
    parser.add_argument("--mask-fraction", type=float, default=0.25,
                        help="share of each object's observations hidden and predicted (default 0.25)")
    parser.add_argument("--max-objects", type=int, default=None, help="pretrain on a random subset of this size")
    parser.add_argument("--batch-size", type=int, default=None, help="(the preset's: seed 128, demo 64)")
    parser.add_argument("--learning-rate", type=float, default=None)
    parser.add_argument("--units", type=int, default=None, help="recurrent units (the preset's)")
    parser.add_argument("--max-len", type=int, default=None, help="observations per object kept (first ones; 352)")
    parser.add_argument("--with-train", action="store_true", help="the training light curves too (no labels used)")
    parser.add_argument("--source", default=None,
                        help="another competition folder (e.g. data/sim-deep) whose test light curves to pretrain "
                             "on; its sequences must be built (make sequences DATA=...)")
    parser.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint and start over")


def run(args: argparse.Namespace, config: Config) -> int:
    if not 0.0 < args.mask_fraction < 1.0:
        raise InputError(f"--mask-fraction {args.mask_fraction}: choose a share between 0 and 1 (e.g. 0.25)")
    settings = settings_for(args.preset, batch_size=args.batch_size, learning_rate=args.learning_rate,
                            units=args.units, max_len=args.max_len)
    options = PretrainOptions(epochs=args.epochs, mask_fraction=args.mask_fraction, max_objects=args.max_objects,
                              with_train=args.with_train, source=args.source)
    summary = pretrain(config, settings, options, fresh=args.fresh)
    rate = summary["light_curves_per_s"]
    print(f"{summary['encoder']}: {summary['n_objects']:,} light curves, {summary['epochs']} epochs, masked "
          f"chi-square {summary['loss']}, {rate or 0:.0f} light curves/s")
    return 0
