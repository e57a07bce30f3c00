"""A machine-wide limit on requests in flight: ``limit`` lock files, one held per request.

Every thread, process and Dask worker on the machine that talks to the same endpoint tries the
same files under one folder (by default under the cache root), so together they never hold more
than ``limit`` at once. Locks are ``filelock`` (``flock``) locks: the kernel frees them when the
holder dies, so a crashed worker never leaks a slot.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pipeline.errors import ImageryError
from pipeline.slots import hold_slot


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

        def too_long(where: str) -> ImageryError:
            return ImageryError(f"no free request slot on {where} after {max_wait_s:.0f} s: others hold all "
                                f"{len(self.paths)} (imagery.gee.max_concurrent)")

        with hold_slot(self.paths, self.cluster_name, max_wait_s=max_wait_s, poll_s=self.poll_s, too_long=too_long,
                       spread=True) as i:
            yield i
