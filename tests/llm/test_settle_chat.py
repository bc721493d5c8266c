"""Chat calls settle like tabular rows: committed through the requester's signed order,
verified by three verifiers that re-decode, finalised, paid, and audited from the chain
and the store alone (the embedded chain)."""

from __future__ import annotations

import pytest

from ogkit.audit import audit
from ogkit.chain.connection import connect
from ogkit.keys import KeyStore
from ogkit.llm.batch import commit_requests
from ogkit.llm.calls import ChatRequest
from ogkit.llm.session import ChatSession, settle_chat
from ogkit.settle import attest_batch, claim_domain, prepare_dev_settlement, settle
from ogkit.verify import VerifyPolicy, verify_batch

OPG = 10**18
WINDOW = 3600


@pytest.fixture(scope="module")
def module_chain():
    return connect("embedded")


@pytest.fixture
def chain(module_chain):
    snapshot = module_chain.snapshot()
    yield module_chain
    module_chain.revert(snapshot)


def test_chat_calls_settle_verify_and_audit(chain, home, llm_hub, model, policy, owner):
    keys = KeyStore(home)
    a = {n: keys.ensure_dev_key(n) for n in ("enclave", "requester", "node", "v1", "v2", "v3")}
    for s in [*a.values(), owner]:
        chain.fund(s.address, eth=10**19, opg=100_000 * OPG)
    manifest = llm_hub.manifest("tiny-chat")
    prepare_dev_settlement(
        chain,
        deployer=chain.deployer,
        manifest=manifest,
        runtime_id=model.runtime_id,
        owner=owner,
        node=a["node"],
        attester=a["enclave"],
        requester=a["requester"],
        verifiers=[a["v1"], a["v2"], a["v3"]],
    )
    from ogkit.attest import make_attester

    session = ChatSession(
        model,
        attester=make_attester("software", signer=a["enclave"]),
        requester=a["requester"].address,
        store=llm_hub.store,
        domain=claim_domain(chain),
        job="support-bot",
    )
    requests = [
        ChatRequest.make("Where is my parcel?", max_tokens=10),
        ChatRequest.make("Refund please", max_tokens=6, temperature=0.7, seed=11),
        ChatRequest.make("Thanks!", max_tokens=4),
    ]
    responses = [
        session.chat(r.message_dicts(), max_tokens=r.max_tokens, temperature=r.temperature,
                     seed=r.seed)
        for r in requests
    ]  # fmt: skip
    batch = session.seal()
    assert all(r.receipt is not None and r.batch is batch for r in responses)
    record = settle_chat(
        batch,
        chain,
        node=a["node"],
        requester=a["requester"],
        model_owner=manifest.owner,
        max_price_per_row=manifest.price_per_inference,
        responses=responses,
    )
    assert record.status == "pending" and record.commit_tx
    assert all(r.tx_hash == record.commit_tx for r in responses)
    # The contract checks the receipt of a call against the committed record.
    receipt = responses[1].receipt
    settlement = chain.contract("InferenceSettlement")
    from ogkit.chain.records import onchain_batch

    found = onchain_batch(chain, batch.batch_id)
    status = chain.call(
        settlement.functions.verifyReceipt(
            bytes.fromhex(batch.batch_id[2:]),
            found.as_tuple,
            1,
            bytes.fromhex(receipt["leaf_values"]["inputHash"][2:]),
            bytes.fromhex(receipt["leaf_values"]["outputHash"][2:]),
            [bytes.fromhex(p[2:]) for p in receipt["proof"]],
        )
    )
    assert list(status) == [True, 1]  # included, and the batch is pending

    commitment = commit_requests(requests, model)
    allow = policy.allowlist.with_([a["enclave"].address], [])
    for name in ("v1", "v2", "v3"):
        verdict = verify_batch(
            batch,
            VerifyPolicy(sample_rate=1.0, allowlist=allow),
            hub=llm_hub,
            commitment=commitment,
            requester=a["requester"].address,
            job="support-bot",
            progress=False,
        )
        assert verdict.passed, verdict.findings
        attest_batch(chain, batch, passed=True, verifier=a[name])
    chain.increase_time(WINDOW + 1)
    record = settle(batch, chain, node=a["node"])
    assert record.status == "finalized"
    assert chain.call(settlement.functions.owed(manifest.owner)) >= 3 * manifest.price_per_inference

    report = audit(chain, llm_hub.store, hub=llm_hub, sample_rate=1.0)
    assert report.passed, report.findings
    assert report.batches.height == 1
    row = report.batches.row(0, named=True)
    assert row["verdict"] == "pass" and row["status"] == "finalized"
