"""The per-process cache of decoded row groups holds one file's groups at a time."""

from __future__ import annotations

import os

import polars as pl

from ogkit import dataset as ds


def _stamp(path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_mtime_ns, st.st_size


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
