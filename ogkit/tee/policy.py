"""The verifier's policy over verified TEE claims: what is refused, and why.

Three things are refused by default, each with its own finding (docs/tee.md §4):

* a debug enclave (``tee-debug``): TDX ``TD_ATTRIBUTES.DEBUG``, SGX
  ``ATTRIBUTES.DEBUG``, a Nitro enclave whose PCR0, PCR1 and PCR2 are all zero (what
  ``nitro-cli run-enclave --debug-mode`` reports);
* a TCB status other than ``UpToDate`` (``tee-tcb-out-of-date``): Intel's
  ``OutOfDate``, ``SWHardeningNeeded``, ``ConfigurationNeeded``, ``Revoked`` …;
* collateral (CRLs, TCB info, QE identity, certificates) that was not valid at the
  verification time (``tee-collateral-expired``; raised by the verifiers).

Each can be relaxed explicitly, and a relaxation is said in the verdict's notices.
"""

from __future__ import annotations

from dataclasses import dataclass

from ogkit.errors import ConfigError
from ogkit.tee.claims import TeeClaims

__all__ = ["AWS_NITRO_ROOT_SHA256", "INTEL_SGX_ROOT_SHA256", "EvidencePolicy", "policy_findings"]

#: SHA-256 of the DER of the AWS Nitro Enclaves root (CN=aws.nitro-enclaves, AWS
#: "AWS_NitroEnclaves_Root-G1", valid 2019-10-28 to 2049-10-28).
AWS_NITRO_ROOT_SHA256 = "641a0321a3e244efe456463195d606317ed7cdcc3c1756e09893f3c68f79bb5b"
#: SHA-256 of the DER of Intel's "Intel SGX Root CA" (the DCAP root of SGX and TDX
#: quotes, valid to 2049-12-31).
INTEL_SGX_ROOT_SHA256 = "44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3"


@dataclass(frozen=True)
class EvidencePolicy:
    """How hardware evidence is judged. The defaults refuse debug enclaves, every TCB
    status but ``UpToDate`` and collateral that had expired at the verification time."""

    allow_debug: bool = False
    tcb_statuses: frozenset[str] = frozenset({"UpToDate"})
    # True: collateral or certificates outside their window at the verification time are
    # checked at the edge of the window instead, with a notice (never for production).
    allow_expired_collateral: bool = False
    # A Nitro document made longer than this before the claim was signed is refused.
    max_evidence_age_s: int = 6 * 3600
    # Intel collateral whose oldest part (TCB info, QE identity, CRLs) was issued longer
    # than this before the verification time is refused (tee-evidence-stale): a TCB Intel
    # revoked since is still UpToDate in it. None: any collateral within its window
    # (nextUpdate, about 30 days after issue).
    max_collateral_age_s: int | None = None
    nitro_root_sha256: str = AWS_NITRO_ROOT_SHA256
    intel_root_sha256: str = INTEL_SGX_ROOT_SHA256

    def __post_init__(self) -> None:
        if isinstance(self.tcb_statuses, str):
            raise ConfigError("tcb_statuses is a set of status names, not one string")
        object.__setattr__(self, "tcb_statuses", frozenset(self.tcb_statuses))
        if self.max_evidence_age_s < 0:
            raise ConfigError("max_evidence_age_s must be >= 0")
        if self.max_collateral_age_s is not None and self.max_collateral_age_s < 0:
            raise ConfigError("max_collateral_age_s must be >= 0 or None")
        for name in ("nitro_root_sha256", "intel_root_sha256"):
            value = getattr(self, name).lower()
            if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
                raise ConfigError(f"{name} must be 64 hex digits (a SHA-256 fingerprint)")
            object.__setattr__(self, name, value)


def policy_findings(claims: TeeClaims, policy: EvidencePolicy) -> list[tuple[str, str]]:
    """``(reason, detail)`` for each rule of ``policy`` that ``claims`` break."""
    out: list[tuple[str, str]] = []
    if claims.debug and not policy.allow_debug:
        why = {
            "tdx": "TD_ATTRIBUTES.DEBUG is set",
            "sgx": "ATTRIBUTES.DEBUG is set",
            "nitro": "PCR0, PCR1 and PCR2 are all zero (a debug-mode enclave)",
        }[claims.tee]
        out.append(("tee-debug", f"a debug {claims.tee} enclave: {why}"))
    if claims.tee in ("tdx", "sgx") and claims.tcb_status not in policy.tcb_statuses:
        advisories = f" ({', '.join(claims.advisory_ids)})" if claims.advisory_ids else ""
        out.append(
            (
                "tee-tcb-out-of-date",
                f"TCB status {claims.tcb_status}{advisories}; the policy accepts "
                f"{', '.join(sorted(policy.tcb_statuses))}",
            )
        )
    return out
