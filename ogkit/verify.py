"""The verify step: recompute a stored batch from its records and give a verdict.

Every input hash, output hash, leaf, partition root and the batch root are
recomputed; the claim's EIP-712 signature is checked and its attester and
measurement are looked up in an allowlist; a sample of rows is re-executed on the
verifier's own model load. The sample's seed is keccak256(batch root ‖ verifier
secret): the node fixed the root before it could know the secret, so it cannot
predict which rows will be re-run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from tqdm.auto import tqdm

from ogkit.artifacts import AttestedBatch, load_batch
from ogkit.attest import read_records
from ogkit.claims import derive_batch_id
from ogkit.settings import ogkit_home
from ogkit.crypto.encoding import tensor_row_hashes
from ogkit.crypto.keccak import keccak256
from ogkit.crypto.merkle import MerkleTree, leaf_hashes
from ogkit.errors import ArtifactError, ConfigError, HubError, OgkitError, VerificationFailed
from ogkit.hub.hub import MODELS, Hub
from ogkit.load import SessionConfig
from ogkit.pipeline import ModelPayload, _worker_model
from ogkit.store import ContentStore

__all__ = [
    "Allowlist",
    "Finding",
    "Verdict",
    "VerifyPolicy",
    "detection_probability",
    "verify_batch",
]

log = logging.getLogger(__name__)

# Reasons a finding can give; stable strings, used in reports and JSON.
REASONS = {
    "artifact-altered": "a records file differs from the hash pinned in the manifest",
    "records-unreadable": "a records file cannot be parsed",
    "signature": "the claim's signature does not recover its attester",
    "unapproved-attester": "the attester is not on the allowlist",
    "unapproved-measurement": "the attester's measurement (runtime id) is not approved",
    "claim-mismatch": "the signed claim disagrees with the batch manifest",
    "batch-id": "the batch id is not the one derived from this job (replayed claim?)",
    "input-hash-mismatch": "the stored input hash is not the hash of the stored inputs",
    "output-hash-mismatch": "the stored output hash is not the hash of the stored outputs",
    "leaf-mismatch": "the stored leaf is not the leaf of this row's values",
    "partition-root-mismatch": "the partition root is not the root of its leaves",
    "batch-root-mismatch": "the recomputed batch root differs from the signed root",
    "missing-row": "a row index is absent from the records",
    "duplicate-row": "a row index appears more than once",
    "unexpected-row": "a row index lies outside the batch",
    "reexecution-mismatch": "re-running the model gives different outputs",
    "model-unavailable": "the model could not be fetched for re-execution",
}


@dataclass(frozen=True)
class Allowlist:
    """Approved attester addresses and measurements (the chain's NodeRegistry later)."""

    attesters: frozenset[str] = frozenset()
    measurements: frozenset[str] = frozenset()

    @classmethod
    def load(cls, path: Path | None = None) -> Allowlist:
        path = path or ogkit_home() / "allowlist.json"
        if not path.exists():
            return cls()
        try:
            doc = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ConfigError(f"allowlist {path} is not valid JSON: {exc}") from None
        return cls(
            frozenset(a.lower() for a in doc.get("attesters", [])),
            frozenset(m.lower() for m in doc.get("measurements", [])),
        )

    def with_(self, attesters: Iterable[str] = (), measurements: Iterable[str] = ()) -> Allowlist:
        return Allowlist(
            self.attesters | {a.lower() for a in attesters},
            self.measurements | {m.lower() for m in measurements},
        )

    def save(self, path: Path | None = None) -> Path:
        path = path or ogkit_home() / "allowlist.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        doc = {"attesters": sorted(self.attesters), "measurements": sorted(self.measurements)}
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc, indent=2))
        tmp.replace(path)
        return path


@dataclass(frozen=True)
class VerifyPolicy:
    sample_rate: float = 0.01  # fraction of rows re-executed (at least one row when > 0)
    rtol: float = 0.0  # 0/0: outputs must be bit-identical (CPU); loosen for GPU batches
    atol: float = 0.0
    allowlist: Allowlist | None = None  # None: read <home>/allowlist.json
    verifier_secret: bytes | None = None  # None: fresh random bytes per verification
    session_config: SessionConfig = field(default_factory=SessionConfig)

    def __post_init__(self) -> None:
        if not 0.0 <= self.sample_rate <= 1.0:
            raise ConfigError(f"sample_rate must be within [0, 1], got {self.sample_rate}")
        if self.rtol < 0 or self.atol < 0:
            raise ConfigError("rtol and atol must be >= 0")


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
    sample_size: int
    sampled_rows: list[int]
    seed_commitment: str  # keccak256(seed): lets the verifier later prove the draw was honest
    max_abs_error: float
    detection: dict[str, float]  # "k=10" -> probability the sample catches >= 1 of k bad rows
    seconds: float

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
        return text

    def raise_if_failed(self) -> None:
        if not self.passed:
            raise VerificationFailed(self.summary(), verdict=self)


def detection_probability(n_rows: int, sample_size: int, corrupted: int) -> float:
    """P(a uniform sample of ``sample_size`` rows without replacement hits >= 1 of
    ``corrupted`` rows among ``n_rows``) = 1 - C(n-k, m) / C(n, m)."""
    n, m, k = n_rows, sample_size, corrupted
    if k <= 0 or m <= 0:
        return 0.0
    if m > n - k:
        return 1.0
    log_miss = (
        math.lgamma(n - k + 1)
        - math.lgamma(n - k - m + 1)
        - math.lgamma(n + 1)
        + math.lgamma(n - m + 1)
    )
    return 1.0 - math.exp(log_miss)


def _draw_sample(batch_root: str, secret: bytes, n_rows: int, rate: float) -> np.ndarray:
    if rate <= 0:
        return np.zeros(0, dtype=np.int64)
    m = min(n_rows, max(1, math.ceil(rate * n_rows)))
    seed = int.from_bytes(keccak256(bytes.fromhex(batch_root[2:]) + secret), "big")
    return np.sort(np.random.default_rng(seed).choice(n_rows, size=m, replace=False))


@dataclass(frozen=True)
class _PartitionCheck:
    """Everything one partition check needs; picklable for Dask."""

    batch_id: str
    model_id: str
    runtime_id: str
    meta: dict[str, Any]
    tensor_specs: dict[str, dict[str, tuple[str, tuple[int, ...]]]]
    sample_rows: tuple[int, ...]
    rtol: float
    atol: float


def _hex(b: Any) -> str:
    return "0x" + bytes(b).hex()


def check_partition(
    check: _PartitionCheck, data: bytes, payload: ModelPayload | None
) -> tuple[list[Finding], np.ndarray, float]:
    """Recompute one partition; re-execute its sampled rows. Returns the findings, the
    row indices present, and the largest absolute re-execution error seen."""
    index = check.meta["index"]
    findings: list[Finding] = []
    if hashlib.sha256(data).hexdigest() != check.meta["sha256"]:
        findings.append(
            Finding(
                "artifact-altered",
                f"{check.meta['path']} changed after attestation",
                partition=index,
            )
        )
    try:
        rec = read_records(data, check.tensor_specs)
    except ArtifactError as exc:
        findings.append(Finding("records-unreadable", str(exc), partition=index))
        return findings, np.zeros(0, np.uint64), 0.0

    in_h = tensor_row_hashes(rec.inputs)
    out_h = tensor_row_hashes(rec.outputs)
    for bad in np.flatnonzero((in_h != rec.input_hashes).any(axis=1)):
        findings.append(
            Finding(
                "input-hash-mismatch",
                "stored inputs do not hash to the stored input hash",
                int(rec.row_index[bad]),
                index,
            )
        )
    for bad in np.flatnonzero((out_h != rec.output_hashes).any(axis=1)):
        findings.append(
            Finding(
                "output-hash-mismatch",
                "stored outputs do not hash to the stored output hash",
                int(rec.row_index[bad]),
                index,
            )
        )
    leaves = leaf_hashes(
        bytes.fromhex(check.batch_id[2:]),
        bytes.fromhex(check.model_id[2:]),
        bytes.fromhex(check.runtime_id[2:]),
        rec.row_index,
        in_h,
        out_h,
    )
    leaf_bad = np.flatnonzero((leaves != rec.leaves).any(axis=1))
    hash_bad = {f.row_index for f in findings}
    for bad in leaf_bad:
        row = int(rec.row_index[bad])
        if row not in hash_bad:  # a hash mismatch already explains a leaf mismatch
            findings.append(
                Finding(
                    "leaf-mismatch",
                    "stored leaf differs from the leaf of the row's values",
                    row,
                    index,
                )
            )
    root = _hex(MerkleTree.from_leaf_hashes(leaves).root) if len(leaves) else "0x"
    if root != check.meta["root"]:
        findings.append(
            Finding(
                "partition-root-mismatch",
                f"recomputed root {root} ≠ attested {check.meta['root']}",
                partition=index,
            )
        )

    max_err = 0.0
    if check.sample_rows and payload is not None:
        position = {int(r): i for i, r in enumerate(rec.row_index)}
        rows = [r for r in check.sample_rows if r in position]
        idx = np.array([position[r] for r in rows], dtype=np.int64)
        if len(idx):
            model = _worker_model(payload)
            fresh = model.run({k: v[idx] for k, v in rec.inputs.items()})
            bad_rows: set[int] = set()
            for name, stored in rec.outputs.items():
                got, want = fresh[name], stored[idx]
                if got.dtype.kind in "fc":
                    err = np.abs(got.astype(np.float64) - want.astype(np.float64))
                    err = err.reshape(len(idx), -1).max(axis=1)
                    max_err = max(max_err, float(np.nanmax(err)) if err.size else 0.0)
                    ok = np.isclose(got, want, rtol=check.rtol, atol=check.atol, equal_nan=True)
                    if check.rtol == 0 and check.atol == 0:
                        ok = (got == want) | (np.isnan(got) & np.isnan(want))
                else:
                    ok = got == want
                ok_rows = ok.reshape(len(idx), -1).all(axis=1)
                bad_rows.update(rows[i] for i in np.flatnonzero(~ok_rows))
            for row in sorted(bad_rows):
                findings.append(
                    Finding(
                        "reexecution-mismatch",
                        "re-running the model on the stored inputs gives different outputs",
                        row,
                        index,
                    )
                )
    return findings, rec.row_index, max_err


def verify_batch(
    artifact: str | Path | AttestedBatch,
    policy: VerifyPolicy | None = None,
    *,
    store: ContentStore | str | None = None,
    hub: Hub | None = None,
    client: Any = None,
    progress: bool = True,
) -> Verdict:
    """Verify a stored batch; the verdict names every failing row and why.

    ``artifact`` is an artefact id, a manifest path or an :class:`AttestedBatch`.
    The model for re-execution comes from the hub's store, checked against its id.
    With a Dask ``client`` partitions are checked in parallel.
    """
    started = time.perf_counter()
    policy = policy or VerifyPolicy()
    hub = hub or Hub(store if isinstance(store, ContentStore) else None)
    if isinstance(artifact, AttestedBatch):
        batch = artifact
    else:
        store = store if isinstance(store, ContentStore) else ContentStore(store or hub.store.url)
        batch = load_batch(artifact, store)
    allowlist = policy.allowlist if policy.allowlist is not None else Allowlist.load()
    m = batch.manifest
    findings: list[Finding] = []

    # -- the claim ------------------------------------------------------------------------
    claim = batch.claim
    try:
        signer = claim.recover_signer(batch.domain, batch.signature)
    except (ValueError, OgkitError) as exc:
        signer = None
        findings.append(Finding("signature", f"signature is malformed: {exc}"))
    if signer is not None and signer.lower() != claim.attester.lower():
        findings.append(
            Finding("signature", f"claim signed by {signer}, not by its attester {claim.attester}")
        )
    if claim.attester.lower() not in allowlist.attesters:
        findings.append(
            Finding("unapproved-attester", f"attester {claim.attester} is not on the allowlist")
        )
    if claim.runtime_id.lower() not in allowlist.measurements:
        findings.append(
            Finding("unapproved-measurement", f"measurement {claim.runtime_id} is not approved")
        )
    for name, value in (
        ("batch_id", m["batch_id"]),
        ("model_id", m["model_id"]),
        ("runtime_id", m["runtime_id"]),
        ("row_count", m["row_count"]),
    ):
        if getattr(claim, name) != value:
            findings.append(
                Finding("claim-mismatch", f"claim {name} {getattr(claim, name)} ≠ manifest {value}")
            )
    derived = derive_batch_id(
        model_id=m["model_id"],
        dataset_id=m["dataset_id"],
        requester=m["requester"],
        chain_id=int(m["domain"]["chain_id"]),
        job=m["job"],
    )
    if derived != claim.batch_id:
        findings.append(
            Finding("batch-id", f"claim batch id {claim.batch_id} is not this job's {derived}")
        )

    # -- the sample ---------------------------------------------------------------------------
    secret = policy.verifier_secret if policy.verifier_secret is not None else os.urandom(32)
    sample = _draw_sample(claim.batch_root, secret, batch.row_count, policy.sample_rate)
    payload = None
    if len(sample):
        try:
            data = _model_bytes(batch, hub)
            payload = ModelPayload(batch.model_id, policy.session_config, data)
        except HubError as exc:
            findings.append(Finding("model-unavailable", str(exc)))

    # -- the records ------------------------------------------------------------------------------
    specs = batch.tensor_specs()
    checks = []
    for part in batch.partitions:
        lo, hi = part["offset"], part["offset"] + part["rows"]
        rows = tuple(int(r) for r in sample[(sample >= lo) & (sample < hi)])
        checks.append(
            _PartitionCheck(
                batch.batch_id,
                batch.model_id,
                batch.runtime_id,
                part,
                specs,
                rows,
                policy.rtol,
                policy.atol,
            )
        )
    results = list(_run_checks(batch, checks, payload, client, progress))

    seen: list[np.ndarray] = []
    max_err = 0.0
    roots = []
    for part, (part_findings, row_index, err) in zip(batch.partitions, results, strict=True):
        findings.extend(part_findings)
        seen.append(row_index)
        max_err = max(max_err, err)
        roots.append(bytes.fromhex(part["root"][2:]))
    all_rows = np.concatenate(seen) if seen else np.zeros(0, np.uint64)
    findings.extend(_row_set_findings(all_rows, batch.row_count))

    if roots:
        tree = MerkleTree.from_leaf_hashes(np.frombuffer(b"".join(roots), np.uint8).reshape(-1, 32))
        if _hex(tree.root) != claim.batch_root:
            findings.append(
                Finding(
                    "batch-root-mismatch",
                    f"partition roots give {_hex(tree.root)}, the claim signs {claim.batch_root}",
                )
            )
    if sum(p["rows"] for p in batch.partitions) != batch.row_count:
        findings.append(
            Finding("claim-mismatch", "partition row counts do not add up to the claimed row count")
        )

    n, k_values = batch.row_count, sorted({1, 10, 100, max(1, batch.row_count // 100)})
    verdict = Verdict(
        passed=not findings,
        batch_id=batch.batch_id,
        artifact_id=batch.artifact_id,
        row_count=n,
        rows_checked=len(all_rows),
        findings=findings,
        sample_size=len(sample),
        sampled_rows=[int(r) for r in sample],
        seed_commitment=_hex(keccak256(keccak256(bytes.fromhex(claim.batch_root[2:]) + secret))),
        max_abs_error=max_err,
        detection={f"k={k}": detection_probability(n, len(sample), k) for k in k_values},
        seconds=time.perf_counter() - started,
    )
    log.info("%s", verdict.summary())
    return verdict


def _model_bytes(batch: AttestedBatch, hub: Hub) -> bytes:
    """The model, from the batch's own store if it is there, else from the hub."""
    if batch.store.has(MODELS, batch.model_id):
        try:
            return batch.store.get(MODELS, batch.model_id)
        except ArtifactError as exc:
            log.warning("model copy beside the batch is unusable (%s); trying the hub", exc)
    return hub.blob(batch.model_id)


def _run_checks(
    batch: AttestedBatch,
    checks: list[_PartitionCheck],
    payload: ModelPayload | None,
    client: Any,
    progress: bool,
):
    """Yield each partition's check result in partition order, in-process or on Dask."""
    bar = tqdm(
        total=len(checks), desc=f"verify {batch.batch_id[:10]}", unit="part", disable=not progress
    )
    try:
        if client is None:
            for check in checks:
                yield _check_one(batch, check, payload)
                bar.update(1)
            return
        payload_future = client.scatter(payload, broadcast=True, hash=False) if payload else None
        futures = []
        for check in checks:
            data = _read_or_none(batch, check.meta["index"])
            if data is None:
                futures.append(None)
                continue
            futures.append(
                client.submit(
                    check_partition,
                    check,
                    client.scatter(data, hash=False),  # data, not part of the task graph
                    payload_future,
                    key=f"verify-{batch.batch_id[2:10]}-{check.meta['index']:05d}",
                    pure=False,
                )
            )
        for check, future in zip(checks, futures, strict=True):
            yield _missing(check) if future is None else future.result()
            bar.update(1)
    finally:
        bar.close()


def _read_or_none(batch: AttestedBatch, index: int) -> bytes | None:
    try:
        return batch.partition_bytes(index, check=False)
    except ArtifactError:
        return None


def _missing(check: _PartitionCheck):
    return (
        [
            Finding(
                "records-unreadable",
                f"{check.meta['path']} is missing",
                partition=check.meta["index"],
            )
        ],
        np.zeros(0, np.uint64),
        0.0,
    )


def _check_one(batch: AttestedBatch, check: _PartitionCheck, payload: ModelPayload | None):
    data = _read_or_none(batch, check.meta["index"])
    return _missing(check) if data is None else check_partition(check, data, payload)


def _row_set_findings(rows: np.ndarray, row_count: int, limit: int = 10_000) -> list[Finding]:
    """Missing, duplicated and out-of-range row indices, each named."""
    findings: list[Finding] = []
    rows = rows.astype(np.int64)
    outside = rows[(rows < 0) | (rows >= row_count)]
    for r in np.unique(outside)[:limit]:
        findings.append(Finding("unexpected-row", f"row {r} is outside 0..{row_count - 1}", int(r)))
    inside = rows[(rows >= 0) & (rows < row_count)]
    counts = np.bincount(inside, minlength=row_count)
    for r in np.flatnonzero(counts == 0)[:limit]:
        findings.append(Finding("missing-row", f"row {r} is missing from the records", int(r)))
    for r in np.flatnonzero(counts > 1)[:limit]:
        findings.append(Finding("duplicate-row", f"row {r} appears {counts[r]} times", int(r)))
    return findings
