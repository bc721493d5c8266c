"""The one place ogkit makes a Dask client. Steps never do; callers own its lifetime."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Iterator

from ogkit.errors import ConfigError

__all__ = ["get_client"]

log = logging.getLogger(__name__)


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
    with _sigint_ignored():
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
