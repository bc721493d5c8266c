"""Leaving the stake and governing measurements from the shell: `ogkit stake add | unstake
| undelegate | unbondings | withdraw` and `ogkit governance propose | vote | execute |
show | list`, as a node operator, a delegator and stakers type them, on one embedded chain
(reverted after each test). The amounts paid out and the votes counted are read back from
the chain, not from the commands' own output."""

from __future__ import annotations

import json

import pytest

from ogkit.chain.connection import connect
from ogkit.cli import main
from ogkit.keys import KeyStore

OPG = 10**18
MEASUREMENT = "0x" + "ab" * 32


@pytest.fixture(scope="module")
def module_chain():
    return connect("embedded")


@pytest.fixture
def chain(module_chain, monkeypatch):
    import ogkit.chain.connection as connection

    snapshot = module_chain.snapshot()
    monkeypatch.setattr(connection, "connect_from_settings", lambda *a, **k: module_chain)
    yield module_chain
    module_chain.revert(snapshot)


@pytest.fixture
def keys(chain, home):
    store = KeyStore(home)
    signers = {n: store.ensure_dev_key(n) for n in ("node", "verifier", "delegator", "other")}
    for signer in signers.values():
        chain.fund(signer.address, eth=10**19, opg=100_000 * OPG)
    return signers


def _json(capsys, argv):
    assert main([*argv, "--json"]) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def _fails(capsys, argv) -> str:
    assert main(argv) == 1
    return capsys.readouterr().err


def _register(capsys, name: str, amount: str = "2000opg") -> None:
    _json(capsys, ["stake", "register", "--role", "verifier", "--amount", amount, "--key", name])


def test_unstake_waits_for_the_unbonding_period_then_pays_out(chain, keys, capsys):
    token = chain.contract("OPGToken")
    node = keys["node"].address
    _register(capsys, "node")
    shown = _json(capsys, ["stake", "add", "500opg", "--key", "node"])
    assert shown["own_stake"] == 2_500 * OPG

    # What remains must be 0 or at least the minimum (1,000 OPG): 2,000 of 2,500 is refused.
    err = _fails(capsys, ["stake", "unstake", "2000opg", "--key", "node"])
    assert "InsufficientStake(available=500000000000000000000" in err, err
    started = _json(capsys, ["stake", "unstake", "1000opg", "--key", "node"])
    (entry,) = started["entries"]
    assert entry["state"] == "unbonding" and entry["value"] == 1_000 * OPG
    unbonding = entry["unbonding"]

    # Too early: the chain refuses, nothing moves.
    before = chain.call(token.functions.balanceOf(node))
    err = _fails(capsys, ["stake", "withdraw", str(unbonding), "--key", "node"])
    assert "StillUnbonding" in err, err
    assert chain.call(token.functions.balanceOf(node)) == before

    # Another key cannot take it.
    period = chain.call(chain.contract("NodeRegistry").functions.unbondingPeriod())
    chain.increase_time(period + 1)
    err = _fails(capsys, ["stake", "withdraw", str(unbonding), "--key", "other"])
    assert "NotUnbondingOwner" in err, err

    listed = _json(capsys, ["stake", "unbondings", "--key", "node"])
    assert [e["state"] for e in listed["entries"]] == ["withdrawable"]
    paid = _json(capsys, ["stake", "withdraw", str(unbonding), "--key", "node"])
    assert paid["paid"] == 1_000 * OPG
    assert chain.call(token.functions.balanceOf(node)) == before + 1_000 * OPG
    listed = _json(capsys, ["stake", "unbondings", "--key", "node"])
    assert [e["state"] for e in listed["entries"]] == ["withdrawn"]

    # Withdrawing twice names the listing command.
    err = _fails(capsys, ["stake", "withdraw", str(unbonding), "--key", "node"])
    assert "ogkit stake unbondings --key node" in err, err
    shown = _json(capsys, ["stake", "show", "node"])
    assert shown["own_stake"] == 1_500 * OPG and shown["unbonding_stake"] == 0


def test_a_delegator_undelegates_and_withdraws(chain, keys, capsys):
    _register(capsys, "node")
    _json(capsys, ["stake", "delegate", keys["node"].address, "300opg", "--key", "delegator"])
    started = _json(capsys, ["stake", "undelegate", "node", "300opg", "--key", "delegator"])
    (entry,) = started["entries"]
    assert entry["node"] == keys["node"].address and entry["value"] == 300 * OPG
    period = chain.call(chain.contract("NodeRegistry").functions.unbondingPeriod())
    chain.increase_time(period + 1)
    paid = _json(capsys, ["stake", "withdraw", str(entry["unbonding"]), "--key", "delegator"])
    assert paid["paid"] == 300 * OPG
    # A bad amount is refused before any transaction.
    err = _fails(capsys, ["stake", "unstake", "0", "--key", "node"])
    assert "must be more than 0" in err


def test_governance_approves_a_measurement_by_stake_vote(chain, keys, capsys):
    registry = chain.contract("NodeRegistry")
    m = bytes.fromhex(MEASUREMENT[2:])
    assert chain.call(registry.functions.isMeasurementApproved(m)) is False
    _register(capsys, "node", "5000opg")
    _register(capsys, "verifier", "3000opg")

    # Not registered: no proposal.
    err = _fails(capsys, ["governance", "propose", MEASUREMENT, "--kind", "tdx", "--key", "other"])
    assert "error:" in err
    proposed = _json(
        capsys, ["governance", "propose", MEASUREMENT, "--kind", "tdx", "--key", "node"]
    )
    pid = proposed["proposal"]
    assert proposed["state"] == "voting" and proposed["action"] == "tdx"

    _json(capsys, ["governance", "vote", str(pid), "yes", "--key", "node"])
    shown = _json(capsys, ["governance", "vote", str(pid), "no", "--key", "verifier"])
    assert (shown["yes"], shown["no"]) == (5_000 * OPG, 3_000 * OPG)
    # One vote per node; executing while voting is open is refused.
    assert "AlreadyVoted" in _fails(capsys, ["governance", "vote", str(pid), "no", "--key", "node"])
    assert "VotingOpen" in _fails(capsys, ["governance", "execute", str(pid), "--key", "other"])

    chain.increase_time(chain.call(registry.functions.votingDelay()) + 1)
    assert _json(capsys, ["governance", "show", str(pid)])["state"] == "executable"
    done = _json(capsys, ["governance", "execute", str(pid), "--key", "other"])
    assert done["executed"] and done["state"] == "executed"
    assert chain.call(registry.functions.isMeasurementApproved(m)) is True
    listed = _json(capsys, ["governance", "list"])

    # A revocation only the smaller staker votes for: yes > no but the turnout (3,000 of
    # 8,000 OPG) is under the 50 % quorum, so it cannot be executed.
    revoke = ["governance", "propose", MEASUREMENT, "--revoke", "--key", "verifier"]
    pid = _json(capsys, revoke)["proposal"]
    _json(capsys, ["governance", "vote", str(pid), "yes", "--key", "verifier"])
    chain.increase_time(chain.call(registry.functions.votingDelay()) + 1)
    assert _json(capsys, ["governance", "show", str(pid)])["state"] == "rejected"
    err = _fails(capsys, ["governance", "execute", str(pid), "--key", "other"])
    assert "ProposalNotPassed" in err, err
    assert chain.call(registry.functions.isMeasurementApproved(m)) is True

    listed = _json(capsys, ["governance", "list"])
    assert [p["state"] for p in listed["proposals"]] == ["executed", "rejected"]
    err = _fails(capsys, ["governance", "show", "99"])
    assert "no governance proposal 99" in err and "ogkit governance list" in err
    err = _fails(capsys, ["governance", "propose", "0x12", "--kind", "tdx", "--key", "node"])
    assert "not a 32-byte hex id" in err


def test_the_cli_names_the_registry_kinds_as_the_tee_code_does():
    from ogkit.cli.common import MEASUREMENT_KINDS
    from ogkit.tee.claims import MEASUREMENT_KINDS as TEE_KINDS

    assert MEASUREMENT_KINDS == TEE_KINDS
