"""Shared fixtures: an isolated OGKIT_HOME per test, dev keys, a hub, the sample models."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from ogkit.attest import BatchClaim, attest_partition
from ogkit.batch import ARTIFACTS, AttestedBatch, records_to_parquet
from ogkit.crypto.merkle import MerkleTree
from ogkit.hub import Hub
from ogkit.hub.manifest import canonical_json
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


def _forge_batch(batch: AttestedBatch, bad_rows: set[int], signer_attester) -> AttestedBatch:
    """An honest-looking batch whose node signed wrong outputs for ``bad_rows``."""
    manifest = batch.manifest.to_dict()
    for part in manifest["partitions"]:
        rec = batch.records(part["index"])
        outputs = {k: v.copy() for k, v in rec.outputs.items()}
        for i, row in enumerate(rec.row_index):
            if int(row) in bad_rows:
                outputs["label"][i] = (outputs["label"][i] + 1) % 3
        att = attest_partition(
            offset=part["offset"],
            feeds=rec.inputs,
            outputs=outputs,
        )
        data = records_to_parquet(att, outputs)
        part["path"] = part["path"].replace(".parquet", "-forged.parquet")
        batch.store.write_bytes(part["path"], data)
        part["sha256"] = hashlib.sha256(data).hexdigest()
        part["root"] = "0x" + att.root.hex()
    roots = np.array(
        [list(bytes.fromhex(p["root"][2:])) for p in manifest["partitions"]], dtype=np.uint8
    )
    claim = BatchClaim.from_dict(
        {**manifest["claim"], "batch_root": "0x" + MerkleTree.from_leaf_hashes(roots).root.hex()}
    )
    manifest["claim"] = claim.to_dict()
    manifest["batch_root"] = claim.batch_root
    manifest["signature"] = signer_attester.sign_claim(claim, batch.domain)
    return AttestedBatch(
        manifest, batch.store.put(ARTIFACTS, canonical_json(manifest)), batch.store
    )


@pytest.fixture
def forge_batch():
    """``forge_batch(batch, bad_rows, attester)``: an honest-looking batch whose node signed
    wrong outputs (labels shifted) for ``bad_rows``; hashes, roots and signature consistent."""
    return _forge_batch


@pytest.fixture
def batch(published: Hub, enclave, requester: str):
    """The sample tabular dataset attested in four partitions of 500 rows."""
    from ogkit.infer import run_verified_inference
    from ogkit.samples import sample_data_path

    return run_verified_inference(
        "tab",
        sample_data_path("tabular"),
        attester=enclave,
        requester=requester,
        hub=published,
        partition_rows=500,
        progress=False,
    )
