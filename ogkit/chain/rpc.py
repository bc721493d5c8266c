"""JSON-RPC endpoints and what their errors mean: providers, error classification, reverts.

:func:`open_web3` opens an HTTP(S) endpoint that is known to answer (web3 retries idempotent
reads by itself; it never resends a transaction). :func:`redact_url` shows a URL without
credentials. The classifiers turn an exception from web3, requests, eth-tester or a node
into what it means for the caller: a lost connection, a rejected nonce, an underpriced
transaction, too little ETH, state the node no longer holds, or a revert -
:func:`decode_revert` gives a revert's readable reason, custom errors included (matched by
selector against every contract's ABI).
"""

from __future__ import annotations

import ast
import logging
import re
from collections.abc import Iterable, Iterator, Mapping
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
from eth_abi import decode as abi_decode
from eth_utils import function_signature_to_4byte_selector, to_checksum_address
from web3 import Web3
from web3.exceptions import ProviderConnectionError, TooManyRequests
from web3.providers.rpc.utils import REQUEST_RETRY_ALLOWLIST, ExceptionRetryConfiguration

from ogkit.chain.bindings import COMPILED_NAMES, load_compiled
from ogkit.errors import ChainError, ConfigError

__all__ = [
    "CONNECT_TIMEOUT",
    "READ_TIMEOUT",
    "call_label",
    "classify_send_error",
    "decode_revert",
    "error_text",
    "is_connection_error",
    "is_funds_error",
    "is_unserved_state_error",
    "open_web3",
    "redact_url",
    "short_message",
    "short_reason",
]

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT = 3.0
"""Seconds to open a connection to an RPC endpoint before giving up on it."""
READ_TIMEOUT = 60.0
"""Seconds to wait for an RPC answer once connected."""
_LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "0.0.0.0"}


# --------------------------------------------------------------------------- error classes

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
_FUNDS_ERRORS = ("insufficient funds", "cannot afford txn gas")  # geth/anvil, py-evm
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


def is_connection_error(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) is a lost, refused, timed-out or throttled request."""
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


def error_text(exc: BaseException) -> str:
    """The lower-cased text of ``exc`` and everything that caused it, for pattern matching."""
    return " ".join(str(e) for e in _chain(exc)).lower()


def is_funds_error(exc: BaseException) -> bool:
    """Whether the node refused ``exc``'s transaction for too little ETH."""
    text = error_text(exc)
    return any(p in text for p in _FUNDS_ERRORS)


def is_unserved_state_error(exc: BaseException) -> bool:
    """Whether the node cannot serve the requested block or its state (pruned, not yet)."""
    text = error_text(exc)
    return any(p in text for p in (*_NO_BLOCK_ERRORS, *_HISTORY_ERRORS))


def classify_send_error(exc: BaseException) -> str:
    """What a failed ``eth_sendRawTransaction`` means: known, nonce, underpriced, funds,
    connection, revert or other."""
    text = error_text(exc)
    if any(p in text for p in _KNOWN_ERRORS):
        return "known"
    if any(p in text for p in _NONCE_ERRORS):
        return "nonce"
    if any(p in text for p in _UNDERPRICED_ERRORS):
        return "underpriced"
    if any(p in text for p in _FUNDS_ERRORS):
        return "funds"
    if is_connection_error(exc):
        return "connection"
    if decode_revert(exc) is not None:
        return "revert"
    return "other"


# --------------------------------------------------------------------------- messages

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


def short_reason(exc: BaseException) -> str:
    """A one-line reason for a failed request that never quotes the URL (it may hold a key)."""
    for e in _chain(exc):
        if isinstance(e, requests.Timeout | TimeoutError):
            return "timed out"
    text = error_text(exc)
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


def short_message(exc: BaseException) -> str:
    """A one-line description of ``exc`` for an error message; HTTP-level errors are reduced
    to their kind, since their text quotes the URL (which may hold an API key)."""
    if any(isinstance(e, requests.RequestException) for e in _chain(exc)):
        return short_reason(exc)
    text = str(exc)
    return text if len(text) <= 200 else text[:200] + "..."


def _fix_hint(url: str) -> str:
    host = urlsplit(url).hostname or ""
    if host in _LOCAL_HOSTS:
        return (
            "is the node running? Start the ogkit devnet with `ogkit chain up` "
            "(or use OGKIT_CHAIN=devnet / OGKIT_CHAIN=embedded), or fix the URL"
        )
    return "check the URL and your network, or point OGKIT_CHAIN at another endpoint"


def call_label(fn: Any) -> str:
    """The name of contract function ``fn`` for messages and logs."""
    return str(getattr(fn, "fn_name", None) or getattr(fn, "abi_element_identifier", "call"))


# --------------------------------------------------------------------------- providers


def open_web3(url: str, *, timeout: float = CONNECT_TIMEOUT) -> Web3:
    """A Web3 on JSON-RPC endpoint ``url`` that is known to answer.

    Probes ``eth_chainId`` once with a short timeout and no retries, so that an unreachable
    endpoint fails within about ``timeout`` seconds with a :class:`ChainError` naming the URL
    (without credentials) and the fix. The returned Web3 retries idempotent reads on
    connection errors (web3's own retry configuration) but never resends a transaction by
    itself (:func:`ogkit.chain.transactions.transact` does).
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
            f"cannot reach the chain at {shown} ({short_reason(exc)}): {_fix_hint(url)}"
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
    """Selector -> (error name, ((param name, type), ...)) over every contract's ABI."""
    index: dict[bytes, tuple[str, tuple[tuple[str, str], ...]]] = {}
    for name in COMPILED_NAMES:  # the deployed four, the vesting wallets and the ZkJudge
        try:
            abi = load_compiled(name)["abi"]
        except ChainError:
            logger.warning("build artefact %s missing; its custom errors cannot be decoded", name)
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
    error dicts. Custom errors are matched by selector against the ABIs of every compiled
    contract (the ZkJudge's too) and rendered as ``Name(arg=value, ...)``; ``Error(string)``
    gives the string, ``Panic`` its code.
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
