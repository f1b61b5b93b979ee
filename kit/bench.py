"""`python -m kit bench`: time featurisation of a large simulated test set, against the public kernel.

A light-curve file of N rows (realistic size per row and rows per object, made fast with numpy,
no physics) is generated once under ``bench/`` with matching metadata. The kit's parallel
featurisation and the public kernel's reference (pandas ``read_csv`` in 5M-row chunks carrying
the last object over, then ``groupby().agg`` of the seed feature set) are timed at N and 2N rows,
with rows/s, objects/s and peak memory (this process and its children); each is run ``--repeat``
times, alternately, and its fastest run counts (every run's time is kept in ``results.json``). The
kit's featurisation runs once more with the metadata padded to the real test set's 3.5M rows, which
the parent and every worker hold whatever N is, so that its memory is measured at the real size.
Then the rest of the LightGBM path is timed on the same file: fold models trained once on a small
simulated competition (cached under ``bench/``) predict the features, class 99 is added, the
``.csv.gz`` is written and validated. Last, the ragged test sequences are built in one stream.

The GP stage (:mod:`kit.bench_gp`) times GP features on a file of ``--gp-rows`` rows at N and 2N, against
scikit-learn on a sample. The dmdt stage (:mod:`kit.bench_dmdt`) times the dmdt images of the CNN on a file of
``--dmdt-rows`` rows. ``--stages`` picks the stages (e.g. ``--stages dmdt``).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pyarrow as pa
import pyarrow.csv as pacsv

from kit import bench_dmdt, bench_gp, survey
from kit.config import Config
from kit.files import atomic_path, write_json

BENCH_DIR = Path("bench")
DEFAULT_ROWS = 20_000_000
#: Runs of each featurisation per size: this 2-core VM's timings vary by up to 1.5x run to run.
DEFAULT_REPEAT = 2
REAL_TEST_ROWS = survey.REAL_ROW_COUNTS[survey.TEST_LIGHTCURVES]
REAL_TEST_OBJECTS = survey.REAL_ROW_COUNTS[survey.TEST_METADATA]
#: Rows per object: WFD median 129 (97..156), DDF about 350; DDF objects are 1.5% of the test set's objects (as
#: in kit/simulate), which matters for the GP stage: a DDF object costs (350 / 129)^3, about 20 WFD objects.
WFD_ROWS, WFD_SPREAD, WFD_LIMITS = 129, 15, (97, 156)
DDF_ROWS, DDF_SHARE = 350, 0.015
#: Part of the bench folders' names: files of an older generator are made again, not reused.
SYNTHETIC_VERSION = 2
#: Passband shares of WFD observations (13, 11, 22, 20, 30, 33 per object).
BAND_SHARES = np.array([13, 11, 22, 20, 30, 33]) / 129
BAND_FLUX_ERR = np.array([10.1, 2.5, 3.6, 5.9, 13.1, 28.1])
MJD_START, MJD_SPAN = 59580.0, 1090.0
GALACTIC_SHARE = 0.3
DETECTION_SNR = 5.0
WRITE_BLOCK_OBJECTS = 20_000
#: The small simulated competition whose LightGBM fold models the bench times (trained once).
MODEL_TRAIN_OBJECTS, MODEL_TEST_OBJECTS, MODEL_ROUNDS = 1000, 200, 300
KERNEL_CHUNK_ROWS = 5_000_000
MEMORY_POLL_S = 0.1
#: What `--stages` can time (default: all).
STAGES = ("lgbm", "gp", "dmdt")
_UNQUOTED = pacsv.WriteOptions(quoting_style="none", quoting_header="none")


# --- synthetic files ---------------------------------------------------------------------------
def _rows_per_object(rng: np.random.Generator, n: int) -> np.ndarray:
    rows = np.clip(rng.normal(WFD_ROWS, WFD_SPREAD, n).round(), *WFD_LIMITS).astype(np.int64)
    ddf = rng.random(n) < DDF_SHARE
    rows[ddf] = DDF_ROWS
    return rows


def _block(rng: np.random.Generator, ids: np.ndarray, rows: np.ndarray) -> pa.Table:
    n = int(rows.sum())
    obj = np.repeat(np.arange(ids.size), rows)
    offset = obj * 1e4  # sorting mjd + offset sorts the dates within each object
    mjd = np.round(np.sort(MJD_START + rng.random(n) * MJD_SPAN + offset) - offset, 4)
    band = rng.choice(survey.N_PASSBANDS, size=n, p=BAND_SHARES).astype(np.int8)
    err = (BAND_FLUX_ERR[band] * rng.uniform(0.7, 1.3, n)).astype(np.float32)
    amp = np.repeat(rng.lognormal(3, 1.5, ids.size), rows)
    peak = np.repeat(MJD_START + rng.random(ids.size) * MJD_SPAN, rows)
    signal = amp * np.exp(-0.5 * ((mjd - peak) / 30.0) ** 2)
    flux = np.round(signal + rng.normal(0, 1, n) * err, 6).astype(np.float32)
    detected = (np.abs(flux) / err > DETECTION_SNR).astype(np.int8)
    return pa.table({
        "object_id": pa.array(np.repeat(ids, rows).astype(np.int32)),
        "mjd": mjd, "passband": band, "flux": flux, "flux_err": np.round(err, 6), "detected": detected,
    })


def write_synthetic(folder: Path, n_rows: int, seed: int = 0, metadata_extra: int = 0) -> tuple[Path, Path]:
    """Write ``test_set.csv`` (about ``n_rows`` rows) and ``test_set_metadata.csv`` into ``folder``.

    Parameters
    ----------
    folder
        Output folder (created).
    n_rows
        Light-curve rows wanted; the last object makes it a little more.
    seed
        Random seed: the same seed gives the same files.
    metadata_extra
        Metadata rows of objects without light curves (to exercise the overlap warnings).

    Returns
    -------
    (Path, Path)
        The light-curve and metadata files.
    """
    folder = Path(folder)
    rng = np.random.default_rng(seed)
    lc_path, meta_path = folder / survey.TEST_LIGHTCURVES, folder / survey.TEST_METADATA
    written, next_id, all_ids, all_ddf = 0, 13, [], []
    with atomic_path(lc_path) as tmp:
        writer = None
        while written < n_rows:
            rows = _rows_per_object(rng, WRITE_BLOCK_OBJECTS)
            rows = rows[: int(np.searchsorted(np.cumsum(rows), n_rows - written)) + 1]
            ids = next_id + np.arange(rows.size) * 3
            next_id = int(ids[-1]) + 3
            table = _block(rng, ids, rows)
            writer = writer or pacsv.CSVWriter(str(tmp), table.schema, write_options=_UNQUOTED)
            writer.write_table(table)
            written += int(rows.sum())
            all_ids.append(ids)
            all_ddf.append(rows == DDF_ROWS)
        if writer is not None:
            writer.close()
    ids = np.concatenate(all_ids + [next_id + 3 * np.arange(metadata_extra)])
    ddf = np.concatenate(all_ddf + [np.zeros(metadata_extra, bool)])
    galactic = rng.random(ids.size) < GALACTIC_SHARE
    z = np.where(galactic, 0.0, rng.uniform(0.05, 1.5, ids.size)).round(4)
    meta = pd.DataFrame({
        "object_id": ids, "ra": rng.uniform(0, 360, ids.size).round(4), "decl": rng.uniform(-60, 5, ids.size).round(4),
        "gal_l": rng.uniform(0, 360, ids.size).round(4), "gal_b": rng.uniform(-90, 90, ids.size).round(4),
        "ddf": ddf.astype(int), "hostgal_specz": np.nan, "hostgal_photoz": z,
        "hostgal_photoz_err": np.where(galactic, 0.0, 0.1 * z).round(4),
        "distmod": np.where(galactic, np.nan, 5 * np.log10(np.maximum(z, 1e-3) * 4.3e9)).round(4),
        "mwebv": rng.uniform(0, 0.3, ids.size).round(3),
    })
    with atomic_path(meta_path) as tmp:
        meta.to_csv(tmp, index=False)
    return lc_path, meta_path


# --- measuring -----------------------------------------------------------------------------------
class PeakMemory:
    """Poll the memory of this process plus its children; peaks in bytes.

    ``rss``: the sum of resident set sizes, which counts a page shared by forked workers once per
    process (an upper bound). ``pss``: the sum of proportional set sizes, which splits shared pages
    between the processes that share them: the physical memory the process tree takes. PSS is
    read where the system reports it (Linux); elsewhere it is the RSS sum.
    """

    def __init__(self) -> None:
        self.rss = self.pss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _sample(self) -> tuple[int, int]:
        me = psutil.Process()
        rss = pss = 0
        for proc in [me, *me.children(recursive=True)]:
            try:
                info = proc.memory_full_info()
            except psutil.AccessDenied:
                info = proc.memory_info()
            except psutil.Error:
                continue  # the process ended between listing and reading
            rss += info.rss
            pss += getattr(info, "pss", info.rss)
        return rss, pss

    def _update(self) -> None:
        rss, pss = self._sample()
        self.rss, self.pss = max(self.rss, rss), max(self.pss, pss)

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._update()
            self._stop.wait(MEMORY_POLL_S)

    def __enter__(self) -> PeakMemory:
        self._update()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._update()


def timed(stage: str, rows: int, fn: Callable[[], int]) -> dict:
    """Run ``fn`` (returning the number of objects) and measure time and peak memory."""
    with PeakMemory() as memory:
        started = time.perf_counter()
        objects = fn()
        seconds = time.perf_counter() - started
    return {
        "stage": stage, "rows": rows, "objects": objects, "seconds": seconds,
        "rows_per_s": rows / seconds, "objects_per_s": objects / seconds,
        "peak_pss_mb": memory.pss / 2**20, "peak_rss_mb": memory.rss / 2**20,
    }


def kernel_reference(lc_path: Path) -> int:
    """The public kernel's featurisation: chunked ``read_csv``, last object carried over, groupby-agg."""
    aggs = {
        "mjd": ["min", "max", "size"],
        "passband": ["min", "max", "mean", "median", "std"],
        "flux": ["min", "max", "mean", "median", "std", "skew"],
        "flux_err": ["min", "max", "mean", "median", "std", "skew"],
        "detected": ["mean"],
        "flux_ratio_sq": ["sum", "skew"],
        "flux_by_flux_ratio_sq": ["sum", "skew"],
    }
    n_objects, remain = 0, None
    for chunk in pd.read_csv(lc_path, chunksize=KERNEL_CHUNK_ROWS):
        last = chunk["object_id"].iloc[-1]
        if remain is not None:
            chunk = pd.concat([remain, chunk], ignore_index=True)
        remain = chunk[chunk["object_id"] == last]
        n_objects += _kernel_agg(chunk[chunk["object_id"] != last], aggs)
    if remain is not None:
        n_objects += _kernel_agg(remain, aggs)
    return n_objects


def _kernel_agg(df: pd.DataFrame, aggs: dict) -> int:
    df = df.assign(flux_ratio_sq=np.power(df["flux"] / df["flux_err"], 2.0))
    df = df.assign(flux_by_flux_ratio_sq=df["flux"] * df["flux_ratio_sq"])
    return len(df.groupby("object_id").agg(aggs))


def bench_models(config: Config, bench_dir: Path, n_train: int = MODEL_TRAIN_OBJECTS) -> Path:
    """LightGBM fold models trained (once) on a small simulated competition; their folder."""
    from kit import featurize, lgbm
    from kit.simulate import simulate

    cfg = config.with_(data_dir=bench_dir / "sim-models", build_root=bench_dir / "build",
                       models_root=bench_dir / "models")
    if not (cfg.model_dir(lgbm.MODEL) / "features.json").exists():
        simulate(cfg.data_dir, n_train=n_train, n_test=MODEL_TEST_OBJECTS, seed=config.seed, progress=False)
        featurize.build_train(cfg)
        lgbm.train(cfg, lgbm.LGBMSettings(max_rounds=MODEL_ROUNDS))
    return cfg.model_dir(lgbm.MODEL)


def bench_rows(
    n_rows: int,
    config: Config,
    bench_dir: Path,
    model_objects: int = MODEL_TRAIN_OBJECTS,
    repeat: int = 1,
    metadata_rows: int = REAL_TEST_OBJECTS,
) -> list[dict]:
    """Generate (once) and time one file of ``n_rows`` rows, stage by stage.

    The kit's featurisation and the reference are each run ``repeat`` times, alternately, and the
    fastest run of each is kept. The featurisation is also timed with the metadata padded to
    ``metadata_rows`` rows, for the memory it takes at the real test set's size.
    """
    import shutil

    from kit import featurize, predict, submission, validate

    folder = synthetic_folder(bench_dir, n_rows)
    lc_path = folder / survey.TEST_LIGHTCURVES
    cfg = config.with_(data_dir=folder, build_root=bench_dir / "build")
    out = cfg.features_path("test")

    def kit_features() -> int:
        featurize.build_test(cfg, force=True)
        return int(pd.read_parquet(out, columns=[survey.OBJECT_ID]).shape[0])

    kit_runs, kernel_runs = [], []
    for _ in range(max(1, repeat)):  # alternated, so that a slow spell of the machine hits both
        kit_runs.append(timed(f"kit features ({cfg.workers} workers)", 0, kit_features))
        kernel_runs.append(timed("public kernel (pandas)", 0, lambda: kernel_reference(lc_path)))
    actual_rows = int(pd.read_parquet(out, columns=["n_obs"])["n_obs"].sum())
    kit, kernel = (_fastest(runs, actual_rows, lc_path.stat().st_size) for runs in (kit_runs, kernel_runs))
    kit["speedup_vs_kernel"] = kernel["seconds"] / kit["seconds"]
    # The real metadata has 3.5M rows whatever N is, and the parent and every worker hold it.
    full = cfg.with_(data_dir=_padded_metadata_folder(folder, metadata_rows), build_root=bench_dir / "build-meta")
    full_meta = timed(f"kit features, {metadata_rows:,}-row metadata", actual_rows,
                      lambda: featurize.build_test(full, force=True) and kit["objects"])

    shutil.copytree(bench_models(config, bench_dir, model_objects), cfg.model_dir("lgbm"), dirs_exist_ok=True)
    n_objects = kit["objects"]
    stages = [
        timed("fold models predict", actual_rows, lambda: len(predict.predict(cfg, "lgbm")[0])),
        timed("class 99 + write .csv.gz", actual_rows, lambda: _written(submission.make_submission(cfg, "lgbm"))),
        timed("validate .csv.gz", actual_rows,
              lambda: validate.check_submission(cfg.submission_path("lgbm"), cfg.test_metadata)),
    ]
    for r in stages:
        r["objects_per_s"] = n_objects / r["seconds"]
        r["objects"] = n_objects
    path_s = kit["seconds"] + sum(r["seconds"] for r in stages)
    total = {"stage": "LightGBM path, CSV to validated file", "rows": actual_rows, "objects": n_objects,
             "seconds": path_s, "rows_per_s": actual_rows / path_s, "objects_per_s": n_objects / path_s,
             "peak_pss_mb": max(r["peak_pss_mb"] for r in [kit, *stages]),
             "peak_rss_mb": max(r["peak_rss_mb"] for r in [kit, *stages])}
    stats: dict = {}
    sequences = timed("sequences (ragged, streamed)", actual_rows, lambda: _sequences(cfg, stats))
    sequences["mb_per_million_rows"] = stats["bytes_per_million_rows"] / 1e6
    return [kit, kernel, full_meta, *stages, total, sequences]


def synthetic_folder(bench_dir: Path, n_rows: int) -> Path:
    """The bench's folder of a simulated test set of ``n_rows`` rows, written first if missing."""
    folder = Path(bench_dir) / f"rows-{n_rows}-v{SYNTHETIC_VERSION}"
    if not (folder / survey.TEST_LIGHTCURVES).exists() or not (folder / survey.TEST_METADATA).exists():
        write_synthetic(folder, n_rows)
    return folder


def _padded_metadata_folder(folder: Path, rows: int) -> Path:
    """A sibling of ``folder``: its light curves, with metadata padded to ``rows`` rows."""
    out = folder.with_name(f"{folder.name}-meta{rows}")
    lc, meta_path = out / survey.TEST_LIGHTCURVES, out / survey.TEST_METADATA
    if meta_path.exists():
        return out
    out.mkdir(parents=True, exist_ok=True)
    if not lc.exists():
        lc.symlink_to((folder / survey.TEST_LIGHTCURVES).resolve())
    meta = pd.read_csv(folder / survey.TEST_METADATA)
    extra = meta.sample(max(0, rows - len(meta)), replace=True, random_state=0)
    extra[survey.OBJECT_ID] = int(meta[survey.OBJECT_ID].max()) + 3 * (1 + np.arange(len(extra)))
    with atomic_path(meta_path) as tmp:
        pd.concat([meta, extra]).to_csv(tmp, index=False)
    return out


def _sequences(cfg: Config, stats: dict) -> int:
    """Build the test sequences in one streamed pass, filling ``stats``; the number of objects."""
    from kit.lightcurves import iter_object_chunks
    from kit.sequences import build_sequences

    stats.update(build_sequences(iter_object_chunks(cfg.test_lightcurves, cfg.chunk_rows), cfg.sequences_dir("test")))
    return stats["n_objects"]


def _fastest(runs: list[dict], rows: int, n_bytes: int) -> dict:
    """The fastest of repeated runs (noise only ever adds time), with every run's seconds kept."""
    best = dict(min(runs, key=lambda r: r["seconds"]))
    best.update(rows=rows, rows_per_s=rows / best["seconds"], bytes=n_bytes, all_seconds=[r["seconds"] for r in runs],
                peak_pss_mb=max(r["peak_pss_mb"] for r in runs), peak_rss_mb=max(r["peak_rss_mb"] for r in runs))
    return best


def _written(path: Path) -> int:
    return int(pd.read_csv(path, usecols=[survey.OBJECT_ID]).shape[0])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `python -m kit bench`."""
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS, help="rows of the simulated test set")
    parser.add_argument("--skip-2n", action="store_true", help="time only N rows, not also 2N")
    parser.add_argument("--bench-dir", type=Path, default=BENCH_DIR, help="where files and results go")
    parser.add_argument("--repeat", type=int, default=DEFAULT_REPEAT,
                        help="runs of the kit's featurisation and of the reference per size (the fastest counts)")
    parser.add_argument("--metadata-rows", type=int, default=REAL_TEST_OBJECTS,
                        help="metadata rows of the extra featurisation run (the real test set's count)")
    parser.add_argument("--model-objects", type=int, default=MODEL_TRAIN_OBJECTS,
                        help="training objects of the simulated competition whose models are timed")
    parser.add_argument("--stages", type=_stages, default=STAGES,
                        help="comma-separated stages to time: lgbm (features to validated file), gp (GP features "
                             "against scikit-learn), dmdt (the CNN's dmdt images); default: all")
    parser.add_argument("--gp-rows", type=int, default=bench_gp.DEFAULT_ROWS,
                        help="rows of the GP stage's simulated test set (its N; 2N too unless --skip-2n)")
    parser.add_argument("--dmdt-rows", type=int, default=bench_dmdt.DEFAULT_ROWS,
                        help="rows of the dmdt stage's simulated test set")
    parser.add_argument("--gp-reference-objects", type=int, default=bench_gp.DEFAULT_REFERENCE_OBJECTS,
                        help="objects of the GP stage's file also fitted by scikit-learn, for speed and features")


def _stages(text: str) -> tuple[str, ...]:
    stages = tuple(s.strip() for s in text.split(",") if s.strip())
    unknown = sorted(set(stages) - set(STAGES))
    if unknown or not stages:
        raise argparse.ArgumentTypeError(f"unknown stage(s) {', '.join(unknown) or '(none)'}: choose from "
                                         f"{', '.join(STAGES)}")
    return stages


def _in_fresh_process(fn: Callable, *fn_args):
    """``fn(*fn_args)`` in a fresh process, so that one size's memory does not inflate the next's."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(fn, *fn_args).result()


def run(args: argparse.Namespace, config: Config) -> int:
    """Generate, time, print a table and write ``bench/results.json``."""
    stages = args.stages
    summary: dict = {"stages": list(stages), "real_test_rows": REAL_TEST_ROWS}
    if "lgbm" in stages:
        summary.update(_run_lgbm(args, config))
    if "gp" in stages:
        sizes = [args.gp_rows] if args.skip_2n else [args.gp_rows, 2 * args.gp_rows]
        per_size = [_in_fresh_process(bench_gp.bench_gp, n, args.bench_dir, config.workers,
                                      args.gp_reference_objects if i == 0 else 0) for i, n in enumerate(sizes)]
        summary["gp"] = bench_gp.summarise(per_size, REAL_TEST_OBJECTS)
        bench_gp.print_summary(summary["gp"])
    if "dmdt" in stages:
        summary["dmdt"] = _in_fresh_process(bench_dmdt.bench_dmdt, args.dmdt_rows, args.bench_dir, config.workers,
                                            REAL_TEST_OBJECTS)
        bench_dmdt.print_summary(summary["dmdt"])
    write_json(args.bench_dir / "results.json", json.loads(json.dumps(summary, default=float)))
    return 0


def _run_lgbm(args: argparse.Namespace, config: Config) -> dict:
    """The LightGBM path at N and 2N rows: printed, and its part of ``results.json``."""
    sizes = [args.rows] if args.skip_2n else [args.rows, 2 * args.rows]
    results = []
    for n in sizes:
        results += _in_fresh_process(bench_rows, n, config, args.bench_dir, args.model_objects, args.repeat,
                                     args.metadata_rows)
    kit_runs = [r for r in results if r["stage"].startswith("kit features (")]
    paths = [r for r in results if r["stage"].startswith("LightGBM path")]
    seqs = [r for r in results if r["stage"].startswith("sequences")]
    summary = {
        "results": results,
        "extrapolated_full_test_s": kit_runs[-1]["seconds"] / kit_runs[-1]["rows"] * REAL_TEST_ROWS,
        "extrapolated_full_path_s": paths[-1]["seconds"] / paths[-1]["rows"] * REAL_TEST_ROWS,
        "peak_pss_mb": max(r["peak_pss_mb"] for r in results if not r["stage"].startswith("public")),
        "peak_rss_mb": max(r["peak_rss_mb"] for r in results if not r["stage"].startswith("public")),
    }
    print(f"{'stage':38} {'rows':>11} {'s':>7} {'rows/s':>11} {'obj/s':>9} {'PSS MB':>7} {'RSS MB':>7} {'speed-up':>8}")
    for r in results:
        speed = f"{r['speedup_vs_kernel']:.1f}x" if "speedup_vs_kernel" in r else ""
        print(
            f"{r['stage']:38} {r['rows']:>11,} {r['seconds']:>7.2f} {r['rows_per_s']:>11,.0f} "
            f"{r['objects_per_s']:>9,.0f} {r['peak_pss_mb']:>7,.0f} {r['peak_rss_mb']:>7,.0f} {speed:>8}"
        )
    print("peak memory of this process and its workers: PSS sum (shared pages split), RSS sum (counted per process)")
    print(f"extrapolated to the real {REAL_TEST_ROWS:,} rows: featurisation "
          f"{summary['extrapolated_full_test_s'] / 60:.1f} min, whole LightGBM path "
          f"{summary['extrapolated_full_path_s'] / 60:.1f} min; peak memory {summary['peak_pss_mb']:,.0f} MB PSS "
          f"({summary['peak_rss_mb']:,.0f} MB RSS)")
    print(f"sequences on disk: {seqs[-1]['mb_per_million_rows']:.1f} MB per million rows")
    return summary
