"""One ZK profile of the sample tabular model for the whole package: N=1, scale 8,
tolerance 0.02 (2^13 circuit rows; export, development SRS and keys take ~7 s)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from ogkit.crypto.encoding import tensor_row_hash
from ogkit.samples import TABULAR_FEATURES, make_tabular
from ogkit.store import ContentStore
from ogkit.zk.export import export_model
from ogkit.zk.fixed import row_message
from ogkit.zk.keys import ZkKeys, setup_keys
from ogkit.zk.profile import ZkProfile
from ogkit.zk.prove import ZkProof, prove_rows
from ogkit.zk.verify import RowEvidence

SCALE = 8
TOLERANCE = 0.02


@dataclass
class Zk:
    store: ContentStore
    data: bytes
    profile: ZkProfile
    keys: ZkKeys
    x: np.ndarray
    proof: ZkProof  # of row 5

    def outputs(self, row: int) -> dict[str, np.ndarray]:
        sess = ort.InferenceSession(self.data, providers=["CPUExecutionProvider"])
        label, proba = sess.run(None, {"features": self.x[row : row + 1]})
        return {"label": label[0], "probabilities": proba[0]}

    def evidence(self, row: int, outputs: dict[str, np.ndarray] | None = None) -> RowEvidence:
        outs = self.outputs(row) if outputs is None else outputs
        inputs = {"features": self.x[row]}
        return RowEvidence(
            row=row,
            input_hash=tensor_row_hash(inputs),
            output_hash=tensor_row_hash(outs),
            input_message=row_message(self.profile.inputs, inputs),
            output_message=row_message(self.profile.outputs, outs),
        )


@pytest.fixture(scope="session")
def zk(tmp_path_factory: pytest.TempPathFactory, tabular_path: Path) -> Zk:
    store = ContentStore(tmp_path_factory.mktemp("zk-store"))
    x = make_tabular(64, seed=3).select(TABULAR_FEATURES).to_numpy().astype(np.float32)
    data = tabular_path.read_bytes()
    profile, _, _ = export_model(
        data,
        chunk=1,
        input_scale=SCALE,
        tolerance=TOLERANCE,
        lookup_margin=1.0,
        calibration={"features": x},
        store=store,
    )
    keys = setup_keys(store, profile)
    (proof,) = prove_rows(store, profile, keys, {"features": x}, [5], progress=False)
    return Zk(store, data, profile, keys, x, proof)


@pytest.fixture(scope="session")
def zk_other(zk: Zk, tmp_path_factory: pytest.TempPathFactory) -> tuple[ZkProfile, ZkProof]:
    """What a node that picks a convenient scale has: its own profile (scale 7), its own
    keys and a valid proof of row 5 under them."""
    store = ContentStore(tmp_path_factory.mktemp("zk-node-store"))
    other, _, _ = export_model(
        zk.data,
        chunk=1,
        input_scale=7,
        tolerance=0.05,
        lookup_margin=1.0,
        calibration={"features": zk.x},
        store=store,
    )
    keys = setup_keys(store, other)
    (theirs,) = prove_rows(store, other, keys, {"features": zk.x}, [5], progress=False)
    return other, theirs


@pytest.fixture(scope="session")
def zk_other_model(zk: Zk, tmp_path_factory: pytest.TempPathFactory):
    """What a node that proves a different model has: the sample model with its output
    layer's weights scaled by 1.05, exported under the same settings (scale 8), its own
    keys and a valid proof of row 5; its public inputs are the row's, bit for bit."""
    import onnx
    from onnx import numpy_helper

    m = onnx.load_from_string(zk.data)
    for i, init in enumerate(m.graph.initializer):
        if init.name == "coefficient1":
            w = numpy_helper.to_array(init) * np.float32(1.05)
            m.graph.initializer[i].CopyFrom(numpy_helper.from_array(w, init.name))
    data = m.SerializeToString()
    store = ContentStore(tmp_path_factory.mktemp("zk-other-model"))
    profile, _, _ = export_model(
        data,
        chunk=1,
        input_scale=SCALE,
        tolerance=0.05,
        lookup_margin=1.0,
        calibration={"features": zk.x},
        store=store,
    )
    keys = setup_keys(store, profile)
    (proof,) = prove_rows(store, profile, keys, {"features": zk.x}, [5], progress=False)
    return data, profile, keys, proof
