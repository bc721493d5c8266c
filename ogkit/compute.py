"""The one place ogkit makes a Dask client. Steps never do; callers own its lifetime."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from ogkit.errors import ConfigError

if TYPE_CHECKING:
    from dask.distributed import Client, Future, as_completed

__all__ = ["completed", "get_client", "worker_runs"]

log = logging.getLogger(__name__)

# A LocalCluster ogkit starts runs few, long tasks: Dask's own monitors would cost its
# workers CPU for nothing (on two cores, a few percent of a run): no statistical profiler
# (a thread walking every stack each 10 ms), slower event-loop ticks, system and memory
# monitors. The workers get this configuration when they start.
# Dask starts workers with MALLOC_TRIM_THRESHOLD_=65536, which also turns off glibc's
# adaptive mmap threshold: every array over 128 kB is then a fresh mapping, faulted in
# page by page and unmapped when freed. A partition allocates tens of MB of hashes,
# records and tree nodes, so its workers spent about a quarter of their CPU in page
# faults (tabular 1M, in one process: 2.2-2.5 CPU-s against 1.6-1.8 with these): freed
# memory up to 256 MiB is kept for the next partition instead.
_KEPT_BYTES = 256 << 20
LOCAL_CLUSTER_CONFIG = {
    "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": _KEPT_BYTES,
    "distributed.nanny.pre-spawn-environ.MALLOC_MMAP_THRESHOLD_": _KEPT_BYTES,
    "distributed.worker.profile.enabled": False,
    "distributed.admin.tick.interval": "500ms",
    "distributed.admin.system-monitor.interval": "2s",
    "distributed.admin.system-monitor.disk": False,
    "distributed.worker.memory.monitor-interval": "500ms",
}


def get_client(
    scheduler_address: str | None = None,
    *,
    n_workers: int | None = None,
    threads_per_worker: int = 1,
    processes: bool = True,
    **cluster_kwargs,
):
    """Connect to ``scheduler_address``, else start a LocalCluster (the CLI passes
    ``$OGKIT_SCHEDULER`` here, read by :class:`ogkit.settings.Settings`).

    A LocalCluster gets ``n_workers`` single-threaded worker processes (default: one
    per core) because onnxruntime sessions are pinned to one thread each. Close the
    client (``with get_client() as client:``) to stop a cluster it started.
    """
    import dask
    from dask.distributed import Client

    address = scheduler_address
    if address:
        try:
            return Client(address, timeout="10s")
        except (OSError, TimeoutError) as exc:
            raise ConfigError(
                f"cannot reach the Dask scheduler at {address}: {exc}; check the address "
                "(--scheduler or OGKIT_SCHEDULER), or leave it out for a local cluster"
            ) from exc
    # Client(n_workers=...) starts a LocalCluster that closes with the client. Its worker
    # processes start with SIGINT ignored (inherited): Ctrl-C in a terminal reaches the
    # whole process group, and workers that die of it print pages of tracebacks while
    # this process, which does get the KeyboardInterrupt, closes them in order.
    with _sigint_ignored(), dask.config.set(LOCAL_CLUSTER_CONFIG):
        client = Client(
            n_workers=n_workers or os.cpu_count() or 1,
            threads_per_worker=threads_per_worker,
            processes=processes,
            dashboard_address=":0",  # a free port, never a clash with another cluster
            silence_logs=cluster_kwargs.pop("silence_logs", logging.ERROR),
            **cluster_kwargs,
        )
    log.info("started a LocalCluster with %d workers", len(client.scheduler_info()["workers"]))
    return client


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    """SIGINT ignored while child processes are started (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def worker_runs(
    client: Client, count: int, spread: bool
) -> list[tuple[int, int, list[str] | None]]:
    """``count`` partitions of one data file cut into one run of consecutive partitions
    per worker, as ``(first, end, [worker])``: each worker then reads its rows of a row
    group as one forward stream (``ogkit.dataset._group_rows``) instead of every
    worker decoding every group. The restriction is loose: an idle worker still steals
    from a busy one, and a lost worker's partitions run elsewhere. Anything else (in-memory
    rows (``spread`` false), one worker, a cluster still starting): one run, placed by the
    scheduler."""
    try:
        workers = sorted(client.scheduler_info().get("workers", {})) if spread and count > 1 else []
    except Exception:  # the scheduler's view is an optimisation only
        workers = []
    if len(workers) < 2:
        return [(0, count, None)]
    size = -(-count // len(workers))
    return [
        (lo, min(lo + size, count), [worker])
        for lo, worker in zip(range(0, count, size), workers, strict=False)
    ]


def completed(
    client: Client, futures: Iterable[Future], *, with_results: bool = False
) -> as_completed:
    """Dask's ``as_completed`` over ``futures``, run on ``client``'s event loop. Left to
    itself it takes the loop of Dask's default client, the most recently made one: with
    another client current (a second cluster in the same notebook or process) each
    finished future waited for a turn of that other loop (a 10k-image run on two workers
    0.30 -> 0.47 s), and with none (``Client(..., set_as_default=False)``) it raised
    "No clients found"."""
    from dask.distributed import as_completed

    return as_completed(futures, loop=client.loop, with_results=with_results)
