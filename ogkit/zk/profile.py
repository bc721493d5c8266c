"""A model's ZK profile: the exact circuit settings a proof of it is made under.

The profile is explicit and versioned (``schema``). It names the model it is for (the
hub's content id of the ONNX bytes the node runs), the rewritten ONNX ezkl compiles (by
content id: :func:`ogkit.zk.export.rewrite_for_ezkl` reproduces it from the model), the
chunk size ``N``, the fixed-point scales, the decomposition, the visibility (inputs and
outputs public, weights fixed in the circuit), the ezkl settings file by its keccak256,
where each tensor's values sit among the public instances, and the tolerance between a
proof's outputs and the receipted float outputs. Its id is the keccak256 of its
canonical JSON.

Profiles live in the store beside the hub's models: ``zk/profiles/<model id>/n<N>.json``;
the rewritten ONNX and the settings file are content-addressed objects (``zk-models``,
``zk-settings``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ogkit.crypto.keccak import keccak256
from ogkit.errors import ArtifactError, ZkError
from ogkit.store import ContentStore
from ogkit.zk.fixed import TensorLayout

__all__ = [
    "PROFILE_SCHEMA",
    "VISIBILITY",
    "ZkProfile",
    "load_profile",
    "profile_path",
    "save_profile",
]

PROFILE_SCHEMA = "ogkit.zk.profile.v1"
#: The only visibility ogkit proves under: the weights are fixed columns of the circuit, so
#: the verifying key commits to them and a proof of another model's weights cannot verify.
VISIBILITY = {"input": "public", "output": "public", "params": "fixed"}
ZK_MODELS = "zk-models"
ZK_SETTINGS = "zk-settings"


def _canonical_json(d: Any) -> bytes:
    return json.dumps(d, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


@dataclass(frozen=True)
class ZkProfile:
    model_id: str
    zk_model_id: str
    chunk: int
    input_scale: int
    param_scale: int
    decomp_base: int
    decomp_legs: int
    logrows: int
    settings_hash: str
    inputs: tuple[TensorLayout, ...]
    outputs: tuple[TensorLayout, ...]
    tolerances: dict[str, float]
    measured_error: dict[str, float]
    rewrites: tuple[str, ...]
    ezkl_version: str
    visibility: dict[str, str] = field(default_factory=lambda: dict(VISIBILITY))
    schema: str = PROFILE_SCHEMA

    @property
    def instance_count(self) -> int:
        return sum(t.count for t in self.inputs + self.outputs) * self.chunk

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": self.schema,
            "model_id": self.model_id,
            "zk_model_id": self.zk_model_id,
            "chunk": self.chunk,
            "input_scale": self.input_scale,
            "param_scale": self.param_scale,
            "decomp_base": self.decomp_base,
            "decomp_legs": self.decomp_legs,
            "logrows": self.logrows,
            "settings_hash": self.settings_hash,
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
            "tolerances": dict(sorted(self.tolerances.items())),
            "measured_error": dict(sorted(self.measured_error.items())),
            "rewrites": list(self.rewrites),
            "ezkl_version": self.ezkl_version,
            "visibility": dict(sorted(self.visibility.items())),
        }

    @property
    def profile_id(self) -> str:
        return "0x" + keccak256(_canonical_json(self.to_dict())).hex()

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), sort_keys=True, indent=2).encode() + b"\n"

    @classmethod
    def from_dict(cls, d: Any) -> ZkProfile:
        if not isinstance(d, dict) or d.get("schema") != PROFILE_SCHEMA:
            got = d.get("schema") if isinstance(d, dict) else type(d).__name__
            raise ZkError(
                f"not a ZK profile of schema {PROFILE_SCHEMA} (got {got!r}); re-export it "
                "with `ogkit zk export MODEL`"
            )
        try:
            return cls(
                model_id=str(d["model_id"]),
                zk_model_id=str(d["zk_model_id"]),
                chunk=int(d["chunk"]),
                input_scale=int(d["input_scale"]),
                param_scale=int(d["param_scale"]),
                decomp_base=int(d["decomp_base"]),
                decomp_legs=int(d["decomp_legs"]),
                logrows=int(d["logrows"]),
                settings_hash=str(d["settings_hash"]),
                inputs=tuple(TensorLayout.from_dict(t) for t in d["inputs"]),
                outputs=tuple(TensorLayout.from_dict(t) for t in d["outputs"]),
                tolerances={str(k): float(v) for k, v in d["tolerances"].items()},
                measured_error={str(k): float(v) for k, v in d["measured_error"].items()},
                rewrites=tuple(str(r) for r in d["rewrites"]),
                ezkl_version=str(d["ezkl_version"]),
                visibility={str(k): str(v) for k, v in d["visibility"].items()},
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ZkError(f"ZK profile is malformed ({exc!r}); re-export it") from exc


def profile_path(model_id: str, chunk: int) -> str:
    return f"zk/profiles/{model_id}/n{int(chunk)}.json"


def save_profile(store: ContentStore, profile: ZkProfile, zk_model: bytes, settings: bytes) -> str:
    """Store the rewritten model, the settings file and the profile; returns its path."""
    if "0x" + keccak256(zk_model).hex() != profile.zk_model_id:
        raise ZkError("the rewritten model does not hash to the profile's zk_model_id")
    if "0x" + keccak256(settings).hex() != profile.settings_hash:
        raise ZkError("the settings file does not hash to the profile's settings_hash")
    store.put(ZK_MODELS, zk_model)
    store.put(ZK_SETTINGS, settings)
    return store.write_bytes(profile_path(profile.model_id, profile.chunk), profile.to_json())


def load_profile(store: ContentStore, model_id: str, chunk: int) -> ZkProfile:
    path = profile_path(model_id, chunk)
    try:
        raw = store.read_bytes(path)
    except ArtifactError:
        raise ZkError(
            f"model {model_id} has no ZK profile for N={chunk} in {store.url}; run "
            f"`ogkit zk export {model_id} --chunk {chunk}`"
        ) from None
    try:
        d = json.loads(raw)
    except ValueError as exc:
        raise ZkError(f"ZK profile {path} is not JSON: {exc}") from exc
    return ZkProfile.from_dict(d)


def zk_model_bytes(store: ContentStore, profile: ZkProfile) -> bytes:
    return store.get(ZK_MODELS, profile.zk_model_id)


def settings_bytes(store: ContentStore, profile: ZkProfile) -> bytes:
    return store.get(ZK_SETTINGS, profile.settings_hash)
