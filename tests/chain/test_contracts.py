"""ogkit's settlement contracts on an in-process eth-tester chain: real transactions, real
EIP-712 signatures made by ogkit's Python side, real Merkle trees, time travel for the
windows. Each contract's functions, their happy paths and their documented reverts, with
exact OPG amounts where the rules define them; the attacks are in test_threats.py."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from eth_abi import encode as abi_encode
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils import keccak

from ogkit.attest import BatchClaim, ClaimDomain, derive_batch_id
from ogkit.chain import bindings
from ogkit.chain.bindings import OPG, BatchStatus, load_compiled
from ogkit.chain.deployments import Deployment, DeployParams, deploy_contracts
from ogkit.chain.records import from_event, record_hash
from ogkit.chain.rpc import decode_revert
from ogkit.chain.tokenomics import TOTAL_SUPPLY, devnet_beneficiaries, plan_allocations
from ogkit.chain.transactions import transact
from ogkit.crypto.merkle import leaf_hash
from ogkit.errors import ChainError, ConfigError, SettlementError
from ogkit.order import ORDER_TYPE_STRING, SignedOrder
from ogkit.settle import claim_digest
from ogkit.verdict import SignedVerdict, verdict_typed_data

from .conftest import (
    BPS,
    KIND_NITRO,
    KIND_SGX,
    KIND_SOFTWARE,
    KIND_TDX,
    MODEL_ID,
    OTHER_RUNTIME_ID,
    PRICE,
    ROLE_INFERENCE,
    ROLE_VERIFIER,
    RUNTIME_ID,
    TEST_PARAMS,
    ZERO32,
    ZERO_ADDRESS,
    Actors,
    Batch,
    MerkleTree,
    advance,
    balance,
    balances,
    batch_claim,
    binding_signature,
    claim_tuple,
    claim_typed_data,
    collateral_of,
    commit,
    commit_fn,
    compact_signer,
    digest_of,
    domain_of,
    escrow_of,
    events,
    expect_revert,
    make_batch,
    make_order,
    mine,
    now,
    pass_signatures,
    path_root,
    receipt_leaf,
    registration_data,
    registration_fn,
    revert_matches,
    send,
    sign_claim,
    sign_order,
    sign_permit,
    signed_verdict,
    sorted_verdicts,
    split,
    verdict_tuple,
)

REPO = Path(__file__).resolve().parents[2]
VERIFIER_STAKES = (1_000 * OPG, 2_000 * OPG, 3_000 * OPG)
NODE_STAKE = 1_000 * OPG
DELEGATIONS = (600 * OPG, 400 * OPG)
POOL = NODE_STAKE + sum(DELEGATIONS)
WINDOW = TEST_PARAMS.challenge_window
BOND = TEST_PARAMS.challenge_bond
BURN = "0x000000000000000000000000000000000000dEaD"
HONEST = keccak(b"the honest output")
SALT = keccak(b"salt")


# --------------------------------------------------------------------------- helpers


def expect_call_revert(fn: Any, error: str) -> str:
    """Call the view ``fn`` and assert it reverts with custom error ``error`` (decoded)."""
    with pytest.raises(Exception) as info:  # eth-tester and web3 raise different types
        fn.call()
    reason = decode_revert(info.value) or ""
    assert revert_matches(reason, error), reason
    return reason


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


def register_fn(d: Deployment, who: str, role: int, amount: int, attester: Any, m: bytes) -> Any:
    if attester is None:
        return d.node_registry.functions.registerNode(role, amount, ZERO_ADDRESS, m, b"")
    proof = binding_signature(d, who, attester, m)
    return d.node_registry.functions.registerNode(role, amount, attester.address, m, proof)


def stake_node(
    w3: Any, d: Deployment, who: str, role: int, amount: int, attester: Any, m: bytes
) -> Any:
    send(w3, d.token.functions.approve(d.node_registry.address, amount), who)
    return send(w3, register_fn(d, who, role, amount, attester, m), who)


def delegate(w3: Any, d: Deployment, who: str, node: str, amount: int) -> Any:
    send(w3, d.token.functions.approve(d.node_registry.address, amount), who)
    return send(w3, d.node_registry.functions.delegate(node, amount), who)


def setup_world(w3: Any, d: Deployment, a: Actors) -> None:
    """Funded actors, a staked inference node (1000 OPG) with two delegators (600 + 400),
    three verifiers staking 1000/2000/3000 OPG, the model registered by a relayer for its
    owner at 1 OPG per row, and a requester allowance of 10,000 OPG."""
    fund(w3, d, a)
    stake_node(w3, d, a.node, ROLE_INFERENCE, NODE_STAKE, a.attester, RUNTIME_ID)
    for who, amount in zip(a.delegators, DELEGATIONS, strict=True):
        delegate(w3, d, who, a.node, amount)
    for v, amount in zip(a.verifiers, VERIFIER_STAKES, strict=True):
        stake_node(w3, d, v, ROLE_VERIFIER, amount, None, ZERO32)
    send(w3, registration_fn(d, a, MODEL_ID, price=PRICE), a.relayer)
    send(w3, d.token.functions.approve(d.settlement.address, 10_000 * OPG), a.requester)


def resign(d: Deployment, a: Actors, b: Batch, key: Any = None) -> Batch:
    """Sign ``b``'s (edited) claim again with the attester's key (or ``key``)."""
    b.signature = sign_claim(d, b.claim, key or a.attester.key)
    return b


def committed(w3: Any, d: Deployment, a: Actors, **kwargs: Any) -> Batch:
    b = make_batch(w3, d, a, **kwargs)
    commit(w3, d, a, b)
    return b


def reveal_fn(
    w3: Any,
    d: Deployment,
    who: str,
    b: Batch,
    row: int = 2,
    *,
    claimed: bytes = HONEST,
    salt: bytes = SALT,
    row_index: int | None = None,
    output_hash: bytes | None = None,
    proof: list[bytes] | None = None,
) -> Any:
    """Commit (``commitChallenge``) to a challenge of ``row`` and return its reveal."""
    i, x, y = b.rows[row]
    i = i if row_index is None else row_index
    y = y if output_hash is None else output_hash
    s = d.settlement.functions
    commitment = s.challengeCommitment(who, b.batch_id, i, claimed, salt).call()
    assert commitment == keccak(
        abi_encode(
            ["address", "bytes32", "uint256", "bytes32", "bytes32"],
            [who, b.batch_id, i, claimed, salt],
        )
    )
    receipt = send(w3, s.commitChallenge(commitment), who)
    (ev,) = events(d.settlement, "ChallengeCommitted", receipt)
    assert (ev.args.commitment, ev.args.challenger) == (commitment, who)
    return s.challenge(b.batch_id, b.record, (i, x, y, claimed, salt), proof or b.proof(row))


def open_challenge(w3: Any, d: Deployment, a: Actors, b: Batch, row: int = 2) -> int:
    """The challenger posts its bond and opens a dispute on ``row``; its id."""
    send(w3, d.token.functions.approve(d.settlement.address, BOND), a.challenger)
    receipt = send(w3, reveal_fn(w3, d, a.challenger, b, row), a.challenger)
    (ev,) = events(d.settlement, "ChallengeOpened", receipt)
    return int(ev.args.disputeId)


def vote(w3: Any, d: Deployment, b: Batch, dispute: int, who: str, upheld: bool) -> Any:
    return send(w3, d.settlement.functions.voteDispute(dispute, b.record, upheld), who)


def status(d: Deployment, b: Batch) -> BatchStatus:
    return BatchStatus(d.settlement.functions.statusOf(b.batch_id).call())


def verifier_shares(fee: int, weights: list[int]) -> list[int]:
    total = sum(weights)
    return [fee * w // total for w in weights]


@pytest.fixture(scope="module")
def world(w3: Any, actors: Actors, deployment: Deployment) -> Deployment:
    setup_world(w3, deployment, actors)
    return deployment


@pytest.fixture(autouse=True)
def _isolated(request: pytest.FixtureRequest) -> None:
    """Every test here starts from the module's state (world set up or not; module-scoped
    fixtures are set up before this one) and leaves the chain as it found it."""
    request.getfixturevalue("chain_snapshot")


# --------------------------------------------------------------------------- OPGToken


def test_token_supply_is_minted_once_into_the_allocations(w3: Any, deployment: Deployment) -> None:
    d = deployment
    token = d.token.functions
    assert (token.name().call(), token.symbol().call(), token.decimals().call()) == (
        "OpenGradient Token",
        "OPG",
        18,
    )
    assert token.totalSupply().call() == token.TOTAL_SUPPLY().call() == TOTAL_SUPPLY == 10**27
    mints = d.token.events.Transfer().get_logs(
        from_block=0, argument_filters={"from": ZERO_ADDRESS}
    )
    assert sum(e.args.value for e in mints) == TOTAL_SUPPLY
    to_deployer = sum(e.args.value for e in mints if e.args.to == d.deployer)
    assert to_deployer == 189_500_000 * OPG
    plan = plan_allocations(0, devnet_beneficiaries(d.deployer))
    wallets = sorted({e.args.to for e in mints if e.args.to != d.deployer})
    assert len(wallets) == sum(1 for p in plan if p.vested_amount) == 5
    vesting_abi = load_compiled("OPGVesting")["abi"]
    for wallet in wallets:
        assert w3.eth.contract(address=wallet, abi=vesting_abi).functions.owner().call() == (
            d.deployer
        )
    assert sorted(e.args.value for e in mints if e.args.to in wallets) == sorted(
        p.vested_amount for p in plan if p.vested_amount
    )
    names = {item.get("name") for item in d.token.abi}
    assert not names & {"mint", "burn", "burnFrom"}, "the supply is fixed"


def test_token_permit(w3: Any, tester: Any, deployment: Deployment, actors: Actors) -> None:
    d, a = deployment, actors
    token = d.token.functions
    domain = token.eip712Domain().call()
    assert domain[1:5] == ["OpenGradient Token", "1", d.chain_id, d.token.address]
    deadline, v, r, s = sign_permit(d, a, a.requester, a.node, 7 * OPG, now(w3) + 3600)
    fn = token.permit(a.requester, a.node, 7 * OPG, deadline, v, r, s)
    receipt = send(w3, fn, a.outsider)  # anyone may submit it
    (ev,) = events(d.token, "Approval", receipt)
    assert (ev.args.owner, ev.args.spender, ev.args.value) == (a.requester, a.node, 7 * OPG)
    assert token.allowance(a.requester, a.node).call() == 7 * OPG
    assert token.nonces(a.requester).call() == 1
    # replayed: the nonce moved on, so the signature recovers another signer
    expect_revert(w3, fn, a.outsider, "ERC2612InvalidSigner")
    # signed by a key that is not the owner's
    deadline, v, r, s = sign_permit(d, a, a.outsider, a.node, OPG, now(w3) + 3600)
    bad = token.permit(a.requester, a.node, OPG, deadline, v, r, s)
    expect_revert(w3, bad, a.outsider, "ERC2612InvalidSigner")
    # expired
    deadline, v, r, s = sign_permit(d, a, a.requester, a.node, OPG, now(w3) + 60)
    advance(tester, w3, 120)
    late = token.permit(a.requester, a.node, OPG, deadline, v, r, s)
    expect_revert(w3, late, a.outsider, "ERC2612ExpiredSignature")


# --------------------------------------------------------------------------- ModelRegistry


def test_model_registration_by_a_relayer(w3: Any, deployment: Deployment, actors: Actors) -> None:
    d, a = deployment, actors
    mr = d.model_registry.functions
    mid = keccak(b"relayed model")
    manifest = keccak(b"the manifest")
    receipt = send(
        w3,
        registration_fn(d, a, mid, price=3 * OPG, manifest_hash=manifest, uri="hub://m/1"),
        a.relayer,  # pays the gas; the registration is the owner's
    )
    (ev,) = events(d.model_registry, "ModelRegistered", receipt)
    assert (ev.args.modelId, ev.args.owner, ev.args.price) == (mid, a.model_owner, 3 * OPG)
    assert (ev.args.name, ev.args.version, ev.args.manifestURI) == (
        "tiny-mlp",
        "1.0.0",
        "hub://m/1",
    )
    assert ev.args.manifestHash == manifest
    assert mr.getModel(mid, a.model_owner).call() == [3 * OPG, False, "tiny-mlp", "1.0.0", manifest]
    assert mr.manifestURIOf(mid, a.model_owner).call() == "hub://m/1"
    assert mr.pricing(mid, a.model_owner).call() == [True, 3 * OPG, False]
    assert mr.exists(mid, a.model_owner).call() is True
    assert mr.exists(mid, a.relayer).call() is False
    assert mr.pricing(mid, a.relayer).call() == [False, 0, False]
    assert mr.modelKey(mid, a.model_owner).call() == keccak(
        abi_encode(["bytes32", "address"], [mid, a.model_owner])
    )
    # the digest the owner signs is the one ogkit.settle builds
    typed = registration_data(d, mid, a.model_owner, 3 * OPG, manifest, 2**40)
    assert mr.hashRegistration(mid, a.model_owner, 3 * OPG, manifest, 2**40).call() == (
        digest_of(typed)
    )
    assert mr.domainSeparator().call() == encode_typed_data(full_message=typed).header
    assert mr.MODEL_REGISTRATION_TYPEHASH().call() == keccak(
        b"ModelRegistration(bytes32 modelId,address owner,uint256 price,bytes32 manifestHash,"
        b"uint64 deadline)"
    )
    # the same bytes under another owner are another registration
    send(w3, registration_fn(d, a, mid, owner=a.outsider, price=0), a.outsider)
    assert mr.pricing(mid, a.outsider).call() == [True, 0, False]
    assert mr.pricing(mid, a.model_owner).call() == [True, 3 * OPG, False]
    err = expect_revert(w3, registration_fn(d, a, mid), a.relayer, "ModelAlreadyRegistered")
    assert a.model_owner in err.reason
    expect_call_revert(mr.getModel(mid, a.relayer), "ModelNotFound")
    expect_call_revert(mr.manifestURIOf(mid, a.relayer), "ModelNotFound")


def test_model_registration_reverts(w3: Any, deployment: Deployment, actors: Actors) -> None:
    d, a = deployment, actors
    mid = keccak(b"refused model")
    expect_revert(w3, registration_fn(d, a, ZERO32), a.relayer, "ZeroModelId")
    zero_owner = d.model_registry.functions.registerModel(
        (mid, ZERO_ADDRESS, OPG, ZERO32, 2**40, "n", "v", "u"), b"\x01" * 65
    )
    expect_revert(w3, zero_owner, a.relayer, "ZeroOwner")
    deadline = now(w3) - 1
    err = expect_revert(
        w3, registration_fn(d, a, mid, deadline=deadline), a.relayer, "RegistrationExpired"
    )
    assert err.reason == f"RegistrationExpired(deadline={deadline})"
    # signed by someone else for the owner
    forged = registration_fn(d, a, mid, signer=a.relayer)
    expect_revert(w3, forged, a.relayer, "BadOwnerSignature")
    # the owner signed another price than the one submitted
    fn = registration_fn(d, a, mid, price=OPG)
    reg, signature = fn.args
    altered = d.model_registry.functions.registerModel((*reg[:2], 0, *reg[3:]), signature)
    expect_revert(w3, altered, a.relayer, "BadOwnerSignature")
    garbage = d.model_registry.functions.registerModel(reg, b"\x01" * 65)
    expect_revert(w3, garbage, a.relayer, "BadOwnerSignature")
    assert d.model_registry.functions.exists(mid, a.model_owner).call() is False
    # a price is stored in 240 bits, beside the registration's flags
    err = expect_revert(w3, registration_fn(d, a, mid, price=2**240), a.relayer, "PriceTooLarge")
    assert err.reason == f"PriceTooLarge(price={2**240})"
    send(w3, registration_fn(d, a, mid, price=2**240 - 1), a.relayer)
    assert d.model_registry.functions.pricing(mid, a.model_owner).call() == [
        True,
        2**240 - 1,
        False,
    ]


def test_set_price_and_deprecate_are_the_owners_own(
    w3: Any, world: Deployment, actors: Actors
) -> None:
    d, a = world, actors
    mr = d.model_registry.functions
    err = expect_revert(w3, mr.setPrice(MODEL_ID, 0), a.outsider, "ModelNotFound")
    assert a.outsider in err.reason  # the caller's own registration, which does not exist
    expect_revert(w3, mr.deprecate(MODEL_ID), a.outsider, "ModelNotFound")
    expect_revert(w3, mr.setPrice(MODEL_ID, 2**240), a.model_owner, "PriceTooLarge")
    receipt = send(w3, mr.setPrice(MODEL_ID, 2 * PRICE), a.model_owner)
    (ev,) = events(d.model_registry, "PriceChanged", receipt)
    assert (ev.args.modelId, ev.args.owner) == (MODEL_ID, a.model_owner)
    assert (ev.args.oldPrice, ev.args.newPrice) == (PRICE, 2 * PRICE)
    assert mr.pricing(MODEL_ID, a.model_owner).call() == [True, 2 * PRICE, False]
    receipt = send(w3, mr.deprecate(MODEL_ID), a.model_owner)
    (ev,) = events(d.model_registry, "ModelDeprecated", receipt)
    assert (ev.args.modelId, ev.args.owner) == (MODEL_ID, a.model_owner)
    assert mr.getModel(MODEL_ID, a.model_owner).call()[1] is True
    assert mr.pricing(MODEL_ID, a.model_owner).call() == [True, 2 * PRICE, True]
    expect_revert(w3, mr.setPrice(MODEL_ID, 1), a.model_owner, "ModelIsDeprecated")
    expect_revert(w3, mr.deprecate(MODEL_ID), a.model_owner, "ModelIsDeprecated")
    # deprecated for good: it cannot be registered again under the same owner
    expect_revert(w3, registration_fn(d, a, MODEL_ID), a.relayer, "ModelAlreadyRegistered")


# --------------------------------------------------------------------------- NodeRegistry


def test_register_node_with_proof_of_possession(w3: Any, world: Deployment, actors: Actors) -> None:
    d, a = world, actors
    reg = d.node_registry.functions
    # the node's registration in the world: bound, with its stake
    assert reg.nodeOfAttester(a.attester.address).call() == a.node
    assert reg.getNode(a.node).call() == [
        ROLE_INFERENCE,
        a.attester.address,
        RUNTIME_ID,
        NODE_STAKE,
        sum(DELEGATIONS),
        0,
    ]
    assert reg.commitInfo(a.node).call() == [
        ROLE_INFERENCE,
        a.attester.address,
        RUNTIME_ID,
        NODE_STAKE,  # its own stake, which the collateral of its open batches must fit in
        KIND_SOFTWARE,  # the kind its measurement is approved as
    ]
    # a fresh one, with its events
    before = balances(d, a.node2, d.node_registry.address)
    receipt = stake_node(w3, d, a.node2, ROLE_INFERENCE, 1_500 * OPG, a.attester2, OTHER_RUNTIME_ID)
    assert balance(d, a.node2) == before[a.node2] - 1_500 * OPG
    assert balance(d, d.node_registry.address) == before[d.node_registry.address] + 1_500 * OPG
    (ev,) = events(d.node_registry, "NodeRegistered", receipt)
    assert (ev.args.node, ev.args.role, ev.args.attester) == (
        a.node2,
        ROLE_INFERENCE,
        a.attester2.address,
    )
    assert (ev.args.measurement, ev.args.stake) == (OTHER_RUNTIME_ID, 1_500 * OPG)
    (ev,) = events(d.node_registry, "AttesterBound", receipt)
    assert (ev.args.node, ev.args.attester, ev.args.measurement) == (
        a.node2,
        a.attester2.address,
        OTHER_RUNTIME_ID,
    )
    (ev,) = events(d.node_registry, "Staked", receipt)
    assert (ev.args.account, ev.args.amount, ev.args.shares) == (a.node2, 1_500 * OPG, 1_500 * OPG)
    # its own stake, and its measurement is not approved (kind 0)
    assert reg.commitInfo(a.node2).call()[3:] == [1_500 * OPG, 0]
    # the digest an attester signs is ogkit.settle's AttesterBinding
    from ogkit.settle import attester_binding_typed_data

    typed = attester_binding_typed_data(
        d.chain_id, d.node_registry.address, a.node2, a.attester2.address, OTHER_RUNTIME_ID
    )
    assert reg.hashAttesterBinding(a.node2, a.attester2.address, OTHER_RUNTIME_ID).call() == (
        digest_of(typed)
    )
    assert reg.domainSeparator().call() == encode_typed_data(full_message=typed).header
    assert reg.ATTESTER_BINDING_TYPEHASH().call() == keccak(
        b"AttesterBinding(address node,address attester,bytes32 measurement)"
    )
    assert [reg.minStake(r).call() for r in (1, 2)] == [
        TEST_PARAMS.min_node_stake,
        TEST_PARAMS.min_verifier_stake,
    ]
    expect_call_revert(reg.minStake(3), "InvalidRole")


def test_register_node_reverts(w3: Any, world: Deployment, actors: Actors) -> None:
    d, a = world, actors
    reg = d.node_registry.functions
    send(w3, d.token.functions.approve(d.node_registry.address, 10_000 * OPG), a.node2)
    ok = binding_signature(d, a.node2, a.attester2, RUNTIME_ID)
    rn = reg.registerNode
    expect_revert(
        w3, rn(3, NODE_STAKE, a.attester2.address, RUNTIME_ID, ok), a.node2, "InvalidRole"
    )
    expect_revert(w3, rn(0, NODE_STAKE, ZERO_ADDRESS, ZERO32, b""), a.node2, "InvalidRole")
    err = expect_revert(
        w3, rn(1, 999 * OPG, a.attester2.address, RUNTIME_ID, ok), a.node2, "InsufficientStake"
    )
    assert err.reason == f"InsufficientStake(available={999 * OPG}, required={NODE_STAKE})"
    expect_revert(w3, rn(1, NODE_STAKE, ZERO_ADDRESS, RUNTIME_ID, b""), a.node2, "ZeroAttester")
    # proofs of possession that do not prove it
    for bad in (
        b"",
        binding_signature(d, a.node2, a.attester, RUNTIME_ID),  # another key signed
        binding_signature(d, a.node, a.attester2, RUNTIME_ID),  # for another node
        binding_signature(d, a.node2, a.attester2, OTHER_RUNTIME_ID),  # another measurement
        b"\x01" * 65,
    ):
        fn = rn(1, NODE_STAKE, a.attester2.address, RUNTIME_ID, bad)
        expect_revert(w3, fn, a.node2, "BadAttesterSignature")
    # a verifier without an attester sends no signature
    fn = rn(2, NODE_STAKE, ZERO_ADDRESS, ZERO32, b"\x01" * 65)
    expect_revert(w3, fn, a.node2, "BadAttesterSignature")
    # the world's attester is bound to the world's node, even with its own valid proof
    mine_too = binding_signature(d, a.node2, a.attester, RUNTIME_ID)
    err = expect_revert(
        w3, rn(1, NODE_STAKE, a.attester.address, RUNTIME_ID, mine_too), a.node2,
        "AttesterAlreadyBound",
    )  # fmt: skip
    assert a.node in err.reason
    again = binding_signature(d, a.node, a.attester2, RUNTIME_ID)
    expect_revert(
        w3, rn(1, NODE_STAKE, a.attester2.address, RUNTIME_ID, again), a.node,
        "NodeAlreadyRegistered",
    )  # fmt: skip
    # a verifier may bind an attester too, with its proof
    receipt = send(w3, rn(2, NODE_STAKE, a.attester2.address, RUNTIME_ID, ok), a.node2)
    assert len(events(d.node_registry, "AttesterBound", receipt)) == 1


def test_set_attester_rebinds_and_releases_the_old_key(
    w3: Any, world: Deployment, actors: Actors
) -> None:
    d, a = world, actors
    reg = d.node_registry.functions
    proof = binding_signature(d, a.node, a.attester2, OTHER_RUNTIME_ID)
    expect_revert(
        w3, reg.setAttester(a.attester2.address, OTHER_RUNTIME_ID, proof), a.outsider,
        "NodeNotRegistered",
    )  # fmt: skip
    wrong = binding_signature(d, a.node, a.attester2, RUNTIME_ID)
    expect_revert(
        w3, reg.setAttester(a.attester2.address, OTHER_RUNTIME_ID, wrong), a.node,
        "BadAttesterSignature",
    )  # fmt: skip
    receipt = send(w3, reg.setAttester(a.attester2.address, OTHER_RUNTIME_ID, proof), a.node)
    (ev,) = events(d.node_registry, "AttesterBound", receipt)
    assert (ev.args.attester, ev.args.measurement) == (a.attester2.address, OTHER_RUNTIME_ID)
    assert reg.getNode(a.node).call()[1:3] == [a.attester2.address, OTHER_RUNTIME_ID]
    assert reg.nodeOfAttester(a.attester2.address).call() == a.node
    assert reg.nodeOfAttester(a.attester.address).call() == ZERO_ADDRESS
    # the released key can be bound to another node now
    stake_node(w3, d, a.node2, ROLE_INFERENCE, NODE_STAKE, a.attester, RUNTIME_ID)
    assert reg.nodeOfAttester(a.attester.address).call() == a.node2


def test_stake_delegate_unbond_withdraw(
    w3: Any, tester: Any, world: Deployment, actors: Actors
) -> None:
    d, a = world, actors
    reg = d.node_registry.functions
    d1, d2 = a.delegators
    assert reg.totalStake(a.node).call() == POOL
    assert reg.stakeOf(a.node, d1).call() == DELEGATIONS[0]
    assert reg.sharesOf(a.node, d1).call() == [DELEGATIONS[0], POOL, POOL]
    assert reg.totalRoleStake(ROLE_INFERENCE).call() == POOL
    assert reg.totalRoleStake(ROLE_VERIFIER).call() == sum(VERIFIER_STAKES)
    assert reg.totalActiveStake().call() == POOL + sum(VERIFIER_STAKES)
    # adding and delegating
    send(w3, d.token.functions.approve(d.node_registry.address, 500 * OPG), a.node)
    receipt = send(w3, reg.addStake(500 * OPG), a.node)
    assert events(d.node_registry, "Staked", receipt)[0].args.account == a.node
    assert reg.stakeOf(a.node, a.node).call() == 1_500 * OPG
    delegate(w3, d, d2, a.node, 100 * OPG)
    assert reg.stakeOf(a.node, d2).call() == 500 * OPG
    assert reg.getNode(a.node).call()[3:] == [1_500 * OPG, 1_100 * OPG, 0]
    expect_revert(w3, reg.addStake(OPG), a.outsider, "NodeNotRegistered")
    expect_revert(w3, reg.delegate(a.outsider, OPG), d1, "NodeNotRegistered")
    expect_revert(w3, reg.delegate(a.node, 0), d1, "ZeroAmount")
    # unbonding: what remains of a node's own stake is 0 or at least the minimum
    err = expect_revert(w3, reg.unstake(501 * OPG), a.node, "InsufficientStake")
    assert err.reason == f"InsufficientStake(available={999 * OPG}, required={NODE_STAKE})"
    expect_revert(w3, reg.undelegate(a.node, 601 * OPG), d1, "InsufficientStake")
    expect_revert(w3, reg.undelegate(a.node, OPG), a.outsider, "NoStake")
    expect_revert(w3, reg.undelegate(a.node, 0), d1, "ZeroAmount")
    expect_revert(w3, reg.undelegate(a.outsider, OPG), d1, "NodeNotRegistered")
    receipt = send(w3, reg.undelegate(a.node, 100 * OPG), d1)
    (ev,) = events(d.node_registry, "UnbondingStarted", receipt)
    uid = ev.args.unbondingId
    release = now(w3) + TEST_PARAMS.unbonding_period
    assert (ev.args.node, ev.args.account, ev.args.amount, ev.args.shares) == (
        a.node,
        d1,
        100 * OPG,
        100 * OPG,
    )
    assert ev.args.releaseTime == release
    assert reg.unbondingCount().call() == uid
    assert reg.getUnbonding(uid).call() == [a.node, d1, release, 100 * OPG, 100 * OPG]
    assert reg.totalStake(a.node).call() == 2_500 * OPG  # unbonding weighs nothing
    assert reg.slashableStake(a.node).call() == 2_600 * OPG  # but stays slashable
    assert reg.getNode(a.node).call()[3:] == [1_500 * OPG, 1_000 * OPG, 100 * OPG]
    assert reg.totalRoleStake(ROLE_INFERENCE).call() == 2_500 * OPG
    own = send(w3, reg.unstake(500 * OPG), a.node)  # down to exactly the minimum
    own_id = events(d.node_registry, "UnbondingStarted", own)[0].args.unbondingId
    expect_revert(w3, reg.withdraw(uid), d1, "StillUnbonding")
    expect_revert(w3, reg.withdraw(uid), a.outsider, "NotUnbondingOwner")
    expect_revert(w3, reg.withdraw(10**6), d1, "UnknownUnbonding")
    advance(tester, w3, TEST_PARAMS.unbonding_period)
    before = balances(d, d1, a.node)
    receipt = send(w3, reg.withdraw(uid), d1)
    (ev,) = events(d.node_registry, "Withdrawn", receipt)
    assert (ev.args.unbondingId, ev.args.account, ev.args.amount) == (uid, d1, 100 * OPG)
    send(w3, reg.withdraw(own_id), a.node)
    assert balance(d, d1) == before[d1] + 100 * OPG
    assert balance(d, a.node) == before[a.node] + 500 * OPG
    expect_revert(w3, reg.withdraw(uid), d1, "UnknownUnbonding")
    assert reg.slashableStake(a.node).call() == 2_000 * OPG
    assert reg.getNode(a.node).call()[3:] == [NODE_STAKE, NODE_STAKE, 0]
    # all of it may go: a verifier leaves for good
    v1 = a.verifiers[0]
    send(w3, reg.unstake(VERIFIER_STAKES[0]), v1)
    assert reg.totalStake(v1).call() == 0
    assert reg.totalRoleStake(ROLE_VERIFIER).call() == sum(VERIFIER_STAKES[1:])


def test_checkpoints_weigh_past_blocks(
    w3: Any, tester: Any, world: Deployment, actors: Actors
) -> None:
    d, a = world, actors
    reg = d.node_registry.functions
    v1, v2, v3 = a.verifiers
    before = w3.eth.block_number
    block = delegate(w3, d, a.delegators[0], a.node, 100 * OPG)["blockNumber"]
    mine(tester)
    assert reg.stakeAt(a.node, block - 1).call() == POOL
    assert reg.stakeAt(a.node, block).call() == POOL + 100 * OPG
    assert reg.roleStakeAt(ROLE_INFERENCE, before).call() == POOL
    assert reg.roleStakeAt(ROLE_INFERENCE, block).call() == POOL + 100 * OPG
    assert reg.roleStakeAt(ROLE_VERIFIER, block).call() == sum(VERIFIER_STAKES)
    assert reg.stakeAt(a.node, 0).call() == 0
    assert reg.weightAt(v2, block).call() == VERIFIER_STAKES[1]
    assert reg.weightAt(a.node, block).call() == 0  # not a verifier
    assert reg.weightAt(a.outsider, block).call() == 0
    weights, total = reg.verifierWeights([v3, a.node, v1, v3], block).call()
    assert weights == [VERIFIER_STAKES[2], 0, VERIFIER_STAKES[0], VERIFIER_STAKES[2]]
    assert total == sum(VERIFIER_STAKES)
    # weights are history: a verifier that leaves keeps its past weight, and weighs 0 after
    left = send(w3, reg.unstake(VERIFIER_STAKES[0]), v1)["blockNumber"]
    mine(tester)
    assert reg.stakeAt(v1, block).call() == reg.weightAt(v1, block).call() == VERIFIER_STAKES[0]
    assert reg.stakeAt(v1, left).call() == reg.weightAt(v1, left).call() == 0
    assert reg.roleStakeAt(ROLE_VERIFIER, left).call() == sum(VERIFIER_STAKES[1:])
    # a node whose own stake is below its role's minimum weighs nothing, delegations and all
    gone = send(w3, reg.unstake(NODE_STAKE), a.node)["blockNumber"]
    mine(tester)
    assert reg.totalStake(a.node).call() == 1_100 * OPG  # the delegations are still active
    assert reg.stakeAt(a.node, gone).call() == 0
    assert reg.stakeAt(a.node, gone - 1).call() == POOL + 100 * OPG
    assert reg.roleStakeAt(ROLE_INFERENCE, gone).call() == 0
    assert reg.totalRoleStake(ROLE_INFERENCE).call() == 0
    assert reg.commitInfo(a.node).call()[3] == 0
    # the current block and later ones are not history yet
    future = w3.eth.block_number + 1000
    for fn in (
        reg.stakeAt(a.node, future),
        reg.roleStakeAt(ROLE_VERIFIER, future),
        reg.weightAt(v2, future),
        reg.verifierWeights([v2], future),
    ):
        reason = expect_call_revert(fn, "FutureLookup")
        assert f"blockNumber={future}" in reason


def test_settlement_hooks_and_wiring_are_guarded(
    w3: Any, world: Deployment, actors: Actors
) -> None:
    d, a = world, actors
    reg = d.node_registry.functions
    assert reg.settlement().call() == d.settlement.address
    assert reg.owner().call() == d.deployer
    for fn in (
        reg.slash(a.node, OPG, a.outsider),
        reg.reward(a.node, OPG),
        reg.lock(a.node),
        reg.unlock(a.node),
    ):
        err = expect_revert(w3, fn, a.outsider, "NotSettlement")
        assert a.outsider in err.reason
    expect_revert(w3, reg.slash(a.node, OPG, a.deployer), a.deployer, "NotSettlement")
    expect_revert(w3, reg.setSettlement(a.outsider), a.deployer, "SettlementAlreadySet")
    expect_revert(w3, reg.setSettlement(a.outsider), a.outsider, "OwnableUnauthorizedAccount")
    assert reg.withdrawLocks(a.node).call() == 0


def test_bootstrap_is_owner_only_and_closable(w3: Any, world: Deployment, actors: Actors) -> None:
    d, a = world, actors
    reg = d.node_registry.functions
    assert reg.bootstrapOpen().call() is True
    assert reg.measurementKind(RUNTIME_ID).call() == KIND_SOFTWARE
    fn = reg.bootstrapMeasurement(OTHER_RUNTIME_ID, KIND_SGX)
    expect_revert(w3, fn, a.outsider, "OwnableUnauthorizedAccount")
    receipt = send(w3, fn, a.deployer)
    (ev,) = events(d.node_registry, "MeasurementApproved", receipt)
    assert (ev.args.measurement, ev.args.proposalId, ev.args.kind) == (
        OTHER_RUNTIME_ID,
        0,
        KIND_SGX,
    )
    assert ev.args.blockNumber == receipt["blockNumber"]
    assert reg.measurementKind(OTHER_RUNTIME_ID).call() == KIND_SGX
    assert reg.isMeasurementApproved(OTHER_RUNTIME_ID).call() is True
    err = expect_revert(w3, reg.bootstrapMeasurement(OTHER_RUNTIME_ID, 5), a.deployer,
                        "InvalidMeasurementKind")  # fmt: skip
    assert "5" in err.reason
    receipt = send(w3, reg.bootstrapMeasurement(OTHER_RUNTIME_ID, 0), a.deployer)  # revoke
    assert events(d.node_registry, "MeasurementRevoked", receipt)[0].args.proposalId == 0
    assert reg.isMeasurementApproved(OTHER_RUNTIME_ID).call() is False
    expect_revert(w3, reg.closeBootstrap(), a.outsider, "OwnableUnauthorizedAccount")
    receipt = send(w3, reg.closeBootstrap(), a.deployer)
    assert len(events(d.node_registry, "BootstrapClosed", receipt)) == 1
    assert reg.bootstrapOpen().call() is False
    expect_revert(w3, fn, a.deployer, "BootstrapIsClosed")
    expect_revert(w3, reg.closeBootstrap(), a.deployer, "BootstrapIsClosed")


def test_governance_approves_a_measurement_as_a_kind(
    w3: Any, tester: Any, world: Deployment, actors: Actors
) -> None:
    d, a = world, actors
    reg = d.node_registry.functions
    v1, _, v3 = a.verifiers
    receipt = send(w3, reg.propose(OTHER_RUNTIME_ID, KIND_TDX), a.node)
    (ev,) = events(d.node_registry, "ProposalCreated", receipt)
    pid = ev.args.proposalId
    created = now(w3)
    snapshot = receipt["blockNumber"] - 1
    ends = created + TEST_PARAMS.governance_voting_delay
    assert (ev.args.proposer, ev.args.measurement, ev.args.kind) == (
        a.node,
        OTHER_RUNTIME_ID,
        KIND_TDX,
    )
    assert (ev.args.snapshotBlock, ev.args.votingEnds) == (snapshot, ends)
    assert pid == reg.proposalCount().call()
    # stake added after the snapshot weighs nothing
    delegate(w3, d, a.delegators[0], a.node, 1_000 * OPG)
    receipt = send(w3, reg.vote(pid, True), a.node)
    (ev,) = events(d.node_registry, "VoteCast", receipt)
    assert (ev.args.voter, ev.args.support, ev.args.weight) == (a.node, True, POOL)
    send(w3, reg.vote(pid, True), v3)
    send(w3, reg.vote(pid, False), v1)
    assert reg.hasVoted(pid, v1).call() is True
    assert reg.getProposal(pid).call() == [
        a.node,
        OTHER_RUNTIME_ID,
        KIND_TDX,
        created,
        ends,
        snapshot,
        POOL + VERIFIER_STAKES[2],
        VERIFIER_STAKES[0],
        False,
    ]
    expect_revert(w3, reg.vote(pid, False), v1, "AlreadyVoted")
    expect_revert(w3, reg.execute(pid), a.outsider, "VotingOpen")
    advance(tester, w3, TEST_PARAMS.governance_voting_delay)
    expect_revert(w3, reg.vote(pid, True), a.verifiers[1], "VotingClosed")
    receipt = send(w3, reg.execute(pid), a.outsider)
    (ev,) = events(d.node_registry, "ProposalExecuted", receipt)
    assert (ev.args.proposalId, ev.args.kind, ev.args.yes, ev.args.no) == (
        pid,
        KIND_TDX,
        POOL + VERIFIER_STAKES[2],
        VERIFIER_STAKES[0],
    )
    (ev,) = events(d.node_registry, "MeasurementApproved", receipt)
    assert (ev.args.measurement, ev.args.proposalId, ev.args.kind) == (OTHER_RUNTIME_ID, pid, 2)
    assert reg.measurementKind(OTHER_RUNTIME_ID).call() == KIND_TDX
    assert reg.getProposal(pid).call()[8] is True
    expect_revert(w3, reg.execute(pid), a.outsider, "ProposalAlreadyExecuted")
    # the node moves to the approved build and commits with it
    proof = binding_signature(d, a.node, a.attester, OTHER_RUNTIME_ID)
    send(w3, reg.setAttester(a.attester.address, OTHER_RUNTIME_ID, proof), a.node)
    b = committed(w3, d, a, runtime_id=OTHER_RUNTIME_ID)
    assert status(d, b) == BatchStatus.PENDING


def test_governance_revokes_and_refuses(
    w3: Any, tester: Any, world: Deployment, actors: Actors
) -> None:
    d, a = world, actors
    reg = d.node_registry.functions
    v1, v2, v3 = a.verifiers
    total = POOL + sum(VERIFIER_STAKES)  # 8000 OPG at every snapshot here; quorum 50 %
    revoke = send(w3, reg.propose(RUNTIME_ID, 0), v1)
    revoke_id = events(d.node_registry, "ProposalCreated", revoke)[0].args.proposalId
    low = send(w3, reg.propose(keccak(b"low turnout"), KIND_NITRO), v1)
    low_id = events(d.node_registry, "ProposalCreated", low)[0].args.proposalId
    tie = send(w3, reg.propose(keccak(b"a tie"), KIND_NITRO), v1)
    tie_id = events(d.node_registry, "ProposalCreated", tie)[0].args.proposalId
    late = send(w3, reg.propose(keccak(b"late"), KIND_NITRO), v1)
    late_id = events(d.node_registry, "ProposalCreated", late)[0].args.proposalId
    for voter in (a.node, v3):  # 5000 of 8000, all yes
        send(w3, reg.vote(revoke_id, True), voter)
        send(w3, reg.vote(late_id, True), voter)
    send(w3, reg.vote(low_id, True), v3)  # 3000 of 8000: under the turnout
    send(w3, reg.vote(tie_id, True), v3)  # 3000 yes against 2000 + 1000 no
    send(w3, reg.vote(tie_id, False), a.node)
    send(w3, reg.vote(tie_id, False), v1)
    err = expect_revert(w3, reg.vote(low_id, True), a.outsider, "NoStake")
    assert a.outsider in err.reason
    expect_revert(w3, reg.vote(late_id + 1, True), v2, "UnknownProposal")
    expect_revert(w3, reg.execute(late_id + 1), v2, "UnknownProposal")
    expect_revert(w3, reg.propose(keccak(b"x"), KIND_TDX), a.outsider, "NodeNotRegistered")
    expect_revert(w3, reg.propose(keccak(b"x"), 5), v1, "InvalidMeasurementKind")
    advance(tester, w3, TEST_PARAMS.governance_voting_delay)
    err = expect_revert(w3, reg.execute(low_id), a.outsider, "ProposalNotPassed")
    assert err.reason == (
        f"ProposalNotPassed(proposalId={low_id}, yes={VERIFIER_STAKES[2]}, no=0, "
        f"totalStake={total})"
    )
    expect_revert(w3, reg.execute(tie_id), a.outsider, "ProposalNotPassed")
    b = make_batch(w3, d, a)
    receipt = send(w3, reg.execute(revoke_id), a.outsider)
    (ev,) = events(d.node_registry, "MeasurementRevoked", receipt)
    assert (ev.args.measurement, ev.args.proposalId) == (RUNTIME_ID, revoke_id)
    assert ev.args.blockNumber == receipt["blockNumber"]
    assert reg.measurementKind(RUNTIME_ID).call() == 0
    err = expect_revert(w3, commit_fn(d, b), a.node, "MeasurementNotApproved")
    assert RUNTIME_ID.hex() in err.reason
    # a passed proposal not executed within the delay after voting expires
    advance(tester, w3, TEST_PARAMS.governance_voting_delay)
    expect_revert(w3, reg.execute(late_id), a.outsider, "ProposalExpired")


def test_production_refuses_software_measurements(
    w3: Any, deployment: Deployment, actors: Actors
) -> None:
    a = actors
    params = replace(TEST_PARAMS, production=True, initial_kinds=(KIND_TDX,))
    # a production deployment names its beneficiaries: the deployer is not given the supply
    sent = w3.eth.get_transaction_count(a.deployer)
    with pytest.raises(ConfigError, match="beneficiaries"):
        deploy_contracts(w3, a.deployer, params)
    assert w3.eth.get_transaction_count(a.deployer) == sent  # refused before deploying
    treasury = {name: a.spare[0] for name in devnet_beneficiaries(a.deployer)}
    d = deploy_contracts(w3, a.deployer, params, beneficiaries=treasury)
    reg = d.node_registry.functions
    assert reg.production().call() is True
    assert balance(d, a.deployer) == 0
    assert balance(d, a.spare[0]) == 189_500_000 * OPG
    assert reg.measurementKind(RUNTIME_ID).call() == KIND_TDX
    for fn in (
        reg.bootstrapMeasurement(OTHER_RUNTIME_ID, KIND_SOFTWARE),
        reg.propose(OTHER_RUNTIME_ID, KIND_SOFTWARE),  # refused before anything else
    ):
        err = expect_revert(w3, fn, a.deployer, "SoftwareMeasurementInProduction")
        assert OTHER_RUNTIME_ID.hex() in err.reason
    send(w3, reg.bootstrapMeasurement(OTHER_RUNTIME_ID, KIND_NITRO), a.deployer)
    assert reg.measurementKind(OTHER_RUNTIME_ID).call() == KIND_NITRO
    assert deployment.node_registry.functions.production().call() is False
    with pytest.raises(ChainError, match=r"NodeRegistry.*SoftwareMeasurementInProduction"):
        deploy_contracts(
            w3, a.deployer, replace(TEST_PARAMS, production=True), beneficiaries=treasury
        )


def deploy_revert(w3: Any, name: str, sender: str, *args: Any) -> str:
    compiled = load_compiled(name)
    factory = w3.eth.contract(abi=compiled["abi"], bytecode=compiled["bytecode"])
    with pytest.raises(SettlementError) as info:
        transact(w3, factory.constructor(*args), sender)
    return info.value.reason or ""


def settlement_params(p: DeployParams = TEST_PARAMS) -> tuple[Any, ...]:
    return (
        p.challenge_window,
        p.quorum_bps,
        p.node_fee_bps,
        p.verifier_fee_bps,
        p.challenge_bond,
        p.collateral_bps,
        p.min_slash,
        p.challenger_reward_bps,
        p.verifier_slash_bps,
        p.claim_max_age,
    )


def invalid_parameter(reason: str) -> str:
    """The name in an ``InvalidParameter(string name)`` revert (the bare name on eth-tester,
    see :func:`conftest.revert_matches`)."""
    assert revert_matches(reason, "InvalidParameter"), reason
    if reason.startswith("InvalidParameter("):
        return reason.split("=", 1)[1].removesuffix(")").strip("'\"")
    return reason


def test_constructors_refuse_bad_parameters(
    w3: Any, deployment: Deployment, actors: Actors
) -> None:
    d, a = deployment, actors
    nodes = [d.token.address, OPG, OPG, 7200, 3600, 5_000, False]
    reason = deploy_revert(w3, "NodeRegistry", a.deployer, *nodes, [RUNTIME_ID], [])
    assert invalid_parameter(reason) == "initialKinds"
    reason = deploy_revert(w3, "NodeRegistry", a.deployer, *nodes, [RUNTIME_ID], [0])
    assert reason == "InvalidMeasurementKind(kind=0)"
    for index, value, name in (
        (0, ZERO_ADDRESS, "token"),
        (1, 0, "minNodeStake"),
        (3, 0, "unbondingPeriod"),
        (5, 10_001, "governanceQuorumBps"),
    ):
        args = list(nodes)
        args[index] = value
        reason = deploy_revert(w3, "NodeRegistry", a.deployer, *args, [], [])
        assert invalid_parameter(reason) == name, reason
    linked = (d.token.address, d.model_registry.address, d.node_registry.address)
    for index, value, name in (
        (0, 4 * 24 * 3600, "unbondingPeriod"),  # the registry's 7 days cover no two windows
        (0, 0, "challengeWindow"),
        (1, 5_000, "quorumBps"),
        (2, 10_001, "nodeFeeBps"),
        (5, 9_999, "collateralBps"),
        (8, 10_001, "verifierSlashBps"),
        (9, 0, "claimMaxAge"),
    ):
        params = list(settlement_params())
        params[index] = value
        reason = deploy_revert(
            w3, "InferenceSettlement", a.deployer, *linked, tuple(params), ZERO_ADDRESS
        )
        assert invalid_parameter(reason) == name, reason


# --------------------------------------------------------------------------- the Python side


def test_hashes_match_the_python_implementations(
    w3: Any, world: Deployment, actors: Actors
) -> None:
    """hashOrder, hashClaim, hashVerdict, deriveBatchId, the record hash, receiptLeaf and the
    domain: the contract and ogkit compute the same bytes, for awkward values too."""
    d, a = world, actors
    s = d.settlement.functions
    domain = domain_of(d)
    assert s.JOB_ORDER_TYPEHASH().call() == keccak(ORDER_TYPE_STRING.encode())
    assert s.BATCH_CLAIM_TYPEHASH().call() == keccak(
        b"BatchClaim(bytes32 batchId,bytes32 modelId,bytes32 runtimeId,bytes32 batchRoot,"
        b"uint64 rowCount,address requester,uint64 timestamp,address attester)"
    )
    assert s.VERDICT_TYPEHASH().call() == keccak(
        b"Verdict(bytes32 batchId,bytes32 claimDigest,bool pass)"
    )
    assert s.eip712Domain().call()[1:5] == ["ogkit", "1", d.chain_id, d.settlement.address]
    for i, (nonce, price, rows, deadline, job, node) in enumerate(
        [
            (1, PRICE, 5, 2**40, "classify", a.node),
            (2**256 - 1, 2**256 - 1, 2**64 - 1, 2**64 - 1, "émbeddings ✓", ZERO_ADDRESS),
            (0, 0, 1, 0, "x" * 1024, a.node2),
        ]
    ):
        order = make_order(
            d, a, nonce=nonce, max_price=price, max_rows=rows, deadline=deadline, job=job,
            node=node, dataset_id=keccak(b"dataset %d" % i),
        )  # fmt: skip
        signed = SignedOrder(order, "0x" + sign_order(a, order).hex())
        assert signed.verify() == a.requester
        assert "0x" + s.hashOrder(order.as_tuple()).call().hex() == order.digest()
        execution = "0x" + keccak(b"execution %d" % i).hex()
        onchain = s.deriveBatchId(
            bytes.fromhex(order.model_id[2:]),
            bytes.fromhex(order.dataset_id[2:]),
            order.requester,
            keccak(job.encode()),
            bytes.fromhex(execution[2:]),
        ).call()
        assert "0x" + onchain.hex() == order.batch_id(execution)
        assert order.batch_id(execution) == derive_batch_id(
            model_id=order.model_id,
            dataset_id=order.dataset_id,
            requester=order.requester,
            chain_id=d.chain_id,
            verifying_contract=d.settlement.address,
            job=job,
            execution=execution,
        )
        claim = {
            "batchId": onchain,
            "modelId": MODEL_ID,
            "runtimeId": RUNTIME_ID,
            "batchRoot": keccak(b"root %d" % i),
            "rowCount": min(rows, 2**64 - 1),
            "requester": a.requester,
            "timestamp": deadline,
            "attester": a.attester.address,
        }
        on_chain_digest = s.hashClaim(claim_tuple(claim)).call()
        python = claim_digest(SimpleNamespace(claim=batch_claim(claim), domain=domain))
        assert "0x" + on_chain_digest.hex() == python
        assert on_chain_digest == digest_of(claim_typed_data(d, claim))
        for passed in (True, False):
            typed = verdict_typed_data(domain, "0x" + onchain.hex(), python, passed)
            assert s.hashVerdict(onchain, on_chain_digest, passed).call() == digest_of(typed)
            verifier, flag, signature = verdict_tuple(d, a, a.verifiers[0], onchain,
                                                      on_chain_digest, passed)  # fmt: skip
            assert (verifier, flag) == (a.verifiers[0], passed)
            assert (
                Account.recover_message(encode_typed_data(full_message=typed), signature=signature)
                == a.verifiers[0]
            )
    # a committed record: keccak256(abi.encode(Record)) is stored as the commitment, its low
    # byte holding the batch's status (commitmentOf clears it), as ogkit.chain.records computes
    b = committed(w3, d, a)
    types = "(address,address,address,uint64,uint48,uint48,bytes32,bytes32,bytes32,bytes32,uint256)"
    stored = keccak(abi_encode([types], [b.record]))[:31] + b"\x00"
    (ev,) = events(d.settlement, "BatchCommitted", b.receipt)
    assert s.commitmentOf(b.batch_id).call() == stored == record_hash(from_event(ev).record)
    # receipt leaves: the contract, the test's reference and ogkit.crypto.merkle agree
    i, x, y = b.rows[3]
    leaf = s.receiptLeaf(i, x, y).call()
    assert leaf == receipt_leaf(i, x, y) == b.leaves[3] == leaf_hash(i, x, y)


def test_signed_verdict_round_trips_to_the_contract(
    w3: Any, world: Deployment, actors: Actors
) -> None:
    """A SignedVerdict from ogkit.verdict is what publishVerdict and finalize accept."""
    d, a = world, actors
    b = committed(w3, d, a)
    digest = b.record[9]
    verifier, passed, signature = verdict_tuple(d, a, a.verifiers[1], b.batch_id, digest, True)
    verdict = SignedVerdict(
        batch_id="0x" + b.batch_id.hex(),
        claim_digest="0x" + digest.hex(),
        verifier=verifier,
        passed=passed,
        signature="0x" + signature.hex(),
        chain_id=d.chain_id,
        verifying_contract=d.settlement.address,
    )
    assert verdict.valid() and verdict.recover() == a.verifiers[1]
    # its EIP-2098 compact form (what finalize takes) recovers the same signer on chain
    pass_digest = d.settlement.functions.hashVerdict(b.batch_id, digest, True).call()
    assert compact_signer(pass_digest, verdict.compact()) == a.verifiers[1]
    fn = d.settlement.functions.publishVerdict(b.batch_id, b.record, True, signature)
    receipt = send(w3, fn, a.outsider)  # anyone may publish it
    (ev,) = events(d.settlement, "VerdictPublished", receipt)
    assert (ev.args.batchId, ev.args.verifier, ev.args["pass"]) == (b.batch_id, verifier, True)
    assert ev.args.signature == signature
    # a pass signature published as a fail verdict names another signer
    receipt = send(
        w3,
        d.settlement.functions.publishVerdict(b.batch_id, b.record, False, signature),
        a.outsider,
    )
    assert events(d.settlement, "VerdictPublished", receipt)[0].args.verifier != verifier
    garbage = d.settlement.functions.publishVerdict(b.batch_id, b.record, True, b"\x01" * 65)
    expect_revert(w3, garbage, a.outsider, "BadVerdictSignature")
    altered = (*b.record[:10], b.record[10] + 1)
    fn = d.settlement.functions.publishVerdict(b.batch_id, altered, True, signature)
    expect_revert(w3, fn, a.outsider, "RecordMismatch")
    fn = d.settlement.functions.publishVerdict(keccak(b"?"), b.record, True, signature)
    expect_revert(w3, fn, a.outsider, "BatchNotFound")


# --------------------------------------------------------------------------- commit


def test_commit_through_an_order(w3: Any, world: Deployment, actors: Actors) -> None:
    d, a = world, actors
    s = d.settlement.functions
    rows = 5
    payment, node_fee, verifier_fee = split(PRICE, rows)
    escrow = payment + node_fee + verifier_fee
    assert escrow == 5_750_000_000_000_000_000
    b = make_batch(w3, d, a, rows=rows, nonce=42)
    assert s.nonceUsed(a.requester, 42).call() is False
    before = balances(d, a.requester, d.settlement.address)
    receipt = commit(w3, d, a, b)
    block = w3.eth.get_block(receipt["blockNumber"])
    assert balance(d, a.requester) == before[a.requester] - escrow
    assert balance(d, d.settlement.address) == before[d.settlement.address] + escrow
    (ev,) = events(d.settlement, "BatchCommitted", receipt)
    assert (ev.args.batchId, ev.args.modelId, ev.args.node) == (b.batch_id, MODEL_ID, a.node)
    digest = s.hashClaim(claim_tuple(b.claim)).call()
    assert b.record == (
        a.requester,
        a.node,
        a.model_owner,
        rows,
        block["timestamp"],
        receipt["blockNumber"] - 1,
        MODEL_ID,
        RUNTIME_ID,
        b.tree.root,
        digest,
        PRICE,
    )
    details = ev.args.details
    assert (details.datasetId, details.jobHash, details.executionHash) == (
        keccak(b"dataset"),
        keccak(b"classify"),
        b.execution_hash,
    )
    assert (details.attester, details.claimTimestamp, details.artifactId) == (
        a.attester.address,
        b.claim["timestamp"],
        b.artifact_id,
    )
    assert details.escrow == escrow
    assert "0x" + details.orderDigest.hex() == b.order.digest()
    assert s.commitmentOf(b.batch_id).call() == record_hash(from_event(ev).record)
    assert s.statusOf(b.batch_id).call() == BatchStatus.PENDING
    assert s.stateOf(b.batch_id).call() == [BatchStatus.PENDING, 0, 0]
    assert s.nonceUsed(a.requester, 42).call() is True
    assert s.nonceUsed(a.requester, 43).call() is False
    assert s.nonceUsed(a.outsider, 42).call() is False
    assert s.exposure(a.node).call() == collateral_of(PRICE, rows) == 57_500_000_000_000_000_000
    # an order open to any node, committed by this one
    open_order = committed(w3, d, a, tag=b"open", nonce=43, node=ZERO_ADDRESS)
    assert open_order.record[1] == a.node
    assert s.exposure(a.node).call() == 2 * collateral_of(PRICE, rows)
    assert s.statusOf(keccak(b"unknown")).call() == BatchStatus.NONE
    assert s.commitmentOf(keccak(b"unknown")).call() == ZERO32


def test_nonces_are_bits_of_a_per_requester_bitmap(
    w3: Any, world: Deployment, actors: Actors
) -> None:
    d, a = world, actors
    s = d.settlement.functions
    for i, nonce in enumerate((0, 255, 256, 2**256 - 1)):
        committed(w3, d, a, tag=b"nonce %d" % i, nonce=nonce)
    used = {
        n: s.nonceUsed(a.requester, n).call()
        for n in (0, 1, 254, 255, 256, 257, 2**256 - 2, 2**256 - 1)
    }
    assert used == {
        0: True,
        1: False,
        254: False,
        255: True,
        256: True,
        257: False,
        2**256 - 2: False,
        2**256 - 1: True,
    }
    again = make_batch(w3, d, a, tag=b"nonce again", nonce=255)
    err = expect_revert(w3, commit_fn(d, again), a.node, "NonceUsed")
    assert err.reason == f"NonceUsed(requester={a.requester}, nonce=255)"


def test_commit_refuses_what_the_order_does_not_allow(
    w3: Any, tester: Any, world: Deployment, actors: Actors
) -> None:
    d, a = world, actors
    forged = make_batch(w3, d, a)
    forged.order_signature = sign_order(a, forged.order, signer=a.outsider)
    expect_revert(w3, commit_fn(d, forged), a.node, "BadOrderSignature")
    garbage = make_batch(w3, d, a)
    garbage.order_signature = b"\x01" * 65
    expect_revert(w3, commit_fn(d, garbage), a.node, "BadOrderSignature")
    expired = make_batch(w3, d, a, deadline=now(w3))
    advance(tester, w3, 1)
    expired = make_batch(w3, d, a, order=expired.order)  # a fresh claim timestamp
    expect_revert(w3, commit_fn(d, expired), a.node, "OrderExpired")
    other_node = make_batch(w3, d, a, node=a.node2)
    err = expect_revert(w3, commit_fn(d, other_node), a.node, "NodeNotAllowed")
    assert err.reason == f"NodeNotAllowed(node={a.node}, allowed={a.node2})"
    too_many = make_batch(w3, d, a, rows=5, max_rows=4)
    err = expect_revert(w3, commit_fn(d, too_many), a.node, "TooManyRows")
    assert err.reason == "TooManyRows(rowCount=5, maxRows=4)"
    pricey = make_batch(w3, d, a, max_price=PRICE - 1)
    err = expect_revert(w3, commit_fn(d, pricey), a.node, "PriceAboveOrder")
    assert err.reason == f"PriceAboveOrder(price={PRICE}, maxPricePerRow={PRICE - 1})"
    unknown = make_batch(w3, d, a, model_owner=a.outsider)  # no such registration
    expect_revert(w3, commit_fn(d, unknown), a.node, "ModelNotFound")
    # the claim must speak for the order
    mismatched = make_batch(w3, d, a)
    mismatched.claim["requester"] = a.outsider
    err = expect_revert(w3, commit_fn(d, resign(d, a, mismatched)), a.node, "OrderMismatch")
    assert "requester" in err.reason
    mismatched = make_batch(w3, d, a)
    mismatched.claim["modelId"] = keccak(b"another model")
    err = expect_revert(w3, commit_fn(d, resign(d, a, mismatched)), a.node, "OrderMismatch")
    assert "modelId" in err.reason
    other_id = make_batch(w3, d, a)
    other_id.claim["batchId"] = keccak(b"a batch id of my own")
    err = expect_revert(w3, commit_fn(d, resign(d, a, other_id)), a.node, "BatchIdMismatch")
    assert other_id.batch_id.hex() in err.reason
    # no allowance, no escrow
    send(w3, d.token.functions.approve(d.settlement.address, 0), a.requester)
    expect_revert(w3, commit_fn(d, make_batch(w3, d, a)), a.node, "ERC20InsufficientAllowance")


def test_commit_refuses_what_the_node_and_claim_do_not_allow(
    w3: Any, world: Deployment, actors: Actors
) -> None:
    d, a = world, actors
    open_order = {"node": ZERO_ADDRESS}
    expect_revert(w3, commit_fn(d, make_batch(w3, d, a, **open_order)), a.outsider,
                  "NodeNotRegistered")  # fmt: skip
    expect_revert(w3, commit_fn(d, make_batch(w3, d, a, **open_order)), a.verifiers[0],
                  "NotInferenceNode")  # fmt: skip
    forged = make_batch(w3, d, a, signer=a.attester2)  # claims attester 1, signed by key 2
    expect_revert(w3, commit_fn(d, forged), a.node, "BadSignature")
    tampered = make_batch(w3, d, a)
    tampered.claim["batchRoot"] = keccak(b"another root")  # signed for the real one
    expect_revert(w3, commit_fn(d, tampered), a.node, "BadSignature")
    other = make_batch(w3, d, a, attester=a.attester2)  # validly signed, not the node's key
    err = expect_revert(w3, commit_fn(d, other), a.node, "AttesterMismatch")
    assert (
        err.reason == f"AttesterMismatch(claimed={a.attester2.address}, bound={a.attester.address})"
    )
    wrong_runtime = make_batch(w3, d, a, runtime_id=OTHER_RUNTIME_ID)
    expect_revert(w3, commit_fn(d, wrong_runtime), a.node, "RuntimeMismatch")
    empty = make_batch(w3, d, a, rows=1)
    empty.claim["rowCount"] = 0
    expect_revert(w3, commit_fn(d, resign(d, a, empty)), a.node, "EmptyBatch")
    # the claim's timestamp: at most claimMaxAge old, at most 5 minutes ahead
    t = now(w3)
    stale = make_batch(w3, d, a, timestamp=t - TEST_PARAMS.claim_max_age - 60)
    expect_revert(w3, commit_fn(d, stale), a.node, "ClaimTimestampOutOfRange")
    ahead = make_batch(w3, d, a, timestamp=t + 10 * 60)
    expect_revert(w3, commit_fn(d, ahead), a.node, "ClaimTimestampOutOfRange")
    assert d.settlement.functions.CLAIM_MAX_SKEW().call() == 300
    assert d.settlement.functions.claimMaxAge().call() == TEST_PARAMS.claim_max_age
    committed(w3, d, a, tag=b"old but fine", timestamp=t - TEST_PARAMS.claim_max_age + 60)
    # a node whose measurement is not approved
    stake_node(w3, d, a.node2, ROLE_INFERENCE, NODE_STAKE, a.attester2, OTHER_RUNTIME_ID)
    b = make_batch(
        w3, d, a, runtime_id=OTHER_RUNTIME_ID, attester=a.attester2, node=a.node2, nonce=2
    )
    err = expect_revert(w3, commit_fn(d, b), a.node2, "MeasurementNotApproved")
    assert OTHER_RUNTIME_ID.hex() in err.reason


def test_commit_under_a_hardware_measurement(w3: Any, world: Deployment, actors: Actors) -> None:
    """A hardware binding names the TEE's measurement, not the runtime id: the claim's runtime
    id must equal the bound measurement only for a software enclave (kind 1)."""
    d, a = world, actors
    tdx = keccak(b"a TDX measurement")
    send(w3, d.node_registry.functions.bootstrapMeasurement(tdx, KIND_TDX), a.deployer)
    stake_node(w3, d, a.node2, ROLE_INFERENCE, NODE_STAKE, a.attester2, tdx)
    assert d.node_registry.functions.commitInfo(a.node2).call()[2:] == [tdx, NODE_STAKE, KIND_TDX]
    b = make_batch(w3, d, a, attester=a.attester2, node=a.node2)  # runtime id: RUNTIME_ID
    commit(w3, d, a, b, sender=a.node2)
    assert (b.record[1], b.record[7]) == (a.node2, RUNTIME_ID)
    # revoked, the measurement no longer commits
    send(w3, d.node_registry.functions.bootstrapMeasurement(tdx, 0), a.deployer)
    again = make_batch(w3, d, a, attester=a.attester2, node=a.node2, nonce=2, tag=b"again")
    expect_revert(w3, commit_fn(d, again), a.node2, "MeasurementNotApproved")


def test_commit_needs_own_stake_and_collateral(w3: Any, world: Deployment, actors: Actors) -> None:
    d, a = world, actors
    s = d.settlement.functions
    # collateral: 10x the escrow of every open batch, within the operator's own stake (1000
    # OPG; the delegations in its pool do not count)
    rows_fit = NODE_STAKE // collateral_of(PRICE, 1)  # 86 rows: 989 OPG
    assert rows_fit == 86
    too_big = make_batch(w3, d, a, rows=rows_fit + 1, tag=b"big")
    err = expect_revert(w3, commit_fn(d, too_big), a.node, "InsufficientCollateral")
    required = collateral_of(PRICE, rows_fit + 1)
    assert err.reason == f"InsufficientCollateral(activeStake={NODE_STAKE}, required={required})"
    committed(w3, d, a, rows=rows_fit, tag=b"fits")
    assert s.exposure(a.node).call() == collateral_of(PRICE, rows_fit)
    # the exposure counts: the next batch must fit in what is left (11 OPG: not one row)
    one_more = make_batch(w3, d, a, rows=1, tag=b"one more", nonce=2)
    expect_revert(w3, commit_fn(d, one_more), a.node, "InsufficientCollateral")
    # a free model escrows nothing and needs no collateral
    free = keccak(b"free model")
    send(w3, registration_fn(d, a, free, price=0), a.relayer)
    b = make_batch(w3, d, a, rows=1, tag=b"free", nonce=3, model_id=free, max_price=0,
                   max_rows=10**6)  # fmt: skip
    b.claim["rowCount"] = 10**6
    commit(w3, d, a, resign(d, a, b))
    assert (b.record[3], b.record[10]) == (10**6, 0)
    assert d.settlement.functions.exposure(a.node).call() == collateral_of(PRICE, rows_fit)
    # own stake below the minimum: delegations do not make up for it
    send(w3, d.node_registry.functions.unstake(NODE_STAKE), a.node)
    err = expect_revert(
        w3, commit_fn(d, make_batch(w3, d, a, nonce=4)), a.node, "InsufficientStake"
    )
    assert err.reason == f"InsufficientStake(available=0, required={TEST_PARAMS.min_node_stake})"


def test_commit_refuses_a_batch_twice_and_deprecated_models(
    w3: Any, world: Deployment, actors: Actors
) -> None:
    d, a = world, actors
    b = committed(w3, d, a, tag=b"same")
    # another order for the same job and execution derives the same batch id
    again = make_batch(w3, d, a, tag=b"same", nonce=2, rows=3)
    assert again.batch_id == b.batch_id
    err = expect_revert(w3, commit_fn(d, again), a.node, "BatchAlreadyCommitted")
    assert b.batch_id.hex() in err.reason
    send(w3, d.model_registry.functions.deprecate(MODEL_ID), a.model_owner)
    deprecated = make_batch(w3, d, a, tag=b"after", nonce=3)
    expect_revert(w3, commit_fn(d, deprecated), a.node, "ModelIsDeprecated")


def test_commit_with_permit(w3: Any, world: Deployment, actors: Actors) -> None:
    d, a = world, actors
    s = d.settlement.functions
    send(w3, d.token.functions.approve(d.settlement.address, 0), a.requester)
    escrow = escrow_of(PRICE, 5)
    allowance = 2 * escrow
    permit = (allowance, *sign_permit(d, a, a.requester, d.settlement.address, allowance, 2**40))
    b = make_batch(w3, d, a, tag=b"permit")
    expect_revert(w3, commit_fn(d, b), a.node, "ERC20InsufficientAllowance")
    before = balance(d, a.requester)
    fn = s.commitBatchWithPermit(
        b.order.as_tuple(), b.order_signature, claim_tuple(b.claim), b.signature,
        b.execution_hash, b.artifact_id, permit,
    )  # fmt: skip
    send(w3, fn, a.node)
    assert balance(d, a.requester) == before - escrow
    assert d.token.functions.nonces(a.requester).call() == 1
    assert d.token.functions.allowance(a.requester, d.settlement.address).call() == escrow
    assert s.statusOf(b.batch_id).call() == BatchStatus.PENDING
    # the same permit again fails inside and is ignored: the allowance left pays
    second = make_batch(w3, d, a, tag=b"permit 2", nonce=2)
    fn = s.commitBatchWithPermit(
        second.order.as_tuple(), second.order_signature, claim_tuple(second.claim),
        second.signature, second.execution_hash, second.artifact_id, permit,
    )  # fmt: skip
    send(w3, fn, a.node)
    assert balance(d, a.requester) == before - 2 * escrow
    assert d.token.functions.allowance(a.requester, d.settlement.address).call() == 0
    # and with nothing left, the commit fails on the escrow, not on the permit
    third = make_batch(w3, d, a, tag=b"permit 3", nonce=3)
    fn = s.commitBatchWithPermit(
        third.order.as_tuple(), third.order_signature, claim_tuple(third.claim),
        third.signature, third.execution_hash, third.artifact_id, permit,
    )  # fmt: skip
    expect_revert(w3, fn, a.node, "ERC20InsufficientAllowance")


# --------------------------------------------------------------------------- finalize, expire


def test_finalize_with_quorum_pays_exact_amounts(
    w3: Any, tester: Any, world: Deployment, actors: Actors
) -> None:
    d, a = world, actors
    s = d.settlement.functions
    b = committed(w3, d, a)
    passes = pass_signatures(d, a, b, a.verifiers)
    err = expect_revert(w3, s.finalize(b.batch_id, b.record, passes), a.outsider,
                        "ChallengeWindowOpen")  # fmt: skip
    assert f"endsAt={b.record[4] + WINDOW}" in err.reason
    advance(tester, w3, WINDOW)
    receipt = send(w3, s.finalize(b.batch_id, b.record, passes), a.outsider)
    payment, node_fee, verifier_fee = split(PRICE, 5)
    signers = sorted(a.verifiers, key=lambda v: int(v, 16))
    weights = [VERIFIER_STAKES[a.verifiers.index(v)] for v in signers]
    shares = verifier_shares(verifier_fee, weights)
    dust = verifier_fee - sum(shares)
    assert dust == 1  # 0.25 OPG split 1:2:3 leaves one base unit, to the model owner
    (ev,) = events(d.settlement, "BatchFinalized", receipt)
    assert (ev.args.modelOwner, ev.args.node) == (a.model_owner, a.node)
    assert (ev.args.modelPayment, ev.args.nodeFee, ev.args.verifierFee) == (
        payment,
        node_fee,
        sum(shares),
    )
    assert (ev.args.passStake, ev.args.totalVerifierStake) == (sum(VERIFIER_STAKES),) * 2
    (ev,) = events(d.settlement, "VerifiersPaid", receipt)
    assert (ev.args.batchId, ev.args.verifiers, ev.args.amounts) == (b.batch_id, signers, shares)
    paid = dict(zip(signers, shares, strict=True))
    assert s.statusOf(b.batch_id).call() == BatchStatus.FINALIZED
    assert s.exposure(a.node).call() == 0
    # pull payments: the owner withdraws, fees go into stake pools
    assert s.owed(a.model_owner).call() == payment + dust
    assert s.nodeFees(a.node).call() == node_fee
    for v, share in paid.items():
        assert s.nodeFees(v).call() == share
    before = balance(d, a.model_owner)
    receipt = send(w3, s.withdraw(), a.model_owner)
    (ev,) = events(d.settlement, "Withdrawn", receipt)
    assert (ev.args.account, ev.args.amount) == (a.model_owner, payment + dust)
    assert balance(d, a.model_owner) == before + payment + dust
    assert s.owed(a.model_owner).call() == 0
    err = expect_revert(w3, s.withdraw(), a.model_owner, "NothingToClaim")
    assert a.model_owner in err.reason
    # the node's fee raises every share of its pool alike: 2000 -> 2000.5 OPG
    receipt = send(w3, s.claimNodeFees(a.node), a.outsider)  # anyone may call
    (ev,) = events(d.settlement, "NodeFeesPaid", receipt)
    assert (ev.args.node, ev.args.amount, ev.args.intoPool) == (a.node, node_fee, True)
    (ev,) = events(d.node_registry, "Rewarded", receipt)
    assert (ev.args.amount, ev.args.poolAssets) == (node_fee, POOL + node_fee)
    reg = d.node_registry.functions
    assert reg.totalStake(a.node).call() == POOL + node_fee
    assert reg.stakeOf(a.node, a.node).call() == NODE_STAKE + node_fee // 2
    d1, d2 = a.delegators
    assert reg.stakeOf(a.node, d1).call() == DELEGATIONS[0] + node_fee * 3 // 10
    assert reg.stakeOf(a.node, d2).call() == DELEGATIONS[1] + node_fee * 2 // 10
    expect_revert(w3, s.claimNodeFees(a.node), a.outsider, "NothingToClaim")
    v3 = a.verifiers[2]
    send(w3, s.claimNodeFees(v3), v3)
    assert reg.stakeOf(v3, v3).call() == VERIFIER_STAKES[2] + paid[v3]
    assert balance(d, d.settlement.address) == sum(paid.values()) - paid[v3]
    # settled: nothing more to do with the batch
    for fn in (s.finalize(b.batch_id, b.record, passes), s.expire(b.batch_id, b.record)):
        err = expect_revert(w3, fn, a.outsider, "WrongStatus")
        assert err.reason.endswith(f"status={int(BatchStatus.FINALIZED)})")


def test_finalize_quorum_and_verdict_checks(
    w3: Any, tester: Any, world: Deployment, actors: Actors
) -> None:
    """finalize takes EIP-2098 signatures of pass verdicts and recovers their signers, which
    must ascend; a signature of anything else recovers an address that weighs nothing."""
    d, a = world, actors
    s = d.settlement.functions
    v1, v2, v3 = a.verifiers
    b = committed(w3, d, a)
    advance(tester, w3, WINDOW)
    total = sum(VERIFIER_STAKES)
    pass_digest = s.hashVerdict(b.batch_id, b.record[9], True).call()

    def finalize(passes: list[Any], error: str) -> str:
        return expect_revert(w3, s.finalize(b.batch_id, b.record, passes), a.outsider, error).reason

    def quorum(pass_stake: int) -> str:
        return (
            f"QuorumNotReached(batchId=0x{b.batch_id.hex()}, passStake={pass_stake}, "
            f"totalVerifierStake={total})"
        )

    def by_signer(*pairs: tuple[str, Any]) -> list[Any]:
        return [p for _, p in sorted(pairs, key=lambda x: int(x[0], 16))]

    # 4000 of 6000 OPG is under 2/3 (6667 bps); 5000 is over
    assert finalize(pass_signatures(d, a, b, [v1, v3]), "QuorumNotReached") == quorum(4_000 * OPG)
    assert finalize([], "QuorumNotReached") == quorum(0)
    pair = pass_signatures(d, a, b, [v2, v3])
    low, high = sorted([v2, v3], key=lambda v: int(v, 16))
    assert finalize(pair[::-1], "VerdictsNotSorted") == f"VerdictsNotSorted(verifier={low})"
    assert finalize([pair[0], pair[0]], "VerdictsNotSorted") == f"VerdictsNotSorted(verifier={low})"
    # a fail verdict, or a pass verdict on another claim, recovers some other address that
    # weighs nothing: beside v2's own pass verdict, only v2's 2000 OPG count
    (v2_pass,) = pass_signatures(d, a, b, [v2])
    assert compact_signer(pass_digest, v2_pass) == v2
    for forged in (
        signed_verdict(d, a, v3, b.batch_id, b.record[9], False).compact(),
        signed_verdict(d, a, v3, b.batch_id, keccak(b"another claim"), True).compact(),
    ):
        recovered = compact_signer(pass_digest, forged)
        assert recovered not in a.verifiers
        passes = by_signer((recovered, forged), (v2, v2_pass))
        assert finalize(passes, "QuorumNotReached") == quorum(VERIFIER_STAKES[1])
    # signatures OpenZeppelin's ECDSA refuses: r = 0, s above n/2
    for bad in (
        (ZERO32, (1).to_bytes(32, "big")),
        (keccak(b"r"), (2**255 - 1).to_bytes(32, "big")),
    ):
        finalize([bad], "BadVerdictSignature")
    # a pass verdict by a non-verifier weighs nothing
    with_outsider = pass_signatures(d, a, b, [v1, v3, a.outsider])
    assert finalize(with_outsider, "QuorumNotReached") == quorum(4_000 * OPG)
    altered = (*b.record[:10], 0)  # a record with another price
    expect_revert(w3, s.finalize(b.batch_id, altered, pair), a.outsider, "RecordMismatch")
    expect_revert(w3, s.finalize(keccak(b"?"), b.record, pair), a.outsider, "BatchNotFound")
    receipt = send(w3, s.finalize(b.batch_id, b.record, pair), a.outsider)
    (ev,) = events(d.settlement, "BatchFinalized", receipt)
    assert ev.args.passStake == 5_000 * OPG and ev.args.totalVerifierStake == total
    assert events(d.settlement, "VerifiersPaid", receipt)[0].args.verifiers == [low, high]
    fee = split(PRICE, 5)[2]
    assert s.owed(a.model_owner).call() == 5 * PRICE + fee - sum(verifier_shares(fee, [2, 3]))
    assert s.nodeFees(v1).call() == 0


def test_finalize_weighs_stake_at_the_block_before_the_commit(
    w3: Any, tester: Any, world: Deployment, actors: Actors
) -> None:
    d, a = world, actors
    s = d.settlement.functions
    v1, v2, v3 = a.verifiers
    b = committed(w3, d, a)
    # v1 triples its stake after the commit: its verdict still weighs 1000 of 6000
    send(w3, d.token.functions.approve(d.node_registry.address, 2_000 * OPG), v1)
    send(w3, d.node_registry.functions.addStake(2_000 * OPG), v1)
    advance(tester, w3, WINDOW)
    passes = pass_signatures(d, a, b, [v1, v3])
    err = expect_revert(w3, s.finalize(b.batch_id, b.record, passes), a.outsider,
                        "QuorumNotReached")  # fmt: skip
    assert f"passStake={4_000 * OPG}" in err.reason
    assert f"totalVerifierStake={sum(VERIFIER_STAKES)}" in err.reason
    send(w3, s.finalize(b.batch_id, b.record, pass_signatures(d, a, b, [v1, v2, v3])), a.outsider)


def test_expire_refunds_only_after_the_grace(
    w3: Any, tester: Any, world: Deployment, actors: Actors
) -> None:
    d, a = world, actors
    s = d.settlement.functions
    before = balance(d, a.requester)
    b = committed(w3, d, a)
    committed_at = b.record[4]
    err = expect_revert(w3, s.expire(b.batch_id, b.record), a.outsider, "FinalizeGraceOpen")
    assert f"endsAt={committed_at + 2 * WINDOW}" in err.reason
    advance(tester, w3, WINDOW)  # the window is over, the node's grace is not
    expect_revert(w3, s.finalize(b.batch_id, b.record, []), a.outsider, "QuorumNotReached")
    expect_revert(w3, s.expire(b.batch_id, b.record), a.outsider, "FinalizeGraceOpen")
    tester.time_travel(committed_at + 2 * WINDOW - 2)
    expect_revert(w3, s.expire(b.batch_id, b.record), a.outsider, "FinalizeGraceOpen")
    tester.time_travel(committed_at + 2 * WINDOW)
    receipt = send(w3, s.expire(b.batch_id, b.record), a.outsider)
    (ev,) = events(d.settlement, "BatchRefunded", receipt)
    assert (ev.args.batchId, ev.args.requester, ev.args.amount) == (
        b.batch_id,
        a.requester,
        escrow_of(PRICE, 5),
    )
    assert balance(d, a.requester) == before
    assert s.statusOf(b.batch_id).call() == BatchStatus.REFUNDED
    assert s.exposure(a.node).call() == 0
    expect_revert(w3, s.expire(b.batch_id, b.record), a.outsider, "WrongStatus")
    passes = pass_signatures(d, a, b, a.verifiers)
    expect_revert(w3, s.finalize(b.batch_id, b.record, passes), a.outsider, "WrongStatus")
    expect_revert(w3, s.expire(keccak(b"?"), b.record), a.outsider, "BatchNotFound")


# --------------------------------------------------------------------------- challenges


def test_challenge_commit_reveal_and_evidence(
    w3: Any, tester: Any, world: Deployment, actors: Actors
) -> None:
    d, a = world, actors
    s, reg = d.settlement.functions, d.node_registry.functions
    ch, d1 = a.challenger, a.delegators[0]
    receipt = send(w3, reg.undelegate(a.node, 100 * OPG), d1)
    unbonding_id = events(d.node_registry, "UnbondingStarted", receipt)[0].args.unbondingId
    advance(tester, w3, TEST_PARAMS.unbonding_period)  # d1 could withdraw now
    b = committed(w3, d, a)
    send(w3, d.token.functions.approve(d.settlement.address, 10 * BOND), ch)
    i, x, y = b.rows[2]
    uncommitted = s.challenge(b.batch_id, b.record, (i, x, y, HONEST, keccak(b"never")), b.proof(2))
    expect_revert(w3, uncommitted, ch, "ChallengeNotCommitted")
    # another account's commitment is not the caller's
    theirs = reveal_fn(w3, d, a.outsider, b, 2, salt=keccak(b"theirs"))
    expect_revert(w3, theirs, ch, "ChallengeNotCommitted")
    expect_revert(w3, reveal_fn(w3, d, ch, b, 2, claimed=y), ch, "NoDiscrepancy")
    err = expect_revert(w3, reveal_fn(w3, d, ch, b, 2, row_index=5), ch, "RowOutOfRange")
    assert err.reason == "RowOutOfRange(rowIndex=5, rowCount=5)"
    expect_revert(w3, reveal_fn(w3, d, ch, b, 2, row_index=3), ch, "InvalidProof")
    expect_revert(w3, reveal_fn(w3, d, ch, b, 2, output_hash=keccak(b"x")), ch, "InvalidProof")
    expect_revert(w3, reveal_fn(w3, d, ch, b, 2, proof=b.proof(1)), ch, "InvalidProof")
    altered = (*b.record[:10], 0)
    fn = s.challenge(b.batch_id, altered, (i, x, y, HONEST, SALT), b.proof(2))
    expect_revert(w3, fn, ch, "RecordMismatch")
    # a valid challenge: the bond is posted, the node's withdrawals are locked
    before = balance(d, ch)
    receipt = send(w3, reveal_fn(w3, d, ch, b, 2), ch)
    (ev,) = events(d.settlement, "ChallengeOpened", receipt)
    dispute = ev.args.disputeId
    assert (ev.args.batchId, ev.args.challenger, ev.args.rowIndex) == (b.batch_id, ch, 2)
    assert (ev.args.inputHash, ev.args.outputHash, ev.args.claimedOutputHash, ev.args.bond) == (
        x,
        y,
        HONEST,
        BOND,
    )
    assert dispute == s.disputeCount().call()
    assert balance(d, ch) == before - BOND
    assert reg.withdrawLocks(a.node).call() == 1
    # while a dispute against the node is open, nothing leaves its pool
    expect_revert(w3, reg.withdraw(unbonding_id), d1, "WithdrawalLocked")
    assert s.stateOf(b.batch_id).call() == [BatchStatus.DISPUTED, dispute, 0]
    got = list(s.getDispute(dispute).call())
    assert got[:4] == [b.batch_id, ch, now(w3), b.record[5]]  # the batch's snapshot block
    assert got[4:] == [0, 0, 0, 0, sum(VERIFIER_STAKES), 2, 0, b.leaves[2]]  # the leaf
    # one dispute at a time; nothing settles while it is open
    expect_revert(w3, reveal_fn(w3, d, ch, b, 1, salt=keccak(b"2nd")), ch, "WrongStatus")
    passes = pass_signatures(d, a, b, a.verifiers)
    advance(tester, w3, WINDOW)
    expect_revert(w3, s.finalize(b.batch_id, b.record, passes), a.outsider, "WrongStatus")
    expect_revert(w3, s.expire(b.batch_id, b.record), a.outsider, "WrongStatus")
    # after the window nobody can challenge a batch
    late = committed(w3, d, a, tag=b"late", nonce=2)
    advance(tester, w3, WINDOW)
    expect_revert(w3, reveal_fn(w3, d, ch, late, 2), ch, "ChallengeWindowClosed")


def test_upheld_challenge_pays_exact_amounts(
    w3: Any, tester: Any, world: Deployment, actors: Actors
) -> None:
    d, a = world, actors
    s, reg = d.settlement.functions, d.node_registry.functions
    v1, v2, v3 = a.verifiers
    d1, d2 = a.delegators
    ch = a.challenger
    # d2 starts unbonding 200 OPG: unbonding stake stays slashable
    unbonding = send(w3, reg.undelegate(a.node, 200 * OPG), d2)
    unbonding_id = events(d.node_registry, "UnbondingStarted", unbonding)[0].args.unbondingId
    b = committed(w3, d, a)
    wrong_pass = verdict_tuple(d, a, v3, b.batch_id, b.record[9], True)  # v3 signed pass
    right_fail = verdict_tuple(d, a, v1, b.batch_id, b.record[9], False)  # v1 signed fail
    start = balances(d, a.requester, ch, d.settlement.address, BURN)
    dispute = open_challenge(w3, d, a, b)
    assert balance(d, ch) == start[ch] - BOND
    receipt = vote(w3, d, b, dispute, v2, True)  # 2000 of 6000: not yet
    (ev,) = events(d.settlement, "DisputeVoted", receipt)
    assert (ev.args.verifier, ev.args.upheld, ev.args.weight) == (v2, True, VERIFIER_STAKES[1])
    assert s.voteOf(dispute, v2).call() == [True, True, VERIFIER_STAKES[1]]
    assert s.voteOf(dispute, v1).call() == [False, False, 0]
    assert status(d, b) == BatchStatus.DISPUTED
    expect_revert(w3, s.voteDispute(dispute, b.record, False), v2, "AlreadyVoted")
    expect_revert(w3, s.voteDispute(dispute, b.record, True), a.outsider, "NotVerifier")
    expect_revert(w3, s.voteDispute(dispute, b.record, True), a.node, "NotVerifier")
    expect_revert(w3, s.voteDispute(dispute + 1, b.record, True), v3, "UnknownDispute")
    expect_revert(w3, s.claimDisputeReward(dispute, b.record, right_fail), v1, "NotUpheld")
    # v1 does not vote: its fail verdict, published before the decision, is its evidence
    send(w3, s.publishVerdict(b.batch_id, b.record, False, right_fail[2]), v1)
    assert s.failVerdictPublished(b.batch_id, v1).call() is True
    receipt = vote(w3, d, b, dispute, v3, True)  # 5000 of 6000 >= 2/3: upheld at once

    escrow = escrow_of(PRICE, 5)
    payment, node_fee, verifier_fee = split(PRICE, 5)
    collateral = collateral_of(PRICE, 5)  # 57.5 OPG, under the minimum slash
    own_target = max(collateral, TEST_PARAMS.min_slash)
    assert own_target == 100 * OPG
    # the pool loses the share that takes 100 OPG from the operator's own 1000: 10 % of 2000
    slash = POOL * own_target // NODE_STAKE
    assert slash == 200 * OPG
    reward = own_target * TEST_PARAMS.challenger_reward_bps // BPS  # 50 OPG, from its own part
    burned = slash - reward  # 150 OPG: no account gets the delegators' part of the slash
    to_requester = payment + node_fee  # 5.5 OPG: the escrow less the verifier fee
    (ev,) = events(d.settlement, "ChallengeUpheld", receipt)
    assert (ev.args.disputeId, ev.args.node, ev.args.challenger) == (dispute, a.node, ch)
    assert (ev.args.slashed, ev.args.challengerReward, ev.args.requesterRefund) == (
        slash,
        reward,
        to_requester,
    )
    (refund,) = events(d.settlement, "BatchRefunded", receipt)
    assert refund.args.amount == to_requester
    (sl,) = events(d.node_registry, "Slashed", receipt)
    assert (sl.args.node, sl.args.recipient, sl.args.amount) == (
        a.node,
        d.settlement.address,
        slash,
    )
    assert (sl.args.fromNode, sl.args.remainingPoolAssets) == (own_target, POOL - slash)
    assert balance(d, a.requester) == start[a.requester] + to_requester
    assert balance(d, ch) == start[ch] + reward
    assert balance(d, BURN) == start[BURN] + burned
    assert d.settlement.functions.BURN_ADDRESS().call() == BURN
    # the verifier fee stays for the verifiers who proved right
    assert balance(d, d.settlement.address) == start[d.settlement.address] - escrow + verifier_fee
    got = list(s.getDispute(dispute).call())
    assert got[4] == 1 and got[5] == now(w3)  # OUTCOME_UPHELD, resolved now
    assert got[6:9] == [5_000 * OPG, 0, sum(VERIFIER_STAKES)]
    assert got[10] == verifier_fee
    assert status(d, b) == BatchStatus.SLASHED
    assert s.exposure(a.node).call() == 0
    assert reg.withdrawLocks(a.node).call() == 0
    expect_revert(w3, s.voteDispute(dispute, b.record, True), v1, "DisputeClosed")
    # every holder of the pool lost exactly 10 %, unbonding stake included
    assert reg.stakeOf(a.node, a.node).call() == 900 * OPG
    assert reg.stakeOf(a.node, d1).call() == 540 * OPG
    assert reg.stakeOf(a.node, d2).call() == 180 * OPG
    assert reg.getUnbonding(unbonding_id).call()[4] == 180 * OPG
    assert reg.getNode(a.node).call()[3:] == [900 * OPG, 720 * OPG, 180 * OPG]
    assert reg.totalStake(a.node).call() == 1_620 * OPG
    # with its own stake under the minimum the node weighs nothing: no commits, no votes
    assert reg.commitInfo(a.node).call()[3] == 0
    assert reg.totalRoleStake(ROLE_INFERENCE).call() == 0
    next_batch = make_batch(w3, d, a, tag=b"next", nonce=2)
    expect_revert(w3, commit_fn(d, next_batch), a.node, "InsufficientStake")

    # dispute rewards: verifierFee x weight / verifier stake at dispute open
    amounts = {
        v: verifier_fee * w // sum(VERIFIER_STAKES)
        for v, w in zip(a.verifiers, VERIFIER_STAKES, strict=True)
    }
    for v, evidence in ((v2, (v2, False, b"")), (v3, (v3, False, b"")), (v1, right_fail)):
        receipt = send(w3, s.claimDisputeReward(dispute, b.record, evidence), a.outsider)
        (ev,) = events(d.settlement, "DisputeRewardClaimed", receipt)
        assert (ev.args.verifier, ev.args.amount) == (v, amounts[v])
        assert s.nodeFees(v).call() == amounts[v]
        assert s.rewardClaimed(dispute, v).call() is True
    err = expect_revert(w3, s.claimDisputeReward(dispute, b.record, (v2, False, b"")), v2,
                        "AlreadyClaimed")  # fmt: skip
    assert v2 in err.reason
    not_voted = verdict_tuple(d, a, a.outsider, b.batch_id, b.record[9], False)
    expect_revert(w3, s.claimDisputeReward(dispute, b.record, not_voted), a.outsider, "NotVerifier")
    expect_revert(w3, s.claimDisputeReward(dispute, b.record, wrong_pass), v3, "AlreadyClaimed")
    left = verifier_fee - sum(amounts.values())
    assert left == 1
    assert s.getDispute(dispute).call()[10] == left
    err = expect_revert(w3, s.sweepDisputeReward(dispute, b.record), a.outsider, "ClaimPeriodOpen")
    assert f"endsAt={got[5] + WINDOW}" in err.reason

    # the pass attester loses verifierSlashBps of its pool, all of it burned (a challenger
    # may be the forger's own key: no share of it goes to anyone)
    before = balances(d, ch, BURN)
    receipt = send(w3, s.slashPassAttester(dispute, b.record, wrong_pass), a.outsider)
    slashed = VERIFIER_STAKES[2] * TEST_PARAMS.verifier_slash_bps // BPS  # 300 OPG
    (ev,) = events(d.settlement, "PassAttesterSlashed", receipt)
    assert (ev.args.verifier, ev.args.challenger, ev.args.amount) == (v3, ch, slashed)
    assert balance(d, ch) == before[ch]
    assert balance(d, BURN) == before[BURN] + slashed
    assert reg.totalStake(v3).call() == VERIFIER_STAKES[2] - slashed
    assert s.attesterSlashed(b.batch_id, v3).call() is True
    expect_revert(
        w3, s.slashPassAttester(dispute, b.record, wrong_pass), a.outsider, "AlreadySlashed"
    )
    expect_revert(
        w3, s.slashPassAttester(dispute, b.record, right_fail), a.outsider, "VerdictNotPass"
    )
    forged = (v2, True, wrong_pass[2])
    expect_revert(
        w3, s.slashPassAttester(dispute, b.record, forged), a.outsider, "BadVerdictSignature"
    )

    # after the claim period, what is left goes to the requester
    advance(tester, w3, WINDOW)
    expect_revert(w3, s.claimDisputeReward(dispute, b.record, right_fail), v1, "ClaimPeriodOver")
    before = balance(d, a.requester)
    receipt = send(w3, s.sweepDisputeReward(dispute, b.record), a.outsider)
    (ev,) = events(d.settlement, "DisputeRewardSwept", receipt)
    assert (ev.args.requester, ev.args.amount) == (a.requester, left)
    assert balance(d, a.requester) == before + left
    expect_revert(w3, s.sweepDisputeReward(dispute, b.record), a.outsider, "NothingToClaim")
    assert balance(d, d.settlement.address) == (
        start[d.settlement.address] - escrow + verifier_fee - left
    )
    # the unbonding delegator withdraws the slashed amount after the period
    advance(tester, w3, TEST_PARAMS.unbonding_period)
    before = balance(d, d2)
    send(w3, reg.withdraw(unbonding_id), d2)
    assert balance(d, d2) == before + 180 * OPG


def test_upheld_slash_follows_the_collateral_of_a_big_batch(
    w3: Any, world: Deployment, actors: Actors
) -> None:
    d, a = world, actors
    v2, v3 = a.verifiers[1:]
    b = committed(w3, d, a, rows=80, tag=b"big")
    collateral = collateral_of(PRICE, 80)  # 920 OPG, over the minimum slash
    assert collateral == 920 * OPG
    dispute = open_challenge(w3, d, a, b)
    vote(w3, d, b, dispute, v2, True)
    burned = balance(d, BURN)
    receipt = vote(w3, d, b, dispute, v3, True)
    (ev,) = events(d.settlement, "ChallengeUpheld", receipt)
    slash = POOL * collateral // NODE_STAKE  # 92 % of the pool: 920 of the operator's 1000
    assert ev.args.slashed == slash == 1_840 * OPG
    assert ev.args.challengerReward == collateral // 2
    payment, node_fee, _ = split(PRICE, 80)
    assert ev.args.requesterRefund == payment + node_fee
    assert balance(d, BURN) == burned + slash - collateral // 2
    assert d.node_registry.functions.slashableStake(a.node).call() == POOL - slash
    assert d.node_registry.functions.stakeOf(a.node, a.node).call() == NODE_STAKE - collateral


def test_rejected_challenge_splits_the_bond_between_node_and_requester(
    w3: Any, tester: Any, world: Deployment, actors: Actors
) -> None:
    d, a = world, actors
    s = d.settlement.functions
    v2, v3 = a.verifiers[1:]
    b = committed(w3, d, a)
    committed_at = b.record[4]
    tester.time_travel(committed_at + WINDOW - 30)  # challenged late in the window
    ch0, node0 = balance(d, a.challenger), balance(d, a.node)
    requester0 = balance(d, a.requester)
    dispute = open_challenge(w3, d, a, b)
    tester.time_travel(committed_at + WINDOW + WINDOW // 2)  # voting runs past the window
    vote(w3, d, b, dispute, v2, False)
    receipt = vote(w3, d, b, dispute, v3, False)
    rejected_at = now(w3)
    (ev,) = events(d.settlement, "ChallengeRejected", receipt)
    assert (ev.args.disputeId, ev.args.node, ev.args.challenger, ev.args.bondToNode) == (
        dispute,
        a.node,
        a.challenger,
        BOND - BOND // 2,
    )
    assert balance(d, a.challenger) == ch0 - BOND
    assert balance(d, a.node) == node0 + BOND - BOND // 2  # the node's address, not its pool
    assert balance(d, a.requester) == requester0 + BOND // 2  # its escrow waits a window more
    assert d.node_registry.functions.totalStake(a.node).call() == POOL
    # the lock stays while the batch is Pending again (a fresh challenge window)
    assert d.node_registry.functions.withdrawLocks(a.node).call() == 1
    assert s.stateOf(b.batch_id).call() == [BatchStatus.PENDING, dispute, rejected_at]
    assert s.getDispute(dispute).call()[4] == 2  # OUTCOME_REJECTED
    expect_revert(w3, s.claimDisputeReward(dispute, b.record, (v2, False, b"")), v2, "NotUpheld")
    expect_revert(w3, s.sweepDisputeReward(dispute, b.record), v2, "NotUpheld")
    # the challenge window and the expiry grace restart when the dispute closes
    tester.time_travel(committed_at + 2 * WINDOW + 60)
    err = expect_revert(w3, s.expire(b.batch_id, b.record), a.outsider, "FinalizeGraceOpen")
    assert f"endsAt={rejected_at + 2 * WINDOW}" in err.reason
    passes = pass_signatures(d, a, b, a.verifiers)
    err = expect_revert(w3, s.finalize(b.batch_id, b.record, passes), a.outsider,
                        "ChallengeWindowOpen")  # fmt: skip
    assert f"endsAt={rejected_at + WINDOW}" in err.reason
    # back to pending: the batch settles normally after its fresh window
    tester.time_travel(rejected_at + WINDOW)
    send(w3, s.finalize(b.batch_id, b.record, passes), a.outsider)
    assert status(d, b) == BatchStatus.FINALIZED
    assert s.exposure(a.node).call() == 0
    assert d.node_registry.functions.withdrawLocks(a.node).call() == 0


@pytest.mark.parametrize(
    ("fallback", "outcome", "after"),
    [
        ("none", 3, BatchStatus.REFUNDED),  # voided: bond back, the requester refunded
        ("fail", 1, BatchStatus.SLASHED),  # the batch's fail verdicts hold the quorum
        ("pass", 2, BatchStatus.PENDING),  # its pass verdicts hold it: rejected
    ],
)
def test_unresolved_dispute_falls_back_to_the_verdicts(
    w3: Any,
    tester: Any,
    world: Deployment,
    actors: Actors,
    fallback: str,
    outcome: int,
    after: BatchStatus,
) -> None:
    d, a = world, actors
    s = d.settlement.functions
    v1, v2, v3 = a.verifiers
    b = committed(w3, d, a)
    ch0, node0 = balance(d, a.challenger), balance(d, a.node)
    dispute = open_challenge(w3, d, a, b)
    opened = s.getDispute(dispute).call()[2]
    vote(w3, d, b, dispute, v1, False)  # 1000 of 6000 rejected: no supermajority
    verdicts = {
        "none": sorted_verdicts(d, a, b, [v1], passed=False),
        "fail": sorted_verdicts(d, a, b, [v2, v3], passed=False),
        "pass": sorted_verdicts(d, a, b, [v2, v3], passed=True),
    }[fallback]
    err = expect_revert(w3, s.resolveChallenge(dispute, b.record, verdicts), a.outsider,
                        "VotingOpen")  # fmt: skip
    assert f"endsAt={opened + WINDOW}" in err.reason
    tester.time_travel(opened + WINDOW)
    expect_revert(w3, s.voteDispute(dispute, b.record, True), v2, "VotingClosed")
    unsorted = verdicts[::-1] if len(verdicts) > 1 else [*verdicts, *verdicts]
    expect_revert(w3, s.resolveChallenge(dispute, b.record, unsorted), a.outsider,
                  "VerdictsNotSorted")  # fmt: skip
    if fallback == "none":  # nothing decisive: a void waits a second window
        err = expect_revert(w3, s.resolveChallenge(dispute, b.record, verdicts), a.outsider,
                            "VotingOpen")  # fmt: skip
        assert f"endsAt={opened + 2 * WINDOW}" in err.reason
        tester.time_travel(opened + 2 * WINDOW)
    receipt = send(w3, s.resolveChallenge(dispute, b.record, verdicts), a.outsider)
    assert s.getDispute(dispute).call()[4] == outcome
    assert status(d, b) == after
    # released when the batch is final; a batch Pending again keeps it
    locks = 1 if after == BatchStatus.PENDING else 0
    assert d.node_registry.functions.withdrawLocks(a.node).call() == locks
    if fallback == "none":
        (ev,) = events(d.settlement, "ChallengeVoided", receipt)
        assert (ev.args.disputeId, ev.args.challenger) == (dispute, a.challenger)
        assert balance(d, a.challenger) == ch0  # bond back
        assert balance(d, a.node) == node0
        (refund,) = events(d.settlement, "BatchRefunded", receipt)
        assert refund.args.amount == sum(split(PRICE, 5))
        assert s.exposure(a.node).call() == 0
    elif fallback == "fail":
        (ev,) = events(d.settlement, "ChallengeUpheld", receipt)
        assert ev.args.slashed == POOL * TEST_PARAMS.min_slash // NODE_STAKE
        assert balance(d, a.challenger) == ch0 + TEST_PARAMS.min_slash // 2
        # the reward is for those who proved right: v1 voted rejected, v2 signed fail
        v1_fail = verdict_tuple(d, a, v1, b.batch_id, b.record[9], False)
        err = expect_revert(w3, s.claimDisputeReward(dispute, b.record, v1_fail), v1,
                            "WrongVerdict")  # fmt: skip
        assert v1 in err.reason
        v2_fail = verdicts[[v for v, _, _ in verdicts].index(v2)]
        receipt = send(w3, s.claimDisputeReward(dispute, b.record, v2_fail), v2)
        fee = split(PRICE, 5)[2]
        amount = fee * VERIFIER_STAKES[1] // sum(VERIFIER_STAKES)
        assert events(d.settlement, "DisputeRewardClaimed", receipt)[0].args.amount == amount
    else:
        assert len(events(d.settlement, "ChallengeRejected", receipt)) == 1
        assert balance(d, a.node) == node0 + BOND - BOND // 2
    expect_revert(w3, s.resolveChallenge(dispute, b.record, verdicts), a.outsider, "DisputeClosed")
    expect_revert(w3, s.resolveChallenge(dispute + 1, b.record, verdicts), a.outsider,
                  "UnknownDispute")  # fmt: skip


def test_claim_node_fees_into_the_pool_or_to_the_address(
    w3: Any, tester: Any, world: Deployment, actors: Actors
) -> None:
    d, a = world, actors
    s, reg = d.settlement.functions, d.node_registry.functions
    v1, v2, _ = a.verifiers
    b = committed(w3, d, a)
    advance(tester, w3, WINDOW)
    send(w3, s.finalize(b.batch_id, b.record, pass_signatures(d, a, b, a.verifiers)), a.outsider)
    fees = {v: s.nodeFees(v).call() for v in (v1, v2)}
    assert all(fees.values())
    # v1 leaves: its pool has no shares, so its fees are paid to its address
    receipt = send(w3, reg.unstake(VERIFIER_STAKES[0]), v1)
    uid = events(d.node_registry, "UnbondingStarted", receipt)[0].args.unbondingId
    advance(tester, w3, TEST_PARAMS.unbonding_period)
    send(w3, reg.withdraw(uid), v1)
    assert reg.sharesOf(v1, v1).call() == [0, 0, 0]
    before = balance(d, v1)
    receipt = send(w3, s.claimNodeFees(v1), a.outsider)
    (ev,) = events(d.settlement, "NodeFeesPaid", receipt)
    assert (ev.args.node, ev.args.amount, ev.args.intoPool) == (v1, fees[v1], False)
    assert events(d.node_registry, "Rewarded", receipt) == []
    assert balance(d, v1) == before + fees[v1]
    # v2 is still staked: into its pool
    before = balance(d, v2)
    receipt = send(w3, s.claimNodeFees(v2), a.outsider)
    assert events(d.settlement, "NodeFeesPaid", receipt)[0].args.intoPool is True
    assert balance(d, v2) == before
    assert reg.totalStake(v2).call() == VERIFIER_STAKES[1] + fees[v2]
    err = expect_revert(w3, s.claimNodeFees(a.outsider), a.outsider, "NothingToClaim")
    assert a.outsider in err.reason


# --------------------------------------------------------------------------- receipts


def test_verify_receipt(w3: Any, tester: Any, world: Deployment, actors: Actors) -> None:
    d, a = world, actors
    b = committed(w3, d, a, rows=7)
    verify = d.settlement.functions.verifyReceipt
    pending = [True, BatchStatus.PENDING]
    for i, x, y in b.rows:
        assert verify(b.batch_id, b.record, i, x, y, b.proof(i)).call() == pending
    i, x, y = b.rows[3]
    proof = b.proof(3)
    no = [False, BatchStatus.PENDING]
    assert verify(b.batch_id, b.record, i, x, keccak(b"altered output"), proof).call() == no
    assert verify(b.batch_id, b.record, i + 1, x, y, proof).call() == no
    assert verify(b.batch_id, b.record, i, x, y, [*proof[:-1], keccak(b"x")]).call() == no
    assert verify(b.batch_id, b.record, i, x, y, proof[:-1]).call() == no
    # an inner node of the tree is not a receipt
    assert verify(b.batch_id, b.record, i, x, y, []).call() == no
    altered = (*b.record[:3], 8, *b.record[4:])
    assert verify(b.batch_id, altered, i, x, y, proof).call() == no
    assert verify(keccak(b"unknown"), b.record, i, x, y, proof).call() == [False, BatchStatus.NONE]
    # a row past rowCount does not count even when its leaf is in the tree
    short = make_batch(w3, d, a, rows=4, tag=b"short", nonce=2)
    short.claim["rowCount"] = 3
    commit(w3, d, a, resign(d, a, short))
    for j, xj, yj in short.rows:
        included = verify(short.batch_id, short.record, j, xj, yj, short.proof(j)).call()
        assert included == [j < 3, BatchStatus.PENDING]
    advance(tester, w3, WINDOW)
    passes = pass_signatures(d, a, b, a.verifiers)
    send(w3, d.settlement.functions.finalize(b.batch_id, b.record, passes), a.outsider)
    assert verify(b.batch_id, b.record, i, x, y, proof).call() == [True, BatchStatus.FINALIZED]


def test_receipt_leaf_matches_spec_vector(world: Deployment) -> None:
    """docs/spec.md section 3.1 test vector, computed by the contract."""
    leaf = world.settlement.functions.receiptLeaf(7, bytes([4]) * 32, bytes([5]) * 32).call()
    assert leaf.hex() == "16426041c31ff066c891b50b778da61103e5cffa782003d91030ab110c282666"


def test_one_root_in_two_batches_counts_only_under_each_record(
    w3: Any, world: Deployment, actors: Actors
) -> None:
    """A leaf names no batch (spec 3.1), so a node can commit the same rows (the same
    leaves and root) as batches of two models. A receipt is included under a batch only
    with that batch's own record (its model, runtime and requester); a challenge under
    one batch id with the other's record is refused; the dispute opened on the second
    batch is on that batch, whose record names the model the verifiers re-execute."""
    d, a = world, actors
    s = d.settlement.functions
    other = keccak(b"another model, the same rows")
    send(w3, registration_fn(d, a, other, price=0), a.relayer)
    first = committed(w3, d, a, tag=b"v4 shared rows", nonce=11)
    second = committed(w3, d, a, tag=b"v4 shared rows", nonce=12, model_id=other, max_price=0)
    assert first.tree.root == second.tree.root and first.batch_id != second.batch_id
    assert (first.record[6], second.record[6]) == (MODEL_ID, other)  # Record.modelId
    i, x, y = first.rows[2]
    proof = first.proof(2)
    assert s.receiptLeaf(i, x, y).call() == first.leaves[2] == second.leaves[2]
    for b in (first, second):
        assert s.verifyReceipt(b.batch_id, b.record, i, x, y, proof).call() == [
            True,
            BatchStatus.PENDING,
        ]
    # the other batch's record is not taken under this batch id, whatever the leaf
    assert s.verifyReceipt(second.batch_id, first.record, i, x, y, proof).call()[0] is False
    assert s.verifyReceipt(first.batch_id, second.record, i, x, y, proof).call()[0] is False
    ch = a.challenger
    send(w3, d.token.functions.approve(d.settlement.address, 10 * BOND), ch)
    commitment = s.challengeCommitment(ch, second.batch_id, i, HONEST, SALT).call()
    send(w3, s.commitChallenge(commitment), ch)
    crossed = s.challenge(second.batch_id, first.record, (i, x, y, HONEST, SALT), proof)
    expect_revert(w3, crossed, ch, "RecordMismatch")
    receipt = send(
        w3, s.challenge(second.batch_id, second.record, (i, x, y, HONEST, SALT), proof), ch
    )
    (ev,) = events(d.settlement, "ChallengeOpened", receipt)
    assert s.getDispute(ev.args.disputeId).call()[0] == second.batch_id
    assert s.stateOf(second.batch_id).call()[0] == BatchStatus.DISPUTED
    assert s.stateOf(first.batch_id).call()[0] == BatchStatus.PENDING  # untouched


def test_a_proof_answers_only_the_challenged_leaf(
    w3: Any, world: Deployment, actors: Actors
) -> None:
    """A node whose root holds two leaves for row 2 — the forged one it receipted and an
    honest one — cannot answer the dispute on the forged leaf with a proof of the honest
    leaf: the dispute keeps the challenged leaf, and ZkJudge.resolve takes that one only
    (before, any leaf of the row's index in the root passed to the proof check)."""
    from ogkit.chain.bindings import load_compiled

    d, a = world, actors
    s = d.settlement.functions
    rows = 4
    inputs = [b"input %d" % i for i in range(rows)]
    forged_out, honest_out = b"forged output 2", b"honest output 2"
    data = [(i, keccak(x), keccak(b"output %d" % i)) for i, x in enumerate(inputs)]
    data[2] = (2, keccak(inputs[2]), keccak(forged_out))
    b = make_batch(w3, d, a, rows=rows, tag=b"two leaves for row 2", nonce=21)
    b.rows, b.leaves = data, [receipt_leaf(*row) for row in data]
    honest_leaf = receipt_leaf(2, keccak(inputs[2]), keccak(honest_out))
    b.tree = MerkleTree([*b.leaves, honest_leaf])  # one leaf more than the rows it claims
    b.claim["batchRoot"] = b.tree.root
    commit(w3, d, a, resign(d, a, b))
    dispute = open_challenge(w3, d, a, b, row=2)
    assert s.getDispute(dispute).call()[11] == b.leaves[2]
    judge = w3.eth.contract(address=s.zkJudge().call(), abi=load_compiled("ZkJudge")["abi"])

    errors = [e for e in judge.abi if e["type"] == "error"]
    by_selector = {
        keccak(f"{e['name']}({','.join(i['type'] for i in e['inputs'])})".encode())[:4].hex(): (
            f"{e['name']}({','.join(i['type'] for i in e['inputs'])})"
        )
        for e in errors
    }

    def judge_error(fn: Any) -> str:
        """The ZkJudge custom error ``fn`` reverts with, by its selector."""
        with pytest.raises(Exception) as info:
            fn.call({"from": a.node})
        reason = decode_revert(info.value) or ""
        return next(
            (
                sig
                for sel, sig in by_selector.items()
                if f"0x{sel}" in reason or reason.startswith(sig.split("(")[0] + "(")
            ),
            reason,
        )

    def resolve(output: bytes, leaf: bytes) -> Any:
        rp = (2, 0, inputs[2], output, b.tree.proof(leaf), b"", [])
        return judge.functions.resolve(dispute, b.batch_id, b.record, rp, [], [])

    # the honest leaf is in the root, but it is not the challenged one
    assert s.verifyReceipt(
        b.batch_id, b.record, 2, keccak(inputs[2]), keccak(honest_out), b.tree.proof(honest_leaf)
    ).call()[0]
    not_disputed = "NotTheDisputedRow(uint256,bytes32,uint256)"
    assert judge_error(resolve(honest_out, honest_leaf)) == not_disputed
    # the challenged leaf goes on to the model's ZK profile (none approved here)
    assert judge_error(resolve(forged_out, b.leaves[2])) == "ProfileNotApproved(bytes32,address)"


def test_merkle_tree_matches_openzeppelin_js() -> None:
    node = shutil.which("node")
    lib = REPO / "node_modules" / "@openzeppelin" / "merkle-tree"
    if node is None or not lib.is_dir():
        pytest.skip("needs node and node_modules/@openzeppelin/merkle-tree (npm ci)")
    rows = [(i, keccak(b"in%d" % i), keccak(b"out%d" % i)) for i in range(6)]
    tree = MerkleTree([receipt_leaf(i, x, y) for i, x, y in rows])
    values = [[str(i), "0x" + x.hex(), "0x" + y.hex()] for i, x, y in rows]
    code = (
        "import { SimpleMerkleTree } from '@openzeppelin/merkle-tree';\n"
        "import { AbiCoder, keccak256 } from 'ethers';\n"
        f"const leaves = {json.dumps(values)}.map((v) => keccak256("
        "AbiCoder.defaultAbiCoder().encode(['uint256','bytes32','bytes32'], v)));\n"
        "const t = SimpleMerkleTree.of(leaves);\n"
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
    leaf = receipt_leaf(*rows[2])
    assert result["proof"] == ["0x" + p.hex() for p in tree.proof(leaf)]


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
    """commitBatch is O(1) in rowCount; verifyReceipt grows with proof depth only; finalize
    with three verdicts stays cheap."""
    d, a = world, actors
    s = d.settlement
    gas: dict[str, int] = {}
    free = keccak(b"free model for gas")
    send(w3, registration_fn(d, a, free, price=0), a.relayer)
    small = make_batch(w3, d, a, rows=4, tag=b"small")
    gas["commitBatch (4 rows, priced)"] = commit(w3, d, a, small)["gasUsed"]

    def big_batch(depth: int, nonce: int) -> tuple[Batch, bytes, list[bytes]]:
        tag = b"depth %d" % depth
        b = make_batch(w3, d, a, rows=1, tag=tag, nonce=nonce, model_id=free, max_price=0,
                       max_rows=2**depth)  # fmt: skip
        leaf = receipt_leaf(0, keccak(b"i"), keccak(b"o"))
        siblings = [keccak(tag + b"%d" % k) for k in range(depth)]
        b.claim["batchRoot"], b.claim["rowCount"] = path_root(leaf, siblings), 2**depth
        gas[f"commitBatch (2^{depth} rows, free)"] = commit(w3, d, a, resign(d, a, b))["gasUsed"]
        return b, leaf, siblings

    proofs = {depth: big_batch(depth, depth) for depth in (10, 20)}
    for depth, (b, _, siblings) in proofs.items():
        args = [b.batch_id, b.record, 0, keccak(b"i"), keccak(b"o"), siblings]
        assert s.functions.verifyReceipt(*args).call() == [True, BatchStatus.PENDING]
        gas[f"verifyReceipt depth {depth} (execution)"] = execution_gas(
            tester, s, "verifyReceipt", args, a.outsider
        )
    advance(tester, w3, WINDOW)
    passes = pass_signatures(d, a, small, a.verifiers)
    receipt = send(w3, s.functions.finalize(small.batch_id, small.record, passes), a.outsider)
    gas["finalize (3 pass verdicts)"] = receipt["gasUsed"]
    print("\ngas used:")
    for k, v in gas.items():
        print(f"  {k:<40} {v:>8,}")
    free_commits = [v for k, v in gas.items() if k.startswith("commitBatch (2^")]
    assert max(free_commits) - min(free_commits) < 200  # only rowCount and the root differ
    assert gas["commitBatch (4 rows, priced)"] < 350_000
    per_level = (
        gas["verifyReceipt depth 20 (execution)"] - gas["verifyReceipt depth 10 (execution)"]
    ) / 10
    assert per_level < 500
    assert gas["finalize (3 pass verdicts)"] < 250_000


# --------------------------------------------------------------------------- python helpers


def test_transact_reports_mined_revert_and_signs_locally(
    w3: Any, world: Deployment, actors: Actors
) -> None:
    d, a = world, actors
    record = (a.requester, a.node, a.model_owner, 1, 0, 0, ZERO32, ZERO32, ZERO32, ZERO32, 0)
    fn = d.settlement.functions.expire(keccak(b"nope"), record)
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
    nonce_used = keccak(b"NonceUsed(address,uint256)")[:4] + encode(
        ["address", "uint256"], ["0x" + "11" * 20, 7]
    )
    assert decode_revert(ContractLogicError("x", data="0x" + nonce_used.hex())) == (
        "NonceUsed(requester=0x1111111111111111111111111111111111111111, nonce=7)"
    )
    assert decode_revert(TransactionFailed("execution reverted: 0xdeadbeef")).startswith(
        "unknown error 0xdeadbeef"
    )
    assert decode_revert(TransactionFailed("execution reverted: out of stock")) == "out of stock"
    assert decode_revert(ConnectionError("connection refused")) is None


def test_artifacts_and_params() -> None:
    for name in bindings.COMPILED_NAMES:
        art = load_compiled(name)
        assert art["contractName"] == name and art["bytecode"].startswith("0x")
    with pytest.raises(ConfigError):
        load_compiled("Nope")
    for bad in (
        {"quorum_bps": 5_000},
        {"governance_quorum_bps": 0},
        {"verifier_slash_bps": 10_001},
        {"collateral_bps": 9_999},
        {"claim_max_age": 0},
        {"unbonding_period": 2 * 3600 - 1},
        {"initial_measurements": (b"\x01" * 31,)},
        {"initial_measurements": (RUNTIME_ID,), "initial_kinds": (1, 2)},
        {"initial_measurements": (RUNTIME_ID,), "initial_kinds": (5,)},
        {"min_node_stake": 999 * OPG, "min_slash": 1_000 * OPG},
    ):
        with pytest.raises(ConfigError):
            DeployParams(**bad)
    assert DeployParams(initial_measurements=(RUNTIME_ID, OTHER_RUNTIME_ID)).kinds == [1, 1]
    assert TEST_PARAMS.kinds == [KIND_SOFTWARE]
    b32, address = "0x" + "00" * 32, "0x" + "11" * 20
    short_id = BatchClaim("0x" + "00" * 31, b32, b32, b32, 1, address, 0, address)
    with pytest.raises(ConfigError):
        short_id.typed_data(ClaimDomain(1, address))


def test_zk_judge_errors_are_decoded_by_name() -> None:
    """A ZkJudge revert (a proof that cannot decide, a proof of another row) reads as the
    error's name and arguments, not as an unknown selector."""
    from eth_abi import encode
    from eth_utils import function_signature_to_4byte_selector

    data = function_signature_to_4byte_selector("Undecidable(uint256)") + encode(["uint256"], [2])
    reason = decode_revert(ValueError(f"execution reverted: 0x{data.hex()}"))
    assert reason == "Undecidable(tensor=2)"
