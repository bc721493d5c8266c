"""ogkit: verifiable batch inference.

The six steps, each a plain function or small class: hub → load → infer →
attest → verify → settle → audit. See ARCHITECTURE.md for how data flows.
"""

__version__ = "0.1.0"

from ogkit.errors import *  # noqa: F403  (the error tree is part of the public API)
from ogkit.errors import __all__ as _error_names
from ogkit.hub import Hub, ModelManifest, ModelRef
from ogkit.keys import KeyStore, Signer
from ogkit.load import LoadedModel, RuntimeFingerprint, SessionConfig, load_model
from ogkit.store import ContentStore

__all__ = [
    "ContentStore",
    "Hub",
    "KeyStore",
    "LoadedModel",
    "ModelManifest",
    "ModelRef",
    "RuntimeFingerprint",
    "SessionConfig",
    "Signer",
    "__version__",
    "load_model",
    *_error_names,
]
