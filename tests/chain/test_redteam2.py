"""A second pass of attacks on the settlement contracts by parties that hold their own keys
(node, requester, challenger, verifier), aimed first at the rules the first pass added
(reopened windows, the void after a second window, the withdrawal lock, snapshot-weighted
votes), in-process eth-tester chain, real signatures.

These worked against the previous contracts (each test fails there):

- an operator holding an honest batch's escrow for as long as it likes at no cost: from a
  key of its own it challenged a row just before each fresh window closed, the verifiers
  rejected it and the bond came back to its node, and the requester could never expire the
  batch;
- any key (the operator's, the requester's, a troll's) void-looping a batch while the
  verifiers did not vote: each void handed the bond back and reopened the batch, so one
  challenge before each fresh window closed held the escrow and the node's withdrawal lock
  (all of its stake) for ever, free.

The tests under "held" try attacks the contracts already refused (an unbonding that
matures in the block of the slash, sent before or after it).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from eth_utils import keccak

from ogkit.chain.bindings import OPG, BatchStatus

from .game import (
    ATTACK_NODE_STAKE,
    ATTACK_VERIFIER_STAKES,
    GAME_PARAMS,
    AttackWorld,
    Batch,
    attack_world,
    sorted_verdicts,
)

P = GAME_PARAMS
WINDOW = P.challenge_window
BOND = P.challenge_bond
MODEL_BYTES = b"tiny-mlp.onnx bytes, second pass"
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


def window_end(w: World, b: Batch) -> int:
    reopened = int(w.g.d.settlement.functions.stateOf(b.key).call()[2])
    return (reopened or int(b.record[4])) + WINDOW


# --------------------------------------------------------------------------- fixed


def test_a_self_challenge_loop_is_not_a_free_hold_on_the_escrow(world: World) -> None:
    """The operator challenged an honest row of its own batch from its sock just before each
    fresh window closed; the verifiers rejected every challenge. The requester could never
    expire the batch, and every bond came back to the operator's node: a hold on the escrow
    for as long as it liked, free. Now half of a rejected bond goes to the requester, so each
    round costs the holder half a bond and pays the party it holds."""
    w, g = world, world.g
    s = g.d.settlement.functions
    _, v2, v3 = w.verifiers
    b = w.commit("hold the escrow")
    rounds = 3
    g.fund(w.sock, rounds * BOND)
    g.allow(w.sock, rounds * BOND)
    held0 = g.balance(w.attacker) + g.balance(w.sock)
    requester0 = g.balance(w.requester)
    for _ in range(rounds):
        g.advance(window_end(w, b) - g.now() - 30)  # just before the window closes
        dispute = g.challenge(b, w.sock, row=0, fund=False)
        g.vote(dispute, b, v2, False)
        g.vote(dispute, b, v3, False)  # 88 %: rejected, the batch reopens
        assert g.status(b) == BatchStatus.PENDING
    assert g.now() > int(b.record[4]) + 2 * WINDOW  # the commit's grace is long over ...
    g.expect_revert(s.expire(b.key, b.record), w.requester, "FinalizeGraceOpen")
    cost = held0 - (g.balance(w.attacker) + g.balance(w.sock))
    assert cost == rounds * (BOND - BOND // 2)
    assert g.balance(w.requester) == requester0 + rounds * (BOND - BOND // 2)


def test_a_void_ends_the_batch_so_a_void_loop_holds_nothing(world: World) -> None:
    """Nobody voted and no decisive verdicts were presented: the void gave the bond back and
    reopened the batch, so a troll could challenge again before each fresh window closed and
    hold the requester's escrow and the node's withdrawal lock for ever at no cost. A void
    now ends the batch as ``expire`` does (no pass quorum was presented in two windows):
    the requester is refunded, the bond goes back, the lock is released."""
    w, g = world, world.g
    s, reg = g.d.settlement.functions, g.d.node_registry.functions
    b = w.commit("void loop")
    escrow = int(b.onchain.details["escrow"])
    dispute = g.challenge(b, w.challenger, row=1)
    assert reg.withdrawLocks(w.attacker.address).call() == 1
    g.advance(2 * WINDOW)
    requester0, challenger0 = g.balance(w.requester), g.balance(w.challenger)
    receipt = g.send(s.resolveChallenge(dispute, b.record, []), w.sock)
    assert g.events(g.d.settlement, "ChallengeVoided", receipt)
    assert g.status(b) == BatchStatus.REFUNDED
    assert g.balance(w.requester) == requester0 + escrow
    assert g.balance(w.challenger) == challenger0 + BOND
    assert reg.withdrawLocks(w.attacker.address).call() == 0
    assert int(s.exposure(w.attacker.address).call()) == 0
    g.expect_revert(
        s.challenge(*g.challenge_args(b, 2, keccak(b"again"), b"\x02" * 32)),
        w.challenger,
        "WrongStatus",
    )


# --------------------------------------------------------------------------- held


@pytest.mark.parametrize("withdraw_first", [True, False])
def test_an_unbonding_maturing_in_the_block_of_the_slash_does_not_escape_it(
    world: World, withdraw_first: bool
) -> None:
    """The operator unstaked half its stake before committing a forged batch, timed so that
    the unbonding matured while the dispute was open, and sent its withdrawal into the very
    block of the fallback that upheld it, before or after. The lock the dispute holds
    refuses the withdrawal before the slash; after it, the entry pays out what the slash
    left of it."""
    w, g = world, world.g
    s, reg = g.d.settlement.functions, g.d.node_registry.functions
    x = w.attacker
    _, v2, v3 = w.verifiers
    g.send(reg.unstake(NODE_STAKE // 2), x)
    unbonding = int(reg.unbondingCount().call())
    g.advance(P.unbonding_period - WINDOW // 2)
    b = w.commit("escape by maturity")
    fails = sorted_verdicts([g.verdict(v, b, False) for v in (v2, v3)])
    dispute = g.challenge(b, w.challenger, row=2)
    g.vote(dispute, b, v3, True)  # 56.1 %: not decided by votes
    g.advance(WINDOW)  # the unbonding has matured, the voting time is over
    assert int(reg.getUnbonding(unbonding).call()[2]) <= g.now()
    withdraw = (reg.withdraw(unbonding), x)
    resolve = (s.resolveChallenge(dispute, b.record, fails), w.challenger)
    calls = [withdraw, resolve] if withdraw_first else [resolve, withdraw]
    receipts = dict(zip(("withdraw", "resolve") if withdraw_first else ("resolve", "withdraw"),
                        g.in_one_block(calls), strict=True))  # fmt: skip
    assert receipts["resolve"]["status"] == 1
    assert g.status(b) == BatchStatus.SLASHED
    target = max(P.min_slash, int(b.onchain.details["escrow"]) * P.collateral_bps // 10_000)
    left = (NODE_STAKE // 2) * (NODE_STAKE - target) // NODE_STAKE
    if withdraw_first:
        assert receipts["withdraw"]["status"] == 0
        assert g.replay_reason(receipts["withdraw"]).startswith("WithdrawalLocked")
        receipt = g.send(reg.withdraw(unbonding), x)  # after the slash: what it left
    else:
        receipt = receipts["withdraw"]
        assert receipt["status"] == 1
    (withdrawn,) = g.events(g.d.node_registry, "Withdrawn", receipt)
    assert withdrawn.args.amount == left
