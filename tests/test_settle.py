"""The settle step on a real (in-process) EVM: commit through the requester's signed order,
verdicts signed over the committed claim, finalise, pull payments, expiry after the grace,
hijacks, resume."""

from __future__ import annotations

import pytest

from ogkit.attest import execution_hash, make_attester
from ogkit.chain.bindings import BatchStatus
from ogkit.chain.connection import connect
from ogkit.chain.records import onchain_batch, record_tuple
from ogkit.errors import OrderError, SettlementError
from ogkit.hub import Hub
from ogkit.infer import run_verified_inference
from ogkit.keys import KeyStore
from ogkit.order import new_order
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
from ogkit.verdict import load_verdicts
from ogkit.verify import Allowlist, VerifyPolicy, verify_batch

OPG = 10**18
ZERO_ADDRESS = "0x" + "00" * 20
WINDOW = 3600  # the default challenge window; expiry needs as long again after it


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


def _order(chain, batch, requester, *, node, owner, price=1000, **overrides):
    """The requester's signed order for exactly ``batch``: its model (paying ``owner``), its
    dataset commitment and job, at most ``price`` per row, for ``node`` (an address)."""
    order = new_order(
        requester=requester.address,
        model_id=batch.model_id,
        model_owner=owner,
        commitment=(batch.manifest.dataset_id, batch.row_count),
        job=batch.manifest.job,
        node=node,
        max_price_per_row=price,
        chain_id=chain.chain_id,
        verifying_contract=claim_domain(chain).verifying_contract,
        now=chain.block_timestamp(),
        **overrides,
    )
    return order.sign(requester)


def _status(chain, batch_id):
    settlement = chain.contract("InferenceSettlement")
    return BatchStatus(chain.call(settlement.functions.statusOf(bytes.fromhex(batch_id[2:]))))


def test_full_life_cycle_and_idempotent_resume(chain, actors, published, home):
    a = actors
    manifest = published.manifest("tab")
    assert register_model(chain, manifest, a["owner"]) is True
    assert register_model(chain, manifest, a["owner"]) is False
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
    assert bootstrap_measurement(chain, chain.deployer, batch.runtime_id) is False
    ensure_staked(
        chain,
        a["node"],
        role=ROLE_INFERENCE,
        stake=10_000 * OPG,
        attester=a["enclave"],
        measurement=batch.runtime_id,
    )
    for i, stake in ((1, 2000), (2, 3000), (3, 5000)):
        ensure_staked(chain, a[f"verifier-{i}"], role=ROLE_VERIFIER, stake=stake * OPG)
    settlement = chain.contract("InferenceSettlement")
    ensure_allowance(chain, a["requester"], settlement.address, 10**9 * OPG)

    journal = SettlementJournal(chain.chain_id, home)
    # Without the requester's order nothing is committed, and the error says how to get one.
    with pytest.raises(SettlementError, match="ogkit order new --model") as raised:
        settle(batch, chain, node=a["node"], journal=journal)
    assert f"--commitment {batch.manifest.dataset_id}:{batch.row_count}" in str(raised.value)
    assert f"--node {a['node'].address} --key REQUESTER --chain embedded`" in str(raised.value)
    assert _status(chain, batch.batch_id) == BatchStatus.NONE

    order = _order(chain, batch, a["requester"], node=a["node"].address, owner=manifest.owner)
    before = {k: _balance(chain, s.address) for k, s in a.items()}
    record = settle(batch, chain, node=a["node"], order=order, journal=journal)
    assert record.status == "pending" and record.commit_tx
    assert "ChallengeWindowOpen" in record.waiting_for
    assert chain.call(settlement.functions.nonceUsed(order.order.requester, order.order.nonce))
    found = onchain_batch(chain, batch.batch_id)
    assert found.details["orderDigest"] == order.order.digest()
    assert found.record["modelOwner"] == manifest.owner

    allow = Allowlist().approve(enclave.address, [batch.runtime_id])
    for i in (1, 2, 3):
        verdict = verify_batch(
            batch,
            VerifyPolicy(allowlist=allow),
            hub=published,
            dataset=sample_data_path("tabular"),
            progress=False,
        )
        assert verdict.passed
        signed = attest_batch(
            chain, batch, passed=verdict.passed, verifier=a[f"verifier-{i}"], journal=journal
        )
        assert signed.passed and signed.valid()
        assert signed.verifier == a[f"verifier-{i}"].address
        assert signed.claim_digest == found.record["claimDigest"]
    # The verdicts are in the batch's store, where the finaliser collects them.
    stored = load_verdicts(batch.store, batch.batch_id)
    assert sorted(v.verifier for v in stored) == sorted(
        a[f"verifier-{i}"].address for i in (1, 2, 3)
    )
    assert chain.events("InferenceSettlement", "VerdictPublished") == []  # none published
    record = settle(batch, chain, node=a["node"], journal=journal)
    assert record.status == "pending" and "ChallengeWindowOpen" in record.waiting_for
    chain.increase_time(WINDOW + 1)
    record = settle(batch, chain, node=a["node"], journal=journal)
    assert record.status == "finalized" and record.finalize_tx
    assert set(record.verdicts) == {a[f"verifier-{i}"].address for i in (1, 2, 3)}

    # Pull payments: the escrow left the requester at commit; the owner is owed the model
    # payment, and the node's and verifiers' fees wait to be paid into their stake pools.
    payment = manifest.price_per_inference * batch.row_count  # 1000 × 2000
    node_fee, verifier_fee = payment // 10, payment // 20
    shares = [verifier_fee * s // 10_000 for s in (2000, 3000, 5000)]
    after = {k: _balance(chain, s.address) for k, s in a.items()}
    assert before["requester"] - after["requester"] == payment + node_fee + verifier_fee
    assert after["owner"] == before["owner"] and after["node"] == before["node"]
    assert chain.call(settlement.functions.owed(manifest.owner)) == (
        payment + verifier_fee - sum(shares)
    )
    assert chain.call(settlement.functions.nodeFees(a["node"].address)) == node_fee
    for i, share in zip((1, 2, 3), shares, strict=True):
        assert chain.call(settlement.functions.nodeFees(a[f"verifier-{i}"].address)) == share
    chain.transact(settlement.functions.withdraw(), a["owner"])
    assert _balance(chain, a["owner"].address) - before["owner"] == payment
    assert chain.call(settlement.functions.owed(manifest.owner)) == 0
    with pytest.raises(SettlementError, match="NothingToClaim"):
        chain.transact(settlement.functions.withdraw(), a["owner"])
    registry = chain.contract("NodeRegistry")
    staked = chain.call(registry.functions.getNode(a["node"].address))[3]
    chain.transact(settlement.functions.claimNodeFees(a["node"].address), a["verifier-1"])
    assert chain.call(registry.functions.getNode(a["node"].address))[3] - staked == node_fee
    assert chain.call(settlement.functions.nodeFees(a["node"].address)) == 0

    # Re-running changes nothing: the chain says finalised, no transaction is sent.
    block = chain.block_number()
    again = settle(batch, chain, node=a["node"], order=order, journal=journal)
    assert again.status == "finalized" and chain.block_number() == block
    assert len(chain.events("InferenceSettlement", "BatchCommitted")) == 1
    assert len(chain.events("InferenceSettlement", "BatchFinalized")) == 1
    assert journal.load(batch.batch_id).finalize_tx == record.finalize_tx

    # Receipts from the verified-inference step verify on-chain; altered ones do not.
    key = bytes.fromhex(batch.batch_id[2:])
    for row in (0, 1234, 1999):
        receipt = batch.receipt(row)
        values = receipt["leaf_values"]
        input_hash = bytes.fromhex(values["inputHash"][2:])
        output_hash = bytes.fromhex(values["outputHash"][2:])
        proof = [bytes.fromhex(p[2:]) for p in receipt["proof"]]

        def check(r=row, i=input_hash, o=output_hash, p=proof, rec=found.as_tuple):
            return tuple(chain.call(settlement.functions.verifyReceipt(key, rec, r, i, o, p)))

        assert check() == (True, BatchStatus.FINALIZED)
        assert check(o=bytes([output_hash[0] ^ 1]) + output_hash[1:])[0] is False
        assert check(p=[proof[0][::-1], *proof[1:]])[0] is False
        assert check(r=(row + 1) % batch.row_count)[0] is False
        other = dict(found.record, price=found.record["price"] + 1)
        assert check(rec=record_tuple(other))[0] is False  # not the committed record


@pytest.fixture
def committable(chain, actors, published):
    """A batch signed for ``chain``, its model registered and its node staked (no verifiers),
    and the requester's order for it naming the node."""
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
    manifest = published.manifest("tab")
    prepare_dev_settlement(
        chain,
        deployer=chain.deployer,
        manifest=manifest,
        runtime_id=batch.runtime_id,
        owner=actors["owner"],
        node=actors["node"],
        attester=actors["enclave"],
        requester=actors["requester"],
        verifiers=[],
        verifier_stakes=(),
    )
    order = _order(
        chain, batch, actors["requester"], node=actors["node"].address, owner=manifest.owner
    )
    return batch, order


def test_crash_after_commit_is_reconciled_from_chain(chain, actors, committable, home):
    a, (batch, order) = actors, committable
    journal = SettlementJournal(chain.chain_id, home)
    settle(batch, chain, node=a["node"], order=order, journal=journal, finalize=False)
    # Simulate a crash between sending the commit and writing the journal down.
    path = journal.folder / f"{batch.batch_id}.json"
    path.unlink()
    record = settle(batch, chain, node=a["node"], order=order, journal=journal)
    assert record.status == "pending" and record.commit_block is not None
    assert len(chain.events("InferenceSettlement", "BatchCommitted")) == 1
    # Resuming needs no order any more: the chain knows the batch.
    assert settle(batch, chain, node=a["node"], journal=journal).status == "pending"
    # Window over but no verifier signed: not finalisable, and the record says why.
    chain.increase_time(WINDOW + 1)
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


def test_an_order_that_does_not_authorise_this_batch_is_refused_before_sending(
    chain, actors, committable, published
):
    a, (batch, order) = actors, committable
    owner = published.manifest("tab").owner
    node = a["node"].address
    block = chain.block_number()
    good = dict(
        requester=a["requester"].address,
        model_id=batch.model_id,
        model_owner=owner,
        commitment=(batch.manifest.dataset_id, batch.row_count),
        job=batch.manifest.job,
        node=node,
        max_price_per_row=1000,
        chain_id=chain.chain_id,
        verifying_contract=claim_domain(chain).verifying_contract,
        now=chain.block_timestamp(),
    )
    refusals = [
        ("node", dict(node=a["verifier-1"].address)),
        ("job", dict(job="another job")),
        ("dataset_id", dict(commitment=("0x" + "ab" * 32, batch.row_count))),
        ("model_id", dict(model_id="0x" + "cd" * 32)),
        ("max_rows", dict(commitment=(batch.manifest.dataset_id, batch.row_count - 1))),
    ]
    for field, change in refusals:
        wrong = new_order(**{**good, **change}).sign(a["requester"])
        with pytest.raises(OrderError) as raised:
            settle(batch, chain, node=a["node"], order=wrong)
        assert raised.value.field == field, (field, raised.value)
    # An order the requester did not sign is refused too.
    from dataclasses import replace

    forged = replace(order, order=replace(order.order, max_price_per_row=10**30))
    with pytest.raises(Exception, match="not by its requester"):
        settle(batch, chain, node=a["node"], order=forged)
    assert chain.block_number() == block, "nothing was sent"
    assert _status(chain, batch.batch_id) == BatchStatus.NONE


def test_records_that_fail_their_checks_are_not_committed(chain, actors, committable):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ogkit.checks import DataCheckFailed, DataCheckPolicy

    a, (batch, order) = actors, committable
    path = batch.store.path(batch.partitions[1].path)
    table = pq.read_table(path)
    pq.write_table(pa.concat_tables([table, table.slice(4, 1)]), path)  # row 504 twice
    # The records suite checks outputs; altered records cannot be checked at all.
    with pytest.raises(DataCheckFailed, match=r"partition=1.*altered after it was attested"):
        settle(batch, chain, node=a["node"], order=order, data_checks=DataCheckPolicy())
    assert _status(chain, batch.batch_id) == BatchStatus.NONE


def test_inference_for_a_chain_after_a_chainless_run_is_another_batch(
    chain, actors, published, home
):
    """`ogkit infer` then `ogkit infer --chain …` on the same data: the second run signs a
    new batch for the chain's settlement contract (it does not return the first), which
    then commits."""
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
    # the same rows give the same leaves (a leaf names no batch, docs/spec.md §3.1): the
    # signed claims, of two batch ids, tell the batches apart
    assert signed.batch_root == chainless.batch_root
    assert signed.claim.batch_id != chainless.claim.batch_id
    assert signed.domain == claim_domain(chain)
    assert signed.manifest.run_stats["resumed_partitions"] == 0
    # Each run again returns its own batch.
    again = run_verified_inference("tab", sample_data_path("tabular"), **common)
    assert again.artifact_id == chainless.artifact_id
    manifest = published.manifest("tab")
    prepare_dev_settlement(
        chain,
        deployer=chain.deployer,
        manifest=manifest,
        runtime_id=signed.runtime_id,
        owner=actors["owner"],
        node=actors["node"],
        attester=actors["enclave"],
        requester=actors["requester"],
        verifiers=[],
        verifier_stakes=(),
    )
    order = _order(
        chain, signed, actors["requester"], node=actors["node"].address, owner=manifest.owner
    )
    # The order speaks for the batch the chain signed for, not the chainless one.
    execution = execution_hash(signed.manifest.execution())
    assert order.order.batch_id(execution) == signed.batch_id
    record = settle(
        signed,
        chain,
        node=actors["node"],
        order=order,
        journal=SettlementJournal(chain.chain_id, home),
    )
    assert record.status == "pending" and record.commit_tx


def test_progress_names_the_window_the_quorum_and_the_next_command(chain, actors, committable):
    a, (batch, order) = actors, committable
    # Weights are stake at the block before the commit: stake first.
    ensure_staked(chain, a["verifier-1"], role=ROLE_VERIFIER, stake=2_000 * OPG)
    ensure_staked(chain, a["verifier-2"], role=ROLE_VERIFIER, stake=5_000 * OPG)
    unknown = settlement_progress(chain, batch.batch_id, batch.artifact_id)
    assert unknown.status == "none"
    assert unknown.next_command == f"ogkit settle {batch.artifact_id} --order ORDER"
    settle(batch, chain, node=a["node"], order=order)
    p = settlement_progress(chain, batch.batch_id, batch.artifact_id, store=batch.store)
    assert p.status == "pending" and p.window_open and not p.quorum_reached
    assert "quorum: 0 of 7,000 OPG verifier stake signed pass, needs 2/3" in p.waiting_for
    assert "challenge window closing at " in p.waiting_for and " UTC" in p.waiting_for
    assert p.next_command == f"ogkit verify {batch.artifact_id} --attest --key VERIFIER"
    attest_batch(chain, batch, passed=True, verifier=a["verifier-1"])
    p = settlement_progress(chain, batch.batch_id, batch.artifact_id, store=batch.store)
    assert "quorum: 2,000 of 7,000 OPG" in p.waiting_for and not p.quorum_reached
    # A verdict kept in the store only counts where the store is read.
    bare = settlement_progress(chain, batch.batch_id, batch.artifact_id)
    assert "quorum: 0 of 7,000 OPG" in bare.waiting_for
    # A published verdict is on chain: it counts without the store.
    attest_batch(chain, batch, passed=True, verifier=a["verifier-2"], publish=True)
    bare = settlement_progress(chain, batch.batch_id, batch.artifact_id)
    assert "quorum: 5,000 of 7,000 OPG" in bare.waiting_for and bare.quorum_reached
    p = settlement_progress(chain, batch.batch_id, batch.artifact_id, store=batch.store)
    assert p.quorum_reached and p.yes_stake == 7_000 * OPG == p.verifier_stake
    assert p.waiting_for.startswith("challenge window closing at")
    assert p.next_command.startswith("wait until ")  # the embedded chain: only time moves it
    # Stake added after the commit does not weigh: the snapshot is the block before it.
    ensure_staked(chain, a["verifier-3"], role=ROLE_VERIFIER, stake=50_000 * OPG)
    later = settlement_progress(chain, batch.batch_id, batch.artifact_id, store=batch.store)
    assert later.verifier_stake == 7_000 * OPG and later.quorum_reached
    chain.increase_time(WINDOW + 1)
    p = settlement_progress(chain, batch.batch_id, batch.artifact_id, store=batch.store)
    assert "finalisable" in p.waiting_for and p.next_command == f"ogkit settle {batch.artifact_id}"
    assert settle(batch, chain, node=a["node"]).status == "finalized"
    p = settlement_progress(chain, batch.batch_id, batch.artifact_id)
    assert p.status == "finalized" and p.next_command == ""


def test_window_closed_without_quorum_expires_after_the_grace_and_refunds_the_requester(
    chain, actors, committable, home
):
    a, (batch, order) = actors, committable
    ensure_staked(chain, a["verifier-1"], role=ROLE_VERIFIER, stake=2_000 * OPG)
    ensure_staked(chain, a["verifier-2"], role=ROLE_VERIFIER, stake=4_000 * OPG)
    journal = SettlementJournal(chain.chain_id, home)
    before = _balance(chain, a["requester"].address)
    record = settle(batch, chain, node=a["node"], order=order, journal=journal)
    escrow = before - _balance(chain, a["requester"].address)
    assert record.status == "pending" and escrow > 0
    attest_batch(chain, batch, passed=True, verifier=a["verifier-1"])  # 1/3 of the stake
    # Not expirable while the window is open.
    record = settle(batch, chain, node=a["node"], journal=journal)
    assert record.status == "pending" and record.expire_tx is None
    chain.increase_time(WINDOW + 1)
    p = settlement_progress(chain, batch.batch_id, batch.artifact_id, store=batch.store)
    assert p.waiting_for.startswith("verdicts: the challenge window closed at")
    assert "2,000 of 6,000 OPG" in p.waiting_for and "after a grace" in p.waiting_for
    assert p.next_command == f"ogkit settle {batch.artifact_id}"
    # Nor during the grace of one more window after it: the node may still finalise.
    record = settle(batch, chain, node=a["node"], journal=journal)
    assert record.status == "pending" and record.expire_tx is None
    assert "QuorumNotReached" in record.waiting_for
    settlement = chain.contract("InferenceSettlement")
    found = onchain_batch(chain, batch.batch_id)
    with pytest.raises(SettlementError, match="FinalizeGraceOpen"):
        chain.transact(
            settlement.functions.expire(bytes.fromhex(batch.batch_id[2:]), found.as_tuple),
            a["requester"],
        )
    assert _balance(chain, a["requester"].address) == before - escrow
    chain.increase_time(WINDOW)
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


def test_late_verdicts_finalise_during_the_grace(chain, actors, committable):
    a, (batch, order) = actors, committable
    ensure_staked(chain, a["verifier-1"], role=ROLE_VERIFIER, stake=2_000 * OPG)
    ensure_staked(chain, a["verifier-2"], role=ROLE_VERIFIER, stake=5_000 * OPG)
    settle(batch, chain, node=a["node"], order=order)
    chain.increase_time(WINDOW + 1)  # the window closed without a verdict
    assert settle(batch, chain, node=a["node"]).status == "pending"
    attest_batch(chain, batch, passed=True, verifier=a["verifier-2"])  # 5,000 of 7,000
    record = settle(batch, chain, node=a["node"])
    assert record.status == "finalized" and record.expire_tx is None
    assert list(record.verdicts) == [a["verifier-2"].address]


def test_a_fail_verdict_is_never_counted_and_a_mismatch_signs_fail(chain, actors, committable):
    """A fail verdict does not help the quorum (the same verifier's pass is dropped for it),
    and a verifier whose artefact is not what the chain committed signs fail whatever its
    re-verification said."""
    from ogkit.batch import AttestedBatch

    a, (batch, order) = actors, committable
    ensure_staked(chain, a["verifier-1"], role=ROLE_VERIFIER, stake=2_000 * OPG)
    ensure_staked(chain, a["verifier-2"], role=ROLE_VERIFIER, stake=4_000 * OPG)
    settle(batch, chain, node=a["node"], order=order)
    attest_batch(chain, batch, passed=True, verifier=a["verifier-2"], publish=True)
    fail = attest_batch(chain, batch, passed=False, verifier=a["verifier-2"], reason="row 7")
    assert not fail.passed and fail.reason == "row 7"
    p = settlement_progress(chain, batch.batch_id, store=batch.store)
    assert p.yes_stake == 0 and not p.quorum_reached

    # An artefact that is not the committed one (another artefact id): the verdict is fail.
    other = AttestedBatch(batch.manifest, "0x" + "ee" * 32, batch.store)
    signed = attest_batch(chain, other, passed=True, verifier=a["verifier-1"])
    assert not signed.passed
    assert "the chain committed something else" in signed.reason
    assert "artefact id: chain has" in signed.reason
    chain.increase_time(WINDOW + 1)
    record = settle(batch, chain, node=a["node"], expire=False)
    assert record.status == "pending" and "QuorumNotReached" in record.waiting_for


def test_a_hijacked_batch_is_reported_not_settled(
    chain, actors, committable, published, home, tabular_path, tmp_path
):
    """An order open to any node lets another staked node, with its own enclave, commit the
    same batch id first; the honest node's settle says it was hijacked and what to do."""
    a, (batch, _) = actors, committable
    keys = KeyStore(home)
    thief, thief_enclave = keys.ensure_dev_key("thief"), keys.ensure_dev_key("thief-enclave")
    for signer in (thief, thief_enclave):
        chain.fund(signer.address, eth=10**19, opg=100_000 * OPG)
    ensure_staked(
        chain,
        thief,
        role=ROLE_INFERENCE,
        stake=10_000 * OPG,
        attester=thief_enclave,
        measurement=batch.runtime_id,
    )
    # The thief runs the same job (same model, data, requester and geometry) on its own hub.
    hub = Hub(home=tmp_path / "thief-home")
    hub.publish(tabular_path, name="tab", version="1.0.0", price=1000, signer=a["owner"])
    stolen = run_verified_inference(
        "tab",
        sample_data_path("tabular"),
        attester=make_attester("software", signer=thief_enclave),
        requester=a["requester"].address,
        hub=hub,
        domain=claim_domain(chain),
        partition_rows=500,
        progress=False,
    )
    assert stolen.batch_id == batch.batch_id and stolen.claim.attester != batch.claim.attester
    owner = published.manifest("tab").owner
    # An order naming the honest node cannot be taken by the thief ...
    named = _order(chain, batch, a["requester"], node=a["node"].address, owner=owner)
    with pytest.raises(OrderError, match="names another node"):
        settle(stolen, chain, node=thief, order=named)
    assert _status(chain, batch.batch_id) == BatchStatus.NONE
    # ... but one open to any node can.
    open_order = _order(chain, batch, a["requester"], node=ZERO_ADDRESS, owner=owner)
    assert open_order.order.open_to_any_node
    assert settle(stolen, chain, node=thief, order=open_order).status == "pending"
    with pytest.raises(SettlementError, match="hijacked") as raised:
        settle(batch, chain, node=a["node"], order=open_order)
    message = str(raised.value)
    assert thief.address in message and "ogkit order new --node" in message
    # Nothing is finalised for the honest node either, however often it runs.
    with pytest.raises(SettlementError, match="hijacked"):
        settle(batch, chain, node=a["node"])


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
