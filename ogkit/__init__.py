"""ogkit: verifiable batch inference.

The steps, each a plain function or small class: hub → load → infer → attest →
verify (→ settle → audit). ARCHITECTURE.md walks the code the way data flows.

``import ogkit`` is cheap: the names below are imported on first use (PEP 562), so the
CLI and a notebook's first cell do not pay for onnxruntime, polars or web3 until a step
needs them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ogkit import errors as _errors
from ogkit import recursion as _recursion  # noqa: F401  (clamps the recursion limit first)
from ogkit.errors import *  # noqa: F403  (the error tree is part of the public API)
from ogkit.version import __version__ as __version__

# name -> the module that defines it
_LAZY = {
    "Allowlist": "ogkit.verify",
    "AttestedBatch": "ogkit.batch",
    "BatchClaim": "ogkit.attest",
    "ClaimDomain": "ogkit.attest",
    "ContentStore": "ogkit.store",
    "DatasetCommitment": "ogkit.dataset",
    "JobOrder": "ogkit.order",
    "SignedOrder": "ogkit.order",
    "SignedVerdict": "ogkit.verdict",
    "Hub": "ogkit.hub",
    "KeyStore": "ogkit.keys",
    "LoadedModel": "ogkit.load",
    "ModelManifest": "ogkit.hub",
    "ModelRef": "ogkit.hub",
    "RuntimeFingerprint": "ogkit.load",
    "SessionConfig": "ogkit.load",
    "Settings": "ogkit.settings",
    "Signer": "ogkit.keys",
    "Verdict": "ogkit.verify",
    "VerifyPolicy": "ogkit.verify",
    "commit_dataset": "ogkit.dataset",
    "get_client": "ogkit.compute",
    "load_batch": "ogkit.batch",
    "load_model": "ogkit.load",
    "make_attester": "ogkit.attest",
    "new_order": "ogkit.order",
    "run_verified_inference": "ogkit.infer",
    "verify_batch": "ogkit.verify",
    "verify_receipt": "ogkit.verify",
}

__all__ = sorted([*_LAZY, "__version__", *_errors.__all__])


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ogkit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


if TYPE_CHECKING:  # for type checkers and IDEs: the same names, imported eagerly
    from ogkit.attest import BatchClaim, ClaimDomain, make_attester  # noqa: F401
    from ogkit.batch import AttestedBatch, load_batch  # noqa: F401
    from ogkit.compute import get_client  # noqa: F401
    from ogkit.dataset import DatasetCommitment, commit_dataset  # noqa: F401
    from ogkit.hub import Hub, ModelManifest, ModelRef  # noqa: F401
    from ogkit.infer import run_verified_inference  # noqa: F401
    from ogkit.keys import KeyStore, Signer  # noqa: F401
    from ogkit.load import LoadedModel, RuntimeFingerprint, SessionConfig, load_model  # noqa: F401
    from ogkit.order import JobOrder, SignedOrder, new_order  # noqa: F401
    from ogkit.settings import Settings  # noqa: F401
    from ogkit.store import ContentStore  # noqa: F401
    from ogkit.verdict import SignedVerdict  # noqa: F401
    from ogkit.verify import Allowlist, Verdict, VerifyPolicy, verify_batch, verify_receipt  # noqa: F401
