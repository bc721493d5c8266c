"""Merkle trees in OpenZeppelin's ``SimpleMerkleTree`` layout (docs/spec.md section 3).

* Leaf = ``keccak256(abi.encode(uint256 rowIndex, bytes32 inputHash, bytes32 outputHash))``:
  one hash of a fixed 96-byte message (one Keccak-f[1600] permutation). The batch, model
  and runtime ids are not in the leaf: the signed claim binds them once, with the root.
* Input leaf (the dataset commitment) = ``keccak256(abi.encode(bytes32 INPUT_LEAF_TAG,
  uint256 rowIndex, bytes32 inputHash))``, also 96 bytes and one permutation.
* Node = ``keccak256(min(a, b) || max(a, b))`` (OZ ``hashPair``; Solidity ``MerkleProof``'s
  commutative hashing), so a proof is just the list of sibling hashes. A node hashes 64
  bytes and a leaf 96, which keeps them apart without OpenZeppelin's double leaf hash.
* Layout = OZ's ``SimpleMerkleTree.of(leafHashes)`` (``sortLeaves: true``): leaf hashes
  sorted ascending, stored in a ``2n - 1`` node array with sorted leaf ``k`` at index
  ``2n - 2 - k`` and node ``i`` = hashPair(node ``2i + 1``, node ``2i + 2``).

A root computed here equals the root of the JS library over the same leaf hashes, and
proofs from either verify with the other and with ``MerkleProof.verify`` on chain.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise
from typing import Any

import numpy as np

from ogkit.crypto.keccak import keccak256, keccak256_sorted_pairs, keccak256_words
from ogkit.errors import ConfigError, ReceiptError

__all__ = [
    "INPUT_LEAF_TAG",
    "INPUT_LEAF_TYPES",
    "LEAF_BYTES",
    "LEAF_TYPES",
    "MerkleTree",
    "compose_proof",
    "hash_pair",
    "idle_threads",
    "input_leaf_hash",
    "input_leaf_hashes",
    "leaf_hash",
    "leaf_hashes",
    "merkle_root",
    "process_proof",
    "verify_proof",
]

log = logging.getLogger(__name__)

#: ABI types of a row leaf's values: (rowIndex, inputHash, outputHash).
LEAF_TYPES: tuple[str, ...] = ("uint256", "bytes32", "bytes32")

#: Domain tag of the dataset commitment's leaves: keccak256("ogkit.input-leaf.v1").
INPUT_LEAF_TAG: bytes = keccak256(b"ogkit.input-leaf.v1")

#: ABI types of a dataset-commitment leaf: (INPUT_LEAF_TAG, rowIndex, inputHash).
INPUT_LEAF_TYPES: tuple[str, ...] = ("bytes32", "uint256", "bytes32")

#: Length of every leaf's message (row and input leaves alike): three ABI words. An
#: internal node hashes 64 bytes, so no value is both a leaf and a node short of a
#: keccak256 collision.
LEAF_BYTES = 96
_SPLIT_PAIRS = 16_384  # a tree level is hashed in slices across threads from 2x this


def idle_threads(limit: int = 4) -> int:
    """Threads for a tree built while the other cores wait on it (the input root, after
    every partition): the cores this process may run on, at most ``limit``."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(limit, cores))


_UINT256_MAX = (1 << 256) - 1


# --------------------------------------------------------------------------------------
# Leaves
# --------------------------------------------------------------------------------------


def _check_id(value: Any, what: str) -> bytes:
    # eth_abi would silently right-pad a short bytes32; a hash must be exactly 32 bytes
    if not isinstance(value, bytes | bytearray | memoryview) or len(value) != 32:
        raise ConfigError(f"{what} must be 32 bytes, got {type(value).__name__} {value!r:.80}")
    return bytes(value)


def _check_hash_rows(arr: Any, n: int, what: str) -> np.ndarray:
    a = np.asarray(arr)
    if a.dtype != np.uint8 or a.shape != (n, 32):
        raise ConfigError(
            f"{what} must be a uint8 array of shape ({n}, 32), got {a.dtype}{a.shape}"
        )
    return a


def _check_row_index(row_index: Any) -> np.ndarray:
    idx = np.asarray(row_index)
    if idx.ndim != 1 or idx.dtype.kind not in "iu":
        raise ConfigError(f"row_index must be a 1-D integer array, got {idx.dtype}{idx.shape}")
    if idx.dtype.kind == "i" and idx.size and int(idx.min()) < 0:
        raise ConfigError("row_index values must be >= 0")
    return idx


def _check_row(row_index: Any) -> int:
    if isinstance(row_index, bool) or not isinstance(row_index, int | np.integer):
        raise ConfigError(f"row_index must be an integer, got {type(row_index).__name__}")
    row = int(row_index)
    if not 0 <= row <= _UINT256_MAX:
        raise ConfigError(f"row_index must be in [0, 2**256), got {row_index}")
    return row


def leaf_hash(row_index: int, input_hash: bytes, output_hash: bytes) -> bytes:
    """One row leaf, the reference way: ``keccak256(eth_abi.encode(LEAF_TYPES, ...))``."""
    from eth_abi import encode  # imported here: only this reference path needs eth_abi

    values = [
        _check_row(row_index),
        _check_id(input_hash, "input_hash"),
        _check_id(output_hash, "output_hash"),
    ]
    return keccak256(encode(list(LEAF_TYPES), values))


def leaf_hashes(
    row_index: np.ndarray, input_hashes: np.ndarray, output_hashes: np.ndarray
) -> np.ndarray:
    """All row leaves of a partition at once: ``(n, 32)`` uint8, row ``i`` = :func:`leaf_hash`.

    ``abi.encode(uint256, bytes32, bytes32)`` is three 32-byte words (the uint256
    big-endian), hashed once a row straight from the three columns: 96 bytes fit in one
    136-byte sponge block, one Keccak-f[1600] permutation.
    """
    idx = _check_row_index(row_index)
    n = idx.shape[0]
    inputs = _check_hash_rows(input_hashes, n, "input_hashes")
    outputs = _check_hash_rows(output_hashes, n, "output_hashes")
    return keccak256_words([idx.astype(np.uint64, copy=False), inputs, outputs])


def input_leaf_hash(row_index: int, input_hash: bytes) -> bytes:
    """One dataset-commitment leaf, the reference way:
    ``keccak256(eth_abi.encode(INPUT_LEAF_TYPES, [INPUT_LEAF_TAG, rowIndex, inputHash]))``."""
    from eth_abi import encode

    values = [INPUT_LEAF_TAG, _check_row(row_index), _check_id(input_hash, "input_hash")]
    return keccak256(encode(list(INPUT_LEAF_TYPES), values))


def input_leaf_hashes(row_index: np.ndarray, input_hashes: np.ndarray) -> np.ndarray:
    """Leaves of the dataset commitment (the *input root*), ``(n, 32)`` uint8: row ``i`` is
    :func:`input_leaf_hash` (one permutation a row)."""
    idx = _check_row_index(row_index)
    n = idx.shape[0]
    inputs = _check_hash_rows(input_hashes, n, "input_hashes")
    return keccak256_words([INPUT_LEAF_TAG, idx.astype(np.uint64, copy=False), inputs])


# --------------------------------------------------------------------------------------
# Proofs
# --------------------------------------------------------------------------------------


def _as_node(value: Any, what: str) -> bytes:
    if not isinstance(value, bytes | bytearray | memoryview) or len(value) != 32:
        raise ReceiptError(
            f"{what} must be 32 bytes, got {type(value).__name__} of length "
            f"{len(value) if hasattr(value, '__len__') else '?'}"
        )
    return bytes(value)


def hash_pair(a: bytes, b: bytes) -> bytes:
    """OZ ``hashPair``: keccak256 of the two nodes in ascending byte order."""
    return keccak256(a + b) if a <= b else keccak256(b + a)


def process_proof(leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """Root reached from ``leaf`` through ``proof`` (Solidity ``MerkleProof.processProof``)."""
    if isinstance(proof, str | bytes | bytearray | memoryview):
        raise ReceiptError(f"a proof is a list of 32-byte nodes, not {type(proof).__name__}")
    node = _as_node(leaf, "leaf")
    for k, sibling in enumerate(proof):
        node = hash_pair(node, _as_node(sibling, f"proof element {k}"))
    return node


def verify_proof(root: bytes, leaf: bytes, proof: Sequence[bytes]) -> bool:
    """True iff ``proof`` leads from ``leaf`` to ``root`` (Solidity ``MerkleProof.verify``).

    Malformed input (root, leaf or an element not 32 bytes) raises ReceiptError rather
    than returning False: it is a broken receipt, not a failed check.
    """
    return process_proof(leaf, proof) == _as_node(root, "root")


def compose_proof(partition_proof: Sequence[bytes], batch_proof: Sequence[bytes]) -> list[bytes]:
    """Proof from a row's leaf to the batch root.

    The batch tree's leaves are the partition roots themselves (not re-hashed), so a
    partition root is a node of the batch tree and the fold over ``partition_proof``
    followed by ``batch_proof`` ends at the batch root.
    """
    return [*partition_proof, *batch_proof]


# --------------------------------------------------------------------------------------
# Tree
# --------------------------------------------------------------------------------------


def _be_words(rows: np.ndarray) -> np.ndarray:
    """(m, 32k) uint8 -> (m, 4k) native uint64 whose order is the rows' byte order."""
    return np.ascontiguousarray(rows).view(">u8").astype(np.uint64)


def take_hashes(rows: np.ndarray, index: np.ndarray) -> np.ndarray:
    """``rows[index]`` for ``(n, 32)`` uint8 hashes, gathered as four uint64 words a row
    (numpy's generic fancy indexing copies a 32-byte row byte by byte: 1M rows 95 ms,
    this 17 ms)."""
    rows = np.ascontiguousarray(rows)
    words = rows.view(np.uint64).reshape(len(rows), 4)
    return np.take(words, index, axis=0).view(np.uint8).reshape(len(index), 32)


def first_words(rows: np.ndarray) -> np.ndarray:
    """The first eight bytes of each ``(n, 32)`` uint8 hash as a big-endian number (the
    order of those bytes), as native uint64."""
    rows = np.ascontiguousarray(rows)
    first = rows.view(np.uint64).reshape(len(rows), 4)[:, 0]
    return first.byteswap() if np.little_endian else first.copy()


def _sort_order(leaves: np.ndarray, sorted_runs: bool = False) -> np.ndarray:
    """Stable ascending byte order of the leaf hashes (JS ``Array.sort`` is stable too)."""
    # The first 8 bytes almost always decide. While they are all distinct the order is
    # unique, so any sort gives it (quicksort is several times faster than a stable sort
    # of random uint64 keys; numpy's stable sort of uint64 is a timsort, which merges
    # runs that are already sorted: 1M keys in 20 runs, 54 -> 29 ms); on a tie, a stable
    # sort over all 32 bytes decides.
    first = first_words(leaves)
    order = np.argsort(first, kind="stable" if sorted_runs else None)
    ranked = first[order]
    if np.any(ranked[1:] == ranked[:-1]):
        words = _be_words(leaves)
        order = np.lexsort((words[:, 3], words[:, 2], words[:, 1], words[:, 0]))
    return order


def _hash_level(
    pairs: np.ndarray, out: np.ndarray, pool: ThreadPoolExecutor | None, threads: int
) -> None:
    """``out[i] = hashPair(pairs[i])``, in ``threads`` slices on ``pool`` when large."""
    m = len(out)
    if pool is None or m < 2 * _SPLIT_PAIRS:
        keccak256_sorted_pairs(pairs, out=out)  # sorts each pair itself
        return
    cuts = np.linspace(0, m, threads + 1, dtype=np.int64)
    done = [pool.submit(keccak256_sorted_pairs, pairs[a:b], out[a:b]) for a, b in pairwise(cuts)]
    for future in done:
        future.result()


def _checked_leaves(leaves: Any) -> np.ndarray:
    leaves = np.asarray(leaves)
    if leaves.dtype != np.uint8 or leaves.ndim != 2 or leaves.shape[1] != 32:
        raise ConfigError(
            f"leaves must be a uint8 array of shape (n, 32), got {leaves.dtype}{leaves.shape}"
        )
    if leaves.shape[0] < 1:
        raise ConfigError("a Merkle tree needs at least one leaf")
    return leaves


def merkle_root(leaves: np.ndarray, *, threads: int = 1, sorted_runs: bool = False) -> bytes:
    """The root of :meth:`MerkleTree.from_leaf_hashes` over the same leaves, without the
    tree: only the level being built and the one below it are held (about n/2 nodes
    besides the sorted leaves, where the tree holds 2n - 1), for a root nobody asks a
    proof of, such as the input root.

    ``threads`` > 1 hashes each large level in that many slices at once (the kernel
    releases the GIL): for a root built while other cores are idle, such as the input
    root after every partition is done. ``sorted_runs`` says the leaves come as runs
    already sorted by their first eight bytes (:func:`ogkit.dataset.sorted_leaf_run`),
    which the sort then merges. Neither changes the root."""
    leaves = _checked_leaves(leaves)
    n = leaves.shape[0]
    # ``level`` holds OZ nodes from node lo on. The next level's nodes, [lo // 2, lo),
    # have their children in [2 (lo // 2) + 1, 2 lo + 1): from node lo or lo + 1, all
    # inside ``level``. The level after needs those new nodes and node lo, which is kept
    # as the new level's last row.
    level = take_hashes(leaves, _sort_order(leaves, sorted_runs)[::-1])  # OZ nodes [n - 1, 2n - 1)
    pool = ThreadPoolExecutor(threads) if threads > 1 and n >= 2 * _SPLIT_PAIRS else None
    try:
        lo = n - 1
        while lo > 0:
            new_lo = lo // 2
            pairs = level[2 * new_lo + 1 - lo : lo + 1].reshape(lo - new_lo, 64)
            below = np.empty((lo - new_lo + 1, 32), dtype=np.uint8)
            _hash_level(pairs, below[:-1], pool, threads)
            below[-1] = level[0]
            level, lo = below, new_lo
    finally:
        if pool is not None:
            pool.shutdown()
    return level[0].tobytes()


class MerkleTree:
    """OZ ``SimpleMerkleTree`` over precomputed leaf hashes.

    Used for a partition's rows (leaves from :func:`leaf_hashes`) and for a batch
    (leaves = partition roots, used as they are). Leaves are addressed by their index in
    the caller's input order; the sort permutation is kept to map it to the tree.
    """

    def __init__(self, nodes: np.ndarray, order: np.ndarray) -> None:
        """Use :meth:`from_leaf_hashes`; this wraps an already-built node array."""
        self._n = int(order.shape[0])
        self._nodes = nodes
        self._nodes.flags.writeable = False
        self._order = order  # sorted position k -> caller index
        self._pos = np.empty_like(order)  # caller index -> sorted position
        self._pos[order] = np.arange(self._n, dtype=order.dtype)
        self._sorted_first_word: np.ndarray | None = None

    @classmethod
    def from_leaf_hashes(cls, leaves: np.ndarray) -> MerkleTree:
        """Build the tree over ``(n, 32)`` uint8 leaf hashes, ``n >= 1`` (for a root
        alone, :func:`merkle_root` holds far less)."""
        leaves = _checked_leaves(leaves)
        n = leaves.shape[0]
        order = _sort_order(leaves)
        nodes = np.empty((2 * n - 1, 32), dtype=np.uint8)
        nodes[n - 1 :] = take_hashes(leaves, order[::-1])  # sorted leaf k at index 2n - 2 - k
        # Nodes [lo, 2n - 1) are done. Every node i in [lo // 2, lo) has both children
        # (2i + 1, 2i + 2) in the done range, and those children are the contiguous slice
        # [2 (lo // 2) + 1, 2 lo + 1): one vectorised step per level.
        lo = n - 1
        while lo > 0:
            new_lo = lo // 2
            pairs = nodes[2 * new_lo + 1 : 2 * lo + 1].reshape(lo - new_lo, 64)
            keccak256_sorted_pairs(pairs, out=nodes[new_lo:lo])  # sorts each pair itself
            lo = new_lo
        return cls(nodes, order)

    # -- properties -------------------------------------------------------------------

    @property
    def root(self) -> bytes:
        return self._nodes[0].tobytes()

    @property
    def size(self) -> int:
        """Number of leaves."""
        return self._n

    @property
    def nodes(self) -> np.ndarray:
        """The ``(2n - 1, 32)`` node array in OZ layout (read-only)."""
        return self._nodes

    def _tree_index(self, i: int) -> int:
        if not isinstance(i, int | np.integer) or not 0 <= i < self._n:
            raise ConfigError(f"leaf index {i!r} out of range for a tree of {self._n} leaves")
        return 2 * self._n - 2 - int(self._pos[i])

    def leaf(self, i: int) -> bytes:
        """Leaf hash of the caller's ``i``-th leaf."""
        return self._nodes[self._tree_index(i)].tobytes()

    # -- proofs -----------------------------------------------------------------------

    def _proof_at(self, j: int) -> list[bytes]:
        proof = []
        while j > 0:
            sibling = j + 1 if j % 2 else j - 1
            proof.append(self._nodes[sibling].tobytes())
            j = (j - 1) // 2
        return proof

    def proof(self, i: int) -> list[bytes]:
        """Sibling hashes from the caller's ``i``-th leaf up to the root."""
        return self._proof_at(self._tree_index(i))

    def proof_for_leaf(self, leaf: bytes) -> list[bytes]:
        """Proof for a leaf given by its hash (the first one, if it occurs twice)."""
        leaf = bytes(leaf)
        if len(leaf) != 32:
            raise ConfigError(f"leaf must be 32 bytes, got {len(leaf)}")
        if self._sorted_first_word is None:
            # sorted leaf k sits at 2n - 2 - k: reverse the leaf block to get ascending order
            self._sorted_first_word = first_words(self._nodes[self._n - 1 :][::-1])
        key = int.from_bytes(leaf[:8], "big")
        lo = int(np.searchsorted(self._sorted_first_word, key, side="left"))
        hi = int(np.searchsorted(self._sorted_first_word, key, side="right"))
        for k in range(lo, hi):
            j = 2 * self._n - 2 - k
            if self._nodes[j].tobytes() == leaf:
                return self._proof_at(j)
        raise ConfigError(f"leaf 0x{leaf.hex()} is not in this tree")

    def proofs_array(self, indices: Iterable[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Proofs for many leaves at once, vectorised.

        Returns ``(proof_nodes, lengths)``: ``proof_nodes`` is ``(m, depth, 32)`` uint8 with
        row ``r``'s proof in ``proof_nodes[r, :lengths[r]]`` (the tree is not perfect, so
        lengths differ by at most one); the rest is zero.
        """
        idx = np.asarray(list(indices) if not isinstance(indices, np.ndarray) else indices)
        if idx.size and (idx.dtype.kind not in "iu" or idx.min() < 0 or idx.max() >= self._n):
            raise ConfigError(f"leaf indices must be integers in [0, {self._n})")
        idx = idx.astype(np.int64).reshape(-1)
        j = 2 * self._n - 2 - self._pos[idx].astype(np.int64)
        depth = (2 * self._n - 1).bit_length() - 1  # depth of the deepest node
        proof_nodes = np.zeros((idx.shape[0], depth, 32), dtype=np.uint8)
        lengths = np.zeros(idx.shape[0], dtype=np.int64)
        for level in range(depth):
            active = np.flatnonzero(j > 0)
            if active.size == 0:
                break
            ja = j[active]
            sibling = np.where(ja % 2 == 1, ja + 1, ja - 1)
            proof_nodes[active, level] = self._nodes[sibling]
            lengths[active] += 1
            j[active] = (ja - 1) // 2
        return proof_nodes, lengths

    def proofs(self, indices: Iterable[int] | np.ndarray) -> list[list[bytes]]:
        """:meth:`proof` for each index, computed with :meth:`proofs_array`."""
        proof_nodes, lengths = self.proofs_array(indices)
        return [
            [proof_nodes[r, k].tobytes() for k in range(int(lengths[r]))]
            for r in range(proof_nodes.shape[0])
        ]

    def __repr__(self) -> str:
        return f"MerkleTree(size={self._n}, root=0x{self.root.hex()})"
