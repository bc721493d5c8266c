"""The chain client: one chain plus the ogkit deployment on it.

A :class:`ChainClient` (made by :func:`ogkit.chain.connection.connect`) reads contract state
(:meth:`~ChainClient.call`, also as of a past block), decoded events, blocks and time; sends
transactions through :func:`ogkit.chain.transactions.transact` with its own
:class:`~ogkit.chain.transactions.RetryPolicy`; and on dev chains moves time forward and
funds accounts from the deployer. Failures are errors that name the chain: a lost
connection is a :class:`~ogkit.errors.ChainError`, a revert a
:class:`~ogkit.errors.SettlementError` with the decoded reason.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, nullcontext
from typing import Any

from eth_utils import to_checksum_address
from hexbytes import HexBytes
from web3 import Web3
from web3.contract import Contract
from web3.exceptions import BadFunctionCallOutput, BlockNotFound
from web3.types import TxReceipt

from ogkit.chain.bindings import CONTRACT_NAMES
from ogkit.chain.deployments import Deployment
from ogkit.chain.rpc import (
    call_label,
    decode_revert,
    error_text,
    is_connection_error,
    is_unserved_state_error,
    short_message,
    short_reason,
)
from ogkit.chain.transactions import RetryPolicy, forget_nonce, transact
from ogkit.errors import ChainError, ConfigError, SettlementError
from ogkit.keys import Signer

__all__ = ["ChainClient"]

logger = logging.getLogger(__name__)

_DEV_CLIENTS = ("anvil", "hardhat", "ethereumtester", "ganache")


class ChainClient:
    """One chain plus the ogkit deployment on it; see the module docstring.

    ``name`` is ``"devnet"``, ``"embedded"`` or the RPC URL without credentials. ``deployer``
    is the funded deployer account on the devnet and the embedded chain (``None`` elsewhere);
    it owns the contracts and funds other accounts (:meth:`fund`). ``tester`` is the
    embedded chain's eth-tester (for time travel); ``request_lock`` serialises direct use of
    it with the provider's requests.
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
        request_lock: threading.RLock | None = None,
        first_block: int = 0,
    ) -> None:
        self.w3 = w3
        self.deployment = deployment
        self.name = name
        self.kind = kind
        self.deployer = deployer
        self.retry = retry or (RetryPolicy.local() if kind != "rpc" else RetryPolicy())
        self._tester = tester
        self._request_lock = request_lock
        self.first_block = int(first_block)
        """The block the deployment started in; :meth:`events` looks no further back."""
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
            if is_connection_error(exc):
                raise ChainError(
                    f"lost the connection to chain {self.name} while {doing} "
                    f"({short_reason(exc)}); is the node still running?"
                ) from None
            raise

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
        label = call_label(fn)
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
                why = short_message(exc)
                raise ChainError(f"call {label} on {self.name} failed: {why}") from exc
            except Exception as exc:
                if is_connection_error(exc):
                    raise
                if block != "latest" and is_unserved_state_error(exc):
                    raise self._history_error(block, label) from None
                reason = decode_revert(exc)
                if reason is None:
                    why = short_message(exc)
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
                    text = error_text(exc)
                    too_big = any(w in text for w in ("range", "limit", "too many", "exceed"))
                    if too_big and end > start and not is_connection_error(exc):
                        size = max((end - start + 1) // 2, 1)
                        continue
                    raise
                out.extend(_plain_log(log) for log in logs)
                start = end + 1
            return out

    # ----------------------------------------------------------------- transactions

    def transact(self, fn: Any, signer: Signer, *, gas: int | None = None) -> TxReceipt:
        """Send contract call ``fn`` signed by ``signer`` and wait for its receipt:
        :func:`ogkit.chain.transactions.transact` with this client's retry policy (nonce
        manager, retries with fee bumps, decoded reverts; ``gas`` skips estimation)."""
        try:
            return transact(
                self.w3,
                fn,
                signer,
                gas=gas,
                retry=self.retry,
                chain_id=self.chain_id,
                chain_name=self.name,
                funds_hint=self._funds_hint(),
            )
        except SettlementError as exc:
            reason = exc.reason or ""
            if not reason.startswith("ERC20InsufficientBalance") or self.deployer is None:
                raise
            found = re.search(r"sender=(0x[0-9a-fA-F]{40})", reason)
            who = found.group(1) if found else "ADDRESS"
            hint = self._funds_hint().replace("ADDRESS", f"{who} --opg AMOUNT")
            raise SettlementError(
                f"{exc}: {who} has too little OPG; {hint}", reason=exc.reason, tx_hash=exc.tx_hash
            ) from None

    def transfer_eth(self, signer: Signer, to: str, wei: int) -> TxReceipt:
        """Send ``wei`` of the native currency from ``signer`` to ``to``, as :meth:`transact`."""
        return self.transact({"to": to_checksum_address(to), "value": int(wei)}, signer)

    def _funds_hint(self) -> str:
        if self.deployer is None:
            return "send it ETH from a funded account"
        flag = "" if self.kind == "devnet" else f" --chain {self.name}"
        return f"fund it with `ogkit chain fund ADDRESS{flag}`"

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
            with self._request_lock or nullcontext():
                pending = int(self._tester.get_block_by_number("pending")["timestamp"])
                self._tester.time_travel(max(target + 1, pending + 1))
            return
        self._require_dev_chain("move time")
        with self._errors("moving time"):
            self._dev_rpc("evm_increaseTime", [int(seconds)])
            self._dev_rpc("evm_mine", [])

    def snapshot(self) -> Any:
        """A snapshot of the chain's state (and time) to :meth:`revert` to later; dev chains
        only, as :meth:`increase_time`."""
        if self._tester is not None:
            with self._request_lock or nullcontext():
                return self._tester.take_snapshot()
        self._require_dev_chain("take a snapshot")
        with self._errors("taking a snapshot"):
            return self._dev_rpc("evm_snapshot", [])

    def revert(self, snapshot: Any) -> None:
        """Put the chain back to ``snapshot`` (from :meth:`snapshot`): every block, transaction
        and event since is gone. The nonces this process cached for the chain are forgotten."""
        if self._tester is not None:
            with self._request_lock or nullcontext():
                self._tester.revert_to_snapshot(snapshot)
        else:
            self._require_dev_chain("revert to a snapshot")
            with self._errors("reverting to a snapshot"):
                if self._dev_rpc("evm_revert", [snapshot]) is not True:
                    raise ChainError(f"{self.name} has no snapshot {snapshot!r} to revert to")
        forget_nonce(self.w3, self.chain_id)

    def _require_dev_chain(self, doing: str) -> None:
        if not self._dev_chain():
            raise ChainError(
                f"cannot {doing} on {self.name}: it is not a dev chain (only the devnet, "
                "the embedded chain and anvil/hardhat nodes support it)"
            )

    def _dev_rpc(self, method: str, params: list[Any]) -> Any:
        response = self.w3.provider.make_request(method, params)  # type: ignore[arg-type]
        if isinstance(response, Mapping) and response.get("error"):
            raise ChainError(f"{method} failed on {self.name}: {response['error']}")
        return response.get("result") if isinstance(response, Mapping) else None

    def fund(self, address: str, *, eth: int = 10**20, opg: int = 0) -> None:
        """Send ``eth`` wei and ``opg`` OPG base units to ``address`` from the deployer
        (devnet and embedded chain only)."""
        if self.deployer is None:
            raise ChainError(
                f"fund (`ogkit chain fund`) works on the devnet and the embedded chain only; "
                f"on {self.name} send ETH and OPG from a funded account"
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
