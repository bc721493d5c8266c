"""The settle step on a real (in-process) EVM: commit, attest, finalise, resume."""

from __future__ import annotations

import pytest

from ogkit.chain.connection import connect
from ogkit.errors import SettlementError
from ogkit.infer import run_verified_inference
from ogkit.keys import KeyStore
from ogkit.samples import sample_data_path
from ogkit.settle import (
    ROLE_INFERENCE,
    ROLE_VERIFIER,
    SettlementJournal,
    attest_batch,
    bootstrap_measurement,
    claim_domain,
    ensure_allowance,
    ensure_staked,
    prepare_dev_settlement,
    register_model,
    settle,
)
from ogkit.verify import Allowlist, VerifyPolicy, verify_batch

OPG = 10**18


@pytest.fixture(scope="module")
def module_chain():
    """One embedded chain (and deployment) for the whole module."""
    return connect("embedded")


@pytest.fixture
def chain(module_chain):
    """The module's chain, put back after each test: every test starts from the fresh
    deployment, as if it had a chain of its own."""
    snapshot = module_chain.snapshot()
    yield module_chain
    module_chain.revert(snapshot)


@pytest.fixture
def actors(home, chain):
    keys = KeyStore(home)
    names = ["owner", "enclave", "requester", "node", "verifier-1", "verifier-2", "verifier-3"]
    signers = {n: keys.ensure_dev_key(n) for n in names}
    for s in signers.values():
        chain.fund(s.address, eth=10**19, opg=100_000 * OPG)
    return signers


def _balance(chain, address):
    return chain.call(chain.contract("OPGToken").functions.balanceOf(address))


def test_full_life_cycle_and_idempotent_resume(chain, actors, published, home):
    a = actors
    manifest = published.manifest("tab")
    assert register_model(chain, manifest, a["owner"]) is True
    assert register_model(chain, manifest, a["owner"]) is False
    from ogkit.attest import make_attester

    enclave = make_attester("software", signer=a["enclave"])
    batch = run_verified_inference(
        "tab",
        sample_data_path("tabular"),
        attester=enclave,
        requester=a["requester"].address,
        hub=published,
        domain=claim_domain(chain),
        progress=False,
    )
    assert bootstrap_measurement(chain, chain.deployer, batch.runtime_id) is True
    ensure_staked(
        chain,
        a["node"],
        role=ROLE_INFERENCE,
        stake=10_000 * OPG,
        attester=enclave.address,
        measurement=batch.runtime_id,
    )
    for i, stake in ((1, 2000), (2, 3000), (3, 5000)):
        ensure_staked(chain, a[f"verifier-{i}"], role=ROLE_VERIFIER, stake=stake * OPG)
    settlement = chain.contract("InferenceSettlement")
    ensure_allowance(chain, a["requester"], settlement.address, 10**9 * OPG)

    journal = SettlementJournal(chain.chain_id, home)
    before = {k: _balance(chain, s.address) for k, s in a.items()}
    record = settle(batch, chain, node=a["node"], journal=journal)
    assert record.status == "pending" and record.commit_tx
    assert "ChallengeWindowOpen" in record.waiting_for

    allow = Allowlist().with_([enclave.address], [batch.runtime_id])
    for i in (1, 2, 3):
        verdict = verify_batch(
            batch,
            VerifyPolicy(allowlist=allow),
            hub=published,
            dataset=sample_data_path("tabular"),
            progress=False,
        )
        assert verdict.passed
        attest_batch(
            chain, batch, passed=verdict.passed, verifier=a[f"verifier-{i}"], journal=journal
        )
    record = settle(batch, chain, node=a["node"], journal=journal)
    assert record.status == "pending" and "ChallengeWindowOpen" in record.waiting_for
    chain.increase_time(3601)
    record = settle(batch, chain, node=a["node"], journal=journal)
    assert record.status == "finalized" and record.finalize_tx

    payment = manifest.price_per_inference * batch.row_count  # 1000 × 2000
    node_fee, verifier_fee = payment // 10, payment // 20
    after = {k: _balance(chain, s.address) for k, s in a.items()}
    assert after["owner"] - before["owner"] == payment
    assert after["node"] - before["node"] == node_fee
    shares = [verifier_fee * s // 10_000 for s in (2000, 3000, 5000)]
    for i, share in zip((1, 2, 3), shares, strict=True):
        assert after[f"verifier-{i}"] - before[f"verifier-{i}"] == share
    assert before["requester"] - after["requester"] == payment + node_fee + sum(shares)

    # Re-running changes nothing: the chain says finalised, no transaction is sent.
    block = chain.block_number()
    again = settle(batch, chain, node=a["node"], journal=journal)
    assert again.status == "finalized" and chain.block_number() == block
    assert len(chain.events("InferenceSettlement", "BatchCommitted")) == 1
    assert len(chain.events("InferenceSettlement", "BatchFinalized")) == 1
    assert journal.load(batch.batch_id).finalize_tx == record.finalize_tx

    # Receipts from the verified-inference step verify on-chain; altered ones do not.
    for row in (0, 1234, 1999):
        receipt = batch.receipt(row)
        leaf = bytes.fromhex(receipt["leaf"][2:])
        proof = [bytes.fromhex(p[2:]) for p in receipt["proof"]]
        batch_id = bytes.fromhex(batch.batch_id[2:])
        assert chain.call(settlement.functions.verifyReceipt(batch_id, leaf, proof)) is True
        bad_leaf = bytes([leaf[0] ^ 1]) + leaf[1:]
        assert chain.call(settlement.functions.verifyReceipt(batch_id, bad_leaf, proof)) is False
        bad_proof = [proof[0][::-1], *proof[1:]]
        assert chain.call(settlement.functions.verifyReceipt(batch_id, leaf, bad_proof)) is False


@pytest.fixture
def committable(chain, actors, published):
    """A batch signed for ``chain``, its model registered and its node staked (no verifiers)."""
    from ogkit.attest import make_attester

    enclave = make_attester("software", signer=actors["enclave"])
    batch = run_verified_inference(
        "tab",
        sample_data_path("tabular"),
        attester=enclave,
        requester=actors["requester"].address,
        hub=published,
        domain=claim_domain(chain),
        partition_rows=500,
        progress=False,
    )
    prepare_dev_settlement(
        chain,
        deployer=chain.deployer,
        manifest=published.manifest("tab"),
        runtime_id=batch.runtime_id,
        owner=actors["owner"],
        node=actors["node"],
        attester=enclave.address,
        requester=actors["requester"],
        verifiers=[],
        verifier_stakes=(),
    )
    return batch


def test_crash_after_commit_is_reconciled_from_chain(chain, actors, committable, home):
    a, batch = actors, committable
    journal = SettlementJournal(chain.chain_id, home)
    settle(batch, chain, node=a["node"], journal=journal, finalize=False)
    # Simulate a crash between sending the commit and writing the journal down.
    path = journal.folder / f"{batch.batch_id}.json"
    path.unlink()
    record = settle(batch, chain, node=a["node"], journal=journal)
    assert record.status == "pending" and record.commit_block is not None
    assert len(chain.events("InferenceSettlement", "BatchCommitted")) == 1
    # Window over but no verifier attested: not finalisable, and the record says why.
    chain.increase_time(3601)
    record = settle(batch, chain, node=a["node"], journal=journal)
    assert record.status == "pending" and "QuorumNotReached" in record.waiting_for


def test_batch_signed_for_another_chain_is_refused(chain, actors, published, enclave, requester):
    batch = run_verified_inference(
        "tab",
        sample_data_path("tabular"),
        attester=enclave,
        requester=requester,
        hub=published,
        progress=False,
    )
    with pytest.raises(SettlementError, match="was signed for chain 31337 / contract 0x0000"):
        settle(batch, chain, node=actors["node"])


def test_records_that_fail_their_checks_are_not_committed(chain, actors, committable):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ogkit.chain.bindings import BatchStatus
    from ogkit.checks import DataCheckFailed, DataCheckPolicy

    a, batch = actors, committable
    path = batch.store.path(batch.partitions[1].path)
    table = pq.read_table(path)
    pq.write_table(pa.concat_tables([table, table.slice(4, 1)]), path)  # row 504 twice
    # The records suite checks outputs; altered records cannot be checked at all.
    with pytest.raises(DataCheckFailed, match=r"partition=1.*altered after it was attested"):
        settle(batch, chain, node=a["node"], data_checks=DataCheckPolicy())
    status = chain.call(
        chain.contract("InferenceSettlement").functions.statusOf(bytes.fromhex(batch.batch_id[2:]))
    )
    assert BatchStatus(status) == BatchStatus.NONE
