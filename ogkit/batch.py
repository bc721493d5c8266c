"""Attested batches as stored artefacts, and per-inference receipts.

An attested batch is a manifest (canonical JSON; its keccak256 is the artefact id,
stored as a content-addressed object of kind ``artifacts``) plus one Parquet
records file per partition under ``batches/<batch_id>/``, each pinned in the
manifest by its sha256. Loading checks the manifest's hash; readers of records
check each file's hash before trusting a byte of it.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from ogkit.attest import PartitionRecords, read_records
from ogkit.claims import BatchClaim, ClaimDomain
from ogkit.crypto.merkle import LEAF_TYPES, MerkleTree, compose_proof, leaf_hash, process_proof
from ogkit.errors import ArtifactError, ArtifactIntegrityError, ReceiptError
from ogkit.hub.manifest import canonical_json
from ogkit.store import ContentStore, content_id

__all__ = [
    "ARTIFACTS",
    "AttestedBatch",
    "ReceiptCheck",
    "load_batch",
    "verify_receipt",
]

ARTIFACTS = "artifacts"
RECEIPT_SCHEMA = "ogkit.receipt.v1"


def _hex(b: bytes | np.ndarray) -> str:
    return "0x" + bytes(b).hex()


class AttestedBatch:
    """A stored, signed batch: its manifest, records, trees and receipts."""

    def __init__(self, manifest: dict[str, Any], artifact_id: str, store: ContentStore) -> None:
        self.manifest = manifest
        self.artifact_id = artifact_id
        self.store = store

    def __repr__(self) -> str:
        return (
            f"AttestedBatch({self.artifact_id[:18]}…, rows={self.row_count:,}, "
            f"root={self.batch_root[:18]}…)"
        )

    # -- manifest fields --------------------------------------------------------------------
    @property
    def batch_id(self) -> str:
        return self.manifest["batch_id"]

    @property
    def batch_root(self) -> str:
        return self.manifest["batch_root"]

    @property
    def row_count(self) -> int:
        return int(self.manifest["row_count"])

    @property
    def model_id(self) -> str:
        return self.manifest["model_id"]

    @property
    def runtime_id(self) -> str:
        return self.manifest["runtime_id"]

    @property
    def claim(self) -> BatchClaim:
        return BatchClaim.from_dict(self.manifest["claim"])

    @property
    def signature(self) -> str:
        return self.manifest["signature"]

    @property
    def domain(self) -> ClaimDomain:
        d = self.manifest["domain"]
        return ClaimDomain(int(d["chain_id"]), d["verifying_contract"])

    @property
    def partitions(self) -> list[dict[str, Any]]:
        return self.manifest["partitions"]

    def tensor_specs(self) -> dict[str, dict[str, tuple[str, tuple[int, ...]]]]:
        return {
            kind: {t["name"]: (t["dtype"], tuple(t["row_shape"])) for t in self.manifest[kind]}
            for kind in ("inputs", "outputs")
        }

    # -- records ------------------------------------------------------------------------------
    def partition_bytes(self, index: int, *, check: bool = True) -> bytes:
        part = self.partitions[index]
        data = self.store.read_bytes(part["path"])
        if check and hashlib.sha256(data).hexdigest() != part["sha256"]:
            raise ArtifactIntegrityError(
                f"records file {part['path']} of batch {self.batch_id} was altered after it "
                "was attested (sha256 differs from the manifest)"
            )
        return data

    def records(self, index: int) -> PartitionRecords:
        return read_records(self.partition_bytes(index), self.tensor_specs())

    def outputs_frame(self) -> pl.DataFrame:
        """Every row's outputs (and hashes) as one polars frame ordered by row index."""
        frames = []
        for i in range(len(self.partitions)):
            rec = self.records(i)
            cols: dict[str, Any] = {"row_index": rec.row_index}
            for name, values in rec.outputs.items():
                cols[name] = values if values.ndim == 1 else list(values.reshape(len(values), -1))
            cols["output_hash"] = [_hex(h) for h in rec.output_hashes]
            frames.append(pl.DataFrame(cols))
        return pl.concat(frames).sort("row_index")

    @functools.cached_property
    def batch_tree(self) -> MerkleTree:
        roots = np.array(
            [list(bytes.fromhex(p["root"][2:])) for p in self.partitions], dtype=np.uint8
        )
        return MerkleTree.from_leaf_hashes(roots)

    # -- receipts -------------------------------------------------------------------------------
    def _locate(self, row_index: int) -> int:
        for part in self.partitions:
            if part["offset"] <= row_index < part["offset"] + part["rows"]:
                return int(part["index"])
        raise ReceiptError(f"row {row_index} is not in batch {self.batch_id}")

    def receipts(self, row_indices: list[int] | np.ndarray) -> list[dict[str, Any]]:
        """Receipts for many rows (one tree build per partition touched)."""
        wanted = sorted({int(r) for r in row_indices})
        by_partition: dict[int, list[int]] = {}
        for r in wanted:
            by_partition.setdefault(self._locate(r), []).append(r)
        out: dict[int, dict[str, Any]] = {}
        for index, rows in by_partition.items():
            rec = self.records(index)
            tree = MerkleTree.from_leaf_hashes(rec.leaves)
            position = {int(r): i for i, r in enumerate(rec.row_index)}
            batch_proof = self.batch_tree.proof(index)
            for r in rows:
                i = position[r]
                out[r] = self._receipt(rec, i, compose_proof(tree.proof(i), batch_proof), index)
        return [out[int(r)] for r in row_indices]

    def receipt(self, row_index: int) -> dict[str, Any]:
        return self.receipts([row_index])[0]

    def _receipt(self, rec: PartitionRecords, i: int, proof: list[bytes], index: int) -> dict:
        return {
            "schema": RECEIPT_SCHEMA,
            "leaf_types": list(LEAF_TYPES),
            "leaf_values": {
                "batchId": self.batch_id,
                "modelId": self.model_id,
                "runtimeId": self.runtime_id,
                "rowIndex": str(int(rec.row_index[i])),
                "inputHash": _hex(rec.input_hashes[i]),
                "outputHash": _hex(rec.output_hashes[i]),
            },
            "leaf": _hex(rec.leaves[i]),
            "proof": [_hex(p) for p in proof],
            "batch_root": self.batch_root,
            "partition": {"index": index, "root": self.partitions[index]["root"]},
            "claim": self.manifest["claim"],
            "domain": self.manifest["domain"],
            "signature": self.signature,
            "artifact_id": self.artifact_id,
        }


def load_batch(artifact: str | Path, store: ContentStore) -> AttestedBatch:
    """Load an attested batch by artefact id (``0x…``) or manifest file path.

    The manifest must hash to its id; a file path is accepted for artefacts copied
    out of a store, and is then addressed by its own hash.
    """
    artifact = str(artifact)
    if artifact.startswith("0x") and len(artifact) == 66:
        data = store.get(ARTIFACTS, artifact.lower())
        artifact_id = artifact.lower()
    else:
        path = Path(artifact)
        if not path.is_file():
            raise ArtifactError(
                f"{artifact} is neither an artefact id (0x + 64 hex) nor a manifest file"
            )
        data = path.read_bytes()
        artifact_id = content_id(data)
    try:
        manifest = json.loads(data)
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"artefact {artifact_id} is not JSON: {exc}") from None
    if manifest.get("schema") != "ogkit.batch.v1":
        raise ArtifactError(f"artefact {artifact_id} has unknown schema {manifest.get('schema')}")
    return AttestedBatch(manifest, artifact_id, store)


def manifest_bytes(manifest: dict[str, Any]) -> bytes:
    return canonical_json(manifest)


# -- receipt verification -----------------------------------------------------------------------
@dataclass(frozen=True)
class ReceiptCheck:
    ok: bool
    problems: tuple[str, ...]
    signer: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "problems": list(self.problems), "signer": self.signer}


def verify_receipt(receipt: dict[str, Any]) -> ReceiptCheck:
    """Check a receipt with nothing but itself: leaf from values, proof to the batch root,
    the root and ids against the claim, and the claim's EIP-712 signature."""
    problems: list[str] = []
    try:
        if receipt.get("schema") != RECEIPT_SCHEMA:
            raise ReceiptError(f"not an ogkit receipt (schema {receipt.get('schema')!r})")
        v = receipt["leaf_values"]
        leaf = leaf_hash(
            bytes.fromhex(v["batchId"][2:]),
            bytes.fromhex(v["modelId"][2:]),
            bytes.fromhex(v["runtimeId"][2:]),
            int(v["rowIndex"]),
            bytes.fromhex(v["inputHash"][2:]),
            bytes.fromhex(v["outputHash"][2:]),
        )
        if _hex(leaf) != receipt["leaf"].lower():
            problems.append("leaf does not match the leaf values")
        proof = [bytes.fromhex(p[2:]) for p in receipt["proof"]]
        if _hex(process_proof(leaf, proof)) != receipt["batch_root"].lower():
            problems.append("proof does not lead from the leaf to the batch root")
        claim = BatchClaim.from_dict(receipt["claim"])
        for field, value in (
            ("batch_root", receipt["batch_root"]),
            ("batch_id", v["batchId"]),
            ("model_id", v["modelId"]),
            ("runtime_id", v["runtimeId"]),
        ):
            if getattr(claim, field).lower() != value.lower():
                problems.append(f"claim {field} differs from the receipt's")
        d = receipt["domain"]
        signer = claim.recover_signer(
            ClaimDomain(int(d["chain_id"]), d["verifying_contract"]), receipt["signature"]
        )
        if signer.lower() != claim.attester.lower():
            problems.append(f"claim is signed by {signer}, not by its attester {claim.attester}")
    except (KeyError, TypeError, ValueError) as exc:
        raise ReceiptError(f"receipt is malformed: {exc!r}") from None
    return ReceiptCheck(not problems, tuple(problems), signer)
