"""A node that controls its key, its artefacts in the store, its registry binding and its
timing, against the verifier daemon (real anvil devnet, real store, the daemon's real
verification worker):

- it commits one batch's claim under the artefact of another batch: a fail verdict (not
  silence) over the committed claim;
- it swaps objects in the store after the daemon fetched the manifest: the verdict binds
  what was committed, and fails;
- it commits a flood of batches whose artefacts are missing ahead of honest ones: the honest
  ones are verified at once, the missing ones are retried later and failed, none skipped,
  none lost over a restart;
- it rebinds its attester after a commit: the batch is judged by the commit's binding;
- the daemon's state file is truncated: no crash, nothing attested or voted twice, and the
  done-set can be pruned without attesting again;
- the sample secret cannot be computed from public data.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import threading

import pytest

from ogkit.batch import ARTIFACTS
from ogkit.chain.records import onchain_batch
from ogkit.crypto.keccak import keccak256
from ogkit.keys import KeyStore, Signer
from ogkit.network.daemon import WatchConfig, rpc_connector, sample_secret
from ogkit.network.verifier import VerifierConfig, VerifierDaemon
from ogkit.settle import ensure_staked
from ogkit.store import ContentStore
from ogkit.verdict import chain_verdicts

from .conftest import OPG, World, wait_for
from .test_challenge import grief
from .test_hostile import commit_as, commit_block, verdicts_of

pytestmark = pytest.mark.anvil


def daemon(
    world: World, block: int, name: str, *, isolate: bool = False, **watch
) -> VerifierDaemon:
    options = {"poll": 0.05, "backoff_start": 0.05, "backoff_cap": 0.1, "from_block": block}
    return VerifierDaemon(
        rpc_connector("devnet", world.home, world.devnet.port),
        world.keys[name],
        world.home,
        ContentStore(world.home / "store"),
        config=VerifierConfig(missing_polls=2, sample_rate=0.02, isolate=isolate),
        watch=WatchConfig(**{**options, **watch}),
    )


def test_an_artefact_that_is_not_the_committed_batch_gets_a_fail_verdict(net: World):
    # The chain gets batch X's claim (root, digest, rows, dataset) with the artefact id of
    # another honest batch Y: Y verifies on its own, but it is not what was committed.
    x, order = net.batch("forge-x", commit=False)
    y, _ = net.batch("forge-y", commit=False)
    commit_as(net, x, order, y.manifest.to_dict())
    # The same batch id as committed, but a manifest that claims other rows and dataset.
    z, order_z = net.batch("forge-z", commit=False)
    doc = copy.deepcopy(z.manifest.to_dict())
    doc["row_count"] = int(doc["row_count"]) - 1
    doc["dataset_id"] = "0x" + "ab" * 32
    commit_as(net, z, order_z, doc)

    block, _ = commit_block(net, x.batch_id)
    state = daemon(net, block, "verifier-1").run(max_polls=3)
    assert state is not None
    assert verdicts_of(net, x.batch_id) == [False]
    assert (
        f"is batch {y.batch_id}, not the committed {x.batch_id}"
        in (state.done[x.batch_id]["reason"])
    )
    assert verdicts_of(net, z.batch_id) == [False]
    chain = net.client()
    for batch in (x, z):  # each verdict is over the claim the chain committed
        found = onchain_batch(chain, batch.batch_id)
        assert found is not None
        (verdict,) = chain_verdicts(chain, batch.batch_id)
        assert verdict.claim_digest.lower() == found.record["claimDigest"].lower()
        assert verdict.valid()


def test_store_objects_swapped_after_the_manifest_was_read_fail_the_batch(net: World):
    batch, _ = net.batch("swap-records")
    assert len(batch.partitions) >= 2
    block, _ = commit_block(net, batch.batch_id)
    d = daemon(net, block, "verifier-2")
    d.ensure_connected()
    # The daemon has the committed manifest (content-addressed, checked on read) in hand;
    # now the node replaces partition 0's records with partition 1's (valid records, the
    # wrong rows) and overwrites the manifest object itself with another document.
    store = batch.store
    first, second = batch.partitions[0], batch.partitions[1]
    store.write_bytes(first.path, store.read_bytes(second.path))
    state = d.run(max_polls=3)
    assert state is not None
    assert verdicts_of(net, batch.batch_id, "verifier-2") == [False]
    assert state.done[batch.batch_id]["passed"] is False

    other, _ = net.batch("swap-manifest")
    block, _ = commit_block(net, other.batch_id)
    store.fs.pipe_file(store.object_path(ARTIFACTS, other.artifact_id), b'{"schema":"x"}')
    state = daemon(net, block, "verifier-2").run(max_polls=3)
    assert state is not None
    assert verdicts_of(net, other.batch_id, "verifier-2") == [False]
    assert "corrupt" in state.done[other.batch_id]["reason"]


def test_a_flood_of_missing_artefacts_does_not_hold_back_honest_batches(net: World):
    missing = []
    for i in range(2):
        b, _ = net.batch(f"flood-missing-{i}")
        b.store.fs.rm(b.store.object_path(ARTIFACTS, b.artifact_id))
        missing.append(b)
    honest = [net.batch(f"flood-honest-{i}")[0] for i in range(1)]
    start, _ = commit_block(net, missing[0].batch_id)

    # One poll: the honest batches (committed after the missing ones) are attested at
    # once; the missing ones are put off (a long pause), the cursor past all of them.
    first = daemon(net, start, "verifier-3", backoff_start=30.0, backoff_cap=30.0)
    state = first.run(max_polls=1)
    assert state is not None
    for b in honest:
        assert verdicts_of(net, b.batch_id, "verifier-3") == [True], b.batch_id
    for b in missing:
        assert verdicts_of(net, b.batch_id, "verifier-3") == []
        assert b.batch_id in state.deferred
    last, _ = commit_block(net, honest[-1].batch_id)
    assert state.next_block > last

    # A restart: the put-off batches are in the state file, retried and failed; nothing
    # is verified twice and nothing is missed.
    state = daemon(net, state.next_block, "verifier-3").run(max_polls=8)
    assert state is not None and not state.deferred
    for b in missing:
        assert verdicts_of(net, b.batch_id, "verifier-3") == [False], b.batch_id
        assert "not in the store" in state.done[b.batch_id]["reason"]
    for b in honest:
        assert verdicts_of(net, b.batch_id, "verifier-3") == [True]


def test_a_truncated_state_file_neither_crashes_nor_acts_twice(net: World):
    batch, _ = net.batch("truncated-state")
    block, _ = commit_block(net, batch.batch_id)
    first = daemon(net, block, "verifier-1")
    state = first.run(max_polls=2)
    assert state is not None and state.done[batch.batch_id]["outcome"] == "attested"
    receipt = grief(net, batch, 3)
    dispute_block = int(receipt["blockNumber"])
    state = daemon(net, dispute_block, "verifier-1").run(max_polls=2)
    assert state is not None
    (vote,) = [v for k, v in state.done.items() if k.startswith("dispute:")]
    assert vote["outcome"] == "voted" and vote["upheld"] is False

    # The state file cut short (a full disk, a copy in progress, a hand edit).
    assert first.path is not None
    text = first.path.read_text()
    first.path.write_text(text[: len(text) // 2])
    again = daemon(net, block, "verifier-1")
    state = again.run(max_polls=3)
    assert state is not None, "the daemon crashed on its own state file"
    assert list(first.path.parent.glob(f"{first.path.name}.corrupt-*"))
    assert state.done[batch.batch_id]["outcome"] == "already attested"
    (vote,) = [v for k, v in state.done.items() if k.startswith("dispute:")]
    assert vote["outcome"] == "already voted"
    assert verdicts_of(net, batch.batch_id) == [True]
    chain = net.client()
    votes = chain.events(
        "InferenceSettlement",
        "DisputeVoted",
        dispute_block,
        argument_filters={"verifier": net.keys["verifier-1"].address},
    )
    assert len(votes) == 1

    # A done-set pruned to nothing (keep_blocks=0) re-reads the same blocks and still
    # acts on nothing twice: the chain is the source of truth.
    state = daemon(net, block, "verifier-1", keep_blocks=0).run(max_polls=2)
    assert state is not None and state.done == {}
    state = daemon(net, block, "verifier-1", keep_blocks=0).run(max_polls=2)
    assert verdicts_of(net, batch.batch_id) == [True]
    again = chain.events("InferenceSettlement", "DisputeVoted", dispute_block,
                         argument_filters={"verifier": net.keys["verifier-1"].address})  # fmt: skip
    assert len(again) == 1

    # Valid JSON with the wrong types inside (a hand edit): refused as a whole, moved aside.
    doc = json.loads(first.path.read_text())
    doc["attempts"] = {batch.batch_id: "many"}
    first.path.write_text(json.dumps(doc))
    state = daemon(net, block, "verifier-1").run(max_polls=1)
    assert state is not None and state.attempts == {}
    assert len(list(first.path.parent.glob(f"{first.path.name}.corrupt-*"))) >= 2
    assert verdicts_of(net, batch.batch_id) == [True]


def test_a_rebinding_after_the_commit_does_not_change_the_verdict(net: World):
    batch, _ = net.batch("rebound")
    block, _ = commit_block(net, batch.batch_id)
    chain = net.client()
    registry = chain.contract("NodeRegistry")
    node: Signer = net.keys["node"]
    measurement = "0x" + bytes(chain.call(registry.functions.getNode(node.address))[2]).hex()
    fresh = KeyStore(net.home).ensure_dev_key("enclave-2")
    try:
        ensure_staked(chain, node, role=1, stake=OPG, attester=fresh, measurement=measurement)
        bound = chain.call(registry.functions.getNode(node.address))[1]
        assert bound.lower() == fresh.address.lower()
        state = daemon(net, block, "verifier-2").run(max_polls=2)
        assert state is not None
        assert verdicts_of(net, batch.batch_id, "verifier-2") == [True]
    finally:
        ensure_staked(
            chain, node, role=1, stake=OPG, attester=net.keys["enclave"], measurement=measurement
        )


def test_the_sample_secret_is_not_computable_from_public_data(net: World):
    chain = net.client()
    contract = chain.contract("InferenceSettlement").address
    keys = [net.keys[f"verifier-{i}"] for i in (1, 2, 3)]
    secrets = [sample_secret(k, chain.chain_id, contract, "verifier sample") for k in keys]
    assert len(set(secrets)) == 3
    # Stable for one key (a restart draws the same rows) and different per role.
    assert secrets[0] == sample_secret(keys[0], chain.chain_id, contract, "verifier sample")
    assert secrets[0] != sample_secret(keys[0], chain.chain_id, contract, "challenger sample")
    # Nothing a node can read (the address, chain id, contract) gives it.
    for k, secret in zip(keys, secrets, strict=True):
        public = [
            bytes.fromhex(k.address[2:]),
            bytes.fromhex(contract[2:]),
            chain.chain_id.to_bytes(32, "big"),
            bytes.fromhex(k.address[2:]) + bytes.fromhex(contract[2:]),
        ]
        assert secret not in {keccak256(p) for p in public} | set(public)
        # It is the hash of a signature only the key can make: a fresh key with the
        # same address is impossible, another key gets another secret.
    stranger = KeyStore(net.home).ensure_dev_key("stranger")
    assert sample_secret(stranger, chain.chain_id, contract, "verifier sample") not in secrets


def test_store_objects_turned_into_directories_or_unreadable_files_do_not_stall(net: World):
    # The node owns its store folder: it can make what the daemon reads a directory or a
    # file nobody may read. Those are findings about the batch, not a store outage that
    # would hold the cursor (and every later batch) forever.
    bad_records, _ = net.batch("dir-records")
    bad_manifest, _ = net.batch("dir-manifest")
    honest, _ = net.batch("after-dirs")
    fs = bad_records.store.fs
    records = bad_records.store.path(bad_records.partitions[0].path)
    fs.rm(records)
    fs.makedirs(records)
    manifest = bad_manifest.store.object_path(ARTIFACTS, bad_manifest.artifact_id)
    fs.rm(manifest)
    fs.makedirs(manifest)
    start, _ = commit_block(net, bad_records.batch_id)
    # In the verification worker, as the daemon runs by default.
    state = daemon(net, start, "verifier-3", isolate=True).run(max_polls=4)
    assert state is not None
    assert verdicts_of(net, honest.batch_id, "verifier-3") == [True]
    assert verdicts_of(net, bad_records.batch_id, "verifier-3") == [False]
    assert verdicts_of(net, bad_manifest.batch_id, "verifier-3") == [False]


def test_fifos_in_the_store_neither_hang_the_daemon_nor_its_worker(net: World):
    # A FIFO under the committed artefact id would block the daemon's own read forever; a
    # FIFO as a records file would hold the verification worker until its time limit.
    fifo_manifest, _ = net.batch("fifo-manifest")
    fifo_records, _ = net.batch("fifo-records")
    store = fifo_manifest.store
    manifest = store.object_path(ARTIFACTS, fifo_manifest.artifact_id)
    records = store.path(fifo_records.partitions[1].path)
    for path in (manifest, records):
        os.unlink(path)
        os.mkfifo(path)
    start, _ = commit_block(net, fifo_manifest.batch_id)
    d = daemon(net, start, "verifier-1", isolate=True)
    runner = threading.Thread(target=d.run, kwargs={"max_polls": 4}, daemon=True)
    runner.start()
    runner.join(60)
    hung = runner.is_alive()
    if hung:  # unblock the reader so the test ends either way
        for path in (manifest, records):
            with contextlib.suppress(OSError):
                os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
        d.stop()
        runner.join(30)
    assert not hung, "the daemon hung on a FIFO in the store"
    assert verdicts_of(net, fifo_manifest.batch_id) == [False]
    assert verdicts_of(net, fifo_records.batch_id) == [False]
    assert d.state is not None
    assert "not a regular file" in d.state.done[fifo_manifest.batch_id]["reason"]
    assert "not a regular file" in d.state.done[fifo_records.batch_id]["reason"]


def test_a_dispute_is_judged_on_the_committed_batch_not_on_what_the_node_serves(net: World):
    # The node committed batch X's claim but serves batch Y's artefact under the committed
    # id (the same data, another job): Y's records would "confirm" X's row. They are not
    # the committed batch's records, so they prove nothing: the daemon votes upheld.
    x, order = net.batch("vote-x", commit=False)
    y, _ = net.batch("vote-y", commit=False)
    commit_as(net, x, order, y.manifest.to_dict())
    receipt = grief(net, x, 5)
    state = daemon(net, int(receipt["blockNumber"]), "verifier-2").run(max_polls=2)
    assert state is not None
    (vote,) = [v for k, v in state.done.items() if k.startswith("dispute:")]
    assert vote["outcome"] == "voted" and vote["upheld"] is True, vote
    assert "not the committed" in vote["why"]


def test_a_rebinding_later_in_the_commit_block_does_not_change_the_verdict(net: World):
    # The commit and a rebinding of the node's attester mined in one block: the registry's
    # state "as of the commit block" is the one after the rebinding, but the contract
    # checked the commit against the binding before it. The verdict must follow the latter.
    from ogkit.settle import settle

    batch, order = net.batch("same-block-rebind", commit=False)
    chain = net.client()
    registry = chain.contract("NodeRegistry")
    node: Signer = net.keys["node"]
    measurement = "0x" + bytes(chain.call(registry.functions.getNode(node.address))[2]).hex()
    fresh = KeyStore(net.home).ensure_dev_key("enclave-3")
    w3 = chain.w3

    def pending() -> int:
        return int(w3.eth.get_transaction_count(node.address, "pending"))

    mined = pending()
    errors: list[BaseException] = []

    def run(fn, *args, **kwargs) -> threading.Thread:
        def target() -> None:
            try:
                fn(*args, **kwargs)
            except BaseException as exc:  # reported by the test thread
                errors.append(exc)

        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        return thread

    w3.provider.make_request("evm_setAutomine", [False])
    try:
        commit = run(settle, batch, net.client(), node=node, order=order, finalize=False)
        wait_for("the commit in the mempool", lambda: pending() > mined or errors, 30, 0.05)
        rebind = run(ensure_staked, net.client(), node, role=1, stake=OPG, attester=fresh,
                     measurement=measurement)  # fmt: skip
        wait_for("the rebinding in the mempool", lambda: pending() > mined + 1 or errors, 30, 0.05)
        w3.provider.make_request("evm_mine", [])
    finally:
        w3.provider.make_request("evm_setAutomine", [True])
    commit.join(30)
    rebind.join(30)
    assert not errors, errors
    try:
        block, _ = commit_block(net, batch.batch_id)
        bound = chain.call(
            registry.functions.getNode(node.address),
        )[1]
        assert bound.lower() == fresh.address.lower()
        receipts = w3.eth.get_block(block)["transactions"]
        assert len(receipts) == 2  # the commit and the rebinding in one block
        state = daemon(net, block, "verifier-3").run(max_polls=2)
        assert state is not None
        assert verdicts_of(net, batch.batch_id, "verifier-3") == [True], state.done
    finally:
        ensure_staked(
            chain, node, role=1, stake=OPG, attester=net.keys["enclave"], measurement=measurement
        )


def test_a_verdict_folder_the_node_blocked_does_not_stop_the_verdict(net: World):
    # Verdicts are also written beside the batch in the node's store; the node can put a
    # file where the batch's verdict folder goes. The verdict is still published on chain
    # and the daemon goes on (no store outage: the cursor is not held).
    from ogkit.verdict import _folder

    blocked, _ = net.batch("blocked-verdicts")
    failing, _ = net.batch("blocked-verdicts-missing")
    honest, _ = net.batch("after-blocked")
    store = blocked.store
    store.fs.makedirs(store.path("verdicts"), exist_ok=True)
    for b in (blocked, failing):
        store.fs.pipe_file(store.path(_folder(b.batch_id)), b"not a folder")
    store.fs.rm(store.object_path(ARTIFACTS, failing.artifact_id))
    start, _ = commit_block(net, blocked.batch_id)
    state = daemon(net, start, "verifier-2").run(max_polls=6)
    assert state is not None
    assert verdicts_of(net, blocked.batch_id, "verifier-2") == [True]
    assert verdicts_of(net, failing.batch_id, "verifier-2") == [False]
    assert verdicts_of(net, honest.batch_id, "verifier-2") == [True]


def test_names_the_file_system_refuses_are_findings_not_outages(net: World):
    # Records named with a 300-character file name, and records that are a symbolic link
    # loop: the node wrote those names; the daemon fails the batches and goes on.
    long_name, order = net.batch("long-name", commit=False)
    doc = copy.deepcopy(long_name.manifest.to_dict())
    doc["partitions"][0]["path"] = f"batches/{long_name.batch_id}/{'a' * 300}.parquet"
    commit_as(net, long_name, order, doc)
    loop, _ = net.batch("symlink-loop")
    honest, _ = net.batch("after-names")
    records = loop.store.path(loop.partitions[0].path)
    os.unlink(records)
    os.symlink(records, records)
    start, _ = commit_block(net, long_name.batch_id)
    state = daemon(net, start, "verifier-1", isolate=True).run(max_polls=4)
    assert state is not None
    assert verdicts_of(net, honest.batch_id) == [True]
    assert verdicts_of(net, long_name.batch_id) == [False]
    assert verdicts_of(net, loop.batch_id) == [False]
