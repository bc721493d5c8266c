"""ogkit: verifiable batch inference.

The steps, each a plain function or small class: hub → load → infer → attest →
verify (→ settle → audit). ARCHITECTURE.md walks the code the way data flows.
"""

__version__ = "0.1.0"

from ogkit.artifacts import AttestedBatch, load_batch, verify_receipt  # noqa: E402
from ogkit.attest import make_attester  # noqa: E402
from ogkit.claims import BatchClaim, ClaimDomain  # noqa: E402
from ogkit.compute import get_client  # noqa: E402
from ogkit.errors import *  # noqa: E402,F403  (the error tree is part of the public API)
from ogkit.errors import __all__ as _error_names  # noqa: E402
from ogkit.hub import Hub, ModelManifest, ModelRef  # noqa: E402
from ogkit.keys import KeyStore, Signer  # noqa: E402
from ogkit.load import LoadedModel, RuntimeFingerprint, SessionConfig, load_model  # noqa: E402
from ogkit.pipeline import run_verified_inference  # noqa: E402
from ogkit.store import ContentStore  # noqa: E402
from ogkit.verify import Allowlist, Verdict, VerifyPolicy, verify_batch  # noqa: E402

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
