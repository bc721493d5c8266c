"""Hardware evidence as it travels in a batch, and the one check a verifier runs on it.

The evidence is the ``attester`` object of a batch manifest (canonical JSON)::

    {"kind": "tdx" | "sgx" | "nitro", "hardware_backed": true,
     "runtime_id": "0x…",        # the nonce the enclave bound: the claim's runtime id
     "public_key": "0x…",        # the attester's secp256k1 key, 64 bytes (x ‖ y)
     "measurement": "0x…",       # measurement_hash of the registers (recomputed)
     "binding": "keccak256(public_key ‖ runtime_id)",
     "quote": "<base64>", "collateral": {…}     # tdx, sgx: DCAP quote + collateral
     "document": "<base64>"                      # nitro: the COSE_Sign1 document
     "generated_at": 1700000000}                 # unix s, the attester's clock

:func:`check_evidence` verifies it as of a time the caller trusts and the node does not
choose: the block time of the batch's on-chain commit (``ogkit.verify`` passes
``VerifyPolicy.trusted_time``), else the verifier's own clock. Never the claim's
timestamp: the node writes it, and a node whose collateral has expired or whose TCB was
revoked would backdate its claims into the old collateral's window. So a batch committed
while its collateral was valid still verifies, as of its commit, after the collateral has
expired (a notice, not a finding).
It is accepted as hardware-backed only when the evidence verifies against its pinned
root, the key it commits to is the claim's attester, its measurement is approved as its
kind, and the debug/TCB policy holds.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ogkit.tee.claims import (
    HARDWARE_KINDS,
    MEASUREMENT_KINDS,
    EvidenceError,
    TeeClaims,
    address_of,
    binding_digest,
    report_data_for,
)
from ogkit.tee.policy import EvidencePolicy, policy_findings

__all__ = [
    "BINDING",
    "TEE_REASONS",
    "VERIFIERS",
    "EvidenceCheck",
    "check_binding",
    "check_evidence",
    "hardware_evidence",
    "verify_evidence",
]

BINDING = "keccak256(public_key ‖ runtime_id)"
MAX_CLOCK_SKEW_S = 300

#: The verifier's findings about hardware evidence; stable strings (ogkit.verify.REASONS).
TEE_REASONS = {
    "tee-evidence-malformed": "the hardware evidence cannot be read as a quote or document of "
    "its kind",
    "tee-evidence-invalid": "the quote or document does not verify to the pinned root "
    "(tampered, forged or another root)",
    "tee-collateral-expired": "the collateral or certificates were not valid at the "
    "verification time (the batch's commit time, else the verifier's clock)",
    "tee-evidence-stale": "the evidence was made after the claim or too long before it, or its "
    "collateral was issued longer before the verification time than the policy accepts",
    "tee-tcb-out-of-date": "the platform's TCB status is not one the policy accepts",
    "tee-debug": "the evidence is from a debug enclave",
    "tee-key-mismatch": "the enclave's report data does not commit to the attester's key and "
    "the runtime id",
    "tee-measurement-unapproved": "the enclave's measurement is not approved as its kind",
    "tee-verifier-unavailable": "the verifier for this evidence is not installed",
    "tee-required": "the verifier requires hardware evidence; this batch has a software enclave",
}


def _b64(value: Any, what: str) -> bytes:
    if not isinstance(value, str) or not value:
        raise EvidenceError("tee-evidence-malformed", f"evidence {what} must be base64 text")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise EvidenceError("tee-evidence-malformed", f"evidence {what} is not base64") from None


def _hex_bytes(value: Any, what: str, size: int) -> bytes:
    try:
        raw = bytes.fromhex(str(value).removeprefix("0x"))
    except ValueError:
        raw = b""
    if not isinstance(value, str) or not value.startswith("0x") or len(raw) != size:
        raise EvidenceError("tee-evidence-malformed", f"evidence {what} must be 0x + {size} bytes")
    return raw


def _verify_dcap(evidence: Mapping[str, Any], at: int, policy: EvidencePolicy) -> TeeClaims:
    from ogkit.tee.dcap import verify_quote

    quote = _b64(evidence.get("quote"), "quote")
    collateral = evidence.get("collateral")
    if not isinstance(collateral, Mapping):
        raise EvidenceError("tee-evidence-malformed", "evidence collateral must be an object")
    claims = verify_quote(quote, collateral, at=at, policy=policy)
    if claims.tee != evidence.get("kind"):
        raise EvidenceError(
            "tee-evidence-malformed",
            f"evidence of kind {evidence.get('kind')} holds a {claims.tee} quote",
        )
    return claims


def _verify_nitro(evidence: Mapping[str, Any], at: int, policy: EvidencePolicy) -> TeeClaims:
    from ogkit.tee.nitro import verify_document

    return verify_document(_b64(evidence.get("document"), "document"), at=at, policy=policy)


#: evidence kind -> its verifier (evidence, verification time, policy) -> TeeClaims.
VERIFIERS: dict[str, Callable[[Mapping[str, Any], int, EvidencePolicy], TeeClaims]] = {
    "tdx": _verify_dcap,
    "sgx": _verify_dcap,
    "nitro": _verify_nitro,
}


def hardware_evidence(
    kind: str,
    *,
    runtime_id: str,
    public_key: bytes,
    generated_at: int,
    quote: bytes | None = None,
    collateral: Mapping[str, Any] | None = None,
    document: bytes | None = None,
    measurement: str | None = None,
) -> dict[str, Any]:
    """The evidence object a hardware attester puts in a batch manifest."""
    doc: dict[str, Any] = {
        "kind": kind,
        "hardware_backed": True,
        "runtime_id": runtime_id,
        "public_key": "0x" + bytes(public_key).hex(),
        "binding": BINDING,
        "generated_at": int(generated_at),
    }
    if measurement is not None:
        doc["measurement"] = measurement
    if kind in ("tdx", "sgx"):
        if quote is None or collateral is None:
            raise EvidenceError(
                "tee-evidence-malformed", f"{kind} evidence needs quote and collateral"
            )
        doc["quote"] = base64.b64encode(bytes(quote)).decode()
        doc["collateral"] = dict(collateral)
    elif kind == "nitro":
        if document is None:
            raise EvidenceError("tee-evidence-malformed", "nitro evidence needs the document")
        doc["document"] = base64.b64encode(bytes(document)).decode()
    else:
        raise EvidenceError("tee-evidence-malformed", f"unknown hardware evidence kind {kind!r}")
    return doc


def verify_evidence(
    evidence: Mapping[str, Any], *, at: int, policy: EvidencePolicy | None = None
) -> TeeClaims:
    """Verify the quote or document in ``evidence`` as of unix time ``at`` with its
    kind's verifier (:data:`VERIFIERS`); raises :class:`EvidenceError`. Policy and key
    binding are :func:`check_evidence`'s."""
    kind = evidence.get("kind") if isinstance(evidence, Mapping) else None
    verifier = VERIFIERS.get(kind) if isinstance(kind, str) else None
    if verifier is None:
        raise EvidenceError("tee-evidence-malformed", f"no verifier for evidence kind {kind!r:.40}")
    try:
        return verifier(evidence, int(at), policy or EvidencePolicy())
    except EvidenceError:
        raise
    except Exception as exc:  # a verifier's own bug or hostile input: a finding, not a crash
        raise EvidenceError(
            "tee-evidence-malformed", f"{kind} evidence: {type(exc).__name__}: {exc}"[:300]
        ) from None


@dataclass
class EvidenceCheck:
    """The outcome of :func:`check_evidence`."""

    claims: TeeClaims | None
    findings: list[tuple[str, str]] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)

    @property
    def hardware_backed(self) -> bool:
        return self.claims is not None and not self.findings

    def to_dict(self) -> dict[str, Any]:
        return {
            "hardware_backed": self.hardware_backed,
            "claims": None if self.claims is None else self.claims.to_dict(),
            "findings": [list(f) for f in self.findings],
            "notices": list(self.notices),
        }


def _iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def check_binding(claims: TeeClaims, public_key: bytes, runtime_id: bytes) -> str | None:
    """``None`` when the enclave's report data commits to ``public_key`` and
    ``runtime_id`` (TDX/SGX: report data = digest ‖ 32 zero bytes; Nitro: user_data =
    digest), else what differs."""
    if claims.tee == "nitro":
        want = binding_digest(public_key, runtime_id)
        where = "user_data"
    else:
        want = report_data_for(public_key, runtime_id)
        where = "report data"
    if claims.report_data == want:
        return None
    return (
        f"the {claims.tee} {where} is 0x{claims.report_data.hex()[:64]}…, not "
        f"keccak256(attester key ‖ runtime id) = 0x{want[:32].hex()}"
    )


def check_evidence(
    evidence: Mapping[str, Any],
    *,
    attester: str,
    runtime_id: str,
    at: int,
    claimed_at: int | None = None,
    when: str = "the verification time",
    approved: Collection[str] = (),
    kinds: Mapping[str, int] | None = None,
    policy: EvidencePolicy | None = None,
    now: float | None = None,
) -> EvidenceCheck:
    """Verify hardware ``evidence`` for a claim by ``attester`` over ``runtime_id`` as of
    unix time ``at``, a time the node did not choose (``when`` names it in notices: the
    batch's commit time, the verifier's clock). ``claimed_at`` is the claim's own
    timestamp (default ``at``): a Nitro document must be dated near it. ``approved``
    holds the measurement hashes approved for this attester (lower-case 0x hex) and
    ``kinds`` the kind each was approved as, where known. Never raises on what the
    evidence holds: every problem is a ``(reason, detail)`` finding."""
    import time

    policy = policy or EvidencePolicy()
    now = time.time() if now is None else now
    claimed = int(at) if claimed_at is None else int(claimed_at)
    out = EvidenceCheck(None)
    kind = evidence.get("kind")
    if kind not in HARDWARE_KINDS:
        out.findings.append(("tee-evidence-malformed", f"unknown evidence kind {kind!r:.40}"))
        return out
    try:
        public_key = _hex_bytes(evidence.get("public_key"), "public_key", 64)
        rid = _hex_bytes(runtime_id, "runtime_id", 32)
        claims = verify_evidence(evidence, at=at, policy=policy)
    except EvidenceError as exc:
        out.findings.append((exc.reason, str(exc)))
        return out
    out.claims = claims
    if policy.allow_expired_collateral and claims.verified_at != int(at):
        out.notices.append(
            f"tee: the {kind} collateral was not valid at {when} {_iso(int(at))}; "
            f"checked at {_iso(claims.verified_at)} instead (allow_expired_collateral)"
        )
    if address_of(public_key).lower() != attester.lower():
        out.findings.append(
            (
                "tee-key-mismatch",
                f"the evidence's public key is {address_of(public_key)}'s, not the attester "
                f"{attester}'s",
            )
        )
    else:
        problem = check_binding(claims, public_key, rid)
        if problem is not None:
            out.findings.append(("tee-key-mismatch", problem))
    if str(evidence.get("runtime_id", "")).lower() != runtime_id.lower():
        out.findings.append(
            (
                "tee-key-mismatch",
                f"the evidence binds runtime id {evidence.get('runtime_id')!r:.80}, the claim "
                f"{runtime_id}",
            )
        )
    stated = evidence.get("measurement")
    if stated is not None and str(stated).lower() != claims.measurement:
        out.findings.append(
            (
                "tee-measurement-unapproved",
                f"the evidence states measurement {stated!r:.80}; its registers hash to "
                f"{claims.measurement}",
            )
        )
    wanted_kind = MEASUREMENT_KINDS[claims.tee]
    recorded = (kinds or {}).get(claims.measurement)
    if claims.measurement not in approved:
        out.findings.append(
            (
                "tee-measurement-unapproved",
                f"{claims.tee} measurement {claims.measurement} ({_registers(claims)}) is not "
                "approved",
            )
        )
    elif recorded is not None and recorded != wanted_kind:
        out.findings.append(
            (
                "tee-measurement-unapproved",
                f"measurement {claims.measurement} is approved as kind {recorded}, the evidence "
                f"is {claims.tee} (kind {wanted_kind})",
            )
        )
    out.findings.extend(policy_findings(claims, policy))
    if claims.generated_at is not None and (
        claims.generated_at > min(claimed, int(at)) + MAX_CLOCK_SKEW_S
        or claims.generated_at < claimed - policy.max_evidence_age_s
    ):
        out.findings.append(
            (
                "tee-evidence-stale",
                f"the {claims.tee} evidence is dated {_iso(claims.generated_at)}, the claim "
                f"{_iso(claimed)} (at most {policy.max_evidence_age_s} s before it), "
                f"{when} {_iso(int(at))}",
            )
        )
    issued = claims.collateral_issued_at
    if (
        policy.max_collateral_age_s is not None
        and issued is not None
        and int(at) - issued > policy.max_collateral_age_s
    ):
        out.findings.append(
            (
                "tee-evidence-stale",
                f"the {claims.tee} collateral was issued {_iso(issued)}, more than "
                f"{policy.max_collateral_age_s} s before {when} {_iso(int(at))} "
                "(max_collateral_age_s)",
            )
        )
    if now > claims.valid_until and not out.findings:
        out.notices.append(
            f"tee: the {claims.tee} evidence verified as of {when} {_iso(int(at))}; "
            f"its collateral has expired since ({_iso(claims.valid_until)})"
        )
    return out


def _registers(claims: TeeClaims) -> str:
    return ", ".join(f"{k} {v[:18]}…" for k, v in claims.registers.items())
