"""The audit step: replay settlements from the chain and the store alone, re-verify them.

For every ``BatchCommitted`` event in range, the audit fetches the batch's artefact by
the content id the chain committed to, and re-verifies everything: the artefact's
hash and agreement with the commitment; every hash, leaf and root; the attester's
signature; that the attester was bound to the node and its measurement approved **as
of the commit block** (rebuilt by replaying registry events, so a later revocation
cannot make an honest old batch fail — it is shown as a notice); sampled
re-execution; payments against the price stored at commit, the hub manifest the paid
owner's ModelRegistry registration names by hash (not any manifest of the model id)
and the documented fee split; and that the final status agrees with the verdict.
Anything wrong is a :class:`AuditFinding` in the :class:`AuditReport`, never a crash.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import polars as pl
from tqdm import tqdm  # plain bars: tqdm.auto warns in every notebook without ipywidgets

from ogkit.batch import ARTIFACTS, AttestedBatch, load_batch
from ogkit.chain.bindings import BatchStatus
from ogkit.chain.records import from_event
from ogkit.dataset import DatasetCommitment
from ogkit.errors import (
    ArtifactError,
    ArtifactIntegrityError,
    HubError,
    InputsUnavailableError,
    OgkitError,
)
from ogkit.hub.hub import Hub
from ogkit.llm.batch import ChatBatch, is_chat_artifact, load_chat_batch
from ogkit.settle import compare_with_chain
from ogkit.store import ContentStore
from ogkit.verify import Allowlist, VerifyPolicy, verify_batch

if TYPE_CHECKING:
    from distributed import Client as DaskClient

    from ogkit.chain.client import ChainClient

__all__ = ["AuditFinding", "AuditReport", "audit"]

log = logging.getLogger(__name__)

# Reasons an audit finding can give (stable strings for reports and JSON).
AUDIT_REASONS = {
    "artifact-missing": "the committed artefact is not in the store",
    "artifact-malformed": "the committed artefact is not a well-formed batch manifest",
    "inputs-unbound": "no requester-signed order names the data: inputs checked as consistent only",
    "artifact-mismatch": "the stored artefact no longer hashes to the committed id",
    "commitment-mismatch": "the artefact disagrees with what the chain committed",
    "attester-not-bound": "the attester was not the node's bound attester at commit",
    "measurement-not-approved": "the measurement was not approved at the commit block",
    "measurement-revoked-later": "the measurement was revoked after the commit (notice)",
    "model-unknown": "the ordered owner had not registered the model at the commit block",
    "model-owner-mismatch": "the paid owner's registration names a manifest it did not sign "
    "(or one the hub does not hold)",
    "manifest-unavailable": "no signed hub manifest for the model (price not cross-checked)",
    "payment-mismatch": "payments differ from price × rows and the fee split",
    "verification-failed": "re-verifying the records found problems",
    "status-mismatch": "the batch's final status disagrees with the verdict",
    "batch-slashed": "an upheld challenge slashed the node for this batch",
    "batch-open": "the batch is not final yet (notice)",
}
NOTICES = {"measurement-revoked-later", "batch-open", "manifest-unavailable", "inputs-unbound"}


@dataclass(frozen=True)
class AuditFinding:
    batch_id: str
    reason: str
    detail: str
    severity: str = "fail"  # "fail" or "notice"
    row_index: int | None = None
    block: int | None = None


@dataclass
class AuditReport:
    chain: str
    chain_id: int
    from_block: int
    to_block: int
    batches: pl.DataFrame  # one row per batch
    findings: pl.DataFrame  # one row per finding
    verdicts: dict[str, Any] = field(default_factory=dict, repr=False)  # batch id -> Verdict
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return self.findings.filter(pl.col("severity") == "fail").is_empty()

    def summary(self) -> str:
        fails = self.findings.filter(pl.col("severity") == "fail").height
        notices = self.findings.height - fails
        head = "PASS" if self.passed else "FAIL"
        return (
            f"{head}: {self.batches.height} batch(es) in blocks {self.from_block}..{self.to_block}"
            f" on {self.chain}; {fails} failing finding(s), {notices} notice(s)"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": "ogkit.audit.v1",
            "passed": self.passed,
            "chain": self.chain,
            "chain_id": self.chain_id,
            "from_block": self.from_block,
            "to_block": self.to_block,
            "batches": self.batches.to_dicts(),
            "findings": self.findings.to_dicts(),
            "seconds": self.seconds,
        }


def _hex(value: Any) -> str:
    if isinstance(value, str):
        return value.lower()
    return "0x" + bytes(value).hex()


class _RegistryHistory:
    """Registry state as of any block, rebuilt from events (works on every node type)."""

    def __init__(self, chain: ChainClient, to_block: int) -> None:
        first = getattr(chain, "first_block", 0) or 0

        def ev(contract: str, name: str) -> list[dict]:
            return chain.events(contract, name, first, to_block)

        self.measurements = sorted(
            [
                (e["blockNumber"], e["logIndex"], _hex(e["args"]["measurement"]),
                 int(e["args"].get("kind", 1)))
                for e in ev("NodeRegistry", "MeasurementApproved")
            ]
            + [
                (e["blockNumber"], e["logIndex"], _hex(e["args"]["measurement"]), 0)
                for e in ev("NodeRegistry", "MeasurementRevoked")
            ]
        )  # fmt: skip
        self.bindings = sorted(
            (e["blockNumber"], e["logIndex"], e["args"]["node"], e["args"]["attester"],
             _hex(e["args"]["measurement"]))
            for e in ev("NodeRegistry", "AttesterBound")
        )  # fmt: skip
        # (model id, owner) -> (block, manifest hash the owner signed, price): registered once.
        self.registrations = {
            (_hex(e["args"]["modelId"]), e["args"]["owner"].lower()): (
                e["blockNumber"],
                _hex(e["args"]["manifestHash"]),
                int(e["args"]["price"]),
            )
            for e in ev("ModelRegistry", "ModelRegistered")
        }
        self.models = {key: reg[0] for key, reg in self.registrations.items()}
        # (model id, owner) -> [(block, log index, new price)]: ModelRegistry.setPrice.
        self.price_changes: dict[tuple[str, str], list[tuple[int, int, int]]] = {}
        for e in ev("ModelRegistry", "PriceChanged"):
            key = (_hex(e["args"]["modelId"]), e["args"]["owner"].lower())
            self.price_changes.setdefault(key, []).append(
                (e["blockNumber"], e["logIndex"], int(e["args"]["newPrice"]))
            )

    def registered_manifest(self, model_id: str, owner: str, block: int) -> str | None:
        """The manifest hash ``owner``'s registration of ``model_id`` names, if it had
        registered it at ``block``: the hub manifest the owner signed for the chain."""
        reg = self.registrations.get((model_id.lower(), owner.lower()))
        return reg[1] if reg is not None and reg[0] <= block else None

    def registered_price(self, model_id: str, owner: str, block: int, log_index: int) -> int | None:
        """``owner``'s price for ``model_id`` just before log ``log_index`` of ``block``
        (the commit's event): the registration's, then every ``setPrice`` before it."""
        key = (model_id.lower(), owner.lower())
        reg = self.registrations.get(key)
        if reg is None or reg[0] > block:
            return None
        price = reg[2]
        for b, i, new in sorted(self.price_changes.get(key, [])):
            if (b, i) < (block, log_index):
                price = new
        return price

    def measurement_kind(self, measurement: str, block: int) -> int:
        """The kind ``measurement`` was approved as at ``block`` (0: not approved)."""
        state = 0
        for b, _, m, kind in self.measurements:
            if b > block:
                break
            if m == measurement:
                state = kind
        return state

    def measurement_approved(self, measurement: str, block: int) -> bool:
        return self.measurement_kind(measurement, block) != 0

    def revoked_after(self, measurement: str, block: int) -> int | None:
        for b, _, m, kind in self.measurements:
            if b > block and m == measurement and not kind:
                return b
        return None

    def binding_of(self, node: str, block: int) -> tuple[str, str] | None:
        """The (attester, measurement) bound to ``node`` at ``block``."""
        bound = None
        for b, _, n, attester, measurement in self.bindings:
            if b > block:
                break
            if n.lower() == node.lower():
                bound = (attester, measurement)
        return bound

    def attester_of(self, node: str, block: int) -> str | None:
        bound = self.binding_of(node, block)
        return bound[0] if bound else None


def audit(
    chain: ChainClient,
    store: ContentStore | str,
    *,
    hub: Hub | None = None,
    from_block: int | None = None,
    to_block: int | None = None,
    batch_ids: Iterable[str] | None = None,
    requester: str | None = None,
    model: str | None = None,
    sample_rate: float = 0.01,
    dask: DaskClient | None = None,
    progress: bool = False,
) -> AuditReport:
    """Replay the settlements in ``[from_block, to_block]`` (optionally only some batch
    ids, one requester or one model id) and re-verify each from ``store``."""
    started = time.perf_counter()
    store = store if isinstance(store, ContentStore) else ContentStore(store)
    hub = hub or Hub(store)
    first = from_block if from_block is not None else getattr(chain, "first_block", 0) or 0
    last = to_block if to_block is not None else chain.block_number()
    wanted = {b.lower() for b in batch_ids} if batch_ids else None
    history = _RegistryHistory(chain, last)
    params = chain.deployment.params
    settlement = chain.contract("InferenceSettlement")

    def events(name: str) -> dict[str, list[dict]]:
        out: dict[str, list[dict]] = {}
        for e in chain.events("InferenceSettlement", name, first, last):
            out.setdefault(_hex(e["args"]["batchId"]), []).append(e)
        return out

    finalized = events("BatchFinalized")
    upheld, opened = events("ChallengeUpheld"), events("ChallengeOpened")
    verifier_paid, refunded = events("VerifiersPaid"), events("BatchRefunded")

    rows: list[dict[str, Any]] = []
    findings: list[AuditFinding] = []
    verdicts: dict[str, Any] = {}
    commits = chain.events("InferenceSettlement", "BatchCommitted", first, last)
    for e in tqdm(commits, desc="audit", unit="batch", disable=not progress):
        found_on_chain = from_event(e)
        a = {**found_on_chain.record, **found_on_chain.details}
        batch_id = found_on_chain.batch_id
        if wanted is not None and batch_id not in wanted:
            continue
        if requester and a["requester"].lower() != requester.lower():
            continue
        if model and _hex(a["modelId"]) != model.lower():
            continue
        found: list[AuditFinding] = []

        def add(
            reason: str,
            detail: str,
            *,
            row: int | None = None,
            block: int | None = None,
            _batch_id: str = batch_id,
            _found: list[AuditFinding] = found,
        ) -> None:
            severity = "notice" if reason in NOTICES else "fail"
            _found.append(AuditFinding(_batch_id, reason, detail, severity, row, block))

        commit_block = e["blockNumber"]
        status = BatchStatus(chain.call(settlement.functions.statusOf(bytes.fromhex(batch_id[2:]))))
        row = {
            "batch_id": batch_id,
            "artifact_id": _hex(a["artifactId"]),
            "model_id": _hex(a["modelId"]),
            "node": a["node"],
            "requester": a["requester"],
            "attester": a["attester"],
            "rows": int(a["rowCount"]),
            "commit_block": commit_block,
            "status": status.name.lower(),
            "price": int(a["price"]),
            "model_payment": 0,
            "node_fee": 0,
            "verifier_fees": 0,
            "slashed": 0,
            "gas": _gas(chain, e, finalized.get(batch_id, [])),
            "verdict": "not run",
            "sampled_rows": 0,
        }

        # Registry state as of the commit block.
        runtime_id = _hex(a["runtimeId"])
        binding = history.binding_of(a["node"], commit_block)
        # A software enclave's measurement is its runtime id; a hardware attester's is the
        # TEE measurement its binding names (its evidence ties the key to both).
        measurement = binding[1] if binding else runtime_id
        kind = history.measurement_kind(measurement, commit_block)
        if kind == 1:
            measurement = runtime_id
            kind = history.measurement_kind(runtime_id, commit_block)
        if not kind:
            add(
                "measurement-not-approved",
                f"measurement {measurement} was not approved at block {commit_block}",
                block=commit_block,
            )
        elif (revoked := history.revoked_after(measurement, commit_block)) is not None:
            add(
                "measurement-revoked-later",
                f"measurement {measurement} was approved when the "
                f"batch was committed (block {commit_block}) and revoked at block {revoked}; "
                "the batch stays valid",
                block=revoked,
            )
        bound = history.attester_of(a["node"], commit_block)
        if bound is None or bound.lower() != a["attester"].lower():
            add(
                "attester-not-bound",
                f"node {a['node']} had attester {bound} at block "
                f"{commit_block}, not {a['attester']}",
                block=commit_block,
            )
        registered = history.models.get((row["model_id"], a["modelOwner"].lower()))
        if registered is None or registered > commit_block:
            add(
                "model-unknown",
                f"model {row['model_id']} was not registered by {a['modelOwner']} at block "
                f"{commit_block}",
                block=commit_block,
            )

        # Payments: price stored at commit × rows, and the documented fee split.
        payment = row["price"] * row["rows"]
        node_fee = payment * params.node_fee_bps // 10_000
        verifier_fee = payment * params.verifier_fee_bps // 10_000
        if a["escrow"] != payment + node_fee + verifier_fee:
            add(
                "payment-mismatch",
                f"escrow {a['escrow']} ≠ price × rows + fees {payment + node_fee + verifier_fee}",
            )
        for f in finalized.get(batch_id, []):
            fa = f["args"]
            row.update(model_payment=fa["modelPayment"], node_fee=fa["nodeFee"])
            paid = sum(sum(v["args"]["amounts"]) for v in verifier_paid.get(batch_id, []))
            row["verifier_fees"] = paid
            # verifierFee is what the verifiers got; rounding dust goes to the model owner.
            if (fa["modelPayment"], fa["nodeFee"]) != (payment, node_fee) or (
                fa["verifierFee"] > verifier_fee
            ):
                add(
                    "payment-mismatch",
                    f"finalise paid {fa['modelPayment']}/{fa['nodeFee']}/"
                    f"{fa['verifierFee']}, expected {payment}/{node_fee}/≤{verifier_fee}",
                    block=f["blockNumber"],
                )
            if paid != fa["verifierFee"]:
                add(
                    "payment-mismatch",
                    f"VerifiersPaid events add up to {paid}, the "
                    f"finalisation reports {fa['verifierFee']}",
                )
            if fa["modelOwner"].lower() != a["modelOwner"].lower():
                add(
                    "payment-mismatch",
                    f"model payment went to {fa['modelOwner']}, not the ordered owner "
                    f"{a['modelOwner']}",
                )
        for u in upheld.get(batch_id, []):
            row["slashed"] += u["args"]["slashed"]

        # The artefact, by the content id the chain committed to.
        batch: AttestedBatch | None = None
        try:
            if is_chat_artifact(row["artifact_id"], store):  # chat calls (docs/spec.md §12)
                batch = load_chat_batch(row["artifact_id"], store)
            else:
                batch = load_batch(row["artifact_id"], store)
        except ArtifactIntegrityError as exc:
            add("artifact-mismatch", str(exc))
        except ArtifactError as exc:
            present = store.has(ARTIFACTS, str(row["artifact_id"]).lower())
            add("artifact-malformed" if present else "artifact-missing", str(exc))
        if batch is not None:
            # Whatever the artefact holds, the audit goes on: a failure is this batch's finding.
            try:
                for difference in compare_with_chain(batch, found_on_chain):
                    add("commitment-mismatch", difference)
                registered = history.registered_manifest(
                    row["model_id"], a["modelOwner"], commit_block
                )
                on_chain = history.registered_price(
                    row["model_id"], a["modelOwner"], commit_block, e["logIndex"]
                )
                _check_manifest(
                    hub, batch, a["modelOwner"], registered, row["price"], on_chain, add
                )
                # The pairs the registry bound at the commit block: the node's attester
                # with its runtime id and the measurement its binding names.
                allowlist = Allowlist()
                if bound and kind:
                    pair = {runtime_id, measurement}
                    allowlist = allowlist.approve(a["attester"], pair, {measurement: kind})
                try:
                    verdict = verify_batch(
                        batch,
                        VerifyPolicy(
                            sample_rate=sample_rate,
                            allowlist=allowlist,
                            # Evidence as of the commit's block time (the node chose the
                            # claim's): the same verdict however late the audit runs.
                            trusted_time=int(a["committedAt"]),
                        ),
                        # The requester signed the dataset commitment in its order.
                        commitment=DatasetCommitment(a["datasetId"], int(a["rowCount"])),
                        requester=a["requester"],
                        model=a["modelId"],
                        hub=hub,
                        dask=dask,
                        progress=False,
                    )
                except OgkitError as exc:  # unreadable records and the like: a finding, go on
                    add("verification-failed", f"could not re-verify: {exc}")
                    verdict = None
                if verdict is not None:
                    verdicts[batch_id] = verdict
                    row["verdict"] = "pass" if verdict.passed else "fail"
                    row["sampled_rows"] = verdict.sample_size
                    for vf in verdict.findings[:50]:
                        add("verification-failed", f"{vf.reason}: {vf.detail}", row=vf.row_index)
                    if not verdict.inputs_bound:
                        add("inputs-unbound", " ".join(verdict.notices))
                _check_status(chain, batch, status, verdict, opened.get(batch_id, []), add)
            except Exception as exc:  # hostile artefacts must not stop the audit
                add("verification-failed", f"could not re-verify: {type(exc).__name__}: {exc}")
        elif status == BatchStatus.SLASHED:
            add(
                "batch-slashed",
                "the node was slashed for this batch (artefact unavailable "
                "to confirm the challenged row)",
            )
        if status in (BatchStatus.PENDING, BatchStatus.DISPUTED):
            add("batch-open", f"status is {status.name.lower()}: not final yet")
        if refunded.get(batch_id) and status == BatchStatus.REFUNDED:
            row["model_payment"] = 0
        findings.extend(found)
        rows.append(row)

    for row in rows:  # OPG amounts as decimal OPG for people and charts; exact ones are on-chain
        for key in ("price", "model_payment", "node_fee", "verifier_fees", "slashed"):
            row[f"{key}_opg"] = row.pop(key) / 10**18
    batches = (
        pl.DataFrame(rows, schema=_BATCH_SCHEMA) if rows else pl.DataFrame(schema=_BATCH_SCHEMA)
    )
    finding_frame = (
        pl.DataFrame([asdict(f) for f in findings], schema=_FINDING_SCHEMA)
        if findings
        else pl.DataFrame(schema=_FINDING_SCHEMA)
    )
    report = AuditReport(
        chain.name,
        chain.chain_id,
        first,
        last,
        batches,
        finding_frame,
        verdicts,
        time.perf_counter() - started,
    )
    log.info("%s", report.summary())
    return report


_BATCH_SCHEMA = {
    "batch_id": pl.String,
    "artifact_id": pl.String,
    "model_id": pl.String,
    "node": pl.String,
    "requester": pl.String,
    "attester": pl.String,
    "rows": pl.Int64,
    "commit_block": pl.Int64,
    "status": pl.String,
    "gas": pl.Int64,
    "verdict": pl.String,
    "sampled_rows": pl.Int64,
    "price_opg": pl.Float64,
    "model_payment_opg": pl.Float64,
    "node_fee_opg": pl.Float64,
    "verifier_fees_opg": pl.Float64,
    "slashed_opg": pl.Float64,
}
_FINDING_SCHEMA = {
    "batch_id": pl.String,
    "reason": pl.String,
    "detail": pl.String,
    "severity": pl.String,
    "row_index": pl.Int64,
    "block": pl.Int64,
}


def _gas(chain: ChainClient, commit: dict, finals: list[dict]) -> int:
    """Gas of the batch's commit and finalisation transactions."""
    total = 0
    for e in [commit, *finals]:
        total += int(chain.w3.eth.get_transaction_receipt(e["transactionHash"])["gasUsed"])
    return total


def _check_manifest(
    hub: Hub,
    batch: AttestedBatch,
    owner: str,
    registered: str | None,
    price: int,
    on_chain: int | None,
    add,
) -> None:
    """The order pays ``owner`` (the requester signed it) the price stored at commit; the
    owner's ModelRegistry registration names, by hash, the hub manifest it signed
    (``registered``). That manifest, and no other manifest of the same model id (anyone
    may republish the bytes under another name, version, owner or price), must be signed
    by the owner paid, and the price charged must be the one it states, or lower when
    the owner cut its price on chain (``setPrice``) and the price charged is the owner's
    price as of the commit (``on_chain``). A price above the signed one fails even when
    the owner raised it on chain: the signed manifest is what requesters agreed to."""
    try:
        entries = hub.index.by_model_id(batch.model_id)
    except (HubError, OSError):
        entries = []
    signed = []
    for entry in entries:
        try:
            entry.manifest.check_signature()
        except HubError:
            continue
        signed.append(entry.manifest)
    if not signed:
        add("manifest-unavailable", f"no signed manifest for model {batch.model_id} in the hub")
        return
    if registered is None:
        return  # not registered at commit: model-unknown says so
    manifest = next((m for m in signed if m.manifest_hash().lower() == registered), None)
    if manifest is None:
        by = ", ".join(sorted({f"{m.ref} by {m.owner.lower()}" for m in signed}))
        add(
            "model-owner-mismatch",
            f"the order paid {owner}, whose registration of model {batch.model_id} names "
            f"manifest {registered}; no signed manifest in the hub has that hash (the hub "
            f"holds {by})",
        )
        return
    if manifest.owner.lower() != owner.lower():
        add(
            "model-owner-mismatch",
            f"the order paid {owner} for model {batch.model_id}, but the manifest its "
            f"registration names ({manifest.ref}) is signed by {manifest.owner.lower()}",
        )
    cut = on_chain is not None and price == on_chain < manifest.price_per_inference
    if price != manifest.price_per_inference and not cut:
        add(
            "payment-mismatch",
            f"charged {price} per inference at commit, but the owner's signed manifest says "
            f"{manifest.price_per_inference} ({manifest.ref}, the one its registration names) "
            f"and its price on chain at the commit was {on_chain}",
        )


def _check_status(chain, batch, status, verdict, challenges, add) -> None:
    passed = verdict is not None and verdict.passed
    if status == BatchStatus.FINALIZED and verdict is not None and not passed:
        add("status-mismatch", "finalised and paid, but re-verification fails")
    if status == BatchStatus.SLASHED:
        detail = "the node was slashed for this batch"
        for c in challenges:
            r = int(c["args"]["rowIndex"])
            confirmed = _reexecution_confirms(batch, r)
            detail += (
                f"; challenged row {r}: re-execution "
                f"{'confirms the wrong output' if confirmed else 'does NOT confirm it'}"
            )
            add("batch-slashed", detail, row=r, block=c["blockNumber"])
            if not confirmed:
                add(
                    "status-mismatch",
                    f"slashed over row {r}, but its output re-executes as attested",
                    row=r,
                )


def _reexecution_confirms(batch: AttestedBatch, row: int) -> bool:
    """True if re-running ``row`` gives a different output hash than the attested one."""
    from ogkit.crypto.encoding import tensor_row_hashes
    from ogkit.load import load_model_bytes, reexecute

    if isinstance(batch, ChatBatch):  # a chat call is decoded again (docs/spec.md §12)
        from ogkit.llm.challenge import redecode_confirms

        return redecode_confirms(batch, row)

    try:
        for part in batch.partitions:
            if part.offset <= row < part.offset + part.rows:
                try:
                    rec = batch.records(part.index)
                except InputsUnavailableError:
                    return True  # no inputs to re-run: the dispute is upheld (spec §6)
                i = list(rec.row_index).index(row)
                row_inputs = {k: v[i : i + 1] for k, v in rec.inputs.items()}
                if bytes(tensor_row_hashes(row_inputs)[0]) != bytes(rec.input_hashes[i]):
                    return True  # the stored row is not the committed one: upheld too
                model = load_model_bytes(batch.store.get("models", batch.model_id))
                out = reexecute(model, rec.inputs, [i], batch_size=batch.batch_size)
                return bytes(tensor_row_hashes(out)[0]) != bytes(rec.output_hashes[i])
    except (OgkitError, ValueError):
        return False
    return False
