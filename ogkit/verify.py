"""The verify step: recompute a stored batch from its records and give a verdict.

The node that made the batch is the adversary (docs/spec.md §10): it holds an approved
attester key and may write any records, manifest, claim or receipts. So nothing it
states is taken on trust:

- the manifest is parsed strictly (:class:`~ogkit.batch.BatchManifest`); a document of
  the wrong shape is a finding, never an exception;
- the claim's EIP-712 signature must be canonical (what OpenZeppelin's ECDSA accepts)
  and recover its attester; the pair (attester, runtime id) must be approved by the
  verifier's allowlist; every field stated twice (claim and manifest) must agree; every derived
  value (runtime id, batch id with its execution hash) is recomputed;
- partitions must tile ``[0, row_count)`` exactly, in order, and each records file must
  hold exactly its rows; every input hash, output hash, leaf, partition root, the batch
  root and the input root (the dataset commitment) are recomputed;
- inputs are bound to the requester's data: given the requester's ``dataset`` the
  verifier reads every row from it itself, given its ``commitment`` it compares the
  input root;
- each row is re-executed with probability ``sample_rate``, drawn with a key
  ``keccak256(batch root ‖ verifier secret)`` the node could not know when it signed;
  a sampled row is re-run inside its original mini-batch and compared bit for bit
  (or within the ULP bound the batch signed, if the verifier allows that much);
- hardware evidence (an Intel TDX/SGX quote, an AWS Nitro document) is verified again
  against its pinned root as of a time the node does not choose (the block time of the
  batch's on-chain commit, ``VerifyPolicy.trusted_time``, else the verifier's own
  clock; never the claim's timestamp, which the node writes), its report data must commit to
  the attester's key and the runtime id, its measurement must be approved as its kind
  and the policy (debug, TCB status, expired collateral) must hold (docs/tee.md).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
from tqdm import tqdm  # plain bars: tqdm.auto warns in every notebook without ipywidgets

from ogkit.attest import (
    BatchClaim,
    ClaimDomain,
    derive_batch_id,
    execution_hash,
)
from ogkit.batch import (
    AttestedBatch,
    InputData,
    PartitionMeta,
    PartitionRecords,
    TensorMeta,
    load_batch,
    read_inputs,
    read_partition_file,
    read_records,
    records_file,
    safe_records_path,
)
from ogkit.compute import completed, worker_runs
from ogkit.crypto.encoding import tensor_row_hashes
from ogkit.crypto.keccak import keccak256
from ogkit.crypto.merkle import (
    LEAF_TYPES,
    MerkleTree,
    idle_threads,
    input_leaf_hashes,
    leaf_hash,
    leaf_hashes,
    merkle_root,
    process_proof,
)
from ogkit.dataset import (
    CommittedFile,
    DatasetCommitment,
    DataSource,
    InputPlan,
    open_stored_dataset,
    plan_from_bindings,
    same_plan,
    sorted_leaf_run,
    stored_sha256,
)
from ogkit.errors import (
    ArtifactError,
    ConfigError,
    HubError,
    InputsUnavailableError,
    OgkitError,
    ReceiptError,
    VerificationFailed,
)
from ogkit.hub.hub import MODELS, Hub
from ogkit.hub.manifest import canonical_json
from ogkit.llm.reasons import CHAT_REASONS
from ogkit.load import ModelPayload, SessionConfig, reexecute, worker_model
from ogkit.store import ContentStore
from ogkit.tee.claims import HARDWARE_KINDS
from ogkit.tee.evidence import TEE_REASONS
from ogkit.tee.policy import EvidencePolicy
from ogkit.zk.verify import ZK_REASONS

if TYPE_CHECKING:
    from distributed import Client as DaskClient

__all__ = [
    "REASONS",
    "Allowlist",
    "Finding",
    "ReceiptCheck",
    "Verdict",
    "VerifyPolicy",
    "detection_probability",
    "reexecute_row",
    "sample_mask",
    "verify_batch",
    "verify_receipt",
]

log = logging.getLogger(__name__)

# Reasons a finding can give; stable strings, used in reports and JSON.
REASONS = {
    "manifest-malformed": "the batch manifest cannot be read or has fields of the wrong shape",
    "empty-batch": "the batch claims no rows",
    "signature": "the claim's signature is malformed, non-canonical or not its attester's",
    "unapproved-attester": "the attester is not on the allowlist",
    "unapproved-measurement": "the attester's measurement (runtime id) is not approved",
    "evidence-mismatch": "the attester's evidence names another measurement than the claim",
    "claim-mismatch": "the signed claim disagrees with the batch manifest",
    "claim-timestamp": "the claim is dated in the future, or after the commit that settled it",
    "domain-mismatch": "the claim is for another chain or settlement contract",
    "runtime-id": "the runtime fingerprint does not hash to the runtime id",
    "batch-id": "the batch id is not the one derived from this job (replayed claim?)",
    "partition-tiling": "partitions do not tile the rows 0..row_count-1 exactly, in order",
    "records-path": "a records file lies outside the batch's folder",
    "artifact-altered": "a records file differs from the hash pinned in the manifest",
    "records-unreadable": "a records file is missing, cannot be parsed or has the wrong layout",
    "partition-rows": "a records file holds another number of rows than its partition",
    "input-hash-mismatch": "a stored input hash is not the hash of the row's inputs",
    "inputs-unavailable": "the batch's stored dataset is missing, unreadable or lacks its rows",
    "output-hash-mismatch": "a stored output hash is not the hash of the stored outputs",
    "partition-root-mismatch": "a partition root is not the root of its leaves",
    "batch-root-mismatch": "the recomputed batch root differs from the signed root",
    "input-root-mismatch": "the inputs' root differs from the batch's dataset commitment",
    "dataset-mismatch": "the batch ran other data than the requester's dataset or commitment",
    "inputs-unbound": "no requester dataset or commitment given: the inputs are the node's word",
    "spec-mismatch": "the manifest's inputs or outputs differ from the model's signature",
    "tolerance-too-loose": "the batch's stated float tolerance exceeds the verifier's",
    "model-unavailable": "the model could not be fetched for re-execution",
    "reexecution-mismatch": "re-running the model gives different outputs",
    "reexecution-failed": "the model could not be re-run on the row's inputs",
    "job-order": "the batch is not the job the requester ordered (requester or job name)",
    "model-mismatch": "the manifest's model reference names another model than its id",
    "sample-not-reexecuted": "a row drawn for re-execution was not re-executed",
    **TEE_REASONS,
    **CHAT_REASONS,
    **ZK_REASONS,
}

MAX_CLOCK_SKEW_S = 300


ALLOWLIST_SCHEMA = "ogkit.allowlist.v2"


def _address(value: Any) -> str:
    text = str(value).lower()
    if len(text) != 42 or not text.startswith("0x") or any(c not in _HEX for c in text[2:]):
        raise ConfigError(f"attester {value!r:.80} is not an address (0x + 40 hex digits)")
    if text == "0x" + "00" * 20:  # no key has it; it is what a failed ecrecover returns
        raise ConfigError("the zero address cannot be approved as an attester: no key signs as it")
    return text


def _measurement(value: Any) -> str:
    text = str(value).lower()
    if len(text) != 66 or not text.startswith("0x") or any(c not in _HEX for c in text[2:]):
        raise ConfigError(f"measurement {value!r:.80} is not 0x + 64 hex digits")
    return text


_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True)
class Allowlist:
    """Approved (attester, measurement) pairs: each attester with the measurements it may
    attest, as the NodeRegistry binds a node's attester to one measurement
    (``AttesterBinding``). A claim is approved only when its own pair is: an approved key
    stating a measurement approved for another attester is refused.

    ``kinds`` records the kind a measurement was approved as, where known (the
    NodeRegistry's ``measurementKind``: 1 software, 2 TDX, 3 SGX, 4 Nitro); a hardware
    measurement approved as another kind is refused. A kind approves nothing by itself."""

    pairs: frozenset[tuple[str, str]] = frozenset()
    kinds: Mapping[str, int] = field(default_factory=dict, hash=False, compare=True)

    def __post_init__(self) -> None:
        pairs = frozenset((_address(a), _measurement(m)) for a, m in self.pairs)
        kinds: dict[str, int] = {}
        for m, k in dict(self.kinds).items():
            key = _measurement(m)
            if key in kinds and kinds[key] != int(k):
                raise ConfigError(f"measurement {key} is given two kinds ({kinds[key]} and {k})")
            kinds[key] = int(k)
        paired = {m for _, m in pairs}
        if unpaired := sorted(set(kinds) - paired):
            raise ConfigError(
                f"a kind is given for measurement {unpaired[0]}, which no attester is approved "
                "with; approve the pair too (`ogkit allowlist add --attester ADDRESS "
                f"--measurement {unpaired[0]} --kind …`)"
            )
        object.__setattr__(self, "pairs", pairs)
        object.__setattr__(self, "kinds", kinds)

    @classmethod
    def load(cls, path: Path) -> Allowlist:
        """Read ``path`` (``<home>/allowlist.json`` for the CLI); empty if it is absent. A
        file of the flat ``ogkit.allowlist.v1`` format (attesters and measurements approved
        apart, so any approved attester with any approved measurement) is refused."""
        if not path.exists():
            return cls()
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"allowlist {path} cannot be read: {exc}; fix it or remove it and run "
                "`ogkit allowlist add --attester ADDRESS --measurement RUNTIME_ID`"
            ) from None
        if isinstance(doc, dict) and ("attesters" in doc or "measurements" in doc):
            attesters = ", ".join(map(str, doc.get("attesters") or [])) or "none"
            measurements = ", ".join(map(str, doc.get("measurements") or [])) or "none"
            raise ConfigError(
                f"allowlist {path} is in the flat ogkit.allowlist.v1 format, which approves "
                "any of its attesters with any of its measurements; this ogkit approves "
                "(attester, measurement) pairs. Remove the file and approve each attester "
                "with the measurements it runs: `ogkit allowlist add --attester ADDRESS "
                f"--measurement RUNTIME_ID` (the file held attesters {attesters:.400}; "
                f"measurements {measurements:.400})"
            )
        try:
            if not isinstance(doc, dict) or doc.get("schema") != ALLOWLIST_SCHEMA:
                raise ValueError(f"its schema is not {ALLOWLIST_SCHEMA}")
            pairs = [(p["attester"], p["measurement"]) for p in doc.get("approvals", [])]
            return cls(frozenset(pairs), dict(doc.get("kinds", {})))
        except (ConfigError, AttributeError, KeyError, TypeError, ValueError) as exc:
            raise ConfigError(
                f"allowlist {path} is not valid: {exc}; fix it or remove it and run "
                "`ogkit allowlist add --attester ADDRESS --measurement RUNTIME_ID`"
            ) from None

    def with_pairs(
        self, pairs: Iterable[tuple[str, str]], kinds: Mapping[str, int] | None = None
    ) -> Allowlist:
        """A copy that also approves each ``(attester, measurement)`` of ``pairs``;
        ``kinds`` records the kind of some of those measurements."""
        return Allowlist(self.pairs | frozenset(pairs), {**self.kinds, **(kinds or {})})

    def approve(
        self, attester: str, measurements: Iterable[str], kinds: Mapping[str, int] | None = None
    ) -> Allowlist:
        """A copy that also approves ``attester`` with each of ``measurements``."""
        return self.with_pairs(((attester, m) for m in measurements), kinds)

    def approves(self, attester: str, measurement: str) -> bool:
        """Whether ``attester`` is approved with ``measurement``."""
        return (str(attester).lower(), str(measurement).lower()) in self.pairs

    def measurements_of(self, attester: str) -> frozenset[str]:
        """The measurements ``attester`` is approved with (empty: an unknown attester)."""
        a = str(attester).lower()
        return frozenset(m for b, m in self.pairs if b == a)

    def attesters_of(self, measurement: str) -> frozenset[str]:
        """The attesters approved with ``measurement``."""
        m = str(measurement).lower()
        return frozenset(a for a, n in self.pairs if n == m)

    def to_dict(self) -> dict[str, Any]:
        """The ``ogkit.allowlist.v2`` document ``save`` writes."""
        doc: dict[str, Any] = {
            "schema": ALLOWLIST_SCHEMA,
            "approvals": [{"attester": a, "measurement": m} for a, m in sorted(self.pairs)],
        }
        if self.kinds:
            doc["kinds"] = dict(sorted(self.kinds.items()))
        return doc

    def save(self, path: Path) -> Path:
        """Write it to ``path`` atomically."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2))
        tmp.replace(path)
        return path


@dataclass(frozen=True)
class VerifyPolicy:
    """How a verifier checks. ``allowlist`` is the verifier's own: nothing is approved
    unless it says so. ``max_ulp`` is the float tolerance it accepts (0: bit-exact); a
    batch that signed a looser one fails."""

    sample_rate: float = 0.01  # each row is re-executed with this probability
    max_ulp: int = 0
    allowlist: Allowlist = field(default_factory=Allowlist)
    verifier_secret: bytes | None = None  # None: fresh random bytes per verification
    session_config: SessionConfig = field(default_factory=SessionConfig)
    expected_domain: ClaimDomain | None = None  # the chain + contract this verifier serves
    # Without the requester's dataset or commitment the inputs are only the node's own
    # word: by default that fails. An auditor replaying the chain, which holds no order
    # yet, turns it into a notice.
    require_bound_inputs: bool = True
    # Hardware evidence: the debug, TCB and collateral policy and the pinned roots.
    evidence: EvidencePolicy = field(default_factory=EvidencePolicy)
    # True: a batch without verified hardware evidence (the software enclave) fails.
    require_hardware: bool = False
    # Unix time hardware evidence is verified at, one the node does not choose: the block
    # time of the batch's on-chain commit (its record's committedAt), for a verifier that
    # read the batch from the chain. None: the verifier's own clock. Never the claim's
    # timestamp: the node writes it, and would backdate it into stale collateral's window.
    trusted_time: int | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.sample_rate <= 1.0:
            raise ConfigError(f"sample_rate must be within [0, 1], got {self.sample_rate}")
        if self.max_ulp < 0:
            raise ConfigError("max_ulp must be >= 0")
        if self.allowlist is None:
            raise ConfigError("allowlist must be an Allowlist (give the verifier's own)")
        if self.trusted_time is not None and (
            isinstance(self.trusted_time, bool)
            or not isinstance(self.trusted_time, int)
            or self.trusted_time < 0
        ):
            raise ConfigError("trusted_time must be unix seconds (the commit block's time) or None")


@dataclass(frozen=True)
class Finding:
    reason: str
    detail: str
    row_index: int | None = None
    partition: int | None = None


@dataclass
class Verdict:
    passed: bool
    batch_id: str
    artifact_id: str
    row_count: int
    rows_checked: int
    findings: list[Finding]
    sample_rate: float
    sample_size: int  # rows actually re-executed
    sampled_rows: list[int]  # the rows actually re-executed
    seed_commitment: str  # keccak256(seed): lets the verifier later prove the draw was honest
    max_abs_error: float
    detection: dict[str, float]  # "k=10" -> probability the sample catches >= 1 of k bad rows
    inputs_bound: bool  # inputs checked against the requester's dataset or commitment
    notices: list[str]
    seconds: float
    # The verified TEE claims when the batch carries hardware evidence (ogkit.tee), with
    # "hardware_backed" true only when the evidence, binding, approval and policy held.
    hardware: dict[str, Any] | None = None

    def failing_rows(self) -> list[int]:
        return sorted({f.row_index for f in self.findings if f.row_index is not None})

    def reasons(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for f in self.findings:
            counts[f.reason] = counts.get(f.reason, 0) + 1
        return counts

    def to_frame(self) -> pl.DataFrame:
        return pl.DataFrame(
            [asdict(f) for f in self.findings],
            schema={
                "reason": pl.String,
                "detail": pl.String,
                "row_index": pl.Int64,
                "partition": pl.Int64,
            },
        )

    def to_dict(self, max_findings: int = 1000) -> dict[str, Any]:
        d = asdict(self)
        d["findings"] = d["findings"][:max_findings]
        d["findings_total"] = len(self.findings)
        d["reasons"] = self.reasons()
        d["sampled_rows"] = self.sampled_rows[:max_findings]
        return d

    def summary(self) -> str:
        head = "PASS" if self.passed else "FAIL"
        text = (
            f"{head} batch {self.batch_id}: {self.rows_checked:,}/{self.row_count:,} rows checked, "
            f"{self.sample_size:,} re-executed"
        )
        if self.findings:
            text += "; " + ", ".join(f"{k}×{v}" for k, v in sorted(self.reasons().items()))
        if not self.inputs_bound:
            text += " (inputs not bound to the requester's data)"
        if self.hardware is not None and self.hardware.get("claims"):
            tee = self.hardware["claims"]["tee"]
            backed = "hardware-backed" if self.hardware["hardware_backed"] else "refused"
            text += f" [{tee} evidence: {backed}]"
        return text

    def raise_if_failed(self) -> None:
        if not self.passed:
            raise VerificationFailed(self.summary(), verdict=self)


def detection_probability(sample_rate: float, corrupted: int) -> float:
    """P(the sample re-executes >= 1 of ``corrupted`` rows) = 1 - (1 - q)^k: each row is
    drawn independently with probability ``q``."""
    if corrupted <= 0 or sample_rate <= 0:
        return 0.0
    return 1.0 - (1.0 - sample_rate) ** corrupted


# -- the sample -------------------------------------------------------------------------------
_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, vectorised (uint64 wrap-around is intended)."""
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def sample_mask(key: bytes, rows: np.ndarray, rate: float) -> np.ndarray:
    """Which of ``rows`` are re-executed: row ``r`` is drawn iff ``u(key, r) < rate``, with
    ``u`` uniform on [0, 1) keyed by 256 secret bits (spec §9). Each row is drawn
    independently of the others and of how the node partitioned the batch."""
    if rate <= 0:
        return np.zeros(len(rows), dtype=bool)
    if rate >= 1:
        return np.ones(len(rows), dtype=bool)
    k = np.frombuffer(key[:32], dtype=">u8").astype(np.uint64)
    x = np.asarray(rows, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for word in k:
            x = _mix64(x ^ word) + word
        x = _mix64(x)
    return (x >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53)) < rate


# -- one partition ---------------------------------------------------------------------------
@dataclass(frozen=True)
class _PartitionCheck:
    """Everything one partition check needs; picklable for Dask."""

    batch_id: str
    model_id: str
    runtime_id: str
    meta: PartitionMeta
    tensor_specs: dict[str, dict[str, tuple[str, tuple[int, ...]]]]
    sample_key: bytes
    sample_rate: float
    batch_size: int
    float_ulp: int
    dataset: DataSource | None = None  # the requester's rows, read by the verifier itself
    dataset_offset: int = 0
    plan: InputPlan | None = None
    # where the batch's own inputs are: the stored dataset, the manifest's input plan
    input_data: InputData | None = None
    bindings: tuple[TensorMeta, ...] = ()
    row_count: int = 0
    # The stored dataset is the file the requester's commitment was read from, byte for
    # byte, and the manifest's plan is the requester's (checked by the caller)
    stored_is_requesters: bool = False


@dataclass
class _Outcome:
    findings: list[Finding]
    rows: int = 0  # rows whose records were checked
    # the input-root leaves of the verifier's own input hashes (dropped once the input
    # root is built, on the worker that builds it)
    input_leaves: np.ndarray | None = None
    sampled: list[int] = field(default_factory=list)
    reexecuted: list[int] = field(default_factory=list)
    max_err: float = 0.0
    # its input hashes did not digest to the requester's: the caller checks the
    # partition again with the requester's hashes themselves
    unmatched: bool = False


def _hex(b: Any) -> str:
    return "0x" + bytes(b).hex()


def _named_rows(findings: list[Finding], reason: str, detail: str, rows: np.ndarray, part: int):
    for r in rows[:1000]:
        findings.append(Finding(reason, detail, int(r), part))


def _stored_inputs(
    check: _PartitionCheck, store: ContentStore | None
) -> tuple[dict[str, np.ndarray] | None, str]:
    """The partition's inputs from the batch's stored dataset, or why they cannot be read."""
    meta = check.meta
    if check.input_data is None or store is None:
        return None, "no store holds the batch's dataset"
    try:
        source = open_stored_dataset(store, check.input_data.object, check.input_data.format)
        inputs = read_inputs(
            source, check.input_data, check.bindings, check.row_count, meta.offset, meta.rows
        )
    except ArtifactError as exc:
        return None, str(exc)
    except Exception as exc:  # never a traceback for what a node stored
        return None, f"{type(exc).__name__}: {exc}"[:500]
    return inputs, ""


def _stored_or_finding(
    check: _PartitionCheck,
    out: _Outcome,
    inputs: dict[str, np.ndarray] | None,
    store: ContentStore | None,
) -> dict[str, np.ndarray] | None:
    """The partition's stored rows (``inputs`` when the caller read them), or None with
    an ``inputs-unavailable`` finding."""
    stored, why = (inputs, "") if inputs is not None else _stored_inputs(check, store)
    if stored is None:
        detail = f"the batch's inputs cannot be read: {why}"
        out.findings.append(Finding("inputs-unavailable", detail, None, check.meta.index))
    return stored


def _not_committed(
    out: _Outcome,
    in_h: np.ndarray,
    requester_hashes: np.ndarray,
    source_note: str,
    expected: np.ndarray,
    index: int,
) -> None:
    """A ``dataset-mismatch`` finding for every row whose input hash is not the
    requester's committed hash of that row."""
    if requester_hashes.shape == in_h.shape:
        not_committed = _hashes_differ(in_h, requester_hashes)
    else:  # cannot happen for a tiled batch of the committed row count; never a pass
        not_committed = np.ones(len(in_h), dtype=bool)
    _named_rows(
        out.findings,
        "dataset-mismatch",
        f"the row's inputs (from {source_note}) do not hash to the requester's committed row",
        expected[np.flatnonzero(not_committed)],
        index,
    )


def _hashes_differ(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per row of two ``(n, 32)`` uint8 hash arrays: do they differ? (Compared as four
    64-bit words a row, the four results read as one 32-bit word: ~9x faster than a
    byte-wise ``any`` over a million rows.)"""
    ne = np.ascontiguousarray(a).view(np.uint64) != np.ascontiguousarray(b).view(np.uint64)
    return ne.view(np.uint32).reshape(-1) != 0


def _rows_differ(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray], n: int) -> np.ndarray:
    """Per row: do two sets of input tensors differ in any bit (or in names, dtypes,
    shapes, which makes every row differ)?"""
    bad = np.zeros(n, dtype=bool)
    if set(a) != set(b):
        bad[:] = True
        return bad
    for name, x in a.items():
        y = b[name]
        if x.dtype != y.dtype or x.shape != y.shape or len(x) != n:
            bad[:] = True
            return bad
        xb = np.ascontiguousarray(x).view(np.uint8).reshape(n, -1)
        yb = np.ascontiguousarray(y).view(np.uint8).reshape(n, -1)
        if np.array_equal(xb, yb):  # bit for bit (the usual case): no per-row pass
            continue
        bad |= (xb != yb).any(axis=1)
    return bad


def _output_hashes(out: _Outcome, rec: Any, index: int) -> np.ndarray | None:
    """The stored outputs' hashes, or None with a finding if they cannot be hashed."""
    try:
        return tensor_row_hashes(rec.outputs)
    except (ConfigError, ValueError, TypeError) as exc:
        out.findings.append(Finding("records-unreadable", f"cannot hash rows: {exc}", None, index))
        return None


def _committed_hashes(
    out: _Outcome,
    stored_hashes: np.ndarray,
    requester_hashes: np.ndarray | bytes,
    expected: np.ndarray,
    index: int,
) -> np.ndarray | None:
    """The partition's input hashes when the stored dataset is the requester's committed
    file: the requester's own. Given as their sha256, the records' input hashes must
    digest to it (then they are the requester's), else None: the caller checks again
    with the hashes themselves. Given as hashes, each row whose stored input hash is not
    the requester's is an ``input-hash-mismatch``."""
    if isinstance(requester_hashes, bytes):
        digest = hashlib.sha256(np.ascontiguousarray(stored_hashes)).digest()
        return stored_hashes if digest == requester_hashes else None
    if requester_hashes.shape == stored_hashes.shape:
        bad = _hashes_differ(stored_hashes, requester_hashes)
    else:  # cannot happen for a tiled batch of the committed row count; never a pass
        bad = np.ones(len(stored_hashes), dtype=bool)
        requester_hashes = np.zeros_like(stored_hashes)
    _named_rows(
        out.findings,
        "input-hash-mismatch",
        "stored input hash is not the requester's committed hash of the row",
        expected[np.flatnonzero(bad)],
        index,
    )
    return requester_hashes


def _stored_committed(
    out: _Outcome,
    stored: Mapping[str, np.ndarray],
    in_h: np.ndarray,
    expected: np.ndarray,
    index: int,
) -> None:
    """The stored rows read to re-run the sample must still hash to the requester's
    committed hashes, every one of them (the stored file was checked before, but whoever
    holds the store may have changed it since, and a drawn row is re-run inside its
    original mini-batch, beside rows not drawn): each that does not is a
    ``dataset-mismatch``."""
    try:
        bad = _hashes_differ(tensor_row_hashes(stored), in_h)
    except (ConfigError, ValueError, TypeError):
        bad = np.ones(len(expected), dtype=bool)
    _named_rows(
        out.findings,
        "dataset-mismatch",
        "the stored dataset's row does not hash to the requester's committed row",
        expected[np.flatnonzero(bad)],
        index,
    )


def _hashed_inputs(
    check: _PartitionCheck,
    out: _Outcome,
    rec: Any,
    inputs: dict[str, np.ndarray] | None,
    store: ContentStore | None,
    requester_hashes: np.ndarray | bytes | None,
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray] | _Outcome:
    """The rows the partition is checked against, their input hashes and the stored
    outputs' hashes: the stored dataset's rows, and the requester's own rows when the
    verifier has them (then those decide, and the stored rows must equal them). Every
    row whose inputs are not what the records and the requester say is named. An outcome
    instead when the check stops there (unmatched, or with a finding)."""
    index, expected = check.meta.index, rec.row_index
    n = len(expected)
    requester = check.dataset is not None and check.plan is not None
    stored = _stored_or_finding(check, out, inputs, store)
    if stored is None:
        return out
    out.rows = n
    used = stored
    source_note = "the stored dataset"
    if requester:
        try:
            used = check.plan.feeds(check.dataset, check.dataset_offset, n)
            source_note = "the requester's row"
        except Exception as exc:  # a dataset that cannot give these rows
            out.findings.append(
                Finding(
                    "dataset-mismatch", f"cannot read rows from the dataset: {exc}", None, index
                )
            )
            return out
    try:
        in_h = tensor_row_hashes(used)
    except (ConfigError, ValueError, TypeError) as exc:
        out.findings.append(Finding("records-unreadable", f"cannot hash rows: {exc}", None, index))
        return out
    out_h = _output_hashes(out, rec, index)
    if out_h is None:
        return out
    bad_in = _hashes_differ(in_h, rec.input_hashes)
    if requester_hashes is None:
        out.input_leaves = sorted_leaf_run(input_leaf_hashes(expected, in_h))  # one sorted run
    elif isinstance(requester_hashes, bytes):
        if hashlib.sha256(np.ascontiguousarray(in_h)).digest() != requester_hashes:
            return _Outcome([], unmatched=True)
    else:
        _not_committed(out, in_h, requester_hashes, source_note, expected, index)
    if used is not stored:
        # The stored rows must be the requester's too: challengers, disputes, audits and
        # reports re-run from them.
        bad_in |= _rows_differ(used, stored, n)
    _named_rows(
        out.findings,
        "input-hash-mismatch",
        f"stored input hash or the stored dataset's row is not {source_note}'s",
        expected[np.flatnonzero(bad_in)],
        index,
    )
    return used, in_h, out_h


def check_partition(
    check: _PartitionCheck,
    data: bytes | None,
    payload: ModelPayload | None,
    store: ContentStore | None = None,
    inputs: dict[str, np.ndarray] | None = None,
    requester_hashes: np.ndarray | bytes | None = None,
) -> _Outcome:
    """Recompute one partition and re-execute its sampled rows. Never raises on what the
    records hold: every problem is a finding. With ``store`` (and no ``data``) the
    records, and the rows' inputs from the batch's stored dataset, are read from it here,
    on the worker; ``inputs`` gives those rows when the caller read them.
    ``requester_hashes`` are these rows' input hashes from the requester's own commitment
    (:attr:`~ogkit.dataset.DatasetCommitment.row_hashes`): each row's hash must equal
    its own, and the partition gives no input-root leaves (the requester's hashes make
    its committed root). Given as the sha256 of those hashes instead (32 bytes sent to a
    worker, not 32 a row), a partition whose hashes do not digest to it comes back marked
    ``unmatched`` and nothing else: the caller checks it again with the hashes themselves
    (:func:`_run_checks`), so its findings are those of a check given them."""
    meta = check.meta
    index = meta.index
    out = _Outcome([])
    if data is None and store is not None:
        try:
            data = read_partition_file(store, check.batch_id, meta, check=False)
        except (ArtifactError, OSError, ValueError):
            data = None
    if data is None:
        out.findings.append(Finding("records-unreadable", f"{meta.path} is missing", None, index))
        return out
    if hashlib.sha256(data).hexdigest() != meta.sha256:
        # Go on: the rows that changed are worth naming too.
        out.findings.append(
            Finding("artifact-altered", f"{meta.path} changed after attestation", None, index)
        )
    try:
        file = records_file(data)  # the footer: its row count, nothing decoded
    except ArtifactError as exc:
        out.findings.append(Finding("records-unreadable", str(exc), None, index))
        return out
    n = file.metadata.num_rows
    if n != meta.rows:
        out.findings.append(
            Finding(
                "partition-rows", f"records hold {n} rows, the manifest {meta.rows}", None, index
            )
        )
        return out
    try:
        rec = read_records(file, check.tensor_specs, offset=meta.offset, rows=meta.rows)
    except ArtifactError as exc:
        out.findings.append(Finding("records-unreadable", str(exc), None, index))
        return out
    expected = rec.row_index  # the partition's range: records hold its rows in order
    # The sample: drawn per row from the secret key, re-run in the node's own geometry.
    positions = np.flatnonzero(sample_mask(check.sample_key, expected, check.sample_rate))
    rerun = len(positions) > 0 and payload is not None
    if check.stored_is_requesters and check.dataset is None and requester_hashes is not None:
        # The stored dataset is the requester's committed file, byte for byte, read under
        # its plan (checked by the caller): each stored row hashes to the requester's
        # hash of it, so the rows are read only to re-run the sample.
        out_h = _output_hashes(out, rec, index)
        if out_h is None:
            return out
        in_h = _committed_hashes(out, rec.input_hashes, requester_hashes, expected, index)
        if in_h is None:
            return _Outcome([], unmatched=True)
        used = None
        if rerun:
            used = _stored_or_finding(check, out, inputs, store)
            if used is None:
                return out
            _stored_committed(out, used, in_h, expected, index)
        out.rows = n
    else:
        hashed = _hashed_inputs(check, out, rec, inputs, store, requester_hashes)
        if isinstance(hashed, _Outcome):  # unmatched, or a finding stops the check
            return hashed
        used, in_h, out_h = hashed
    _named_rows(
        out.findings,
        "output-hash-mismatch",
        "stored outputs do not hash to the stored output hash",
        expected[np.flatnonzero(_hashes_differ(out_h, rec.output_hashes))],
        index,
    )
    # The leaf holds no ids (spec 3.1): the claim checked against the manifest binds them
    leaves = leaf_hashes(expected, in_h, out_h)
    root = _hex(MerkleTree.from_leaf_hashes(leaves).root)
    if root != meta.root.lower():
        out.findings.append(
            Finding(
                "partition-root-mismatch",
                f"recomputed root {root} ≠ attested {meta.root}",
                partition=index,
            )
        )

    out.sampled = [int(meta.offset + p) for p in positions]
    if rerun:
        _reexecute(check, payload, used, rec, positions, out)
    return out


def _reexecute(
    check: _PartitionCheck,
    payload: ModelPayload,
    inputs: Mapping[str, np.ndarray],
    rec: PartitionRecords,
    positions: np.ndarray,
    out: _Outcome,
) -> None:
    index, offset = check.meta.index, check.meta.offset
    try:
        model = worker_model(payload)
        # Cheap first pass: the sampled rows as one batch. Rows that match need no more;
        # the others are re-run inside their original mini-batch, which is what decides.
        fresh = model.run({k: v[positions] for k, v in inputs.items()})
        differ = ~_matches(fresh, rec.outputs, positions, check.float_ulp)[0]
        if differ.any():
            again = positions[differ]
            exact = reexecute(model, dict(inputs), again, batch_size=check.batch_size)
            ok, err = _matches(exact, rec.outputs, again, check.float_ulp)
            out.max_err = max(out.max_err, err)
            for p in again[~ok]:
                out.findings.append(
                    Finding(
                        "reexecution-mismatch",
                        "re-running the model on the row's inputs, in its original mini-batch, "
                        "gives different outputs",
                        int(offset + p),
                        index,
                    )
                )
    except (OgkitError, ValueError, TypeError, KeyError) as exc:
        for p in positions[:1000]:
            out.findings.append(
                Finding("reexecution-failed", str(exc)[:300], int(offset + p), index)
            )
        return
    out.reexecuted = [int(offset + p) for p in positions]


def _ordered_bits(a: np.ndarray) -> np.ndarray:
    """Floats as integers whose order is the floats' order (for ULP distances)."""
    width = {2: np.int16, 4: np.int32, 8: np.int64}[a.dtype.itemsize]
    i = a.view(width).astype(np.int64)
    top = np.int64(np.iinfo(width).min)
    return np.where(i < 0, top - i, i)


def _matches(
    fresh: Mapping[str, np.ndarray],
    stored: Mapping[str, np.ndarray],
    positions: np.ndarray,
    float_ulp: int,
) -> tuple[np.ndarray, float]:
    """Per row: do all outputs match? Exact: the same bits (NaN payloads and -0.0 too);
    with a ULP bound: floats within it, NaN only where NaN. Integers always exact."""
    n = len(positions)
    ok = np.ones(n, dtype=bool)
    max_err = 0.0
    for name, want_all in stored.items():
        want = want_all[positions]
        got = fresh.get(name)
        if got is None or got.dtype != want.dtype or got.shape != want.shape:
            ok[:] = False
            continue
        if got.dtype.kind == "f":
            g64, w64 = got.astype(np.float64), want.astype(np.float64)
            with np.errstate(invalid="ignore"):
                err = np.abs(g64 - w64).reshape(n, -1)
            if err.size:
                finite = err[np.isfinite(err)]
                max_err = max(max_err, float(finite.max()) if finite.size else 0.0)
            if float_ulp == 0:
                same = got.view(f"u{got.dtype.itemsize}") == want.view(f"u{want.dtype.itemsize}")
            else:
                nan_g, nan_w = np.isnan(got), np.isnan(want)
                dist = np.abs(_ordered_bits(got) - _ordered_bits(want))
                same = (nan_g & nan_w) | (~nan_g & ~nan_w & (dist <= float_ulp))
        else:
            same = got == want
        ok &= same.reshape(n, -1).all(axis=1)
    return ok, max_err


# -- the batch -------------------------------------------------------------------------------
def check_order(
    m: Any,
    hub: Hub | None,
    findings: list[Finding],
    *,
    requester: str | None,
    job: str | None,
    model: str | None,
) -> None:
    """What the requester ordered against the manifest ``m`` (tabular or chat): requester,
    job and model (a hub reference resolved to its id), and the manifest's own model
    reference against its model id; ``job-order`` / ``model-mismatch`` findings."""
    ordered_model = model
    if model is not None and not model.startswith("0x") and hub is not None:
        try:
            ordered_model = hub.manifest(model).model_id
        except OgkitError as exc:
            findings.append(Finding("job-order", f"the model ordered, {model}, is unknown: {exc}"))
            ordered_model = None
    for what, wanted, got in (
        ("requester", requester, m.requester),
        ("job", job, m.job),
        ("model", ordered_model, m.model_id),
    ):
        if wanted is not None and wanted.lower() != got.lower():
            findings.append(Finding("job-order", f"the {what} ordered is {wanted}, not {got}"))
    if m.model_ref is not None and hub is not None:
        try:
            ref_id = hub.manifest(m.model_ref).model_id
        except OgkitError as exc:
            ref_id = f"unknown ({exc})"
        if ref_id != m.model_id:
            findings.append(
                Finding("model-mismatch", f"{m.model_ref} is {ref_id:.80}, not {m.model_id}")
            )


def verify_batch(
    artifact: str | Path | AttestedBatch,
    policy: VerifyPolicy | None = None,
    *,
    store: ContentStore | str | None = None,
    hub: Hub | None = None,
    dask: DaskClient | None = None,
    dataset: Any = None,
    input_map: Mapping[str, str | list[str]] | None = None,
    commitment: DatasetCommitment | None = None,
    requester: str | None = None,
    job: str | None = None,
    model: str | None = None,
    progress: bool = True,
    methods: Sequence[str] = ("reexecute",),
    zk_chunk: int = 1,
) -> Verdict:
    """Verify a stored batch; the verdict names every failing row and why.

    ``artifact`` is an artefact id, a manifest path or an :class:`AttestedBatch`; ids and
    paths are read from ``store`` (default: the hub's). The model for re-execution comes
    from the batch's store or the hub, checked against its id. ``dataset`` (anything
    :func:`ogkit.dataset.open_source` reads) or ``commitment`` is the requester's: with
    either, the verdict binds the inputs to the requester's data (``inputs_bound``).
    The dataset's columns are bound to the model's inputs by the verifier's own
    ``input_map`` (default: the feature names signed in the manifest ``model`` names, or
    that every signed manifest of the model id agrees on; else by name as ``ogkit infer``
    does), never by the batch manifest's.
    ``requester``, ``job`` and ``model`` (an id, or a hub reference resolved with ``hub``)
    are what the requester ordered: a batch for anyone else, under another job name (the
    same rows billed twice) or of another model fails.
    With a Dask client (``dask``) partitions are checked in parallel. Hostile input
    never raises: it gives findings.
    ``methods`` adds ``"zk"``: the batch's stored ZK proofs (N = ``zk_chunk``) are
    verified with the verifier's own profile and keys in the store, and bound to the
    receipts (docs/spec.md §13; ``zk-*`` findings; ``dataset`` as arrays gives the inputs
    when the records hold none).
    """
    started = time.perf_counter()
    policy = policy or VerifyPolicy()
    from ogkit.llm.batch import is_chat_artifact

    if is_chat_artifact(artifact, store, hub):  # chat calls re-decode (docs/spec.md §12)
        from ogkit.llm.verify import verify_chat_batch

        return verify_chat_batch(
            artifact, policy, store=store, hub=hub, requests=dataset, commitment=commitment,
            requester=requester, job=job, model=model, progress=progress,
        )  # fmt: skip
    if isinstance(artifact, AttestedBatch):
        batch = artifact
    else:
        if store is None and hub is None:
            raise ConfigError("verify_batch needs store= (a ContentStore or URL) or hub=")
        store = store if isinstance(store, ContentStore) else ContentStore(store or hub.store.url)
        try:
            batch = load_batch(artifact, store)
        except ArtifactError as exc:
            return _unreadable(str(artifact), str(exc), policy, started)
    findings: list[Finding] = []
    notices: list[str] = []
    m = batch.manifest
    claim = m.claim
    hardware = _check_claim(batch, policy, findings, notices)
    check_order(m, hub, findings, requester=requester, job=job, model=model)

    # -- the model: its signature must be what the manifest says ----------------------------
    payload = None
    model_inputs = None
    try:
        model_bytes = _model_bytes(batch, hub)
        payload = ModelPayload(batch.model_id, policy.session_config, model_bytes)
        model_inputs = _check_specs(batch, model_bytes, findings)
    except (HubError, ArtifactError) as exc:
        findings.append(Finding("model-unavailable", str(exc)))
    if m.float_ulp > policy.max_ulp:
        findings.append(
            Finding(
                "tolerance-too-loose",
                f"the batch allows {m.float_ulp} ULP; this verifier accepts {policy.max_ulp}",
            )
        )
    if policy.sample_rate == 0:
        payload = None

    # -- the requester's data --------------------------------------------------------------
    source, plan = None, None
    if dataset is not None and model_inputs is not None:
        if input_map is None and hub is not None:
            input_map = _published_features(hub, batch.model_id, model, m.model_ref, notices)
        source, plan = _open_dataset(dataset, input_map, batch, model_inputs, findings)
    if commitment is not None and (
        commitment.input_root.lower() != m.dataset_id.lower() or commitment.row_count != m.row_count
    ):
        findings.append(
            Finding(
                "dataset-mismatch",
                f"the requester committed to input root {commitment.input_root} over "
                f"{commitment.row_count:,} rows; the batch ran {m.dataset_id} over "
                f"{m.row_count:,}",
            )
        )

    # -- partitions ------------------------------------------------------------------------
    tiled = _check_tiling(batch, findings)
    secret = policy.verifier_secret if policy.verifier_secret is not None else os.urandom(32)
    key = keccak256(bytes.fromhex(claim.batch_root[2:]) + secret)
    specs = batch.tensor_specs()
    checks = [
        _PartitionCheck(
            batch.batch_id,
            batch.model_id,
            batch.runtime_id,
            part,
            specs,
            key,
            policy.sample_rate,
            m.batch_size,
            m.float_ulp,
            source.slice_for_task(part.offset, part.rows)
            if source is not None and source.paths == ()
            else source,
            part.offset if source is not None and source.paths != () else 0,
            plan,
            m.input_data,
            m.inputs,
            m.row_count,
        )
        for part in batch.partitions
    ]
    # The requester's own row hashes, when its commitment carries them and is this batch's:
    # each row is compared with its hash and the input root is not rebuilt.
    requester_hashes = None
    if (
        commitment is not None
        and commitment.row_hashes is not None
        and commitment.input_root.lower() == m.dataset_id.lower()
        and commitment.row_count == m.row_count
        and tiled
    ):
        requester_hashes = commitment.row_hashes
    # By the commitment's row hashes alone: given the requester's rows, they are read by
    # name while the partitions are checked, and the stored rows are compared with them.
    origin = commitment.origin if requester_hashes is not None and source is None else None
    digests = None
    # The stored file's sha256 runs on a thread beside the digests of the requester's
    # hashes (both free the GIL).
    with ThreadPoolExecutor(1, thread_name_prefix="ogkit-verify-dataset") as pool:
        same = pool.submit(_stored_is, batch, origin) if origin is not None else None
        if dask is not None and requester_hashes is not None:
            digests = [_digest(requester_hashes, c.meta) for c in checks]
        if same is not None and same.result():
            checks = [replace(c, stored_is_requesters=True) for c in checks]
    outcomes, inputs_root = _run_checks(
        batch, checks, payload, dask, progress, requester_hashes, digests
    )

    rows_checked = 0
    max_err = 0.0
    sampled: list[int] = []
    reexecuted: list[int] = []
    for outcome in outcomes:
        findings.extend(outcome.findings)
        rows_checked += outcome.rows
        max_err = max(max_err, outcome.max_err)
        sampled.extend(outcome.sampled)
        reexecuted.extend(outcome.reexecuted)
    complete = tiled and rows_checked == m.row_count and m.row_count > 0

    if complete and inputs_root is not None and inputs_root != m.dataset_id.lower():
        findings.append(
            Finding(
                "input-root-mismatch",
                f"the inputs give input root {inputs_root}; the batch commits to {m.dataset_id}",
            )
        )
    if complete and payload is not None:
        # Every row the key draws must have been re-executed (none silently dropped).
        missed = set(sampled) - set(reexecuted)
        for r in sorted(missed)[:1000]:
            findings.append(Finding("sample-not-reexecuted", "drawn but not re-executed", r))
    if batch.partitions:
        roots = np.frombuffer(
            b"".join(bytes.fromhex(p.root[2:]) for p in batch.partitions), np.uint8
        ).reshape(-1, 32)
        tree_root = _hex(MerkleTree.from_leaf_hashes(roots).root)
        if tree_root != claim.batch_root.lower():
            findings.append(
                Finding(
                    "batch-root-mismatch",
                    f"partition roots give {tree_root}, the claim signs {claim.batch_root}",
                )
            )

    inputs_bound = (source is not None or commitment is not None) and not any(
        f.reason
        in ("dataset-mismatch", "input-hash-mismatch", "input-root-mismatch", "inputs-unavailable")
        for f in findings
    )
    if source is None and commitment is None:
        unbound = (
            "inputs were checked against the batch's own dataset commitment only; give the "
            "requester's dataset (--dataset) or commitment (--commitment) to bind them"
        )
        if policy.require_bound_inputs and dataset is None:
            findings.append(Finding("inputs-unbound", unbound))
        else:
            notices.append(unbound)
    if "zk" in methods:  # ZK proofs of rows and their binding (docs/spec.md §13)
        _zk_checks(batch, dataset, zk_chunk, findings, notices)
    q = policy.sample_rate if payload is not None else 0.0
    verdict = Verdict(
        passed=not findings,
        batch_id=batch.batch_id,
        artifact_id=batch.artifact_id,
        row_count=m.row_count,
        rows_checked=rows_checked,
        findings=findings,
        sample_rate=q,
        sample_size=len(reexecuted),
        sampled_rows=sorted(reexecuted),
        seed_commitment=_hex(keccak256(key)),
        max_abs_error=max_err,
        detection={f"k={k}": detection_probability(q, k) for k in (1, 10, 100, 1000)},
        inputs_bound=inputs_bound,
        notices=notices,
        seconds=time.perf_counter() - started,
        hardware=hardware,
    )
    log.info("%s", verdict.summary())
    return verdict


def unreadable_verdict(artifact: str, detail: str, started: float) -> Verdict:
    """The failing verdict of an artefact that cannot be read (``manifest-malformed``)."""
    return _unreadable(artifact, detail, VerifyPolicy(), started)


def check_claim(
    batch: Any, policy: VerifyPolicy, findings: list[Finding], notices: list[str]
) -> dict[str, Any] | None:
    """The claim checks every batch kind shares (signature, allowlist, evidence, fields
    stated twice, runtime id, batch id); ``batch.manifest`` needs the manifest fields
    they read. Appends findings; returns the hardware evidence's check, if any."""
    return _check_claim(batch, policy, findings, notices)


def _unreadable(artifact: str, detail: str, policy: VerifyPolicy, started: float) -> Verdict:
    return Verdict(
        passed=False,
        batch_id="",
        artifact_id=artifact,
        row_count=0,
        rows_checked=0,
        findings=[Finding("manifest-malformed", detail)],
        sample_rate=0.0,
        sample_size=0,
        sampled_rows=[],
        seed_commitment="",
        max_abs_error=0.0,
        detection={},
        inputs_bound=False,
        notices=[],
        seconds=time.perf_counter() - started,
    )


def _check_claim(
    batch: AttestedBatch, policy: VerifyPolicy, findings: list[Finding], notices: list[str]
) -> dict[str, Any] | None:
    """The claim against its signature, the allowlist, the attester's evidence and the
    manifest's own fields. Returns the hardware evidence's check, if it has any."""
    m = batch.manifest
    claim = m.claim
    allow = policy.allowlist
    if m.row_count == 0 or claim.row_count == 0:
        findings.append(Finding("empty-batch", "a batch of 0 rows settles nothing"))
    try:
        signer = claim.recover_signer(m.domain, m.signature)
        if signer.lower() != claim.attester.lower():
            findings.append(
                Finding("signature", f"claim signed by {signer}, not its attester {claim.attester}")
            )
    except (ValueError, OgkitError) as exc:
        findings.append(Finding("signature", f"signature rejected: {exc}"))
    _check_approval(claim.attester, claim.runtime_id, allow, findings)
    hardware = _check_evidence(batch, policy, findings, notices)
    for name, value in (
        ("batch_id", m.batch_id),
        ("model_id", m.model_id),
        ("runtime_id", m.runtime_id),
        ("batch_root", m.batch_root),
        ("row_count", m.row_count),
        ("requester", m.requester),
    ):
        signed = getattr(claim, name)
        same = signed == value if name == "row_count" else str(signed).lower() == value.lower()
        if not same:
            findings.append(Finding("claim-mismatch", f"claim {name} {signed} ≠ manifest {value}"))
    if claim.timestamp > time.time() + MAX_CLOCK_SKEW_S:
        findings.append(
            Finding("claim-timestamp", f"claim is dated {claim.timestamp}, ahead of now")
        )
    elif policy.trusted_time is not None and claim.timestamp > (
        policy.trusted_time + MAX_CLOCK_SKEW_S
    ):
        findings.append(
            Finding(
                "claim-timestamp",
                f"claim is dated {claim.timestamp}, after the commit at {policy.trusted_time}",
            )
        )
    if policy.expected_domain is not None and (
        policy.expected_domain.chain_id != m.domain.chain_id
        or policy.expected_domain.verifying_contract.lower() != m.domain.verifying_contract.lower()
    ):
        findings.append(
            Finding(
                "domain-mismatch",
                f"claim is for chain {m.domain.chain_id} contract {m.domain.verifying_contract}",
            )
        )
    runtime_id = "0x" + keccak256(canonical_json(m.fingerprint)).hex()
    if runtime_id != m.runtime_id.lower():
        findings.append(
            Finding("runtime-id", f"the fingerprint hashes to {runtime_id}, not {m.runtime_id}")
        )
    try:
        derived = derive_batch_id(
            model_id=m.model_id,
            dataset_id=m.dataset_id,
            requester=m.requester,
            chain_id=m.domain.chain_id,
            verifying_contract=m.domain.verifying_contract,
            job=m.job,
            execution=execution_hash(m.execution()),
        )
    except (OgkitError, ValueError, TypeError, OverflowError) as exc:
        findings.append(Finding("batch-id", f"the batch id cannot be derived: {exc}"))
        return hardware
    if derived != claim.batch_id.lower():
        findings.append(
            Finding("batch-id", f"claim batch id {claim.batch_id} is not this job's {derived}")
        )
    return hardware


def _check_approval(
    attester: str, measurement: str, allow: Allowlist, findings: list[Finding]
) -> None:
    """The claim's own (attester, runtime id) pair must be approved: an approved key
    stating a measurement approved only for another attester is refused."""
    if allow.approves(attester, measurement):
        return
    mine = allow.measurements_of(attester)
    if not mine:
        findings.append(
            Finding("unapproved-attester", f"attester {attester} is not on the allowlist")
        )
    others = allow.attesters_of(measurement)
    if mine or not others:
        elsewhere = f" (approved only for {', '.join(sorted(others))})" if others else ""
        findings.append(
            Finding(
                "unapproved-measurement",
                f"measurement {measurement} is not approved for attester {attester}{elsewhere}",
            )
        )


def _approved_as_hardware(attester: str, runtime_id: str, allow: Allowlist) -> str | None:
    """Why a software-enclave claim by ``attester`` is not approved, if its approval is a
    hardware one: the runtime id is recorded as another kind than software, or it has no
    recorded kind and the attester is approved with a hardware measurement (what a
    NodeRegistry binding to a TEE measurement gives). Such a binding is proved by the
    attester's key alone (not by the TEE), and the contract leaves the runtime id to the
    evidence: without this a node binding a plain key to an approved TEE measurement
    would pass with no hardware at all. None: approved as software, or nothing says."""
    recorded = allow.kinds.get(runtime_id.lower())
    if recorded == 1:
        return None
    hardware = sorted(
        (m, k)
        for m in allow.measurements_of(attester)
        if (k := allow.kinds.get(m)) is not None and k != 1
    )
    if recorded is None and not hardware:
        return None
    names = {2: "tdx", 3: "sgx", 4: "nitro"}
    what = (
        f"runtime id {runtime_id} is approved as kind {names.get(recorded, recorded)}"
        if recorded is not None
        else f"attester {attester} is approved as a {names.get(hardware[0][1], hardware[0][1])} "
        f"enclave (measurement {hardware[0][0]})"
    )
    return f"{what}; its batch carries software-enclave evidence: no hardware attests it"


def _check_evidence(
    batch: AttestedBatch, policy: VerifyPolicy, findings: list[Finding], notices: list[str]
) -> dict[str, Any] | None:
    """The attester's evidence. The software enclave's must say it is not hardware and
    measure the runtime id; hardware evidence is verified again (ogkit.tee) as of
    ``policy.trusted_time`` (the commit's block time), else the verifier's clock: never
    the claim's timestamp, which the node chooses. Any other kind is refused rather than
    believed."""
    m = batch.manifest
    claim = m.claim
    evidence = m.attester
    kind = evidence.get("kind")
    if kind == "software-enclave" and evidence.get("hardware_backed") is False:
        measured = evidence.get("measurement")
        if not isinstance(measured, str) or measured.lower() != claim.runtime_id.lower():
            findings.append(
                Finding(
                    "evidence-mismatch",
                    f"the attester's evidence measures {measured!r:.80}, the claim "
                    f"{claim.runtime_id}",
                )
            )
        if policy.require_hardware:
            findings.append(
                Finding("tee-required", "the attester is a software enclave; no hardware attests")
            )
        elif why := _approved_as_hardware(claim.attester, claim.runtime_id, policy.allowlist):
            findings.append(Finding("tee-required", why))
        return None
    if kind not in HARDWARE_KINDS or evidence.get("hardware_backed") is not True:
        findings.append(
            Finding(
                "evidence-mismatch",
                f"evidence of kind {kind!r:.40} (hardware_backed "
                f"{evidence.get('hardware_backed')!r:.10}) cannot be verified here",
            )
        )
        return None
    from ogkit.tee.evidence import check_evidence

    allow = policy.allowlist
    trusted = policy.trusted_time is not None
    check = check_evidence(
        evidence,
        attester=claim.attester,
        runtime_id=claim.runtime_id,
        at=policy.trusted_time if trusted else int(time.time()),
        claimed_at=claim.timestamp,
        when="the batch's commit time" if trusted else "the verifier's clock",
        approved=allow.measurements_of(claim.attester),
        kinds=allow.kinds,
        policy=policy.evidence,
    )
    findings.extend(Finding(reason, detail) for reason, detail in check.findings)
    notices.extend(check.notices)
    return check.to_dict()


def _check_tiling(batch: AttestedBatch, findings: list[Finding]) -> bool:
    """Partitions 0..P-1 in order, each starting where the last ended, covering
    ``[0, row_count)`` with none empty; full partitions of ``partition_rows`` but the last."""
    m = batch.manifest
    ok = bool(m.partitions)
    if not m.partitions:
        findings.append(Finding("partition-tiling", "the batch lists no partitions"))
    end = 0
    last = len(m.partitions) - 1
    for i, p in enumerate(m.partitions):
        problems = []
        if p.index != i:
            problems.append(f"index {p.index} at position {i}")
        if p.offset != end:
            problems.append(f"offset {p.offset}, expected {end}")
        if p.rows < 1:
            problems.append("no rows")
        if p.rows > m.partition_rows or (i < last and p.rows != m.partition_rows):
            problems.append(f"{p.rows} rows with partition_rows {m.partition_rows}")
        if not safe_records_path(p.path, batch.batch_id):
            findings.append(
                Finding("records-path", f"records at {p.path!r:.80} lie outside the batch", None, i)
            )
            ok = False
        if problems:
            findings.append(Finding("partition-tiling", "; ".join(problems), None, i))
            ok = False
        end = p.offset + p.rows
    if m.partitions and end != m.row_count:
        findings.append(
            Finding("partition-tiling", f"partitions end at row {end}, not at {m.row_count}")
        )
        ok = False
    return ok


def _check_specs(
    batch: AttestedBatch, model_bytes: bytes, findings: list[Finding]
) -> list[Any] | None:
    """The manifest's inputs and outputs against the model's own signature."""
    import onnx

    from ogkit.hub.manifest import extract_signature

    try:
        inputs, outputs = extract_signature(onnx.load_model_from_string(model_bytes))
    except Exception as exc:
        findings.append(Finding("model-unavailable", f"the model cannot be parsed: {exc}"))
        return None
    m = batch.manifest
    for kind, declared, actual in (("inputs", m.inputs, inputs), ("outputs", m.outputs, outputs)):
        want = [(t.name, np.dtype(t.dtype).name) for t in actual]
        got = [(t.name, np.dtype(t.dtype).name) for t in declared]
        if sorted(got) != sorted(want):
            findings.append(Finding("spec-mismatch", f"manifest {kind} {got} ≠ the model's {want}"))
            continue
        for t in declared:
            spec = next(a for a in actual if a.name == t.name)
            fixed = [d for d in spec.shape[1:]]
            if all(isinstance(d, int) for d in fixed) and tuple(fixed) != t.row_shape:
                findings.append(
                    Finding(
                        "spec-mismatch",
                        f"manifest {kind} {t.name} row shape {list(t.row_shape)} ≠ the model's "
                        f"{fixed}",
                    )
                )
    return list(inputs)


def _stored_is(batch: AttestedBatch, origin: CommittedFile) -> bool:
    """Is the batch's stored dataset the requester's file ``origin``: the manifest's
    rows all of it, read under the requester's plan, and its bytes of the same sha256
    (read here, from the store)? Then each stored row is the requester's row, and
    partitions need not read or hash the stored rows to know it."""
    m = batch.manifest
    d = m.input_data
    if d is None or d.format != origin.format or d.offset != 0 or d.rows != m.row_count:
        return False
    try:
        if not same_plan(plan_from_bindings(m.inputs), origin.plan):
            return False
        return stored_sha256(batch.store, d.object, d.format, origin.size) == origin.sha256
    except Exception as exc:  # never a traceback for what a node stored: read the rows
        log.debug("the stored dataset is read row by row: %r", exc)
        return False


def _open_dataset(
    dataset: Any,
    input_map: Mapping[str, str | list[str]] | None,
    batch: AttestedBatch,
    model_inputs: list[Any],
    findings: list[Finding],
) -> tuple[DataSource | None, InputPlan | None]:
    from ogkit.dataset import open_source, plan_inputs

    m = batch.manifest
    try:
        source = open_source(dataset)
        plan = plan_inputs(source, model_inputs, input_map)
    except Exception as exc:  # the verifier's own input, but never a traceback
        findings.append(Finding("dataset-mismatch", f"the requester's dataset: {exc}"))
        return None, None
    mine = {b.input: b for b in plan.bindings}
    for t in m.inputs:
        b = mine.get(t.name)
        if b is not None and source.arrays is None and tuple(b.columns) != tuple(t.columns or ()):
            findings.append(
                Finding(
                    "dataset-mismatch",
                    f"the batch fed input {t.name} from columns {list(t.columns or ())[:8]}, the "
                    f"requester's binding is {list(b.columns)[:8]}",
                )
            )
            return None, None
    if source.n_rows != m.row_count:
        findings.append(
            Finding(
                "dataset-mismatch",
                f"the requester's dataset has {source.n_rows:,} rows, the batch {m.row_count:,}",
            )
        )
        return None, None
    return source, plan


def _published_features(
    hub: Hub, model_id: str, ordered: str | None, named: str | None, notices: list[str]
) -> dict[str, tuple[str, ...]] | None:
    """The feature names signed at publish that bind the requester's columns, if any.
    Anyone may publish the same bytes under another name with other features, and the
    node writes the batch's ``model_ref``: so the manifest the verifier itself names
    (``ordered``, a ``name@version``) decides; else the features every signed manifest of
    the id agrees on (one that signs none counts as disagreeing); else none (the columns
    bind by name, and a notice says how to choose)."""
    try:
        entries = hub.index.by_model_id(model_id)
    except (HubError, OSError):
        return None
    signed = []
    for entry in entries:
        try:
            entry.manifest.check_signature()
        except HubError:
            continue
        signed.append(entry.manifest)
    if ordered is not None and not ordered.startswith("0x"):
        try:
            chosen = hub.manifest(ordered)
            chosen.check_signature()
        except (OgkitError, OSError):
            return None
        if chosen.model_id.lower() != model_id.lower():
            return None  # a job-order finding says so
        return dict(chosen.features) if chosen.features else None
    bindings = {tuple(sorted(mf.features.items())) if mf.features else () for mf in signed}
    if len(bindings) > 1:
        notices.append(
            f"manifests of model {model_id:.80} ({', '.join(sorted(mf.ref for mf in signed)[:3])}"
            f") bind different features; the batch names {named or 'none'}, which does not "
            "decide: give the verifier's own --input-map or the ordered --model name@version"
        )
        return None
    only = next(iter(bindings), ())
    return dict(only) if only else None


def _model_bytes(batch: AttestedBatch, hub: Hub | None) -> bytes:
    """The model, from the batch's own store if it is there, else from the hub."""
    if batch.store.has(MODELS, batch.model_id):
        try:
            return batch.store.get(MODELS, batch.model_id)
        except ArtifactError as exc:
            if hub is None:
                raise
            log.warning("model copy beside the batch is unusable (%s); trying the hub", exc)
    if hub is None:
        raise ArtifactError(f"model {batch.model_id} is not in the batch's store; pass hub=")
    return hub.blob(batch.model_id)


def _read_or_none(batch: AttestedBatch, index: int) -> bytes | None:
    try:
        return batch.partition_bytes(index, check=False)
    except (ArtifactError, OSError, ValueError):
        return None


def _outcomes_root(outcomes: list[_Outcome]) -> str | None:
    """The input root over every partition's input leaves, in order, or None when a
    partition gave none (it has findings of its own)."""
    if not outcomes or any(o.input_leaves is None for o in outcomes):
        return None
    leaves = np.concatenate([o.input_leaves for o in outcomes])
    return "0x" + merkle_root(leaves, threads=idle_threads(), sorted_runs=True).hex()


def _root_and_outcomes(outcomes: list[_Outcome]) -> tuple[list[_Outcome], str | None]:
    """Every outcome without its leaves, and the input root over them (on a worker)."""
    return [_without_leaves(o) for o in outcomes], _outcomes_root(outcomes)


def _without_leaves(outcome: _Outcome) -> _Outcome:
    """A copy without the leaves (never mutated: the input-root task may still need them)."""
    return replace(outcome, input_leaves=None)


def _run_checks(
    batch: AttestedBatch,
    checks: list[_PartitionCheck],
    payload: ModelPayload | None,
    dask: DaskClient | None,
    progress: bool,
    requester_hashes: np.ndarray | None = None,
    digests: list[bytes] | None = None,
) -> tuple[list[_Outcome], str | None]:
    """Every partition's outcome in partition order, and the input root of the inputs the
    verifier hashed (None if a partition could not give its hashes, or every partition
    was compared with ``requester_hashes``, the requester's row hashes, instead).

    On Dask each worker reads its partition's records from the store itself (unless the
    store lives in this process's memory) and one worker builds the input root: only
    findings and counts come back to this process, never a row's bytes."""
    bar = tqdm(
        total=len(checks), desc=f"verify {batch.batch_id[:10]}", unit="part", disable=not progress
    )
    outcomes: list[_Outcome] = []
    hashes: list[np.ndarray | None] = [
        None
        if requester_hashes is None
        else requester_hashes[c.meta.offset : c.meta.offset + c.meta.rows]
        for c in checks
    ]
    try:
        if dask is None:
            for i, check in enumerate(checks):
                try:
                    outcomes.append(
                        check_partition(
                            check, _read_or_none(batch, i), payload, batch.store, None, hashes[i]
                        )
                    )
                except Exception as exc:  # e.g. out of memory: this partition's finding
                    outcomes.append(_crashed(check, exc))
                bar.update(1)
            root = _outcomes_root(outcomes)
            return [_without_leaves(o) for o in outcomes], root
        payload_future = dask.scatter(payload, broadcast=True, hash=False) if payload else None
        worker_store = batch.store if batch.store.shared else None
        tag = batch.batch_id[2:10]
        if requester_hashes is not None:
            # A digest of each partition's slice goes out, not the slice: 32 bytes a
            # partition instead of 32 a row scattered before any work (1M rows: about
            # 0.1 s wall and 0.12 CPU-s); a partition that differs is checked again with it.
            hashes = digests or [_digest(requester_hashes, c.meta) for c in checks]

        def submit(i: int, hashes_i: Any, key: str) -> Any:
            """Partition ``i``'s check as one task (the memory store: its records and
            stored rows read here and shipped with it)."""
            check = checks[i]
            if worker_store is not None:
                return dask.submit(
                    check_partition, check, None, payload_future, worker_store, None,
                    hashes_i, key=key, pure=False,
                )  # fmt: skip
            data = _read_or_none(batch, i)
            skip = check.stored_is_requesters and payload is None
            inputs = None if skip else _stored_inputs(check, batch.store)[0]
            return dask.submit(
                check_partition,
                check,
                dask.scatter(data, hash=False) if data is not None else None,
                payload_future,
                None,
                # in a list: a dict given to scatter is scattered value by value, each
                # under its key, so every partition's rows would share one key
                dask.scatter([inputs], hash=False)[0] if inputs is not None else None,
                hashes_i,
                key=key,
                pure=False,
            )

        def rechecked(outcomes: list[_Outcome]) -> list[_Outcome]:
            """Each partition whose hashes did not digest to the requester's, checked
            again with the requester's hashes of its rows (a node that cheated pays for
            this, not an honest batch): the same findings, in the same order, as the
            check in this process gives."""
            redo = {
                i: submit(
                    i,
                    requester_hashes[c.meta.offset : c.meta.offset + c.meta.rows],
                    f"verify-again-{tag}-{i:05d}",
                )
                for i, (o, c) in enumerate(zip(outcomes, checks, strict=True))
                if o.unmatched
            }
            for i, future in redo.items():
                try:
                    outcomes[i] = _without_leaves(future.result())
                except Exception as exc:  # a worker died or ran out of memory: a finding
                    outcomes[i] = _crashed(checks[i], exc)
            return outcomes

        futures = []
        if worker_store is not None:
            # One map a run of consecutive partitions per worker (each reads its rows of
            # the dataset as one forward stream); a submit each cost the client ~2.5 ms.
            n = len(checks)
            for lo, hi, worker in worker_runs(dask, n, spread=True):
                futures += dask.map(
                    check_partition,
                    checks[lo:hi],
                    [None] * (hi - lo),
                    [payload_future] * (hi - lo),
                    [worker_store] * (hi - lo),
                    [None] * (hi - lo),
                    hashes[lo:hi],
                    key=[f"verify-{tag}-{i:05d}" for i in range(lo, hi)],
                    workers=worker,
                    allow_other_workers=worker is not None,
                    pure=False,
                )
        else:  # a store in this process's memory
            futures = [submit(i, hashes[i], f"verify-{tag}-{i:05d}") for i in range(len(checks))]
        # One task builds the input root and sends back every outcome without its leaves.
        root_future = dask.submit(
            _root_and_outcomes, futures, key=f"verify-input-root-{tag}", pure=False
        )
        for _ in completed(dask, futures):
            bar.update(1)
        try:
            outcomes, root = root_future.result()
            return rechecked(outcomes), root
        except Exception:  # a partition crashed: each partition's own outcome or finding
            pass
        for i, (check, future) in enumerate(zip(checks, futures, strict=True)):
            try:
                slim = dask.submit(
                    _without_leaves, future, key=f"verify-outcome-{tag}-{i:05d}", pure=False
                )
                outcomes.append(slim.result())
            except Exception as exc:  # a worker died or ran out of memory: a finding
                outcomes.append(_crashed(check, exc))
        return rechecked(outcomes), None
    finally:
        bar.close()


def _digest(hashes: np.ndarray, meta: PartitionMeta) -> bytes:
    """The sha256 of one partition's slice of the requester's row hashes."""
    return hashlib.sha256(
        np.ascontiguousarray(hashes[meta.offset : meta.offset + meta.rows])
    ).digest()


def _crashed(check: _PartitionCheck, exc: BaseException) -> _Outcome:
    detail = f"checking the partition failed: {type(exc).__name__}: {exc}"[:500]
    return _Outcome([Finding("records-unreadable", detail, None, check.meta.index)])


# -- receipts --------------------------------------------------------------------------------
RECEIPT_SCHEMA = "ogkit.receipt.v2"
#: A v1 receipt's leaf carried the batch, model and runtime ids (records layout v3).
RETIRED_RECEIPT_SCHEMAS = ("ogkit.receipt.v1",)
_LEAF_VALUE_KEYS = ("rowIndex", "inputHash", "outputHash")
MAX_PROOF_LENGTH = 128


@dataclass(frozen=True)
class ReceiptCheck:
    ok: bool
    problems: tuple[str, ...]
    signer: str | None
    attester_approved: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "problems": list(self.problems),
            "signer": self.signer,
            "attester_approved": self.attester_approved,
        }


def _zk_checks(
    batch: AttestedBatch, dataset: Any, chunk: int, findings: list[Finding], notices: list[str]
) -> None:
    """The batch's ZK proofs (docs/spec.md §13). A row the proof cannot decide (a label at
    a near tie, a float between one and two tolerances: ``zk-undecidable``) is judged as
    the dispute vote would judge it, by re-executing it with onnxruntime: the receipt
    stands if that gives its output hash, else the row is a ``reexecution-mismatch``."""
    from ogkit.zk.batch import zk_findings
    from ogkit.zk.verify import ZK_DEFERRED

    arrays = dataset if isinstance(dataset, Mapping) else None
    for f in zk_findings(batch, batch.store, chunk=chunk, inputs=arrays):
        if f.reason not in ZK_DEFERRED or f.row is None:
            findings.append(Finding(f.reason, f.detail, f.row))
            continue
        leaf = batch.receipt(f.row)["leaf_values"]
        try:
            wrong, why = reexecute_row(
                batch, f.row, _b32(leaf["inputHash"]), _b32(leaf["outputHash"])
            )
        except (OgkitError, KeyError, ValueError) as exc:
            findings.append(Finding(f.reason, f"{f.detail}; re-execution failed: {exc}", f.row))
            continue
        if wrong:
            findings.append(Finding("reexecution-mismatch", f"{f.detail}; {why}", f.row))
        else:
            notices.append(f"row {f.row}: the proof cannot decide ({f.detail}); {why}")


def _b32(value: str) -> bytes:
    return bytes.fromhex(str(value).removeprefix("0x"))


def reexecute_row(
    batch: AttestedBatch,
    row: int,
    input_hash: bytes,
    output_hash: bytes,
    *,
    model_id: str | None = None,
) -> tuple[bool, str]:
    """Whether ``row`` is wrong, and why: its inputs from the batch's stored dataset must
    hash to ``input_hash``, and re-executing them (in the mini-batch the node ran them in)
    with the model ``model_id`` (default the batch's; a dispute passes the chain's) must
    give ``output_hash``. Inputs that cannot be read make the row wrong: the node must
    keep its batch's inputs readable."""
    from ogkit.load import load_model_bytes

    receipt = batch.receipt(row)
    try:
        part = batch.records(int(receipt["partition"]["index"]))
    except InputsUnavailableError as exc:
        return True, f"the batch's stored inputs cannot be read: {exc}"[:300]
    i = int(list(part.row_index).index(row))
    stored_in = bytes(tensor_row_hashes({k: v[i : i + 1] for k, v in part.inputs.items()})[0])
    if stored_in != bytes(input_hash):
        return True, "the stored inputs do not hash to the committed input hash"
    model = load_model_bytes(batch.store.get(MODELS, (model_id or batch.model_id).lower()))
    fresh = bytes(
        tensor_row_hashes(reexecute(model, part.inputs, [i], batch_size=batch.batch_size))[0]
    )
    if fresh != bytes(output_hash):
        return (
            True,
            f"re-execution gives 0x{fresh.hex()}, the node committed 0x{bytes(output_hash).hex()}",
        )
    return False, "re-execution gives the committed output"


def _receipt_hash(values: Mapping[str, Any], key: str) -> bytes:
    text = values[key]
    if not isinstance(text, str) or not text.startswith("0x") or len(text) != 66:
        raise ReceiptError(f"{key} must be 0x + 64 hex digits, got {text!r:.80}")
    return bytes.fromhex(text[2:])


def verify_receipt(receipt: Any, allowlist: Allowlist | None = None) -> ReceiptCheck:
    """Check a receipt with nothing but itself and the verifier's ``allowlist``: the leaf
    from its values, the proof to the signed claim's batch root, the row inside the batch,
    the claim's canonical EIP-712 signature by its attester, and the attester and
    measurement approved. A receipt is OK only when all of that holds: a valid signature
    by a key nobody approved is a failure. The leaf names no batch (spec 3.1): what batch,
    model, runtime and requester the row is of, only the claim says, so a caller that
    needs a particular job checks the claim's ids (and the batch id's derivation) too, as
    ``verify_paid_call`` does. Never raises on a malformed receipt: its problems say what
    is wrong."""
    problems: list[str] = []
    signer: str | None = None
    approved = False
    try:
        schema = receipt.get("schema") if isinstance(receipt, Mapping) else None
        if schema in RETIRED_RECEIPT_SCHEMAS:
            raise ReceiptError(
                f"{schema} is an earlier receipt layout (its leaf carried the batch, model "
                f"and runtime ids); this ogkit reads {RECEIPT_SCHEMA}: fetch the receipt "
                "again from a batch attested with this ogkit"
            )
        if schema != RECEIPT_SCHEMA:
            raise ReceiptError(f"not an ogkit receipt (schema {RECEIPT_SCHEMA})")
        v = receipt["leaf_values"]
        if not isinstance(v, Mapping) or sorted(v) != sorted(_LEAF_VALUE_KEYS):
            # a field the leaf does not hash (a "modelId", say) would be believed by readers
            raise ReceiptError("leaf_values must hold exactly rowIndex, inputHash, outputHash")
        if list(receipt["leaf_types"]) != list(LEAF_TYPES):
            raise ReceiptError(f"leaf types are not ogkit's {list(LEAF_TYPES)}")
        claim = BatchClaim.from_dict(receipt["claim"])
        row_text = v["rowIndex"]
        if not isinstance(row_text, str) or not (row_text.isascii() and row_text.isdigit()):
            raise ReceiptError(f"rowIndex must be a decimal string, got {row_text!r:.40}")
        row = int(row_text)
        if not 0 <= row < claim.row_count:
            problems.append(f"row {row} is outside the batch's {claim.row_count} rows")
        leaf = leaf_hash(row, _receipt_hash(v, "inputHash"), _receipt_hash(v, "outputHash"))
        if _hex(leaf) != str(receipt["leaf"]).lower():
            problems.append("leaf does not match the leaf values")
        proof_hex = receipt["proof"]
        if not isinstance(proof_hex, list) or len(proof_hex) > MAX_PROOF_LENGTH:
            raise ReceiptError("proof must be a list of at most 128 hashes")
        proof = [bytes.fromhex(p[2:]) for p in proof_hex]
        if any(len(p) != 32 for p in proof):
            raise ReceiptError("every proof element must be 32 bytes")
        if _hex(process_proof(leaf, proof)) != str(receipt["batch_root"]).lower():
            problems.append("proof does not lead from the leaf to the batch root")
        if claim.batch_root.lower() != str(receipt["batch_root"]).lower():
            problems.append("claim batch_root differs from the receipt's")
        d = receipt["domain"]
        domain = ClaimDomain(int(d["chain_id"]), d["verifying_contract"])
        try:
            signer = claim.recover_signer(domain, receipt["signature"])
            if signer.lower() != claim.attester.lower():
                problems.append(
                    f"claim is signed by {signer}, not by its attester {claim.attester}"
                )
        except (ValueError, OgkitError) as exc:
            problems.append(f"signature rejected: {exc}")
        allow = allowlist or Allowlist()
        approved = allow.approves(claim.attester, claim.runtime_id)
        if not approved:
            problems.append(
                f"signature or not, attester {claim.attester} with measurement "
                f"{claim.runtime_id} is not approved by the allowlist given"
            )
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, OgkitError) as exc:
        problems.append(f"receipt is malformed: {exc}")
    return ReceiptCheck(not problems, tuple(problems), signer, approved)
