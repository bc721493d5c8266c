"""The chain commands end to end on the anvil devnet, as a user types them."""

from __future__ import annotations

import json
import re

import pytest

from ogkit.cli import main
from ogkit.samples import sample_data_path

pytestmark = pytest.mark.anvil


@pytest.fixture(autouse=True)
def _stop_devnet(home):
    yield
    main(["chain", "down"])


def _json(capsys, argv):
    assert main([*argv, "--json"]) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def _order(capsys, home, commitment, name="order.json"):
    """``ogkit order new`` as the requester types it: the hub's model and price, the
    commitment from ``ogkit commit``, the one node allowed; then ``ogkit order show``."""
    path = home / name
    argv = ["order", "new", "--model", "tab", "--commitment", commitment, "--node", "node"]
    written = _json(capsys, [*argv, "--key", "requester", "--out", str(path)])
    assert written["signed"] and written["signature_valid"] and not written["any_node"]
    shown = _json(capsys, ["order", "show", str(path)])
    assert shown["signature_valid"] and shown["digest"] == written["digest"]
    return path, shown


def test_infer_settle_attest_finalize_from_the_cli(devnet_port, home, capsys, published):
    from ogkit.chain.connection import connect
    from ogkit.chain.devnet import Devnet
    from ogkit.keys import KeyStore

    status = _json(capsys, ["chain", "up"])
    assert status["running"] and status["deployed"] and str(devnet_port) in status["url"]
    keys = KeyStore(home)
    names = ["owner", "enclave", "requester", "node", "verifier-1", "verifier-2", "verifier-3"]
    signers = {n: keys.ensure_dev_key(n) for n in names}
    devnet = Devnet(home, port=devnet_port)
    devnet.fund_dev_accounts([s.address for s in signers.values()], eth=10**19, opg=10**23)
    client = connect("devnet", home=home, port=devnet_port)

    from ogkit.samples import sample_model_path
    from ogkit.settle import bootstrap_measurement, register_model

    # Publishing with --chain mirrors the manifest into the ModelRegistry, under its owner.
    argv = [
        "hub",
        "publish",
        str(sample_model_path("tabular")),
        "--name",
        "tab",
        "--version",
        "2.0.0",
        "--price",
        "1000",
        "--chain",
        "devnet",
    ]
    assert main(argv) == 0
    assert "registered in the ModelRegistry" in capsys.readouterr().out
    manifest = published.manifest("tab@2.0.0")
    assert register_model(client, manifest, signers["owner"]) is False

    # The requester commits to its data and signs an order for it; the node runs it.
    data = str(sample_data_path("tabular"))
    commitment = _json(capsys, ["commit", "tab", data])["text"]
    order_path, order = _order(capsys, home, commitment)
    assert order["order"]["model_id"] == manifest.model_id
    assert order["order"]["model_owner"] == signers["owner"].address
    assert order["order"]["node"] == signers["node"].address
    assert order["order"]["requester"] == signers["requester"].address
    assert int(order["order"]["max_price_per_row"]) == 1000
    settlement = client.contract("InferenceSettlement")
    assert order["domain"]["verifyingContract"] == settlement.address
    infer = ["infer", "--model", "tab", "--data", data, "--workers", "0"]
    out = _json(capsys, [*infer, "--commitment", commitment, "--chain", "devnet"])
    assert out["model_id"] == manifest.model_id
    artifact = out["artifact_id"]
    bootstrap_measurement(client, devnet.deployer(), out["runtime_id"])
    node = _json(
        capsys,
        [
            "stake",
            "register",
            "--role",
            "inference",
            "--amount",
            "10000opg",
            "--key",
            "node",
            "--attester-key",
            "enclave",
            "--measurement",
            out["runtime_id"],
        ],
    )
    assert node["role"] == "inference" and node["own_stake"] == 10_000 * 10**18
    assert node["attester"] == signers["enclave"].address
    for i in (1, 2, 3):
        _json(
            capsys,
            [
                "stake",
                "register",
                "--role",
                "verifier",
                "--amount",
                "2000opg",
                "--key",
                f"verifier-{i}",
            ],
        )
    allowed = _json(capsys, ["settle", "allow", "--key", "requester", "--amount", "1000000opg"])
    assert allowed["spender"] == settlement.address and allowed["tx"]

    # Without the requester's order nothing is committed; the error says how to get one.
    assert main(["settle", artifact]) != 0
    err = capsys.readouterr().err
    assert "ogkit order new" in err and "--order order.json" in err
    assert client.call(settlement.functions.statusOf(bytes.fromhex(out["batch_id"][2:]))) == 0

    first = _json(capsys, ["settle", artifact, "--order", str(order_path)])
    assert first["status"] == "pending" and first["commit_tx"]
    assert first["batch_id"] == out["batch_id"]
    # Verifiers 1 and 2 sign into the store (verdicts/<batch id>/), verifier 3 also
    # publishes on chain; all over the one committed claim.
    verdicts, where = [], []
    for i in (1, 2, 3):
        attest = ["verify", artifact, "--workers", "0", "--dataset", data, "--attest"]
        attest += ["--key", f"verifier-{i}", "--allow-attester", signers["enclave"].address]
        attest += ["--allow-measurement", out["runtime_id"]]
        verdict = _json(capsys, [*attest, "--publish"] if i == 3 else attest)
        signed = verdict["signed_verdict"]
        assert verdict["passed"] and signed["passed"]
        assert signed["verifier"] == signers[f"verifier-{i}"].address
        verdicts.append(signed)
        where.append(verdict["attest_tx"])
    assert len({v["claim_digest"] for v in verdicts}) == 1
    for stored, signed in zip(where[:2], verdicts, strict=False):
        assert f"verdicts/{out['batch_id']}/{signed['verifier'].lower()}.json" in stored
    assert re.fullmatch(r"0x[0-9a-f]{64}", where[2]), where[2]
    (published_verdict,) = client.events("InferenceSettlement", "VerdictPublished")
    assert published_verdict["args"]["verifier"] == signers["verifier-3"].address
    assert main(["chain", "advance", "3601"]) == 0
    assert "chain time is now" in capsys.readouterr().out
    done = _json(capsys, ["settle", artifact])
    assert done["status"] == "finalized" and done["commit_tx"] == first["commit_tx"]
    assert sorted(done["verdicts"]) == sorted(v["verifier"] for v in verdicts)
    assert len(client.events("InferenceSettlement", "BatchCommitted")) == 1
    listing = _json(capsys, ["settle", "status"])
    assert [r["status"] for r in listing["settlements"]] == ["finalized"]
    status = main(["audit", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert report["schema"] == "ogkit.audit.v1" and report["passed"], report["findings"]
    assert status == 0  # a passing audit exits 0
    assert [b["status"] for b in report["batches"]] == ["finalized"]
    assert report["batches"][0]["artifact_id"] == artifact

    # Pull payments: the owner withdraws the model payment, the node's fee goes into its
    # pool; the requester's order cannot be committed again.
    payment = 1000 * out["row_count"]
    verifier_fee = payment * 500 // 10_000
    share = verifier_fee * 2_000 // 6_000
    paid = _json(capsys, ["settle", "withdraw", "--key", "owner"])
    assert paid["amount"] == payment + verifier_fee - 3 * share and paid["tx"]
    fees = _json(capsys, ["settle", "fees", "--key", "node"])
    assert fees["amount"] == payment * 1_000 // 10_000 and fees["tx"]
    for i in (1, 2, 3):
        fees = _json(capsys, ["settle", "fees", "--key", f"verifier-{i}"])
        assert fees["amount"] == share
    assert _json(capsys, ["settle", "withdraw", "--key", "owner"])["amount"] == 0
    assert _json(capsys, ["settle", artifact, "--order", str(order_path)])["status"] == "finalized"
    assert len(client.events("InferenceSettlement", "BatchCommitted")) == 1
    assert main(["chain", "down"]) == 0
    assert "devnet stopped" in capsys.readouterr().out
    assert not _json(capsys, ["chain", "status"])["running"]


def test_a_newcomer_funds_keys_settles_after_a_chainless_run_and_gets_refunded(
    devnet_port, home, capsys, published
):
    """The README's order: keys (funded while the devnet is up), `chain fund`, `infer`,
    then `infer --chain devnet` (another batch, not the first again), `settle`, `settle
    status` in words, `chain advance`; a window closed without quorum expires and refunds."""
    from ogkit.chain.connection import connect
    from ogkit.samples import sample_model_path
    from ogkit.settle import bootstrap_measurement, ensure_allowance

    opg = 10**18
    assert main(["chain", "up"]) == 0
    capsys.readouterr()
    client = connect("devnet", home=home, port=devnet_port)
    token = client.contract("OPGToken")

    def balances(address):
        return int(client.w3.eth.get_balance(address)), int(
            client.call(token.functions.balanceOf(address))
        )

    # Dev keys are funded on creation while the devnet is up.
    assert main(["keys", "new", "requester", "--dev"]) == 0
    out = capsys.readouterr().out
    assert "funded on the devnet: 100 ETH, 100,000 OPG" in out
    assert "ogkit chain fund requester" in out
    keys = {}
    for name in ("enclave", "node", "verifier-1", "verifier-2"):
        keys[name] = _json(capsys, ["keys", "new", name, "--dev"])["address"]
        assert balances(keys[name]) == (100 * 10**18, 100_000 * opg)
    # The faucet: a key by name or an address; amounts as ETH / OPG or base units.
    fund = _json(capsys, ["chain", "fund", "owner", "--eth", "1.5eth", "--opg", "250opg"])
    assert fund["schema"] == "ogkit.chain.fund.v1" and fund["eth_sent"] == 15 * 10**17
    assert fund["opg_sent"] == 250 * opg and fund["opg_balance"] == 250 * opg
    stranger = "0x000000000000000000000000000000000000dEaD"
    assert main(["chain", "fund", stranger, "--eth", "0", "--opg", "1000"]) == 0
    assert f"funded {stranger} on devnet with 0 ETH and 0.000000000000001 OPG" in (
        capsys.readouterr().out
    )
    assert main(["chain", "fund", "nobody"]) != 0
    assert "ogkit keys new nobody --dev" in capsys.readouterr().err

    argv = ["hub", "publish", str(sample_model_path("tabular")), "--name", "tab"]
    assert main([*argv, "--version", "2.0.0", "--price", "1000", "--chain", "devnet"]) == 0
    capsys.readouterr()
    data = str(sample_data_path("tabular"))
    infer = ["infer", "--model", "tab", "--data", data, "--workers", "0"]
    chainless = _json(capsys, infer)
    # The requester commits to the data and signs an order; the node runs it for the chain.
    commitment = _json(capsys, ["commit", "tab", data])["text"]
    order_path, _ = _order(capsys, home, commitment)
    signed = _json(capsys, [*infer, "--commitment", commitment, "--chain", "devnet"])
    assert signed["batch_id"] != chainless["batch_id"]
    assert signed["artifact_id"] != chainless["artifact_id"]
    # A batch signed for no chain cannot be settled, even with the requester's order.
    assert main(["settle", chainless["artifact_id"], "--order", str(order_path)]) != 0
    assert "ogkit infer --chain" in capsys.readouterr().err

    artifact = signed["artifact_id"]
    bootstrap_measurement(client, client.deployer, signed["runtime_id"])
    stake = ["stake", "register", "--amount"]
    node = [*stake, "10000opg", "--role", "inference", "--key", "node", "--attester-key"]
    _json(capsys, [*node, "enclave", "--measurement", signed["runtime_id"]])
    for i in (1, 2):
        _json(capsys, [*stake, "2000opg", "--role", "verifier", "--key", f"verifier-{i}"])
    from ogkit.keys import KeyStore

    requester = KeyStore(home).load("requester")
    settlement = client.contract("InferenceSettlement")
    ensure_allowance(client, requester, settlement.address, 10**24)
    before = balances(requester.address)[1]

    first = _json(capsys, ["settle", artifact, "--order", str(order_path)])
    assert first["status"] == "pending" and first["commit_tx"]
    assert first["progress"]["next_command"] == f"ogkit verify {artifact} --attest --key VERIFIER"
    escrow = before - balances(requester.address)[1]
    assert escrow == 1000 * signed["row_count"] * (10_000 + 1_000 + 500) // 10_000
    assert main(["settle", "status"]) == 0
    out = capsys.readouterr().out
    assert "waiting for: quorum: 0 of 4,000 OPG verifier stake signed pass, needs 2/3" in out
    assert "challenge window closing at " in out and " UTC)" in out
    assert f"next: ogkit verify {artifact} --attest --key VERIFIER" in out

    # One verifier of two signs pass (into the store): 2,000 of 4,000 OPG, short of 2/3.
    attest = ["verify", artifact, "--workers", "0", "--dataset", data]
    attest += ["--allow-attester", keys["enclave"], "--allow-measurement", signed["runtime_id"]]
    assert _json(capsys, [*attest, "--attest", "--key", "verifier-1"])["signed_verdict"]["passed"]
    listing = _json(capsys, ["settle", "status"])
    (row,) = listing["settlements"]
    assert row["progress"]["yes_stake"] == 2_000 * opg
    assert row["progress"]["verifier_stake"] == 4_000 * opg
    assert not row["progress"]["quorum_reached"]

    # The window closes without quorum: nobody can finalise, and the batch stays escrowed
    # through a grace of one more window ...
    assert main(["chain", "advance", "3601"]) == 0
    capsys.readouterr()
    assert main(["settle", "status"]) == 0
    out = capsys.readouterr().out
    assert "verdicts: the challenge window closed at" in out and "without quorum" in out
    assert f"next: ogkit settle {artifact}" in out
    waiting = _json(capsys, ["settle", artifact])
    assert waiting["status"] == "pending" and not waiting["expire_tx"]
    assert waiting["refunded"] is None and waiting["waiting_for"].startswith("QuorumNotReached")
    assert balances(requester.address)[1] == before - escrow

    # ... after which settling expires it and refunds the requester, once.
    assert main(["chain", "advance", "3600"]) == 0
    capsys.readouterr()
    assert main(["settle", artifact]) == 0
    out = capsys.readouterr().out
    assert f"expired, requester refunded {escrow // opg:,}" in out
    assert balances(requester.address)[1] == before
    done = _json(capsys, ["settle", artifact])
    assert done["status"] == "refunded" and done["refunded"] == escrow and done["expire_tx"]
    assert done["progress"]["next_command"] == ""
    assert len(client.events("InferenceSettlement", "BatchRefunded")) == 1
    assert balances(requester.address)[1] == before
