"""The verifier daemon (``ogkit verifier run``): watch commits, verify, attest, vote.

For every ``BatchCommitted`` of the settlement contract it follows, the daemon

1. checks the event's record against the hash the contract stores (a log that is not the
   chain's record of the batch is dropped) and that the batch is still pending;
2. skips the batch if this verifier's verdict is already on chain (a restart after a
   crash between publishing and writing the cursor attests nothing twice);
3. fetches the artefact by the content id the chain committed and verifies it with
   :func:`ogkit.verify.verify_batch` against the chain's own record: the attester bound to
   the node and the approved measurement at the commit block, the requester's dataset
   commitment from its order, the requester and the model, and a sample drawn with its own
   key-derived secret (:func:`~ogkit.network.daemon.sample_secret`);
4. signs the verdict over the committed claim and publishes it
   (:func:`ogkit.settle.attest_batch`): a pass, or a fail naming what it found.

An artefact that is absent is waited for (``missing_polls`` polls), then failed; one that
cannot be read or verified is failed at once; nothing in an artefact can stop the daemon.

On a ``ChallengeOpened`` for a batch, it re-executes the challenged row from the artefact
and votes: upheld when its own output hash differs from the committed one (or the node's
records cannot give the committed row at all), rejected when it matches.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ogkit.chain.bindings import BatchStatus
from ogkit.chain.records import from_event
from ogkit.errors import ArtifactError, ChainError, SettlementError
from ogkit.network.daemon import Transient, WatchConfig, Watcher, sample_secret, store_unavailable
from ogkit.network.sandbox import VerifyTask, VerifyWorker

if TYPE_CHECKING:
    from ogkit.batch import AttestedBatch
    from ogkit.chain.client import ChainClient
    from ogkit.chain.records import OnChainBatch
    from ogkit.hub import Hub
    from ogkit.keys import Signer
    from ogkit.store import ContentStore
    from ogkit.verdict import SignedVerdict
    from ogkit.verify import Allowlist

__all__ = [
    "VerifierConfig",
    "VerifierDaemon",
    "chain_allowlist",
    "judge_row",
    "load_committed",
    "publish_verdict",
    "sign_fail",
    "verify_task",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VerifierConfig:
    """What a verifier daemon checks and does, beyond polling (:class:`WatchConfig`)."""

    sample_rate: float = 0.05
    max_ulp: int = 0
    publish: bool = True  # publish verdicts on chain (else only in the store)
    vote: bool = True  # vote on disputes opened on batches
    missing_polls: int = 8  # polls an absent artefact is waited for (~1 min), then: fail
    timeout: float = 1800.0  # seconds one batch's verification may take (then: fail)
    memory_bytes: int | None = None  # address-space limit of the verification worker
    isolate: bool = True  # verify in a worker process (ignored with a Dask client)


class VerifierDaemon(Watcher):
    """One verifier: ``signer`` is its staked verifier key; ``store`` is where nodes put
    their artefacts; ``hub`` (optional) is asked for models a batch's store lacks; ``dask``
    (optional) checks partitions in parallel."""

    role = "verifier"

    def __init__(
        self,
        connect: Callable[[], ChainClient],
        signer: Signer,
        home: Path,
        store: ContentStore,
        *,
        config: VerifierConfig | None = None,
        watch: WatchConfig | None = None,
        hub: Hub | None = None,
        dask: Any = None,
    ) -> None:
        super().__init__(connect, signer, home, watch)
        self.store = store
        self.hub = hub
        self.dask = dask
        self.verifier = config or VerifierConfig()
        self._secret = b""
        self._worker: VerifyWorker | None = None

    def _connected(self, chain: ChainClient) -> None:
        settlement = chain.contract("InferenceSettlement").address
        self._secret = sample_secret(self.signer, chain.chain_id, settlement, "verifier sample")
        if self.verifier.isolate and self.dask is None:
            self._isolated().warm()

    def _isolated(self) -> VerifyWorker:
        if self._worker is None:
            self._worker = VerifyWorker(
                timeout=self.verifier.timeout,
                memory_bytes=self.verifier.memory_bytes,
                stop=self.stop_event,
            )
        return self._worker

    # -- commits -----------------------------------------------------------------------------
    def on_commit(self, batch_id: str, event: dict[str, Any]) -> dict[str, Any] | None:
        from ogkit.batch import ARTIFACTS
        from ogkit.settle import SettlementJournal, attest_batch

        chain, state = self.chain, self.state
        assert chain is not None and state is not None
        found = _checked(chain, event)
        if found is None:
            log.warning("batch %s: its event is not the chain's record of it; dropped", batch_id)
            return {"outcome": "not the chain's record", "drop": True}
        status = _status(chain, batch_id)
        if status not in (BatchStatus.PENDING, BatchStatus.DISPUTED):
            return {"outcome": f"skipped: {status.name.lower()}"}
        mine = [
            bool(e["args"]["pass"])
            for e in chain.events(
                "InferenceSettlement",
                "VerdictPublished",
                found.block,
                argument_filters={"batchId": bytes.fromhex(batch_id[2:])},
            )
            if str(e["args"]["verifier"]).lower() == self.signer.address.lower()
        ]
        if mine:
            log.info("batch %s: already attested (%s)", batch_id, "pass" if mine[0] else "fail")
            return {"outcome": "already attested", "passed": mine[0]}
        artifact = found.details["artifactId"]
        log.info("verifying batch %s (artefact %s)", batch_id, artifact)
        try:
            batch = load_committed(self.store, artifact)
        except ArtifactError as exc:
            if self.store.has(ARTIFACTS, artifact.lower()):
                return self._fail_unreadable(found, f"artefact {artifact} is unreadable: {exc}")
            tries = state.attempts.get(batch_id, 0) + 1
            if tries < self.verifier.missing_polls:
                state.attempts[batch_id] = tries
                log.warning("batch %s: artefact %s not in the store yet", batch_id, artifact)
                return None
            return self._fail_unreadable(found, f"artefact {artifact} is not in the store")
        except Exception as exc:
            if store_unavailable(exc):
                raise Transient(f"the store {self.store.url} is unavailable: {exc}") from exc
            return self._fail_unreadable(found, f"artefact {artifact} cannot be loaded: {exc}")
        mismatch = _not_committed(batch, found)
        if mismatch:  # nothing the artefact holds can make this batch pass: say so on chain
            return self._fail_unreadable(found, f"artefact {artifact} {mismatch}")
        verdict, why = self._verify(batch, found)
        if verdict is None:
            return self._fail_unreadable(found, f"artefact {artifact}: {why}")
        journal = SettlementJournal(chain.chain_id, self.home)
        try:
            signed = attest_batch(
                chain,
                batch,
                passed=verdict.passed,
                verifier=self.signer,
                journal=journal,
                reason=verdict.summary()[:500],
                publish=self.verifier.publish,
            )
        except OSError as exc:
            if store_unavailable(exc):
                raise
            # The node's store refused the verdict's copy (a file where its folder goes):
            # the verdict is the chain's business, not the store's.
            log.warning("batch %s: the verdict cannot be stored (%s); on chain only", batch_id, exc)
            signed = publish_verdict(chain, found, self.signer, verdict.passed,
                                     verdict.summary()[:500], self.store,
                                     self.verifier.publish)  # fmt: skip
        if signed.passed:
            state.batches_verified += 1
        else:
            state.batches_failed += 1
        log.info(
            "batch %s: %s (%d rows re-executed)",
            batch_id,
            "pass" if signed.passed else "FAIL",
            verdict.sample_size,
        )
        return {
            "outcome": "attested",
            "passed": signed.passed,
            "sampled": verdict.sample_size,
            "failing_rows": verdict.failing_rows()[:20],
        }

    def _verify(self, batch: AttestedBatch, found: OnChainBatch) -> tuple[Any, str]:
        """The verdict on ``batch`` (None, and why, when the verification gave none)."""
        assert self.chain is not None
        policy, task = verify_task(self.chain, batch, found, self._secret, self.verifier, self.hub)
        if self.verifier.isolate and self.dask is None:
            outcome = self._isolated().verify(task)
            if outcome.kind in ("unavailable", "stopped"):
                raise Transient(f"verification of {found.batch_id}: {outcome.detail}")
            if outcome.kind != "verdict":
                return None, f"verification {outcome.kind}: {outcome.detail}"
            return outcome.verdict, ""
        from ogkit.dataset import DatasetCommitment
        from ogkit.network.sandbox import check_records_files
        from ogkit.verify import verify_batch

        try:
            check_records_files(self.store, task.manifest)
            return verify_batch(
                batch,
                policy,
                hub=self.hub,
                dask=self.dask,
                commitment=DatasetCommitment(task.dataset_id, task.row_count),
                requester=task.requester,
                model=task.model,
                progress=False,
            ), ""
        except (ChainError, Transient):
            raise
        except Exception as exc:  # hostile input must never stop the daemon
            if store_unavailable(exc):
                raise Transient(f"the store {self.store.url} is unavailable: {exc}") from exc
            return None, f"verification raised {type(exc).__name__}: {exc}"

    def _closing(self) -> None:
        if self._worker is not None:
            self._worker.close()
            self._worker = None

    def _fail_unreadable(self, found: OnChainBatch, reason: str) -> dict[str, Any]:
        """Sign (and publish) a fail verdict on a batch whose artefact cannot be checked."""
        assert self.chain is not None and self.state is not None
        verdict = sign_fail(
            self.chain, found, self.signer, reason, self.store, self.verifier.publish
        )
        self.state.batches_failed += 1
        log.warning("batch %s: FAIL: %s", found.batch_id, reason)
        return {
            "outcome": "attested",
            "passed": False,
            "reason": reason[:300],
            "signature": verdict,
        }

    # -- disputes ----------------------------------------------------------------------------
    def on_challenge(
        self, batch_id: str, dispute_id: int, event: dict[str, Any]
    ) -> dict[str, Any] | None:
        from ogkit.chain.records import onchain_batch
        from ogkit.settle import vote_dispute

        chain = self.chain
        assert chain is not None
        if not self.verifier.vote:
            return {"outcome": "not voting"}
        if _status(chain, batch_id) != BatchStatus.DISPUTED:
            return {"outcome": "dispute closed"}
        settlement = chain.contract("InferenceSettlement")
        _, open_id, _ = chain.call(settlement.functions.stateOf(bytes.fromhex(batch_id[2:])))
        if int(open_id) != dispute_id:
            return {"outcome": "dispute closed"}
        voted, was_upheld, _ = chain.call(
            settlement.functions.voteOf(dispute_id, self.signer.address)
        )
        if voted:  # a restart, a lost or rewound cursor: the chain has this vote already
            return {"outcome": "already voted", "upheld": bool(was_upheld)}
        found = onchain_batch(chain, batch_id)
        if found is None:  # pragma: no cover - a disputed batch is committed
            return {"outcome": "batch unknown"}
        args = event["args"]
        row = int(args["rowIndex"])
        dispute = chain.call(settlement.functions.getDispute(dispute_id))
        if "0x" + bytes(dispute[0]).hex() != batch_id.lower() or int(dispute[9]) != row:
            log.warning("dispute %d: the log is not the chain's dispute; dropped", dispute_id)
            return {"outcome": "not the chain's dispute", "drop": True}
        try:
            batch = load_committed(self.store, found.details["artifactId"])
            mismatch = _not_committed(batch, found)
            if mismatch:  # its records are not the committed batch's: they prove nothing
                upheld, why = True, f"the node's artefact {mismatch}"
            else:
                upheld, why = judge_row(
                    batch, row, args["inputHash"], args["outputHash"],
                    model_id=found.record["modelId"],
                )  # fmt: skip
        except Exception as exc:
            if store_unavailable(exc):
                raise Transient(f"the store {self.store.url} is unavailable: {exc}") from exc
            upheld, why = True, f"the node's artefact cannot give row {row}: {exc}"
        log.info("dispute %d on %s row %d: voting %s (%s)", dispute_id, batch_id, row,
                 "upheld" if upheld else "rejected", why)  # fmt: skip
        vote_dispute(chain, batch_id, upheld=upheld, verifier=self.signer)
        assert self.state is not None
        self.state.votes += 1
        return {"outcome": "voted", "upheld": upheld, "row": row, "why": why[:300]}


def verify_task(
    chain: ChainClient,
    batch: AttestedBatch,
    found: OnChainBatch,
    secret: bytes,
    config: VerifierConfig,
    hub: Hub | None,
) -> tuple[Any, VerifyTask]:
    """The policy a daemon verifies ``batch`` with, bound to what the chain committed (the
    registry's attester and measurement, this chain and contract, its own secret), and the
    task a worker process runs."""
    from ogkit.settle import claim_domain
    from ogkit.verify import VerifyPolicy

    policy = VerifyPolicy(
        sample_rate=config.sample_rate,
        max_ulp=config.max_ulp,
        allowlist=chain_allowlist(chain, found),
        verifier_secret=secret,
        expected_domain=claim_domain(chain),
        # Evidence is verified as of the commit's block time: the node chose the claim's.
        trusted_time=int(found.record["committedAt"]),
    )
    task = VerifyTask(
        manifest=batch.manifest.to_dict(),
        artifact_id=batch.artifact_id,
        store_url=str(batch.store.url),
        policy=policy,
        dataset_id=found.details["datasetId"],
        row_count=int(found.record["rowCount"]),
        requester=found.record["requester"],
        model=found.record["modelId"],
        hub_home=str(hub.home) if hub is not None else None,
        hub_store=str(hub.store.url) if hub is not None else None,
    )
    return policy, task


def load_committed(store: ContentStore, artifact: str) -> AttestedBatch:
    """:func:`ogkit.batch.load_batch` of a committed artefact id, once the store says the
    object is a regular file no larger than ogkit reads: a node owns its store, and a FIFO
    under the id would block the daemon's read forever, a huge file exhaust its memory."""
    from ogkit.batch import ARTIFACTS, MAX_DOCUMENT_BYTES, load_batch

    artifact = str(artifact).lower()
    path = store.object_path(ARTIFACTS, artifact)
    try:
        info = store.fs.info(path)
    except FileNotFoundError:
        raise ArtifactError(f"artefact {artifact} is not in the store {store.url}") from None
    regular_file(info, f"artefact {artifact}", MAX_DOCUMENT_BYTES)
    return load_batch(artifact, store)


def regular_file(info: dict[str, Any], what: str, limit: int | None = None) -> None:
    """Raise :class:`~ogkit.errors.ArtifactError` unless ``info`` (an fsspec ``info``)
    is a regular file of at most ``limit`` bytes."""
    kind = info.get("type")
    if kind != "file":
        raise ArtifactError(f"{what} is not a regular file in the store (it is a {kind})")
    size = info.get("size")
    if limit is not None and isinstance(size, int) and size > limit:
        raise ArtifactError(f"{what} is {size:,} bytes, more than ogkit reads ({limit:,})")


def judge_row(
    batch: AttestedBatch,
    row: int,
    input_hash: bytes,
    output_hash: bytes,
    *,
    model_id: str | None = None,
) -> tuple[bool, str]:
    """Whether a challenge of ``row`` should be upheld: the node's stored inputs must hash to
    the committed input hash, and re-executing them with the committed model (``model_id``,
    the chain's; never the one the node's manifest names) must give the committed output
    hash (:func:`ogkit.verify.reexecute_row`)."""
    from ogkit.verify import reexecute_row

    return reexecute_row(batch, row, input_hash, output_hash, model_id=model_id)


def sign_fail(
    chain: ChainClient,
    found: OnChainBatch,
    signer: Signer,
    reason: str,
    store: ContentStore,
    publish: bool,
) -> str:
    """A fail verdict over the committed claim, stored beside the batch and (with
    ``publish``) published on chain once; returns its signature."""
    return publish_verdict(chain, found, signer, False, reason, store, publish).signature


def publish_verdict(
    chain: ChainClient,
    found: OnChainBatch,
    signer: Signer,
    passed: bool,
    reason: str,
    store: ContentStore,
    publish: bool,
) -> SignedVerdict:
    """A verdict over the committed claim, stored beside the batch when the store takes it
    (a node can block its own verdict folder; the chain is where the verdict counts) and
    (with ``publish``) published on chain once."""
    from ogkit.network.daemon import store_unavailable
    from ogkit.settle import claim_domain
    from ogkit.verdict import chain_verdicts, sign_verdict, store_verdict

    verdict = sign_verdict(
        signer, claim_domain(chain), found.batch_id, found.record["claimDigest"], passed,
        reason=reason[:500],
    )  # fmt: skip
    try:
        store_verdict(store, verdict)
    except OSError as exc:
        if store_unavailable(exc):
            raise
        log.warning("batch %s: the verdict cannot be stored (%s)", found.batch_id, exc)
    already = any(
        v.verifier.lower() == signer.address.lower() for v in chain_verdicts(chain, found.batch_id)
    )
    if publish and not already:
        settlement = chain.contract("InferenceSettlement")
        chain.transact(
            settlement.functions.publishVerdict(
                bytes.fromhex(found.batch_id[2:]),
                found.as_tuple,
                passed,
                bytes.fromhex(verdict.signature[2:]),
            ),
            signer,
        )
    return verdict


def chain_allowlist(chain: ChainClient, found: OnChainBatch) -> Allowlist:
    """The attester and measurement the registry approved for the batch's node at its
    commit: the attester is the one the commit named, which the contract checked against
    the node's binding in that very transaction (a rebinding later, even later in the same
    block, changes nothing); the measurement is read as of the commit block (the current
    state where the node cannot serve history). The verifier trusts the chain, not the
    node's manifest."""
    from ogkit.verify import Allowlist

    registry = chain.contract("NodeRegistry")
    fn = registry.functions.commitInfo(found.record["node"])
    try:
        _, attester, measurement, _, kind = chain.is_contract_call_at(fn, found.block)
    except ChainError as exc:
        if "lost the connection" in str(exc):
            raise
        _, attester, measurement, _, kind = chain.call(fn)
    committed = str(found.details["attester"]).lower()
    if str(attester).lower() != committed:
        log.info(
            "batch %s: node %s rebound its attester in its commit block (%s, committed %s)",
            found.batch_id, found.record["node"], attester, committed,
        )  # fmt: skip
    attester = committed
    runtime_id = found.record["runtimeId"].lower()
    measurement = "0x" + bytes(measurement).hex()
    kind = int(kind)
    if kind == 1:
        # A software enclave's measurement is its runtime id (as the audit reads it).
        measurement = runtime_id
        kind = int(chain.call(registry.functions.measurementKind(bytes.fromhex(runtime_id[2:]))))
    measurements = {runtime_id, measurement} if kind else set()
    kinds = {measurement: kind} if kind else {}
    return Allowlist().approve(str(attester), measurements, kinds)


def _checked(chain: ChainClient, event: dict[str, Any]) -> OnChainBatch | None:
    """The event's batch if it is the chain's own record of it: its record hashes to what
    the contract stores and the whole log (record, commit details, block, transaction) is
    the ``BatchCommitted`` the chain returns for that batch id; else None."""
    from ogkit.chain.records import onchain_batch

    try:
        found = from_event(event)
    except (KeyError, TypeError, ValueError) as exc:
        log.warning("malformed BatchCommitted log: %s", exc)
        return None
    try:
        canonical = onchain_batch(chain, found.batch_id)
    except SettlementError:
        return None
    if canonical is None or canonical.to_dict() != found.to_dict():
        return None
    return found


def _not_committed(batch: AttestedBatch, found: OnChainBatch) -> str:
    """Why ``batch`` (the artefact behind the committed id) is not what the chain
    committed as ``found``, in words; empty when every on-chain field matches."""
    from ogkit.settle import compare_with_chain

    try:
        if batch.batch_id.lower() != found.batch_id.lower():
            return f"is batch {batch.batch_id}, not the committed {found.batch_id}"
        differences = compare_with_chain(batch, found)
    except Exception as exc:  # a manifest that cannot even be compared
        return f"cannot be compared with the chain: {type(exc).__name__}: {exc}"
    return "differs from the chain's record: " + "; ".join(differences) if differences else ""


def _status(chain: ChainClient, batch_id: str) -> BatchStatus:
    settlement = chain.contract("InferenceSettlement")
    return BatchStatus(int(chain.call(settlement.functions.statusOf(bytes.fromhex(batch_id[2:])))))
