"""Model manifests: what a published model version is, signed by its owner (EIP-712)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from ogkit.crypto.keccak import keccak256
from ogkit.errors import InvalidModelError, ManifestSignatureError
from ogkit.keys import Signer, recover_typed_data

if TYPE_CHECKING:  # onnx is imported where a model is parsed: it costs 0.5 s
    import onnx

__all__ = ["ModelManifest", "TensorSpec", "canonical_json", "extract_signature"]

HUB_DOMAIN = {"name": "ogkit-hub", "version": "1"}
MANIFEST_TYPES = {
    "EIP712Domain": [
        {"name": "name", "type": "string"},
        {"name": "version", "type": "string"},
    ],
    "ModelManifest": [
        {"name": "name", "type": "string"},
        {"name": "version", "type": "string"},
        {"name": "owner", "type": "address"},
        {"name": "pricePerInference", "type": "uint256"},
        {"name": "modelId", "type": "bytes32"},
        {"name": "metadataHash", "type": "bytes32"},
        {"name": "createdAt", "type": "uint64"},
    ],
}


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no whitespace, UTF-8: the bytes ogkit hashes for JSON documents."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True)
class TensorSpec:
    """One named input or output: numpy dtype name and shape (str for symbolic dims)."""

    name: str
    dtype: str
    shape: tuple[int | str | None, ...]

    @property
    def fixed_batch(self) -> int | None:
        """The leading dimension if it is a fixed number, else None."""
        return self.shape[0] if self.shape and isinstance(self.shape[0], int) else None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TensorSpec:
        return cls(d["name"], d["dtype"], tuple(d["shape"]))


def _value_info_spec(vi: onnx.ValueInfoProto, where: str) -> TensorSpec:
    if not vi.type.HasField("tensor_type"):
        raise InvalidModelError(
            f"{where} {vi.name!r} is a {vi.type.WhichOneof('value')} value, not a tensor; "
            "ogkit hashes tensors only (for skl2onnx classifiers convert with "
            "options={'zipmap': False})"
        )
    tt = vi.type.tensor_type
    try:
        from onnx import helper

        dtype = np.dtype(helper.tensor_dtype_to_np_dtype(tt.elem_type)).name
    except (KeyError, TypeError):
        raise InvalidModelError(f"{where} {vi.name!r} has an unsupported element type") from None
    shape: list[int | str | None] = []
    for dim in tt.shape.dim:
        if dim.HasField("dim_value"):
            shape.append(int(dim.dim_value))
        elif dim.HasField("dim_param"):
            shape.append(dim.dim_param)
        else:
            shape.append(None)
    return TensorSpec(vi.name, dtype, tuple(shape))


def extract_signature(model: onnx.ModelProto) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """The model's graph inputs (initialisers excluded) and outputs."""
    initializers = {init.name for init in model.graph.initializer}
    inputs = [
        _value_info_spec(vi, "input") for vi in model.graph.input if vi.name not in initializers
    ]
    outputs = [_value_info_spec(vi, "output") for vi in model.graph.output]
    return inputs, outputs


@dataclass(frozen=True)
class ModelManifest:
    """An immutable, owner-signed description of one published model version."""

    name: str
    version: str
    owner: str
    price_per_inference: int  # OPG base units (1 OPG = 10**18)
    model_id: str  # 0x + keccak256 of the ONNX bytes
    size_bytes: int
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    description: str = ""
    tags: tuple[str, ...] = ()
    license: str = ""
    # Input name -> the dataset columns it is built from, in order (recorded at publish):
    # infer and verifiers bind columns by these names, never by position.
    features: dict[str, tuple[str, ...]] = field(default_factory=dict)
    created_at: int = 0  # unix seconds
    signature: str = ""
    schema: str = field(default="ogkit.manifest.v1")

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    def metadata(self) -> dict[str, Any]:
        """Everything the signature covers besides the typed fields, hashed as canonical JSON
        (``features`` only when recorded, so earlier manifests keep their hashes)."""
        doc: dict[str, Any] = {
            "description": self.description,
            "inputs": [t.to_dict() for t in self.inputs],
            "license": self.license,
            "outputs": [t.to_dict() for t in self.outputs],
            "schema": self.schema,
            "size_bytes": self.size_bytes,
            "tags": list(self.tags),
        }
        if self.features:
            doc["features"] = {k: list(v) for k, v in sorted(self.features.items())}
        return doc

    def metadata_hash(self) -> str:
        return "0x" + keccak256(canonical_json(self.metadata())).hex()

    def typed_data(self) -> dict[str, Any]:
        return {
            "types": MANIFEST_TYPES,
            "primaryType": "ModelManifest",
            "domain": HUB_DOMAIN,
            "message": {
                "name": self.name,
                "version": self.version,
                "owner": self.owner,
                "pricePerInference": self.price_per_inference,
                "modelId": bytes.fromhex(self.model_id[2:]),
                "metadataHash": bytes.fromhex(self.metadata_hash()[2:]),
                "createdAt": self.created_at,
            },
        }

    def manifest_hash(self) -> str:
        """keccak256 of the canonical JSON of the signed manifest (what a registry stores)."""
        return "0x" + keccak256(canonical_json(self.to_dict())).hex()

    def signed_by(self, signer: Signer) -> ModelManifest:
        unsigned = replace(self, owner=signer.address, signature="")
        return replace(unsigned, signature=signer.sign_typed_data(unsigned.typed_data()))

    def check_signature(self) -> None:
        """Raise ManifestSignatureError unless the signature recovers the owner."""
        if not self.signature:
            raise ManifestSignatureError(f"manifest {self.ref} is not signed")
        try:
            signer = recover_typed_data(self.typed_data(), self.signature)
        except Exception as exc:
            raise ManifestSignatureError(
                f"manifest {self.ref} has a malformed signature: {exc}"
            ) from None
        if signer.lower() != self.owner.lower():
            raise ManifestSignatureError(
                f"manifest {self.ref} is signed by {signer}, not by its owner {self.owner}: "
                "the manifest was altered or forged; do not use this model version"
            )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["inputs"] = [t.to_dict() for t in self.inputs]
        d["outputs"] = [t.to_dict() for t in self.outputs]
        d["tags"] = list(self.tags)
        d["features"] = {k: list(v) for k, v in sorted(self.features.items())}
        if not self.features:
            del d["features"]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelManifest:
        d = dict(d)
        d["inputs"] = tuple(TensorSpec.from_dict(t) for t in d["inputs"])
        d["outputs"] = tuple(TensorSpec.from_dict(t) for t in d["outputs"])
        d["tags"] = tuple(d.get("tags", ()))
        d["features"] = {str(k): tuple(map(str, v)) for k, v in (d.get("features") or {}).items()}
        return cls(**d)
