"""ZK proofs for stored batches: the rows' evidence, proving them, verifying them.

A row's evidence is what its receipt commits to (``inputHash``, ``outputHash``) with the
canonical bytes they hash: the inputs from the batch's records when they hold them, else
from the requester's arrays (``inputs=``, a leading row dimension indexed by row index);
the outputs always from the node's records. Proofs of a batch live in the store under
``zk/proofs/<batch id>/``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ogkit.errors import ArtifactError, InputsUnavailableError, ZkError
from ogkit.store import ContentStore
from ogkit.zk.fixed import BindingError, row_message
from ogkit.zk.keys import ZkKeys, load_keys
from ogkit.zk.profile import ZkProfile, load_profile
from ogkit.zk.prove import ZkProof, load_proofs, prove_rows, store_proof
from ogkit.zk.verify import RowEvidence, ZkFinding, verify_rows

log = logging.getLogger(__name__)

__all__ = ["batch_evidence", "batch_inputs", "prove_batch_rows", "zk_findings"]


def _b(h: str) -> bytes:
    return bytes.fromhex(h.removeprefix("0x"))


def _position(rec: Any, row: int) -> int:
    found = np.flatnonzero(np.asarray(rec.row_index) == row)
    if found.size != 1:
        raise ZkError(f"the records hold row {row} {found.size} times, not once")
    return int(found[0])


def batch_inputs(
    batch: Any, profile: ZkProfile, rows: Sequence[int], inputs: Mapping[str, Any] | None
) -> dict[int, dict[str, np.ndarray]]:
    """Each row's model inputs: from the records, or from ``inputs``."""
    out: dict[int, dict[str, np.ndarray]] = {}
    names = [t.name for t in profile.inputs]
    for row in rows:
        if inputs is not None:
            try:
                out[row] = {n: np.asarray(inputs[n])[row] for n in names}
            except (KeyError, IndexError) as exc:
                raise ZkError(f"the given inputs lack row {row} or an input: {exc}") from exc
            continue
        receipt = batch.receipt(row)
        try:  # the rows' inputs: the batch's stored dataset (docs/spec.md §6)
            rec = batch.records(int(receipt["partition"]["index"]))
        except InputsUnavailableError as exc:
            raise ZkError(
                f"the inputs of {batch.batch_id} cannot be read ({exc}); pass the requester's data"
            ) from exc
        if not all(n in rec.inputs for n in names):
            raise ZkError(
                f"the stored dataset of {batch.batch_id} lacks inputs {names}; pass the "
                "requester's data"
            )
        i = _position(rec, row)
        out[row] = {n: rec.inputs[n][i] for n in names}
    return out


def batch_evidence(
    batch: Any,
    profile: ZkProfile,
    rows: Sequence[int],
    inputs: Mapping[str, Any] | None = None,
) -> tuple[dict[int, RowEvidence], dict[int, list[str]]]:
    """Evidence and the Merkle proof (against the batch root) of each row."""
    values = batch_inputs(batch, profile, rows, inputs)
    evidence: dict[int, RowEvidence] = {}
    merkle: dict[int, list[str]] = {}
    for row in rows:
        receipt = batch.receipt(row)
        rec = batch.records(int(receipt["partition"]["index"]), inputs=False)
        i = _position(rec, row)
        leaf = receipt["leaf_values"]
        try:
            out_msg = row_message(profile.outputs, {k: v[i] for k, v in rec.outputs.items()})
            in_msg = row_message(profile.inputs, values[row])
        except (BindingError, KeyError) as exc:
            raise ZkError(f"row {row} does not fit the ZK profile: {exc}") from exc
        evidence[row] = RowEvidence(
            row=row,
            input_hash=_b(leaf["inputHash"]),
            output_hash=_b(leaf["outputHash"]),
            input_message=in_msg,
            output_message=out_msg,
        )
        merkle[row] = list(receipt["proof"])
    return evidence, merkle


def prove_batch_rows(
    batch: Any,
    store: ContentStore,
    rows: Sequence[int],
    *,
    chunk: int = 1,
    inputs: Mapping[str, Any] | None = None,
    dask: Any = None,
    progress: bool = True,
) -> list[ZkProof]:
    """Prove ``rows`` of ``batch`` with the model's profile and keys in ``store``; the
    proofs are stored beside the batch's other ZK proofs."""
    profile = load_profile(store, batch.model_id, chunk)
    keys = load_keys(store, profile)
    values = batch_inputs(batch, profile, rows, inputs)
    n = max(rows) + 1
    arrays = {}
    for t in profile.inputs:
        first = values[rows[0]][t.name]
        a = np.zeros((n, *np.shape(first)), dtype=np.asarray(first).dtype)
        for r in rows:
            a[r] = values[r][t.name]
        arrays[t.name] = a
    proofs = prove_rows(store, profile, keys, arrays, list(rows), dask=dask, progress=progress)
    for p in proofs:
        store_proof(store, batch.batch_id, p)
    return proofs


def zk_findings(
    batch: Any,
    store: ContentStore,
    *,
    chunk: int = 1,
    inputs: Mapping[str, Any] | None = None,
    rows: Sequence[int] | None = None,
    profile: ZkProfile | None = None,
    keys: ZkKeys | None = None,
) -> list[ZkFinding]:
    """Verify the batch's stored proofs (and that ``rows``, default: every row they name,
    are proven) with the verifier's own profile and keys. Never raises on what the proofs
    or records hold: each problem is a finding."""
    try:
        profile = profile or load_profile(store, batch.model_id, chunk)
        keys = keys or load_keys(store, profile)
    except ZkError as exc:
        return [ZkFinding("zk-wrong-profile", None, str(exc))]
    try:
        proofs = load_proofs(store, batch.batch_id)
    except (ZkError, ArtifactError) as exc:
        return [ZkFinding("zk-proof-invalid", None, f"stored proofs are unreadable: {exc}")]
    wanted = sorted(
        set(rows) if rows is not None else {r for p in proofs for r in p.rows if r >= 0}
    )
    if not wanted:
        return [ZkFinding("zk-row-unproven", None, "no ZK proof is stored for this batch")]
    bad = [r for r in wanted if not 0 <= r < batch.row_count]
    findings = [ZkFinding("zk-row-unproven", r, "row outside the batch") for r in bad]
    try:
        evidence, _ = batch_evidence(batch, profile, [r for r in wanted if r not in bad], inputs)
    except (ZkError, ArtifactError, KeyError, IndexError, ValueError, TypeError) as exc:
        return [*findings, ZkFinding("zk-input-unbound", None, f"row evidence: {exc}")]
    return findings + verify_rows(store, profile, keys, proofs, evidence)
