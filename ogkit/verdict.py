"""Verifiers' verdicts: EIP-712 ``Verdict(batchId, claimDigest, pass)`` signatures.

A verifier checks a batch's artefact against what the chain committed (the claim digest,
the dataset commitment, the execution hash, the artefact id), re-executes its secret
sample, and signs a verdict over the *committed* claim digest, so the verdict speaks about
exactly that claim and nothing else (docs/contracts.md, "Verdicts").

Verdicts travel off-chain, through the store (``verdicts/<batch id>/<verifier>.json``),
or on chain as ``VerdictPublished`` events; whoever finalises collects them, keeps the
valid ones and passes them, sorted by verifier address, to ``finalize`` in one call.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from eth_utils import to_checksum_address

from ogkit.attest import EIP712_DOMAIN_TYPE, ClaimDomain, is_address, is_hex32
from ogkit.errors import ArtifactError, SignatureError
from ogkit.keys import Signer, parse_signature, recover_typed_data

if TYPE_CHECKING:
    from ogkit.chain.client import ChainClient
    from ogkit.store import ContentStore

__all__ = [
    "VERDICT_TYPES",
    "SignedVerdict",
    "chain_verdicts",
    "load_verdicts",
    "quorum_verdicts",
    "sign_verdict",
    "store_verdict",
    "verdict_typed_data",
]

log = logging.getLogger(__name__)

VERDICT_TYPES = {
    "EIP712Domain": EIP712_DOMAIN_TYPE,
    "Verdict": [
        {"name": "batchId", "type": "bytes32"},
        {"name": "claimDigest", "type": "bytes32"},
        {"name": "pass", "type": "bool"},
    ],
}


def _b32(value: str) -> bytes:
    return bytes.fromhex(value.removeprefix("0x"))


def verdict_typed_data(
    domain: ClaimDomain, batch_id: str, claim_digest: str, passed: bool
) -> dict[str, Any]:
    """The EIP-712 message a verifier signs (the settlement contract's domain)."""
    return {
        "types": VERDICT_TYPES,
        "primaryType": "Verdict",
        "domain": domain.to_dict(),
        "message": {
            "batchId": _b32(batch_id),
            "claimDigest": _b32(claim_digest),
            "pass": bool(passed),
        },
    }


@dataclass(frozen=True)
class SignedVerdict:
    """One verifier's signed verdict on one committed claim."""

    batch_id: str
    claim_digest: str
    verifier: str
    passed: bool
    signature: str
    chain_id: int
    verifying_contract: str
    reason: str = ""  # why, in words (not signed)

    @property
    def domain(self) -> ClaimDomain:
        return ClaimDomain(self.chain_id, self.verifying_contract)

    def recover(self) -> str:
        """The signer; raises :class:`SignatureError` for anything OpenZeppelin would refuse."""
        return recover_typed_data(
            verdict_typed_data(self.domain, self.batch_id, self.claim_digest, self.passed),
            self.signature,
        )

    def valid(self) -> bool:
        """Whether the signature is canonical and recovers the named verifier."""
        try:
            return self.recover().lower() == self.verifier.lower()
        except SignatureError:
            return False

    def as_tuple(self) -> tuple[str, bool, bytes]:
        """``InferenceSettlement.Verdict`` as contract calls take it."""
        return (to_checksum_address(self.verifier), self.passed, parse_signature(self.signature))

    def compact(self) -> tuple[bytes, bytes]:
        """The EIP-2098 compact signature ``(r, yParity << 255 | s)`` that ``finalize``
        takes for a pass verdict (the contract recovers the signer)."""
        raw = parse_signature(self.signature)
        r, s, v = raw[:32], int.from_bytes(raw[32:64], "big"), raw[64]
        return r, ((v - 27) << 255 | s).to_bytes(32, "big")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Any) -> SignedVerdict:
        """Parse a verdict document strictly (:class:`ArtifactError` names the field)."""
        if not isinstance(d, Mapping):
            raise ArtifactError(f"verdict must be an object, got {type(d).__name__}")
        for key in ("batch_id", "claim_digest"):
            if not is_hex32(d.get(key)):
                raise ArtifactError(f"verdict {key} must be 0x + 64 hex digits")
        for key in ("verifier", "verifying_contract"):
            if not is_address(d.get(key)):
                raise ArtifactError(f"verdict {key} must be an address")
        if not isinstance(d.get("passed"), bool):
            raise ArtifactError("verdict passed must be true or false")
        chain_id = d.get("chain_id")
        if not isinstance(chain_id, int) or isinstance(chain_id, bool) or chain_id <= 0:
            raise ArtifactError("verdict chain_id must be a positive integer")
        if not isinstance(d.get("signature"), str):
            raise ArtifactError("verdict signature must be a hex string")
        reason = d.get("reason", "")
        return cls(
            batch_id=d["batch_id"].lower(),
            claim_digest=d["claim_digest"].lower(),
            verifier=to_checksum_address(d["verifier"]),
            passed=d["passed"],
            signature=d["signature"],
            chain_id=chain_id,
            verifying_contract=to_checksum_address(d["verifying_contract"]),
            reason=reason if isinstance(reason, str) else "",
        )


def sign_verdict(
    signer: Signer,
    domain: ClaimDomain,
    batch_id: str,
    claim_digest: str,
    passed: bool,
    *,
    reason: str = "",
) -> SignedVerdict:
    """Sign a verdict on the committed claim ``claim_digest`` of ``batch_id``."""
    typed = verdict_typed_data(domain, batch_id, claim_digest, passed)
    return SignedVerdict(
        batch_id=batch_id.lower(),
        claim_digest=claim_digest.lower(),
        verifier=to_checksum_address(signer.address),
        passed=bool(passed),
        signature=signer.sign_typed_data(typed),
        chain_id=domain.chain_id,
        verifying_contract=to_checksum_address(domain.verifying_contract),
        reason=reason,
    )


def _folder(batch_id: str) -> str:
    return f"verdicts/{batch_id.lower()}"


def store_verdict(store: ContentStore, verdict: SignedVerdict) -> str:
    """Write ``verdict`` to ``verdicts/<batch id>/<verifier>.json`` (atomically; a
    verifier's later verdict replaces its earlier one). Returns the path."""
    path = f"{_folder(verdict.batch_id)}/{verdict.verifier.lower()}.json"
    body = json.dumps(verdict.to_dict(), sort_keys=True, indent=2).encode()
    return store.write_bytes(path, body)


def load_verdicts(store: ContentStore, batch_id: str) -> list[SignedVerdict]:
    """Every well-formed verdict document the store holds for ``batch_id`` (garbled ones are
    skipped with a warning: whoever wrote them cannot block a finalisation)."""
    out = []
    for name in store.listdir(_folder(batch_id)):
        if not name.endswith(".json"):
            continue
        path = f"{_folder(batch_id)}/{name}"
        try:
            out.append(SignedVerdict.from_dict(json.loads(store.read_bytes(path))))
        except (ArtifactError, ValueError, UnicodeDecodeError) as exc:
            log.warning("skipping verdict %s/%s: %s", store.url, path, exc)
    return out


def chain_verdicts(chain: ChainClient, batch_id: str, from_block: int = 0) -> list[SignedVerdict]:
    """Verdicts published on chain (``VerdictPublished`` events) for ``batch_id``; the
    contract checked each signature over the committed claim when it was published."""
    from ogkit.chain.records import onchain_batch

    found = onchain_batch(chain, batch_id)
    if found is None:
        return []
    settlement = chain.contract("InferenceSettlement")
    events = chain.events(
        "InferenceSettlement",
        "VerdictPublished",
        max(from_block, found.block),
        argument_filters={"batchId": _b32(batch_id)},
    )
    return [
        SignedVerdict(
            batch_id=batch_id.lower(),
            claim_digest=found.record["claimDigest"],
            verifier=to_checksum_address(e["args"]["verifier"]),
            passed=bool(e["args"]["pass"]),
            signature="0x" + bytes(e["args"]["signature"]).hex(),
            chain_id=chain.chain_id,
            verifying_contract=settlement.address,
        )
        for e in events
    ]


def quorum_verdicts(
    verdicts: Iterable[SignedVerdict],
    *,
    batch_id: str,
    claim_digest: str,
    domain: ClaimDomain,
    passed: bool | None = True,
) -> list[SignedVerdict]:
    """The verdicts a contract call can use: for this batch, claim and domain, the wanted
    verdict (``passed``; None for both), a valid signature by the named verifier, one per
    verifier (a pass and a fail by the same verifier: the fail wins, so an equivocating
    verifier never helps a quorum pass), sorted by verifier address as the contract needs."""
    by_verifier: dict[str, SignedVerdict] = {}
    for v in verdicts:
        if (
            v.batch_id.lower() != batch_id.lower()
            or v.claim_digest.lower() != claim_digest.lower()
            or v.chain_id != domain.chain_id
            or v.verifying_contract.lower() != domain.verifying_contract.lower()
            or not v.valid()
        ):
            continue
        key = v.verifier.lower()
        held = by_verifier.get(key)
        if held is None or (held.passed and not v.passed):
            by_verifier[key] = v
    chosen = [v for v in by_verifier.values() if passed is None or v.passed == passed]
    return sorted(chosen, key=lambda v: int(v.verifier, 16))
