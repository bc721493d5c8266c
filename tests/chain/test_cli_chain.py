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
