"""Settlement on the real anvil devnet: a chain killed mid-settlement, then restarted.

The journal resumes, the batch settles exactly once, and the devnet keeps its state
across restarts.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from ogkit.attest import make_attester
from ogkit.chain.devnet import Devnet
from ogkit.infer import run_verified_inference
from ogkit.keys import KeyStore
from ogkit.samples import sample_data_path
from ogkit.settle import (
    SettlementJournal,
    attest_batch,
    claim_domain,
    ensure_allowance,
    prepare_dev_settlement,
    settle,
)

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
    enclave = make_attester("software", signer=s["enclave"])
    batch = run_verified_inference(
        "tab",
        sample_data_path("tabular"),
        attester=enclave,
        requester=s["requester"].address,
        hub=published,
        domain=claim_domain(client),
        progress=False,
    )
    prepare_dev_settlement(
        client,
        deployer=devnet.deployer(),
        manifest=published.manifest("tab"),
        runtime_id=batch.runtime_id,
        owner=s["owner"],
        node=s["node"],
        attester=enclave.address,
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
    record = settle(batch, client, node=s["node"], journal=journal)
    assert record.status == "pending"
    for i in (1, 2):
        attest_batch(client, batch, passed=True, verifier=s[f"verifier-{i}"], journal=journal)

    # The chain dies mid-settlement (after the state's periodic dump): no clean shutdown.
    time.sleep(2.5)
    os.kill(devnet.status().pid, signal.SIGKILL)
    time.sleep(0.5)
    assert not devnet.status().running
    devnet.up()
    client = devnet.client()

    # Re-running the same commands resumes: nothing is committed or attested twice.
    record = settle(batch, client, node=s["node"], journal=journal)
    assert record.status == "pending"
    for i in (1, 2, 3):
        attest_batch(client, batch, passed=True, verifier=s[f"verifier-{i}"], journal=journal)
    client.increase_time(client.deployment.params.challenge_window + 1)
    record = settle(batch, client, node=s["node"], journal=journal)
    assert record.status == "finalized"
    assert len(client.events("InferenceSettlement", "BatchCommitted")) == 1
    assert len(client.events("InferenceSettlement", "BatchAttested")) == 3
    assert len(client.events("InferenceSettlement", "BatchFinalized")) == 1

    # Balances move as documented: owner price × rows, node 10 %, verifiers 5 % by weight
    # (verifier-3 carries its delegator's 4,000 OPG: weights 2,000 / 2,000 / 6,000).
    token = client.contract("OPGToken")  # bound to the client of the restarted chain
    after = {k: client.call(token.functions.balanceOf(v.address)) for k, v in s.items()}
    payment = published.manifest("tab").price_per_inference * batch.row_count
    assert after["owner"] - before["owner"] == payment
    assert after["node"] - before["node"] == payment // 10
    verifier_fee = payment // 20
    for i, weight in ((1, 2000), (2, 2000), (3, 6000)):
        assert after[f"verifier-{i}"] - before[f"verifier-{i}"] == verifier_fee * weight // 10_000
    assert after["delegator"] == before["delegator"]

    # A clean restart keeps the settled record.
    devnet.down()
    devnet.up()
    assert settle(batch, devnet.client(), node=s["node"], journal=journal).status == "finalized"
