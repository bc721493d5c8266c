"""Off-chain verification of ZK proofs and of their binding to receipts (spec §13).

The verifier uses its **own** profile and keys (exported and set up from the model, or
re-derived with :func:`reproduce_keys`), never the prover's. A proof counts for a row
only when all of these hold, each failure a finding with a stable reason:

* ``zk-wrong-profile`` — the proof names other keys (another model, scale, N or SRS);
* ``zk-proof-invalid`` — ezkl's verifier rejects the proof bytes with these instances;
* ``zk-input-unbound`` — the row's canonical input bytes do not hash to the receipt's
  ``inputHash``, or their fixed-point values are not the proof's public inputs;
* ``zk-output-unbound`` — the receipted output bytes do not hash to ``outputHash``;
* ``zk-output-mismatch`` — a receipted float output differs from the proven one by more
  than ``SLASH_FACTOR`` times the profile's tolerance (or is NaN/infinite): the receipt
  is wrong;
* ``zk-undecidable`` — the proof neither confirms the receipt (every output within
  tolerance, labels equal) nor refutes it: a float output beyond its tolerance but within
  ``SLASH_FACTOR`` times it, or an exact (integer) output, a label, differing from the
  circuit's — a near tie the fixed-point circuit and onnxruntime may break differently.
  The row is decided by re-execution with onnxruntime, the reference (on chain: the
  vote, ``ogkit dispute vote``). This is not evidence that the receipt is wrong;
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
from ogkit.zk.fixed import (
    FIELD_MODULUS,
    BindingError,
    TensorLayout,
    check_inputs_bound,
    field_to_int,
    fixed_point_f32_bits,
    parse_row,
)
from ogkit.zk.keys import ZK_KEYS, ZK_SRS, ZkKeys, materialise
from ogkit.zk.profile import ZK_SETTINGS, ZkProfile
from ogkit.zk.prove import ZkProof

log = logging.getLogger(__name__)

__all__ = [
    "BEYOND",
    "SLASH_FACTOR",
    "UNDECIDABLE",
    "WITHIN",
    "ZK_DEFERRED",
    "ZK_REASONS",
    "OutputJudgement",
    "RowEvidence",
    "ZkFinding",
    "check_row",
    "evidence_from_values",
    "judge_outputs",
    "verify_proof",
    "verify_rows",
]

ZK_REASONS = {
    "zk-wrong-profile": "a ZK proof is for other keys (model, scale, N or SRS), or none are set up",
    "zk-proof-invalid": "the verifier rejects a ZK proof with its public values",
    "zk-input-unbound": "a ZK proof's public inputs are not the receipted row's inputs",
    "zk-output-unbound": "the receipted output bytes do not hash to the receipt's outputHash",
    "zk-output-mismatch": (
        "a receipted float output differs from the proven one beyond twice the tolerance"
    ),
    "zk-undecidable": (
        "the proof neither confirms nor refutes the row (a float within twice its tolerance, "
        "or only a label differing: a near tie); re-execution (the vote) decides it"
    ),
    "zk-row-unproven": "a row has no valid ZK proof",
}


#: Reasons that say the proof cannot decide a row, not that its receipt is wrong: the row
#: is for re-execution with onnxruntime (on chain, the vote).
ZK_DEFERRED = frozenset({"zk-undecidable"})

#: A proof refutes a receipted float only beyond this many times its tolerance
#: (``ZkJudge.SLASH_FACTOR``): the stated tolerance is the circuit's error measured on
#: calibration rows, and chosen inputs find honest rows beyond it (spec §13.5).
SLASH_FACTOR = 2

#: What a proof says of a row's receipted outputs, as ``ZkJudge.Judgement`` (spec §13.5).
WITHIN, BEYOND, UNDECIDABLE = "within", "beyond", "undecidable"
JUDGEMENTS = (WITHIN, BEYOND, UNDECIDABLE)  # the contract's enum order


@dataclass(frozen=True)
class OutputJudgement:
    """``outcome`` (:data:`WITHIN`, :data:`BEYOND`, :data:`UNDECIDABLE`), the canonical
    index and name of the output tensor that decided it (``None`` when within), and the
    largest difference seen in fixed-point units (``-1`` when a float is NaN/infinite)."""

    outcome: str
    tensor: int | None
    name: str | None
    worst: int


def judge_outputs(
    layouts: tuple[TensorLayout, ...], message: bytes, instances: list[int], j: int
) -> OutputJudgement:
    """What the proof's public outputs for chunk row ``j`` say of the receipted output
    bytes, exactly as ``ZkJudge._judgeOutputs`` (spec §13.5), each element compared with
    its tensor's tolerance τ: a float32 element more than ``SLASH_FACTOR``·τ off (or
    NaN/infinite) makes the row :data:`BEYOND`; else any element more than τ off (a float
    in the margin, an integer such as a label at all, its τ being 0) makes it
    :data:`UNDECIDABLE`; else :data:`WITHIN`. Raises :class:`BindingError` on bytes that do
    not fit the layout (``OutputMalformed``)."""
    if j < 0:
        raise BindingError(f"chunk position {j} is negative")
    raw = parse_row(layouts, message)
    ordered = sorted(layouts, key=lambda t: t.name.encode("utf-8"))  # the judge's order
    outcome, tensor, worst = WITHIN, None, 0
    for index, t in enumerate(ordered):
        start = t.base + j * t.count
        proven = [field_to_int(f) for f in instances[start : start + t.count]]
        if len(proven) != t.count:
            raise BindingError(f"the proof has too few public outputs for {t.name!r}")
        level = 0  # 0 within τ, 1 within SLASH_FACTOR·τ, 2 beyond (as ZkJudge._off)
        for bits, p in zip(raw[t.name], proven, strict=True):
            if t.dtype_code == 1:
                try:
                    v = fixed_point_f32_bits(bits, t.scale)
                except BindingError:  # NaN or infinity: beyond any tolerance
                    level, worst = 2, -1
                    continue
            else:
                v = bits << t.scale
            d = abs(v - p)
            if worst >= 0:
                worst = max(worst, d)
            if d > t.tolerance:
                level = max(level, 1 if d <= SLASH_FACTOR * t.tolerance else 2)
        if level == 0 or outcome == BEYOND:
            continue
        if t.dtype_code == 1 and level == 2:
            outcome, tensor = BEYOND, index
        elif outcome == WITHIN:
            outcome, tensor = UNDECIDABLE, index
    name = None if tensor is None else ordered[tensor].name
    return OutputJudgement(outcome, tensor, name, worst)


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
        judged = judge_outputs(profile.outputs, ev.output_message, instances, j)
    except BindingError as exc:
        return ZkFinding("zk-output-unbound", ev.row, str(exc))
    if judged.outcome == BEYOND:
        size = "a NaN or infinite value" if judged.worst < 0 else f"{judged.worst} units"
        return ZkFinding(
            "zk-output-mismatch",
            ev.row,
            f"receipted output {judged.name!r} differs from the proven output by {size} of "
            f"fixed point, beyond {SLASH_FACTOR} times the profile's tolerance: the receipt "
            "is wrong",
        )
    if judged.outcome == UNDECIDABLE:
        (t,) = [t for t in profile.outputs if t.name == judged.name]
        why = (
            f"float output {judged.name!r} is beyond its tolerance but within "
            f"{SLASH_FACTOR} times it"
            if t.dtype_code == 1
            else f"the exact output {judged.name!r} differs from the circuit's while no float "
            f"output is beyond {SLASH_FACTOR} times its tolerance"
        )
        return ZkFinding(
            "zk-undecidable",
            ev.row,
            f"{why} (largest difference {judged.worst} fixed-point units): the proof cannot "
            "decide the row; re-execution with onnxruntime decides it (on chain the dispute "
            "stays open for the vote: ogkit dispute vote)",
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
