"""Overpass slots: a per-endpoint concurrency limit shared by every thread, process and Dask worker
(lock files on one machine, a cluster semaphore on a Dask cluster: :mod:`pipeline.slots`)."""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from pipeline.errors import OsmSourceError
from pipeline.slots import hold_slot


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

        def too_long(where: str) -> OsmSourceError:
            return OsmSourceError(
                f"no free slot for {endpoint} on {where} after {max_wait_s:.0f} s: others hold all "
                f"{self.limit}; wait for them or raise overpass slots_per_endpoint"
            )

        with hold_slot(self._paths(endpoint), f"skyscript-slots-{endpoint_tag(endpoint)}", max_wait_s=max_wait_s,
                       poll_s=self.poll_s, too_long=too_long, sleep=self.sleep, cluster=self.cluster) as i:
            yield i
