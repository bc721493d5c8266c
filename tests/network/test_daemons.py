"""Verifier daemons as real processes on the anvil devnet: three of them verify and attest a
committed batch, which then finalises; one killed mid-batch and restarted attests exactly
once; one started while the chain is down backs off and catches up; SIGTERM stops them."""

from __future__ import annotations

import json
import signal

import pytest

from ogkit.network.cursor import load_state, state_path
from ogkit.settle import settle

from .conftest import World, kill_group, wait_for

pytestmark = pytest.mark.anvil


def verdicts_by(world: World, batch_id: str) -> dict[str, list[bool]]:
    chain = world.client()
    out: dict[str, list[bool]] = {}
    key = bytes.fromhex(batch_id[2:])
    for e in chain.events(
        "InferenceSettlement", "VerdictPublished", argument_filters={"batchId": key}
    ):
        out.setdefault(e["args"]["verifier"], []).append(bool(e["args"]["pass"]))
    return out


def daemon(world: World, name: str, *extra: str):
    return world.spawn(
        "verifier", "run", "--key", name, "--poll", "0.3", "--backoff-cap", "2", *extra, log=name
    )


def state_of(world: World, name: str):
    chain = world.client()
    return load_state(state_path(world.home, "verifier", world.keys[name].address, chain.chain_id))


def test_three_daemons_verify_and_the_batch_finalises(net: World):
    batch, order = net.batch("three-daemons")
    procs = [daemon(net, f"verifier-{i}") for i in (1, 2, 3)]
    verifiers = {net.keys[f"verifier-{i}"].address for i in (1, 2, 3)}
    published = wait_for(
        "three pass verdicts",
        lambda: (v := verdicts_by(net, batch.batch_id)) and set(v) == verifiers and v,
        timeout=90,
    )
    assert all(v == [True] for v in published.values()), published

    # SIGTERM: each stops cleanly, its state says what it did.
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    for proc in procs:
        assert proc.wait(timeout=20) == 0
    for i in (1, 2, 3):
        state = state_of(net, f"verifier-{i}")
        assert state is not None and state.pid is None
        assert state.done[batch.batch_id]["passed"] is True
        assert state.batches_verified >= 1

    chain = net.client()
    chain.increase_time(chain.deployment.params.challenge_window + 1)
    record = settle(batch, chain, node=net.keys["node"], order=order)
    assert record.status == "finalized"
    assert sorted(record.verdicts) == sorted(verifiers)


def test_daemon_killed_mid_batch_attests_exactly_once(net: World):
    batch, _ = net.batch("killed-daemon")
    proc = daemon(net, "verifier-1", "--sample-rate", "1.0")
    wait_for(
        "the daemon to start on the batch",
        lambda: f"verifying batch {batch.batch_id}" in net.log("verifier-1"),
        timeout=60,
        every=0.05,
    )
    kill_group(proc)  # SIGKILL, mid-batch: no cursor write, maybe no verdict yet
    address = net.keys["verifier-1"].address
    daemon(net, "verifier-1", "--sample-rate", "1.0")
    wait_for(
        "the restarted daemon to finish the batch",
        lambda: (s := state_of(net, "verifier-1")) and batch.batch_id in s.done,
        timeout=90,
    )
    assert verdicts_by(net, batch.batch_id)[address] == [True]
    # It stays at one: later polls (and the same events read again) attest nothing more.
    before = state_of(net, "verifier-1").next_block
    net.client().increase_time(1)  # a new block for the daemon to poll past
    wait_for("a later poll", lambda: state_of(net, "verifier-1").next_block > before)
    assert verdicts_by(net, batch.batch_id)[address] == [True]


def test_daemon_started_with_the_chain_down_backs_off_and_catches_up(net: World):
    net.devnet.down()
    proc = daemon(net, "verifier-2")
    wait_for(
        "three failed attempts, logged with their pauses",
        lambda: net.log("verifier-2").count("retrying in") >= 3,
        timeout=60,
    )
    assert proc.poll() is None  # still running
    net.devnet.up()
    batch, _ = net.batch("chain-was-down")
    address = net.keys["verifier-2"].address
    wait_for(
        "the verdict after the chain came back",
        lambda: verdicts_by(net, batch.batch_id).get(address),
        timeout=90,
    )
    log = net.log("verifier-2")
    pauses = [float(line.rsplit("retrying in ", 1)[1].split()[0]) for line in log.splitlines()
              if "retrying in" in line]  # fmt: skip
    assert pauses[:3] == sorted(pauses[:3]) and max(pauses) <= 2.0  # doubling, capped
    # The verdict is on chain before the daemon saves its state file: wait for that too.
    wait_for(
        "the daemon's state to record the batch",
        lambda: batch.batch_id in state_of(net, "verifier-2").to_dict()["done"],
        timeout=30,
    )
    status = json.loads(json.dumps(state_of(net, "verifier-2").to_dict()))
    assert status["done"][batch.batch_id]["passed"] is True
