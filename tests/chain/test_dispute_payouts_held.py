"""Attacks on the dispute payout rules (a non-voter paid only for a fail verdict on chain
before the decision, `failVerdictPublished`) that the contracts refuse: verdicts naming
another verifier or another batch, unsorted or repeated, a weightless signer, a verifier
that voted rejected; a published fail verdict neither blocks the others' pass quorum nor
strands what nobody claims."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ogkit.chain.bindings import OPG, BatchStatus

from .game import GAME_PARAMS, AttackWorld, attack_world, b32, sorted_verdicts

P = GAME_PARAMS
WINDOW = P.challenge_window
World = AttackWorld


@pytest.fixture(scope="module")
def world() -> World:
    return attack_world(b"tiny-mlp.onnx bytes, dispute payouts held", 1 * OPG)


@pytest.fixture(autouse=True)
def _rewound(world: World) -> Iterator[None]:
    with world.g.isolated():
        yield


def _after_voting(world: World, job: str):
    w, g = world, world.g
    b = w.commit(job)
    dispute = g.challenge(b, w.challenger, row=1)
    g.advance(WINDOW + 1)
    return b, dispute


def test_resolve_with_a_verdict_naming_another_verifier_is_refused(world: World) -> None:
    w, g = world, world.g
    s = g.d.settlement.functions
    v1, v2, v3 = w.verifiers
    b, dispute = _after_voting(world, "mismatched verifier")
    fails = [g.verdict(v, b, False) for v in (v1, v3)]  # 68.1 %, the quorum
    tuples = sorted_verdicts(fails)
    # v2's address, v1's signature: v2 did not sign
    forged = (v2.address, False, b32(fails[0].signature))
    bad = sorted([tuples[0], tuples[1], forged], key=lambda t: int(t[0], 16))
    g.expect_revert(s.resolveChallenge(dispute, b.record, bad), w.challenger,
                    "BadVerdictSignature")  # fmt: skip
    assert not s.failVerdictPublished(b.key, v2.address).call()


def test_resolve_with_a_verdict_of_another_batch_is_refused(world: World) -> None:
    w, g = world, world.g
    s = g.d.settlement.functions
    v1, v2, v3 = w.verifiers
    b, dispute = _after_voting(world, "verdict of another batch")
    other = w.commit("the other batch")
    verdicts = [g.verdict(v1, b, False), g.verdict(v3, b, False), g.verdict(v2, other, False)]
    g.expect_revert(s.resolveChallenge(dispute, b.record, sorted_verdicts(verdicts)),
                    w.challenger, "BadVerdictSignature")  # fmt: skip


def test_resolve_with_unsorted_or_duplicate_verdicts_is_refused(world: World) -> None:
    w, g = world, world.g
    s = g.d.settlement.functions
    v1, _, v3 = w.verifiers
    b, dispute = _after_voting(world, "unsorted")
    tuples = sorted_verdicts([g.verdict(v, b, False) for v in (v1, v3)])
    g.expect_revert(s.resolveChallenge(dispute, b.record, tuples[::-1]), w.challenger,
                    "VerdictsNotSorted")  # fmt: skip
    g.expect_revert(s.resolveChallenge(dispute, b.record, [tuples[0], tuples[0]]),
                    w.challenger, "VerdictsNotSorted")  # fmt: skip


def test_a_weightless_fail_verdict_in_the_upholding_set_is_flagged_but_pays_nothing(
    world: World,
) -> None:
    w, g = world, world.g
    s = g.d.settlement.functions
    v1, _, v3 = w.verifiers
    outsider = g.player("new2 outsider")
    b, dispute = _after_voting(world, "weightless signer")
    verdicts = [g.verdict(v, b, False) for v in (v1, v3, outsider)]
    g.send(s.resolveChallenge(dispute, b.record, sorted_verdicts(verdicts)), w.challenger)
    assert g.status(b) == BatchStatus.SLASHED
    assert s.failVerdictPublished(b.key, outsider.address).call()
    g.expect_revert(s.claimDisputeReward(dispute, b.record, verdicts[2].as_tuple()),
                    outsider, "NotVerifier")  # fmt: skip


def test_a_rejected_voter_with_a_published_fail_verdict_is_refused(world: World) -> None:
    w, g = world, world.g
    s = g.d.settlement.functions
    v1, v2, v3 = w.verifiers
    b = w.commit("rejected voter")
    fail = g.verdict(v1, b, False)
    g.send(s.publishVerdict(b.key, b.record, False, b32(fail.signature)), v1)
    dispute = g.challenge(b, w.challenger, row=1)
    g.vote(dispute, b, v1, False)
    g.vote(dispute, b, v2, True)
    g.vote(dispute, b, v3, True)
    assert g.status(b) == BatchStatus.SLASHED
    g.expect_revert(s.claimDisputeReward(dispute, b.record, fail.as_tuple()), v1,
                    "WrongVerdict")  # fmt: skip


def test_a_published_fail_verdict_does_not_block_a_pass_quorum(world: World) -> None:
    """A fail verdict on chain changes nothing for finalize: the pass quorum of the other
    two still finalises (and the fail signer gets nothing from it)."""
    w, g = world, world.g
    s = g.d.settlement.functions
    v1, v2, v3 = w.verifiers
    b = w.commit("fail does not block")
    fail = g.verdict(v1, b, False)
    g.send(s.publishVerdict(b.key, b.record, False, b32(fail.signature)), v1)
    g.advance(WINDOW + 1)
    receipt = g.finalize(b, [g.verdict(v2, b), g.verdict(v3, b)], w.challenger)
    assert g.status(b) == BatchStatus.FINALIZED
    assert v1.address not in g.verifiers_paid(receipt)


def test_sweep_returns_what_non_voters_did_not_claim(world: World) -> None:
    w, g = world, world.g
    s = g.d.settlement.functions
    _, v2, v3 = w.verifiers
    b = w.commit("sweep")
    dispute = g.challenge(b, w.challenger, row=1)
    g.vote(dispute, b, v2, True)
    g.vote(dispute, b, v3, True)
    g.send(s.claimDisputeReward(dispute, b.record, (v2.address, False, b"")), v2)
    g.send(s.claimDisputeReward(dispute, b.record, (v3.address, False, b"")), v3)
    g.advance(WINDOW + 1)
    before = g.balance(w.requester)
    g.send(s.sweepDisputeReward(dispute, b.record), w.challenger)
    left = g.balance(w.requester) - before
    assert left > 0
    assert int(s.getDispute(dispute).call()[10]) == 0
