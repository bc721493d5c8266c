"""A verifier daemon against a node that controls its artefacts and a feed that lies: a
committed artefact that is missing, that is a parser bomb, or whose records point outside
the store each get a fail verdict (the daemon goes on); an event delivered twice is handled
once; a log whose record is not the chain's is dropped without a verdict; a verification
over its time limit is stopped and failed; a crashed verification worker is replaced."""

from __future__ import annotations

import copy
import os
import signal
import threading

import pytest

from ogkit.batch import ARTIFACTS, AttestedBatch
from ogkit.chain.records import onchain_batch
from ogkit.errors import ConfigError
from ogkit.hub.manifest import canonical_json
from ogkit.network.daemon import WatchConfig, rpc_connector
from ogkit.network.sandbox import VerifyWorker
from ogkit.network.verifier import VerifierConfig, VerifierDaemon, verify_task
from ogkit.settle import settle
from ogkit.store import ContentStore

from .conftest import World, wait_for

pytestmark = pytest.mark.anvil


def commit_block(world: World, batch_id: str) -> tuple[int, dict]:
    chain = world.client()
    (event,) = chain.events(
        "InferenceSettlement",
        "BatchCommitted",
        argument_filters={"batchId": bytes.fromhex(batch_id[2:])},
    )
    return int(event["blockNumber"]), event


def daemon_from(world: World, block: int, name: str = "verifier-1") -> VerifierDaemon:
    return VerifierDaemon(
        rpc_connector("devnet", world.home, world.devnet.port),
        world.keys[name],
        world.home,
        ContentStore(world.home / "store"),
        config=VerifierConfig(missing_polls=2),
        watch=WatchConfig(poll=0.05, backoff_start=0.05, backoff_cap=0.1, from_block=block),
    )


def verdicts_of(world: World, batch_id: str, name: str = "verifier-1") -> list[bool]:
    address = world.keys[name].address
    return [
        bool(e["args"]["pass"])
        for e in world.client().events(
            "InferenceSettlement",
            "VerdictPublished",
            argument_filters={"batchId": bytes.fromhex(batch_id[2:])},
        )
        if e["args"]["verifier"] == address
    ]


def commit_as(world: World, batch: AttestedBatch, order, doc: dict | bytes) -> AttestedBatch:
    """Commit ``batch``'s claim with the artefact id of ``doc`` (stored as given)."""
    data = doc if isinstance(doc, bytes) else canonical_json(doc)
    artifact_id = batch.store.put(ARTIFACTS, data)
    fake = AttestedBatch(batch.manifest, artifact_id, batch.store)
    settle(fake, world.client(), node=world.keys["node"], order=order, finalize=False)
    return fake


def test_missing_bomb_and_escaping_artefacts_get_fail_verdicts(net: World):
    # 1. Committed, then the artefact vanishes from the store.
    missing, _ = net.batch("hostile-missing")
    fs = missing.store.fs
    fs.rm(missing.store.object_path(ARTIFACTS, missing.artifact_id))
    # 2. A parser bomb: 200,000 nested arrays under the committed artefact id.
    honest, order = net.batch("hostile-bomb", commit=False)
    bomb = commit_as(net, honest, order, b"[" * 200_000 + b"]" * 200_000)
    # 3. Records that point outside the batch's folder (and the store).
    honest2, order2 = net.batch("hostile-escape", commit=False)
    doc = copy.deepcopy(honest2.manifest.to_dict())
    doc["partitions"][0]["path"] = "../../../../../../etc/passwd"
    escape = commit_as(net, honest2, order2, doc)

    start, _ = commit_block(net, missing.batch_id)
    daemon = daemon_from(net, start)
    state = daemon.run(max_polls=12)
    assert state is not None
    for batch in (missing, bomb, escape):
        assert verdicts_of(net, batch.batch_id) == [False], batch.batch_id
        assert state.done[batch.batch_id]["passed"] is False
    assert "not in the store" in state.done[missing.batch_id]["reason"]
    assert "unreadable" in state.done[bomb.batch_id]["reason"]
    assert state.batches_failed >= 3


def test_replayed_and_forged_events_attest_nothing_twice(net: World):
    batch, _ = net.batch("replayed-event")
    block, event = commit_block(net, batch.batch_id)
    daemon = daemon_from(net, block, name="verifier-3")
    daemon.ensure_connected()

    # A log whose record is not the one the contract stores (a lying RPC, another
    # contract's event copied in): dropped, no verdict.
    forged = copy.deepcopy(event)
    details = forged["args"]["details"]
    if isinstance(details, dict):
        forged["args"]["details"] = {**details, "artifactId": b"\x11" * 32}
    else:  # the ABI tuple: artifactId is its sixth field
        forged["args"]["details"] = (*details[:5], b"\x11" * 32, *details[6:])
    daemon.handle(forged)
    assert verdicts_of(net, batch.batch_id, "verifier-3") == []
    # Dropped without marking the id done: the real log of that id is still handled.
    assert batch.batch_id not in daemon.state.done

    # A log from another contract (another deployment's BatchCommitted): not even looked at.
    elsewhere = copy.deepcopy(event)
    elsewhere["address"] = "0x" + "ab" * 20
    elsewhere["args"]["batchId"] = b"\x99" * 32
    daemon.handle(elsewhere)
    assert "0x" + "99" * 32 not in daemon.state.done

    # The real event, delivered twice after the forged one: the done-set is keyed by
    # batch id, so it is handled once.
    daemon.handle(event)
    daemon.handle(event)
    assert verdicts_of(net, batch.batch_id, "verifier-3") == [True]
    # A fresh daemon (cursor lost) sees its own verdict on chain and attests nothing more.
    assert daemon.path is not None
    daemon.path.unlink()
    # While the first daemon holds its key's lock, a second one for the same key refuses.
    with pytest.raises(ConfigError, match="another verifier daemon"):
        daemon_from(net, block, name="verifier-3").ensure_connected()
    daemon.close()
    again = daemon_from(net, block, name="verifier-3")
    state = again.run(max_polls=2)
    assert state is not None and state.done[batch.batch_id]["outcome"] == "already attested"
    assert verdicts_of(net, batch.batch_id, "verifier-3") == [True]


def test_a_verification_over_its_time_limit_is_stopped_and_failed(net: World):
    batch, _ = net.batch("too-slow")
    block, _ = commit_block(net, batch.batch_id)
    daemon = VerifierDaemon(
        rpc_connector("devnet", net.home, net.devnet.port),
        net.keys["verifier-2"],
        net.home,
        ContentStore(net.home / "store"),
        config=VerifierConfig(sample_rate=1.0, timeout=0.3),
        watch=WatchConfig(poll=0.05, from_block=block),
    )
    state = daemon.run(max_polls=2)
    assert state is not None
    outcome = state.done[batch.batch_id]
    assert outcome["passed"] is False and "did not finish within 0.3 s" in outcome["reason"]
    assert verdicts_of(net, batch.batch_id, "verifier-2") == [False]


def test_a_crashed_verification_worker_is_an_outcome_not_the_daemons_end(net: World):
    batch, _ = net.batch("worker-crash")
    chain = net.client()
    found = onchain_batch(chain, batch.batch_id)
    _, task = verify_task(chain, batch, found, b"s" * 32, VerifierConfig(sample_rate=1.0), None)
    worker = VerifyWorker(timeout=120)
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("o", worker.verify(task)))
    thread.start()
    pid = wait_for("the worker process", lambda: worker.pid, timeout=30, every=0.01)
    os.kill(pid, signal.SIGSEGV)  # what a native crash in the runtime looks like
    thread.join(60)
    assert result["o"].kind == "crashed" and "signal 11" in result["o"].detail
    # The next task gets a fresh worker and a verdict.
    again = worker.verify(task)
    assert again.kind == "verdict" and again.verdict.passed
    worker.close()
