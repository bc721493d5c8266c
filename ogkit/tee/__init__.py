"""Hardware attestation evidence: Intel TDX and SGX quotes, AWS Nitro documents.

==============  ============================================================================
module          job
==============  ============================================================================
``claims``      ``TeeClaims`` (what every verifier returns), ``measurement_hash``, the
                key binding ``keccak256(public_key ‖ nonce)``, the errors
``policy``      ``EvidencePolicy`` (debug, TCB status, expired collateral) and its findings
``dcap``        Intel DCAP quotes through ``dcap-qvl`` (optional: ``ogkit[tee]``)
``nitro``       AWS Nitro COSE_Sign1 documents with ``cbor2`` + ``cryptography``
``evidence``    the evidence object of a batch manifest, ``VERIFIERS``, ``check_evidence``
``nsm``         inside a Nitro enclave: ``/dev/nsm`` attestation requests
``tsm``         inside a TDX trust domain: configfs-tsm reports
==============  ============================================================================

docs/tee.md is the reference: the measurement hash, the binding, the policy and every
finding. The names below are loaded on first use; none of the TEE libraries is imported
until a quote or document is verified.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ogkit.tee.claims import (
        EnclaveUnavailable,
        EvidenceError,
        TeeClaims,
        binding_digest,
        measurement_hash,
        report_data_for,
    )
    from ogkit.tee.dcap import verify_quote
    from ogkit.tee.evidence import (
        TEE_REASONS,
        VERIFIERS,
        EvidenceCheck,
        check_evidence,
        hardware_evidence,
        verify_evidence,
    )
    from ogkit.tee.nitro import verify_document
    from ogkit.tee.policy import EvidencePolicy

_LAZY = {
    "EnclaveUnavailable": "ogkit.tee.claims",
    "EvidenceError": "ogkit.tee.claims",
    "TeeClaims": "ogkit.tee.claims",
    "binding_digest": "ogkit.tee.claims",
    "measurement_hash": "ogkit.tee.claims",
    "report_data_for": "ogkit.tee.claims",
    "EvidencePolicy": "ogkit.tee.policy",
    "verify_quote": "ogkit.tee.dcap",
    "verify_document": "ogkit.tee.nitro",
    "TEE_REASONS": "ogkit.tee.evidence",
    "VERIFIERS": "ogkit.tee.evidence",
    "EvidenceCheck": "ogkit.tee.evidence",
    "check_evidence": "ogkit.tee.evidence",
    "hardware_evidence": "ogkit.tee.evidence",
    "verify_evidence": "ogkit.tee.evidence",
}

__all__ = [
    "TEE_REASONS",
    "VERIFIERS",
    "EnclaveUnavailable",
    "EvidenceCheck",
    "EvidenceError",
    "EvidencePolicy",
    "TeeClaims",
    "binding_digest",
    "check_evidence",
    "hardware_evidence",
    "measurement_hash",
    "report_data_for",
    "verify_document",
    "verify_evidence",
    "verify_quote",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ogkit.tee' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
