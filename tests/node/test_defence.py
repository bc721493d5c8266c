"""Dispute defence of batches outside the job finaliser, against the node process and the
real anvil devnet: a paid per-request batch (committed through an order its payer signed)
and a batch settled by hand (`ogkit settle ARTIFACT --order …`) are both disputed by a
griefer in the last seconds of their window, nobody votes, and the running node presents
the pass verdicts held in its store once the voting time is over, then finalises both
with its fee paid. A dishonest node cannot use the defence (or the contract) to rescue a
batch without a quorum of pass verdicts, nor one whose dispute the vote upheld; a chain
that is down is reported and backed off from. Runs its own module's node (conftest)."""

from __future__ import annotations

import json

import pytest
from web3 import Web3

from ogkit.attest import make_attester
from ogkit.batch import load_batch
from ogkit.chain.bindings import BatchStatus
from ogkit.chain.client import ChainClient
from ogkit.chain.records import onchain_batch
from ogkit.cli import main
from ogkit.client import Node
from ogkit.errors import ChainError, SettlementError
from ogkit.infer import run_verified_inference
from ogkit.load import load_model
from ogkit.network.disputes import dispute_info
from ogkit.node.defence import DisputeDefender, defend_dispute, pass_verdicts
from ogkit.order import new_order
from ogkit.samples import make_tabular
from ogkit.settle import (
    attest_batch,
    claim_domain,
    ensure_allowance,
    settle,
    vote_dispute,
)
from ogkit.verdict import sign_verdict, store_verdict

from .conftest import OPG, PRICE, WINDOW, free_port, wait_for

pytestmark = pytest.mark.anvil


def _b(hex_text: str) -> bytes:
    return bytes.fromhex(hex_text.removeprefix("0x"))


def _status(net, batch_id: str) -> BatchStatus:
    settlement = net.chain.contract("InferenceSettlement")
    return BatchStatus(net.chain.call(settlement.functions.statusOf(bytes.fromhex(batch_id[2:]))))


def _order(net, batch, requester: str):
    settlement = net.chain.contract("InferenceSettlement")
    return new_order(
        requester=net.keys[requester].address,
        model_id=net.manifest.model_id,
        model_owner=net.manifest.owner,
        commitment=(batch.manifest.dataset_id, batch.row_count),
        job=batch.manifest.job,
        node=net.keys["node"].address,
        max_price_per_row=PRICE,
        chain_id=net.chain.chain_id,
        verifying_contract=settlement.address,
        now=net.chain.block_timestamp(),
    ).sign(net.keys[requester])


def _hand_batch(net, job: str, seed: int):
    """A batch of 40 rows the operator ran itself (``ogkit infer``'s pipeline)."""
    data = net.home / f"{job}.parquet"
    make_tabular(40, seed=seed).write_parquet(data)
    return run_verified_inference(
        load_model("tab", hub=net.hub),
        data,
        attester=make_attester("software", signer=net.keys["enclave"]),
        requester=net.keys["requester"].address,
        hub=net.hub,
        store=net.hub.store,
        job=job,
        domain=claim_domain(net.chain),
        progress=False,
    )


def _grief(net, batch, row: int) -> None:
    """Dispute an honest ``row`` with a made-up output hash (commit, then reveal), as any
    key holding a bond can; the griefer here is the model owner's key."""
    chain, griefer = net.chain, net.keys["owner"]
    settlement = chain.contract("InferenceSettlement")
    values = batch.receipt(row)["leaf_values"]
    proof = [bytes.fromhex(p[2:]) for p in batch.receipt(row)["proof"]]
    key = bytes.fromhex(batch.batch_id[2:])
    made_up, salt = b"\x42" * 32, bytes([row + 1]) * 32
    ensure_allowance(
        chain, griefer, settlement.address, chain.call(settlement.functions.challengeBond())
    )
    chain.transact(
        settlement.functions.commitChallenge(
            chain.call(
                settlement.functions.challengeCommitment(griefer.address, key, row, made_up, salt)
            )
        ),
        griefer,
    )
    chain.transact(
        settlement.functions.challenge(
            key,
            onchain_batch(chain, batch.batch_id).as_tuple,
            (row, bytes.fromhex(values["inputHash"][2:]),
             bytes.fromhex(values["outputHash"][2:]), made_up, salt),
            proof,
        ),
        griefer,
        gas=1_000_000,
    )  # fmt: skip
    assert _status(net, batch.batch_id) == BatchStatus.DISPUTED


def _node_fees(net) -> int:
    settlement = net.chain.contract("InferenceSettlement")
    return int(net.chain.call(settlement.functions.nodeFees(net.keys["node"].address)))


def test_griefed_paid_and_hand_settled_batches_are_defended_and_finalised_by_the_node(net, capsys):
    chain = net.chain
    settlement = chain.contract("InferenceSettlement")
    payer = net.keys["payer"]
    # The payer signs an order for its paid call's batch, so it is settled on chain too;
    # it needs ETH for the allowance (the x402 payment itself needed none).
    net.devnet.fund_dev_accounts([payer.address], eth=10**19, opg=0)
    ensure_allowance(chain, payer, settlement.address, 10 * OPG)
    rows = make_tabular(3, seed=41).drop("label").to_dicts()
    with Node(net.node.url, timeout=60) as client:
        answer = client.infer(rows, payer=payer, now=chain.block_timestamp())
    paid = load_batch(answer["artifact_id"], net.hub.store)
    assert paid.manifest.job.startswith("x402:") and paid.claim.requester == payer.address
    settle(paid, chain, node=net.keys["node"], order=_order(net, paid, "payer"), finalize=False)

    # A batch settled by hand: `ogkit settle ARTIFACT --order order.json --no-finalize`.
    hand = _hand_batch(net, "hand-settled", seed=42)
    order_path = net.home / "hand-order.json"
    order_path.write_text(json.dumps(_order(net, hand, "requester").to_dict()))
    args = ["--home", str(net.home), "settle", hand.artifact_id, "--order", str(order_path),
            "--node-key", "node", "--no-finalize", "--chain", net.devnet.url, "--json"]  # fmt: skip
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "pending"

    for batch in (paid, hand):  # three verifiers sign pass verdicts into the node's store
        for i in (1, 2, 3):
            attest_batch(chain, batch, passed=True, verifier=net.keys[f"verifier-{i}"])
    # The griefer waits for the last seconds of the window, then disputes both.
    chain.increase_time(WINDOW - 8)
    _grief(net, paid, row=1)
    _grief(net, hand, row=7)
    fees_before = _node_fees(net)
    chain.increase_time(WINDOW + 1)  # nobody votes; the voting time is over
    for batch in (paid, hand):
        wait_for(lambda b=batch: dispute_info(chain, b.batch_id).outcome == "rejected", 40)
        assert _status(net, batch.batch_id) == BatchStatus.PENDING
    chain.increase_time(WINDOW + 1)  # the fresh window after the rejection
    for batch in (paid, hand):
        wait_for(lambda b=batch: _status(net, b.batch_id) == BatchStatus.FINALIZED, 40)
    paid_out = chain.events(
        "InferenceSettlement", "BatchFinalized", onchain_batch(chain, paid.batch_id).block
    )
    fees = {"0x" + bytes(e["args"]["batchId"]).hex(): int(e["args"]["nodeFee"]) for e in paid_out}
    assert fees[paid.batch_id] > 0 and fees[hand.batch_id] > 0
    assert _node_fees(net) - fees_before >= fees[paid.batch_id] + fees[hand.batch_id]
    # The hand-settled batch's journal says what the node did.
    record = json.loads(
        (net.home / "settlements" / str(chain.chain_id) / f"{hand.batch_id}.json").read_text()
    )
    assert record["status"] == "finalized" and record["finalize_tx"].startswith("0x")


def test_many_disputes_while_the_node_is_down_are_defended_by_the_cli(net, capsys):
    """The node process is stopped; a griefer disputes four of its batches at once. One
    `ogkit dispute defend` pass after the voting time rejects all four with the verdicts
    in the store, a second one after the fresh window finalises them."""
    chain = net.chain
    assert net.node.stop() == 0
    try:
        batches = [_hand_batch(net, f"many-{i}", seed=50 + i) for i in range(4)]
        for batch in batches:
            order = _order(net, batch, "requester")
            settle(batch, chain, node=net.keys["node"], order=order, finalize=False)
            for i in (2, 3):  # 8,000 of 10,000 verifier stake
                attest_batch(chain, batch, passed=True, verifier=net.keys[f"verifier-{i}"])
        for i, batch in enumerate(batches):
            _grief(net, batch, row=i)
        args = ["--home", str(net.home), "dispute", "defend", "--key", "node", "--chain",
                net.devnet.url, "--json"]  # fmt: skip
        assert main(args) == 0
        early = {a["batch_id"]: a for a in json.loads(capsys.readouterr().out)["actions"]}
        assert {early[b.batch_id]["action"] for b in batches} == {"waiting"}
        chain.increase_time(WINDOW + 1)
        assert main(args) == 0
        done = {a["batch_id"]: a for a in json.loads(capsys.readouterr().out)["actions"]}
        for batch in batches:
            assert done[batch.batch_id]["action"] == "presented", done[batch.batch_id]
            assert done[batch.batch_id]["outcome"] == "rejected"
            assert done[batch.batch_id]["tx"].startswith("0x")
        chain.increase_time(WINDOW + 1)
        assert main(args[:-1]) == 0  # the text output this time
        out = capsys.readouterr().out
        for batch in batches:
            assert f"batch {batch.batch_id} finalized: finalized" in out
            assert _status(net, batch.batch_id) == BatchStatus.FINALIZED
    finally:
        net.restart_node()


def test_a_batch_without_a_quorum_of_pass_verdicts_is_not_rescued(net, capsys):
    """One batch nobody signed, one with a pass short of the quorum and an equivocating
    verifier (its pass dropped): `ogkit dispute defend` sends nothing for either, and the
    contract refuses the node's own attempt to reject with them; a window later anyone
    voids both and the requester gets its escrow back."""
    chain = net.chain
    settlement = chain.contract("InferenceSettlement")
    node = net.keys["node"]
    bare, short = _hand_batch(net, "bare", seed=43), _hand_batch(net, "short", seed=44)
    for batch in (bare, short):
        settle(batch, chain, node=node, order=_order(net, batch, "requester"), finalize=False)
    digest = onchain_batch(chain, short.batch_id).record["claimDigest"]
    attest_batch(chain, short, passed=True, verifier=net.keys["verifier-1"])  # 20 % of stake
    for passed in (True, False):  # verifier-3 signs both: its pass must not count
        store_verdict(
            net.hub.store,
            sign_verdict(
                net.keys["verifier-3"], claim_domain(chain), short.batch_id, digest, passed
            ),
        )
    # A pass verdict from a key that has no stake is published on chain: worth nothing.
    stranger = net.keys["payer-2"]
    net.devnet.fund_dev_accounts([stranger.address], eth=10**19, opg=0)
    found = onchain_batch(chain, short.batch_id)
    junk = sign_verdict(stranger, claim_domain(chain), short.batch_id, digest, True)
    chain.transact(
        settlement.functions.publishVerdict(
            bytes.fromhex(short.batch_id[2:]), found.as_tuple, True, _b(junk.signature)
        ),
        stranger,
    )
    assert [v.verifier for v in pass_verdicts(chain, found, net.hub.store)] == [
        net.keys["verifier-1"].address
    ]
    _grief(net, bare, row=2)
    _grief(net, short, row=3)
    fees_before = _node_fees(net)
    chain.increase_time(WINDOW + 1)

    args = ["--home", str(net.home), "dispute", "defend", "--key", "node", "--chain",
            net.devnet.url, "--json"]  # fmt: skip
    assert main(args) == 0
    doc = json.loads(capsys.readouterr().out)
    by_batch = {a["batch_id"]: a for a in doc["actions"]}
    assert by_batch[bare.batch_id]["action"] == "no-verdicts"
    assert by_batch[short.batch_id]["action"] == "below-quorum"
    assert "20.0%" in by_batch[short.batch_id]["detail"]
    assert all(a["tx"] is None for a in doc["actions"])
    # A re-run of `ogkit settle ARTIFACT` on the disputed batch tries the defence too.
    args = ["--home", str(net.home), "settle", short.artifact_id, "--node-key", "node",
            "--chain", net.devnet.url, "--json"]  # fmt: skip
    assert main(args) == 0
    settled = json.loads(capsys.readouterr().out)
    assert settled["defence"]["action"] == "below-quorum" and settled["defence"]["tx"] is None
    for batch in (bare, short):
        assert dispute_info(chain, batch.batch_id).status == "disputed"

    # The node presents its short pass verdicts itself: before the second window the
    # contract refuses (only decisive verdicts resolve it), after it they only void it.
    passes = pass_verdicts(chain, found, net.hub.store)
    info = dispute_info(chain, short.batch_id)
    resolve = settlement.functions.resolveChallenge(
        info.dispute_id, found.as_tuple, [v.as_tuple() for v in passes]
    )
    with pytest.raises(SettlementError, match="VotingOpen"):
        chain.call(resolve)
    chain.increase_time(WINDOW + 1)
    chain.transact(resolve, node)
    assert dispute_info(chain, short.batch_id).outcome == "voided"
    requester = net.keys["requester"]
    bare_info = dispute_info(chain, bare.batch_id)
    chain.transact(
        settlement.functions.resolveChallenge(
            bare_info.dispute_id, onchain_batch(chain, bare.batch_id).as_tuple, []
        ),
        requester,
    )
    for batch in (bare, short):
        assert _status(net, batch.batch_id) == BatchStatus.REFUNDED
    assert _node_fees(net) == fees_before  # no fee for either


def test_a_chain_that_is_down_is_reported_and_backed_off(net, capsys):
    """The devnet's RPC goes away (the client is pointed at a port nobody listens on, as
    after anvil died): a step raises ChainError naming it, a poll reports it and waits
    before trying again, and the CLI exits 1 with the message, no traceback."""
    dead = f"http://127.0.0.1:{free_port()}"
    down = ChainClient(
        Web3(Web3.HTTPProvider(net.devnet.url, request_kwargs={"timeout": 2})),
        net.chain.deployment,
        name="down",
        kind="devnet",
    )
    down.w3.provider = Web3.HTTPProvider(dead, request_kwargs={"timeout": 2})
    defender = DisputeDefender(down, net.keys["node"], net.hub.store, max_backoff=30)
    with pytest.raises(ChainError):
        defender.step()
    assert defender.poll() == [] and defender.last_error and defender.backing_off > 0
    assert defender.poll() == []  # backing off: not tried again at once
    down.w3.provider = Web3.HTTPProvider(net.devnet.url, request_kwargs={"timeout": 2})
    wait_for(lambda: defender.backing_off == 0, 5, 0.1)
    assert isinstance(defender.poll(), list) and defender.last_error is None  # back again
    assert defender.watched >= 0
    assert main(["--home", str(net.home), "dispute", "defend", "--key", "node", "--chain",
                 dead]) == 1  # fmt: skip
    err = capsys.readouterr().err
    assert "127.0.0.1" in err and "Traceback" not in err


def test_an_upheld_dispute_is_not_rescued_with_pass_verdicts(net):
    """Verifiers uphold a dispute (here two of them, whatever the row): the batch is
    Slashed. The node holds pass verdicts of all three, signed earlier; neither the
    defence nor a direct resolveChallenge can use them any more. Runs last (it slashes)."""
    chain = net.chain
    settlement = chain.contract("InferenceSettlement")
    node = net.keys["node"]
    batch = _hand_batch(net, "upheld", seed=45)
    settle(batch, chain, node=node, order=_order(net, batch, "requester"), finalize=False)
    for i in (1, 2, 3):
        attest_batch(chain, batch, passed=True, verifier=net.keys[f"verifier-{i}"])
    _grief(net, batch, row=4)
    info = dispute_info(chain, batch.batch_id)
    for name in ("verifier-2", "verifier-3"):
        vote_dispute(chain, batch.batch_id, upheld=True, verifier=net.keys[name])
    assert dispute_info(chain, batch.batch_id).outcome == "upheld"
    assert _status(net, batch.batch_id) == BatchStatus.SLASHED
    chain.increase_time(WINDOW + 1)
    found = onchain_batch(chain, batch.batch_id)
    assert defend_dispute(chain, found, node=node, store=net.hub.store) is None
    passes = pass_verdicts(chain, found, net.hub.store)
    assert len(passes) == 3
    with pytest.raises(SettlementError):
        chain.call(
            settlement.functions.resolveChallenge(
                info.dispute_id, found.as_tuple, [v.as_tuple() for v in passes]
            )
        )
    actions = DisputeDefender(chain, node, net.hub.store, finalize=False).step()
    assert all(a.batch_id != batch.batch_id for a in actions)


def test_dispute_defend_watch_runs_until_sigterm(net):
    """`ogkit dispute defend --watch` as its own process: it says what it watches, keeps
    polling, and exits 0 on SIGTERM."""
    import signal
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-m", "ogkit.cli", "--home", str(net.home), "dispute", "defend",
         "--key", "node", "--watch", "--interval", "0.3", "--chain", net.devnet.url],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=net.env,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith(f"defending the batches of node {net.keys['node'].address}")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-2000:]
    assert "Traceback" not in err
