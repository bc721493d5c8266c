"""The x402 wire format and the offline half of the ``exact`` scheme, without a chain:
hostile headers only ever give PaymentError('malformed'), and a signed authorization
verifies only unaltered, in the domain it was signed for, with a canonical signature."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ogkit.errors import PaymentError
from ogkit.keys import SECP256K1_N, KeyStore
from ogkit.x402 import (
    Authorization,
    PaymentPayload,
    PaymentRequirements,
    SettleResponse,
    check_exact_payment,
    decode_payment_header,
    decode_response_header,
    encode_payment_header,
    encode_response_header,
    sign_exact_payment,
)

TOKEN = "0x5FC8d32690cc91D4c39d9d3abcBD16989F875707"
NOW = 1_800_000_000


@pytest.fixture
def payer(home):
    return KeyStore(home).ensure_dev_key("payer")


@pytest.fixture
def req(home) -> PaymentRequirements:
    return PaymentRequirements(
        network="eip155:31337",
        max_amount_required=3 * 10**15,
        resource="http://127.0.0.1/v1/infer",
        pay_to=KeyStore(home).ensure_dev_key("node").address,
        asset=TOKEN,
        extra={"name": "OpenGradient Token", "version": "1"},
    )


def _check(payment, req, **kw):
    return check_exact_payment(
        payment, req, now=kw.pop("now", NOW), token_name=kw.pop("name", "OpenGradient Token"),
        token_version="1",
    )  # fmt: skip


def test_round_trip_and_offline_check(payer, req):
    payment = sign_exact_payment(req, payer, now=NOW)
    again = decode_payment_header(encode_payment_header(payment))
    assert again == payment and _check(again, req) == payer.address
    assert PaymentRequirements.from_dict(req.to_dict()) == req
    settled = SettleResponse(
        True, "eip155:31337", transaction="0x" + "12" * 32, payer=payer.address
    )
    assert decode_response_header(encode_response_header(settled)) == settled


def test_every_altered_field_is_refused(payer, req):
    payment = sign_exact_payment(req, payer, now=NOW)
    auth = payment.authorization
    for field, value, reason in (
        ("value", auth.value - 1, "underpaid"),
        ("value", auth.value + 1, "overpaid"),
        ("to", TOKEN, "wrong-payee"),
        ("valid_before", auth.valid_before + 1, "bad-signature"),
        ("valid_after", auth.valid_after - 1, "bad-signature"),
        ("nonce", "0x" + "00" * 32, "bad-signature"),
    ):
        altered = PaymentPayload(
            network=payment.network,
            signature=payment.signature,
            authorization=Authorization(**{**auth.__dict__, field: value}),
        )
        with pytest.raises(PaymentError) as refused:
            _check(altered, req)
        assert refused.value.reason == reason, field
    # The domain the checker knows the token by, never the payment's claim.
    with pytest.raises(PaymentError, match="signed by"):
        _check(payment, req, name="Another Token")
    # The same signature with s flipped to the upper half (malleability) is refused.
    raw = bytes.fromhex(payment.signature[2:])
    s = SECP256K1_N - int.from_bytes(raw[32:64], "big")
    high = raw[:32] + s.to_bytes(32, "big") + bytes([55 - raw[64]])
    flipped = PaymentPayload(payment.network, "0x" + high.hex(), auth)
    with pytest.raises(PaymentError) as refused:
        _check(flipped, req)
    assert refused.value.reason == "bad-signature"
    with pytest.raises(PaymentError) as refused:
        _check(payment, req, now=auth.valid_before)
    assert refused.value.reason == "expired"
    long = sign_exact_payment(req, payer, now=NOW, valid_for=10 * 86_400)
    with pytest.raises(PaymentError) as refused:
        _check(long, req)
    assert refused.value.reason == "too-long"


scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5)
    ),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None)
@given(st.one_of(st.text(max_size=200), json_values.map(
    lambda v: base64.b64encode(json.dumps(v).encode()).decode()
)))  # fmt: skip
def test_hostile_headers_are_only_ever_malformed(header):
    with pytest.raises(PaymentError) as refused:
        decode_payment_header(header)
    assert refused.value.reason == "malformed"


@settings(max_examples=100, deadline=None)
@given(json_values)
def test_hostile_documents_are_only_ever_malformed(doc):
    for parse in (PaymentPayload.from_dict, PaymentRequirements.from_dict, Authorization.from_dict):
        with pytest.raises(PaymentError):
            parse(doc)
