"""The dmdt stage of `python -m kit bench`: how fast dmdt images (:mod:`kit.dmdt`) are built from sequences.

The bench's simulated test set of ``--dmdt-rows`` rows (:func:`kit.bench.synthetic_folder`: 129 rows per
wide-survey object, 1.5% deep-drilling objects of 350 rows, so the pairs per object are the real test set's) is
turned into ragged sequences in memory (not timed), then every object's images are built in batches of
:data:`BATCH` objects on one core, the fastest of :data:`REPEAT` passes counting, and once more by ``workers``
threads at once (the compiled builder releases the GIL). Reported: objects/s per core, the images' bytes per
object (in memory, per batch: nothing is stored), and the time for the real test set's 3,492,890 objects on
:data:`EXTRAPOLATION_CORES` cores.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from kit import survey

#: Light-curve rows of the stage's file (about 38,000 objects).
DEFAULT_ROWS = 5_000_000
#: Objects per batch, as a network's prediction batch would build them.
BATCH = 256
REPEAT = 3
EXTRAPOLATION_CORES = 2


def _build_all(values: np.ndarray, offsets: np.ndarray, index: np.ndarray) -> None:
    from kit.dmdt import dmdt_images

    for i in range(0, len(index), BATCH):
        dmdt_images(values, offsets, index[i : i + BATCH])


def bench_dmdt(n_rows: int, bench_dir: Path, workers: int, real_objects: int) -> dict:
    """Time dmdt images of the bench's file of ``n_rows`` rows (made if missing); the ``dmdt`` part of results.json."""
    from kit import bench
    from kit.dmdt import BYTES_PER_OBJECT, dmdt_images
    from kit.lightcurves import iter_object_chunks
    from kit.sequences import sequence_features

    lc_path = bench.synthetic_folder(bench_dir, n_rows) / survey.TEST_LIGHTCURVES
    parts = [sequence_features(chunk) for chunk in iter_object_chunks(lc_path, 1_000_000)]
    values = np.concatenate([p[2] for p in parts])
    lengths = np.concatenate([np.diff(p[1]) for p in parts])
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    index = np.arange(len(lengths))
    dmdt_images(values, offsets, index[:2])  # compiled (or loaded from numba's cache) before the timing
    band = values[:, 4:10].argmax(axis=1)
    nb = survey.N_PASSBANDS
    per_band = np.bincount(np.repeat(index, lengths) * nb + band, minlength=len(index) * nb).reshape(-1, nb)
    pairs = int((per_band * (per_band - 1) // 2).sum() + (per_band[:, :-1] * per_band[:, 1:]).sum())

    seconds = []
    for _ in range(REPEAT):
        started = time.perf_counter()
        _build_all(values, offsets, index)
        seconds.append(time.perf_counter() - started)
    one_core = min(seconds)
    threads = max(1, workers)
    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda part: _build_all(values, offsets, part), np.array_split(index, threads * 4)))
    threaded = time.perf_counter() - started
    per_core = len(index) / one_core
    return {
        "rows": int(len(values)), "objects": int(len(index)), "pairs_per_object": pairs / len(index),
        "batch": BATCH, "seconds_one_core": one_core, "all_seconds_one_core": seconds,
        "objects_per_s_per_core": per_core, "ns_per_pair": one_core / pairs * 1e9,
        "threads": threads, "seconds_threads": threaded, "objects_per_s_threads": len(index) / threaded,
        "bytes_per_object": BYTES_PER_OBJECT, "disk_bytes_per_million_objects": 0,
        "real_test_objects": real_objects, "extrapolation_cores": EXTRAPOLATION_CORES,
        "extrapolated_full_test_s": real_objects / (per_core * EXTRAPOLATION_CORES),
    }


def print_summary(d: dict) -> None:
    """The dmdt lines of the bench's printout."""
    print(f"dmdt images: {d['objects']:,} objects ({d['rows']:,} rows, {d['pairs_per_object']:,.0f} pairs per object) "
          f"in {d['seconds_one_core']:.2f} s on one core: {d['objects_per_s_per_core']:,.0f} objects/s per core "
          f"({d['ns_per_pair']:.1f} ns per pair); {d['threads']} threads: {d['objects_per_s_threads']:,.0f} objects/s")
    print(f"dmdt images: {d['bytes_per_object']:,} bytes per object in memory, 0 on disk (built on the fly); the "
          f"real test set's {d['real_test_objects']:,} objects on {d['extrapolation_cores']} cores: "
          f"{d['extrapolated_full_test_s'] / 60:.1f} min")
