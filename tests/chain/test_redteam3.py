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
  decided and took a share of the verifier fee meant for those who proved right;
- a verifier that checked nothing signed pass in private and published fail at once: paid
  by finalize with the pass if nobody challenged, by the dispute reward with the fail if
  the fraud was upheld;
- `ogkit dispute claim` refused a claim the chain would pay once the store's copy of the
  verifier's fail verdict was gone, and sent another batch's verdict planted in the store.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_utils import keccak

from ogkit.chain.bindings import OPG, BatchStatus
from ogkit.errors import SettlementError
from ogkit.network.disputes import claim_dispute_reward, resolve_dispute
from ogkit.store import ContentStore
from ogkit.verdict import store_verdict

from .game import (
    ATTACK_VERIFIER_STAKES,
    BPS,
    GAME_PARAMS,
    AttackWorld,
    attack_world,
    attester,
    b32,
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


# --------------------------------------------------------------------------- 4


def fees(world: World, who) -> int:
    return int(world.g.d.settlement.functions.nodeFees(who.address).call())


def test_a_verifier_that_published_fail_is_not_also_paid_for_a_pass(world: World) -> None:
    """docs/contracts.md ("Upheld"): the verifier fee goes to the verifiers who proved right,
    and FailVerdictNotPublished exists because "a verifier that signed pass and stayed away
    could take a share".

    Attack (a lazy verifier, no re-execution at all): on every batch v1 signs a pass verdict
    it keeps to itself and publishes a fail verdict at once (publishVerdict, batch Pending:
    failVerdictPublished is set). It never votes.
    - No dispute: after the window v1 calls finalize itself with the other two's pass
      verdicts and its own private pass. The contract counts and pays it; the fail verdict
      it published changes nothing for finalize.
    - Dispute upheld (by the others' votes): v1 claims its share with the fail verdict it
      published. Its pass was never shown to anyone, so slashPassAttester cannot reach it
      (and nobody is paid to call it any more).
    Either way v1 is paid, and never slashed, for verifying nothing."""
    w, g = world, world.g
    s = g.d.settlement.functions
    v1, v2, v3 = w.verifiers
    b = w.commit("the hedger's batch")
    private_pass = g.verdict(v1, b, True)
    published_fail = g.verdict(v1, b, False)
    g.send(s.publishVerdict(b.key, b.record, False, b32(published_fail.signature)), v1)
    assert s.failVerdictPublished(b.key, v1.address).call()
    others = [g.verdict(v2, b, True), g.verdict(v3, b, True)]

    with g.isolated():  # world A: nobody challenges; its pass is refused, the others' settle
        g.advance(WINDOW + 1)
        g.expect_revert(g.finalize_fn(b, [private_pass, *others]), v1, "WrongVerdict", verifier=v1)
        receipt = g.finalize(b, others, v2)
        assert g.status(b) == BatchStatus.FINALIZED
        paid_if_finalised = g.verifiers_paid(receipt).get(v1.address, 0)

    with g.isolated():  # world B: the forged row is caught and upheld
        dispute = g.challenge(b, w.challenger, row=1)
        g.vote(dispute, b, v2, True)
        g.vote(dispute, b, v3, True)
        assert g.status(b) == BatchStatus.SLASHED
        before = fees(world, v1)
        g.send(s.claimDisputeReward(dispute, b.record, published_fail.as_tuple()), v1)
        paid_if_upheld = fees(world, v1) - before

    assert not (paid_if_finalised > 0 and paid_if_upheld > 0), (
        f"v1 signed both ways and is paid either way: {paid_if_finalised / OPG} OPG if the "
        f"batch finalises, {paid_if_upheld / OPG} OPG if its fraud is upheld"
    )


# --------------------------------------------------------------------------- 5


def _upheld_from_the_store(world: World, tmp_path: Path, job: str):
    """v1 and v3 signed fail (68.1 %), kept in the store only; nobody voted; after the
    voting time the challenger resolves with `ogkit dispute resolve` (resolve_dispute, which
    reads the store): upheld, failVerdictPublished set for v1 and v3."""
    w, g = world, world.g
    s = g.d.settlement.functions
    v1, _, v3 = w.verifiers
    chain = g.client()
    store = ContentStore(tmp_path / "store")
    b = w.commit(job)
    for v in (v1, v3):
        store_verdict(store, g.verdict(v, b, False))
    g.challenge(b, w.challenger, row=1)
    g.advance(WINDOW + 1)
    assert resolve_dispute(chain, b.batch_id, sender=w.challenger.signer, store=store) == "upheld"
    assert s.failVerdictPublished(b.key, v1.address).call()
    dispute = int(s.stateOf(b.key).call()[1])
    return chain, store, b, dispute


def test_claim_with_the_store_copy_gone_still_claims_what_the_chain_owes(
    world: World, tmp_path: Path
) -> None:
    """The contract pays a non-voter on `failVerdictPublished`; `ogkit dispute claim` looked
    for an old copy of the fail verdict on chain or in the store and refused when the store
    copy was gone (the node's store: the node can delete its verdict folder). It now signs
    the verdict again and claims what the chain owes."""
    w, g = world, world.g
    s = g.d.settlement.functions
    v1 = w.verifiers[0]
    chain, store, b, dispute = _upheld_from_the_store(world, tmp_path, "store copy gone")
    store.local_path(f"verdicts/{b.batch_id.lower()}/{v1.address.lower()}.json").unlink()

    with g.isolated():  # the contract pays it with a fail verdict signed now
        fresh = g.verdict(v1, b, False)
        g.send(s.claimDisputeReward(dispute, b.record, fresh.as_tuple()), v1)
        assert fees(world, v1) > 0

    try:
        amount = claim_dispute_reward(chain, b.batch_id, verifier=v1.signer)
    except SettlementError as exc:
        pytest.fail(f"claim_dispute_reward refused a claim the contract pays: {exc}")
    assert amount > 0


def test_claim_is_not_derailed_by_a_decoy_verdict_in_the_store(
    world: World, tmp_path: Path
) -> None:
    """Whoever writes to the batch's verdict folder (the node's store) drops beside v1's
    verdict a fail verdict v1 signed and published for *another* batch (public on chain).
    `ogkit dispute claim` took the first fail verdict by v1 whose signature recovered, sent
    it, and the contract reverted BadVerdictSignature; it reads no store copy now."""
    w, g = world, world.g
    v1 = w.verifiers[0]
    s = g.d.settlement.functions
    chain, store, b, _ = _upheld_from_the_store(world, tmp_path, "decoy")
    other = w.commit("another batch v1 failed")
    decoy = g.verdict(v1, other, False)
    g.send(s.publishVerdict(other.key, other.record, False, b32(decoy.signature)), v1)
    folder = store.local_path(f"verdicts/{b.batch_id.lower()}")
    (folder / "0.json").write_text(json.dumps(decoy.to_dict()))  # sorts before "0x..."

    try:
        amount = claim_dispute_reward(chain, b.batch_id, verifier=v1.signer)
    except SettlementError as exc:
        pytest.fail(f"claim_dispute_reward sent another batch's verdict: {exc}")
    assert amount > 0
