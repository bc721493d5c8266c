"""ogkit's cryptographic core: keccak256, canonical tensor row hashes, Merkle trees.

See docs/spec.md sections 1-3 for the exact byte formats.
"""

from ogkit.crypto.encoding import DTYPE_CODES, dtype_code, tensor_row_hash, tensor_row_hashes
from ogkit.crypto.keccak import keccak256, keccak256_rows, numba_enabled, warm_up
from ogkit.crypto.merkle import (
    LEAF_TYPES,
    MerkleTree,
    compose_proof,
    hash_pair,
    leaf_hash,
    leaf_hashes,
    process_proof,
    verify_proof,
)

__all__ = [
    "DTYPE_CODES",
    "LEAF_TYPES",
    "MerkleTree",
    "compose_proof",
    "dtype_code",
    "hash_pair",
    "keccak256",
    "keccak256_rows",
    "leaf_hash",
    "leaf_hashes",
    "numba_enabled",
    "process_proof",
    "tensor_row_hash",
    "tensor_row_hashes",
    "verify_proof",
    "warm_up",
]
