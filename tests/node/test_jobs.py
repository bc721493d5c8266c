"""Batch jobs over HTTP against the node process: a requester's signed order and a
dataset in the node's store are run on the node's Dask cluster, committed through the
order, verified by three verifiers (``attest_batch`` in the test; the verifier daemons
drive this in tests/network) and finalised by the node's finaliser once the challenge
window is over. The job's state survives a restart of the node; hostile submissions are
refused with 4xx. Runs after test_paid (it moves the chain's clock)."""

from __future__ import annotations

import json

import httpx
import pytest

from ogkit.batch import load_batch
from ogkit.chain.bindings import BatchStatus
from ogkit.client import Node
from ogkit.dataset import commit_dataset
from ogkit.errors import NodeError
from ogkit.load import load_model
from ogkit.order import new_order
from ogkit.samples import make_tabular
from ogkit.settle import attest_batch

from .conftest import PRICE, WINDOW, wait_for

pytestmark = pytest.mark.anvil


def _order(net, data, job: str, **overrides):
    model = load_model("tab", hub=net.hub)
    settlement = net.chain.contract("InferenceSettlement")
    fields = dict(
        requester=net.keys["requester"].address,
        model_id=net.manifest.model_id,
        model_owner=net.manifest.owner,
        commitment=commit_dataset(data, model),
        job=job,
        node=net.keys["node"].address,
        max_price_per_row=PRICE,
        chain_id=net.chain.chain_id,
        verifying_contract=settlement.address,
        now=net.chain.block_timestamp(),
    )
    fields.update(overrides)
    return new_order(**fields).sign(net.keys["requester"])


def test_batch_job_over_http_is_committed_finalised_and_survives_a_restart(net):
    store = net.hub.store
    data = store.local_path("datasets/job.parquet")
    data.parent.mkdir(parents=True, exist_ok=True)
    make_tabular(300, seed=11).write_parquet(data)
    order = _order(net, data, "http-job")
    settlement = net.chain.contract("InferenceSettlement")

    with Node(net.node.url, timeout=30) as node:
        submitted = node.submit_job(order, "datasets/job.parquet")
        assert submitted["new"] is True and submitted["state"] in ("queued", "running")
        job_id = submitted["job_id"]
        # The same order again is the same job, not a second run.
        again = node.submit_job(order.to_dict(), "datasets/job.parquet")
        assert again == {**again, "job_id": job_id, "new": False}

        committed = node.wait_job(job_id, until="committed", timeout=180)
        assert committed["rows"] == 300 and committed["commit_tx"].startswith("0x")
        batch_id = committed["batch_id"]
        status = net.chain.call(settlement.functions.statusOf(bytes.fromhex(batch_id[2:])))
        assert BatchStatus(status) == BatchStatus.PENDING
        with pytest.raises(Exception, match="still committed"):
            node.wait_job(job_id, until="finalized", timeout=1.5, poll=0.5)

        # Three verifiers sign pass verdicts into the store; the window then passes.
        batch = load_batch(committed["artifact_id"], store)
        assert batch.batch_id == batch_id and batch.claim.requester == order.order.requester
        for i in (1, 2, 3):
            attest_batch(net.chain, batch, passed=True, verifier=net.keys[f"verifier-{i}"])
        net.chain.increase_time(WINDOW + 1)
        final = node.wait_job(job_id, until="finalized", timeout=60, poll=0.5)
        assert final["finalize_tx"].startswith("0x") and final["error"] is None
    status = net.chain.call(settlement.functions.statusOf(bytes.fromhex(batch_id[2:])))
    assert BatchStatus(status) == BatchStatus.FINALIZED

    # The job's record is on disk: a restarted node (SIGTERM, exit 0) still knows it.
    assert net.restart_node() == 0
    with Node(net.node.url, timeout=30) as node:
        record = node.job(job_id)
        assert record["state"] == "finalized" and record["finalize_tx"] == final["finalize_tx"]


def test_a_job_interrupted_by_a_restart_resumes_and_commits_once(net):
    """SIGTERM while the job runs: the node exits 0 leaving the job running on disk; the
    restarted node resumes it (finished partitions kept) and commits it exactly once."""
    from ogkit.node.jobs import JobBook

    store = net.hub.store
    data = store.local_path("datasets/big.parquet")
    data.parent.mkdir(parents=True, exist_ok=True)
    make_tabular(500_000, seed=21).write_parquet(data)
    order = _order(net, data, "restart-job")
    with Node(net.node.url, timeout=30) as node:
        job_id = node.submit_job(order, "datasets/big.parquet")["job_id"]
        wait_for(lambda: node.job(job_id)["state"] == "running", 60, poll=0.05)
    assert net.node.stop() == 0
    on_disk = JobBook(net.home / "node" / "jobs").get(job_id)
    assert on_disk is not None and on_disk.state == "running", on_disk
    net.restart_node()
    with Node(net.node.url, timeout=30) as node:
        record = node.wait_job(job_id, until="committed", timeout=180)
    commits = net.chain.events(
        "InferenceSettlement",
        "BatchCommitted",
        argument_filters={"batchId": bytes.fromhex(record["batch_id"][2:])},
    )
    assert len(commits) == 1 and record["rows"] == 500_000


def test_hostile_job_submissions_are_refused(net):
    store = net.hub.store
    data = store.local_path("datasets/small.parquet")
    data.parent.mkdir(parents=True, exist_ok=True)
    make_tabular(20, seed=12).write_parquet(data)
    url = f"{net.node.url}/v1/jobs"
    order = _order(net, data, "hostile")

    def refused(body, status: int, reason: str | None = None) -> dict:
        r = httpx.post(url, timeout=30, **body)
        assert r.status_code == status, r.text[:300]
        doc = r.json()
        assert doc["error"]
        if reason:
            assert doc["reason"] == reason, doc
        return doc

    refused(dict(content=b"nope"), 400, "bad-json")
    refused(dict(json={"dataset": "datasets/small.parquet"}), 400, "bad-request")
    # The requester's order altered after signing (a higher price cap).
    doc = order.to_dict()
    altered = json.loads(json.dumps(doc))
    altered["order"]["max_price_per_row"] = str(PRICE * 10)
    refused(dict(json={"order": altered, "dataset": "datasets/small.parquet"}), 422, "bad-order")
    unsigned = {**doc, "signature": None}
    refused(dict(json={"order": unsigned, "dataset": "datasets/small.parquet"}), 422, "bad-order")
    # An order for another node, or another model.
    other_node = _order(net, data, "hostile", node=net.keys["payer"].address).to_dict()
    refused(dict(json={"order": other_node, "dataset": "datasets/small.parquet"}), 422)
    other_model = _order(net, data, "hostile", model_id="0x" + "11" * 32).to_dict()
    refused(dict(json={"order": other_model, "dataset": "datasets/small.parquet"}), 422)
    # Datasets outside the node's store: the node never reads its own files for anyone.
    for ref in ("../keys/node.json", "/etc/passwd", "keys/../../x.csv", "s3://b/x.parquet", 7):
        refused(dict(json={"order": doc, "dataset": ref}), 400, "bad-request")
    refused(dict(json={"order": doc, "dataset": "datasets/missing.parquet"}), 400)
    # Data that is not what the order committed to: accepted, then failed with the reason.
    other = store.local_path("datasets/other.parquet")
    make_tabular(20, seed=13).write_parquet(other)
    with Node(net.node.url, timeout=30) as node:
        job = node.submit_job(order, "datasets/other.parquet")
        record = wait_for(lambda: (r := node.job(job["job_id"]))["state"] == "failed" and r, 120)
        assert "dataset_id" in record["error"] or "data" in record["error"]
        with pytest.raises(NodeError, match="failed"):
            node.wait_job(job["job_id"], timeout=5)
        assert node.health()["status"] == "ok"
