"""Adversarial toolkit: tamper with an honest attested batch the way an approved node can.

The attacker is an *approved* inference node: its attester key and measurement are on
the verifier's allowlist. It may write anything the artefact format allows (records
Parquet files, every manifest field, the claim, the signature, the attester evidence,
receipts) and re-sign the claim with its approved key whenever the attack needs it.

A :class:`Forge` starts from a deep copy of the honest manifest. A tamper function
edits that copy and/or writes NEW records files into the store (the honest files are
never touched), then re-seals as far as the attack wants:

* :meth:`Forge.rehash` recomputes a records table's input hashes, output hashes and
  leaves from its tensor columns (docs/spec.md sections 2, 3.1, 6);
* :meth:`Forge.write` stores a records file under a new path and pins its sha256 (and,
  by default, the partition root of its ``leaf`` column) in the manifest;
* :meth:`Forge.rederive_batch_id` re-derives the batch id from the manifest (section 4);
* :meth:`Forge.seal` rebuilds the batch root over the partition roots, the claim from
  the manifest fields and re-signs it with the approved enclave key (section 5);
* :meth:`Forge.publish` stores the manifest content-addressed (``artifacts``,
  canonical JSON) and returns the artefact id a verifier or auditor is handed.

Each tamper class (:data:`CLASSES`) names the attacker's goal (a: wrong outputs
accepted, b: bill for rows not run, c: charge a requester who did not ask, d: crash or
hang the verifier instead of a finding) and the verdict reasons that count as catching
it; :data:`RECEIPT_CLASSES` does the same for receipts. ``scoreboard.py`` prints how the
current ogkit fares against every class.

Reason names are the ones ``ogkit.verify.REASONS`` lists (``manifest-malformed``,
``partition-tiling``, ``dataset-mismatch``, ``spec-mismatch``, …). Where ogkit has no
check yet, a group below also holds a proposed name: ``job-order`` (no requester-signed
job order covers the batch), ``model-mismatch`` (``model_ref`` does not name
``model_id``), ``records-schema``. A verdict naming any reason of a class's set counts.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import math
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ogkit.attest import BatchClaim, ClaimDomain, derive_batch_id
from ogkit.batch import ARTIFACTS, load_batch
from ogkit.crypto.encoding import tensor_row_hashes
from ogkit.crypto.keccak import keccak256
from ogkit.crypto.merkle import MerkleTree, leaf_hashes
from ogkit.hub import Hub
from ogkit.hub.manifest import canonical_json
from ogkit.keys import KeyStore, Signer
from ogkit.samples import sample_data_path, sample_model_path
from ogkit.store import ContentStore
from ogkit.verify import Allowlist

__all__ = [
    "CLASSES",
    "RECEIPT_CLASSES",
    "Forge",
    "Honest",
    "ReceiptClass",
    "TamperClass",
    "build_honest",
    "build_receipt",
    "manifest_dict",
]

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
SECP256K1_P = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEFFFFFC2F

# -- reason groups (see the module docstring) ------------------------------------------------
MANIFEST = frozenset({"manifest-malformed", "manifest-invalid"})
LAYOUT = frozenset({"partition-tiling", "partition-rows", "partition-layout"})
DATASET = frozenset({"dataset-mismatch", "input-root-mismatch", "input-mismatch"})
JOB_ORDER = frozenset({"job-order", "job-order-missing", "job-order-mismatch"})
EVIDENCE = frozenset({"evidence-mismatch", "attester-evidence"})
FINGERPRINT = frozenset({"runtime-id", "fingerprint-mismatch"})
RECORDS_PATH = frozenset({"records-path"})
RECORDS_SCHEMA = frozenset({"records-unreadable", "records-schema"})
TENSOR_SPEC = frozenset({"spec-mismatch", "tensor-spec"})
TIMESTAMP = frozenset({"claim-timestamp"})
MODEL = frozenset({"model-mismatch"})
DOMAIN = frozenset({"domain-mismatch"})
EMPTY = frozenset({"empty-batch"})
REEXEC = frozenset({"reexecution-mismatch"})
REEXEC_FAILED = frozenset({"reexecution-failed"})
UNSAMPLED = frozenset({"sample-not-reexecuted"})


def R(*names: str | frozenset[str]) -> frozenset[str]:
    """A reason set from single names and groups."""
    out: set[str] = set()
    for n in names:
        out |= {n} if isinstance(n, str) else set(n)
    return frozenset(out)


def manifest_dict(manifest: Any) -> dict[str, Any]:
    """A deep, plain-JSON copy of a manifest: a dict today, a typed object with
    ``to_dict()`` (or ``model_dump()``) tomorrow."""
    for attr in ("to_dict", "model_dump"):
        fn = getattr(manifest, attr, None)
        if callable(fn):
            return copy.deepcopy(fn())
    return copy.deepcopy(dict(manifest))


def _b(hex_text: str) -> bytes:
    return bytes.fromhex(hex_text.removeprefix("0x"))


def _hex(raw: bytes | np.ndarray) -> str:
    return "0x" + bytes(raw).hex()


def _is_b32(value: Any) -> bool:
    try:
        return isinstance(value, str) and len(_b(value)) == 32
    except ValueError:
        return False


# -- records: the spec's Parquet columns -----------------------------------------------------
def decode_tensor(col: pa.ChunkedArray | pa.Array, dtype: str, row_shape: tuple) -> np.ndarray:
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    n = len(arr)
    if pa.types.is_fixed_size_binary(arr.type):
        width = arr.type.byte_width
        raw = np.frombuffer(arr.buffers()[1], np.uint8, n * width, arr.offset * width)
        return raw.view(np.dtype(dtype).newbyteorder("<")).astype(dtype).reshape((n, *row_shape))
    return arr.to_numpy(zero_copy_only=False).astype(dtype).reshape((n, *row_shape))


def encode_tensor(values: np.ndarray) -> pa.Array:
    """A tensor column as ogkit writes it: plain for 0-d rows, else fixed-size binary."""
    values = np.asarray(values)
    if values.ndim == 1:
        return pa.array(values)
    n = len(values)
    le = np.ascontiguousarray(values, dtype=values.dtype.newbyteorder("<"))
    width = values.dtype.itemsize * math.prod(values.shape[1:])
    return pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(width), n, [None, pa.py_buffer(le.tobytes())]
    )


def hash_column(rows: np.ndarray) -> pa.Array:
    rows = np.ascontiguousarray(rows, dtype=np.uint8).reshape(-1, 32)
    return pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(32), len(rows), [None, pa.py_buffer(rows.tobytes())]
    )


def hash_rows(col: pa.ChunkedArray | pa.Array) -> np.ndarray:
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    return np.array([list(v) for v in arr.to_pylist()], dtype=np.uint8).reshape(-1, 32)


def set_column(table: pa.Table, name: str, arr: pa.Array) -> pa.Table:
    i = table.schema.get_field_index(name)
    if i < 0:
        return table.append_column(name, arr)
    return table.set_column(i, name, arr)


def to_parquet(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="none")
    return sink.getvalue()


def _has_inputs(table: pa.Table) -> bool:
    return any(c.startswith("input.") for c in table.column_names)


def _inputs_of(table: pa.Table) -> pa.Table:
    return table.select([c for c in table.column_names if c.startswith("input.")])


#: Columns of the toolkit's working tables that a records file does not hold (spec §6):
#: a row's index is its place in its partition, its leaf is hashed from it and the two
#: hashes. Classes edit them to say which row a record claims to be and which leaf the
#: pinned root is built over; :meth:`Forge.write` pins that root and stores the rest.
WORKING = ("row_index", "leaf")


def _records_only(table: pa.Table) -> pa.Table:
    """What a records file holds (spec §6): every column but the inputs and the working
    columns."""
    return table.select(
        [c for c in table.column_names if not c.startswith("input.") and c not in WORKING]
    )


def with_file_column(table: pa.Table, name: str, values: pa.Array) -> bytes:
    """The records file of ``table`` with one more column ``name`` written into it (a
    working column's name included: the attacker writes what it likes)."""
    return to_parquet(_records_only(table).append_column(name, values))


def tree_root(leaves: np.ndarray) -> str:
    if len(leaves) == 0:
        return "0x"
    return _hex(MerkleTree.from_leaf_hashes(np.ascontiguousarray(leaves, np.uint8)).root)


# -- the honest batch every class starts from ------------------------------------------------
@dataclass
class Honest:
    home: Path
    hub: Hub
    store: ContentStore
    batch: Any  # AttestedBatch
    manifest: dict[str, Any]  # plain copy, never mutated
    tables: list[pa.Table]  # the honest records, by partition position
    enclave: Signer  # the approved attester's key
    rogue: Signer  # a key nobody approved
    requester: str
    victim: str  # another key holder who ordered nothing
    other_model_id: str  # a different model in the same hub
    allowlist: Allowlist
    _model: Any = field(default=None, repr=False)

    @property
    def model(self):
        """The tab model, loaded once: for classes that run it on fabricated inputs."""
        if self._model is None:
            from ogkit.load import load_model

            self._model = load_model(self.manifest["model_id"], hub=self.hub)
        return self._model

    @property
    def artifact_id(self) -> str:
        return self.batch.artifact_id


def build_honest(root: Path) -> Honest:
    """Publish tab and cnn into a fresh home and attest the sample tabular dataset in four
    partitions of 500 rows with an approved enclave key. No environment is read."""
    from ogkit.attest import make_attester
    from ogkit.infer import run_verified_inference

    home = Path(root) / "ogkit-home"
    keys = KeyStore(home)
    owner = keys.ensure_dev_key("owner")
    store = ContentStore(str(home / "store"))
    hub = Hub(store, home=home)
    hub.publish(sample_model_path("tabular"), name="tab", version="1.0.0", price=1000, signer=owner)
    cnn = hub.publish(sample_model_path("cnn"), name="cnn", version="1.0.0", price=7, signer=owner)
    enclave = keys.ensure_dev_key("enclave")
    rogue = keys.ensure_dev_key("rogue")
    requester = keys.ensure_dev_key("requester").address
    victim = keys.ensure_dev_key("victim").address
    batch = run_verified_inference(
        "tab",
        sample_data_path("tabular"),
        attester=make_attester("software", signer=enclave),
        requester=requester,
        hub=hub,
        store=store,
        partition_rows=500,
        progress=False,
    )
    manifest = manifest_dict(batch.manifest)
    tables = []
    for pos, p in enumerate(manifest["partitions"]):
        # Records hold no inputs (spec §6): the toolkit's tables carry the rows' inputs
        # from the stored dataset as ``input.<name>`` columns, so a class can edit them;
        # :meth:`Forge.publish` stores edited inputs as the node's own dataset.
        t = pq.read_table(io.BytesIO(store.read_bytes(p["path"])))
        rows = np.arange(p["offset"], p["offset"] + p["rows"], dtype=np.uint64)
        leaves = leaf_hashes(rows, hash_rows(t["input_hash"]), hash_rows(t["output_hash"]))
        t = t.add_column(0, "row_index", pa.array(rows)).append_column("leaf", hash_column(leaves))
        for name, values in batch.inputs(pos).items():
            t = t.append_column(f"input.{name}", encode_tensor(values))
        tables.append(t)
    allowlist = Allowlist().approve(enclave.address, [manifest["runtime_id"]])
    return Honest(
        home=home,
        hub=hub,
        store=store,
        batch=batch,
        manifest=manifest,
        tables=tables,
        enclave=enclave,
        rogue=rogue,
        requester=requester,
        victim=victim,
        other_model_id=cnn.model_id,
        allowlist=allowlist,
    )


# -- the forge ----------------------------------------------------------------------------------
@dataclass
class Tampered:
    artifact_id: str
    store: ContentStore
    manifest: Any

    def batch(self):
        """The tampered batch loaded the way a verifier loads it (may raise)."""
        return load_batch(self.artifact_id, self.store)


class Forge:
    """A mutable copy of the honest batch: edit ``m`` and records, re-seal, publish."""

    def __init__(self, honest: Honest, tag: str) -> None:
        self.h = honest
        self.tag = tag
        self.m: Any = manifest_dict(honest.manifest)
        self.raw: bytes | None = None  # manifest bytes to store instead of canonical_json(m)
        self.written: dict[int, pa.Table] = {}  # records tables written, by position
        self.raw_id: str | None = None  # store ``raw`` under this id instead of its hash
        self._files = 0

    # -- records -------------------------------------------------------------------------
    def table(self, pos: int) -> pa.Table:
        """The honest records of partition ``pos`` (an immutable Arrow table); an empty
        table of the same schema for a partition the honest batch does not have."""
        if pos < len(self.h.tables):
            return self.h.tables[pos]
        return self.h.tables[-1].slice(0, 0)

    def specs(self, kind: str) -> dict[str, tuple[str, tuple[int, ...]]]:
        return {t["name"]: (t["dtype"], tuple(t["row_shape"])) for t in self.m[kind]}

    def tensors(self, table: pa.Table, kind: str) -> dict[str, np.ndarray]:
        prefix = "input." if kind == "inputs" else "output."
        return {
            name: decode_tensor(table[prefix + name], dt, shape)
            for name, (dt, shape) in self.specs(kind).items()
        }

    @staticmethod
    def set_tensors(table: pa.Table, kind: str, values: Mapping[str, np.ndarray]) -> pa.Table:
        prefix = "input." if kind == "inputs" else "output."
        for name, v in values.items():
            table = set_column(table, prefix + name, encode_tensor(v))
        return table

    def rehash(self, table: pa.Table) -> pa.Table:
        """Recompute input_hash, output_hash and leaf from the tensor columns, as decoded
        under the (possibly tampered) manifest specs, and the row_index column."""
        rows = table["row_index"].to_numpy().astype(np.uint64)
        in_h = tensor_row_hashes(self.tensors(table, "inputs"))
        out_h = tensor_row_hashes(self.tensors(table, "outputs"))
        leaves = leaf_hashes(rows, in_h, out_h)
        table = set_column(table, "input_hash", hash_column(in_h))
        table = set_column(table, "output_hash", hash_column(out_h))
        return set_column(table, "leaf", hash_column(leaves))

    def relink(self, table: pa.Table) -> pa.Table:
        """Recompute only the leaves, from the stored hash columns as they are."""
        rows = table["row_index"].to_numpy().astype(np.uint64)
        leaves = leaf_hashes(rows, hash_rows(table["input_hash"]), hash_rows(table["output_hash"]))
        return set_column(table, "leaf", hash_column(leaves))

    def write(
        self,
        pos: int,
        data: pa.Table | bytes,
        *,
        root: bool = True,
        rows: bool = False,
        path: str | None = None,
    ) -> str:
        """Store records for partition position ``pos`` under a new path and pin them:
        path and sha256 always; the root of the ``leaf`` column with ``root``; the row
        count with ``rows``. Returns the path written."""
        raw = data if isinstance(data, bytes) else to_parquet(_records_only(data))
        self._files += 1
        if path is None:
            current = self.m.get("batch_id") if isinstance(self.m, dict) else None
            folder = (
                current
                if isinstance(current, str) and re.fullmatch(r"0x[0-9a-f]{64}", current)
                else self.h.manifest["batch_id"]
            )
            path = f"batches/{folder}/adv-{self.tag}-{self._files:02d}-part-{pos:05d}.parquet"
            self.h.store.write_bytes(path, raw)
        part = self.m["partitions"][pos]
        part["path"] = path
        part["sha256"] = hashlib.sha256(raw).hexdigest()
        if isinstance(data, pa.Table):
            self.written[pos] = data
            if root:
                part["root"] = tree_root(hash_rows(data["leaf"]))
            if rows:
                part["rows"] = data.num_rows
        return path

    def rewrite_all(self, edit: Callable[[int, pa.Table], pa.Table] | None = None) -> None:
        """Every partition: ``edit`` its honest records, re-hash under the current manifest
        (batch id, model id, runtime id, specs), write and pin the root."""
        for pos in range(len(self.m["partitions"])):
            t = self.table(pos)
            if edit is not None:
                t = edit(pos, t)
            self.write(pos, self.rehash(t))

    def forge_outputs(self, pos: int, rows: Callable[[np.ndarray], np.ndarray]) -> None:
        """Shift the label of the rows picked by ``rows(row_index) -> mask`` in partition
        ``pos``; re-hash and pin (the node 'ran' the model and signed wrong outputs)."""
        t = self.table(pos)
        out = self.tensors(t, "outputs")
        mask = rows(t["row_index"].to_numpy().astype(np.int64))
        out["label"] = np.where(mask, (out["label"] + 1) % 3, out["label"])
        self.write(pos, self.rehash(self.set_tensors(t, "outputs", out)))

    # -- manifest and claim ----------------------------------------------------------------
    def domain(self) -> ClaimDomain:
        d = self.m["domain"]
        return ClaimDomain(int(d["chain_id"]), d["verifying_contract"])

    def execution_hash(self) -> str:
        """The execution hash the verifier derives from this manifest (spec §5): through
        ogkit's typed manifest when it reads the copy, else from the plain fields."""
        from ogkit.attest import execution_hash

        try:
            from ogkit.batch import BatchManifest

            return execution_hash(BatchManifest.from_dict(self.m).execution())
        except ImportError:
            pass
        except Exception:  # a deliberately malformed copy: hash the plain fields
            pass
        m = self.m
        return execution_hash(
            {
                "partition_rows": m.get("partition_rows"),
                "batch_size": m.get("batch_size"),
                "comparison": dict(m.get("comparison") or {}),
                "inputs": m.get("inputs"),
                "outputs": [{"name": o["name"], "dtype": o["dtype"]} for o in m["outputs"]],
            }
        )

    def rederive_batch_id(self) -> str:
        """The batch id from the manifest's model, dataset commitment, requester, chain
        (and settlement contract, where ogkit derives with it), job (and execution hash,
        where ogkit derives with it), into the manifest."""
        import inspect

        kw: dict[str, Any] = {
            "model_id": self.m["model_id"],
            "dataset_id": self.m["dataset_id"],
            "requester": self.m["requester"],
            "chain_id": int(self.m["domain"]["chain_id"]),
            "job": self.m["job"],
        }
        parameters = inspect.signature(derive_batch_id).parameters
        if "execution" in parameters:
            kw["execution"] = self.execution_hash()
        if "verifying_contract" in parameters:
            kw["verifying_contract"] = self.m["domain"]["verifying_contract"]
        old = self.m["batch_id"]
        self.m["batch_id"] = derive_batch_id(**kw)
        if self.m["batch_id"] != old:
            # A faithful node keeps its records in the new batch's own folder.
            for part in self.m["partitions"]:
                path = part.get("path") if isinstance(part, dict) else None
                if isinstance(path, str) and path.startswith(f"batches/{old}/"):
                    new = f"batches/{self.m['batch_id']}/" + path.split("/", 2)[2]
                    self.h.store.write_bytes(new, self.h.store.read_bytes(path))
                    part["path"] = new
        return self.m["batch_id"]

    def recommit(self, tables: list[pa.Table]) -> str:
        """Set dataset_id to the input root (the dataset commitment, spec §4) of the
        stored inputs of ``tables``, as the node would for data it made up."""
        from ogkit.dataset import input_root

        t = pa.concat_tables([x.select(["row_index", "input_hash"]) for x in tables])
        order = np.argsort(t["row_index"].to_numpy(), kind="stable")
        self.m["dataset_id"] = input_root(hash_rows(t["input_hash"])[order])
        return self.m["dataset_id"]

    def reseal_all(
        self,
        edit: Callable[[int, pa.Table], pa.Table] | None = None,
        *,
        recommit: bool = False,
        signer: Signer | None = None,
    ) -> None:
        """The fully consistent re-seal: ``edit`` every partition's honest records,
        re-hash them, (with ``recommit``) commit to their inputs as the dataset, re-derive
        the batch id, write every file with its root and row count (the leaves name no
        batch, spec §3.1), rebuild the batch root and the claim and re-sign."""
        tables = [self.table(pos) for pos in range(len(self.m["partitions"]))]
        if edit is not None:
            tables = [edit(pos, t) for pos, t in enumerate(tables)]
        tables = [self.rehash(t) for t in tables]
        if recommit:
            self.recommit(tables)
        self.rederive_batch_id()
        for pos, t in enumerate(tables):
            self.write(pos, self.rehash(t), rows=True)
        self.seal(signer=signer)

    def seal(
        self,
        *,
        claim: Mapping[str, Any] | None = None,
        sign: bool = True,
        signer: Signer | None = None,
    ) -> None:
        """Re-seal consistently: the batch root over the (32-byte) partition roots into
        the manifest, the claim from the manifest fields (then ``claim`` overrides), and
        a fresh signature by ``signer`` (default: the approved enclave key)."""
        roots = [p["root"] for p in self.m["partitions"] if _is_b32(p.get("root"))]
        if roots:
            arr = np.frombuffer(b"".join(_b(r) for r in roots), np.uint8).reshape(-1, 32)
            self.m["batch_root"] = _hex(MerkleTree.from_leaf_hashes(arr).root)
        else:
            self.m["batch_root"] = "0x" + "00" * 32
        c = dict(self.m["claim"])
        for key in ("batch_id", "model_id", "runtime_id", "batch_root", "row_count", "requester"):
            c[key] = self.m[key]
        c.update(claim or {})
        self.m["claim"] = c
        if sign:
            self.sign(signer)

    def typed_data(self) -> dict[str, Any]:
        return BatchClaim.from_dict(self.m["claim"]).typed_data(self.domain())

    def sign(self, signer: Signer | None = None) -> str:
        self.m["signature"] = (signer or self.h.enclave).sign_typed_data(self.typed_data())
        return self.m["signature"]

    def restash(self) -> None:
        """Store the written tables' inputs as the node's own dataset and name it in the
        manifest (``input_data``), when they differ from the honest rows and cover rows
        0..n-1 in order; otherwise the manifest keeps naming the honest dataset."""
        try:
            parts, bindings = self.m["partitions"], self.m["inputs"]
            tables = [self.written.get(pos, self.table(pos)) for pos in range(len(parts))]
            if not self.written or not all(_has_inputs(t) for t in tables):
                return
            rows = np.concatenate([t["row_index"].to_numpy() for t in tables]).astype(np.int64)
            if not np.array_equal(rows, np.arange(len(rows))):
                return
            honest = self.h.tables
            same = len(tables) == len(honest) and all(
                _inputs_of(t).equals(_inputs_of(h)) for t, h in zip(tables, honest, strict=True)
            )
            if same:
                return
            cols: dict[str, np.ndarray] = {}
            for b in bindings:
                values = np.concatenate(
                    [
                        decode_tensor(t[f"input.{b['name']}"], b["dtype"], tuple(b["row_shape"]))
                        for t in tables
                    ]
                )
                flat = values.reshape(len(values), -1)
                columns = list(b["columns"])
                if len(columns) > 1 and len(columns) == flat.shape[1]:
                    cols.update({c: flat[:, j] for j, c in enumerate(columns)})
                elif len(columns) == 1:
                    cols[columns[0]] = flat[:, 0] if flat.shape[1] == 1 else flat
                else:
                    return
            import polars as pl

            sink = io.BytesIO()
            pl.DataFrame({k: np.ascontiguousarray(v) for k, v in cols.items()}).write_parquet(sink)
            object_id = self.h.store.put("datasets", sink.getvalue())
            self.m["input_data"] = {
                "object": object_id,
                "format": "parquet",
                "offset": 0,
                "rows": len(rows),
            }
        except (KeyError, TypeError, ValueError, AttributeError, IndexError, pa.ArrowException):
            return  # a deliberately malformed copy: it keeps the honest dataset

    def publish(self) -> Tampered:
        if self.raw is None and isinstance(self.m, dict):
            self.restash()
        data = self.raw if self.raw is not None else canonical_json(self.m)
        if self.raw_id is not None:  # bytes under an id they do not hash to
            path = self.h.store.object_path(ARTIFACTS, self.raw_id)
            self.h.store.write_bytes(path[len(self.h.store.root) + 1 :], data)
            return Tampered(self.raw_id, self.h.store, self.m)
        return Tampered(self.h.store.put(ARTIFACTS, data), self.h.store, self.m)


# -- signatures -------------------------------------------------------------------------------
def split_sig(sig: str) -> tuple[int, int, int]:
    raw = _b(sig)
    return int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:64], "big"), raw[64]


def join_sig(r: int, s: int, v: int) -> str:
    return "0x" + (r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([v])).hex()


def high_s(sig: str) -> str:
    """The same signature with s' = n - s and v flipped: eth-account and eth-keys accept
    it (same signer), OpenZeppelin's ECDSA rejects it (EIP-2 malleability)."""
    r, s, v = split_sig(sig)
    return join_sig(r, SECP256K1_N - s, 55 - v)


def compact_sig(sig: str) -> str:
    """EIP-2098 64-byte form (r, yParity << 255 | s): ethers accepts it, OZ v5 does not."""
    r, s, v = split_sig(sig)
    return "0x" + (r.to_bytes(32, "big") + (((v - 27) << 255) | s).to_bytes(32, "big")).hex()


def x_not_on_curve() -> int:
    """Smallest x with no point on secp256k1 (x^3 + 7 is not a square mod p)."""
    x = 1
    while pow((x**3 + 7) % SECP256K1_P, (SECP256K1_P - 1) // 2, SECP256K1_P) == 1:
        x += 1
    return x


# -- the classes ------------------------------------------------------------------------------
@dataclass(frozen=True)
class TamperClass:
    name: str
    goal: str  # a: wrong outputs accepted, b: bill rows not run, c: charge a non-requester,
    # d: crash / hang the verifier instead of a finding
    fn: Callable[[Forge], None]
    reasons: frozenset[str]
    rates: tuple[float, ...] = (1.0,)
    cli: bool = False
    doc: str = ""
    isolate: bool = False  # may kill the verifying process: verify in a subprocess only

    def apply(self, honest: Honest) -> Tampered:
        f = Forge(honest, self.name)
        self.fn(f)
        return f.publish()


CLASSES: list[TamperClass] = []


def tamper(
    name: str,
    goal: str,
    reasons: frozenset[str],
    *,
    rates: tuple[float, ...] = (1.0,),
    cli: bool = False,
    isolate: bool = False,
):
    def register(fn: Callable[[Forge], None]) -> Callable[[Forge], None]:
        assert name not in {c.name for c in CLASSES}, name
        doc = fn.__doc__ or ""
        CLASSES.append(TamperClass(name, goal, fn, reasons, rates, cli, doc, isolate))
        return fn

    return register


SAMPLED = (1.0, 0.05)  # sampling classes: full re-execution and a realistic rate


def _between(lo: int, hi: int) -> Callable[[np.ndarray], np.ndarray]:
    return lambda rows: (rows >= lo) & (rows < hi)


# A. sampling evasion and partition layout ------------------------------------------------
@tamper(
    "partition-offsets-swapped", "a", R(LAYOUT, REEXEC, UNSAMPLED, "unexpected-row"), rates=SAMPLED
)
def _(f: Forge) -> None:
    """Forged outputs on every row of partitions 1 and 2, whose offsets are swapped in the
    manifest: a sampled row is looked up in the partition whose range holds it, where it
    is absent, so no forged row is ever re-executed."""
    f.forge_outputs(1, _between(0, 10**9))
    f.forge_outputs(2, _between(0, 10**9))
    p = f.m["partitions"]
    p[1]["offset"], p[2]["offset"] = p[2]["offset"], p[1]["offset"]
    f.seal()


@tamper("partition-gap", "a", R(LAYOUT, REEXEC, UNSAMPLED), rates=SAMPLED)
def _(f: Forge) -> None:
    """Partition 1 claims offset 750 (its records still hold 500..999): rows 500..749 lie
    in no partition's range, so are never sampled; their outputs are forged."""
    f.forge_outputs(1, _between(500, 750))
    f.m["partitions"][1]["offset"] = 750
    f.seal()


@tamper("partition-overlap", "a", R(LAYOUT, REEXEC, UNSAMPLED), rates=SAMPLED)
def _(f: Forge) -> None:
    """Partition 1 claims offset 250, overlapping partition 0; rows 750..999 fall in no
    range and carry forged outputs."""
    f.forge_outputs(1, _between(750, 1000))
    f.m["partitions"][1]["offset"] = 250
    f.seal()


@tamper("partition-rows-shifted", "a", R(LAYOUT, REEXEC, UNSAMPLED), rates=SAMPLED)
def _(f: Forge) -> None:
    """The rows fields lie but still add up: partition 1 says 250 rows, partition 2 says
    offset 750 and 750 rows. Rows 750..999 (in partition 1's file) are forged and are
    looked up in partition 2."""
    f.forge_outputs(1, _between(750, 1000))
    p = f.m["partitions"]
    p[1]["rows"], p[2]["offset"], p[2]["rows"] = 250, 750, 750
    f.seal()


@tamper("partition-rows-sum-off", "b", R(LAYOUT, "claim-mismatch"))
def _(f: Forge) -> None:
    """Partition 1 says 499 rows; the rows no longer add up to row_count."""
    f.m["partitions"][1]["rows"] = 499


@tamper("partitions-reordered", "d", R(LAYOUT, MANIFEST))
def _(f: Forge) -> None:
    """Partition entries listed out of index order (each entry itself intact)."""
    p = f.m["partitions"]
    p[0], p[1] = p[1], p[0]


@tamper("partition-index-duplicated", "d", R(LAYOUT, MANIFEST))
def _(f: Forge) -> None:
    """Two partition entries carry index 1."""
    f.m["partitions"][2]["index"] = 1


@tamper("partition-index-out-of-range", "d", R(LAYOUT, MANIFEST))
def _(f: Forge) -> None:
    """A partition entry with index 7 in a four-partition batch."""
    f.m["partitions"][3]["index"] = 7


@tamper("partition-extra-empty", "d", R(LAYOUT, MANIFEST, "partition-root-mismatch"))
def _(f: Forge) -> None:
    """An extra partition 4 with no rows, an empty records file and root '0x' (what an
    empty tree gives); the batch root is re-sealed over the four real roots."""
    empty = f.table(3).slice(0, 0)
    f.m["partitions"].append({**f.m["partitions"][3], "index": 4, "offset": 2000})
    f.write(4, empty, rows=True)
    f.seal()


@tamper("partition-duplicated-billed", "b", R(LAYOUT, DATASET, "duplicate-row", "missing-row"))
def _(f: Forge) -> None:
    """Partition 3 listed again as partition 4 (offset 2000), row_count 2500, re-signed:
    billing for 500 rows never run."""
    f.m["partitions"].append({**copy.deepcopy(f.m["partitions"][3]), "index": 4, "offset": 2000})
    f.m["row_count"] = 2500
    f.seal()


@tamper("partitions-empty", "b", R(LAYOUT, MANIFEST, EMPTY, "missing-row"))
def _(f: Forge) -> None:
    """No partitions at all, row_count kept, re-signed."""
    f.m["partitions"] = []
    f.seal()


@tamper("batch-empty", "b", R(LAYOUT, MANIFEST, DATASET, EMPTY, "batch-root-mismatch"))
def _(f: Forge) -> None:
    """No partitions, row_count 0, an arbitrary batch root, re-signed: nothing is left
    for the verifier to recompute, so the signed root is never checked."""
    f.m["partitions"] = []
    f.m["row_count"] = 0
    f.seal()
    f.m["batch_root"] = f.m["claim"]["batch_root"] = "0x" + "ab" * 32
    f.sign()


@tamper("partition-root-not-hex", "d", R(MANIFEST, "partition-root-mismatch"))
def _(f: Forge) -> None:
    """Partition 1's root is not hex."""
    f.m["partitions"][1]["root"] = "0x" + "zz" * 32


@tamper("partition-root-31-bytes", "d", R(MANIFEST, "partition-root-mismatch"))
def _(f: Forge) -> None:
    """Partition 1's root is 31 bytes."""
    f.m["partitions"][1]["root"] = f.m["partitions"][1]["root"][:-2]


@tamper("partition-root-edited", "a", R("partition-root-mismatch", "batch-root-mismatch"))
def _(f: Forge) -> None:
    """Partition 1's root replaced in the manifest, batch root re-sealed and re-signed."""
    f.m["partitions"][1]["root"] = "0x" + "cd" * 32
    f.seal()


# B. rows ------------------------------------------------------------------------------------
@tamper("forged-outputs-5-rows", "a", R(REEXEC))
def _(f: Forge) -> None:
    """Wrong labels on five rows; hashes, leaves, roots and signature all consistent."""
    bad = [3, 777, 1001, 1500, 1999]
    for pos in range(4):
        f.forge_outputs(pos, lambda rows: np.isin(rows, bad))
    f.seal()


@tamper("forged-outputs-whole-partition", "a", R(REEXEC), rates=(1.0, 0.02))
def _(f: Forge) -> None:
    """Wrong labels on all 500 rows of partition 2, re-sealed."""
    f.forge_outputs(2, _between(0, 10**9))
    f.seal()


@tamper("forged-outputs-hash-kept", "a", R("output-hash-mismatch"))
def _(f: Forge) -> None:
    """Label of row 10 changed; the stored output hash and leaf are left as they were."""
    t = f.table(0)
    out = f.tensors(t, "outputs")
    out["label"][10] = (out["label"][10] + 1) % 3
    f.write(0, f.set_tensors(t, "outputs", out), root=False)


@tamper("forged-leaf-only", "a", R("partition-root-mismatch"))
def _(f: Forge) -> None:
    """Leaf of row 10 replaced; the partition root is rebuilt over the forged leaves (the
    file holds the honest hashes: records store no leaf)."""
    t = f.table(0)
    leaves = hash_rows(t["leaf"])
    leaves[10] = np.frombuffer(keccak256(b"forged leaf"), np.uint8)
    f.write(0, set_column(t, "leaf", hash_column(leaves)))
    f.seal()


@tamper("input-hash-not-inputs", "a", R("input-hash-mismatch"))
def _(f: Forge) -> None:
    """Row 10's input hash replaced; leaf, root and signature re-sealed over it."""
    t = f.table(0)
    in_h = hash_rows(t["input_hash"])
    in_h[10] = np.frombuffer(keccak256(b"other input"), np.uint8)
    f.write(0, f.relink(set_column(t, "input_hash", hash_column(in_h))))
    f.seal()


def _copy_row_0(f: Forge) -> Callable[[int, pa.Table], pa.Table]:
    first = f.table(0).slice(0, 1)
    ins, outs = f.tensors(first, "inputs"), f.tensors(first, "outputs")

    def edit(pos: int, t: pa.Table) -> pa.Table:
        n = t.num_rows
        t = f.set_tensors(t, "inputs", {k: np.repeat(v, n, axis=0) for k, v in ins.items()})
        return f.set_tensors(t, "outputs", {k: np.repeat(v, n, axis=0) for k, v in outs.items()})

    return edit


@tamper("one-row-copied-over-all", "a", R(DATASET, "input-hash-mismatch"))
def _(f: Forge) -> None:
    """Row 0's inputs and (true) outputs copied over every row, the dataset commitment
    recomputed over those inputs, batch id re-derived, all re-sealed: the node ran one row
    and billed 2000; every stored row re-executes correctly."""
    f.reseal_all(_copy_row_0(f), recommit=True)


@tamper("one-row-copied-commitment-kept", "a", R(DATASET, "input-hash-mismatch"))
def _(f: Forge) -> None:
    """Row 0 copied over every row, leaves and roots re-sealed, but the requester's
    dataset commitment (and batch id) kept."""
    f.rewrite_all(_copy_row_0(f))
    f.seal()


@tamper("inputs-perturbed-with-model-outputs", "a", R(DATASET, "input-hash-mismatch"))
def _(f: Forge) -> None:
    """Rows 100..149 get shifted inputs and the model's true outputs for them; commitment
    recomputed, batch id re-derived, all re-sealed."""

    def edit(pos: int, t: pa.Table) -> pa.Table:
        if pos != 0:
            return t
        ins = f.tensors(t, "inputs")
        ins["features"][100:150] += np.float32(0.5)
        return f.set_tensors(f.set_tensors(t, "inputs", ins), "outputs", f.h.model.run(ins))

    f.reseal_all(edit, recommit=True)


@tamper("input-features-permuted", "a", R(DATASET, "input-hash-mismatch"))
def _(f: Forge) -> None:
    """Every row's features in reverse column order, with the model's outputs for those,
    commitment recomputed, all re-sealed: the node bound the wrong columns."""

    def edit(pos: int, t: pa.Table) -> pa.Table:
        ins = f.tensors(t, "inputs")
        ins["features"] = np.ascontiguousarray(ins["features"][:, ::-1])
        return f.set_tensors(f.set_tensors(t, "inputs", ins), "outputs", f.h.model.run(ins))

    f.reseal_all(edit, recommit=True)


def _bind_columns(f: Forge, columns: list[str]) -> None:
    """Rebind input 'features' to ``columns`` of the requester's file, run the model on
    what those give, commit to them, re-derive the batch id (the binding is part of the
    execution hash) and re-seal: every check that reads the dataset *through the
    manifest's own binding* agrees with the node."""
    data = pq.read_table(sample_data_path("tabular"))
    x = np.stack([data[c].to_numpy().astype(np.float32) for c in columns], axis=1)
    for t in f.m["inputs"]:
        if t["name"] == "features":
            t["columns"] = list(columns)

    def edit(pos: int, t: pa.Table) -> pa.Table:
        rows = t["row_index"].to_numpy().astype(np.int64)
        ins = {"features": np.ascontiguousarray(x[rows])}
        return f.set_tensors(f.set_tensors(t, "inputs", ins), "outputs", f.h.model.run(ins))

    f.reseal_all(edit, recommit=True)


@tamper("input-binding-permuted-consistent", "a", R(DATASET, "input-hash-mismatch"))
def _(f: Forge) -> None:
    """The manifest binds 'features' to f7..f0 (reversed); everything re-sealed over the
    reversed rows. A verifier that reads the requester's file with the manifest's own
    binding finds the inputs 'bound'."""
    _bind_columns(f, [f"f{i}" for i in range(7, -1, -1)])


@tamper("input-binding-label-smuggled", "a", R(DATASET, "input-hash-mismatch"))
def _(f: Forge) -> None:
    """The manifest binds 'features' to f0..f6 and the ground-truth 'label' column."""
    _bind_columns(f, [*(f"f{i}" for i in range(7)), "label"])


@tamper("row-index-shuffled", "a", R(DATASET, LAYOUT, "input-hash-mismatch"))
def _(f: Forge) -> None:
    """Partition 1's row_index column permuted (each row keeps its data), commitment
    recomputed, all re-sealed: row i's stored inputs are another dataset row's."""

    def edit(pos: int, t: pa.Table) -> pa.Table:
        if pos != 1:
            return t
        rows = t["row_index"].to_numpy()
        perm = np.random.default_rng(7).permutation(len(rows))
        return set_column(t, "row_index", pa.array(rows[perm], pa.uint64()))

    f.reseal_all(edit, recommit=True)


@tamper("row-index-duplicated", "a", R("partition-root-mismatch", LAYOUT))
def _(f: Forge) -> None:
    """Row 5 relabelled as row 4 (its leaf hashed with index 4), root and claim
    re-sealed: a record's index is its place in the file, so the leaf is not row 5's."""
    t = f.table(0)
    rows = t["row_index"].to_numpy().copy()
    rows[5] = 4
    f.write(0, f.rehash(set_column(t, "row_index", pa.array(rows, pa.uint64()))))
    f.seal()


@tamper("row-index-out-of-range", "a", R("partition-root-mismatch", LAYOUT))
def _(f: Forge) -> None:
    """Row 5 relabelled as row 2**64 - 1 (its leaf hashed with that index), re-sealed."""
    t = f.table(0)
    rows = t["row_index"].to_numpy().copy()
    rows[5] = 2**64 - 1
    f.write(0, f.rehash(set_column(t, "row_index", pa.array(rows, pa.uint64()))))
    f.seal()


@tamper("rows-dropped-row-count-lowered", "a", R(DATASET))
def _(f: Forge) -> None:
    """The last 100 rows dropped, partition 3 says 400 rows, row_count 1900, commitment
    recomputed over the 1900 rows, all re-sealed."""
    f.m["row_count"] = 1900
    f.reseal_all(lambda pos, t: t.slice(0, 400) if pos == 3 else t, recommit=True)


@tamper("rows-fabricated-appended", "b", R(DATASET, LAYOUT, "unexpected-row"))
def _(f: Forge) -> None:
    """100 fabricated rows 2000..2099 (copies of rows 1500..1599 with their outputs)
    appended to partition 3; row_count 2100, commitment over 2100 rows, all re-sealed:
    billing for rows not run."""

    def edit(pos: int, t: pa.Table) -> pa.Table:
        if pos != 3:
            return t
        extra = t.slice(0, 100)
        extra = set_column(extra, "row_index", pa.array(np.arange(2000, 2100), pa.uint64()))
        return pa.concat_tables([t, extra.cast(t.schema)])

    f.m["row_count"] = 2100
    f.reseal_all(edit, recommit=True)


@tamper("rows-fabricated-new-partition", "b", R(DATASET, "input-hash-mismatch"))
def _(f: Forge) -> None:
    """A fabricated partition 4 (rows 2000..2099, copies of rows 0..99 with their
    outputs) tiles on after partition 3; row_count 2100, commitment over 2100 rows, all
    re-sealed: billing for rows not run, with a layout that tiles."""
    base = f.m["partitions"][3]
    f.m["partitions"].append({**copy.deepcopy(base), "index": 4, "offset": 2000, "rows": 100})
    fake = f.table(0).slice(0, 100)
    fake = set_column(fake, "row_index", pa.array(np.arange(2000, 2100), pa.uint64()))
    f.m["row_count"] = 2100
    f.reseal_all(lambda pos, t: fake if pos == 4 else t, recommit=True)


@tamper("records-from-another-job", "a", R("input-hash-mismatch", "output-hash-mismatch"))
def _(f: Forge) -> None:
    """Partition 1's hashes are another job's (other rows, other outputs, the same row
    indices): a leaf names no batch (spec 3.1), so these are valid leaves of that job,
    and its root and the batch root are re-sealed over them under this job's claim."""
    t = f.table(1)
    n = len(t)
    other = np.frombuffer(b"".join(keccak256(b"another job" + bytes([k % 256, k // 256]))
                                   for k in range(2 * n)), np.uint8).reshape(2 * n, 32)  # fmt: skip
    t = set_column(t, "input_hash", hash_column(other[:n].copy()))
    t = set_column(t, "output_hash", hash_column(other[n:].copy()))
    f.write(1, f.relink(t))
    f.seal()


@tamper("row-index-null", "d", R(RECORDS_SCHEMA, "missing-row", "duplicate-row"))
def _(f: Forge) -> None:
    """A row_index column written into the file (the layout has none) with a null at
    position 3 (the value bytes kept)."""
    t = f.table(0)
    col = t["row_index"].combine_chunks()
    valid = np.ones(len(col), bool)
    valid[3] = False
    bitmap = pa.py_buffer(np.packbits(valid, bitorder="little").tobytes())
    arr = pa.Array.from_buffers(pa.uint64(), len(col), [bitmap, col.buffers()[1]], null_count=1)
    f.write(0, with_file_column(t, "row_index", arr), root=False)


@tamper("output-null-over-honest-bytes", "a", R(RECORDS_SCHEMA))
def _(f: Forge) -> None:
    """Rows 0..9 of output.probabilities marked null over the honest value bytes: hashes
    still match the bytes, but every Arrow, polars or pandas reader sees nulls."""
    t = f.table(0)
    col = t["output.probabilities"].combine_chunks()
    valid = np.ones(len(col), bool)
    valid[:10] = False
    bitmap = pa.py_buffer(np.packbits(valid, bitorder="little").tobytes())
    arr = pa.FixedSizeBinaryArray.from_buffers(
        col.type, len(col), [bitmap, col.buffers()[1]], null_count=10
    )
    f.write(0, set_column(t, "output.probabilities", arr), root=False)


@tamper("output-label-null", "a", R(RECORDS_SCHEMA, "output-hash-mismatch"))
def _(f: Forge) -> None:
    """output.label of row 3 is null."""
    t = f.table(0)
    labels = t["output.label"].to_pylist()
    labels[3] = None
    f.write(0, set_column(t, "output.label", pa.array(labels, pa.int64())), root=False)


@tamper("row-index-as-strings", "d", R(RECORDS_SCHEMA))
def _(f: Forge) -> None:
    """A row_index column written into the file as strings ("0", "1", …)."""
    t = f.table(0)
    rows = [str(r) for r in t["row_index"].to_pylist()]
    f.write(0, with_file_column(t, "row_index", pa.array(rows, pa.string())), root=False)


@tamper("records-extra-column", "a", R(RECORDS_SCHEMA))
def _(f: Forge) -> None:
    """An extra output.shadow column (forged probabilities) that no hash covers."""
    t = f.table(0)
    probs = f.tensors(t, "outputs")["probabilities"][:, ::-1]
    f.write(0, set_column(t, "output.shadow", encode_tensor(probs)), root=False)


@tamper("hash-column-variable-binary", "d", R(RECORDS_SCHEMA))
def _(f: Forge) -> None:
    """input_hash stored as variable-length binary with the same values."""
    t = f.table(0)
    values = t["input_hash"].to_pylist()
    f.write(0, set_column(t, "input_hash", pa.array(values, pa.binary())), root=False)


# C. records files -------------------------------------------------------------------------
@tamper("records-garbage", "d", R(RECORDS_SCHEMA), cli=True)
def _(f: Forge) -> None:
    """Partition 1's records replaced by random bytes (sha256 pinned)."""
    f.write(1, np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes())


@tamper("records-truncated", "d", R(RECORDS_SCHEMA))
def _(f: Forge) -> None:
    """Partition 1's records cut in half (sha256 pinned)."""
    raw = to_parquet(f.table(1))
    f.write(1, raw[: len(raw) // 2])


@tamper("records-zero-bytes", "d", R(RECORDS_SCHEMA))
def _(f: Forge) -> None:
    """Partition 1's records file is empty (sha256 pinned)."""
    f.write(1, b"")


@tamper(
    "records-empty-parquet",
    "b",
    R(RECORDS_SCHEMA, LAYOUT, "missing-row", "partition-root-mismatch"),
)
def _(f: Forge) -> None:
    """Partition 1's records: a valid Parquet file with the schema and no rows."""
    f.write(1, f.table(1).slice(0, 0), root=False)


@tamper("records-path-traversal", "d", R(RECORDS_PATH, MANIFEST))
def _(f: Forge) -> None:
    """Partition 1's path is '../…': a copy of its honest records outside the store."""
    name = f"adv-outside-{f.tag}.parquet"
    Path(f.h.store.root).parent.joinpath(name).write_bytes(to_parquet(f.table(1)))
    f.write(1, to_parquet(f.table(1)), path=f"../{name}")


@tamper("records-path-other-batch-folder", "d", R(RECORDS_PATH, MANIFEST))
def _(f: Forge) -> None:
    """Partition 1's path lies in another batch's folder (an identical copy there)."""
    path = f"batches/0x{'ee' * 32}/part-00001.parquet"
    f.h.store.write_bytes(path, to_parquet(f.table(1)))
    f.write(1, to_parquet(f.table(1)), path=path)


@tamper("records-path-absolute", "d", R(RECORDS_PATH, MANIFEST, "records-unreadable"))
def _(f: Forge) -> None:
    """Partition 1's path is an absolute path outside the store."""
    target = Path(f.h.store.root).parent / f"adv-abs-{f.tag}.parquet"
    target.write_bytes(to_parquet(f.table(1)))
    f.write(1, to_parquet(f.table(1)), path=str(target))


@tamper("records-path-memory-url", "d", R(RECORDS_PATH, MANIFEST, "records-unreadable"))
def _(f: Forge) -> None:
    """Partition 1's path is a memory:// URL (filled in this process)."""
    import fsspec

    url = f"memory://adv-{f.tag}/part-00001.parquet"
    with fsspec.open(url, "wb") as fh:
        fh.write(to_parquet(f.table(1)))
    f.write(1, to_parquet(f.table(1)), path=url)


# D. the manifest's tensor specs and geometry ------------------------------------------------
@tamper("output-left-out-of-manifest", "a", R(TENSOR_SPEC, RECORDS_SCHEMA))
def _(f: Forge) -> None:
    """'probabilities' dropped from the manifest's outputs; output hashes re-sealed over
    the label only, so the (forged, reversed) probabilities column is bound by nothing."""
    f.m["outputs"] = [o for o in f.m["outputs"] if o["name"] != "probabilities"]

    def edit(pos: int, t: pa.Table) -> pa.Table:
        probs = decode_tensor(t["output.probabilities"], "float32", (3,))
        return set_column(t, "output.probabilities", encode_tensor(probs[:, ::-1]))

    f.reseal_all(edit)


@tamper("output-dtype-changed", "d", R(TENSOR_SPEC, REEXEC, REEXEC_FAILED))
def _(f: Forge) -> None:
    """probabilities declared float16 of shape (6,) over the same bytes, re-sealed."""
    for o in f.m["outputs"]:
        if o["name"] == "probabilities":
            o["dtype"], o["row_shape"] = "float16", [6]
    f.reseal_all()


@tamper("output-shape-changed", "d", R(TENSOR_SPEC, REEXEC, REEXEC_FAILED))
def _(f: Forge) -> None:
    """probabilities declared of row shape (1, 3), re-sealed."""
    for o in f.m["outputs"]:
        if o["name"] == "probabilities":
            o["row_shape"] = [1, 3]
    f.reseal_all()


@tamper("output-renamed", "d", R(TENSOR_SPEC, REEXEC, REEXEC_FAILED))
def _(f: Forge) -> None:
    """Output 'label' renamed 'class' (manifest and column), re-sealed."""
    for o in f.m["outputs"]:
        if o["name"] == "label":
            o["name"] = "class"
    f.reseal_all(
        lambda pos, t: t.rename_columns(
            ["output.class" if c == "output.label" else c for c in t.column_names]
        )
    )


@tamper(
    "input-dtype-changed",
    "d",
    R(TENSOR_SPEC, DATASET, REEXEC, REEXEC_FAILED, "input-hash-mismatch"),
)
def _(f: Forge) -> None:
    """features declared and stored as float64, re-sealed."""
    for t in f.m["inputs"]:
        t["dtype"] = "float64"

    def edit(pos: int, t: pa.Table) -> pa.Table:
        x = decode_tensor(t["input.features"], "float32", (8,)).astype(np.float64)
        return set_column(t, "input.features", encode_tensor(x))

    f.reseal_all(edit, recommit=True)


@tamper(
    "input-shape-changed",
    "d",
    R(TENSOR_SPEC, DATASET, REEXEC, REEXEC_FAILED, "input-hash-mismatch"),
)
def _(f: Forge) -> None:
    """features declared of row shape (2, 4) over the same bytes, re-sealed."""
    for t in f.m["inputs"]:
        t["row_shape"] = [2, 4]
    f.reseal_all(recommit=True)


@tamper("tolerance-loosened-in-manifest", "a", R(REEXEC, "tolerance-too-loose"))
def _(f: Forge) -> None:
    """The manifest asks for 2**20 ULP (and rtol = atol = 1) and every probability of
    partition 0 is off by 1e-4, re-sealed; the verifier's own (exact) tolerance applies."""
    f.m["comparison"] = {"float_ulp": 1 << 20}
    f.m["tolerance"] = {"rtol": 1.0, "atol": 1.0}

    def edit(pos: int, t: pa.Table) -> pa.Table:
        if pos != 0:
            return t
        out = f.tensors(t, "outputs")
        out["probabilities"] = out["probabilities"] + np.float32(1e-4)
        return f.set_tensors(t, "outputs", out)

    f.reseal_all(edit)


@tamper("batch-size-zero", "d", R(MANIFEST))
def _(f: Forge) -> None:
    """batch_size 0 (re-execution that repeats it would loop or divide by zero)."""
    f.m["batch_size"] = 0


@tamper("batch-size-not-a-number", "d", R(MANIFEST))
def _(f: Forge) -> None:
    """batch_size is the string 'all'."""
    f.m["batch_size"] = "all"


@tamper("partition-rows-geometry-lies", "d", R(MANIFEST, LAYOUT))
def _(f: Forge) -> None:
    """partition_rows says 7 while every partition holds 500 rows (batch id re-derived
    for it, all re-sealed)."""
    f.m["partition_rows"] = 7
    f.reseal_all()


# E. the claim ------------------------------------------------------------------------------
@tamper("claim-requester-differs", "c", R("claim-mismatch", JOB_ORDER))
def _(f: Forge) -> None:
    """The signed claim names another requester than the manifest (and the batch id)."""
    f.seal(claim={"requester": f.h.victim})


@tamper("requester-swapped-consistently", "c", R(JOB_ORDER))
def _(f: Forge) -> None:
    """Requester replaced by a victim who ordered nothing; batch id re-derived, every
    leaf, root and the claim re-sealed and re-signed: all consistent."""
    f.m["requester"] = f.h.victim
    f.reseal_all()


@tamper("claim-batch-root-differs", "a", R("batch-root-mismatch", "claim-mismatch"))
def _(f: Forge) -> None:
    """The claim signs another batch root than the manifest's and the partitions'."""
    f.seal(claim={"batch_root": "0x" + "ab" * 32})


@tamper("manifest-batch-root-differs", "a", R("claim-mismatch", "batch-root-mismatch"))
def _(f: Forge) -> None:
    """The manifest's batch_root (what receipts carry) differs from the signed one."""
    f.m["batch_root"] = "0x" + "ab" * 32


@tamper("claim-row-count-zero", "b", R("claim-mismatch"))
def _(f: Forge) -> None:
    """The claim signs row_count 0."""
    f.seal(claim={"row_count": 0})


@tamper("row-count-2^40", "d", R("claim-mismatch", LAYOUT, DATASET, MANIFEST), cli=True)
def _(f: Forge) -> None:
    """Manifest and claim say 2**40 rows, re-signed: the verifier must not allocate per
    claimed row."""
    f.m["row_count"] = 2**40
    f.seal()


@tamper("claim-row-count-2^40", "b", R("claim-mismatch"))
def _(f: Forge) -> None:
    """Only the signed claim says 2**40 rows (re-signed): the bill the chain would see."""
    f.seal(claim={"row_count": 2**40})


@tamper("row-count-uint64-max", "d", R("claim-mismatch", LAYOUT, DATASET, MANIFEST))
def _(f: Forge) -> None:
    """Manifest and claim say 2**64 - 1 rows, re-signed."""
    f.m["row_count"] = 2**64 - 1
    f.seal()


@tamper("row-count-beyond-uint64", "d", R("claim-mismatch", "signature", MANIFEST))
def _(f: Forge) -> None:
    """Manifest and claim say 2**64 rows (no uint64 holds it; signature kept)."""
    f.m["row_count"] = f.m["claim"]["row_count"] = 2**64


@tamper("manifest-row-count-2^40", "d", R("claim-mismatch", MANIFEST))
def _(f: Forge) -> None:
    """Only the manifest says 2**40 rows."""
    f.m["row_count"] = 2**40


@tamper("manifest-row-count-negative", "d", R("claim-mismatch", MANIFEST))
def _(f: Forge) -> None:
    """The manifest says -1 rows."""
    f.m["row_count"] = -1


@tamper("claim-timestamp-far-future", "a", R(TIMESTAMP))
def _(f: Forge) -> None:
    """The claim is dated a century ahead, re-signed."""
    f.seal(claim={"timestamp": int(time.time()) + 100 * 365 * 86400})


@tamper("claim-model-id-differs", "a", R("claim-mismatch"))
def _(f: Forge) -> None:
    """The claim signs the other hub model's id."""
    f.seal(claim={"model_id": f.h.other_model_id})


@tamper("claim-runtime-id-differs", "a", R("claim-mismatch", "unapproved-measurement"))
def _(f: Forge) -> None:
    """The claim signs another runtime id than the leaves."""
    f.seal(claim={"runtime_id": "0x" + "77" * 32})


# F. signatures -------------------------------------------------------------------------------
@tamper("signed-by-unapproved-key", "a", R("unapproved-attester"))
def _(f: Forge) -> None:
    """The claim names and is signed by a key nobody approved."""
    f.seal(claim={"attester": f.h.rogue.address}, signer=f.h.rogue)


@tamper("approved-attester-signed-by-other-key", "a", R("signature"))
def _(f: Forge) -> None:
    """The claim names the approved attester but another key signed it."""
    f.seal(signer=f.h.rogue)


@tamper("signature-high-s", "d", R("signature"))
def _(f: Forge) -> None:
    """s' = n - s, v flipped: the same signer for eth-account; OZ ECDSA rejects it."""
    f.m["signature"] = high_s(f.m["signature"])


@tamper("signature-v-0-or-1", "d", R("signature"))
def _(f: Forge) -> None:
    """v written as 0/1 (the raw parity) instead of 27/28: ecrecover on chain fails."""
    r, s, v = split_sig(f.m["signature"])
    f.m["signature"] = join_sig(r, s, v - 27)


@tamper("signature-compact-64-bytes", "d", R("signature"))
def _(f: Forge) -> None:
    """The EIP-2098 64-byte form: ethers accepts it, OZ's ECDSA.recover(bytes) does not."""
    f.m["signature"] = compact_sig(f.m["signature"])


@tamper("signature-66-bytes", "d", R("signature"))
def _(f: Forge) -> None:
    """An extra trailing byte."""
    f.m["signature"] += "00"


@tamper("signature-not-hex", "d", R("signature"))
def _(f: Forge) -> None:
    """Not hexadecimal."""
    f.m["signature"] = "0x" + "zz" * 65


@tamper("signature-r-not-on-curve", "d", R("signature"))
def _(f: Forge) -> None:
    """r is an x coordinate with no point on secp256k1."""
    _, s, v = split_sig(f.m["signature"])
    f.m["signature"] = join_sig(x_not_on_curve(), s, v)


@tamper("signature-r-zero", "d", R("signature"))
def _(f: Forge) -> None:
    """r = 0."""
    _, s, v = split_sig(f.m["signature"])
    f.m["signature"] = join_sig(0, s, v)


@tamper("signature-empty", "d", R("signature"))
def _(f: Forge) -> None:
    """'0x'."""
    f.m["signature"] = "0x"


@tamper("signature-truncated", "d", R("signature"))
def _(f: Forge) -> None:
    """The first 20 bytes only."""
    f.m["signature"] = f.m["signature"][:42]


@tamper("signature-null", "d", R("signature", MANIFEST))
def _(f: Forge) -> None:
    """signature: null."""
    f.m["signature"] = None


# G. domain, ids, model, runtime, evidence ---------------------------------------------------
@tamper("domain-chain-id-edited", "c", R("signature", "batch-id", DOMAIN))
def _(f: Forge) -> None:
    """Chain id 1 in the manifest's domain; nothing re-signed."""
    f.m["domain"]["chain_id"] = 1


@tamper("domain-chain-id-resigned", "c", R("batch-id", DOMAIN))
def _(f: Forge) -> None:
    """Chain id 1, claim re-signed for it, batch id not re-derived."""
    f.m["domain"]["chain_id"] = 1
    f.seal()


@tamper("domain-chain-id-consistent", "c", R(JOB_ORDER, DOMAIN), cli=True)
def _(f: Forge) -> None:
    """Chain id 1 (the requester ordered on 31337): batch id re-derived, every leaf
    re-sealed and re-signed for chain 1, so it can be settled there."""
    f.m["domain"]["chain_id"] = 1
    f.reseal_all()


@tamper("domain-verifying-contract-edited", "c", R("signature", DOMAIN))
def _(f: Forge) -> None:
    """Another verifying contract; nothing re-signed."""
    f.m["domain"]["verifying_contract"] = "0x" + "11" * 20


@tamper("domain-verifying-contract-resigned", "c", R(JOB_ORDER, DOMAIN))
def _(f: Forge) -> None:
    """Another verifying contract, claim re-signed for it (batch id does not cover it)."""
    f.m["domain"]["verifying_contract"] = "0x" + "11" * 20
    f.seal()


@tamper("domain-verifying-contract-not-address", "d", R("signature", MANIFEST))
def _(f: Forge) -> None:
    """verifying_contract is not an address."""
    f.m["domain"]["verifying_contract"] = "0xnot-an-address"


@tamper("domain-chain-id-not-int", "d", R("signature", "batch-id", MANIFEST))
def _(f: Forge) -> None:
    """chain_id is the string 'mainnet'."""
    f.m["domain"]["chain_id"] = "mainnet"


@tamper("job-renamed-no-rederive", "b", R("batch-id"))
def _(f: Forge) -> None:
    """Job name changed, batch id kept."""
    f.m["job"] = "another-job"


@tamper("job-renamed-consistent", "b", R(JOB_ORDER))
def _(f: Forge) -> None:
    """The same rows sold again under another job name: batch id re-derived, all leaves
    re-sealed, re-signed (a second bill for one order)."""
    f.m["job"] = "second-bill"
    f.reseal_all()


@tamper("dataset-id-no-rederive", "a", R("batch-id"))
def _(f: Forge) -> None:
    """dataset_id changed, batch id kept."""
    f.m["dataset_id"] = "0x" + "42" * 32


@tamper("dataset-id-consistent", "a", R(DATASET, JOB_ORDER))
def _(f: Forge) -> None:
    """dataset_id of some other data; batch id re-derived, leaves re-sealed, re-signed."""
    f.m["dataset_id"] = "0x" + "42" * 32
    f.reseal_all()


@tamper("dataset-id-malformed", "d", R("batch-id", MANIFEST))
def _(f: Forge) -> None:
    """dataset_id is 2 bytes."""
    f.m["dataset_id"] = "0x1234"


@tamper(
    "model-id-other-model",
    "a",
    R(MODEL, TENSOR_SPEC, REEXEC, REEXEC_FAILED, "model-unavailable"),
    cli=True,
)
def _(f: Forge) -> None:
    """model_id names the hub's cnn model; batch id re-derived, leaves re-sealed, claim
    re-signed: re-execution must run cnn on tabular rows and report, not crash."""
    f.m["model_id"] = f.h.other_model_id
    f.reseal_all()


@tamper("model-id-unknown", "a", R("model-unavailable", MODEL))
def _(f: Forge) -> None:
    """model_id of no model in the hub, re-sealed."""
    f.m["model_id"] = "0x" + "5e" * 32
    f.reseal_all()


@tamper("model-ref-other-model", "b", R(MODEL))
def _(f: Forge) -> None:
    """model_ref says cnn@1.0.0 (another price) while model_id is tab's."""
    f.m["model_ref"] = "cnn@1.0.0"


@tamper("fingerprint-edited", "a", R(FINGERPRINT))
def _(f: Forge) -> None:
    """The fingerprint says CUDA while runtime_id is the CPU fingerprint's hash."""
    f.m["fingerprint"]["execution_provider"] = "CUDAExecutionProvider"


@tamper("runtime-id-approved-looking", "a", R("unapproved-measurement"))
def _(f: Forge) -> None:
    """An aarch64 fingerprint with its correct hash as runtime_id (and measurement),
    leaves re-sealed, re-signed: a well-formed measurement nobody approved."""
    f.m["fingerprint"]["machine"] = "aarch64"
    rid = _hex(keccak256(canonical_json(f.m["fingerprint"])))
    f.m["runtime_id"] = rid
    if isinstance(f.m.get("attester"), dict):
        f.m["attester"]["measurement"] = rid
    f.rewrite_all()
    f.seal()


@tamper("evidence-measurement-differs", "a", R(EVIDENCE, "unapproved-measurement"))
def _(f: Forge) -> None:
    """The attester evidence's measurement is not the runtime id."""
    f.m["attester"]["measurement"] = "0x" + "66" * 32


@tamper("evidence-empty", "a", R(EVIDENCE, MANIFEST))
def _(f: Forge) -> None:
    """The attester evidence is an empty object."""
    f.m["attester"] = {}


@tamper("evidence-claims-hardware", "a", R(EVIDENCE))
def _(f: Forge) -> None:
    """The software enclave's evidence claims to be hardware-backed AWS Nitro."""
    f.m["attester"].update(kind="aws-nitro", hardware_backed=True)


# H. wrong types and shapes of the manifest itself ------------------------------------------
@tamper("schema-unknown", "d", R(MANIFEST, "schema"), cli=True)
def _(f: Forge) -> None:
    """schema 'ogkit.batch.v0'."""
    f.m["schema"] = "ogkit.batch.v0"


@tamper("manifest-not-an-object", "d", R(MANIFEST))
def _(f: Forge) -> None:
    """The manifest is a JSON list holding the manifest."""
    f.raw = canonical_json([f.m])


@tamper("manifest-missing-partitions", "d", R(MANIFEST))
def _(f: Forge) -> None:
    """No 'partitions' key."""
    del f.m["partitions"]


@tamper("manifest-missing-claim", "d", R(MANIFEST, "signature"))
def _(f: Forge) -> None:
    """No 'claim' key."""
    del f.m["claim"]


@tamper("manifest-row-count-string", "d", R(MANIFEST, "claim-mismatch"))
def _(f: Forge) -> None:
    """row_count is the string '2000'."""
    f.m["row_count"] = "2000"


@tamper("manifest-row-count-nan", "d", R(MANIFEST, "claim-mismatch"))
def _(f: Forge) -> None:
    """row_count is NaN (json.loads reads the NaN literal)."""
    f.m["row_count"] = float("nan")


@tamper("partition-offset-string", "d", R(MANIFEST, LAYOUT))
def _(f: Forge) -> None:
    """Partition 1's offset is the string '500'."""
    f.m["partitions"][1]["offset"] = "500"


@tamper("partition-rows-fractional", "d", R(MANIFEST, LAYOUT))
def _(f: Forge) -> None:
    """Partition 1 says 499.5 rows, partition 2 offset 999.5 and 500.5 rows (they add up)."""
    p = f.m["partitions"]
    p[1]["rows"], p[2]["offset"], p[2]["rows"] = 499.5, 999.5, 500.5


@tamper("partitions-as-object", "d", R(MANIFEST))
def _(f: Forge) -> None:
    """partitions is an object keyed by index instead of a list."""
    f.m["partitions"] = {str(p["index"]): p for p in f.m["partitions"]}


@tamper("inputs-as-object", "d", R(MANIFEST, TENSOR_SPEC))
def _(f: Forge) -> None:
    """inputs is an object keyed by name instead of a list."""
    f.m["inputs"] = {t["name"]: t for t in f.m["inputs"]}


@tamper("domain-as-list", "d", R(MANIFEST, "signature"))
def _(f: Forge) -> None:
    """domain is [chain_id, verifying_contract]."""
    d = f.m["domain"]
    f.m["domain"] = [d["chain_id"], d["verifying_contract"]]


@tamper("claim-as-list", "d", R(MANIFEST, "signature"))
def _(f: Forge) -> None:
    """claim is a list of its values."""
    f.m["claim"] = list(f.m["claim"].values())


@tamper("claim-row-count-string", "d", R(MANIFEST, "signature", "claim-mismatch"))
def _(f: Forge) -> None:
    """The claim's row_count is the string '2000' (signature kept)."""
    f.m["claim"]["row_count"] = "2000"


@tamper("artifact-bytes-not-its-id", "d", R(MANIFEST, "artifact-altered"))
def _(f: Forge) -> None:
    """A forged manifest stored under an artefact id it does not hash to."""
    f.seal(claim={"row_count": 1})
    f.raw_id = "0x" + keccak256(b"some other manifest " + f.tag.encode()).hex()


@tamper("manifest-not-canonical-json", "d", R(MANIFEST))
def _(f: Forge) -> None:
    """The honest manifest pretty-printed: the same document under a second artefact id
    (the spec's id is keccak256 of the *canonical* JSON)."""
    f.raw = json.dumps(f.m, indent=2, sort_keys=False).encode()


@tamper("manifest-duplicate-keys", "d", R(MANIFEST))
def _(f: Forge) -> None:
    """'row_count' twice, 1 then 2000: parsers that keep the first key and those that
    keep the last read different batches from the same bytes."""
    text = canonical_json(f.m).decode()
    f.raw = ('{"row_count":1,' + text[1:]).encode()


@tamper("partition-index-bool", "d", R(MANIFEST))
def _(f: Forge) -> None:
    """Partition 1's index is true (== 1 in Python)."""
    f.m["partitions"][1]["index"] = True


@tamper("manifest-row-count-float-integral", "d", R(MANIFEST, "claim-mismatch"))
def _(f: Forge) -> None:
    """row_count 2000.0."""
    f.m["row_count"] = 2000.0


@tamper("domain-chain-id-huge", "d", R(MANIFEST, "signature", "batch-id", DOMAIN))
def _(f: Forge) -> None:
    """chain_id 2**256 (no uint256 holds it)."""
    f.m["domain"]["chain_id"] = 2**256


@tamper("manifest-int-5000-digits", "d", R(MANIFEST))
def _(f: Forge) -> None:
    """row_count written with 5001 digits: Python's json refuses to parse it with a
    ValueError that is not a JSONDecodeError (int max str digits)."""
    text = canonical_json(f.m).decode()
    f.raw = text.replace('"row_count":2000,', '"row_count":1' + "0" * 5000 + ",", 1).encode()


@tamper("manifest-deeply-nested", "d", R(MANIFEST), isolate=True)
def _(f: Forge) -> None:
    """run_stats nested 100 000 lists deep. py_ecc (imported with eth-account) raises the
    recursion limit to 100 000, so json.loads overflows the C stack: SIGSEGV, not a
    RecursionError. Verified in a subprocess only."""
    text = canonical_json({**f.m, "run_stats": None}).decode()
    f.raw = text.replace(
        '"run_stats":null', '"run_stats":' + "[" * 100_000 + "]" * 100_000
    ).encode()


# -- receipts ---------------------------------------------------------------------------------
def build_receipt(f: Forge, pos: int, i: int, artifact_id: str = "0x" + "00" * 32) -> dict:
    """A receipt (docs/spec.md section 8) for row ``i`` of partition position ``pos`` of a
    forged batch, from its records as written (else honest) and its manifest: the leaf,
    the composed partition + batch proof, the claim and signature as they stand."""
    from ogkit.crypto.merkle import LEAF_TYPES

    m = f.m
    t = f.written.get(pos, f.table(pos))
    tree = MerkleTree.from_leaf_hashes(hash_rows(t["leaf"]))
    roots = np.frombuffer(b"".join(_b(p["root"]) for p in m["partitions"]), np.uint8)
    batch_tree = MerkleTree.from_leaf_hashes(roots.reshape(-1, 32))
    proof = tree.proof(i) + batch_tree.proof(pos)
    return {
        "schema": "ogkit.receipt.v2",
        "leaf_types": list(LEAF_TYPES),
        "leaf_values": {
            "rowIndex": str(t["row_index"][i].as_py()),
            "inputHash": _hex(t["input_hash"][i].as_py()),
            "outputHash": _hex(t["output_hash"][i].as_py()),
        },
        "leaf": _hex(t["leaf"][i].as_py()),
        "proof": [_hex(p) for p in proof],
        "batch_root": m["batch_root"],
        "partition": {"index": pos, "root": m["partitions"][pos]["root"]},
        "claim": copy.deepcopy(m["claim"]),
        "domain": copy.deepcopy(m["domain"]),
        "signature": m["signature"],
        "artifact_id": artifact_id,
    }


@dataclass(frozen=True)
class ReceiptClass:
    name: str
    fn: Callable[[Honest], Any]  # returns the tampered receipt
    js_rejects: bool | None  # True: OZ + ethers must reject it; None: they cannot tell
    doc: str = ""


RECEIPT_CLASSES: list[ReceiptClass] = []


def receipt_tamper(name: str, js_rejects: bool | None):
    def register(fn: Callable[[Honest], Any]) -> Callable[[Honest], Any]:
        RECEIPT_CLASSES.append(ReceiptClass(name, fn, js_rejects, fn.__doc__ or ""))
        return fn

    return register


BASE_ROW = 742  # partition 1


def honest_receipt(h: Honest, row: int = BASE_ROW) -> dict[str, Any]:
    return copy.deepcopy(h.batch.receipt(row))


@receipt_tamper("row-index-beyond-row-count", True)
def _(h: Honest) -> dict:
    """A leaf for row 2005 slipped into partition 3's tree (the claim still says 2000
    rows, re-signed over the new root): proof and signature are valid."""
    f = Forge(h, "receipt-row-beyond")
    t = f.table(3)
    extra = set_column(t.slice(0, 1), "row_index", pa.array([2005], pa.uint64()))
    t = f.rehash(pa.concat_tables([t, extra.cast(t.schema)]))
    f.write(3, t)
    f.seal()
    return build_receipt(f, 3, t.num_rows - 1)


@receipt_tamper("proof-elements-swapped", True)
def _(h: Honest) -> dict:
    """The first two proof elements swapped."""
    r = honest_receipt(h)
    r["proof"][0], r["proof"][1] = r["proof"][1], r["proof"][0]
    return r


@receipt_tamper("proof-of-another-row", True)
def _(h: Honest) -> dict:
    """Row 742's values with row 743's proof."""
    r = honest_receipt(h)
    r["proof"] = honest_receipt(h, BASE_ROW + 1)["proof"]
    return r


@receipt_tamper("proof-truncated", True)
def _(h: Honest) -> dict:
    """The last proof element dropped (the proof ends at a partition-level node)."""
    r = honest_receipt(h)
    r["proof"] = r["proof"][:-1]
    return r


@receipt_tamper("proof-extended", True)
def _(h: Honest) -> dict:
    """An extra proof element appended."""
    r = honest_receipt(h)
    r["proof"].append("0x" + "ab" * 32)
    return r


@receipt_tamper("proof-element-31-bytes", True)
def _(h: Honest) -> dict:
    """A proof element of 31 bytes."""
    r = honest_receipt(h)
    r["proof"][0] = r["proof"][0][:-2]
    return r


@receipt_tamper("batch-root-replaced", True)
def _(h: Honest) -> dict:
    """The receipt's batch_root replaced (the claim untouched)."""
    r = honest_receipt(h)
    r["batch_root"] = "0x" + "cd" * 32
    return r


@receipt_tamper("batch-root-and-claim-root-replaced", True)
def _(h: Honest) -> dict:
    """The batch root replaced in the receipt and its claim (the signature kept)."""
    r = honest_receipt(h)
    r["batch_root"] = r["claim"]["batch_root"] = "0x" + "cd" * 32
    return r


@receipt_tamper("partition-root-as-batch-root", True)
def _(h: Honest) -> dict:
    """The partition proof alone, against the partition root as 'batch root'."""
    r = honest_receipt(h)
    depth = len(r["proof"]) - 2  # four partitions: the batch proof has 2 elements
    r["proof"] = r["proof"][:depth]
    r["batch_root"] = r["partition"]["root"]
    return r


@receipt_tamper("output-hash-changed", True)
def _(h: Honest) -> dict:
    """leaf_values.outputHash replaced (the receipt lies about the output)."""
    r = honest_receipt(h)
    r["leaf_values"]["outputHash"] = "0x" + "11" * 32
    return r


@receipt_tamper("leaf-field-of-another-row", True)
def _(h: Honest) -> dict:
    """The 'leaf' field is row 743's; values and proof are row 742's."""
    r = honest_receipt(h)
    r["leaf"] = honest_receipt(h, BASE_ROW + 1)["leaf"]
    return r


@receipt_tamper("signed-by-unapproved-key", None)
def _(h: Honest) -> dict:
    """A fully valid receipt whose claim names and is signed by a key nobody approved."""
    f = Forge(h, "receipt-rogue")
    f.seal(claim={"attester": h.rogue.address}, signer=h.rogue)
    return build_receipt(f, 1, BASE_ROW - 500)


@receipt_tamper("claim-runtime-id-unapproved", None)
def _(h: Honest) -> dict:
    """The claim (re-signed) names a runtime id nobody approved; the leaf names none, so
    only the allowlist refuses it (the JS check is given no allowlist here)."""
    f = Forge(h, "receipt-runtime")
    f.seal(claim={"runtime_id": "0x" + "77" * 32})
    return build_receipt(f, 1, BASE_ROW - 500)


@receipt_tamper("leaf-values-carry-a-model-id", True)
def _(h: Honest) -> dict:
    """A v3-style ``modelId`` (another model's) added to the leaf values: the leaf does
    not hash it, so a reader who believed it would be told another model ran the row."""
    r = honest_receipt(h)
    r["leaf_values"]["modelId"] = "0x" + "66" * 32
    return r


@receipt_tamper("receipt-schema-v1", True)
def _(h: Honest) -> dict:
    """The receipt relabelled as the earlier layout's ``ogkit.receipt.v1``."""
    r = honest_receipt(h)
    r["schema"] = "ogkit.receipt.v1"
    return r


@receipt_tamper("claim-row-count-edited", True)
def _(h: Honest) -> dict:
    """The claim's row_count edited (the signature kept)."""
    r = honest_receipt(h)
    r["claim"]["row_count"] = 1
    return r


@receipt_tamper("domain-chain-id-edited", True)
def _(h: Honest) -> dict:
    """The domain's chain id edited (the signature kept)."""
    r = honest_receipt(h)
    r["domain"]["chain_id"] = 1
    return r


@receipt_tamper("signature-high-s", True)
def _(h: Honest) -> dict:
    """s' = n - s, v flipped (eth-account recovers the same signer; OZ ECDSA reverts)."""
    r = honest_receipt(h)
    r["signature"] = high_s(r["signature"])
    return r


@receipt_tamper("signature-v-0-or-1", True)
def _(h: Honest) -> dict:
    """v as 0/1: ethers normalises it, OZ's ECDSA.recover rejects it on chain."""
    r = honest_receipt(h)
    rr, ss, v = split_sig(r["signature"])
    r["signature"] = join_sig(rr, ss, v - 27)
    return r


@receipt_tamper("signature-compact-64-bytes", True)
def _(h: Honest) -> dict:
    """EIP-2098 compact form: ethers accepts it, OZ v5's ECDSA.recover(bytes) does not."""
    r = honest_receipt(h)
    r["signature"] = compact_sig(r["signature"])
    return r


@receipt_tamper("signature-v-dropped", True)
def _(h: Honest) -> dict:
    """The last byte (v) cut off: 64 bytes left, which ethers reads as EIP-2098."""
    r = honest_receipt(h)
    r["signature"] = r["signature"][:-2]
    return r


@receipt_tamper("signature-truncated", True)
def _(h: Honest) -> dict:
    """The first 20 bytes only."""
    r = honest_receipt(h)
    r["signature"] = r["signature"][:42]
    return r


@receipt_tamper("signature-empty", True)
def _(h: Honest) -> dict:
    """'0x'."""
    r = honest_receipt(h)
    r["signature"] = "0x"
    return r


@receipt_tamper("signature-r-not-on-curve", True)
def _(h: Honest) -> dict:
    """r is an x coordinate with no curve point."""
    r = honest_receipt(h)
    _, ss, v = split_sig(r["signature"])
    r["signature"] = join_sig(x_not_on_curve(), ss, v)
    return r


@receipt_tamper("row-index-negative", True)
def _(h: Honest) -> dict:
    """rowIndex '-1'."""
    r = honest_receipt(h)
    r["leaf_values"]["rowIndex"] = "-1"
    return r


@receipt_tamper("row-index-not-a-number", True)
def _(h: Honest) -> dict:
    """rowIndex 'seven'."""
    r = honest_receipt(h)
    r["leaf_values"]["rowIndex"] = "seven"
    return r


@receipt_tamper("row-index-in-other-digits", True)
def _(h: Honest) -> dict:
    """rowIndex 742 written in Arabic-Indic digits, which Python's int() reads as 742 and
    BigInt does not: a receipt is one decimal ASCII string for every reader."""
    r = honest_receipt(h)
    r["leaf_values"]["rowIndex"] = "\u0667\u0664\u0662"
    return r


@receipt_tamper("row-index-2^256", True)
def _(h: Honest) -> dict:
    """rowIndex 2**256 (no uint256 holds it)."""
    r = honest_receipt(h)
    r["leaf_values"]["rowIndex"] = str(2**256)
    return r


@receipt_tamper("proof-not-a-list", True)
def _(h: Honest) -> dict:
    """proof is one hex string."""
    r = honest_receipt(h)
    r["proof"] = "".join(r["proof"])
    return r


@receipt_tamper("receipt-not-an-object", True)
def _(h: Honest) -> Any:
    """The receipt is a JSON list."""
    return [honest_receipt(h)]


# -- verifying the way a careful verifier does --------------------------------------------
SECRET = b"adversarial verifier secret"


def policy(honest: Honest, rate: float):
    """The verifier's policy: its own allowlist (the attacker's key and measurement are
    approved), a fixed secret, and, where ogkit supports it, the domain it serves."""
    import dataclasses

    from ogkit.verify import VerifyPolicy

    kw: dict[str, Any] = {"sample_rate": rate, "allowlist": honest.allowlist}
    names = {f.name for f in dataclasses.fields(VerifyPolicy)}
    if "verifier_secret" in names:
        kw["verifier_secret"] = SECRET
    if "expected_domain" in names:
        kw["expected_domain"] = ClaimDomain()
    return VerifyPolicy(**kw)


def verify(
    honest: Honest,
    artifact: str,
    rate: float = 1.0,
    *,
    with_dataset: bool = True,
    with_commitment: bool = False,
):
    """``verify_batch`` by artefact id, with the requester's dataset (or, with
    ``with_commitment``, the requester's own dataset commitment) where ogkit takes it."""
    import inspect

    from ogkit.verify import verify_batch

    kw: dict[str, Any] = {"store": honest.store, "hub": honest.hub, "progress": False}
    params = inspect.signature(verify_batch).parameters
    if with_commitment:
        from ogkit.dataset import commit_dataset

        kw["commitment"] = commit_dataset(sample_data_path("tabular"), honest.model)
    elif with_dataset and "dataset" in params:
        kw["dataset"] = sample_data_path("tabular")
    # What the requester ordered: its address and the job name.
    kw["requester"] = honest.requester
    kw["job"] = honest.manifest["job"]
    return verify_batch(artifact, policy(honest, rate), **kw)


# -- running a class through the CLI ------------------------------------------------------
def cli_verify(honest: Honest, artifact: str, sample_rate: float = 1.0, timeout: float = 60):
    """``ogkit verify ARTIFACT --json`` in a subprocess with the approved allowlist."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("OGKIT_")}
    env["OGKIT_HOME"] = str(honest.home)
    cmd = [sys.executable, "-m", "ogkit.cli", "--home", str(honest.home)]
    cmd += ["--store", honest.store.url, "verify", artifact, "--json", "--workers", "0"]
    cmd += ["--out", honest.store.url, "--sample-rate", str(sample_rate)]
    cmd += ["--secret", SECRET.hex(), "--dataset", str(sample_data_path("tabular"))]
    cmd += ["--requester", honest.requester, "--job", honest.manifest["job"]]
    domain = honest.manifest["domain"]
    cmd += ["--chain-id", str(domain["chain_id"]), "--contract", domain["verifying_contract"]]
    ((attester, _),) = {(a, None) for a, _ in honest.allowlist.pairs}  # one attester
    cmd += ["--allow-attester", attester]
    for m in sorted(honest.allowlist.measurements_of(attester)):
        cmd += ["--allow-measurement", m]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


def cli_verify_args(honest: Honest, artifact: str, sample_rate: float = 1.0) -> list[str]:
    """The arguments of ``ogkit verify`` that :func:`cli_verify` runs, for ``main`` itself."""
    args = ["--home", str(honest.home), "--store", honest.store.url, "verify", artifact]
    args += ["--json", "--workers", "0", "--out", honest.store.url]
    args += ["--sample-rate", str(sample_rate), "--secret", SECRET.hex()]
    args += ["--dataset", str(sample_data_path("tabular"))]
    args += ["--requester", honest.requester, "--job", honest.manifest["job"]]
    domain = honest.manifest["domain"]
    args += ["--chain-id", str(domain["chain_id"]), "--contract", domain["verifying_contract"]]
    ((attester, _),) = {(a, None) for a, _ in honest.allowlist.pairs}  # one attester
    args += ["--allow-attester", attester]
    for m in sorted(honest.allowlist.measurements_of(attester)):
        args += ["--allow-measurement", m]
    return args


def parse_cli_json(stdout: str) -> dict[str, Any]:
    return json.loads(stdout)


REPO = Path(__file__).resolve().parents[2]


def js_verdict(receipt: Any, tmp: Path) -> str:
    """Run one receipt through ``node tests/js/verify_receipts.mjs`` (OpenZeppelin's
    ``SimpleMerkleTree.verify`` + ethers ``verifyTypedData``, no ogkit code) as the
    only *bad* receipt: 'rejected' (exit 0), 'threw' (the libraries raised: also a
    rejection) or 'accepted' (the script reports the bad receipt verified)."""
    import subprocess

    from ogkit.crypto.merkle import LEAF_TYPES

    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / f"receipt-{time.perf_counter_ns()}.json"
    path.write_text(json.dumps({"types": list(LEAF_TYPES), "good": [], "bad": [receipt]}))
    run = subprocess.run(
        ["node", str(REPO / "tests/js/verify_receipts.mjs"), str(path)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    if run.returncode == 0:
        return "rejected"
    if "mismatch:" in run.stderr:
        return "accepted"
    return "threw"


def js_accepts_good(receipt: Any, tmp: Path) -> bool:
    import subprocess

    from ogkit.crypto.merkle import LEAF_TYPES

    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / "good.json"
    path.write_text(json.dumps({"types": list(LEAF_TYPES), "good": [receipt], "bad": []}))
    run = subprocess.run(
        ["node", str(REPO / "tests/js/verify_receipts.mjs"), str(path)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    return run.returncode == 0


def ogkit_receipt_check(receipt: Any, allowlist: Allowlist):
    """ogkit's ``verify_receipt`` (wherever it lives), with the verifier's allowlist
    when it takes one. Returns the check, or the ReceiptError it raised."""
    import inspect

    from ogkit.errors import ReceiptError

    fn = None
    for module in ("ogkit.verify", "ogkit.batch", "ogkit.receipts"):
        try:
            fn = getattr(__import__(module, fromlist=["verify_receipt"]), "verify_receipt", None)
        except ImportError:
            continue
        if fn is not None:
            break
    assert fn is not None, "ogkit has no verify_receipt"
    kw = {"allowlist": allowlist} if "allowlist" in inspect.signature(fn).parameters else {}
    try:
        return fn(receipt, **kw)
    except ReceiptError as exc:  # the spec's 'malformed receipt'
        return exc
