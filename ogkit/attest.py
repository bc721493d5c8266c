"""The attest step: per-row hashes and leaves, per-partition roots, a signed batch claim.

Attesters are chosen by name from :data:`ATTESTERS` and share one interface. The
software enclave shipped here is a development enclave: a secp256k1 key whose
measurement is the runtime id. It claims no hardware backing, and says so in its
evidence; hardware attesters (AWS Nitro, Intel TDX) plug in behind the same
interface.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ogkit.claims import BatchClaim, ClaimDomain
from ogkit.crypto.encoding import tensor_row_hashes
from ogkit.crypto.merkle import MerkleTree, leaf_hashes
from ogkit.errors import ArtifactError, ConfigError
from ogkit.keys import Signer

__all__ = [
    "ATTESTERS",
    "Attester",
    "PartitionAttestation",
    "PartitionRecords",
    "SoftwareEnclaveAttester",
    "attest_partition",
    "make_attester",
    "read_records",
    "records_to_parquet",
]


# -- attesters --------------------------------------------------------------------------------
class Attester(Protocol):
    kind: str

    @property
    def address(self) -> str: ...

    def evidence(self, runtime_id: str) -> dict[str, Any]:
        """What backs the signature: the measurement and, for hardware, the quote."""
        ...

    def sign_claim(self, claim: BatchClaim, domain: ClaimDomain) -> str: ...


class SoftwareEnclaveAttester:
    """A development enclave: a key, with the runtime id as its measurement. Not hardware."""

    kind = "software-enclave"

    def __init__(self, signer: Signer) -> None:
        self._signer = signer

    @property
    def address(self) -> str:
        return self._signer.address

    def evidence(self, runtime_id: str) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "hardware_backed": False,
            "measurement": runtime_id,
            "note": "development enclave: the measurement is the runtime fingerprint hash; "
            "no hardware attests to it",
        }

    def sign_claim(self, claim: BatchClaim, domain: ClaimDomain) -> str:
        if claim.attester.lower() != self.address.lower():
            raise ConfigError(f"claim names attester {claim.attester}, not {self.address}")
        return self._signer.sign_typed_data(claim.typed_data(domain))

    def __repr__(self) -> str:
        return f"SoftwareEnclaveAttester({self.address})"


ATTESTERS: dict[str, type] = {"software": SoftwareEnclaveAttester}


def make_attester(kind: str, **kwargs: Any) -> Attester:
    """Build a registered attester by name (``software``)."""
    try:
        return ATTESTERS[kind](**kwargs)
    except KeyError:
        raise ConfigError(
            f"unknown attester {kind!r}; registered: {', '.join(sorted(ATTESTERS))}"
        ) from None


# -- per-partition attestation ---------------------------------------------------------------
@dataclass
class PartitionAttestation:
    row_index: np.ndarray  # uint64 (n,)
    input_hashes: np.ndarray  # uint8 (n, 32)
    output_hashes: np.ndarray
    leaves: np.ndarray
    root: bytes


def attest_partition(
    *,
    batch_id: str,
    model_id: str,
    runtime_id: str,
    offset: int,
    feeds: Mapping[str, np.ndarray],
    outputs: Mapping[str, np.ndarray],
) -> PartitionAttestation:
    """Hash every row's inputs and outputs, build its leaf, and the partition's tree."""
    n = len(next(iter(feeds.values())))
    row_index = np.arange(offset, offset + n, dtype=np.uint64)
    input_hashes = tensor_row_hashes(feeds)
    output_hashes = tensor_row_hashes(outputs)
    leaves = leaf_hashes(
        bytes.fromhex(batch_id[2:]),
        bytes.fromhex(model_id[2:]),
        bytes.fromhex(runtime_id[2:]),
        row_index,
        input_hashes,
        output_hashes,
    )
    root = MerkleTree.from_leaf_hashes(leaves).root
    return PartitionAttestation(row_index, input_hashes, output_hashes, leaves, root)


# -- records on disk -----------------------------------------------------------------------
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


def records_to_parquet(
    att: PartitionAttestation, feeds: Mapping[str, np.ndarray], outputs: Mapping[str, np.ndarray]
) -> bytes:
    """One partition's records as Parquet bytes (columns documented in docs/spec.md)."""
    columns: dict[str, pa.Array] = {
        "row_index": pa.array(att.row_index),
        "input_hash": _hash_column(att.input_hashes),
        "output_hash": _hash_column(att.output_hashes),
        "leaf": _hash_column(att.leaves),
    }
    for name, values in feeds.items():
        columns[f"input.{name}"] = _tensor_column(values)
    for name, values in outputs.items():
        columns[f"output.{name}"] = _tensor_column(values)
    sink = io.BytesIO()
    # Hashes and float bytes neither compress nor dictionary-encode: skipping both makes
    # writing ~5x faster for the same size. Row indices keep statistics for range reads.
    pq.write_table(
        pa.table(columns),
        sink,
        compression="none",
        use_dictionary=False,
        write_statistics=["row_index"],
    )
    return sink.getvalue()


@dataclass
class PartitionRecords:
    row_index: np.ndarray
    input_hashes: np.ndarray
    output_hashes: np.ndarray
    leaves: np.ndarray
    inputs: dict[str, np.ndarray]
    outputs: dict[str, np.ndarray]


def _hash_rows(col: pa.ChunkedArray | pa.Array) -> np.ndarray:
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    buf = arr.buffers()[1]
    return np.frombuffer(buf, np.uint8, count=len(arr) * 32, offset=arr.offset * 32).reshape(-1, 32)


def _tensor_rows(col: pa.ChunkedArray, dtype: str, row_shape: tuple[int, ...]) -> np.ndarray:
    arr = col.combine_chunks()
    if pa.types.is_fixed_size_binary(arr.type):
        le = np.dtype(dtype).newbyteorder("<")
        width = arr.type.byte_width
        raw = np.frombuffer(arr.buffers()[1], np.uint8, len(arr) * width, arr.offset * width)
        return raw.view(le).astype(dtype, copy=False).reshape((len(arr), *row_shape))
    return (
        arr.to_numpy(zero_copy_only=False).astype(dtype, copy=False).reshape((len(arr), *row_shape))
    )


def read_records(
    data: bytes,
    tensor_specs: Mapping[str, Mapping[str, tuple[str, tuple[int, ...]]]],
) -> PartitionRecords:
    """Parse one partition's Parquet records; ``tensor_specs`` gives each tensor's dtype
    and per-row shape, under ``"inputs"`` and ``"outputs"``."""
    try:
        table = pq.read_table(io.BytesIO(data))
        return PartitionRecords(
            row_index=table["row_index"].to_numpy().astype(np.uint64),
            input_hashes=_hash_rows(table["input_hash"]),
            output_hashes=_hash_rows(table["output_hash"]),
            leaves=_hash_rows(table["leaf"]),
            inputs={
                name: _tensor_rows(table[f"input.{name}"], dt, shape)
                for name, (dt, shape) in tensor_specs["inputs"].items()
            },
            outputs={
                name: _tensor_rows(table[f"output.{name}"], dt, shape)
                for name, (dt, shape) in tensor_specs["outputs"].items()
            },
        )
    except (pa.ArrowException, KeyError, ValueError) as exc:
        raise ArtifactError(f"records are unreadable or incomplete: {exc}") from exc
