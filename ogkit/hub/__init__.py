"""The Model Hub: content-addressed, owner-signed, versioned ONNX models."""

from ogkit.hub.hub import Hub, ModelRef, VerifyReport
from ogkit.hub.index import HubEntry, ModelIndex, SqliteIndex
from ogkit.hub.manifest import ModelManifest, TensorSpec
from ogkit.hub.semver import SemVer

__all__ = [
    "Hub",
    "HubEntry",
    "ModelIndex",
    "ModelManifest",
    "ModelRef",
    "SemVer",
    "SqliteIndex",
    "TensorSpec",
    "VerifyReport",
]
