"""Intel DCAP: TDX and SGX quotes, verified offline with ``dcap-qvl`` against Intel's
root, pinned by fingerprint.

A quote (TDX quote v4/v5, SGX quote v3) is signed by the Quoting Enclave's attestation
key, certified by the platform's PCK certificate, which chains to the Intel SGX Root CA.
Whether the platform's TCB is current is read from Intel's signed TCB info; the QE's
from the signed QE identity; revocation from two CRLs. Together these are the
*collateral* (``dcap_qvl.QuoteCollateralV3``): it travels with the quote so that a
verifier checks the quote as of the verification time recorded, offline, even after
the collateral has since expired (Intel reissues it about every 30 days).

``dcap-qvl`` is an optional dependency (``pip install 'ogkit[tee]'``); without it the
verifier reports ``tee-verifier-unavailable``, never a pass.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from ogkit.tee.claims import REGISTERS, EvidenceError, TeeClaims, measurement_hash
from ogkit.tee.policy import EvidencePolicy

__all__ = [
    "QuoteFields",
    "collateral_issued_at",
    "collateral_window",
    "parse_quote",
    "verify_quote",
]

TEE_TYPE_SGX = 0x00
TEE_TYPE_TDX = 0x81
_CHAINS = ("pck_crl_issuer_chain", "tcb_info_issuer_chain", "qe_identity_issuer_chain")
_COLLATERAL_FIELDS = (
    "pck_crl_issuer_chain",
    "root_ca_crl",
    "pck_crl",
    "tcb_info_issuer_chain",
    "tcb_info",
    "tcb_info_signature",
    "qe_identity_issuer_chain",
    "qe_identity",
    "qe_identity_signature",
)


def _dcap() -> Any:
    try:
        import dcap_qvl
    except ImportError:
        raise EvidenceError(
            "tee-verifier-unavailable",
            "Intel DCAP quotes need dcap-qvl: pip install 'ogkit[tee]' (or dcap-qvl>=0.7)",
        ) from None
    return dcap_qvl


class QuoteFields:
    """The fields of a parsed (not yet verified) quote that ogkit reads."""

    def __init__(self, tee: str, registers: dict[str, bytes], report_data: bytes, debug: bool):
        self.tee = tee
        self.registers = registers
        self.report_data = report_data
        self.debug = debug

    @property
    def measurement(self) -> str:
        return measurement_hash(self.tee, self.registers)


def parse_quote(quote: bytes) -> QuoteFields:
    """Read a TDX or SGX quote's measurement registers, report data and debug bit.

    Parsing is not verifying: :func:`verify_quote` does both."""
    dcap = _dcap()
    try:
        parsed = dcap.parse_quote(bytes(quote))
        tee_type = parsed.header.tee_type
        report = parsed.report
    except (ValueError, TypeError) as exc:
        raise EvidenceError("tee-evidence-malformed", f"not a DCAP quote: {exc}") from None
    if tee_type == TEE_TYPE_TDX:
        names, _ = REGISTERS["tdx"]
        registers = {n: bytes(getattr(report, n)) for n in names}
        # TD_ATTRIBUTES (8 bytes, little-endian): bit 0 is TUD.DEBUG.
        debug = bool(bytes(report.td_attributes)[0] & 0x01)
        return QuoteFields("tdx", registers, bytes(report.report_data), debug)
    if tee_type == TEE_TYPE_SGX:
        names, _ = REGISTERS["sgx"]
        registers = {n: bytes(getattr(report, n)) for n in names}
        # ATTRIBUTES.FLAGS (little-endian): bit 1 is DEBUG.
        debug = bool(bytes(report.attributes)[0] & 0x02)
        return QuoteFields("sgx", registers, bytes(report.report_data), debug)
    raise EvidenceError("tee-evidence-malformed", f"quote of unknown TEE type {tee_type:#x}")


def _collateral_dict(collateral: Mapping[str, Any] | str) -> dict[str, Any]:
    if isinstance(collateral, str):
        try:
            collateral = json.loads(collateral)
        except ValueError as exc:
            raise EvidenceError(
                "tee-evidence-malformed", f"collateral is not JSON: {exc}"
            ) from None
    if not isinstance(collateral, Mapping):
        raise EvidenceError("tee-evidence-malformed", "collateral must be a JSON object")
    missing = [k for k in _COLLATERAL_FIELDS if not isinstance(collateral.get(k), str)]
    if missing:
        raise EvidenceError("tee-evidence-malformed", f"collateral lacks {', '.join(missing)}")
    return dict(collateral)


def _rfc3339(value: Any, what: str) -> int:
    try:
        return int(datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp())
    except ValueError:
        raise EvidenceError(
            "tee-evidence-malformed", f"{what} is not a date: {value!r:.40}"
        ) from None


def collateral_window(collateral: Mapping[str, Any] | str) -> tuple[int, int]:
    """``(not_before, not_after)`` in unix seconds: when every part of the collateral is
    valid at once, both ends included — TCB info and QE identity (``issueDate`` ..
    ``nextUpdate``), both CRLs (``thisUpdate`` .. ``nextUpdate``) and the certificates
    of the issuer chains."""
    return _collateral_times(collateral)[:2]


def collateral_issued_at(collateral: Mapping[str, Any] | str) -> int:
    """The oldest issue date (unix seconds) of the collateral's parts that Intel re-issues
    about monthly: TCB info and QE identity ``issueDate``, the PCK CRL's ``thisUpdate``
    (not the root CA's CRL, issued about yearly). A platform whose TCB or PCK Intel
    revoked after that date is still listed as it was in the collateral."""
    return _collateral_times(collateral)[2]


def _collateral_times(collateral: Mapping[str, Any] | str) -> tuple[int, int, int]:
    from cryptography import x509

    c = _collateral_dict(collateral)
    starts: list[int] = []
    ends: list[int] = []
    for name in ("tcb_info", "qe_identity"):
        try:
            doc = json.loads(c[name])
        except ValueError:
            raise EvidenceError(
                "tee-evidence-malformed", f"collateral {name} is not JSON"
            ) from None
        if not isinstance(doc, Mapping):
            raise EvidenceError("tee-evidence-malformed", f"collateral {name} is not an object")
        starts.append(_rfc3339(doc.get("issueDate"), f"{name} issueDate"))
        ends.append(_rfc3339(doc.get("nextUpdate"), f"{name} nextUpdate"))
    for name in ("root_ca_crl", "pck_crl"):
        try:
            crl = x509.load_der_x509_crl(bytes.fromhex(c[name]))
        except ValueError as exc:
            raise EvidenceError("tee-evidence-malformed", f"collateral {name}: {exc}") from None
        starts.append(int(crl.last_update_utc.timestamp()))
        if crl.next_update_utc is not None:
            ends.append(int(crl.next_update_utc.timestamp()))
    issued = min(starts[:2] + starts[3:])  # TCB info, QE identity, PCK CRL
    for cert in _chain_certs(c):
        starts.append(int(cert.not_valid_before_utc.timestamp()))
        ends.append(int(cert.not_valid_after_utc.timestamp()))
    # A CRL or TCB info is stale *at* its nextUpdate: the last valid second is one before.
    return max(starts), min(ends) - 1, issued


def _chain_certs(c: Mapping[str, Any]) -> list[Any]:
    from cryptography import x509

    certs = []
    for name in _CHAINS:
        try:
            chain = x509.load_pem_x509_certificates(c[name].encode())
        except ValueError as exc:
            raise EvidenceError("tee-evidence-malformed", f"collateral {name}: {exc}") from None
        certs.extend(chain)
    return certs


def _pinned_root(c: Mapping[str, Any], fingerprint: str) -> tuple[bytes, list[str]]:
    """The root every issuer chain of the collateral ends in, checked against the pin."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    root_der = None
    subjects: list[str] = []
    for name in _CHAINS:
        try:
            chain = x509.load_pem_x509_certificates(c[name].encode())
        except ValueError as exc:
            raise EvidenceError("tee-evidence-malformed", f"collateral {name}: {exc}") from None
        der = chain[-1].public_bytes(Encoding.DER)
        if hashlib.sha256(der).hexdigest() != fingerprint:
            raise EvidenceError(
                "tee-evidence-invalid",
                f"collateral {name} ends in a root with SHA-256 "
                f"{hashlib.sha256(der).hexdigest()}, not the pinned Intel SGX Root CA",
            )
        root_der = der
        if name == "tcb_info_issuer_chain":
            subjects = [cert.subject.rfc4514_string() for cert in chain]
    assert root_der is not None
    return root_der, subjects


def verify_quote(
    quote: bytes,
    collateral: Mapping[str, Any] | str,
    *,
    at: int,
    policy: EvidencePolicy | None = None,
) -> TeeClaims:
    """Verify a TDX or SGX quote with its collateral as of unix time ``at``.

    Checks, through ``dcap-qvl``: the quote's signature by the QE attestation key, the
    QE report's binding of that key, the PCK certificate chain to the Intel SGX Root CA
    (pinned here by fingerprint, ``policy.intel_root_sha256``), both CRLs, the signed TCB
    info and QE identity, and the platform's TCB status. Raises :class:`EvidenceError`
    (``tee-evidence-malformed``, ``tee-evidence-invalid``, ``tee-collateral-expired``,
    ``tee-verifier-unavailable``); the caller applies the debug and TCB policy
    (:func:`ogkit.tee.policy.policy_findings`).
    """
    try:
        return _verify_quote(quote, collateral, at, policy or EvidencePolicy())
    except EvidenceError:
        raise
    except (KeyboardInterrupt, SystemExit, GeneratorExit):
        raise
    except BaseException as exc:  # hostile bytes: cryptography's lazy parsing, a Rust panic
        raise EvidenceError(
            "tee-evidence-malformed", f"the quote or collateral: {type(exc).__name__}: {exc}"[:300]
        ) from None


def _verify_quote(
    quote: bytes, collateral: Mapping[str, Any] | str, at: int, policy: EvidencePolicy
) -> TeeClaims:
    started = time.perf_counter()
    dcap = _dcap()
    fields = parse_quote(quote)
    c = _collateral_dict(collateral)
    root_der, chain = _pinned_root(c, policy.intel_root_sha256)
    not_before, not_after, issued = _collateral_times(c)
    when = at
    if not not_before <= at <= not_after:
        if not policy.allow_expired_collateral:
            raise EvidenceError(
                "tee-collateral-expired",
                f"the collateral is valid from {_iso(not_before)} to {_iso(not_after)}, not at "
                f"the verification time {_iso(at)}",
            )
        when = min(max(at, not_before), not_after)
    try:
        col = dcap.QuoteCollateralV3.from_json(json.dumps(c))
    except (ValueError, TypeError) as exc:
        raise EvidenceError("tee-evidence-malformed", f"collateral: {exc}") from None
    try:
        report = dcap.verify_with_root_ca(bytes(quote), col, root_der, int(when))
    except (ValueError, RuntimeError) as exc:
        text = " ".join(str(exc).split())
        reason = "tee-collateral-expired" if "xpired" in text else "tee-evidence-invalid"
        raise EvidenceError(reason, f"the quote does not verify: {text[:300]}") from None
    return TeeClaims(
        tee=fields.tee,
        registers={k: "0x" + v.hex() for k, v in fields.registers.items()},
        measurement=fields.measurement,
        report_data=fields.report_data,
        public_key=None,
        nonce=None,
        debug=fields.debug,
        tcb_status=str(report.status),
        advisory_ids=tuple(str(a) for a in report.advisory_ids),
        signer_chain=("quote: QE attestation key (certified by the platform's PCK)", *chain),
        root_sha256=policy.intel_root_sha256,
        verified_at=int(when),
        valid_from=not_before,
        valid_until=not_after,
        generated_at=None,
        seconds=time.perf_counter() - started,
        collateral_issued_at=issued,
    )


def _iso(ts: int) -> str:
    from datetime import UTC

    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
