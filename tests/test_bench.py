"""The benchmark's memory probe sees memory that is touched, in this process and its workers."""

from __future__ import annotations

import multiprocessing
import time

import numpy as np

from kit.bench import PeakMemory

MB = 2**20


def _touch(n_bytes: int, hold_s: float = 0.0) -> None:
    block = np.ones(n_bytes, dtype=np.uint8)
    time.sleep(hold_s)  # longer than the probe's polling interval
    block.sum()


def test_peak_memory_counts_this_process_and_children():
    with PeakMemory() as before:
        pass
    with PeakMemory() as here:
        _touch(200 * MB, 0.5)
    assert here.pss - before.pss > 150 * MB and here.rss >= here.pss
    with PeakMemory() as children:
        ctx = multiprocessing.get_context("spawn")
        procs = [ctx.Process(target=_touch, args=(300 * MB, 0.5)) for _ in range(2)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
    assert children.pss - before.pss > 300 * MB
