"""Verify by the requester's row hashes gives the same verdict on Dask as in process: a
worker gets only a digest of its partition's committed hashes, and a partition that does
not match it is checked again with the hashes themselves, so a node that tampers with
more than one thing of a row cannot make the two paths name different findings."""

from __future__ import annotations

import hashlib
import io

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_stored_inputs import _verify, _with

from ogkit.samples import sample_data_path, sample_model_path
from ogkit.verify import Allowlist, VerifyPolicy


@pytest.fixture
def policy(batch, enclave) -> VerifyPolicy:
    allow = Allowlist().approve(enclave.address, [batch.runtime_id])
    return VerifyPolicy(sample_rate=0.05, allowlist=allow, verifier_secret=b"s")


def _full_commitment():
    from ogkit.dataset import commit_dataset
    from ogkit.load import load_model

    full = commit_dataset(sample_data_path("tabular"), load_model(sample_model_path("tabular")))
    assert full.row_hashes is not None
    return full


def _swapped_batch(batch, published, enclave, job: str):
    """As test_one_row_swapped_under_the_requesters_root: the node ran row 1234 changed,
    keeps its own hashes consistent, names the requester's input root, re-signs."""
    from ogkit.infer import run_verified_inference

    frame = pl.read_parquet(sample_data_path("tabular"))
    swapped = frame.with_columns(
        pl.when(pl.int_range(pl.len()) == 1234).then(pl.col("f3") + 1).otherwise(pl.col("f3"))
    )
    return run_verified_inference(
        "tab", swapped, attester=enclave, requester=batch.manifest.requester, hub=published,
        store=batch.store, partition_rows=500, job=job, progress=False,
    )  # fmt: skip


def _rewrite_records(b, pos: int, edit) -> list[dict]:
    """The manifest's partitions with partition ``pos``'s records edited by ``edit``
    (a pyarrow table -> table) and stored under a new path with its sha256."""
    parts = [dict(p) for p in b.manifest.to_dict()["partitions"]]
    t = pq.read_table(io.BytesIO(b.store.read_bytes(parts[pos]["path"])))
    t = edit(t)
    sink = io.BytesIO()
    pq.write_table(t, sink, compression="none")
    raw = sink.getvalue()
    path = parts[pos]["path"].replace(".parquet", "-rt.parquet")
    b.store.write_bytes(path, raw)
    parts[pos]["path"] = path
    parts[pos]["sha256"] = hashlib.sha256(raw).hexdigest()
    return parts


def _hash_col(rows: np.ndarray) -> pa.Array:
    rows = np.ascontiguousarray(rows, dtype=np.uint8)
    return pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(32), len(rows), [None, pa.py_buffer(rows.tobytes())]
    )


def _assert_same_findings(batch, other, edit, full, policy, published, enclave, dask_client):
    """``other`` with partition 2's records edited, re-signed under the requester's input
    root: both paths fail it with the same findings, in the same order."""
    parts = _rewrite_records(other, 2, edit)
    forged = _with(
        other, enclave, reseal=True, dataset_id=batch.manifest.dataset_id, partitions=parts
    )
    local = _verify(forged, policy, published, commitment=full)
    on_dask = _verify(forged, policy, published, commitment=full, dask=dask_client)
    assert not local.passed and not on_dask.passed
    a = [(f.reason, f.row_index) for f in local.findings]
    b = [(f.reason, f.row_index) for f in on_dask.findings]
    assert a == b


def test_row_hash_findings_are_the_same_on_dask_and_in_process(
    batch, policy, published, enclave, dask_client
):
    """A row the node ran on other inputs (dataset-mismatch) whose stored input hash is
    then set to the requester's committed one: the row is named for both on both paths."""
    full = _full_commitment()
    other = _swapped_batch(batch, published, enclave, job="rt-leaf")
    requester_h = full.row_hashes

    def edit(t: pa.Table) -> pa.Table:
        in_h = np.array([list(v) for v in t["input_hash"].to_pylist()], dtype=np.uint8)
        in_h[234] = requester_h[1234]
        i = t.schema.get_field_index("input_hash")
        return t.set_column(i, "input_hash", _hash_col(in_h))

    _assert_same_findings(batch, other, edit, full, policy, published, enclave, dask_client)


def test_row_hash_findings_come_in_the_same_order_on_dask_and_in_process(
    batch, policy, published, enclave, dask_client
):
    """The node ran row 1234 on other inputs and wrote the requester's committed hashes
    into its records' input_hash column (the leaves stay its own): both paths name
    dataset-mismatch, then input-hash-mismatch."""
    full = _full_commitment()
    other = _swapped_batch(batch, published, enclave, job="rt-order")

    def edit(t: pa.Table) -> pa.Table:
        h = np.ascontiguousarray(full.row_hashes[1000:1500])
        return t.set_column(t.schema.get_field_index("input_hash"), "input_hash", _hash_col(h))

    _assert_same_findings(batch, other, edit, full, policy, published, enclave, dask_client)
