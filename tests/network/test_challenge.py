"""A node that cheats on rows is challenged by ``ogkit challenge --watch`` (a real process)
and slashed once staked verifiers vote from the CLI; ``ogkit dispute show | vote | claim``;
a challenge of an honest row is refused before any bond is posted, and one opened anyway
(a made-up output hash) is rejected by the daemons' votes."""

from __future__ import annotations

import json

import pytest

from ogkit.attest import make_attester
from ogkit.chain.records import onchain_batch
from ogkit.cli import main
from ogkit.network.daemon import WatchConfig, rpc_connector
from ogkit.network.verifier import VerifierDaemon
from ogkit.settle import attest_batch, ensure_allowance
from ogkit.store import ContentStore

from .conftest import World, wait_for

pytestmark = pytest.mark.anvil

BAD_ROWS = set(range(7, 2000, 50))  # 40 of 2,000 rows: a 25% sample misses all ~1e-5


@pytest.fixture
def cli_env(net: World, monkeypatch: pytest.MonkeyPatch) -> World:
    for key in [k for k in list(__import__("os").environ) if k.startswith("OGKIT_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("OGKIT_HOME", str(net.home))
    monkeypatch.setenv("OGKIT_DEVNET_PORT", net.env["OGKIT_DEVNET_PORT"])
    return net


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict:
    assert main([*argv, "--json"]) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def opened(world: World, batch_id: str) -> list[dict]:
    return world.client().events(
        "InferenceSettlement",
        "ChallengeOpened",
        argument_filters={"batchId": bytes.fromhex(batch_id[2:])},
    )


def test_watcher_challenges_a_cheating_node_and_cli_votes_slash_it(
    cli_env: World, forge_batch, capsys: pytest.CaptureFixture[str]
):
    net = cli_env
    cheat = make_attester("software", signer=net.keys["enclave"])
    batch, _ = net.batch("cheater", forge=lambda b: forge_batch(b, BAD_ROWS, cheat))
    chain = net.client()
    token = chain.contract("OPGToken")
    challenger = net.keys["challenger"].address
    before = chain.call(token.functions.balanceOf(challenger))

    net.spawn(
        "challenge", "--watch", "--key", "challenger", "--sample-rate", "0.25", "--poll", "0.3",
        log="challenger",
    )  # fmt: skip
    (event,) = wait_for("the watcher's challenge", lambda: opened(net, batch.batch_id), timeout=90)
    row = int(event["args"]["rowIndex"])
    assert row in BAD_ROWS and event["args"]["challenger"] == challenger
    shown = run_json(capsys, "dispute", "show", batch.batch_id)
    assert shown["status"] == "disputed" and shown["row"] == row and shown["outcome"] == "open"

    # verifier-1's daemon re-executes the challenged row itself and votes upheld (2,000 of
    # 10,000 verifier stake); then votes from the CLI: 2,000 + 3,000 + 5,000 uphold it.
    daemon = VerifierDaemon(
        rpc_connector("devnet", net.home, net.devnet.port),
        net.keys["verifier-1"],
        net.home,
        ContentStore(net.home / "store"),
        watch=WatchConfig(poll=0.05, from_block=int(event["blockNumber"])),
    )
    state = daemon.run(max_polls=2)
    assert state is not None and state.done[f"dispute:{event['args']['disputeId']}"]["upheld"]
    run_json(capsys, "dispute", "vote", batch.batch_id, "--upheld", "--key", "verifier-2")
    after_vote = run_json(capsys, "dispute", "show", batch.batch_id)
    assert after_vote["status"] == "disputed" and after_vote["upheld_stake"] == 5_000 * 10**18
    final = run_json(capsys, "dispute", "vote", batch.batch_id, "--upheld", "--key", "verifier-3")
    assert final["status"] == "slashed" and final["outcome"] == "upheld"
    assert [v["verifier"] for v in final["votes"]] == [
        net.keys[f"verifier-{i}"].address for i in (1, 2, 3)
    ]
    (upheld,) = chain.events(
        "InferenceSettlement",
        "ChallengeUpheld",
        argument_filters={"batchId": bytes.fromhex(batch.batch_id[2:])},
    )
    assert upheld["args"]["slashed"] > 0 and upheld["args"]["challenger"] == challenger
    # The challenger got its bond back and its reward.
    gained = chain.call(token.functions.balanceOf(challenger)) - before
    assert gained == upheld["args"]["challengerReward"] > 0

    # A late vote is refused with the chain's reason; a voter claims its share of the fee.
    assert main(["dispute", "vote", batch.batch_id, "--rejected", "--key", "verifier-1"]) == 1
    assert "no open dispute" in capsys.readouterr().err
    claim = run_json(capsys, "dispute", "claim", batch.batch_id, "--key", "verifier-3")
    assert claim["claimed"] > 0
    assert main(["dispute", "claim", batch.batch_id, "--key", "verifier-3"]) == 1
    assert "AlreadyClaimed" in capsys.readouterr().err
    assert run_json(capsys, "dispute", "claim", batch.batch_id, "--key", "verifier-1")["claimed"]
    # A key that neither voted upheld nor signed a fail verdict has nothing to claim.
    assert main(["dispute", "claim", batch.batch_id, "--key", "challenger"]) == 1
    assert "no reward to claim" in capsys.readouterr().err


def test_challenging_an_honest_row_is_refused_before_any_bond(
    cli_env: World, capsys: pytest.CaptureFixture[str]
):
    net = cli_env
    batch, _ = net.batch("honest-row")
    chain = net.client()
    block = chain.block_number()
    code = main(["challenge", batch.artifact_id, "3", "--key", "challenger"])
    assert code == 1
    assert "nothing to challenge" in capsys.readouterr().err
    assert main(["challenge", batch.artifact_id, "5000", "--key", "challenger"]) == 1
    assert "outside batch" in capsys.readouterr().err
    commits = chain.events("InferenceSettlement", "ChallengeCommitted", block + 1)
    assert commits == []  # no transaction was sent
    assert run_json(capsys, "dispute", "show", batch.batch_id)["dispute_id"] == 0


def test_a_griefing_challenge_of_an_honest_row_is_rejected_by_the_daemons(
    cli_env: World, capsys: pytest.CaptureFixture[str]
):
    """The contract only checks that the claimed output differs from the receipt's, so
    anyone can dispute an honest batch with a made-up hash: the daemons re-execute the row,
    vote rejected, and the griefer's bond is split: half to the requester whose batch it
    held open, the rest to the node."""
    net = cli_env
    batch, _ = net.batch("griefed")
    chain = net.client()
    settlement = chain.contract("InferenceSettlement")
    tx = grief(net, batch, row=11)
    opened_dispute = run_json(capsys, "dispute", "show", batch.batch_id)
    assert opened_dispute["status"] == "disputed"
    token = chain.contract("OPGToken")
    node_before = chain.call(token.functions.balanceOf(net.keys["node"].address))
    requester_before = chain.call(token.functions.balanceOf(net.keys["requester"].address))
    for name in ("verifier-2", "verifier-3"):  # 3,000 + 5,000 of 10,000: the quorum
        daemon = VerifierDaemon(
            rpc_connector("devnet", net.home, net.devnet.port),
            net.keys[name],
            net.home,
            ContentStore(net.home / "store"),
            watch=WatchConfig(poll=0.05, from_block=int(tx["blockNumber"])),
        )
        state = daemon.run(max_polls=2)
        vote = state.done[f"dispute:{opened_dispute['dispute_id']}"]
        assert vote["upheld"] is False and "committed output" in vote["why"]
    shown = run_json(capsys, "dispute", "show", batch.batch_id)
    assert shown["outcome"] == "rejected" and shown["status"] == "pending"
    bond = chain.call(settlement.functions.challengeBond())
    node_gain = chain.call(token.functions.balanceOf(net.keys["node"].address)) - node_before
    requester_gain = (
        chain.call(token.functions.balanceOf(net.keys["requester"].address)) - requester_before
    )
    assert (requester_gain, node_gain) == (bond // 2, bond - bond // 2)


def grief(net: World, batch, row: int) -> dict:
    """Open a dispute on ``row`` of committed ``batch`` with a made-up output hash, as any
    key can (commit, then reveal in a later block); returns the reveal's receipt."""
    chain = net.client()
    settlement = chain.contract("InferenceSettlement")
    griefer = net.keys["challenger"]
    receipt = batch.receipt(row)
    values = receipt["leaf_values"]
    found = onchain_batch(chain, batch.batch_id)
    key = bytes.fromhex(batch.batch_id[2:])
    made_up, salt = b"\x42" * 32, b"\x07" * 32
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
    return chain.transact(
        settlement.functions.challenge(
            key,
            found.as_tuple,
            (row, bytes.fromhex(values["inputHash"][2:]), bytes.fromhex(values["outputHash"][2:]),
             made_up, salt),
            [bytes.fromhex(p[2:]) for p in receipt["proof"]],
        ),
        griefer,
        gas=1_000_000,
    )  # fmt: skip


def test_dispute_resolve_falls_back_to_the_signed_verdicts(
    cli_env: World, capsys: pytest.CaptureFixture[str]
):
    """Nobody votes: after the voting time `ogkit dispute resolve` closes the dispute with
    the batch's published verdicts (three passes: rejected, the batch pending again)."""
    net = cli_env
    batch, _ = net.batch("resolved-by-verdicts")
    chain = net.client()
    for i in (1, 2, 3):
        attest_batch(chain, batch, passed=True, verifier=net.keys[f"verifier-{i}"], publish=True)
    grief(net, batch, row=5)
    assert main(["dispute", "resolve", batch.batch_id, "--key", "node"]) == 1
    assert "VotingOpen" in capsys.readouterr().err  # not before the voting time is over
    chain.increase_time(chain.deployment.params.challenge_window + 1)
    doc = run_json(capsys, "dispute", "resolve", batch.batch_id, "--key", "node")
    assert doc["resolved"] == "rejected" and doc["status"] == "pending" and doc["votes"] == []


def test_the_node_presents_its_pass_verdicts_when_nobody_votes_on_a_dispute(
    cli_env: World, tmp_path
):
    """A griefer disputes an honest row and no verifier votes. The node's job finaliser,
    once the voting time is over, presents the pass verdicts the verifiers signed (here
    only in the store, never published on chain): the dispute is rejected, the batch goes
    on. Without them it would be voided a window later and the batch refunded."""
    from ogkit.load import load_model
    from ogkit.network.disputes import dispute_info
    from ogkit.node.jobs import JobBook, JobRunner
    from ogkit.settle import claim_domain
    from ogkit.verdict import sign_verdict, store_verdict

    net = cli_env
    chain = net.client()
    settlement = chain.contract("InferenceSettlement")
    store = ContentStore(net.home / "store")
    batch, _ = net.batch("defended")
    digest = onchain_batch(chain, batch.batch_id).record["claimDigest"]
    for name in ("verifier-2", "verifier-3"):  # 8,000 of 10,000 stake: the quorum
        store_verdict(
            store, sign_verdict(net.keys[name], claim_domain(chain), batch.batch_id, digest, True)
        )
    snapshot = chain.snapshot()
    try:
        grief(net, batch, row=11)
        runner = JobRunner(
            book=JobBook(tmp_path / "jobs"), model=load_model("tab", hub=net.hub), hub=net.hub,
            store=store, attester=make_attester("software", signer=net.keys["enclave"]),
            node=net.keys["node"], chain=chain, home=net.home,
        )  # fmt: skip
        assert "voting until" in runner.defend(batch)
        assert dispute_info(chain, batch.batch_id).status == "disputed"
        chain.increase_time(int(chain.call(settlement.functions.challengeWindow())) + 1)
        said = runner.defend(batch)
        assert said.endswith("rejected"), said
        info = dispute_info(chain, batch.batch_id)
        assert (info.outcome, info.status) == ("rejected", "pending")
        assert runner.defend(batch) is None  # nothing open any more
        # A batch no verifier signed: the node has nothing to present and sends nothing.
        bare, _ = net.batch("undefended")
        grief(net, bare, row=3)
        chain.increase_time(int(chain.call(settlement.functions.challengeWindow())) + 1)
        assert "no pass verdicts" in runner.defend(bare)
        assert dispute_info(chain, bare.batch_id).status == "disputed"
    finally:
        chain.revert(snapshot)
