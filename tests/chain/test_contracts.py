"""ogkit's settlement contracts on an in-process eth-tester chain: real transactions, real
EIP-712 signatures (eth-account), real Merkle trees, time travel for the windows."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils import keccak
from web3.logs import DISCARD

from ogkit.attest import BatchClaim, ClaimDomain
from ogkit.chain import bindings
from ogkit.chain.bindings import OPG, BatchStatus, load_compiled
from ogkit.chain.deployments import Deployment, DeployParams, deploy_contracts
from ogkit.chain.rpc import decode_revert
from ogkit.chain.transactions import transact
from ogkit.errors import ConfigError, SettlementError

from .conftest import (
    OTHER_RUNTIME_ID,
    RUNTIME_ID,
    TEST_PARAMS,
    Actors,
    MerkleTree,
    advance,
    claim_tuple,
    claim_typed_data,
    now,
    path_root,
    receipt_leaf,
    sign_claim,
)

REPO = Path(__file__).resolve().parents[2]
MODEL_ID = keccak(b"tiny-mlp.onnx bytes")
PRICE = 1 * OPG
VERIFIER_STAKES = (1_000 * OPG, 2_000 * OPG, 3_000 * OPG)
NODE_STAKE = 1_000 * OPG
DELEGATIONS = (600 * OPG, 400 * OPG)
BPS = 10_000


# --------------------------------------------------------------------------- helpers


def send(w3: Any, fn: Any, sender: Any) -> Any:
    return transact(w3, fn, sender)


def expect_revert(w3: Any, fn: Any, sender: Any, error: str) -> SettlementError:
    """Send ``fn`` and assert it reverts with custom error ``error`` (decoded)."""
    with pytest.raises(SettlementError) as info:
        transact(w3, fn, sender)
    reason = info.value.reason or ""
    assert reason.split("(")[0] == error, reason
    return info.value


def balance(d: Deployment, who: str) -> int:
    return int(d.token.functions.balanceOf(who).call())


def balances(d: Deployment, *who: str) -> dict[str, int]:
    return {w: balance(d, w) for w in who}


def split(price: int, rows: int, p: DeployParams = TEST_PARAMS) -> tuple[int, int, int]:
    payment = price * rows
    return payment, payment * p.node_fee_bps // BPS, payment * p.verifier_fee_bps // BPS


def events(contract: Any, name: str, receipt: Any) -> list[Any]:
    return list(getattr(contract.events, name)().process_receipt(receipt, errors=DISCARD))


@dataclass
class Batch:
    batch_id: bytes
    rows: list[tuple[int, bytes, bytes]]  # (row index, input hash, output hash)
    leaves: list[bytes]
    tree: MerkleTree
    claim: dict[str, Any]
    signature: bytes
    artifact_id: bytes


def make_batch(
    w3: Any,
    d: Deployment,
    a: Actors,
    *,
    rows: int = 5,
    tag: bytes = b"batch-1",
    model_id: bytes = MODEL_ID,
    runtime_id: bytes = RUNTIME_ID,
    attester: Any = None,
    signer: Any = None,
) -> Batch:
    """A batch of ``rows`` receipts, its Merkle tree and the attester's signed claim."""
    attester = attester or a.attester
    batch_id = keccak(b"batch " + tag)
    data = [
        (i, keccak(tag + b" input %d" % i), keccak(tag + b" output %d" % i)) for i in range(rows)
    ]
    leaves = [receipt_leaf(batch_id, model_id, runtime_id, i, x, y) for i, x, y in data]
    tree = MerkleTree(leaves)
    claim = {
        "batchId": batch_id,
        "modelId": model_id,
        "runtimeId": runtime_id,
        "batchRoot": tree.root,
        "rowCount": rows,
        "requester": a.requester,
        "timestamp": now(w3),
        "attester": attester.address,
    }
    signature = sign_claim(d, claim, (signer or attester).key)
    return Batch(batch_id, data, leaves, tree, claim, signature, keccak(b"artifact " + tag))


def commit_fn(d: Deployment, b: Batch) -> Any:
    return d.settlement.functions.commitBatch(claim_tuple(b.claim), b.signature, b.artifact_id)


def commit(w3: Any, d: Deployment, a: Actors, b: Batch, sender: str | None = None) -> Any:
    return send(w3, commit_fn(d, b), sender or a.node)


def fund(w3: Any, d: Deployment, a: Actors) -> None:
    plan = [
        (a.requester, 100_000),
        (a.node, 10_000),
        (a.node2, 10_000),
        (a.challenger, 1_000),
        *[(v, 10_000) for v in a.verifiers],
        *[(x, 5_000) for x in a.delegators],
    ]
    for who, amount in plan:
        send(w3, d.token.functions.transfer(who, amount * OPG), a.deployer)


def stake_node(w3: Any, d: Deployment, who: str, role: int, amount: int, attester: Any, m: bytes):
    send(w3, d.token.functions.approve(d.node_registry.address, amount), who)
    address = attester.address if attester is not None else "0x" + "00" * 20
    return send(w3, d.node_registry.functions.registerNode(role, amount, address, m), who)


def delegate(w3: Any, d: Deployment, who: str, node: str, amount: int) -> Any:
    send(w3, d.token.functions.approve(d.node_registry.address, amount), who)
    return send(w3, d.node_registry.functions.delegate(node, amount), who)


def setup_world(w3: Any, d: Deployment, a: Actors) -> None:
    """Funded actors, a staked inference node with two delegators, three verifiers with
    stakes 1000/2000/3000 OPG, a registered model, and a requester allowance."""
    fund(w3, d, a)
    stake_node(w3, d, a.node, 1, NODE_STAKE, a.attester, RUNTIME_ID)
    for who, amount in zip(a.delegators, DELEGATIONS, strict=True):
        delegate(w3, d, who, a.node, amount)
    for v, amount in zip(a.verifiers, VERIFIER_STAKES, strict=True):
        stake_node(w3, d, v, 2, amount, None, b"\x00" * 32)
    send(
        w3,
        d.model_registry.functions.registerModel(
            MODEL_ID, PRICE, "tiny-mlp", "1.0.0", keccak(b"manifest"), "hub://tiny-mlp/1.0.0"
        ),
        a.model_owner,
    )
    send(w3, d.token.functions.approve(d.settlement.address, 10_000 * OPG), a.requester)


def attest_all(w3: Any, d: Deployment, a: Actors, batch_id: bytes) -> list[Any]:
    return [send(w3, d.settlement.functions.attest(batch_id, True), v) for v in a.verifiers]


def challenge_fn(d: Deployment, b: Batch, row: int = 2, claimed: bytes | None = None) -> Any:
    i, x, y = b.rows[row]
    proof = b.tree.proof(b.leaves[row])
    claimed = claimed if claimed is not None else keccak(b"the honest output")
    return d.settlement.functions.challenge(b.batch_id, i, x, y, proof, claimed)


def open_challenge(w3: Any, d: Deployment, a: Actors, b: Batch) -> Any:
    send(
        w3,
        d.token.functions.approve(d.settlement.address, TEST_PARAMS.challenge_bond),
        a.challenger,
    )
    return send(w3, challenge_fn(d, b), a.challenger)


@pytest.fixture(scope="module")
def world(w3: Any, actors: Actors, deployment: Deployment) -> Deployment:
    setup_world(w3, deployment, actors)
    return deployment


@pytest.fixture(autouse=True)
def _isolated(request: pytest.FixtureRequest) -> None:
    """Every test here starts from the module's state (world set up or not) and leaves the
    chain as it found it."""
    request.getfixturevalue("chain_snapshot")


# --------------------------------------------------------------------------- life cycle


def test_full_life_cycle(w3: Any, tester: Any, actors: Actors) -> None:
    a = actors
    d = deploy_contracts(w3, a.deployer, TEST_PARAMS)  # its own token: balances start at zero
    assert d.token.functions.totalSupply().call() == 1_000_000_000 * OPG
    assert d.token.functions.balanceOf(a.deployer).call() == 1_000_000_000 * OPG
    assert (d.token.functions.name().call(), d.token.functions.symbol().call()) == (
        "OpenGradient Token",
        "OPG",
    )
    fund(w3, d, a)
    reg = d.node_registry

    # stake
    before = balances(d, a.node, reg.address)
    receipt = stake_node(w3, d, a.node, 1, NODE_STAKE, a.attester, RUNTIME_ID)
    assert balance(d, a.node) == before[a.node] - NODE_STAKE
    assert balance(d, reg.address) == before[reg.address] + NODE_STAKE
    (ev,) = events(reg, "NodeRegistered", receipt)
    assert ev.args.node == a.node and ev.args.attester == a.attester.address
    assert reg.functions.nodeOfAttester(a.attester.address).call() == a.node

    # delegate
    for who, amount in zip(a.delegators, DELEGATIONS, strict=True):
        b0 = balance(d, who)
        delegate(w3, d, who, a.node, amount)
        assert balance(d, who) == b0 - amount
        assert reg.functions.stakeOf(a.node, who).call() == amount
    role, attester, measurement, own, delegated, unbonding = reg.functions.getNode(a.node).call()
    assert (role, attester, measurement) == (1, a.attester.address, RUNTIME_ID)
    assert (own, delegated, unbonding) == (NODE_STAKE, sum(DELEGATIONS), 0)
    assert reg.functions.totalStake(a.node).call() == NODE_STAKE + sum(DELEGATIONS)
    for v, amount in zip(a.verifiers, VERIFIER_STAKES, strict=True):
        stake_node(w3, d, v, 2, amount, None, b"\x00" * 32)
    assert reg.functions.totalRoleStake(2).call() == sum(VERIFIER_STAKES)
    assert balance(d, reg.address) == NODE_STAKE + sum(DELEGATIONS) + sum(VERIFIER_STAKES)

    # register model
    receipt = send(
        w3,
        d.model_registry.functions.registerModel(
            MODEL_ID, PRICE, "tiny-mlp", "1.0.0", keccak(b"manifest"), "hub://tiny-mlp/1.0.0"
        ),
        a.model_owner,
    )
    assert d.model_registry.functions.getModel(MODEL_ID).call() == [
        a.model_owner,
        PRICE,
        False,
        "tiny-mlp",
        "1.0.0",
        keccak(b"manifest"),
    ]

    # requester approves exactly the quoted escrow
    rows = 5
    payment, node_fee, verifier_fee = split(PRICE, rows)
    escrow = payment + node_fee + verifier_fee
    assert d.settlement.functions.quote(MODEL_ID, rows).call() == [
        payment,
        node_fee,
        verifier_fee,
        escrow,
    ]
    send(w3, d.token.functions.approve(d.settlement.address, escrow), a.requester)

    # commit a batch signed (EIP-712) by the node's attester
    b = make_batch(w3, d, a, rows=rows)
    req0 = balance(d, a.requester)
    receipt = commit(w3, d, a, b)
    assert balance(d, a.requester) == req0 - escrow
    assert balance(d, d.settlement.address) == escrow
    (ev,) = events(d.settlement, "BatchCommitted", receipt)
    assert ev.args.batchId == b.batch_id and ev.args.node == a.node
    assert ev.args.batchRoot == b.tree.root and ev.args.rowCount == rows
    assert ev.args.escrow == escrow and ev.args.artifactId == b.artifact_id
    stored = list(d.settlement.functions.getBatch(b.batch_id).call())
    block = w3.eth.get_block(receipt["blockNumber"])
    assert stored[0] == a.requester
    assert stored[1:3] == [block["timestamp"], receipt["blockNumber"]]
    assert stored[3:6] == [a.node, rows, BatchStatus.PENDING]
    assert stored[6:12] == [
        MODEL_ID,
        RUNTIME_ID,
        b.tree.root,
        b.artifact_id,
        d.settlement.functions.hashClaim(claim_tuple(b.claim)).call(),
        PRICE,
    ]

    # every receipt of the batch verifies against the stored root
    for leaf in b.leaves:
        assert d.settlement.functions.verifyReceipt(b.batch_id, leaf, b.tree.proof(leaf)).call()

    # three verifiers attest pass
    for receipt in attest_all(w3, d, a, b.batch_id):
        (ev,) = events(d.settlement, "BatchAttested", receipt)
        assert ev.args["pass"] is True
    assert d.settlement.functions.passAttesters(b.batch_id).call() == list(a.verifiers)
    expect_revert(
        w3, d.settlement.functions.finalize(b.batch_id), a.outsider, "ChallengeWindowOpen"
    )

    # the window passes; finalise
    advance(tester, w3, TEST_PARAMS.challenge_window)
    who = [a.model_owner, a.node, a.requester, *a.verifiers, d.settlement.address]
    before = balances(d, *who)
    receipt = send(w3, d.settlement.functions.finalize(b.batch_id), a.outsider)
    after = balances(d, *who)
    total_weight = sum(VERIFIER_STAKES)
    shares = [verifier_fee * s // total_weight for s in VERIFIER_STAKES]
    dust = verifier_fee - sum(shares)
    assert dust == 1  # 0.25 OPG split 1:2:3 leaves one wei
    assert after[a.model_owner] - before[a.model_owner] == payment
    assert after[a.node] - before[a.node] == node_fee
    for v, share in zip(a.verifiers, shares, strict=True):
        assert after[v] - before[v] == share
    assert after[a.requester] - before[a.requester] == dust
    assert after[d.settlement.address] == 0
    (ev,) = events(d.settlement, "BatchFinalized", receipt)
    assert (ev.args.modelPayment, ev.args.nodeFee, ev.args.verifierFee) == (
        payment,
        node_fee,
        sum(shares),
    )
    assert ev.args.requesterRefund == dust
    assert len(events(d.settlement, "VerifierPaid", receipt)) == 3
    assert d.settlement.functions.statusOf(b.batch_id).call() == BatchStatus.FINALIZED
    # stakes are untouched by settlement
    assert reg.functions.totalStake(a.node).call() == NODE_STAKE + sum(DELEGATIONS)


def test_eip712_digest_matches_eth_account(w3: Any, world: Deployment, actors: Actors) -> None:
    d, a = world, actors
    b = make_batch(w3, d, a)
    typed = claim_typed_data(d, b.claim)
    signable = encode_typed_data(full_message=typed)
    digest = keccak(b"\x19" + signable.version + signable.header + signable.body)
    assert d.settlement.functions.hashClaim(claim_tuple(b.claim)).call() == digest
    assert d.settlement.functions.domainSeparator().call() == signable.header
    assert Account.recover_message(signable, signature=b.signature) == a.attester.address
    domain = d.settlement.functions.eip712Domain().call()
    assert domain[1:5] == ["ogkit", "1", d.chain_id, d.settlement.address]
    expected = (
        "BatchClaim(bytes32 batchId,bytes32 modelId,bytes32 runtimeId,bytes32 batchRoot,"
        "uint64 rowCount,address requester,uint64 timestamp,address attester)"
    )
    assert d.settlement.functions.BATCH_CLAIM_TYPEHASH().call() == keccak(expected.encode())


def test_commit_with_permit(w3: Any, world: Deployment, actors: Actors) -> None:
    d, a = world, actors
    send(w3, d.token.functions.approve(d.settlement.address, 0), a.requester)
    b = make_batch(w3, d, a, tag=b"permit")
    expect_revert(w3, commit_fn(d, b), a.node, "ERC20InsufficientAllowance")
    total = d.settlement.functions.quote(MODEL_ID, 5).call()[3]
    deadline = now(w3) + 3600
    permit = {
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
            "owner": a.requester,
            "spender": d.settlement.address,
            "value": total,
            "nonce": d.token.functions.nonces(a.requester).call(),
            "deadline": deadline,
        },
    }
    sig = Account.sign_message(encode_typed_data(full_message=permit), a.keys[a.requester])
    before = balance(d, a.requester)
    fn = d.settlement.functions.commitBatchWithPermit(
        claim_tuple(b.claim),
        b.signature,
        b.artifact_id,
        total,
        deadline,
        sig.v,
        sig.r.to_bytes(32, "big"),
        sig.s.to_bytes(32, "big"),
    )
    send(w3, fn, a.node)
    assert balance(d, a.requester) == before - total
    assert d.token.functions.nonces(a.requester).call() == 1
    assert d.settlement.functions.statusOf(b.batch_id).call() == BatchStatus.PENDING


# --------------------------------------------------------------------------- commit reverts


def test_commit_by_unregistered_node(w3: Any, world: Deployment, actors: Actors) -> None:
    b = make_batch(w3, world, actors)
    expect_revert(w3, commit_fn(world, b), actors.outsider, "NodeNotRegistered")


def test_commit_by_unstaked_node(w3: Any, world: Deployment, actors: Actors) -> None:
    d, a = world, actors
    send(w3, d.node_registry.functions.unstake(NODE_STAKE), a.node)  # all of its own stake
    assert d.node_registry.functions.getNode(a.node).call()[3] == 0
    err = expect_revert(w3, commit_fn(d, make_batch(w3, d, a)), a.node, "InsufficientStake")
    assert err.reason == f"InsufficientStake(available=0, required={TEST_PARAMS.min_node_stake})"


def test_commit_by_verifier(w3: Any, world: Deployment, actors: Actors) -> None:
    b = make_batch(w3, world, actors)
    expect_revert(w3, commit_fn(world, b), actors.verifiers[0], "NotInferenceNode")


def test_commit_unapproved_measurement(w3: Any, world: Deployment, actors: Actors) -> None:
    d, a = world, actors
    stake_node(w3, d, a.node2, 1, NODE_STAKE, a.attester2, OTHER_RUNTIME_ID)
    b = make_batch(w3, d, a, runtime_id=OTHER_RUNTIME_ID, attester=a.attester2)
    err = expect_revert(w3, commit_fn(d, b), a.node2, "MeasurementNotApproved")
    assert OTHER_RUNTIME_ID.hex() in err.reason


def test_commit_bad_signature(w3: Any, world: Deployment, actors: Actors) -> None:
    d, a = world, actors
    forged = make_batch(w3, d, a, signer=a.attester2)  # claims attester 1, signed by key 2
    expect_revert(w3, commit_fn(d, forged), a.node, "BadSignature")
    tampered = make_batch(w3, d, a)
    tampered.claim["rowCount"] = 50  # signed for 5 rows
    expect_revert(w3, commit_fn(d, tampered), a.node, "BadSignature")
    garbage = make_batch(w3, d, a)
    garbage.signature = b"\x01" * 65
    expect_revert(w3, commit_fn(d, garbage), a.node, "BadSignature")


def test_commit_attester_or_runtime_mismatch(w3: Any, world: Deployment, actors: Actors) -> None:
    d, a = world, actors
    other = make_batch(w3, d, a, attester=a.attester2)  # validly signed, not the node's key
    expect_revert(w3, commit_fn(d, other), a.node, "AttesterMismatch")
    wrong_runtime = make_batch(w3, d, a, runtime_id=OTHER_RUNTIME_ID)
    expect_revert(w3, commit_fn(d, wrong_runtime), a.node, "RuntimeMismatch")


def test_commit_replayed_batch(w3: Any, world: Deployment, actors: Actors) -> None:
    d, a = world, actors
    commit(w3, d, a, make_batch(w3, d, a, tag=b"same", rows=5))
    again = make_batch(w3, d, a, tag=b"same", rows=7)  # same batch id, new root and signature
    expect_revert(w3, commit_fn(d, again), a.node, "BatchAlreadyCommitted")


def test_commit_replayed_signature(w3: Any, world: Deployment, actors: Actors) -> None:
    d, a = world, actors
    b = make_batch(w3, d, a)
    commit(w3, d, a, b)
    err = expect_revert(w3, commit_fn(d, b), a.node, "SignatureReplayed")
    digest = d.settlement.functions.hashClaim(claim_tuple(b.claim)).call()
    assert digest.hex() in err.reason


def test_commit_unknown_or_deprecated_model(w3: Any, world: Deployment, actors: Actors) -> None:
    d, a = world, actors
    unknown = make_batch(w3, d, a, model_id=keccak(b"no such model"))
    expect_revert(w3, commit_fn(d, unknown), a.node, "ModelNotFound")
    send(w3, d.model_registry.functions.deprecate(MODEL_ID), a.model_owner)
    expect_revert(w3, commit_fn(d, make_batch(w3, d, a)), a.node, "ModelIsDeprecated")


# --------------------------------------------------------------------------- attest, finalize


def test_finalize_early(w3: Any, world: Deployment, actors: Actors) -> None:
    d, a = world, actors
    b = make_batch(w3, d, a)
    commit(w3, d, a, b)
    attest_all(w3, d, a, b.batch_id)
    expect_revert(
        w3, d.settlement.functions.finalize(b.batch_id), a.outsider, "ChallengeWindowOpen"
    )


def test_finalize_twice(w3: Any, tester: Any, world: Deployment, actors: Actors) -> None:
    d, a = world, actors
    b = make_batch(w3, d, a)
    commit(w3, d, a, b)
    attest_all(w3, d, a, b.batch_id)
    advance(tester, w3, TEST_PARAMS.challenge_window)
    send(w3, d.settlement.functions.finalize(b.batch_id), a.outsider)
    expect_revert(w3, d.settlement.functions.finalize(b.batch_id), a.outsider, "AlreadyFinalized")
    expect_revert(
        w3, d.settlement.functions.attest(b.batch_id, True), a.verifiers[0], "AlreadyFinalized"
    )


def test_finalize_unknown_batch(w3: Any, world: Deployment, actors: Actors) -> None:
    fn = world.settlement.functions.finalize(keccak(b"nope"))
    expect_revert(w3, fn, actors.outsider, "BatchNotFound")


def test_no_quorum_then_expire(w3: Any, tester: Any, world: Deployment, actors: Actors) -> None:
    d, a = world, actors
    b = make_batch(w3, d, a)
    before = balance(d, a.requester)
    commit(w3, d, a, b)
    send(w3, d.settlement.functions.attest(b.batch_id, True), a.verifiers[2])  # 3000 of 6000
    send(w3, d.settlement.functions.attest(b.batch_id, False), a.verifiers[0])
    assert d.settlement.functions.attestationOf(b.batch_id, a.verifiers[0]).call() == [
        True,
        False,
        VERIFIER_STAKES[0],
    ]
    expect_revert(w3, d.settlement.functions.expire(b.batch_id), a.outsider, "ChallengeWindowOpen")
    advance(tester, w3, TEST_PARAMS.challenge_window)
    expect_revert(w3, d.settlement.functions.finalize(b.batch_id), a.outsider, "QuorumNotReached")
    receipt = send(w3, d.settlement.functions.expire(b.batch_id), a.outsider)
    assert balance(d, a.requester) == before
    (ev,) = events(d.settlement, "BatchRefunded", receipt)
    assert ev.args.amount == sum(split(PRICE, 5))
    assert d.settlement.functions.statusOf(b.batch_id).call() == BatchStatus.REFUNDED


def test_attest_by_non_verifier(w3: Any, world: Deployment, actors: Actors) -> None:
    d, a = world, actors
    b = make_batch(w3, d, a)
    commit(w3, d, a, b)
    for who in (a.outsider, a.node):
        err = expect_revert(w3, d.settlement.functions.attest(b.batch_id, True), who, "NotVerifier")
        assert who in err.reason


def test_attest_twice(w3: Any, world: Deployment, actors: Actors) -> None:
    d, a = world, actors
    b = make_batch(w3, d, a)
    commit(w3, d, a, b)
    send(w3, d.settlement.functions.attest(b.batch_id, True), a.verifiers[0])
    fn = d.settlement.functions.attest(b.batch_id, False)
    expect_revert(w3, fn, a.verifiers[0], "AlreadyAttested")


def test_attest_after_window(w3: Any, tester: Any, world: Deployment, actors: Actors) -> None:
    d, a = world, actors
    b = make_batch(w3, d, a)
    commit(w3, d, a, b)
    advance(tester, w3, TEST_PARAMS.challenge_window)
    fn = d.settlement.functions.attest(b.batch_id, True)
    expect_revert(w3, fn, a.verifiers[0], "ChallengeWindowClosed")


# --------------------------------------------------------------------------- challenges


def test_challenge_after_window(w3: Any, tester: Any, world: Deployment, actors: Actors) -> None:
    d, a = world, actors
    b = make_batch(w3, d, a)
    commit(w3, d, a, b)
    send(w3, d.token.functions.approve(d.settlement.address, 100 * OPG), a.challenger)
    advance(tester, w3, TEST_PARAMS.challenge_window)
    expect_revert(w3, challenge_fn(d, b), a.challenger, "ChallengeWindowClosed")


def test_challenge_needs_valid_evidence(w3: Any, world: Deployment, actors: Actors) -> None:
    d, a = world, actors
    b = make_batch(w3, d, a)
    commit(w3, d, a, b)
    send(w3, d.token.functions.approve(d.settlement.address, 100 * OPG), a.challenger)
    i, x, y = b.rows[1]
    proof = b.tree.proof(b.leaves[1])
    s = d.settlement.functions
    claimed = keccak(b"other")
    expect_revert(
        w3,
        s.challenge(b.batch_id, i, x, keccak(b"x"), proof, claimed),
        a.challenger,
        "InvalidProof",
    )
    expect_revert(
        w3, s.challenge(b.batch_id, 2, x, y, proof, claimed), a.challenger, "InvalidProof"
    )
    expect_revert(w3, s.challenge(b.batch_id, i, x, y, proof, y), a.challenger, "NoDiscrepancy")
    expect_revert(
        w3, s.challenge(b.batch_id, 5, x, y, proof, claimed), a.challenger, "RowOutOfRange"
    )
    # no vote without a dispute, and only one dispute at a time
    expect_revert(w3, s.resolveVote(b.batch_id, True), a.verifiers[0], "NoDispute")
    send(w3, s.challenge(b.batch_id, i, x, y, proof, claimed), a.challenger)
    expect_revert(w3, challenge_fn(d, b), a.challenger, "DisputeOpen")
    expect_revert(w3, s.resolveVote(b.batch_id, True), a.outsider, "NotVerifier")


def test_upheld_challenge_slashes_pro_rata(
    w3: Any, tester: Any, world: Deployment, actors: Actors
) -> None:
    d, a = world, actors
    reg, s = d.node_registry, d.settlement
    d1, d2 = a.delegators
    # d2 starts unbonding 200 OPG: unbonding stake stays slashable
    send(w3, reg.functions.undelegate(a.node, 200 * OPG), d2)
    unbonding_id = reg.functions.unbondingCount().call()
    b = make_batch(w3, d, a)
    req0, ch0 = balance(d, a.requester), balance(d, a.challenger)
    commit(w3, d, a, b)
    escrow = sum(split(PRICE, 5))
    receipt = open_challenge(w3, d, a, b)
    (ev,) = events(s, "ChallengeOpened", receipt)
    dispute_id = ev.args.disputeId
    assert s.functions.statusOf(b.batch_id).call() == BatchStatus.DISPUTED
    expect_revert(w3, s.functions.finalize(b.batch_id), a.outsider, "DisputeOpen")

    pool = reg.functions.slashableStake(a.node).call()
    assert pool == NODE_STAKE + sum(DELEGATIONS)  # 2000 OPG, 200 of it unbonding
    slash = pool * TEST_PARAMS.slash_bps // BPS  # 200 OPG
    reward = slash * TEST_PARAMS.challenger_reward_bps // BPS  # 100 OPG

    send(w3, s.functions.resolveVote(b.batch_id, True), a.verifiers[1])  # 2000 / 6000: not yet
    assert s.functions.statusOf(b.batch_id).call() == BatchStatus.DISPUTED
    expect_revert(w3, s.functions.resolveChallenge(b.batch_id), a.outsider, "NoSupermajority")
    fn = s.functions.resolveVote(b.batch_id, True)
    expect_revert(w3, fn, a.verifiers[1], "AlreadyVoted")
    receipt = send(w3, fn, a.verifiers[2])  # 5000 / 6000 >= 66.67 %: decides
    (ev,) = events(s, "ChallengeUpheld", receipt)
    assert (ev.args.slashed, ev.args.challengerReward, ev.args.requesterRefund) == (
        slash,
        reward,
        slash - reward,
    )
    (sl,) = events(reg, "Slashed", receipt)
    assert sl.args.amount == slash and sl.args.fromNode == 100 * OPG
    assert s.functions.getDispute(dispute_id).call()[3] == 1  # OUTCOME_UPHELD

    # every holder of the pool lost exactly 10 %
    assert reg.functions.stakeOf(a.node, a.node).call() == 900 * OPG
    assert reg.functions.stakeOf(a.node, d1).call() == 540 * OPG
    assert reg.functions.stakeOf(a.node, d2).call() == 180 * OPG
    assert reg.functions.getUnbonding(unbonding_id).call()[4] == 180 * OPG
    assert reg.functions.getNode(a.node).call()[3:] == [900 * OPG, 720 * OPG, 180 * OPG]
    assert reg.functions.totalRoleStake(1).call() == 1_620 * OPG
    # the requester got its escrow back plus the rest of the slash; the challenger its bond
    # back plus the reward; nothing is left in settlement
    assert balance(d, a.requester) == req0 + (slash - reward)
    assert balance(d, a.challenger) == ch0 + reward
    assert balance(d, s.address) == 0
    assert s.functions.statusOf(b.batch_id).call() == BatchStatus.SLASHED
    (refund,) = events(s, "BatchRefunded", receipt)
    assert refund.args.amount == escrow + (slash - reward)
    # the slashed node is below its minimum own stake now
    expect_revert(w3, commit_fn(d, make_batch(w3, d, a, tag=b"next")), a.node, "InsufficientStake")
    # the unbonding delegator withdraws the slashed amount after the period
    advance(tester, w3, TEST_PARAMS.unbonding_period)
    before = balance(d, d2)
    send(w3, reg.functions.withdraw(unbonding_id), d2)
    assert balance(d, d2) == before + 180 * OPG


def test_rejected_challenge_loses_bond(
    w3: Any, tester: Any, world: Deployment, actors: Actors
) -> None:
    d, a = world, actors
    s = d.settlement
    b = make_batch(w3, d, a)
    commit(w3, d, a, b)
    ch0, node0 = balance(d, a.challenger), balance(d, a.node)
    open_challenge(w3, d, a, b)
    assert balance(d, a.challenger) == ch0 - TEST_PARAMS.challenge_bond
    send(w3, s.functions.resolveVote(b.batch_id, False), a.verifiers[1])
    receipt = send(w3, s.functions.resolveVote(b.batch_id, False), a.verifiers[2])
    (ev,) = events(s, "ChallengeRejected", receipt)
    assert ev.args.bondToNode == TEST_PARAMS.challenge_bond
    assert balance(d, a.challenger) == ch0 - TEST_PARAMS.challenge_bond
    assert balance(d, a.node) == node0 + TEST_PARAMS.challenge_bond
    assert s.functions.statusOf(b.batch_id).call() == BatchStatus.PENDING
    assert s.functions.openDispute(b.batch_id).call() == 0
    assert d.node_registry.functions.totalStake(a.node).call() == NODE_STAKE + sum(DELEGATIONS)
    # back to pending: the batch settles normally
    attest_all(w3, d, a, b.batch_id)
    advance(tester, w3, TEST_PARAMS.challenge_window)
    send(w3, s.functions.finalize(b.batch_id), a.outsider)
    assert s.functions.statusOf(b.batch_id).call() == BatchStatus.FINALIZED


def test_dispute_without_supermajority_is_voided(
    w3: Any, tester: Any, world: Deployment, actors: Actors
) -> None:
    d, a = world, actors
    s = d.settlement
    b = make_batch(w3, d, a)
    req0, ch0 = balance(d, a.requester), balance(d, a.challenger)
    commit(w3, d, a, b)
    open_challenge(w3, d, a, b)
    send(w3, s.functions.resolveVote(b.batch_id, True), a.verifiers[0])  # 1000 of 6000
    expect_revert(w3, s.functions.resolveChallenge(b.batch_id), a.outsider, "NoSupermajority")
    advance(tester, w3, TEST_PARAMS.challenge_window)
    receipt = send(w3, s.functions.resolveChallenge(b.batch_id), a.outsider)
    assert len(events(s, "ChallengeVoided", receipt)) == 1
    assert balance(d, a.requester) == req0 and balance(d, a.challenger) == ch0
    assert s.functions.statusOf(b.batch_id).call() == BatchStatus.REFUNDED


# --------------------------------------------------------------------------- receipts


def test_verify_receipt(w3: Any, world: Deployment, actors: Actors) -> None:
    d, a = world, actors
    b = make_batch(w3, d, a, rows=7)
    commit(w3, d, a, b)
    verify = d.settlement.functions.verifyReceipt
    for leaf in b.leaves:
        assert verify(b.batch_id, leaf, b.tree.proof(leaf)).call() is True
    leaf, proof = b.leaves[3], b.tree.proof(b.leaves[3])
    i, x, _ = b.rows[3]
    altered = receipt_leaf(b.batch_id, MODEL_ID, RUNTIME_ID, i, x, keccak(b"altered output"))
    assert verify(b.batch_id, altered, proof).call() is False
    assert verify(b.batch_id, leaf, [*proof[:-1], keccak(b"x")]).call() is False
    assert verify(b.batch_id, leaf, proof[:-1]).call() is False
    assert verify(keccak(b"unknown batch"), leaf, proof).call() is False
    # the contract's leaf helper agrees with the Python one
    assert (
        d.settlement.functions.receiptLeaf(
            b.batch_id, MODEL_ID, RUNTIME_ID, i, x, b.rows[3][2]
        ).call()
        == leaf
    )


def test_receipt_leaf_matches_spec_vector(world: Deployment) -> None:
    """docs/spec.md section 3.1 test vector, computed by the contract."""
    ids = [bytes([b]) * 32 for b in (1, 2, 3)]
    leaf = world.settlement.functions.receiptLeaf(*ids, 7, bytes([4]) * 32, bytes([5]) * 32).call()
    assert leaf.hex() == "3fd0c3acb4d162e9e77598214924e0ed6ae0f71b6f5925e65493db916f9ec79a"


def test_merkle_tree_matches_openzeppelin_js() -> None:
    node = shutil.which("node")
    lib = REPO / "node_modules" / "@openzeppelin" / "merkle-tree"
    if node is None or not lib.is_dir():
        pytest.skip("needs node and node_modules/@openzeppelin/merkle-tree (npm ci)")
    batch_id, model_id = keccak(b"js batch"), keccak(b"js model")
    rows = [(i, keccak(b"in%d" % i), keccak(b"out%d" % i)) for i in range(6)]
    tree = MerkleTree([receipt_leaf(batch_id, model_id, RUNTIME_ID, i, x, y) for i, x, y in rows])
    hexes = ["0x" + h.hex() for h in (batch_id, model_id, RUNTIME_ID)]
    values = [[*hexes, str(i), "0x" + x.hex(), "0x" + y.hex()] for i, x, y in rows]
    code = (
        "import { StandardMerkleTree } from '@openzeppelin/merkle-tree';\n"
        f"const t = StandardMerkleTree.of({json.dumps(values)}, "
        "['bytes32','bytes32','bytes32','uint256','bytes32','bytes32']);\n"
        "console.log(JSON.stringify({root: t.root, proof: t.getProof(2)}));\n"
    )
    # --eval modules resolve bare imports from the working directory's node_modules
    out = subprocess.run(
        [node, "--input-type=module", "-e", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    result = json.loads(out)
    assert result["root"] == "0x" + tree.root.hex()
    leaf = receipt_leaf(batch_id, model_id, RUNTIME_ID, *rows[2])
    assert result["proof"] == ["0x" + p.hex() for p in tree.proof(leaf)]


# --------------------------------------------------------------------------- governance


def test_measurement_revoked_by_governance(
    w3: Any, tester: Any, world: Deployment, actors: Actors
) -> None:
    d, a = world, actors
    reg = d.node_registry
    assert reg.functions.isMeasurementApproved(RUNTIME_ID).call()
    commit(w3, d, a, make_batch(w3, d, a, tag=b"before"))
    receipt = send(w3, reg.functions.propose(RUNTIME_ID, False), a.verifiers[0])
    (ev,) = events(reg, "ProposalCreated", receipt)
    pid = ev.args.proposalId
    send(w3, reg.functions.vote(pid, True), a.node)  # 2000 (own + delegated)
    send(w3, reg.functions.vote(pid, True), a.verifiers[2])  # 3000
    send(w3, reg.functions.vote(pid, False), a.verifiers[0])  # 1000
    expect_revert(w3, reg.functions.vote(pid, False), a.verifiers[0], "AlreadyVoted")
    expect_revert(w3, reg.functions.execute(pid), a.outsider, "VotingOpen")
    advance(tester, w3, TEST_PARAMS.governance_voting_delay)
    expect_revert(w3, reg.functions.vote(pid, True), a.verifiers[1], "VotingClosed")
    receipt = send(w3, reg.functions.execute(pid), a.outsider)
    (ev,) = events(reg, "MeasurementRevoked", receipt)
    assert ev.args.measurement == RUNTIME_ID and ev.args.proposalId == pid
    assert ev.args.blockNumber == receipt["blockNumber"] == ev.blockNumber
    assert not reg.functions.isMeasurementApproved(RUNTIME_ID).call()
    expect_revert(w3, reg.functions.execute(pid), a.outsider, "ProposalAlreadyExecuted")
    err = expect_revert(
        w3, commit_fn(d, make_batch(w3, d, a, tag=b"after")), a.node, "MeasurementNotApproved"
    )
    assert RUNTIME_ID.hex() in err.reason


def test_governance_approves_new_measurement(
    w3: Any, tester: Any, world: Deployment, actors: Actors
) -> None:
    d, a = world, actors
    reg = d.node_registry
    pid_fail = 1 + reg.functions.proposalCount().call()
    send(w3, reg.functions.propose(OTHER_RUNTIME_ID, True), a.node)
    pid = 1 + pid_fail
    send(w3, reg.functions.propose(OTHER_RUNTIME_ID, True), a.node)
    send(w3, reg.functions.vote(pid_fail, True), a.verifiers[0])  # 1000 of 8000: no quorum
    for v in a.verifiers[1:]:
        send(w3, reg.functions.vote(pid, True), v)  # 5000 of 8000
    advance(tester, w3, TEST_PARAMS.governance_voting_delay)
    expect_revert(w3, reg.functions.execute(pid_fail), a.outsider, "ProposalNotPassed")
    receipt = send(w3, reg.functions.execute(pid), a.outsider)
    assert len(events(reg, "MeasurementApproved", receipt)) == 1
    send(w3, reg.functions.setAttester(a.attester.address, OTHER_RUNTIME_ID), a.node)
    commit(w3, d, a, make_batch(w3, d, a, runtime_id=OTHER_RUNTIME_ID))
    # a passed proposal not executed in time expires
    send(w3, reg.functions.propose(keccak(b"late"), True), a.node)
    late = reg.functions.proposalCount().call()
    send(w3, reg.functions.vote(late, True), a.verifiers[2])
    advance(tester, w3, 2 * TEST_PARAMS.governance_voting_delay)
    expect_revert(w3, reg.functions.execute(late), a.outsider, "ProposalExpired")


def test_governance_vote_without_stake(w3: Any, world: Deployment, actors: Actors) -> None:
    d, a = world, actors
    reg = d.node_registry
    send(w3, reg.functions.propose(OTHER_RUNTIME_ID, True), a.node)
    pid = reg.functions.proposalCount().call()
    err = expect_revert(w3, reg.functions.vote(pid, True), a.outsider, "NoStake")
    assert a.outsider in err.reason
    expect_revert(
        w3, reg.functions.propose(OTHER_RUNTIME_ID, True), a.outsider, "NodeNotRegistered"
    )
    expect_revert(w3, reg.functions.vote(pid + 1, True), a.node, "UnknownProposal")


def test_bootstrap_is_owner_only_and_closable(w3: Any, world: Deployment, actors: Actors) -> None:
    d, a = world, actors
    reg = d.node_registry
    fn = reg.functions.bootstrapMeasurement(OTHER_RUNTIME_ID, True)
    expect_revert(w3, fn, a.outsider, "OwnableUnauthorizedAccount")
    receipt = send(w3, fn, a.deployer)
    (ev,) = events(reg, "MeasurementApproved", receipt)
    assert ev.args.proposalId == 0
    send(w3, reg.functions.closeBootstrap(), a.deployer)
    expect_revert(w3, fn, a.deployer, "BootstrapIsClosed")
    expect_revert(w3, reg.functions.setSettlement(a.outsider), a.deployer, "SettlementAlreadySet")


# --------------------------------------------------------------------------- staking


def test_staking_rules_and_unbonding(
    w3: Any, tester: Any, world: Deployment, actors: Actors
) -> None:
    d, a = world, actors
    reg = d.node_registry
    d1 = a.delegators[0]
    expect_revert(w3, reg.functions.unstake(500 * OPG), a.node, "InsufficientStake")
    expect_revert(w3, reg.functions.undelegate(a.node, 500 * OPG), a.node, "InsufficientStake")
    expect_revert(w3, reg.functions.undelegate(a.node, 601 * OPG), d1, "InsufficientStake")
    expect_revert(w3, reg.functions.undelegate(a.node, 1), a.outsider, "NoStake")
    receipt = send(w3, reg.functions.undelegate(a.node, 100 * OPG), d1)
    (ev,) = events(reg, "UnbondingStarted", receipt)
    uid = ev.args.unbondingId
    assert reg.functions.totalStake(a.node).call() == 1_900 * OPG  # unbonding has no weight
    assert reg.functions.slashableStake(a.node).call() == 2_000 * OPG  # but is slashable
    expect_revert(w3, reg.functions.withdraw(uid), d1, "StillUnbonding")
    expect_revert(w3, reg.functions.withdraw(uid), a.outsider, "NotUnbondingOwner")
    advance(tester, w3, TEST_PARAMS.unbonding_period)
    before = balance(d, d1)
    send(w3, reg.functions.withdraw(uid), d1)
    assert balance(d, d1) == before + 100 * OPG
    expect_revert(w3, reg.functions.withdraw(uid), d1, "UnknownUnbonding")
    assert reg.functions.slashableStake(a.node).call() == 1_900 * OPG
    # registration rules
    send(w3, d.token.functions.approve(reg.address, 10_000 * OPG), a.node2)
    rn = reg.functions.registerNode
    expect_revert(w3, rn(3, NODE_STAKE, a.attester2.address, RUNTIME_ID), a.node2, "InvalidRole")
    expect_revert(
        w3, rn(1, 999 * OPG, a.attester2.address, RUNTIME_ID), a.node2, "InsufficientStake"
    )
    expect_revert(
        w3, rn(1, NODE_STAKE, a.attester.address, RUNTIME_ID), a.node2, "AttesterAlreadyBound"
    )
    expect_revert(w3, rn(1, NODE_STAKE, "0x" + "00" * 20, RUNTIME_ID), a.node2, "ZeroAttester")
    expect_revert(
        w3, rn(1, NODE_STAKE, a.attester2.address, RUNTIME_ID), a.node, "NodeAlreadyRegistered"
    )
    expect_revert(w3, reg.functions.delegate(a.outsider, OPG), d1, "NodeNotRegistered")
    expect_revert(w3, reg.functions.slash(a.node, OPG, a.outsider), a.outsider, "NotSettlement")
    # adding stake
    send(w3, d.token.functions.approve(reg.address, 500 * OPG), a.node)
    send(w3, reg.functions.addStake(500 * OPG), a.node)
    assert reg.functions.stakeOf(a.node, a.node).call() == 1_500 * OPG


def test_model_registry(w3: Any, tester: Any, world: Deployment, actors: Actors) -> None:
    d, a = world, actors
    mr = d.model_registry
    args = (MODEL_ID, PRICE, "x", "2", keccak(b"m"), "uri")
    expect_revert(w3, mr.functions.registerModel(*args), a.outsider, "ModelAlreadyRegistered")
    zero = (b"\x00" * 32, *args[1:])
    expect_revert(w3, mr.functions.registerModel(*zero), a.outsider, "ZeroModelId")
    expect_revert(w3, mr.functions.setPrice(MODEL_ID, 0), a.outsider, "NotModelOwner")
    expect_revert(w3, mr.functions.deprecate(MODEL_ID), a.outsider, "NotModelOwner")
    assert mr.functions.manifestURIOf(MODEL_ID).call() == "hub://tiny-mlp/1.0.0"
    # the price is read at commit time and stored: a later change does not touch the batch
    b = make_batch(w3, d, a)
    commit(w3, d, a, b)
    receipt = send(w3, mr.functions.setPrice(MODEL_ID, 3 * PRICE), a.model_owner)
    (ev,) = events(mr, "PriceChanged", receipt)
    assert (ev.args.owner, ev.args.oldPrice, ev.args.newPrice) == (a.model_owner, PRICE, 3 * PRICE)
    attest_all(w3, d, a, b.batch_id)
    advance(tester, w3, TEST_PARAMS.challenge_window)
    before = balance(d, a.model_owner)
    send(w3, d.settlement.functions.finalize(b.batch_id), a.outsider)
    assert balance(d, a.model_owner) == before + 5 * PRICE
    receipt = send(w3, mr.functions.deprecate(MODEL_ID), a.model_owner)
    assert events(mr, "ModelDeprecated", receipt)[0].args.modelId == MODEL_ID
    assert mr.functions.getModel(MODEL_ID).call()[2] is True
    expect_revert(w3, mr.functions.setPrice(MODEL_ID, 1), a.model_owner, "ModelIsDeprecated")
    expect_revert(w3, mr.functions.getModel(keccak(b"?")), a.outsider, "ModelNotFound")


# --------------------------------------------------------------------------- gas


def execution_gas(tester: Any, contract: Any, fn_name: str, args: list[Any], sender: str) -> int:
    """Gas a call's own execution uses (what another contract pays to call it), without the
    transaction's intrinsic and calldata cost, measured by running the message in py-evm."""
    from eth.vm.message import Message
    from eth_utils import to_canonical_address

    state = tester.backend.chain.get_vm().state
    to = to_canonical_address(contract.address)
    origin = to_canonical_address(sender)
    data = bytes.fromhex(contract.encode_abi(fn_name, args=args)[2:])
    msg = Message(gas=5_000_000, to=to, sender=origin, value=0, data=data, code=state.get_code(to))
    ctx = state.get_transaction_context_class()(gas_price=10**9, origin=origin)
    computation = state.computation_class.apply_message(state, msg, ctx)
    assert computation.is_success
    return computation.get_gas_used()


def test_gas(w3: Any, tester: Any, world: Deployment, actors: Actors) -> None:
    """commitBatch is O(1) in rowCount; verifyReceipt grows with proof depth only."""
    d, a = world, actors
    s = d.settlement
    gas: dict[str, int] = {}
    send(w3, d.token.functions.approve(s.address, 10**9 * OPG), a.requester)
    send(w3, d.token.functions.transfer(a.requester, 10_000_000 * OPG), a.deployer)
    first = make_batch(w3, d, a, rows=4, tag=b"first")
    gas["commitBatch, first ever (4 rows)"] = commit(w3, d, a, first)["gasUsed"]
    small = make_batch(w3, d, a, rows=4, tag=b"small")
    gas["commitBatch (4 rows)"] = commit(w3, d, a, small)["gasUsed"]

    def big_batch(tag: bytes, depth: int) -> tuple[bytes, bytes, list[bytes]]:
        batch_id = keccak(b"batch " + tag)
        leaf = receipt_leaf(batch_id, MODEL_ID, RUNTIME_ID, 0, keccak(b"i"), keccak(b"o"))
        siblings = [keccak(tag + b"%d" % k) for k in range(depth)]
        claim = {
            "batchId": batch_id,
            "modelId": MODEL_ID,
            "runtimeId": RUNTIME_ID,
            "batchRoot": path_root(leaf, siblings),
            "rowCount": 2**depth,
            "requester": a.requester,
            "timestamp": now(w3),
            "attester": a.attester.address,
        }
        sig = sign_claim(d, claim, a.attester.key)
        fn = s.functions.commitBatch(claim_tuple(claim), sig, keccak(tag))
        gas[f"commitBatch (2^{depth} rows)"] = send(w3, fn, a.node)["gasUsed"]
        return batch_id, leaf, siblings

    proofs = {depth: big_batch(b"depth%d" % depth, depth) for depth in (10, 20)}
    for depth, (batch_id, leaf, siblings) in proofs.items():
        assert s.functions.verifyReceipt(batch_id, leaf, siblings).call() is True
        args = [batch_id, leaf, siblings]
        gas[f"verifyReceipt depth {depth} (execution)"] = execution_gas(
            tester, s, "verifyReceipt", args, a.outsider
        )
        tx = send(w3, s.functions.verifyReceipt(*args), a.outsider)
        gas[f"verifyReceipt depth {depth} (as a tx)"] = tx["gasUsed"]
    receipts = attest_all(w3, d, a, small.batch_id)
    for i, r in enumerate(receipts, start=1):
        gas[f"attest #{i}"] = r["gasUsed"]
    advance(tester, w3, TEST_PARAMS.challenge_window)
    receipt = send(w3, s.functions.finalize(small.batch_id), a.outsider)
    gas["finalize (3 pass verifiers)"] = receipt["gasUsed"]
    print("\ngas used:")
    for k, v in gas.items():
        print(f"  {k:<40} {v:>8,}")
    # O(1) in rows: only the calldata of rowCount and the root differ
    commits = [v for k, v in gas.items() if k.startswith("commitBatch (")]
    assert max(commits) - min(commits) < 200
    assert max(commits) < 300_000
    per_level = (
        gas["verifyReceipt depth 20 (execution)"] - gas["verifyReceipt depth 10 (execution)"]
    ) / 10
    assert per_level < 500
    assert gas["finalize (3 pass verifiers)"] < 200_000


# --------------------------------------------------------------------------- python helpers


def test_transact_reports_mined_revert_and_signs_locally(
    w3: Any, world: Deployment, actors: Actors
) -> None:
    d, a = world, actors
    fn = d.settlement.functions.finalize(keccak(b"nope"))
    with pytest.raises(SettlementError) as info:
        transact(w3, fn, a.outsider, gas=200_000)  # skips estimation: mined, status 0
    assert info.value.tx_hash is not None and info.value.tx_hash.startswith("0x")
    assert info.value.reason.startswith("BatchNotFound(")
    local = Account.from_key(a.keys[a.outsider])
    receipt = transact(w3, d.token.functions.approve(a.node, 5), local)
    assert receipt["status"] == 1
    assert d.token.functions.allowance(a.outsider, a.node).call() == 5


def test_decode_revert_variants() -> None:
    from eth_abi import encode
    from eth_tester.exceptions import TransactionFailed
    from web3.exceptions import ContractCustomError, ContractLogicError

    err_string = bytes.fromhex("08c379a0") + encode(["string"], ["plain reason"])
    assert decode_revert(TransactionFailed(f"execution reverted: {err_string!r}")) == "plain reason"
    panic = bytes.fromhex("4e487b71") + encode(["uint256"], [0x11])
    assert decode_revert(ContractLogicError("x", data="0x" + panic.hex())).startswith("Panic(0x11")
    selector = keccak(b"BadSignature()")[:4]
    assert (
        decode_revert(ContractCustomError("0x" + selector.hex(), data="0x" + selector.hex()))
        == "BadSignature()"
    )
    rpc = ValueError({"code": 3, "message": "execution reverted", "data": "0x" + selector.hex()})
    assert decode_revert(rpc) == "BadSignature()"
    assert decode_revert(TransactionFailed("execution reverted: 0xdeadbeef")).startswith(
        "unknown error 0xdeadbeef"
    )
    assert decode_revert(TransactionFailed("execution reverted: out of stock")) == "out of stock"
    assert decode_revert(ConnectionError("connection refused")) is None


def test_artifacts_and_params() -> None:
    for name in bindings.CONTRACT_NAMES:
        art = load_compiled(name)
        assert art["contractName"] == name and art["bytecode"].startswith("0x")
    with pytest.raises(ConfigError):
        load_compiled("Nope")
    with pytest.raises(ConfigError):
        DeployParams(quorum_bps=0)
    with pytest.raises(ConfigError):
        DeployParams(slash_bps=10_000)
    b32, address = "0x" + "00" * 32, "0x" + "11" * 20
    short_id = BatchClaim("0x" + "00" * 31, b32, b32, b32, 1, address, 0, address)
    with pytest.raises(ConfigError):
        short_id.typed_data(ClaimDomain(1, address))
