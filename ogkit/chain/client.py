"""A chain client for ogkit's settlement contracts: connect, transact safely, read, audit.

:func:`connect` opens one of three kinds of chain and returns a :class:`ChainClient` bound to
the deployment of the four contracts on it:

``"devnet"``
    the managed local anvil (:class:`ogkit.chain.devnet.Devnet`), started and deployed to on
    demand; it keeps its state under ``<home>/devnet``.
``"embedded"``
    an in-process eth-tester chain (py-evm) with freshly deployed contracts. Ephemeral: it
    lives as long as the client, needs no node and no Node.js - for pure-pip use and tests.
``"http://..."`` / ``"https://..."``
    any JSON-RPC node; the deployment is read from ``<home>/deployments/<chain id>.json``,
    written by :func:`deploy_to` (``ogkit chain deploy``).

:meth:`ChainClient.transact` signs locally with the sender's key and is safe to call from many
threads with the same key: nonces come from one lock-protected nonce manager per (endpoint,
chain, sender), and dropped transactions, nonce races, underpriced replacements and
connection errors are retried with exponential backoff and higher fees, within a bounded
number of attempts and time (:class:`RetryPolicy`). A revert is never retried; it raises
:class:`~ogkit.errors.SettlementError` with the decoded reason.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import requests
from eth_utils import to_checksum_address
from hexbytes import HexBytes
from web3 import Web3
from web3.contract import Contract
from web3.exceptions import (
    BadFunctionCallOutput,
    BlockNotFound,
    ProviderConnectionError,
    TimeExhausted,
    TooManyRequests,
    TransactionNotFound,
)
from web3.providers.rpc.utils import REQUEST_RETRY_ALLOWLIST, ExceptionRetryConfiguration
from web3.types import TxReceipt

from ogkit.chain.contracts import (
    CONTRACT_NAMES,
    Deployment,
    DeployParams,
    decode_revert,
    deploy_contracts,
    load_artifact,
)
from ogkit.settings import ogkit_home
from ogkit.errors import ChainError, ConfigError, SettlementError
from ogkit.keys import Signer

if TYPE_CHECKING:
    from eth_tester import EthereumTester

__all__ = [
    "ChainClient",
    "RetryPolicy",
    "artifacts_changed",
    "connect",
    "deploy_to",
    "deployment_is_live",
    "deployment_path",
    "load_deployment",
    "open_web3",
    "read_deployment_record",
    "redact_url",
]

logger = logging.getLogger(__name__)

EMBEDDED_ACCOUNTS = 20
"""Funded accounts of the embedded chain (eth-tester's keys 1..20); the first deploys."""
DEPLOYMENT_FORMAT = 1
CONNECT_TIMEOUT = 3.0
"""Seconds to open a connection to an RPC endpoint before giving up on it."""
READ_TIMEOUT = 60.0
"""Seconds to wait for an RPC answer once connected."""
_LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "0.0.0.0"}
_DEV_CLIENTS = ("anvil", "hardhat", "ethereumtester", "ganache")


# --------------------------------------------------------------------------- retry policy


@dataclass(frozen=True)
class RetryPolicy:
    """How hard :meth:`ChainClient.transact` tries before it gives up with a ChainError."""

    max_attempts: int = 6
    """Sends of one transaction, the first included."""
    max_seconds: float = 300.0
    """Time budget of one ``transact`` call, from the first send."""
    backoff: float = 0.25
    """First delay between attempts in seconds; doubles each time."""
    max_backoff: float = 8.0
    """Longest delay between attempts."""
    fee_bump: float = 1.25
    """Fee multiplier of a resend (nodes want at least +10 % to replace a pending one)."""
    receipt_timeout: float = 120.0
    """Seconds to wait for a receipt before resending with higher fees."""
    poll_interval: float = 1.0
    """Seconds between receipt polls."""
    drop_check_interval: float = 15.0
    """Seconds between checks that the node still knows the pending transaction."""

    @classmethod
    def local(cls) -> RetryPolicy:
        """Defaults for the devnet and the embedded chain (instant mining)."""
        return cls(
            max_seconds=60.0,
            backoff=0.05,
            max_backoff=1.0,
            receipt_timeout=20.0,
            poll_interval=0.02,
            drop_check_interval=2.0,
        )


# --------------------------------------------------------------------------- nonce manager


@dataclass
class _NonceState:
    lock: threading.Lock
    next: int | None = None


_NONCES: dict[tuple[str, int, str], _NonceState] = {}
_NONCES_LOCK = threading.Lock()


def _endpoint_key(w3: Web3) -> str:
    """Identity of the node behind ``w3``, shared by every Web3 object that talks to it."""
    provider = w3.provider
    tester = getattr(provider, "ethereum_tester", None)
    if tester is not None:
        return f"eth-tester:{id(tester)}"
    uri = getattr(provider, "endpoint_uri", None)
    return str(uri) if uri else f"provider:{id(provider)}"


def _nonce_state(endpoint: str, chain_id: int, sender: str) -> _NonceState:
    key = (endpoint, chain_id, sender.lower())
    with _NONCES_LOCK:
        state = _NONCES.get(key)
        if state is None:
            state = _NONCES[key] = _NonceState(threading.Lock())
        return state


def _forget_nonce(w3: Web3, chain_id: int, sender: str) -> None:
    """Make the next transaction of ``sender`` fetch its nonce from the node again."""
    state = _nonce_state(_endpoint_key(w3), chain_id, sender)
    with state.lock:
        state.next = None


@dataclass
class _Pending:
    """One logical transaction across its attempts: its nonce and every hash sent for it."""

    nonce: int | None = None
    sent: list[bytes] = field(default_factory=list)


# --------------------------------------------------------------------------- error handling

_NONCE_ERRORS = (
    "nonce too low",
    "nonce too high",
    "invalid transaction nonce",
    "invalid nonce",
    "nonce has already been used",
    "nonce is too low",
    "oldnonce",
)
_UNDERPRICED_ERRORS = (
    "underpriced",
    "fee too low",
    "less than block base fee",
    "lower than block's base fee",
    "gas price too low",
)
_KNOWN_ERRORS = ("already known", "already imported", "known transaction", "already in mempool")
_FUNDS_ERRORS = ("insufficient funds",)
_NO_BLOCK_ERRORS = ("no block found", "block not found", "blockoutofrange", "block height is")
_HISTORY_ERRORS = (
    "missing trie node",
    "header not found",
    "blockoutofrange",
    "block out of range",
    "historical state",
    "state not available",
    "state is not available",
    "pruned",
    "no state",
    "unknown block",
    "state histories haven't been fully indexed",
)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _is_connection_error(exc: BaseException) -> bool:
    for e in _chain(exc):
        if isinstance(
            e,
            requests.ConnectionError
            | requests.Timeout
            | ProviderConnectionError
            | TooManyRequests
            | ConnectionError
            | TimeoutError,
        ):
            return True
        if isinstance(e, requests.HTTPError):
            status = getattr(e.response, "status_code", None)
            if status in (408, 425, 429, 500, 502, 503, 504):
                return True
    return False


def _message(exc: BaseException) -> str:
    return " ".join(str(e) for e in _chain(exc)).lower()


def _classify(exc: BaseException) -> str:
    """What a failed ``eth_sendRawTransaction`` means: known, nonce, underpriced, funds,
    connection, revert or other."""
    text = _message(exc)
    if any(p in text for p in _KNOWN_ERRORS):
        return "known"
    if any(p in text for p in _NONCE_ERRORS):
        return "nonce"
    if any(p in text for p in _UNDERPRICED_ERRORS):
        return "underpriced"
    if any(p in text for p in _FUNDS_ERRORS):
        return "funds"
    if _is_connection_error(exc):
        return "connection"
    if decode_revert(exc) is not None:
        return "revert"
    return "other"


_SECRETISH = re.compile(r"^[A-Za-z0-9_\-]{16,}$")


def redact_url(url: str) -> str:
    """``url`` without credentials: no user info, no query, API-key-like path parts masked."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid URL>"
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    path = "/".join("***" if _SECRETISH.match(seg) else seg for seg in parts.path.split("/"))
    return urlunsplit((parts.scheme, netloc, path, "***" if parts.query else "", ""))


def _short_reason(exc: BaseException) -> str:
    """A one-line reason for a failed request that never quotes the URL (it may hold a key)."""
    for e in _chain(exc):
        if isinstance(e, requests.Timeout | TimeoutError):
            return "timed out"
    text = _message(exc)
    if "refused" in text:
        return "connection refused"
    if "name or service not known" in text or "nodename nor servname" in text:
        return "unknown host"
    if "certificate" in text or "ssl" in text:
        return "TLS error"
    for e in _chain(exc):
        if isinstance(e, requests.HTTPError) and e.response is not None:
            return f"HTTP {e.response.status_code}"
    return type(exc).__name__


def _fix_hint(url: str) -> str:
    host = urlsplit(url).hostname or ""
    if host in _LOCAL_HOSTS:
        return (
            "is the node running? Start the ogkit devnet with `ogkit chain up` "
            "(or use OGKIT_CHAIN=devnet / OGKIT_CHAIN=embedded), or fix the URL"
        )
    return "check the URL and your network, or point OGKIT_CHAIN at another endpoint"


def _fn_label(fn: Any) -> str:
    return str(getattr(fn, "fn_name", None) or getattr(fn, "abi_element_identifier", "call"))


# --------------------------------------------------------------------------- providers


def open_web3(url: str, *, timeout: float = CONNECT_TIMEOUT) -> Web3:
    """A Web3 on JSON-RPC endpoint ``url`` that is known to answer.

    Probes ``eth_chainId`` once with a short timeout and no retries, so that an unreachable
    endpoint fails within about ``timeout`` seconds with a :class:`ChainError` naming the URL
    (without credentials) and the fix. The returned Web3 retries idempotent reads on
    connection errors but never resends a transaction by itself (the client does).
    """
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"not an HTTP(S) JSON-RPC URL: {redact_url(url)}")
    shown = redact_url(url)
    probe = Web3(
        Web3.HTTPProvider(
            url,
            request_kwargs={"timeout": (timeout, timeout)},
            exception_retry_configuration=None,
        )
    )
    try:
        probe.eth.chain_id  # noqa: B018 - the request is the point
    except Exception as exc:
        raise ChainError(
            f"cannot reach the chain at {shown} ({_short_reason(exc)}): {_fix_hint(url)}"
        ) from None
    allowlist = [m for m in REQUEST_RETRY_ALLOWLIST if m != "eth_sendRawTransaction"]
    provider = Web3.HTTPProvider(
        url,
        request_kwargs={"timeout": (timeout, READ_TIMEOUT)},
        exception_retry_configuration=ExceptionRetryConfiguration(
            errors=(requests.ConnectionError, requests.Timeout, requests.HTTPError),
            retries=3,
            backoff_factor=0.2,
            method_allowlist=allowlist,
        ),
    )
    return Web3(provider)


def _embedded_web3() -> tuple[Web3, EthereumTester]:
    try:
        from eth_tester import EthereumTester, PyEVMBackend
        from web3 import EthereumTesterProvider
    except ImportError as exc:  # pragma: no cover - eth-tester is a dependency
        raise ChainError(
            "the embedded chain needs eth-tester with py-evm: pip install 'eth-tester[py-evm]'"
        ) from exc

    class _LockedTesterProvider(EthereumTesterProvider):
        """eth-tester is not thread-safe: one request at a time."""

        def __init__(self, tester: Any) -> None:
            super().__init__(tester)
            self._request_lock = threading.RLock()

        def make_request(self, method: Any, params: Any) -> Any:
            with self._request_lock:
                return super().make_request(method, params)

    state = PyEVMBackend.generate_genesis_state(num_accounts=EMBEDDED_ACCOUNTS)
    tester = EthereumTester(PyEVMBackend(genesis_state=state))
    return Web3(_LockedTesterProvider(tester)), tester


def _embedded_signer(index: int = 0) -> Signer:
    """Funded account ``index`` of the embedded chain (eth-tester's key ``index + 1``)."""
    from eth_account import Account

    name = "embedded-deployer" if index == 0 else f"embedded-{index}"
    return Signer(name, Account.from_key((index + 1).to_bytes(32, "big")), dev=True)


# --------------------------------------------------------------------------- the client


class ChainClient:
    """One chain plus the ogkit deployment on it; see the module docstring.

    ``name`` is ``"devnet"``, ``"embedded"`` or the RPC URL without credentials. ``deployer``
    is the funded deployer account on the devnet and the embedded chain (``None`` elsewhere);
    it owns the contracts and funds other accounts (:meth:`fund`).
    """

    def __init__(
        self,
        w3: Web3,
        deployment: Deployment,
        *,
        name: str,
        kind: str = "rpc",
        deployer: Signer | None = None,
        retry: RetryPolicy | None = None,
        tester: Any = None,
        first_block: int = 0,
    ) -> None:
        self.w3 = w3
        self.deployment = deployment
        self.name = name
        self.kind = kind
        self.deployer = deployer
        self.retry = retry or (RetryPolicy.local() if kind != "rpc" else RetryPolicy())
        self._tester = tester
        self.first_block = int(first_block)
        """The block the deployment started in; :meth:`events` looks no further back."""
        self._endpoint = _endpoint_key(w3)
        with self._errors("reading the chain id"):
            self.chain_id = int(w3.eth.chain_id)
        if deployment.chain_id != self.chain_id:
            raise ChainError(
                f"the deployment is for chain {deployment.chain_id} but {name} is chain "
                f"{self.chain_id}"
            )
        self._client_version: str | None = None

    def __repr__(self) -> str:
        return f"ChainClient(name={self.name!r}, chain_id={self.chain_id})"

    # ----------------------------------------------------------------- helpers

    @contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        """Turn connection failures into a ChainError that names the chain, not a traceback."""
        try:
            yield
        except ChainError:
            raise
        except Exception as exc:
            if _is_connection_error(exc):
                raise ChainError(
                    f"lost the connection to chain {self.name} while {doing} "
                    f"({_short_reason(exc)}); is the node still running?"
                ) from None
            raise

    @contextmanager
    def _provider_lock(self) -> Iterator[None]:
        """Hold the embedded chain's request lock while using eth-tester directly."""
        lock = getattr(self.w3.provider, "_request_lock", None)
        if lock is None:
            yield
            return
        with lock:
            yield

    def contract(self, name: str) -> Contract:
        """The deployed contract ``name``: OPGToken, ModelRegistry, NodeRegistry or
        InferenceSettlement."""
        by_name = {
            "OPGToken": self.deployment.token,
            "ModelRegistry": self.deployment.model_registry,
            "NodeRegistry": self.deployment.node_registry,
            "InferenceSettlement": self.deployment.settlement,
        }
        try:
            return by_name[name]
        except KeyError:
            raise ConfigError(
                f"unknown contract {name!r}; expected one of {', '.join(CONTRACT_NAMES)}"
            ) from None

    # ----------------------------------------------------------------- reads

    def block_number(self) -> int:
        with self._errors("reading the block number"):
            return int(self.w3.eth.block_number)

    def block_timestamp(self, block: int | str = "latest") -> int:
        with self._errors(f"reading block {block}"):
            try:
                return int(self.w3.eth.get_block(block)["timestamp"])
            except BlockNotFound:
                raise ChainError(f"block {block} does not exist on {self.name}") from None

    def call(self, fn: Any) -> Any:
        """``eth_call`` of contract function ``fn`` on the latest block; a revert raises
        SettlementError with the decoded reason."""
        return self._call(fn, "latest")

    def is_contract_call_at(self, fn: Any, block: int) -> Any:
        """``eth_call`` of ``fn`` against the state as of ``block`` (for audits of registry
        state at a past block). ChainError if the node cannot serve that state (pruned
        history, a block that does not exist yet, a restarted devnet without it)."""
        if isinstance(block, bool) or not isinstance(block, int) or block < 0:
            raise ConfigError(f"block must be a block number >= 0, got {block!r}")
        return self._call(fn, block)

    def _call(self, fn: Any, block: int | str) -> Any:
        label = _fn_label(fn)
        with self._errors(f"calling {label}"):
            try:
                return fn.call(block_identifier=block)
            except BlockNotFound:
                raise self._history_error(block, label) from None
            except BadFunctionCallOutput as exc:
                address = getattr(fn, "address", None)
                if address and len(self.w3.eth.get_code(address, block_identifier=block)) == 0:
                    raise ChainError(
                        f"no contract at {address} as of block {block} for {label} (the "
                        f"contracts were deployed in block {self.deployment.block_number})"
                    ) from None
                why = _short_message(exc)
                raise ChainError(f"call {label} on {self.name} failed: {why}") from exc
            except Exception as exc:
                if _is_connection_error(exc):
                    raise
                text = _message(exc)
                unserved = (*_NO_BLOCK_ERRORS, *_HISTORY_ERRORS)
                if block != "latest" and any(p in text for p in unserved):
                    raise self._history_error(block, label) from None
                reason = decode_revert(exc)
                if reason is None:
                    why = _short_message(exc)
                    raise ChainError(f"call {label} on {self.name} failed: {why}") from exc
                raise SettlementError(f"{label} reverted: {reason}", reason=reason) from None

    def _history_error(self, block: int | str, label: str) -> ChainError:
        latest = self.block_number()
        if isinstance(block, int) and block > latest:
            return ChainError(f"{self.name} has no block {block} yet (latest is {latest})")
        hint = (
            "the devnet keeps no state from before its last restart; replay the events "
            "instead (ChainClient.events)"
            if self.kind == "devnet"
            else "its history is pruned; use an archive node or replay the events"
        )
        return ChainError(
            f"{self.name} cannot serve the state at block {block} for {label}: {hint}"
        )

    def events(
        self,
        contract: str,
        event: str,
        from_block: int = 0,
        to_block: int | str = "latest",
        argument_filters: dict[str, Any] | None = None,
        *,
        chunk: int = 10_000,
    ) -> list[dict[str, Any]]:
        """Decoded logs of ``contract``'s ``event`` in ``[from_block, to_block]``.

        Each item is a plain dict: ``event``, ``args`` (a dict; bytes stay bytes),
        ``blockNumber``, ``blockHash``, ``transactionHash`` (0x-hex), ``transactionIndex``,
        ``logIndex``, ``address``. Large ranges are fetched in chunks of ``chunk`` blocks
        (halved when the node says the range or result is too large).
        """
        c = self.contract(contract)
        try:
            ev = c.events[event]
        except Exception:
            names = sorted(e["name"] for e in c.abi if e.get("type") == "event")
            raise ConfigError(
                f"{contract} has no event {event!r}; it has {', '.join(names)}"
            ) from None
        with self._errors(f"reading {event} logs"):
            last = self.block_number() if to_block == "latest" else int(to_block)
            out: list[dict[str, Any]] = []
            start = max(int(from_block), self.first_block, 0)
            size = max(int(chunk), 1)
            while start <= last:
                end = min(start + size - 1, last)
                try:
                    logs = ev().get_logs(
                        argument_filters=argument_filters, from_block=start, to_block=end
                    )
                except Exception as exc:
                    text = _message(exc)
                    too_big = any(w in text for w in ("range", "limit", "too many", "exceed"))
                    if too_big and end > start and not _is_connection_error(exc):
                        size = max((end - start + 1) // 2, 1)
                        continue
                    raise
                out.extend(_plain_log(log) for log in logs)
                start = end + 1
            return out

    # ----------------------------------------------------------------- transactions

    def transact(self, fn: Any, signer: Signer, *, gas: int | None = None) -> TxReceipt:
        """Build, sign (with ``signer.local_account``), send contract call ``fn`` and wait for
        its receipt.

        Thread-safe per sender. Retries (see :class:`RetryPolicy`) dropped or stuck
        transactions, nonce errors, underpriced replacements and connection errors, with
        exponential backoff and higher fees; gives up with a ChainError. A revert - at gas
        estimation or mined - raises SettlementError with the decoded reason (and the
        transaction hash when mined) and is never retried. ``gas`` skips estimation.
        """
        label = _fn_label(fn)
        sender = signer.address
        if gas is None:
            gas = self._estimate(label, sender, lambda: fn.estimate_gas({"from": sender}))
        try:
            built = fn.build_transaction(
                {
                    "from": sender,
                    "gas": gas,
                    "nonce": 0,
                    "chainId": self.chain_id,
                    "maxFeePerGas": 1,
                    "maxPriorityFeePerGas": 1,
                }
            )
        except Exception as exc:
            raise ConfigError(f"cannot build the {label} transaction: {exc}") from exc
        base = {"to": built["to"], "data": built.get("data", "0x"), "value": built.get("value", 0)}
        return self._execute(base, signer, int(gas), label)

    def transfer_eth(self, signer: Signer, to: str, wei: int) -> TxReceipt:
        """Send ``wei`` of the native currency from ``signer`` to ``to``, as :meth:`transact`."""
        to = to_checksum_address(to)
        sender = signer.address
        call = {"from": sender, "to": to, "value": int(wei)}
        gas = self._estimate("transfer", sender, lambda: self.w3.eth.estimate_gas(call))
        base = {"to": to, "data": "0x", "value": int(wei)}
        return self._execute(base, signer, gas, "transfer")

    def _estimate(self, label: str, sender: str, estimate: Callable[[], int]) -> int:
        delay = self.retry.backoff
        for attempt in range(1, 4):
            try:
                estimated = int(estimate())
                return int(estimated * 1.2) + 10_000
            except Exception as exc:
                if _is_connection_error(exc) and attempt < 3:
                    why = _short_reason(exc)
                    logger.info("%s: gas estimation failed (%s), retrying", label, why)
                    time.sleep(delay)
                    delay = min(delay * 2, self.retry.max_backoff)
                    continue
                if _is_connection_error(exc):
                    raise ChainError(
                        f"{label} from {sender}: cannot reach {self.name} "
                        f"({_short_reason(exc)}); is the node still running?"
                    ) from None
                if any(p in _message(exc) for p in _FUNDS_ERRORS):
                    raise ChainError(self._funds_message(label, sender)) from None
                reason = decode_revert(exc)
                if reason is None:
                    raise ChainError(
                        f"{label} from {sender}: gas estimation failed: {_short_message(exc)}"
                    ) from exc
                logger.info("%s from %s reverted at estimation: %s", label, sender, reason)
                raise SettlementError(f"{label} reverted: {reason}", reason=reason) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _funds_message(self, label: str, sender: str) -> str:
        hint = "fund it with ChainClient.fund" if self.deployer is not None else "send it ETH"
        return f"{sender} has too little ETH to pay for {label} on {self.name}: {hint}"

    def _fees(self, previous: dict[str, int] | None, bump: bool) -> dict[str, int]:
        """EIP-1559 fees (legacy gas price on chains without a base fee), never below the
        previous attempt's and ``fee_bump`` times them when ``bump``."""
        factor = self.retry.fee_bump if bump else 1.0

        def at_least(value: int, key: str) -> int:
            if previous is None or key not in previous:
                return value
            return max(value, math.ceil(previous[key] * factor))

        base_fee = self.w3.eth.get_block("latest").get("baseFeePerGas")
        if base_fee is None:
            return {"gasPrice": at_least(int(self.w3.eth.gas_price), "gasPrice")}
        try:
            tip = int(self.w3.eth.max_priority_fee)
        except Exception as exc:
            if _is_connection_error(exc):
                raise
            tip = 10**9
        tip = at_least(tip, "maxPriorityFeePerGas")
        max_fee = at_least(2 * int(base_fee) + tip, "maxFeePerGas")
        return {"maxFeePerGas": max(max_fee, tip), "maxPriorityFeePerGas": tip}

    def _pending_nonce(self, sender: str) -> int:
        return int(self.w3.eth.get_transaction_count(sender, "pending"))

    def _known(self, hashes: list[bytes]) -> bool:
        """Whether the node knows any of ``hashes`` (pending or mined)."""
        for h in hashes:
            try:
                self.w3.eth.get_transaction(h)
                return True
            except TransactionNotFound:
                continue
            except Exception as exc:
                if _is_connection_error(exc):
                    return True  # cannot tell: assume it is there rather than resend
                continue
        return False

    def _receipt(self, hashes: list[bytes]) -> TxReceipt | None:
        for h in reversed(hashes):
            try:
                return self.w3.eth.get_transaction_receipt(h)
            except (TransactionNotFound, TimeExhausted):
                continue
        return None

    def _wait(self, hashes: list[bytes], deadline: float) -> TxReceipt | None:
        """Poll for a receipt of any of ``hashes`` until ``deadline``; None once the node has
        forgotten all of them (dropped) or at the deadline (stuck)."""
        policy = self.retry
        next_check = time.monotonic() + policy.drop_check_interval
        while True:
            try:
                receipt = self._receipt(hashes)
                if receipt is not None:
                    return receipt
                now = time.monotonic()
                if now >= next_check:
                    next_check = now + policy.drop_check_interval
                    if not self._known(hashes):
                        logger.info("transaction %s was dropped", HexBytes(hashes[-1]).to_0x_hex())
                        return None
            except Exception as exc:
                if not _is_connection_error(exc):
                    raise
                logger.info("waiting for a receipt: %s; still trying", _short_reason(exc))
            if time.monotonic() >= deadline:
                return None
            time.sleep(policy.poll_interval)

    def _execute(self, base: dict[str, Any], signer: Signer, gas: int, label: str) -> TxReceipt:
        state = _nonce_state(self._endpoint, self.chain_id, signer.address)
        tx = _Pending()
        try:
            return self._attempts(tx, state, base, signer, gas, label)
        except BaseException:
            self._abandon(tx, state)
            raise

    def _abandon(self, tx: _Pending, state: _NonceState) -> None:
        """Give back a reserved nonce that no sent transaction uses, so that it leaves no gap
        (the next transaction of the sender fetches its nonce from the node again)."""
        if tx.nonce is None or (tx.sent and self._known(tx.sent)):
            return
        with state.lock:
            state.next = tx.nonce if state.next == tx.nonce + 1 else None

    def _attempts(
        self,
        tx: _Pending,
        state: _NonceState,
        base: dict[str, Any],
        signer: Signer,
        gas: int,
        label: str,
    ) -> TxReceipt:
        sender = signer.address
        account = signer.local_account
        policy = self.retry
        start = time.monotonic()
        fees: dict[str, int] | None = None
        bump = False
        delay = policy.backoff
        problem = ""
        attempt = 0

        def backoff() -> None:
            nonlocal delay
            time.sleep(delay)
            delay = min(delay * 2, policy.max_backoff)

        def renew_nonce() -> None:
            with state.lock:
                state.next = None
            tx.nonce, tx.sent = None, []

        while True:
            attempt += 1
            elapsed = time.monotonic() - start
            if attempt > policy.max_attempts or elapsed > policy.max_seconds:
                raise ChainError(
                    f"{label} from {sender} did not get mined on {self.name} after "
                    f"{attempt - 1} attempts in {elapsed:.0f} s (last problem: {problem}); "
                    "check the node and the account's pending transactions"
                )
            try:
                fees = self._fees(fees, bump)
            except Exception as exc:
                if not _is_connection_error(exc):
                    raise ChainError(
                        f"{label}: cannot read fees from {self.name}: {_short_message(exc)}"
                    ) from exc
                problem = f"reading fees: {_short_reason(exc)}"
                backoff()
                continue
            bump = False

            error: Exception | None = None
            with state.lock:
                try:
                    if tx.nonce is None:
                        if state.next is None:
                            state.next = self._pending_nonce(sender)
                        tx.nonce = state.next
                        state.next += 1
                except Exception as exc:
                    if not _is_connection_error(exc):
                        raise
                    problem = f"reading the nonce: {_short_reason(exc)}"
                    backoff()
                    continue
                signed = account.sign_transaction(
                    {
                        **base,
                        **fees,
                        "from": sender,
                        "gas": gas,
                        "nonce": tx.nonce,
                        "chainId": self.chain_id,
                    }
                )
                tx_hash = bytes(signed.hash)
                try:
                    self.w3.eth.send_raw_transaction(signed.raw_transaction)
                    outcome = "sent"
                except Exception as exc:
                    outcome, error = _classify(exc), exc
                if outcome in ("sent", "known", "connection"):
                    tx.sent.append(tx_hash)
            hex_hash = HexBytes(tx_hash).to_0x_hex()

            if outcome == "sent":
                logger.debug("%s from %s sent as %s (nonce %s)", label, sender, hex_hash, tx.nonce)
            elif outcome == "known":
                logger.debug("%s: the node already knows %s", label, hex_hash)
            elif error is None:  # pragma: no cover - every other outcome comes from an error
                raise AssertionError(outcome)
            elif outcome == "connection":
                problem = f"sending: {_short_reason(error)}"
                logger.info("%s from %s: %s; retrying", label, sender, problem)
                backoff()
                if not self._known(tx.sent):
                    continue  # resend the same signed transaction
            elif outcome == "nonce":
                if not self._known([*tx.sent, tx_hash]):
                    problem = f"nonce {tx.nonce} rejected ({_short_message(error)})"
                    logger.info("%s from %s: %s; fetching the nonce again", label, sender, problem)
                    renew_nonce()
                    continue
                tx.sent.append(tx_hash)  # an earlier send of ours got through after all
            elif outcome == "underpriced":
                problem = f"underpriced ({_short_message(error)})"
                if "replacement" in _message(error) and not self._known(tx.sent):
                    renew_nonce()  # another transaction holds this nonce: take a fresh one
                logger.info("%s from %s: %s; raising fees", label, sender, problem)
                bump = True
                backoff()
                continue
            elif outcome == "funds":
                raise ChainError(self._funds_message(label, sender)) from None
            elif outcome == "revert":
                reason = decode_revert(error) or "reverted"
                logger.info("%s from %s reverted: %s", label, sender, reason)
                raise SettlementError(f"{label} reverted: {reason}", reason=reason) from None
            else:
                raise ChainError(
                    f"{label} from {sender} was rejected by {self.name}: {_short_message(error)}"
                ) from None

            deadline = min(time.monotonic() + policy.receipt_timeout, start + policy.max_seconds)
            receipt = self._wait(tx.sent, deadline)
            if receipt is not None:
                return self._check_receipt(receipt, label, sender)
            # Not mined: dropped, or stuck behind low fees. Was the nonce used by another tx?
            problem = f"{hex_hash} not mined (dropped or stuck)"
            try:
                mined_nonce = int(self.w3.eth.get_transaction_count(sender, "latest"))
                receipt = self._receipt(tx.sent)
            except Exception as exc:
                if not _is_connection_error(exc):
                    raise
                backoff()
                continue
            if receipt is not None:
                return self._check_receipt(receipt, label, sender)
            if tx.nonce is not None and mined_nonce > tx.nonce:
                logger.warning(
                    "%s from %s: nonce %s was used by another transaction; sending again",
                    label,
                    sender,
                    tx.nonce,
                )
                renew_nonce()
            else:
                logger.warning("%s from %s: %s; resending with higher fees", label, sender, problem)
                bump = True
            backoff()

    def _check_receipt(self, receipt: TxReceipt, label: str, sender: str) -> TxReceipt:
        hex_hash = HexBytes(receipt["transactionHash"]).to_0x_hex()
        if receipt["status"] == 1:
            gas = receipt["gasUsed"]
            logger.debug("%s from %s mined in %s, gas %s", label, sender, hex_hash, gas)
            return receipt
        reason = self._replay_reason(receipt) or "reverted without a reason"
        logger.info("%s from %s reverted in %s: %s", label, sender, hex_hash, reason)
        raise SettlementError(f"{label} reverted: {reason}", reason=reason, tx_hash=hex_hash)

    def _replay_reason(self, receipt: TxReceipt) -> str | None:
        """Re-run a mined, failed transaction as a call on its parent block to learn why."""
        try:
            tx = self.w3.eth.get_transaction(receipt["transactionHash"])
            call = {"from": tx["from"], "to": tx["to"], "data": tx["input"], "value": tx["value"]}
            self.w3.eth.call(call, block_identifier=max(int(receipt["blockNumber"]) - 1, 0))
        except Exception as exc:
            return decode_revert(exc)
        return None

    # ----------------------------------------------------------------- dev chains

    def _dev_chain(self) -> bool:
        if self.kind in ("devnet", "embedded"):
            return True
        if self._client_version is None:
            with self._errors("reading the client version"):
                self._client_version = str(self.w3.client_version)
        version = self._client_version.lower().replace("-", "")
        return any(version.startswith(c) for c in _DEV_CLIENTS)

    def increase_time(self, seconds: int) -> None:
        """Move the chain's clock ``seconds`` ahead and mine a block there (dev chains only:
        the devnet, the embedded chain, or an anvil/hardhat URL). ChainError elsewhere."""
        if seconds < 0:
            raise ConfigError(f"seconds must be >= 0, got {seconds}")
        if self._tester is not None:
            # py-evm mines the time-travel block one second before the requested time, and
            # eth-tester refuses a time before its pending block's: ask for enough.
            target = self.block_timestamp() + int(seconds)
            with self._provider_lock():
                pending = int(self._tester.get_block_by_number("pending")["timestamp"])
                self._tester.time_travel(max(target + 1, pending + 1))
            return
        if not self._dev_chain():
            raise ChainError(
                f"cannot move time on {self.name}: it is not a dev chain (only the devnet, "
                "the embedded chain and anvil/hardhat nodes support it)"
            )
        with self._errors("moving time"):
            for method, params in (("evm_increaseTime", [int(seconds)]), ("evm_mine", [])):
                response = self.w3.provider.make_request(method, params)  # type: ignore[arg-type]
                if isinstance(response, Mapping) and response.get("error"):
                    raise ChainError(f"{method} failed on {self.name}: {response['error']}")

    def fund(self, address: str, *, eth: int = 10**20, opg: int = 0) -> None:
        """Send ``eth`` wei and ``opg`` OPG base units to ``address`` from the deployer
        (devnet and embedded chain only)."""
        if self.deployer is None:
            raise ChainError(
                f"fund works on the devnet and the embedded chain only; on {self.name} send "
                "ETH and OPG from a funded account"
            )
        address = to_checksum_address(address)
        if eth > 0:
            self.transfer_eth(self.deployer, address, eth)
        if opg > 0:
            self.transact(self.contract("OPGToken").functions.transfer(address, opg), self.deployer)
        logger.info("funded %s with %s wei and %s OPG units", address, eth, opg)


def _plain(value: Any) -> Any:
    """AttributeDicts to dicts, HexBytes to bytes, recursively."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, HexBytes):
        return bytes(value)
    return value


def _plain_log(log: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "event": log["event"],
        "args": _plain(log["args"]),
        "address": log["address"],
        "blockNumber": int(log["blockNumber"]),
        "blockHash": HexBytes(log["blockHash"]).to_0x_hex(),
        "transactionHash": HexBytes(log["transactionHash"]).to_0x_hex(),
        "transactionIndex": int(log["transactionIndex"]),
        "logIndex": int(log["logIndex"]),
    }


def _short_message(exc: BaseException) -> str:
    """A one-line description of ``exc`` for an error message; HTTP-level errors are reduced
    to their kind, since their text quotes the URL (which may hold an API key)."""
    if any(isinstance(e, requests.RequestException) for e in _chain(exc)):
        return _short_reason(exc)
    text = str(exc)
    return text if len(text) <= 200 else text[:200] + "..."


# --------------------------------------------------------------------------- deployment files


def deployment_path(home: Path | None, chain_id: int) -> Path:
    """``<home>/deployments/<chain_id>.json``."""
    return (Path(home) if home is not None else ogkit_home()) / "deployments" / f"{chain_id}.json"


def _artifact_hashes() -> dict[str, dict[str, str]]:
    out = {}
    for name in CONTRACT_NAMES:
        artifact = load_artifact(name)
        code = bytes.fromhex(str(artifact["bytecode"]).removeprefix("0x"))
        out[name] = {
            "bytecodeSha256": hashlib.sha256(code).hexdigest(),
            "sourceHash": str(artifact.get("sourceHash", "")),
        }
    return out


def _params_to_json(params: DeployParams) -> dict[str, Any]:
    data = asdict(params)
    data["initial_measurements"] = ["0x" + bytes(m).hex() for m in params.initial_measurements]
    return data


def _params_from_json(data: Mapping[str, Any]) -> DeployParams:
    known = {f.name for f in fields(DeployParams)}
    kwargs = {k: v for k, v in data.items() if k in known}
    kwargs["initial_measurements"] = tuple(
        bytes.fromhex(str(m).removeprefix("0x")) for m in data.get("initial_measurements", [])
    )
    return DeployParams(**kwargs)


def _write_json_atomic(path: Path, data: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_deployment_record(home: Path | None, chain_id: int) -> dict[str, Any] | None:
    """The raw deployment file of ``chain_id`` as a dict, or None if there is none."""
    path = deployment_path(home, chain_id)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, json.JSONDecodeError) as exc:
        raise ChainError(
            f"deployment file {path} is unreadable ({exc}); delete it and deploy again"
        ) from None
    if not isinstance(record, dict) or int(record.get("chain_id", -1)) != int(chain_id):
        raise ChainError(
            f"deployment file {path} is not a deployment for chain {chain_id}; "
            "delete it and deploy again"
        )
    return record


def _deployment_from_record(record: Mapping[str, Any], w3: Web3) -> Deployment:
    try:
        addresses = record["addresses"]
        contracts = {
            name: w3.eth.contract(
                address=to_checksum_address(addresses[name]), abi=load_artifact(name)["abi"]
            )
            for name in CONTRACT_NAMES
        }
        return Deployment(
            token=contracts["OPGToken"],
            model_registry=contracts["ModelRegistry"],
            node_registry=contracts["NodeRegistry"],
            settlement=contracts["InferenceSettlement"],
            params=_params_from_json(record.get("params", {})),
            chain_id=int(record["chain_id"]),
            deployer=to_checksum_address(record["deployer"]),
            block_number=int(record["block_number"]),
            gas_used=dict(record.get("gas_used", {})),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ChainError(
            f"deployment record for chain {record.get('chain_id')} is incomplete ({exc!r}); "
            "delete it and deploy again"
        ) from None


def load_deployment(home: Path | None, chain_id: int, w3: Web3) -> Deployment | None:
    """The deployment recorded in ``<home>/deployments/<chain_id>.json`` bound to ``w3``, or
    None if there is no such file. Warns when the artefacts changed since it was deployed."""
    record = read_deployment_record(home, chain_id)
    if record is None:
        return None
    if artifacts_changed(record):
        logger.warning(
            "the contract artefacts changed since the deployment on chain %s; the deployed "
            "contracts may not match this ogkit",
            chain_id,
        )
    return _deployment_from_record(record, w3)


def artifacts_changed(record: Mapping[str, Any]) -> bool:
    """Whether the artefacts differ from those the recorded deployment was built from."""
    recorded = record.get("artifacts") or {}
    current = _artifact_hashes()
    return any(
        (recorded.get(name) or {}).get("bytecodeSha256") != current[name]["bytecodeSha256"]
        for name in CONTRACT_NAMES
    )


def deployment_is_live(w3: Web3, record: Mapping[str, Any]) -> bool:
    """Whether the recorded contracts exist on the chain behind ``w3`` (code at every address
    and, where recorded, the same block hash at the deployment block)."""
    for address in (record.get("addresses") or {}).values():
        if len(w3.eth.get_code(to_checksum_address(address))) == 0:
            return False
    if len(record.get("addresses") or {}) != len(CONTRACT_NAMES):
        return False
    block_hash = record.get("block_hash")
    if block_hash:
        try:
            block = w3.eth.get_block(int(record["block_number"]))
        except BlockNotFound:
            return False
        if HexBytes(block["hash"]).to_0x_hex() != str(block_hash).lower():
            return False
    return True


def _web3_of(client_or_w3: ChainClient | Web3) -> Web3:
    return client_or_w3.w3 if isinstance(client_or_w3, ChainClient) else client_or_w3


def deploy_to(
    client_or_w3: ChainClient | Web3,
    deployer: Signer,
    params: DeployParams | None = None,
    *,
    home: Path | None = None,
) -> Deployment:
    """Deploy the four contracts from ``deployer`` (signed locally) and record them.

    Writes ``<home>/deployments/<chain id>.json`` atomically: addresses, deployer, deployment
    block and its hash, the :class:`DeployParams`, gas used and the artefacts' hashes. With a
    :class:`ChainClient`, its ``deployment`` is replaced by the new one.
    """
    from web3.middleware import SignAndSendRawMiddlewareBuilder

    w3 = _web3_of(client_or_w3)
    params = params or DeployParams()
    signing = Web3(w3.provider)
    signing.middleware_onion.inject(
        SignAndSendRawMiddlewareBuilder.build(deployer.local_account), layer=0
    )
    chain_id = int(w3.eth.chain_id)
    first_block = int(w3.eth.block_number) + 1
    logger.info("deploying the ogkit contracts to chain %s from %s", chain_id, deployer.address)
    try:
        deployed = deploy_contracts(signing, deployer.address, params)
    finally:
        _forget_nonce(w3, chain_id, deployer.address)
    block = w3.eth.get_block(deployed.block_number)
    record = {
        "format": DEPLOYMENT_FORMAT,
        "chain_id": chain_id,
        "deployer": deployed.deployer,
        "block_number": deployed.block_number,
        "first_block": first_block,
        "block_hash": HexBytes(block["hash"]).to_0x_hex(),
        "deployed_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "addresses": deployed.addresses,
        "params": _params_to_json(params),
        "gas_used": dict(deployed.gas_used),
        "artifacts": _artifact_hashes(),
    }
    path = deployment_path(home, chain_id)
    _write_json_atomic(path, record)
    logger.info("wrote deployment of chain %s to %s", chain_id, path)
    deployment = _deployment_from_record(record, w3)
    if isinstance(client_or_w3, ChainClient):
        client_or_w3.deployment = deployment
    return deployment


# --------------------------------------------------------------------------- connect


def _connect_embedded(params: DeployParams | None) -> ChainClient:
    w3, tester = _embedded_web3()
    deployer = _embedded_signer(0)
    deployment = deploy_contracts(w3, deployer.address, params or DeployParams())
    return ChainClient(
        w3, deployment, name="embedded", kind="embedded", deployer=deployer, tester=tester
    )


def _connect_rpc(url: str, home: Path | None, params: DeployParams | None) -> ChainClient:
    w3 = open_web3(url)
    shown = redact_url(url)
    chain_id = int(w3.eth.chain_id)
    record = read_deployment_record(home, chain_id)
    path = deployment_path(home, chain_id)
    if record is None:
        raise ChainError(
            f"no ogkit deployment for chain {chain_id} ({shown}): {path} is missing. Deploy "
            "the contracts with `ogkit chain deploy` or "
            "`ogkit.chain.client.deploy_to(open_web3(url), signer)`"
        )
    if not deployment_is_live(w3, record):
        raise ChainError(
            f"the deployment in {path} is not on chain {chain_id} ({shown}): no contract code "
            "at its addresses (was the chain reset?). Deploy again with `ogkit chain deploy`"
        )
    deployment = load_deployment(home, chain_id, w3)
    assert deployment is not None
    if params is not None and params != deployment.params:
        logger.warning("chain %s was deployed with other parameters; ignoring these", shown)
    first_block = int(record.get("first_block", 0))
    return ChainClient(w3, deployment, name=shown, kind="rpc", first_block=first_block)


def connect(
    target: str | None = None, *, home: Path | None = None, params: DeployParams | None = None
) -> ChainClient:
    """A client for ``target``: ``"devnet"``, ``"embedded"`` or an ``http(s)://`` URL.

    ``target`` defaults to ``$OGKIT_CHAIN``, then ``"devnet"``.

    - ``"devnet"`` starts the ogkit devnet if needed (and deploys to it on first start).
    - ``"embedded"`` creates an in-process eth-tester chain and deploys the contracts to it:
      ephemeral (gone with the client), no node needed - for pure-pip use and unit tests.
    - a URL connects to that node and reads the deployment from
      ``<home>/deployments/<chain id>.json`` (ChainError if there is none).

    ``params`` are used when contracts get deployed (devnet first start, embedded).
    An unreachable endpoint raises ChainError within a few seconds.
    """
    target = (target or os.environ.get("OGKIT_CHAIN") or "devnet").strip()
    home = Path(home) if home is not None else ogkit_home()
    if target == "devnet":
        from ogkit.chain.devnet import Devnet

        return Devnet(home).client(params=params)
    if target == "embedded":
        return _connect_embedded(params)
    if target.startswith(("http://", "https://")):
        return _connect_rpc(target, home, params)
    raise ConfigError(
        f"unknown chain {redact_url(target) if '://' in target else target!r}: use 'devnet', "
        "'embedded' or an http(s):// JSON-RPC URL (argument or OGKIT_CHAIN)"
    )
