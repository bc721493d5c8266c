"""Verified batch inference: load → infer → attest per partition on Dask, then sign.

:func:`run_verified_inference` is the composition the CLI and notebooks call. Each
partition is one task (:func:`run_partition`, on a Dask worker or in this process): it
reads its rows once, hashes them (the input root's leaves), runs the model, hashes the
outputs, builds the leaves and the partition tree, and writes its records (then a small
meta file that marks it done) straight into the store. A leaf names no batch, so no
partition waits for another: only the input root (built by one worker from every
partition's input leaves), the batch id it decides, the batch tree and the claim need
them all. Until the batch id is known a partition's records are staged in the run's own
folder, keyed by what decides the batch id except the input root (the model and
runtime, the data's content fingerprint, the requester, the claim domain, the job and
how the rows are run) and by the attester; they are then moved into the batch's folder.
Each staged meta carries an HMAC keyed from the attester's own signature, so a partition
that whoever shares the store planted is run again, never signed. Only metadata comes
back to the caller, which never holds a row's bytes; the dataset itself is stored once
beside the batch (records hold no inputs). An interrupted run loses nothing: running the
same job again skips finished partitions and gives the same batch root.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm import tqdm  # plain bars: tqdm.auto warns in every notebook without ipywidgets

from ogkit.attest import (
    Attester,
    BatchClaim,
    ClaimDomain,
    attest_partition,
    derive_batch_id,
    execution_hash,
    is_hex32,
)
from ogkit.batch import (
    SCHEMA,
    AttestedBatch,
    BatchManifest,
    BatchStaging,
    InputData,
    PartitionMeta,
    PartitionResult,
    TensorMeta,
    execution_spec,
    load_batch,
    records_input_leaves,
    records_to_parquet,
    store_batch,
)
from ogkit.checks import DataCheckPolicy, InputSuite
from ogkit.compute import completed, worker_runs
from ogkit.crypto.keccak import keccak256
from ogkit.crypto.merkle import MerkleTree, idle_threads, input_leaf_hashes, merkle_root
from ogkit.dataset import (
    DatasetCommitment,
    DataSource,
    InputPlan,
    Partition,
    bind_features,
    open_source,
    plan_inputs,
    sorted_leaf_run,
    split_partitions,
    store_dataset,
)
from ogkit.errors import ArtifactError, ConfigError, InferenceError, OgkitError
from ogkit.hub.hub import MODELS, Hub
from ogkit.hub.manifest import canonical_json
from ogkit.load import LoadedModel, ModelPayload, SessionConfig, load_model, worker_model
from ogkit.store import ContentStore

if TYPE_CHECKING:
    from distributed import Client as DaskClient
from ogkit.version import __version__

__all__ = [
    "PartitionTask",
    "run_partition",
    "run_verified_inference",
]

log = logging.getLogger(__name__)

# How a verifier compares re-executed outputs with the node's (spec §9): bit-exact, with
# each sampled row re-run inside its original mini-batch. Bound into the batch id.
COMPARISON = {"float_ulp": 0}

PARTITION_TARGET_BYTES = 4 << 20  # input bytes per partition: small enough to spread work
MAX_PARTITION_ROWS = 50_000


@dataclass(frozen=True)
class PartitionTask:
    """One partition to run: where its rows are and how (picklable for Dask)."""

    run_key: str  # the run's staging folder (see :func:`_run_key`)
    runtime_id: str
    partition: Partition
    source: DataSource
    source_offset: int  # where the partition starts in ``source`` (0 for shipped slices)
    plan: InputPlan
    batch_size: int
    mac_key: bytes | None = field(default=None, repr=False)  # authenticates staged metas


def run_partition(
    task: PartitionTask,
    payload: ModelPayload,
    store: ContentStore | None = None,
    source: DataSource | None = None,
) -> PartitionResult:
    """Read, hash, run and attest one partition (on a worker), all of it in one pass.

    With ``store`` the worker writes the partition's records and then its meta file into
    the run's staging folder itself and returns only the metadata (root, counts, sha256,
    timings) and the rows' input-root leaves: no row's bytes travel back to the caller.
    ``source`` (else ``task.source``) holds the rows: a slice of in-memory data shipped
    to the worker on its own."""
    t0 = time.perf_counter()
    c0 = time.thread_time()
    model = _worker_model(payload, task.runtime_id)
    part = task.partition
    feeds = task.plan.feeds(source or task.source, task.source_offset, part.rows)
    t1 = time.perf_counter()
    from ogkit.crypto.encoding import tensor_row_hashes

    input_hashes = tensor_row_hashes(feeds)
    rows = np.arange(part.offset, part.offset + part.rows, dtype=np.uint64)
    input_leaves = sorted_leaf_run(input_leaf_hashes(rows, input_hashes))
    t2 = time.perf_counter()
    outputs = model.run(feeds, task.batch_size)
    del feeds
    t3 = time.perf_counter()
    att = attest_partition(offset=part.offset, feeds={}, outputs=outputs, input_hashes=input_hashes)
    t4 = time.perf_counter()
    records = records_to_parquet(att, outputs)
    sha256 = hashlib.sha256(records).hexdigest()
    t5 = time.perf_counter()
    result = PartitionResult(
        index=part.index,
        offset=part.offset,
        rows=part.rows,
        root="0x" + att.root.hex(),
        sha256=sha256,
        records=records,
        worker=f"{socket.gethostname()}:{os.getpid()}",
        output_shapes={k: list(v.shape[1:]) for k, v in outputs.items()},
    )
    if store is not None:
        BatchStaging(store, task.run_key, clean=False, mac_key=task.mac_key).write(result)
        result.records = None
    result.seconds = {
        "read": t1 - t0,
        "commit": t2 - t1,
        "infer": t3 - t2,
        "attest": t4 - t3,
        "encode": t5 - t4,
        "write": time.perf_counter() - t5,
        "cpu": time.thread_time() - c0,
    }
    result.input_leaves = input_leaves
    return result


def _worker_model(payload: ModelPayload, runtime_id: str) -> LoadedModel:
    model = worker_model(payload)
    if model.runtime_id != runtime_id:
        raise InferenceError(
            f"worker {socket.gethostname()} runs runtime {model.runtime_id}, not the job's "
            f"{runtime_id}: workers must share onnxruntime version and options"
        )
    return model


def _finished_leaves(store: ContentStore, meta: dict[str, Any]) -> np.ndarray:
    """The input-root leaves of a partition an earlier run finished, from its records'
    input hashes (runs on a worker when the store is shared)."""
    data = store.read_bytes(meta["path"])
    return sorted_leaf_run(records_input_leaves(data, meta["offset"], meta["rows"]))


def _input_root(parts: Sequence[Any]) -> tuple[str, list[PartitionResult | None]]:
    """The input root over every partition's input leaves, in partition order, and each
    fresh partition's result without its leaves (runs on a worker). ``parts`` holds a
    :class:`PartitionResult` for a partition this run attested, the leaves for one an
    earlier run finished."""
    leaves = [p.input_leaves if isinstance(p, PartitionResult) else p for p in parts]
    merged = np.concatenate(leaves)
    root = "0x" + merkle_root(merged, threads=idle_threads(), sorted_runs=True).hex()
    slim = [
        replace(p, input_leaves=None) if isinstance(p, PartitionResult) else None for p in parts
    ]
    return root, slim


def _run_key(
    loaded: LoadedModel,
    source: DataSource,
    requester: str,
    domain: ClaimDomain,
    job: str,
    execution: Mapping[str, Any],
    attester: str,
) -> str:
    """The staging folder's name of a run: ``run-`` + keccak256 of everything the batch
    id derives from except the input root, with the data's content fingerprint (which
    decides the input root under the execution's input plan), the runtime and the
    attester in its place. The same job on the same bytes, attested by the same key,
    finds its finished partitions again; another key's run never shares its folder."""
    doc = {
        "schema": SCHEMA,
        "attester": attester.lower(),
        "model_id": loaded.model_id,
        "runtime_id": loaded.runtime_id,
        "dataset": source.dataset_id,
        "requester": requester.lower(),
        "chain_id": domain.chain_id,
        "verifying_contract": domain.verifying_contract.lower(),
        "job": job,
        "execution": execution_hash(execution),
    }
    return "run-" + keccak256(canonical_json(doc)).hex()


def _staging_mac_key(attester: Attester, run_key: str) -> bytes:
    """The key that authenticates this run's staged partitions: the hash of the
    attester's signature over a claim of no batch (zero root, no rows, chain id 0, the
    zero contract), which names the run key. Only the attester's key can make it and a
    deterministic (RFC 6979) signer makes it again after a restart, so a resumed run
    adopts only partitions its own key staged; a signer that is not deterministic just
    never resumes. The signature itself is never stored or shown."""
    zero = "0x" + "00" * 32
    claim = BatchClaim(
        batch_id="0x" + keccak256(b"ogkit.staging.v1:" + run_key.encode()).hex(),
        model_id=zero,
        runtime_id=zero,
        batch_root=zero,
        row_count=0,
        requester="0x" + "00" * 20,
        timestamp=0,
        attester=attester.address,
    )
    signature = attester.sign_claim(claim, ClaimDomain(chain_id=0))
    return keccak256(b"ogkit.staging-mac.v1" + bytes.fromhex(signature.removeprefix("0x")))


def _own_artifact(
    store: ContentStore,
    pointer: str,
    batch_id: str,
    attester: Attester,
    domain: ClaimDomain,
    staging: BatchStaging,
) -> AttestedBatch | None:
    """The finished artefact ``pointer`` names if it is this job's batch signed by this
    attester for this domain, over exactly the partitions this run's key staged in
    ``staging`` (their MAC-checked metas: root, records path and sha256), else None (a
    pointer whoever shares the store rewrote, a manifest reusing this node's claim over
    other records, or another node's run of the same batch id): the job then runs, or
    signs again what it staged, and writes its own."""
    try:
        batch = load_batch(pointer, store)
        claim = batch.manifest.claim
        ok = (
            batch.batch_id == batch_id
            and claim.batch_id == batch_id
            and claim.attester.lower() == attester.address.lower()
            and batch.manifest.domain == domain
            and claim.recover_signer(domain, batch.manifest.signature).lower()
            == attester.address.lower()
        )
        for part in batch.manifest.partitions if ok else ():
            meta = staging.finished(part.index)
            ok = (
                ok
                and meta is not None
                and (meta["offset"], meta["rows"], meta["root"], meta["path"], meta["sha256"])
                == (part.offset, part.rows, part.root, part.path, part.sha256)
            )
    except (OgkitError, ValueError, TypeError, KeyError) as exc:
        log.warning("ignoring the artefact %s that batch %s points to (%s)", pointer, batch_id, exc)
        return None
    if not ok:
        log.warning(
            "ignoring the artefact %s that batch %s points to: it is not this job's batch "
            "signed by %s",
            pointer,
            batch_id,
            attester.address,
        )
        return None
    return batch


def _default_partition_rows(plan: InputPlan) -> int:
    row_bytes = sum(math.prod(b.row_shape) * np.dtype(b.dtype).itemsize for b in plan.bindings)
    return max(1, min(MAX_PARTITION_ROWS, PARTITION_TARGET_BYTES // max(row_bytes, 1)))


def _check_commitment(commitment: DatasetCommitment | None, computed: DatasetCommitment) -> None:
    if commitment is not None and commitment != computed:
        raise ConfigError(
            f"the data does not match the requester's commitment (input root "
            f"{commitment.input_root}, {commitment.row_count:,} rows; these data give "
            f"{computed.input_root}, {computed.row_count:,} rows): ask the requester for the "
            "data it committed to"
        )


def _run_on_dask(
    tasks: Sequence[PartitionTask],
    partitions: Sequence[Partition],
    metas: Mapping[int, dict[str, Any]],
    payload: ModelPayload,
    dask: DaskClient,
    store: ContentStore,
    run: BatchStaging,
    bar: tqdm,
    stages: dict[str, float],
) -> tuple[str, dict[int, PartitionResult]]:
    """Every pending partition as one task on the workers, and the input root built by
    one worker from every partition's input leaves (the finished partitions' from their
    records). A shared store is written by the workers and only metadata comes back; a
    store in this process's memory gets the records from here."""
    payload_future = dask.scatter(payload, broadcast=True, hash=False)
    shared = store.shared
    tag = run.prefix.rsplit("-", 1)[-1][:8]
    files = tasks[0].source.paths != () if tasks else True
    # One map: the whole graph goes to the scheduler in one message (a submit per task
    # cost the client about 2.5 ms each).
    bare = [t if files else replace(t, source=replace(t.source, frame=None)) for t in tasks]
    if not files:
        bare = [replace(t, source=replace(t.source, arrays=None)) for t in bare]
    sources = [None] * len(tasks) if files else dask.scatter([t.source for t in tasks], hash=False)
    keys = [f"attest-{tag}-{t.partition.index:05d}" for t in tasks]
    mapped = []
    for lo, hi, worker in worker_runs(dask, len(tasks), spread=files):
        mapped += dask.map(
            run_partition,
            bare[lo:hi],
            [payload_future] * (hi - lo),
            [store if shared else None] * (hi - lo),
            sources[lo:hi],
            key=keys[lo:hi],
            workers=worker,
            allow_other_workers=worker is not None,
            pure=False,
            retries=0,
        )
    futures = {t.partition.index: f for t, f in zip(tasks, mapped, strict=True)}
    results: dict[int, PartitionResult] = {}
    root_future = None
    try:
        if shared:
            parts = [
                futures[p.index]
                if p.index in futures
                else dask.submit(
                    _finished_leaves,
                    store,
                    metas[p.index],
                    key=f"resumed-leaves-{tag}-{p.index:05d}",
                    pure=False,
                )
                for p in partitions
            ]
            root_future = dask.submit(_input_root, parts, key=f"input-root-{tag}", pure=False)
            for future in completed(dask, futures.values()):
                if future.status != "finished":
                    future.result()  # raises the task's error
                bar.update(1)
            stages["partitions"] = time.perf_counter()
            root, slim = root_future.result()
            for p, result in zip(partitions, slim, strict=True):
                if result is not None:
                    results[p.index] = result
            return root, results
        for _, result in completed(dask, futures.values(), with_results=True):
            run.write(result)
            result.records = None
            results[result.index] = result
            bar.update(1)
        stages["partitions"] = time.perf_counter()
        parts = [
            results[p.index] if p.index in results else _finished_leaves(store, metas[p.index])
            for p in partitions
        ]
        root, _ = _input_root(parts)
        for result in results.values():
            result.input_leaves = None
        return root, results
    finally:
        pending = [f for f in futures.values() if not f.done()]
        if root_future is not None and not root_future.done():
            pending.append(root_future)
        if pending:
            dask.cancel(pending)


def _run_here(
    tasks: Sequence[PartitionTask],
    partitions: Sequence[Partition],
    metas: Mapping[int, dict[str, Any]],
    payload: ModelPayload,
    store: ContentStore,
    bar: tqdm,
    stages: dict[str, float],
) -> tuple[str, dict[int, PartitionResult]]:
    """The same as :func:`_run_on_dask`, one partition after another in this process."""
    results: dict[int, PartitionResult] = {}
    for task in tasks:
        results[task.partition.index] = run_partition(task, payload, store)
        bar.update(1)
    stages["partitions"] = time.perf_counter()
    parts = [
        results[p.index] if p.index in results else _finished_leaves(store, metas[p.index])
        for p in partitions
    ]
    root, slim = _input_root(parts)
    return root, {p.index: r for p, r in zip(partitions, slim, strict=True) if r is not None}


def run_verified_inference(
    model: str | Path | LoadedModel,
    data: Any,
    *,
    attester: Attester,
    requester: str,
    dask: DaskClient | None = None,
    hub: Hub | None = None,
    store: ContentStore | str | None = None,
    commitment: DatasetCommitment | None = None,
    input_map: Mapping[str, str | Sequence[str]] | None = None,
    batch_size: int = 1024,
    partition_rows: int | None = None,
    job: str = "default",
    domain: ClaimDomain | None = None,
    session_config: SessionConfig | None = None,
    input_suite: InputSuite | None = None,
    data_checks: DataCheckPolicy | None = None,
    progress: bool = True,
) -> AttestedBatch:
    """Run ``model`` over ``data`` and return the signed, stored :class:`AttestedBatch`.

    ``dask`` is a Dask client (see :func:`ogkit.get_client`); without one the
    partitions run in this process. The models come from ``hub`` (a model given by
    reference needs one), the batch goes to ``store`` (default: the hub's store).

    ``commitment`` is the requester's :class:`~ogkit.dataset.DatasetCommitment` of
    ``data`` (:func:`ogkit.commit_dataset`); the node recomputes it from the data and
    refuses to attest if they differ. Without one the node computes it. The batch id is
    derived from the model, the commitment, the requester, the claim ``domain`` (chain
    and settlement contract), ``job`` and how the
    rows are run (partition and mini-batch sizes, comparison policy): running the same
    job again resumes it (or returns the finished artefact), and gives the same root.

    With ``input_suite`` the data first passes great-expectations checks
    (:func:`ogkit.checks.check_inputs`); the result is recorded in the manifest, and a
    failure the ``data_checks`` policy blocks (default: any) stops the job before work.
    """
    begun = time.perf_counter()
    if store is None and hub is None:
        raise ConfigError("run_verified_inference needs store= (a ContentStore or URL) or hub=")
    store = store if isinstance(store, ContentStore) else ContentStore(store or hub.store.url)
    domain = domain or ClaimDomain()
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    if isinstance(model, LoadedModel):
        loaded = model
    elif hub is None and not str(model).endswith(".onnx"):
        raise ConfigError(f"model {model!r} is a hub reference: pass hub=")
    else:
        loaded = load_model(model, hub=hub, config=session_config)
    source = open_source(data)
    input_map = bind_features(loaded, input_map)
    plan = plan_inputs(source, loaded.inputs, input_map)  # every schema problem, before work
    if source.n_rows == 0:
        raise ConfigError(f"the dataset {source.describe()} has no rows")
    input_checks = None
    if input_suite is not None:
        from ogkit.checks import check_inputs, enforce

        input_checks = enforce(check_inputs(source, input_suite), data_checks)
    partition_rows = partition_rows or _default_partition_rows(plan)
    batch_size = loaded.fixed_batch or batch_size  # the mini-batch the rows really run in
    payload = ModelPayload(loaded.model_id, loaded.config, loaded.model_bytes)
    execution = execution_spec(
        partition_rows=partition_rows,
        batch_size=batch_size,
        comparison=COMPARISON,
        inputs=[{**b.to_dict(), "name": b.input} for b in plan.bindings],
        outputs=[{"name": o.name, "dtype": o.dtype} for o in loaded.outputs],
    )
    job_params = {
        "runtime_id": loaded.runtime_id,
        "partition_rows": partition_rows,
        "inputs": [b.to_dict() for b in plan.bindings],
    }
    run_key = _run_key(loaded, source, requester, domain, job, execution, attester.address)
    mac_key = _staging_mac_key(attester, run_key)
    run = BatchStaging(store, run_key, mac_key=mac_key)
    run.check_job({"run": run_key, **job_params})
    known = run.batch_pointer()  # the batch an earlier run of these bytes was moved into
    if known is not None and not is_hex32(known):
        log.warning("ignoring the batch pointer %r in %s", known[:80], run.prefix)
        known = None
    done = BatchStaging(store, known, mac_key=mac_key) if known is not None else None
    if done is not None and (pointer := done.artifact_pointer()) is not None:
        batch = _own_artifact(store, pointer, known, attester, domain, done)
        if batch is not None:
            _check_commitment(
                commitment, DatasetCommitment(batch.manifest.dataset_id, batch.row_count)
            )
            log.info("batch %s was already attested as %s", known, pointer)
            return batch

    partitions = split_partitions(source.n_rows, partition_rows)
    metas: dict[int, dict[str, Any]] = {}
    for p in partitions:
        meta = done.finished(p.index) if done is not None else None
        if (meta := meta or run.finished(p.index)) is not None:
            metas[p.index] = meta
    resumed = len(metas)
    if resumed:
        log.info("resuming job %s: %d of %d partitions already done", job, resumed, len(partitions))
    tasks = [
        PartitionTask(
            run_key=run_key,
            mac_key=mac_key,
            runtime_id=loaded.runtime_id,
            partition=p,
            source=source if source.paths else source.slice_for_task(p.offset, p.rows),
            source_offset=p.offset if source.paths else 0,
            plan=plan,
            batch_size=batch_size,
        )
        for p in partitions
        if p.index not in metas
    ]

    # The inputs travel with the batch as the dataset itself, stored once by content id
    # (records hold only hashes and outputs); written while the partitions run.
    from concurrent.futures import ThreadPoolExecutor

    stash_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ogkit-dataset")
    stashed = stash_pool.submit(store_dataset, store, source, plan)
    stash_pool.shutdown(wait=False)

    started = time.perf_counter()
    stages = {"prepare": started}
    bar = tqdm(
        total=len(partitions),
        initial=resumed,
        desc=f"infer+attest {job[:24]}",
        unit="part",
        disable=not progress,
    )
    try:
        if dask is not None:
            root, fresh = _run_on_dask(
                tasks, partitions, metas, payload, dask, store, run, bar, stages
            )
        else:
            root, fresh = _run_here(tasks, partitions, metas, payload, store, bar, stages)
        stages["input_root"] = time.perf_counter()
    except OgkitError:
        raise
    except Exception as exc:
        raise InferenceError(
            f"job {job!r} failed after {bar.n} of {len(partitions)} partitions: {exc}. "
            f"Finished partitions are kept in {store.url}/{run.prefix}; run the same job "
            "again to resume"
        ) from exc
    finally:
        bar.close()
    computed = DatasetCommitment(root, source.n_rows)
    if commitment is not None and commitment != computed:
        run.remove()  # records of rows the requester did not commit to
        _check_commitment(commitment, computed)
    batch_id = derive_batch_id(
        model_id=loaded.model_id,
        dataset_id=computed.input_root,
        requester=requester,
        chain_id=domain.chain_id,
        verifying_contract=domain.verifying_contract,
        job=job,
        execution=execution_hash(execution),
    )
    if known is not None and known != batch_id:
        raise InferenceError(
            f"the staged run {store.url}/{run.prefix} belongs to batch {known}, but these "
            f"data give batch {batch_id}; delete that folder and run the job again"
        )
    staging = BatchStaging(store, batch_id, mac_key=mac_key)
    if (pointer := staging.artifact_pointer()) is not None and (
        finished := _own_artifact(store, pointer, batch_id, attester, domain, staging)
    ) is not None:
        # The same rows were attested from other bytes (another file format, say).
        log.info("batch %s was already attested as %s", batch_id, pointer)
        run.remove()
        return finished
    staging.check_job({"batch_id": batch_id, **job_params})
    run.set_batch_pointer(batch_id)
    for p in partitions:
        meta = metas.get(p.index) or fresh[p.index].meta(run.records_path(p.index))
        metas[p.index] = staging.adopt(run, meta)
    stages["move"] = time.perf_counter()
    dataset_object, dataset_format = stashed.result()
    wall = time.perf_counter() - started
    stages["dataset"] = time.perf_counter()
    # Seconds each stage took, in order: up to the first task, the partitions, the input
    # root after them, moving the records, then waiting for the stored dataset.
    seconds, last = {}, begun
    for name, at in stages.items():
        seconds[name], last = at - last, at
    ordered = [metas[p.index] for p in partitions]
    roots = np.array([list(bytes.fromhex(m["root"][2:])) for m in ordered], dtype=np.uint8)
    batch_root = "0x" + MerkleTree.from_leaf_hashes(roots).root.hex()
    claim = BatchClaim(
        batch_id=batch_id,
        model_id=loaded.model_id,
        runtime_id=loaded.runtime_id,
        batch_root=batch_root,
        row_count=source.n_rows,
        requester=requester,
        timestamp=int(time.time()),
        attester=attester.address,
    )
    signature = attester.sign_claim(claim, domain)
    specs = {b.input: b for b in plan.bindings}
    out_specs = {o.name: o for o in loaded.outputs}
    manifest = BatchManifest(
        ogkit_version=__version__,
        batch_id=batch_id,
        model_id=loaded.model_id,
        model_ref=loaded.manifest.ref if loaded.manifest else None,
        runtime_id=loaded.runtime_id,
        fingerprint=loaded.fingerprint.to_dict(),
        dataset_id=computed.input_root,
        dataset={"description": source.label(), "fingerprint": source.dataset_id},
        input_data=InputData(dataset_object, dataset_format, 0, source.n_rows),
        job=job,
        requester=claim.requester,
        domain=domain,
        row_count=source.n_rows,
        batch_root=batch_root,
        partition_rows=partition_rows,
        batch_size=batch_size,
        comparison=dict(COMPARISON),
        inputs=tuple(
            TensorMeta(t.name, specs[t.name].dtype, specs[t.name].row_shape, specs[t.name].columns)
            for t in loaded.inputs
        ),
        outputs=tuple(
            TensorMeta(
                o,
                out_specs[o].dtype,
                tuple(_output_row_shape(store, ordered[0], o, out_specs[o])),
            )
            for o in loaded.output_names
        ),
        partitions=tuple(
            PartitionMeta(m["index"], m["offset"], m["rows"], m["root"], m["path"], m["sha256"])
            for m in ordered
        ),
        claim=claim,
        signature=signature,
        attester=attester.evidence(loaded.runtime_id),
        data_checks=input_checks.to_dict() if input_checks is not None else None,
        run_stats={
            "wall_seconds": wall,
            "stages": seconds,
            "resumed_partitions": resumed,
            "partitions": [
                {"index": m["index"], "rows": m["rows"], "worker": m["worker"], **m["seconds"]}
                for m in ordered
            ],
        },
    )
    # The model travels with the batch, so a verifier can re-execute from this store alone.
    store.put(MODELS, loaded.model_bytes)
    batch = store_batch(manifest, store)
    artifact_id = batch.artifact_id
    staging.set_artifact_pointer(artifact_id)
    log.info(
        "attested batch %s: %d rows, root %s, artefact %s",
        batch_id,
        source.n_rows,
        batch_root,
        artifact_id,
    )
    return batch


def _output_row_shape(store: ContentStore, meta: dict[str, Any], name: str, spec) -> list[int]:
    """An output's per-row shape: from the signature, or from the records if symbolic."""
    shape = spec.shape[1:]
    if all(isinstance(d, int) for d in shape):
        return list(shape)
    if name in meta.get("output_shapes", {}):  # the worker read it off its outputs
        return list(meta["output_shapes"][name])
    from ogkit.batch import parquet_table

    table = parquet_table(store.read_bytes(meta["path"]), [f"output.{name}"])
    if table.num_columns != 1:
        raise ArtifactError(f"records {meta['path']} lack the column output.{name}")
    col = table.column(0).type
    return [col.list_size] if hasattr(col, "list_size") else []
