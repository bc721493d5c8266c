"""The attested batch as stored: records files, the typed manifest, staging, receipts.

Writing (``records_to_parquet``, :class:`BatchStaging`) and reading
(``read_records``, :class:`AttestedBatch`, :func:`load_batch`) live together here, so
the format has one owner.

An attested batch is a manifest (canonical JSON; its keccak256 is the artefact id,
stored as a content-addressed object of kind ``artifacts``) plus one Parquet
records file per partition under ``batches/<batch_id>/``, each pinned in the
manifest by its sha256. Loading checks the manifest's hash; readers of records
check each file's hash before trusting a byte of it.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from ogkit.attest import BatchClaim, ClaimDomain, PartitionAttestation, is_address, is_hex32
from ogkit.crypto.encoding import dtype_code
from ogkit.crypto.merkle import (
    LEAF_TYPES,
    MerkleTree,
    compose_proof,
    input_leaf_hashes,
    leaf_hashes,
)
from ogkit.dataset import UNREADABLE, DataSource, open_stored_dataset, plan_from_bindings
from ogkit.errors import (
    ArtifactError,
    ArtifactIntegrityError,
    ConfigError,
    InputsUnavailableError,
    ReceiptError,
)
from ogkit.hub.manifest import canonical_json
from ogkit.store import ContentStore, content_id

__all__ = [
    "ARTIFACTS",
    "AttestedBatch",
    "BatchManifest",
    "BatchStaging",
    "InputData",
    "PartitionMeta",
    "PartitionRecords",
    "PartitionResult",
    "TensorMeta",
    "execution_spec",
    "load_batch",
    "parse_document",
    "read_inputs",
    "read_partition_file",
    "read_records",
    "records_file",
    "records_input_leaves",
    "records_to_parquet",
    "safe_records_path",
    "store_batch",
]

log = logging.getLogger(__name__)

ARTIFACTS = "artifacts"
RECEIPT_SCHEMA = "ogkit.receipt.v2"
#: Schemas of earlier layouts, refused by name: what changed, and what to do.
RETIRED_SCHEMAS = {
    "ogkit.batch.v2": "records held copies of the inputs",
    "ogkit.batch.v3": "leaves carried the batch, model and runtime ids and were hashed twice",
    "ogkit.batch.v4": "records repeated each row's index and leaf, which readers derive",
}


def _hex(b: bytes | np.ndarray) -> str:
    return "0x" + bytes(b).hex()


# -- the typed manifest ------------------------------------------------------------------------
SCHEMA = "ogkit.batch.v5"
MAX_ROW_ELEMENTS = 1 << 24  # per tensor per row: bounds what a hostile manifest can ask for
MAX_FLOAT_ULP = 1 << 20
_SHA256 = re.compile(r"[0-9a-f]{64}")
_SAFE_PATH = re.compile(r"batches/0x[0-9a-f]{64}/[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}")


def _field(d: Mapping[str, Any], key: str, kinds: type | tuple[type, ...], where: str) -> Any:
    if key not in d:
        raise ArtifactError(f"{where} lacks {key!r}")
    value = d[key]
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in _tuple(kinds)):
        names = "/".join(k.__name__ for k in _tuple(kinds))
        raise ArtifactError(f"{where} {key!r} must be {names}, got {type(value).__name__}")
    return value


def _tuple(kinds: type | tuple[type, ...]) -> tuple[type, ...]:
    return kinds if isinstance(kinds, tuple) else (kinds,)


def _count(d: Mapping[str, Any], key: str, where: str, lo: int = 0) -> int:
    value = _field(d, key, int, where)
    if not lo <= value < 2**63:
        raise ArtifactError(f"{where} {key!r} must be an integer >= {lo}, got {value}")
    return value


def _hex32(d: Mapping[str, Any], key: str, where: str) -> str:
    value = _field(d, key, str, where)
    if not is_hex32(value):
        raise ArtifactError(f"{where} {key!r} must be 0x + 64 hex digits, got {value!r:.80}")
    return value


def safe_records_path(path: Any, batch_id: str) -> bool:
    """Records live in the store under ``batches/<batch id>/<file>``: a relative path
    without ``..``, a scheme or a leading ``/``, in this batch's own folder. A hostile
    manifest cannot point a reader anywhere else."""
    return (
        isinstance(path, str)
        and _SAFE_PATH.fullmatch(path) is not None
        and path.startswith(f"batches/{batch_id.lower()}/")
    )


@dataclass(frozen=True)
class TensorMeta:
    """One input or output as recorded: name, numpy dtype, per-row shape (and, for an
    input, the dataset columns it was built from)."""

    name: str
    dtype: str
    row_shape: tuple[int, ...]
    columns: tuple[str, ...] | None = None  # inputs only

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "name": self.name,
            "dtype": self.dtype,
            "row_shape": list(self.row_shape),
        }
        if self.columns is not None:
            d = {"input": self.name, "columns": list(self.columns), **d}
        return d

    @classmethod
    def from_dict(cls, d: Any, where: str) -> TensorMeta:
        if not isinstance(d, Mapping):
            raise ArtifactError(f"{where} must be an object")
        name = _field(d, "name", str, where)
        dtype = _field(d, "dtype", str, where)
        try:
            dtype_code(np.dtype(dtype), name)
        except (TypeError, ValueError, ConfigError) as exc:
            raise ArtifactError(
                f"{where} dtype {dtype!r:.40} is not a tensor dtype: {exc}"
            ) from None
        shape = _field(d, "row_shape", list, where)
        if not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in shape):
            raise ArtifactError(f"{where} row_shape must be a list of integers >= 0")
        if len(shape) > 8 or math.prod(shape) > MAX_ROW_ELEMENTS:
            raise ArtifactError(f"{where} row_shape {shape} is larger than ogkit reads")
        columns = None
        if "columns" in d:
            cols = _field(d, "columns", list, where)
            if not all(isinstance(c, str) for c in cols) or d.get("input", name) != name:
                raise ArtifactError(f"{where} columns must be strings and input must equal name")
            columns = tuple(cols)
        return cls(name, dtype, tuple(shape), columns)


@dataclass(frozen=True)
class PartitionMeta:
    """Where a partition's rows sit in the batch, its root, and its records file."""

    index: int
    offset: int
    rows: int
    root: str
    path: str
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "offset": self.offset,
            "rows": self.rows,
            "root": self.root,
            "path": self.path,
            "sha256": self.sha256,
        }

    @classmethod
    def from_dict(cls, d: Any, where: str) -> PartitionMeta:
        if not isinstance(d, Mapping):
            raise ArtifactError(f"{where} must be an object")
        sha = _field(d, "sha256", str, where)
        if _SHA256.fullmatch(sha) is None:
            raise ArtifactError(f"{where} sha256 must be 64 lower-case hex digits")
        return cls(
            index=_count(d, "index", where),
            offset=_count(d, "offset", where),
            rows=_count(d, "rows", where),
            root=_hex32(d, "root", where),
            path=_field(d, "path", str, where),
            sha256=sha,
        )


@dataclass(frozen=True)
class InputData:
    """Where the batch's inputs are (docs/spec.md §7): the dataset object in the store
    (``datasets/``, by content id), its format, and the batch's rows within it (rows
    ``offset .. offset + rows - 1`` of the dataset are the batch's rows ``0 .. rows - 1``)."""

    object: str
    format: str
    offset: int
    rows: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "object": self.object,
            "format": self.format,
            "offset": self.offset,
            "rows": self.rows,
        }

    @classmethod
    def from_dict(cls, d: Any, where: str) -> InputData:
        if not isinstance(d, Mapping):
            raise ArtifactError(f"{where} must be an object")
        fmt = _field(d, "format", str, where)
        if len(fmt) > 16:
            raise ArtifactError(f"{where} format is too long")
        return cls(
            object=_hex32(d, "object", where),
            format=fmt,
            offset=_count(d, "offset", where),
            rows=_count(d, "rows", where),
        )


@dataclass(frozen=True)
class BatchManifest:
    """The attested batch's manifest (docs/spec.md §6), typed. Stored as canonical JSON;
    :meth:`from_dict` refuses any field of the wrong type or range with an
    :class:`~ogkit.errors.ArtifactError` naming it, so readers never index into a hostile
    document."""

    batch_id: str
    model_id: str
    model_ref: str | None
    runtime_id: str
    fingerprint: dict[str, Any]
    dataset_id: str  # the dataset commitment: the input root
    dataset: dict[str, Any]  # description and file fingerprint, for people
    input_data: InputData  # the dataset in the store the rows' inputs are read from
    job: str
    requester: str
    domain: ClaimDomain
    row_count: int
    batch_root: str
    partition_rows: int
    batch_size: int
    comparison: dict[str, Any]
    inputs: tuple[TensorMeta, ...]
    outputs: tuple[TensorMeta, ...]
    partitions: tuple[PartitionMeta, ...]
    claim: BatchClaim
    signature: str
    attester: dict[str, Any]
    data_checks: dict[str, Any] | None = None
    run_stats: dict[str, Any] = field(default_factory=dict)
    ogkit_version: str = ""
    schema: str = SCHEMA

    @property
    def float_ulp(self) -> int:
        return int(self.comparison.get("float_ulp", 0))

    def execution(self) -> dict[str, Any]:
        """How the rows were run, as hashed into the batch id (spec §5)."""
        return execution_spec(
            partition_rows=self.partition_rows,
            batch_size=self.batch_size,
            comparison=self.comparison,
            inputs=[t.to_dict() for t in self.inputs],
            outputs=[{"name": t.name, "dtype": t.dtype} for t in self.outputs],
        )

    def tensor_specs(self) -> dict[str, dict[str, tuple[str, tuple[int, ...]]]]:
        return {
            "inputs": {t.name: (t.dtype, t.row_shape) for t in self.inputs},
            "outputs": {t.name: (t.dtype, t.row_shape) for t in self.outputs},
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": self.schema,
            "ogkit_version": self.ogkit_version,
            "batch_id": self.batch_id,
            "model_id": self.model_id,
            "model_ref": self.model_ref,
            "runtime_id": self.runtime_id,
            "fingerprint": self.fingerprint,
            "dataset_id": self.dataset_id,
            "dataset": self.dataset,
            "input_data": self.input_data.to_dict(),
            "job": self.job,
            "requester": self.requester,
            "domain": {
                "chain_id": self.domain.chain_id,
                "verifying_contract": self.domain.verifying_contract,
            },
            "row_count": self.row_count,
            "batch_root": self.batch_root,
            "partition_rows": self.partition_rows,
            "batch_size": self.batch_size,
            "comparison": self.comparison,
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
            "partitions": [p.to_dict() for p in self.partitions],
            "claim": self.claim.to_dict(),
            "signature": self.signature,
            "attester": self.attester,
            "data_checks": self.data_checks,
            "run_stats": self.run_stats,
        }

    @classmethod
    def from_dict(cls, d: Any) -> BatchManifest:
        w = "batch manifest"
        if not isinstance(d, Mapping):
            raise ArtifactError(f"{w} must be a JSON object, got {type(d).__name__}")
        schema = d.get("schema")
        if isinstance(schema, str) and schema in RETIRED_SCHEMAS:
            raise ArtifactError(
                f"{w} is {schema}, an earlier layout ({RETIRED_SCHEMAS[schema]}); this ogkit "
                f"reads {SCHEMA} only: run the job again (`ogkit infer ...`) to get a "
                f"{SCHEMA} artefact"
            )
        if schema != SCHEMA:
            raise ArtifactError(
                f"{w} has unknown schema {schema!r:.40} (this ogkit reads {SCHEMA})"
            )
        domain = _field(d, "domain", dict, w)
        chain_id = _count(domain, "chain_id", f"{w} domain")
        contract = _field(domain, "verifying_contract", str, f"{w} domain")
        if not is_address(contract):
            raise ArtifactError(f"{w} domain verifying_contract is not an address")
        requester = _field(d, "requester", str, w)
        if not is_address(requester):
            raise ArtifactError(f"{w} requester is not an address")
        comparison = _field(d, "comparison", dict, w)
        ulp = comparison.get("float_ulp", 0)
        if (
            set(comparison) - {"float_ulp"}
            or not isinstance(ulp, int)
            or not 0 <= ulp <= MAX_FLOAT_ULP
        ):
            raise ArtifactError(f"{w} comparison must be {{'float_ulp': 0..{MAX_FLOAT_ULP}}}")
        model_ref = d.get("model_ref")
        data_checks = d.get("data_checks")
        if model_ref is not None and not isinstance(model_ref, str):
            raise ArtifactError(f"{w} model_ref must be text or null")
        if data_checks is not None and not isinstance(data_checks, dict):
            raise ArtifactError(f"{w} data_checks must be an object or null")
        return cls(
            schema=schema,
            ogkit_version=str(d.get("ogkit_version", "")),
            batch_id=_hex32(d, "batch_id", w),
            model_id=_hex32(d, "model_id", w),
            model_ref=model_ref,
            runtime_id=_hex32(d, "runtime_id", w),
            fingerprint=_field(d, "fingerprint", dict, w),
            dataset_id=_hex32(d, "dataset_id", w),
            dataset=_field(d, "dataset", dict, w),
            input_data=InputData.from_dict(_field(d, "input_data", dict, w), f"{w} input_data"),
            job=_field(d, "job", str, w),
            requester=requester,
            domain=ClaimDomain(chain_id, contract),
            row_count=_count(d, "row_count", w),
            batch_root=_hex32(d, "batch_root", w),
            partition_rows=_count(d, "partition_rows", w, lo=1),
            batch_size=_count(d, "batch_size", w, lo=1),
            comparison={"float_ulp": ulp},
            inputs=tuple(
                TensorMeta.from_dict(t, f"{w} inputs[{i}]")
                for i, t in enumerate(_field(d, "inputs", list, w))
            ),
            outputs=tuple(
                TensorMeta.from_dict(t, f"{w} outputs[{i}]")
                for i, t in enumerate(_field(d, "outputs", list, w))
            ),
            partitions=tuple(
                PartitionMeta.from_dict(p, f"{w} partitions[{i}]")
                for i, p in enumerate(_field(d, "partitions", list, w))
            ),
            claim=BatchClaim.from_dict(_field(d, "claim", dict, w)),
            signature=_field(d, "signature", str, w),
            attester=_field(d, "attester", dict, w),
            data_checks=data_checks,
            run_stats=d.get("run_stats") if isinstance(d.get("run_stats"), dict) else {},
        )


def execution_spec(
    *,
    partition_rows: int,
    batch_size: int,
    comparison: Mapping[str, Any],
    inputs: list[dict[str, Any]],
    outputs: list[dict[str, Any]],
) -> dict[str, Any]:
    """The document :func:`ogkit.attest.execution_hash` hashes into the batch id."""
    return {
        "partition_rows": partition_rows,
        "batch_size": batch_size,
        "comparison": dict(comparison),
        "inputs": inputs,
        "outputs": outputs,
    }


# -- the batch ---------------------------------------------------------------------------------
class AttestedBatch:
    """A stored, signed batch: its typed manifest, records, trees and receipts."""

    def __init__(
        self, manifest: BatchManifest | dict[str, Any], artifact_id: str, store: ContentStore
    ) -> None:
        self.manifest = (
            manifest if isinstance(manifest, BatchManifest) else BatchManifest.from_dict(manifest)
        )
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
        return self.manifest.batch_id

    @property
    def batch_root(self) -> str:
        return self.manifest.batch_root

    @property
    def row_count(self) -> int:
        return self.manifest.row_count

    @property
    def model_id(self) -> str:
        return self.manifest.model_id

    @property
    def runtime_id(self) -> str:
        return self.manifest.runtime_id

    @property
    def batch_size(self) -> int:
        """The mini-batch size the node ran each partition in (re-execution repeats it)."""
        return self.manifest.batch_size

    @property
    def claim(self) -> BatchClaim:
        return self.manifest.claim

    @property
    def signature(self) -> str:
        return self.manifest.signature

    @property
    def domain(self) -> ClaimDomain:
        return self.manifest.domain

    @property
    def partitions(self) -> tuple[PartitionMeta, ...]:
        return self.manifest.partitions

    def tensor_specs(self) -> dict[str, dict[str, tuple[str, tuple[int, ...]]]]:
        return self.manifest.tensor_specs()

    # -- records ------------------------------------------------------------------------------
    def partition_bytes(self, index: int, *, check: bool = True) -> bytes:
        return read_partition_file(self.store, self.batch_id, self.partitions[index], check=check)

    def records(self, index: int, *, inputs: bool = True) -> PartitionRecords:
        """Partition ``index``'s records; with ``inputs`` also its rows' input tensors, read
        from the batch's stored dataset (:meth:`inputs`)."""
        part = self.partitions[index]
        rec = read_records(
            self.partition_bytes(index), self.tensor_specs(), offset=part.offset, rows=part.rows
        )
        if inputs:
            rec.inputs = self.inputs(index)
        return rec

    def input_source(self) -> DataSource:
        """The batch's stored dataset (raises InputsUnavailableError if it is not there)."""
        d = self.manifest.input_data
        return open_stored_dataset(self.store, d.object, d.format)

    def inputs(self, index: int) -> dict[str, np.ndarray]:
        """Partition ``index``'s input tensors, re-derived from the stored dataset with the
        manifest's input plan. They are what the manifest names, not necessarily what the
        records' input hashes commit to: callers that rely on them compare the hashes.
        Missing data, rows or columns: :class:`~ogkit.errors.InputsUnavailableError`."""
        part = self.partitions[index]
        m = self.manifest
        return read_inputs(
            self.input_source(), m.input_data, m.inputs, m.row_count, part.offset, part.rows
        )

    def outputs_frame(self) -> pl.DataFrame:
        """Every row's outputs (and hashes) as one polars frame ordered by row index."""
        frames = []
        for i in range(len(self.partitions)):
            rec = self.records(i, inputs=False)
            cols: dict[str, Any] = {"row_index": rec.row_index}
            for name, values in rec.outputs.items():
                cols[name] = values if values.ndim == 1 else list(values.reshape(len(values), -1))
            cols["output_hash"] = [_hex(h) for h in rec.output_hashes]
            frames.append(pl.DataFrame(cols))
        return pl.concat(frames).sort("row_index")

    @functools.cached_property
    def batch_tree(self) -> MerkleTree:
        roots = np.array([list(bytes.fromhex(p.root[2:])) for p in self.partitions], np.uint8)
        return MerkleTree.from_leaf_hashes(roots)

    # -- receipts -------------------------------------------------------------------------------
    def _locate(self, row_index: int) -> int:
        """The position of the partition holding ``row_index`` (partitions that do not
        tile the batch in order name no row: ``ogkit verify`` names why)."""
        if 0 <= row_index < self.row_count:
            for position, part in enumerate(self.partitions):
                if part.index != position:
                    raise ReceiptError(
                        f"batch {self.batch_id} lists partition {part.index} at position "
                        f"{position}: its partitions do not tile the batch in order, so no "
                        "receipt of it proves a row (run `ogkit verify` on it for the findings)"
                    )
                if part.offset <= row_index < part.offset + part.rows:
                    return position
        raise ReceiptError(f"row {row_index} is not in batch {self.batch_id}")

    def receipts(self, row_indices: list[int] | np.ndarray) -> list[dict[str, Any]]:
        """Receipts for many rows (one tree build per partition touched)."""
        wanted = sorted({int(r) for r in row_indices})
        by_partition: dict[int, list[int]] = {}
        for r in wanted:
            by_partition.setdefault(self._locate(r), []).append(r)
        out: dict[int, dict[str, Any]] = {}
        for index, rows in by_partition.items():
            rec = self.records(index, inputs=False)
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
                "rowIndex": str(int(rec.row_index[i])),
                "inputHash": _hex(rec.input_hashes[i]),
                "outputHash": _hex(rec.output_hashes[i]),
            },
            "leaf": _hex(rec.leaves[i]),
            "proof": [_hex(p) for p in proof],
            "batch_root": self.batch_root,
            "partition": {"index": index, "root": self.partitions[index].root},
            "claim": self.claim.to_dict(),
            "domain": {
                "chain_id": self.domain.chain_id,
                "verifying_contract": self.domain.verifying_contract,
            },
            "signature": self.signature,
            "artifact_id": self.artifact_id,
        }


# -- records on disk -----------------------------------------------------------------------
def read_partition_file(
    store: ContentStore, batch_id: str, part: PartitionMeta, *, check: bool = True
) -> bytes:
    """A partition's records file, from its own batch folder only; with ``check`` its
    sha256 must be the manifest's. Workers call this to read records themselves."""
    if not safe_records_path(part.path, batch_id):
        raise ArtifactError(
            f"partition {part.index} of batch {batch_id} names records at {part.path!r:.80}, "
            "outside the store's batches/<batch id>/ folders"
        )
    data = store.read_bytes(part.path)
    if check and hashlib.sha256(data).hexdigest() != part.sha256:
        raise ArtifactIntegrityError(
            f"records file {part.path} of batch {batch_id} was altered after it "
            "was attested (sha256 differs from the manifest)"
        )
    return data


def _hash_column(rows: np.ndarray) -> pa.Array:
    return pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(32), len(rows), [None, pa.py_buffer(np.ascontiguousarray(rows))]
    )


def _tensor_column(values: np.ndarray) -> pa.Array:
    """One row per value for scalars; otherwise each row's little-endian C-order bytes as a
    fixed-size binary value (decoding it is a memory view, unlike Parquet's nested lists)."""
    if values.ndim == 1:
        return pa.array(values)
    n = len(values)
    le = np.ascontiguousarray(values, dtype=values.dtype.newbyteorder("<"))
    row_bytes = le.nbytes // max(n, 1)
    return pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(row_bytes), n, [None, pa.py_buffer(le.reshape(-1).view(np.uint8))]
    )


def read_inputs(
    source: DataSource,
    d: InputData,
    bindings: Sequence[TensorMeta],
    row_count: int,
    start: int,
    rows: int,
) -> dict[str, np.ndarray]:
    """Rows ``start .. start + rows - 1`` of the batch (0-based in the batch) as input
    tensors, from ``source`` (the stored dataset ``d``) under the manifest's input plan
    (``bindings``); ``row_count`` is the batch's."""
    if d.rows != row_count or d.offset + d.rows > source.n_rows:
        raise InputsUnavailableError(
            f"the manifest names rows {d.offset}..{d.offset + d.rows - 1} of dataset "
            f"{d.object}, which holds {source.n_rows:,} rows, for a batch of "
            f"{row_count:,} rows"
        )
    if start < 0 or start + rows > d.rows:
        raise InputsUnavailableError(f"rows {start}..{start + rows - 1} are not in the batch")
    try:
        feeds = plan_from_bindings(bindings).feeds(source, d.offset + start, rows)
    except InputsUnavailableError:
        raise
    except UNREADABLE as exc:  # columns the data lacks, values that do not convert
        raise InputsUnavailableError(
            f"dataset {d.object} does not give the manifest's inputs: {type(exc).__name__}: {exc}"[
                :600
            ]
        ) from None
    for name, values in feeds.items():
        if len(values) != rows:
            raise InputsUnavailableError(f"dataset {d.object} gives {len(values)} rows of {name}")
    return feeds


def records_to_parquet(att: PartitionAttestation, outputs: Mapping[str, np.ndarray]) -> bytes:
    """One partition's records as Parquet bytes (columns documented in docs/spec.md §6):
    each row's input and output hashes and its outputs, in row order. Nothing a reader
    can derive is stored: the row indices are the partition's range in the manifest, the
    leaves are hashed from them and the two hashes; the inputs are the stored dataset's
    rows."""
    columns: dict[str, pa.Array] = {
        "input_hash": _hash_column(att.input_hashes),
        "output_hash": _hash_column(att.output_hashes),
    }
    for name, values in outputs.items():
        columns[f"output.{name}"] = _tensor_column(values)
    # Hashes and float bytes neither compress nor dictionary-encode: skipping both makes
    # writing ~5x faster for the same size; nobody reads a records column by its values.
    # Arrow's own output stream, not a BytesIO (whose every write goes through Python):
    # a 50k-row tabular partition 5.8 -> 3.8 ms.
    sink = pa.BufferOutputStream()
    pq.write_table(
        pa.Table.from_arrays(list(columns.values()), names=list(columns)),
        sink,
        compression="none",
        use_dictionary=False,
        write_statistics=False,
    )
    return sink.getvalue().to_pybytes()


def parquet_table(data: bytes, columns: Sequence[str] | None = None) -> pa.Table:
    """The Parquet file ``data`` (records) as one table, decoded on this thread. Read
    through ``ParquetFile``, not ``pq.read_table``: that one imports Arrow's dataset
    layer (and pandas) on first use, about 0.4 s in every fresh process (each verify
    worker, each CLI run). A named column the file lacks is left out, not an error:
    callers check the columns they need."""
    return pq.ParquetFile(pa.BufferReader(data)).read(columns=columns, use_threads=False)


def records_file(data: bytes, rows: int | None = None) -> pq.ParquetFile:
    """The records file ``data`` opened from its footer, nothing decoded; with ``rows`` its
    footer must count exactly that many rows (a file of a few hundred kB can hold
    millions of equal, dictionary-encoded rows: the count is checked before any is)."""
    try:
        file = pq.ParquetFile(pa.BufferReader(data))
    except (pa.ArrowException, ValueError, TypeError, OSError) as exc:
        raise ArtifactError(f"records are unreadable: {exc}") from exc
    _expect_rows(file, rows)
    return file


def _expect_rows(file: pq.ParquetFile, rows: int | None) -> None:
    if rows is not None and file.metadata.num_rows != rows:
        raise ArtifactError(f"records hold {file.metadata.num_rows:,} rows, the manifest {rows:,}")


def _layout_columns(
    schema: pa.Schema, tensor_specs: Mapping[str, Mapping[str, tuple[str, tuple[int, ...]]]]
) -> list[str]:
    """The records columns to decode, once the file's schema is the layout's (spec §6:
    the two hashes as 32-byte values, each output a fixed-width value of its tensor's
    size, no other column): checked before anything is decoded, so what a read decodes
    is bounded by the row count and the manifest's tensor sizes."""
    names = list(schema.names)
    if len(set(names)) != len(names):
        raise ArtifactError("records repeat a column name")
    outputs = tensor_specs["outputs"]
    widths = {"input_hash": None, "output_hash": None} | {f"output.{n}": n for n in outputs}
    extra = set(names) - set(widths)
    if extra:
        raise ArtifactError(f"records have columns the manifest does not name: {sorted(extra)}")
    for name, output in widths.items():
        if name not in names:
            raise ArtifactError(f"records lack the column {name!r}")
        kind = schema.field(name).type
        if output is None:
            if kind != pa.binary(32):
                raise ArtifactError(f"records column {name!r} must be 32-byte hashes, not {kind}")
            continue
        dtype, row_shape = outputs[output]
        if row_shape == () and (
            pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)
        ):
            continue
        width = math.prod(row_shape) * np.dtype(dtype).itemsize
        if kind != pa.binary(width):
            raise ArtifactError(
                f"records column {name!r} has type {kind}, not {dtype}{list(row_shape)} values"
            )
    return list(widths)


def records_input_leaves(data: bytes, offset: int, rows: int) -> np.ndarray:
    """The input-root leaves of a partition (rows ``offset .. offset + rows - 1``) from its
    own records' input hashes (a resumed run rebuilds the input root from the partitions
    it finished)."""
    file = records_file(data, rows)
    schema = file.schema_arrow
    if "input_hash" in schema.names and schema.field("input_hash").type != pa.binary(32):
        raise ArtifactError("records column 'input_hash' must be 32-byte hashes")  # undecoded
    table = file.read(columns=["input_hash"], use_threads=False)
    expected = np.arange(offset, offset + rows, dtype=np.uint64)
    return input_leaf_hashes(expected, _hash_rows(_column(table, "input_hash"), "input_hash"))


@dataclass
class PartitionRecords:
    """One partition's records as read: ``row_index`` is the partition's range (from the
    manifest), ``leaves`` are hashed from it and the stored hashes when first asked for."""

    row_index: np.ndarray
    input_hashes: np.ndarray
    output_hashes: np.ndarray
    outputs: dict[str, np.ndarray]
    # the rows' input tensors, filled from the stored dataset by AttestedBatch.records
    inputs: dict[str, np.ndarray] = field(default_factory=dict)

    @functools.cached_property
    def leaves(self) -> np.ndarray:
        return leaf_hashes(self.row_index, self.input_hashes, self.output_hashes)


def _column(table: pa.Table, name: str) -> pa.Array:
    if name not in table.column_names:
        raise ArtifactError(f"records lack the column {name!r}")
    arr = table[name].combine_chunks()
    if arr.null_count:
        raise ArtifactError(f"records column {name!r} has {arr.null_count} null values")
    return arr


def _hash_rows(arr: pa.Array, name: str) -> np.ndarray:
    if arr.type != pa.binary(32):
        raise ArtifactError(f"records column {name!r} must be 32-byte hashes, not {arr.type}")
    buf = arr.buffers()[1]
    return np.frombuffer(buf, np.uint8, count=len(arr) * 32, offset=arr.offset * 32).reshape(-1, 32)


def _tensor_rows(arr: pa.Array, name: str, dtype: str, row_shape: tuple[int, ...]) -> np.ndarray:
    dt = np.dtype(dtype)
    if pa.types.is_fixed_size_binary(arr.type):
        width = arr.type.byte_width
        if width != math.prod(row_shape) * dt.itemsize:
            raise ArtifactError(
                f"records column {name!r} holds {width} bytes a row, not a {dtype}{list(row_shape)}"
            )
        raw = np.frombuffer(arr.buffers()[1], np.uint8, len(arr) * width, arr.offset * width)
        return raw.view(dt.newbyteorder("<")).astype(dt, copy=False).reshape((len(arr), *row_shape))
    if row_shape != () or not (
        pa.types.is_integer(arr.type)
        or pa.types.is_floating(arr.type)
        or pa.types.is_boolean(arr.type)
    ):
        raise ArtifactError(f"records column {name!r} has type {arr.type}, not a {dtype} scalar")
    values = arr.to_numpy(zero_copy_only=False)
    if values.dtype != dt:
        raise ArtifactError(f"records column {name!r} holds {values.dtype}, not {dtype}")
    return values


def read_records(
    data: bytes | pq.ParquetFile,
    tensor_specs: Mapping[str, Mapping[str, tuple[str, tuple[int, ...]]]],
    *,
    offset: int,
    rows: int | None = None,
) -> PartitionRecords:
    """Parse one partition's Parquet records, whose first row is batch row ``offset``;
    ``tensor_specs`` gives each tensor's dtype and per-row shape, under ``"inputs"`` and
    ``"outputs"``. Anything that is not exactly the documented layout (spec §6: column
    types, widths, no nulls, no column beyond those named; with ``rows``, that many rows)
    raises :class:`~ogkit.errors.ArtifactError`, the row count and the schema before any
    row is decoded (``data`` may be the file :func:`records_file` opened). Records hold
    no inputs (``inputs`` stays empty)."""
    file = data if isinstance(data, pq.ParquetFile) else records_file(data)
    _expect_rows(file, rows)
    try:
        columns = _layout_columns(file.schema_arrow, tensor_specs)
        table = file.read(columns=columns, use_threads=False)
        return PartitionRecords(
            row_index=np.arange(offset, offset + table.num_rows, dtype=np.uint64),
            input_hashes=_hash_rows(_column(table, "input_hash"), "input_hash"),
            output_hashes=_hash_rows(_column(table, "output_hash"), "output_hash"),
            outputs={
                name: _tensor_rows(_column(table, f"output.{name}"), f"output.{name}", dt, shape)
                for name, (dt, shape) in tensor_specs["outputs"].items()
            },
        )
    except ArtifactError:
        raise
    except (pa.ArrowException, KeyError, ValueError, TypeError, OSError) as exc:
        raise ArtifactError(f"records are unreadable or incomplete: {exc}") from exc


@dataclass
class PartitionResult:
    """One finished partition: its records and the metadata the manifest pins."""

    index: int
    offset: int
    rows: int
    root: str
    sha256: str
    records: bytes | None = field(repr=False)  # None: the worker wrote them to the store
    seconds: dict[str, float] = field(default_factory=dict)
    worker: str = ""
    output_shapes: dict[str, list[int]] = field(default_factory=dict)
    # the rows' input-root leaves, on their way to the worker that builds the input root
    input_leaves: np.ndarray | None = field(default=None, repr=False)

    def meta(self, path: str) -> dict[str, Any]:
        return {
            "index": self.index,
            "offset": self.offset,
            "rows": self.rows,
            "root": self.root,
            "path": path,
            "sha256": self.sha256,
            "seconds": self.seconds,
            "worker": self.worker,
            "output_shapes": self.output_shapes,
        }


# -- staging: the batch's folder while it is being written --------------------
class BatchStaging:
    """A folder of partitions in the store: job parameters, then partitions as they
    finish. A run stages its partitions under its run key (``run-…``) until the input
    root decides the batch id, then moves them into the batch's folder (``0x…``).

    With ``mac_key`` every meta this run writes carries an HMAC-SHA256 over its fields
    (all but the records' path), and a partition counts as finished only when its meta's
    MAC is right, its path is this folder's own for its index and its records hash to
    the meta's sha256. Whoever else writes to the store cannot plant a partition that
    the node would then sign as its own work: without the key, a planted meta is ignored
    and the partition runs again."""

    def __init__(
        self, store: ContentStore, key: str, *, clean: bool = True, mac_key: bytes | None = None
    ) -> None:
        """``clean=False`` on workers: only the run's own process tidies the folder."""
        self.store = store
        self.prefix = f"batches/{key}"
        self._mac_key = mac_key
        if not clean:
            return
        # A run killed mid-write leaves only temporary files (writes are write-then-move).
        for name in store.listdir(self.prefix):
            if name.startswith(".tmp-"):
                store.fs.rm(store.path(f"{self.prefix}/{name}"))

    def records_path(self, index: int) -> str:
        return f"{self.prefix}/part-{index:05d}.parquet"

    def _meta_path(self, index: int) -> str:
        return f"{self.prefix}/part-{index:05d}.json"

    def check_job(self, params: dict[str, Any]) -> None:
        """Refuse settings other than an earlier run's of this folder (with a MAC key, only
        a ``job.json`` this run's key wrote counts: another is replaced, with a warning)."""
        path = f"{self.prefix}/job.json"
        if self._mac_key is not None:
            params = {**params, "mac": self._mac(params)}
        earlier = None
        if self.store.exists(path):
            try:
                earlier = json.loads(self.store.read_bytes(path))
            except (ValueError, UnicodeDecodeError):
                earlier = {}
            if self._mac_key is not None and not (
                isinstance(earlier, dict)
                and isinstance(earlier.get("mac"), str)
                and hmac.compare_digest(earlier["mac"], self._mac(earlier))
            ):
                log.warning("replacing %s: this run's key did not write it", path)
                earlier = None
        if earlier is not None:
            if earlier != params:
                diff = sorted(k for k in params if k != "mac" and earlier.get(k) != params.get(k))
                raise ConfigError(
                    f"an earlier run of this job ({self.store.url}/{self.prefix}) used different "
                    f"{', '.join(diff)}; re-run with the same settings, or use another job name"
                )
        else:
            self.store.write_bytes(path, json.dumps(params, indent=2, sort_keys=True).encode())

    def _mac(self, meta: Mapping[str, Any]) -> str:
        assert self._mac_key is not None
        fields = {k: v for k, v in meta.items() if k not in ("path", "mac")}
        body = json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()
        return hmac.new(self._mac_key, body, hashlib.sha256).hexdigest()

    def finished(self, index: int) -> dict[str, Any] | None:
        """The meta of a partition written by an earlier run, if its records are intact
        (and, with a MAC key, if this run's key wrote it for this folder and index)."""
        if not self.store.exists(self._meta_path(index)):
            return None
        try:
            meta = json.loads(self.store.read_bytes(self._meta_path(index)))
            if not isinstance(meta, dict) or meta.get("index") != index:
                raise ValueError("not this partition's meta")
            if self._mac_key is not None:
                mac = meta.get("mac")
                if not isinstance(mac, str) or not hmac.compare_digest(mac, self._mac(meta)):
                    raise ValueError("its MAC is not this run's")
                if meta.get("path") != self.records_path(index):
                    raise ValueError(f"it names records at {meta.get('path')!r}")
            data = self.store.read_bytes(meta["path"])
        except ArtifactError:
            return None
        except (ValueError, TypeError, KeyError, UnicodeDecodeError) as exc:
            log.warning(
                "ignoring staged partition %d in %s (%s); running it again",
                index,
                self.prefix,
                exc,
            )
            return None
        if hashlib.sha256(data).hexdigest() != meta["sha256"]:
            log.warning("partition %d records are damaged; running it again", index)
            return None
        return meta

    def write(self, result: PartitionResult) -> dict[str, Any]:
        """Write a partition's records, then its meta; returns the meta. A result whose
        records a worker already wrote (``records is None``) only gives its meta."""
        path = self.records_path(result.index)
        meta = result.meta(path)
        if self._mac_key is not None:
            meta["mac"] = self._mac(meta)
        if result.records is None:
            return meta
        self.store.write_bytes(path, result.records)
        # The meta file is written last: its presence marks the partition finished.
        self.store.write_bytes(self._meta_path(result.index), json.dumps(meta).encode())
        return meta

    def adopt(self, other: BatchStaging, meta: dict[str, Any]) -> dict[str, Any]:
        """Move a finished partition (records, then its meta) from ``other``'s folder into
        this one; returns its meta here. A partition already here stays as it is."""
        index = meta["index"]
        path = self.records_path(index)
        if meta["path"] == path:
            return meta
        if meta["path"] != other.records_path(index):  # never another folder's records
            raise ArtifactError(
                f"partition {index}'s meta in {other.prefix} names records at "
                f"{meta['path']!r}, outside that folder; delete {other.prefix} and run again"
            )
        self.store.move(meta["path"], path)
        moved = {**meta, "path": path}
        if self._mac_key is not None:  # callers pass only metas this run made or checked
            moved["mac"] = self._mac(moved)
        # A crash before this line leaves the other folder's meta pointing at nothing:
        # that partition then runs again, nothing else is lost.
        self.store.write_bytes(self._meta_path(index), json.dumps(moved).encode())
        other.store.remove(other._meta_path(index))
        return moved

    def batch_pointer(self) -> str | None:
        """The batch id a run's partitions were moved into, once known (with a MAC key,
        only a pointer this run's key wrote: another is ignored, with a warning)."""
        path = f"{self.prefix}/BATCH"
        if not self.store.exists(path):
            return None
        try:
            batch_id, _, mac = self.store.read_bytes(path).decode().strip().partition(" ")
        except UnicodeDecodeError:
            batch_id, mac = "", ""
        if self._mac_key is not None and not hmac.compare_digest(
            mac, self._mac({"batch": batch_id})
        ):
            log.warning("ignoring the batch pointer in %s: this run's key did not write it", path)
            return None
        return batch_id

    def set_batch_pointer(self, batch_id: str) -> None:
        text = batch_id if self._mac_key is None else f"{batch_id} {self._mac({'batch': batch_id})}"
        self.store.write_bytes(f"{self.prefix}/BATCH", text.encode())

    def remove(self) -> None:
        """Delete the folder (and ``batches/`` if nothing else is left in it)."""
        self.store.remove(self.prefix, recursive=True)
        if not self.store.listdir("batches"):
            self.store.remove("batches", recursive=True)

    def artifact_pointer(self) -> str | None:
        path = f"{self.prefix}/ARTIFACT"
        return self.store.read_bytes(path).decode().strip() if self.store.exists(path) else None

    def set_artifact_pointer(self, artifact_id: str) -> None:
        self.store.write_bytes(f"{self.prefix}/ARTIFACT", artifact_id.encode())


# -- reading a stored batch ----------------------------------------
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
    doc = parse_document(data, f"artefact {artifact_id}")
    try:
        manifest = BatchManifest.from_dict(doc)
    except ArtifactError as exc:
        raise ArtifactError(f"artefact {artifact_id}: {exc}") from None
    return AttestedBatch(manifest, artifact_id, store)


MAX_DOCUMENT_BYTES = 256 << 20
MAX_DOCUMENT_DEPTH = 32
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')


def parse_document(data: bytes, what: str) -> Any:
    """Parse an ogkit JSON document strictly: canonical JSON only (sorted keys, no
    whitespace: one document, one id), no duplicate keys, no NaN/Infinity, nested at most
    32 deep (checked before the parser runs, which could otherwise overflow the stack)."""
    if len(data) > MAX_DOCUMENT_BYTES:
        raise ArtifactError(f"{what} is {len(data):,} bytes, more than ogkit reads")
    bare = _JSON_STRING.sub(b'""', data)
    depth = np.cumsum(
        (np.frombuffer(bare, np.uint8) == ord("[")).astype(np.int32)
        + (np.frombuffer(bare, np.uint8) == ord("{"))
        - (np.frombuffer(bare, np.uint8) == ord("]"))
        - (np.frombuffer(bare, np.uint8) == ord("}"))
    )
    if depth.size and int(depth.max()) > MAX_DOCUMENT_DEPTH:
        raise ArtifactError(f"{what} nests deeper than {MAX_DOCUMENT_DEPTH} levels")
    try:
        doc = json.loads(data, parse_constant=_no_constants, object_pairs_hook=_unique_keys)
    except (ValueError, RecursionError) as exc:
        raise ArtifactError(f"{what} is not valid JSON: {exc}") from None
    if canonical_json(doc) != data:
        raise ArtifactError(f"{what} is not canonical JSON (sorted keys, no whitespace)")
    return doc


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    doc = dict(pairs)
    if len(doc) != len(pairs):
        raise ValueError("an object repeats a key")
    return doc


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not allowed in an ogkit document")


def store_batch(manifest: BatchManifest, store: ContentStore) -> AttestedBatch:
    """Store ``manifest`` content-addressed (canonical JSON) and return the batch."""
    return AttestedBatch(manifest, store.put(ARTIFACTS, canonical_json(manifest.to_dict())), store)
