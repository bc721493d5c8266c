"""Honest controls: models nobody here wrote, with data to run them on.

Two sources, neither written for ogkit:

* scikit-learn estimators trained on scikit-learn's *bundled* datasets (``load_digits``,
  ``load_breast_cancer``, ``load_wine``: no downloads) and converted by skl2onnx with
  ``zipmap=False``, so every model has a float32 input ``X`` ``[N, features]`` and two
  plain tensor outputs, ``label`` (int64 ``[N]``) and ``probabilities`` (float32
  ``[N, classes]``);
* ONNX files shipped inside the installed ``onnx`` package
  (``onnx/backend/test/data/pytorch-converted/*/model.onnx``: PyTorch layers exported
  by the ONNX project, real random weights, opset 6). Their batch dimension is a fixed
  number (4 or 2), so ogkit runs them in padded chunks of exactly that many rows.

The other ONNX files in that package are not usable as controls: the ``light_*`` CNNs
(``light/``, what ``real/*/data.json`` points to) take one fixed ``1×3×224×224`` image
(600 KB per row; 2,000 rows would be 1.2 GB) and their weights are ``ConstantOfShape``
fills, not trained ones; the ``simple/`` models (this wheel has no ``node/`` folder)
are single ops, sequence and string ops without learned weights; several
``pytorch-converted``/``pytorch-operator`` models (``test_Linear``, ``test_PReLU_*``,
``test_BatchNorm*``) use opset-6 kernels that onnxruntime 1.32 no longer has.

Every control has at least :data:`N_ROWS` rows: the bundled dataset tiled, each copy with
small Gaussian noise (1% of each feature's standard deviation), fixed seeds throughout.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import polars as pl

N_ROWS = 2400
# 513 = 2 × 256 + 1: in every full partition the node's last mini-batch is a single row,
# and onnxruntime's kernels may compute a one-row batch differently (see the measured
# table in test_honest.py). The last partition (348 rows) ends in a 92-row mini-batch.
PARTITION_ROWS = 513
BATCH_SIZE = 256

ONNX_TEST_DATA = Path(onnx.__file__).parent / "backend" / "test" / "data"


@dataclass(frozen=True)
class SklearnSpec:
    dataset: str  # digits | breast_cancer | wine
    estimator: str  # a short name, for the control's name
    make: Callable[[], Any]  # a fresh, unfitted estimator (fixed random_state)
    scaled: bool = False  # wrapped in a StandardScaler pipeline (converted as a Scaler op)


def _sklearn_specs() -> dict[str, SklearnSpec]:
    from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression, SGDClassifier
    from sklearn.neural_network import MLPClassifier

    specs = [
        SklearnSpec("digits", "sgd", lambda: SGDClassifier(max_iter=20, tol=None, random_state=0)),
        SklearnSpec(
            "wine",
            "sgd",
            lambda: SGDClassifier(loss="log_loss", max_iter=20, tol=None, random_state=0),
            scaled=True,
        ),
        SklearnSpec(
            "breast_cancer", "logreg", lambda: LogisticRegression(max_iter=200), scaled=True
        ),
        SklearnSpec("digits", "logreg", lambda: LogisticRegression(max_iter=25), scaled=True),
        SklearnSpec(
            "digits",
            "mlp",
            lambda: MLPClassifier(hidden_layer_sizes=(32,), max_iter=50, random_state=0),
        ),
        SklearnSpec(
            "breast_cancer",
            "mlp",
            lambda: MLPClassifier(hidden_layer_sizes=(16,), max_iter=100, random_state=0),
            scaled=True,
        ),
        SklearnSpec(
            "wine",
            "gbt",
            lambda: GradientBoostingClassifier(n_estimators=20, max_depth=2, random_state=0),
        ),
        SklearnSpec(
            "breast_cancer",
            "rf",
            lambda: RandomForestClassifier(n_estimators=10, max_depth=6, random_state=0),
        ),
    ]
    return {f"{s.estimator}-{s.dataset.replace('_', '-')}": s for s in specs}


# name -> folder under onnx/backend/test/data holding model.onnx
ONNX_PACKAGE_CONTROLS = {
    "onnx-linear-nobias": "pytorch-converted/test_Linear_no_bias",  # Transpose+MatMul, [4,10]
    "onnx-conv2d": "pytorch-converted/test_Conv2d",  # Conv, [2,3,7,5]
    "onnx-conv3d": "pytorch-converted/test_Conv3d",  # Conv, [2,3,3,4,5]
}

SKLEARN_CONTROLS = (
    "sgd-digits",
    "sgd-wine",
    "logreg-breast-cancer",
    "logreg-digits",
    "mlp-digits",
    "mlp-breast-cancer",
    "gbt-wine",
    "rf-breast-cancer",
)
CONTROL_NAMES = (*SKLEARN_CONTROLS, *ONNX_PACKAGE_CONTROLS)


@dataclass
class Control:
    name: str
    source: str  # "scikit-learn <version> + skl2onnx <version>" or "onnx <version> package"
    description: str
    path: Path  # the .onnx file
    data: Any  # a polars DataFrame (scikit-learn controls) or {input name: array}
    input_map: dict[str, list[str]] | None
    feeds: dict[str, np.ndarray]  # the model inputs exactly as the model sees them
    fixed_batch: int | None  # the model's fixed leading dim, if it has one
    fit_seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def n_rows(self) -> int:
        return len(next(iter(self.feeds.values())))


def _tile_with_noise(x: np.ndarray, n_rows: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    reps = -(-n_rows // len(x))
    tiled = np.tile(x, (reps, *([1] * (x.ndim - 1))))[:n_rows].astype(np.float64)
    scale = x.std(axis=0, keepdims=True) * 0.01
    return (tiled + rng.normal(size=tiled.shape) * scale).astype(np.float32)


def build_sklearn_control(name: str, folder: Path) -> Control:
    import skl2onnx
    import sklearn
    from skl2onnx import to_onnx
    from sklearn import datasets
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    spec = _sklearn_specs()[name]
    bunch = getattr(datasets, f"load_{spec.dataset}")()
    x = bunch.data.astype(np.float32)
    y = bunch.target
    model = spec.make()
    if spec.scaled:
        model = make_pipeline(StandardScaler(), model)
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(x, y)
    fit_seconds = time.perf_counter() - started
    onx = to_onnx(model, x[:1], options={"zipmap": False})
    path = folder / f"{name}.onnx"
    path.write_bytes(onx.SerializeToString())

    features = [str(f) for f in bunch.feature_names]
    rows = _tile_with_noise(x, N_ROWS, seed=sum(map(ord, name)))
    frame = pl.DataFrame({f: rows[:, i] for i, f in enumerate(features)})
    estimator = type(model[-1] if spec.scaled else model).__name__
    return Control(
        name=name,
        source=f"scikit-learn {sklearn.__version__} + skl2onnx {skl2onnx.__version__}",
        description=(
            f"{'StandardScaler + ' if spec.scaled else ''}{estimator} on load_{spec.dataset} "
            f"({len(x)}×{x.shape[1]}, {len(set(y))} classes); ops "
            + ",".join(dict.fromkeys(n.op_type for n in onx.graph.node))
        ),
        path=path,
        data=frame,
        input_map={"X": features},
        feeds={"X": rows},
        fixed_batch=None,
        fit_seconds=fit_seconds,
        extra={"train_accuracy": float((model.predict(x) == y).mean())},
    )


def build_onnx_package_control(name: str, folder: Path) -> Control:
    src = ONNX_TEST_DATA / ONNX_PACKAGE_CONTROLS[name] / "model.onnx"
    data = src.read_bytes()
    path = folder / f"{name}.onnx"
    path.write_bytes(data)  # the shipped bytes, unchanged
    graph = onnx.load_model_from_string(data).graph
    weights = {t.name for t in graph.initializer}
    (inp,) = [i for i in graph.input if i.name not in weights]
    shape = [d.dim_value for d in inp.type.tensor_type.shape.dim]
    rng = np.random.default_rng(sum(map(ord, name)))
    rows = rng.standard_normal((N_ROWS, *shape[1:])).astype(np.float32)
    return Control(
        name=name,
        source=f"onnx {onnx.__version__} package",
        description=(
            f"{ONNX_PACKAGE_CONTROLS[name]}/model.onnx, input {inp.name!r} {shape} (fixed batch "
            f"{shape[0]}), ops " + ",".join(dict.fromkeys(n.op_type for n in graph.node))
        ),
        path=path,
        data={inp.name: rows},
        input_map=None,
        feeds={inp.name: rows},
        fixed_batch=shape[0],
    )


def build_control(name: str, folder: Path) -> Control:
    if name in ONNX_PACKAGE_CONTROLS:
        return build_onnx_package_control(name, folder)
    return build_sklearn_control(name, folder)


# -- batch sensitivity ---------------------------------------------------------------------
def session_options() -> ort.SessionOptions:
    """ogkit's pinned session options (``SessionConfig``), or the same values spelled out."""
    try:
        from ogkit import SessionConfig

        return SessionConfig().session_options()
    except (ImportError, AttributeError):
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.use_deterministic_compute = True
        opts.log_severity_level = 3
        return opts


def run_in_minibatches(
    session: ort.InferenceSession,
    feeds: dict[str, np.ndarray],
    step: int | None,
    fixed_batch: int | None = None,
) -> list[np.ndarray]:
    """All outputs for all rows, the rows fed ``step`` at a time (``None``: in one call).

    A fixed-batch model runs each mini-batch in chunks of exactly ``fixed_batch`` rows,
    the last one padded with zeros, as ogkit does."""
    names = [o.name for o in session.get_outputs()]
    n = len(next(iter(feeds.values())))
    step = step or n
    chunk = fixed_batch or step
    parts: list[list[np.ndarray]] = []
    for lo in range(0, n, step):
        hi = min(n, lo + step)
        for clo in range(lo, hi, chunk):
            chi = min(hi, clo + chunk)
            part = {k: v[clo:chi] for k, v in feeds.items()}
            if fixed_batch and chi - clo < fixed_batch:
                pad = fixed_batch - (chi - clo)
                part = {
                    k: np.concatenate([v, np.zeros((pad, *v.shape[1:]), v.dtype)])
                    for k, v in part.items()
                }
            parts.append([o[: chi - clo] for o in session.run(names, part)])
    return [np.concatenate([p[i] for p in parts]) for i in range(len(names))]


def differing_rows(a: list[np.ndarray], b: list[np.ndarray]) -> np.ndarray:
    """Rows where any output differs bit-wise (NaN payloads and -0.0 included)."""
    n = len(a[0])
    bad = np.zeros(n, dtype=bool)
    for x, y in zip(a, b, strict=True):
        xb = np.ascontiguousarray(x).view(np.uint8).reshape(n, -1)
        yb = np.ascontiguousarray(y).view(np.uint8).reshape(n, -1)
        bad |= (xb != yb).any(axis=1)
    return bad


GEOMETRIES: tuple[int | None, ...] = (None, 1024, 256, 100, 7, 1)


def batch_sensitivity(control: Control) -> dict[str, float]:
    """Fraction of rows whose outputs differ bit-wise from the one-call run, per geometry.

    Keys: ``"1024"``, ``"256"``, ``"100"``, ``"7"``, ``"1"`` (rows per call), and
    ``"same"``: the one-call geometry run again (must be 0: same geometry, same bits).
    For a fixed-batch model the "one call" is consecutive padded chunks of its batch."""
    session = ort.InferenceSession(
        control.path.read_bytes(), session_options(), providers=["CPUExecutionProvider"]
    )
    ref = run_in_minibatches(session, control.feeds, None, control.fixed_batch)
    again = run_in_minibatches(session, control.feeds, None, control.fixed_batch)
    table = {"same": float(differing_rows(ref, again).mean())}
    for step in GEOMETRIES[1:]:
        got = run_in_minibatches(session, control.feeds, step, control.fixed_batch)
        table[str(step)] = float(differing_rows(ref, got).mean())
    return table
