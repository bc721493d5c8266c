"""Regenerate ogkit's sample models and datasets under data/.

    .venv/bin/python data/make_samples.py

Deterministic: fixed seeds, single-threaded onnxruntime while fitting, and no
timestamps or tool versions in the ONNX files, so a rerun on the same machine
rewrites byte-identical files (the script prints each file's sha256 to compare).
See data/README.md for what each file is.
"""

from __future__ import annotations

import hashlib
import sys
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from ogkit.samples import (
    IMAGE_CLASSES,
    TABULAR_CLASSES,
    TABULAR_FEATURES,
    data_dir,
    make_image_frame,
    make_image_labels,
    make_images,
    make_tabular,
    sample_data_path,
    sample_model_path,
)

PRODUCER_NAME = "ogkit-samples"
# A fixed producer version (not the skl2onnx/onnx version) keeps the bytes stable when
# only the tooling is upgraded; bump it when the recipe below changes.
PRODUCER_VERSION = "1"
OPSET = 17
# Upper bound for ai.onnx.ml: skl2onnx declares the lowest version its ops need (1 here).
ML_OPSET = 3
IR_VERSION = 8  # the IR version that came with opset 17; readable by any ORT >= 1.12


def _session(model: onnx.ModelProto) -> ort.InferenceSession:
    # One thread: results must not depend on how work was split across cores.
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    return ort.InferenceSession(
        model.SerializeToString(), sess_options=so, providers=["CPUExecutionProvider"]
    )


def _finalise(model: onnx.ModelProto, doc: str) -> onnx.ModelProto:
    model.producer_name = PRODUCER_NAME
    model.producer_version = PRODUCER_VERSION
    model.domain = "ai.ogkit.samples"
    model.model_version = 1
    model.doc_string = doc
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model


def _save(model: onnx.ModelProto, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # SerializeToString is deterministic for a given proto (no maps in ModelProto).
    path.write_bytes(model.SerializeToString())


# --- tabular -------------------------------------------------------------------------


def build_tabular() -> tuple[onnx.ModelProto, float]:
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    train = make_tabular(20_000, seed=1)
    x = train.select(TABULAR_FEATURES).to_numpy()
    y = train["label"].to_numpy()
    # A small MLP: the ring features f6/f7 need a nonlinear model (logistic regression
    # tops out around 84% here).
    pipe = Pipeline(
        [
            ("scale", StandardScaler()),
            ("mlp", MLPClassifier(hidden_layer_sizes=(32,), max_iter=300, random_state=0)),
        ]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        pipe.fit(x, y)

    model = convert_sklearn(
        pipe,
        name="ogkit_tabular",
        initial_types=[("features", FloatTensorType([None, len(TABULAR_FEATURES)]))],
        target_opset={"": OPSET, "ai.onnx.ml": ML_OPSET},
        options={id(pipe.named_steps["mlp"]): {"zipmap": False}},
    )
    # skl2onnx declares the lowest ai.onnx opset its ops need (16). Every op it used
    # (MatMul, Add, Relu, Softmax, ArgMax, Reshape, Cast, Identity) has the same
    # definition at 17, so declare 17 like the CNNs; check_model verifies it.
    for opset in model.opset_import:
        if opset.domain in ("", "ai.onnx"):
            opset.version = OPSET
    model = _finalise(
        model,
        "ogkit sample: StandardScaler + MLPClassifier(32) on make_tabular(20_000, seed=1). "
        "features float32[N,8] (f0..f7) -> label int64[N], probabilities float32[N,3].",
    )

    test = make_tabular(2_000, seed=2)
    sess = _session(model)
    label, proba = sess.run(None, {"features": test.select(TABULAR_FEATURES).to_numpy()})
    acc = float((label == test["label"].to_numpy()).mean())
    skl_acc = pipe.score(test.select(TABULAR_FEATURES).to_numpy(), test["label"].to_numpy())
    print(
        f"tabular: test accuracy on make_tabular(2_000, seed=2): onnxruntime {acc:.4f}, "
        f"sklearn {skl_acc:.4f}; chance is {1 / TABULAR_CLASSES:.2f}; "
        f"probabilities {proba.shape}"
    )
    return model, acc


# --- cnn -----------------------------------------------------------------------------

CNN_HIDDEN = 64


def _cnn_initial_weights() -> dict[str, np.ndarray]:
    """He-initialised weights (zero biases); the last Gemm is refitted later."""
    rng = np.random.default_rng(20_240_601)

    def he(shape: tuple[int, ...], fan_in: int) -> np.ndarray:
        return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)

    return {
        "conv1.weight": he((16, 1, 3, 3), 1 * 9),
        "conv1.bias": np.zeros(16, np.float32),
        "conv2.weight": he((32, 16, 3, 3), 16 * 9),
        "conv2.bias": np.zeros(32, np.float32),
        "fc1.weight": he((CNN_HIDDEN, 32 * 7 * 7), 32 * 7 * 7),
        "fc1.bias": np.zeros(CNN_HIDDEN, np.float32),
        "fc2.weight": he((IMAGE_CLASSES, CNN_HIDDEN), CNN_HIDDEN),
        "fc2.bias": np.zeros(IMAGE_CLASSES, np.float32),
    }


def build_cnn(
    weights: dict[str, np.ndarray], batch: int | str, *, with_hidden: bool = False
) -> onnx.ModelProto:
    """The sample CNN; ``batch`` is a fixed size or a symbolic dim name.

    ``with_hidden`` adds the fc1 activations as a second output, used only to fit fc2.
    """
    nodes = [
        helper.make_node(
            "Conv",
            ["image", "conv1.weight", "conv1.bias"],
            ["conv1"],
            name="conv1",
            kernel_shape=[3, 3],
            pads=[1, 1, 1, 1],
        ),
        helper.make_node("Relu", ["conv1"], ["relu1"], name="relu1"),
        helper.make_node(
            "MaxPool", ["relu1"], ["pool1"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]
        ),
        helper.make_node(
            "Conv",
            ["pool1", "conv2.weight", "conv2.bias"],
            ["conv2"],
            name="conv2",
            kernel_shape=[3, 3],
            pads=[1, 1, 1, 1],
        ),
        helper.make_node("Relu", ["conv2"], ["relu2"], name="relu2"),
        helper.make_node(
            "MaxPool", ["relu2"], ["pool2"], name="pool2", kernel_shape=[2, 2], strides=[2, 2]
        ),
        helper.make_node("Flatten", ["pool2"], ["flat"], name="flatten", axis=1),
        helper.make_node("Gemm", ["flat", "fc1.weight", "fc1.bias"], ["fc1"], name="fc1", transB=1),
        helper.make_node("Relu", ["fc1"], ["hidden"], name="relu3"),
        helper.make_node(
            "Gemm", ["hidden", "fc2.weight", "fc2.bias"], ["logits"], name="fc2", transB=1
        ),
        helper.make_node("Softmax", ["logits"], ["probabilities"], name="softmax", axis=-1),
    ]
    inputs = [helper.make_tensor_value_info("image", TensorProto.FLOAT, [batch, 1, 28, 28])]
    outputs = [
        helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [batch, IMAGE_CLASSES])
    ]
    if with_hidden:
        outputs.append(
            helper.make_tensor_value_info("hidden", TensorProto.FLOAT, [batch, CNN_HIDDEN])
        )
    # Sorted so the initializer order never depends on dict insertion history.
    inits = [numpy_helper.from_array(weights[k], name=k) for k in sorted(weights)]
    graph = helper.make_graph(nodes, "ogkit_cnn", inputs, outputs, initializer=inits)
    return helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION
    )


def _fit_softmax(h: np.ndarray, y: np.ndarray, steps: int = 500) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression on fixed features, by full-batch gradient descent.

    Trains on standardised features (well conditioned), then folds the scaling into
    the returned (weight[10,64], bias[10]) so the ONNX graph needs no extra node.
    """
    h = h.astype(np.float64)
    mu = h.mean(axis=0)
    sd = h.std(axis=0) + 1e-6
    z = (h - mu) / sd
    n, d = z.shape
    onehot = np.eye(IMAGE_CLASSES)[y]
    w = np.zeros((d, IMAGE_CLASSES))
    b = np.zeros(IMAGE_CLASSES)
    lr, l2 = 0.5, 1e-4
    for _ in range(steps):
        logits = z @ w + b
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        g = (p - onehot) / n
        w -= lr * (z.T @ g + l2 * w)
        b -= lr * g.sum(axis=0)
    w_folded = w / sd[:, None]
    b_folded = b - mu @ w_folded
    return w_folded.T.astype(np.float32), b_folded.astype(np.float32)


def _cnn_accuracy(model: onnx.ModelProto, images: np.ndarray, labels: np.ndarray) -> float:
    (proba,) = _session(model).run(["probabilities"], {"image": images})
    return float((proba.argmax(axis=1) == labels).mean())


def build_cnns() -> tuple[onnx.ModelProto, onnx.ModelProto, float]:
    weights = _cnn_initial_weights()
    train_x, train_y = make_images(5_000, seed=1), make_image_labels(5_000, seed=1)
    probe = build_cnn(weights, "batch", with_hidden=True)
    _, hidden = _session(probe).run(["probabilities", "hidden"], {"image": train_x})
    weights["fc2.weight"], weights["fc2.bias"] = _fit_softmax(hidden, train_y)

    doc = (
        "ogkit sample CNN: Conv(1->16,3x3)-Relu-MaxPool2-Conv(16->32,3x3)-Relu-MaxPool2-"
        "Flatten-Gemm(1568->64)-Relu-Gemm(64->10)-Softmax. Random He-init features; only "
        "the last Gemm is fitted, on make_images(5_000, seed=1). "
    )
    cnn = _finalise(
        build_cnn(weights, "batch"),
        doc + "image float32[batch,1,28,28] in [0,1] -> probabilities float32[batch,10].",
    )
    cnn_b1 = _finalise(
        build_cnn(weights, 1),
        doc + "Batch fixed to 1: image float32[1,1,28,28] -> probabilities float32[1,10].",
    )

    train_acc = _cnn_accuracy(cnn, train_x, train_y)
    test_x, test_y = make_images(2_000, seed=3), make_image_labels(2_000, seed=3)
    test_acc = _cnn_accuracy(cnn, test_x, test_y)
    frame = make_image_frame(256, seed=2)
    sample_x = frame["image"].to_numpy().reshape(-1, 1, 28, 28)
    sample_acc = _cnn_accuracy(cnn, sample_x, frame["label"].to_numpy())
    print(
        f"cnn: accuracy train {train_acc:.4f} (make_images(5_000, seed=1)), "
        f"test {test_acc:.4f} (make_images(2_000, seed=3)), "
        f"sample {sample_acc:.4f} (images.parquet); chance is 0.10"
    )
    return cnn, cnn_b1, test_acc


# --- main ----------------------------------------------------------------------------


def main() -> int:
    root = data_dir()
    print(f"writing samples under {root}")
    tabular, _ = build_tabular()
    _save(tabular, sample_model_path("tabular", must_exist=False))
    cnn, cnn_b1, _ = build_cnns()
    _save(cnn, sample_model_path("cnn", must_exist=False))
    _save(cnn_b1, sample_model_path("cnn_b1", must_exist=False))

    tab = make_tabular(2_000, seed=2)
    tab_path = sample_data_path("tabular", must_exist=False)
    tab_path.parent.mkdir(parents=True, exist_ok=True)
    # Writer settings that affect the bytes are spelled out, so a change of polars
    # defaults is less likely to change the files silently.
    tab.write_parquet(tab_path, compression="zstd", compression_level=3, statistics=True)
    tab.head(500).write_csv(sample_data_path("tabular_csv", must_exist=False))
    make_image_frame(256, seed=2).write_parquet(
        sample_data_path("images", must_exist=False),
        compression="zstd",
        compression_level=3,
        statistics=True,
    )

    total = 0
    for path in sorted(p for d in ("models", "samples") for p in (root / d).rglob("*")):
        blob = path.read_bytes()
        total += len(blob)
        digest = hashlib.sha256(blob).hexdigest()
        print(f"{digest}  {len(blob):>9,d}  {path.relative_to(root)}")
    print(f"total {total:,d} bytes (excluding scripts)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
