"""Disputes of one batch, read from the chain, and the verifier's side of them: a vote
(:func:`ogkit.settle.vote_dispute`), the fall-back resolution once voting time is over, and
the claim of the dispute reward after an upheld dispute.

The contract (docs/contracts.md, "Challenges and disputes") weighs each vote by the
verifier's stake at the batch's snapshot (the block before its commit, as its verdicts);
the vote that brings either side to the quorum resolves it at once. A rejected dispute
reopens the batch with a fresh challenge window (half its bond to the requester, the rest
to the node); a fall-back resolution may void a dispute only a second window after it
opened, and a void refunds the batch. A verifier that voted upheld, or that
signed a fail verdict on the batch, claims its share of the verifier fee with
:func:`claim_dispute_reward`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ogkit.chain.bindings import BatchStatus
from ogkit.chain.records import onchain_batch
from ogkit.errors import SettlementError

if TYPE_CHECKING:
    from ogkit.chain.client import ChainClient
    from ogkit.keys import Signer
    from ogkit.store import ContentStore

__all__ = ["DisputeInfo", "claim_dispute_reward", "dispute_info", "resolve_dispute"]

log = logging.getLogger(__name__)

OUTCOMES = {0: "open", 1: "upheld", 2: "rejected", 3: "voided"}


def _b32(value: str) -> bytes:
    return bytes.fromhex(value.removeprefix("0x"))


@dataclass(frozen=True)
class DisputeInfo:
    """A batch's status and its latest dispute (``dispute_id`` 0: never disputed)."""

    batch_id: str
    status: str
    dispute_id: int
    challenger: str = ""
    row: int | None = None
    outcome: str = ""
    opened_at: int = 0
    voting_ends_at: int = 0
    upheld_stake: int = 0
    rejected_stake: int = 0
    total_stake: int = 0
    reward_left: int = 0
    votes: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def dispute_info(chain: ChainClient, batch_id: str) -> DisputeInfo:
    """Where ``batch_id`` and its latest dispute stand, with every vote cast on it."""
    settlement = chain.contract("InferenceSettlement")
    found = onchain_batch(chain, batch_id)
    if found is None:
        raise SettlementError(f"batch {batch_id} is not committed on {chain.name}")
    status, dispute_id, _ = chain.call(settlement.functions.stateOf(_b32(batch_id)))
    name = BatchStatus(int(status)).name.lower()
    if int(dispute_id) == 0:
        return DisputeInfo(batch_id.lower(), name, 0)
    d = chain.call(settlement.functions.getDispute(int(dispute_id)))
    window = int(chain.call(settlement.functions.challengeWindow()))
    votes = [
        {
            "verifier": e["args"]["verifier"],
            "upheld": bool(e["args"]["upheld"]),
            "weight": int(e["args"]["weight"]),
            "block": int(e["blockNumber"]),
        }
        for e in chain.events(
            "InferenceSettlement",
            "DisputeVoted",
            found.block,
            argument_filters={"disputeId": int(dispute_id)},
        )
    ]
    return DisputeInfo(
        batch_id=batch_id.lower(),
        status=name,
        dispute_id=int(dispute_id),
        challenger=str(d[1]),
        row=int(d[9]),
        outcome=OUTCOMES.get(int(d[4]), str(d[4])),
        opened_at=int(d[2]),
        voting_ends_at=int(d[2]) + window,
        upheld_stake=int(d[6]),
        rejected_stake=int(d[7]),
        total_stake=int(d[8]),
        reward_left=int(d[10]),
        votes=votes,
    )


def resolve_dispute(
    chain: ChainClient,
    batch_id: str,
    *,
    sender: Signer,
    store: ContentStore | None = None,
    passed: bool | None = None,
) -> str:
    """Close the open dispute of ``batch_id`` after its voting time with the batch's signed
    verdicts (on chain and in ``store``; with ``passed``, only those): fail verdicts holding
    the quorum uphold it, pass verdicts holding it reject it, else it is voided. Returns
    the outcome."""
    from ogkit.settle import claim_domain
    from ogkit.verdict import chain_verdicts, load_verdicts, quorum_verdicts

    info = dispute_info(chain, batch_id)
    if info.status != "disputed":
        raise SettlementError(f"batch {batch_id} has no open dispute (it is {info.status})")
    found = onchain_batch(chain, batch_id)
    assert found is not None
    pool = [*chain_verdicts(chain, batch_id), *(load_verdicts(store, batch_id) if store else [])]
    verdicts = quorum_verdicts(
        pool,
        batch_id=batch_id,
        claim_digest=found.record["claimDigest"],
        domain=claim_domain(chain),
        passed=passed,
    )
    settlement = chain.contract("InferenceSettlement")
    chain.transact(
        settlement.functions.resolveChallenge(
            info.dispute_id, found.as_tuple, [v.as_tuple() for v in verdicts]
        ),
        sender,
    )
    return dispute_info(chain, batch_id).outcome


def claim_dispute_reward(chain: ChainClient, batch_id: str, *, verifier: Signer) -> int:
    """Claim ``verifier``'s share of the verifier fee after the batch's dispute was upheld:
    as a verifier that voted upheld, or as one whose fail verdict on the batch was on chain
    before the decision (published, or among the verdicts that decided it: the chain notes
    it, ``failVerdictPublished``). Returns the amount credited (OPG base units, into its
    pool)."""
    from ogkit.settle import claim_domain
    from ogkit.verdict import sign_verdict

    info = dispute_info(chain, batch_id)
    if info.dispute_id == 0 or info.outcome != "upheld":
        raise SettlementError(
            f"batch {batch_id} has no upheld dispute (status {info.status}, dispute "
            f"{info.dispute_id or 'none'} {info.outcome}); only an upheld one pays verifiers"
        )
    found = onchain_batch(chain, batch_id)
    assert found is not None
    me = verifier.address.lower()
    voted = [v for v in info.votes if v["verifier"].lower() == me]
    if voted and not voted[0]["upheld"]:
        raise SettlementError(
            f"{verifier.address} voted rejected on dispute {info.dispute_id}: it has no reward"
        )
    settlement = chain.contract("InferenceSettlement")
    evidence: tuple[str, bool, bytes] = (verifier.address, False, b"")
    if not voted:
        batch_key = bytes.fromhex(batch_id.removeprefix("0x"))
        if not chain.call(settlement.functions.failVerdictPublished(batch_key, verifier.address)):
            raise SettlementError(
                f"{verifier.address} neither voted upheld on dispute {info.dispute_id} nor had "
                f"a fail verdict on {batch_id} on chain before it was decided: it has no reward "
                "to claim (a verifier daemon publishes its verdicts unless started with "
                "--no-publish)"
            )
        # The chain noted its fail verdict before the decision; the claim presents the
        # verdict signed again (the contract checks the signature and the note), so no copy
        # of it in a store that anyone could have removed or shadowed is needed.
        evidence = sign_verdict(
            verifier, claim_domain(chain), batch_id, found.record["claimDigest"], False
        ).as_tuple()
    receipt = chain.transact(
        settlement.functions.claimDisputeReward(info.dispute_id, found.as_tuple, evidence),
        verifier,
    )
    claimed = chain.events(
        "InferenceSettlement",
        "DisputeRewardClaimed",
        int(receipt["blockNumber"]),
        int(receipt["blockNumber"]),
        argument_filters={"disputeId": info.dispute_id},
    )
    return sum(int(e["args"]["amount"]) for e in claimed if e["args"]["verifier"].lower() == me)
