"""A daemon's durable state: the next block to read, the batches it is done with, health.

One JSON file per daemon (``<home>/network/<role>/<address>-<chain id>.json``), replaced
atomically (write to a temporary file, fsync, rename), so a daemon killed at any moment
leaves either the previous state or the new one, never half of one. The file doubles as
the daemon's health record: ``ogkit network status`` reads it without talking to the
daemon.

The done-set is keyed by batch id: a batch seen again (the same event delivered twice, a
replayed id, a restart that re-reads a block) is never worked on a second time.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ogkit.errors import ConfigError

__all__ = ["DaemonState", "load_state", "save_state", "state_path"]

log = logging.getLogger(__name__)

SCHEMA = "ogkit.daemon-state.v1"


@dataclass
class DaemonState:
    """What a daemon remembers between runs (and shows to ``ogkit network status``)."""

    role: str  # "verifier" or "challenger"
    address: str
    chain_id: int
    contract: str  # the settlement contract whose events it follows
    next_block: int = 0  # the first block not read yet
    done: dict[str, dict[str, Any]] = field(default_factory=dict)  # batch id -> outcome
    attempts: dict[str, int] = field(default_factory=dict)  # batch id -> failed tries
    # batch id -> {"event", "block", "due"}: work put off (an artefact not in the store
    # yet) that the cursor has moved past; retried when due, kept across restarts
    deferred: dict[str, dict[str, Any]] = field(default_factory=dict)
    batches_verified: int = 0
    batches_failed: int = 0
    challenges: int = 0
    votes: int = 0
    last_block: int | None = None  # the chain's latest block when last polled
    last_error: str = ""
    last_error_at: float | None = None
    updated_at: float = 0.0
    pid: int | None = None
    started_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA, **asdict(self)}

    @classmethod
    def from_dict(cls, doc: Any, where: str) -> DaemonState:
        if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
            raise ConfigError(f"{where} is not an ogkit daemon state file; move it away")
        known = {k: v for k, v in doc.items() if k in cls.__dataclass_fields__}
        try:
            state = cls(**known)
        except TypeError as exc:
            raise ConfigError(f"{where} is incomplete ({exc}); move it away") from None
        if (
            not isinstance(state.done, dict)
            or not isinstance(state.attempts, dict)
            or not isinstance(state.deferred, dict)
            or isinstance(state.next_block, bool)
            or not isinstance(state.next_block, int)
            or not all(isinstance(v, dict) for v in state.done.values())
            or not all(isinstance(v, dict) for v in state.deferred.values())
            or not all(_count(v) for v in state.attempts.values())
            or not all(_count(v.get("block")) for v in state.deferred.values())
        ):
            raise ConfigError(f"{where} has a malformed cursor; move it away")
        return state

    def prune(self, margin: int) -> int:
        """Forget done entries from blocks more than ``margin`` blocks behind the cursor
        (the chain stays the source of truth: a daemon that reads such a block again finds
        its own verdict or vote there); returns how many were dropped."""
        horizon = self.next_block - margin
        old = [k for k, v in self.done.items() if _block(v) < horizon and k not in self.deferred]
        for key in old:
            del self.done[key]
            self.attempts.pop(key, None)
        return len(old)


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _block(outcome: dict[str, Any]) -> int:
    block = outcome.get("block")
    return block if isinstance(block, int) and not isinstance(block, bool) else 1 << 62


def state_path(home: Path, role: str, address: str, chain_id: int) -> Path:
    """Where the daemon of ``role`` for ``address`` on ``chain_id`` keeps its state."""
    return Path(home) / "network" / role / f"{address.lower()}-{int(chain_id)}.json"


def load_state(path: Path) -> DaemonState | None:
    """The state in ``path``; None when there is none yet. A file that is not a state file
    raises :class:`~ogkit.errors.ConfigError` (it is never silently replaced)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{path} is not valid JSON ({exc}); move it away") from None
    return DaemonState.from_dict(doc, str(path))


def save_state(path: Path, state: DaemonState) -> None:
    """Replace ``path`` with ``state`` atomically (and durably: fsync before the rename)."""
    state.updated_at = time.time()
    path.parent.mkdir(parents=True, exist_ok=True)
    body = json.dumps(state.to_dict(), indent=1, sort_keys=True).encode()
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(body)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
