"""ogkit's errors: one root, subclasses that say what went wrong.

Every error ogkit raises on purpose derives from :class:`OgkitError`; where a
builtin fits, the error subclasses it too, so ``except ValueError`` still works.
Messages name the thing that was wrong and what to do about it.

::

    OgkitError
    ├── ConfigError (ValueError)             bad setting, option or argument
    │   ├── SchemaMismatchError              dataset columns/dtypes/shapes vs model signature
    │   └── OrderError                       a job order that is malformed or not for this job
    ├── KeyStoreError                        missing key, wrong password, bad keystore file
    ├── SignatureError (ValueError)          a signature OpenZeppelin's ECDSA would reject
    ├── HubError
    │   ├── ModelNotFoundError (LookupError) unknown model name, version or id
    │   ├── InvalidModelError (ValueError)   not a valid ONNX file
    │   ├── VersionError (ValueError)        malformed, duplicate or non-increasing version
    │   ├── ModelIntegrityError              blob hash does not match its id
    │   └── ManifestSignatureError           manifest signature does not recover the owner
    ├── InferenceError                       onnxruntime failed on a partition
    ├── ArtifactError                        missing, corrupt or tampered batch artefact
    │   ├── ArtifactIntegrityError           bytes do not match the content id
    │   └── InputsUnavailableError           a batch's stored dataset is missing or unreadable
    ├── VerificationFailed                   a verdict that did not pass (carries the verdict)
    ├── ReceiptError (ValueError)            a receipt that is malformed or does not verify
    ├── DataCheckFailed                      data checks failed and the policy blocks
    ├── NotebookFailed                       a notebook cell raised; the partial notebook is kept
    ├── ChainError                           the chain is unreachable or misconfigured
    │   └── SettlementError                  a transaction reverted or a settlement step failed
    ├── AuditError                           an audit could not be carried out at all
    ├── PaymentError                         an x402 payment refused (``reason`` says why)
    ├── NodeError                            an inference node refused or failed a request
    │   └── NodeUnavailable                  the node (or facilitator) cannot be reached
    ├── AuditFailed                          an audit ran and did not pass (e.g. too few batches)
    └── ZkError                              a ZK export, key set-up or proof step failed
        └── ZkUnsupportedError (ValueError)  a model or setting out of reach of the prover
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ArtifactError",
    "ArtifactIntegrityError",
    "AuditError",
    "AuditFailed",
    "ChainError",
    "ConfigError",
    "DataCheckFailed",
    "HubError",
    "InferenceError",
    "InputsUnavailableError",
    "InvalidModelError",
    "KeyStoreError",
    "ManifestSignatureError",
    "ModelIntegrityError",
    "ModelNotFoundError",
    "NodeError",
    "NodeUnavailable",
    "NotebookFailed",
    "OgkitError",
    "OrderError",
    "PaymentError",
    "ReceiptError",
    "SchemaMismatchError",
    "SettlementError",
    "SignatureError",
    "VerificationFailed",
    "VersionError",
    "ZkError",
    "ZkUnsupportedError",
]


class OgkitError(Exception):
    """Root of every error ogkit raises on purpose."""


class ConfigError(OgkitError, ValueError):
    """A setting, option or argument is wrong."""


class SchemaMismatchError(ConfigError):
    """The dataset does not fit the model's inputs; ``problems`` lists every mismatch."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        n = len(self.problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(
            f"{n} schema problem{'s' if n != 1 else ''} found before inference started:\n{lines}"
        )


class KeyStoreError(OgkitError):
    """A key could not be found, decrypted or created."""


class SignatureError(OgkitError, ValueError):
    """A signature is malformed, non-canonical (high s, v not 27/28) or recovers no key."""


class HubError(OgkitError):
    """A model hub operation failed."""


class ModelNotFoundError(HubError, LookupError):
    """No model matches the given reference."""


class InvalidModelError(HubError, ValueError):
    """The file is not a valid ONNX model."""


class VersionError(HubError, ValueError):
    """A version string is malformed, already published, or not greater than the latest."""


class ModelIntegrityError(HubError):
    """A stored model blob does not hash to its id: it was altered or truncated."""

    def __init__(self, message: str, *, model_id: str, actual_id: str | None = None) -> None:
        self.model_id = model_id
        self.actual_id = actual_id
        super().__init__(message)


class ManifestSignatureError(HubError):
    """A manifest's signature does not recover its owner's address."""


class InferenceError(OgkitError):
    """onnxruntime failed while running a partition."""


class ArtifactError(OgkitError):
    """A batch artefact is missing, unreadable or inconsistent."""


class ArtifactIntegrityError(ArtifactError):
    """An artefact's bytes do not hash to its content id."""


class InputsUnavailableError(ArtifactError):
    """A batch's inputs cannot be read: its stored dataset is missing, unreadable, or
    lacks the rows or columns the manifest names."""


class VerificationFailed(OgkitError):
    """A verification verdict did not pass; ``verdict`` holds the details."""

    def __init__(self, message: str, *, verdict: Any = None) -> None:
        self.verdict = verdict
        super().__init__(message)


class ReceiptError(OgkitError, ValueError):
    """A receipt is malformed or does not verify against its root."""


class DataCheckFailed(OgkitError):
    """Data checks failed and the policy blocks settlement; ``result`` holds the details."""

    def __init__(self, message: str, *, result: Any = None, policy: Any = None) -> None:
        self.result = result
        self.policy = policy
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:
        # Keep the result and policy when pickled to and from Dask workers.
        return (_rebuild, (type(self), str(self), {"result": self.result, "policy": self.policy}))


def _rebuild(cls: type, message: str, fields: dict[str, Any]) -> OgkitError:
    return cls(message, **fields)


class NotebookFailed(OgkitError):
    """A notebook cell raised, or the kernel died; the partial notebook was kept.

    ``cell_index`` is the 0-based index of the failing cell in the *source* notebook
    (None if no cell is to blame, e.g. the kernel did not start); ``run`` is the
    :class:`ogkit.jobs.runner.NotebookRun` with ``ok=False``.
    """

    def __init__(
        self,
        message: str,
        *,
        notebook_path: Any,
        html_path: Any,
        cell_index: int | None,
        ename: str = "",
        evalue: str = "",
        run: Any = None,
    ) -> None:
        self.notebook_path = notebook_path
        self.html_path = html_path
        self.cell_index = cell_index
        self.ename = ename
        self.evalue = evalue
        self.run = run
        super().__init__(message)


class ChainError(OgkitError):
    """The chain cannot be reached or is not set up."""


class SettlementError(ChainError):
    """A settlement transaction reverted or a settlement step failed."""

    def __init__(self, message: str, *, reason: str | None = None, tx_hash: str | None = None):
        self.reason = reason
        self.tx_hash = tx_hash
        super().__init__(message)


class AuditError(OgkitError):
    """An audit could not be carried out at all (findings go in the report instead)."""


class AuditFailed(OgkitError):
    """An audit ran to the end and did not pass: failing findings, or fewer batches than
    expected. ``ogkit pipeline run`` exits 3 for it (1 is a notebook that crashed)."""


class OrderError(ConfigError):
    """A requester's job order is malformed, unsigned where a signature is needed, or does
    not authorise the job at hand. ``field`` names the (first) field at fault, if any;
    ``problems`` lists every problem found. A signature that is not the requester's is a
    :class:`SignatureError` instead."""

    def __init__(
        self, message: str, *, field: str | None = None, problems: list[str] | None = None
    ) -> None:
        self.field = field
        self.problems = list(problems) if problems else [message]
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), str(self), {"field": self.field, "problems": self.problems}))


class PaymentError(OgkitError):
    """An x402 payment was refused: ``reason`` is a stable code (``replayed``,
    ``underpaid``, ``wrong-payee``, ``expired``, ``malformed``, ...), the message says
    what to do."""

    def __init__(self, message: str, *, reason: str = "invalid") -> None:
        super().__init__(message)
        self.reason = reason


class NodeError(OgkitError):
    """An inference node refused or failed a request: ``status`` is the HTTP status and
    ``detail`` the node's JSON answer (its ``error`` and ``reason``)."""

    def __init__(self, message: str, *, status: int | None = None, detail: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.detail = detail


class NodeUnavailable(NodeError):
    """The node or facilitator could not be reached, or did not answer in time."""


class ZkError(OgkitError):
    """A ZK step (export, keys, proving, verifier generation) failed."""


class ZkUnsupportedError(ZkError, ValueError):
    """A model (its ops, its circuit size) or a ZK setting is out of reach; ``problems``
    lists every reason at once."""

    def __init__(self, message: str, *, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = list(problems or [])
