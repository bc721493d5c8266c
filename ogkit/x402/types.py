"""The x402 wire format (x402 specification, protocol version 1), scheme ``exact`` on EVM.

A resource answers an unpaid request with HTTP 402 and a *payment required* document::

    {"x402Version": 1, "error": "...", "accepts": [PaymentRequirements, ...]}

The client picks one requirement, signs a payment for it and repeats the request with
the header ``X-PAYMENT``: base64 of the JSON *payment payload*::

    {"x402Version": 1, "scheme": "exact", "network": "eip155:<chain id>",
     "payload": {"signature": "0x…65 bytes",
                 "authorization": {"from", "to", "value", "validAfter", "validBefore",
                                   "nonce"}}}

For ``exact`` on EVM the authorization is an EIP-3009 ``TransferWithAuthorization`` on the
requirement's ``asset`` (here the OPG token), signed in the token's EIP-712 domain (name
and version in the requirement's ``extra``), with a random 32-byte nonce. A paid answer
carries ``X-PAYMENT-RESPONSE``: base64 of the JSON settlement response (``success``,
``transaction``, ``network``, ``payer``). Networks are CAIP-2 ids (``eip155:31337``).

Everything here parses strictly: :func:`decode_payment_header` and the ``from_dict``
methods refuse any field of the wrong type, size or range with a
:class:`~ogkit.errors.PaymentError` whose ``reason`` is ``malformed``; they never raise
anything else on hostile input.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from ogkit.errors import PaymentError

__all__ = [
    "MAX_HEADER_BYTES",
    "PAYMENT_HEADER",
    "PAYMENT_RESPONSE_HEADER",
    "SCHEME_EXACT",
    "X402_VERSION",
    "Authorization",
    "PaymentPayload",
    "PaymentRequirements",
    "SettleResponse",
    "VerifyResponse",
    "decode_payment_header",
    "decode_response_header",
    "encode_payment_header",
    "encode_response_header",
    "loads_bounded",
    "network_id",
]

X402_VERSION = 1
SCHEME_EXACT = "exact"
PAYMENT_HEADER = "X-PAYMENT"
PAYMENT_RESPONSE_HEADER = "X-PAYMENT-RESPONSE"
MAX_HEADER_BYTES = 4096
"""A payment header longer than this is refused before it is decoded."""

_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
_HEX32 = re.compile(r"0x[0-9a-fA-F]{64}")
_SIGNATURE = re.compile(r"0x[0-9a-fA-F]{130}")
_NETWORK = re.compile(r"eip155:[1-9][0-9]{0,19}")
_UINT = re.compile(r"0|[1-9][0-9]{0,77}")


MAX_JSON_BRACKETS = 20_000
"""At most this many ``[`` and ``{`` in a JSON document parsed from the network: a bound
on its nesting. Python's C JSON parser recurses once per level, and ogkit's processes run
with a recursion limit of 100 000 (``py_ecc`` raises it at import), so about 100 000
levels overflow the C stack and kill the process instead of raising RecursionError."""


def loads_bounded(raw: bytes | str, **kwargs: Any) -> Any:
    """``json.loads`` of a document from the network, refusing (ValueError) one with more
    than :data:`MAX_JSON_BRACKETS` brackets before it is parsed."""
    if isinstance(raw, str):
        brackets = raw.count("[") + raw.count("{")
    else:
        brackets = bytes(raw).count(b"[") + bytes(raw).count(b"{")
    if brackets > MAX_JSON_BRACKETS:
        raise ValueError(
            f"the JSON document holds {brackets} brackets, more than {MAX_JSON_BRACKETS}"
        )
    try:
        return json.loads(raw, **kwargs)
    except RecursionError:
        raise ValueError("the JSON document is nested too deeply") from None


def network_id(chain_id: int) -> str:
    """The CAIP-2 id x402 names an EVM chain by: ``eip155:<chain id>``."""
    return f"eip155:{int(chain_id)}"


def _bad(message: str) -> PaymentError:
    return PaymentError(f"malformed x402 payment: {message}", reason="malformed")


def _field(d: Mapping[str, Any], name: str, kind: type | tuple[type, ...], where: str) -> Any:
    if name not in d:
        raise _bad(f"{where} lacks {name!r}")
    value = d[name]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise _bad(f"{where}.{name} must be {getattr(kind, '__name__', kind)}")
    return value


def _pattern(value: Any, pattern: re.Pattern[str], what: str) -> str:
    if not isinstance(value, str) or pattern.fullmatch(value) is None:
        raise _bad(f"{what} is not well formed: {str(value)[:80]!r}")
    return value


def _uint(value: Any, what: str, bits: int = 256) -> int:
    """A uint as x402 writes it: a decimal string (an int is accepted too)."""
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and _UINT.fullmatch(value):
        number = int(value)
    else:
        raise _bad(f"{what} must be a decimal string, got {str(value)[:80]!r}")
    if not 0 <= number < 2**bits:
        raise _bad(f"{what} is out of range for uint{bits}")
    return number


@dataclass(frozen=True)
class PaymentRequirements:
    """One way to pay for a resource (x402 ``PaymentRequirements``)."""

    network: str
    max_amount_required: int
    resource: str
    pay_to: str
    asset: str
    description: str = ""
    mime_type: str = "application/json"
    max_timeout_seconds: int = 120
    extra: dict[str, Any] = field(default_factory=dict)
    scheme: str = SCHEME_EXACT

    def to_dict(self) -> dict[str, Any]:
        return {
            "scheme": self.scheme,
            "network": self.network,
            "maxAmountRequired": str(self.max_amount_required),
            "resource": self.resource,
            "description": self.description,
            "mimeType": self.mime_type,
            "payTo": self.pay_to,
            "maxTimeoutSeconds": self.max_timeout_seconds,
            "asset": self.asset,
            "extra": dict(self.extra),
        }

    @classmethod
    def from_dict(cls, d: Any) -> PaymentRequirements:
        if not isinstance(d, Mapping):
            raise _bad("payment requirements must be an object")
        extra = d.get("extra") or {}
        if not isinstance(extra, Mapping):
            raise _bad("paymentRequirements.extra must be an object")
        timeout = _field(d, "maxTimeoutSeconds", int, "paymentRequirements")
        if not 0 < timeout <= 86_400:
            raise _bad("paymentRequirements.maxTimeoutSeconds must be 1..86400")
        return cls(
            scheme=_field(d, "scheme", str, "paymentRequirements"),
            network=_pattern(d.get("network"), _NETWORK, "paymentRequirements.network"),
            max_amount_required=_uint(d.get("maxAmountRequired"), "maxAmountRequired"),
            resource=str(d.get("resource", ""))[:2048],
            description=str(d.get("description", ""))[:2048],
            mime_type=str(d.get("mimeType", ""))[:256],
            pay_to=_pattern(d.get("payTo"), _ADDRESS, "paymentRequirements.payTo"),
            max_timeout_seconds=timeout,
            asset=_pattern(d.get("asset"), _ADDRESS, "paymentRequirements.asset"),
            extra=dict(extra),
        )


@dataclass(frozen=True)
class Authorization:
    """The EIP-3009 ``TransferWithAuthorization`` message the payer signs."""

    from_: str
    to: str
    value: int
    valid_after: int
    valid_before: int
    nonce: str  # 0x + 64 hex digits

    def to_dict(self) -> dict[str, Any]:
        return {
            "from": self.from_,
            "to": self.to,
            "value": str(self.value),
            "validAfter": str(self.valid_after),
            "validBefore": str(self.valid_before),
            "nonce": self.nonce,
        }

    @classmethod
    def from_dict(cls, d: Any) -> Authorization:
        if not isinstance(d, Mapping):
            raise _bad("payload.authorization must be an object")
        return cls(
            from_=_pattern(d.get("from"), _ADDRESS, "authorization.from"),
            to=_pattern(d.get("to"), _ADDRESS, "authorization.to"),
            value=_uint(d.get("value"), "authorization.value"),
            valid_after=_uint(d.get("validAfter"), "authorization.validAfter"),
            valid_before=_uint(d.get("validBefore"), "authorization.validBefore"),
            nonce=_pattern(d.get("nonce"), _HEX32, "authorization.nonce").lower(),
        )


@dataclass(frozen=True)
class PaymentPayload:
    """What ``X-PAYMENT`` carries: a signed authorization for one requirement."""

    network: str
    signature: str
    authorization: Authorization
    scheme: str = SCHEME_EXACT
    x402_version: int = X402_VERSION

    @property
    def payer(self) -> str:
        return self.authorization.from_

    def to_dict(self) -> dict[str, Any]:
        return {
            "x402Version": self.x402_version,
            "scheme": self.scheme,
            "network": self.network,
            "payload": {
                "signature": self.signature,
                "authorization": self.authorization.to_dict(),
            },
        }

    @classmethod
    def from_dict(cls, d: Any) -> PaymentPayload:
        if not isinstance(d, Mapping):
            raise _bad("the payment payload must be a JSON object")
        version = _field(d, "x402Version", int, "payment")
        inner = d.get("payload")
        if not isinstance(inner, Mapping):
            raise _bad("payment.payload must be an object")
        return cls(
            x402_version=version,
            scheme=_field(d, "scheme", str, "payment")[:32],
            network=_pattern(d.get("network"), _NETWORK, "payment.network"),
            signature=_pattern(inner.get("signature"), _SIGNATURE, "payload.signature"),
            authorization=Authorization.from_dict(inner.get("authorization")),
        )


@dataclass(frozen=True)
class VerifyResponse:
    """A facilitator's answer to ``/verify``."""

    is_valid: bool
    payer: str | None = None
    invalid_reason: str | None = None
    message: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "isValid": self.is_valid,
            "invalidReason": self.invalid_reason,
            "payer": self.payer,
            "message": self.message,
        }

    @classmethod
    def from_dict(cls, d: Any) -> VerifyResponse:
        if not isinstance(d, Mapping) or not isinstance(d.get("isValid"), bool):
            raise _bad("the facilitator's verify response has no boolean isValid")
        return cls(
            is_valid=d["isValid"],
            payer=d.get("payer"),
            invalid_reason=d.get("invalidReason"),
            message=d.get("message"),
        )


@dataclass(frozen=True)
class SettleResponse:
    """A facilitator's answer to ``/settle`` (and what ``X-PAYMENT-RESPONSE`` carries)."""

    success: bool
    network: str
    transaction: str | None = None
    payer: str | None = None
    error_reason: str | None = None
    message: str | None = None
    block_number: int | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {
            "success": d["success"],
            "transaction": d["transaction"],
            "network": d["network"],
            "payer": d["payer"],
            "errorReason": d["error_reason"],
            "message": d["message"],
            "blockNumber": d["block_number"],
        }

    @classmethod
    def from_dict(cls, d: Any) -> SettleResponse:
        if not isinstance(d, Mapping) or not isinstance(d.get("success"), bool):
            raise _bad("the settle response has no boolean success")
        tx = d.get("transaction")
        if d["success"] or tx is not None:
            _pattern(tx, _HEX32, "settle response transaction")
        block = d.get("blockNumber")
        return cls(
            success=d["success"],
            network=str(d.get("network", "")),
            transaction=tx,
            payer=d.get("payer"),
            error_reason=d.get("errorReason"),
            message=d.get("message"),
            block_number=block if isinstance(block, int) and not isinstance(block, bool) else None,
        )


def _b64_json(doc: Mapping[str, Any]) -> str:
    text = json.dumps(doc, separators=(",", ":"), sort_keys=True)
    return base64.b64encode(text.encode()).decode("ascii")


def _json_b64(header: str | None, what: str) -> Any:
    if not header or not header.strip():
        raise _bad(f"the {what} header is empty")
    if len(header) > MAX_HEADER_BYTES:
        raise _bad(f"the {what} header is longer than {MAX_HEADER_BYTES} bytes")
    try:
        raw = base64.b64decode(header.strip(), validate=True)
        return loads_bounded(raw.decode("utf-8"))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise _bad(f"the {what} header is not base64 of a JSON object") from None


def encode_payment_header(payload: PaymentPayload) -> str:
    """``X-PAYMENT``: base64 of the payment payload's JSON."""
    return _b64_json(payload.to_dict())


def decode_payment_header(header: str | None) -> PaymentPayload:
    """Parse ``X-PAYMENT`` strictly; :class:`PaymentError` (``malformed``) otherwise."""
    return PaymentPayload.from_dict(_json_b64(header, PAYMENT_HEADER))


def encode_response_header(response: SettleResponse) -> str:
    """``X-PAYMENT-RESPONSE``: base64 of the settlement response's JSON."""
    return _b64_json(response.to_dict())


def decode_response_header(header: str | None) -> SettleResponse:
    return SettleResponse.from_dict(_json_b64(header, PAYMENT_RESPONSE_HEADER))
