"""Challenges: one row on demand (``ogkit challenge ARTIFACT ROW``) or a watching daemon
(``ogkit challenge --watch``) that re-executes its own secret sample of every committed
batch and challenges the first row whose re-execution differs from the receipt.

A challenge is commit-then-reveal (:func:`ogkit.settle.challenge_row`): the first
transaction only commits to a hash of (challenger, batch, row, re-executed output, salt), so
a challenge seen in the mempool cannot be copied by someone else before it is revealed.
Only a re-execution mismatch is challengeable on chain (the contract checks the leaf's
proof and that the outputs differ); a batch whose artefact is missing or unreadable is
left to the verifiers' fail verdicts, which keep it from being finalised.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ogkit.chain.bindings import BatchStatus
from ogkit.errors import ArtifactError, ConfigError, SettlementError
from ogkit.network.daemon import Transient, WatchConfig, Watcher, sample_secret, store_unavailable
from ogkit.network.sandbox import VerifyWorker
from ogkit.network.verifier import VerifierConfig, judge_row, load_committed, verify_task

if TYPE_CHECKING:
    from ogkit.batch import AttestedBatch
    from ogkit.chain.client import ChainClient
    from ogkit.keys import Signer
    from ogkit.store import ContentStore

__all__ = ["ChallengeResult", "ChallengerDaemon", "challenge"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChallengeResult:
    batch_id: str
    row: int
    dispute_id: int
    why: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch_id": self.batch_id,
            "row": self.row,
            "dispute_id": self.dispute_id,
            "why": self.why,
        }


def challenge(
    chain: ChainClient, batch: AttestedBatch, row: int, *, challenger: Signer
) -> ChallengeResult:
    """Challenge ``row`` of the committed ``batch`` after checking, by re-executing it, that
    it is wrong: a row that re-executes to its receipt, a batch that is not pending, or a
    row outside the batch is refused before any transaction (and any bond) is sent."""
    from ogkit.chain.records import onchain_batch
    from ogkit.settle import challenge_row

    if not 0 <= row < batch.row_count:
        raise ConfigError(f"row {row} is outside batch {batch.batch_id} (0..{batch.row_count - 1})")
    found = onchain_batch(chain, batch.batch_id)
    if found is None:
        raise SettlementError(f"batch {batch.batch_id} is not committed on {chain.name}")
    settlement = chain.contract("InferenceSettlement")
    status = BatchStatus(int(chain.call(settlement.functions.statusOf(_b32(batch.batch_id)))))
    if status != BatchStatus.PENDING:
        raise SettlementError(
            f"batch {batch.batch_id} is {status.name.lower()}: only a pending batch can be "
            f"challenged (see `ogkit dispute show {batch.batch_id}`)"
        )
    receipt = batch.receipt(row)
    values = receipt["leaf_values"]
    if receipt["batch_root"].lower() != found.record["batchRoot"].lower():
        raise SettlementError(
            f"the artefact's batch root {receipt['batch_root']} is not the committed "
            f"{found.record['batchRoot']}: this is not the artefact the chain committed"
        )
    wrong, why = judge_row(
        batch, row, _b32(values["inputHash"]), _b32(values["outputHash"]),
        model_id=found.record["modelId"],
    )  # fmt: skip
    if not wrong:
        raise ConfigError(
            f"row {row} of {batch.batch_id} re-executes to its receipted output: there is "
            "nothing to challenge (a challenge of an honest row loses its bond)"
        )
    dispute_id = challenge_row(chain, batch, row, challenger=challenger)
    log.info("opened dispute %d on %s row %d: %s", dispute_id, batch.batch_id, row, why)
    return ChallengeResult(batch.batch_id, row, dispute_id, why)


class ChallengerDaemon(Watcher):
    """Watch commits; re-execute a secret sample of each (``sample_rate``); challenge the
    first row that re-executes differently."""

    role = "challenger"

    def __init__(
        self,
        connect: Callable[[], ChainClient],
        signer: Signer,
        home: Path,
        store: ContentStore,
        *,
        sample_rate: float = 0.05,
        watch: WatchConfig | None = None,
        hub: Any = None,
        timeout: float = 1800.0,
    ) -> None:
        super().__init__(connect, signer, home, watch)
        if not 0.0 < sample_rate <= 1.0:
            raise ConfigError(f"--sample-rate must be in (0, 1], got {sample_rate}")
        self.store = store
        self.hub = hub
        self.sample_rate = sample_rate
        self.timeout = timeout
        self._secret = b""
        self._worker: VerifyWorker | None = None

    def _closing(self) -> None:
        if self._worker is not None:
            self._worker.close()
            self._worker = None

    def _connected(self, chain: ChainClient) -> None:
        settlement = chain.contract("InferenceSettlement").address
        self._secret = sample_secret(self.signer, chain.chain_id, settlement, "challenger sample")

    def on_commit(self, batch_id: str, event: dict[str, Any]) -> dict[str, Any] | None:
        from ogkit.chain.records import from_event, onchain_batch

        chain, state = self.chain, self.state
        assert chain is not None and state is not None
        found = onchain_batch(chain, batch_id)
        if found is None or found.to_dict() != from_event(event).to_dict():
            return {"outcome": "not the chain's record", "drop": True}
        mine = chain.events(
            "InferenceSettlement",
            "ChallengeOpened",
            found.block,
            argument_filters={"batchId": _b32(batch_id), "challenger": self.signer.address},
        )
        if mine:  # a lost or rewound cursor: never a second bond on the same batch
            first = int(mine[0]["args"]["disputeId"])
            return {"outcome": "already challenged", "dispute_id": first}
        settlement = chain.contract("InferenceSettlement")
        status = BatchStatus(int(chain.call(settlement.functions.statusOf(_b32(batch_id)))))
        if status != BatchStatus.PENDING:
            return {"outcome": f"skipped: {status.name.lower()}"}  # disputed: someone was first
        try:
            batch = load_committed(self.store, found.details["artifactId"])
        except ArtifactError as exc:
            return {"outcome": "artefact unavailable", "reason": str(exc)[:300]}
        except Exception as exc:
            if store_unavailable(exc):
                raise Transient(f"the store {self.store.url} is unavailable: {exc}") from exc
            return {"outcome": "artefact unreadable", "reason": str(exc)[:300]}
        _, task = verify_task(
            chain, batch, found, self._secret, VerifierConfig(sample_rate=self.sample_rate), None
        )
        if self._worker is None:
            self._worker = VerifyWorker(timeout=self.timeout, stop=self.stop_event)
        outcome = self._worker.verify(task)
        if outcome.kind in ("unavailable", "stopped"):
            raise Transient(f"verification of {batch_id}: {outcome.detail}")
        if outcome.kind != "verdict":  # a hostile artefact: nothing provable on chain
            return {"outcome": f"verification {outcome.kind}", "reason": outcome.detail[:300]}
        verdict = outcome.verdict
        rows = sorted(
            {
                f.row_index
                for f in verdict.findings
                if f.reason == "reexecution-mismatch" and f.row_index is not None
            }
        )
        if not rows:
            return {"outcome": "nothing to challenge", "sampled": verdict.sample_size}
        for row in rows[:3]:  # a row the records cannot prove is skipped for the next
            try:
                result = challenge(chain, batch, int(row), challenger=self.signer)
            except (ConfigError, ArtifactError) as exc:
                log.warning("batch %s row %d: %s", batch_id, row, exc)
                continue
            state.challenges += 1
            return {"outcome": "challenged", **result.to_dict()}
        return {"outcome": "mismatches not challengeable", "rows": rows[:20]}


def _b32(value: str) -> bytes:
    return bytes.fromhex(value.removeprefix("0x"))
