"""Hardware evidence is verified as of a time the node does not choose.

The claim's ``timestamp`` is the node's own word. A node whose collateral has expired
(or whose TCB was revoked since the collateral it kept was issued) backdates its claim
into the old collateral's window; verified "as of the claim's time", it passed. The
verifier now verifies evidence as of the block time of the batch's on-chain commit
(``VerifyPolicy.trusted_time``, what the daemons, ``ogkit verify --attest`` and the
audit pass) or, without one, its own clock.

The batches are made by the real pipeline and carry the real TDX quote with its real
collateral (tests/tee/vectors). Where the batch must verify as hardware-backed, the
vector's verified claims get the enclave's binding of the test key in their report data
(nothing else replaced), as in test_tee_verify_batch.py: then time is the only thing
that decides.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from tee_vectors import NITRO, NITRO_AT, TDX_V4

from ogkit.attest import BatchClaim, make_attester
from ogkit.batch import ARTIFACTS, AttestedBatch
from ogkit.errors import ConfigError
from ogkit.hub.manifest import canonical_json
from ogkit.infer import run_verified_inference
from ogkit.keys import KeyStore
from ogkit.tee import evidence as ev
from ogkit.tee.claims import binding_digest, report_data_for
from ogkit.tee.evidence import hardware_evidence, verify_evidence
from ogkit.tee.policy import EvidencePolicy
from ogkit.verify import Allowlist, VerifyPolicy, verify_batch

X = np.random.default_rng(11).normal(size=(200, 8)).astype(np.float32)
DAY = 86400


@pytest.fixture
def node(home, published):
    signer = KeyStore(home).ensure_dev_key("enclave")
    batch = run_verified_inference(
        "tab",
        X,
        attester=make_attester("software", signer=signer),
        requester=KeyStore(home).ensure_dev_key("requester").address,
        hub=published,
        progress=False,
    )
    return signer, batch


def _public_key(signer) -> bytes:
    from eth_keys import keys

    return keys.PrivateKey(bytes(signer.local_account.key)).public_key.to_bytes()


@pytest.fixture
def bound(node, monkeypatch: pytest.MonkeyPatch):
    """The TDX and Nitro verifiers' real claims with the enclave's binding of the node's
    key and runtime id in their report data."""
    signer, batch = node
    nonce = bytes.fromhex(batch.runtime_id[2:])
    key = _public_key(signer)
    for kind, digest in (("tdx", report_data_for), ("nitro", binding_digest)):
        real = ev.VERIFIERS[kind]

        def rebound(evidence, at, policy, _real=real, _digest=digest):
            return dataclasses.replace(_real(evidence, at, policy), report_data=_digest(key, nonce))

        monkeypatch.setitem(ev.VERIFIERS, kind, rebound)


def _signed(batch: AttestedBatch, signer, evidence: dict, timestamp: int) -> AttestedBatch:
    """The batch as the node signs it: its evidence in, the claim dated ``timestamp``."""
    manifest = batch.manifest.to_dict()
    manifest["attester"] = evidence
    claim = BatchClaim.from_dict({**manifest["claim"], "timestamp": timestamp})
    manifest["claim"] = claim.to_dict()
    manifest["signature"] = signer.sign_typed_data(claim.typed_data(batch.domain))
    artifact = batch.store.put(ARTIFACTS, canonical_json(manifest))
    return AttestedBatch(manifest, artifact, batch.store)


def _tdx(batch, signer) -> dict:
    return hardware_evidence(
        "tdx",
        runtime_id=batch.runtime_id,
        public_key=_public_key(signer),
        generated_at=TDX_V4.at,
        quote=TDX_V4.quote,
        collateral=TDX_V4.collateral,
    )


def _verify(batch, allow, published, **policy):
    return verify_batch(
        batch,
        VerifyPolicy(sample_rate=0.05, allowlist=allow, verifier_secret=b"t", **policy),
        hub=published,
        dataset=X,
        progress=False,
    )


def _allow(signer, batch, evidence, kind: int) -> Allowlist:
    m = verify_evidence(evidence, at=TDX_V4.at if kind == 2 else NITRO_AT).measurement
    return Allowlist().approve(signer.address, [batch.runtime_id, m], {m: kind})


@pytest.mark.usefixtures("dcap_qvl", "bound")
def test_backdated_claim_is_verified_at_the_commit_not_at_its_own_date(node, published):
    """The collateral's window ends about ten days after TDX_V4.at. The node commits two
    days after it ended (the contract takes claims up to claimMaxAge, 7 days, old) with
    a claim dated the day before it ended."""
    signer, batch = node
    evidence = _tdx(batch, signer)
    end = verify_evidence(evidence, at=TDX_V4.at).valid_until
    backdated = _signed(batch, signer, evidence, end - DAY)
    allow = _allow(signer, batch, evidence, 2)
    committed_late = _verify(backdated, allow, published, trusted_time=end + 2 * DAY)
    assert committed_late.reasons() == {"tee-collateral-expired": 1}
    assert not committed_late.hardware["hardware_backed"]
    # Without a commit to go by, the verifier's clock decides (years after the window).
    assert _verify(backdated, allow, published).reasons() == {"tee-collateral-expired": 1}
    # Committed while the collateral was valid, the same batch is hardware-backed, as of
    # its commit time, however late it is verified (the audit replays it years later).
    in_time = _verify(backdated, allow, published, trusted_time=end - DAY + 60)
    assert in_time.passed, in_time.findings
    assert in_time.hardware["hardware_backed"]
    assert in_time.hardware["claims"]["verified_at"] == end - DAY + 60
    assert any("commit time" in n and "expired since" in n for n in in_time.notices)


@pytest.mark.usefixtures("dcap_qvl", "bound")
def test_claim_dated_after_its_commit_is_refused(node, published):
    signer, batch = node
    evidence = _tdx(batch, signer)
    ahead = _signed(batch, signer, evidence, TDX_V4.at + 3600)
    verdict = _verify(ahead, _allow(signer, batch, evidence, 2), published, trusted_time=TDX_V4.at)
    assert verdict.reasons() == {"claim-timestamp": 1}


@pytest.mark.usefixtures("dcap_qvl", "bound")
def test_tee_measurement_approved_for_another_attester_is_refused(node, published):
    """Pairs hold for hardware evidence too: the node's key holds a real quote of an
    enclave whose measurement the verifier approved for another attester only."""
    signer, batch = node
    evidence = _tdx(batch, signer)
    hw = _signed(batch, signer, evidence, TDX_V4.at)
    m = verify_evidence(evidence, at=TDX_V4.at).measurement
    other = KeyStore(published.home).ensure_dev_key("other-enclave")
    allow = (
        Allowlist().approve(signer.address, [batch.runtime_id]).approve(other.address, [m], {m: 2})
    )
    verdict = _verify(hw, allow, published, trusted_time=TDX_V4.at)
    assert verdict.reasons() == {"tee-measurement-unapproved": 1}
    paired = allow.approve(signer.address, [m], {m: 2})
    assert _verify(hw, paired, published, trusted_time=TDX_V4.at).passed


@pytest.mark.usefixtures("bound")
def test_backdated_nitro_claim_outlives_its_three_hour_certificate_no_more(node, published):
    """A Nitro signing certificate lives about three hours. The node commits five hours
    after its document was made, with the claim dated a minute after the document."""
    signer, batch = node
    evidence = hardware_evidence(
        "nitro",
        runtime_id=batch.runtime_id,
        public_key=_public_key(signer),
        generated_at=NITRO_AT,
        document=NITRO,
    )
    hw = _signed(batch, signer, evidence, NITRO_AT)
    allow = _allow(signer, batch, evidence, 4)
    lax = EvidencePolicy(allow_debug=True)  # the public vector is a debug enclave
    late = _verify(hw, allow, published, trusted_time=NITRO_AT + 5 * 3600, evidence=lax)
    assert late.reasons() == {"tee-collateral-expired": 1}
    in_time = _verify(hw, allow, published, trusted_time=NITRO_AT + 600, evidence=lax)
    assert in_time.passed and in_time.hardware["hardware_backed"], in_time.findings


@pytest.mark.usefixtures("dcap_qvl", "bound")
def test_collateral_older_than_the_policy_accepts_is_stale(node, published):
    """Within its window, collateral still lists a TCB Intel revoked after it was issued.
    A verifier bounds that lag with max_collateral_age_s: the vector's TCB info, QE
    identity and PCK CRL were issued about 19 days before TDX_V4.at."""
    from ogkit.tee.dcap import collateral_issued_at

    signer, batch = node
    evidence = _tdx(batch, signer)
    hw = _signed(batch, signer, evidence, TDX_V4.at)
    allow = _allow(signer, batch, evidence, 2)
    issued = collateral_issued_at(TDX_V4.collateral)
    day = EvidencePolicy(max_collateral_age_s=DAY)
    stale = _verify(hw, allow, published, trusted_time=TDX_V4.at, evidence=day)
    assert stale.reasons() == {"tee-evidence-stale": 1}
    assert stale.hardware["claims"]["collateral_issued_at"] == issued
    early = _signed(batch, signer, evidence, issued + DAY - 120)
    fresh = _verify(early, allow, published, trusted_time=issued + DAY - 60, evidence=day)
    assert fresh.passed, fresh.findings
    with pytest.raises(ConfigError, match="max_collateral_age_s"):
        EvidencePolicy(max_collateral_age_s=-1)


def test_trusted_time_is_unix_seconds():
    for bad in (-1, 1.5, True, "1700000000"):
        with pytest.raises(ConfigError, match="trusted_time"):
            VerifyPolicy(trusted_time=bad)
