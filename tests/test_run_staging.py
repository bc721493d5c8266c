"""One task per partition: a run stages its records under its run key until the input
root decides the batch id, then moves them into the batch's folder; real Dask, real
onnxruntime, real files."""

from __future__ import annotations

import json
import tempfile
import uuid
from pathlib import Path

import pytest

from ogkit.batch import load_batch
from ogkit.infer import run_verified_inference
from ogkit.samples import make_tabular
from ogkit.store import ContentStore


@pytest.fixture
def rows(tmp_path):
    frame = make_tabular(3000, seed=5)
    path = tmp_path / "rows.parquet"
    frame.write_parquet(path)
    return frame, path


def _run(data, store, published, enclave, requester, **kw):
    return run_verified_inference(
        "tab",
        data,
        attester=enclave,
        requester=requester,
        hub=published,
        store=store,
        partition_rows=700,
        progress=False,
        **kw,
    )


def test_every_source_and_store_gives_the_same_batch(
    rows, published, enclave, requester, dask_client, tmp_path
):
    """A file on Dask, the same rows as an in-memory frame on Dask (shipped to the
    workers slice by slice), into a store in this process's memory on Dask (the records
    come back and are written here), and in this process: one batch root, one input root."""
    frame, path = rows
    runs = {
        "file-dask": (path, ContentStore(tmp_path / "a"), dask_client),
        "frame-dask": (frame, ContentStore(tmp_path / "b"), dask_client),
        "memory-dask": (path, ContentStore(f"memory://stage-{uuid.uuid4().hex}"), dask_client),
        "file-here": (path, ContentStore(tmp_path / "c"), None),
    }
    batches = {
        name: _run(data, store, published, enclave, requester, dask=client)
        for name, (data, store, client) in runs.items()
    }
    assert len({b.batch_root for b in batches.values()}) == 1
    assert len({b.manifest.dataset_id for b in batches.values()}) == 1
    for b in batches.values():
        assert len(b.partitions) == 5
        for part in b.partitions:  # records moved into the batch's own folder, intact
            assert part.path == f"batches/{b.batch_id}/part-{part.index:05d}.parquet"
            b.partition_bytes(part.index)  # raises if its sha256 is not the manifest's


def test_staged_run_is_moved_and_a_rerun_returns_the_artefact(
    rows, published, enclave, requester, dask_client, tmp_path
):
    _, path = rows
    store = ContentStore(tmp_path / "store")
    first = _run(path, store, published, enclave, requester, dask=dask_client)
    runs = [p for p in (tmp_path / "store" / "batches").iterdir() if p.name.startswith("run-")]
    assert len(runs) == 1
    # Nothing of the rows is left in the run's folder: its job and the batch it went to.
    assert sorted(p.name for p in runs[0].iterdir()) == ["BATCH", "job.json"]
    assert (runs[0] / "BATCH").read_text().split()[0] == first.batch_id
    again = _run(path, store, published, enclave, requester, dask=dask_client)
    assert again.artifact_id == first.artifact_id
    # Another job over the same bytes is another run and another batch.
    other = _run(path, store, published, enclave, requester, dask=dask_client, job="other")
    assert other.batch_id != first.batch_id and other.batch_root == first.batch_root


def test_crash_between_move_and_meta_runs_that_partition_again(
    rows, published, enclave, requester, dask_client, tmp_path
):
    """A run killed after a partition's records were moved into the batch's folder but
    before its meta was: the next run finds the meta in the run's folder pointing at
    nothing, runs that partition again and gives the same root."""
    _, path = rows
    store = ContentStore(tmp_path / "store")
    first = _run(path, store, published, enclave, requester, dask=dask_client)
    batch_dir = tmp_path / "store" / "batches" / first.batch_id
    run_dir = next(p for p in batch_dir.parent.iterdir() if p.name.startswith("run-"))
    (batch_dir / "ARTIFACT").unlink()
    meta = json.loads((batch_dir / "part-00002.json").read_text())
    (batch_dir / "part-00002.json").unlink()
    staged = {**meta, "path": f"batches/{run_dir.name}/part-00002.parquet"}
    (run_dir / "part-00002.json").write_text(json.dumps(staged))
    again = _run(path, store, published, enclave, requester, dask=dask_client)
    assert again.manifest.run_stats["resumed_partitions"] == 4
    assert again.batch_root == first.batch_root
    assert load_batch(again.artifact_id, store).partition_bytes(2)


def test_a_folder_is_streamed_into_the_store_as_its_rows(tmp_path, published):
    """A folder of files is stored as one Parquet file of the plan's columns, written by
    polars' streaming engine: the same rows, in order, as the files read whole."""
    import polars as pl

    from ogkit.dataset import DATASETS, open_source, plan_inputs, store_dataset
    from ogkit.load import load_model

    folder = tmp_path / "folder"
    folder.mkdir()
    parts = [make_tabular(1500, seed=s) for s in range(3)]
    for i, part in enumerate(parts):
        part.write_parquet(folder / f"p{i}.parquet")
    source = open_source(folder)
    model = load_model("tab", hub=published)
    plan = plan_inputs(source, model.inputs)
    store = ContentStore(tmp_path / "store")
    temp = Path(tempfile.gettempdir())
    before = set(temp.glob("ogkit-dataset-*"))
    object_id, fmt = store_dataset(store, source, plan)
    assert set(temp.glob("ogkit-dataset-*")) <= before  # its temporary file is gone
    assert fmt == "parquet"
    stored = pl.read_parquet(store.object_path(DATASETS, object_id))
    whole = pl.concat(parts).select(list(dict.fromkeys(plan.columns)))
    assert stored.equals(whole)


def test_content_fingerprints_tell_different_data_apart(tmp_path):
    """The fingerprint keys a resumed run's staged partitions, so two different datasets
    must never share one: every field is length-prefixed (a value absorbing the next
    column's name and dtype, a null against a NaN, a file name holding a separator)."""
    import numpy as np
    import polars as pl

    from ogkit.dataset import open_source

    absorbed = int.from_bytes(b"b:Int64:", "little")
    pairs = [
        (pl.DataFrame({"a": [1], "b": [2]}), pl.DataFrame({"a": [1, absorbed, 2]})),
        (pl.DataFrame({"x": [1.0, None]}), pl.DataFrame({"x": [1.0, float("nan")]})),
        ({"a": np.zeros((2, 2), np.float32)}, {"a": np.zeros((4,), np.float32)}),
    ]
    # A list column: every row and every bit counts (numpy's repr elides rows past 1,000
    # and rounds floats to 8 digits).
    lists = [[float(i), 0.5] for i in range(2000)]
    changed = [row[:] for row in lists]
    changed[1500][1] = 0.5 + 1e-12
    pairs.append((pl.DataFrame({"v": lists}), pl.DataFrame({"v": changed})))
    for one, other in pairs:
        assert open_source(one).dataset_id != open_source(other).dataset_id
    first, second = tmp_path / "one", tmp_path / "two"
    first.mkdir()
    second.mkdir()
    make_tabular(10, seed=1).write_parquet(first / "a.parquet")
    make_tabular(10, seed=1).write_parquet(second / "b.parquet")
    assert open_source(first).dataset_id != open_source(second).dataset_id


def test_a_run_killed_after_its_last_partition_resumes_without_running_any(
    rows, published, enclave, requester, dask_client, tmp_path
):
    """Every partition finished and moved, the manifest not yet written: the next run
    rebuilds the input root from the records' input hashes alone, on Dask and off it."""
    _, path = rows
    for client in (dask_client, None):
        store = ContentStore(tmp_path / f"store-{client is None}")
        first = _run(path, store, published, enclave, requester, dask=client)
        (tmp_path / f"store-{client is None}" / "batches" / first.batch_id / "ARTIFACT").unlink()
        again = _run(path, store, published, enclave, requester, dask=client)
        assert again.manifest.run_stats["resumed_partitions"] == 5
        assert again.batch_root == first.batch_root
        assert again.manifest.dataset_id == first.manifest.dataset_id


@pytest.mark.parametrize("url", ["local", "memory"])
@pytest.mark.parametrize("size", [0, 1, 5_000_001])
def test_a_stored_file_is_its_bytes_under_their_id(tmp_path, url, size):
    """``put_file`` stores exactly the file's bytes under their keccak id (a copy: the
    file may change afterwards), leaves nothing in ``.incoming``, and a second put of
    the same bytes is a no-op."""
    import os

    from ogkit.store import content_id

    data = os.urandom(size)
    path = tmp_path / "data.bin"
    path.write_bytes(data)
    store = ContentStore(tmp_path / "store" if url == "local" else f"memory://{uuid.uuid4().hex}")
    object_id = store.put_file("datasets", path)
    assert object_id == content_id(data)
    assert store.get("datasets", object_id) == data
    path.write_bytes(b"changed" + data)  # the stored object is a copy, not the file
    assert store.get("datasets", object_id) == data
    path.write_bytes(data)
    assert store.put_file("datasets", path) == object_id
    assert store.listdir("datasets/.incoming") == []


def _store_file(store, path, published):
    from ogkit.dataset import open_source, plan_inputs, store_dataset
    from ogkit.load import load_model

    source = open_source(path)
    plan = plan_inputs(source, load_model("tab", hub=published).inputs)
    return store_dataset(store, source, plan)


def test_a_data_file_stored_before_is_neither_copied_nor_hashed_again(
    tmp_path, rows, published, caplog
):
    """A later job over the same file finds its stored copy by the file's fingerprint
    (checked against the copy's own bytes) instead of storing it again."""
    import logging

    from ogkit.store import content_id

    _, path = rows
    store = ContentStore(tmp_path / "store")
    first, fmt = _store_file(store, path, published)
    assert (first, fmt) == (content_id(path.read_bytes()), "parquet")
    with caplog.at_level(logging.INFO, logger="ogkit.dataset"):
        again, _ = _store_file(store, path, published)
    assert again == first
    assert f"is already in {store.url} as {first}" in caplog.text
    # Its copy gone: stored again, as if never stored.
    Path(store.object_path("datasets", first)).unlink()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="ogkit.dataset"):
        assert _store_file(store, path, published)[0] == first
    assert "is already in" not in caplog.text
    assert Path(store.object_path("datasets", first)).read_bytes() == path.read_bytes()


@pytest.mark.parametrize("note", ["other", "garbage", "missing", "huge"])
def test_a_planted_fingerprint_note_never_names_other_bytes(tmp_path, rows, published, note):
    """Whoever shares the store can rewrite the note that maps a file's fingerprint to
    its stored copy: pointed at another dataset, at nothing, or filled with junk, it is
    ignored and the file is stored under its own content id."""
    from ogkit.dataset import open_source
    from ogkit.store import content_id

    _, path = rows
    store = ContentStore(tmp_path / "store")
    other_path = tmp_path / "other.parquet"
    make_tabular(3000, seed=6).write_parquet(other_path)
    other, _ = _store_file(store, other_path, published)
    fingerprint = open_source(path).dataset_id
    planted = {
        "other": other.encode(),
        "garbage": b"not an id \x00\xff",
        "missing": ("0x" + "ab" * 32).encode(),
        "huge": other.encode() + b" " * (1 << 20),
    }[note]
    store.write_bytes(f"datasets/.fingerprints/{fingerprint[2:]}", planted)
    object_id, _ = _store_file(store, path, published)
    assert object_id == content_id(path.read_bytes()) != other
    assert Path(store.object_path("datasets", object_id)).read_bytes() == path.read_bytes()
    assert _store_file(store, path, published)[0] == object_id  # the note is mended
