"""Merkle trees: OZ StandardMerkleTree layout, proofs, composition, and the real JS library."""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ogkit.crypto import (
    LEAF_TYPES,
    MerkleTree,
    compose_proof,
    hash_pair,
    keccak256,
    leaf_hash,
    leaf_hashes,
    process_proof,
    verify_proof,
)
from ogkit.dataset import input_root
from ogkit.errors import ConfigError, ReceiptError

REPO = Path(__file__).resolve().parents[1]
JS_CHECK = REPO / "tests" / "js" / "check_merkle.mjs"
OZ_PACKAGE = REPO / "node_modules" / "@openzeppelin" / "merkle-tree" / "package.json"


def _plain_oz_tree(leaves: list[bytes]) -> list[bytes]:
    """OZ ``makeMerkleTree`` over sorted leaves, written as plainly as possible."""
    ordered = sorted(leaves)
    tree: list[bytes] = [b""] * (2 * len(ordered) - 1)
    for k, leaf in enumerate(ordered):
        tree[len(tree) - 1 - k] = leaf
    for i in range(len(tree) - 1 - len(ordered), -1, -1):
        a, b = tree[2 * i + 1], tree[2 * i + 2]
        tree[i] = keccak256(min(a, b) + max(a, b))
    return tree


def _as_rows(leaves: list[bytes]) -> np.ndarray:
    return np.frombuffer(b"".join(leaves), dtype=np.uint8).reshape(len(leaves), 32).copy()


def _random_partition(rng: np.random.Generator, n: int) -> dict[str, object]:
    ids = [rng.bytes(32) for _ in range(3)]
    row_index = rng.integers(0, 2**63, size=n, dtype=np.uint64)
    ins = rng.integers(0, 256, size=(n, 32), dtype=np.uint8)
    outs = rng.integers(0, 256, size=(n, 32), dtype=np.uint8)
    return {"ids": ids, "row_index": row_index, "ins": ins, "outs": outs}


# -- leaves ------------------------------------------------------------------------------


def test_leaf_types() -> None:
    assert LEAF_TYPES == ("bytes32", "bytes32", "bytes32", "uint256", "bytes32", "bytes32")


def test_spec_vectors() -> None:
    """The test vectors quoted in docs/spec.md section 3 (checked once against OZ's JS)."""
    leaf = leaf_hash(b"\x01" * 32, b"\x02" * 32, b"\x03" * 32, 7, b"\x04" * 32, b"\x05" * 32)
    assert leaf.hex() == "3fd0c3acb4d162e9e77598214924e0ed6ae0f71b6f5925e65493db916f9ec79a"
    leaves = [keccak256(bytes([i])) for i in (1, 2, 3)]
    tree = MerkleTree.from_leaf_hashes(_as_rows(leaves))
    assert tree.root.hex() == "eabc7452eee4f65d21a7edc9987de7047c7f2554db3dfeab6bff2d80e61c2022"
    assert [x.hex()[:8] for x in tree.proof(0)] == ["69c322e3", "f2ee15ea"]


def test_leaf_hashes_match_eth_abi_reference() -> None:
    rng = np.random.default_rng(11)
    p = _random_partition(rng, 40)
    idx = p["row_index"]
    idx[0], idx[1], idx[2] = 0, 2**64 - 1, 255  # edge values of the uint64 -> uint256 word
    out = leaf_hashes(*p["ids"], idx, p["ins"], p["outs"])
    assert out.shape == (40, 32) and out.dtype == np.uint8
    for i in range(40):
        ref = leaf_hash(*p["ids"], int(idx[i]), p["ins"][i].tobytes(), p["outs"][i].tobytes())
        assert out[i].tobytes() == ref
    # signed indices are accepted when non-negative
    signed = leaf_hashes(*p["ids"], np.arange(3, dtype=np.int64), p["ins"][:3], p["outs"][:3])
    unsigned = leaf_hashes(*p["ids"], np.arange(3, dtype=np.uint64), p["ins"][:3], p["outs"][:3])
    assert np.array_equal(signed, unsigned)


def test_leaf_argument_checks() -> None:
    z = bytes(32)
    rows = np.zeros((2, 32), np.uint8)
    with pytest.raises(ConfigError, match="batch_id"):
        leaf_hashes(b"short", z, z, np.arange(2), rows, rows)
    with pytest.raises(ConfigError, match="row_index"):
        leaf_hashes(z, z, z, np.array([0, -1]), rows, rows)
    with pytest.raises(ConfigError, match="row_index"):
        leaf_hashes(z, z, z, np.array([0.0, 1.0]), rows, rows)
    with pytest.raises(ConfigError, match="output_hashes"):
        leaf_hashes(z, z, z, np.arange(2), rows, np.zeros((3, 32), np.uint8))
    with pytest.raises(ConfigError, match="input_hash"):
        leaf_hash(z, z, z, 0, b"\x01" * 31, z)  # eth_abi would silently pad this
    with pytest.raises(ConfigError, match="row_index"):
        leaf_hash(z, z, z, -1, z, z)


# -- trees and proofs ----------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    leaves=st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=200),
    data=st.data(),
)
def test_tree_properties(leaves: list[bytes], data: st.DataObject) -> None:
    tree = MerkleTree.from_leaf_hashes(_as_rows(leaves))
    plain = _plain_oz_tree(leaves)
    assert tree.size == len(leaves)
    assert tree.nodes.shape == (2 * len(leaves) - 1, 32)
    assert [row.tobytes() for row in tree.nodes] == plain
    assert tree.root == plain[0]

    i = data.draw(st.integers(min_value=0, max_value=len(leaves) - 1), label="index")
    proof = tree.proof(i)
    assert tree.leaf(i) == leaves[i]
    assert verify_proof(tree.root, leaves[i], proof)
    assert process_proof(leaves[i], proof) == tree.root
    # every proof element is load-bearing, and so is the leaf
    for k in range(len(proof)):
        bad = list(proof)
        bad[k] = bytes([bad[k][0] ^ 0x80]) + bad[k][1:]
        assert not verify_proof(tree.root, leaves[i], bad)
    other = bytes([leaves[i][0] ^ 0x01]) + leaves[i][1:]
    if other not in leaves:  # a duplicate leaf may legitimately share the path
        assert not verify_proof(tree.root, other, proof)

    # root does not depend on input order
    perm = data.draw(st.permutations(range(len(leaves))), label="perm")
    shuffled = MerkleTree.from_leaf_hashes(_as_rows([leaves[j] for j in perm]))
    assert shuffled.root == tree.root


def test_single_leaf_tree() -> None:
    leaf = keccak256(b"only")
    tree = MerkleTree.from_leaf_hashes(_as_rows([leaf]))
    assert tree.root == leaf and tree.size == 1
    assert tree.proof(0) == [] and verify_proof(leaf, leaf, [])
    assert tree.proofs([0]) == [[]]


def test_many_proofs_and_lookup() -> None:
    rng = np.random.default_rng(5)
    leaves = [rng.bytes(32) for _ in range(77)]
    leaves[10] = leaves[3]  # a duplicate
    tree = MerkleTree.from_leaf_hashes(_as_rows(leaves))
    every = tree.proofs(np.arange(77))
    assert every == [tree.proof(i) for i in range(77)]
    assert tree.proofs([5, 5, 0]) == [tree.proof(5), tree.proof(5), tree.proof(0)]
    nodes, lengths = tree.proofs_array([0, 76])
    assert nodes.shape[0] == 2 and set(lengths.tolist()) <= {6, 7}
    for i in (0, 3, 10, 76):
        assert verify_proof(tree.root, leaves[i], tree.proof_for_leaf(leaves[i]))
    with pytest.raises(ConfigError, match="not in this tree"):
        tree.proof_for_leaf(keccak256(b"absent"))
    with pytest.raises(ConfigError):
        tree.proof(77)
    with pytest.raises(ConfigError):
        tree.proofs([-1])
    assert not tree.nodes.flags.writeable


def test_tree_argument_checks() -> None:
    with pytest.raises(ConfigError, match="at least one"):
        MerkleTree.from_leaf_hashes(np.zeros((0, 32), np.uint8))
    with pytest.raises(ConfigError):
        MerkleTree.from_leaf_hashes(np.zeros((3, 31), np.uint8))


def test_malformed_proofs_raise_receipt_error() -> None:
    leaf, node = keccak256(b"a"), keccak256(b"b")
    root = hash_pair(leaf, node)
    assert verify_proof(root, leaf, [node]) and verify_proof(root, leaf, (bytearray(node),))
    for bad in ([node[:31]], [node + b"\x00"], [node.hex()], [None], node, "0x" + node.hex()):
        with pytest.raises(ReceiptError):
            verify_proof(root, leaf, bad)  # type: ignore[arg-type]
    with pytest.raises(ReceiptError, match="leaf"):
        process_proof(leaf[:20], [node])
    with pytest.raises(ReceiptError, match="root"):
        verify_proof(root[:31], leaf, [node])


def _build_batch(
    rng: np.random.Generator, sizes: list[int]
) -> tuple[list[dict[str, object]], MerkleTree]:
    """Partitions of the given sizes, their trees, and the batch tree over their roots."""
    parts = []
    for size in sizes:
        p = _random_partition(rng, size)
        p["leaves"] = leaf_hashes(*p["ids"], p["row_index"], p["ins"], p["outs"])
        p["tree"] = MerkleTree.from_leaf_hashes(p["leaves"])
        parts.append(p)
    roots = np.stack([np.frombuffer(p["tree"].root, dtype=np.uint8) for p in parts])
    return parts, MerkleTree.from_leaf_hashes(roots)


@settings(max_examples=15, deadline=None)
@given(
    total=st.integers(min_value=1, max_value=300),
    cuts=st.lists(st.floats(min_value=0, max_value=1), max_size=6),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
)
def test_composed_proofs_verify_against_batch_root(
    total: int, cuts: list[float], seed: int
) -> None:
    rng = np.random.default_rng(seed)
    bounds = sorted({0, total, *(int(c * total) for c in cuts)})
    sizes = [b - a for a, b in itertools.pairwise(bounds) if b > a]
    parts, batch = _build_batch(rng, sizes)
    for p_index, p in enumerate(parts):
        batch_proof = batch.proof(p_index)
        assert verify_proof(batch.root, p["tree"].root, batch_proof)
        for i, partition_proof in enumerate(p["tree"].proofs(range(p["tree"].size))):
            leaf = p["leaves"][i].tobytes()
            proof = compose_proof(partition_proof, batch_proof)
            assert proof == partition_proof + batch_proof
            assert verify_proof(batch.root, leaf, proof)
            if proof:
                bad = [*proof[:-1], keccak256(proof[-1])]
                assert not verify_proof(batch.root, leaf, bad)


# -- the real JS library ---------------------------------------------------------------


def _hex(b: bytes) -> str:
    return "0x" + b.hex()


def _values(p: dict[str, object]) -> list[list[str]]:
    ids = [_hex(x) for x in p["ids"]]
    return [
        [
            *ids,
            str(int(p["row_index"][i])),
            _hex(p["ins"][i].tobytes()),
            _hex(p["outs"][i].tobytes()),
        ]
        for i in range(len(p["row_index"]))
    ]


def test_matches_openzeppelin_js(tmp_path: Path) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("`node` binary not on PATH: cannot cross-check with @openzeppelin/merkle-tree")
    if not OZ_PACKAGE.exists():
        pytest.skip(f"{OZ_PACKAGE.parent} is missing: run `npm install` to cross-check with OZ")

    rng = np.random.default_rng(2024)
    single = _random_partition(rng, 37)
    single["row_index"][:3] = [0, 2**64 - 1, 1]
    leaves = leaf_hashes(*single["ids"], single["row_index"], single["ins"], single["outs"])
    tree = MerkleTree.from_leaf_hashes(leaves)

    parts, batch = _build_batch(rng, [1, 2, 13, 6, 21])
    multi_parts = []
    for p_index, p in enumerate(parts):
        batch_proof = batch.proof(p_index)
        proofs = [compose_proof(pp, batch_proof) for pp in p["tree"].proofs(range(p["tree"].size))]
        multi_parts.append(
            {
                "values": _values(p),
                "root": _hex(p["tree"].root),
                "proofs": [[_hex(x) for x in proof] for proof in proofs],
            }
        )
    case = {
        "types": list(LEAF_TYPES),
        "single": {
            "values": _values(single),
            "root": _hex(tree.root),
            "proofs": [[_hex(x) for x in proof] for proof in tree.proofs(range(tree.size))],
        },
        "multi": {"batch_root": _hex(batch.root), "partitions": multi_parts},
        # The dataset commitment: rows 0..n-1 with their input hashes (docs/spec.md §4.1).
        "inputs": {
            "values": [[str(i), "0x" + bytes(h).hex()] for i, h in enumerate(single["ins"])],
            "root": input_root(single["ins"]),
        },
    }
    case_file = tmp_path / "case.json"
    case_file.write_text(json.dumps(case))
    proc = subprocess.run(
        [node, str(JS_CHECK), str(case_file)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, f"JS cross-check failed:\n{proc.stdout}\n{proc.stderr}"
    assert "ok" in proc.stdout

    # and the check itself can fail: a wrong root must be reported
    case["single"]["root"] = _hex(keccak256(b"wrong"))
    case_file.write_text(json.dumps(case))
    proc = subprocess.run(
        [node, str(JS_CHECK), str(case_file)], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode != 0 and "root mismatch" in proc.stderr
    case["single"]["root"] = _hex(tree.root)
    case["inputs"]["root"] = _hex(keccak256(b"wrong"))
    case_file.write_text(json.dumps(case))
    proc = subprocess.run(
        [node, str(JS_CHECK), str(case_file)], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode != 0 and "input root mismatch" in proc.stderr
