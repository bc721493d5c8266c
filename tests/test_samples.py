"""The shipped sample models/datasets and the generators in ogkit.samples."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import polars as pl
import pytest

from ogkit.errors import ConfigError
from ogkit.samples import (
    IMAGE_DTYPE,
    TABULAR_FEATURES,
    make_image_frame,
    make_image_labels,
    make_images,
    make_tabular,
    sample_data_path,
    sample_model_path,
)

MODELS = ("tabular", "cnn", "cnn_b1")

# cnn_b1 row by row vs cnn batched: same weights and graph. On the CPU provider they
# came out bit-identical when measured, but nothing promises that: onnxruntime may pick
# different Conv/Gemm kernels or blocking for batch 1 vs 32 (other CPUs, other providers),
# and float32 sums accumulated in another order move a probability by a few ULPs. These
# tolerances allow that and nothing more.
B1_RTOL = 1e-5
B1_ATOL = 1e-6


def _session(path: Path) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])


def _signature(args: list[ort.NodeArg]) -> list[tuple[str, str, list[int | str | None]]]:
    return [(a.name, a.type, list(a.shape)) for a in args]


@pytest.fixture(scope="module")
def image_sample() -> tuple[np.ndarray, np.ndarray]:
    frame = pl.read_parquet(sample_data_path("images"))
    images = frame["image"].to_numpy().reshape(-1, 1, 28, 28).astype(np.float32, copy=False)
    return images, frame["label"].to_numpy()


@pytest.fixture(scope="module")
def cnn_session() -> ort.InferenceSession:
    return _session(sample_model_path("cnn"))


# --- shipped models ------------------------------------------------------------------


@pytest.mark.parametrize("name", MODELS)
def test_model_passes_checker(name: str) -> None:
    path = sample_model_path(name)
    onnx.checker.check_model(str(path), full_check=True)
    model = onnx.load(path)
    assert model.producer_name == "ogkit-samples"
    assert {o.domain: o.version for o in model.opset_import}[""] == 17


def test_tabular_signature_and_accuracy() -> None:
    sess = _session(sample_model_path("tabular"))
    inputs = _signature(sess.get_inputs())
    assert len(inputs) == 1
    name, dtype, shape = inputs[0]
    assert (name, dtype) == ("features", "tensor(float)")
    assert shape[1] == 8 and not isinstance(shape[0], int)  # dynamic batch
    outputs = _signature(sess.get_outputs())
    assert [(n, t) for n, t, _ in outputs] == [
        ("label", "tensor(int64)"),
        ("probabilities", "tensor(float)"),
    ]

    frame = pl.read_parquet(sample_data_path("tabular"))
    x = frame.select(TABULAR_FEATURES).to_numpy()
    assert x.dtype == np.float32
    label, proba = sess.run(None, {"features": x})
    assert label.shape == (len(frame),) and label.dtype == np.int64
    assert proba.shape == (len(frame), 3) and proba.dtype == np.float32
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(label, proba.argmax(axis=1))
    accuracy = float((label == frame["label"].to_numpy()).mean())
    assert accuracy > 0.85, accuracy  # chance is 1/3; the shipped model scores ~0.93


def test_cnn_signature(cnn_session: ort.InferenceSession) -> None:
    assert _signature(cnn_session.get_inputs()) == [
        ("image", "tensor(float)", ["batch", 1, 28, 28])
    ]
    assert _signature(cnn_session.get_outputs()) == [
        ("probabilities", "tensor(float)", ["batch", 10])
    ]
    b1 = _session(sample_model_path("cnn_b1"))
    assert _signature(b1.get_inputs()) == [("image", "tensor(float)", [1, 1, 28, 28])]
    assert _signature(b1.get_outputs()) == [("probabilities", "tensor(float)", [1, 10])]


def test_cnn_probabilities_and_accuracy(
    cnn_session: ort.InferenceSession, image_sample: tuple[np.ndarray, np.ndarray]
) -> None:
    images, labels = image_sample
    (proba,) = cnn_session.run(None, {"image": images})
    assert proba.shape == (len(images), 10) and proba.dtype == np.float32
    assert (proba >= 0).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    accuracy = float((proba.argmax(axis=1) == labels).mean())
    assert accuracy > 0.7, accuracy  # chance is 0.1; the shipped model scores ~0.96


def test_cnn_b1_row_by_row_equals_cnn_batched(
    cnn_session: ort.InferenceSession, image_sample: tuple[np.ndarray, np.ndarray]
) -> None:
    images = image_sample[0][:32]
    (batched,) = cnn_session.run(None, {"image": images})
    b1 = _session(sample_model_path("cnn_b1"))
    rows = np.concatenate([b1.run(None, {"image": images[i : i + 1]})[0] for i in range(32)])
    np.testing.assert_allclose(rows, batched, rtol=B1_RTOL, atol=B1_ATOL)
    # The fixed batch dim is enforced, not advisory.
    with pytest.raises(Exception, match=r"(?i)dimension|shape"):
        b1.run(None, {"image": images[:2]})


# --- shipped datasets match the generators -------------------------------------------


def test_shipped_tabular_files_match_generator() -> None:
    expected = make_tabular(2_000, seed=2)
    assert pl.read_parquet(sample_data_path("tabular")).equals(expected)
    schema = {c: pl.Float32 for c in TABULAR_FEATURES} | {"label": pl.Int64}
    csv = pl.read_csv(sample_data_path("tabular_csv"), schema=schema)
    # polars writes float32 in its shortest round-tripping form, so the values come back exact.
    assert csv.equals(expected.head(500))


def test_shipped_images_match_generator() -> None:
    shipped = pl.read_parquet(sample_data_path("images"))
    assert shipped.schema == pl.Schema({"image": IMAGE_DTYPE, "label": pl.Int64})
    assert shipped.equals(make_image_frame(256, seed=2))


# --- generators ----------------------------------------------------------------------


def test_make_tabular_schema_and_determinism() -> None:
    a = make_tabular(1_000, seed=7)
    assert a.columns == [*TABULAR_FEATURES, "label"]
    assert all(a[c].dtype == pl.Float32 for c in TABULAR_FEATURES)
    assert a["label"].dtype == pl.Int64
    assert set(a["label"].unique().to_list()) == {0, 1, 2}
    assert a.equals(make_tabular(1_000, seed=7))
    assert not a.equals(make_tabular(1_000, seed=8))
    assert make_tabular(0).shape == (0, 9)


def test_make_images_range_and_determinism() -> None:
    a = make_images(64, seed=3)
    assert a.shape == (64, 1, 28, 28) and a.dtype == np.float32
    assert a.min() >= 0.0 and a.max() <= 1.0
    np.testing.assert_array_equal(a, make_images(64, seed=3))
    assert not np.array_equal(a, make_images(64, seed=4))
    labels = make_image_labels(64, seed=3)
    assert labels.dtype == np.int64 and labels.min() >= 0 and labels.max() <= 9


def test_make_image_frame_matches_arrays() -> None:
    frame = make_image_frame(16, seed=5)
    assert frame.schema == pl.Schema({"image": pl.Array(pl.Float32, 784), "label": pl.Int64})
    np.testing.assert_array_equal(
        frame["image"].to_numpy().reshape(-1, 1, 28, 28), make_images(16, seed=5)
    )
    np.testing.assert_array_equal(frame["label"].to_numpy(), make_image_labels(16, seed=5))
    assert frame.equals(make_image_frame(16, seed=5))
    assert not frame.equals(make_image_frame(16, seed=6))


@pytest.mark.parametrize("bad", [-1, 2.5, True, "10"])
def test_generators_reject_bad_n_rows(bad: object) -> None:
    with pytest.raises(ConfigError, match="n_rows"):
        make_tabular(bad)  # type: ignore[arg-type]


# --- paths ---------------------------------------------------------------------------


def test_unknown_model_name_lists_known_ones() -> None:
    with pytest.raises(ConfigError, match="'nope'") as info:
        sample_model_path("nope")
    assert all(repr(name) in str(info.value) for name in MODELS)
    assert isinstance(info.value, ValueError)
    with pytest.raises(ConfigError, match="'images'"):
        sample_data_path("nope")


def test_data_dir_env_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OGKIT_DATA_DIR", str(tmp_path))
    assert sample_model_path("cnn", must_exist=False) == tmp_path.resolve() / "models/cnn.onnx"
    with pytest.raises(ConfigError, match="make_samples"):
        sample_model_path("cnn")
    monkeypatch.delenv("OGKIT_DATA_DIR")
    assert sample_model_path("cnn").is_file()
