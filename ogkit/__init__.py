"""ogkit: verifiable batch inference.

The steps, each a plain function or small class: hub → load → infer → attest →
verify (→ settle → audit). ARCHITECTURE.md walks the code the way data flows.
"""

__version__ = "0.1.0"

from ogkit.artifacts import AttestedBatch, load_batch, verify_receipt
from ogkit.attest import make_attester
from ogkit.claims import BatchClaim, ClaimDomain
from ogkit.compute import get_client
from ogkit.errors import *  # noqa: F403  (the error tree is part of the public API)
from ogkit.errors import __all__ as _error_names
from ogkit.hub import Hub, ModelManifest, ModelRef
from ogkit.keys import KeyStore, Signer
from ogkit.load import LoadedModel, RuntimeFingerprint, SessionConfig, load_model
from ogkit.pipeline import run_verified_inference
from ogkit.store import ContentStore
from ogkit.verify import Allowlist, Verdict, VerifyPolicy, verify_batch

__all__ = [
    "Allowlist",
    "AttestedBatch",
    "BatchClaim",
    "ClaimDomain",
    "ContentStore",
    "Hub",
    "KeyStore",
    "LoadedModel",
    "ModelManifest",
    "ModelRef",
    "RuntimeFingerprint",
    "SessionConfig",
    "Signer",
    "Verdict",
    "VerifyPolicy",
    "__version__",
    "get_client",
    "load_batch",
    "load_model",
    "make_attester",
    "run_verified_inference",
    "verify_batch",
    "verify_receipt",
    *_error_names,
]
