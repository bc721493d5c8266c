"""Every attack found against the previous settlement contracts, tried again as an attacker
would try it against the rewritten ones (in-process eth-tester chain, real signatures).

One test per threat, named after it. Each asserts that the attack is refused with its
specific custom error (and its arguments), or that whoever tries it ends up worse off. See
docs/contracts.md for the rules these attacks test. The last three threats were found
while writing these: an operator draining its delegators by challenging itself (as an
inference node or as a pass-signing verifier), stakeless verdict spam growing finalize,
and a verifier paid for a dispute it voted the wrong way.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import pytest
from eth_utils import keccak

from ogkit.chain.bindings import OPG, BatchStatus, load_compiled
from ogkit.chain.deployments import DeployParams
from ogkit.crypto.merkle import verify_proof
from ogkit.errors import ConfigError, SettlementError
from ogkit.settle import (
    MAX_FINALIZE_VERDICTS,
    check_committed_is_ours,
    compare_with_chain,
    finalize_verdicts,
)
from ogkit.verdict import quorum_verdicts

from .game import (
    BPS,
    GAME_PARAMS,
    RUNTIME_ID,
    ZERO_ADDRESS,
    Batch,
    Game,
    Player,
    attester,
    b32,
    hex32,
    sorted_verdicts,
)

P = GAME_PARAMS
WINDOW = P.challenge_window
MODEL = hex32(keccak(b"tiny-mlp.onnx bytes"))
PRICE = 1 * OPG
NODE_STAKE = 100_000 * OPG
VERIFIER_STAKES = (12_000 * OPG, 31_900 * OPG, 56_100 * OPG)
"""100,000 OPG of verifier stake: the first two hold 43.9 %, the third 56.1 %, the first and
the third 68.1 % (above the 2/3 quorum), the last two 88 %."""
TOTAL_VERIFIER_STAKE = sum(VERIFIER_STAKES)
SYBILS = 64


# --------------------------------------------------------------------------- the world


@dataclass(frozen=True)
class World:
    g: Game
    owner: Player  # the model's owner (signed its hub manifest)
    requester: Player  # a requester with a large allowance to the settlement contract
    node: Player  # the honest inference node
    node_key: Player  # its enclave attester
    attacker: Player  # a staked inference node turned attacker
    attacker_key: Player  # its throwaway attester (valid proof of possession)
    verifiers: tuple[Player, Player, Player]
    challenger: Player


@pytest.fixture(scope="module")
def world() -> World:
    """The model registered by its owner (1 OPG a row), two inference nodes with 100,000
    OPG each and their attesters bound for the approved software runtime, three verifiers
    (:data:`VERIFIER_STAKES`) and a requester with 1,000,000 OPG that allowed the
    settlement contract to take all of it."""
    g = Game(num_accounts=SYBILS + 48)  # every named player below gets one
    w = World(
        g=g,
        owner=g.player("owner"),
        requester=g.player("requester"),
        node=g.player("node"),
        node_key=attester("node"),
        attacker=g.player("attacker"),
        attacker_key=attester("attacker"),
        verifiers=(g.player("verifier 1"), g.player("verifier 2"), g.player("verifier 3")),
        challenger=g.player("challenger"),
    )
    g.register_model(w.owner, MODEL, PRICE)
    g.stake(w.node, 1, NODE_STAKE, attester=w.node_key)
    g.stake(w.attacker, 1, NODE_STAKE, attester=w.attacker_key)
    for v, stake in zip(w.verifiers, VERIFIER_STAKES, strict=True):
        g.stake(v, 2, stake)
    g.fund(w.requester, 1_000_000 * OPG)
    g.allow(w.requester, 2**255)
    return w


@pytest.fixture(autouse=True)
def _rewound(world: World) -> Iterator[None]:
    """Every test starts from the world as the fixture built it."""
    with world.g.isolated():
        yield


# --------------------------------------------------------------------------- helpers


def split(rows: int, price: int = PRICE) -> tuple[int, int, int]:
    payment = price * rows
    return payment, payment * P.node_fee_bps // BPS, payment * P.verifier_fee_bps // BPS


def escrow(rows: int, price: int = PRICE) -> int:
    return sum(split(rows, price))


def collateral(rows: int, price: int = PRICE) -> int:
    return escrow(rows, price) * P.collateral_bps // BPS


def honest_batch(w: World, *, job: str = "classify", rows: int = 5, **claim: Any) -> Batch:
    """A batch the honest node runs for the requester, under an order naming the node."""
    max_rows = max(rows, claim.get("row_count", rows))
    order = w.g.order(
        w.requester, model_id=MODEL, model_owner=w.owner, node=w.node, max_rows=max_rows, job=job
    )
    return w.g.batch(order, w.node_key, order_signer=w.requester, rows=rows, **claim)


def attacker_batch(w: World, *, job: str = "classify", rows: int = 5, **claim: Any) -> Batch:
    """A batch the requester ordered from the attacker's node."""
    max_rows = max(rows, claim.get("row_count", rows))
    order = w.g.order(
        w.requester, model_id=MODEL, model_owner=w.owner, node=w.attacker, max_rows=max_rows,
        job=job,
    )  # fmt: skip
    return w.g.batch(order, w.attacker_key, order_signer=w.requester, rows=rows, **claim)


def first_verifier(players: tuple[Player, ...]) -> Player:
    """The verifier whose verdict comes first (lowest address)."""
    return min(players, key=lambda p: int(p.address, 16))


def allowance(w: World, who: Player) -> int:
    token = w.g.d.token.functions
    return int(token.allowance(who.address, w.g.d.settlement.address).call())


def dispute_of(w: World, dispute_id: int) -> Any:
    return w.g.d.settlement.functions.getDispute(dispute_id).call()


def deploy_fn(g: Game, name: str, *args: Any) -> Any:
    compiled = load_compiled(name)
    factory = g.w3.eth.contract(abi=compiled["abi"], bytecode=compiled["bytecode"])
    return factory.constructor(*args)


def registry_fn(
    g: Game, unbonding: int, *, production: bool = False, measurements: tuple = ()
) -> Any:
    """NodeRegistry's constructor with the game's stakes and governance parameters."""
    return deploy_fn(
        g, "NodeRegistry", g.d.token.address, P.min_node_stake, P.min_verifier_stake,
        unbonding, P.governance_voting_delay, P.governance_quorum_bps, production,
        [b32(m) for m, _ in measurements], [k for _, k in measurements],
    )  # fmt: skip


def settlement_fn(g: Game, registry: str, window: int) -> Any:
    """InferenceSettlement's constructor with the game's parameters but ``window``."""
    return deploy_fn(
        g, "InferenceSettlement", g.d.token.address, g.d.model_registry.address, registry,
        (window, P.quorum_bps, P.node_fee_bps, P.verifier_fee_bps, P.challenge_bond,
         P.collateral_bps, P.min_slash, P.challenger_reward_bps, P.verifier_slash_bps,
         P.claim_max_age), g.d.settlement.functions.zkJudge().call(),
    )  # fmt: skip


# --------------------------------------------------------------------------- 1


def test_node_cannot_spend_a_requesters_allowance_without_an_order(world: World) -> None:
    w, g = world, world.g
    s = g.d.settlement.functions
    x, key, victim = w.attacker, w.attacker_key, w.requester
    greedy = hex32(keccak(b"the attacker's model"))
    g.register_model(x, greedy, 1 * OPG)  # cheap while the victim orders it
    g.register_model(x, MODEL, 1_000 * OPG)  # the victim's model, under the attacker's key
    balance0, allowance0 = g.balance(victim), allowance(w, victim)

    def refused(batch: Batch, error: str, **args: Any) -> None:
        g.expect_revert(g.commit_fn(batch), x, error, **args)

    # No order: one in the victim's name that the victim never signed.
    forged = g.order(
        victim, model_id=greedy, model_owner=x, node=x, max_rows=10_000,
        max_price_per_row=1_000 * OPG,
    )  # fmt: skip
    refused(g.batch(forged, key, order_signature=b""), "BadOrderSignature")
    refused(g.batch(forged, key, order_signature=b"\x00" * 65), "BadOrderSignature")
    refused(g.batch(forged, key, order_signer=x), "BadOrderSignature")
    # The attacker's own order, with a claim that bills the victim.
    own = replace(forged, requester=x.address)
    refused(
        g.batch(own, key, order_signer=x, requester=victim.address),
        "OrderMismatch",
        field="requester",
    )
    # The victim's real order, open to any node, for the owner's model at 1 OPG a row.
    real = g.order(victim, model_id=MODEL, model_owner=w.owner, node=ZERO_ADDRESS)
    real_sig = g.sign_order(real, victim)
    refused(g.batch(real, key, order_signature=real_sig, model_id=greedy), "OrderMismatch",
            field="modelId")  # fmt: skip
    for edited in (replace(real, model_id=greedy), replace(real, model_owner=x.address)):
        refused(g.batch(edited, key, order_signature=real_sig), "BadOrderSignature")

    # An order the victim did give the attacker: 5 rows of its model at 1 OPG at most.
    mine = g.order(victim, model_id=greedy, model_owner=x, node=x, max_rows=5)
    mine_sig = g.sign_order(mine, victim)
    g.send(g.d.model_registry.functions.setPrice(b32(greedy), 1_000 * OPG), x)
    refused(
        g.batch(mine, key, order_signature=mine_sig),
        "PriceAboveOrder",
        price=1_000 * OPG,
        maxPricePerRow=1 * OPG,
    )
    g.send(g.d.model_registry.functions.setPrice(b32(greedy), 1 * OPG), x)
    refused(g.batch(mine, key, order_signature=mine_sig, rows=6), "TooManyRows", rowCount=6,
            maxRows=5)  # fmt: skip
    made_up = g.batch(mine, key, order_signature=mine_sig, batch_id=hex32(keccak(b"any id")))
    derived = mine.batch_id(made_up.execution_hash)
    refused(made_up, "BatchIdMismatch", claimed=made_up.batch_id, derived=derived)
    g.commit(g.batch(mine, key, order_signature=mine_sig, tag=b"first"), x)
    # The same order again, for another execution (another batch id).
    refused(
        g.batch(mine, key, order_signature=mine_sig, tag=b"again"),
        "NonceUsed",
        requester=victim,
        nonce=mine.nonce,
    )
    # An order past its deadline.
    late = g.order(victim, model_id=greedy, model_owner=x, node=x, deadline=g.now() + 60)
    late_sig = g.sign_order(late, victim)
    g.advance(120)
    refused(g.batch(late, key, order_signature=late_sig), "OrderExpired", deadline=late.deadline)

    # All the victim paid is the one batch it ordered, at the price it ordered.
    assert g.balance(victim) == balance0 - escrow(5)
    assert allowance(w, victim) == allowance0 - escrow(5)

    # A permit seen in the honest node's pending commitBatchWithPermit funds nothing else.
    victim2 = g.player("permit victim")
    g.fund(victim2, 10_000 * OPG)
    order2 = g.order(victim2, model_id=MODEL, model_owner=w.owner, node=w.node)
    honest2 = g.batch(order2, w.node_key, order_signer=victim2)
    permit = g.permit(victim2, 10_000 * OPG, g.now() + 3600)
    steal = g.batch(replace(forged, requester=victim2.address), key, order_signer=x)
    g.expect_revert(s.commitBatchWithPermit(*steal.commit_args(), permit), x, "BadOrderSignature")
    assert allowance(w, victim2) == 0  # the revert took the permit with it
    g.send(g.d.token.functions.permit(victim2.address, g.d.settlement.address, *permit), x)
    assert allowance(w, victim2) == 10_000 * OPG  # the permit applies ...
    refused(steal, "BadOrderSignature")  # ... but without the victim's order it is useless
    refused(g.batch(order2, key, order_signer=victim2), "NodeNotAllowed", node=x, allowed=w.node)
    g.send(s.commitBatchWithPermit(*honest2.commit_args(), permit), w.node)  # permit spent: ok
    assert g.balance(victim2) == 10_000 * OPG - escrow(5)


# --------------------------------------------------------------------------- 2


def test_commit_cannot_be_hijacked(world: World) -> None:
    w, g = world, world.g
    x, x_key = w.attacker, w.attacker_key

    # An order naming the honest node: the front-runner copies the pending transaction.
    named = honest_batch(w, job="named")
    g.expect_revert(g.commit_fn(named), x, "NodeNotAllowed", node=x, allowed=w.node)
    found = g.commit(named, w.node)
    check_committed_is_ours(named.view(), found, w.node.address)  # ours: no error

    # An order open to any node: the honest claim is bound to the honest attester.
    order = g.order(w.requester, model_id=MODEL, model_owner=w.owner, node=ZERO_ADDRESS)
    honest = g.batch(order, w.node_key, order_signer=w.requester)
    g.expect_revert(g.commit_fn(honest), x, "AttesterMismatch", claimed=w.node_key, bound=x_key)
    resigned = replace(honest, claim_signature=x_key.sign(honest.claim.typed_data(g.domain)))
    g.expect_revert(g.commit_fn(resigned), x, "BadSignature")
    made_up = g.batch(order, x_key, order_signer=w.requester, batch_id=hex32(keccak(b"mine")))
    g.expect_revert(
        g.commit_fn(made_up), x, "BatchIdMismatch", claimed=made_up.batch_id,
        derived=honest.batch_id,
    )  # fmt: skip

    # What the order allows: another node commits it first under its own attester ...
    taken = g.batch(order, x_key, order_signer=w.requester, rows=honest.receipts.rows)
    assert taken.batch_id == honest.batch_id
    found = g.commit(taken, x)
    # ... the honest commit then fails on the spent nonce, and ogkit calls it a hijack.
    g.expect_revert(
        g.commit_fn(honest), w.node, "NonceUsed", requester=w.requester, nonce=order.nonce
    )
    with pytest.raises(SettlementError, match="hijacked") as info:
        check_committed_is_ours(honest.view(), found, w.node.address)
    assert x.address in str(info.value)


# --------------------------------------------------------------------------- 3


def test_verdicts_bind_the_committed_claim(world: World) -> None:
    w, g = world, world.g
    x, x_key = w.attacker, w.attacker_key
    requester2 = g.player("another requester")
    g.fund(requester2, 10_000 * OPG)
    g.allow(requester2, 10_000 * OPG)
    execution = {"partition_rows": 4, "batch_size": 2, "job": "verdicts"}

    def order(requester: Player, max_rows: int) -> Any:
        return g.order(
            requester, model_id=MODEL, model_owner=w.owner, node=x, max_rows=max_rows,
            job="verdicts",
        )  # fmt: skip

    honest = g.batch(order(w.requester, 5), x_key, order_signer=w.requester, execution=execution)
    verdicts = [g.verdict(v, honest) for v in w.verifiers]

    # The verdicts finalise the claim they were signed over, and ogkit sees no difference.
    with g.isolated():
        found = g.commit(honest, x)
        assert compare_with_chain(honest.view(), found) == []
        g.advance(WINDOW)
        g.finalize(honest, verdicts, x)
        assert g.status(honest) == BatchStatus.FINALIZED

    def forged(requester: Player, max_rows: int, **claim: Any) -> Batch:
        b = g.batch(
            order(requester, max_rows), x_key, order_signer=requester, execution=execution,
            timestamp=honest.claim.timestamp, **claim,
        )  # fmt: skip
        return replace(b, artifact_id=honest.artifact_id)  # "it is the verified artefact"

    inflated = forged(w.requester, 5_000, rows=honest.receipts.rows, row_count=5_000)
    junk = forged(w.requester, 5, batch_root=hex32(keccak(b"junk")))
    elsewhere = forged(requester2, 5)
    assert inflated.batch_id == junk.batch_id == honest.batch_id != elsewhere.batch_id
    if g.compact_passes:  # signers recovered over the committed claim: strangers, weight 0
        refusal: dict[str, Any] = {"error": "QuorumNotReached", "passStake": 0}
    else:
        refusal = {"error": "BadVerdictSignature", "verifier": first_verifier(w.verifiers)}
    for attack, differences in (
        (inflated, {"row count", "claim digest"}),
        (junk, {"batch root", "claim digest"}),
        # The same rows for another requester give the same root (a leaf names no batch,
        # spec 3.1): the claim's requester and digest tell the batches apart.
        (elsewhere, {"requester", "claim digest"}),
    ):
        with g.isolated():
            found = g.commit(attack, x)
            g.advance(WINDOW)
            g.expect_revert(g.finalize_fn(attack, verdicts), x, **refusal)
            assert g.status(attack) == BatchStatus.PENDING
            problems = compare_with_chain(honest.view(), found)
            assert {p.split(":")[0] for p in problems} == differences, problems


# --------------------------------------------------------------------------- 4


def test_quorum_counts_stake_at_the_commit_block(world: World) -> None:
    w, g = world, world.g
    reg, s = g.d.node_registry.functions, g.d.settlement.functions
    v1, v2, v3 = w.verifiers
    late = g.player("late verifier")

    # Finalize: weights and total are those of the block before the commit.
    with g.isolated():
        b = honest_batch(w, job="quorum")
        snapshot = g.commit(b, w.node).record["snapshotBlock"]
        g.stake(late, 2, 1_000_000 * OPG)  # after the commit
        verdicts = {v.name: g.verdict(v, b) for v in (v1, v2, v3, late)}
        g.send(reg.unstake(VERIFIER_STAKES[2] - P.min_verifier_stake), v3)  # signed, then left
        assert reg.weightAt(late.address, snapshot).call() == 0
        assert reg.weightAt(v3.address, snapshot).call() == VERIFIER_STAKES[2]
        left = VERIFIER_STAKES[2] - P.min_verifier_stake
        assert reg.totalRoleStake(2).call() == TOTAL_VERIFIER_STAKE - left + 1_000_000 * OPG
        g.advance(WINDOW)

        def short(*signers: Player, stake: int) -> None:
            g.expect_revert(
                g.finalize_fn(b, [verdicts[v.name] for v in signers]), w.node, "QuorumNotReached",
                passStake=stake, totalVerifierStake=TOTAL_VERIFIER_STAKE,
            )  # fmt: skip

        short(late, stake=0)
        short(v1, v2, late, stake=VERIFIER_STAKES[0] + VERIFIER_STAKES[1])  # 43.9 %
        short(v3, stake=VERIFIER_STAKES[2])  # 56.1 %, though v3 now holds only 1,000 OPG
        receipt = g.finalize(b, [verdicts[v1.name], verdicts[v3.name]], w.node)  # 68.1 %
        (event,) = g.events(g.d.settlement, "BatchFinalized", receipt)
        assert event.args.passStake == VERIFIER_STAKES[0] + VERIFIER_STAKES[2]
        assert event.args.totalVerifierStake == TOTAL_VERIFIER_STAKE

    # Dispute votes: the stake at dispute open.
    with g.isolated():
        b = honest_batch(w, job="dispute")
        g.commit(b, w.node)
        dispute = g.challenge(b, w.challenger)
        g.stake(late, 2, 1_000_000 * OPG)  # after the challenge
        g.expect_revert(s.voteDispute(dispute, b.record, True), late, "NotVerifier", account=late)
        g.fund(v1, 50_000 * OPG)
        g.allow(v1, 50_000 * OPG, g.d.node_registry.address)
        g.send(reg.addStake(50_000 * OPG), v1)
        g.vote(dispute, b, v1, True)
        assert s.voteOf(dispute, v1.address).call() == [True, True, VERIFIER_STAKES[0]]
        assert dispute_of(w, dispute)[8] == TOTAL_VERIFIER_STAKE  # totalStake

    # Governance: stake added after a proposal's creation weighs nothing on it.
    bad = hex32(keccak(b"a measurement nobody audited"))
    g.send(reg.propose(b32(bad), 2), w.attacker)
    proposal = reg.proposalCount().call()
    snapshot_total = reg.totalActiveStake().call()  # nothing moved since the snapshot block
    newcomer = g.player("governance newcomer")
    added = 155_000 * OPG
    g.stake(newcomer, 2, added)
    assert added * 100 // (snapshot_total + added) >= 34
    g.expect_revert(reg.vote(proposal, True), newcomer, "NoStake", account=newcomer)
    g.fund(w.attacker, 55_000 * OPG)
    g.allow(w.attacker, 55_000 * OPG, g.d.node_registry.address)
    g.send(reg.addStake(55_000 * OPG), w.attacker)
    receipt = g.send(reg.vote(proposal, True), w.attacker)
    (event,) = g.events(g.d.node_registry, "VoteCast", receipt)
    assert event.args.weight == NODE_STAKE  # not its 155,000 OPG of now
    g.advance(P.governance_voting_delay + 1)
    g.expect_revert(
        reg.execute(proposal), w.attacker, "ProposalNotPassed", yes=NODE_STAKE, no=0,
        totalStake=snapshot_total,
    )  # fmt: skip
    assert reg.measurementKind(b32(bad)).call() == 0


# --------------------------------------------------------------------------- 5


def test_unbonding_cannot_escape_a_slash(world: World) -> None:
    w, g = world, world.g
    reg, s = g.d.node_registry.functions, g.d.settlement.functions
    x = w.attacker

    # Parameters that would let stake leave before its dispute is decided are refused.
    g.expect_revert(registry_fn(g, 0), g.deployer, "InvalidParameter", name="unbondingPeriod")
    short = g.send(registry_fn(g, WINDOW), g.deployer)["contractAddress"]
    g.expect_revert(
        settlement_fn(g, short, WINDOW), g.deployer, "InvalidParameter", name="unbondingPeriod"
    )
    g.send(settlement_fn(g, short, WINDOW // 2), g.deployer)  # exactly twice: accepted
    with pytest.raises(ConfigError, match="twice the challenge window"):
        DeployParams(unbonding_period=WINDOW, challenge_window=WINDOW)

    # A node starts unbonding half its stake, then cheats just before the unbonding matures.
    g.send(reg.unstake(NODE_STAKE // 2), x)
    unbonding = reg.unbondingCount().call()
    release = reg.getUnbonding(unbonding).call()[2]
    g.advance(P.unbonding_period - WINDOW // 2)
    fraud = attacker_batch(w, job="escape")
    g.commit(fraud, x)
    g.expect_revert(reg.withdraw(unbonding), x, "StillUnbonding")
    dispute = g.challenge(fraud, w.challenger)
    g.advance(WINDOW // 2 + 100)
    opened_at = dispute_of(w, dispute)[2]
    assert release <= g.now() < opened_at + WINDOW  # matured, and the dispute is open
    g.expect_revert(reg.withdraw(unbonding), x, "WithdrawalLocked", node=x)

    pool = reg.slashableStake(x.address).call()
    active = reg.stakeOf(x.address, x.address).call()  # its active own stake: the other half
    assert (pool, active) == (NODE_STAKE, NODE_STAKE // 2)
    _, v2, v3 = w.verifiers
    g.vote(dispute, fraud, v2, True)
    receipt = g.vote(dispute, fraud, v3, True)  # 88 %: upheld
    (upheld,) = g.events(g.d.settlement, "ChallengeUpheld", receipt)
    # The slash takes max(minSlash, collateral) from the operator's own stake, active and
    # unbonding together (all of this pool), and the same fraction of everything else.
    target = max(P.min_slash, collateral(5))
    slash = pool * target // NODE_STAKE
    assert slash == target
    assert upheld.args.slashed == slash
    assert reg.stakeOf(x.address, x.address).call() == active * (pool - slash) // pool
    assert reg.slashableStake(x.address).call() == pool - slash
    receipt = g.send(reg.withdraw(unbonding), x)
    (withdrawn,) = g.events(g.d.node_registry, "Withdrawn", receipt)
    assert withdrawn.args.amount == (NODE_STAKE // 2) * (pool - slash) // pool  # slashed too
    assert s.exposure(x.address).call() == 0


def test_unstaking_after_the_commit_does_not_cancel_the_challengers_reward(world: World) -> None:
    """A cheating node that unstakes all its own stake right after committing would, if the
    reward came only from its *active* own stake, leave the first challenger unrewarded. The
    reward is a share of the slash target instead; the node's unbonding stake pays it, and
    is what the slash is sized by."""
    w, g = world, world.g
    reg = g.d.node_registry.functions
    x = w.attacker
    fraud = attacker_batch(w, job="unstake-after-commit")
    g.commit(fraud, x)
    g.send(reg.unstake(NODE_STAKE), x)  # all of its own stake: active own stake is now 0
    assert reg.stakeOf(x.address, x.address).call() == 0
    pool = reg.slashableStake(x.address).call()
    dispute = g.challenge(fraud, w.challenger)
    before = g.balance(w.challenger)  # the bond is posted
    _, v2, v3 = w.verifiers
    g.vote(dispute, fraud, v2, True)
    receipt = g.vote(dispute, fraud, v3, True)
    (upheld,) = g.events(g.d.settlement, "ChallengeUpheld", receipt)
    target = max(P.min_slash, collateral(5))
    # The unbonding own stake is the operator's stake: the slash takes the target from it,
    # not the whole pool for want of active own stake.
    assert pool == NODE_STAKE
    assert upheld.args.slashed == target
    assert upheld.args.challengerReward == target * P.challenger_reward_bps // 10_000 > 0
    bond = g.d.settlement.functions.challengeBond().call()
    assert g.balance(w.challenger) - before == bond + upheld.args.challengerReward


# --------------------------------------------------------------------------- 6


def test_sybils_cannot_halt_settlement(world: World) -> None:
    w, g = world, world.g
    reg = g.d.node_registry.functions
    v3 = w.verifiers[2]
    # The honest verifiers hold more than 2/3 even with every sybil staked.
    g.fund(v3, 100_000 * OPG)
    g.allow(v3, 100_000 * OPG, g.d.node_registry.address)
    g.send(reg.addStake(100_000 * OPG), v3)
    honest_stake = TOTAL_VERIFIER_STAKE + 100_000 * OPG
    b = honest_batch(w, job="sybils")
    honest = [g.verdict(v, b) for v in w.verifiers]

    with g.isolated():
        g.commit(b, w.node)
        g.advance(WINDOW)
        gas_alone = g.finalize(b, honest, w.node)["gasUsed"]

    sybils = [g.player(f"sybil {i}") for i in range(SYBILS)]
    for sybil in sybils:  # one block each: the role's checkpoint history grows with them
        g.stake(sybil, 2, P.min_verifier_stake)
    total = honest_stake + SYBILS * P.min_verifier_stake
    assert reg.totalRoleStake(2).call() == total
    g.commit(b, w.node)
    sybil_verdicts = [g.verdict(s, b) for s in sybils]
    g.advance(WINDOW)
    g.expect_revert(
        g.finalize_fn(b, sybil_verdicts), w.node, "QuorumNotReached",
        passStake=SYBILS * P.min_verifier_stake, totalVerifierStake=total,
    )  # fmt: skip
    with g.isolated():
        gas_3 = g.finalize(b, honest, w.node)["gasUsed"]
    receipt = g.finalize(b, [*honest, *sybil_verdicts[: SYBILS - 3]], w.node)
    gas_64 = receipt["gasUsed"]
    assert g.status(b) == BatchStatus.FINALIZED
    assert len(g.verifiers_paid(receipt)) == SYBILS  # no cap on who is paid

    # Three verdicts cost what they cost without the sybils, but for the lookup of the
    # role's total among its checkpoints: O(log n) storage reads at worst, a few thousand gas
    # for the 64 checkpoints the sybils added (none where the latest one is read directly).
    assert abs(gas_3 - gas_alone) <= 10_000, (gas_alone, gas_3)
    # Finalize grows with the verdicts passed, linearly, and 64 fit easily in a block.
    per_verdict = (gas_64 - gas_3) / (SYBILS - 3)
    assert 5_000 < per_verdict < 50_000, (gas_3, gas_64)
    assert gas_64 < 5_000_000


# --------------------------------------------------------------------------- 7


def test_registrations_are_authenticated(world: World) -> None:
    w, g = world, world.g
    models, reg = g.d.model_registry.functions, g.d.node_registry.functions
    x, x_key = w.attacker, w.attacker_key

    # A registration in the owner's name without the owner's signature.
    fake = g.registration(w.owner.address, MODEL, 1_000 * OPG)
    forged = g.registration_signature(x, MODEL, w.owner.address, 1_000 * OPG, hex32(fake[3]),
                                      fake[4])  # fmt: skip
    g.expect_revert(models.registerModel(fake, forged), x, "BadOwnerSignature")
    owners = g.registration_signature(w.owner, MODEL, w.owner.address, PRICE, hex32(fake[3]),
                                      fake[4])  # fmt: skip
    g.expect_revert(models.registerModel(fake, owners), x, "BadOwnerSignature")  # price edited

    # The same model bytes under the attacker's own key: its own registration, nobody else's.
    g.register_model(x, MODEL, 1_000 * OPG)
    assert models.pricing(b32(MODEL), w.owner.address).call() == [True, PRICE, False]
    assert models.pricing(b32(MODEL), x.address).call() == [True, 1_000 * OPG, False]
    b = honest_batch(w, job="owner")
    found = g.commit(b, w.node)
    assert (found.record["modelOwner"], found.record["price"]) == (w.owner.address, PRICE)
    g.advance(WINDOW)
    g.finalize(b, [g.verdict(v, b) for v in w.verifiers], w.node)
    payment, _, _ = split(5)
    assert g.d.settlement.functions.owed(w.owner.address).call() >= payment
    g.expect_revert(g.d.settlement.functions.withdraw(), x, "NothingToClaim", account=x)

    # Binding someone else's attester without its proof of possession.
    honest_proof = g.binding_signature(w.node, w.node_key, RUNTIME_ID)
    for proof in (
        b"",
        g.binding_signature(x, w.node_key, RUNTIME_ID, signer=x_key),  # forged by the attacker
        honest_proof,  # the honest node's proof, replayed: it names the honest node
    ):
        g.expect_revert(
            reg.setAttester(w.node_key.address, b32(RUNTIME_ID), proof), x, "BadAttesterSignature"
        )
    newcomer = g.player("binding newcomer")
    g.fund(newcomer, P.min_node_stake)
    g.allow(newcomer, P.min_node_stake, g.d.node_registry.address)
    g.expect_revert(
        reg.registerNode(1, P.min_node_stake, w.node_key.address, b32(RUNTIME_ID), honest_proof),
        newcomer,
        "BadAttesterSignature",
    )
    consent = g.binding_signature(x, w.node_key, RUNTIME_ID)  # even with the key's consent
    g.expect_revert(
        reg.setAttester(w.node_key.address, b32(RUNTIME_ID), consent), x, "AttesterAlreadyBound",
        attester=w.node_key, node=w.node,
    )  # fmt: skip
    assert reg.nodeOfAttester(w.node_key.address).call() == w.node.address

    # A production deployment refuses the software enclave's measurement, everywhere.
    tdx = hex32(keccak(b"a TDX measurement"))
    g.expect_revert(
        registry_fn(g, P.unbonding_period, production=True, measurements=((RUNTIME_ID, 1),)),
        g.deployer,
        "SoftwareMeasurementInProduction",
        measurement=RUNTIME_ID,
    )
    address = g.send(
        registry_fn(g, P.unbonding_period, production=True, measurements=((tdx, 2),)), g.deployer
    )["contractAddress"]
    prod = g.w3.eth.contract(address=address, abi=load_compiled("NodeRegistry")["abi"]).functions
    assert prod.measurementKind(b32(tdx)).call() == 2
    for fn in (prod.bootstrapMeasurement(b32(RUNTIME_ID), 1), prod.propose(b32(RUNTIME_ID), 1)):
        g.expect_revert(fn, g.deployer, "SoftwareMeasurementInProduction", measurement=RUNTIME_ID)


# --------------------------------------------------------------------------- 8


def test_cheating_costs_more_than_it_gains(world: World) -> None:
    _upheld_fraud_refunds_the_requester_rewards_the_challenger_and_burns_the_rest(world)
    _collateral_bounds_the_escrow_a_node_can_hold(world)
    _slash_is_capped_at_the_pool(world)
    _requester_cannot_get_a_refund_by_challenging_its_own_batch(world)
    _copycat_cannot_front_run_a_challenge(world)


def _upheld_fraud_refunds_the_requester_rewards_the_challenger_and_burns_the_rest(w: World) -> None:
    g, x, c = w.g, w.attacker, w.challenger
    reg, s = g.d.node_registry.functions, g.d.settlement.functions
    v1, v2, v3 = w.verifiers
    with g.isolated():
        delegator = g.player("delegator of the cheat")
        g.delegate(delegator, x, 20_000 * OPG)
        rows = 2_000
        fraud = attacker_batch(w, job="fraud", rows=4, row_count=rows)
        payment, node_fee, verifier_fee = split(rows)
        target = max(P.min_slash, collateral(rows))
        assert target == collateral(rows) == 23_000 * OPG  # 10x the escrow
        pool = reg.slashableStake(x.address).call()
        assert pool == NODE_STAKE + 20_000 * OPG
        requester0, burned0 = g.balance(w.requester), g.burned()
        g.commit(fraud, x)
        lazy = g.verdict(v1, fraud, True)  # signed pass without checking
        fail2, fail3 = g.verdict(v2, fraud, False), g.verdict(v3, fraud, False)
        dispute = g.challenge(fraud, c, row=1)
        challenger0 = g.balance(c)
        g.vote(dispute, fraud, v3, True)  # 56.1 %: not decided by votes
        g.advance(WINDOW)
        record = fraud.record
        g.expect_revert(s.slashPassAttester(dispute, record, lazy.as_tuple()), c, "NotUpheld")
        receipt = g.send(
            s.resolveChallenge(dispute, record, sorted_verdicts([lazy, fail2, fail3])), c
        )
        (upheld,) = g.events(g.d.settlement, "ChallengeUpheld", receipt)
        # The pool loses the share that takes the collateral from the operator's own stake:
        # 23,000 of its 100,000 OPG, so 23 % of the 120,000 OPG pool.
        slash = pool * target // NODE_STAKE
        assert slash == 27_600 * OPG
        assert reg.stakeOf(x.address, x.address).call() == NODE_STAKE - target
        reward = target * P.challenger_reward_bps // BPS  # half of the operator's own part
        assert (upheld.args.slashed, upheld.args.challengerReward) == (slash, reward)
        assert upheld.args.requesterRefund == payment + node_fee
        assert reg.slashableStake(x.address).call() == pool - slash
        # The delegator bears the same fraction, as it would share fees ...
        assert reg.stakeOf(x.address, delegator.address).call() == (
            20_000 * OPG * (pool - slash) // pool
        )
        # ... and no key gets its part: it is burned with the rest of the operator's.
        assert g.burned() == burned0 + slash - reward
        # The node loses far more than the fee it cheated for.
        assert NODE_STAKE - reg.stakeOf(x.address, x.address).call() > 50 * node_fee
        assert g.balance(c) == challenger0 + P.challenge_bond + reward
        # The requester gets back its payment and the node fee; no slash proceeds.
        assert g.balance(w.requester) == requester0 - verifier_fee

        # The pass verdict is the evidence against the verifier that signed it: 10 % of its
        # pool (its own stake only, nothing delegated), whoever calls, all of it burned (the
        # challenger may be the forger's own key).
        v1_pool = reg.slashableStake(v1.address).call()
        cut = v1_pool * P.verifier_slash_bps // BPS
        assert cut == 1_200 * OPG
        challenger1, burned1 = g.balance(c), g.burned()
        receipt = g.send(s.slashPassAttester(dispute, record, lazy.as_tuple()), w.requester)
        (event,) = g.events(g.d.settlement, "PassAttesterSlashed", receipt)
        assert (event.args.verifier, event.args.challenger, event.args.amount) == (
            v1.address, c.address, cut,
        )  # fmt: skip
        assert reg.slashableStake(v1.address).call() == v1_pool - cut
        assert reg.stakeOf(v1.address, v1.address).call() == VERIFIER_STAKES[0] - cut
        assert g.balance(c) == challenger1
        assert g.burned() == burned1 + cut
        g.expect_revert(s.slashPassAttester(dispute, record, lazy.as_tuple()), c,
                        "AlreadySlashed", verifier=v1)  # fmt: skip
        g.expect_revert(s.slashPassAttester(dispute, record, fail2.as_tuple()), c,
                        "VerdictNotPass", verifier=v2)  # fmt: skip
        framed = replace(g.verdict(x, fraud, True), verifier=v2.address)
        g.expect_revert(s.slashPassAttester(dispute, record, framed.as_tuple()), c,
                        "BadVerdictSignature", verifier=v2)  # fmt: skip

        # Upheld voters and fail-verdict signers share the verifier fee; nobody else.
        g.expect_revert(s.claimDisputeReward(dispute, record, lazy.as_tuple()), v1,
                        "WrongVerdict", verifier=v1)  # fmt: skip
        posing = replace(g.verdict(x, fraud, False), verifier=v1.address)
        g.expect_revert(s.claimDisputeReward(dispute, record, posing.as_tuple()), v1,
                        "BadVerdictSignature", verifier=v1)  # fmt: skip
        g.send(s.claimDisputeReward(dispute, record, (v3.address, False, b"")), v3)  # its vote
        g.send(s.claimDisputeReward(dispute, record, fail2.as_tuple()), v2)  # its verdict
        share2 = verifier_fee * VERIFIER_STAKES[1] // TOTAL_VERIFIER_STAKE
        share3 = verifier_fee * VERIFIER_STAKES[2] // TOTAL_VERIFIER_STAKE
        assert s.nodeFees(v2.address).call() == share2
        assert s.nodeFees(v3.address).call() == share3
        g.expect_revert(s.claimDisputeReward(dispute, record, fail2.as_tuple()), v2,
                        "AlreadyClaimed")  # fmt: skip
        g.expect_revert(s.sweepDisputeReward(dispute, record), c, "ClaimPeriodOpen")
        g.advance(WINDOW)
        g.expect_revert(s.claimDisputeReward(dispute, record, fail3.as_tuple()), v3,
                        "ClaimPeriodOver")  # fmt: skip
        requester1 = g.balance(w.requester)
        g.send(s.sweepDisputeReward(dispute, record), c)
        assert g.balance(w.requester) == requester1 + verifier_fee - share2 - share3
        g.expect_revert(s.sweepDisputeReward(dispute, record), c, "NothingToClaim")
        # The fee goes into the verifier's pool, where delegators would share it.
        v2_pool = reg.slashableStake(v2.address).call()
        g.send(s.claimNodeFees(v2.address), c)
        assert reg.slashableStake(v2.address).call() == v2_pool + share2


def _collateral_bounds_the_escrow_a_node_can_hold(w: World) -> None:
    """The collateral of a node's open batches must fit in its operator's own active stake:
    delegations do not raise that capacity, and unbonding own stake lowers it at once."""
    g = w.g
    reg, s = g.d.node_registry.functions, g.d.settlement.functions
    with g.isolated():
        delegator = g.player("delegator of the honest node")
        g.delegate(delegator, w.node, 200_000 * OPG)
        pool = NODE_STAKE + 200_000 * OPG
        assert reg.totalStake(w.node.address).call() == pool
        too_big = honest_batch(w, job="too big", rows=4, row_count=9_000)
        assert NODE_STAKE < collateral(9_000) < pool  # the pool would cover it
        g.expect_revert(
            g.commit_fn(too_big), w.node, "InsufficientCollateral", activeStake=NODE_STAKE,
            required=collateral(9_000),
        )  # fmt: skip
        first = honest_batch(w, job="first", rows=4, row_count=5_000)
        second = honest_batch(w, job="second", rows=4, row_count=4_000)
        assert collateral(5_000) <= NODE_STAKE < collateral(5_000) + collateral(4_000) < pool
        g.commit(first, w.node)
        assert s.exposure(w.node.address).call() == collateral(5_000)
        g.expect_revert(
            g.commit_fn(second), w.node, "InsufficientCollateral", activeStake=NODE_STAKE,
            required=collateral(5_000) + collateral(4_000),
        )  # fmt: skip
        g.advance(WINDOW)
        g.finalize(first, [g.verdict(v, first) for v in w.verifiers], w.node)
        assert s.exposure(w.node.address).call() == 0
        with g.isolated():  # own stake unbonding (still slashable) no longer counts
            g.send(reg.unstake(60_000 * OPG), w.node)
            assert reg.totalStake(w.node.address).call() == pool - 60_000 * OPG
            g.expect_revert(
                g.commit_fn(second), w.node, "InsufficientCollateral",
                activeStake=NODE_STAKE - 60_000 * OPG, required=collateral(4_000),
            )  # fmt: skip
        with g.isolated():  # no own stake at all: delegations alone commit nothing
            g.send(reg.unstake(NODE_STAKE), w.node)
            assert reg.totalStake(w.node.address).call() == pool - NODE_STAKE
            g.expect_revert(
                g.commit_fn(second), w.node, "InsufficientStake", available=0,
                required=P.min_node_stake,
            )  # fmt: skip
        g.commit(second, w.node)  # the collateral is free again


def _slash_is_capped_at_the_pool(w: World) -> None:
    g = w.g
    reg = g.d.node_registry.functions
    _, v2, v3 = w.verifiers
    with g.isolated():
        small, small_key = g.player("small node"), attester("small node")
        g.stake(small, 1, P.min_node_stake, attester=small_key)
        batches = []
        for i in range(2):
            order = g.order(w.requester, model_id=MODEL, model_owner=w.owner, node=small,
                            job=f"cap {i}")  # fmt: skip
            batches.append(g.batch(order, small_key, order_signer=w.requester))
            g.commit(batches[-1], small)
        disputes = [g.challenge(b, w.challenger) for b in batches]
        slashed = []
        for dispute, b in zip(disputes, batches, strict=True):
            g.vote(dispute, b, v2, True)
            (upheld,) = g.events(g.d.settlement, "ChallengeUpheld", g.vote(dispute, b, v3, True))
            slashed.append((upheld.args.slashed, upheld.args.challengerReward))
        # The min slash (all its own stake) the first time, half of it to the challenger;
        # then nothing is left to take or to reward.
        reward = P.min_slash * P.challenger_reward_bps // BPS
        assert slashed == [(P.min_slash, reward), (0, 0)]
        assert reg.slashableStake(small.address).call() == 0


def _requester_cannot_get_a_refund_by_challenging_its_own_batch(w: World) -> None:
    g, r = w.g, w.requester
    reg, s = g.d.node_registry.functions, g.d.settlement.functions
    _, v2, v3 = w.verifiers
    with g.isolated():
        delegator = g.player("delegator of the honest node")
        g.delegate(delegator, w.node, 25_000 * OPG)
        b = honest_batch(w, job="own goal")
        verdicts = [g.verdict(v, b) for v in w.verifiers]
        requester0 = g.balance(r)
        g.commit(b, w.node)
        dispute = g.challenge(b, r, fund=False)  # a made-up "re-executed" output
        node0 = g.balance(w.node)

        half = P.challenge_bond // 2
        with g.isolated():  # the verifiers reject it: half the bond to the node, half back
            g.vote(dispute, b, v2, False)
            g.vote(dispute, b, v3, False)
            assert g.balance(w.node) == node0 + P.challenge_bond - half
            assert g.status(b) == BatchStatus.PENDING
            g.advance(WINDOW)
            g.finalize(b, verdicts, w.node)
            assert g.balance(r) == requester0 - escrow(5) - (P.challenge_bond - half)

        # Nobody votes. A void (which would refund it) waits a second window, in which the
        # node presents the pass verdicts it finalises with: they reject the dispute, and
        # the honest verdicts finalise the batch after its fresh window.
        g.advance(WINDOW)
        g.expect_revert(s.resolveChallenge(dispute, b.record, []), r, "VotingOpen")
        receipt = g.send(s.resolveChallenge(dispute, b.record, sorted_verdicts(verdicts)), w.node)
        assert g.events(g.d.settlement, "ChallengeRejected", receipt)
        assert g.status(b) == BatchStatus.PENDING
        g.expect_revert(s.expire(b.key, b.record), r, "FinalizeGraceOpen")
        g.expect_revert(g.finalize_fn(b, verdicts), w.node, "ChallengeWindowOpen")
        g.advance(WINDOW)
        g.finalize(b, verdicts, w.node)
        assert g.status(b) == BatchStatus.FINALIZED
        assert g.balance(r) == requester0 - escrow(5) - (P.challenge_bond - half)

        # Fees paid into the pool raise the delegator's stake, as a slash lowers it.
        _, node_fee, _ = split(5)
        stake0 = reg.stakeOf(w.node.address, delegator.address).call()
        pool0 = reg.slashableStake(w.node.address).call()
        g.send(s.claimNodeFees(w.node.address), delegator)
        assert reg.stakeOf(w.node.address, delegator.address).call() == (
            stake0 * (pool0 + node_fee) // pool0
        )


def _copycat_cannot_front_run_a_challenge(w: World) -> None:
    g, c = w.g, w.challenger
    s = g.d.settlement.functions
    copycat = g.player("copycat")
    with g.isolated():
        b, b2 = honest_batch(w, job="copied"), honest_batch(w, job="same block")
        g.commit(b, w.node)
        g.commit(b2, w.node)
        for who in (c, copycat):
            g.fund(who, 2 * P.challenge_bond)
            g.allow(who, 2 * P.challenge_bond)
        claimed, salt = keccak(b"the real output"), keccak(b"the challenger's salt")
        g.send(s.commitChallenge(g.commitment(c, b, 0, claimed, salt)), c)
        # The copycat sees the reveal in the mempool and sends it first, in the same block.
        reveal = s.challenge(*g.challenge_args(b, 0, claimed, salt))
        copied, original = g.in_one_block([(reveal, copycat), (reveal, c)])
        assert (copied["status"], original["status"]) == (0, 1)
        assert g.replay_reason(copied) == "ChallengeNotCommitted()"
        dispute = s.stateOf(b.key).call()[1]
        assert dispute_of(w, dispute)[1] == c.address
        # Its own commitment revealed in the block that commits it is refused too (an
        # accomplice sends the commitment: anyone may commit one, for any challenger) ...
        own = g.commitment(copycat, b2, 0, claimed, salt)
        early = s.challenge(*g.challenge_args(b2, 0, claimed, salt))
        committed, revealed = g.in_one_block(
            [(s.commitChallenge(own), g.player("accomplice")), (early, copycat)]
        )
        assert (committed["status"], revealed["status"]) == (1, 0)
        # ... and the same reveal one block later goes through: the block made the difference.
        g.send(early, copycat)
        assert g.status(b2) == BatchStatus.DISPUTED


# --------------------------------------------------------------------------- 9


def test_receipts_are_checked_from_their_fields(world: World) -> None:
    w, g = world, world.g
    s = g.d.settlement.functions
    # Five receipts in the tree, but a claim for four rows: row index 4 was never billed.
    b = honest_batch(w, job="receipts", rows=5, row_count=4)
    g.commit(b, w.node)
    root = bytes.fromhex(b.receipts.root[2:])

    def verify(row: int, x: bytes, y: bytes, proof: list[bytes]) -> tuple[bool, int]:
        included, status = s.verifyReceipt(b.key, b.record, row, x, y, proof).call()
        return included, status

    for k, (i, x, y) in enumerate(b.receipts.rows[:4]):
        assert verify(i, x, y, b.receipts.proof(k)) == (True, BatchStatus.PENDING)
    i, x, y = b.receipts.rows[4]
    assert verify_proof(root, b.receipts.leaf(4), b.receipts.proof(4))  # in the tree ...
    assert verify(i, x, y, b.receipts.proof(4)) == (False, BatchStatus.PENDING)  # ... not billed

    # An internal node passes a proof check taken as a leaf; receipts are rebuilt from fields.
    nodes = [bytes(n) for n in b.receipts.tree.nodes]  # OZ layout: node k has 2k+1, 2k+2
    internal, path = nodes[3], [nodes[4], nodes[2]]
    assert verify_proof(root, internal, path)
    for fields in ((0, nodes[7], nodes[8]), (0, internal, internal), (3, nodes[7], nodes[8])):
        assert verify(*fields, path) == (False, BatchStatus.PENDING)

    # A slashed batch's rows say so.
    dispute = g.challenge(b, w.challenger, row=1)
    _, v2, v3 = w.verifiers
    g.vote(dispute, b, v2, True)
    g.vote(dispute, b, v3, True)
    i, x, y = b.receipts.rows[3]
    assert verify(i, x, y, b.receipts.proof(3)) == (True, BatchStatus.SLASHED)

    # Claim timestamps outside [now - claimMaxAge, now + 5 min] are refused.
    for timestamp in (0, 2**64 - 1):
        stamped = honest_batch(w, job=f"stamp {timestamp}", timestamp=timestamp)
        g.expect_revert(
            g.commit_fn(stamped), w.node, "ClaimTimestampOutOfRange", timestamp=timestamp
        )


# --------------------------------------------------------------------------- 10


def test_operator_cannot_drain_its_delegators_by_challenging_itself(world: World) -> None:
    """An inference operator with 20 times its own stake delegated to it orders a fraud from
    itself (its requester key), challenges it (its challenger key) and lets the honest
    verifiers uphold it. Its collateral must fit in its own stake; the slash takes that from
    its own stake and the same fraction from its delegators; the only slash proceeds any of
    its keys gets are the challenger's reward, half its own loss; the rest is burned."""
    w, g = world, world.g
    reg, s = g.d.node_registry.functions, g.d.settlement.functions
    _, v2, v3 = w.verifiers
    operator, operator_key = g.player("operator"), attester("operator")
    requester, challenger = g.player("operator as requester"), g.player("operator as challenger")
    delegator = g.player("trusting delegator")
    own, delegated = 10_000 * OPG, 200_000 * OPG
    pool = own + delegated
    g.stake(operator, 1, own, attester=operator_key)
    g.delegate(delegator, operator, delegated)
    assert reg.slashableStake(operator.address).call() == pool
    assert reg.totalStake(operator.address).call() == pool
    g.fund(requester, escrow(18_260))
    g.allow(requester, escrow(18_260))
    g.fund(challenger, P.challenge_bond)
    g.allow(challenger, P.challenge_bond)

    def fraud(rows: int) -> Batch:
        order = g.order(requester, model_id=MODEL, model_owner=w.owner, node=operator,
                        max_rows=rows, job=f"self-dealing {rows}")  # fmt: skip
        return g.batch(order, operator_key, order_signer=requester, rows=4, row_count=rows)

    def wealth() -> int:
        """The operator's own stake and what its three keys hold."""
        held = reg.stakeOf(operator.address, operator.address).call()
        return held + sum(g.balance(p) for p in (operator, requester, challenger))

    # The batch that used to pay, its collateral just under the whole pool, is refused ...
    g.expect_revert(
        g.commit_fn(fraud(18_260)), operator, "InsufficientCollateral", activeStake=own,
        required=collateral(18_260),
    )  # fmt: skip
    # ... and so is anything whose collateral exceeds the operator's own stake.
    rows = 869
    assert collateral(rows) <= own < collateral(rows + 1)
    g.expect_revert(
        g.commit_fn(fraud(rows + 1)), operator, "InsufficientCollateral", activeStake=own,
        required=collateral(rows + 1),
    )  # fmt: skip

    # The largest fraud its own stake covers, challenged by itself and upheld.
    before, burned0 = wealth(), g.burned()
    b = fraud(rows)
    g.commit(b, operator)
    dispute = g.challenge(b, challenger, row=1, fund=False)
    g.vote(dispute, b, v2, True)  # the row is wrong: honest verifiers uphold it
    (upheld,) = g.events(g.d.settlement, "ChallengeUpheld", g.vote(dispute, b, v3, True))
    target = max(P.min_slash, collateral(rows))
    slashed = pool * target // own  # the fraction that takes `target` from its own stake
    assert slashed == 2_098_635 * OPG // 10
    assert upheld.args.slashed == slashed
    from_own = own - reg.stakeOf(operator.address, operator.address).call()
    assert from_own == target
    reward = from_own * P.challenger_reward_bps // BPS
    payment, node_fee, verifier_fee = split(rows)
    assert upheld.args.challengerReward == reward
    assert upheld.args.requesterRefund == payment + node_fee  # no slash proceeds
    assert reg.slashableStake(operator.address).call() == pool - slashed
    # Its delegator loses the fraction the operator lost, no more ...
    left = reg.stakeOf(operator.address, delegator.address).call()
    assert left == delegated * (pool - slashed) // pool
    assert (delegated - left) * own == from_own * delegated
    # ... and nobody gets it: it is at the burn address with the rest of the operator's part.
    assert g.burned() == burned0 + slashed - reward

    # The honest verifiers take their shares of the verifier fee; the rest is swept back.
    for v in (v2, v3):
        g.send(s.claimDisputeReward(dispute, b.record, (v.address, False, b"")), v)
    g.advance(WINDOW)
    g.send(s.sweepDisputeReward(dispute, b.record), requester)
    shares = sum(verifier_fee * VERIFIER_STAKES[i] // TOTAL_VERIFIER_STAKE for i in (1, 2))
    # Its keys together end up poorer: by half what its own stake lost, and those shares.
    gain = wealth() - before
    assert gain == reward - from_own - shares
    assert gain < -4_900 * OPG


def test_verifier_operator_cannot_drain_its_delegators_by_slashing_itself(world: World) -> None:
    """A verifier operator, with twice its own stake delegated to it, signs a pass verdict on
    a fraud that its own inference node commits for its own requester key, challenges it
    with its own challenger key, votes it upheld and has its verifier slashed for the pass
    (slashPassAttester): verifierSlashBps of the verifier's pool is slashed and all of it,
    the delegators' part included, is burned: none of it reaches the challenger."""
    w, g = world, world.g
    reg, s = g.d.node_registry.functions, g.d.settlement.functions
    _, v2, v3 = w.verifiers
    verifier = g.player("verifier operator")
    node, node_key = g.player("verifier operator's node"), attester("verifier operator's node")
    requester = g.player("verifier operator as requester")
    challenger = g.player("verifier operator as challenger")
    delegator = g.player("delegator of the verifier operator")
    own, delegated, node_own = 10_000 * OPG, 20_000 * OPG, 10_000 * OPG
    pool = own + delegated
    g.stake(verifier, 2, own)
    g.delegate(delegator, verifier, delegated)
    g.stake(node, 1, node_own, attester=node_key)
    rows = 80
    _, _, verifier_fee = split(rows)
    g.fund(requester, escrow(rows))
    g.allow(requester, escrow(rows))
    g.fund(challenger, P.challenge_bond)
    g.allow(challenger, P.challenge_bond)
    keys = (verifier, node, requester, challenger)

    def wealth() -> int:
        """The own stake of its verifier and its node, and what its four keys hold."""
        held = sum(reg.stakeOf(n.address, n.address).call() for n in (verifier, node))
        return held + sum(g.balance(k) for k in keys)

    before, burned0 = wealth(), g.burned()
    order = g.order(requester, model_id=MODEL, model_owner=w.owner, node=node, max_rows=rows,
                    job="passed by its own verifier")  # fmt: skip
    fraud = g.batch(order, node_key, order_signer=requester, rows=4, row_count=rows)
    g.commit(fraud, node)
    passed = g.verdict(verifier, fraud, True)  # the evidence against its own verifier
    dispute = g.challenge(fraud, challenger, row=1, fund=False)
    total = TOTAL_VERIFIER_STAKE + pool
    assert dispute_of(w, dispute)[8] == total
    g.vote(dispute, fraud, verifier, True)
    g.vote(dispute, fraud, v2, True)
    (upheld,) = g.events(g.d.settlement, "ChallengeUpheld", g.vote(dispute, fraud, v3, True))
    # Its node (no delegators) loses the min slash, above the 920 OPG collateral.
    node_target = max(P.min_slash, collateral(rows))
    assert node_target == P.min_slash < node_own
    node_reward = node_target * P.challenger_reward_bps // BPS
    assert (upheld.args.slashed, upheld.args.challengerReward) == (node_target, node_reward)
    assert reg.stakeOf(node.address, node.address).call() == node_own - node_target

    # slashPassAttester on its own verifier: 10 % of the pool, of it 10 % of its own stake.
    cut = pool * P.verifier_slash_bps // BPS
    cut_own = own * P.verifier_slash_bps // BPS
    step, burned1 = wealth(), g.burned()
    receipt = g.send(s.slashPassAttester(dispute, fraud.record, passed.as_tuple()), challenger)
    (event,) = g.events(g.d.settlement, "PassAttesterSlashed", receipt)
    assert (event.args.verifier, event.args.challenger, event.args.amount) == (
        verifier.address, challenger.address, cut,
    )  # fmt: skip
    (slashed,) = g.events(g.d.node_registry, "Slashed", receipt)
    assert (slashed.args.amount, slashed.args.fromNode) == (cut, cut_own)
    assert reg.stakeOf(verifier.address, verifier.address).call() == own - cut_own
    # Its delegator loses the same 10 %, and that is burned with the rest of the cut.
    assert reg.stakeOf(verifier.address, delegator.address).call() == (
        delegated - delegated * P.verifier_slash_bps // BPS
    )
    assert g.burned() == burned1 + cut
    assert wealth() - step == -cut_own < 0  # the slash step alone loses

    # Its upheld vote earns its verifier a share of the fee, paid into the (shared) pool.
    share = {
        who.address: verifier_fee * weight // total
        for who, weight in ((verifier, pool), (v2, VERIFIER_STAKES[1]), (v3, VERIFIER_STAKES[2]))
    }
    for who in (verifier, v2, v3):
        g.send(s.claimDisputeReward(dispute, fraud.record, (who.address, False, b"")), who)
        assert s.nodeFees(who.address).call() == share[who.address]
    g.send(s.claimNodeFees(verifier.address), verifier)
    own_after = own * (pool - cut + share[verifier.address]) // pool  # shares bought 1:1
    assert reg.stakeOf(verifier.address, verifier.address).call() == own_after
    g.advance(WINDOW)
    g.send(s.sweepDisputeReward(dispute, fraud.record), requester)  # v1's share, unclaimed

    # Everything burned is at the burn address; the operator's keys end up poorer.
    assert g.burned() == burned0 + (node_target - node_reward) + cut
    gain = wealth() - before
    assert gain == ((node_reward - node_target) + (own_after - own) - sum(share.values()))
    assert gain < -500 * OPG


# --------------------------------------------------------------------------- 11


def test_stakeless_verdict_spam_does_not_reach_finalize(world: World) -> None:
    """Anyone can sign a pass verdict over a committed claim and publishVerdict it. What
    ogkit.settle passes to finalize (:func:`ogkit.settle.finalize_verdicts`, reading the
    chain) drops every verdict whose signer weighs nothing at the batch's snapshot (keys
    without stake, a staked inference node, a verifier that left before the commit, one that
    joined after) and keeps the 64 heaviest, so finalize's cost stays bounded."""
    w, g = world, world.g
    reg = g.d.node_registry.functions
    chain = g.client()
    sybils = [g.player(f"sybil {i}") for i in range(SYBILS - 2)]  # 65 verifiers weigh in all
    for sybil in sybils:
        g.stake(sybil, 2, P.min_verifier_stake)
    departed = g.player("departed verifier")
    g.stake(departed, 2, 50_000 * OPG)
    g.send(reg.unstake(50_000 * OPG), departed)
    b = honest_batch(w, job="spam")
    found = g.commit(b, w.node)
    late = g.player("late verifier")
    g.stake(late, 2, 1_000_000 * OPG)  # after the commit: heaviest now, nothing at the snapshot

    honest = [g.verdict(v, b) for v in w.verifiers]
    staked = [g.verdict(p, b) for p in sybils]
    weightless = [g.verdict(p, b) for p in (late, departed, w.attacker, w.node)]
    spam = [g.verdict(attester(f"spammer {i}"), b) for i in range(SYBILS)]
    publish = g.d.settlement.functions.publishVerdict
    receipt = g.send(publish(b.key, b.record, True, b32(spam[0].signature)), w.challenger)
    (event,) = g.events(g.d.settlement, "VerdictPublished", receipt)  # accepted: anyone's
    assert event.args.verifier == spam[0].verifier
    offered = [*honest, *staked, *weightless, *spam]
    # Every one is validly signed: choosing by signature alone would pass all 133.
    valid = quorum_verdicts(offered, batch_id=b.batch_id,
                            claim_digest=found.record["claimDigest"], domain=g.domain)  # fmt: skip
    assert len(valid) == len(offered) == 3 + (SYBILS - 2) + 4 + SYBILS

    chosen = finalize_verdicts(chain, found, offered)
    addresses = [v.verifier for v in offered]
    weights, _ = reg.verifierWeights(addresses, found.record["snapshotBlock"]).call()
    weight = dict(zip(addresses, weights, strict=True))
    assert all(weight[v.verifier] == 0 for v in [*weightless, *spam])
    kept = {v.verifier for v in chosen}
    assert len(chosen) == len(kept) == MAX_FINALIZE_VERDICTS == 64
    assert {v.verifier for v in honest} <= kept <= {v.verifier for v in [*honest, *staked]}
    dropped = set(addresses) - kept
    assert min(weight[a] for a in kept) >= max(weight[a] for a in dropped)  # the heaviest
    assert [int(v.verifier, 16) for v in chosen] == sorted(int(a, 16) for a in kept)

    # finalize takes them as they are, and pays exactly those it was given.
    g.advance(WINDOW)
    fn = g.d.settlement.functions.finalize(b.key, found.as_tuple, [v.compact() for v in chosen])
    receipt = g.send(fn, w.node)
    assert g.status(b) == BatchStatus.FINALIZED
    assert set(g.verifiers_paid(receipt)) == kept
    assert receipt["gasUsed"] < 5_000_000


# --------------------------------------------------------------------------- 12


def test_a_verifier_that_voted_rejected_cannot_claim_the_dispute_reward(world: World) -> None:
    """A verifier hedges: it signs a fail verdict on a fraud and votes the challenge
    rejected, to be paid whichever way the dispute goes. Once the fraud is upheld (by votes,
    or by the signed verdicts, its own among them) the fail verdict buys it nothing: its
    vote says it was wrong, and its share goes back to the requester."""
    w, g = world, world.g
    s = g.d.settlement.functions
    v1, v2, v3 = w.verifiers
    hedger = v2
    rows = 1_000
    b = attacker_batch(w, job="hedged", rows=4, row_count=rows)
    _, _, verifier_fee = split(rows)
    share = {
        v.address: verifier_fee * stake // TOTAL_VERIFIER_STAKE
        for v, stake in zip(w.verifiers, VERIFIER_STAKES, strict=True)
    }
    g.commit(b, w.attacker)
    fails = {v.address: g.verdict(v, b, False) for v in w.verifiers}
    dispute = g.challenge(b, w.challenger, row=1)
    record = b.record

    def hedger_refused() -> None:
        for evidence in (fails[hedger.address].as_tuple(), (hedger.address, False, b"")):
            for sender in (hedger, w.challenger):  # nor may anyone claim on its behalf
                g.expect_revert(s.claimDisputeReward(dispute, record, evidence), sender,
                                "WrongVerdict", verifier=hedger)  # fmt: skip
        assert s.nodeFees(hedger.address).call() == 0

    def paid_and_swept(claims: list[tuple[Player, tuple]]) -> None:
        for who, evidence in claims:
            g.send(s.claimDisputeReward(dispute, record, evidence), who)
            assert s.nodeFees(who.address).call() == share[who.address]
        g.advance(WINDOW)
        requester0 = g.balance(w.requester)
        g.send(s.sweepDisputeReward(dispute, record), w.challenger)
        assert g.balance(w.requester) == (
            requester0 + verifier_fee - share[v1.address] - share[v3.address]
        )

    with g.isolated():  # upheld by votes: v1 and v3 hold 68.1 %
        g.vote(dispute, b, hedger, False)
        g.vote(dispute, b, v1, True)
        assert g.events(g.d.settlement, "ChallengeUpheld", g.vote(dispute, b, v3, True))
        hedger_refused()
        paid_and_swept([(v1, (v1.address, False, b"")), (v3, (v3.address, False, b""))])

    # Upheld by the fail verdicts once voting time is over: neither side reached 2/3.
    g.vote(dispute, b, hedger, False)
    g.vote(dispute, b, v3, True)
    g.advance(WINDOW)
    receipt = g.send(
        s.resolveChallenge(dispute, record, sorted_verdicts(fails.values())), w.challenger
    )
    assert g.events(g.d.settlement, "ChallengeUpheld", receipt)
    hedger_refused()
    paid_and_swept([(v1, fails[v1.address].as_tuple()), (v3, (v3.address, False, b""))])
