"""Off-chain verification of ZK proofs and of their binding to receipts (spec §11).

The verifier uses its **own** profile and keys (exported and set up from the model, or
re-derived with :func:`reproduce_keys`), never the prover's. A proof counts for a row
only when all of these hold, each failure a finding with a stable reason:

* ``zk-wrong-profile`` — the proof names other keys (another model, scale, N or SRS);
* ``zk-proof-invalid`` — ezkl's verifier rejects the proof bytes with these instances;
* ``zk-input-unbound`` — the row's canonical input bytes do not hash to the receipt's
  ``inputHash``, or their fixed-point values are not the proof's public inputs;
* ``zk-output-unbound`` — the receipted output bytes do not hash to ``outputHash``;
* ``zk-output-mismatch`` — the receipted outputs differ from the proven outputs by more
  than the profile's tolerance: the receipt is wrong;
* ``zk-row-unproven`` — a row asked for has no proof.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ogkit.crypto.keccak import keccak256
from ogkit.errors import ZkError
from ogkit.store import ContentStore
from ogkit.zk.fixed import FIELD_MODULUS, BindingError, check_inputs_bound, compare_outputs
from ogkit.zk.keys import ZK_KEYS, ZK_SRS, ZkKeys, materialise
from ogkit.zk.profile import ZK_SETTINGS, ZkProfile
from ogkit.zk.prove import ZkProof

log = logging.getLogger(__name__)

__all__ = [
    "ZK_REASONS",
    "RowEvidence",
    "ZkFinding",
    "check_row",
    "evidence_from_values",
    "verify_proof",
    "verify_rows",
]

ZK_REASONS = {
    "zk-wrong-profile": "a ZK proof is for other keys (model, scale, N or SRS), or none are set up",
    "zk-proof-invalid": "the verifier rejects a ZK proof with its public values",
    "zk-input-unbound": "a ZK proof's public inputs are not the receipted row's inputs",
    "zk-output-unbound": "the receipted output bytes do not hash to the receipt's outputHash",
    "zk-output-mismatch": "the receipted outputs differ from the proven ones beyond tolerance",
    "zk-row-unproven": "a row has no valid ZK proof",
}


@dataclass(frozen=True)
class ZkFinding:
    reason: str
    row: int | None
    detail: str


@dataclass(frozen=True)
class RowEvidence:
    """What a receipt says of one row, and the row's canonical bytes."""

    row: int
    input_hash: bytes
    output_hash: bytes
    input_message: bytes
    output_message: bytes


def evidence_from_values(
    profile: ZkProfile,
    row: int,
    inputs: Mapping[str, Any],
    outputs: Mapping[str, Any],
) -> RowEvidence:
    """A row's evidence from its values (one row of each tensor, no row dimension): the
    canonical bytes and their row hashes, as a receipt of these values holds them."""
    from ogkit.crypto.encoding import tensor_row_hash
    from ogkit.zk.fixed import row_message

    return RowEvidence(
        row=int(row),
        input_hash=tensor_row_hash(dict(inputs)),
        output_hash=tensor_row_hash(dict(outputs)),
        input_message=row_message(profile.inputs, dict(inputs)),
        output_message=row_message(profile.outputs, dict(outputs)),
    )


def _document(proof: ZkProof) -> dict[str, Any]:
    """ezkl's proof document with exactly the bytes and instances the binding checks."""
    doc = dict(proof.document)
    doc["instances"] = [[i.to_bytes(32, "little").hex() for i in proof.instances]]
    doc["proof"] = list(proof.proof)
    doc["hex_proof"] = "0x" + proof.proof.hex()
    doc.pop("pretty_public_inputs", None)
    return doc


def verify_proof(store: ContentStore, profile: ZkProfile, keys: ZkKeys, proof: ZkProof) -> bool:
    """ezkl's verifier, under the verifier's own settings, vk and SRS."""
    import ezkl

    if proof.keys_id != keys.keys_id or proof.profile_id != profile.profile_id:
        return False
    if len(proof.instances) != profile.instance_count:
        return False
    if not all(0 <= i < FIELD_MODULUS for i in proof.instances):
        return False  # not field elements: no verifier accepts them
    settings = materialise(store, ZK_SETTINGS, profile.settings_hash)
    vk = materialise(store, ZK_KEYS, keys.vk_id)
    srs = materialise(store, ZK_SRS, keys.srs_id)
    with tempfile.TemporaryDirectory(prefix="ogkit-zk-verify-") as tmp:
        path = Path(tmp) / "proof.json"
        path.write_text(json.dumps(_document(proof)))
        try:
            return bool(ezkl.verify(str(path), str(settings), str(vk), str(srs), False))
        except Exception as exc:
            log.info("ezkl rejected a proof: %s", exc)
            return False


def check_row(profile: ZkProfile, proof: ZkProof, ev: RowEvidence) -> ZkFinding | None:
    """The binding of one proven row to its receipt (the proof itself checked apart)."""
    try:
        j = proof.position(ev.row)
    except ZkError as exc:
        return ZkFinding("zk-row-unproven", ev.row, str(exc))
    if len(proof.rows) != profile.chunk:
        # A position past the chunk would read another tensor's instances (as the judge,
        # which refuses a position >= N).
        return ZkFinding(
            "zk-row-unproven",
            ev.row,
            f"the proof lists {len(proof.rows)} rows, the profile's chunk is {profile.chunk}",
        )
    if keccak256(ev.input_message) != bytes(ev.input_hash):
        return ZkFinding("zk-input-unbound", ev.row, "input bytes do not hash to inputHash")
    if keccak256(ev.output_message) != bytes(ev.output_hash):
        return ZkFinding("zk-output-unbound", ev.row, "output bytes do not hash to outputHash")
    instances = list(proof.instances)
    try:
        check_inputs_bound(profile.inputs, ev.input_message, instances, j)
    except BindingError as exc:
        return ZkFinding("zk-input-unbound", ev.row, str(exc))
    try:
        within, worst = compare_outputs(profile.outputs, ev.output_message, instances, j)
    except BindingError as exc:
        return ZkFinding("zk-output-unbound", ev.row, str(exc))
    if not within:
        return ZkFinding(
            "zk-output-mismatch",
            ev.row,
            f"receipted outputs differ from the proven outputs by {worst} fixed-point units, "
            "beyond the profile's tolerance",
        )
    return None


def verify_rows(
    store: ContentStore,
    profile: ZkProfile,
    keys: ZkKeys,
    proofs: Sequence[ZkProof],
    evidence: Mapping[int, RowEvidence],
) -> list[ZkFinding]:
    """Every finding for the rows in ``evidence``: each must be covered by a proof that
    verifies and binds. Never raises on what the proofs hold."""
    findings: list[ZkFinding] = []
    covered: dict[int, ZkProof] = {}
    for proof in proofs:
        if proof.keys_id != keys.keys_id or proof.profile_id != profile.profile_id:
            for r in proof.rows:
                if r >= 0:
                    findings.append(ZkFinding("zk-wrong-profile", r, "the proof is for other keys"))
            continue
        if not verify_proof(store, profile, keys, proof):
            for r in proof.rows:
                if r >= 0:
                    findings.append(ZkFinding("zk-proof-invalid", r, "ezkl rejects the proof"))
            continue
        for r in proof.rows:
            if r >= 0:
                covered.setdefault(r, proof)
    flagged = {f.row for f in findings}
    for row, ev in sorted(evidence.items()):
        if row in covered:
            f = check_row(profile, covered[row], ev)
            if f is not None:
                findings.append(f)
        elif row not in flagged:
            findings.append(ZkFinding("zk-row-unproven", row, "no valid proof covers the row"))
    return findings
