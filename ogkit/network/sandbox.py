"""Verification in a worker process with a time limit (and an optional memory limit).

A node controls every byte of its artefact, and a verifier daemon must outlive any of
them: :class:`VerifyWorker` runs :func:`ogkit.verify.verify_batch` in a separate
(``spawn``-started, reused) process, so an artefact that makes the verification hang, eat
memory or crash the interpreter costs one worker, not the daemon. What happened comes back
as an :class:`Outcome`: the verdict, or why there is none (``timeout``, ``crashed``,
``raised``, ``unavailable`` for a store that could not be reached, ``stopped`` when the
daemon was asked to stop while it waited).

The worker ignores SIGTERM and SIGINT (a signal to the daemon's process group must not
look like a crash of the verification: the daemon stops it itself) and exits when the
daemon's end of the pipe closes.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import threading
import time
from dataclasses import dataclass
from typing import Any

__all__ = ["Outcome", "VerifyTask", "VerifyWorker", "check_records_files"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VerifyTask:
    """Everything one verification needs, as plain picklable values."""

    manifest: dict[str, Any]
    artifact_id: str
    store_url: str
    policy: Any  # ogkit.verify.VerifyPolicy
    dataset_id: str
    row_count: int
    requester: str | None = None
    model: str | None = None
    hub_home: str | None = None  # with hub_store: a Hub to fetch models the store lacks
    hub_store: str | None = None


@dataclass(frozen=True)
class Outcome:
    kind: str  # "verdict", "timeout", "crashed", "raised", "unavailable", "stopped"
    verdict: Any = None
    detail: str = ""


def _run_task(task: VerifyTask) -> Any:
    from pathlib import Path

    from ogkit.batch import AttestedBatch
    from ogkit.dataset import DatasetCommitment
    from ogkit.hub import Hub
    from ogkit.store import ContentStore
    from ogkit.verify import verify_batch

    store = ContentStore(task.store_url)
    hub = Hub(task.hub_store, home=Path(task.hub_home)) if task.hub_home else None
    check_records_files(store, task.manifest)
    return verify_batch(
        AttestedBatch(task.manifest, task.artifact_id, store),
        task.policy,
        hub=hub,
        commitment=DatasetCommitment(task.dataset_id, task.row_count),
        requester=task.requester,
        model=task.model,
        progress=False,
    )


def check_records_files(store: Any, manifest: dict[str, Any]) -> None:
    """Each partition's records must be a regular file before anything reads it (a FIFO
    the node put there would hold the worker until its time limit)."""
    from ogkit.network.verifier import regular_file

    for part in manifest.get("partitions") or []:
        path = part.get("path") if isinstance(part, dict) else None
        if not isinstance(path, str) or ".." in path.split("/"):
            continue  # verify_batch reports it
        try:
            info = store.fs.info(store.path(path))
        except FileNotFoundError:
            continue  # verify_batch reports it
        regular_file(info, f"records file {path}")


def _worker_main(conn: Any, memory_bytes: int | None) -> None:
    """The worker's loop: a task in, ``(kind, payload)`` out, until the pipe closes."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if memory_bytes:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    import ogkit.verify  # noqa: F401 - imported while idle, not when the first batch waits
    from ogkit.crypto.keccak import warm_up

    warm_up()  # the hashing kernel compiled (or loaded from cache) while idle too

    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        try:
            conn.send(("verdict", _run_task(task)))
        except MemoryError:
            conn.send(("raised", "the verification ran out of memory"))
        except Exception as exc:
            from ogkit.network.daemon import store_unavailable

            kind = "unavailable" if store_unavailable(exc) else "raised"
            conn.send((kind, f"{type(exc).__name__}: {str(exc)[:500]}"))


class VerifyWorker:
    """One reusable worker process; :meth:`verify` starts it on first use and replaces it
    after a timeout or a crash. ``stop`` (the daemon's stop event) is checked while waiting."""

    def __init__(
        self,
        *,
        timeout: float,
        memory_bytes: int | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        self.timeout = timeout
        self.memory_bytes = memory_bytes
        self.stop = stop or threading.Event()
        self._proc: Any = None
        self._conn: Any = None

    @property
    def pid(self) -> int | None:
        """The worker's process id while it runs."""
        return self._proc.pid if self._proc is not None else None

    def _start(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        proc = ctx.Process(
            target=_worker_main, args=(child, self.memory_bytes), name="ogkit-verify", daemon=True
        )
        proc.start()
        child.close()
        self._proc, self._conn = proc, parent

    def _kill(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.join(5)
        if self._conn is not None:
            self._conn.close()
        self._proc = self._conn = None

    def warm(self) -> None:
        """Start the worker now (it imports the verifier while the daemon waits for work)."""
        if self._proc is None or not self._proc.is_alive():
            self._kill()
            self._start()

    def close(self) -> None:
        """Stop the worker: closing its pipe ends its loop (it also exits by itself when
        this process dies); killed if it does not exit within 5 s."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._proc is not None:
            self._proc.join(5)
        self._kill()

    def verify(self, task: VerifyTask) -> Outcome:
        self.warm()
        assert self._conn is not None
        try:
            self._conn.send(task)
        except (OSError, ValueError) as exc:  # the worker died between tasks
            self._kill()
            return Outcome("crashed", detail=f"the verification worker was gone: {exc}")
        deadline = time.monotonic() + self.timeout
        while True:
            if self.stop.is_set():
                self._kill()
                return Outcome("stopped", detail="the daemon is stopping")
            left = deadline - time.monotonic()
            if left <= 0:
                log.warning("verification took more than %.0f s: stopping its worker", self.timeout)
                self._kill()
                return Outcome("timeout", detail=f"did not finish within {self.timeout:g} s")
            try:
                ready = self._conn.poll(min(left, 0.2))
            except (EOFError, OSError):
                ready = True
            if ready:
                try:
                    kind, payload = self._conn.recv()
                except (EOFError, OSError):
                    self._proc.join(5)
                    code = self._proc.exitcode
                    self._kill()
                    how = f"signal {-code}" if code is not None and code < 0 else f"exit {code}"
                    return Outcome("crashed", detail=f"the verification worker died ({how})")
                if kind == "verdict":
                    return Outcome("verdict", verdict=payload)
                return Outcome(kind, detail=str(payload))
