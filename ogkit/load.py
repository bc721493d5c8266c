"""The load step: verified model bytes → an onnxruntime session with pinned options.

The session options are fixed by :class:`SessionConfig` and recorded, with the
versions and the execution provider the session really got, in a
:class:`RuntimeFingerprint`; its hash is the *runtime id* that attestation signs.
"""

from __future__ import annotations

import logging
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from ogkit.crypto.keccak import keccak256
from ogkit.errors import ConfigError, InferenceError, InvalidModelError
from ogkit.hub.hub import Hub, ModelRef
from ogkit.hub.manifest import ModelManifest, TensorSpec, canonical_json, extract_signature
from ogkit.store import content_id
from ogkit.version import __version__

__all__ = [
    "LoadedModel",
    "ModelPayload",
    "RuntimeFingerprint",
    "SessionConfig",
    "load_model",
    "load_model_bytes",
    "reexecute",
    "worker_model",
]

log = logging.getLogger(__name__)

_OPT_LEVELS = {
    "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
_PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}


@dataclass(frozen=True)
class SessionConfig:
    """Pinned onnxruntime options. One thread per session: Dask supplies parallelism."""

    provider: str = "auto"  # "auto" (CUDA when it really works, else CPU), "cpu" or "cuda"
    graph_optimization_level: str = "all"
    intra_op_num_threads: int = 1
    inter_op_num_threads: int = 1
    deterministic_compute: bool = True

    def __post_init__(self) -> None:
        problems = []
        if self.provider not in ("auto", *_PROVIDERS):
            problems.append(f"provider must be auto, cpu or cuda, not {self.provider!r}")
        if self.graph_optimization_level not in _OPT_LEVELS:
            problems.append(
                f"graph_optimization_level must be one of {', '.join(_OPT_LEVELS)}, "
                f"not {self.graph_optimization_level!r}"
            )
        if self.intra_op_num_threads < 1 or self.inter_op_num_threads < 1:
            problems.append("thread counts must be >= 1")
        if problems:
            raise ConfigError("SessionConfig: " + "; ".join(problems))

    def session_options(self) -> ort.SessionOptions:
        opts = ort.SessionOptions()
        opts.graph_optimization_level = _OPT_LEVELS[self.graph_optimization_level]
        opts.intra_op_num_threads = self.intra_op_num_threads
        opts.inter_op_num_threads = self.inter_op_num_threads
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.use_deterministic_compute = self.deterministic_compute
        opts.log_severity_level = 3  # errors only: warnings go through our logging
        return opts


@dataclass(frozen=True)
class RuntimeFingerprint:
    """What ran the model. Its hash, the runtime id, is the software enclave's measurement."""

    ogkit_version: str
    onnxruntime_version: str
    execution_provider: str
    graph_optimization_level: str
    intra_op_num_threads: int
    inter_op_num_threads: int
    deterministic_compute: bool
    machine: str = field(default_factory=platform.machine)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def runtime_id(self) -> str:
        """``0x`` + keccak256 of the fingerprint's canonical JSON."""
        return "0x" + keccak256(canonical_json(self.to_dict())).hex()


def _cuda_available() -> bool:
    return _PROVIDERS["cuda"] in ort.get_available_providers()


def _make_session(data: bytes, config: SessionConfig) -> tuple[ort.InferenceSession, str]:
    """Build the session and return it with the provider it really got."""
    wants_cuda = config.provider == "cuda" or (config.provider == "auto" and _cuda_available())
    if config.provider == "cuda" and not _cuda_available():
        raise ConfigError(
            "provider='cuda' asked for, but onnxruntime has no CUDAExecutionProvider here: "
            "install ogkit[gpu] on a machine with a GPU, or use provider='auto'"
        )
    providers = [_PROVIDERS["cuda"], _PROVIDERS["cpu"]] if wants_cuda else [_PROVIDERS["cpu"]]
    try:
        session = ort.InferenceSession(data, config.session_options(), providers=providers)
    except Exception as exc:
        raise InvalidModelError(f"onnxruntime cannot load the model: {exc}") from None
    used = session.get_providers()[0]
    if wants_cuda and used != _PROVIDERS["cuda"]:
        if config.provider == "cuda":
            raise ConfigError(
                "CUDA was asked for but the session fell back to CPU (driver or CUDA libraries "
                "missing?); use provider='auto' to accept CPU"
            )
        log.warning("CUDA is listed but unusable here; running on CPU")
    return session, used


class LoadedModel:
    """A verified model with its session, signature and runtime fingerprint."""

    def __init__(
        self,
        data: bytes,
        *,
        config: SessionConfig | None = None,
        manifest: ModelManifest | None = None,
    ) -> None:
        self.config = config or SessionConfig()
        self.model_id = content_id(data)
        self.model_bytes = data  # kept so a pipeline can ship the verified bytes to workers
        if manifest is not None and manifest.model_id != self.model_id:
            raise InvalidModelError(
                f"bytes hash to {self.model_id}, not to {manifest.ref}'s id {manifest.model_id}"
            )
        self.manifest = manifest
        if manifest is not None:
            self.inputs, self.outputs = list(manifest.inputs), list(manifest.outputs)
        else:
            import onnx  # only for models without a manifest: it costs 0.5 s to import

            try:
                self.inputs, self.outputs = extract_signature(onnx.load_model_from_string(data))
            except Exception as exc:
                raise InvalidModelError(f"not a valid ONNX model: {exc}") from None
        self.session, provider = _make_session(data, self.config)
        self.fingerprint = RuntimeFingerprint(
            ogkit_version=__version__,
            onnxruntime_version=ort.__version__,
            execution_provider=provider,
            graph_optimization_level=self.config.graph_optimization_level,
            intra_op_num_threads=self.config.intra_op_num_threads,
            inter_op_num_threads=self.config.inter_op_num_threads,
            deterministic_compute=self.config.deterministic_compute,
        )
        self.runtime_id = self.fingerprint.runtime_id
        self.output_names = [o.name for o in self.outputs]
        fixed = {t.fixed_batch for t in self.inputs}
        # A model whose leading dim is a fixed number is run in chunks of exactly that size.
        self.fixed_batch: int | None = next(iter(fixed)) if len(fixed) == 1 else None

    def __repr__(self) -> str:
        name = self.manifest.ref if self.manifest else self.model_id[:18]
        return f"LoadedModel({name}, provider={self.fingerprint.execution_provider})"

    @property
    def input_specs(self) -> dict[str, TensorSpec]:
        return {t.name: t for t in self.inputs}

    def run(self, feeds: dict[str, np.ndarray], batch_size: int | None = None) -> dict[str, Any]:
        """Run all rows of ``feeds`` (first dim = rows) and return every output by name."""
        n = len(next(iter(feeds.values())))
        step = self.fixed_batch or batch_size or n or 1
        chunks: list[list[np.ndarray]] = []
        try:
            for start in range(0, n, step):
                part = {k: v[start : start + step] for k, v in feeds.items()}
                rows = len(next(iter(part.values())))
                if self.fixed_batch and rows < self.fixed_batch:
                    # Pad the last chunk of a fixed-batch model, then drop the padding.
                    pad = self.fixed_batch - rows
                    part = {
                        k: np.concatenate([v, np.zeros((pad, *v.shape[1:]), v.dtype)])
                        for k, v in part.items()
                    }
                outs = self.session.run(self.output_names, part)
                chunks.append([o[:rows] for o in outs])
        except Exception as exc:  # onnxruntime raises its own pybind types
            raise InferenceError(f"onnxruntime failed on {self!r}: {exc}") from exc
        if not chunks:
            return {o.name: np.zeros((0,), np.dtype(o.dtype)) for o in self.outputs}
        return {
            name: np.concatenate([c[i] for c in chunks]) if len(chunks) > 1 else chunks[0][i]
            for i, name in enumerate(self.output_names)
        }


def load_model_bytes(
    data: bytes, *, config: SessionConfig | None = None, manifest: ModelManifest | None = None
) -> LoadedModel:
    return LoadedModel(data, config=config, manifest=manifest)


def load_model(
    source: str | Path | ModelRef,
    *,
    hub: Hub | None = None,
    config: SessionConfig | None = None,
) -> LoadedModel:
    """Load a model by hub reference (``name``, ``name@version``, ``0x…`` id) or ONNX path.

    Hub models are verified against their content id before onnxruntime sees them
    (``ModelIntegrityError`` otherwise).
    """
    if isinstance(source, Path) or (isinstance(source, str) and source.endswith(".onnx")):
        path = Path(source)
        if not path.is_file():
            raise ConfigError(f"model file {path} does not exist")
        return LoadedModel(path.read_bytes(), config=config)
    if hub is None:
        raise ConfigError(f"model {source!r} is a hub reference: pass hub= (or an .onnx path)")
    manifest, data = hub.model_bytes(source)
    return LoadedModel(data, config=config, manifest=manifest)


# -- the per-worker model cache and re-execution ------------------------------
@dataclass(frozen=True)
class ModelPayload:
    """Verified model bytes and session options, shipped once to each worker."""

    model_id: str
    config: SessionConfig
    data: bytes = field(repr=False)


# One loaded model per worker process, keyed by (model id, options): loading once per
# worker rather than per partition is what keeps small partitions cheap.
_WORKER_MODELS: dict[tuple[str, SessionConfig], LoadedModel] = {}


def worker_model(payload: ModelPayload) -> LoadedModel:
    """The model for ``payload`` in this process, loaded on first use (one per worker)."""
    key = (payload.model_id, payload.config)
    if key not in _WORKER_MODELS:
        from ogkit.crypto.keccak import warm_up

        warm_up()  # compile (or load) the hashing kernel with the model, not mid-partition
        _WORKER_MODELS[key] = load_model_bytes(payload.data, config=payload.config)
    return _WORKER_MODELS[key]


def reexecute(
    model: LoadedModel,
    feeds: dict[str, np.ndarray],
    positions: np.ndarray | list[int],
    *,
    batch_size: int | None = None,
) -> dict[str, np.ndarray]:
    """Re-run the rows at ``positions`` of ``feeds`` exactly as the node ran them.

    ``feeds`` are a whole partition's inputs, in row order; the node ran them through
    :meth:`LoadedModel.run` in mini-batches of ``batch_size`` rows (``None``: one batch).
    onnxruntime's float result for a row can depend on which rows share its mini-batch,
    so each row is re-run inside its own original mini-batch, not on its own: on the
    same runtime the outputs are then bit-identical to an honest node's. Returns each
    output for the requested rows only, in the order of ``positions``.
    """
    positions = np.asarray(positions, dtype=np.int64)
    n = len(next(iter(feeds.values())))
    if len(positions) == 0:
        return {o.name: np.zeros((0,), np.dtype(o.dtype)) for o in model.outputs}
    if positions.min() < 0 or positions.max() >= n:
        raise InferenceError(f"re-execution asked for rows outside 0..{n - 1}")
    step = model.fixed_batch or batch_size or n
    chunks = np.unique(positions // step)
    results: dict[int, dict[str, np.ndarray]] = {}
    for c in chunks:
        lo, hi = int(c) * step, min(n, (int(c) + 1) * step)
        results[int(c)] = model.run({k: v[lo:hi] for k, v in feeds.items()}, step)
    return {
        name: np.stack([results[int(p // step)][name][int(p % step)] for p in positions])
        for name in model.output_names
    }
