"""What every watching daemon shares: the poll loop over settlement events, a durable
cursor, exponential back-off while the chain or the store is away, and a clean stop.

A daemon reads ``BatchCommitted`` and ``ChallengeOpened`` logs of the settlement contract
it was given (and only that address: logs of any other contract are dropped) from the block
its cursor names up to the latest block, handles them in chain order, and moves the cursor
past a block only once everything in it is handled. Work that fails because the chain or
the store is unreachable is retried from the same block after a pause that doubles up to
a cap; every batch id it is done with is in the done-set, so an event seen twice is handled
once.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ogkit.errors import ArtifactError, ChainError, ConfigError, SettlementError
from ogkit.network.cursor import DaemonState, load_state, save_state, state_path

if TYPE_CHECKING:
    from ogkit.chain.client import ChainClient
    from ogkit.keys import Signer

__all__ = [
    "NOT_AN_OUTAGE",
    "Backoff",
    "Transient",
    "WatchConfig",
    "Watcher",
    "rpc_connector",
    "sample_secret",
    "store_unavailable",
]

log = logging.getLogger(__name__)

WATCHED_EVENTS = ("BatchCommitted", "ChallengeOpened")
MAX_ERROR_ATTEMPTS = 3
"""An item that raises something unexpected this many times is recorded as an error and
passed over (logged with its traceback), so one bad item cannot stall the daemon."""


class Transient(Exception):
    """Work that should be retried later (the chain or the store is unreachable)."""


@dataclass(frozen=True)
class WatchConfig:
    """How a daemon polls and backs off. ``from_block`` moves the cursor there at start
    (the done-set stays: nothing is handled twice); ``max_blocks`` bounds one log query;
    ``confirmations`` keeps the daemon that many blocks behind the head on chains that
    reorganise."""

    poll: float = 1.0
    backoff_start: float = 0.5
    backoff_cap: float = 30.0
    from_block: int | None = None
    max_blocks: int = 2_000
    confirmations: int = 0  # read only blocks this deep (0 on the devnet: it never reorgs)
    keep_blocks: int = 100_000  # done entries this far behind the cursor are forgotten

    def __post_init__(self) -> None:
        if self.keep_blocks < 0:
            raise ConfigError(f"keep_blocks must be >= 0, got {self.keep_blocks}")
        if self.poll <= 0 or self.backoff_start <= 0 or self.backoff_cap < self.backoff_start:
            raise ConfigError(
                "poll and back-off must be > 0 seconds, with the cap at least the first pause"
            )
        if self.confirmations < 0:
            raise ConfigError(f"confirmations must be >= 0, got {self.confirmations}")
        if self.from_block is not None and self.from_block < 0:
            raise ConfigError(f"--from-block must be >= 0, got {self.from_block}")


class Backoff:
    """Exponential pauses: ``start``, twice that, … up to ``cap``; :meth:`reset` on success."""

    def __init__(self, start: float, cap: float) -> None:
        self.start, self.cap = start, cap
        self.failures = 0

    def next(self) -> float:
        delay = min(self.cap, self.start * (2**self.failures))
        self.failures += 1
        return delay

    def reset(self) -> None:
        self.failures = 0


def sample_secret(signer: Signer, chain_id: int, contract: str, purpose: str) -> bytes:
    """A daemon's secret sampling key, derived from its own key: the keccak256 of its
    (deterministic, RFC 6979) EIP-712 signature over a fixed message for this chain and
    contract. Stable across restarts (the same rows are drawn again), unknown to anyone
    without the key, different for every verifier."""
    from ogkit.attest import EIP712_DOMAIN_TYPE
    from ogkit.crypto.keccak import keccak256
    from ogkit.keys import parse_signature

    typed = {
        "types": {
            "EIP712Domain": EIP712_DOMAIN_TYPE,
            "SampleSecret": [{"name": "purpose", "type": "string"}],
        },
        "primaryType": "SampleSecret",
        "domain": {
            "name": "ogkit sample secret",
            "version": "1",
            "chainId": int(chain_id),
            "verifyingContract": contract,
        },
        "message": {"purpose": purpose},
    }
    return keccak256(parse_signature(signer.sign_typed_data(typed)))


class Watcher:
    """The poll loop; subclasses implement :meth:`on_commit` and :meth:`on_challenge`.

    ``connect`` opens the chain (it may raise :class:`~ogkit.errors.ChainError` while the
    chain is down: the daemon waits and tries again). ``home`` holds the cursor file."""

    role = "watcher"

    def __init__(
        self,
        connect: Callable[[], ChainClient],
        signer: Signer,
        home: Path,
        config: WatchConfig | None = None,
    ) -> None:
        self._connect = connect
        self.signer = signer
        self.home = Path(home)
        self.config = config or WatchConfig()
        self.chain: ChainClient | None = None
        self.state: DaemonState | None = None
        self.path: Path | None = None
        self.stop_event = threading.Event()
        self._backoff = Backoff(self.config.backoff_start, self.config.backoff_cap)
        self._lock_file: Any = None

    # -- life cycle --------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask the loop to stop after the item in hand (what SIGTERM does)."""
        self.stop_event.set()

    def run(self, *, max_polls: int | None = None) -> DaemonState | None:
        """Poll until :meth:`stop` (or ``max_polls`` polls); returns the final state."""
        polls = 0
        while not self.stop_event.is_set():
            try:
                self.ensure_connected()
                self.poll_once()
                self._backoff.reset()
                delay = self.config.poll
            except (Transient, ChainError, OSError) as exc:
                delay = self._backoff.next()
                self._note_error(f"{type(exc).__name__}: {exc}")
                log.warning(
                    "%s %s: %s; retrying in %.1f s", self.role, self.signer.address, exc, delay
                )
                if isinstance(exc, ChainError):
                    self.chain = None  # reconnect: the node may have restarted
            polls += 1
            if max_polls is not None and polls >= max_polls:
                break
            self.stop_event.wait(delay)
        if self.state is not None and self.path is not None:
            self.state.pid = None
            save_state(self.path, self.state)
        self.close()
        log.info("%s %s stopped", self.role, self.signer.address)
        return self.state

    def ensure_connected(self) -> None:
        if self.chain is not None:
            return
        chain = self._connect()
        settlement = chain.contract("InferenceSettlement").address
        path = state_path(self.home, self.role, self.signer.address, chain.chain_id)
        self._hold_lock(path)
        try:
            state = load_state(path)
        except ConfigError as exc:
            # A damaged state file (truncated, edited, not JSON): keep it for inspection and
            # read the chain again from the deployment; what this key already attested or
            # voted is on chain, and every handler checks there before it acts.
            aside = path.with_name(f"{path.name}.corrupt-{time.time_ns()}")
            path.rename(aside)
            log.error("%s; moved to %s, reading again from the deployment block", exc, aside)
            state = None
        if state is not None and state.contract.lower() != settlement.lower():
            log.warning(
                "%s: the settlement contract changed (%s, was %s; chain reset?): starting a "
                "fresh cursor",
                path,
                settlement,
                state.contract,
            )
            path.rename(path.with_suffix(f".{int(time.time())}.old"))
            state = None
        if state is None:
            state = DaemonState(
                self.role,
                self.signer.address,
                chain.chain_id,
                settlement,
                next_block=max(chain.first_block, chain.deployment.block_number or 0),
            )
        if self.state is None:
            if self.config.from_block is not None:
                state.next_block = self.config.from_block
            for item in state.deferred.values():  # a (re)start looks again at once
                item["due"] = 0.0
        state.pid = os.getpid()
        state.started_at = state.started_at if self.state is not None else time.time()
        self.chain, self.state, self.path = chain, state, path
        self._connected(chain)
        save_state(path, state)
        log.info(
            "%s %s following %s on chain %d from block %d",
            self.role,
            self.signer.address,
            settlement,
            chain.chain_id,
            state.next_block,
        )

    def _hold_lock(self, path: Path) -> None:
        """One daemon per key and chain: an exclusive lock beside the state file, held for
        the daemon's life (the kernel drops it when the process dies, even by SIGKILL)."""
        if self._lock_file is not None:
            return
        from ogkit.errors import ConfigError

        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path.with_suffix(".lock"), "a+")  # noqa: SIM115 - held until close()
        try:
            import fcntl

            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # pragma: no cover - no flock (Windows): one daemon is on trust
            pass
        except OSError:
            handle.close()
            other = load_state(path)
            pid = f" (pid {other.pid})" if other is not None and other.pid else ""
            raise ConfigError(
                f"another {self.role} daemon for {self.signer.address} runs on this chain{pid}; "
                "stop it first (two daemons with one key would attest twice)"
            ) from None
        self._lock_file = handle

    def close(self) -> None:
        """Release the daemon's lock and workers (what :meth:`run` does when it ends)."""
        self._closing()
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    def _connected(self, chain: ChainClient) -> None:
        """Called once per (re)connection, before the first poll."""

    def _closing(self) -> None:
        """Called once when the loop ends (release workers)."""

    def _note_error(self, text: str) -> None:
        if self.state is None:
            return  # not connected yet: the log says it
        self.state.last_error = text[:500]
        self.state.last_error_at = time.time()
        if self.path is not None:
            save_state(self.path, self.state)

    # -- one poll ----------------------------------------------------------------------------
    def poll_once(self) -> int:
        """Read and handle every watched event from the cursor to the latest block; returns
        how many were handled. Raises :class:`Transient` or ``ChainError`` on an outage
        (the cursor then stays at the block that could not be finished)."""
        assert self.chain is not None and self.state is not None and self.path is not None
        chain, state = self.chain, self.state
        state.last_block = chain.block_number()
        latest = state.last_block - self.config.confirmations
        handled = self._retry_deferred()
        while state.next_block <= latest and not self.stop_event.is_set():
            end = min(latest, state.next_block + self.config.max_blocks - 1)
            items = self._events(state.next_block, end)
            for item in items:
                if self.stop_event.is_set():
                    break
                try:
                    self.handle(item)
                except (Transient, ChainError, OSError):
                    state.next_block = int(item["blockNumber"])  # not past unfinished work
                    save_state(self.path, state)
                    raise
                handled += 1
                save_state(self.path, state)
            if self.stop_event.is_set():
                break
            state.next_block = end + 1
            save_state(self.path, state)
        pruned = state.prune(self.config.keep_blocks)
        if pruned:
            log.debug("forgot %d done entries older than block %d", pruned,
                      state.next_block - self.config.keep_blocks)  # fmt: skip
        if handled == 0 or pruned:
            save_state(self.path, state)  # the heartbeat: updated_at and last_block
        return handled

    def _retry_deferred(self) -> int:
        """Handle again the deferred items that are due (oldest block first); an outage
        raises as in the main loop (they stay deferred)."""
        assert self.chain is not None and self.state is not None and self.path is not None
        state, now, handled = self.state, time.time(), 0
        due = sorted(
            (item["block"], key)
            for key, item in state.deferred.items()
            if float(item.get("due", 0.0)) <= now
        )
        for block, key in due:
            if self.stop_event.is_set():
                break
            item = state.deferred[key]
            if item.get("event") == "ChallengeOpened":
                filters: dict[str, Any] = {"disputeId": int(key.split(":", 1)[1])}
            else:
                filters = {"batchId": bytes.fromhex(key[2:])}
            name = str(item.get("event", "BatchCommitted"))
            events = self.chain.events("InferenceSettlement", name, block, block,
                                       argument_filters=filters)  # fmt: skip
            if not events:  # pragma: no cover - only a reorganised chain loses a log
                log.warning("%s: its %s log is gone from block %d; dropped", key, name, block)
                state.deferred.pop(key, None)
                continue
            for event in events:
                self.handle(event)
            handled += 1
            save_state(self.path, state)
        return handled

    def _defer(self, key: str, event: dict[str, Any]) -> None:
        """Put ``key`` off: retried after a pause that doubles with its tries (as the
        daemon's own back-off), while the cursor goes on to later blocks."""
        assert self.state is not None
        tries = max(0, self.state.attempts.get(key, 1) - 1)
        pause = min(self.config.backoff_cap, self.config.backoff_start * (2**tries))
        self.state.deferred[key] = {
            "event": str(event["event"]),
            "block": int(event["blockNumber"]),
            "due": time.time() + pause,
        }
        log.info("%s put off for %.1f s", key, pause)

    def _events(self, start: int, end: int) -> list[dict[str, Any]]:
        assert self.chain is not None
        address = self.chain.contract("InferenceSettlement").address.lower()
        items = []
        for name in WATCHED_EVENTS:
            for e in self.chain.events("InferenceSettlement", name, start, end):
                if str(e.get("address", "")).lower() != address:
                    log.warning("dropping a %s log from %s: not the settlement", name, e["address"])
                    continue
                items.append(e)
        items.sort(key=lambda e: (int(e["blockNumber"]), int(e["logIndex"])))
        return items

    def handle(self, event: dict[str, Any]) -> None:
        assert self.state is not None and self.chain is not None
        here = self.chain.contract("InferenceSettlement").address.lower()
        if str(event.get("address", "")).lower() != here:
            log.warning("ignoring a log from %s: not the settlement %s", event.get("address"), here)
            return
        args = event["args"]
        batch_id = "0x" + bytes(args["batchId"]).hex()
        if event["event"] == "BatchCommitted":
            key = batch_id
        else:
            key = f"dispute:{int(args['disputeId'])}"
        if key in self.state.done:
            self.state.deferred.pop(key, None)
            log.debug("%s already handled (%s)", key, self.state.done[key].get("outcome"))
            return
        try:
            if event["event"] == "BatchCommitted":
                outcome = self.on_commit(batch_id, event)
            else:
                outcome = self.on_challenge(batch_id, int(args["disputeId"]), event)
        except SettlementError as exc:
            # The chain refused what we sent (window over, already voted, …): final.
            outcome = {"outcome": "refused by the chain", "reason": str(exc)[:300]}
            log.warning("%s %s: %s", self.role, key, exc)
        except (Transient, ChainError, OSError) as exc:
            tries = self.state.attempts.get(key, 0) + 1
            self.state.attempts[key] = tries
            if isinstance(exc, ChainError) or tries < MAX_HELD or self.stop_event.is_set():
                raise
            log.warning("%s: %s (%d tries); put off, the cursor goes on", key, exc, tries)
            self._defer(key, event)
            return
        except Exception as exc:  # a bug or an input nobody foresaw: never the daemon's end
            tries = self.state.attempts.get(key, 0) + 1
            self.state.attempts[key] = tries
            log.exception("%s %s: %s (attempt %d)", self.role, key, exc, tries)
            if tries < MAX_ERROR_ATTEMPTS:
                raise Transient(f"{key}: {type(exc).__name__}: {exc}") from exc
            outcome = {"outcome": "error", "reason": f"{type(exc).__name__}: {exc}"[:300]}
        if outcome is None:  # the subclass wants it retried later: the cursor goes on
            self._defer(key, event)
            return
        self.state.deferred.pop(key, None)
        if outcome.pop("drop", False):  # not the chain's record: never marks the id done
            log.warning("%s: %s; dropped", key, outcome.get("outcome"))
            return
        outcome.setdefault("block", int(event["blockNumber"]))
        outcome["at"] = time.time()
        self.state.done[key] = outcome
        self.state.attempts.pop(key, None)

    # -- what subclasses do ------------------------------------------------------------------
    def on_commit(self, batch_id: str, event: dict[str, Any]) -> dict[str, Any] | None:
        return {"outcome": "ignored"}

    def on_challenge(
        self, batch_id: str, dispute_id: int, event: dict[str, Any]
    ) -> dict[str, Any] | None:
        return {"outcome": "ignored"}


NOT_AN_OUTAGE = (
    FileNotFoundError,
    FileExistsError,
    IsADirectoryError,
    NotADirectoryError,
    PermissionError,
)
"""Errors reading the store that say something about the object, which the node controls
(absent, a directory or a file nobody may read where its records should be, a file
where a folder should be): findings about
the batch, never a reason to hold the cursor."""


FINDING_ERRNOS = frozenset({errno.ENAMETOOLONG, errno.ELOOP, errno.EINVAL})
"""Errors a node causes with the names it writes (a file name too long, a symbolic link
loop, a name the file system refuses): findings too."""

MAX_HELD = 3
"""An item that met an outage this many times in a row is put off (retried later, with the
item's own back-off) so the cursor goes on: whatever made it fail cannot hold every later
batch. An unreachable chain holds the cursor (every item needs it)."""


def store_unavailable(exc: BaseException) -> bool:
    """Whether an exception reading the store means the store is away (retry), not that the
    object is missing or bad (a finding)."""
    return (
        isinstance(exc, OSError)
        and not isinstance(exc, (*NOT_AN_OUTAGE, ArtifactError))
        and exc.errno not in FINDING_ERRNOS
    )


def rpc_connector(
    target: str, home: Path, devnet_port: int | None = None
) -> Callable[[], ChainClient]:
    """How a daemon opens its chain: ``"devnet"`` (the devnet of ``home``, by its URL: a
    daemon never starts or restarts a chain, it waits for it) or an ``http(s)://`` URL; the
    deployment is read from ``<home>/deployments/<chain id>.json``."""
    from ogkit.errors import ConfigError

    if target == "embedded":
        raise ConfigError(
            "a daemon needs a chain other processes share: use the devnet (`ogkit chain up`) "
            "or an RPC URL, not the embedded chain"
        )
    if target == "devnet":
        from ogkit.chain.devnet import Devnet

        url = Devnet(home, port=devnet_port).url
    elif target.startswith(("http://", "https://")):
        url = target
    else:
        raise ConfigError(f"unknown chain {target!r}: use 'devnet' or an http(s):// RPC URL")

    def connect() -> ChainClient:
        from ogkit.chain.connection import connect as open_chain

        return open_chain(url, home=home)

    return connect
