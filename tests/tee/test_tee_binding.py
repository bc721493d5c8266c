"""The key binding and the measurement hash, and check_evidence's judgement of real evidence.

The public vectors' report data was written by other software, so it cannot commit to an
ogkit key: against them the binding is refused (``tee-key-mismatch``), as it must be.
That the binding is *accepted* when the enclave wrote keccak256(key ‖ runtime id) is
tested separately on the binding logic, with the real vectors' verified claims and only
their report data replaced — no signature or certificate chain is made up anywhere.
"""

from __future__ import annotations

import base64
import dataclasses

import pytest
from eth_account import Account
from tee_vectors import NITRO, NITRO_AT, SGX, TDX_V4

from ogkit.crypto.keccak import keccak256
from ogkit.errors import ConfigError
from ogkit.tee import evidence as ev
from ogkit.tee.claims import (
    MEASUREMENT_TAG,
    address_of,
    binding_digest,
    measurement_hash,
    report_data_for,
)
from ogkit.tee.evidence import check_binding, check_evidence, hardware_evidence, verify_evidence
from ogkit.tee.policy import EvidencePolicy

KEY = Account.from_key("0x" + "c3" * 32)
OTHER = Account.from_key("0x" + "d4" * 32)
RUNTIME_ID = "0x" + "ab" * 32


def _pub(account) -> bytes:
    return account._key_obj.public_key.to_bytes()


def _tdx_evidence(account=KEY, quote: bytes = TDX_V4.quote, **extra) -> dict:
    doc = hardware_evidence(
        "tdx",
        runtime_id=RUNTIME_ID,
        public_key=_pub(account),
        generated_at=TDX_V4.at,
        quote=quote,
        collateral=TDX_V4.collateral,
    )
    doc.update(extra)
    return doc


def test_measurement_hash_is_keccak_of_tag_kind_and_registers():
    regs = {"pcr0": b"\x01" * 48, "pcr1": b"\x02" * 48, "pcr2": b"\x03" * 48}
    want = keccak256(MEASUREMENT_TAG + bytes([4]) + b"\x01" * 48 + b"\x02" * 48 + b"\x03" * 48)
    assert measurement_hash("nitro", regs) == "0x" + want.hex()
    tdx = {
        n: bytes([i]) * 48 for i, n in enumerate(["mr_td", "rt_mr0", "rt_mr1", "rt_mr2", "rt_mr3"])
    }
    sgx = {"mr_enclave": b"\x05" * 32, "mr_signer": b"\x06" * 32}
    assert len({measurement_hash("tdx", tdx), measurement_hash("sgx", sgx), want.hex()}) == 3
    with pytest.raises(ConfigError):
        measurement_hash("nitro", {**regs, "pcr2": b"\x03" * 32})
    with pytest.raises(ConfigError):
        measurement_hash("sev", regs)


def test_binding_is_keccak_of_key_and_nonce():
    pub = _pub(KEY)
    nonce = bytes.fromhex(RUNTIME_ID[2:])
    assert binding_digest(pub, nonce) == keccak256(pub + nonce)
    assert binding_digest(b"\x04" + pub, nonce) == binding_digest(pub, nonce)
    assert report_data_for(pub, nonce) == keccak256(pub + nonce) + bytes(32)
    assert address_of(pub) == KEY.address
    with pytest.raises(ConfigError):
        binding_digest(pub[:33], nonce)
    with pytest.raises(ConfigError):
        binding_digest(pub, nonce[:16])


@pytest.mark.usefixtures("dcap_qvl")
def test_binding_logic_on_real_claims():
    nonce = bytes.fromhex(RUNTIME_ID[2:])
    real = verify_evidence(_tdx_evidence(), at=TDX_V4.at)
    assert check_binding(real, _pub(KEY), nonce) is not None  # the vector's own report data
    bound = dataclasses.replace(real, report_data=report_data_for(_pub(KEY), nonce))
    assert check_binding(bound, _pub(KEY), nonce) is None
    assert check_binding(bound, _pub(OTHER), nonce) is not None
    assert check_binding(bound, _pub(KEY), bytes(32)) is not None
    nitro = verify_evidence(
        {"kind": "nitro", "document": base64.b64encode(NITRO).decode()}, at=NITRO_AT
    )
    assert check_binding(nitro, _pub(KEY), nonce) is not None
    nitro_bound = dataclasses.replace(nitro, report_data=binding_digest(_pub(KEY), nonce))
    assert check_binding(nitro_bound, _pub(KEY), nonce) is None


@pytest.mark.usefixtures("dcap_qvl")
def test_real_quote_for_another_key_is_a_key_mismatch():
    measurement = verify_evidence(_tdx_evidence(), at=TDX_V4.at).measurement
    check = check_evidence(
        _tdx_evidence(),
        attester=KEY.address,
        runtime_id=RUNTIME_ID,
        at=TDX_V4.at,
        approved={measurement},
    )
    assert [r for r, _ in check.findings] == ["tee-key-mismatch"]
    assert not check.hardware_backed and check.claims is not None
    # The evidence names another key than the claim's attester.
    other = check_evidence(
        _tdx_evidence(OTHER),
        attester=KEY.address,
        runtime_id=RUNTIME_ID,
        at=TDX_V4.at,
        approved={measurement},
    )
    assert [r for r, _ in other.findings] == ["tee-key-mismatch"]
    assert "not the attester" in other.findings[0][1]


@pytest.fixture
def bound_verifiers(monkeypatch: pytest.MonkeyPatch):
    """The real verifiers, with the report data of their real claims replaced by what an
    ogkit enclave holding KEY would have written (see the module docstring)."""
    nonce = bytes.fromhex(RUNTIME_ID[2:])
    real = dict(ev.VERIFIERS)

    def rebind(kind):
        def verify(evidence, at, policy):
            claims = real[kind](evidence, at, policy)
            data = (
                binding_digest(_pub(KEY), nonce)
                if kind == "nitro"
                else report_data_for(_pub(KEY), nonce)
            )
            return dataclasses.replace(claims, report_data=data)

        return verify

    for kind in ("tdx", "sgx", "nitro"):
        monkeypatch.setitem(ev.VERIFIERS, kind, rebind(kind))


@pytest.mark.usefixtures("dcap_qvl", "bound_verifiers")
def test_bound_real_quote_is_hardware_backed_only_when_approved_as_its_kind():
    evidence = _tdx_evidence()
    m = verify_evidence(evidence, at=TDX_V4.at).measurement
    ok = check_evidence(
        evidence,
        attester=KEY.address,
        runtime_id=RUNTIME_ID,
        at=TDX_V4.at,
        approved={m},
        kinds={m: 2},
    )
    assert ok.findings == [] and ok.hardware_backed
    assert ok.to_dict()["claims"]["measurement"] == m
    # An old batch: its collateral has expired since; a notice, not a finding.
    assert any("expired since" in n for n in ok.notices)

    unapproved = check_evidence(evidence, attester=KEY.address, runtime_id=RUNTIME_ID, at=TDX_V4.at)
    assert [r for r, _ in unapproved.findings] == ["tee-measurement-unapproved"]
    wrong_kind = check_evidence(
        evidence,
        attester=KEY.address,
        runtime_id=RUNTIME_ID,
        at=TDX_V4.at,
        approved={m},
        kinds={m: 4},
    )
    assert [r for r, _ in wrong_kind.findings] == ["tee-measurement-unapproved"]
    other_runtime = check_evidence(
        evidence,
        attester=KEY.address,
        runtime_id="0x" + "cd" * 32,
        at=TDX_V4.at,
        approved={m},
    )
    assert {r for r, _ in other_runtime.findings} == {"tee-key-mismatch"}
    stated = check_evidence(
        {**evidence, "measurement": "0x" + "00" * 32},
        attester=KEY.address,
        runtime_id=RUNTIME_ID,
        at=TDX_V4.at,
        approved={m},
    )
    assert [r for r, _ in stated.findings] == ["tee-measurement-unapproved"]
    expired = check_evidence(
        evidence,
        attester=KEY.address,
        runtime_id=RUNTIME_ID,
        at=TDX_V4.at + 40 * 86400,
        approved={m},
    )
    assert [r for r, _ in expired.findings] == ["tee-collateral-expired"]


@pytest.mark.usefixtures("dcap_qvl", "bound_verifiers")
def test_bound_sgx_quote_is_refused_for_its_tcb():
    evidence = hardware_evidence(
        "sgx",
        runtime_id=RUNTIME_ID,
        public_key=_pub(KEY),
        generated_at=SGX.at,
        quote=SGX.quote,
        collateral=SGX.collateral,
    )
    m = verify_evidence(evidence, at=SGX.at).measurement
    check = check_evidence(
        evidence, attester=KEY.address, runtime_id=RUNTIME_ID, at=SGX.at, approved={m}
    )
    assert [r for r, _ in check.findings] == ["tee-tcb-out-of-date"]
    relaxed = EvidencePolicy(tcb_statuses={"UpToDate", "ConfigurationAndSWHardeningNeeded"})
    assert check_evidence(
        evidence,
        attester=KEY.address,
        runtime_id=RUNTIME_ID,
        at=SGX.at,
        approved={m},
        policy=relaxed,
    ).hardware_backed


@pytest.mark.usefixtures("bound_verifiers")
def test_bound_nitro_debug_document_is_refused_and_stale_documents_too():
    evidence = hardware_evidence(
        "nitro",
        runtime_id=RUNTIME_ID,
        public_key=_pub(KEY),
        generated_at=NITRO_AT,
        document=NITRO,
    )
    m = verify_evidence(evidence, at=NITRO_AT).measurement
    check = check_evidence(
        evidence, attester=KEY.address, runtime_id=RUNTIME_ID, at=NITRO_AT, approved={m}
    )
    assert [r for r, _ in check.findings] == ["tee-debug"]
    lax = EvidencePolicy(allow_debug=True)
    assert check_evidence(
        evidence,
        attester=KEY.address,
        runtime_id=RUNTIME_ID,
        at=NITRO_AT,
        approved={m},
        policy=lax,
    ).hardware_backed
    # A document made after the claim was signed is refused.
    early_claim = check_evidence(
        evidence,
        attester=KEY.address,
        runtime_id=RUNTIME_ID,
        at=NITRO_AT - 400,
        approved={m},
        policy=EvidencePolicy(allow_debug=True, allow_expired_collateral=True),
    )
    assert "tee-evidence-stale" in {r for r, _ in early_claim.findings}


def test_evidence_that_is_not_evidence_is_named():
    base = {"kind": "tdx", "public_key": "0x" + _pub(KEY).hex(), "runtime_id": RUNTIME_ID}
    for evidence, reason in (
        ({**base, "kind": "sev-snp"}, "tee-evidence-malformed"),
        ({**base, "quote": "!!!", "collateral": {}}, "tee-evidence-malformed"),
        ({**base, "public_key": "0x1234"}, "tee-evidence-malformed"),
        ({**base, "kind": "nitro", "document": "AAAA"}, "tee-evidence-malformed"),
    ):
        check = check_evidence(evidence, attester=KEY.address, runtime_id=RUNTIME_ID, at=1)
        assert [r for r, _ in check.findings] == [reason], evidence


def test_every_vector_is_named_in_the_readme_with_its_hash():
    import hashlib

    from tee_vectors import VECTORS

    readme = (VECTORS / "README.md").read_text()
    for path in VECTORS.iterdir():
        if path.name != "README.md":
            assert f"`{path.name}`" in readme, path.name
            assert f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {path.name}" in readme
