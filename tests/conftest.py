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
