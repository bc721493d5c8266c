"""Fixtures for the contract tests: an in-process eth-tester chain (py-evm) with 16 funded
accounts, a fresh deployment of the contracts per test module, chain snapshots so that every
test starts from the same state, and helpers for time travel, sending transactions, the
EIP-712 messages ogkit signs (job orders, claims, verdicts, model registrations, attester
bindings, ERC-2612 permits), committing a batch through a signed order, and OpenZeppelin
SimpleMerkleTree-compatible receipt trees.

The signing helpers build their messages with ogkit's own definitions (:mod:`ogkit.order`,
:mod:`ogkit.attest`, :mod:`ogkit.verdict`, :mod:`ogkit.settle`), so a contract test that
passes also checks that the Python side signs what the contracts verify."""

from __future__ import annotations

import socket
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from eth_abi import encode as abi_encode
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils import keccak
from web3.logs import DISCARD

from ogkit.attest import BatchClaim, ClaimDomain
from ogkit.chain.bindings import CONTRACT_NAMES, OPG, load_compiled
from ogkit.chain.deployments import Deployment, DeployParams, deploy_contracts
from ogkit.chain.transactions import transact
from ogkit.errors import SettlementError
from ogkit.keys import Signer
from ogkit.order import JobOrder
from ogkit.settle import attester_binding_typed_data, registration_typed_data
from ogkit.verdict import SignedVerdict, sign_verdict

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

BPS = 10_000
ZERO_ADDRESS = "0x" + "00" * 20
ZERO32 = b"\x00" * 32
KIND_SOFTWARE, KIND_TDX, KIND_SGX, KIND_NITRO = 1, 2, 3, 4
ROLE_INFERENCE, ROLE_VERIFIER = 1, 2

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
    collateral_bps=100_000,
    min_slash=100 * OPG,
    challenger_reward_bps=5_000,
    verifier_slash_bps=1_000,
    claim_max_age=24 * 3600,
    governance_voting_delay=24 * 3600,
    governance_quorum_bps=5_000,
    production=False,
    initial_measurements=(RUNTIME_ID,),
    initial_kinds=(KIND_SOFTWARE,),
)
"""The documented defaults, except a smaller minimum slash (100 OPG) and claim age (1 day),
so that both branches of ``max(collateral, minSlash)`` are reachable with small batches."""


@dataclass(frozen=True)
class Actors:
    """Named eth-tester accounts (unlocked; their keys are 1..16) plus unfunded attesters."""

    deployer: str
    requester: str
    node: str
    node2: str
    verifiers: tuple[str, str, str]
    delegators: tuple[str, str]
    model_owner: str
    challenger: str
    outsider: str
    relayer: str  # submits other accounts' signed messages (registrations)
    spare: tuple[str, ...]
    attester: Any  # eth_account LocalAccount: the inference node's enclave key
    attester2: Any
    keys: dict[str, bytes]  # address -> private key, for EIP-712 messages and local signing

    def signer(self, address: str) -> Signer:
        """An ogkit :class:`~ogkit.keys.Signer` of one of the funded accounts."""
        return Signer(address, Account.from_key(self.keys[address]))


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
        relayer=accounts[12],
        spare=tuple(accounts[13:NUM_ACCOUNTS]),
        attester=Account.from_key(keccak(b"ogkit test attester 1")),
        attester2=Account.from_key(keccak(b"ogkit test attester 2")),
        keys=keys,
    )


@pytest.fixture(scope="module")
def deployment(w3: Any, actors: Actors) -> Deployment:
    """A fresh deployment per test module (the deployer holds the 189.5M liquid OPG)."""
    return deploy_contracts(w3, actors.deployer, TEST_PARAMS)


@pytest.fixture
def chain_snapshot(tester: Any) -> Iterator[None]:
    """Revert the chain (state and time) to where it was before the test."""
    snapshot = tester.take_snapshot()
    yield
    tester.revert_to_snapshot(snapshot)


# --------------------------------------------------------------------------- time, sending


def now(w3: Any) -> int:
    return int(w3.eth.get_block("latest")["timestamp"])


def advance(tester: Any, w3: Any, seconds: int) -> int:
    """Mine a block ``seconds`` after the latest one; returns its timestamp."""
    target = now(w3) + seconds
    tester.time_travel(target)
    return target


def mine(tester: Any, blocks: int = 1) -> None:
    """Mine ``blocks`` empty blocks (a checkpoint of this block becomes readable)."""
    tester.mine_blocks(blocks)


GAS = 8_000_000
"""Gas limit of :func:`send`: a fixed limit skips estimation, so py-evm runs each transaction
once (a revert is then mined and still raises :class:`SettlementError` with its reason)."""


def send(w3: Any, fn: Any, sender: Any) -> Any:
    """Send a contract call as a transaction and wait for its receipt."""
    return transact(w3, fn, sender, gas=GAS)


@cache
def _string_errors() -> frozenset[str]:
    """Custom errors of the contracts whose only argument is a string."""
    names = set()
    for contract in CONTRACT_NAMES:
        for item in load_compiled(contract)["abi"]:
            inputs = item.get("inputs", [])
            if item["type"] == "error" and [i["type"] for i in inputs] == ["string"]:
                names.add(item["name"])
    return frozenset(names)


def revert_matches(reason: str, error: str) -> bool:
    """Whether a decoded revert ``reason`` is custom error ``error``.

    web3's EthereumTesterProvider decodes any revert data that reads as a selector and one
    string as ``Error(string)``, so on eth-tester ``InvalidParameter("x")`` or
    ``OrderMismatch("requester")`` arrive as the bare string ``x``: accept that for errors
    whose only argument is a string."""
    if reason.split("(")[0] == error:
        return True
    return error in _string_errors() and "(" not in reason and reason != ""


def expect_revert(w3: Any, fn: Any, sender: Any, error: str) -> SettlementError:
    """Send ``fn`` and assert it reverts with custom error ``error`` (decoded); the error's
    arguments are in the returned exception's ``reason``."""
    with pytest.raises(SettlementError) as info:
        transact(w3, fn, sender)
    reason = info.value.reason or ""
    assert revert_matches(reason, error), reason
    return info.value


def events(contract: Any, name: str, receipt: Any) -> list[Any]:
    """The ``name`` events ``contract`` emitted in ``receipt``."""
    return list(getattr(contract.events, name)().process_receipt(receipt, errors=DISCARD))


def balance(d: Deployment, who: str) -> int:
    return int(d.token.functions.balanceOf(who).call())


def balances(d: Deployment, *who: str) -> dict[str, int]:
    return {w: balance(d, w) for w in who}


def split(price: int, rows: int, p: DeployParams = TEST_PARAMS) -> tuple[int, int, int]:
    """(model payment, node fee, verifier fee) of a batch, as the contract splits it."""
    payment = price * rows
    return payment, payment * p.node_fee_bps // BPS, payment * p.verifier_fee_bps // BPS


def escrow_of(price: int, rows: int, p: DeployParams = TEST_PARAMS) -> int:
    return sum(split(price, rows, p))


def collateral_of(price: int, rows: int, p: DeployParams = TEST_PARAMS) -> int:
    return escrow_of(price, rows, p) * p.collateral_bps // BPS


# --------------------------------------------------------------------------- EIP-712


def digest_of(typed: Mapping[str, Any]) -> bytes:
    """The EIP-712 digest of a full typed-data message."""
    signable = encode_typed_data(full_message=dict(typed))
    return keccak(b"\x19" + signable.version + signable.header + signable.body)


def sign_typed(typed: Mapping[str, Any], key: Any) -> bytes:
    """65-byte EIP-712 signature of ``typed`` by ``key`` (bytes or a LocalAccount's key)."""
    signable = encode_typed_data(full_message=dict(typed))
    return bytes(Account.sign_message(signable, key).signature)


def domain_of(d: Deployment) -> ClaimDomain:
    """The settlement contract's EIP-712 domain (orders, claims, verdicts)."""
    return ClaimDomain(d.chain_id, d.settlement.address)


def claim_typed_data(deployment: Deployment, claim: dict[str, Any]) -> dict[str, Any]:
    """EIP-712 typed data of ``claim`` (the contract's field names, bytes32 values as bytes)
    for ``deployment``, built by ogkit's one definition of it (:mod:`ogkit.attest`)."""
    return batch_claim(claim).typed_data(domain_of(deployment))


def batch_claim(claim: dict[str, Any]) -> BatchClaim:
    """``claim`` (contract field names) as ogkit's :class:`~ogkit.attest.BatchClaim`."""
    return BatchClaim(
        batch_id="0x" + bytes(claim["batchId"]).hex(),
        model_id="0x" + bytes(claim["modelId"]).hex(),
        runtime_id="0x" + bytes(claim["runtimeId"]).hex(),
        batch_root="0x" + bytes(claim["batchRoot"]).hex(),
        row_count=claim["rowCount"],
        requester=claim["requester"],
        timestamp=claim["timestamp"],
        attester=claim["attester"],
    )


def sign_claim(deployment: Deployment, claim: dict[str, Any], key: Any) -> bytes:
    """EIP-712 signature of a BatchClaim, made the way ogkit's Python side makes it."""
    return sign_typed(claim_typed_data(deployment, claim), key)


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


def binding_signature(d: Deployment, node: str, attester: Any, measurement: bytes) -> bytes:
    """The attester's proof of possession for ``registerNode``/``setAttester``
    (:func:`ogkit.settle.attester_binding_typed_data`)."""
    typed = attester_binding_typed_data(
        d.chain_id, d.node_registry.address, node, attester.address, measurement
    )
    return sign_typed(typed, attester.key)


def _chain_of(d: Deployment) -> Any:
    """The little of a ``ChainClient`` that :func:`ogkit.settle.registration_typed_data` uses."""
    contracts = {
        "ModelRegistry": d.model_registry,
        "NodeRegistry": d.node_registry,
        "InferenceSettlement": d.settlement,
        "OPGToken": d.token,
    }
    return SimpleNamespace(chain_id=d.chain_id, contract=contracts.__getitem__)


def registration_data(
    d: Deployment, model_id: bytes, owner: str, price: int, manifest_hash: bytes, deadline: int
) -> dict[str, Any]:
    """The owner's EIP-712 ``ModelRegistration`` (:func:`ogkit.settle.registration_typed_data`)."""
    return registration_typed_data(
        _chain_of(d), "0x" + model_id.hex(), owner, price, "0x" + manifest_hash.hex(), deadline
    )


def registration_fn(
    d: Deployment,
    a: Actors,
    model_id: bytes,
    *,
    owner: str | None = None,
    price: int = OPG,
    name: str = "tiny-mlp",
    version: str = "1.0.0",
    manifest_hash: bytes | None = None,
    uri: str = "ogkit://manifests/tiny-mlp/1.0.0.json",
    deadline: int | None = None,
    signer: str | None = None,
) -> Any:
    """``registerModel`` with the owner's signature (or ``signer``'s, to forge one)."""
    owner = owner or a.model_owner
    manifest_hash = manifest_hash if manifest_hash is not None else keccak(b"manifest " + model_id)
    deadline = deadline if deadline is not None else 2**40
    typed = registration_data(d, model_id, owner, price, manifest_hash, deadline)
    signature = sign_typed(typed, a.keys[signer or owner])
    reg = (model_id, owner, price, manifest_hash, deadline, name, version, uri)
    return d.model_registry.functions.registerModel(reg, signature)


def signed_verdict(
    d: Deployment, a: Actors, verifier: str, batch_id: bytes, claim_digest: bytes, passed: bool
) -> SignedVerdict:
    """``verifier``'s verdict on a committed claim, signed by :func:`ogkit.verdict.sign_verdict`."""
    return sign_verdict(
        a.signer(verifier), domain_of(d), "0x" + batch_id.hex(), "0x" + claim_digest.hex(), passed
    )


def verdict_tuple(
    d: Deployment, a: Actors, verifier: str, batch_id: bytes, claim_digest: bytes, passed: bool
) -> tuple[str, bool, bytes]:
    """``Verdict(verifier, pass, signature)`` (what ``resolveChallenge``, ``claimDisputeReward``
    and ``slashPassAttester`` take) signed by ``verifier``."""
    return signed_verdict(d, a, verifier, batch_id, claim_digest, passed).as_tuple()


def permit_data(
    d: Deployment, owner: str, spender: str, value: int, nonce: int, deadline: int
) -> dict[str, Any]:
    """The ERC-2612 ``Permit`` of OPGToken ("OpenGradient Token", "1")."""
    return {
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"},
            ],
            "Permit": [
                {"name": "owner", "type": "address"},
                {"name": "spender", "type": "address"},
                {"name": "value", "type": "uint256"},
                {"name": "nonce", "type": "uint256"},
                {"name": "deadline", "type": "uint256"},
            ],
        },
        "primaryType": "Permit",
        "domain": {
            "name": "OpenGradient Token",
            "version": "1",
            "chainId": d.chain_id,
            "verifyingContract": d.token.address,
        },
        "message": {
            "owner": owner,
            "spender": spender,
            "value": value,
            "nonce": nonce,
            "deadline": deadline,
        },
    }


def sign_permit(
    d: Deployment, a: Actors, owner: str, spender: str, value: int, deadline: int
) -> tuple[int, int, bytes, bytes]:
    """``(deadline, v, r, s)`` of ``owner``'s permit for its current nonce."""
    nonce = d.token.functions.nonces(owner).call()
    sig = Account.sign_message(
        encode_typed_data(full_message=permit_data(d, owner, spender, value, nonce, deadline)),
        a.keys[owner],
    )
    return deadline, sig.v, sig.r.to_bytes(32, "big"), sig.s.to_bytes(32, "big")


# --------------------------------------------------------------------------- Merkle trees

LEAF_TYPES = ["uint256", "bytes32", "bytes32"]


def receipt_leaf(row: int, input_hash: bytes, output_hash: bytes) -> bytes:
    """The receipt leaf of docs/spec.md section 3.1, written here from the spec:
    keccak256(abi.encode(rowIndex, inputHash, outputHash)), one hash."""
    return keccak(abi_encode(LEAF_TYPES, [row, input_hash, output_hash]))


def hash_pair(a: bytes, b: bytes) -> bytes:
    """Sorted-pair hashing, as OpenZeppelin's MerkleProof."""
    return keccak(a + b) if a < b else keccak(b + a)


class MerkleTree:
    """The array layout of OpenZeppelin's SimpleMerkleTree (leaves sorted by hash)."""

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


# --------------------------------------------------------------------------- batches

MODEL_ID = keccak(b"tiny-mlp.onnx bytes")
PRICE = 1 * OPG
JOB = "classify"


@dataclass
class Batch:
    """A batch committed (or about to be) through a signed order: the order, the claim and
    their signatures, the receipt rows and their tree, and, once committed, the record."""

    order: JobOrder
    order_signature: bytes
    execution_hash: bytes
    batch_id: bytes
    rows: list[tuple[int, bytes, bytes]]  # (row index, input hash, output hash)
    leaves: list[bytes]
    tree: MerkleTree
    claim: dict[str, Any]
    signature: bytes
    artifact_id: bytes
    record: tuple[Any, ...] | None = None
    receipt: Any = None

    @property
    def rows_count(self) -> int:
        return int(self.claim["rowCount"])

    def proof(self, row: int) -> list[bytes]:
        return self.tree.proof(self.leaves[row])


def make_order(
    d: Deployment,
    a: Actors,
    *,
    requester: str | None = None,
    model_id: bytes = MODEL_ID,
    model_owner: str | None = None,
    dataset_id: bytes | None = None,
    job: str = JOB,
    max_rows: int = 5,
    max_price: int = PRICE,
    node: str | None = None,
    deadline: int = 2**40,
    nonce: int = 1,
) -> JobOrder:
    """An ogkit :class:`~ogkit.order.JobOrder` for this deployment (defaults: the world's
    requester, model, owner and node)."""
    return JobOrder(
        requester=requester or a.requester,
        model_id="0x" + model_id.hex(),
        model_owner=model_owner or a.model_owner,
        dataset_id="0x" + (dataset_id or keccak(b"dataset")).hex(),
        job=job,
        max_rows=max_rows,
        max_price_per_row=max_price,
        node=node or a.node,
        deadline=deadline,
        nonce=nonce,
        chain_id=d.chain_id,
        verifying_contract=d.settlement.address,
    )


def sign_order(a: Actors, order: JobOrder, signer: str | None = None) -> bytes:
    """The requester's (or ``signer``'s) EIP-712 signature of ``order``."""
    return sign_typed(order.typed_data(), a.keys[signer or order.requester])


def make_batch(
    w3: Any,
    d: Deployment,
    a: Actors,
    *,
    rows: int = 5,
    tag: bytes = b"batch-1",
    order: JobOrder | None = None,
    nonce: int = 1,
    runtime_id: bytes = RUNTIME_ID,
    attester: Any = None,
    signer: Any = None,
    timestamp: int | None = None,
    **order_fields: Any,
) -> Batch:
    """A batch of ``rows`` receipts for ``order`` (default: :func:`make_order` with
    ``max_rows=rows`` and ``order_fields``), its Merkle tree and the attester's signed claim.
    The execution hash (so the batch id) follows ``tag``."""
    attester = attester or a.attester
    if order is None:
        order_fields.setdefault("max_rows", rows)
        order = make_order(d, a, nonce=nonce, **order_fields)
    execution = keccak(b"execution " + tag)
    batch_id = bytes.fromhex(order.batch_id("0x" + execution.hex())[2:])
    model_id = bytes.fromhex(order.model_id[2:])
    data = [
        (i, keccak(tag + b" input %d" % i), keccak(tag + b" output %d" % i)) for i in range(rows)
    ]
    leaves = [receipt_leaf(i, x, y) for i, x, y in data]
    tree = MerkleTree(leaves)
    claim = {
        "batchId": batch_id,
        "modelId": model_id,
        "runtimeId": runtime_id,
        "batchRoot": tree.root,
        "rowCount": rows,
        "requester": order.requester,
        "timestamp": timestamp if timestamp is not None else now(w3),
        "attester": attester.address,
    }
    signature = sign_claim(d, claim, (signer or attester).key)
    return Batch(
        order=order,
        order_signature=sign_order(a, order),
        execution_hash=execution,
        batch_id=batch_id,
        rows=data,
        leaves=leaves,
        tree=tree,
        claim=claim,
        signature=signature,
        artifact_id=keccak(b"artifact " + tag),
    )


def commit_fn(d: Deployment, b: Batch) -> Any:
    return d.settlement.functions.commitBatch(
        b.order.as_tuple(),
        b.order_signature,
        claim_tuple(b.claim),
        b.signature,
        b.execution_hash,
        b.artifact_id,
    )


def record_of(receipt: Any, d: Deployment) -> tuple[Any, ...]:
    """The committed ``Record`` (ABI tuple) from a commit receipt's ``BatchCommitted``, read
    the way ogkit reads it (:func:`ogkit.chain.records.from_event`)."""
    from ogkit.chain.records import from_event

    (ev,) = events(d.settlement, "BatchCommitted", receipt)
    return from_event(ev).as_tuple


def commit(w3: Any, d: Deployment, a: Actors, b: Batch, sender: str | None = None) -> Any:
    """Commit ``b`` from ``sender`` (default the world's node); fills ``b.record``."""
    receipt = send(w3, commit_fn(d, b), sender or a.node)
    b.receipt = receipt
    b.record = record_of(receipt, d)
    return receipt


def sorted_verdicts(
    d: Deployment, a: Actors, b: Batch, verifiers: Any, passed: bool = True
) -> list[tuple[str, bool, bytes]]:
    """Signed ``Verdict`` tuples of ``verifiers`` on committed ``b``, sorted by address."""
    assert b.record is not None, "commit the batch first"
    digest = b.record[9]
    ordered = sorted(verifiers, key=lambda v: int(v, 16))
    return [verdict_tuple(d, a, v, b.batch_id, digest, passed) for v in ordered]


def pass_signatures(
    d: Deployment, a: Actors, b: Batch, verifiers: Any
) -> list[tuple[bytes, bytes]]:
    """What ``finalize`` takes: the EIP-2098 compact signatures
    (:meth:`ogkit.verdict.SignedVerdict.compact`) of ``verifiers``' pass verdicts on committed
    ``b``, sorted by signer address."""
    assert b.record is not None, "commit the batch first"
    ordered = sorted(verifiers, key=lambda v: int(v, 16))
    return [signed_verdict(d, a, v, b.batch_id, b.record[9], True).compact() for v in ordered]


def compact_signer(digest: bytes, compact: tuple[bytes, bytes]) -> str:
    """The address an EIP-2098 compact signature of ``digest`` recovers (as ``ECDSA`` does)."""
    from eth_keys import keys

    r, vs = compact
    vs_int = int.from_bytes(vs, "big")
    signature = keys.Signature(vrs=(vs_int >> 255, int.from_bytes(r, "big"), vs_int & (2**255 - 1)))
    return signature.recover_public_key_from_msg_hash(digest).to_checksum_address()
