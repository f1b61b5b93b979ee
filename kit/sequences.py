"""Ragged per-object observation sequences for the LSTM: built streaming, read memory-mapped, batched by length.

Per observation (rows of one object sorted by mjd) the 10 float32 step features are::

    0  log1p(days since the object's previous observation)   (0 for the first)
    1  flux / s          s = the object's max |flux| over all its rows and passbands (1 when that is 0)
    2  flux_err / s
    3  detected          (0 or 1)
    4-9 one-hot passband (u, g, r, i, z, Y)

The per-object scale is kept as the aggregate ``log_flux_scale = ln s`` so that brightness is not lost.

On disk (``config.sequences_dir(split)``), all rows of all objects end to end::

    values.npy      (total_steps, 10) float32    memory-mapped when read
    offsets.npy     (n_objects + 1,)  int64      rows of object i are values[offsets[i]:offsets[i + 1]]
    object_ids.npy  (n_objects,)      int64
    log_scale.npy   (n_objects,)      float32
    meta.json, .done

That is 40 bytes per observation plus 20 per object: about 40.2 MB per million rows at the real cadence.
The folder is written under a temporary name, chunk by chunk, and renamed into place when complete.

Batches for prediction: objects are sorted by length, cut into batches of consecutive objects and each
batch is padded to its own longest sequence (at most ``max_len``; longer
objects keep their first ``max_len`` observations). Padding is all zeros, which no real step is (every step
has a passband), so Keras ``Masking(0.0)`` recovers the mask; the mask is also returned explicitly.
Batches for training mix the objects instead (:func:`mixed_batches`): batch normalisation needs batches that
look like the training set.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from kit import idsets, survey
from kit.config import Config
from kit.errors import InputError
from kit.files import is_fresh

log = logging.getLogger(__name__)

FEATURES: tuple[str, ...] = ("log1p_dt", "flux", "flux_err", "detected") + tuple(f"band_{b}" for b in survey.PASSBANDS)
N_FEATURES = len(FEATURES)
MAX_LEN = 352
#: Batches are padded to a multiple of this many steps: few distinct shapes for the compiled graph.
PAD_QUANTUM = 16
SCALE_FEATURE = "log_flux_scale"
_HEADER_BYTES = 128  # fixed .npy header size, so the shape can be rewritten once the row count is known


def sequence_features(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Step features of whole objects; vectorised, no per-object loop.

    Parameters
    ----------
    frame : light-curve rows (``survey.LIGHTCURVE_COLUMNS``) holding every row of each object in it.

    Returns
    -------
    object_ids : (n_objects,) int64, ascending
    offsets : (n_objects + 1,) int64, row ranges of the objects in ``values``
    values : (n_rows, 10) float32, see the module docstring
    log_scale : (n_objects,) float32, ln of each object's max |flux|
    """
    oid = frame[survey.OBJECT_ID].to_numpy().astype(np.int64)
    mjd = frame["mjd"].to_numpy().astype(np.float64)
    n = len(oid)
    if n == 0:
        empty = np.zeros(0, np.int64)
        return empty, np.zeros(1, np.int64), np.zeros((0, N_FEATURES), np.float32), np.zeros(0, np.float32)
    same = oid[1:] == oid[:-1]
    if np.any(oid[1:] < oid[:-1]) or np.any(same & (mjd[1:] < mjd[:-1])):
        order = np.lexsort((mjd, oid))
        oid, mjd = oid[order], mjd[order]
        same = oid[1:] == oid[:-1]
    else:
        order = slice(None)
    flux = frame["flux"].to_numpy().astype(np.float32)[order]
    err = frame["flux_err"].to_numpy().astype(np.float32)[order]
    detected = frame["detected"].to_numpy()[order]
    band = frame["passband"].to_numpy().astype(np.int64)[order]

    starts = np.concatenate([[0], np.flatnonzero(~same) + 1])
    offsets = np.append(starts, n).astype(np.int64)
    lengths = np.diff(offsets)
    absmax = np.maximum.reduceat(np.abs(flux), starts)
    scale = np.where(absmax > 0, absmax, np.float32(1.0)).astype(np.float32)
    row_scale = np.repeat(scale, lengths)

    dt = np.zeros(n, np.float64)
    dt[1:] = np.where(same, mjd[1:] - mjd[:-1], 0.0)
    values = np.zeros((n, N_FEATURES), np.float32)
    values[:, 0] = np.log1p(dt)
    values[:, 1] = flux / row_scale
    values[:, 2] = err / row_scale
    values[:, 3] = detected
    values[np.arange(n), 4 + band] = 1.0
    return oid[starts], offsets, values, np.log(scale).astype(np.float32)


def _npy_header(shape: tuple[int, ...]) -> bytes:
    """A version-1.0 .npy header for float32 C-order data, padded to exactly ``_HEADER_BYTES``."""
    text = repr({"descr": "<f4", "fortran_order": False, "shape": tuple(shape)})
    pad = _HEADER_BYTES - 10 - len(text) - 1
    return b"\x93NUMPY\x01\x00" + (_HEADER_BYTES - 10).to_bytes(2, "little") + (text + " " * pad + "\n").encode()


def first_objects(chunks: Iterable[pd.DataFrame], n: int) -> Iterator[pd.DataFrame]:
    """The whole-object ``chunks`` cut after their first ``n`` objects (in file order)."""
    left = n
    for chunk in chunks:
        if left <= 0:
            return
        ids = chunk[survey.OBJECT_ID].to_numpy()
        starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
        if len(starts) > left:
            chunk = chunk.iloc[: starts[left]]
        left -= min(len(starts), left)
        yield chunk


def build_sequences(chunks: Iterable[pd.DataFrame], out_dir: Path, max_objects: int | None = None) -> dict:
    """Write the ragged sequences of a stream of whole-object chunks to ``out_dir``; return stats.

    Memory stays at one chunk plus a few numbers per object. Nothing appears under ``out_dir``
    unless every chunk was written. ``max_objects``: only the first so many objects (a partial store, e.g. the
    pretraining sample of a kernel; its ``meta.json`` says so).
    """
    if max_objects is not None:
        chunks = first_objects(chunks, max_objects)
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.with_name(f".{out_dir.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    ids, lengths, scales = [], [], []
    rows = 0
    started = time.perf_counter()
    try:
        with open(tmp / "values.npy", "wb") as fh:
            fh.write(_npy_header((0, N_FEATURES)))
            for chunk in chunks:
                oid, offsets, values, log_scale = sequence_features(chunk)
                fh.write(values.tobytes())
                ids.append(oid)
                lengths.append(np.diff(offsets))
                scales.append(log_scale)
                rows += len(values)
            fh.seek(0)
            fh.write(_npy_header((rows, N_FEATURES)))
        object_ids = np.concatenate(ids) if ids else np.zeros(0, np.int64)
        if len(idsets.unique(object_ids)) != len(object_ids):
            raise InputError(f"{out_dir}: an object's rows are split across chunks; they must be contiguous.")
        np.save(tmp / "object_ids.npy", object_ids)
        np.save(tmp / "offsets.npy", np.concatenate([[0], np.cumsum(np.concatenate(lengths or [[]]))]).astype(np.int64))
        np.save(tmp / "log_scale.npy", np.concatenate(scales or [np.zeros(0, np.float32)]))
        seconds = time.perf_counter() - started
        nbytes = sum(p.stat().st_size for p in tmp.iterdir())
        stats = {
            "features": list(FEATURES),
            "n_objects": int(len(object_ids)),
            "n_rows": int(rows),
            "bytes": int(nbytes),
            "bytes_per_million_rows": nbytes / max(rows, 1) * 1e6,
            "seconds": seconds,
            "rows_per_second": rows / max(seconds, 1e-9),
            "max_objects": max_objects,
        }
        (tmp / "meta.json").write_text(json.dumps(stats, indent=2) + "\n")
        (tmp / ".done").write_text("")
        if out_dir.exists():
            old = out_dir.with_name(f".{out_dir.name}.{os.getpid()}.old")
            os.replace(out_dir, old)
            shutil.rmtree(old)
        os.replace(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return stats


@dataclass(frozen=True)
class Sequences:
    """Ragged sequences of one split, ``values`` memory-mapped."""

    values: np.ndarray
    offsets: np.ndarray
    object_ids: np.ndarray
    log_scale: np.ndarray

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def __len__(self) -> int:
        return len(self.object_ids)

    def positions(self, object_ids: np.ndarray, where: str = "sequences") -> np.ndarray:
        """Index of each of ``object_ids`` in this store; InputError naming the first missing one."""
        wanted = np.asarray(object_ids).astype(np.int64)
        if len(self) == 0:
            bad, found = np.ones(len(wanted), bool), np.zeros(len(wanted), np.int64)
        else:
            order = np.argsort(self.object_ids)
            pos = np.searchsorted(self.object_ids[order], wanted).clip(0, len(order) - 1)
            found = order[pos]
            bad = self.object_ids[found] != wanted
        if np.any(bad):
            first = int(wanted[np.flatnonzero(bad)[0]])
            n_bad = int(np.sum(bad))
            raise InputError(f"{where}: object {first} has no sequence ({n_bad} missing); rerun `make sequences`.")
        return found

    def pad(
        self, index: np.ndarray, max_len: int = MAX_LEN, length: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Objects ``index`` zero-padded to ``length`` (default: their longest, capped at ``max_len``).

        Returns ``x`` (batch, length, 10) float32 and ``mask`` (batch, length) bool. Longer objects keep
        their first observations.
        """
        index = np.asarray(index)
        lens = np.minimum(self.lengths[index], max_len)
        if length is None:  # the batch's longest, rounded up so that few distinct shapes are compiled
            width = min(-(-int(lens.max(initial=1)) // PAD_QUANTUM) * PAD_QUANTUM, max(max_len, 1))
        else:
            width = int(length)
        lens = np.minimum(lens, width)
        mask = np.arange(width)[None, :] < lens[:, None]
        rows = (self.offsets[index][:, None] + np.arange(width)[None, :])[mask]
        x = np.zeros((len(index), width, N_FEATURES), np.float32)
        x[mask] = self.values[rows]
        return x, mask


def sequences_of(frame: pd.DataFrame) -> Sequences:
    """The sequences of light-curve rows held in memory (:func:`sequence_features`), e.g. of augmented copies."""
    object_ids, offsets, values, log_scale = sequence_features(frame)
    return Sequences(values=values, offsets=offsets, object_ids=object_ids, log_scale=log_scale)


def concat(first: Sequences, second: Sequences) -> Sequences:
    """One store in memory: the objects of ``first`` then those of ``second`` (positions of ``first`` unchanged)."""
    return Sequences(
        values=np.concatenate([np.asarray(first.values), np.asarray(second.values)]),
        offsets=np.concatenate([first.offsets[:-1], second.offsets + first.offsets[-1]]),
        object_ids=np.concatenate([first.object_ids, second.object_ids]),
        log_scale=np.concatenate([first.log_scale, second.log_scale]),
    )


def load_sequences(path: Path) -> Sequences:
    """Open what :func:`build_sequences` wrote (``values`` memory-mapped)."""
    path = Path(path)
    if not (path / ".done").exists():
        raise InputError(f"{path}: sequences not built (or built partly). Run `make sequences` first.")
    return Sequences(
        values=np.load(path / "values.npy", mmap_mode="r"),
        offsets=np.load(path / "offsets.npy"),
        object_ids=np.load(path / "object_ids.npy"),
        log_scale=np.load(path / "log_scale.npy"),
    )


def length_batches(
    lengths: np.ndarray, batch_size: int, max_len: int = MAX_LEN, rng: np.random.Generator | None = None
) -> list[np.ndarray]:
    """Split positions ``0..len(lengths)-1`` into batches of objects of similar length.

    Sorted by (capped) length; with ``rng`` the ties are broken at random and the batch order shuffled
    (training), without it the order is deterministic (prediction). Every position appears exactly once.
    """
    capped = np.minimum(np.asarray(lengths), max_len)
    tiebreak = rng.random(len(capped)) if rng is not None else np.arange(len(capped))
    order = np.lexsort((tiebreak, capped))
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if rng is not None:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def mixed_batches(
    lengths: np.ndarray, batch_size: int, rng: np.random.Generator, max_len: int = MAX_LEN,
    buckets: int = 1, mix: float = 0.0,
) -> list[np.ndarray]:
    """Training batches whose objects are mixed, so that batch normalisation sees representative batches.

    :func:`length_batches` sorts by length, and length tells the deep-drilling (DDF) objects from the wide (WFD)
    ones: most of its batches hold one kind only. Here the objects fall into ``buckets`` buckets by length
    (quantiles of the capped length, ties at random); a share ``mix`` of them is moved to a bucket drawn at random
    (shuffled across buckets); each bucket is shuffled (within) and cut into full batches, the buckets' remainders
    are pooled and cut likewise, and the batch order shuffled. ``buckets=1`` gives plain random batches. Every
    position appears exactly once, in ``ceil(n / batch_size)`` batches whatever the draw: Keras fixes the steps
    of every epoch from the first one's, so a count that varied would end some epochs early.
    """
    capped = np.minimum(np.asarray(lengths), max_len)
    n = len(capped)
    bucket = np.zeros(n, np.int64)
    if buckets > 1 and n:
        rank = np.empty(n, np.int64)
        rank[np.lexsort((rng.random(n), capped))] = np.arange(n)
        bucket = rank * buckets // n
        moved = rng.random(n) < mix
        bucket[moved] = rng.integers(0, buckets, int(moved.sum()))
    batches, rest = [], []
    for b in range(max(buckets, 1)):
        members = rng.permutation(np.flatnonzero(bucket == b))
        full = len(members) - len(members) % batch_size
        batches += [members[i : i + batch_size] for i in range(0, full, batch_size)]
        rest.append(members[full:])
    rest = rng.permutation(np.concatenate(rest)) if len(rest) > 1 else rest[0]  # one bucket: already shuffled
    batches += [rest[i : i + batch_size] for i in range(0, len(rest), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def iter_batches(
    seqs: Sequences, index: np.ndarray, batch_size: int, max_len: int = MAX_LEN, rng: np.random.Generator | None = None
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Yield ``(positions, x, mask)``: ``positions`` index into ``index``; ``x`` padded to the batch's longest."""
    index = np.asarray(index)
    for batch in length_batches(seqs.lengths[index], batch_size, max_len, rng):
        x, mask = seqs.pad(index[batch], max_len)
        yield batch, x, mask


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--split", choices=["train", "test", "both"], default="both")
    parser.add_argument("--force", action="store_true", help="rebuild even when up to date")
    parser.add_argument("--max-objects", type=int, default=None,
                        help="only the first N objects of each split (a sample to pretrain on; networks cannot "
                             "predict from a partial store)")


def _built_for(out: Path) -> int | None:
    """The ``max_objects`` a store was built with (None: every object)."""
    try:
        return json.loads((out / "meta.json").read_text()).get("max_objects")
    except (OSError, ValueError):
        return None


def run(args: argparse.Namespace, config: Config) -> int:
    from kit.lightcurves import iter_object_chunks

    splits = ["train", "test"] if args.split == "both" else [args.split]
    sources = {"train": config.train_lightcurves, "test": config.test_lightcurves}
    for split in splits:
        out, src = config.sequences_dir(split), sources[split]
        if not src.exists():
            raise InputError(f"{src}: light curves not found. Run `make simulate` or `make download`, or set DATA=.")
        if args.max_objects is not None and args.max_objects < 1:
            raise InputError(f"--max-objects {args.max_objects}: give at least 1 (or leave it out for all objects)")
        if not args.force and is_fresh([out / ".done"], [src]) and _built_for(out) == args.max_objects:
            print(f"{out}: up to date")
            continue
        stats = build_sequences(iter_object_chunks(src, config.chunk_rows), out, args.max_objects)
        print(
            f"{out}: {stats['n_objects']:,} objects, {stats['n_rows']:,} rows, "
            f"{stats['rows_per_second'] / 1e6:.2f} M rows/s, {stats['bytes_per_million_rows'] / 1e6:.1f} MB per M rows"
        )
    return 0
