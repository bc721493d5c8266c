"""A stored dataset that is the requester's own file, byte for byte (docs/spec.md §7).

When the verifier holds the requester's rows (``dataset=``) or the commitment it made in
its own process (``commit_dataset``: every row's hash, and the sha256 of the file they
were read from), and the batch's stored dataset is that very file under the requester's
input plan, partitions need not read and hash the stored rows: each is the requester's.
The node controls the manifest, the records and the store's files, so every condition of
that shortcut must hold for it to apply, and what it skips must not let a forgery pass.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pytest
from helpers import rewrite_records
from test_stored_inputs import _put_frame, _run_with_row_1234_changed, _with

from ogkit.dataset import (
    CommittedFile,
    DatasetCommitment,
    commit_dataset,
    committed_file,
    open_source,
    plan_inputs,
)
from ogkit.errors import ConfigError
from ogkit.load import load_model
from ogkit.samples import make_tabular, sample_data_path, sample_model_path
from ogkit.verify import Allowlist, VerifyPolicy, _Outcome, _stored_committed, _stored_is
from ogkit.verify import verify_batch as _verify_batch


@pytest.fixture
def policy(batch, enclave) -> VerifyPolicy:
    allow = Allowlist().approve(enclave.address, [batch.runtime_id])
    return VerifyPolicy(sample_rate=0.0, allowlist=allow, verifier_secret=b"s")


@pytest.fixture
def full_commitment() -> DatasetCommitment:
    return commit_dataset(sample_data_path("tabular"), load_model(sample_model_path("tabular")))


def _put_other_bytes(batch, frame: pl.DataFrame) -> str:
    """``frame`` stored as Parquet bytes unlike the sample file's (snappy pages)."""
    sink = io.BytesIO()
    frame.write_parquet(sink, compression="snappy")
    assert sink.getvalue() != sample_data_path("tabular").read_bytes()
    return batch.store.put("datasets", sink.getvalue())


def _verify(batch, policy, hub, **kw):
    return _verify_batch(batch, policy, hub=hub, progress=False, **kw)


def test_the_requesters_own_file_is_recognised(batch, full_commitment):
    origin = full_commitment.origin
    assert origin is not None and origin.format == "parquet"
    assert _stored_is(batch, origin)
    source = open_source(sample_data_path("tabular"))
    plan = plan_inputs(source, load_model(sample_model_path("tabular")).inputs)
    assert committed_file(source, plan) is None  # rows read by name: no tie to the bytes
    assert committed_file(dataclasses.replace(source, pinned=True), plan) == origin
    # A commitment read from text carries neither row hashes nor a file.
    parsed = DatasetCommitment.parse(str(full_commitment))
    assert parsed == full_commitment and parsed.origin is None and parsed.row_hashes is None


def test_every_condition_turns_the_shortcut_off(batch, full_commitment, tmp_path):
    origin = full_commitment.origin
    m = batch.manifest.to_dict()
    frame = pl.read_parquet(sample_data_path("tabular"))
    same_rows_other_bytes = _put_other_bytes(batch, frame)  # the same rows, other bytes
    padded = _put_frame(batch, pl.concat([frame.head(1), frame]))
    edits = [
        {"input_data": {"format": "csv"}},
        {"input_data": {"object": padded, "offset": 1}},
        {"input_data": {"rows": batch.row_count - 1}},
        {"input_data": {"object": same_rows_other_bytes}},
        {"inputs": [dict(t, columns=list(reversed(t["columns"]))) for t in m["inputs"]]},
        {"inputs": [dict(t, dtype="float64") for t in m["inputs"]]},
        {"inputs": [dict(t, columns=[]) for t in m["inputs"]]},
    ]
    for edit in edits:
        assert not _stored_is(_with(batch, **edit), origin), edit
    # The requester's file under another plan, or of other bytes.
    other_plan = CommittedFile(origin.format, origin.sha256, origin.size, type(origin.plan)(()))
    assert not _stored_is(batch, other_plan)
    assert not _stored_is(batch, CommittedFile(origin.format, "00" * 32, origin.size, origin.plan))
    # The stored object gone: not the requester's (the check then says why, per partition).
    path = Path(batch.store.object_path("datasets", batch.manifest.input_data.object))
    saved = path.read_bytes()
    path.unlink()
    try:
        assert not _stored_is(batch, origin)
    finally:
        path.write_bytes(saved)
    # A requester's file changed after it was hashed gives no file to compare with.
    mine = tmp_path / "mine.parquet"
    frame.write_parquet(mine)
    source = dataclasses.replace(open_source(mine), pinned=True)
    plan = plan_inputs(source, load_model(sample_model_path("tabular")).inputs)
    assert committed_file(source, plan) is not None
    frame.head(10).write_parquet(mine)
    assert committed_file(source, plan) is None
    with pytest.raises(ConfigError, match="changed while it was read"):
        source.read(0, 5, ["f0"])  # a pinned read refuses the new version
    # Only Parquet: other formats are read by name, by polars.
    frame.write_csv(tmp_path / "mine.csv")
    csv = commit_dataset(tmp_path / "mine.csv", load_model(sample_model_path("tabular")))
    assert csv.origin is None and csv.row_hashes is not None


@pytest.mark.parametrize("on_dask", [False, True])
def test_forged_input_hashes_are_named_without_reading_the_rows(
    batch, policy, published, full_commitment, on_dask, request
):
    """Records whose input hashes are not the requester's: each such row is named, on
    Dask (where the partition's hashes first do not digest to the requester's) as here."""
    assert _stored_is(batch, full_commitment.origin)

    def forge(table: pa.Table) -> pa.Table:
        col = table.column("input_hash").to_pylist()
        col[7] = b"\x01" * 32
        col[300] = col[301]
        i = table.schema.get_field_index("input_hash")
        return table.set_column(i, "input_hash", pa.array(col, pa.binary(32)))

    rewrite_records(batch, 1, forge)
    dask = request.getfixturevalue("dask_client") if on_dask else None
    verdict = _verify(batch, policy, published, commitment=full_commitment, dask=dask)
    named = sorted((f.reason, f.row_index) for f in verdict.findings if f.row_index is not None)
    assert named == [("input-hash-mismatch", 507), ("input-hash-mismatch", 800)], named
    # (the leaves are the requester's hashes, so the attested root still holds)
    assert verdict.reasons() == {"artifact-altered": 1, "input-hash-mismatch": 2}
    assert not verdict.passed and not verdict.inputs_bound


@pytest.mark.parametrize("on_dask", [False, True])
def test_the_node_recommits_to_its_own_records_under_the_requesters_file(
    batch, policy, published, enclave, full_commitment, on_dask, request
):
    """The stored file is the requester's, but the node ran other rows and wrote their
    hashes, consistent leaves, roots and a re-signed claim: the records' input hashes are
    not the requester's, whatever else agrees."""
    other = _run_with_row_1234_changed(batch, enclave, published)
    forged = _with(
        other,
        enclave,
        reseal=True,
        dataset_id=batch.manifest.dataset_id,
        input_data=batch.manifest.input_data.to_dict(),  # the requester's file, stored
    )
    assert _stored_is(forged, full_commitment.origin)
    dask = request.getfixturevalue("dask_client") if on_dask else None
    for rate in (0.0, 0.05):
        verdict = _verify(
            forged, VerifyPolicy(sample_rate=rate, allowlist=policy.allowlist,
                                 verifier_secret=b"s"),
            published, commitment=full_commitment, dask=dask,
        )  # fmt: skip
        rows = [(f.reason, f.row_index) for f in verdict.findings if f.row_index is not None]
        assert ("input-hash-mismatch", 1234) in rows, rows
        assert not verdict.passed and not verdict.inputs_bound


def test_stored_rows_changed_after_the_file_was_checked():
    """The store's file may change between the verifier's sha256 of it and a worker's read
    of the rows it re-runs: every row read (a drawn row is re-run beside its mini-batch's
    other rows) must still hash to the requester's."""
    from ogkit.crypto.encoding import tensor_row_hashes

    rows = make_tabular(64, seed=3).select([f"f{i}" for i in range(8)]).to_numpy()
    feeds = {"features": np.ascontiguousarray(rows, dtype=np.float32)}
    committed = tensor_row_hashes(feeds)
    changed = {"features": feeds["features"].copy()}
    changed["features"][10, 2] += 1
    changed["features"][63, 0] += 1
    expected = np.arange(1000, 1064, dtype=np.uint64)
    out = _Outcome([])
    _stored_committed(out, changed, committed, expected, 2)
    assert [(f.reason, f.row_index, f.partition) for f in out.findings] == [
        ("dataset-mismatch", 1010, 2),
        ("dataset-mismatch", 1063, 2),
    ]
    out = _Outcome([])
    _stored_committed(out, feeds, committed, expected, 2)
    assert out.findings == []
    # Rows that cannot be compared (a tensor of another row count): every row named.
    out = _Outcome([])
    _stored_committed(out, {"features": feeds["features"][:5]}, committed, expected, 2)
    assert [f.row_index for f in out.findings] == list(range(1000, 1064))


def test_verify_by_dataset_with_the_stored_file_of_other_bytes(batch, policy, published):
    """By the requester's rows (never the shortcut: they are read by name while the
    partitions are checked): a stored copy of other bytes but the same rows still passes
    (the rows are compared), one row changed does not."""
    frame = pl.read_parquet(sample_data_path("tabular"))
    same = _with(batch, input_data={"object": _put_other_bytes(batch, frame)})
    verdict = _verify(same, policy, published, dataset=sample_data_path("tabular"))
    assert verdict.passed and verdict.inputs_bound, verdict.findings
    changed = frame.with_columns(
        pl.when(pl.int_range(pl.len()) == 42).then(pl.col("f1") + 1).otherwise(pl.col("f1"))
    )
    forged = _with(batch, input_data={"object": _put_frame(batch, changed)})
    verdict = _verify(forged, policy, published, dataset=sample_data_path("tabular"))
    assert [(f.reason, f.row_index) for f in verdict.findings] == [("input-hash-mismatch", 42)]
    assert not verdict.inputs_bound


def test_the_file_read_is_the_file_hashed_through_symlinks(tmp_path, monkeypatch):
    """``link/../rows.csv`` with ``link`` a symlink into another folder: the OS resolves
    the ``..`` after the link, so that is the file hashed and must be the file read (a
    path normalised as text would name the cwd's ``rows.csv`` instead)."""
    (tmp_path / "other" / "dir").mkdir(parents=True)
    (tmp_path / "work").mkdir()
    pl.DataFrame({"x": [1.0]}).write_csv(tmp_path / "other" / "rows.csv")
    pl.DataFrame({"x": [2.0]}).write_csv(tmp_path / "work" / "rows.csv")
    (tmp_path / "work" / "link").symlink_to(tmp_path / "other" / "dir")
    monkeypatch.chdir(tmp_path / "work")
    source = open_source("link/../rows.csv")
    hashed = hashlib.sha256((tmp_path / "other" / "rows.csv").read_bytes()).hexdigest()
    assert source.file_sha256[0][0] == hashed
    assert source.read(0, 1, ["x"])["x"].to_list() == [1.0]
    assert source.label() == "rows.csv (1 rows)"


def test_a_manifest_names_no_local_folders(batch):
    assert batch.manifest.dataset["description"] == "tabular.parquet (2,000 rows)"


def test_a_fetched_dataset_is_never_one_someone_else_planted(tmp_path, monkeypatch):
    """Datasets fetched from a store that is not local are kept in the temporary folder,
    where anyone can make folders and plant files: a folder others may write to is not
    reused, nor a planted link, and what is returned holds the store's bytes."""
    import os
    import tempfile

    from ogkit.dataset import _local_copy, _private_folder
    from ogkit.store import ContentStore

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    store = ContentStore("memory://ogkit-planted-test")
    good = b"PAR1 the store's bytes"
    object_id = store.put("datasets", good)
    folder = tmp_path / f"ogkit-datasets-{os.getuid()}"
    folder.mkdir(mode=0o777)
    folder.chmod(0o777)  # as another user would leave it
    (folder / f"{object_id}.parquet").write_bytes(b"PAR1 planted rows")
    _private_folder.cache_clear()
    try:
        path = _local_copy(store, object_id, "parquet")
        assert Path(path).parent != folder and Path(path).read_bytes() == good
        # A private folder with a planted link: the link is replaced, not followed.
        folder.chmod(0o700)
        target = tmp_path / "elsewhere"
        target.write_bytes(b"PAR1 planted rows")
        (folder / f"{object_id}.parquet").unlink()
        (folder / f"{object_id}.parquet").symlink_to(target)
        path = _local_copy(store, object_id, "parquet")
        assert Path(path).parent == folder and not Path(path).is_symlink()
        assert Path(path).read_bytes() == good and target.read_bytes() == b"PAR1 planted rows"
        assert _local_copy(store, object_id, "parquet") == path  # reused
    finally:
        _private_folder.cache_clear()
