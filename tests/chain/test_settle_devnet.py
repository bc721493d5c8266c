"""Settlement on the real anvil devnet: a chain killed mid-settlement, then restarted.

The batch is committed through the requester's signed order; verdicts live on chain
(published) and in the store. After a SIGKILL the journal resumes, re-running the same
commands commits nothing again, the batch is finalised and paid exactly once, and the
devnet keeps its state across restarts.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from ogkit.attest import execution_hash, make_attester
from ogkit.chain.devnet import Devnet
from ogkit.chain.records import onchain_batch
from ogkit.dataset import commit_dataset
from ogkit.infer import run_verified_inference
from ogkit.keys import KeyStore
from ogkit.load import load_model
from ogkit.order import new_order
from ogkit.samples import sample_data_path
from ogkit.settle import (
    SettlementJournal,
    attest_batch,
    claim_domain,
    ensure_allowance,
    prepare_dev_settlement,
    settle,
)
from ogkit.verdict import chain_verdicts, load_verdicts

pytestmark = pytest.mark.anvil
OPG = 10**18


@pytest.fixture
def devnet(home, devnet_port):
    net = Devnet(home, port=devnet_port)
    net.up()
    yield net
    net.down()


def test_killed_chain_mid_settlement_settles_exactly_once(devnet, home, published):
    client = devnet.client()
    keys = KeyStore(home)
    names = [
        "owner",
        "enclave",
        "requester",
        "node",
        "verifier-1",
        "verifier-2",
        "verifier-3",
        "delegator",
    ]
    s = {n: keys.ensure_dev_key(n) for n in names}
    devnet.fund_dev_accounts([x.address for x in s.values()], eth=10**19, opg=100_000 * OPG)
    manifest = published.manifest("tab")
    data = sample_data_path("tabular")
    model = load_model("tab", hub=published)
    settlement = client.contract("InferenceSettlement")

    # The requester commits to its data and signs an order for this model, node and price.
    commitment = commit_dataset(data, model)
    order = new_order(
        requester=s["requester"].address,
        model_id=manifest.model_id,
        model_owner=manifest.owner,
        commitment=commitment,
        job="default",
        node=s["node"].address,
        max_price_per_row=manifest.price_per_inference,
        chain_id=client.chain_id,
        verifying_contract=settlement.address,
        now=client.block_timestamp(),
    ).sign(s["requester"])
    enclave = make_attester("software", signer=s["enclave"])
    batch = run_verified_inference(
        model,
        data,
        attester=enclave,
        requester=s["requester"].address,
        hub=published,
        commitment=commitment,
        domain=claim_domain(client),
        progress=False,
    )
    assert order.order.batch_id(execution_hash(batch.manifest.execution())) == batch.batch_id
    prepare_dev_settlement(
        client,
        deployer=devnet.deployer(),
        manifest=manifest,
        runtime_id=batch.runtime_id,
        owner=s["owner"],
        node=s["node"],
        attester=s["enclave"],
        requester=s["requester"],
        verifiers=[s[f"verifier-{i}"] for i in (1, 2, 3)],
        verifier_stakes=(2_000 * OPG,) * 3,
    )
    registry = client.contract("NodeRegistry")
    ensure_allowance(client, s["delegator"], registry.address, 4_000 * OPG)
    client.transact(
        registry.functions.delegate(s["verifier-3"].address, 4_000 * OPG), s["delegator"]
    )
    token = client.contract("OPGToken")
    before = {k: client.call(token.functions.balanceOf(v.address)) for k, v in s.items()}
    journal = SettlementJournal(client.chain_id, home)
    record = settle(batch, client, node=s["node"], order=order, journal=journal)
    assert record.status == "pending" and record.commit_tx
    commit_tx = record.commit_tx
    # Verifier 1 publishes its verdict on chain, verifier 2 leaves it in the store.
    attest_batch(
        client, batch, passed=True, verifier=s["verifier-1"], journal=journal, publish=True
    )
    attest_batch(client, batch, passed=True, verifier=s["verifier-2"], journal=journal)

    # The chain dies mid-settlement (after the state's periodic dump): no clean shutdown.
    time.sleep(2.5)
    os.kill(devnet.status().pid, signal.SIGKILL)
    time.sleep(0.5)
    assert not devnet.status().running
    devnet.up()
    client = devnet.client()

    # The commit and the published verdict survived the kill; the stored one is off chain.
    assert onchain_batch(client, batch.batch_id) is not None
    assert [v.verifier for v in chain_verdicts(client, batch.batch_id)] == [s["verifier-1"].address]

    # Re-running the same commands resumes: nothing is committed again, even with the order.
    record = settle(batch, client, node=s["node"], order=order, journal=journal)
    assert record.status == "pending" and record.commit_tx == commit_tx
    for i in (2, 3):
        attest_batch(client, batch, passed=True, verifier=s[f"verifier-{i}"], journal=journal)
    stored = load_verdicts(batch.store, batch.batch_id)
    verifiers = sorted(s[f"verifier-{i}"].address for i in (1, 2, 3))
    assert sorted(v.verifier for v in stored) == verifiers  # one verdict each, re-runs replace
    client.increase_time(client.deployment.params.challenge_window + 1)
    record = settle(batch, client, node=s["node"], order=order, journal=journal)
    assert record.status == "finalized" and record.commit_tx == commit_tx
    assert sorted(record.verdicts) == verifiers
    assert len(client.events("InferenceSettlement", "BatchCommitted")) == 1
    assert len(client.events("InferenceSettlement", "VerdictPublished")) == 1
    assert len(client.events("InferenceSettlement", "BatchFinalized")) == 1
    (paid,) = client.events("InferenceSettlement", "VerifiersPaid")
    assert sorted(paid["args"]["verifiers"]) == verifiers  # each verifier counted once

    # Settling again changes nothing: no second finalisation, no second payment.
    settlement = client.contract("InferenceSettlement")  # bound to the restarted chain
    owed = client.call(settlement.functions.owed(manifest.owner))
    assert settle(batch, client, node=s["node"], journal=journal).status == "finalized"
    assert len(client.events("InferenceSettlement", "BatchFinalized")) == 1
    assert client.call(settlement.functions.owed(manifest.owner)) == owed

    # Credits move as documented: owner price × rows, node 10 %, verifiers 5 % by weight
    # (verifier-3 carries its delegator's 4,000 OPG: weights 2,000 / 2,000 / 6,000); they
    # are pull payments, and the requester paid the escrow once.
    payment = manifest.price_per_inference * batch.row_count
    verifier_fee = payment // 20
    shares = {i: verifier_fee * w // 10_000 for i, w in ((1, 2000), (2, 2000), (3, 6000))}
    dust = verifier_fee - sum(shares.values())
    assert owed == payment + dust
    assert client.call(settlement.functions.nodeFees(s["node"].address)) == payment // 10
    for i, share in shares.items():
        address = s[f"verifier-{i}"].address
        assert client.call(settlement.functions.nodeFees(address)) == share
    token = client.contract("OPGToken")
    after = {k: client.call(token.functions.balanceOf(v.address)) for k, v in s.items()}
    assert before["requester"] - after["requester"] == payment + payment // 10 + verifier_fee
    client.transact(settlement.functions.withdraw(), s["owner"])
    assert client.call(token.functions.balanceOf(s["owner"].address)) - before["owner"] == owed
    # Verifier 3's fee goes into its pool, where its delegator shares it pro rata.
    registry = client.contract("NodeRegistry")
    delegated = client.call(
        registry.functions.stakeOf(s["verifier-3"].address, s["delegator"].address)
    )
    client.transact(settlement.functions.claimNodeFees(s["verifier-3"].address), s["delegator"])
    grown = client.call(registry.functions.stakeOf(s["verifier-3"].address, s["delegator"].address))
    assert 0 <= shares[3] * 4_000 // 6_000 - (grown - delegated) <= 1
    assert client.call(token.functions.balanceOf(s["delegator"].address)) == before["delegator"]

    # A clean restart keeps the settled record.
    devnet.down()
    devnet.up()
    assert settle(batch, devnet.client(), node=s["node"], journal=journal).status == "finalized"
