"""Merkle trees: the one-hash leaves, OZ SimpleMerkleTree layout, proofs, composition, the
permutations a row costs, and the real JS library."""

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
from ogkit.crypto.keccak import RATE
from ogkit.crypto.merkle import (
    INPUT_LEAF_TAG,
    INPUT_LEAF_TYPES,
    input_leaf_hash,
    input_leaf_hashes,
    merkle_root,
)
from ogkit.dataset import input_root
from ogkit.errors import ConfigError, ReceiptError

REPO = Path(__file__).resolve().parents[1]
JS_CHECK = REPO / "tests" / "js" / "check_merkle.mjs"
OZ_PACKAGE = REPO / "node_modules" / "@openzeppelin" / "merkle-tree" / "package.json"


# The vectors docs/spec.md §3.1 and §4.1 quote (the JS check recomputes them with ethers).
SPEC_LEAF = "16426041c31ff066c891b50b778da61103e5cffa782003d91030ab110c282666"
SPEC_INPUT_LEAF = "9ba21ebefbd0279cda9d1c67032fadb0db0582a281ce54e6cd3f6d23023d0f48"
SPEC_INPUT_LEAF_TAG = "2119ef39f23c9ee764f15440909c60f3cc6cadeb36980f2fc8146c1b0a0b71d1"
SPEC_THREE_ROW_ROOT = "86dfac02640f5964acedd75be34ff8ac4fa0955ed72647e71f5e3237c7d50a89"
SPEC_THREE_ROW_INPUT_ROOT = "8824e446f8b9c392a5ea0a677e9ec2311459a216c2cc355de82edb4163aa92bf"


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
    row_index = rng.integers(0, 2**63, size=n, dtype=np.uint64)
    ins = rng.integers(0, 256, size=(n, 32), dtype=np.uint8)
    outs = rng.integers(0, 256, size=(n, 32), dtype=np.uint8)
    return {"row_index": row_index, "ins": ins, "outs": outs}


# -- leaves ------------------------------------------------------------------------------


def test_leaf_types() -> None:
    assert LEAF_TYPES == ("uint256", "bytes32", "bytes32")
    assert INPUT_LEAF_TYPES == ("bytes32", "uint256", "bytes32")
    assert keccak256(b"ogkit.input-leaf.v1") == INPUT_LEAF_TAG


def test_spec_vectors() -> None:
    """The test vectors quoted in docs/spec.md sections 3 and 4.1 (the JS check below
    computes the same leaves with ethers' AbiCoder and keccak256)."""
    leaf = leaf_hash(7, b"\x04" * 32, b"\x05" * 32)
    assert leaf.hex() == SPEC_LEAF
    assert input_leaf_hash(7, b"\x04" * 32).hex() == SPEC_INPUT_LEAF
    assert INPUT_LEAF_TAG.hex() == SPEC_INPUT_LEAF_TAG
    tree = MerkleTree.from_leaf_hashes(
        _as_rows([leaf_hash(i, bytes([4 + i]) * 32, bytes([5 + i]) * 32) for i in range(3)])
    )
    assert tree.root.hex() == SPEC_THREE_ROW_ROOT
    assert input_root(np.stack([np.full(32, 4 + i, np.uint8) for i in range(3)]))[2:] == (
        SPEC_THREE_ROW_INPUT_ROOT
    )
    leaves = [keccak256(bytes([i])) for i in (1, 2, 3)]
    tree = MerkleTree.from_leaf_hashes(_as_rows(leaves))
    assert tree.root.hex() == "eabc7452eee4f65d21a7edc9987de7047c7f2554db3dfeab6bff2d80e61c2022"
    assert [x.hex()[:8] for x in tree.proof(0)] == ["69c322e3", "f2ee15ea"]


def test_leaf_hashes_match_eth_abi_reference() -> None:
    rng = np.random.default_rng(11)
    p = _random_partition(rng, 40)
    idx = p["row_index"]
    idx[0], idx[1], idx[2] = 0, 2**64 - 1, 255  # edge values of the uint64 -> uint256 word
    out = leaf_hashes(idx, p["ins"], p["outs"])
    ins = input_leaf_hashes(idx, p["ins"])
    assert out.shape == (40, 32) and out.dtype == np.uint8 and ins.shape == (40, 32)
    for i in range(40):
        ref = leaf_hash(int(idx[i]), p["ins"][i].tobytes(), p["outs"][i].tobytes())
        assert out[i].tobytes() == ref
        assert ins[i].tobytes() == input_leaf_hash(int(idx[i]), p["ins"][i].tobytes())
    # signed indices are accepted when non-negative
    signed = leaf_hashes(np.arange(3, dtype=np.int64), p["ins"][:3], p["outs"][:3])
    unsigned = leaf_hashes(np.arange(3, dtype=np.uint64), p["ins"][:3], p["outs"][:3])
    assert np.array_equal(signed, unsigned)
    # a row leaf is never an input leaf of the same values (the tag tells them apart)
    assert not (out == ins).all(axis=1).any()


def test_leaf_argument_checks() -> None:
    z = bytes(32)
    rows = np.zeros((2, 32), np.uint8)
    with pytest.raises(ConfigError, match="row_index"):
        leaf_hashes(np.array([0, -1]), rows, rows)
    with pytest.raises(ConfigError, match="row_index"):
        leaf_hashes(np.array([0.0, 1.0]), rows, rows)
    with pytest.raises(ConfigError, match="output_hashes"):
        leaf_hashes(np.arange(2), rows, np.zeros((3, 32), np.uint8))
    with pytest.raises(ConfigError, match="input_hashes"):
        input_leaf_hashes(np.arange(2), np.zeros((2, 31), np.uint8))
    with pytest.raises(ConfigError, match="input_hash"):
        leaf_hash(0, b"\x01" * 31, z)  # eth_abi would silently pad this
    with pytest.raises(ConfigError, match="row_index"):
        leaf_hash(-1, z, z)
    with pytest.raises(ConfigError, match="row_index"):
        leaf_hash("7", z, z)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="row_index"):
        input_leaf_hash(2**256, z)


# -- permutations a row costs --------------------------------------------------------------


def _blocks(message_bytes: int) -> int:
    """Keccak-f[1600] permutations keccak256 spends on a message of this length: the pad
    adds at least one byte, and every full RATE-byte block is one permutation."""
    return message_bytes // RATE + 1


class _Counter:
    """Counts the Keccak-f[1600] permutations of every batched keccak256 call the leaf,
    tree and row-hash builders make, at the kernel's entry points."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from ogkit.crypto import encoding
        from ogkit.crypto import keccak as kmod
        from ogkit.crypto import merkle as mmod

        self.calls: list[tuple[str, int, int]] = []
        rows_fn, pairs_fn = kmod.keccak256_rows, kmod.keccak256_sorted_pairs
        words_fn = kmod.keccak256_words

        def rows(messages: np.ndarray) -> np.ndarray:
            self.calls.append(("rows", messages.shape[0], messages.shape[1]))
            return rows_fn(messages)

        def pairs(messages: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
            self.calls.append(("pairs", messages.shape[0], messages.shape[1]))
            return pairs_fn(messages, out=out)

        def words(ws: list[np.ndarray | bytes]) -> np.ndarray:
            out = words_fn(ws)
            self.calls.append(("rows", out.shape[0], 32 * len(ws)))  # one message a row
            return out

        def twice(messages: np.ndarray) -> np.ndarray:
            raise AssertionError("a leaf is hashed once: nothing may call keccak256_rows_twice")

        for module in (mmod, encoding):
            monkeypatch.setattr(module, "keccak256_rows", rows, raising=False)
            monkeypatch.setattr(module, "keccak256_rows_twice", twice, raising=False)
        monkeypatch.setattr(mmod, "keccak256_sorted_pairs", pairs)
        monkeypatch.setattr(mmod, "keccak256_words", words)

    @property
    def permutations(self) -> int:
        return sum(count * _blocks(width) for _, count, width in self.calls)


def _blocks(message_bytes: int) -> int:
    """Keccak-f[1600] permutations keccak256 spends on a message of this length: the pad
    adds at least one byte, and every full RATE-byte block is one permutation."""
    return message_bytes // RATE + 1


def test_every_leaf_is_one_permutation(monkeypatch: pytest.MonkeyPatch) -> None:
    """A row leaf and an input leaf are each one 96-byte message (one permutation), a
    tree node one 64-byte message, and nothing is hashed twice. A return to
    OpenZeppelin's double leaf hash, or to a leaf of RATE bytes or more, fails here."""
    count = _Counter(monkeypatch)
    n = 1000
    p = _random_partition(np.random.default_rng(3), n)
    leaves = leaf_hashes(p["row_index"], p["ins"], p["outs"])
    assert count.calls == [("rows", n, 96)] and count.permutations == n
    count.calls.clear()
    input_leaf_hashes(p["row_index"], p["ins"])
    assert count.calls == [("rows", n, 96)] and count.permutations == n
    count.calls.clear()
    MerkleTree.from_leaf_hashes(leaves)
    assert {(kind, width) for kind, _, width in count.calls} == {("pairs", 64)}
    assert count.permutations == n - 1  # one per internal node


def test_per_row_permutations_of_attesting_a_partition(monkeypatch: pytest.MonkeyPatch) -> None:
    """The per-row table of docs/spec.md §3.1, counted while a partition of a tabular
    model's rows (8 float32 features; a label and 3 probabilities) is attested and its
    input root built, as a node and a verifier both do: input hash 1, input leaf 1,
    input tree 1, output hash 1, row leaf 1, partition tree 1 — 6 a row (two trees of
    n - 1 nodes: 6n - 2 in all), where the earlier 192-byte double-hashed leaf cost 3
    alone and the 64-byte double-hashed input leaf 2 (9 a row)."""
    from ogkit.attest import attest_partition

    n = 500
    rng = np.random.default_rng(8)
    feeds = {"input": rng.standard_normal((n, 8)).astype(np.float32)}
    outputs = {
        "label": rng.integers(0, 3, n).astype(np.int64),
        "probabilities": rng.random((n, 3)).astype(np.float32),
    }
    count = _Counter(monkeypatch)
    att = attest_partition(offset=0, feeds=feeds, outputs=outputs)
    input_root(att.input_hashes)
    widths = sorted({width for kind, _, width in count.calls if kind == "rows"})
    assert all(_blocks(w) == 1 for w in widths), widths  # row hashes and leaves: one block
    assert count.permutations == 6 * n - 2
    assert _blocks(192) + 1 + _blocks(64) + 1 == 5  # the earlier two leaves, for the record


# -- trees and proofs ----------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    leaves=st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=200),
    data=st.data(),
)
def test_tree_properties(leaves: list[bytes], data: st.DataObject) -> None:
    tree = MerkleTree.from_leaf_hashes(_as_rows(leaves))
    plain = _plain_oz_tree(leaves)
    assert merkle_root(_as_rows(leaves)) == plain[0]  # the root alone, no tree kept
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


@pytest.mark.parametrize("n", [1, 2, 3, 32_767, 32_768, 32_769, 65_537, 200_001])
def test_threads_and_sorted_runs_give_the_same_root(n: int) -> None:
    """The input root's build (levels hashed by several threads, the leaves merged from
    sorted runs, only one level kept) gives the root of the whole tree, ties in the
    first eight bytes and duplicate leaves included."""
    from ogkit.dataset import sorted_leaf_run

    rng = np.random.default_rng(n)
    leaves = rng.integers(0, 256, size=(n, 32), dtype=np.uint8)
    if n > 20:
        leaves[7] = leaves[3]  # a duplicate leaf
        leaves[11, :8] = leaves[13, :8]  # a tie the first eight bytes cannot break
        leaves[11, 8:] = 0
    plain = MerkleTree.from_leaf_hashes(leaves)
    runs = np.concatenate([sorted_leaf_run(leaves[i : i + 5_000]) for i in range(0, n, 5_000)])
    for threads in (1, 2, 3, 4):
        assert merkle_root(leaves, threads=threads) == plain.root
        assert merkle_root(runs, threads=threads, sorted_runs=True) == plain.root
    if n <= 3:  # the one-thread build is itself checked against plain OZ above
        assert plain.root == _plain_oz_tree([row.tobytes() for row in leaves])[0]


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
    for bad in (np.zeros((0, 32), np.uint8), np.zeros((3, 31), np.uint8), np.zeros((3, 32))):
        with pytest.raises(ConfigError):
            merkle_root(bad)


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
        p["leaves"] = leaf_hashes(p["row_index"], p["ins"], p["outs"])
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
    return [
        [
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
    leaves = leaf_hashes(single["row_index"], single["ins"], single["outs"])
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
        "vectors": {
            "leaf": "0x" + SPEC_LEAF,
            "input_leaf": "0x" + SPEC_INPUT_LEAF,
            "input_leaf_tag": "0x" + SPEC_INPUT_LEAF_TAG,
            "three_row_root": "0x" + SPEC_THREE_ROW_ROOT,
            "three_row_input_root": "0x" + SPEC_THREE_ROW_INPUT_ROOT,
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
    case["inputs"]["root"] = input_root(single["ins"])
    case["vectors"]["leaf"] = _hex(keccak256(keccak256(bytes(96))))
    case_file.write_text(json.dumps(case))
    proc = subprocess.run(
        [node, str(JS_CHECK), str(case_file)], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode != 0 and "vector: leaf" in proc.stderr
