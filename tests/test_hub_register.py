"""Publishing with --chain is atomic from the user's view: a failed registration writes
nothing to the hub, a retry of the same bytes completes the registration, and
`ogkit hub register` puts an already published version on chain."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest

from ogkit.chain.connection import connect
from ogkit.cli import main
from ogkit.hub import Hub


@pytest.fixture(scope="module")
def module_chain():
    return connect("embedded")


@pytest.fixture
def chain(module_chain, monkeypatch):
    """One embedded chain that every CLI call in the test talks to."""
    import ogkit.chain.connection as connection

    snapshot = module_chain.snapshot()
    monkeypatch.setattr(connection, "connect_from_settings", lambda *a, **k: module_chain)
    yield module_chain
    module_chain.revert(snapshot)


def _variant(source: Path, path: Path, tag: str) -> Path:
    """The model with other bytes (so another model id) for another version."""
    model = onnx.load(source)
    model.doc_string = tag
    onnx.save(model, path)
    return path


def _on_chain(chain, model_id: str, owner: str) -> bool:
    """Whether ``owner`` registered ``model_id`` (registrations are keyed by both)."""
    registry = chain.contract("ModelRegistry")
    return bool(chain.call(registry.functions.exists(bytes.fromhex(model_id[2:]), owner)))


def _publish(path: Path, version: str, *extra: str) -> list[str]:
    return ["hub", "publish", str(path), "--name", "tab", "--version", version, *extra]


def test_failed_registration_writes_nothing_and_a_retry_completes(
    chain, owner, home, tabular_path, capsys
):
    argv = _publish(tabular_path, "1.0.0", "--price", "1000", "--chain", "embedded")
    # The owner has no ETH for gas yet: the registration fails, and so does the publish.
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("error:"), err
    hub = Hub(home=home)
    assert hub.list() == [], "a failed publish must leave no version behind"
    assert not hub.store.exists("manifests/tab/1.0.0.json")

    chain.fund(owner.address, eth=10**19)
    assert main([*argv, "--json"]) == 0, capsys.readouterr().err
    doc = json.loads(capsys.readouterr().out)
    assert doc["registered"] is True and doc["chain_id"] == chain.chain_id
    model_id = doc["manifest"]["model_id"]
    assert _on_chain(chain, model_id, owner.address)
    assert Hub(home=home).manifest("tab@1.0.0").model_id == model_id

    # Running the same command again is safe: same bytes, already registered.
    assert main(argv) == 0, capsys.readouterr().err
    assert "already registered" in capsys.readouterr().out


def test_retry_of_a_version_published_only_locally_registers_it(
    chain, owner, hub, tabular_path, tmp_path, capsys
):
    chain.fund(owner.address, eth=10**19)
    path = _variant(tabular_path, tmp_path / "m.onnx", "local only")
    manifest = hub.publish(path, name="tab", version="1.1.0", price=1000, signer=owner)
    assert not _on_chain(chain, manifest.model_id, owner.address)

    assert main(_publish(path, "1.1.0", "--price", "1000", "--chain", "embedded")) == 0, (
        capsys.readouterr().err
    )
    assert "registered in the ModelRegistry" in capsys.readouterr().out
    assert _on_chain(chain, manifest.model_id, owner.address)
    # other bytes under the same version are still refused, and say how to register
    other = _variant(tabular_path, tmp_path / "other.onnx", "other bytes")
    assert main(_publish(other, "1.1.0", "--price", "1000", "--chain", "embedded")) == 1
    err = capsys.readouterr().err
    assert "already published" in err and "ogkit hub register tab@1.1.0" in err, err


def test_hub_register_command(chain, owner, hub, home, tabular_path, tmp_path, capsys):
    from ogkit.keys import KeyStore

    chain.fund(owner.address, eth=10**19)
    path = _variant(tabular_path, tmp_path / "m.onnx", "register me")
    manifest = hub.publish(path, name="tab", version="2.0.0", price=5, signer=owner)

    # only the owner's key may register it: a registration is the owner's signature, and
    # one under another key would pay that key, not the manifest's owner
    stranger = KeyStore(home).ensure_dev_key("stranger")
    chain.fund(stranger.address, eth=10**19)
    assert main(["hub", "register", "tab@2.0.0", "--chain", "embedded", "--key", "stranger"]) == 1
    assert "not the model's owner" in capsys.readouterr().err
    assert not _on_chain(chain, manifest.model_id, owner.address)
    assert not _on_chain(chain, manifest.model_id, stranger.address)

    assert main(["hub", "register", "tab@2.0.0", "--chain", "embedded", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema"] == "ogkit.hub.register.v1" and doc["registered"] is True
    assert doc["ref"] == "tab@2.0.0" and doc["model_id"] == manifest.model_id
    assert _on_chain(chain, manifest.model_id, owner.address)
    registry = chain.contract("ModelRegistry")
    key = bytes.fromhex(manifest.model_id[2:])
    price, deprecated, name, version, manifest_hash = chain.call(
        registry.functions.getModel(key, owner.address)
    )
    assert (price, deprecated, name, version) == (5, False, "tab", "2.0.0")
    assert manifest_hash == bytes.fromhex(manifest.manifest_hash()[2:])
    # The owner signed the registration: the event names it as the owner.
    (event,) = chain.events("ModelRegistry", "ModelRegistered", argument_filters={"modelId": key})
    assert event["args"]["owner"] == owner.address

    assert main(["hub", "register", "tab@2.0.0", "--chain", "embedded"]) == 0
    assert "already registered tab@2.0.0" in capsys.readouterr().out


def test_a_registration_is_the_owners_signature_whoever_sends_it(
    chain, owner, hub, home, tabular_path, tmp_path
):
    from ogkit.errors import SettlementError
    from ogkit.keys import KeyStore
    from ogkit.settle import register_model

    payer = KeyStore(home).ensure_dev_key("payer")
    chain.fund(payer.address, eth=10**19)
    path = _variant(tabular_path, tmp_path / "m.onnx", "sent by another")
    manifest = hub.publish(path, name="tab", version="3.0.0", price=7, signer=owner)
    # The owner holds no ETH: another account sends the owner's signed registration.
    assert register_model(chain, manifest, owner, sender=payer) is True
    assert _on_chain(chain, manifest.model_id, owner.address)
    assert not _on_chain(chain, manifest.model_id, payer.address)
    assert register_model(chain, manifest, owner, sender=payer) is False
    # A key that did not sign the manifest cannot register it as its own.
    with pytest.raises(SettlementError, match=f"is owned by {owner.address}"):
        register_model(chain, manifest, payer)
    assert not _on_chain(chain, manifest.model_id, payer.address)


def test_the_same_bytes_at_another_price_warn_that_the_registration_keeps_its_price(
    chain, owner, tabular_path, capsys
):
    chain.fund(owner.address, eth=10**19)
    assert main(_publish(tabular_path, "1.0.0", "--price", "1000", "--chain", "embedded")) == 0
    assert capsys.readouterr().err == ""  # registered at the manifest's price: no warning
    # Another version of the same bytes is the same model id: this owner's registration
    # keeps its price, and both commands say so.
    argv = _publish(tabular_path, "1.1.0", "--price", "2000", "--chain", "embedded", "--json")
    assert main(argv) == 0
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert doc["registered"] is False and doc["chain_price"] == 1000
    assert doc["manifest"]["price_per_inference"] == 2000
    warning = captured.err.strip().splitlines()
    assert len(warning) == 1 and warning[0].startswith(f"warning: {owner.address} registered")
    assert "(registered as tab@1.0.0), not tab@1.1.0's" in warning[0]
    assert "one registration per model id and owner" in warning[0]
    assert main(["hub", "register", "tab@1.1.0", "--chain", "embedded", "--json"]) == 0
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert doc["registered"] is False and doc["chain_price"] == 1000
    assert doc["owner"] == owner.address
    assert "ModelRegistry.setPrice" in captured.err
