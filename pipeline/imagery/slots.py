"""A machine-wide limit on requests in flight: ``limit`` lock files, one held per request.

Every thread, process and Dask worker on the machine that talks to the same endpoint tries the
same files under one folder (by default under the cache root), so together they never hold more
than ``limit`` at once. Locks are ``filelock`` (``flock``) locks: the kernel frees them when the
holder dies, so a crashed worker never leaks a slot.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from pipeline.errors import ImageryError


class RequestSlots:
    def __init__(self, folder: Path, endpoint: str, limit: int, poll_s: float = 0.01) -> None:
        if limit < 1:
            raise ValueError(f"slot limit must be >= 1, got {limit}")
        tag = hashlib.sha256(endpoint.encode()).hexdigest()[:12]
        self.paths = [Path(folder) / f"{tag}.{i}.lock" for i in range(limit)]
        self.folder = Path(folder)
        self.poll_s = poll_s
        self.cluster_name = f"skyscript-requests-{tag}"  # on a Dask worker: one limit for the whole cluster

    @contextmanager
    def hold(self, max_wait_s: float = 3600.0) -> Iterator[int]:
        """Hold one slot for the duration of the block; yields its number (-1: a cluster-wide lease)."""
        from pipeline.executors import cluster_semaphore, current_dask_worker

        worker = current_dask_worker()
        if worker is not None:
            sem = cluster_semaphore(worker, self.cluster_name, len(self.paths))
            if not sem.acquire(timeout=max_wait_s):
                raise ImageryError(f"no free request slot after {max_wait_s:.0f} s: other Dask workers hold all "
                                   f"{len(self.paths)} (imagery.gee.max_concurrent)")
            try:
                yield -1
            finally:
                sem.release()
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + max_wait_s
        start = hash(time.perf_counter_ns()) % len(self.paths)  # spread first tries over the files
        while True:
            for k in range(len(self.paths)):
                i = (start + k) % len(self.paths)
                lock = FileLock(self.paths[i], timeout=0, is_singleton=False, thread_local=False)
                try:
                    lock.acquire()
                except Timeout:
                    continue
                try:
                    yield i
                finally:
                    lock.release()
                return
            if time.monotonic() > deadline:
                raise ImageryError(
                    f"no free request slot after {max_wait_s:.0f} s: other processes hold all {len(self.paths)} "
                    "(imagery.gee.max_concurrent)"
                )
            time.sleep(self.poll_s)
