"""The GP stage of `python -m kit bench`: GP features of the bench's simulated test set, against scikit-learn.

The stage streams the file in chunks of whole objects (:data:`CHUNK_ROWS`) to the workers, each of which
builds :func:`kit.gpfeatures.build_gp_features`; it is timed with its peak memory (this process and its
workers) at N and 2N rows, so objects/s per core, the extrapolation to the real test set and whether
memory stays flat come from the same run. At N, a random sample of its objects is also fitted the usual
way, one scikit-learn ``GaussianProcessRegressor`` per object with the same kernel
(``ConstantKernel * Matern(nu=1.5)`` over time and a fixed 6,000 Å wavelength scale, the points' noise
variances as ``alpha``, L-BFGS-B from a 20-day start) on the points the kit's fit sees
(:func:`kit.gp._prepare`), one thread, timed per object; the same sample is fitted by the kit on one
core. The kit's likelihoods are compared with the reference's, and the GP features made from the
reference's hyperparameters (:func:`kit.gp.fit` with ``time_scale=`` and ``amplitude=``) with the kit's,
as median and 90th-percentile relative differences per feature group.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from kit import survey

#: Light-curve rows of the GP stage's file at N (about 15,500 objects).
DEFAULT_ROWS = 2_000_000
#: Rows per streamed chunk sent to a worker (about 775 objects, a few seconds of work each).
CHUNK_ROWS = 100_000
#: Objects of the scikit-learn reference sample.
DEFAULT_REFERENCE_OBJECTS = 150
#: Start of the reference's time scale (days), inside the kit's bounds.
REFERENCE_START_D = 20.0
#: Cores the extrapolation to the real test set assumes.
EXTRAPOLATION_CORES = 2
#: Feature groups of the comparison, by name: the first pattern a feature's name contains wins.
FEATURE_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("hyperparameters", ("gp_time_scale", "gp_amplitude", "gp_loglik")),
    ("raw points", ("snr", "coverage_")),
    ("colours", ("gp_colour_",)),
    ("uncertainty", ("gp_peak_rel_std",)),
    ("widths, rise and fall", ("gp_width_", "gp_rise_", "gp_fall_")),
    ("per band at peak", ("gp_flux_at_peak_", "gp_share_at_peak_", "gp_max_", "gp_dt_max_")),
    ("peak and minimum", ("gp_peak", "gp_min", "gp_n_peaks", "gp_log_lum_peak")),
)


def feature_group(name: str) -> str:
    """The group of a GP feature (see :data:`FEATURE_GROUPS`), "other" if none."""
    return next((g for g, keys in FEATURE_GROUPS if any(k in name for k in keys)), "other")


def relative_differences(kit: pd.DataFrame, ref: pd.DataFrame) -> dict[str, dict]:
    """Per feature group: how far the kit's features are from the reference's, object by object.

    A value's relative difference is ``|kit - ref| / max(|kit|, |ref|)`` (0 when equal, at most 2); values
    NaN in both are left out, NaN in one only are counted in ``nan_mismatch_share``.

    Returns
    -------
    dict
        Group -> ``features``, ``values``, ``median_rel_diff``, ``p90_rel_diff``, ``nan_mismatch_share``.
    """
    a = kit.to_numpy(np.float64)
    b = ref.loc[kit.index, kit.columns].to_numpy(np.float64)
    both = np.isfinite(a) & np.isfinite(b)
    with np.errstate(invalid="ignore", divide="ignore"):
        diff = np.where(a == b, 0.0, np.abs(a - b) / np.maximum(np.abs(a), np.abs(b)))
    groups = np.array([feature_group(c) for c in kit.columns])
    out = {}
    for g in dict.fromkeys(groups):
        cols = groups == g
        d = diff[:, cols][both[:, cols]]
        mismatch = np.isnan(a[:, cols]) != np.isnan(b[:, cols])
        out[g] = {
            "features": int(cols.sum()), "values": int(d.size),
            "median_rel_diff": float(np.median(d)) if d.size else math.nan,
            "p90_rel_diff": float(np.quantile(d, 0.9)) if d.size else math.nan,
            "nan_mismatch_share": float(mismatch.mean()),
        }
    return out


def _features_part(task: dict) -> pd.DataFrame:
    from kit.gpfeatures import build_gp_features

    return build_gp_features(task["frame"], task["metadata"])


def gp_stage(lc_path: Path, metadata: pd.DataFrame, workers: int, chunk_rows: int = CHUNK_ROWS,
             stats: dict | None = None) -> pd.DataFrame:
    """GP features of a whole light-curve file, streamed in chunks of whole objects to ``workers``.

    ``stats``, if given, receives the number of light-curve ``rows`` read.
    """
    from kit import lightcurves, parallel

    stats = {} if stats is None else stats
    stats["rows"] = 0

    def tasks():
        for frame in lightcurves.iter_object_chunks(lc_path, chunk_rows):
            stats["rows"] += len(frame)
            ids = frame[survey.OBJECT_ID].unique()
            yield {"frame": frame, "metadata": metadata[metadata[survey.OBJECT_ID].isin(ids)]}

    parts = list(parallel.map_unordered(_features_part, tasks(), workers))
    return pd.concat(parts).sort_index() if parts else pd.DataFrame()


def _sklearn_fit(t: np.ndarray, w: np.ndarray, y: np.ndarray, v: np.ndarray) -> tuple[float, float, float]:
    """(time scale, amplitude, log likelihood) of scikit-learn's fit of the kit's kernel to prepared points."""
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import ConstantKernel, Matern

    from kit import gp

    lw = gp.WAVELENGTH_SCALE_A
    kernel = ConstantKernel(1.0, (1e-6, 1e6)) * Matern(
        length_scale=[REFERENCE_START_D, lw], length_scale_bounds=[list(gp.TIME_SCALE_BOUNDS_D), [lw, lw]], nu=1.5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the fixed wavelength scale sits on its bounds; convergence notes
        m = GaussianProcessRegressor(kernel, alpha=v).fit(np.c_[t, w], y)
    return float(m.kernel_.k2.length_scale[0]), math.sqrt(m.kernel_.k1.constant_value), \
        float(m.log_marginal_likelihood_value_)


def reference_comparison(lc: pd.DataFrame, metadata: pd.DataFrame, n_objects: int, seed: int = 0) -> dict:
    """Fit a random sample of ``n_objects`` objects with the kit and with scikit-learn (one core each)."""
    from threadpoolctl import threadpool_limits

    from kit import gp, gpfeatures, idsets

    rng = np.random.default_rng(seed)
    all_ids = lc[survey.OBJECT_ID].unique()
    ids = np.sort(rng.choice(all_ids, min(n_objects, all_ids.size), replace=False))
    sample = lc[lc[survey.OBJECT_ID].isin(ids)].sort_values(survey.OBJECT_ID, kind="stable")
    col = {k: sample[k].to_numpy(np.int64 if k == "passband" else np.float64)
           for k in ("mjd", "passband", "flux", "flux_err")}
    starts = np.append(idsets.run_starts(sample[survey.OBJECT_ID].to_numpy()), len(sample)).astype(np.int64)
    args = (starts, col["mjd"], col["passband"], col["flux"], col["flux_err"])

    gp.fit(starts[:2], *args[1:])  # compiled for these array types before the timing
    started = time.perf_counter()
    kit_fit = gp.fit(*args)
    kit_s = time.perf_counter() - started
    t, w, y, v, pstarts, _, scale = gp._prepare(*args, np.asarray(survey.PASSBAND_WAVELENGTH_A))  # what fit sees
    ref, seconds = np.full((ids.size, 3), np.nan), []
    with threadpool_limits(limits=1):
        for o in range(ids.size):
            a, b = pstarts[o], pstarts[o + 1]
            if b > a:
                started = time.perf_counter()
                ref[o] = _sklearn_fit(t[a:b], w[a:b], y[a:b], v[a:b])
                seconds.append(time.perf_counter() - started)
    ref_fit = gp.fit(*args, time_scale=ref[:, 0], amplitude=ref[:, 1] * scale)
    kit_features = gpfeatures.gp_features(kit_fit, starts, col, ids, metadata)
    ref_features = gpfeatures.gp_features(ref_fit, starts, col, ids, metadata)

    gap = kit_fit.log_likelihood - ref[:, 2]
    ok = np.isfinite(gap)
    # objects with a signal: the kit's GP amplitude above the median error of their points
    noise = np.array([np.sqrt(np.median(v[a:b])) if b > a else np.nan for a, b in zip(pstarts[:-1], pstarts[1:],
                                                                                       strict=True)])
    signal = kit_fit.amplitude / scale > noise
    ddf = metadata.set_index(survey.OBJECT_ID)["ddf"].reindex(ids).to_numpy() == 1
    ref_s = float(np.sum(seconds))
    return {
        "objects": int(ids.size), "ddf_objects": int(ddf.sum()),
        "points_median": float(np.median(np.diff(pstarts))),
        "kit_s_per_object": kit_s / ids.size, "reference_s_per_object": ref_s / max(len(seconds), 1),
        "reference_s_per_object_median": float(np.median(seconds)) if seconds else math.nan,
        "speedup_per_core": (ref_s / max(len(seconds), 1)) / (kit_s / ids.size),
        "loglik_gap_median": float(np.median(gap[ok])), "loglik_gap_p10": float(np.quantile(gap[ok], 0.1)),
        "loglik_gap_min": float(gap[ok].min()), "share_within_half_nat": float(np.mean(gap[ok] > -0.5)),
        "share_kit_higher_by_half_nat": float(np.mean(gap[ok] > 0.5)),
        "time_scale_ratio_median": float(np.median(kit_fit.time_scale[ok] / ref[ok, 0])),
        "amplitude_ratio_median": float(np.median(kit_fit.amplitude[ok] / (ref[ok, 1] * scale[ok]))),
        "features": relative_differences(kit_features, ref_features),
        "signal_objects": int(signal.sum()),
        "features_signal_objects": relative_differences(kit_features[signal], ref_features) if signal.any() else {},
    }


def _warm_up(lc_path: Path, metadata: pd.DataFrame, lines: int = 1000) -> None:
    """Run the stage on the file's first lines, so that numba's compilation (or cache loading) of every
    kernel, for the exact array types the stage passes, is done before the timing (forked workers inherit it)."""
    import tempfile

    with open(lc_path) as f, tempfile.TemporaryDirectory() as tmp:
        head = Path(tmp) / lc_path.name
        head.write_text("".join(line for _, line in zip(range(lines), f, strict=False)))
        gp_stage(head, metadata, workers=1)


def bench_gp(n_rows: int, bench_dir: Path, workers: int, reference_objects: int = 0) -> dict:
    """Time the GP stage on the bench's file of ``n_rows`` rows (made if missing); with ``reference_objects``,
    compare a sample of its objects with scikit-learn.

    Returns ``{"run": ..., "reference": ...}`` (the reference only when asked for).
    """
    from kit import bench
    from kit.lightcurves import read_lightcurves

    folder = bench.synthetic_folder(bench_dir, n_rows)
    lc_path = folder / survey.TEST_LIGHTCURVES
    metadata = pd.read_csv(folder / survey.TEST_METADATA)
    _warm_up(lc_path, metadata)
    features: list[pd.DataFrame] = []
    stats: dict = {}

    def stage() -> int:
        features.append(gp_stage(lc_path, metadata, workers, stats=stats))
        return len(features[-1])

    run = bench.timed(f"GP features ({workers} workers)", 0, stage)
    cores = max(1, min(workers, os.cpu_count() or 1))
    ddf = metadata.set_index(survey.OBJECT_ID)["ddf"].reindex(features[-1].index).to_numpy() == 1
    run.update(workers=workers, cores=cores, objects_per_s_per_core=run["objects_per_s"] / cores,
               ddf_share=float(ddf.mean()), chunk_rows=CHUNK_ROWS)
    run.update(rows=stats["rows"], rows_per_s=stats["rows"] / run["seconds"])
    out = {"run": run}
    if reference_objects:
        out["reference"] = reference_comparison(read_lightcurves(lc_path), metadata, reference_objects)
    return out


def summarise(per_size: list[dict], real_objects: int) -> dict:
    """The GP part of ``results.json`` from :func:`bench_gp`'s results at N (and 2N)."""
    runs = [r["run"] for r in per_size]
    per_core = runs[-1]["objects_per_s_per_core"]
    out = {
        "runs": runs,
        "objects_per_s_per_core": per_core,
        "extrapolation_cores": EXTRAPOLATION_CORES,
        "real_test_objects": real_objects,
        "extrapolated_full_test_s": real_objects / (per_core * EXTRAPOLATION_CORES),
        "peak_pss_mb": max(r["peak_pss_mb"] for r in runs),
        "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
        "memory_2n_over_n": runs[-1]["peak_pss_mb"] / runs[0]["peak_pss_mb"] if len(runs) > 1 else None,
    }
    reference = next((r["reference"] for r in per_size if "reference" in r), None)
    if reference is not None:
        out["reference"] = reference
    return out


def print_summary(gp: dict) -> None:
    """The GP lines of the bench's printout."""
    print(f"{'stage':38} {'rows':>11} {'s':>7} {'rows/s':>11} {'obj/s':>9} {'PSS MB':>7} {'RSS MB':>7}")
    for r in gp["runs"]:
        print(f"{r['stage']:38} {r['rows']:>11,} {r['seconds']:>7.2f} {r['rows_per_s']:>11,.0f} "
              f"{r['objects_per_s']:>9,.1f} {r['peak_pss_mb']:>7,.0f} {r['peak_rss_mb']:>7,.0f}   "
              f"{r['objects']:,} objects, {r['ddf_share']:.1%} DDF, {r['objects_per_s_per_core']:.1f} obj/s/core")
    growth = gp["memory_2n_over_n"]
    print(f"GP stage: {gp['objects_per_s_per_core']:.1f} objects/s per core; the real test set's "
          f"{gp['real_test_objects']:,} objects on {gp['extrapolation_cores']} cores: "
          f"{gp['extrapolated_full_test_s'] / 3600:.2f} h; peak {gp['peak_pss_mb']:,.0f} MB PSS"
          + (f", 2N / N memory {growth:.2f}" if growth else ""))
    ref = gp.get("reference")
    if not ref:
        return
    print(f"GP reference (scikit-learn, same kernel and points, 1 core) on {ref['objects']} objects "
          f"({ref['ddf_objects']} DDF): {ref['reference_s_per_object'] * 1000:.0f} ms/object vs the kit's "
          f"{ref['kit_s_per_object'] * 1000:.1f} ms: {ref['speedup_per_core']:.0f}x per core")
    print(f"  kit log likelihood - reference: median {ref['loglik_gap_median']:+.2f}, 10% {ref['loglik_gap_p10']:+.2f},"
          f" worst {ref['loglik_gap_min']:+.2f} nats; within 0.5 nats: {ref['share_within_half_nat']:.0%}, "
          f"kit higher by 0.5+: {ref['share_kit_higher_by_half_nat']:.0%}")
    print(f"  features from the kit's GPs vs from the reference's hyperparameters, relative difference; all objects | "
          f"the {ref['signal_objects']} with GP amplitude > median point error")
    print(f"  {'feature group':24} {'n':>3} {'median':>8} {'90%':>8} {'NaN diff':>8} | {'median':>8} {'90%':>8}")
    for g, d in ref["features"].items():
        s = ref["features_signal_objects"].get(g, {})
        print(f"  {g:24} {d['features']:>3} {d['median_rel_diff']:>8.3g} {d['p90_rel_diff']:>8.3g} "
              f"{d['nan_mismatch_share']:>8.1%} | {s.get('median_rel_diff', math.nan):>8.3g} "
              f"{s.get('p90_rel_diff', math.nan):>8.3g}")
