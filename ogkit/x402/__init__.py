"""x402 payments (HTTP 402) in OPG: the wire format, the ``exact`` scheme with EIP-3009
``transferWithAuthorization``, and a local facilitator (``/verify``, ``/settle``,
``/supported``). See ``docs/node.md``."""

from ogkit.x402.exact import authorization_typed_data, check_exact_payment, sign_exact_payment
from ogkit.x402.facilitator import Facilitator, FacilitatorClient
from ogkit.x402.types import (
    PAYMENT_HEADER,
    PAYMENT_RESPONSE_HEADER,
    SCHEME_EXACT,
    X402_VERSION,
    Authorization,
    PaymentPayload,
    PaymentRequirements,
    SettleResponse,
    VerifyResponse,
    decode_payment_header,
    decode_response_header,
    encode_payment_header,
    encode_response_header,
    network_id,
)

__all__ = [
    "PAYMENT_HEADER",
    "PAYMENT_RESPONSE_HEADER",
    "SCHEME_EXACT",
    "X402_VERSION",
    "Authorization",
    "Facilitator",
    "FacilitatorClient",
    "PaymentPayload",
    "PaymentRequirements",
    "SettleResponse",
    "VerifyResponse",
    "authorization_typed_data",
    "check_exact_payment",
    "decode_payment_header",
    "decode_response_header",
    "encode_payment_header",
    "encode_response_header",
    "network_id",
    "sign_exact_payment",
]
