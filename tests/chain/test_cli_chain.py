"""The chain commands end to end on the anvil devnet, as a user types them."""

from __future__ import annotations

import json

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
    from ogkit.settle import bootstrap_measurement, ensure_allowance, register_model

    # Publishing with --chain mirrors the manifest into the ModelRegistry.
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
    assert register_model(client, published.manifest("tab@2.0.0"), signers["owner"]) is False
    out = _json(
        capsys,
        [
            "infer",
            "--model",
            "tab",
            "--data",
            str(sample_data_path("tabular")),
            "--workers",
            "0",
            "--chain",
            "devnet",
        ],
    )
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
    ensure_allowance(
        client, signers["requester"], client.contract("InferenceSettlement").address, 10**24
    )

    first = _json(capsys, ["settle", artifact])
    assert first["status"] == "pending" and first["commit_tx"]
    for i in (1, 2, 3):
        verdict = _json(
            capsys,
            [
                "verify",
                artifact,
                "--workers",
                "0",
                "--dataset",
                str(sample_data_path("tabular")),
                "--attest",
                "--key",
                f"verifier-{i}",
                "--allow-attester",
                signers["enclave"].address,
                "--allow-measurement",
                out["runtime_id"],
            ],
        )
        assert verdict["passed"] and verdict["attest_tx"]
    assert main(["chain", "advance", "3601"]) == 0
    assert "chain time is now" in capsys.readouterr().out
    done = _json(capsys, ["settle", artifact])
    assert done["status"] == "finalized" and done["commit_tx"] == first["commit_tx"]
    listing = _json(capsys, ["settle", "status"])
    assert [r["status"] for r in listing["settlements"]] == ["finalized"]
    status = main(["audit", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert report["schema"] == "ogkit.audit.v1" and report["passed"], report["findings"]
    assert status == 0  # a passing audit exits 0
    assert [b["status"] for b in report["batches"]] == ["finalized"]
    assert report["batches"][0]["artifact_id"] == artifact
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
    infer = ["infer", "--model", "tab", "--data", str(sample_data_path("tabular"))]
    infer += ["--workers", "0"]
    chainless = _json(capsys, infer)
    signed = _json(capsys, [*infer, "--chain", "devnet"])
    assert signed["batch_id"] != chainless["batch_id"]
    assert signed["artifact_id"] != chainless["artifact_id"]
    assert main(["settle", chainless["artifact_id"]]) != 0
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

    first = _json(capsys, ["settle", artifact])
    assert first["status"] == "pending" and first["commit_tx"]
    assert first["progress"]["next_command"] == f"ogkit verify {artifact} --attest --key VERIFIER"
    escrow = before - balances(requester.address)[1]
    assert main(["settle", "status"]) == 0
    out = capsys.readouterr().out
    assert "waiting for: quorum: 0 of 4,000 OPG verifier stake attested pass, needs 2/3" in out
    assert "challenge window closing at " in out and " UTC)" in out
    assert f"next: ogkit verify {artifact} --attest --key VERIFIER" in out

    attest = ["verify", artifact, "--workers", "0", "--dataset", str(sample_data_path("tabular"))]
    attest += ["--allow-attester", keys["enclave"], "--allow-measurement", signed["runtime_id"]]
    assert _json(capsys, [*attest, "--attest", "--key", "verifier-1"])["attest_tx"]
    listing = _json(capsys, ["settle", "status"])
    (row,) = listing["settlements"]
    assert row["progress"]["yes_stake"] == 2_000 * opg
    assert row["progress"]["verifier_stake"] == 4_000 * opg
    assert not row["progress"]["quorum_reached"]

    assert main(["chain", "advance", "3601"]) == 0
    capsys.readouterr()
    assert main(["settle", "status"]) == 0
    out = capsys.readouterr().out
    assert (
        "expiry: the challenge window closed at" in out and f"next: ogkit settle {artifact}" in out
    )
    assert main(["settle", artifact]) == 0
    out = capsys.readouterr().out
    assert f"expired, requester refunded {escrow // opg:,}" in out
    assert balances(requester.address)[1] == before
    done = _json(capsys, ["settle", artifact])
    assert done["status"] == "refunded" and done["refunded"] == escrow and done["expire_tx"]
    assert done["progress"]["next_command"] == ""
