"""Python side of ogkit's settlement contracts: artefacts, deployment, transactions, reverts.

The four contracts (``OPGToken``, ``ModelRegistry``, ``NodeRegistry``,
``InferenceSettlement``) are compiled by ``ogkit/chain/compile.mjs`` into the JSON
artefacts next to this module; :func:`load_artifact` reads them, :func:`deploy_contracts`
deploys and wires all four, :func:`transact` sends a contract call and turns a revert into a
:class:`~ogkit.errors.SettlementError` whose ``reason`` is decoded by :func:`decode_revert`
(custom errors included, matched by selector against every artefact's ABI).

:func:`batch_claim_typed_data` builds the EIP-712 typed data of a ``BatchClaim`` exactly as
``InferenceSettlement`` hashes it, for ``eth_account.messages.encode_typed_data``.
See ``docs/contracts.md`` for the contracts themselves.
"""

from __future__ import annotations

import ast
import json
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

from eth_abi import decode as abi_decode
from eth_utils import function_signature_to_4byte_selector, to_checksum_address
from hexbytes import HexBytes

from ogkit.errors import ChainError, ConfigError, SettlementError

__all__ = [
    "ARTIFACTS_DIR",
    "BATCH_CLAIM_FIELDS",
    "CONTRACT_NAMES",
    "OPG",
    "BatchStatus",
    "DeployParams",
    "Deployment",
    "batch_claim_typed_data",
    "decode_revert",
    "deploy_contracts",
    "load_artifact",
    "transact",
]

logger = logging.getLogger(__name__)

ARTIFACTS_DIR = Path(__file__).resolve().parent / "artifacts"
CONTRACT_NAMES: tuple[str, ...] = (
    "OPGToken",
    "ModelRegistry",
    "NodeRegistry",
    "InferenceSettlement",
)
OPG = 10**18
"""One OPG in base units (18 decimals)."""

_HOUR = 3600
_DAY = 24 * _HOUR

BATCH_CLAIM_FIELDS: tuple[tuple[str, str], ...] = (
    ("batchId", "bytes32"),
    ("modelId", "bytes32"),
    ("runtimeId", "bytes32"),
    ("batchRoot", "bytes32"),
    ("rowCount", "uint64"),
    ("requester", "address"),
    ("timestamp", "uint64"),
    ("attester", "address"),
)
"""The EIP-712 ``BatchClaim`` struct, field by field, in signing order."""

_EIP712_DOMAIN_FIELDS = (
    ("name", "string"),
    ("version", "string"),
    ("chainId", "uint256"),
    ("verifyingContract", "address"),
)
EIP712_NAME = "ogkit"
EIP712_VERSION = "1"


class BatchStatus(IntEnum):
    """``InferenceSettlement.Status`` values."""

    NONE = 0
    PENDING = 1
    DISPUTED = 2
    FINALIZED = 3
    SLASHED = 4
    REFUNDED = 5


@dataclass(frozen=True)
class DeployParams:
    """Constructor parameters of the contracts; the defaults are the documented ones.

    Amounts are in OPG base units (``OPG`` = 10**18), periods in seconds, shares in basis
    points (10,000 = 100 %).
    """

    min_node_stake: int = 1_000 * OPG
    """Own stake an inference node needs to register and to commit batches."""
    min_verifier_stake: int = 1_000 * OPG
    """Own stake a verifier needs to register, attest and vote on disputes."""
    unbonding_period: int = 7 * _DAY
    """Seconds between undelegate/unstake and withdraw (unbonding stake stays slashable)."""
    challenge_window: int = _HOUR
    """Seconds after commit for attestations and challenges; also a dispute's voting time."""
    quorum_bps: int = 6667
    """Share of total active verifier stake needed to finalise or to decide a dispute."""
    node_fee_bps: int = 1_000
    """Node fee as a share of the model payment (price x rows), escrowed on top of it."""
    verifier_fee_bps: int = 500
    """Verifier fee as a share of the model payment, escrowed on top of it."""
    challenge_bond: int = 100 * OPG
    """OPG a challenger posts; lost to the node if the challenge is rejected."""
    slash_bps: int = 1_000
    """Share of a node's slashable stake (own + delegated + unbonding) taken when upheld."""
    challenger_reward_bps: int = 5_000
    """Share of the slashed amount paid to the challenger; the rest goes to the requester."""
    governance_voting_delay: int = _DAY
    """Seconds a measurement proposal is open for votes (then executable for as long)."""
    governance_quorum_bps: int = 5_000
    """Turnout (yes + no) a proposal needs, as a share of total active stake of all nodes."""
    initial_measurements: tuple[bytes, ...] = ()
    """Measurements (bytes32, e.g. the software enclave's runtime id) approved at deploy."""

    def __post_init__(self) -> None:
        for name in ("quorum_bps", "governance_quorum_bps"):
            value = getattr(self, name)
            if not 0 < value <= 10_000:
                raise ConfigError(f"DeployParams.{name} must be in 1..10000, got {value}")
        for name in ("node_fee_bps", "verifier_fee_bps", "challenger_reward_bps"):
            value = getattr(self, name)
            if not 0 <= value <= 10_000:
                raise ConfigError(f"DeployParams.{name} must be in 0..10000, got {value}")
        if not 0 <= self.slash_bps < 10_000:
            raise ConfigError(f"DeployParams.slash_bps must be in 0..9999, got {self.slash_bps}")
        for m in self.initial_measurements:
            if len(m) != 32:
                raise ConfigError(f"initial measurement must be 32 bytes, got {len(m)}")


@dataclass(frozen=True)
class Deployment:
    """Addresses and web3 contract objects of one deployment of the four contracts."""

    token: Any
    model_registry: Any
    node_registry: Any
    settlement: Any
    params: DeployParams
    chain_id: int
    deployer: str
    block_number: int
    gas_used: Mapping[str, int] = field(default_factory=dict)

    @property
    def addresses(self) -> dict[str, str]:
        """Contract name -> checksum address."""
        return {
            "OPGToken": self.token.address,
            "ModelRegistry": self.model_registry.address,
            "NodeRegistry": self.node_registry.address,
            "InferenceSettlement": self.settlement.address,
        }


@cache
def _load_artifact_cached(name: str) -> str:
    path = ARTIFACTS_DIR / f"{name}.json"
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ChainError(
            f"no artefact for contract {name!r} at {path}; "
            "build them with `node ogkit/chain/compile.mjs`"
        ) from None


def load_artifact(name: str) -> dict[str, Any]:
    """The compiled artefact of contract ``name`` (abi, bytecode, deployedBytecode, ...)."""
    if name not in CONTRACT_NAMES:
        raise ConfigError(f"unknown contract {name!r}; expected one of {', '.join(CONTRACT_NAMES)}")
    try:
        artifact = json.loads(_load_artifact_cached(name))
    except json.JSONDecodeError as exc:
        raise ChainError(f"artefact of {name} is not valid JSON: {exc}") from exc
    for key in ("abi", "bytecode", "deployedBytecode"):
        if key not in artifact:
            raise ChainError(f"artefact of {name} has no {key!r}; rebuild it")
    return artifact


def batch_claim_typed_data(
    chain_id: int, settlement_address: str, claim: Mapping[str, Any]
) -> dict[str, Any]:
    """EIP-712 typed data of a ``BatchClaim`` for ``encode_typed_data(full_message=...)``.

    ``claim`` holds the eight fields of :data:`BATCH_CLAIM_FIELDS` (bytes32 fields as bytes or
    0x-hex, addresses as hex strings).
    """
    missing = [n for n, _ in BATCH_CLAIM_FIELDS if n not in claim]
    if missing:
        raise ConfigError(f"BatchClaim is missing {', '.join(missing)}")
    return {
        "types": {
            "EIP712Domain": [{"name": n, "type": t} for n, t in _EIP712_DOMAIN_FIELDS],
            "BatchClaim": [{"name": n, "type": t} for n, t in BATCH_CLAIM_FIELDS],
        },
        "primaryType": "BatchClaim",
        "domain": {
            "name": EIP712_NAME,
            "version": EIP712_VERSION,
            "chainId": int(chain_id),
            "verifyingContract": to_checksum_address(settlement_address),
        },
        "message": {n: claim[n] for n, _ in BATCH_CLAIM_FIELDS},
    }


def _send(w3: Any, fn: Any, sender: Any, gas: int | None) -> HexBytes:
    """Send ``fn`` from ``sender``: an unlocked address, or a local account that signs."""
    params: dict[str, Any] = {} if gas is None else {"gas": gas}
    if hasattr(sender, "key") and hasattr(sender, "address"):
        params["from"] = sender.address
        params["nonce"] = w3.eth.get_transaction_count(sender.address)
        signed = sender.sign_transaction(fn.build_transaction(params))
        return w3.eth.send_raw_transaction(signed.raw_transaction)
    params["from"] = sender
    return fn.transact(params)


def _sender_address(sender: Any) -> str:
    return sender.address if hasattr(sender, "address") else str(sender)


def transact(
    w3: Any, fn: Any, sender: Any, *, gas: int | None = None, timeout: float = 120.0
) -> Any:
    """Send contract call ``fn`` from ``sender``, wait for it and return the receipt.

    ``sender`` is an address the node holds the key of, or a local account
    (``eth_account``) that signs the transaction here. ``gas`` skips estimation. A revert -
    at gas estimation or once mined - raises :class:`SettlementError` with the decoded
    ``reason`` and, where the transaction was mined, its ``tx_hash``.
    """
    name = getattr(fn, "fn_name", None) or getattr(fn, "abi_element_identifier", "call")
    who = _sender_address(sender)
    try:
        tx_hash = _send(w3, fn, sender, gas)
    except Exception as exc:
        reason = decode_revert(exc)
        if reason is None:
            raise ChainError(f"{name} from {who} could not be sent: {exc}") from exc
        logger.info("%s from %s reverted: %s", name, who, reason)
        raise SettlementError(f"{name} reverted: {reason}", reason=reason) from exc
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=timeout)
    hex_hash = HexBytes(tx_hash).to_0x_hex()
    if receipt["status"] != 1:
        reason = _replay_reason(w3, tx_hash, receipt) or "reverted without a reason"
        logger.info("%s from %s reverted in %s: %s", name, who, hex_hash, reason)
        raise SettlementError(f"{name} reverted: {reason}", reason=reason, tx_hash=hex_hash)
    logger.debug("%s from %s mined in %s, gas %s", name, who, hex_hash, receipt["gasUsed"])
    return receipt


def _replay_reason(w3: Any, tx_hash: Any, receipt: Any) -> str | None:
    """Re-run a mined, failed transaction as a call on its parent block to learn why."""
    try:
        tx = w3.eth.get_transaction(tx_hash)
        call = {"from": tx["from"], "to": tx["to"], "data": tx["input"], "value": tx["value"]}
        w3.eth.call(call, block_identifier=max(receipt["blockNumber"] - 1, 0))
    except Exception as exc:
        return decode_revert(exc)
    return None


# --------------------------------------------------------------------------- revert decoding

_ERROR_STRING = bytes.fromhex("08c379a0")  # Error(string)
_PANIC = bytes.fromhex("4e487b71")  # Panic(uint256)
_PANIC_CODES = {
    0x01: "assertion failed",
    0x11: "arithmetic overflow or underflow",
    0x12: "division or modulo by zero",
    0x21: "invalid enum value",
    0x22: "bad storage byte array encoding",
    0x31: "pop on empty array",
    0x32: "array index out of bounds",
    0x41: "out of memory",
    0x51: "call to an uninitialised function",
}


def _abi_type(param: Mapping[str, Any]) -> str:
    """Canonical ABI type of one parameter (tuples expanded)."""
    t = param["type"]
    if t.startswith("tuple"):
        inner = ",".join(_abi_type(c) for c in param.get("components", []))
        return f"({inner}){t[len('tuple') :]}"
    return t


@lru_cache(maxsize=1)
def _error_index() -> dict[bytes, tuple[str, tuple[tuple[str, str], ...]]]:
    """Selector -> (error name, ((param name, type), ...)) over every artefact's ABI."""
    index: dict[bytes, tuple[str, tuple[tuple[str, str], ...]]] = {}
    for name in CONTRACT_NAMES:
        try:
            abi = load_artifact(name)["abi"]
        except ChainError:
            logger.warning("artefact %s missing; its custom errors cannot be decoded", name)
            continue
        for item in abi:
            if item.get("type") != "error":
                continue
            params = tuple((p.get("name", ""), _abi_type(p)) for p in item.get("inputs", []))
            signature = f"{item['name']}({','.join(t for _, t in params)})"
            selector = function_signature_to_4byte_selector(signature)
            index.setdefault(selector, (item["name"], params))
    return index


def _format_value(value: Any, abi_type: str) -> str:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if abi_type == "address":
        return to_checksum_address(value)
    if isinstance(value, tuple | list):
        return "(" + ", ".join(_format_value(v, "") for v in value) + ")"
    return str(value)


def _decode_data(data: bytes) -> str:
    """Readable reason for raw revert data."""
    if not data:
        return "reverted without a reason"
    selector, body = data[:4], data[4:]
    try:
        if selector == _ERROR_STRING:
            return str(abi_decode(["string"], body)[0])
        if selector == _PANIC:
            code = int(abi_decode(["uint256"], body)[0])
            return f"Panic(0x{code:02x}: {_PANIC_CODES.get(code, 'unknown panic code')})"
        known = _error_index().get(selector)
        if known is not None:
            err_name, params = known
            values = abi_decode([t for _, t in params], body) if params else ()
            args = ", ".join(
                f"{pname}={_format_value(v, ptype)}" if pname else _format_value(v, ptype)
                for (pname, ptype), v in zip(params, values, strict=True)
            )
            return f"{err_name}({args})"
    except Exception as exc:  # malformed data: say so rather than fail while failing
        logger.debug("could not decode revert data 0x%s: %s", data.hex(), exc)
    return f"unknown error 0x{selector.hex()} (data 0x{data.hex()})"


_HEX_DATA = re.compile(r"0x(?:[0-9a-fA-F]{2}){4,}")
_PURE_HEX = re.compile(r"0x(?:[0-9a-fA-F]{2})*")


def _bytes_from_text(text: str) -> bytes | None:
    """Revert data written as 0x-hex or as the repr of a bytes object (eth-tester)."""
    text = text.strip()
    if _PURE_HEX.fullmatch(text):
        return bytes.fromhex(text[2:])
    if text.startswith(("b'", 'b"')):
        try:
            parsed = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return None
        return parsed if isinstance(parsed, bytes) else None
    return None


def _candidates(exc: BaseException) -> Iterable[Any]:
    """Where revert data may hide in an exception from web3, eth-tester or a JSON-RPC node:
    its ``data`` attribute, its args, JSON-RPC error dicts, and chained exceptions."""
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        items: list[Any] = [getattr(e, "data", None), *e.args]
        while items:
            item = items.pop(0)
            if isinstance(item, BaseException):
                stack.append(item)
            elif isinstance(item, Mapping):
                items.extend([item.get("data"), item.get("message")])
            elif item is not None:
                yield item
        stack.extend([e.__cause__, e.__context__])


def decode_revert(exc: BaseException) -> str | None:
    """A readable reason for a reverted call or transaction, or None if ``exc`` is no revert.

    Handles web3's ``ContractLogicError``/``ContractCustomError`` (``data`` = revert data),
    eth-tester's ``TransactionFailed`` (message ``"execution reverted: b'...'"``) and JSON-RPC
    error dicts. Custom errors are matched by selector against the ABIs of all four contracts
    and rendered as ``Name(arg=value, ...)``; ``Error(string)`` gives the string, ``Panic``
    its code.
    """
    reverted = isinstance(exc, _revert_types())
    for item in _candidates(exc):
        if isinstance(item, bytes | bytearray):
            return _decode_data(bytes(item))
        if not isinstance(item, str):
            continue
        data = _bytes_from_text(item)
        if data is not None:
            if len(data) >= 4 or (not data and reverted):
                return _decode_data(data)
            continue
        marker = item.lower().find("revert")
        if marker < 0:
            continue
        tail = item[marker:]
        rest = tail.split(":", 1)[1].strip() if ":" in tail else ""
        data = _bytes_from_text(rest) if rest else None
        if data is None and rest:
            match = _HEX_DATA.search(rest)
            data = bytes.fromhex(match.group(0)[2:]) if match else None
        if data is not None:
            return _decode_data(data)
        return rest or "reverted without a reason"
    return "reverted without a reason" if reverted else None


@lru_cache(maxsize=1)
def _revert_types() -> tuple[type[BaseException], ...]:
    types: list[type[BaseException]] = []
    try:
        from web3.exceptions import ContractLogicError

        types.append(ContractLogicError)
    except ImportError:  # pragma: no cover - web3 is a dependency
        pass
    try:
        from eth_tester.exceptions import TransactionFailed

        types.append(TransactionFailed)
    except ImportError:  # eth-tester is optional at run time
        pass
    return tuple(types)


# --------------------------------------------------------------------------- deployment


def _deploy(w3: Any, name: str, deployer: str, *args: Any) -> tuple[Any, int]:
    artifact = load_artifact(name)
    factory = w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
    try:
        tx_hash = factory.constructor(*args).transact({"from": deployer})
    except Exception as exc:
        reason = decode_revert(exc)
        raise ChainError(f"deploying {name} failed: {reason or exc}") from exc
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash)
    if receipt["status"] != 1 or not receipt.get("contractAddress"):
        raise ChainError(f"deploying {name} failed in {HexBytes(tx_hash).to_0x_hex()}")
    address = receipt["contractAddress"]
    logger.info("deployed %s at %s (gas %s)", name, address, receipt["gasUsed"])
    return w3.eth.contract(address=address, abi=artifact["abi"]), int(receipt["gasUsed"])


def deploy_contracts(w3: Any, deployer: str, params: DeployParams | None = None) -> Deployment:
    """Deploy OPGToken, ModelRegistry, NodeRegistry and InferenceSettlement from ``deployer``
    (an unlocked account) and wire NodeRegistry to the settlement contract.

    The whole OPG supply goes to ``deployer``. The NodeRegistry's bootstrap phase is left
    open (the deployer can still approve measurements with ``bootstrapMeasurement`` until it
    calls ``closeBootstrap``).
    """
    params = params or DeployParams()
    deployer = to_checksum_address(deployer)
    gas: dict[str, int] = {}
    token, gas["OPGToken"] = _deploy(w3, "OPGToken", deployer)
    models, gas["ModelRegistry"] = _deploy(w3, "ModelRegistry", deployer)
    nodes, gas["NodeRegistry"] = _deploy(
        w3,
        "NodeRegistry",
        deployer,
        token.address,
        params.min_node_stake,
        params.min_verifier_stake,
        params.unbonding_period,
        params.governance_voting_delay,
        params.governance_quorum_bps,
        [bytes(m) for m in params.initial_measurements],
    )
    settlement, gas["InferenceSettlement"] = _deploy(
        w3,
        "InferenceSettlement",
        deployer,
        token.address,
        models.address,
        nodes.address,
        params.challenge_window,
        params.quorum_bps,
        params.node_fee_bps,
        params.verifier_fee_bps,
        params.challenge_bond,
        params.slash_bps,
        params.challenger_reward_bps,
    )
    receipt = transact(w3, nodes.functions.setSettlement(settlement.address), deployer)
    gas["setSettlement"] = int(receipt["gasUsed"])
    return Deployment(
        token=token,
        model_registry=models,
        node_registry=nodes,
        settlement=settlement,
        params=params,
        chain_id=int(w3.eth.chain_id),
        deployer=deployer,
        block_number=int(receipt["blockNumber"]),
        gas_used=gas,
    )
