"""Model Hub: publish → list → show → pull round trips, integrity and error paths."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from ogkit.cli import main
from ogkit.errors import (
    ConfigError,
    HubError,
    InvalidModelError,
    ModelIntegrityError,
    ModelNotFoundError,
    VersionError,
)
from ogkit.hub import Hub, SemVer
from ogkit.keys import KeyStore
from ogkit.load import load_model
from ogkit.store import content_id


def _publish(hub, path, signer, version="1.0.0", name="tab", **kw):
    return hub.publish(path, name=name, version=version, price=1000, signer=signer, **kw)


def _files_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file()} if folder.exists() else set()


def test_api_round_trip(hub, owner, tabular_path, tmp_path):
    m = _publish(hub, tabular_path, owner, tags=["tabular", "demo"], description="d", license="MIT")
    assert m.model_id == content_id(tabular_path.read_bytes())
    assert m.owner == owner.address
    assert [t.name for t in m.inputs] == ["features"]
    assert m.inputs[0].shape[1] == 8 and not isinstance(m.inputs[0].shape[0], int)
    assert {t.name for t in m.outputs} == {"label", "probabilities"}
    m.check_signature()

    assert [e.manifest.ref for e in hub.list()] == ["tab@1.0.0"]
    assert [e.manifest.ref for e in hub.search("ta")] == ["tab@1.0.0"]
    assert hub.search(tag="demo")[0].manifest.model_id == m.model_id
    assert hub.search(tag="nope") == []
    assert hub.search(owner=owner.address.lower())[0].manifest.ref == "tab@1.0.0"
    assert hub.manifest("tab") == m
    assert hub.manifest(m.model_id) == m

    out = hub.pull("tab@1.0.0", tmp_path / "pulled.onnx")
    assert out.read_bytes() == tabular_path.read_bytes()
    assert hub.verify("tab").ok


def test_cli_round_trip(home, tabular_path, tmp_path, capsys):
    assert main(["keys", "new", "owner", "--dev"]) == 0
    capsys.readouterr()
    assert main(["keys", "list", "--json"]) == 0
    keys = json.loads(capsys.readouterr().out)
    assert keys["schema"] == "ogkit.keys.list.v1"
    assert keys["keys"][0]["name"] == "owner" and keys["keys"][0]["dev"] is True
    address = keys["keys"][0]["address"]

    args = ["hub", "publish", str(tabular_path), "--name", "tab", "--version", "1.2.3"]
    assert main([*args, "--price", "0.001opg", "--tag", "x", "--json"]) == 0
    published = json.loads(capsys.readouterr().out)["manifest"]
    assert published["price_per_inference"] == 10**15 and published["owner"] == address

    assert main(["hub", "list", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert listing["schema"] == "ogkit.hub.list.v1"
    assert [m["version"] for m in listing["models"]] == ["1.2.3"]
    assert main(["hub", "show", "tab", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)["model"]
    assert shown["model_id"] == published["model_id"] and shown["deprecated"] is False
    assert main(["hub", "pull", "tab@1.2.3", "-o", str(tmp_path / "m.onnx")]) == 0
    assert (tmp_path / "m.onnx").read_bytes() == tabular_path.read_bytes()
    assert main(["hub", "verify", "tab", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.split("\n", 1)[1])["ok"] is True


def test_flipped_byte_refused_by_pull_and_load(hub, owner, tabular_path, tmp_path, capsys):
    m = _publish(hub, tabular_path, owner)
    blob = Path(hub.store.object_path("models", m.model_id))
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0x01
    blob.write_bytes(bytes(data))
    with pytest.raises(ModelIntegrityError, match="corrupt"):
        hub.pull("tab", tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()
    with pytest.raises(ModelIntegrityError):
        load_model("tab@1.0.0", hub=hub)
    report = hub.verify("tab")
    assert not report.ok and not report.blob_ok and report.signature_ok
    assert main(["hub", "pull", "tab", "-o", str(tmp_path / "y.onnx")]) == 1
    assert "corrupt" in capsys.readouterr().err


def test_truncated_blob_refused(hub, owner, tabular_path):
    m = _publish(hub, tabular_path, owner)
    blob = Path(hub.store.object_path("models", m.model_id))
    blob.write_bytes(blob.read_bytes()[:100])
    with pytest.raises(ModelIntegrityError):
        load_model(m.model_id, hub=hub)


def test_forged_manifest_signature_fails_verify(hub, owner, tabular_path):
    _publish(hub, tabular_path, owner)
    # Raise the price in both the stored manifest and the index, keeping the old signature.
    path = Path(hub.store.path("manifests/tab/1.0.0.json"))
    doc = json.loads(path.read_text())
    doc["price_per_inference"] = 1
    path.write_text(json.dumps(doc))
    with sqlite3.connect(hub.index.path) as db:
        db.execute("UPDATE models SET manifest_json = ?", (json.dumps(doc),))
    report = hub.verify("tab")
    assert not report.ok and not report.signature_ok
    assert any("not by its owner" in p for p in report.problems)


def test_republish_same_or_lower_version_refused(hub, owner, tabular_path, cnn_path, home):
    _publish(hub, tabular_path, owner, version="1.1.0")
    before = _files_under(home)
    with pytest.raises(VersionError, match="already published"):
        _publish(hub, cnn_path, owner, version="1.1.0")
    with pytest.raises(VersionError, match="not greater"):
        _publish(hub, cnn_path, owner, version="1.0.9")
    with pytest.raises(VersionError, match="not greater"):
        _publish(hub, cnn_path, owner, version="1.1.0-rc.1")
    assert _files_under(home) == before
    assert [e.manifest.version for e in hub.index.versions("tab")] == ["1.1.0"]
    _publish(hub, cnn_path, owner, version="1.2.0")


def test_only_owner_publishes_new_versions(hub, owner, home, tabular_path):
    _publish(hub, tabular_path, owner)
    other = KeyStore(home).ensure_dev_key("other")
    with pytest.raises(HubError, match="owned by"):
        _publish(hub, tabular_path, other, version="2.0.0")


def test_invalid_onnx_refused_nothing_written(hub, owner, tmp_path, home):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07this is not a model")
    before = _files_under(home)
    with pytest.raises(InvalidModelError, match="not a valid ONNX model"):
        _publish(hub, bad, owner)
    assert _files_under(home) == before
    assert hub.list() == []


@pytest.mark.parametrize("version", ["1", "1.0", "v1.0.0", "01.0.0", "1.0.0-", "x.y.z"])
def test_malformed_version_refused(hub, owner, tabular_path, version, home):
    before = _files_under(home)
    with pytest.raises(VersionError, match="not a semantic version"):
        _publish(hub, tabular_path, owner, version=version)
    assert _files_under(home) == before


def test_unknown_model(hub, owner, tabular_path):
    with pytest.raises(ModelNotFoundError, match="no model named"):
        hub.manifest("nothing")
    _publish(hub, tabular_path, owner)
    with pytest.raises(ModelNotFoundError, match=r"known versions: 1\.0\.0"):
        hub.manifest("tab@9.9.9")
    with pytest.raises(ModelNotFoundError):
        hub.manifest("0x" + "ab" * 32)
    with pytest.raises(ConfigError):
        hub.manifest("Bad Name")


def test_unknown_model_cli(home, capsys):
    assert main(["hub", "show", "ghost"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: no model named 'ghost'") and err.count("\n") == 1


def test_deprecate_hides_from_latest(hub, owner, home, tabular_path, cnn_path):
    _publish(hub, tabular_path, owner, version="1.0.0")
    _publish(hub, cnn_path, owner, version="1.1.0")
    with pytest.raises(HubError, match="only the owner"):
        hub.deprecate("tab@1.1.0", signer=KeyStore(home).ensure_dev_key("mallory"))
    hub.deprecate("tab@1.1.0", signer=owner, reason="bad weights")
    assert hub.manifest("tab").version == "1.0.0"
    assert hub.entry("tab@1.1.0").deprecated
    # The index is a cache: rebuilding it from the store keeps the deprecation.
    assert hub.reindex() == 2
    assert hub.entry("tab@1.1.0").deprecation_reason == "bad weights"


def test_fsspec_memory_store(home, owner, tabular_path, tmp_path):
    hub = Hub("memory://ogkit-test-hub", home=home)
    m = _publish(hub, tabular_path, owner)
    assert hub.store.has("models", m.model_id)
    assert not (home / "store").exists()
    assert hub.pull("tab", tmp_path / "m.onnx").read_bytes() == tabular_path.read_bytes()
    hub.store.fs.pipe_file(hub.store.object_path("models", m.model_id), b"garbage")
    with pytest.raises(ModelIntegrityError):
        hub.pull("tab", tmp_path / "m2.onnx")


def test_file_url_store(home, owner, tabular_path, tmp_path):
    hub = Hub(f"file://{tmp_path / 'team-store'}", home=home)
    m = _publish(hub, tabular_path, owner)
    assert (tmp_path / "team-store" / "models" / m.model_id[2:4] / m.model_id).exists()


def test_semver_precedence():
    ordered = [
        "1.0.0-alpha",
        "1.0.0-alpha.1",
        "1.0.0-alpha.beta",
        "1.0.0-beta",
        "1.0.0-beta.2",
        "1.0.0-beta.11",
        "1.0.0-rc.1",
        "1.0.0",
        "1.0.1",
        "1.1.0",
        "2.0.0",
    ]
    parsed = [SemVer.parse(v) for v in ordered]
    assert sorted(reversed(parsed)) == parsed
    assert str(SemVer.parse("1.2.3-rc.1+build.5")) == "1.2.3-rc.1+build.5"
