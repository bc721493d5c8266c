"""AWS Nitro: a real attestation document (a debug-mode enclave: PCR0-2 all zero), verified
with ogkit's own COSE_Sign1 code against the pinned AWS Nitro root, and each way of
breaking it refused."""

from __future__ import annotations

import time

import cbor2
import pytest
from tee_vectors import NITRO, NITRO_AT

from ogkit.tee.claims import EvidenceError, measurement_hash
from ogkit.tee.nitro import parse_document, verify_document
from ogkit.tee.policy import AWS_NITRO_ROOT_SHA256, EvidencePolicy, policy_findings


def _reason(data: bytes, at: int = NITRO_AT, policy: EvidencePolicy | None = None) -> str:
    with pytest.raises(EvidenceError) as info:
        verify_document(data, at=at, policy=policy)
    return info.value.reason


def _edit(fn) -> bytes:
    """Re-encode the document after ``fn`` edits its four parts or its payload map."""
    parts = cbor2.loads(NITRO)
    fn(parts)
    return cbor2.dumps(parts)


def _edit_payload(fn) -> bytes:
    def edit(parts):
        doc = cbor2.loads(parts[2])
        fn(doc)
        parts[2] = cbor2.dumps(doc)

    return _edit(edit)


def test_real_document_verifies_with_its_claims():
    claims = verify_document(NITRO, at=NITRO_AT)
    assert claims.tee == "nitro" and claims.tcb_status == "n/a"
    assert claims.report_data == b"hello, world!"  # its user_data
    assert claims.public_key == b"my super secret key" and claims.nonce is None
    assert claims.generated_at == 1_679_495_307
    assert set(claims.registers) == {"pcr0", "pcr1", "pcr2"}
    raw = {k: bytes.fromhex(v[2:]) for k, v in claims.registers.items()}
    assert claims.measurement == measurement_hash("nitro", raw)
    assert claims.root_sha256 == AWS_NITRO_ROOT_SHA256
    assert len(claims.signer_chain) == 5 and claims.signer_chain[-1].startswith(
        "CN=aws.nitro-enclaves"
    )
    assert claims.valid_from <= NITRO_AT <= claims.valid_until
    started = time.perf_counter()
    for _ in range(5):
        verify_document(NITRO, at=NITRO_AT)
    assert (time.perf_counter() - started) / 5 < 0.1


def test_debug_enclave_is_refused_by_default():
    """All-zero PCR0, PCR1 and PCR2: what a debug-mode enclave reports."""
    claims = verify_document(NITRO, at=NITRO_AT)
    assert claims.debug
    [(reason, _)] = policy_findings(claims, EvidencePolicy())
    assert reason == "tee-debug"
    assert policy_findings(claims, EvidencePolicy(allow_debug=True)) == []


def test_tagged_cose_sign1_is_accepted():
    tagged = cbor2.dumps(cbor2.CBORTag(18, cbor2.loads(NITRO)))
    assert (
        verify_document(tagged, at=NITRO_AT).measurement
        == verify_document(NITRO, at=NITRO_AT).measurement
    )


def test_tampered_payload_is_refused():
    def tamper(doc):
        doc["user_data"] = b"hello, World!"

    assert _reason(_edit_payload(tamper)) == "tee-evidence-invalid"


def test_nonzero_pcr_forged_into_a_debug_document_is_refused():
    """Claiming an approved measurement by rewriting PCR0 breaks the signature."""

    def tamper(doc):
        doc["pcrs"][0] = bytes(range(48))

    assert _reason(_edit_payload(tamper)) == "tee-evidence-invalid"


def test_tampered_signature_is_refused():
    def tamper(parts):
        parts[3] = bytes([parts[3][0] ^ 1]) + parts[3][1:]

    assert _reason(_edit(tamper)) == "tee-evidence-invalid"


def test_tampered_certificate_is_refused():
    def tamper(doc):
        cert = bytearray(doc["cabundle"][2])
        cert[-20] ^= 1  # inside the issuer's signature over it
        doc["cabundle"][2] = bytes(cert)

    assert _reason(_edit_payload(tamper)) in {"tee-evidence-invalid", "tee-evidence-malformed"}


def test_chain_with_a_certificate_left_out_is_refused():
    def tamper(doc):
        del doc["cabundle"][1]

    assert _reason(_edit_payload(tamper)) == "tee-evidence-invalid"


def test_another_root_is_refused():
    assert _reason(NITRO, policy=EvidencePolicy(nitro_root_sha256="11" * 32)) == (
        "tee-evidence-invalid"
    )

    def swap_root(doc):
        doc["cabundle"][0] = doc["cabundle"][1]

    assert _reason(_edit_payload(swap_root)) == "tee-evidence-invalid"


def test_expired_certificates_are_refused_at_the_verification_time():
    """The signing certificate lives about three hours: the document verifies at the
    claim's time, not later, and not before it was issued."""
    claims = verify_document(NITRO, at=NITRO_AT)
    assert claims.valid_until - claims.valid_from < 4 * 3600
    assert _reason(NITRO, at=claims.valid_until + 1) == "tee-collateral-expired"
    assert _reason(NITRO, at=claims.valid_from - 1) == "tee-collateral-expired"
    assert _reason(NITRO, at=int(time.time())) == "tee-collateral-expired"
    late = verify_document(
        NITRO, at=claims.valid_until + 60, policy=EvidencePolicy(allow_expired_collateral=True)
    )
    assert late.verified_at == claims.valid_until


@pytest.mark.parametrize(
    "edit",
    [
        lambda parts: parts.__setitem__(0, cbor2.dumps({1: -7})),  # ES256, not ES384
        lambda parts: parts.pop(),
        lambda parts: parts.__setitem__(3, b"\x00" * 64),
    ],
    ids=["alg", "three-parts", "short-signature"],
)
def test_malformed_structure_is_named(edit):
    assert _reason(_edit(edit)) == "tee-evidence-malformed"


@pytest.mark.parametrize(
    "edit",
    [
        lambda d: d.__setitem__("digest", "SHA256"),
        lambda d: d["pcrs"].__setitem__(1, b"\x00" * 32),
        lambda d: d.pop("module_id"),
        lambda d: d.__setitem__("cabundle", []),
        lambda d: d.__setitem__("user_data", b"x" * 513),
        lambda d: d.__setitem__("surprise", 1),
    ],
    ids=["digest", "pcr-size", "module-id", "cabundle", "user-data", "extra-field"],
)
def test_malformed_payload_is_named_before_any_signature(edit):
    with pytest.raises(EvidenceError) as info:
        parse_document(_edit_payload(edit))
    assert info.value.reason == "tee-evidence-malformed"


def test_garbage_is_malformed_not_a_crash():
    for data in (b"", b"\xff\xff", b"\x84" + b"\x40" * 4, cbor2.dumps([1, 2, 3, 4]), NITRO[:500]):
        assert _reason(data) == "tee-evidence-malformed"


def test_mutated_documents_never_crash_nor_change_the_claims():
    import random
    import warnings

    rng = random.Random(17)
    honest = verify_document(NITRO, at=NITRO_AT)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # cryptography warns about mangled serial numbers
        for _ in range(200):
            raw = bytearray(NITRO)
            for _ in range(rng.randint(1, 3)):
                raw[rng.randrange(len(raw))] = rng.randrange(256)
            try:
                claims = verify_document(bytes(raw), at=NITRO_AT)
            except EvidenceError:
                continue
            assert claims.to_dict() | {"seconds": 0} == honest.to_dict() | {"seconds": 0}
