"""Session fixtures for the honest controls: models, one node home, one attested batch each.

Everything here is session-scoped and built on first use: the models are trained and
converted once (``.onnx`` files under a pytest tmp dir), and each control is attested
once and then verified many times, with many verifier secrets.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .controls import BATCH_SIZE, PARTITION_ROWS, Control, build_control


class ControlZoo:
    """The controls by name, built (trained, converted, data made) on first request."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._built: dict[str, Control] = {}

    def __getitem__(self, name: str) -> Control:
        if name not in self._built:
            self._built[name] = build_control(name, self.folder)
        return self._built[name]


@pytest.fixture(scope="session")
def honest_zoo(tmp_path_factory: pytest.TempPathFactory) -> ControlZoo:
    return ControlZoo(tmp_path_factory.mktemp("honest-models"))


@dataclass
class HonestNode:
    """One node's home: a hub holding the controls, a software enclave, a requester."""

    home: Path
    hub: Any
    owner: Any
    enclave: Any
    requester: str


def _env(mp: pytest.MonkeyPatch, home: Path) -> None:
    # The same isolation as tests/conftest.py's function-scoped ``home`` fixture.
    mp.setenv("OGKIT_HOME", str(home))
    mp.delenv("OGKIT_STORE", raising=False)
    mp.delenv("OGKIT_KEY_PASSWORD", raising=False)


@pytest.fixture(scope="session")
def honest_node(tmp_path_factory: pytest.TempPathFactory) -> HonestNode:
    from ogkit.attest import make_attester
    from ogkit.hub import Hub
    from ogkit.keys import KeyStore

    home = tmp_path_factory.mktemp("honest") / "ogkit-home"
    with pytest.MonkeyPatch.context() as mp:
        _env(mp, home)
        # Fixed keys (OGKIT_KEY_<NAME>): the requester is part of the batch id, the batch id
        # of every leaf, so fixed keys give the same batch roots, hence the same samples
        # for the same verifier secrets, on every run: a failing secret can be rerun.
        for role in ("owner", "enclave", "requester"):
            key = hashlib.sha256(f"ogkit honest controls {role}".encode()).hexdigest()
            mp.setenv(f"OGKIT_KEY_HONEST_{role.upper()}", "0x" + key)
        keys = KeyStore(home)
        return HonestNode(
            home=home,
            hub=Hub(home=home),
            owner=keys.load("honest-owner"),
            enclave=make_attester("software", signer=keys.load("honest-enclave")),
            requester=keys.load("honest-requester").address,
        )


@pytest.fixture
def honest_env(honest_node: HonestNode, monkeypatch: pytest.MonkeyPatch) -> HonestNode:
    """The node, with OGKIT_HOME pointing at its home for the duration of one test."""
    _env(monkeypatch, honest_node.home)
    return honest_node


class BatchCache:
    """One attested batch per control, made the way a node makes it: publish, then run."""

    def __init__(self, zoo: ControlZoo, node: HonestNode) -> None:
        self.zoo = zoo
        self.node = node
        self._batches: dict[str, Any] = {}

    def __getitem__(self, name: str):
        if name not in self._batches:
            from ogkit.infer import run_verified_inference

            control = self.zoo[name]
            node = self.node
            node.hub.publish(
                control.path,
                name=name,
                version="1.0.0",
                price=1000,
                signer=node.owner,
                description=control.description,
            )
            with pytest.MonkeyPatch.context() as mp:
                _env(mp, node.home)
                self._batches[name] = run_verified_inference(
                    f"{name}@1.0.0",
                    control.data,
                    attester=node.enclave,
                    requester=node.requester,
                    hub=node.hub,
                    input_map=control.input_map,
                    partition_rows=PARTITION_ROWS,
                    batch_size=BATCH_SIZE,
                    job=f"honest-{name}",
                    progress=False,
                )
        return self._batches[name]


@pytest.fixture(scope="session")
def honest_batches(honest_zoo: ControlZoo, honest_node: HonestNode) -> BatchCache:
    return BatchCache(honest_zoo, honest_node)
