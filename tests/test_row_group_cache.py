"""The per-process readers of Parquet row groups: streams for partitions read in order,
the cache of whole groups for reads that go back, one file at a time."""

from __future__ import annotations

import os

import polars as pl
import pytest

from ogkit import dataset as ds
from ogkit.errors import ConfigError


def _stamp(path) -> tuple[int, ...]:
    return ds.file_stamp(os.stat(path))


def test_a_new_files_group_lets_go_of_the_last_files(tmp_path) -> None:
    cache = ds._RowGroupCache(size=4)
    paths = []
    for i in range(2):
        path = tmp_path / f"f{i}.parquet"
        pl.DataFrame({"x": [float(i)] * 10}).write_parquet(path, row_group_size=5)
        paths.append(str(path))
    first = cache.get(paths[0], _stamp(paths[0]), 0, ("x",))
    assert cache.get(paths[0], _stamp(paths[0]), 0, ("x",)) is first  # a hit
    cache.get(paths[0], _stamp(paths[0]), 1, ("x",))
    assert len(cache._tables) == 2  # both groups of one file are kept
    other = cache.get(paths[1], _stamp(paths[1]), 0, ("x",))
    assert list(cache._tables) == [(paths[1], _stamp(paths[1]), 0, ("x",))]
    assert other.column("x").to_pylist() == [1.0] * 5


def test_a_rewritten_file_is_decoded_afresh(tmp_path) -> None:
    cache = ds._RowGroupCache(size=4)
    path = tmp_path / "f.parquet"
    pl.DataFrame({"x": [1.0, 2.0]}).write_parquet(path)
    before = cache.get(str(path), _stamp(path), 0, ("x",))
    pl.DataFrame({"x": [3.0, 4.0, 5.0]}).write_parquet(path)
    after = cache.get(str(path), _stamp(path), 0, ("x",))
    assert before.column("x").to_pylist() == [1.0, 2.0]
    assert after.column("x").to_pylist() == [3.0, 4.0, 5.0]
    assert len(cache._tables) == 1


def test_the_cache_is_bounded(tmp_path) -> None:
    cache = ds._RowGroupCache(size=2)
    path = tmp_path / "f.parquet"
    pl.DataFrame({"x": [float(i) for i in range(12)]}).write_parquet(path, row_group_size=3)
    for index in range(4):
        cache.get(str(path), _stamp(path), index, ("x",))
    assert [k[2] for k in cache._tables] == [2, 3]  # the two most recent


# -- row-group streams: a partition decodes its group's pages only up to its last row --------


def _groups(tmp_path, rows: int = 12_000, group: int = 5_000):
    """Two files with several row groups each, and their rows in one frame."""
    import numpy as np

    paths, frames = [], []
    for i in range(2):
        frame = pl.DataFrame(
            {
                "x": np.arange(i * rows, (i + 1) * rows, dtype=np.float32),
                "v": [[float(j), -float(j)] for j in range(i * rows, (i + 1) * rows)],
            }
        )
        path = tmp_path / f"g{i}.parquet"
        frame.write_parquet(path, row_group_size=group, data_page_size=4096)
        paths.append(str(path))
        frames.append(frame)
    return paths, pl.concat(frames)


def test_random_reads_across_files_and_groups_give_the_right_rows(tmp_path) -> None:
    import random

    paths, everything = _groups(tmp_path)
    rng = random.Random(7)
    ds.clear_read_caches()
    for trial in range(300):
        offset = rng.randrange(everything.height)
        rows = min(rng.randrange(1, 6_000), everything.height - offset)
        got = ds._read_parquet_rows(paths, offset, rows, ("x", "v"))
        assert got.equals(everything.slice(offset, rows)), (trial, offset, rows)
        if trial % 37 == 0:
            ds.clear_read_caches()


def test_consecutive_partitions_continue_one_stream_and_decode_no_whole_group(tmp_path) -> None:
    paths, everything = _groups(tmp_path, rows=10_000, group=10_000)
    ds.clear_read_caches()
    for offset in range(0, 10_000, 1_250):
        got = ds._read_parquet_rows(paths[:1], offset, 1_250, ("x",))
        assert got.equals(everything.select("x").slice(offset, 1_250))
        (stream,) = ds._STREAMS._streams.values()
        assert stream.position == offset + 1_250
    assert not ds._ROW_GROUPS._tables  # nothing decoded whole


def test_going_back_over_streamed_rows_decodes_the_group_once(tmp_path) -> None:
    paths, everything = _groups(tmp_path, rows=10_000, group=10_000)
    ds.clear_read_caches()
    ds._read_parquet_rows(paths[:1], 6_000, 1_000, ("x",))
    back = ds._read_parquet_rows(paths[:1], 1_000, 500, ("x",))
    assert back.equals(everything.select("x").slice(1_000, 500))
    assert len(ds._ROW_GROUPS._tables) == 1  # now kept whole: later reads are slices
    again = ds._read_parquet_rows(paths[:1], 2_000, 10, ("x",))
    assert again.equals(everything.select("x").slice(2_000, 10))
    assert len(ds._ROW_GROUPS._tables) == 1


def test_the_first_rows_of_a_large_group_hold_a_fraction_of_it(tmp_path) -> None:
    """4M floats in one row group (16 MB decoded, a few kB on disk): the first 1,000 rows
    are read with well under a megabyte of Arrow memory held afterwards."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "zeros.parquet"
    pq.write_table(pa.table({"x": np.zeros(4_000_000, np.float32)}), path, row_group_size=4_000_000)
    ds.clear_read_caches()
    before = pa.total_allocated_bytes()
    got = ds._read_parquet_rows([str(path)], 0, 1_000, ("x",))
    assert got.height == 1_000 and got["x"].sum() == 0
    del got
    assert pa.total_allocated_bytes() - before < 1 << 20
    ds.clear_read_caches()


def test_a_group_shorter_than_its_footer_says_is_an_error_not_a_short_read(tmp_path) -> None:
    path = tmp_path / "f.parquet"
    pl.DataFrame({"x": [1.0, 2.0, 3.0]}).write_parquet(path)
    stream = ds._RowStream(str(path), ds.file_stamp(path.stat()), 0, ("x",), 2)
    assert [b.num_rows for b in stream.take(0, 3)] == [2, 1]
    with pytest.raises(ConfigError, match="row group 0 ends at row 3, before the 5 its footer"):
        stream.take(3, 2)


def test_partitions_of_a_file_go_to_one_run_of_consecutive_partitions_per_worker(
    dask_client,
) -> None:
    from ogkit.compute import worker_runs

    runs = worker_runs(dask_client, 9, spread=True)
    assert [(lo, hi) for lo, hi, _ in runs] == [(0, 5), (5, 9)]
    workers = [w for _, _, w in runs]
    assert all(len(w) == 1 for w in workers) and workers[0] != workers[1]
    assert set(dask_client.scheduler_info()["workers"]) == {w[0] for w in workers}
    assert worker_runs(dask_client, 9, spread=False) == [(0, 9, None)]  # shipped rows
    assert worker_runs(dask_client, 1, spread=True) == [(0, 1, None)]
