"""Swappable executors for shard work: in-process, a local Dask cluster, or a Dask scheduler.

Stage code never knows which one runs it: the caller passes the unit of work in
(``worker(task, ctx, on_object)``, a plain module-level function over picklable records), as
img2dataset's distributor does, so this module imports no stage code.
"""

from __future__ import annotations

import socket
import sys
import urllib.parse
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from pipeline.errors import BadInputError

EXECUTORS_HELP = "local (in-process, default) | dask-local[:N workers] | dask:tcp://HOST:PORT"


def parse_executor(spec: str) -> tuple[str, str]:
    kind, _, arg = spec.partition(":")
    if kind not in ("local", "dask-local", "dask"):
        raise BadInputError(f"unknown executor {spec!r}; use {EXECUTORS_HELP}")
    if kind == "dask" and not arg:
        raise BadInputError(f"executor {spec!r} needs a scheduler address, e.g. dask:tcp://127.0.0.1:8786")
    if kind == "dask-local" and arg and not arg.isdigit():
        raise BadInputError(f"executor {spec!r}: the worker count after ':' must be a number")
    return kind, arg


def _unreachable(address: str, why: str) -> BadInputError:
    return BadInputError(
        f"executor dask:{address}: no Dask scheduler answers there ({why}); start one with "
        "`dask scheduler` and pass its address, e.g. dask:tcp://127.0.0.1:8786"
    )


def probe_scheduler(address: str, timeout_s: float = 5.0) -> None:
    """Fail at once when nothing listens at a ``tcp://HOST:PORT`` scheduler address.

    Dask's own client keeps retrying a refused connection until its timeout; a plain TCP
    connect tells "nothing there" immediately, so a typo fails before any work starts.
    """
    parts = urllib.parse.urlsplit(address if "://" in address else f"tcp://{address}")
    if parts.scheme not in ("tcp", "tls"):
        return  # other transports (ucx, ws, inproc): left to Dask's client
    try:
        port = parts.port or 8786  # Dask's default scheduler port
    except ValueError:
        raise BadInputError(f"executor dask:{address}: the port must be a number, e.g. dask:tcp://HOST:8786") from None
    if not parts.hostname:
        raise BadInputError(f"executor dask:{address}: use dask:tcp://HOST:PORT (e.g. dask:tcp://127.0.0.1:8786)")
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout_s):
            pass
    except OSError as exc:
        raise _unreachable(address, exc.strerror or type(exc).__name__) from None


def check_executor(spec: str) -> tuple[str, str]:
    """:func:`parse_executor`, and for ``dask:ADDR`` a quick check that the scheduler is there."""
    kind, arg = parse_executor(spec)
    if kind == "dask":
        probe_scheduler(arg)
    return kind, arg


def connect(address: str, timeout_s: float = 20.0) -> Any:
    """A client of the Dask scheduler at ``address``, or a one-line error naming it."""
    from dask.distributed import Client

    probe_scheduler(address)
    try:
        return Client(address, timeout=f"{timeout_s:.0f}s")
    except (OSError, TimeoutError, ValueError) as exc:
        raise _unreachable(address, type(exc).__name__) from None


def current_dask_worker() -> Any | None:
    """The Dask worker of this process, or None (never imports distributed itself).

    Not ``distributed.get_worker()``: that only answers in the task's own thread, and sources
    query from thread pools of their own.
    """
    if "distributed" not in sys.modules:  # a Dask worker process has it loaded already
        return None
    from distributed import Worker

    running = [w for w in list(Worker._instances) if w.status.name == "running"]
    return running[0] if running else None


def cluster_semaphore(worker: Any, name: str, limit: int) -> Any:
    """The cluster-wide ``distributed.Semaphore`` ``name`` with ``limit`` leases, bound to ``worker``.

    The scheduler keeps the leases, so the limit holds across every worker of the cluster, and a
    dead worker's lease expires with it (``distributed.scheduler.locks.lease-timeout``). Works from
    any thread of the worker's process.
    """
    from distributed import Semaphore

    return Semaphore(max_leases=limit, name=name, scheduler_rpc=worker.scheduler, loop=worker.loop)


class ShardWorker(Protocol):
    def __call__(self, task: Any, ctx: Any, on_object: Callable[[], None] | None = None, /) -> dict[str, Any]: ...


def map_shards(
    worker: ShardWorker,
    tasks: Sequence[Any],
    ctx: Any,
    *,
    executor: str = "local",
    on_object: Callable[[], None] | None = None,
    on_shard: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Run ``worker`` over ``tasks``; returns their stats in task order.

    ``on_object`` ticks per object in-process; with Dask, progress is per shard (``on_shard``).
    A failing shard raises after the others finish, so finished shards are kept.
    """
    kind, arg = parse_executor(executor)
    if kind == "local":
        results = []
        for t in tasks:
            stats = worker(t, ctx, on_object)
            if on_shard is not None:
                on_shard(stats)
            results.append(stats)
        return results

    from dask.distributed import Client, LocalCluster, as_completed

    cluster = None
    if kind == "dask-local":
        cluster = LocalCluster(n_workers=int(arg or 2), threads_per_worker=1, processes=True,
                               dashboard_address=None)
        client = Client(cluster)
    else:
        client = connect(arg)
    try:
        # The context carries the imagery source indexed once by the planner (never re-indexed by a
        # worker). It is sent with each task rather than scattered: scattered data dies with a worker,
        # and a shard retried after a worker death must not depend on it.
        futures = [client.submit(worker, t, ctx, pure=False) for t in tasks]
        errors = []
        for fut in as_completed(futures):
            if fut.status == "error":
                errors.append(fut.exception())
                continue
            stats = fut.result()
            if on_shard is not None:
                on_shard(stats)
        if errors:
            raise errors[0]
        return [f.result() for f in futures]
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
