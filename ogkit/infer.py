"""Verified batch inference: load → infer → attest per partition on Dask, then sign.

:func:`run_verified_inference` is the composition the CLI and notebooks call. On Dask
each partition is read once by :func:`infer_partition` (input hashes, the model run,
output hashes) while one worker builds the input root, which decides the batch id;
then :func:`attest_inferred` builds the leaves and the partition tree where the
partition's results are, serialises its records and writes them (then a small meta
file that marks the partition done) straight into the store. Without Dask,
:func:`run_partition` does all of it in this process. Only metadata comes back to the
caller, which never holds a row's bytes; the dataset itself is stored once beside the
batch (records hold no inputs). An interrupted run loses nothing: running the same job
again skips finished partitions and gives the same batch root.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import socket
import time
from collections.abc import Iterator, Mapping, Sequence
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
)
from ogkit.batch import (
    AttestedBatch,
    BatchManifest,
    BatchStaging,
    InputData,
    PartitionMeta,
    PartitionResult,
    TensorMeta,
    execution_spec,
    load_batch,
    records_to_parquet,
    store_batch,
)
from ogkit.checks import DataCheckPolicy, InputSuite
from ogkit.crypto.merkle import MerkleTree, input_leaf_hashes
from ogkit.dataset import (
    DatasetCommitment,
    DataSource,
    InputPlan,
    Partition,
    bind_features,
    commit_inputs,
    open_source,
    plan_inputs,
    split_partitions,
    store_dataset,
)
from ogkit.errors import ConfigError, InferenceError, OgkitError
from ogkit.hub.hub import MODELS, Hub
from ogkit.load import LoadedModel, ModelPayload, SessionConfig, load_model, worker_model
from ogkit.store import ContentStore

if TYPE_CHECKING:
    from distributed import Client as DaskClient
from ogkit.version import __version__

__all__ = [
    "Inferred",
    "PartitionTask",
    "attest_inferred",
    "infer_partition",
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
    batch_id: str
    model_id: str
    runtime_id: str
    partition: Partition
    source: DataSource
    source_offset: int  # where the partition starts in ``source`` (0 for shipped slices)
    plan: InputPlan
    batch_size: int
    input_hashes: np.ndarray | None = field(default=None, repr=False, compare=False)


def run_partition(
    task: PartitionTask,
    payload: ModelPayload,
    store: ContentStore | None = None,
    input_hashes: np.ndarray | None = None,
) -> PartitionResult:
    """Infer and attest one partition (on a worker).

    With ``store`` the worker writes the partition's records and then its meta file into
    the batch's staging folder itself and returns only the metadata (root, counts,
    sha256, timings): no row's bytes travel back to the caller. ``input_hashes`` (else
    ``task.input_hashes``) are the rows' input hashes from the dataset commitment."""
    t0 = time.perf_counter()
    model = _worker_model(payload, task.runtime_id)
    part = task.partition
    feeds = task.plan.feeds(task.source, task.source_offset, part.rows)
    t1 = time.perf_counter()
    outputs = model.run(feeds, task.batch_size)
    t2 = time.perf_counter()
    att = attest_partition(
        offset=part.offset,
        feeds=feeds,
        outputs=outputs,
        input_hashes=input_hashes if input_hashes is not None else task.input_hashes,
    )
    t3 = time.perf_counter()
    return _finish(task, att, outputs, store, {"read": t1 - t0, "infer": t2 - t1}, t3, t3 - t2)


def _worker_model(payload: ModelPayload, runtime_id: str) -> LoadedModel:
    model = worker_model(payload)
    if model.runtime_id != runtime_id:
        raise InferenceError(
            f"worker {socket.gethostname()} runs runtime {model.runtime_id}, not the job's "
            f"{runtime_id}: workers must share onnxruntime version and options"
        )
    return model


def _finish(
    task: PartitionTask,
    att: Any,
    outputs: Mapping[str, np.ndarray],
    store: ContentStore | None,
    seconds: dict[str, float],
    started: float,
    attest_seconds: float,
) -> PartitionResult:
    """Serialise one attested partition's records and (with ``store``) write them."""
    part = task.partition
    records = records_to_parquet(att, outputs)
    result = PartitionResult(
        index=part.index,
        offset=part.offset,
        rows=part.rows,
        root="0x" + att.root.hex(),
        sha256=hashlib.sha256(records).hexdigest(),
        records=records,
        worker=f"{socket.gethostname()}:{os.getpid()}",
        output_shapes={k: list(v.shape[1:]) for k, v in outputs.items()},
    )
    if store is not None:
        BatchStaging(store, task.batch_id, clean=False).write(result)
        result.records = None
    result.seconds = {
        **seconds,
        "attest": attest_seconds,
        "write": time.perf_counter() - started,
    }
    return result


@dataclass
class Inferred:
    """One partition read once, hashed and run before the batch id is known (on a
    worker): its input hashes and input-root leaves, outputs and output hashes."""

    input_hashes: np.ndarray
    input_leaves: np.ndarray
    outputs: dict[str, np.ndarray]
    output_hashes: np.ndarray
    seconds: dict[str, float]


def infer_partition(
    source: DataSource,
    plan: InputPlan,
    offset: int,
    source_offset: int,
    rows: int,
    payload: ModelPayload,
    runtime_id: str,
    batch_size: int,
) -> Inferred:
    """Read rows ``offset ..`` once, hash their inputs (the dataset commitment's leaves),
    run the model and hash the outputs (runs on a worker; the leaves wait for the batch
    id, which the input root decides)."""
    from ogkit.crypto.encoding import tensor_row_hashes

    t0 = time.perf_counter()
    model = _worker_model(payload, runtime_id)
    feeds = plan.feeds(source, source_offset, rows)
    t1 = time.perf_counter()
    hashes = tensor_row_hashes(feeds)
    leaves = input_leaf_hashes(np.arange(offset, offset + rows, dtype=np.uint64), hashes)
    t2 = time.perf_counter()
    outputs = model.run(feeds, batch_size)
    t3 = time.perf_counter()
    out_hashes = tensor_row_hashes(outputs)
    t4 = time.perf_counter()
    seconds = {"read": t1 - t0, "commit": t2 - t1, "infer": t3 - t2, "hash_outputs": t4 - t3}
    return Inferred(hashes, leaves, outputs, out_hashes, seconds)


def attest_inferred(
    task: PartitionTask, inferred: Inferred, store: ContentStore | None = None
) -> PartitionResult:
    """The leaves and tree of a partition :func:`infer_partition` ran, and its records
    (written by the worker with ``store``, as :func:`run_partition` does)."""
    t0 = time.perf_counter()
    att = attest_partition(
        offset=task.partition.offset,
        feeds={},
        outputs=inferred.outputs,
        input_hashes=inferred.input_hashes,
        output_hashes=inferred.output_hashes,
    )
    t1 = time.perf_counter()
    seconds = dict(inferred.seconds)
    return _finish(task, att, inferred.outputs, store, seconds, t1, t1 - t0)


def _leaves_of(inferred: Inferred) -> np.ndarray:
    return inferred.input_leaves


def _infer_on_dask(
    source: DataSource,
    plan: InputPlan,
    partition_rows: int,
    dask: DaskClient,
    payload_future: Any,
    runtime_id: str,
    batch_size: int,
) -> tuple[DatasetCommitment, list[Any]]:
    """Every partition read once on the workers, its inputs hashed and the model run on
    it while one worker builds the input root from the leaves (the input root decides
    the batch id, which the leaves then need). Returns the commitment and one future of
    :class:`Inferred` per partition, held by the workers."""
    parts = split_partitions(source.n_rows, partition_rows)
    tag = source.dataset_id[2:10]
    files = source.paths != ()
    inferred = [
        dask.submit(
            infer_partition,
            source if files else dask.scatter(source.slice_for_task(p.offset, p.rows), hash=False),
            plan,
            p.offset,
            p.offset if files else 0,
            p.rows,
            payload_future,
            runtime_id,
            batch_size,
            key=f"infer-inputs-{tag}-{p.index:05d}",
            pure=False,
        )
        for p in parts
    ]
    leaves = [
        dask.submit(_leaves_of, f, key=f"input-leaves-{tag}-{i:05d}", pure=False)
        for i, f in enumerate(inferred)
    ]
    root = dask.submit(_tree_root, leaves, key=f"input-root-{tag}", pure=False)
    try:
        value = root.result()
    except OgkitError:
        dask.cancel(inferred)
        raise
    except Exception as exc:
        dask.cancel(inferred)
        raise InferenceError(
            f"reading, hashing or running {source.describe()} failed before anything was "
            f"attested: {exc}; check the data file (nothing was written)"
        ) from exc
    return DatasetCommitment(value, source.n_rows), inferred


def partition_input_hashes(source: DataSource, plan: InputPlan, offset: int, rows: int):
    """The canonical input hashes of rows ``offset ..`` of ``source`` (runs on a worker)."""
    from ogkit.crypto.encoding import tensor_row_hashes

    return tensor_row_hashes(plan.feeds(source, offset, rows))


def _tree_root(leaves: Sequence[np.ndarray]) -> str:
    """The root of one tree over every partition's leaves, in order (runs on a worker)."""
    return "0x" + MerkleTree.from_leaf_hashes(np.concatenate(leaves)).root.hex()


def _commit(source: DataSource, plan: InputPlan) -> tuple[DatasetCommitment, np.ndarray]:
    """The dataset commitment of ``source`` and every row's input hash, in this process
    (reused when the partitions are attested). On Dask, :func:`_infer_on_dask` does this
    on the workers, fused with inference."""
    return commit_inputs(source, plan)


def _default_partition_rows(plan: InputPlan) -> int:
    row_bytes = sum(math.prod(b.row_shape) * np.dtype(b.dtype).itemsize for b in plan.bindings)
    return max(1, min(MAX_PARTITION_ROWS, PARTITION_TARGET_BYTES // max(row_bytes, 1)))


def _run_tasks(
    tasks: Sequence[PartitionTask], payload: ModelPayload, store: ContentStore
) -> Iterator[PartitionResult]:
    """Yield results as partitions finish, in this process (on Dask the partitions were
    inferred by :func:`_infer_on_dask` and are attested by :func:`_attest_on_dask`)."""
    for task in tasks:
        yield run_partition(task, payload, store)


def _attest_on_dask(
    tasks: Sequence[PartitionTask],
    inferred: Sequence[Any],
    client: DaskClient,
    store: ContentStore,
) -> Iterator[PartitionResult]:
    """Yield results as the workers finish each partition's leaves, tree and records
    (written by the worker that holds the partition, unless the store lives in this
    process's memory)."""
    from dask.distributed import as_completed

    worker_store = store if store.shared else None
    futures = [
        client.submit(
            attest_inferred,
            task,
            inferred[task.partition.index],
            worker_store,
            key=f"attest-{task.batch_id[2:10]}-{task.partition.index:05d}",
            pure=False,
            retries=0,
        )
        for task in tasks
    ]
    try:
        for future in as_completed(futures):
            yield future.result()
    finally:
        for future in futures:
            future.cancel()


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
    inferred: list[Any] | None = None  # on Dask: each partition's Inferred, on the workers
    if dask is not None:
        payload_future = dask.scatter(payload, broadcast=True, hash=False)
        computed, inferred = _infer_on_dask(
            source, plan, partition_rows, dask, payload_future, loaded.runtime_id, batch_size
        )
        input_hashes = None
    else:
        computed, input_hashes = _commit(source, plan)
    # (Dask releases the futures when this function's references go.)
    if commitment is not None and commitment != computed:
        raise ConfigError(
            f"the data does not match the requester's commitment (input root "
            f"{commitment.input_root}, {commitment.row_count:,} rows; these data give "
            f"{computed.input_root}, {computed.row_count:,} rows): ask the requester for the "
            "data it committed to"
        )
    execution = execution_spec(
        partition_rows=partition_rows,
        batch_size=batch_size,
        comparison=COMPARISON,
        inputs=[{**b.to_dict(), "name": b.input} for b in plan.bindings],
        outputs=[{"name": o.name, "dtype": o.dtype} for o in loaded.outputs],
    )
    batch_id = derive_batch_id(
        model_id=loaded.model_id,
        dataset_id=computed.input_root,
        requester=requester,
        chain_id=domain.chain_id,
        verifying_contract=domain.verifying_contract,
        job=job,
        execution=execution_hash(execution),
    )
    staging = BatchStaging(store, batch_id)
    if (pointer := staging.artifact_pointer()) is not None:
        log.info("batch %s was already attested as %s", batch_id, pointer)
        return load_batch(pointer, store)
    staging.check_job(
        {
            "batch_id": batch_id,
            "runtime_id": loaded.runtime_id,
            "partition_rows": partition_rows,
            "inputs": [b.to_dict() for b in plan.bindings],
        }
    )

    # The inputs travel with the batch as the dataset itself, stored once by content id
    # (records hold only hashes and outputs); written while the partitions run.
    from concurrent.futures import ThreadPoolExecutor

    stash_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ogkit-dataset")
    stashed = stash_pool.submit(store_dataset, store, source, plan)
    stash_pool.shutdown(wait=False)

    partitions = split_partitions(source.n_rows, partition_rows)
    metas: dict[int, dict[str, Any]] = {}
    for p in partitions:
        if (meta := staging.finished(p.index)) is not None:
            metas[p.index] = meta
    resumed = len(metas)
    if resumed:
        log.info(
            "resuming batch %s: %d of %d partitions already done",
            batch_id,
            resumed,
            len(partitions),
        )
    tasks = [
        PartitionTask(
            batch_id=batch_id,
            model_id=loaded.model_id,
            runtime_id=loaded.runtime_id,
            partition=p,
            # On Dask the rows were read by infer_partition: the task carries none.
            source=(
                replace(source, frame=None, arrays=None)
                if inferred is not None
                else source.slice_for_task(p.offset, p.rows)
                if source.paths == ()
                else source
            ),
            source_offset=0 if source.paths == () else p.offset,
            plan=plan,
            batch_size=batch_size,
            input_hashes=(
                None if input_hashes is None else input_hashes[p.offset : p.offset + p.rows]
            ),
        )
        for p in partitions
        if p.index not in metas
    ]
    started = time.perf_counter()
    bar = tqdm(
        total=len(partitions),
        initial=resumed,
        desc=f"infer+attest {batch_id[:10]}",
        unit="part",
        disable=not progress,
    )
    try:
        if inferred is not None:
            pending = {t.partition.index for t in tasks}
            dask.cancel([f for i, f in enumerate(inferred) if i not in pending])
            results = _attest_on_dask(tasks, inferred, dask, store)
        else:
            results = _run_tasks(tasks, payload, store)
        for result in results:
            metas[result.index] = staging.write(result)
            bar.update(1)
    except OgkitError:
        raise
    except Exception as exc:
        raise InferenceError(
            f"batch {batch_id} failed after {len(metas)} of {len(partitions)} partitions: "
            f"{exc}. Finished partitions are kept in {store.url}/{staging.prefix}; run the "
            "same job again to resume"
        ) from exc
    finally:
        bar.close()
    dataset_object, dataset_format = stashed.result()
    wall = time.perf_counter() - started

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
        dataset={"description": source.describe(), "fingerprint": source.dataset_id},
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
    import io

    import pyarrow.parquet as pq

    table = pq.read_table(io.BytesIO(store.read_bytes(meta["path"])), columns=[f"output.{name}"])
    col = table.column(0).type
    return [col.list_size] if hasattr(col, "list_size") else []
