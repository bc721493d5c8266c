"""Keys: keystores, environment keys, and a private key that never leaks."""

from __future__ import annotations

import json
import logging

import pytest
from eth_account import Account

from ogkit.cli import main
from ogkit.errors import KeyStoreError
from ogkit.keys import KeyStore, recover_typed_data

TYPED = {
    "types": {
        "EIP712Domain": [{"name": "name", "type": "string"}],
        "Ping": [{"name": "n", "type": "uint256"}],
    },
    "primaryType": "Ping",
    "domain": {"name": "t"},
    "message": {"n": 7},
}


def test_dev_key_round_trip(home):
    ks = KeyStore(home)
    info = ks.create("alice", dev=True)
    signer = ks.load("alice")
    assert signer.address == info.address and signer.dev
    assert recover_typed_data(TYPED, signer.sign_typed_data(TYPED)) == signer.address
    assert [k.name for k in ks.list()] == ["alice"]
    with pytest.raises(KeyStoreError, match="already exists"):
        ks.create("alice", dev=True)


def test_password_key(home, monkeypatch):
    monkeypatch.setenv("OGKIT_KEY_PASSWORD", "correct horse")
    ks = KeyStore(home)
    info = ks.create("bob")
    assert ks.load("bob").address == info.address
    monkeypatch.setenv("OGKIT_KEY_PASSWORD", "wrong")
    with pytest.raises(KeyStoreError, match="wrong password"):
        ks.load("bob")
    monkeypatch.delenv("OGKIT_KEY_PASSWORD")
    with pytest.raises(KeyStoreError, match="OGKIT_KEY_PASSWORD"):
        ks.load("bob")


def test_env_key_and_no_leak(home, monkeypatch, caplog, capsys):
    account = Account.create()
    secret = account.key.hex().removeprefix("0x")
    monkeypatch.setenv("OGKIT_KEY_NODE_1", "0x" + secret)
    caplog.set_level(logging.DEBUG)
    signer = KeyStore(home).load("node-1")
    assert signer.address == account.address
    assert secret not in repr(signer) and secret not in str(signer.__dict__.keys())
    monkeypatch.setenv("OGKIT_KEY_NODE_1", "0x" + secret[:-2] + "zz")
    with pytest.raises(KeyStoreError) as info:
        KeyStore(home).load("node-1")
    assert secret[:-2] not in str(info.value) and info.value.__cause__ is None
    assert info.value.__context__ is None or secret[:-2] not in str(info.value.__context__)
    assert main(["keys", "new", "k1", "--dev"]) == 0
    assert main(["keys", "list", "--json"]) == 0
    out = capsys.readouterr().out
    keystore = json.loads((home / "keys" / "k1.json").read_text())
    private = Account.decrypt(keystore, "").hex().removeprefix("0x")
    assert private not in out and private not in caplog.text
    assert secret not in caplog.text


def test_missing_key_says_how_to_create(home):
    with pytest.raises(KeyStoreError, match="ogkit keys new ghost"):
        KeyStore(home).load("ghost")


def test_new_key_without_password_refused(home, capsys):
    assert main(["keys", "new", "real"]) == 1
    assert "OGKIT_KEY_PASSWORD" in capsys.readouterr().err
    assert not (home / "keys" / "real.json").exists()


def test_each_network_role_process_gets_only_its_own_keys():
    """``ogkit network up`` starts each role in its own process: a verifier's environment
    holds no other role's ``OGKIT_KEY_<NAME>``, the node holds its own and its attester's."""
    from ogkit.keys import key_env_var
    from ogkit.network.supervisor import child_environment

    parent = {
        "PATH": "/usr/bin",
        "OGKIT_KEY_PASSWORD": "pw",
        key_env_var("node"): "0x" + "11" * 32,
        key_env_var("attester"): "0x" + "22" * 32,
        key_env_var("verifier-1"): "0x" + "33" * 32,
        key_env_var("verifier-2"): "0x" + "44" * 32,
    }
    verifier = child_environment(
        parent, {"OGKIT_HOME": "/h"}, ["verifier", "run", "--key", "verifier-1"]
    )
    assert {k for k in verifier if k.startswith("OGKIT_KEY_")} == {
        "OGKIT_KEY_PASSWORD",
        "OGKIT_KEY_VERIFIER_1",
    }
    assert verifier["PATH"] == "/usr/bin" and verifier["OGKIT_HOME"] == "/h"
    node = child_environment(
        parent, {}, ["node", "serve", "--key", "node", "--attester-key", "attester", "--port", "0"]
    )
    assert {k for k in node if k.startswith("OGKIT_KEY_")} == {
        "OGKIT_KEY_PASSWORD",
        "OGKIT_KEY_NODE",
        "OGKIT_KEY_ATTESTER",
    }
    assert not {
        k
        for k in child_environment(parent, {}, ["chain", "up"])
        if k.startswith("OGKIT_KEY_") and k != "OGKIT_KEY_PASSWORD"
    }
