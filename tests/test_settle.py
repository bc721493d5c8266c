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
    settlement_progress,
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
    record = settle(batch, chain, node=a["node"], journal=journal, expire=False)
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


def test_inference_for_a_chain_after_a_chainless_run_is_another_batch(
    chain, actors, published, home
):
    """`ogkit infer` then `ogkit infer --chain …` on the same data: the second run signs a
    new batch for the chain's settlement contract (it does not return the first), which
    then commits."""
    from ogkit.attest import make_attester

    enclave = make_attester("software", signer=actors["enclave"])
    common = dict(
        attester=enclave, requester=actors["requester"].address, hub=published, progress=False
    )
    chainless = run_verified_inference("tab", sample_data_path("tabular"), **common)
    with pytest.raises(SettlementError, match="ogkit infer --chain"):
        settle(chainless, chain, node=actors["node"])
    signed = run_verified_inference(
        "tab", sample_data_path("tabular"), domain=claim_domain(chain), **common
    )
    assert signed.batch_id != chainless.batch_id
    assert signed.artifact_id != chainless.artifact_id
    assert signed.batch_root != chainless.batch_root  # every leaf carries the batch id
    assert signed.domain == claim_domain(chain)
    assert signed.manifest.run_stats["resumed_partitions"] == 0
    # Each run again returns its own batch.
    again = run_verified_inference("tab", sample_data_path("tabular"), **common)
    assert again.artifact_id == chainless.artifact_id
    prepare_dev_settlement(
        chain,
        deployer=chain.deployer,
        manifest=published.manifest("tab"),
        runtime_id=signed.runtime_id,
        owner=actors["owner"],
        node=actors["node"],
        attester=enclave.address,
        requester=actors["requester"],
        verifiers=[],
        verifier_stakes=(),
    )
    record = settle(
        signed, chain, node=actors["node"], journal=SettlementJournal(chain.chain_id, home)
    )
    assert record.status == "pending" and record.commit_tx


def test_progress_names_the_window_the_quorum_and_the_next_command(chain, actors, committable):
    a, batch = actors, committable
    ensure_staked(chain, a["verifier-1"], role=ROLE_VERIFIER, stake=2_000 * OPG)
    ensure_staked(chain, a["verifier-2"], role=ROLE_VERIFIER, stake=4_000 * OPG)
    unknown = settlement_progress(chain, batch.batch_id, batch.artifact_id)
    assert unknown.status == "none" and unknown.next_command == f"ogkit settle {batch.artifact_id}"
    settle(batch, chain, node=a["node"])
    p = settlement_progress(chain, batch.batch_id, batch.artifact_id)
    assert p.status == "pending" and p.window_open and not p.quorum_reached
    assert "quorum: 0 of 6,000 OPG verifier stake attested pass, needs 2/3" in p.waiting_for
    assert "challenge window closing at " in p.waiting_for and " UTC" in p.waiting_for
    assert p.next_command == f"ogkit verify {batch.artifact_id} --attest --key VERIFIER"
    attest_batch(chain, batch, passed=True, verifier=a["verifier-1"])
    p = settlement_progress(chain, batch.batch_id, batch.artifact_id)
    assert "quorum: 2,000 of 6,000 OPG" in p.waiting_for and not p.quorum_reached
    attest_batch(chain, batch, passed=True, verifier=a["verifier-2"])
    p = settlement_progress(chain, batch.batch_id, batch.artifact_id)
    assert p.quorum_reached and p.waiting_for.startswith("challenge window closing at")
    assert p.next_command.startswith("wait until ")  # the embedded chain: only time moves it
    chain.increase_time(3601)
    p = settlement_progress(chain, batch.batch_id, batch.artifact_id)
    assert "finalisable" in p.waiting_for and p.next_command == f"ogkit settle {batch.artifact_id}"
    assert settle(batch, chain, node=a["node"]).status == "finalized"
    p = settlement_progress(chain, batch.batch_id, batch.artifact_id)
    assert p.status == "finalized" and p.next_command == ""


def test_window_closed_without_quorum_expires_and_refunds_the_requester(
    chain, actors, committable, home
):
    a, batch = actors, committable
    ensure_staked(chain, a["verifier-1"], role=ROLE_VERIFIER, stake=2_000 * OPG)
    ensure_staked(chain, a["verifier-2"], role=ROLE_VERIFIER, stake=4_000 * OPG)
    journal = SettlementJournal(chain.chain_id, home)
    before = _balance(chain, a["requester"].address)
    record = settle(batch, chain, node=a["node"], journal=journal)
    escrow = before - _balance(chain, a["requester"].address)
    assert record.status == "pending" and escrow > 0
    attest_batch(chain, batch, passed=True, verifier=a["verifier-1"])  # 1/3 of the stake
    # Not expirable while the window is open.
    record = settle(batch, chain, node=a["node"], journal=journal)
    assert record.status == "pending" and record.expire_tx is None
    chain.increase_time(3601)
    p = settlement_progress(chain, batch.batch_id, batch.artifact_id)
    assert p.waiting_for.startswith("expiry: the challenge window closed at")
    assert "2,000 of 6,000 OPG" in p.waiting_for
    assert p.next_command == f"ogkit settle {batch.artifact_id}"
    record = settle(batch, chain, node=a["node"], journal=journal)
    assert record.status == "refunded" and record.expire_tx and record.waiting_for == ""
    assert record.refunded == escrow
    assert _balance(chain, a["requester"].address) == before
    assert journal.load(batch.batch_id).refunded == escrow
    # Running it again sends nothing.
    block = chain.block_number()
    assert settle(batch, chain, node=a["node"], journal=journal).status == "refunded"
    assert chain.block_number() == block
    assert len(chain.events("InferenceSettlement", "BatchRefunded")) == 1
    assert settlement_progress(chain, batch.batch_id).next_command == ""


def test_an_unfunded_sender_is_told_to_run_chain_fund(chain):
    from eth_account import Account

    from ogkit.errors import ChainError
    from ogkit.keys import Signer

    broke = Signer("broke", Account.from_key("0x" + "42" * 32), dev=True)
    with pytest.raises(ChainError, match=f"ogkit chain fund {broke.address} --chain embedded"):
        chain.transfer_eth(broke, chain.deployer.address, 1)
    # With ETH but no OPG, a transfer names the faucet too (`--opg`).
    chain.fund(broke.address, eth=10**18)
    token = chain.contract("OPGToken")
    hint = f"ogkit chain fund {broke.address} --opg AMOUNT --chain embedded"
    with pytest.raises(SettlementError, match="ERC20InsufficientBalance") as raised:
        chain.transact(token.functions.transfer(chain.deployer.address, 1), broke)
    assert hint in str(raised.value)
