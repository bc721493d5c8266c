"""The main job on local defaults: what ``make demo`` runs.

Start the local devnet, publish the sample model (hub and ModelRegistry), stake an
inference node and three verifiers, run verified inference on a generated dataset on
a LocalCluster (its inputs checked against an expectation suite inferred from the
shipped sample), commit the batch once its records pass their checks, verify it with
three independent verifiers who attest on-chain, let the challenge window pass,
finalise, check a receipt off- and on-chain, and audit the settlement from chain
events and the store alone. Progress lines go to ``echo`` (the CLI passes ``print``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ogkit.attest import make_attester
from ogkit.audit import AuditReport, audit
from ogkit.batch import AttestedBatch
from ogkit.checks import DataCheckPolicy, InputSuite
from ogkit.compute import get_client
from ogkit.dataset import commit_dataset
from ogkit.errors import ModelNotFoundError
from ogkit.hub import Hub
from ogkit.infer import run_verified_inference
from ogkit.jobs.steps import top_up
from ogkit.keys import KeyStore
from ogkit.load import load_model
from ogkit.samples import make_tabular, sample_data_path, sample_model_path
from ogkit.verify import Allowlist, Verdict, VerifyPolicy, verify_batch, verify_receipt

OPG = 10**18

__all__ = ["DemoResult", "run_demo"]

log = logging.getLogger(__name__)

MODEL_NAME, MODEL_VERSION = "demo-tabular", "1.0.0"
PRICE = 10**15  # 0.001 OPG per inference


@dataclass
class DemoResult:
    batch: AttestedBatch
    verdicts: list[Verdict]
    settlement_status: str
    receipt_on_chain: bool
    audit: AuditReport

    @property
    def passed(self) -> bool:
        return (
            all(v.passed for v in self.verdicts)
            and self.settlement_status == "finalized"
            and self.receipt_on_chain
            and self.audit.passed
        )


def _demo_dataset(home: Path, rows: int) -> Path:
    path = home / "demo" / f"tabular-{rows}.parquet"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        make_tabular(rows, seed=7).write_parquet(tmp)
        tmp.replace(path)
    return path


def run_demo(
    *,
    home: Path,
    store: str | None = None,
    scheduler: str | None = None,
    rows: int = 100_000,
    workers: int = 2,
    chain: str = "devnet",
    devnet_port: int | None = None,
    anvil: str | None = None,
    echo: Callable[[str], None] = log.info,
) -> DemoResult:
    """Run the demo in ``home`` (keys, hub, devnet, journals) against ``chain``; the hub's
    store is ``store`` (default ``<home>/store``), the Dask cluster ``scheduler`` (default
    a LocalCluster of ``workers``), the devnet's port ``devnet_port`` and its ``anvil``
    binary (defaults: those of :class:`~ogkit.chain.devnet.Devnet`). The caller reads these
    from its settings."""
    from ogkit.chain.bindings import BatchStatus
    from ogkit.chain.connection import connect
    from ogkit.chain.records import onchain_batch
    from ogkit.order import new_order
    from ogkit.settle import (
        SettlementJournal,
        attest_batch,
        claim_domain,
        prepare_dev_settlement,
        settle,
    )

    home = Path(home)
    keys = KeyStore(home)
    names = ["owner", "enclave", "requester", "node", "verifier-1", "verifier-2", "verifier-3"]
    signers = {n: keys.ensure_dev_key(n) for n in names}
    verifiers = [signers[f"verifier-{i}"] for i in (1, 2, 3)]

    chain_client = connect(chain, home=home, port=devnet_port, anvil=anvil)
    top_up(
        chain_client, [s.address for s in signers.values()], eth=10 * 10**18, opg=1_000_000 * OPG
    )
    echo(
        f"[1/9] {chain_client.name} chain {chain_client.chain_id} at block "
        f"{chain_client.block_number()}; dev keys funded ({len(signers)} accounts)"
    )

    hub = Hub(store, home=home)
    try:
        manifest = hub.manifest(f"{MODEL_NAME}@{MODEL_VERSION}")
    except ModelNotFoundError:
        manifest = hub.publish(
            sample_model_path("tabular"),
            name=MODEL_NAME,
            version=MODEL_VERSION,
            price=PRICE,
            signer=signers["owner"],
            description="3-class tabular classifier (scikit-learn MLP via skl2onnx)",
            tags=["tabular", "demo"],
            license="Apache-2.0",
        )
    echo(
        f"[2/9] {manifest.ref} ({manifest.model_id[:18]}…) in the hub, "
        f"{manifest.price_per_inference / OPG} OPG per inference"
    )

    attester = make_attester("software", signer=signers["enclave"])
    model = load_model(manifest.ref, hub=hub)  # loaded once: its runtime id is the measurement
    runtime_id = model.runtime_id
    prepare_dev_settlement(
        chain_client,
        deployer=getattr(chain_client, "deployer", None),
        manifest=manifest,
        runtime_id=runtime_id,
        owner=signers["owner"],
        node=signers["node"],
        attester=signers["enclave"],
        requester=signers["requester"],
        verifiers=verifiers,
    )
    settlement = chain_client.contract("InferenceSettlement")
    echo(
        "[3/9] model in the ModelRegistry; node staked 10,000 OPG with its enclave bound to "
        "the runtime measurement; verifiers staked 2,000 / 3,000 / 5,000 OPG"
    )

    data = _demo_dataset(home, rows)
    # The requester commits to its data; the node must run exactly these rows.
    commitment = commit_dataset(data, model)
    # ... and signs a job order: this model and owner, these rows, this node, at most this
    # price; the settlement contract escrows its OPG only through such an order.
    order = new_order(
        requester=signers["requester"].address,
        model_id=manifest.model_id,
        model_owner=manifest.owner,
        commitment=commitment,
        job="demo",
        node=signers["node"].address,
        max_price_per_row=manifest.price_per_inference,
        chain_id=chain_client.chain_id,
        verifying_contract=settlement.address,
        now=chain_client.block_timestamp(),
    ).sign(signers["requester"])
    journal = SettlementJournal(chain_client.chain_id, home)
    with get_client(scheduler, n_workers=workers) as dask_client:
        echo(f"[4/9] verified inference on {rows:,} rows, {workers} Dask workers")
        batch = run_verified_inference(
            model,
            data,
            attester=attester,
            requester=signers["requester"].address,
            dask=dask_client,
            hub=hub,
            commitment=commitment,
            job="demo",
            domain=claim_domain(chain_client),
            input_suite=InputSuite.infer(sample_data_path("tabular"), margin=0.5),
            data_checks=DataCheckPolicy(block_settlement=True),
            progress=True,
        )
        stats = batch.manifest.run_stats
        echo(
            f"      artefact {batch.artifact_id[:18]}…  root {batch.batch_root[:18]}…  "
            f"{len(batch.partitions)} partitions in {stats['wall_seconds']:.1f}s"
        )
        checks = batch.manifest.data_checks
        echo(
            f"      data checks on the inputs: {'passed' if checks['passed'] else 'FAILED'} "
            f"({len(checks['failures'])} failure(s))"
        )
        record = settle(
            batch,
            chain_client,
            node=signers["node"],
            order=order,
            journal=journal,
            finalize=False,
            data_checks=DataCheckPolicy(block_settlement=True),
        )
        echo(f"[5/9] committed on chain in block {record.commit_block} ({record.status})")

        # Verifiers approve the enclave locally; on-chain the measurement was approved above.
        allowlist = Allowlist.load(home / "allowlist.json").approve(
            attester.address, [batch.runtime_id]
        )
        allowlist.save(home / "allowlist.json")
        verdicts = []
        for verifier in verifiers:
            verdict = verify_batch(
                batch,
                VerifyPolicy(sample_rate=0.01, allowlist=allowlist),
                hub=hub,
                dask=dask_client,
                dataset=data,
                progress=False,
            )
            verdicts.append(verdict)
            attest_batch(
                chain_client, batch, passed=verdict.passed, verifier=verifier, journal=journal
            )
            echo(f"[6/9] {verifier.name}: {verdict.summary()} — verdict signed over the claim")

    settled_before = record.status == "finalized"
    if record.status == "pending":
        window = int(chain_client.deployment.params.challenge_window)
        chain_client.increase_time(window + 1)
    owner_balance = chain_client.contract("OPGToken").functions.balanceOf(manifest.owner)
    before = chain_client.call(owner_balance)
    record = settle(batch, chain_client, node=signers["node"], journal=journal)
    if chain_client.call(settlement.functions.owed(manifest.owner)):
        chain_client.transact(settlement.functions.withdraw(), signers["owner"])
    paid = chain_client.call(owner_balance) - before
    if settled_before:
        echo(f"[7/9] settlement finalized in an earlier run (tx {record.finalize_tx})")
    else:
        waiting = f" (waiting: {record.waiting_for})" if record.waiting_for else ""
        echo(
            f"[7/9] settlement {record.status}; model owner paid {paid / OPG:,.3f} OPG "
            f"for {batch.row_count:,} inferences{waiting}"
        )

    row = rows // 2
    receipt = batch.receipt(row)
    check = verify_receipt(receipt, allowlist)
    found = onchain_batch(chain_client, batch.batch_id)
    on_chain = False
    if found is not None:
        included, status = chain_client.call(
            settlement.functions.verifyReceipt(
                bytes.fromhex(batch.batch_id[2:]),
                found.as_tuple,
                row,
                bytes.fromhex(receipt["leaf_values"]["inputHash"][2:]),
                bytes.fromhex(receipt["leaf_values"]["outputHash"][2:]),
                [bytes.fromhex(p[2:]) for p in receipt["proof"]],
            )
        )
        on_chain = bool(included) and BatchStatus(status) == BatchStatus.FINALIZED
    echo(
        f"[8/9] receipt for row {row}: off-chain {'valid' if check.ok else check.problems}, "
        f"on-chain verifyReceipt {on_chain}, {len(receipt['proof'])} proof steps"
    )
    report = audit(chain_client, hub.store, hub=hub, batch_ids=[batch.batch_id], sample_rate=0.01)
    echo(f"[9/9] audit from chain events and the store: {report.summary()}")
    return DemoResult(batch, verdicts, record.status, on_chain, report)
