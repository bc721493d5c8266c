"""Shared fixtures: an isolated OGKIT_HOME per test, dev keys, a hub, the sample models."""

from __future__ import annotations

from pathlib import Path

import pytest

from ogkit.hub import Hub
from ogkit.keys import KeyStore, Signer
from ogkit.samples import sample_model_path

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "ogkit-home"
    monkeypatch.setenv("OGKIT_HOME", str(home))
    monkeypatch.delenv("OGKIT_STORE", raising=False)
    monkeypatch.delenv("OGKIT_KEY_PASSWORD", raising=False)
    return home


@pytest.fixture
def owner(home: Path) -> Signer:
    return KeyStore(home).ensure_dev_key("owner")


@pytest.fixture
def hub(home: Path) -> Hub:
    return Hub(home=home)


@pytest.fixture(scope="session")
def tabular_path() -> Path:
    return sample_model_path("tabular")


@pytest.fixture(scope="session")
def cnn_path() -> Path:
    return sample_model_path("cnn")


@pytest.fixture(scope="session")
def cnn_b1_path() -> Path:
    return sample_model_path("cnn_b1")


@pytest.fixture(scope="session")
def dask_client():
    """One 2-worker LocalCluster (processes) for the whole session."""
    from ogkit.compute import get_client

    client = get_client(n_workers=2)
    yield client
    client.close()


@pytest.fixture
def enclave(home: Path):
    from ogkit.attest import make_attester

    return make_attester("software", signer=KeyStore(home).ensure_dev_key("enclave"))


@pytest.fixture
def requester(home: Path) -> str:
    return KeyStore(home).ensure_dev_key("requester").address


@pytest.fixture
def published(hub: Hub, owner: Signer, tabular_path: Path, cnn_path: Path, cnn_b1_path: Path):
    """The three sample models in the hub as tab@1.0.0, cnn@1.0.0 and cnn-b1@1.0.0."""
    for name, path in (("tab", tabular_path), ("cnn", cnn_path), ("cnn-b1", cnn_b1_path)):
        hub.publish(path, name=name, version="1.0.0", price=1000, signer=owner)
    return hub
