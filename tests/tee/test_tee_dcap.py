"""Intel DCAP: real TDX (v4, v5) and SGX (v3) quotes with their collateral, verified offline
against the pinned Intel SGX Root CA, and each way of breaking them refused."""

from __future__ import annotations

import copy
import dataclasses
import json
import time

import pytest
from tee_vectors import SGX, TDX_V4, TDX_V5, Quote

from ogkit.tee.claims import EvidenceError, measurement_hash
from ogkit.tee.dcap import collateral_window, parse_quote, verify_quote
from ogkit.tee.policy import EvidencePolicy, policy_findings

pytestmark = pytest.mark.usefixtures("dcap_qvl")


def _reason(fn) -> str:
    with pytest.raises(EvidenceError) as info:
        fn()
    return info.value.reason


@pytest.mark.parametrize("q", [TDX_V4, TDX_V5, SGX], ids=lambda q: q.name)
def test_real_quote_verifies_with_its_claims(q: Quote):
    claims = verify_quote(q.quote, q.collateral, at=q.at)
    assert claims.tee == q.tee and claims.tcb_status == q.tcb_status
    assert not claims.debug
    fields = parse_quote(q.quote)
    assert claims.registers == {k: "0x" + v.hex() for k, v in fields.registers.items()}
    assert claims.measurement == measurement_hash(q.tee, fields.registers)
    assert claims.report_data == fields.report_data and len(claims.report_data) == 64
    assert claims.verified_at == q.at and claims.valid_from <= q.at <= claims.valid_until
    assert claims.root_sha256 == EvidencePolicy().intel_root_sha256
    assert claims.signer_chain[-1].endswith("CN=Intel SGX Root CA")
    # Offline and fast: a few milliseconds, on the slowest CI machine well under 50 ms.
    started = time.perf_counter()
    for _ in range(5):
        verify_quote(q.quote, q.collateral, at=q.at)
    assert (time.perf_counter() - started) / 5 < 0.05


def test_tdx_registers_are_the_quotes():
    fields = parse_quote(TDX_V4.quote)
    assert fields.tee == "tdx" and set(fields.registers) == {
        "mr_td",
        "rt_mr0",
        "rt_mr1",
        "rt_mr2",
        "rt_mr3",
    }
    assert fields.registers["mr_td"].hex().startswith("91eb2b44d141d4ec")
    assert all(len(v) == 48 for v in fields.registers.values())
    sgx = parse_quote(SGX.quote)
    assert sgx.tee == "sgx" and sgx.registers["mr_enclave"].hex().startswith("33d8736db756ed49")
    assert sgx.report_data.startswith(b"Hello, world!")


def test_out_of_date_tcb_is_refused_by_default_and_allowed_explicitly():
    """The SGX sample's platform is ConfigurationAndSWHardeningNeeded (INTEL-SA-00289,
    INTEL-SA-00615): the quote verifies, the default policy refuses its TCB."""
    claims = verify_quote(SGX.quote, SGX.collateral, at=SGX.at)
    assert claims.advisory_ids == ("INTEL-SA-00289", "INTEL-SA-00615")
    [(reason, detail)] = policy_findings(claims, EvidencePolicy())
    assert reason == "tee-tcb-out-of-date" and "INTEL-SA-00289" in detail
    relaxed = EvidencePolicy(tcb_statuses={"UpToDate", "ConfigurationAndSWHardeningNeeded"})
    assert policy_findings(claims, relaxed) == []


@pytest.mark.parametrize("where", ["report body", "report data", "signature", "pck chain"])
def test_tampered_quote_is_refused(where: str):
    raw = bytearray(TDX_V4.quote)
    offset = {"report body": 48 + 200, "report data": 48 + 520, "signature": 640, "pck chain": 4000}
    raw[offset[where]] ^= 0x01
    assert _reason(lambda: verify_quote(bytes(raw), TDX_V4.collateral, at=TDX_V4.at)) in {
        "tee-evidence-invalid",
        "tee-evidence-malformed",
    }


def test_tampered_collateral_is_refused():
    """TCB info that claims a better status than Intel signed fails its signature."""
    collateral = copy.deepcopy(SGX.collateral)
    info = json.loads(collateral["tcb_info"])
    info["tcbLevels"][0]["tcbStatus"] = "UpToDate"
    for level in info["tcbLevels"]:
        level["tcbStatus"] = "UpToDate"
    collateral["tcb_info"] = json.dumps(info, separators=(",", ":"))
    assert _reason(lambda: verify_quote(SGX.quote, collateral, at=SGX.at)) == "tee-evidence-invalid"


def test_expired_collateral_is_refused_at_the_verification_time():
    start, end = collateral_window(TDX_V4.collateral)
    assert end - start > 20 * 86400  # Intel's ~30-day window
    verify_quote(TDX_V4.quote, TDX_V4.collateral, at=end)
    verify_quote(TDX_V4.quote, TDX_V4.collateral, at=start)
    for at in (end + 1, start - 1, int(time.time())):
        assert _reason(lambda at=at: verify_quote(TDX_V4.quote, TDX_V4.collateral, at=at)) == (
            "tee-collateral-expired"
        )
    # Relaxed explicitly (never for production): checked at the window's edge instead.
    late = verify_quote(
        TDX_V4.quote,
        TDX_V4.collateral,
        at=end + 86400,
        policy=EvidencePolicy(allow_expired_collateral=True),
    )
    assert late.verified_at == end


def test_another_root_is_refused():
    other = EvidencePolicy(intel_root_sha256="00" * 32)
    assert _reason(
        lambda: verify_quote(TDX_V4.quote, TDX_V4.collateral, at=TDX_V4.at, policy=other)
    ) == ("tee-evidence-invalid")


def test_malformed_quote_and_collateral_are_named():
    assert _reason(
        lambda: verify_quote(b"\x04\x00" + b"\x00" * 40, TDX_V4.collateral, at=TDX_V4.at)
    ) == ("tee-evidence-malformed")
    broken = {k: v for k, v in TDX_V4.collateral.items() if k != "pck_crl"}
    assert _reason(lambda: verify_quote(TDX_V4.quote, broken, at=TDX_V4.at)) == (
        "tee-evidence-malformed"
    )


def test_debug_bit_is_read_and_refused():
    """No real debug TD quote is public; the debug bit is read from the real quote (clear)
    and the policy refuses the same claims with the bit set."""
    claims = verify_quote(TDX_V4.quote, TDX_V4.collateral, at=TDX_V4.at)
    assert not claims.debug and policy_findings(claims, EvidencePolicy()) == []
    debug = dataclasses.replace(claims, debug=True)
    assert [r for r, _ in policy_findings(debug, EvidencePolicy())] == ["tee-debug"]
    assert policy_findings(debug, EvidencePolicy(allow_debug=True)) == []


@pytest.mark.parametrize("q", [TDX_V4, SGX], ids=lambda q: q.name)
def test_mutated_quotes_and_collateral_never_crash_nor_change_the_claims(q: Quote):
    """Random byte changes: an EvidenceError, or (a change in bytes nothing signs, such as
    the PEM text of a chain the collateral repeats) the very same verified claims."""
    import random

    rng = random.Random(13)
    honest = verify_quote(q.quote, q.collateral, at=q.at)
    for _ in range(60):
        raw = bytearray(q.quote)
        for _ in range(rng.randint(1, 3)):
            raw[rng.randrange(len(raw))] = rng.randrange(256)
        collateral = copy.deepcopy(q.collateral)
        key = rng.choice(sorted(collateral))
        pos = rng.randrange(len(collateral[key]))
        collateral[key] = collateral[key][:pos] + rng.choice("0aZ{-\n") + collateral[key][pos + 1 :]
        for args in ((bytes(raw), q.collateral), (q.quote, collateral)):
            try:
                claims = verify_quote(*args, at=q.at)
            except EvidenceError:
                continue
            assert (claims.measurement, claims.report_data, claims.tcb_status) == (
                honest.measurement,
                honest.report_data,
                honest.tcb_status,
            )
