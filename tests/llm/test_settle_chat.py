"""Chat calls settle like tabular rows: committed through the requester's signed order,
verified by three verifiers that re-decode, finalised, paid, and audited from the chain
and the store alone; a node that receipts a completion it did not decode is challenged
with a re-decoded call, slashed by the verifiers' votes, and the audit confirms it (the
embedded chain)."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest

from ogkit.attest import make_attester
from ogkit.audit import audit
from ogkit.chain.connection import connect
from ogkit.chain.records import onchain_batch
from ogkit.keys import KeyStore
from ogkit.llm.batch import attest_calls, commit_requests, store_chat_batch
from ogkit.llm.calls import ChatCall, ChatRequest
from ogkit.llm.challenge import challenge_call, redecode_confirms
from ogkit.llm.session import ChatSession, settle_chat
from ogkit.settle import attest_batch, claim_domain, prepare_dev_settlement, settle, vote_dispute
from ogkit.verify import VerifyPolicy, verify_batch

OPG = 10**18
WINDOW = 3600
REQUESTS = [
    ChatRequest.make("Where is my parcel?", max_tokens=10),
    ChatRequest.make("Refund please", max_tokens=6, temperature=0.7, seed=11),
    ChatRequest.make("Thanks!", max_tokens=4),
]


@pytest.fixture(scope="module")
def module_chain():
    return connect("embedded")


@pytest.fixture
def world(module_chain, home, llm_hub, model, owner):
    chain = module_chain
    snapshot = chain.snapshot()
    keys = KeyStore(home)
    names = ("enclave", "requester", "node", "v1", "v2", "v3", "challenger")
    s = {n: keys.ensure_dev_key(n) for n in names}
    for signer in [*s.values(), owner]:
        chain.fund(signer.address, eth=10**19, opg=100_000 * OPG)
    manifest = llm_hub.manifest("tiny-chat")
    prepare_dev_settlement(
        chain,
        deployer=chain.deployer,
        manifest=manifest,
        runtime_id=model.runtime_id,
        owner=owner,
        node=s["node"],
        attester=s["enclave"],
        requester=s["requester"],
        verifiers=[s["v1"], s["v2"], s["v3"]],
    )
    session = ChatSession(
        model,
        attester=make_attester("software", signer=s["enclave"]),
        requester=s["requester"].address,
        store=llm_hub.store,
        domain=claim_domain(chain),
        job="support-bot",
    )
    yield SimpleNamespace(chain=chain, s=s, manifest=manifest, session=session)
    chain.revert(snapshot)


def _ask(session):
    return [
        session.chat(r.message_dicts(), max_tokens=r.max_tokens, temperature=r.temperature,
                     seed=r.seed)
        for r in REQUESTS
    ]  # fmt: skip


def test_chat_calls_settle_verify_and_audit(world, llm_hub, model):
    chain, a, manifest = world.chain, world.s, world.manifest
    responses = _ask(world.session)
    batch = world.session.seal()
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

    commitment = commit_requests(REQUESTS, model)
    allow = VerifyPolicy().allowlist.approve(a["enclave"].address, [model.runtime_id])
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


def test_a_node_that_receipts_what_it_did_not_decode_is_challenged_and_slashed(
    world, llm_hub, model
):
    chain, a, manifest = world.chain, world.s, world.manifest
    _ask(world.session)
    honest = world.session.seal()
    # The node swaps call 0's completion for another answer, then re-hashes and re-signs.
    calls = list(honest.calls)
    c = calls[0]
    calls[0] = ChatCall(c.request, c.prompt_ids, [*c.completion_ids[:-1], 7], "length")
    forged = attest_calls(
        calls,
        model=model,
        attester=world.session.attester,
        requester=a["requester"].address,
        store=llm_hub.store,
        job="support-bot",
        domain=claim_domain(chain),
    )
    settle_chat(
        forged,
        chain,
        node=a["node"],
        requester=a["requester"],
        model_owner=manifest.owner,
        max_price_per_row=manifest.price_per_inference,
    )
    assert redecode_confirms(forged, 0, model=model)
    assert not redecode_confirms(forged, 1, model=model)  # the honest calls re-decode alike
    challenge_call(chain, forged, 0, challenger=a["challenger"], model=model)
    for v in ("v2", "v3"):  # 3,000 + 5,000 of 10,000 verifier stake: the 2/3 quorum
        vote_dispute(chain, forged.batch_id, upheld=True, verifier=a[v])
    assert settle(forged, chain, node=a["node"]).status == "slashed"

    report = audit(chain, llm_hub.store, hub=llm_hub, sample_rate=1.0)
    findings = report.findings.filter(report.findings["batch_id"] == forged.batch_id)
    slashed = findings.filter(findings["reason"] == "batch-slashed").row(0, named=True)
    assert slashed["row_index"] == 0 and "confirms the wrong output" in slashed["detail"]
    assert "status-mismatch" not in findings["reason"].to_list()
    # The audit's own re-verification (every call re-decoded) names the forged call.
    failed = findings.filter(findings["reason"] == "verification-failed")["detail"].to_list()
    assert any(d.startswith("reexecution-mismatch") for d in failed), failed


def test_verifiers_keep_the_tampered_claim_apart(world, llm_hub, model):
    """A batch edited after signing (the chain committed the original) fails attestation:
    the artefact differs from what the chain holds."""
    chain, a, manifest = world.chain, world.s, world.manifest
    _ask(world.session)
    batch = world.session.seal()
    price = manifest.price_per_inference
    settle_chat(batch, chain, node=a["node"], requester=a["requester"],
                model_owner=manifest.owner, max_price_per_row=price)  # fmt: skip
    other = dataclasses.replace(batch.manifest, job="another job")
    edited = store_chat_batch(other, batch.store)
    verdict = attest_batch(chain, edited, passed=True, verifier=a["v1"])
    assert not verdict.passed and "artefact id" in verdict.reason


def test_chat_batches_attest_and_finalise_from_the_cli(world, llm_hub, model, monkeypatch, capsys):
    """`ogkit verify ARTIFACT --attest` and `ogkit settle ARTIFACT` take a chat artefact as
    they take a tabular one: the verifiers re-decode and sign, the node finalises."""
    import json

    import ogkit.chain.connection as connection
    from ogkit.cli import main

    chain, a, manifest = world.chain, world.s, world.manifest
    monkeypatch.setattr(connection, "connect_from_settings", lambda *args, **kw: chain)
    _ask(world.session)
    batch = world.session.seal()
    price = manifest.price_per_inference
    settle_chat(batch, chain, node=a["node"], requester=a["requester"],
                model_owner=manifest.owner, max_price_per_row=price)  # fmt: skip
    store = ["--store", llm_hub.store.url]
    allow = ["--allow-attester", a["enclave"].address, "--allow-measurement", model.runtime_id]
    for name in ("v1", "v2", "v3"):
        argv = [*store, "verify", batch.artifact_id, "--attest", "--key", name, *allow]
        code = main([*argv, "--sample-rate", "1", "--workers", "0", "--json"])
        out = capsys.readouterr().out
        assert code == 0, json.loads(out)["findings"][:3]
        doc = json.loads(out)
        assert doc["passed"] and doc["signed_verdict"]["passed"], doc
    chain.increase_time(WINDOW + 1)
    assert main([*store, "settle", batch.artifact_id, "--node-key", "node", "--json"]) == 0, (
        capsys.readouterr().err
    )
    doc = json.loads(capsys.readouterr().out)
    assert doc["status"] == "finalized", doc
