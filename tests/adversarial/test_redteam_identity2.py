"""Second red team of the stored-dataset identity shortcut (``ogkit.verify._stored_is``)
and the hardening that came with it (real paths, file stamps, the private folder of
fetched datasets).

Attacker: an approved node (records, manifest re-signed with its key, every file of its
content store) and possibly another local user of the verifier's machine (may make files,
folders and links in the temporary folder, or in a folder of its own a requester's path
goes through). Each weakness this red team found is fixed; its test says how.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest
from helpers import rewrite_records
from test_stored_inputs import _with

import ogkit.dataset as dataset_mod
from ogkit.dataset import (
    _local_copy,
    _private_folder,
    commit_dataset,
    open_source,
)
from ogkit.errors import ConfigError
from ogkit.load import load_model
from ogkit.samples import sample_data_path, sample_model_path
from ogkit.store import ContentStore
from ogkit.verify import Allowlist, VerifyPolicy, _stored_is, verify_batch


def _policy(batch, signer_address: str, rate: float = 0.0) -> VerifyPolicy:
    allow = Allowlist().approve(signer_address, [batch.runtime_id])
    return VerifyPolicy(sample_rate=rate, allowlist=allow, verifier_secret=b"s")


def _sha(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _two_files(folder: Path) -> tuple[Path, Path]:
    """``a.parquet`` (the requester's 400 rows) and ``b.parquet``: the same size, row 5
    changed (uncompressed, no statistics: a value changed in place)."""
    folder.mkdir(parents=True, exist_ok=True)
    frame = pl.read_parquet(sample_data_path("tabular")).head(400)
    a, b = folder / "a.parquet", folder / "b.parquet"
    frame.write_parquet(a, compression="uncompressed", statistics=False)
    frame.with_columns(
        pl.when(pl.int_range(pl.len()) == 5).then(pl.col("f0") + 3).otherwise(pl.col("f0"))
    ).write_parquet(b, compression="uncompressed", statistics=False)
    assert a.stat().st_size == b.stat().st_size and _sha(a) != _sha(b)
    return a, b


def _swap_link_while_hashing(monkeypatch, link: Path, to: Path) -> None:
    """A local attacker who owns ``link`` flips it to ``to`` just before the file is
    opened to be hashed and back right after (a loop of ``ln -sfn`` + ``mv -T`` wins
    this race in a few tries: opening, and resolving the real path the readers use, are
    separate look-ups of the name). Flipping a symlink changes neither target's inode,
    mtime, size nor ctime."""
    real = dataset_mod._open_regular
    back = os.readlink(link)

    def racing(path):
        if Path(path) == link:
            tmp = link.with_name(link.name + ".flip")
            tmp.symlink_to(to)
            os.replace(tmp, link)
            try:
                return real(path)
            finally:
                tmp.symlink_to(back)
                os.replace(tmp, link)
        return real(path)

    monkeypatch.setattr(dataset_mod, "_open_regular", racing)


# -- 1. the name looked up twice: opened to be hashed, resolved for the readers -----------
def test_open_source_hash_is_of_the_file_it_reads(tmp_path, monkeypatch):
    """``open_source`` hashes the file through one descriptor and requires the real path
    the readers use to name that very file (device, inode, size, mtime, ctime): a link
    flipped around the open makes them differ, and opening the dataset is refused with a
    clear error instead of a hash of ``b`` under a path to ``a``."""
    a, b = _two_files(tmp_path / "data")
    link = tmp_path / "req.parquet"
    link.symlink_to(a)
    _swap_link_while_hashing(monkeypatch, link, b)
    with pytest.raises(ConfigError, match="changed while it was read"):
        open_source(link)
    monkeypatch.undo()
    source = open_source(link)
    assert source.file_sha256[0][0] == _sha(source.paths[0]) == _sha(a)


def _swap_folder_during_reads(monkeypatch, folder: Path, other: Path) -> None:
    """A local user who owns ``folder``'s parent swaps ``folder`` for a link to ``other``
    while the rows are read (after the file was hashed), and back after."""
    real = dataset_mod._row_group_sizes

    def swapped(path, stamp, columns):
        if Path(path).parent == folder and not folder.is_symlink():
            folder.rename(folder.with_name(folder.name + ".away"))
            folder.symlink_to(other)
        return real(path, stamp, columns)

    monkeypatch.setattr(dataset_mod, "_row_group_sizes", swapped)


@pytest.fixture
def raced(tmp_path, published, enclave, requester):
    """The batch of ``a`` (the requester's rows, honest records), its manifest naming ``b``
    as the stored dataset (same size, row 5 differs)."""
    from ogkit.infer import run_verified_inference

    a, b = _two_files(tmp_path / "data")
    batch = run_verified_inference(
        "tab", a, attester=enclave, requester=requester, hub=published,
        partition_rows=100, progress=False,
    )  # fmt: skip
    forged = _with(batch, input_data={"object": batch.store.put_file("datasets", str(b))})
    return a, b, batch, forged


def test_stored_dataset_of_other_rows_by_commitment_under_a_flipped_link(
    raced, tmp_path, monkeypatch, published, enclave
):
    """The requester commits through a link it does not own: with the link flipped around
    the hash, the commitment is refused (its rows would be ``a``'s, its origin ``b``'s
    sha256, and a node storing ``b`` would take the shortcut). With the folder of the
    file swapped while the rows are read, after the hash, it is refused too: a pinned
    read never reads a file that is not the version hashed. Without the race the forged
    batch names row 5."""
    a, b, batch, forged = raced
    model = load_model(sample_model_path("tabular"))
    honest_commit = commit_dataset(a, model)
    v = verify_batch(
        forged, _policy(batch, enclave.address), hub=published, progress=False,
        commitment=honest_commit,
    )  # fmt: skip
    assert not v.passed and 5 in v.failing_rows(), v.findings  # the control

    link = tmp_path / "req.parquet"
    link.symlink_to(a)
    with monkeypatch.context() as m:
        _swap_link_while_hashing(m, link, b)
        with pytest.raises(ConfigError, match="changed while it was read"):
            commit_dataset(link, model)
    # The folder swapped after the hash, while the rows are read.
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy2(b, other / a.name)
    dataset_mod.clear_read_caches()
    with monkeypatch.context() as m:
        _swap_folder_during_reads(m, a.parent, other)
        with pytest.raises(ConfigError, match="changed while it was read"):
            commit_dataset(a, model)
    if a.parent.is_symlink():
        a.parent.unlink()
        a.parent.with_name(a.parent.name + ".away").rename(a.parent)
    assert commit_dataset(a, model).origin.sha256 == _sha(a)


def test_stored_dataset_of_other_rows_by_dataset_under_a_flipped_link(
    raced, tmp_path, monkeypatch, published, enclave
):
    """The same race when the verifier opens ``dataset=``: opening the requester's data
    is refused (a ``dataset-mismatch``), and by dataset the stored rows are always
    compared with the requester's anyway."""
    a, b, batch, forged = raced
    v = verify_batch(
        forged, _policy(batch, enclave.address), hub=published, progress=False, dataset=a
    )
    assert not v.passed and 5 in v.failing_rows(), v.findings  # the control
    link = tmp_path / "req.parquet"
    link.symlink_to(a)
    _swap_link_while_hashing(monkeypatch, link, b)
    v = verify_batch(
        forged, _policy(batch, enclave.address), hub=published, progress=False, dataset=link
    )
    assert not (v.passed and v.inputs_bound), v.findings


def test_requesters_folder_swapped_during_the_checks_and_back(
    raced, tmp_path, monkeypatch, published, enclave, requester
):
    """By dataset, the requester's rows are read by name while the partitions are
    checked: a local user who owns a folder above the requester's file
    (``tmp_path/shared``) replaces the file's folder by a link to one holding ``x``
    (another 400 rows) for the checks, then puts it back (the file's own inode, mtime
    and ctime never change). The node ran ``x`` and stores the requester's own file
    ``a``. The shortcut is never taken by dataset: the stored rows (``a``) are compared
    with the rows read (``x``), and row 7 is named."""
    import ogkit.verify as verify_mod
    from ogkit.infer import run_verified_inference

    a, _b, batch, _ = raced
    shared = tmp_path / "shared"
    (shared / "d").mkdir(parents=True)
    req = shared / "d" / "req.parquet"
    shutil.copy2(a, req)
    frame = pl.read_parquet(a)
    other = shared / "other"
    other.mkdir()
    x_rows = frame.with_columns(
        pl.when(pl.int_range(pl.len()) == 7).then(pl.col("f1") * 2).otherwise(pl.col("f1"))
    )
    x_rows.write_parquet(other / "req.parquet", compression="uncompressed", statistics=False)
    ran = run_verified_inference(
        "tab", x_rows, attester=enclave, requester=requester, hub=published,
        store=batch.store, partition_rows=100, job=batch.manifest.job, progress=False,
    )  # fmt: skip
    forged = _with(ran, input_data={"object": batch.store.put_file("datasets", str(req))})
    assert forged.manifest.input_data.format == "parquet"
    real = verify_mod._run_checks

    def swapped(*args, **kw):
        (shared / "d").rename(shared / "d.away")
        (shared / "d").symlink_to(other)
        try:
            return real(*args, **kw)
        finally:
            (shared / "d").unlink()
            (shared / "d.away").rename(shared / "d")

    # control: swapped before the verifier opens the file: the stored rows are compared
    v = verify_batch(
        forged, _policy(batch, enclave.address), hub=published, progress=False, dataset=req
    )
    assert not v.passed  # a's rows are not the batch's
    monkeypatch.setattr(verify_mod, "_run_checks", swapped)
    v = verify_batch(
        forged, _policy(batch, enclave.address, 1.0), hub=published, progress=False, dataset=req
    )
    assert not (v.passed and v.inputs_bound), "passed: stored a, outputs of x's rows"


# -- 2. the private folder of fetched datasets ----------------------------------------------
@pytest.fixture
def tmpdir_here(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    _private_folder.cache_clear()
    yield tmp_path
    _private_folder.cache_clear()


def test_fetched_folder_checked_once_then_trusted_forever(tmpdir_here):
    """The folder is checked at every fetch: a long-running verifier whose folder is
    removed later (a tmp cleaner, ``systemd-tmpfiles``, a user) would otherwise keep
    using the name, which anyone may then take: here it comes back writable by all with
    a planted file under the object's name, and the store's bytes are still returned."""
    store = ContentStore("memory://ogkit-rt2-cached-folder")
    good = b"PAR1 the store's bytes"
    object_id = store.put("datasets", good)
    first = Path(_local_copy(store, object_id, "parquet"))
    folder = first.parent
    assert folder == tmpdir_here / f"ogkit-datasets-{os.getuid()}"
    shutil.rmtree(folder)  # cleaned away
    folder.mkdir()
    folder.chmod(0o777)  # taken by another user
    (folder / first.name).write_bytes(b"PAR1 planted rows")
    got = Path(_local_copy(store, object_id, "parquet"))
    assert got.read_bytes() == good, f"{got} holds {got.read_bytes()!r}"


@pytest.mark.parametrize("kind", ["link-to-private-dir", "file", "other-writable"])
def test_fetched_folder_taken_before_the_verifier(tmpdir_here, kind):
    """Holds. The folder's name taken before the verifier's first fetch: a symlink (even
    to a private folder of this user's), a plain file, a folder others may write to: none
    is used, and the store's bytes come back."""
    name = tmpdir_here / f"ogkit-datasets-{os.getuid()}"
    store = ContentStore(f"memory://ogkit-rt2-taken-{kind}")
    good = b"PAR1 the store's bytes"
    object_id = store.put("datasets", good)
    target = tmpdir_here / "private"
    target.mkdir(mode=0o700)
    (target / f"{object_id}.parquet").write_bytes(b"PAR1 planted rows")
    if kind == "link-to-private-dir":
        name.symlink_to(target)
    elif kind == "file":
        name.write_bytes(b"")
    else:
        name.mkdir()
        name.chmod(0o777)
        (name / f"{object_id}.parquet").write_bytes(b"PAR1 planted rows")
    got = Path(_local_copy(store, object_id, "parquet"))
    assert got.read_bytes() == good
    assert got.parent not in (name, target) and os.stat(got.parent).st_mode & 0o077 == 0


# -- 3. hostile records and store objects under the shortcut --------------------------------
@pytest.mark.parametrize("kind", ["binary16", "large_binary", "string", "fixed64"])
@pytest.mark.parametrize("on_dask", [False, True])
def test_input_hash_column_of_another_type_under_the_shortcut(
    batch, published, enclave, on_dask, kind, request
):
    """Holds. The records' ``input_hash`` column of another type (whose bytes would still
    digest to the requester's on the digest path, for ``large_binary`` of 32-byte values):
    the records are unreadable, never a pass, in process and on Dask."""
    full = commit_dataset(sample_data_path("tabular"), load_model(sample_model_path("tabular")))
    assert _stored_is(batch, full.origin)
    types = {
        "binary16": pa.binary(16),
        "large_binary": pa.large_binary(),
        "string": pa.string(),
        "fixed64": pa.binary(64),
    }

    def forge(table: pa.Table) -> pa.Table:
        col = table.column("input_hash").to_pylist()
        if kind == "binary16":
            col = [v[:16] for v in col]
        elif kind == "string":
            col = [v.hex() for v in col]
        elif kind == "fixed64":
            col = [v + v for v in col]
        i = table.schema.get_field_index("input_hash")
        return table.set_column(i, "input_hash", pa.array(col, types[kind]))

    rewrite_records(batch, 0, forge)
    dask = request.getfixturevalue("dask_client") if on_dask else None
    v = verify_batch(
        batch, _policy(batch, enclave.address, 0.05), hub=published, progress=False,
        commitment=full, dask=dask,
    )  # fmt: skip
    assert not v.passed and "records-unreadable" in v.reasons(), v.reasons()
    # (inputs_bound stays True: an unreadable partition is not one of the reasons it
    # counts; the same without the shortcut, and the verdict fails)


def test_store_object_hardlinked_to_the_requesters_file(tmp_path, published, enclave, requester):
    """Holds. The store's object a hard link to the requester's file (the same bytes:
    the shortcut applies and the honest batch passes). The file then edited in place
    (the store's object with it): the sha256 differs, the stored rows are read, row 5
    is named."""
    from ogkit.infer import run_verified_inference

    a, b = _two_files(tmp_path / "data")
    batch = run_verified_inference(
        "tab", a, attester=enclave, requester=requester, hub=published,
        partition_rows=100, progress=False,
    )  # fmt: skip
    full = commit_dataset(a, load_model(sample_model_path("tabular")))
    obj = Path(batch.store.object_path("datasets", batch.manifest.input_data.object))
    obj.unlink()
    os.link(a, obj)
    assert _stored_is(batch, full.origin)
    policy = _policy(batch, enclave.address)
    v = verify_batch(batch, policy, hub=published, progress=False, commitment=full)
    assert v.passed and v.inputs_bound, v.findings
    with open(a, "r+b") as fh:  # in place: the link sees it
        fh.write(b.read_bytes())
    assert _sha(obj) == _sha(b)
    v = verify_batch(batch, policy, hub=published, progress=False, commitment=full)
    assert not v.passed and not v.inputs_bound and 5 in v.failing_rows(), v.findings


@pytest.mark.parametrize("kind", ["fifo", "dir", "link-to-fifo", "dev-zero"])
def test_store_object_not_a_regular_file_under_the_shortcut(batch, published, enclave, kind):
    """Holds. The stored object a FIFO (no writer: a blocking open would hang), a folder,
    a link to a FIFO or to /dev/zero: no hang, no traceback, ``inputs-unavailable``."""
    full = commit_dataset(sample_data_path("tabular"), load_model(sample_model_path("tabular")))
    obj = Path(batch.store.object_path("datasets", batch.manifest.input_data.object))
    obj.unlink()
    if kind == "fifo":
        os.mkfifo(obj)
    elif kind == "dir":
        obj.mkdir()
        (obj / "part-0.parquet").write_bytes(sample_data_path("tabular").read_bytes())
    elif kind == "link-to-fifo":
        fifo = obj.with_name("fifo")
        os.mkfifo(fifo)
        obj.symlink_to(fifo)
    else:
        obj.symlink_to("/dev/zero")
    assert not _stored_is(batch, full.origin)
    v = verify_batch(
        batch, _policy(batch, enclave.address, 0.05), hub=published, progress=False,
        commitment=full,
    )  # fmt: skip
    assert not v.passed and not v.inputs_bound and "inputs-unavailable" in v.reasons()


def test_requesters_dataset_a_folder_named_like_a_file(tmp_path, batch, published, enclave):
    """Holds. The requester names ``rows.parquet``, a folder holding the one file the batch
    stored: that file is the one hashed and read; the shortcut applies, the batch passes,
    and the same folder with a second file is no single file (no shortcut), and fails
    on its row count."""
    folder = tmp_path / "rows.parquet"
    folder.mkdir()
    shutil.copy(sample_data_path("tabular"), folder / "part-0.parquet")
    source = open_source(folder)
    assert source.paths == (os.path.realpath(folder / "part-0.parquet"),)
    policy = _policy(batch, enclave.address, 0.05)
    v = verify_batch(batch, policy, hub=published, progress=False, dataset=folder)
    assert v.passed and v.inputs_bound, v.findings
    shutil.copy(sample_data_path("tabular"), folder / "part-1.parquet")
    v = verify_batch(batch, policy, hub=published, progress=False, dataset=folder)
    assert not v.passed and "dataset-mismatch" in v.reasons()


@pytest.mark.parametrize("by", ["commitment", "no-requester-data"])
def test_store_object_turned_into_a_fifo_after_its_checks_hangs_verify(
    batch, published, enclave, monkeypatch, by
):
    """The node flips its stored object between the requester's bytes and a FIFO with no
    writer (it controls the store's files), here right after ``open_stored_dataset``
    asked ``is_file``, the window a flipping loop hits. A Parquet object is described
    and read only through a descriptor opened without blocking and checked to be the
    regular file stat'ed: a finding (``inputs-unavailable``), never a hang."""
    import threading

    full = commit_dataset(sample_data_path("tabular"), load_model(sample_model_path("tabular")))
    obj = Path(batch.store.object_path("datasets", batch.manifest.input_data.object))
    saved = obj.read_bytes()
    real = dataset_mod._stored_local
    dataset_mod.clear_read_caches()

    def flipped(path, fmt, stamp):
        if Path(path) == obj and not obj.is_fifo():
            obj.unlink()
            os.mkfifo(obj)
        return real(path, fmt, stamp)

    monkeypatch.setattr(dataset_mod, "_stored_local", flipped)
    done: list = []
    t = threading.Thread(
        target=lambda: done.append(
            verify_batch(
                batch,
                _policy(batch, enclave.address),
                hub=published,
                progress=False,
                commitment=full if by == "commitment" else None,
            )
        ),
        daemon=True,
    )
    t.start()
    t.join(8)
    hung = t.is_alive()
    while t.is_alive():  # let it go: a writer that closes at once gives the reader EOF
        with contextlib.suppress(OSError):
            os.close(os.open(obj, os.O_WRONLY | os.O_NONBLOCK))
        t.join(0.2)
    obj.unlink()
    obj.write_bytes(saved)
    assert not hung, "verify_batch hung on a FIFO the node swapped in"
    assert done and not done[0].passed
