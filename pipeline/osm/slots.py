"""A per-endpoint concurrency limit that holds across threads *and* processes.

Each endpoint gets ``limit`` lock files; a request holds an exclusive ``flock`` on one of
them while it runs. The kernel drops the lock when the holder exits, even on a crash, so
no slot is ever leaked, and every process on the machine (Dask workers, parallel CLI runs)
shares the same limit without a coordinator.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from pipeline.errors import OsmSourceError


def default_slot_dir() -> Path:
    return Path(tempfile.gettempdir()) / "skyscript-overpass-slots"


class EndpointSlots:
    def __init__(
        self,
        slot_dir: str | os.PathLike[str] | None,
        limit: int,
        poll_s: float = 0.05,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if limit < 1:
            raise ValueError(f"slot limit must be >= 1, got {limit}")
        self.dir = Path(slot_dir) if slot_dir else default_slot_dir()
        self.limit = limit
        self.poll_s = poll_s
        self.sleep = sleep

    def _paths(self, endpoint: str) -> list[Path]:
        tag = hashlib.sha256(endpoint.encode()).hexdigest()[:16]
        return [self.dir / f"{tag}.{i}.lock" for i in range(self.limit)]

    def _try_lock(self, path: Path) -> int | None:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return fd

    @contextmanager
    def hold(self, endpoint: str, max_wait_s: float = 600.0) -> Iterator[int]:
        """Hold one of ``endpoint``'s slots; yields the slot number."""
        self.dir.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + max_wait_s
        while True:
            for i, path in enumerate(self._paths(endpoint)):
                fd = self._try_lock(path)
                if fd is not None:
                    try:
                        yield i
                    finally:
                        fcntl.flock(fd, fcntl.LOCK_UN)
                        os.close(fd)
                    return
            if time.monotonic() > deadline:
                raise OsmSourceError(
                    f"no free local slot for {endpoint} after {max_wait_s:.0f} s: other processes hold "
                    f"all {self.limit}; wait for them or raise overpass slots_per_endpoint"
                )
            self.sleep(self.poll_s)
