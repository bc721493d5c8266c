"""ZK export: rewrite a model into what ezkl takes, fix its ZK profile, refuse early.

`export_model` runs, in order, each step cheap before the next:

1. **ops** — every node's op must be one ezkl compiles, or one ogkit rewrites exactly
   (``ai.onnx.ml`` Scaler → Sub, Mul; ArrayFeatureExtractor over constant classes →
   Identity or Gather; Conv/pool attributes written out). Every other op is listed at
   once in a :class:`ZkUnsupportedError`;
2. **types** — inputs and outputs must be float32, int32 or int64 (what the binding of
   spec §11 decodes);
3. **exactness** — the rewritten model must give bit-for-bit the same outputs as the
   model on the calibration rows (onnxruntime, both), else it is refused;
4. **size** — ezkl's settings give the circuit's rows; the keys and the prover's memory
   grow with 2^logrows, so a circuit over ``max_logrows`` or over ``max_memory_bytes``
   is refused before any key is made;
5. **calibration and tolerance** — ezkl calibrates the lookup ranges on the calibration
   rows, then every calibration row is run through the circuit (its witness) and the
   largest difference from onnxruntime's outputs must be within the stated tolerance.
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ogkit.crypto.keccak import keccak256
from ogkit.errors import ZkError, ZkUnsupportedError
from ogkit.store import ContentStore
from ogkit.zk.fixed import TensorLayout
from ogkit.zk.profile import ZkProfile, save_profile

log = logging.getLogger(__name__)

__all__ = [
    "SUPPORTED_OPS",
    "estimate_memory",
    "export_model",
    "rewrite_for_ezkl",
]

#: ONNX ops (default domain) ezkl 23 compiles and ogkit has exercised or checks.
SUPPORTED_OPS = frozenset(
    {
        "Abs", "Add", "ArgMax", "ArgMin", "AveragePool", "BatchNormalization", "Cast",
        "Clip", "Concat", "Constant", "Conv", "Div", "Erf", "Exp", "Flatten", "Gather",
        "Gemm", "GlobalAveragePool", "Identity", "LeakyRelu", "Log", "MatMul", "Max",
        "MaxPool", "Min", "Mul", "Neg", "Pad", "ReduceMax", "ReduceMean", "ReduceMin",
        "ReduceSum", "Relu", "Reshape", "Sigmoid", "Slice", "Softmax", "Sqrt", "Squeeze",
        "Sub", "Sum", "Tanh", "Transpose", "Unsqueeze",
    }
)  # fmt: skip
#: ``ai.onnx.ml`` ops ogkit rewrites into the ops above.
REWRITABLE_ML_OPS = frozenset({"Scaler", "ArrayFeatureExtractor"})
#: Proving-key bytes per circuit row (2^logrows rows), measured on ezkl 23.0.5 (49 MB at
#: logrows 12, 196 MB at 14, 392 MB at 15); the prover peaks near 3x the key.
PK_BYTES_PER_ROW = 12_000
DTYPES = {1: "float32", 6: "int32", 7: "int64"}
ORIGINAL_OPSET = 17


def estimate_memory(logrows: int) -> int:
    """Peak prover memory, bytes, for a circuit of 2^logrows rows."""
    return 3 * PK_BYTES_PER_ROW * (1 << logrows) + 200 * 2**20


def _attrs(node: Any) -> dict[str, Any]:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _unsupported(model: Any) -> list[str]:
    problems = []
    seen: set[tuple[str, str]] = set()
    for node in model.graph.node:
        key = (node.domain or "", node.op_type)
        if key in seen:
            continue
        seen.add(key)
        if key[0] in ("", "ai.onnx"):
            if node.op_type not in SUPPORTED_OPS:
                problems.append(f"op {node.op_type} is not supported by ezkl")
        elif key[0] == "ai.onnx.ml":
            if node.op_type not in REWRITABLE_ML_OPS:
                problems.append(
                    f"op ai.onnx.ml.{node.op_type} is not supported by ezkl and has no exact "
                    "rewrite"
                )
        else:
            problems.append(f"op {key[0]}.{node.op_type} (custom domain) is not supported")
    for vi in list(model.graph.input) + list(model.graph.output):
        code = vi.type.tensor_type.elem_type
        if code not in DTYPES:
            problems.append(
                f"tensor {vi.name!r} has ONNX type {code}; a ZK binding decodes float32, "
                "int32 and int64 only"
            )
    return problems


def rewrite_for_ezkl(data: bytes, chunk: int) -> tuple[bytes, list[str]]:
    """The model as ezkl takes it, with a fixed batch of ``chunk`` rows; also what was
    rewritten. Deterministic: the same model and chunk give the same bytes."""
    import onnx
    from onnx import helper, numpy_helper

    if chunk < 1:
        raise ZkUnsupportedError(f"chunk size N must be >= 1, got {chunk}")
    try:
        model = onnx.load_from_string(data)
    except Exception as exc:
        raise ZkUnsupportedError(f"not an ONNX model: {exc}") from exc
    problems = _unsupported(model)
    if not model.graph.input or not model.graph.output:
        problems.append("not an ONNX model with inputs and outputs")
    if problems:
        raise ZkUnsupportedError(
            f"model is out of reach of ezkl ({len(problems)} problem(s)): " + "; ".join(problems),
            problems=problems,
        )
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    nodes = []
    extra = []
    rewrites: list[str] = []
    for node in g.node:
        attrs = _attrs(node)
        if node.domain == "ai.onnx.ml" and node.op_type == "Scaler":
            stem = f"zk_{node.output[0]}"
            offset = np.asarray(attrs.get("offset", [0.0]), np.float32).reshape(1, -1)
            scale = np.asarray(attrs.get("scale", [1.0]), np.float32).reshape(1, -1)
            extra += [
                numpy_helper.from_array(offset, f"{stem}_offset"),
                numpy_helper.from_array(scale, f"{stem}_scale"),
            ]
            nodes += [
                helper.make_node("Sub", [node.input[0], f"{stem}_offset"], [f"{stem}_c"]),
                helper.make_node("Mul", [f"{stem}_c", f"{stem}_scale"], [node.output[0]]),
            ]
            rewrites.append(f"Scaler {node.output[0]} -> Sub, Mul")
        elif node.domain == "ai.onnx.ml" and node.op_type == "ArrayFeatureExtractor":
            data_name, index_name = node.input[0], node.input[1]
            if data_name not in inits:
                raise ZkUnsupportedError(
                    f"ArrayFeatureExtractor {node.output[0]} reads a computed tensor; only "
                    "constant class lists are rewritten",
                    problems=["ArrayFeatureExtractor over a non-constant tensor"],
                )
            classes = numpy_helper.to_array(inits[data_name])
            if classes.ndim == 1 and np.array_equal(classes, np.arange(classes.size)):
                nodes.append(helper.make_node("Identity", [index_name], [node.output[0]]))
                rewrites.append(f"ArrayFeatureExtractor {node.output[0]} -> Identity")
            else:
                nodes.append(
                    helper.make_node("Gather", [data_name, index_name], [node.output[0]], axis=0)
                )
                rewrites.append(f"ArrayFeatureExtractor {node.output[0]} -> Gather")
        elif node.op_type in ("Conv", "MaxPool", "AveragePool"):
            new = helper.make_node(node.op_type, list(node.input), list(node.output))
            new.attribute.extend(node.attribute)
            k = attrs.get("kernel_shape")
            if k is None and node.op_type == "Conv" and node.input[1] in inits:
                k = list(inits[node.input[1]].dims[2:])
            if k is not None:
                for name, default in (("strides", [1] * len(k)), ("dilations", [1] * len(k))):
                    if name not in attrs and (node.op_type == "Conv" or name == "strides"):
                        new.attribute.append(helper.make_attribute(name, default))
                        rewrites.append(f"{node.op_type} {node.output[0]}: {name} written out")
                if "pads" not in attrs and attrs.get("auto_pad", b"NOTSET") in (b"NOTSET", ""):
                    new.attribute.append(helper.make_attribute("pads", [0] * (2 * len(k))))
                    rewrites.append(f"{node.op_type} {node.output[0]}: pads written out")
            nodes.append(new)
        else:
            nodes.append(node)
    used = {i for n in nodes for i in n.input}
    initializers = [i for i in list(g.initializer) + extra if i.name in used]
    inputs = [onnx.ValueInfoProto.FromString(v.SerializeToString()) for v in g.input]
    outputs = [onnx.ValueInfoProto.FromString(v.SerializeToString()) for v in g.output]
    for vi in inputs + outputs:
        dims = vi.type.tensor_type.shape.dim
        if len(dims) == 0:
            raise ZkUnsupportedError(f"tensor {vi.name!r} has no batch dimension")
        dims[0].Clear()
        dims[0].dim_value = chunk
        for d in dims[1:]:
            if not d.HasField("dim_value"):
                raise ZkUnsupportedError(
                    f"tensor {vi.name!r} has a symbolic dimension beyond the batch; a "
                    "circuit needs fixed shapes",
                    problems=[f"symbolic dim in {vi.name}"],
                )
    graph = helper.make_graph(nodes, g.name or "ogkit_zk", inputs, outputs, initializers)
    opset = max([o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] or [0])
    out = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", max(opset, ORIGINAL_OPSET))],
        producer_name="ogkit-zk",
        producer_version="1",
    )
    out.ir_version = 8
    try:
        onnx.checker.check_model(out, full_check=True)
    except Exception as exc:
        raise ZkUnsupportedError(f"the rewritten model does not check: {exc}") from exc
    return out.SerializeToString(), rewrites


def _session(data: bytes) -> Any:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    return ort.InferenceSession(data, sess_options=so, providers=["CPUExecutionProvider"])


def _io(model_bytes: bytes) -> tuple[list[tuple[str, int, tuple[int, ...]]], list[Any]]:
    import onnx

    m = onnx.load_from_string(model_bytes)

    def spec(vi: Any) -> tuple[str, int, tuple[int, ...]]:
        dims = tuple(int(d.dim_value) for d in vi.type.tensor_type.shape.dim[1:])
        return vi.name, int(vi.type.tensor_type.elem_type), dims

    return [spec(v) for v in m.graph.input], [spec(v) for v in m.graph.output]


def _chunks(rows: int, chunk: int) -> list[np.ndarray]:
    idx = np.arange(rows)
    out = []
    for start in range(0, rows, chunk):
        part = idx[start : start + chunk]
        if part.size < chunk:  # pad the last chunk by repeating its last row
            part = np.concatenate([part, np.full(chunk - part.size, part[-1])])
        out.append(part)
    return out


def ezkl_input_json(inputs: Mapping[str, np.ndarray], names: list[str]) -> str:
    """ezkl's input file for one chunk: each input flattened, floats written so they parse
    back to exactly the same float32 value."""
    data = [[float(v) for v in np.asarray(inputs[n]).reshape(-1).tolist()] for n in names]
    return json.dumps({"input_data": data})


def _default_calibration(specs: list[tuple[str, int, tuple[int, ...]]], rows: int) -> dict:
    rng = np.random.default_rng(0)
    out = {}
    for name, code, shape in specs:
        a = rng.standard_normal((rows, *shape))
        out[name] = a.astype(np.float32) if code == 1 else np.rint(a).astype(DTYPES[code])
    return out


def export_model(
    data: bytes,
    *,
    chunk: int = 1,
    store: ContentStore | None = None,
    calibration: Mapping[str, np.ndarray] | None = None,
    input_scale: int = 10,
    param_scale: int | None = None,
    decomp_base: int = 1024,
    decomp_legs: int = 3,
    tolerance: float = 0.01,
    max_logrows: int = 20,
    max_memory_bytes: int = 16 * 2**30,
    lookup_margin: float = 2.0,
    tolerance_rows: int = 64,
) -> tuple[ZkProfile, bytes, bytes]:
    """Export ``data`` (ONNX bytes) for proofs of ``chunk`` rows: returns the profile, the
    rewritten model and the settings file (and stores all three when ``store`` is given).

    ``calibration`` holds model inputs (arrays with a leading row dim) that set the lookup
    ranges and measure the error; without it, seeded standard-normal rows are used."""
    import ezkl

    model_id = "0x" + keccak256(data).hex()
    zk_model, rewrites = rewrite_for_ezkl(data, chunk)
    in_specs, out_specs = _io(zk_model)
    problems = []
    if not 0 <= input_scale <= 24:
        problems.append(f"input scale {input_scale} is outside 0..24")
    if decomp_base < 2 or decomp_legs < 1:
        problems.append(f"decomposition {decomp_base}^{decomp_legs} is not a valid base/legs")
    if not tolerance > 0:
        problems.append(f"tolerance {tolerance} must be > 0")
    if problems:
        raise ZkUnsupportedError("; ".join(problems), problems=problems)
    if calibration is None:
        calibration = _default_calibration(in_specs, 4 * chunk)
    names = [n for n, _, _ in in_specs]
    missing = [n for n in names if n not in calibration]
    if missing:
        raise ZkUnsupportedError(f"calibration data lacks the model inputs {missing}")
    cal = {n: np.asarray(calibration[n]).astype(DTYPES[c], copy=False) for n, c, _ in in_specs}
    rows = min(len(v) for v in cal.values())
    if rows == 0:
        raise ZkUnsupportedError("calibration data has no rows")

    # 3. exactness: the rewrite must not change a single output bit
    original, rewritten = _session(data), _session(zk_model)
    reference: dict[str, list[np.ndarray]] = {n: [] for n, _, _ in out_specs}
    for part in _chunks(rows, chunk):
        feeds = {n: cal[n][part] for n in names}
        a = original.run(None, feeds)
        b = rewritten.run(None, feeds)
        for (name, _, _), x, y in zip(out_specs, a, b, strict=True):
            x, y = np.asarray(x), np.asarray(y)
            if x.shape != y.shape or x.tobytes() != y.tobytes():
                raise ZkUnsupportedError(
                    f"the rewrite changes output {name!r}; the model cannot be exported exactly",
                    problems=[f"inexact rewrite of {name}"],
                )
            reference[name].append(x)

    with tempfile.TemporaryDirectory(prefix="ogkit-zk-export-") as tmp:
        d = Path(tmp)
        (d / "model.onnx").write_bytes(zk_model)
        run_args = ezkl.PyRunArgs()
        run_args.input_visibility = "public"
        run_args.output_visibility = "public"
        run_args.param_visibility = "fixed"
        run_args.input_scale = input_scale
        run_args.param_scale = input_scale if param_scale is None else param_scale
        run_args.decomp_base = decomp_base
        run_args.decomp_legs = decomp_legs
        if not ezkl.gen_settings(str(d / "model.onnx"), str(d / "settings.json"), run_args):
            raise ZkError("ezkl could not generate settings for the rewritten model")
        # 4. size, before calibration and keys
        est = json.loads((d / "settings.json").read_text())
        min_logrows = max(1, math.ceil(math.log2(max(2, int(est.get("num_rows", 1))))))
        _check_size(min_logrows, max_logrows, max_memory_bytes)
        cal_lines = {
            "input_data": [[float(v) for v in cal[n][:rows].reshape(-1).tolist()] for n in names]
        }
        (d / "calibration.json").write_text(json.dumps(cal_lines))
        ok = ezkl.calibrate_settings(
            str(d / "calibration.json"),
            str(d / "model.onnx"),
            str(d / "settings.json"),
            "resources",
            lookup_margin,
            [input_scale],
            [1],
            max_logrows,
        )
        if not ok:
            raise ZkUnsupportedError(
                "ezkl could not calibrate the circuit within "
                f"2^{max_logrows} rows; raise --max-logrows or lower the scale"
            )
        settings = json.loads((d / "settings.json").read_text())
        ra = settings["run_args"]
        if ra["input_scale"] != input_scale or ra["param_visibility"] != "Fixed":
            raise ZkError("ezkl calibration changed the requested scale or visibility")
        logrows = int(ra["logrows"])
        _check_size(logrows, max_logrows, max_memory_bytes)
        settings_raw = (d / "settings.json").read_bytes()
        settings_hash = "0x" + keccak256(settings_raw).hex()
        ezkl.compile_circuit(
            str(d / "model.onnx"), str(d / "model.compiled"), str(d / "settings.json")
        )

        in_scales = [int(s) for s in settings["model_input_scales"]]
        out_scales = [int(s) for s in settings["model_output_scales"]]
        inputs, outputs, base = [], [], 0
        for (name, code, shape), s in zip(in_specs, in_scales, strict=True):
            t = TensorLayout(name, code, shape, s, base)
            inputs.append(t)
            base += chunk * t.count
        tolerances: dict[str, float] = {}
        for (name, code, shape), s in zip(out_specs, out_scales, strict=True):
            tol_units = math.floor(tolerance * (1 << s)) if code == 1 else 0
            t = TensorLayout(name, code, shape, s, base, tol_units)
            outputs.append(t)
            tolerances[name] = tol_units / (1 << s) if code == 1 else 0.0
            base += chunk * t.count

        # 5. measured error of the circuit against onnxruntime on calibration rows
        measured = _measure_error(d, cal, names, outputs, reference, rows, chunk, tolerance_rows)
    bad = [
        f"{n}: measured error {measured[n]:.3g} > tolerance {tolerances[n]:.3g}"
        for n in tolerances
        if measured[n] > tolerances[n]
    ]
    if bad:
        raise ZkUnsupportedError(
            "the circuit's outputs are not within the tolerance of onnxruntime's on the "
            f"calibration rows ({'; '.join(bad)}); raise --scale or --tolerance",
            problems=bad,
        )
    profile = ZkProfile(
        model_id=model_id,
        zk_model_id="0x" + keccak256(zk_model).hex(),
        chunk=chunk,
        input_scale=input_scale,
        param_scale=int(ra["param_scale"]),
        decomp_base=decomp_base,
        decomp_legs=decomp_legs,
        logrows=logrows,
        settings_hash=settings_hash,
        inputs=tuple(inputs),
        outputs=tuple(outputs),
        tolerances=tolerances,
        measured_error=measured,
        rewrites=tuple(rewrites),
        ezkl_version=_ezkl_version(),
    )
    if store is not None:
        save_profile(store, profile, zk_model, settings_raw)
    log.info(
        "ZK export of %s: N=%d, scale %d, 2^%d rows, rewrites %s",
        model_id,
        chunk,
        input_scale,
        logrows,
        rewrites or "none",
    )
    return profile, zk_model, settings_raw


def _ezkl_version() -> str:
    from importlib.metadata import version

    return version("ezkl")


def _check_size(logrows: int, max_logrows: int, max_memory_bytes: int) -> None:
    need = estimate_memory(logrows)
    problems = []
    if logrows > max_logrows:
        problems.append(f"the circuit needs 2^{logrows} rows, over the limit 2^{max_logrows}")
    if need > max_memory_bytes:
        problems.append(
            f"proving needs about {need / 2**30:.1f} GiB, over the limit "
            f"{max_memory_bytes / 2**30:.1f} GiB"
        )
    if problems:
        raise ZkUnsupportedError(
            "model is out of reach: " + "; ".join(problems) + " (a smaller model or chunk)",
            problems=problems,
        )


def _measure_error(
    d: Path,
    cal: dict[str, np.ndarray],
    names: list[str],
    outputs: list[TensorLayout],
    reference: dict[str, list[np.ndarray]],
    rows: int,
    chunk: int,
    limit: int,
) -> dict[str, float]:
    import ezkl

    from ogkit.zk.fixed import field_to_int

    worst = {t.name: 0.0 for t in outputs}
    for k, part in enumerate(_chunks(min(rows, max(limit, chunk)), chunk)):
        (d / "w_in.json").write_text(ezkl_input_json({n: cal[n][part] for n in names}, names))
        w = ezkl.gen_witness(str(d / "w_in.json"), str(d / "model.compiled"), None, None, None)
        for i, t in enumerate(outputs):
            proven = np.array(
                [field_to_int(int(ezkl.felt_to_big_endian(f), 16)) for f in w["outputs"][i]],
                dtype=np.float64,
            ) / float(1 << t.scale)
            ref = reference[t.name][k].reshape(-1).astype(np.float64)
            worst[t.name] = max(worst[t.name], float(np.max(np.abs(proven - ref))))
    return worst
