"""x402's ``exact`` scheme on EVM: an EIP-3009 ``TransferWithAuthorization`` of the price.

The payer signs, in the token's EIP-712 domain (``name``, ``version``, chain id, token
address), ``TransferWithAuthorization(from, to, value, validAfter, validBefore, nonce)``
with a random 32-byte nonce (EIP-3009; OpenZeppelin's ``ERC3009``, which the OPG token
inherits, consumes each (from, nonce) once). Whoever holds the signature can submit it,
but the token moves exactly ``value`` from ``from`` to ``to`` and nowhere else, once, and
only between ``validAfter`` and ``validBefore`` (both exclusive, in seconds).

:func:`sign_exact_payment` is the client's half; :func:`check_exact_payment` is the
offline half of verification (everything but the chain's balance and nonce state), used
by the facilitator and by a resource server before it asks one.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from eth_utils import to_checksum_address

from ogkit.errors import OgkitError, PaymentError
from ogkit.keys import Signer, recover_typed_data
from ogkit.x402.types import (
    SCHEME_EXACT,
    X402_VERSION,
    Authorization,
    PaymentPayload,
    PaymentRequirements,
)

__all__ = [
    "REQUEST_BINDING",
    "TRANSFER_WITH_AUTHORIZATION_TYPES",
    "authorization_typed_data",
    "check_exact_payment",
    "request_nonce",
    "sign_exact_payment",
]

TRANSFER_WITH_AUTHORIZATION_TYPES = [
    {"name": "from", "type": "address"},
    {"name": "to", "type": "address"},
    {"name": "value", "type": "uint256"},
    {"name": "validAfter", "type": "uint256"},
    {"name": "validBefore", "type": "uint256"},
    {"name": "nonce", "type": "bytes32"},
]
_DOMAIN_TYPES = [
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
]
CLOCK_SKEW = 6
"""Seconds an authorization must still be valid for after it is checked (it has to be
mined before ``validBefore``)."""


REQUEST_BINDING = "ogkit.x402.request.v1"
"""``extra.binding`` of a requirement whose nonce must commit to the request (see
:func:`request_nonce`)."""


def _chain_id(network: str) -> int:
    return int(network.split(":", 1)[1])


def request_nonce(requirements: PaymentRequirements, body: bytes) -> str:
    """The EIP-3009 nonce that binds a payment to one request of one node (ogkit's
    profile of x402 ``exact``, docs/spec.md 11.3)::

        keccak256(utf8("ogkit.x402.request.v1") || uint256(chain id) || payTo (20 bytes)
                  || extra.instance (32 bytes) || extra.modelId (32 bytes)
                  || keccak256(request body bytes))

    A payment so signed pays for exactly this body (these rows, this salt) at exactly
    this node instance and model: sent with another body, to another node sharing the
    payee, or for another model, its nonce no longer matches and it is refused before
    anything is charged. The body carries a random ``salt`` so that two identical calls
    get two nonces. PaymentError (``malformed``) if the requirement lacks the fields."""
    from ogkit.crypto.keccak import keccak256

    extra = requirements.extra
    try:
        instance = bytes.fromhex(str(extra["instance"])[2:])
        model_id = bytes.fromhex(str(extra["modelId"])[2:])
        pay_to = bytes.fromhex(requirements.pay_to[2:])
    except (KeyError, ValueError):
        raise PaymentError(
            "the payment requirements lack extra.instance / extra.modelId of the "
            f"{REQUEST_BINDING} binding",
            reason="malformed",
        ) from None
    if len(instance) != 32 or len(model_id) != 32 or len(pay_to) != 20:
        raise PaymentError(
            "the binding's instance, model id or payee is malformed", reason="malformed"
        )
    message = (
        REQUEST_BINDING.encode()
        + _chain_id(requirements.network).to_bytes(32, "big")
        + pay_to
        + instance
        + model_id
        + keccak256(bytes(body))
    )
    return "0x" + keccak256(message).hex()


def authorization_typed_data(
    authorization: Authorization, *, token_name: str, token_version: str, chain_id: int, token: str
) -> dict[str, Any]:
    """The EIP-712 message of an EIP-3009 transfer authorization."""
    return {
        "types": {
            "EIP712Domain": _DOMAIN_TYPES,
            "TransferWithAuthorization": TRANSFER_WITH_AUTHORIZATION_TYPES,
        },
        "primaryType": "TransferWithAuthorization",
        "domain": {
            "name": token_name,
            "version": token_version,
            "chainId": int(chain_id),
            "verifyingContract": to_checksum_address(token),
        },
        "message": {
            "from": to_checksum_address(authorization.from_),
            "to": to_checksum_address(authorization.to),
            "value": int(authorization.value),
            "validAfter": int(authorization.valid_after),
            "validBefore": int(authorization.valid_before),
            "nonce": bytes.fromhex(authorization.nonce[2:]),
        },
    }


def sign_exact_payment(
    requirements: PaymentRequirements,
    payer: Signer,
    *,
    now: int | None = None,
    value: int | None = None,
    nonce: str | None = None,
    valid_for: int | None = None,
) -> PaymentPayload:
    """Sign a payment of ``requirements.max_amount_required`` (or ``value``) to its
    ``payTo``, valid from a minute before ``now`` (default: this machine's clock) for the
    requirement's ``maxTimeoutSeconds`` (or ``valid_for``), with a fresh random nonce."""
    if requirements.scheme != SCHEME_EXACT:
        raise PaymentError(
            f"scheme {requirements.scheme!r} is not supported (ogkit signs 'exact')",
            reason="unsupported-scheme",
        )
    extra = requirements.extra
    if not isinstance(extra.get("name"), str) or not isinstance(extra.get("version"), str):
        raise PaymentError(
            "the payment requirements do not name the token's EIP-712 domain "
            "(extra.name and extra.version)",
            reason="malformed",
        )
    now = int(time.time()) if now is None else int(now)
    authorization = Authorization(
        from_=payer.address,
        to=to_checksum_address(requirements.pay_to),
        value=int(requirements.max_amount_required if value is None else value),
        valid_after=max(now - 60, 0),
        valid_before=now + int(valid_for or requirements.max_timeout_seconds),
        nonce=nonce or "0x" + secrets.token_bytes(32).hex(),
    )
    typed = authorization_typed_data(
        authorization,
        token_name=extra["name"],
        token_version=extra["version"],
        chain_id=_chain_id(requirements.network),
        token=requirements.asset,
    )
    return PaymentPayload(
        network=requirements.network,
        signature=payer.sign_typed_data(typed),
        authorization=authorization,
    )


def check_exact_payment(
    payment: PaymentPayload,
    requirements: PaymentRequirements,
    *,
    now: int,
    token_name: str,
    token_version: str,
) -> str:
    """Check ``payment`` against ``requirements`` without the chain and return the payer.

    ``token_name``/``token_version`` are the domain the checker knows the token by (never
    the one the payment or the requirements claim). Raises :class:`PaymentError` whose
    ``reason`` names the first problem: ``unsupported-version``, ``unsupported-scheme``,
    ``wrong-network``, ``wrong-payee``, ``underpaid``, ``overpaid``, ``not-yet-valid``,
    ``expired``, ``too-long`` (valid for longer than ``maxTimeoutSeconds`` allows) or
    ``bad-signature``."""
    auth = payment.authorization
    if payment.x402_version != X402_VERSION:
        raise PaymentError(
            f"x402 version {payment.x402_version} is not supported (this server speaks "
            f"{X402_VERSION})",
            reason="unsupported-version",
        )
    if payment.scheme != SCHEME_EXACT or requirements.scheme != SCHEME_EXACT:
        raise PaymentError(
            f"scheme {payment.scheme!r} is not accepted: pay with scheme 'exact'",
            reason="unsupported-scheme",
        )
    if payment.network != requirements.network:
        raise PaymentError(
            f"the payment is for network {payment.network}, the resource asks for "
            f"{requirements.network}",
            reason="wrong-network",
        )
    if auth.to.lower() != requirements.pay_to.lower():
        raise PaymentError(
            f"the payment goes to {auth.to}, not to the payee {requirements.pay_to}",
            reason="wrong-payee",
        )
    if auth.value < requirements.max_amount_required:
        raise PaymentError(
            f"the payment is {auth.value} base units, the price is "
            f"{requirements.max_amount_required}",
            reason="underpaid",
        )
    if auth.value > requirements.max_amount_required:
        raise PaymentError(
            f"the payment is {auth.value} base units, more than the exact price "
            f"{requirements.max_amount_required}; sign exactly the price",
            reason="overpaid",
        )
    if auth.valid_after >= now:
        raise PaymentError(
            f"the authorization is valid only after {auth.valid_after} (now {now})",
            reason="not-yet-valid",
        )
    if auth.valid_before <= now + CLOCK_SKEW:
        raise PaymentError(
            f"the authorization expired at {auth.valid_before} (now {now}); sign a new one",
            reason="expired",
        )
    if auth.valid_before - now > requirements.max_timeout_seconds + 60:
        raise PaymentError(
            f"the authorization stays valid for {auth.valid_before - now} s, longer than "
            f"the {requirements.max_timeout_seconds} s the resource allows",
            reason="too-long",
        )
    typed = authorization_typed_data(
        auth,
        token_name=token_name,
        token_version=token_version,
        chain_id=_chain_id(requirements.network),
        token=requirements.asset,
    )
    try:
        signer = recover_typed_data(typed, payment.signature)
    except (OgkitError, ValueError) as exc:
        raise PaymentError(
            f"the payment's signature is rejected: {exc}", reason="bad-signature"
        ) from None
    if signer.lower() != auth.from_.lower():
        raise PaymentError(
            f"the authorization is signed by {signer}, not by its payer {auth.from_}",
            reason="bad-signature",
        )
    return to_checksum_address(auth.from_)
