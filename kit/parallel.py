"""One map over independent tasks: in this process, on local worker processes, or on a Dask cluster.

:func:`map_unordered` yields results as tasks finish and keeps only a few tasks in flight, so a
lazy task iterator (e.g. chunks streamed from a file) never piles up in memory. Callers that need
a deterministic output order put an index in each task and its result.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
from collections.abc import Callable, Iterable, Iterator
from typing import Any

#: Tasks submitted ahead per worker: keeps workers busy while bounding the memory of pending tasks.
IN_FLIGHT_PER_WORKER = 2


def map_unordered(
    fn: Callable[[Any], Any],
    tasks: Iterable[Any],
    workers: int = 1,
    scheduler: Any = None,
) -> Iterator[Any]:
    """Apply ``fn`` to every task and yield the results in completion order.

    Parameters
    ----------
    fn
        A picklable (module-level) function of one task.
    tasks
        Task descriptions; consumed lazily.
    workers
        Local processes; 1 runs every task in this process (no pickling).
    scheduler
        A Dask scheduler address (``tcp://host:8786``) or a ``distributed.Client``: the tasks run on
        that cluster and ``workers`` only sets how many are kept in flight per cluster worker.
    """
    if scheduler:
        yield from _map_dask(fn, tasks, scheduler)
    elif workers <= 1:
        for task in tasks:
            yield fn(task)
    else:
        yield from _map_processes(fn, tasks, workers)


def _bounded(submit: Callable[[Any], Any], wait_one: Callable[[set], tuple[Any, set]], tasks, limit: int):
    pending: set = set()
    for task in tasks:
        pending.add(submit(task))
        while len(pending) >= limit:
            done, pending = wait_one(pending)
            yield from done
    while pending:
        done, pending = wait_one(pending)
        yield from done


def _map_processes(fn, tasks, workers: int) -> Iterator[Any]:
    context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    with cf.ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:

        def wait_one(pending: set) -> tuple[list, set]:
            done, rest = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
            return [f.result() for f in done], rest

        yield from _bounded(lambda t: pool.submit(fn, t), wait_one, tasks, workers * IN_FLIGHT_PER_WORKER)


def _map_dask(fn, tasks, scheduler) -> Iterator[Any]:
    from distributed import Client, wait

    own = not isinstance(scheduler, Client)
    client = Client(scheduler) if own else scheduler
    try:
        n_workers = max(1, len(client.scheduler_info().get("workers", {})))

        def wait_one(pending: set) -> tuple[list, set]:
            result = wait(list(pending), return_when="FIRST_COMPLETED")
            return [f.result() for f in result.done], set(result.not_done)

        yield from _bounded(
            lambda t: client.submit(fn, t, pure=False), wait_one, tasks, n_workers * IN_FLIGHT_PER_WORKER
        )
    finally:
        if own:
            client.close()
