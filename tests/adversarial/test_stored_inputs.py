"""Records hold no copies of inputs: a batch's inputs are its stored dataset (spec §6/§7).

The node controls its manifest, so it controls which dataset object, which format, which
row range and which input plan the manifest names. Each trick must end in a named
finding (never a pass, never an exception), and the requester's signed input root still
decides what rows the batch had to run.
"""

from __future__ import annotations

import io
import os
from typing import Any

import numpy as np
import polars as pl
import pytest

from ogkit.attest import BatchClaim, derive_batch_id, execution_hash
from ogkit.batch import ARTIFACTS, AttestedBatch, BatchManifest, load_batch
from ogkit.dataset import DatasetCommitment
from ogkit.errors import InputsUnavailableError
from ogkit.hub.manifest import canonical_json
from ogkit.network.verifier import judge_row
from ogkit.samples import sample_data_path, sample_model_path
from ogkit.verify import Allowlist, VerifyPolicy, verify_batch


@pytest.fixture
def policy(batch, enclave) -> VerifyPolicy:
    allow = Allowlist().approve(enclave.address, [batch.runtime_id])
    return VerifyPolicy(sample_rate=0.05, allowlist=allow, verifier_secret=b"s")


def _commitment(batch) -> DatasetCommitment:
    """The requester's commitment as text gives it: input root and row count."""
    return DatasetCommitment(batch.manifest.dataset_id, batch.row_count)


@pytest.fixture(params=["root", "row-hashes"])
def commitment(request, batch) -> DatasetCommitment:
    """The requester's commitment: the honest batch ran exactly the requester's rows. As
    text gives it (root and row count: the verifier rebuilds the input root), and as
    ``commit_dataset`` gives it in the requester's process (with every row's input hash:
    the verifier compares each row with the requester's own hash instead)."""
    root = _commitment(batch)
    if request.param == "root":
        return root
    from ogkit.dataset import commit_dataset
    from ogkit.load import load_model

    model = load_model(sample_model_path("tabular"))
    full = commit_dataset(sample_data_path("tabular"), model)
    assert full == root and full.row_hashes is not None and full.row_hashes.shape == (2000, 32)
    return full


def _with(batch, enclave_signer=None, *, reseal: bool = False, **edits: Any) -> AttestedBatch:
    """The batch with manifest fields replaced (``input_data`` fields merged); with
    ``reseal`` the batch id is derived again and the claim re-signed by the approved key,
    as a node that controls its key would."""
    m = batch.manifest.to_dict()
    for key, value in edits.items():
        if key == "input_data":
            m["input_data"].update(value)
        else:
            m[key] = value
    if reseal:
        typed = BatchManifest.from_dict(m)
        m["batch_id"] = derive_batch_id(
            model_id=m["model_id"],
            dataset_id=m["dataset_id"],
            requester=m["requester"],
            chain_id=m["domain"]["chain_id"],
            verifying_contract=m["domain"]["verifying_contract"],
            job=m["job"],
            execution=execution_hash(typed.execution()),
        )
        for part in m["partitions"]:  # a faithful node keeps records in the batch's folder
            new = f"batches/{m['batch_id']}/" + part["path"].split("/", 2)[2]
            batch.store.write_bytes(new, batch.store.read_bytes(part["path"]))
            part["path"] = new
        claim = BatchClaim.from_dict({**m["claim"], "batch_id": m["batch_id"]})
        m["claim"] = claim.to_dict()
        m["signature"] = enclave_signer.sign_claim(claim, batch.domain)
    return AttestedBatch(m, batch.store.put(ARTIFACTS, canonical_json(m)), batch.store)


def _verify(batch, policy, hub, **kw):
    return verify_batch(batch, policy, hub=hub, progress=False, **kw)


def _put_frame(batch, frame: pl.DataFrame) -> str:
    sink = io.BytesIO()
    frame.write_parquet(sink)
    return batch.store.put("datasets", sink.getvalue())


def test_honest_batch_stores_the_dataset_once_and_records_hold_no_inputs(
    batch, policy, published, commitment
):
    d = batch.manifest.input_data
    assert d.format == "parquet" and d.offset == 0 and d.rows == batch.row_count
    # The requester's file as it is, under its content id.
    assert batch.store.get("datasets", d.object) == sample_data_path("tabular").read_bytes()
    import pyarrow.parquet as pq

    names = pq.read_schema(batch.store.path(batch.partitions[0].path)).names
    assert not [n for n in names if n.startswith("input.")]
    verdict = _verify(batch, policy, published, commitment=commitment)
    assert verdict.passed and verdict.inputs_bound, verdict.findings


def test_another_dataset_id(batch, policy, published, commitment):
    """The manifest names another dataset in the store: one with other columns, and one
    with the same columns and other rows."""
    from ogkit.samples import make_image_frame, make_tabular

    images = _put_frame(batch, make_image_frame(2000, seed=3))
    other_rows = _put_frame(batch, make_tabular(2000, seed=99))
    for object_id, reason in ((images, "inputs-unavailable"), (other_rows, "input-hash-mismatch")):
        forged = _with(batch, input_data={"object": object_id})
        verdict = _verify(forged, policy, published, commitment=commitment)
        assert not verdict.passed and reason in verdict.reasons(), verdict.reasons()
        assert not verdict.inputs_bound
    # A dataset id that is in no store, and one that is not an id at all.
    missing = _with(batch, input_data={"object": "0x" + "ab" * 32})
    verdict = _verify(missing, policy, published, commitment=commitment)
    assert "inputs-unavailable" in verdict.reasons() and not verdict.passed
    bad = batch.manifest.to_dict()
    bad["input_data"]["object"] = "../../etc/passwd"
    forged_id = batch.store.put(ARTIFACTS, canonical_json(bad))
    verdict = _verify(forged_id, policy, published, store=batch.store)
    assert verdict.reasons().keys() == {"manifest-malformed"}


def test_dataset_rows_differ_and_the_node_recommits(batch, policy, published, enclave, commitment):
    """The node stores rows of its own, hashes them into its records, commits to their
    input root and re-signs: only the requester's commitment (the order's input root) or
    the requester's own rows catch it. Faked here by pointing at rows whose records and
    root are another honest run's."""
    from ogkit.infer import run_verified_inference
    from ogkit.samples import make_tabular

    fake = make_tabular(2000, seed=5)
    other = run_verified_inference(
        "tab", fake, attester=enclave, requester=batch.manifest.requester, hub=published,
        store=batch.store, partition_rows=500, job="default", progress=False,
    )  # fmt: skip
    assert other.manifest.input_data.format == "parquet"  # an in-memory frame, stored
    allow = policy
    verdict = _verify(other, allow, published, commitment=commitment)
    assert not verdict.passed and "dataset-mismatch" in verdict.reasons()
    verdict = _verify(other, allow, published, dataset=sample_data_path("tabular"))
    assert not verdict.passed and {"input-hash-mismatch", "input-root-mismatch"} & set(
        verdict.reasons()
    )
    # Its own stored rows are consistent: without the requester, it is only 'unbound'.
    alone = _verify(other, allow, published)
    assert alone.reasons() == {"inputs-unbound": 1}


def _run_with_row_1234_changed(batch, enclave, published) -> AttestedBatch:
    """An honest run, into the batch's store under the job ``swap``, of the requester's
    rows with row 1234 changed (``f3`` + 1): every hash consistent with its own rows."""
    from ogkit.infer import run_verified_inference

    frame = pl.read_parquet(sample_data_path("tabular"))
    swapped = frame.with_columns(
        pl.when(pl.int_range(pl.len()) == 1234).then(pl.col("f3") + 1).otherwise(pl.col("f3"))
    )
    return run_verified_inference(
        "tab", swapped, attester=enclave, requester=batch.manifest.requester, hub=published,
        store=batch.store, partition_rows=500, job="swap", progress=False,
    )  # fmt: skip


def test_one_row_swapped_under_the_requesters_root(
    batch, policy, published, enclave, commitment, dask_client
):
    """The node runs the requester's rows but one, stores that row as it ran it, keeps
    every hash it writes consistent with every other and names the requester's input
    root as its dataset id, re-signed: only the requester's commitment names the row
    (by its own row hash when it has them, else by the input root rebuilt)."""
    other = _run_with_row_1234_changed(batch, enclave, published)
    assert other.manifest.dataset_id != batch.manifest.dataset_id
    # (another job name: resealed under the requester's root, the default job's batch id
    # would be the honest batch's, and its records would overwrite the honest records)
    forged = _with(other, enclave, reseal=True, dataset_id=batch.manifest.dataset_id)
    assert "input-root-mismatch" in _verify(forged, policy, published).reasons()
    verdict = _verify(forged, policy, published, commitment=commitment)
    assert not verdict.passed and not verdict.inputs_bound
    if commitment.row_hashes is not None:
        named = [(f.reason, f.row_index) for f in verdict.findings]
        assert named == [("dataset-mismatch", 1234)], named
    else:
        assert verdict.reasons().keys() == {"input-root-mismatch"}
    on_dask = _verify(forged, policy, published, commitment=commitment, dask=dask_client)
    assert [(f.reason, f.row_index) for f in on_dask.findings] == [
        (f.reason, f.row_index) for f in verdict.findings
    ]
    honest = _verify(batch, policy, published, commitment=commitment, dask=dask_client)
    assert honest.passed and honest.inputs_bound, honest.findings


def test_row_range_off_by_one(batch, policy, published, commitment):
    verdict = _verify(
        _with(batch, input_data={"offset": 1}), policy, published, commitment=commitment
    )
    assert "inputs-unavailable" in verdict.reasons() and not verdict.passed
    assert "rows 1..2000" in verdict.findings[-1].detail or any(
        "rows 1..2000" in f.detail for f in verdict.findings
    )
    fewer = _with(batch, input_data={"rows": batch.row_count - 1})
    verdict = _verify(fewer, policy, published, commitment=commitment)
    assert "inputs-unavailable" in verdict.reasons() and not verdict.passed
    # A dataset with one row more in front, named at offset 1, holds the same rows: fine.
    # The same dataset at offset 0 is every row shifted by one.
    frame = pl.read_parquet(sample_data_path("tabular"))
    padded = _put_frame(batch, pl.concat([frame.head(1), frame]))
    ok = _with(batch, input_data={"object": padded, "offset": 1})
    assert _verify(ok, policy, published, commitment=commitment).passed
    shifted = _with(batch, input_data={"object": padded, "offset": 0, "rows": 2000})
    verdict = _verify(shifted, policy, published, commitment=commitment)
    assert "input-hash-mismatch" in verdict.reasons()
    assert len(verdict.failing_rows()) > 1900


def test_input_plan_with_other_columns_or_dtypes(batch, policy, published, enclave, commitment):
    m = batch.manifest.to_dict()
    reversed_cols = [dict(t, columns=list(reversed(t["columns"]))) for t in m["inputs"]]
    forged = _with(batch, enclave, reseal=True, inputs=reversed_cols)
    verdict = _verify(forged, policy, published, commitment=commitment)
    assert not verdict.passed and "input-hash-mismatch" in verdict.reasons(), verdict.reasons()
    unknown = [dict(t, columns=["f0", "nope", *t["columns"][2:]]) for t in m["inputs"]]
    verdict = _verify(
        _with(batch, enclave, reseal=True, inputs=unknown),
        policy,
        published,
        commitment=commitment,
    )
    assert "inputs-unavailable" in verdict.reasons() and not verdict.passed
    as_f64 = [dict(t, dtype="float64") for t in m["inputs"]]
    verdict = _verify(
        _with(batch, enclave, reseal=True, inputs=as_f64),
        policy,
        published,
        commitment=commitment,
    )
    assert {"spec-mismatch", "input-hash-mismatch"} <= set(verdict.reasons())


def test_unavailable_or_hostile_dataset_objects(batch, policy, published, commitment):
    d = batch.manifest.input_data
    for fmt in ("csv", "exe"):
        verdict = _verify(
            _with(batch, input_data={"format": fmt}),
            policy,
            published,
            commitment=commitment,
        )
        assert "inputs-unavailable" in verdict.reasons() and not verdict.passed
    # A copy of the store whose dataset object is removed, a directory, or a FIFO.
    path = batch.store.object_path("datasets", d.object)
    saved = batch.store.get("datasets", d.object)
    try:
        for make in ("missing", "directory", "fifo"):
            _remove(path)
            if make == "directory":
                os.mkdir(path)
            elif make == "fifo":
                os.mkfifo(path)
            verdict = _verify(batch, policy, published, commitment=commitment)
            assert not verdict.passed and "inputs-unavailable" in verdict.reasons(), make
            assert verdict.rows_checked == 0
            with pytest.raises(InputsUnavailableError):
                batch.records(0)
            assert len(batch.records(0, inputs=False).row_index) == 500
            # A dispute over a row whose inputs the node did not keep is upheld.
            r = batch.receipt(3)["leaf_values"]
            upheld, why = judge_row(
                batch, 3, bytes.fromhex(r["inputHash"][2:]), bytes.fromhex(r["outputHash"][2:])
            )
            assert upheld and "inputs" in why
    finally:
        _remove(path)
        batch.store.put("datasets", saved)
    assert _verify(batch, policy, published, commitment=commitment).passed


def _remove(path: str) -> None:
    if os.path.isdir(path):
        os.rmdir(path)
    elif os.path.lexists(path):
        os.remove(path)


@pytest.mark.parametrize("schema", ["ogkit.batch.v2", "ogkit.batch.v3", "ogkit.batch.v4"])
def test_earlier_artefacts_are_refused_by_name(batch, policy, published, schema):
    m = batch.manifest.to_dict()
    m["schema"] = schema
    old = batch.store.put(ARTIFACTS, canonical_json(m))
    verdict = _verify(old, policy, published, store=batch.store)
    assert verdict.reasons().keys() == {"manifest-malformed"}
    assert "ogkit.batch.v5" in verdict.findings[0].detail
    assert f"{schema}, an earlier layout" in verdict.findings[0].detail
    with pytest.raises(Exception, match="v5"):
        load_batch(old, batch.store)


def test_in_memory_arrays_are_stored_and_verify_on_dask(
    published, enclave, requester, policy, dask_client, tmp_path
):
    """NumPy arrays (a CNN's images) go into a Parquet file of fixed-width array columns;
    the verifier re-derives the same tensors from it, on Dask workers too."""
    from ogkit.infer import run_verified_inference
    from ogkit.load import load_model

    model = load_model("cnn", hub=published)
    images = np.random.default_rng(0).random((300, 1, 28, 28)).astype(np.float64)
    batch = run_verified_inference(
        model, images, attester=enclave, requester=requester, hub=published,
        partition_rows=100, batch_size=64, progress=False,
    )  # fmt: skip
    allow = Allowlist().approve(enclave.address, [batch.runtime_id])
    cnn_policy = VerifyPolicy(sample_rate=0.1, allowlist=allow, verifier_secret=b"s")
    for dask in (None, dask_client):
        verdict = verify_batch(
            batch, cnn_policy, hub=published, progress=False, dask=dask, dataset={"image": images}
        )
        assert verdict.passed and verdict.inputs_bound, verdict.findings
    got = batch.inputs(1)["image"]
    assert got.dtype == np.float32 and np.array_equal(got, images[100:200].astype(np.float32))
