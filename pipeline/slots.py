"""Concurrency limits that hold across threads, processes *and* a Dask cluster: one helper for
Overpass slots and Earth Engine request slots.

On one machine a limit is ``limit`` lock files; a request holds an exclusive lock (``filelock``,
an ``flock`` underneath) on one of them while it runs. The kernel drops the lock when the holder
exits, even on a crash, so no slot is ever leaked, and every process on the machine shares the
limit without a coordinator. On a Dask worker lock files would only limit each machine, so the
slots become a ``distributed.Semaphore`` of the same name: the scheduler holds the leases for every
worker of the cluster, and a dead worker's lease expires with it.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

# filelock 4 deletes a lock file on release unless told not to; a deleted file lets two holders lock
# two different inodes of the same path. Older versions never delete it (and lack the option).
_KEEP: dict[str, Any] = (
    {"preserve_lock_file": True} if "preserve_lock_file" in inspect.signature(FileLock.__init__).parameters else {}
)


@contextmanager
def hold_slot(
    paths: Sequence[Path],
    cluster_name: str,
    *,
    max_wait_s: float,
    poll_s: float,
    too_long: Callable[[str], Exception],
    sleep: Callable[[float], None] = time.sleep,
    cluster: bool | None = None,
    spread: bool = False,
) -> Iterator[int]:
    """Hold one of ``paths``' slots for the block; yields its number (-1: a cluster-wide lease).

    ``cluster``: None uses the cluster semaphore exactly when running on a Dask worker; True
    requires one. ``spread`` starts each search at a pseudo-random slot (less contention on busy
    limits). ``too_long(where)`` builds the error raised after ``max_wait_s``.
    """
    from pipeline.executors import cluster_semaphore, current_dask_worker

    worker = current_dask_worker() if cluster is not False else None
    if cluster and worker is None:
        raise too_long("a Dask cluster (cluster-wide slots need a Dask worker; none runs here)")
    if worker is not None:
        sem = cluster_semaphore(worker, cluster_name, len(paths))
        if not sem.acquire(timeout=max_wait_s):
            raise too_long("the Dask cluster")
        try:
            yield -1  # cluster leases carry no number
        finally:
            sem.release()
        return
    Path(paths[0]).parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + max_wait_s
    start = hash(time.perf_counter_ns()) % len(paths) if spread else 0
    while True:
        for k in range(len(paths)):
            i = (start + k) % len(paths)
            # A fresh lock object per try: each one opens its own file description, so two threads of
            # one process exclude each other like two processes do. The file stays: unlinking it on
            # release would let two holders lock two different inodes.
            lock = FileLock(paths[i], thread_local=False, is_singleton=False, **_KEEP)
            try:
                lock.acquire(timeout=0)
            except Timeout:
                continue
            try:
                yield i
            finally:
                lock.release()
            return
        if time.monotonic() > deadline:
            raise too_long("this machine")
        sleep(poll_s)
