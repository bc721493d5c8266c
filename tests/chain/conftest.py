"""Fixtures for the contract tests: an in-process eth-tester chain (py-evm) with 16 funded
accounts, a fresh deployment of the four contracts per test module, chain snapshots so that
every test starts from the same state, and helpers for time travel, EIP-712 signing and
OpenZeppelin StandardMerkleTree-compatible receipt trees."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from eth_abi import encode as abi_encode
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils import keccak

from ogkit.attest import BatchClaim, ClaimDomain
from ogkit.chain.bindings import OPG
from ogkit.chain.deployments import Deployment, DeployParams, deploy_contracts

ANVIL = Path(__file__).resolve().parents[2] / "node_modules" / ".bin" / "anvil"


def pytest_collection_modifyitems(config: Any, items: list[Any]) -> None:
    """Tests marked ``anvil`` need the npm-installed anvil; skip them, saying why, without it."""
    if ANVIL.exists():
        return
    skip = pytest.mark.skip(reason="anvil is not installed: run `make test` (it runs `make setup`)")
    for item in items:
        if "anvil" in item.keywords:
            item.add_marker(skip)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def devnet_port(monkeypatch: pytest.MonkeyPatch) -> int:
    """A free port for this test's devnet, exported as OGKIT_DEVNET_PORT."""
    port = free_port()
    monkeypatch.setenv("OGKIT_DEVNET_PORT", str(port))
    return port


NUM_ACCOUNTS = 16
"""eth-tester's PyEVMBackend funds 10 accounts unless its genesis state asks for more."""

RUNTIME_ID = keccak(b"ogkit software enclave runtime v1")
OTHER_RUNTIME_ID = keccak(b"ogkit software enclave runtime v2")

TEST_PARAMS = DeployParams(
    min_node_stake=1_000 * OPG,
    min_verifier_stake=1_000 * OPG,
    unbonding_period=7 * 24 * 3600,
    challenge_window=3600,
    quorum_bps=6667,
    node_fee_bps=1_000,
    verifier_fee_bps=500,
    challenge_bond=100 * OPG,
    slash_bps=1_000,
    challenger_reward_bps=5_000,
    governance_voting_delay=24 * 3600,
    governance_quorum_bps=5_000,
    initial_measurements=(RUNTIME_ID,),
)


@dataclass(frozen=True)
class Actors:
    """Named eth-tester accounts (unlocked; their keys are 1..16) plus an unfunded attester."""

    deployer: str
    requester: str
    node: str
    node2: str
    verifiers: tuple[str, str, str]
    delegators: tuple[str, str]
    model_owner: str
    challenger: str
    outsider: str
    attester: Any  # eth_account LocalAccount: the inference node's enclave key
    attester2: Any
    keys: dict[str, bytes]  # address -> private key, for ERC-2612 permits and local signing


@pytest.fixture(scope="module")
def tester() -> Any:
    from eth_tester import EthereumTester, PyEVMBackend

    state = PyEVMBackend.generate_genesis_state(num_accounts=NUM_ACCOUNTS)
    return EthereumTester(PyEVMBackend(genesis_state=state))


@pytest.fixture(scope="module")
def w3(tester: Any) -> Any:
    from web3 import EthereumTesterProvider, Web3

    return Web3(EthereumTesterProvider(tester))


@pytest.fixture(scope="module")
def actors(w3: Any) -> Actors:
    accounts = list(w3.eth.accounts)
    assert len(accounts) >= NUM_ACCOUNTS
    keys = {}
    for i, address in enumerate(accounts, start=1):
        key = i.to_bytes(32, "big")
        assert Account.from_key(key).address == address
        keys[address] = key
    return Actors(
        deployer=accounts[0],
        requester=accounts[1],
        node=accounts[2],
        node2=accounts[3],
        verifiers=(accounts[4], accounts[5], accounts[6]),
        delegators=(accounts[7], accounts[8]),
        model_owner=accounts[9],
        challenger=accounts[10],
        outsider=accounts[11],
        attester=Account.from_key(keccak(b"ogkit test attester 1")),
        attester2=Account.from_key(keccak(b"ogkit test attester 2")),
        keys=keys,
    )


@pytest.fixture(scope="module")
def deployment(w3: Any, actors: Actors) -> Deployment:
    """A fresh deployment per test module."""
    return deploy_contracts(w3, actors.deployer, TEST_PARAMS)


@pytest.fixture
def chain_snapshot(tester: Any) -> Iterator[None]:
    """Revert the chain (state and time) to where it was before the test."""
    snapshot = tester.take_snapshot()
    yield
    tester.revert_to_snapshot(snapshot)


# --------------------------------------------------------------------------- helpers


def now(w3: Any) -> int:
    return int(w3.eth.get_block("latest")["timestamp"])


def advance(tester: Any, w3: Any, seconds: int) -> int:
    """Mine a block ``seconds`` after the latest one; returns its timestamp."""
    target = now(w3) + seconds
    tester.time_travel(target)
    return target


def claim_typed_data(deployment: Deployment, claim: dict[str, Any]) -> dict[str, Any]:
    """EIP-712 typed data of ``claim`` (the contract's field names, bytes32 values as bytes)
    for ``deployment``, built by ogkit's one definition of it (:mod:`ogkit.attest`)."""
    batch_claim = BatchClaim(
        batch_id="0x" + bytes(claim["batchId"]).hex(),
        model_id="0x" + bytes(claim["modelId"]).hex(),
        runtime_id="0x" + bytes(claim["runtimeId"]).hex(),
        batch_root="0x" + bytes(claim["batchRoot"]).hex(),
        row_count=claim["rowCount"],
        requester=claim["requester"],
        timestamp=claim["timestamp"],
        attester=claim["attester"],
    )
    return batch_claim.typed_data(ClaimDomain(deployment.chain_id, deployment.settlement.address))


def sign_claim(deployment: Deployment, claim: dict[str, Any], key: Any) -> bytes:
    """EIP-712 signature of a BatchClaim, made the way ogkit's Python side makes it."""
    typed = claim_typed_data(deployment, claim)
    return bytes(Account.sign_message(encode_typed_data(full_message=typed), key).signature)


def claim_tuple(claim: dict[str, Any]) -> tuple[Any, ...]:
    return (
        claim["batchId"],
        claim["modelId"],
        claim["runtimeId"],
        claim["batchRoot"],
        claim["rowCount"],
        claim["requester"],
        claim["timestamp"],
        claim["attester"],
    )


LEAF_TYPES = ["bytes32", "bytes32", "bytes32", "uint256", "bytes32", "bytes32"]


def receipt_leaf(
    batch_id: bytes,
    model_id: bytes,
    runtime_id: bytes,
    row: int,
    input_hash: bytes,
    output_hash: bytes,
) -> bytes:
    """OpenZeppelin StandardMerkleTree leaf: keccak256(keccak256(abi.encode(values)))."""
    values = [batch_id, model_id, runtime_id, row, input_hash, output_hash]
    return keccak(keccak(abi_encode(LEAF_TYPES, values)))


def hash_pair(a: bytes, b: bytes) -> bytes:
    """Sorted-pair hashing, as OpenZeppelin's MerkleProof."""
    return keccak(a + b) if a < b else keccak(b + a)


class MerkleTree:
    """The array layout of OpenZeppelin's StandardMerkleTree (leaves sorted by hash)."""

    def __init__(self, leaves: list[bytes]) -> None:
        if not leaves:
            raise ValueError("empty tree")
        ordered = sorted(leaves)
        n = len(ordered)
        self.tree: list[bytes] = [b""] * (2 * n - 1)
        for i, leaf in enumerate(ordered):
            self.tree[len(self.tree) - 1 - i] = leaf
        for i in range(len(self.tree) - 1 - n, -1, -1):
            self.tree[i] = hash_pair(self.tree[2 * i + 1], self.tree[2 * i + 2])
        self._index = {leaf: len(self.tree) - 1 - i for i, leaf in enumerate(ordered)}

    @property
    def root(self) -> bytes:
        return self.tree[0]

    def proof(self, leaf: bytes) -> list[bytes]:
        i = self._index[leaf]
        out = []
        while i > 0:
            sibling = i + 1 if i % 2 == 1 else i - 1
            out.append(self.tree[sibling])
            i = (i - 1) // 2
        return out


def path_root(leaf: bytes, siblings: list[bytes]) -> bytes:
    """Root of a tree in which ``leaf`` has the proof ``siblings`` (a proof of any depth)."""
    node = leaf
    for s in siblings:
        node = hash_pair(node, s)
    return node
