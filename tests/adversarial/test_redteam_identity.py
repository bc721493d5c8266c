"""Red team of the stored-dataset identity shortcut (``ogkit.verify._stored_is``).

When the requester's commitment (from :func:`ogkit.dataset.commit_dataset`, in this
process) or the requester's dataset names one data file, and the batch's stored dataset
object has the same sha256, format and input plan, partitions no longer read or hash the
stored rows: the requester's hashes stand for them. The premise is "same bytes, same
reader, same plan: same rows".

The attacker is an approved node: it writes its records, its manifest (re-signed with its
approved key) and any file of the content store. Each test names the attack and pins the
verifier's answer (each weakness this red team found is fixed; its docstring says how).
"""

from __future__ import annotations

import dataclasses
import io
import os
import struct
from pathlib import Path

import polars as pl
import pytest
from tamper import Forge, Honest, _between, hash_column, hash_rows

from ogkit.dataset import DatasetCommitment, commit_dataset, committed_file, open_source
from ogkit.load import load_model
from ogkit.samples import sample_data_path, sample_model_path
from ogkit.store import ContentStore
from ogkit.verify import Allowlist, VerifyPolicy, reexecute_row, verify_batch


# -- helpers -------------------------------------------------------------------------------
def _full(path) -> DatasetCommitment:
    """The requester's commitment computed in this process, with row hashes and origin."""
    full = commit_dataset(path, load_model(sample_model_path("tabular")))
    assert full.row_hashes is not None
    return full


def _policy(batch, signer_address: str, rate: float = 0.05) -> VerifyPolicy:
    allow = Allowlist().approve(signer_address, [batch.runtime_id])
    return VerifyPolicy(sample_rate=rate, allowlist=allow, verifier_secret=b"s")


def _replay_wrong(batch, row: int) -> tuple[bool, str]:
    """What a dispute or audit of ``row`` decides, from the batch's stored dataset."""
    leaf = batch.receipt(row)["leaf_values"]
    return reexecute_row(
        batch, row, bytes.fromhex(leaf["inputHash"][2:]), bytes.fromhex(leaf["outputHash"][2:])
    )


def _read_bytes_so_far() -> int:
    """Bytes this process has read through read(2) and friends (Linux ``rchar``)."""
    with open("/proc/self/io") as fh:
        for line in fh:
            if line.startswith("rchar:"):
                return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


def _write_with_hole(path: str, raw: bytes, hole: int) -> None:
    """``raw`` (a Parquet file) rewritten at ``path`` with ``hole`` unreferenced bytes
    between its last column chunk and its footer, left as a sparse hole: a valid Parquet
    file of the same rows (its footer is found from the end, every chunk offset is
    unchanged) that costs the node no disk."""
    footer_len = struct.unpack("<I", raw[-8:-4])[0]
    footer_start = len(raw) - 8 - footer_len
    tmp = path + ".rt-tmp"
    with open(tmp, "wb") as fh:
        fh.write(raw[:footer_start])
        fh.seek(footer_start + hole)
        fh.write(raw[footer_start:])
    os.replace(tmp, path)


# -- 1. the file read is the file hashed -------------------------------------------------------
@pytest.fixture(params=["csv", "arrow", "parquet"])
def glob_named(request, tmp_path, published, enclave, requester):
    """The requester's file is named ``rows[1].csv`` (or ``.arrow``) and its folder also
    holds ``rows1.csv`` (row 17 differs). polars reads a path as a glob pattern unless
    told not to (``rows[1].csv`` would read ``rows1.csv``): ogkit hashes the file it was
    named, so it must read that file too. Returns the named file, its sibling and the
    honest batch of the named file."""
    frame = pl.read_parquet(sample_data_path("tabular")).head(400)
    folder = tmp_path / "data"
    folder.mkdir()
    ext = request.param
    named, sibling = folder / f"rows[1].{ext}", folder / f"rows1.{ext}"
    other = frame.with_columns(
        pl.when(pl.int_range(pl.len()) == 17).then(pl.col("f3") + 1).otherwise(pl.col("f3"))
    )
    writers = {"csv": pl.DataFrame.write_csv, "arrow": pl.DataFrame.write_ipc}
    for f, p in ((frame, named), (other, sibling)):
        writers.get(ext, pl.DataFrame.write_parquet)(f, p)
    from ogkit.infer import run_verified_inference

    batch = run_verified_inference(
        "tab", named, attester=enclave, requester=requester, hub=published,
        partition_rows=100, progress=False,
    )  # fmt: skip
    assert batch.store.get("datasets", batch.manifest.input_data.object) == named.read_bytes()
    return named, sibling, batch


def test_glob_named_file_is_the_file_read(glob_named, published, enclave):
    """The batch ran the named file's rows: its stored dataset replays row 17 to the
    receipt's input hash, and the requester's own file and commitment bind it."""
    named, _, batch = glob_named
    wrong, why = _replay_wrong(batch, 17)
    assert not wrong, why
    full = _full(named)
    if named.suffix == ".parquet":  # only Parquet files are read pinned: the shortcut's
        assert full.origin is not None and full.origin.sha256 == _sha256(named)
    else:
        assert full.origin is None
    policy = _policy(batch, enclave.address)
    for kw in (dict(dataset=named), dict(commitment=full)):
        v = verify_batch(batch, policy, hub=published, progress=False, **kw)
        assert v.passed and v.inputs_bound, (list(kw), v.findings)


def test_the_siblings_rows_under_the_named_files_bytes(glob_named, published, enclave):
    """The node runs the sibling's rows, stores the requester's file's bytes as its
    dataset and names the requester's input root, re-signed: the stored file is the
    requester's (the shortcut applies), the records are not, and row 17 is named in both
    modes."""
    from test_stored_inputs import _with

    from ogkit.infer import run_verified_inference

    named, sibling, batch = glob_named
    ran = run_verified_inference(
        "tab", sibling, attester=enclave, requester=batch.manifest.requester, hub=published,
        store=batch.store, partition_rows=100, job="sibling", progress=False,
    )  # fmt: skip
    forged = _with(
        ran,
        enclave,
        reseal=True,
        dataset_id=batch.manifest.dataset_id,
        input_data={"object": batch.manifest.input_data.object},
    )
    full = _full(named)
    from ogkit.verify import _stored_is

    assert _stored_is(forged, full.origin) if full.origin is not None else True
    policy = _policy(batch, enclave.address)
    for kw in (dict(dataset=named), dict(commitment=full)):
        v = verify_batch(forged, policy, hub=published, progress=False, **kw)
        assert not v.passed and not v.inputs_bound, list(kw)
        assert 17 in v.failing_rows(), (list(kw), v.reasons())


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# -- 2. the node makes the verifier hash as many bytes as it likes ----------------------------
HOLE = 512 << 20


def test_sparse_stored_dataset_is_hashed_whole_before_any_check(batch, published, enclave):
    """The node rewrites its stored dataset object (its own store's file) as the same
    Parquet rows with a 512 MiB sparse hole before the footer (a valid file; a real
    attack uses terabytes: the hole costs no disk). Hashing the object whole would read
    every byte of the hole (about 3 s a GiB here): the requester's file size is known, so
    a stored object of another size is not hashed, and its rows are read by row group."""
    d = batch.manifest.input_data
    path = batch.store.object_path("datasets", d.object)
    raw = Path(path).read_bytes()
    _write_with_hole(path, raw, HOLE)
    assert pl.read_parquet(path).equals(pl.read_parquet(sample_data_path("tabular")))
    full = _full(sample_data_path("tabular"))
    policy = _policy(batch, enclave.address, rate=0.0)
    before = _read_bytes_so_far()
    verdict = verify_batch(batch, policy, hub=published, progress=False, commitment=full)
    read = _read_bytes_so_far() - before
    assert verdict.passed, verdict.findings  # the same rows: a pass is right
    assert read < 64 << 20, f"verify read {read / 2**20:.0f} MiB for a {len(raw)} byte dataset"


# -- 3. what holds: pinned ---------------------------------------------------------------
def _honest_full() -> DatasetCommitment:
    return _full(sample_data_path("tabular"))


def _verify_forged(honest: Honest, t, full, rate: float, dask=None):
    policy = VerifyPolicy(sample_rate=rate, allowlist=honest.allowlist, verifier_secret=b"s")
    return verify_batch(
        t.artifact_id, policy, store=honest.store, hub=honest.hub, progress=False,
        commitment=full, dask=dask,
    )  # fmt: skip


def test_shortcut_applies_to_the_honest_batch(honest: Honest, dask_client):
    """The honest batch's stored object is the requester's file byte for byte: the
    shortcut's premise holds and the batch passes, bound, in process and on Dask."""
    from ogkit.verify import _stored_is

    full = _honest_full()
    assert full.origin is not None and _stored_is(honest.batch, full.origin)
    for dask in (None, dask_client):
        t = Forge(honest, "rt-honest").publish()
        verdict = _verify_forged(honest, t, full, 0.05, dask)
        assert verdict.passed and verdict.inputs_bound, verdict.findings


def test_one_records_input_hash_moved_under_the_shortcut(honest: Honest, dask_client):
    """Stored dataset the requester's (shortcut on). The node writes row 600's input hash
    as row 601's committed hash, re-links the leaf, pins the root and re-signs: the worker
    digest differs, the partition is checked again with the hashes themselves, and both
    paths name the row."""
    full = _honest_full()
    f = Forge(honest, "rt-moved")
    t = f.table(1)
    in_h = hash_rows(t["input_hash"]).copy()
    in_h[100] = full.row_hashes[601]
    t = t.set_column(t.schema.get_field_index("input_hash"), "input_hash", hash_column(in_h))
    f.write(1, f.relink(t))
    f.seal()
    forged = f.publish()
    local = _verify_forged(honest, forged, full, 0.05)
    on_dask = _verify_forged(honest, forged, full, 0.05, dask_client)
    for v in (local, on_dask):
        assert not v.passed and not v.inputs_bound
        assert ("input-hash-mismatch", 600) in [(x.reason, x.row_index) for x in v.findings]
    assert [(x.reason, x.row_index) for x in local.findings] == [
        (x.reason, x.row_index) for x in on_dask.findings
    ]


def test_forged_outputs_with_consistent_hashes_under_the_shortcut(honest: Honest, dask_client):
    """Stored dataset the requester's, records' input hashes the requester's (digest
    right), outputs of rows 1000..1009 forged with their hashes, leaves and root: only
    re-execution can tell, and it does (from the stored rows, checked against the
    committed hashes first)."""
    full = _honest_full()
    f = Forge(honest, "rt-outputs")
    f.forge_outputs(2, _between(1000, 1010))
    f.seal()
    forged = f.publish()
    for dask in (None, dask_client):
        v = _verify_forged(honest, forged, full, 1.0, dask)
        bad = sorted(x.row_index for x in v.findings if x.reason == "reexecution-mismatch")
        assert bad == list(range(1000, 1010)), v.reasons()
        assert v.inputs_bound  # the inputs are the requester's; the outputs are not


def test_same_bytes_under_another_format_name_is_not_the_shortcut(batch, published, enclave):
    """The requester's Parquet bytes named as "arrow" (or "csv"): no shortcut, the
    stored rows are read under the format named and cannot be."""
    from test_stored_inputs import _with

    full = _honest_full()
    for fmt in ("arrow", "csv", "ipc"):
        forged = _with(batch, input_data={"format": fmt})
        v = verify_batch(
            forged, _policy(batch, enclave.address), hub=published, progress=False,
            commitment=full,
        )  # fmt: skip
        assert not v.passed and "inputs-unavailable" in v.reasons(), (fmt, v.reasons())


def test_other_bytes_of_the_same_rows_take_the_old_path(batch, published, enclave):
    """The node re-encodes the requester's rows (another compression): other bytes, so no
    shortcut; the stored rows are read and hashed and they are the requester's: a pass.
    With one row changed as well, that row is named."""
    from test_stored_inputs import _put_frame, _with

    full = _honest_full()
    frame = pl.read_parquet(sample_data_path("tabular"))
    policy = _policy(batch, enclave.address)
    sink = io.BytesIO()
    frame.write_parquet(sink, compression="gzip")
    same_rows = batch.store.put("datasets", sink.getvalue())
    assert batch.store.get("datasets", same_rows) != sample_data_path("tabular").read_bytes()
    v = verify_batch(
        _with(batch, input_data={"object": same_rows}), policy, hub=published, progress=False,
        commitment=full,
    )  # fmt: skip
    assert v.passed and v.inputs_bound, v.findings
    changed = _put_frame(
        batch,
        frame.with_columns(
            pl.when(pl.int_range(pl.len()) == 77).then(pl.col("f1") * 2).otherwise(pl.col("f1"))
        ),
    )
    v = verify_batch(
        _with(batch, input_data={"object": changed}), policy, hub=published, progress=False,
        commitment=full,
    )  # fmt: skip
    assert not v.passed and not v.inputs_bound and v.failing_rows() == [77], v.findings


def test_origin_only_from_a_commitment_computed_here():
    """A commitment read from text, built by its constructor or copied by
    ``dataclasses.replace`` has no origin (and no row hashes); one of an in-memory frame
    or of a folder of two files has none either."""
    full = _honest_full()
    assert full.origin is not None and full.origin.format == "parquet"
    assert DatasetCommitment.parse(str(full)).origin is None
    assert DatasetCommitment(full.input_root, full.row_count).origin is None
    copied = dataclasses.replace(full)
    assert copied.origin is None and copied.row_hashes is None
    frame = pl.read_parquet(sample_data_path("tabular"))
    assert _full(frame).origin is None


def test_origin_of_a_folder_of_two_files_or_a_file_changed_after_hashing(tmp_path):
    frame = pl.read_parquet(sample_data_path("tabular"))
    folder = tmp_path / "two"
    folder.mkdir()
    frame.head(1000).write_parquet(folder / "a.parquet")
    frame.tail(1000).write_parquet(folder / "b.parquet")
    assert _full(folder).origin is None
    one = tmp_path / "one.parquet"
    frame.write_parquet(one)
    source = dataclasses.replace(open_source(one), pinned=True)
    from ogkit.dataset import plan_inputs

    plan = plan_inputs(source, load_model(sample_model_path("tabular")).inputs)
    assert committed_file(source, plan) is not None
    st = os.stat(one)
    os.utime(one, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert committed_file(source, plan) is None


def test_requester_file_changed_between_commit_and_verify(tmp_path, published, enclave, requester):
    """The requester commits to its file, then the file changes (row 5) and the node
    runs the committed rows but stores the changed file: its bytes are not the origin's,
    so the stored rows are read and row 5 is named."""
    from ogkit.infer import run_verified_inference

    frame = pl.read_parquet(sample_data_path("tabular")).head(400)
    path = tmp_path / "req.parquet"
    frame.write_parquet(path)
    full = _full(path)
    batch = run_verified_inference(
        "tab", path, attester=enclave, requester=requester, hub=published,
        partition_rows=100, progress=False,
    )  # fmt: skip
    frame.with_columns(
        pl.when(pl.int_range(pl.len()) == 5).then(pl.col("f0") + 3).otherwise(pl.col("f0"))
    ).write_parquet(path)
    changed = batch.store.put_file("datasets", str(path))
    from test_stored_inputs import _with

    forged = _with(batch, input_data={"object": changed})
    v = verify_batch(
        forged, _policy(batch, enclave.address), hub=published, progress=False, commitment=full
    )
    assert not v.passed and 5 in v.failing_rows() and not v.inputs_bound, v.findings


def _memory_batch(tmp_path, published, enclave, requester, fmt: str):
    from ogkit.infer import run_verified_inference

    frame = pl.read_parquet(sample_data_path("tabular")).head(300)
    path = tmp_path / f"req.{fmt}"
    frame.write_csv(path) if fmt == "csv" else frame.write_parquet(path)
    full = _full(path)
    assert (full.origin is not None) == (fmt == "parquet")
    store = ContentStore(f"memory://rt-identity-{fmt}-{tmp_path.name}")
    batch = run_verified_inference(
        "tab", path, attester=enclave, requester=requester, hub=published, store=store,
        partition_rows=100, progress=False,
    )  # fmt: skip
    assert not batch.store.shared and batch.manifest.input_data.format == fmt
    return path, full, batch


def test_csv_requester_file_in_a_memory_store(tmp_path, published, enclave, requester):
    """A CSV requester file stored as it is, in a store in this process's memory: no
    shortcut (a CSV file is read by name, so its commitment has no origin), and the
    honest batch passes (commitment and dataset mode, every row re-executed from the
    stored rows)."""
    path, full, batch = _memory_batch(tmp_path, published, enclave, requester, "csv")
    assert full.origin is None
    for kw in (dict(commitment=full), dict(dataset=path)):
        v = verify_batch(
            batch, _policy(batch, enclave.address, 1.0), hub=published, progress=False, **kw
        )
        assert v.passed and v.inputs_bound and v.sample_size == 300, v.findings


@pytest.mark.parametrize("mode", ["row-hashes", "root-only"])
def test_memory_store_on_dask_ships_each_partition_its_own_rows(
    tmp_path, published, enclave, requester, dask_client, mode
):
    """With a store in this process's memory, each partition's stored rows are shipped
    to its task. A dict given to ``dask.scatter`` is scattered value by value under its
    keys, so every partition's rows would go out under the one key ``"features"`` and be
    checked against another partition's rows (the honest batch failing with
    ``input-hash-mismatch``, ``reexecution-mismatch`` or lost dependencies). Each
    partition's own rows: a pass, as in process, with the root only (no shortcut) and
    with the row hashes."""
    from ogkit.dataset import DatasetCommitment

    _, full, batch = _memory_batch(tmp_path, published, enclave, requester, "parquet")
    commitment = full if mode == "row-hashes" else DatasetCommitment.parse(str(full))
    policy = _policy(batch, enclave.address)
    local = verify_batch(batch, policy, hub=published, progress=False, commitment=commitment)
    assert local.passed, local.findings
    v = verify_batch(
        batch, policy, hub=published, progress=False, commitment=commitment, dask=dask_client
    )
    assert v.passed and v.inputs_bound, v.reasons()


def test_requester_file_rewritten_with_the_same_mtime_and_size(
    tmp_path, published, enclave, requester
):
    """The verifier's process decoded the requester's Parquet file's row group before
    (here: two commits); the file is then rewritten with row 5 changed, the same size and
    the same mtime (``cp -p``, ``rsync -t``, an unpacked archive). A read cache keyed by
    (path, mtime, size) would give the old rows under the sha256 of the new bytes, and a
    batch of the old rows that stores the new file would take the shortcut. The caches'
    keys hold the inode and ctime too: the new rows are read, the commitment is of them,
    and the batch of the old rows is refused in both modes."""
    from test_stored_inputs import _with

    from ogkit.dataset import clear_read_caches
    from ogkit.infer import run_verified_inference

    clear_read_caches()
    frame = pl.read_parquet(sample_data_path("tabular")).head(400)
    path = tmp_path / "req.parquet"
    frame.write_parquet(path, compression="uncompressed", statistics=False)
    st = os.stat(path)
    batch = run_verified_inference(
        "tab", path, attester=enclave, requester=requester, hub=published,
        partition_rows=100, progress=False,
    )  # fmt: skip
    _full(path), _full(path)  # the verifier's process has read the file before
    frame.with_columns(
        pl.when(pl.int_range(pl.len()) == 5).then(pl.col("f0") + 3).otherwise(pl.col("f0"))
    ).write_parquet(path, compression="uncompressed", statistics=False)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(path).st_size == st.st_size
    full = _full(path)
    assert full.origin.sha256 == _sha256(path)  # the new bytes ...
    assert full.input_root != batch.manifest.dataset_id  # ... and the new rows' root
    forged = _with(batch, input_data={"object": batch.store.put_file("datasets", str(path))})
    accepted = []
    for kw in (dict(commitment=full), dict(dataset=path)):
        v = verify_batch(
            forged, _policy(batch, enclave.address), hub=published, progress=False, **kw
        )
        assert 5 not in v.sampled_rows  # the precondition: row 5 is not re-executed
        if v.passed and v.inputs_bound:
            accepted.append(next(iter(kw)))
    assert _replay_wrong(forged, 5)[0]  # an audit of row 5 fails
    assert accepted == [], f"accepted with {accepted}"
