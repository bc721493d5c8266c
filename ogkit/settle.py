"""The settle step: commit an attested batch on-chain, attest verdicts, finalise.

:func:`settle` drives one batch's on-chain life cycle forward as far as it can go
and is safe to re-run: the chain's ``statusOf(batchId)`` is the truth, and a local
:class:`SettlementJournal` records what was sent (transaction hashes, blocks) so a
crash at any point is resumed by running the same command again. A batch is only
committed while the chain says it is unknown, so it is never committed twice.

The set-up helpers (:func:`register_model`, :func:`ensure_staked`,
:func:`ensure_allowance`, :func:`bootstrap_measurement`) are idempotent too.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import shlex
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eth_account.messages import encode_typed_data

from ogkit.attest import EIP712_DOMAIN_TYPE, ClaimDomain, execution_hash
from ogkit.batch import AttestedBatch
from ogkit.chain.bindings import BatchStatus
from ogkit.chain.records import OnChainBatch, onchain_batch
from ogkit.checks import DataCheckPolicy
from ogkit.errors import InputsUnavailableError, SettlementError
from ogkit.hub.manifest import ModelManifest
from ogkit.keys import Signer
from ogkit.order import SignedOrder, check_order_matches
from ogkit.verdict import (
    SignedVerdict,
    chain_verdicts,
    load_verdicts,
    quorum_verdicts,
    sign_verdict,
    store_verdict,
)

if TYPE_CHECKING:
    from ogkit.chain.client import ChainClient
    from ogkit.store import ContentStore

__all__ = [
    "ROLE_INFERENCE",
    "ROLE_VERIFIER",
    "SettlementJournal",
    "SettlementProgress",
    "SettlementRecord",
    "attest_batch",
    "attester_binding_typed_data",
    "bootstrap_measurement",
    "challenge_row",
    "claim_domain",
    "ensure_allowance",
    "ensure_staked",
    "finalize_verdicts",
    "format_opg",
    "governance_hint",
    "measurement_approved",
    "prepare_dev_settlement",
    "register_model",
    "registration_typed_data",
    "settle",
    "settlement_progress",
    "vote_dispute",
]

log = logging.getLogger(__name__)

ROLE_INFERENCE, ROLE_VERIFIER = 1, 2
KIND_SOFTWARE = 1
ZERO32 = b"\x00" * 32
ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
FINAL = {BatchStatus.FINALIZED, BatchStatus.SLASHED, BatchStatus.REFUNDED}
OPG_UNIT = 10**18


def _b32(hex_value: str) -> bytes:
    return bytes.fromhex(hex_value.removeprefix("0x"))


def claim_domain(chain: ChainClient) -> ClaimDomain:
    """The EIP-712 domain claims must be signed for to settle on ``chain``."""
    return ClaimDomain(chain.chain_id, chain.contract("InferenceSettlement").address)


# -- idempotent set-up ---------------------------------------------------------------------
def registration_typed_data(
    chain: ChainClient, model_id: str, owner: str, price: int, manifest_hash: str, deadline: int
) -> dict[str, Any]:
    """The EIP-712 ``ModelRegistration`` a model's owner signs (ModelRegistry's domain)."""
    registry = chain.contract("ModelRegistry")
    return {
        "types": {
            "EIP712Domain": EIP712_DOMAIN_TYPE,
            "ModelRegistration": [
                {"name": "modelId", "type": "bytes32"},
                {"name": "owner", "type": "address"},
                {"name": "price", "type": "uint256"},
                {"name": "manifestHash", "type": "bytes32"},
                {"name": "deadline", "type": "uint64"},
            ],
        },
        "primaryType": "ModelRegistration",
        "domain": {
            "name": "ogkit ModelRegistry",
            "version": "1",
            "chainId": chain.chain_id,
            "verifyingContract": registry.address,
        },
        "message": {
            "modelId": _b32(model_id),
            "owner": owner,
            "price": int(price),
            "manifestHash": _b32(manifest_hash),
            "deadline": int(deadline),
        },
    }


def register_model(
    chain: ChainClient, manifest: ModelManifest, owner: Signer, *, sender: Signer | None = None
) -> bool:
    """Mirror a hub manifest into ModelRegistry under its owner, with the owner's EIP-712
    signature (``sender``, default the owner, pays the gas). False if this owner already
    registered it. Registrations are keyed by (model id, owner): nobody else's registration
    of the same bytes can take this owner's payments, and job orders name the owner."""
    if manifest.owner.lower() != owner.address.lower():
        raise SettlementError(
            f"model {manifest.ref} is owned by {manifest.owner} (it signed the hub manifest), "
            f"not by {owner.address}; register it with the owner's key (`ogkit hub register "
            f"{manifest.ref} --key OWNER`)"
        )
    registry = chain.contract("ModelRegistry")
    model_id = _b32(manifest.model_id)
    if chain.call(registry.functions.exists(model_id, owner.address)):
        return False
    deadline = chain.block_timestamp() + 3600
    manifest_hash = manifest.manifest_hash()
    typed = registration_typed_data(
        chain, manifest.model_id, owner.address, manifest.price_per_inference, manifest_hash,
        deadline,
    )  # fmt: skip
    signature = _b32(owner.sign_typed_data(typed))
    chain.transact(
        registry.functions.registerModel(
            (
                model_id,
                owner.address,
                manifest.price_per_inference,
                _b32(manifest_hash),
                deadline,
                manifest.name,
                manifest.version,
                f"ogkit://manifests/{manifest.name}/{manifest.version}.json",
            ),
            signature,
        ),
        sender or owner,
    )
    log.info("registered %s on chain %d for %s", manifest.ref, chain.chain_id, owner.address)
    return True


def ensure_allowance(chain: ChainClient, owner: Signer, spender: str, amount: int) -> None:
    """Make ``owner``'s OPG allowance to ``spender`` at least ``amount``."""
    token = chain.contract("OPGToken")
    if chain.call(token.functions.allowance(owner.address, spender)) < amount:
        chain.transact(token.functions.approve(spender, amount), owner)


def attester_binding_typed_data(
    chain_id: int, registry: str, node: str, attester: str, measurement: str | bytes
) -> dict[str, Any]:
    """The EIP-712 message an attester signs to consent to being bound to ``node`` under
    ``measurement`` in the NodeRegistry at ``registry`` (its proof of possession):
    ``AttesterBinding(address node,address attester,bytes32 measurement)`` in the domain
    ``("ogkit NodeRegistry", "1", chain_id, registry)``."""
    from eth_utils import to_checksum_address

    m = _b32(measurement) if isinstance(measurement, str) else bytes(measurement)
    if len(m) != 32:
        raise SettlementError(f"measurement must be 32 bytes, got {len(m)}")
    return {
        "types": {
            "EIP712Domain": EIP712_DOMAIN_TYPE,
            "AttesterBinding": [
                {"name": "node", "type": "address"},
                {"name": "attester", "type": "address"},
                {"name": "measurement", "type": "bytes32"},
            ],
        },
        "primaryType": "AttesterBinding",
        "domain": {
            "name": "ogkit NodeRegistry",
            "version": "1",
            "chainId": chain_id,
            "verifyingContract": to_checksum_address(registry),
        },
        "message": {
            "node": to_checksum_address(node),
            "attester": to_checksum_address(attester),
            "measurement": m,
        },
    }


def ensure_staked(
    chain: ChainClient,
    node: Signer,
    *,
    role: int,
    stake: int,
    attester: Signer | None = None,
    measurement: str | None = None,
) -> None:
    """Register ``node`` with ``stake`` OPG (role 1 inference, 2 verifier), or re-bind its
    attester and measurement if they changed. Never adds stake to a registered node.

    ``attester`` signs the :func:`attester_binding_typed_data` proof of possession that the
    NodeRegistry checks before it binds the key to ``node``; without one (verifiers) nothing
    is bound."""
    registry = chain.contract("NodeRegistry")
    info = chain.call(registry.functions.getNode(node.address))
    current_role, bound_attester, bound_measurement = info[0], info[1], info[2]
    wanted_measurement = _b32(measurement) if measurement else ZERO32

    def proof() -> bytes:
        if attester is None:
            return b""
        typed = attester_binding_typed_data(
            chain.chain_id, registry.address, node.address, attester.address, wanted_measurement
        )
        return _b32(attester.sign_typed_data(typed))

    if current_role == 0:
        ensure_allowance(chain, node, registry.address, stake)
        chain.transact(
            registry.functions.registerNode(
                role,
                stake,
                attester.address if attester is not None else ZERO_ADDRESS,
                wanted_measurement,
                proof(),
            ),
            node,
        )
        log.info("registered node %s (role %d, %d OPG units)", node.address, role, stake)
    elif current_role != role:
        raise SettlementError(
            f"{node.address} is registered with role {current_role}, not {role}; "
            "use another key for this role"
        )
    elif attester is not None and (
        bound_attester.lower() != attester.address.lower()
        or bytes(bound_measurement) != wanted_measurement
    ):
        chain.transact(
            registry.functions.setAttester(attester.address, wanted_measurement, proof()), node
        )


def bootstrap_measurement(
    chain: ChainClient, owner: Signer, measurement: str, *, kind: int = KIND_SOFTWARE
) -> bool:
    """Approve ``measurement`` through the registry owner's bootstrap power (dev chains).

    On a network whose bootstrap is closed, approval goes through stake-weighted
    governance (``NodeRegistry.propose``/``vote``/``execute``) instead.
    """
    registry = chain.contract("NodeRegistry")
    m = _b32(measurement)
    if chain.call(registry.functions.isMeasurementApproved(m)):
        return False
    if not chain.call(registry.functions.bootstrapOpen()):
        raise SettlementError(
            f"measurement {measurement} is not approved and the bootstrap is closed: "
            + governance_hint(measurement)
        )
    chain.transact(registry.functions.bootstrapMeasurement(m, kind), owner)
    log.info("approved measurement %s on chain %d (bootstrap)", measurement, chain.chain_id)
    return True


def governance_hint(measurement: str) -> str:
    """How a measurement gets approved where no deployer can bootstrap it: the sentence
    the errors and warnings end with."""
    return (
        "stake-weighted governance approves measurements: a registered node calls "
        f"NodeRegistry.propose({measurement}, KIND) (KIND 1 software, 2 TDX, 3 SGX, 4 Nitro), "
        "stakers vote(id, true) during the voting "
        "delay, then anyone calls execute(id) (docs/contracts.md, 'Measurement allowlist and "
        "governance')"
    )


def measurement_approved(chain: ChainClient, measurement: str) -> bool:
    """Whether the NodeRegistry approves ``measurement`` now (commits need it)."""
    registry = chain.contract("NodeRegistry")
    return bool(chain.call(registry.functions.isMeasurementApproved(_b32(measurement))))


def prepare_dev_settlement(
    chain: ChainClient,
    *,
    deployer: Signer | None,
    manifest: ModelManifest,
    runtime_id: str,
    owner: Signer,
    node: Signer,
    attester: Signer,
    requester: Signer,
    verifiers: list[Signer],
    node_stake: int = 10_000 * 10**18,
    verifier_stakes: tuple[int, ...] = (2_000 * 10**18, 3_000 * 10**18, 5_000 * 10**18),
    allowance: int = 10**8 * 10**18,
) -> None:
    """Everything a dev chain needs before ``settle``: the model registered, the runtime
    measurement approved (by ``deployer``'s bootstrap power, when given), the node staked
    with its attester bound, the verifiers staked, the requester's allowance given."""
    register_model(chain, manifest, owner)
    if deployer is not None:
        bootstrap_measurement(chain, deployer, runtime_id)
    ensure_staked(
        chain,
        node,
        role=ROLE_INFERENCE,
        stake=node_stake,
        attester=attester,
        measurement=runtime_id,
    )
    for verifier, stake in zip(verifiers, verifier_stakes, strict=True):
        ensure_staked(chain, verifier, role=ROLE_VERIFIER, stake=stake)
    settlement = chain.contract("InferenceSettlement")
    ensure_allowance(chain, requester, settlement.address, allowance)


# -- the journal -------------------------------------------------------------------------
@dataclass
class SettlementRecord:
    """What this machine knows about one batch's settlement, mirrored from the chain."""

    batch_id: str
    artifact_id: str
    chain: str
    chain_id: int
    status: str = "new"  # new | committing | pending | disputed | finalized | slashed | refunded
    commit_tx: str | None = None
    commit_block: int | None = None
    finalize_tx: str | None = None
    finalize_block: int | None = None
    expire_tx: str | None = None  # expire(): the window closed without quorum
    expire_block: int | None = None
    refunded: int | None = None  # OPG base units the expiry gave back to the requester
    attestations: dict[str, str] = field(default_factory=dict)  # verifier -> where its verdict is
    verdicts: dict[str, str] = field(default_factory=dict)  # verifier -> signature finalised with
    waiting_for: str = ""
    updated_at: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class SettlementJournal:
    """One JSON file per batch under ``<home>/settlements/<chain id>/``, written atomically.

    Without a ``home`` the journal lives in memory (the chain stays the truth either way:
    a lost journal only forgets which transactions this process sent)."""

    def __init__(self, chain_id: int, home: Path | None = None) -> None:
        self.folder = Path(home) / "settlements" / str(chain_id) if home is not None else None
        self._memory: dict[str, dict[str, Any]] = {}

    def _path(self, batch_id: str) -> Path:
        assert self.folder is not None
        return self.folder / f"{batch_id}.json"

    def load(self, batch_id: str) -> SettlementRecord | None:
        if self.folder is None:
            doc = self._memory.get(batch_id)
            return SettlementRecord(**doc) if doc is not None else None
        path = self._path(batch_id)
        if not path.exists():
            return None
        return SettlementRecord(**json.loads(path.read_text()))

    def save(self, record: SettlementRecord) -> None:
        record.updated_at = time.time()
        if self.folder is None:
            self._memory[record.batch_id] = json.loads(json.dumps(record.to_dict()))
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self._path(record.batch_id)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(record.to_dict(), indent=2, sort_keys=True))
        tmp.replace(path)

    def all(self) -> list[SettlementRecord]:
        if self.folder is None:
            return [SettlementRecord(**d) for _, d in sorted(self._memory.items())]
        if not self.folder.exists():
            return []
        return [
            SettlementRecord(**json.loads(p.read_text()))
            for p in sorted(self.folder.glob("*.json"))
        ]


# -- settling ----------------------------------------------------------------------------
def _claim_tuple(batch: AttestedBatch) -> tuple:
    c = batch.claim
    return (
        _b32(c.batch_id),
        _b32(c.model_id),
        _b32(c.runtime_id),
        _b32(c.batch_root),
        c.row_count,
        c.requester,
        c.timestamp,
        c.attester,
    )


def _check_domain(batch: AttestedBatch, chain: ChainClient) -> None:
    want = claim_domain(chain)
    have = batch.domain
    if have.chain_id != want.chain_id or have.verifying_contract.lower() != (
        want.verifying_contract.lower()
    ):
        raise SettlementError(
            f"batch {batch.batch_id} was signed for chain {have.chain_id} / contract "
            f"{have.verifying_contract}, not for {chain.name} (chain {want.chain_id}, "
            f"settlement {want.verifying_contract}); run inference again with this chain "
            "(`ogkit infer --chain …`)"
        )


def claim_digest(batch: AttestedBatch) -> str:
    """The EIP-712 digest of the batch's claim: what the chain stores and verdicts sign."""
    from ogkit.crypto.keccak import keccak256

    signable = encode_typed_data(full_message=batch.claim.typed_data(batch.domain))
    return "0x" + keccak256(b"\x19" + signable.version + signable.header + signable.body).hex()


def _status(chain: ChainClient, batch_id: str) -> BatchStatus:
    settlement = chain.contract("InferenceSettlement")
    return BatchStatus(chain.call(settlement.functions.statusOf(_b32(batch_id))))


def _sync(record: SettlementRecord, status: BatchStatus) -> None:
    if status != BatchStatus.NONE:
        record.status = status.name.lower()


def check_committed_is_ours(batch: AttestedBatch, found: OnChainBatch, node: str) -> None:
    """Raise :class:`SettlementError` unless the chain's record of ``batch.batch_id`` is
    this batch, committed by ``node``: a different claim or another node is a hijack."""
    ours = claim_digest(batch)
    theirs = found.record["claimDigest"]
    if theirs.lower() != ours.lower() or found.record["node"].lower() != node.lower():
        raise SettlementError(
            f"batch {batch.batch_id} was committed in block {found.block} by node "
            f"{found.record['node']} with claim {theirs}, not by {node} with this artefact's "
            f"claim {ours}: it was hijacked (an order open to any node lets another node take "
            "it); the requester should sign orders that name the node (`ogkit order new --node "
            "…`) and report the committing node"
        )


def _execution(batch: AttestedBatch) -> str:
    return execution_hash(batch.manifest.execution())


def settle(
    batch: AttestedBatch,
    chain: ChainClient,
    *,
    node: Signer,
    order: SignedOrder | None = None,
    verdicts: Iterable[SignedVerdict] = (),
    journal: SettlementJournal | None = None,
    finalize: bool = True,
    expire: bool = True,
    data_checks: DataCheckPolicy | None = None,
) -> SettlementRecord:
    """Commit ``batch`` through the requester's signed ``order`` if the chain does not know
    it yet, then finalise it once its challenge window is over with pass verdicts holding
    the quorum: those given, those in the batch's store (``verdicts/<batch id>/``) and
    those published on chain.

    A batch nobody could finalise is expired once the grace after its window passed (with
    ``expire``, the default), which refunds the requester; ``record.refunded`` says how much.
    If the chain's record of the batch id is not this batch committed by ``node``, that is
    a hijack and raises :class:`SettlementError`.

    With ``data_checks``, the batch's records pass great-expectations checks
    (:func:`ogkit.checks.check_records`) before anything is committed; a failure that
    the policy blocks raises :class:`~ogkit.checks.DataCheckFailed` naming the rows."""
    journal = journal or SettlementJournal(chain.chain_id)
    settlement = chain.contract("InferenceSettlement")
    record = journal.load(batch.batch_id) or SettlementRecord(
        batch.batch_id, batch.artifact_id, chain.name, chain.chain_id
    )
    status = _status(chain, batch.batch_id)
    if status == BatchStatus.NONE:
        _check_domain(batch, chain)
        if order is None:
            flag = "" if chain.kind == "devnet" else f" --chain {chain.name}"
            job = shlex.quote(batch.manifest.job)
            raise SettlementError(
                f"batch {batch.batch_id} is not committed yet and committing needs the "
                "requester's signed job order; the requester runs `ogkit order new --model "
                f"{batch.model_id} --commitment {batch.manifest.dataset_id}:{batch.row_count} "
                f"--job {job} --node {node.address} --key REQUESTER{flag}` and gives you the "
                f"file, then run `ogkit settle ARTIFACT --order order.json{flag}`"
            )
        check_order_matches(
            order,
            model_id=batch.model_id,
            dataset_id=batch.manifest.dataset_id,
            requester=batch.claim.requester,
            job=batch.manifest.job,
            row_count=batch.row_count,
            chain_id=chain.chain_id,
            verifying_contract=settlement.address,
            node=node.address,
            now=chain.block_timestamp(),
        )
        if data_checks is not None:
            from ogkit.checks import check_records, enforce

            enforce(check_records(batch), data_checks)
        if record.status not in ("new", "committing"):
            log.warning(
                "journal says %s is %s but the chain does not know it (chain reset?); "
                "committing again",
                batch.batch_id,
                record.status,
            )
        record.status = "committing"
        journal.save(record)  # intent first: a crash after sending is reconciled from chain
        try:
            receipt = chain.transact(
                settlement.functions.commitBatch(
                    order.order.as_tuple(),
                    _b32(order.signature),
                    _claim_tuple(batch),
                    _b32(batch.signature),
                    _b32(_execution(batch)),
                    _b32(batch.artifact_id),
                ),
                node,
            )
        except SettlementError as exc:
            raise _commit_error(exc, batch, chain) from None
        record.commit_tx = "0x" + bytes(receipt["transactionHash"]).hex()
        record.commit_block = int(receipt["blockNumber"])
        status = BatchStatus.PENDING
        log.info("committed batch %s in block %d", batch.batch_id, record.commit_block)
    found = onchain_batch(chain, batch.batch_id)
    if found is None:  # pragma: no cover - the status said it is there
        raise SettlementError(f"batch {batch.batch_id} vanished from {chain.name}")
    check_committed_is_ours(batch, found, node.address)
    if record.commit_block is None:
        # Committed by an earlier run that crashed before writing it down: take it from chain.
        record.commit_block = found.block
    _sync(record, status)

    if finalize and status == BatchStatus.PENDING:
        chosen = finalize_verdicts(
            chain,
            found,
            [*verdicts, *load_verdicts(batch.store, batch.batch_id),
             *chain_verdicts(chain, batch.batch_id)],
        )  # fmt: skip
        fn = settlement.functions.finalize(
            _b32(batch.batch_id), found.as_tuple, [v.compact() for v in chosen]
        )
        try:
            chain.call(fn)  # a dry run: not yet finalisable is a state, not an error
        except SettlementError as exc:
            record.waiting_for = exc.reason or str(exc)
            if expire and _expire(chain, found, node, record):
                status = BatchStatus.REFUNDED
                _sync(record, status)
        else:
            receipt = chain.transact(fn, node)
            record.finalize_tx = "0x" + bytes(receipt["transactionHash"]).hex()
            record.finalize_block = int(receipt["blockNumber"])
            record.waiting_for = ""
            record.verdicts = {v.verifier: v.signature for v in chosen}
            status = BatchStatus.FINALIZED
            _sync(record, status)
    if status in FINAL:
        record.waiting_for = ""
    journal.save(record)
    return record


MAX_FINALIZE_VERDICTS = 64
"""At most this many verdicts go into one ``finalize`` (the heaviest): its gas grows with
each verdict passed (about 15k), and anyone can sign and publish verdicts."""


def finalize_verdicts(
    chain: ChainClient, found: OnChainBatch, verdicts: Iterable[SignedVerdict]
) -> list[SignedVerdict]:
    """The pass verdicts ``finalize`` should get: valid ones over the committed claim
    (:func:`~ogkit.verdict.quorum_verdicts`) whose signer weighs something at the batch's
    snapshot block: keys without verifier stake, whatever they publish, are dropped; the
    :data:`MAX_FINALIZE_VERDICTS` heaviest are kept, sorted by address."""
    chosen = quorum_verdicts(
        verdicts,
        batch_id=found.batch_id,
        claim_digest=found.record["claimDigest"],
        domain=claim_domain(chain),
    )
    if not chosen:
        return []
    nodes = chain.contract("NodeRegistry")
    weights, _ = chain.call(
        nodes.functions.verifierWeights(
            [v.verifier for v in chosen], int(found.record["snapshotBlock"])
        )
    )
    weighed = [(int(w), v) for w, v in zip(weights, chosen, strict=True) if int(w) > 0]
    weighed.sort(key=lambda pair: -pair[0])
    kept = [v for _, v in weighed[:MAX_FINALIZE_VERDICTS]]
    return sorted(kept, key=lambda v: int(v.verifier, 16))


def _commit_error(exc: SettlementError, batch: AttestedBatch, chain: ChainClient) -> Exception:
    """A failed commit, with the command that fixes it where ogkit has one."""
    reason = exc.reason or ""
    if not reason.startswith("ERC20InsufficientAllowance"):
        return exc
    found = re.search(r"needed=(\d+)", reason)
    needed = int(found.group(1)) if found else 0
    # The whole OPG at or above what is needed, so the command reads as an amount.
    amount = f"{max(1, -(-needed // OPG_UNIT))}opg"
    flag = "" if chain.kind == "devnet" else f" --chain {chain.name}"
    return SettlementError(
        f"{exc}: requester {batch.claim.requester} has not allowed the settlement contract to "
        f"escrow the batch's {format_opg(needed)} OPG; run `ogkit settle allow --key REQUESTER "
        f"--amount {amount}{flag}` with the requester's key (REQUESTER), then settle again",
        reason=exc.reason,
        tx_hash=exc.tx_hash,
    )


def _expire(
    chain: ChainClient, found: OnChainBatch, sender: Signer, record: SettlementRecord
) -> bool:
    """Send ``expire(batchId, record)`` if a dry run says it would succeed; True if sent."""
    settlement = chain.contract("InferenceSettlement")
    fn = settlement.functions.expire(_b32(found.batch_id), found.as_tuple)
    try:
        chain.call(fn)
    except SettlementError:
        return False  # too early, finalised meanwhile or a dispute is open: waiting_for says
    receipt = chain.transact(fn, sender)
    record.expire_tx = "0x" + bytes(receipt["transactionHash"]).hex()
    record.expire_block = int(receipt["blockNumber"])
    refunds = chain.events(
        "InferenceSettlement",
        "BatchRefunded",
        record.expire_block,
        record.expire_block,
        argument_filters={"batchId": _b32(found.batch_id)},
    )
    record.refunded = sum(int(e["args"]["amount"]) for e in refunds)
    log.info(
        "expired batch %s without quorum; requester refunded %s OPG",
        found.batch_id,
        format_opg(record.refunded),
    )
    return True


# -- where a batch stands ----------------------------------------------------------------
def format_opg(units: int) -> str:
    """OPG base units as decimal OPG with thousands separators (``1,234.5``)."""
    whole, frac = divmod(int(units), OPG_UNIT)
    text = f"{whole:,}"
    if frac:
        text += ("." + f"{frac:018d}").rstrip("0")
    return text


def _utc(epoch: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(int(epoch), UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _share(bps: int) -> str:
    return "2/3" if bps == 6667 else f"{bps / 100:g}%"


@dataclass(frozen=True)
class SettlementProgress:
    """Where one batch stands on chain, what it waits for (in words) and the command that
    moves it (``next_command``; empty when the batch is final or only time moves it)."""

    batch_id: str
    status: str  # none | pending | disputed | finalized | slashed | refunded
    window_ends_at: int | None  # epoch seconds of the chain's clock
    window_open: bool
    yes_stake: int  # OPG base units of pass attestations
    verifier_stake: int  # total active verifier stake (as recorded at the last attestation)
    quorum_bps: int
    quorum_reached: bool
    waiting_for: str
    next_command: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def settlement_progress(
    chain: ChainClient,
    batch_id: str,
    artifact_id: str | None = None,
    *,
    verdicts: Iterable[SignedVerdict] = (),
    store: ContentStore | None = None,
) -> SettlementProgress:
    """Read ``batch_id``'s settlement from ``chain`` and say what it waits for: the
    challenge window (closing at a UTC time), the verifier quorum (X of Y OPG of verifier
    stake signed pass, needs 2/3: verdicts given, in ``store`` or published on chain), a
    dispute, or nothing; and the ``ogkit`` command that moves it."""
    settlement = chain.contract("InferenceSettlement")
    target = artifact_id or batch_id
    status = _status(chain, batch_id)
    quorum_bps = int(chain.call(settlement.functions.quorumBps()))
    found = onchain_batch(chain, batch_id) if status != BatchStatus.NONE else None
    if found is None:
        return SettlementProgress(
            batch_id, "none", None, False, 0, 0, quorum_bps, False,
            f"not committed on {chain.name}", f"ogkit settle {target} --order ORDER",
        )  # fmt: skip
    window = int(chain.call(settlement.functions.challengeWindow()))
    # a rejected dispute restarts the window from its close (a void refunds the batch)
    reopened_at = int(chain.call(settlement.functions.stateOf(_b32(batch_id)))[2])
    ends_at = (reopened_at or int(found.record["committedAt"])) + window
    now = chain.block_timestamp()
    pool = [*verdicts, *chain_verdicts(chain, batch_id)]
    if store is not None:
        pool += load_verdicts(store, batch_id)
    chosen = quorum_verdicts(
        pool, batch_id=batch_id, claim_digest=found.record["claimDigest"],
        domain=claim_domain(chain),
    )  # fmt: skip
    nodes = chain.contract("NodeRegistry")
    weights, total = chain.call(
        nodes.functions.verifierWeights(
            [v.verifier for v in chosen], int(found.record["snapshotBlock"])
        )
    )
    yes, total = sum(int(w) for w in weights), int(total)
    reached = yes > 0 and yes * 10_000 >= quorum_bps * total
    window_open = now < ends_at
    quorum = (
        f"quorum: {format_opg(yes)} of {format_opg(total)} OPG verifier stake signed pass, "
        f"needs {_share(quorum_bps)}"
    )
    closes = f"challenge window closing at {_utc(ends_at)}"
    advance = (
        f"ogkit chain advance {ends_at - now + 1}"
        if chain.kind == "devnet"
        else f"wait until {_utc(ends_at)}, then ogkit settle {target}"
    )
    if status == BatchStatus.DISPUTED:
        dispute = int(chain.call(settlement.functions.stateOf(_b32(batch_id)))[1])
        waiting, command = f"dispute {dispute}: verifiers vote on the challenged row", ""
    elif status != BatchStatus.PENDING:
        waiting, command = f"nothing: {status.name.lower()}", ""
    elif window_open and not reached:
        waiting = f"{quorum} ({closes})"
        command = f"ogkit verify {target} --attest --key VERIFIER"
    elif window_open:
        waiting, command = f"{closes} ({quorum}: reached)", advance
    elif reached:
        waiting = "nothing: finalisable (window closed, quorum reached)"
        command = f"ogkit settle {target}"
    else:
        waiting = (
            f"verdicts: the challenge window closed at {_utc(ends_at)} without quorum "
            f"({quorum}); after a grace of as long again, settling expires it and refunds "
            "the requester"
        )
        command = f"ogkit settle {target}"
    return SettlementProgress(
        batch_id, status.name.lower(), ends_at, window_open, yes, total, quorum_bps,
        reached, waiting, command,
    )  # fmt: skip


def compare_with_chain(batch: AttestedBatch, found: OnChainBatch) -> list[str]:
    """Every on-chain field of the committed batch that differs from the artefact, in
    words; empty when the chain committed exactly this artefact's claim, dataset
    commitment, job, execution and artefact id."""
    from ogkit.crypto.keccak import keccak256

    m = batch.manifest
    rec, det = found.record, found.details
    expected = {
        "claim digest": (rec["claimDigest"], claim_digest(batch)),
        "batch root": (rec["batchRoot"], batch.batch_root),
        "row count": (rec["rowCount"], batch.row_count),
        "requester": (rec["requester"], batch.claim.requester),
        "model id": (rec["modelId"], batch.model_id),
        "runtime id": (rec["runtimeId"], batch.runtime_id),
        "attester": (det["attester"], batch.claim.attester),
        "claim timestamp": (det["claimTimestamp"], batch.claim.timestamp),
        "dataset commitment": (det["datasetId"], m.dataset_id),
        "job hash": (det["jobHash"], "0x" + keccak256(m.job.encode()).hex()),
        "execution hash": (det["executionHash"], _execution(batch)),
        "artefact id": (det["artifactId"], batch.artifact_id),
    }
    out = []
    for name, (chain_value, artefact_value) in expected.items():
        if str(chain_value).lower() != str(artefact_value).lower():
            out.append(f"{name}: chain has {chain_value}, the artefact {artefact_value}")
    return out


def attest_batch(
    chain: ChainClient,
    batch: AttestedBatch,
    *,
    passed: bool,
    verifier: Signer,
    journal: SettlementJournal | None = None,
    reason: str = "",
    publish: bool = False,
) -> SignedVerdict:
    """A verifier's verdict on ``batch`` as committed on ``chain``: every on-chain field
    is compared with the artefact first (any difference makes the verdict fail, whatever
    ``passed`` says), then the verdict is signed over the committed claim digest and
    written to the batch's store (``verdicts/<batch id>/<verifier>.json``); with
    ``publish`` it is also published on chain (``publishVerdict``, an event)."""
    journal = journal or SettlementJournal(chain.chain_id)
    record = journal.load(batch.batch_id) or SettlementRecord(
        batch.batch_id, batch.artifact_id, chain.name, chain.chain_id
    )
    found = onchain_batch(chain, batch.batch_id)
    if found is None:
        raise SettlementError(
            f"batch {batch.batch_id} is not committed on {chain.name}; "
            "run `ogkit settle` for it first"
        )
    differences = compare_with_chain(batch, found)
    if differences:
        passed = False
        reason = "the chain committed something else: " + "; ".join(differences)
        log.warning("batch %s: %s", batch.batch_id, reason)
    verdict = sign_verdict(
        verifier,
        claim_domain(chain),
        batch.batch_id,
        found.record["claimDigest"],
        passed,
        reason=reason,
    )
    where = store_verdict(batch.store, verdict)
    record.attestations[verifier.address] = where
    already = publish and any(
        v.verifier.lower() == verifier.address.lower() and v.passed == passed
        for v in chain_verdicts(chain, batch.batch_id)
    )
    if publish and not already:  # a re-run does not publish (and pay for) the same verdict
        settlement = chain.contract("InferenceSettlement")
        receipt = chain.transact(
            settlement.functions.publishVerdict(
                _b32(batch.batch_id), found.as_tuple, passed, _b32(verdict.signature)
            ),
            verifier,
        )
        record.attestations[verifier.address] = "0x" + bytes(receipt["transactionHash"]).hex()
    _sync(record, _status(chain, batch.batch_id))
    journal.save(record)
    return verdict


CHALLENGE_GAS = 1_000_000
"""Gas limit of a challenge's reveal, sent without an estimate (see :func:`challenge_row`)."""


def challenge_row(
    chain: ChainClient,
    batch: AttestedBatch,
    row_index: int,
    *,
    challenger: Signer,
    model_bytes: bytes | None = None,
) -> int:
    """Challenge one row: re-run the model on its inputs and submit the leaf's values, its
    proof and the re-executed output hash as evidence, commit-then-reveal (two
    transactions, so nobody can copy the challenge from the mempool). Returns the dispute
    id. The challenger posts the contract's bond (its OPG allowance is raised for it)."""
    from ogkit.crypto.encoding import tensor_row_hashes
    from ogkit.load import load_model_bytes, reexecute

    found = onchain_batch(chain, batch.batch_id)
    if found is None:
        raise SettlementError(f"batch {batch.batch_id} is not committed on {chain.name}")
    receipt = batch.receipt(row_index)
    try:
        part = batch.records(int(receipt["partition"]["index"]))
    except InputsUnavailableError as exc:
        # Nothing to re-run: the node did not keep the batch's inputs (spec §6). Verifiers
        # uphold such a dispute; the evidence is the zero hash, no output at all.
        log.warning("challenging row %d of %s without re-execution: %s", row_index,
                    batch.batch_id, exc)  # fmt: skip
        fresh_hash = bytes(32)
    else:
        i = int(list(part.row_index).index(row_index))
        model = load_model_bytes(model_bytes or batch.store.get("models", batch.model_id))
        outputs = reexecute(model, part.inputs, [i], batch_size=batch.batch_size)
        fresh_hash = bytes(tensor_row_hashes(outputs)[0])
    settlement = chain.contract("InferenceSettlement")
    bond = chain.call(settlement.functions.challengeBond())
    ensure_allowance(chain, challenger, settlement.address, bond)
    salt = secrets.token_bytes(32)
    key = _b32(batch.batch_id)
    commitment = chain.call(
        settlement.functions.challengeCommitment(
            challenger.address, key, row_index, fresh_hash, salt
        )
    )
    chain.transact(settlement.functions.commitChallenge(commitment), challenger)
    values = receipt["leaf_values"]
    tx = chain.transact(
        settlement.functions.challenge(
            key,
            found.as_tuple,
            (row_index, _b32(values["inputHash"]), _b32(values["outputHash"]), fresh_hash, salt),
            [_b32(p) for p in receipt["proof"]],
        ),
        challenger,
        # No estimate: a node estimates against its latest block, the one the commit is in,
        # where the reveal must revert (ChallengeNotCommitted); it is mined in a later one.
        gas=CHALLENGE_GAS,
    )
    log.info(
        "challenged row %d of %s in tx %s",
        row_index,
        batch.batch_id,
        bytes(tx["transactionHash"]).hex(),
    )
    return int(chain.call(settlement.functions.stateOf(key))[1])


def vote_dispute(chain: ChainClient, batch_id: str, *, upheld: bool, verifier: Signer) -> None:
    """A verifier's vote on the open dispute of ``batch_id``."""
    settlement = chain.contract("InferenceSettlement")
    found = onchain_batch(chain, batch_id)
    if found is None:
        raise SettlementError(f"batch {batch_id} is not committed on {chain.name}")
    status, dispute_id, _ = chain.call(settlement.functions.stateOf(_b32(batch_id)))
    if BatchStatus(status) != BatchStatus.DISPUTED:
        raise SettlementError(f"batch {batch_id} has no open dispute (it is {status})")
    chain.transact(
        settlement.functions.voteDispute(int(dispute_id), found.as_tuple, upheld), verifier
    )
