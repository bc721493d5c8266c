"""The load step: verified bytes, pinned session, runtime fingerprint."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from ogkit.errors import ConfigError, InvalidModelError
from ogkit.load import SessionConfig, load_model


def test_load_picks_cpu_and_records_it(hub, owner, tabular_path):
    hub.publish(tabular_path, name="tab", version="1.0.0", price=0, signer=owner)
    model = load_model("tab", hub=hub)
    fp = model.fingerprint
    assert fp.execution_provider == "CPUExecutionProvider"
    assert fp.onnxruntime_version == ort.__version__
    assert fp.intra_op_num_threads == 1 and fp.graph_optimization_level == "all"
    assert model.runtime_id.startswith("0x") and len(model.runtime_id) == 66
    assert load_model("tab@1.0.0", hub=hub).runtime_id == model.runtime_id
    assert load_model(tabular_path).runtime_id == model.runtime_id
    assert model.manifest is not None and model.model_id == model.manifest.model_id


def test_runtime_id_changes_with_options(tabular_path):
    a = load_model(tabular_path)
    b = load_model(tabular_path, config=SessionConfig(graph_optimization_level="basic"))
    assert a.runtime_id != b.runtime_id


def test_run_matches_bare_onnxruntime(tabular_path):
    x = np.random.default_rng(0).normal(size=(1000, 8)).astype(np.float32)
    bare = ort.InferenceSession(str(tabular_path), providers=["CPUExecutionProvider"])
    expected = bare.run(None, {"features": x})
    got = load_model(tabular_path).run({"features": x}, batch_size=128)
    np.testing.assert_array_equal(got["label"], expected[0])
    np.testing.assert_allclose(got["probabilities"], expected[1], rtol=1e-6, atol=1e-7)


def test_fixed_batch_one_model_loads_and_runs(cnn_path, cnn_b1_path):
    images = np.random.default_rng(1).random((5, 1, 28, 28), dtype=np.float32)
    b1 = load_model(cnn_b1_path)
    assert b1.fixed_batch == 1
    out = b1.run({"image": images}, batch_size=64)["probabilities"]
    assert out.shape == (5, 10)
    batched = load_model(cnn_path).run({"image": images})["probabilities"]
    np.testing.assert_allclose(out, batched, rtol=1e-5, atol=1e-6)


def test_bad_config_and_files(tmp_path, tabular_path):
    with pytest.raises(ConfigError, match="provider"):
        SessionConfig(provider="tpu")
    with pytest.raises(ConfigError, match="does not exist"):
        load_model(tmp_path / "missing.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"garbage")
    with pytest.raises(InvalidModelError):
        load_model(bad)
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        with pytest.raises(ConfigError, match="CUDA"):
            load_model(tabular_path, config=SessionConfig(provider="cuda"))
