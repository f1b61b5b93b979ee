"""The `features` stage: aggregate features of the training and test light curves.

Training features are built in one go (the file is small) and keep the label in ``target``.
Test features are built part by part, each part a run of whole objects written atomically under
``build/<name>/features_test.parts/``, so an interrupted run resumes where it stopped. Parts are
byte ranges that workers read themselves (uncompressed CSV) or streamed chunks (``.csv.gz``); they
run on local processes or on a Dask cluster (``--scheduler``) and the result is the same.

Each part's name carries a digest of the inputs and the split (``part-<key>-<index>.parquet``), so a
part left by a run with other settings is never mistaken for one of this run's; one run at a time
holds ``build/<name>/.features.lock``.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import importlib
import json
import logging
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from kit import data, idsets, lightcurves, parallel, survey
from kit.config import Config
from kit.errors import InputError
from kit.features import METADATA_FEATURES
from kit.files import PARQUET_OPTIONS, atomic_path, folder_lock, is_fresh, read_json, write_json, write_parquet

log = logging.getLogger(__name__)
PARTS_SUFFIX = ".parts"
MANIFEST = "manifest.json"
#: Name of the lock a `features` run holds on its build folder.
LOCK_NAME = "features"
N_EXAMPLES = data.N_EXAMPLES


#: Feature sets a build can make: name -> "module:function" with build_features' signature. 'aggregate' is
#: the public-kernel-style statistics (fast), 'gp' the Gaussian-process features (kit.gpfeatures, slower).
FEATURE_SETS: dict[str, str] = {"aggregate": "kit.features:build_features", "gp": "kit.gpfeatures:build_gp_features"}


def feature_builder(kind: str):
    """The function that builds feature set ``kind`` (imported on first use: the GP compiles with numba)."""
    if kind not in FEATURE_SETS:
        raise InputError(f"unknown feature set {kind!r}; choose from {', '.join(FEATURE_SETS)}")
    module, name = FEATURE_SETS[kind].split(":")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class PartTask:
    """One part of the test features: a byte range of the CSV, or an already read chunk."""

    index: int
    lightcurves: str
    metadata: str
    out: str
    start: int = 0
    end: int = 0
    frame: pd.DataFrame | None = None
    kind: str = "aggregate"


@dataclass(frozen=True)
class PartResult:
    index: int
    rows: int
    objects: int


def part_path(parts_dir: Path, key: str, index: int) -> Path:
    """Part ``index`` of the split identified by ``key`` (see :func:`manifest_key`)."""
    return Path(parts_dir) / f"part-{key}-{index:05d}.parquet"


def manifest_key(manifest: dict) -> str:
    """A short digest of the inputs and split that the parts are made from."""
    return hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()[:12]


@functools.lru_cache(maxsize=2)
def _metadata(path: str, mtime_ns: int) -> pd.DataFrame:
    """The test metadata that features use, sorted by object_id, read once per process.

    Keyed by modification time. The parent reads it before the workers start, so forked workers
    inherit it; the real file has 3.5M rows, so only the columns features need are kept.
    """
    frame = data.read_metadata(Path(path))[[survey.OBJECT_ID, *METADATA_FEATURES]]
    return frame.sort_values(survey.OBJECT_ID, kind="stable", ignore_index=True)


def featurize_part(task: PartTask) -> PartResult:
    """Read one part, build its features and write them atomically (runs in a worker)."""
    if task.frame is not None:
        lc = task.frame
    else:
        lc = lightcurves.read_byte_range(Path(task.lightcurves), task.start, task.end)
    meta = _metadata(task.metadata, Path(task.metadata).stat().st_mtime_ns)
    feats = feature_builder(task.kind)(lc, meta)
    write_parquet(Path(task.out), feats.reset_index())
    return PartResult(task.index, len(lc), len(feats))


def _build_chunk(task: tuple[str, pd.DataFrame, pd.DataFrame]) -> pd.DataFrame:
    kind, lc, meta = task
    return feature_builder(kind)(lc, meta)


def _build_in_chunks(kind: str, lc: pd.DataFrame, meta: pd.DataFrame, workers: int) -> pd.DataFrame:
    """Features of ``lc`` on ``workers`` processes, in chunks of whole objects (the same as in one piece)."""
    ids = lc[survey.OBJECT_ID].to_numpy()
    if workers <= 1 or not idsets.is_sorted(ids):
        return feature_builder(kind)(lc, meta)
    starts = idsets.run_starts(ids)
    cuts = [int(c) for c in starts[np.linspace(0, starts.size, 4 * workers + 1).astype(int)[1:-1]]]
    bounds = list(zip([0, *cuts], [*cuts, ids.size], strict=True))
    tasks = [(kind, lc.iloc[a:b], meta) for a, b in bounds if b > a]
    parts = list(parallel.map_unordered(_build_chunk, tasks, workers))
    return pd.concat(parts).sort_index(kind="stable")


# --- training ------------------------------------------------------------------------------
def build_train(config: Config, force: bool = False, kind: str = "aggregate") -> Path:
    """Write ``config.features_path('train', kind)``: features + ``target`` of every training object."""
    out = config.features_path("train", kind)
    inputs = [config.train_lightcurves, config.train_metadata]
    if not force and is_fresh([out], inputs):
        log.info("%s is up to date", out)
        return out
    meta = data.read_metadata(config.train_metadata, require_target=True)
    data.labels(meta, config.train_metadata)
    lc = lightcurves.read_lightcurves(config.train_lightcurves)
    feats = _build_in_chunks(kind, lc, meta, config.workers)
    meta_ids = meta[survey.OBJECT_ID].to_numpy()
    data.compare_ids(feats.index.to_numpy(), meta_ids, config.train_lightcurves, config.train_metadata, "train")
    target = meta.set_index(survey.OBJECT_ID)[survey.TARGET]
    feats = feats.loc[feats.index.isin(target.index)]
    feats[survey.TARGET] = target.reindex(feats.index).to_numpy().astype(survey.METADATA_DTYPES[survey.TARGET])
    write_parquet(out, feats.reset_index())
    log.info("wrote %s: %d objects, %d features", out, len(feats), feats.shape[1] - 1)
    return out


# --- test ------------------------------------------------------------------------------------
def _manifest(config: Config, ranges: list[tuple[int, int]] | None, kind: str) -> dict:
    def stamp(p: Path) -> dict:
        s = p.stat()
        return {"path": str(p.resolve()), "size": s.st_size, "mtime_ns": s.st_mtime_ns}

    return {
        "lightcurves": stamp(config.test_lightcurves),
        "metadata": stamp(config.test_metadata),
        "ranges": [list(r) for r in ranges] if ranges is not None else None,
        "chunk_rows": config.chunk_rows,
        "kind": kind,
    }


def _prepare_parts_dir(parts_dir: Path, manifest: dict, key: str, force: bool) -> None:
    """Keep only the finished parts made from the same inputs and split: their names carry ``key``.

    Anything else in the folder (parts of other settings, temporaries of a killed run) is the kit's
    own leftover and is removed; ``manifest.json`` says what the kept parts are made from.
    """
    parts_dir.mkdir(parents=True, exist_ok=True)
    ours = f"part-{key}-"
    stale = [p for p in parts_dir.glob("part-*.parquet") if force or not p.name.startswith(ours)]
    if stale:
        log.info("discarding %d stale part(s) in %s (inputs or split changed)", len(stale), parts_dir)
    for path in stale + list(parts_dir.glob(".part-*.tmp")):
        path.unlink(missing_ok=True)
    if not (parts_dir / MANIFEST).exists() or read_json(parts_dir / MANIFEST) != manifest:
        write_json(parts_dir / MANIFEST, manifest)


def _test_tasks(config: Config, parts_dir: Path, key: str, ranges, skipped: list[int], parts: list[Path],
                kind: str):
    """Tasks of the parts not finished yet; ``skipped`` gets the finished ones, ``parts`` every part's path."""
    common = {"lightcurves": str(config.test_lightcurves), "metadata": str(config.test_metadata)}
    inputs = [config.test_lightcurves, config.test_metadata]
    if ranges is not None:
        sources = ({"start": start, "end": end} for start, end in ranges)
    else:
        sources = ({"frame": c} for c in lightcurves.iter_object_chunks(config.test_lightcurves, config.chunk_rows))
    for i, source in enumerate(sources):
        out = part_path(parts_dir, key, i)
        parts.append(out)
        if is_fresh([out], inputs):
            skipped.append(i)
            continue
        yield PartTask(i, out=str(out), kind=kind, **source, **common)


def build_test(config: Config, force: bool = False, kind: str = "aggregate") -> Path:
    """Write ``config.features_path('test', kind)`` from resumable per-part features."""
    out = config.features_path("test", kind)
    lc_path, meta_path = config.test_lightcurves, config.test_metadata
    if not force and is_fresh([out], [lc_path, meta_path]):
        log.info("%s is up to date", out)
        return out
    lightcurves.read_header(lc_path)
    with folder_lock(out.parent, LOCK_NAME if kind == "aggregate" else f"{kind}-{LOCK_NAME}"):
        ids, skipped = _build_test_parts(config, out, force, kind)
    if skipped:
        log.info("resumed: %d finished part(s) kept from an earlier run", len(skipped))
    log.info("wrote %s: %d objects", out, ids.size)
    return out


def _build_test_parts(config: Config, out: Path, force: bool, kind: str) -> tuple[np.ndarray, list[int]]:
    """Make the missing parts and join them into ``out`` (under the build folder's lock)."""
    lc_path, meta_path = config.test_lightcurves, config.test_metadata
    meta = _metadata(str(meta_path), meta_path.stat().st_mtime_ns)
    ranges = None
    if not lightcurves.is_compressed(lc_path):
        rows_estimate = lc_path.stat().st_size / lightcurves.BYTES_PER_ROW
        n_parts = max(config.workers, math.ceil(rows_estimate / max(1, config.chunk_rows)))
        ranges = lightcurves.object_byte_ranges(lc_path, n_parts)
    parts_dir = out.with_name(out.stem + PARTS_SUFFIX)
    manifest = _manifest(config, ranges, kind)
    key = manifest_key(manifest)
    _prepare_parts_dir(parts_dir, manifest, key, force)
    skipped: list[int] = []
    parts: list[Path] = []
    total = lc_path.stat().st_size / lightcurves.BYTES_PER_ROW if ranges is not None else None
    with (
        atomic_path(out) as tmp,
        tqdm(total=total, unit="rows", unit_scale=True, desc=f"{kind} features test", file=sys.stderr,
             smoothing=0.1) as bar,
    ):
        join = _PartJoin(parts_dir, key, tmp)
        tasks = _test_tasks(config, parts_dir, key, ranges, skipped, parts, kind)
        for result in parallel.map_unordered(featurize_part, tasks, config.workers, config.scheduler):
            bar.update(result.rows)
            join.finished(result.index)
            join.finished(*skipped)
        join.finished(*skipped)
        ids = join.close(parts, lc_path)
        data.compare_ids(ids, meta[survey.OBJECT_ID].to_numpy(), lc_path, meta_path, "test")
    return ids, skipped


class _PartJoin:
    """Appends finished parts to the joined file in part order, while later parts are still running.

    Parts of a file in object order join by plain appending, overlapped with the featurisation;
    otherwise :meth:`close` joins and sorts them, and an object found in two parts is an error (its
    rows were not contiguous).
    """

    def __init__(self, parts_dir: Path, key: str, tmp: Path) -> None:
        self.parts_dir, self.key, self.tmp = parts_dir, key, tmp
        self.writer: pq.ParquetWriter | None = None
        self.done: set[int] = set()
        self.next = 0
        self.ids: list[np.ndarray] = []
        self.last_id: int | None = None
        self.ascending = True

    def finished(self, *indices: int) -> None:
        """Note finished parts and append every part that is now next in order."""
        self.done.update(indices)
        while self.ascending and self.next in self.done:
            self._append(pq.read_table(part_path(self.parts_dir, self.key, self.next)))
            self.next += 1

    def _append(self, table: pa.Table) -> None:
        ids = table.column(survey.OBJECT_ID).to_numpy()
        if ids.size and self.last_id is not None and ids[0] <= self.last_id:
            self.ascending = False
            return
        self.ids.append(ids)
        self.last_id = int(ids[-1]) if ids.size else self.last_id
        self.writer = self.writer or pq.ParquetWriter(self.tmp, table.schema, **PARQUET_OPTIONS)
        self.writer.write_table(table)

    def close(self, paths: list[Path], lc_path: Path) -> np.ndarray:
        """Finish the joined file from all of ``paths``; its object ids."""
        if self.writer is not None:
            self.writer.close()
        if self.ascending and self.next == len(paths):
            if self.writer is None:
                pq.write_table(pa.table({survey.OBJECT_ID: pa.array([], pa.int32())}), self.tmp)
            return np.concatenate(self.ids) if self.ids else np.empty(0, dtype=np.int32)
        frame = pd.concat([pd.read_parquet(p) for p in paths], ignore_index=True)
        _check_unique_objects(frame[survey.OBJECT_ID].to_numpy(), lc_path)
        frame = frame.sort_values(survey.OBJECT_ID, kind="stable")
        frame.to_parquet(self.tmp, index=False, **PARQUET_OPTIONS)
        return frame[survey.OBJECT_ID].to_numpy()


def _check_unique_objects(ids: np.ndarray, lc_path: Path) -> None:
    unique, counts = idsets.unique_counts(ids)
    if (counts > 1).any():
        dup = unique[counts > 1]
        raise InputError(
            f"{lc_path}: the rows of {dup.size} object(s) are not contiguous (e.g. {dup[:N_EXAMPLES].tolist()} "
            "appear in separate parts of the file). Sort the file by object_id, keeping each object's rows "
            "together."
        )


MAKE_TARGET = {"aggregate": "features", "gp": "gp-features"}


def load_train_features(config: Config, kinds: tuple[str, ...] = ("aggregate",), split: str = "train") -> pd.DataFrame:
    """The training features of ``kinds`` side by side, with their labels, or a clear error saying how to build them.

    ``split='augment'`` loads the augmented copies instead (their ``parent_id`` too).
    """
    frames = []
    for kind in kinds:
        path = config.features_path(split, kind)
        if not path.exists():
            how = "make augment" if split == "augment" else f"make {MAKE_TARGET.get(kind, 'features')}"
            raise InputError(f"{path}: {kind} features of {split} not built yet. Run `{how}` first.")
        frame = pd.read_parquet(path).set_index(survey.OBJECT_ID)
        if frames:
            frame = frame.drop(columns=[c for c in frame.columns if c in frames[0].columns])
        frames.append(frame)
    frame = frames[0].join(frames[1:], how="inner") if len(frames) > 1 else frames[0]
    if survey.TARGET not in frame:
        raise InputError(f"{config.features_path(split)}: no '{survey.TARGET}' column; rebuild it (make features).")
    return frame.reset_index()


def read_features(path: Path) -> pd.DataFrame:
    """Read a features parquet file, indexed by object_id."""
    return pd.read_parquet(path).set_index(survey.OBJECT_ID)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `python -m kit features`."""
    parser.add_argument("--split", choices=("train", "test", "both"), default="both", help="which features to build")
    parser.add_argument("--force", action="store_true", help="rebuild even when outputs are up to date")
    parser.add_argument("--set", dest="kind", choices=tuple(FEATURE_SETS), default="aggregate",
                        help="aggregate statistics, or Gaussian-process features (default %(default)s)")


def run(args: argparse.Namespace, config: Config) -> int:
    """Build the training and/or test features."""
    if args.split in ("train", "both"):
        build_train(config, args.force, args.kind)
    if args.split in ("test", "both"):
        build_test(config, args.force, args.kind)
    return 0
