"""Hardware evidence travelling in a batch and re-verified by ``verify_batch`` as of the
batch's commit time (``trusted_time``; the claim's own time is the node's word, see
test_residual_tee_time.py): real quotes and documents, their findings in the verdict,
and the software enclave's path unchanged.

The batch is made by the real pipeline; its attester evidence is then replaced by a real
quote (or document) and the claim re-signed with the attester's key at a time inside the
vector's collateral window, as a node holding that evidence would have. The vectors'
report data does not bind the test key, so against them the verdict must name
``tee-key-mismatch``; the accepting path uses the real verified claims with only their
report data replaced (as in test_tee_binding.py).
"""

from __future__ import annotations

import base64
import dataclasses

import numpy as np
import pytest
from tee_vectors import NITRO, NITRO_AT, TDX_V4

from ogkit.attest import BatchClaim, make_attester
from ogkit.batch import ARTIFACTS, AttestedBatch
from ogkit.hub.manifest import canonical_json
from ogkit.infer import run_verified_inference
from ogkit.keys import KeyStore
from ogkit.tee import evidence as ev
from ogkit.tee.claims import binding_digest, report_data_for
from ogkit.tee.evidence import hardware_evidence, verify_evidence
from ogkit.verify import REASONS, Allowlist, VerifyPolicy, verify_batch

X = np.random.default_rng(7).normal(size=(300, 8)).astype(np.float32)


@pytest.fixture
def node(home, published):
    signer = KeyStore(home).ensure_dev_key("enclave")
    requester = KeyStore(home).ensure_dev_key("requester").address
    batch = run_verified_inference(
        "tab",
        X,
        attester=make_attester("software", signer=signer),
        requester=requester,
        hub=published,
        progress=False,
    )
    return signer, batch


def _public_key(signer) -> bytes:
    from eth_keys import keys

    return keys.PrivateKey(bytes(signer.local_account.key)).public_key.to_bytes()


def _with_evidence(batch: AttestedBatch, signer, evidence: dict, timestamp: int) -> AttestedBatch:
    """The batch as a node with this evidence signs it: evidence in, claim re-signed."""
    manifest = batch.manifest.to_dict()
    manifest["attester"] = evidence
    claim = BatchClaim.from_dict({**manifest["claim"], "timestamp": timestamp})
    manifest["claim"] = claim.to_dict()
    manifest["signature"] = signer.sign_typed_data(claim.typed_data(batch.domain))
    return AttestedBatch(
        manifest, batch.store.put(ARTIFACTS, canonical_json(manifest)), batch.store
    )


def _tdx(batch, signer, quote: bytes = TDX_V4.quote) -> dict:
    return hardware_evidence(
        "tdx",
        runtime_id=batch.runtime_id,
        public_key=_public_key(signer),
        generated_at=TDX_V4.at,
        quote=quote,
        collateral=TDX_V4.collateral,
    )


def _verify(batch, allow: Allowlist, published, **policy):
    return verify_batch(
        batch,
        VerifyPolicy(sample_rate=0.05, allowlist=allow, verifier_secret=b"s", **policy),
        hub=published,
        dataset=X,
        progress=False,
    )


def _allow(signer, batch, *measurements, kind=2) -> Allowlist:
    kinds = {m: kind for m in measurements}
    return Allowlist().approve(signer.address, [batch.runtime_id, *measurements], kinds)


def test_every_tee_finding_is_a_stable_reason():
    for name in ev.TEE_REASONS:
        assert name in REASONS and name.startswith("tee-")


def test_software_enclave_still_passes_and_can_be_required_to_be_hardware(node, published):
    signer, batch = node
    allow = Allowlist().approve(signer.address, [batch.runtime_id])
    verdict = _verify(batch, allow, published)
    assert verdict.passed and verdict.hardware is None
    strict = _verify(batch, allow, published, require_hardware=True)
    assert strict.reasons() == {"tee-required": 1}


@pytest.mark.usefixtures("dcap_qvl")
def test_real_tdx_quote_in_a_batch_is_reverified_and_its_key_refused(node, published):
    signer, batch = node
    hw = _with_evidence(batch, signer, _tdx(batch, signer), TDX_V4.at)
    m = verify_evidence(hw.manifest.attester, at=TDX_V4.at).measurement
    verdict = _verify(hw, _allow(signer, batch, m), published, trusted_time=TDX_V4.at)
    assert verdict.reasons() == {"tee-key-mismatch": 1}
    assert verdict.hardware["claims"]["tee"] == "tdx"
    assert verdict.hardware["claims"]["tcb_status"] == "UpToDate"
    assert verdict.hardware["claims"]["verified_at"] == TDX_V4.at
    assert not verdict.hardware["hardware_backed"]
    # Not approved: the measurement is named too.
    allow = Allowlist().approve(signer.address, [batch.runtime_id])
    unapproved = _verify(hw, allow, published, trusted_time=TDX_V4.at)
    assert unapproved.reasons() == {"tee-key-mismatch": 1, "tee-measurement-unapproved": 1}


@pytest.mark.usefixtures("dcap_qvl")
def test_tampered_quote_in_a_batch_is_refused(node, published):
    signer, batch = node
    quote = bytearray(TDX_V4.quote)
    quote[48 + 520] ^= 1  # inside the report data
    hw = _with_evidence(batch, signer, _tdx(batch, signer, bytes(quote)), TDX_V4.at)
    verdict = _verify(hw, _allow(signer, batch), published, trusted_time=TDX_V4.at)
    assert verdict.reasons() == {"tee-evidence-invalid": 1}


@pytest.mark.usefixtures("dcap_qvl")
def test_claim_signed_after_the_collateral_expired_is_refused(node, published):
    signer, batch = node
    hw = _with_evidence(batch, signer, _tdx(batch, signer), TDX_V4.at + 40 * 86400)
    verdict = _verify(hw, _allow(signer, batch), published, trusted_time=TDX_V4.at + 40 * 86400)
    assert verdict.reasons() == {"tee-collateral-expired": 1}


def test_real_nitro_debug_document_in_a_batch_is_refused(node, published):
    signer, batch = node
    evidence = hardware_evidence(
        "nitro",
        runtime_id=batch.runtime_id,
        public_key=_public_key(signer),
        generated_at=NITRO_AT,
        document=NITRO,
    )
    hw = _with_evidence(batch, signer, evidence, NITRO_AT)
    m = verify_evidence(evidence, at=NITRO_AT).measurement
    verdict = _verify(hw, _allow(signer, batch, m, kind=4), published, trusted_time=NITRO_AT)
    assert verdict.reasons() == {"tee-key-mismatch": 1, "tee-debug": 1}


def test_evidence_claiming_hardware_without_any_is_refused(node, published):
    signer, batch = node
    forged = {"kind": "nitro", "hardware_backed": True, "measurement": batch.runtime_id}
    hw = _with_evidence(batch, signer, forged, batch.manifest.claim.timestamp)
    verdict = _verify(hw, _allow(signer, batch), published)
    assert not verdict.passed and set(verdict.reasons()) == {"tee-evidence-malformed"}
    unknown = _with_evidence(
        batch, signer, {**forged, "kind": "sev-snp"}, batch.manifest.claim.timestamp
    )
    assert set(_verify(unknown, _allow(signer, batch), published).reasons()) == {
        "evidence-mismatch"
    }


@pytest.mark.usefixtures("dcap_qvl")
def test_old_honest_hardware_batch_still_verifies_with_a_notice(
    node, published, monkeypatch: pytest.MonkeyPatch
):
    """With the enclave's binding in place (the real quote's verified claims, report data
    replaced), the batch passes as hardware-backed as of its commit time, long after the
    collateral expired: a notice says so."""
    signer, batch = node
    nonce = bytes.fromhex(batch.runtime_id[2:])
    real = ev.VERIFIERS["tdx"]

    def bound(evidence, at, policy):
        claims = real(evidence, at, policy)
        return dataclasses.replace(claims, report_data=report_data_for(_public_key(signer), nonce))

    monkeypatch.setitem(ev.VERIFIERS, "tdx", bound)
    evidence = _tdx(batch, signer)
    hw = _with_evidence(batch, signer, evidence, TDX_V4.at)
    m = verify_evidence(evidence, at=TDX_V4.at).measurement
    verdict = _verify(hw, _allow(signer, batch, m), published, trusted_time=TDX_V4.at)
    assert verdict.passed, verdict.findings
    assert verdict.summary().endswith("[tdx evidence: hardware-backed]")
    assert verdict.hardware["hardware_backed"] and verdict.hardware["claims"]["measurement"] == m
    assert any("expired since" in n for n in verdict.notices)
    assert base64.b64decode(hw.manifest.attester["quote"]) == TDX_V4.quote
    # Approved as another kind (Nitro) it is refused.
    wrong_kind = _verify(hw, _allow(signer, batch, m, kind=4), published, trusted_time=TDX_V4.at)
    assert wrong_kind.reasons() == {"tee-measurement-unapproved": 1}
    assert (
        binding_digest(_public_key(signer), nonce)
        == report_data_for(_public_key(signer), nonce)[:32]
    )
