"""Attacks on the settlement contracts by parties that hold their own keys (node, requester,
challenger, verifier, delegator), alone or colluding, each tried as such an attacker would
try it (in-process eth-tester chain, real signatures).

Each test names the attack and asserts that it is refused with its custom error or that the
attacker ends up where the rules say. These worked against the previous contracts (each
test fails there):

- an operator voiding the dispute over its forged batch by resolving it first, presenting
  no verdicts, so that the fail verdicts holding the quorum never upheld it;
- an operator holding the batch Disputed with its own challenge of an honest row until the
  window closed, so that nobody could challenge the forged row and the batch finalised;
- unbonding stake leaving while a reopened batch could still be challenged;
- an operator unbonding its own stake after the commit, so that a slash took its
  delegators' whole stake (they lost a larger fraction than it did);
- a pass-attester unbonding after it signed, so that the challenger's reward for slashing
  it was zero;
- an operator registering a verifier of its own, with more than the verifier stake, in the
  block of an honest challenger's commitment, and rejecting the challenge with its vote;
- an older governance proposal executed after a newer one on the same measurement,
  approving a revoked build again;
- a whole stake unbonded by value leaving a dust share behind (the start of a share
  inflation in an almost empty pool).

The tests under "held" try attacks the contracts already refused (an order replayed on
another settlement contract, a verdict reused on another batch, flash stake in
governance, a front-run ERC-3009 ``receiveWithAuthorization``).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils import keccak

from ogkit.chain.bindings import OPG, BatchStatus, load_compiled

from .game import (
    ATTACK_NODE_STAKE,
    ATTACK_VERIFIER_STAKES,
    BPS,
    GAME_PARAMS,
    ZERO_ADDRESS,
    AttackWorld,
    attack_world,
    b32,
    sorted_verdicts,
)

P = GAME_PARAMS
WINDOW = P.challenge_window
MODEL_BYTES = b"tiny-mlp.onnx bytes"
PRICE = 1 * OPG
NODE_STAKE = ATTACK_NODE_STAKE
VERIFIER_STAKES = ATTACK_VERIFIER_STAKES
World = AttackWorld


@pytest.fixture(scope="module")
def world() -> World:
    return attack_world(MODEL_BYTES, PRICE)


@pytest.fixture(autouse=True)
def _rewound(world: World) -> Iterator[None]:
    with world.g.isolated():
        yield


def opened_at(w: World, dispute: int) -> int:
    return int(w.g.d.settlement.functions.getDispute(dispute).call()[2])


def test_a_void_cannot_front_run_decisive_fail_verdicts(world: World) -> None:
    """The fallback weighs the verdicts its caller presents. The attacker resolved first,
    with none, and the dispute was voided: no slash, and the window was over by then."""
    w, g = world, world.g
    s, reg = g.d.settlement.functions, g.d.node_registry.functions
    v1, v2, v3 = w.verifiers
    b = w.commit("void front-run")
    fails = [g.verdict(v, b, False) for v in (v2, v3)]  # 88 % signed fail
    dispute = g.challenge(b, w.challenger, row=1)
    g.vote(dispute, b, v3, True)  # 56.1 %: not decided by votes
    g.advance(WINDOW)
    voidable = opened_at(w, dispute) + 2 * WINDOW
    g.expect_revert(
        s.resolveChallenge(dispute, b.record, []), w.attacker, "VotingOpen", endsAt=voidable
    )
    pass1 = g.verdict(v1, b, True)  # the attacker's one pass verdict decides nothing either
    g.expect_revert(
        s.resolveChallenge(dispute, b.record, sorted_verdicts([pass1])), w.sock, "VotingOpen"
    )
    own0 = reg.stakeOf(w.attacker.address, w.attacker.address).call()
    receipt = g.send(s.resolveChallenge(dispute, b.record, sorted_verdicts(fails)), w.challenger)
    assert g.events(g.d.settlement, "ChallengeUpheld", receipt)
    assert g.status(b) == BatchStatus.SLASHED
    assert reg.stakeOf(w.attacker.address, w.attacker.address).call() < own0


def test_a_void_waits_a_second_window_then_refunds_the_batch(world: World) -> None:
    """Nothing decisive after two windows: voided, the bond back, and the batch refunded
    (no pass quorum was presented to finalise it; tests/chain/test_redteam2.py)."""
    w, g = world, world.g
    s = g.d.settlement.functions
    b = w.commit("void late")
    dispute = g.challenge(b, w.challenger)
    g.advance(2 * WINDOW)
    bond0, requester0 = g.balance(w.challenger), g.balance(w.requester)
    receipt = g.send(s.resolveChallenge(dispute, b.record, []), w.attacker)
    assert g.events(g.d.settlement, "ChallengeVoided", receipt)
    assert g.balance(w.challenger) == bond0 + P.challenge_bond
    assert g.status(b) == BatchStatus.REFUNDED
    assert g.balance(w.requester) == requester0 + int(b.onchain.details["escrow"])
    passes = [g.verdict(v, b) for v in w.verifiers]
    g.expect_revert(g.finalize_fn(b, passes), w.attacker, "WrongStatus")
    g.expect_revert(
        s.challenge(*g.challenge_args(b, 2, keccak(b"again"), b"\x01" * 32)),
        w.challenger,
        "WrongStatus",
    )


def test_a_self_challenge_cannot_run_out_the_window(world: World) -> None:
    """One dispute at a time: the attacker challenged an honest row of its forged batch
    from a key of its own (the bond comes back to its node on rejection), so the honest
    challenger was refused, and the votes rejecting it came after the window had closed.
    The verifiers' samples missed the forged row; the attacker finalised with their pass
    verdicts and was paid for a forged batch."""
    w, g = world, world.g
    s = g.d.settlement.functions
    v1, v2, v3 = w.verifiers
    b = w.commit("self-challenge")
    passes = [g.verdict(v, b) for v in w.verifiers]  # their samples missed row 3
    decoy = g.challenge(b, w.sock, row=0)  # a made-up output for an honest row
    g.expect_revert(
        s.challenge(*g.challenge_args(b, 3, keccak(b"the real output"), b"\x01" * 32)),
        w.challenger,
        "WrongStatus",
    )
    g.advance(WINDOW - 60)
    g.vote(decoy, b, v2, False)
    g.vote(decoy, b, v3, False)  # rejected: the bond goes to the attacker's node
    assert g.status(b) == BatchStatus.PENDING
    g.advance(120)  # past the commit's window
    g.expect_revert(g.finalize_fn(b, passes), w.attacker, "ChallengeWindowOpen")
    real = g.challenge(b, w.challenger, row=3)
    g.vote(real, b, v1, True)
    receipt = g.vote(real, b, v3, True)  # 68.1 %
    assert g.events(g.d.settlement, "ChallengeUpheld", receipt)
    assert g.status(b) == BatchStatus.SLASHED


def test_unbonding_stays_locked_while_a_reopened_batch_can_be_challenged(world: World) -> None:
    """The lock was released when the attacker's own challenge was rejected; unbonding
    that matured meanwhile then left before the real challenge came."""
    w, g = world, world.g
    s, reg = g.d.settlement.functions, g.d.node_registry.functions
    x = w.attacker
    _, v2, v3 = w.verifiers
    g.send(reg.unstake(NODE_STAKE // 2), x)
    unbonding = int(reg.unbondingCount().call())
    g.advance(P.unbonding_period - WINDOW // 2)
    b = w.commit("lock")
    decoy = g.challenge(b, w.sock)
    g.advance(WINDOW // 2 + 60)  # the unbonding has matured
    g.vote(decoy, b, v2, False)
    g.vote(decoy, b, v3, False)
    assert reg.withdrawLocks(x.address).call() == 1
    g.expect_revert(reg.withdraw(unbonding), x, "WithdrawalLocked", node=x.address)
    real = g.challenge(b, w.challenger, row=4)
    g.vote(real, b, v2, True)
    g.vote(real, b, v3, True)
    assert reg.withdrawLocks(x.address).call() == 0
    pool = NODE_STAKE  # no delegators: the slash took the target from the pool
    target = max(P.min_slash, escrow(5) * P.collateral_bps // BPS)
    receipt = g.send(reg.withdraw(unbonding), x)
    (withdrawn,) = g.events(g.d.node_registry, "Withdrawn", receipt)
    assert withdrawn.args.amount == (NODE_STAKE // 2) * (pool - target) // pool
    assert s.exposure(x.address).call() == 0


def test_a_rejected_then_finalised_batch_releases_the_lock(world: World) -> None:
    w, g = world, world.g
    s, reg = g.d.settlement.functions, g.d.node_registry.functions
    _, v2, v3 = w.verifiers
    b = w.commit("honest after all")
    passes = [g.verdict(v, b) for v in w.verifiers]
    dispute = g.challenge(b, w.sock)
    g.vote(dispute, b, v2, False)
    g.vote(dispute, b, v3, False)
    assert reg.withdrawLocks(w.attacker.address).call() == 1
    g.advance(WINDOW)
    g.finalize(b, passes, w.requester)
    assert reg.withdrawLocks(w.attacker.address).call() == 0
    # and an expired one too
    e = w.commit("expired after a dispute")
    dispute = g.challenge(e, w.sock)
    g.vote(dispute, e, v2, False)
    g.vote(dispute, e, v3, False)
    g.advance(2 * WINDOW)
    g.send(s.expire(e.key, e.record), w.requester)
    assert reg.withdrawLocks(w.attacker.address).call() == 0


def escrow(rows: int, price: int = PRICE) -> int:
    payment = price * rows
    return payment + payment * P.node_fee_bps // BPS + payment * P.verifier_fee_bps // BPS


def test_delegators_lose_the_operators_fraction_when_it_unbonds(world: World) -> None:
    """The slash was sized by the operator's *active* own stake: an operator that unbonded
    all but the minimum after committing had its whole pool slashed, its delegators' 300,000
    OPG burned while it lost 1 % of its own."""
    w, g = world, world.g
    reg = g.d.node_registry.functions
    x = w.attacker
    _, v2, v3 = w.verifiers
    delegator = g.player("delegator")
    g.delegate(delegator, x, 300_000 * OPG)
    g.mine()
    b = w.commit("unbond then slash")
    g.send(reg.unstake(NODE_STAKE - P.min_node_stake), x)
    dispute = g.challenge(b, w.challenger)
    g.vote(dispute, b, v2, True)
    receipt = g.vote(dispute, b, v3, True)
    (upheld,) = g.events(g.d.settlement, "ChallengeUpheld", receipt)
    target = max(P.min_slash, escrow(5) * P.collateral_bps // BPS)
    pool = NODE_STAKE + 300_000 * OPG
    assert upheld.args.slashed == pool * target // NODE_STAKE  # 1 % of the pool
    left = pool - upheld.args.slashed
    assert reg.stakeOf(x.address, delegator.address).call() == 300_000 * OPG * left // pool
    (_, _, _, _, value) = reg.getUnbonding(reg.unbondingCount().call()).call()
    own_after = reg.stakeOf(x.address, x.address).call() + value
    assert NODE_STAKE - own_after in (target, target + 1)  # rounding of two parts


def test_a_pass_attester_that_unbonds_is_still_slashed(world: World) -> None:
    """A pass-attester's slash was a share of its *active* own stake: a verifier that
    unstaked everything right after signing pass made it 0. Its unbonding stake pays it
    (all of it burned: docs/contracts.md)."""
    w, g = world, world.g
    s, reg = g.d.settlement.functions, g.d.node_registry.functions
    v1, v2, v3 = w.verifiers
    b = w.commit("lazy verifier")
    lazy = g.verdict(v1, b, True)
    g.send(reg.unstake(VERIFIER_STAKES[0]), v1)  # all of it: active own stake 0
    dispute = g.challenge(b, w.challenger)
    g.vote(dispute, b, v2, True)
    g.vote(dispute, b, v3, True)
    before = g.balance(w.challenger), g.burned()
    receipt = g.send(s.slashPassAttester(dispute, b.record, lazy.as_tuple()), w.sock)
    (slashed,) = g.events(g.d.settlement, "PassAttesterSlashed", receipt)
    amount = VERIFIER_STAKES[0] * P.verifier_slash_bps // BPS
    assert slashed.args.amount == amount
    assert (g.balance(w.challenger), g.burned()) == (before[0], before[1] + amount)


def test_stake_moved_in_after_the_commit_cannot_reject_a_challenge(world: World) -> None:
    """Dispute votes were weighed at the block before the dispute opened. Seeing the honest
    challenger's commitment, the attacker registered a verifier of its own with three times
    the honest verifier stake in that same block; the reveal's snapshot counted it, and its
    one vote rejected the challenge at once (the bond to the attacker's node)."""
    w, g = world, world.g
    s, reg = g.d.settlement.functions, g.d.node_registry.functions
    _, v2, v3 = w.verifiers
    b = w.commit("flash verifier")
    flash = g.player("attacker's verifier")
    stake = 3 * sum(VERIFIER_STAKES)
    g.fund(flash, stake)
    g.allow(flash, stake, g.d.node_registry.address)
    claimed, salt = keccak(b"re-executed output"), keccak(b"salt")
    commitment = g.commitment(w.challenger, b, 1, claimed, salt)
    g.fund(w.challenger, P.challenge_bond)
    g.allow(w.challenger, P.challenge_bond)
    receipts = g.in_one_block(
        [
            (s.commitChallenge(commitment), w.challenger),
            (reg.registerNode(2, stake, ZERO_ADDRESS, b"\x00" * 32, b""), flash),
        ]
    )
    assert all(r["status"] == 1 for r in receipts)
    g.send(s.challenge(*g.challenge_args(b, 1, claimed, salt)), w.challenger)
    dispute = int(s.stateOf(b.key).call()[1])
    g.expect_revert(s.voteDispute(dispute, b.record, False), flash, "NotVerifier")
    d = s.getDispute(dispute).call()
    assert d[3] == b.record[5]  # weighed at the batch's snapshot: the block before the commit
    assert d[8] == sum(VERIFIER_STAKES)
    g.vote(dispute, b, v2, True)
    receipt = g.vote(dispute, b, v3, True)
    assert g.events(g.d.settlement, "ChallengeUpheld", receipt)


def test_an_older_proposal_cannot_undo_a_newer_decision(world: World) -> None:
    """Two proposals on one measurement, both passed: an approval, then a revocation (the
    build turned out compromised). Executing the revocation first and the older approval
    after it approved the revoked build again."""
    w, g = world, world.g
    reg = g.d.node_registry.functions
    v1, v2, v3 = w.verifiers
    bad = b32(keccak(b"an enclave build"))
    g.send(reg.propose(bad, 2), v1)
    approve = int(reg.proposalCount().call())
    g.advance(60)
    g.send(reg.propose(bad, 0), v1)
    revoke = int(reg.proposalCount().call())
    for v in (v1, v2, v3):
        g.send(reg.vote(approve, True), v)
        g.send(reg.vote(revoke, True), v)
    g.advance(P.governance_voting_delay)
    g.send(reg.execute(revoke), w.sock)
    g.expect_revert(
        reg.execute(approve), w.sock, "ProposalSuperseded", proposalId=approve, newer=revoke
    )
    assert reg.measurementKind(bad).call() == 0


def test_proposals_executed_in_creation_order_both_apply(world: World) -> None:
    w, g = world, world.g
    reg = g.d.node_registry.functions
    v1, v2, v3 = w.verifiers
    m = b32(keccak(b"another build"))
    g.send(reg.propose(m, 2), v1)
    first = int(reg.proposalCount().call())
    g.advance(60)
    g.send(reg.propose(m, 3), v1)
    second = int(reg.proposalCount().call())
    for v in (v1, v2, v3):
        g.send(reg.vote(first, True), v)
        g.send(reg.vote(second, True), v)
    g.advance(P.governance_voting_delay)
    g.send(reg.execute(first), w.sock)
    assert reg.measurementKind(m).call() == 2
    g.send(reg.execute(second), w.sock)
    assert reg.measurementKind(m).call() == 3


def test_unbonding_a_whole_stake_leaves_no_dust_shares(world: World) -> None:
    """Unbonding a holder's whole value left a share it had rounded away, worth nothing
    then; a pool whose holders all left such dust became a pool of a few worthless shares,
    which fees claimed into it then made worth those fees each, at a later depositor's cost."""
    w, g = world, world.g
    reg = g.d.node_registry.functions
    x = w.attacker
    _, v2, v3 = w.verifiers
    b = w.commit("slashed pool")
    dispute = g.challenge(b, w.challenger)
    g.vote(dispute, b, v2, True)
    g.vote(dispute, b, v3, True)  # upheld: the pool is worth less than its shares
    _, pool_shares, pool_assets = reg.sharesOf(x.address, x.address).call()
    assert pool_assets < pool_shares

    def dust(deposit: int) -> int:
        held = deposit * pool_shares // pool_assets
        shares, assets = pool_shares + held, pool_assets + deposit
        value = held * assets // shares
        return held - -(-value * shares // assets)

    deposit = next(d for d in range(1_000 * OPG, 1_000 * OPG + 1_000) if dust(d))
    delegator = g.player("delegator")
    g.delegate(delegator, x, deposit)
    value = reg.stakeOf(x.address, delegator.address).call()
    g.send(reg.undelegate(x.address, value), delegator)
    assert reg.sharesOf(x.address, delegator.address).call()[0] == 0


# --------------------------------------------------------------------------- held


def test_an_order_cannot_be_replayed_on_another_settlement_contract(world: World) -> None:
    """EIP-712 binds the order to its chain and contract: a second settlement deployed on
    the same registries refuses an order the requester signed for the first."""
    w, g = world, world.g
    compiled = load_compiled("InferenceSettlement")
    s = g.d.settlement.functions
    params = (
        WINDOW, P.quorum_bps, P.node_fee_bps, P.verifier_fee_bps, P.challenge_bond,
        P.collateral_bps, P.min_slash, P.challenger_reward_bps, P.verifier_slash_bps,
        P.claim_max_age,
    )  # fmt: skip
    factory = g.w3.eth.contract(abi=compiled["abi"], bytecode=compiled["bytecode"])
    receipt = g.send(
        factory.constructor(
            g.d.token.address, g.d.model_registry.address, g.d.node_registry.address, params,
            s.zkJudge().call(),
        ),
        g.deployer,
    )  # fmt: skip
    other = g.w3.eth.contract(address=receipt["contractAddress"], abi=compiled["abi"])
    g.send(g.d.token.functions.approve(other.address, 2**255), w.requester)
    order = g.order(w.requester, model_id=w.model, model_owner=w.owner, node=w.attacker, job="x")
    b = g.batch(order, w.attacker_key, order_signer=w.requester)
    g.expect_revert(other.functions.commitBatch(*b.commit_args()), w.attacker, "BadOrderSignature")


def test_a_verdict_cannot_be_reused_on_another_batch(world: World) -> None:
    """A pass verdict names the batch and its committed claim: presented for another batch
    it recovers to an unrelated key, which weighs nothing."""
    w, g = world, world.g
    one, two = w.commit("one"), w.commit("two")
    v1, _, v3 = w.verifiers
    passes = [g.verdict(v, one) for v in (v1, v3)]  # 68.1 %
    g.advance(WINDOW)
    signatures = g.finalize_fn(one, passes).args[2]
    for replayed in ([signatures[0]], [signatures[1]]):  # one at a time: no sort order
        fn = g.d.settlement.functions.finalize(two.key, two.record, replayed)
        g.expect_revert(fn, w.attacker, "QuorumNotReached", passStake=0)
    g.finalize(one, passes, w.attacker)  # valid for their own batch


def test_flash_stake_weighs_nothing_in_governance(world: World) -> None:
    """Stake that arrives after a proposal's snapshot cannot vote on it, and a node that
    unstakes after voting does not vote again through another key."""
    w, g = world, world.g
    reg = g.d.node_registry.functions
    v1, v2, _ = w.verifiers
    g.send(reg.propose(b32(keccak(b"a bad measurement")), 1), v1)
    pid = int(reg.proposalCount().call())
    flash = g.player("flash staker")
    g.stake(flash, 2, 500_000 * OPG)
    g.mine()
    g.expect_revert(reg.vote(pid, True), flash, "NoStake")
    g.send(reg.vote(pid, True), v2)
    g.send(reg.unstake(VERIFIER_STAKES[1]), v2)
    g.expect_revert(reg.vote(pid, True), v2, "AlreadyVoted")


def test_a_receive_authorization_cannot_be_front_run(world: World) -> None:
    """ERC-3009: only the payee may submit a ReceiveWithAuthorization; a front-runner who
    copies it from the mempool is refused, and the payee's call then succeeds."""
    w, g = world, world.g
    token = g.d.token
    payer, payee = w.requester, w.owner
    nonce = keccak(b"receive nonce")
    typed = {
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"},
            ],
            "ReceiveWithAuthorization": [
                {"name": "from", "type": "address"},
                {"name": "to", "type": "address"},
                {"name": "value", "type": "uint256"},
                {"name": "validAfter", "type": "uint256"},
                {"name": "validBefore", "type": "uint256"},
                {"name": "nonce", "type": "bytes32"},
            ],
        },
        "primaryType": "ReceiveWithAuthorization",
        "domain": {
            "name": "OpenGradient Token",
            "version": "1",
            "chainId": g.d.chain_id,
            "verifyingContract": token.address,
        },
        "message": {
            "from": payer.address,
            "to": payee.address,
            "value": 5 * OPG,
            "validAfter": 0,
            "validBefore": 2**40,
            "nonce": nonce,
        },
    }
    signed = Account.sign_message(encode_typed_data(full_message=typed), payer.account.key)
    sig = (signed.v, signed.r.to_bytes(32, "big"), signed.s.to_bytes(32, "big"))
    args = (payer.address, payee.address, 5 * OPG, 0, 2**40, nonce, *sig)
    fn = token.functions.receiveWithAuthorization(*args)
    g.expect_revert(fn, w.sock, "ERC20InvalidReceiver")
    before = g.balance(payee)
    g.send(token.functions.receiveWithAuthorization(*args), payee)
    assert g.balance(payee) == before + 5 * OPG
