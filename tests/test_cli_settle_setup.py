"""The two set-up steps before a first settlement have commands, and the errors that need
them name them: `ogkit chain approve-measurement` (dev chains; elsewhere governance, which
the error names) with the warning `ogkit stake register --measurement` gives while the
measurement is not approved, and `ogkit settle allow` with the hint a commit without the
requester's allowance gives; a commit without the requester's signed order names `ogkit
order new` (and an unsigned one `ogkit order sign`). `ogkit infer` signs for
`$OGKIT_CHAIN` when it is set.

Every CLI call of a test talks to one embedded chain (the CLI would make a new one per
process), reverted after the test."""

from __future__ import annotations

import json

import pytest

from ogkit.chain.connection import connect
from ogkit.cli import main
from ogkit.keys import KeyStore
from ogkit.samples import sample_data_path
from ogkit.settings import Settings

OPG = 10**18


@pytest.fixture(scope="module")
def module_chain():
    return connect("embedded")


@pytest.fixture
def chain(module_chain, monkeypatch):
    """The module's embedded chain for every ``connect_from_settings``; the targets the CLI
    asked for are in ``chain.targets``."""
    import ogkit.chain.connection as connection

    targets: list[str | None] = []

    def connect_from_settings(settings, target=None, **kwargs):
        targets.append(target)
        return module_chain

    snapshot = module_chain.snapshot()
    monkeypatch.setattr(connection, "connect_from_settings", connect_from_settings)
    monkeypatch.setattr(module_chain, "targets", targets, raising=False)
    yield module_chain
    module_chain.revert(snapshot)


def _json(capsys, argv):
    assert main([*argv, "--json"]) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def _infer(*extra: str) -> list[str]:
    data = str(sample_data_path("tabular"))
    return ["infer", "--model", "tab", "--data", data, "--workers", "0", *extra]


@pytest.fixture
def ready(chain, home, published, capsys):
    """Funded keys, tab@1.0.0 registered on chain, a batch signed for the chain."""
    from ogkit.settle import register_model

    keys = KeyStore(home)
    signers = {n: keys.ensure_dev_key(n) for n in ("owner", "enclave", "requester", "node")}
    for signer in signers.values():
        chain.fund(signer.address, eth=10**19, opg=100_000 * OPG)
    register_model(chain, published.manifest("tab@1.0.0"), signers["owner"])
    run = _json(capsys, _infer("--chain", "embedded"))
    return signers, run


def test_approve_measurement_and_the_stake_warning(ready, chain, capsys) -> None:
    _, run = ready
    runtime = run["runtime_id"]
    stake = ["stake", "register", "--role", "inference", "--amount", "10000opg", "--key", "node"]
    # An inference node without its enclave key cannot be bound: said before anything is sent.
    assert main([*stake, "--measurement", runtime, "--chain", "embedded"]) == 1
    assert "an inference node needs --attester-key" in capsys.readouterr().err
    stake += ["--attester-key", "enclave", "--measurement", runtime, "--chain", "embedded"]
    assert main(stake) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err  # one line
    assert err[0].startswith(f"warning: measurement {runtime} is not approved on embedded yet")
    assert f"`ogkit chain approve-measurement {runtime} --chain embedded`" in err[0]

    approve = ["chain", "approve-measurement", runtime, "--chain", "embedded"]
    doc = _json(capsys, approve)
    assert doc["schema"] == "ogkit.chain.approve_measurement.v1"
    assert doc["measurement"] == runtime and doc["approved"] and doc["newly_approved"]
    assert main(approve) == 0  # idempotent
    assert f"measurement {runtime} already approved on embedded" in capsys.readouterr().out
    registry = chain.contract("NodeRegistry")
    assert chain.call(registry.functions.isMeasurementApproved(bytes.fromhex(runtime[2:])))

    assert main(stake) == 0  # registered already, and now approved: no warning
    assert capsys.readouterr().err == ""

    assert main(["chain", "approve-measurement", "0x1234"]) == 1
    assert "not a 32-byte hex id" in capsys.readouterr().err


def test_approve_measurement_elsewhere_names_governance(ready, chain, capsys, monkeypatch):
    other = "0x" + "ab" * 32
    monkeypatch.setattr(chain, "deployer", None)  # as on a chain ogkit did not deploy
    assert main(["chain", "approve-measurement", other]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert f"measurement {other} is not approved" in err
    assert "governance approves measurements" in err and "NodeRegistry.propose(" in err
    assert "Traceback" not in err


def test_settle_allow_and_the_missing_allowance_hint(ready, chain, capsys, tmp_path) -> None:
    from ogkit.settle import bootstrap_measurement, ensure_staked

    signers, run = ready
    bootstrap_measurement(chain, chain.deployer, run["runtime_id"])
    ensure_staked(
        chain,
        signers["node"],
        role=1,
        stake=10_000 * OPG,
        attester=signers["enclave"],
        measurement=run["runtime_id"],
    )
    settle = ["settle", run["artifact_id"], "--chain", "embedded"]
    # Committing needs the requester's signed order; the error says how to make one, with
    # this home's key name for the requester.
    assert main(settle) == 1
    err = capsys.readouterr().err
    assert "needs the requester's signed job order" in err
    assert "`ogkit order new --model" in err and "--key requester --chain embedded`" in err, err
    assert "`ogkit settle ARTIFACT --order order.json --chain embedded`" in err, err

    commitment = _json(capsys, ["commit", "tab", str(sample_data_path("tabular"))])["text"]
    path = tmp_path / "order.json"
    order = ["order", "new", "--model", "tab", "--commitment", commitment, "--node", "node"]
    order += ["--chain", "embedded"]
    written = _json(capsys, [*order, "--key", "requester", "--out", str(path)])
    assert written["signature_valid"] and written["order"]["node"] == signers["node"].address
    unsigned = tmp_path / "unsigned.json"
    _json(capsys, [*order, "--unsigned", "--requester", "requester", "--out", str(unsigned)])
    assert main([*settle, "--order", str(unsigned)]) == 1
    assert "ogkit order sign" in capsys.readouterr().err
    settle += ["--order", str(path)]
    assert main(settle) == 1
    err = capsys.readouterr().err
    assert "ERC20InsufficientAllowance" in err
    assert "`ogkit settle allow --key requester --amount 1opg --chain embedded`" in err, err

    assert main(["settle", "allow", "--key", "requester"]) == 1
    assert "--amount 1000opg" in capsys.readouterr().err
    assert main([*settle, "--amount", "5"]) == 1
    assert "ogkit settle allow" in capsys.readouterr().err

    allow = ["settle", "allow", "--key", "requester", "--amount", "1000opg", "--chain", "embedded"]
    doc = _json(capsys, allow)
    settlement = chain.contract("InferenceSettlement").address
    assert doc["schema"] == "ogkit.settle.allow.v1" and doc["spender"] == settlement
    assert doc["owner"] == signers["requester"].address
    assert doc["previous_allowance"] == 0 and doc["allowance"] == 1000 * OPG and doc["tx"]
    token = chain.contract("OPGToken")
    allowance = token.functions.allowance(signers["requester"].address, settlement)
    assert chain.call(allowance) == 1000 * OPG
    again = _json(capsys, allow)  # the same amount: nothing to send
    assert again["previous_allowance"] == 1000 * OPG and again["tx"] is None
    assert main(allow) == 0
    assert "already allowed the settlement contract" in capsys.readouterr().out

    assert _json(capsys, settle)["status"] == "pending"


def test_settings_know_whether_ogkit_chain_was_set() -> None:
    assert Settings.from_env({}).chain == "devnet"
    assert not Settings.from_env({}).chain_from_env
    assert not Settings.from_env({"OGKIT_CHAIN": " "}).chain_from_env
    explicit = Settings.from_env({"OGKIT_CHAIN": "devnet"})
    assert explicit.chain == "devnet" and explicit.chain_from_env


def test_infer_signs_for_ogkit_chain_when_it_is_set(
    chain, home, published, enclave, requester, capsys, monkeypatch
):
    from ogkit.batch import load_batch
    from ogkit.settle import claim_domain
    from ogkit.store import ContentStore

    store = ContentStore(Settings.from_env().store)
    monkeypatch.delenv("OGKIT_CHAIN", raising=False)
    plain = _json(capsys, _infer())
    assert chain.targets == []  # the "devnet" default alone: no chain at all
    flagged = _json(capsys, _infer("--chain", "embedded"))
    monkeypatch.setenv("OGKIT_CHAIN", "embedded")
    from_env = _json(capsys, _infer())
    assert chain.targets == ["embedded", "embedded"]
    assert from_env["batch_id"] == flagged["batch_id"] != plain["batch_id"]
    assert load_batch(from_env["artifact_id"], store).domain == claim_domain(chain)
    _json(capsys, _infer("--chain", "http://127.0.0.1:1"))  # --chain wins over the variable
    assert chain.targets[-1] == "http://127.0.0.1:1"
