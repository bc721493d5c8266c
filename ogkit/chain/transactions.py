"""Sending transactions: one :func:`transact` for every sender, safe under threads and flaky nodes.

``transact(w3, fn, sender)`` sends contract call (or constructor, or plain value transfer)
``fn`` and returns its receipt. How it sends depends on ``sender``:

a :class:`~ogkit.keys.Signer` or an eth-account ``LocalAccount``
    signed here; the key never leaves the process and the node needs no unlocked account.
    Nonces come from one lock-protected nonce manager per (endpoint, chain, sender), so many
    threads may send with the same key. Dropped transactions, nonce races, underpriced
    replacements and connection errors are retried with exponential backoff and higher fees,
    within a bounded number of attempts and time (:class:`RetryPolicy`). web3 has no nonce
    manager or replacement logic, so this module keeps its own; fees start from what web3
    reads off the node (base fee, ``eth_maxPriorityFeePerGas``).
an address
    the node signs (an unlocked dev account, or a Web3 whose signing middleware holds the
    key): web3's own ``transact`` and ``wait_for_transaction_receipt`` do the work.

Either way a revert is never retried: it raises :class:`~ogkit.errors.SettlementError` with
the decoded reason (:func:`ogkit.chain.rpc.decode_revert`) and, once mined, the hash.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from eth_utils import to_checksum_address
from hexbytes import HexBytes
from web3 import Web3
from web3.exceptions import TimeExhausted, TransactionNotFound
from web3.types import TxReceipt

from ogkit.chain.rpc import (
    call_label,
    classify_send_error,
    decode_revert,
    error_text,
    is_connection_error,
    is_funds_error,
    redact_url,
    short_message,
    short_reason,
)
from ogkit.errors import ChainError, ConfigError, SettlementError

__all__ = ["RetryPolicy", "forget_nonce", "transact"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetryPolicy:
    """How hard :func:`transact` tries before it gives up with a ChainError."""

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


def forget_nonce(w3: Web3, chain_id: int, sender: str | None = None) -> None:
    """Make the next transaction of ``sender`` (of every sender when None) fetch its nonce
    from the node again: after something other than :func:`transact` sent with its key, or
    after the chain was put back to an earlier state."""
    if sender is not None:
        states = [_nonce_state(_endpoint_key(w3), chain_id, sender)]
    else:
        endpoint = _endpoint_key(w3)
        with _NONCES_LOCK:
            states = [s for (e, c, _), s in _NONCES.items() if e == endpoint and c == chain_id]
    for state in states:
        with state.lock:
            state.next = None


@dataclass
class _Pending:
    """One logical transaction across its attempts: its nonce and every hash sent for it."""

    nonce: int | None = None
    sent: list[bytes] = field(default_factory=list)


# --------------------------------------------------------------------------- receipts


def _replay_reason(w3: Web3, receipt: TxReceipt) -> str | None:
    """Re-run a mined, failed transaction as a call on its parent block to learn why."""
    try:
        tx = w3.eth.get_transaction(receipt["transactionHash"])
        call = {"from": tx["from"], "to": tx["to"], "data": tx["input"], "value": tx["value"]}
        w3.eth.call(call, block_identifier=max(int(receipt["blockNumber"]) - 1, 0))
    except Exception as exc:
        return decode_revert(exc)
    return None


def _check_receipt(w3: Web3, receipt: TxReceipt, label: str, sender: str) -> TxReceipt:
    hex_hash = HexBytes(receipt["transactionHash"]).to_0x_hex()
    if receipt["status"] == 1:
        gas = receipt["gasUsed"]
        logger.debug("%s from %s mined in %s, gas %s", label, sender, hex_hash, gas)
        return receipt
    reason = _replay_reason(w3, receipt) or "reverted without a reason"
    logger.info("%s from %s reverted in %s: %s", label, sender, hex_hash, reason)
    raise SettlementError(f"{label} reverted: {reason}", reason=reason, tx_hash=hex_hash)


# --------------------------------------------------------------------------- transact


def transact(
    w3: Web3,
    fn: Any,
    sender: Any,
    *,
    gas: int | None = None,
    retry: RetryPolicy | None = None,
    chain_id: int | None = None,
    chain_name: str | None = None,
    funds_hint: str = "send it ETH",
) -> TxReceipt:
    """Send ``fn`` from ``sender``, wait for it to be mined and return the receipt.

    ``fn`` is a web3 contract function or constructor call, or a mapping with ``to``,
    ``value`` and optionally ``data`` (a plain transfer). ``sender`` is a
    :class:`~ogkit.keys.Signer` or ``LocalAccount`` (signed here, nonce-managed and retried
    per ``retry``, see the module docstring) or an address the node signs for. ``gas`` skips
    estimation. A revert - at gas estimation or mined - raises SettlementError with the
    decoded ``reason`` (and ``tx_hash`` when mined); giving up raises ChainError.
    ``chain_id`` saves a request when known; ``chain_name`` and ``funds_hint`` go into error
    messages.
    """
    policy = retry or RetryPolicy()
    account = getattr(sender, "local_account", None)
    if account is None and hasattr(sender, "key") and hasattr(sender, "address"):
        account = sender
    if account is None:
        return _transact_unlocked(w3, fn, str(sender), gas, policy)
    name = chain_name or _chain_name(w3)
    cid = int(w3.eth.chain_id) if chain_id is None else int(chain_id)
    return _Send(w3, cid, policy, name, funds_hint).run(fn, account, gas)


def _chain_name(w3: Web3) -> str:
    uri = getattr(w3.provider, "endpoint_uri", None)
    return redact_url(str(uri)) if uri else "the chain"


def _transact_unlocked(
    w3: Web3, fn: Any, sender: str, gas: int | None, policy: RetryPolicy
) -> TxReceipt:
    """Let the node (or web3's signing middleware) sign for ``sender``."""
    label = "transfer" if isinstance(fn, Mapping) else call_label(fn)
    params: dict[str, Any] = {"from": sender} if gas is None else {"from": sender, "gas": gas}
    try:
        if isinstance(fn, Mapping):
            tx_hash = w3.eth.send_transaction({**fn, **params})
        else:
            tx_hash = fn.transact(params)
    except Exception as exc:
        reason = decode_revert(exc)
        if reason is None:
            raise ChainError(f"{label} from {sender} could not be sent: {exc}") from exc
        logger.info("%s from %s reverted: %s", label, sender, reason)
        raise SettlementError(f"{label} reverted: {reason}", reason=reason) from exc
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=policy.receipt_timeout)
    return _check_receipt(w3, receipt, label, sender)


class _Send:
    """One signed :func:`transact` call: estimation, fees, nonce, sends, waits, resends."""

    def __init__(
        self, w3: Web3, chain_id: int, policy: RetryPolicy, name: str, funds_hint: str
    ) -> None:
        self.w3 = w3
        self.chain_id = chain_id
        self.retry = policy
        self.name = name
        self.funds_hint = funds_hint

    def run(self, fn: Any, account: Any, gas: int | None) -> TxReceipt:
        sender = account.address
        if isinstance(fn, Mapping):
            label = "transfer"
            to = to_checksum_address(fn["to"])
            base = {"to": to, "data": fn.get("data", "0x"), "value": int(fn.get("value", 0))}
            if gas is None:
                call = {"from": sender, **base}
                gas = self._estimate(label, sender, lambda: self.w3.eth.estimate_gas(call))
            return self._execute(base, account, int(gas), label)
        label = call_label(fn)
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
        base = {"data": built.get("data", "0x"), "value": built.get("value", 0)}
        if built.get("to"):
            base["to"] = built["to"]
        return self._execute(base, account, int(gas), label)

    def _estimate(self, label: str, sender: str, estimate: Callable[[], int]) -> int:
        delay = self.retry.backoff
        for attempt in range(1, 4):
            try:
                estimated = int(estimate())
                return int(estimated * 1.2) + 10_000
            except Exception as exc:
                if is_connection_error(exc) and attempt < 3:
                    why = short_reason(exc)
                    logger.info("%s: gas estimation failed (%s), retrying", label, why)
                    time.sleep(delay)
                    delay = min(delay * 2, self.retry.max_backoff)
                    continue
                if is_connection_error(exc):
                    raise ChainError(
                        f"{label} from {sender}: cannot reach {self.name} "
                        f"({short_reason(exc)}); is the node still running?"
                    ) from None
                if is_funds_error(exc):
                    raise ChainError(self._funds_message(label, sender)) from None
                reason = decode_revert(exc)
                if reason is None:
                    raise ChainError(
                        f"{label} from {sender}: gas estimation failed: {short_message(exc)}"
                    ) from exc
                logger.info("%s from %s reverted at estimation: %s", label, sender, reason)
                raise SettlementError(f"{label} reverted: {reason}", reason=reason) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _funds_message(self, label: str, sender: str) -> str:
        hint = self.funds_hint.replace("ADDRESS", sender)
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
            if is_connection_error(exc):
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
                if is_connection_error(exc):
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
                if not is_connection_error(exc):
                    raise
                logger.info("waiting for a receipt: %s; still trying", short_reason(exc))
            if time.monotonic() >= deadline:
                return None
            time.sleep(policy.poll_interval)

    def _execute(self, base: dict[str, Any], account: Any, gas: int, label: str) -> TxReceipt:
        state = _nonce_state(_endpoint_key(self.w3), self.chain_id, account.address)
        tx = _Pending()
        try:
            return self._attempts(tx, state, base, account, gas, label)
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
        account: Any,
        gas: int,
        label: str,
    ) -> TxReceipt:
        sender = account.address
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
                if not is_connection_error(exc):
                    raise ChainError(
                        f"{label}: cannot read fees from {self.name}: {short_message(exc)}"
                    ) from exc
                problem = f"reading fees: {short_reason(exc)}"
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
                    if not is_connection_error(exc):
                        raise
                    problem = f"reading the nonce: {short_reason(exc)}"
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
                    outcome, error = classify_send_error(exc), exc
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
                problem = f"sending: {short_reason(error)}"
                logger.info("%s from %s: %s; retrying", label, sender, problem)
                backoff()
                if not self._known(tx.sent):
                    continue  # resend the same signed transaction
            elif outcome == "nonce":
                if not self._known([*tx.sent, tx_hash]):
                    problem = f"nonce {tx.nonce} rejected ({short_message(error)})"
                    logger.info("%s from %s: %s; fetching the nonce again", label, sender, problem)
                    renew_nonce()
                    continue
                tx.sent.append(tx_hash)  # an earlier send of ours got through after all
            elif outcome == "underpriced":
                problem = f"underpriced ({short_message(error)})"
                if "replacement" in error_text(error) and not self._known(tx.sent):
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
                    f"{label} from {sender} was rejected by {self.name}: {short_message(error)}"
                ) from None

            deadline = min(time.monotonic() + policy.receipt_timeout, start + policy.max_seconds)
            receipt = self._wait(tx.sent, deadline)
            if receipt is not None:
                return _check_receipt(self.w3, receipt, label, sender)
            # Not mined: dropped, or stuck behind low fees. Was the nonce used by another tx?
            problem = f"{hex_hash} not mined (dropped or stuck)"
            try:
                mined_nonce = int(self.w3.eth.get_transaction_count(sender, "latest"))
                receipt = self._receipt(tx.sent)
            except Exception as exc:
                if not is_connection_error(exc):
                    raise
                backoff()
                continue
            if receipt is not None:
                return _check_receipt(self.w3, receipt, label, sender)
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
