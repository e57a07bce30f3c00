"""A per-endpoint concurrency limit that holds across threads, processes *and* a Dask cluster.

On one machine each endpoint gets ``limit`` lock files; a request holds an exclusive lock
(``filelock``, an ``flock`` underneath) on one of them while it runs. The kernel drops the lock
when the holder exits, even on a crash, so no slot is ever leaked, and every process on the
machine (local Dask workers, parallel CLI runs) shares the same limit without a coordinator.

On a Dask worker (``--executor dask:tcp://...``) lock files would only limit each machine, so
the slots become a ``distributed.Semaphore`` named after the endpoint: the scheduler holds the
leases for every worker of the cluster, and a dead worker's lease expires with it.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from pipeline.errors import OsmSourceError
from pipeline.executors import cluster_semaphore, current_dask_worker


def default_slot_dir() -> Path:
    return Path(tempfile.gettempdir()) / "skyscript-overpass-slots"


def endpoint_tag(endpoint: str) -> str:
    return hashlib.sha256(endpoint.encode()).hexdigest()[:16]


class EndpointSlots:
    def __init__(
        self,
        slot_dir: str | os.PathLike[str] | None,
        limit: int,
        poll_s: float = 0.05,
        sleep: Callable[[float], None] = time.sleep,
        cluster: bool | None = None,
    ) -> None:
        """``cluster``: None picks the cluster semaphore exactly when running on a Dask worker."""
        if limit < 1:
            raise ValueError(f"slot limit must be >= 1, got {limit}")
        self.dir = Path(slot_dir) if slot_dir else default_slot_dir()
        self.limit = limit
        self.poll_s = poll_s
        self.sleep = sleep
        self.cluster = cluster

    def _paths(self, endpoint: str) -> list[Path]:
        tag = endpoint_tag(endpoint)
        return [self.dir / f"{tag}.{i}.lock" for i in range(self.limit)]

    @contextmanager
    def hold(self, endpoint: str, max_wait_s: float = 600.0) -> Iterator[int]:
        """Hold one of ``endpoint``'s slots; yields the slot number (-1 for a cluster lease)."""
        worker = current_dask_worker() if self.cluster is not False else None
        if self.cluster and worker is None:
            raise OsmSourceError(f"cluster-wide slots for {endpoint} need a Dask worker; none runs here")
        if worker is not None:
            sem = cluster_semaphore(worker, f"skyscript-slots-{endpoint_tag(endpoint)}", self.limit)
            if not sem.acquire(timeout=max_wait_s):
                raise OsmSourceError(
                    f"no free cluster slot for {endpoint} after {max_wait_s:.0f} s: other workers hold all "
                    f"{self.limit}; wait for them or raise overpass slots_per_endpoint"
                )
            try:
                yield -1  # cluster leases carry no number
            finally:
                sem.release()
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + max_wait_s
        while True:
            for i, path in enumerate(self._paths(endpoint)):
                # A fresh lock object per try: each one opens its own file description, so two
                # threads of one process exclude each other like two processes do. The file stays:
                # unlinking it on release would let two holders lock two different inodes.
                lock = FileLock(path, thread_local=False, is_singleton=False, preserve_lock_file=True)
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
                raise OsmSourceError(
                    f"no free local slot for {endpoint} after {max_wait_s:.0f} s: other processes hold "
                    f"all {self.limit}; wait for them or raise overpass slots_per_endpoint"
                )
            self.sleep(self.poll_s)
