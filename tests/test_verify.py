"""Tampering, each detected and named by the verifier."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from helpers import rewrite_records

from ogkit.attest import derive_batch_id, execution_hash, make_attester
from ogkit.batch import ARTIFACTS, AttestedBatch
from ogkit.errors import VerificationFailed
from ogkit.hub.manifest import canonical_json
from ogkit.infer import run_verified_inference
from ogkit.keys import KeyStore
from ogkit.samples import sample_data_path
from ogkit.verify import (
    Allowlist,
    VerifyPolicy,
    detection_probability,
    verify_batch,
    verify_receipt,
)


@pytest.fixture
def policy(batch, enclave) -> VerifyPolicy:
    allow = Allowlist().approve(enclave.address, [batch.runtime_id])
    return VerifyPolicy(sample_rate=0.05, allowlist=allow, verifier_secret=b"s")


def _verify(batch, policy, hub, dataset=None, **kw):
    """Verify as a verifier who holds the requester's data (the sample tabular file, which
    the ``batch`` fixture ran, unless another dataset is given)."""
    dataset = sample_data_path("tabular") if dataset is None else dataset
    return verify_batch(batch, policy, hub=hub, progress=False, dataset=dataset, **kw)


def _set_row(table: pa.Table, column: str, row: int, fn) -> pa.Table:
    """Apply ``fn`` to one row of a tensor column (stored as little-endian float32 bytes)."""
    col = table[column].to_pylist()
    values = np.frombuffer(col[row], "<f4").copy()
    col[row] = fn(values).astype("<f4").tobytes()
    return table.set_column(
        table.schema.get_field_index(column), column, pa.array(col, type=table[column].type)
    )


def test_honest_batch_passes_locally_and_on_dask(batch, policy, published, dask_client):
    verdict = _verify(batch, policy, published)
    assert verdict.passed, verdict.findings
    # Each row is drawn with probability 0.05: about 100 of 2,000, all re-executed.
    assert verdict.rows_checked == 2000 and 60 <= verdict.sample_size <= 140
    assert verdict.sample_size == len(verdict.sampled_rows)
    assert verdict.max_abs_error == 0.0
    on_dask = _verify(batch, policy, published, dask=dask_client)
    assert on_dask.passed and on_dask.sampled_rows == verdict.sampled_rows
    verdict.raise_if_failed()


def test_output_value_changed(batch, policy, published):
    rewrite_records(
        batch,
        1,
        lambda t: _set_row(t, "output.probabilities", 5, lambda v: v + np.array([0.01, 0, 0])),
    )
    verdict = _verify(batch, policy, published)
    assert not verdict.passed
    assert verdict.failing_rows() == [505]
    assert {"artifact-altered", "output-hash-mismatch"} <= set(verdict.reasons())
    with pytest.raises(VerificationFailed, match="output-hash-mismatch"):
        verdict.raise_if_failed()


def test_input_changed(batch, policy, published):
    """The node points its manifest at a stored dataset with one row changed (the claim
    does not sign where the inputs are, so its signature stands)."""
    import io

    import polars as pl

    frame = pl.read_parquet(sample_data_path("tabular"))
    frame = frame.with_columns(
        pl.when(pl.int_range(pl.len()) == 1500).then(9.0).otherwise(pl.col("f0")).alias("f0")
    )
    sink = io.BytesIO()
    frame.write_parquet(sink)
    manifest = batch.manifest.to_dict()
    manifest["input_data"]["object"] = batch.store.put("datasets", sink.getvalue())
    tampered = _store_manifest(batch, manifest)
    verdict = _verify(tampered, policy, published)
    assert verdict.failing_rows() == [1500]
    assert "input-hash-mismatch" in verdict.reasons()
    # Without the requester's rows: the stored row no longer hashes to the record's hash.
    alone = verify_batch(tampered, policy, hub=published, progress=False)
    assert alone.failing_rows() == [1500] and "input-hash-mismatch" in alone.reasons()


def test_row_deleted(batch, policy, published):
    rewrite_records(batch, 0, lambda t: pa.concat_tables([t.slice(0, 7), t.slice(8)]))
    verdict = _verify(batch, policy, published)
    # The records no longer hold their partition's 500 rows: named, and nothing sampled
    # from that partition can pass for checked.
    assert "partition-rows" in verdict.reasons() and not verdict.passed
    assert verdict.rows_checked == 1500


def test_row_duplicated(batch, policy, published):
    rewrite_records(batch, 2, lambda t: pa.concat_tables([t, t.slice(3, 1)]))
    verdict = _verify(batch, policy, published)
    assert "partition-rows" in verdict.reasons() and not verdict.passed


def test_rows_swapped_within_a_partition(batch, policy, published):
    # Records name no row: a row's place in its file is its index. Two rows' records
    # traded places hash to other leaves, and their stored input hashes are other rows'.
    rewrite_records(
        batch,
        1,
        lambda t: pa.concat_tables([t.slice(0, 3), t.slice(4, 1), t.slice(3, 1), t.slice(5)]),
    )
    verdict = _verify(batch, policy, published)
    assert verdict.failing_rows() == [503, 504] and not verdict.passed
    assert "input-hash-mismatch" in verdict.reasons()


def test_records_with_an_index_or_leaf_column_are_refused(batch, policy, published):
    # A column the layout does not name (the earlier layout's row_index / leaf): refused,
    # never read as if it said which row a record is.
    def add(t: pa.Table) -> pa.Table:
        return t.append_column("row_index", pa.array(range(500, 1000), pa.uint64()))

    rewrite_records(batch, 1, add)
    verdict = _verify(batch, policy, published)
    assert "records-unreadable" in verdict.reasons() and not verdict.passed
    assert any("row_index" in f.detail for f in verdict.findings)


def test_receipt_proof_altered(batch, policy):
    receipt = batch.receipt(42)
    assert verify_receipt(receipt, policy.allowlist).ok
    assert not verify_receipt(receipt).ok  # nobody approved the attester: never OK
    receipt["proof"][2] = "0x" + "ab" * 32
    check = verify_receipt(receipt, policy.allowlist)
    assert not check.ok and "proof does not lead from the leaf to the batch root" in check.problems


def test_claim_signed_by_unlisted_key(published, requester, home, batch, policy):
    rogue = make_attester("software", signer=KeyStore(home).ensure_dev_key("rogue"))
    rogue_batch = run_verified_inference(
        "tab",
        sample_data_path("tabular"),
        attester=rogue,
        requester=requester,
        hub=published,
        job="rogue",
        progress=False,
    )
    verdict = _verify(rogue_batch, policy, published)
    assert verdict.reasons() == {"unapproved-attester": 1}
    assert rogue.address in verdict.findings[0].detail


def _store_manifest(batch: AttestedBatch, manifest: dict) -> AttestedBatch:
    return AttestedBatch(
        manifest, batch.store.put(ARTIFACTS, canonical_json(manifest)), batch.store
    )


def test_claim_replayed_under_another_batch_id(batch, policy, published):
    # The node presents batch A's signed claim for another job's batch id.
    manifest = batch.manifest.to_dict()
    manifest["job"] = "another-job"
    manifest["batch_id"] = derive_batch_id(
        model_id=manifest["model_id"],
        dataset_id=manifest["dataset_id"],
        requester=manifest["requester"],
        chain_id=31337,
        verifying_contract=manifest["domain"]["verifying_contract"],
        job="another-job",
        execution=execution_hash(batch.manifest.execution()),
    )
    verdict = _verify(_store_manifest(batch, manifest), policy, published)
    # ... and its records still lie in batch A's folder.
    assert {"batch-id", "claim-mismatch", "records-path"} <= set(verdict.reasons())
    # Rewriting the claim's batch id instead breaks the EIP-712 signature.
    manifest = batch.manifest.to_dict()
    manifest["claim"]["batch_id"] = "0x" + "12" * 32
    verdict = _verify(_store_manifest(batch, manifest), policy, published)
    assert "signature" in verdict.reasons()


def test_dishonest_outputs_caught_by_reexecution_at_expected_rate(published, forge_batch):
    enclave, requester = _fixed_parties()
    x = np.random.default_rng(11).normal(size=(400, 8)).astype(np.float32)
    honest = run_verified_inference(
        "tab", x, attester=enclave, requester=requester, hub=published, progress=False
    )
    bad_rows = set(range(0, 400, 20))  # 20 of 400 rows
    forged = forge_batch(honest, bad_rows, enclave)
    allow = Allowlist().approve(enclave.address, [honest.runtime_id])

    # Everything recomputes: hashes, leaves, roots and the signature are all consistent.
    full = _verify(forged, VerifyPolicy(sample_rate=1.0, allowlist=allow), published, x)
    assert set(full.reasons()) == {"reexecution-mismatch"}
    assert set(full.failing_rows()) == bad_rows

    trials, rate = 100, 0.05
    caught = 0
    for trial in range(trials):
        verdict = _verify(
            forged,
            VerifyPolicy(
                sample_rate=rate, allowlist=allow, verifier_secret=trial.to_bytes(4, "big")
            ),
            published,
            x,
        )
        assert set(verdict.failing_rows()) <= bad_rows
        caught += not verdict.passed
    expected = detection_probability(rate, 20)
    assert 0.5 < expected < 0.8
    sigma = (expected * (1 - expected) / trials) ** 0.5
    assert abs(caught / trials - expected) < 3 * sigma, (caught, expected)
    assert verdict.detection["k=10"] == pytest.approx(detection_probability(rate, 10))


def test_detection_probability():
    assert detection_probability(0.1, 1) == pytest.approx(0.1)
    assert detection_probability(0.0, 5) == 0.0
    assert detection_probability(1.0, 5) == 1.0
    assert detection_probability(0.01, 100) == pytest.approx(1 - 0.99**100)


def _fixed_parties():
    """An enclave and a requester with fixed keys, so that the batch, its root and so every
    sample below are the same on every run: the statistics are checked once, not re-drawn
    (and re-tried) each time the suite runs."""
    from eth_account import Account

    from ogkit.keys import Signer

    enclave = make_attester("software", signer=Signer("e", Account.from_key("0x" + "a1" * 32)))
    return enclave, Account.from_key("0x" + "b2" * 32).address


@pytest.mark.parametrize("k", [1, 5, 20])
def test_detection_rate_matches_1_minus_1_minus_q_to_the_k(published, forge_batch, k):
    """Over 200 verifier seeds, a batch with k forged rows (everything re-hashed and
    re-signed) is caught at the rate 1 - (1 - q)^k, within 2 sigma."""
    enclave, requester = _fixed_parties()
    x = np.random.default_rng(5).normal(size=(400, 8)).astype(np.float32)
    honest = run_verified_inference(
        "tab", x, attester=enclave, requester=requester, hub=published, progress=False
    )
    bad = set(range(3, 400, 400 // k))
    assert len(bad) == k
    forged = forge_batch(honest, bad, enclave)
    allow = Allowlist().approve(enclave.address, [honest.runtime_id])
    q, seeds = 0.1, 200
    caught = 0
    for seed in range(seeds):
        verdict = _verify(
            forged,
            VerifyPolicy(sample_rate=q, allowlist=allow, verifier_secret=b"rate%d" % seed),
            published,
            x,
        )
        assert set(verdict.failing_rows()) <= bad
        assert set(verdict.reasons()) <= {"reexecution-mismatch"}
        caught += not verdict.passed
    p = 1 - (1 - q) ** k
    sigma = (p * (1 - p) / seeds) ** 0.5
    assert abs(caught / seeds - p) <= 2 * sigma, (k, caught, seeds, p)


def test_sample_mask_is_uniform_and_independent_of_partitioning():
    from ogkit.verify import sample_mask

    key = b"\x07" * 32
    rows = np.arange(200_000, dtype=np.uint64)
    whole = sample_mask(key, rows, 0.01)
    assert abs(whole.mean() - 0.01) < 4 * (0.01 * 0.99 / rows.size) ** 0.5
    parts = np.concatenate(
        [sample_mask(key, rows[i : i + 777], 0.01) for i in range(0, 200_000, 777)]
    )
    np.testing.assert_array_equal(whole, parts)  # a row's draw does not depend on its partition
    other = sample_mask(b"\x08" * 32, rows, 0.01)
    assert (whole & other).sum() < 0.01 * whole.sum() * 3 + 10  # another key, another sample


def test_unbound_inputs_fail_unless_the_verifier_allows_it(batch, policy, published):
    """Without the requester's dataset or commitment a verdict does not pass: the inputs
    would be bound to nothing but the node's word. An auditor can make it a notice."""
    verdict = verify_batch(batch, policy, hub=published, progress=False)
    assert verdict.reasons() == {"inputs-unbound": 1} and not verdict.inputs_bound
    lenient = VerifyPolicy(
        sample_rate=0.05,
        allowlist=policy.allowlist,
        verifier_secret=b"s",
        require_bound_inputs=False,
    )
    verdict = verify_batch(batch, lenient, hub=published, progress=False)
    assert verdict.passed and not verdict.inputs_bound and verdict.notices
    with_commitment = verify_batch(
        batch, policy, hub=published, progress=False, commitment=_commitment(batch)
    )
    assert with_commitment.passed and with_commitment.inputs_bound


def _commitment(batch):
    from ogkit.dataset import commit_dataset
    from ogkit.load import load_model_bytes

    model = load_model_bytes(batch.store.get("models", batch.model_id))
    return commit_dataset(sample_data_path("tabular"), model)


def test_what_the_requester_ordered(batch, policy, published, requester):
    """A batch of another model, for another requester or under another job name fails."""
    ok = _verify(batch, policy, published, requester=requester, job="default", model="tab@1.0.0")
    assert ok.passed, ok.findings
    for kw in (
        {"requester": "0x" + "11" * 20},
        {"job": "another"},
        {"model": "cnn@1.0.0"},
        {"model": "0x" + "22" * 32},
    ):
        verdict = _verify(batch, policy, published, **kw)
        assert verdict.reasons() == {"job-order": 1}, kw
