"""A third pass of attacks on the settlement contracts, on who is paid after an upheld
dispute, in-process eth-tester chain, real signatures. These worked against the previous
contracts (each test fails there):

- the upheld-dispute reward was a share of the whole slash, not of what the operator's own
  stake lost: an operator whose own stake an earlier dispute had emptied (exposure reserves
  collateral, not the minSlash floor) had its sock paid out of its delegators' stake;
- a forger whose batch the verifiers' samples missed challenged its own fraud from a sock
  and then slashed every verifier that had signed pass, collecting half of each slash:
  a caught forgery paid;
- a verifier that signed pass and did not vote signed a fail verdict after the dispute was
  decided and took a share of the verifier fee meant for those who proved right.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from eth_utils import keccak

from ogkit.chain.bindings import OPG, BatchStatus

from .game import (
    ATTACK_VERIFIER_STAKES,
    BPS,
    GAME_PARAMS,
    AttackWorld,
    attack_world,
    attester,
    hex32,
)

P = GAME_PARAMS
WINDOW = P.challenge_window
BOND = P.challenge_bond
PRICE = 1 * OPG
TOTAL_VERIFIER_STAKE = sum(ATTACK_VERIFIER_STAKES)
World = AttackWorld


@pytest.fixture(scope="module")
def world() -> World:
    return attack_world(b"tiny-mlp.onnx bytes, third pass", PRICE)


@pytest.fixture(autouse=True)
def _rewound(world: World) -> Iterator[None]:
    with world.g.isolated():
        yield


def split(rows: int, price: int = PRICE) -> tuple[int, int, int]:
    payment = price * rows
    return payment, payment * P.node_fee_bps // BPS, payment * P.verifier_fee_bps // BPS


# --------------------------------------------------------------------------- 1


def test_upheld_reward_is_paid_only_out_of_the_operators_own_stake(world: World) -> None:
    """docs/contracts.md: "the challenger is paid only out of the slashed party's own stake"
    and "the reward never exceeds half of what the operator loses".

    Attack: an operator with own stake just above minNodeStake (1,010 OPG) and 100,000 OPG
    delegated commits two batches of a free model (collateral 0, so the exposure check lets
    both in; each upheld dispute still targets minSlash = 1,000 from its own stake). Its sock
    challenges both, honest verifiers uphold both. The first slash leaves 10 OPG of own
    stake; the second slashes the whole remaining pool and `_uphold` pays the challenger
    min(target, slashed) / 2 = 500 OPG although only 10 OPG came from the operator's own
    stake: 490 OPG of the delegators' stake goes to the operator's sock, and the operator
    ends up losing 10 OPG for two caught frauds instead of at least 2 x 500."""
    w, g = world, world.g
    reg = g.d.node_registry.functions
    _, v2, v3 = w.verifiers
    free = hex32(keccak(b"third pass free model"))
    g.register_model(w.owner, free, 0)
    operator, key = g.player("p3 operator"), attester("p3 operator")
    delegator, sock = g.player("p3 delegator"), g.player("p3 sock")
    own = P.min_node_stake + 10 * OPG
    g.stake(operator, 1, own, attester=key)
    g.delegate(delegator, operator, 100_000 * OPG)
    g.fund(sock, 2 * BOND)
    g.allow(sock, 2 * BOND)
    g.mine()
    batches = []
    for i in range(2):
        order = g.order(w.requester, model_id=free, model_owner=w.owner, node=operator,
                        job=f"free fraud {i}")  # fmt: skip
        b = g.batch(order, key, order_signer=w.requester, tag=b"rt%d" % i)
        g.commit(b, operator)
        batches.append(b)

    def wealth() -> int:
        return int(reg.stakeOf(operator.address, operator.address).call()) + g.balance(sock)

    before = wealth()
    rows = []
    for b in batches:
        dispute = g.challenge(b, sock, row=1, fund=False)
        g.vote(dispute, b, v2, True)
        receipt = g.vote(dispute, b, v3, True)
        assert g.status(b) == BatchStatus.SLASHED
        (upheld,) = g.events(g.d.settlement, "ChallengeUpheld", receipt)
        (slashed,) = g.events(g.d.node_registry, "Slashed", receipt)
        rows.append((int(upheld.args.challengerReward), int(slashed.args.fromNode),
                     int(slashed.args.amount)))  # fmt: skip
    assert wealth() - before < 0  # two caught frauds cost the operator
    for reward, from_own, _ in rows:
        assert reward <= from_own * P.challenger_reward_bps // BPS, (
            f"challenger paid {reward / OPG} OPG while the operator's own stake lost only "
            f"{from_own / OPG} OPG: the rest came out of its delegators' stake"
        )


# --------------------------------------------------------------------------- 2


def test_a_forger_does_not_profit_from_challenging_its_own_fraud(world: World) -> None:
    """docs/contracts.md, the cheating inequality: a caught forgery costs the operator at
    least (1 - c) x S_own, "whatever keys the operator holds".

    Attack: the operator forges one row of a batch; the three honest verifiers' samples miss
    it and they sign pass (the verdicts travel to the node through the store / chain for
    finalize). Before the window closes the operator's own sock challenges the forged row;
    the honest verifiers re-execute it and uphold. The node loses minSlash (1,000 OPG), the
    sock gets 500 back, and then the sock calls slashPassAttester on each of the three pass
    verdicts: 10 % of each verifier's pool is slashed and the sock is paid half of the own
    part, 600 + 1,595 + 2,805 = 5,000 OPG. The forger nets +4,500 OPG, paid by honest
    verifiers, and can repeat it with every batch."""
    w, g = world, world.g
    reg, s = g.d.node_registry.functions, g.d.settlement.functions
    _, v2, v3 = w.verifiers
    g.fund(w.sock, BOND)
    g.allow(w.sock, BOND)
    b = w.commit("one forged row")
    passes = [g.verdict(v, b, True) for v in w.verifiers]  # their samples missed row 1

    def wealth() -> int:
        held = int(reg.stakeOf(w.attacker.address, w.attacker.address).call())
        return held + g.balance(w.attacker) + g.balance(w.sock)

    before = wealth()
    dispute = g.challenge(b, w.sock, row=1, fund=False)
    g.vote(dispute, b, v2, True)
    g.vote(dispute, b, v3, True)
    assert g.status(b) == BatchStatus.SLASHED
    for verdict in passes:
        g.send(s.slashPassAttester(dispute, b.record, verdict.as_tuple()), w.sock)
    gain = wealth() - before
    assert gain < 0, f"the forger gained {gain / OPG:,} OPG by challenging its own fraud"


# --------------------------------------------------------------------------- 3


def test_a_pass_attester_cannot_claim_the_dispute_reward_with_a_later_fail_verdict(
    world: World,
) -> None:
    """docs/contracts.md: "the verifier fee goes to the verifiers who proved right".

    Attack: verifier 1 signed pass on a fraud (its sample missed it) and did not vote. The
    other two uphold the challenge; verifier 1 is even slashed for its pass verdict. It then
    signs a *fail* verdict on the batch (no time binds a verdict) and claimDisputeReward
    credits it its full share of the verifier fee, which sweepDisputeReward would otherwise
    have returned to the requester."""
    w, g = world, world.g
    s = g.d.settlement.functions
    v1, v2, v3 = w.verifiers
    rows = 1_000
    order = g.order(w.requester, model_id=w.model, model_owner=w.owner, node=w.attacker,
                    max_rows=rows, job="pass then fail")  # fmt: skip
    b = g.batch(order, w.attacker_key, order_signer=w.requester, rows=4, row_count=rows)
    g.commit(b, w.attacker)
    lazy = g.verdict(v1, b, True)
    dispute = g.challenge(b, w.challenger, row=1)
    g.vote(dispute, b, v2, True)
    g.vote(dispute, b, v3, True)
    assert g.status(b) == BatchStatus.SLASHED
    g.send(s.slashPassAttester(dispute, b.record, lazy.as_tuple()), w.challenger)
    assert s.attesterSlashed(b.key, v1.address).call()

    after_the_fact = g.verdict(v1, b, False)  # signed now, after the dispute was decided
    g.send(
        s.publishVerdict(b.key, b.record, False, bytes.fromhex(after_the_fact.signature[2:])), v1
    )
    g.expect_revert(
        s.claimDisputeReward(dispute, b.record, after_the_fact.as_tuple()),
        v1,
        "FailVerdictNotPublished",
    )
    assert int(s.nodeFees(v1.address).call()) == 0
