"""Dispute defence for every batch a node key committed, whatever committed it: the node's
job runner, ``ogkit settle ARTIFACT --order …`` by hand, or any other caller of
:func:`ogkit.settle.settle` with the node's key.

Anyone can dispute a row of a committed batch (docs/contracts.md, "Challenges and
disputes"). If the verifiers do not vote, the dispute is decided by whoever presents
signed verdicts once its voting time (one challenge window) is over: pass verdicts holding
the quorum reject it, and without them it is voided a window later and the batch refunded
(the node loses its fee). :class:`DisputeDefender` finds the node's batches from the
chain (``BatchCommitted`` events naming the node: the chain, not a local list, says what
the node committed) and, each :meth:`~DisputeDefender.step`:

- a **Disputed** batch whose voting time is over: it gathers the pass verdicts signed
  over the committed claim (``VerdictPublished`` events and the store's
  ``verdicts/<batch id>/``), keeps those of keys weighing something at the batch's
  snapshot (the 64 heaviest, as ``finalize`` takes them: a griefer publishing pass
  verdicts from thousands of unstaked keys cannot blow up the transaction), and presents
  them with ``resolveChallenge`` only if they hold the quorum; with fewer it sends nothing
  (presenting them could only void the dispute, that is refund the batch);
- a **Pending** batch whose challenge window is over (counted from its commit or from its
  last dispute's close): ``finalize`` with the same verdicts, after a dry run, so the
  node's fee is paid (with ``finalize``);
- anything final is dropped from the watch list.

It never presents a verdict it does not hold (only valid signatures found on chain or in
the store), and the contract decides: an upheld dispute leaves the batch Slashed (nothing
to defend), and pass verdicts short of the quorum cannot reject a dispute. A chain that
cannot be reached fails the step with a :class:`~ogkit.errors.ChainError`;
:meth:`~DisputeDefender.run` reports it and backs off (doubling the wait up to
``max_backoff``). Every action is returned as a :class:`DefenceAction` and logged.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from ogkit.chain.bindings import BatchStatus
from ogkit.errors import OgkitError, SettlementError

if TYPE_CHECKING:
    from ogkit.chain.client import ChainClient
    from ogkit.chain.records import OnChainBatch
    from ogkit.keys import Signer
    from ogkit.settle import SettlementJournal
    from ogkit.store import ContentStore
    from ogkit.verdict import SignedVerdict

__all__ = ["DefenceAction", "DisputeDefender", "defend_dispute", "pass_verdicts"]

log = logging.getLogger(__name__)

BPS = 10_000
FINAL = (BatchStatus.FINALIZED, BatchStatus.SLASHED, BatchStatus.REFUNDED)


@dataclass(frozen=True)
class DefenceAction:
    """What one step did, or found, for one batch.

    ``action``: ``presented`` (pass verdicts sent, ``outcome`` the dispute's), ``waiting``
    (voting time or challenge window not over), ``no-verdicts`` (no pass verdicts held),
    ``below-quorum`` (pass verdicts held, short of the quorum: nothing sent),
    ``finalized`` (``finalize`` sent), ``error`` (the step for this batch failed)."""

    batch_id: str
    status: str
    action: str
    detail: str
    outcome: str = ""
    tx: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _b32(value: str) -> bytes:
    return bytes.fromhex(value.removeprefix("0x"))


def _utc(epoch: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(int(epoch), UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def pass_verdicts(
    chain: ChainClient, found: OnChainBatch, store: ContentStore | None
) -> list[SignedVerdict]:
    """The pass verdicts this node holds for ``found`` that the contract can weigh: valid
    signatures over the committed claim (on chain and in ``store``), an equivocating
    verifier's pass dropped, keys without weight at the snapshot dropped, the heaviest
    :data:`ogkit.settle.MAX_FINALIZE_VERDICTS` kept, sorted by address."""
    from ogkit.settle import finalize_verdicts
    from ogkit.verdict import chain_verdicts, load_verdicts

    pool = [
        *chain_verdicts(chain, found.batch_id),
        *(load_verdicts(store, found.batch_id) if store is not None else []),
    ]
    return finalize_verdicts(chain, found, pool)


def _pass_share(
    chain: ChainClient, found: OnChainBatch, verdicts: list[SignedVerdict]
) -> tuple[int, int, int]:
    """(weight of ``verdicts`` at the snapshot, total verifier weight, quorum in bps)."""
    nodes = chain.contract("NodeRegistry")
    settlement = chain.contract("InferenceSettlement")
    weights, total = chain.call(
        nodes.functions.verifierWeights(
            [v.verifier for v in verdicts], int(found.record["snapshotBlock"])
        )
    )
    quorum = int(chain.call(settlement.functions.quorumBps()))
    return sum(int(w) for w in weights), int(total), quorum


def defend_dispute(
    chain: ChainClient,
    found: OnChainBatch,
    *,
    node: Signer,
    store: ContentStore | None,
    lock: Any = None,
) -> DefenceAction | None:
    """One defence step for ``found``'s open dispute (module docstring); None if the batch
    has no open dispute."""
    from ogkit.network.disputes import dispute_info

    bid = found.batch_id
    info = dispute_info(chain, bid)
    if info.status != "disputed":
        return None
    what = f"dispute {info.dispute_id} on row {info.row}"
    if chain.block_timestamp() < info.voting_ends_at:
        return DefenceAction(
            bid, "disputed", "waiting", f"{what}: voting until {_utc(info.voting_ends_at)}"
        )
    window = info.voting_ends_at - info.opened_at
    voided_at = _utc(info.voting_ends_at + window)
    passes = pass_verdicts(chain, found, store)
    if not passes:
        return DefenceAction(
            bid,
            "disputed",
            "no-verdicts",
            f"{what}: no pass verdicts to present yet (none on chain or in the store from "
            f"staked verifiers); unless verifiers vote or sign, anyone may void it from "
            f"{voided_at} and the batch is refunded",
        )
    weight, total, quorum = _pass_share(chain, found, passes)
    if total == 0 or weight * BPS < quorum * total:
        share = weight / total if total else 0.0
        return DefenceAction(
            bid,
            "disputed",
            "below-quorum",
            f"{what}: the pass verdicts held ({len(passes)}) weigh {share:.1%} of the verifier "
            f"stake, short of the {quorum / 100:.2f}% quorum: nothing sent (they could only "
            f"void it); anyone may void it from {voided_at}",
        )
    settlement = chain.contract("InferenceSettlement")
    fn = settlement.functions.resolveChallenge(
        info.dispute_id, found.as_tuple, [v.as_tuple() for v in passes]
    )
    with lock if lock is not None else nullcontext():
        chain.call(fn)  # a dry run: a vote or another resolver may have closed it meanwhile
        receipt = chain.transact(fn, node)
    tx = "0x" + bytes(receipt["transactionHash"]).hex()
    after = dispute_info(chain, bid)
    log.info(
        "%s of batch %s: presented %d pass verdict(s) (%s): %s",
        what,
        bid,
        len(passes),
        tx,
        after.outcome,
    )
    return DefenceAction(
        bid,
        after.status,
        "presented",
        f"{what}: {len(passes)} pass verdict(s) presented: {after.outcome}",
        outcome=after.outcome,
        tx=tx,
    )


class DisputeDefender:
    """Defends and finalises every batch ``node`` committed on ``chain`` (module docstring).

    ``skip()`` names batches (ids) left to someone else this step (the job finaliser's
    own); ``lock`` is held around each transaction (shared with other senders of the node
    key in the process); ``journal`` records finalisations as :func:`ogkit.settle.settle`
    does."""

    def __init__(
        self,
        chain: ChainClient,
        node: Signer,
        store: ContentStore | None,
        *,
        journal: SettlementJournal | None = None,
        lock: Any = None,
        finalize: bool = True,
        skip: Callable[[], Iterable[str]] | None = None,
        max_backoff: float = 60.0,
    ) -> None:
        self.chain = chain
        self.node = node
        self.store = store
        self.journal = journal
        self.lock = lock
        self.finalize = finalize
        self.skip = skip
        self.max_backoff = max_backoff
        self._cursor = 0
        self._open: dict[str, OnChainBatch] = {}
        self._failures = 0
        self._resume_at = 0.0
        self.last_error: str | None = None

    @property
    def watched(self) -> int:
        """How many of the node's batches are not final (as of the last step)."""
        return len(self._open)

    # -- finding the node's batches ------------------------------------------------------------
    def discover(self) -> int:
        """Read ``BatchCommitted`` events naming the node since the last call; the number of
        batches watched (final ones are dropped as they are seen)."""
        from ogkit.chain.records import from_event

        last = self.chain.block_number()
        if last >= self._cursor:
            events = self.chain.events(
                "InferenceSettlement",
                "BatchCommitted",
                self._cursor,
                last,
                argument_filters={"node": self.node.address},
            )
            for event in events:
                found = from_event(event)
                self._open[found.batch_id.lower()] = found
            self._cursor = last + 1
        return len(self._open)

    # -- one pass ------------------------------------------------------------------------------
    def step(self) -> list[DefenceAction]:
        """One pass over the node's open batches. A chain that cannot be reached raises
        :class:`~ogkit.errors.ChainError`; a failure on one batch is that batch's ``error``
        action, the others go on."""
        self.discover()
        settlement = self.chain.contract("InferenceSettlement")
        actions: list[DefenceAction] = []
        skipped = {b.lower() for b in self.skip()} if self.skip is not None else set()
        for bid, found in list(self._open.items()):
            if bid in skipped:
                continue
            status, _, reopened_at = self.chain.call(settlement.functions.stateOf(_b32(bid)))
            status = BatchStatus(int(status))
            if status in FINAL:
                del self._open[bid]
                continue
            try:
                if status == BatchStatus.DISPUTED:
                    action = defend_dispute(
                        self.chain, found, node=self.node, store=self.store, lock=self.lock
                    )
                elif status == BatchStatus.PENDING and self.finalize:
                    action = self._finalize(found, int(reopened_at))
                else:
                    action = None
            except SettlementError as exc:
                action = DefenceAction(bid, status.name.lower(), "error", str(exc))
                log.warning("defending batch %s: %s", bid, exc)
            if action is not None:
                actions.append(action)
        return actions

    def _finalize(self, found: OnChainBatch, reopened_at: int) -> DefenceAction | None:
        bid = found.batch_id
        settlement = self.chain.contract("InferenceSettlement")
        window = int(self.chain.call(settlement.functions.challengeWindow()))
        opens_at = max(int(found.record["committedAt"]), reopened_at) + window
        if self.chain.block_timestamp() < opens_at:
            return DefenceAction(
                bid, "pending", "waiting", f"challenge window until {_utc(opens_at)}"
            )
        chosen = pass_verdicts(self.chain, found, self.store)
        fn = settlement.functions.finalize(_b32(bid), found.as_tuple, [v.compact() for v in chosen])
        try:
            self.chain.call(fn)
        except SettlementError as exc:
            return DefenceAction(
                bid, "pending", "waiting", f"not finalisable yet: {exc.reason or exc}"
            )
        with self.lock if self.lock is not None else nullcontext():
            receipt = self.chain.transact(fn, self.node)
        tx = "0x" + bytes(receipt["transactionHash"]).hex()
        self._journal_final(found, tx, int(receipt["blockNumber"]), chosen)
        log.info("finalised batch %s with %d pass verdict(s) (%s)", bid, len(chosen), tx)
        return DefenceAction(
            bid, "finalized", "finalized", f"finalised with {len(chosen)} pass verdict(s)", tx=tx
        )

    def _journal_final(
        self, found: OnChainBatch, tx: str, block: int, chosen: list[SignedVerdict]
    ) -> None:
        if self.journal is None:
            return
        from ogkit.settle import SettlementRecord

        record = self.journal.load(found.batch_id) or SettlementRecord(
            found.batch_id,
            found.details["artifactId"],
            self.chain.name,
            self.chain.chain_id,
            commit_tx=found.tx,
            commit_block=found.block,
        )
        record.status = "finalized"
        record.finalize_tx, record.finalize_block = tx, block
        record.verdicts = {v.verifier: v.signature for v in chosen}
        record.waiting_for = ""
        self.journal.save(record)

    # -- running -------------------------------------------------------------------------------
    def poll(self) -> list[DefenceAction]:
        """:meth:`step` unless backing off after a failure; a failed step (the chain down)
        is logged and doubles the wait before the next one (up to ``max_backoff``)."""
        now = time.monotonic()
        if now < self._resume_at:
            return []
        try:
            actions = self.step()
        except (OgkitError, OSError) as exc:
            self._failures += 1
            wait = min(self.max_backoff, 2.0 ** min(self._failures, 16))
            self._resume_at = now + wait
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.warning("dispute defence: %s; trying again in %.0f s", self.last_error, wait)
            return []
        self._failures, self._resume_at, self.last_error = 0, 0.0, None
        return actions

    @property
    def backing_off(self) -> float:
        """Seconds until the next step is tried (0 when not backing off)."""
        return max(0.0, self._resume_at - time.monotonic())

    def run(
        self,
        stop: threading.Event,
        interval: float,
        on_actions: Callable[[list[DefenceAction]], None] | None = None,
    ) -> None:
        """:meth:`poll` every ``interval`` seconds until ``stop`` is set."""
        while True:
            actions = self.poll()
            if on_actions is not None and (actions or self.last_error):
                on_actions(actions)
            if stop.wait(max(interval, min(self.backing_off, interval * 4))):
                return
