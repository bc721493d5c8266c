"""What a newcomer sees when the data does not fit: one line per problem, naming the
column, the problem (a non-numeric value and its row, no rows) and the fix."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from ogkit.dataset import open_source, plan_inputs
from ogkit.errors import ConfigError, SchemaMismatchError
from ogkit.hub.manifest import TensorSpec

FEATURES = [TensorSpec("features", "float32", ("N", 3))]


def _csv(path: Path, rows: list[str]) -> Path:
    path.write_text("\n".join(["age,tenure,spend", *rows]) + "\n")
    return path


def _problems(data, input_map=None) -> list[str]:
    with pytest.raises(SchemaMismatchError) as info:
        plan_inputs(open_source(data), FEATURES, input_map)
    for p in info.value.problems:
        assert "\n" not in p, p
    return info.value.problems


def test_one_na_cell_names_column_value_row_and_fix(tmp_path):
    rows = [f"{i},{i % 7},{i * 1.5}" for i in range(300)]
    rows[217] = "217,n/a,3.0"  # past polars' default 100-row type inference
    path = _csv(tmp_path / "customers.csv", rows)
    (problem,) = _problems(path)
    assert "'tenure'" in problem and "non-numeric" in problem, problem
    assert "'n/a' at row 217" in problem and "line 219" in problem, problem
    assert "--input-map features=" in problem, problem
    assert "has no column" not in problem, problem

    # the same with the columns mapped explicitly
    (problem,) = _problems(path, {"features": ["age", "tenure", "spend"]})
    assert "'tenure'" in problem and "'n/a' at row 217" in problem, problem


def test_string_column_is_named_not_reported_as_missing(tmp_path):
    frame = pl.DataFrame({"age": [1.0, 2.0], "tenure": ["low", "high"], "spend": [3.0, 4.0]})
    (problem,) = _problems(frame)
    assert "'tenure'" in problem and "'low' at row 0" in problem, problem
    assert "has no column" not in problem

    # a single-column input bound to a text column
    spec = [TensorSpec("x", "float32", ("N",))]
    with pytest.raises(SchemaMismatchError) as info:
        plan_inputs(open_source(pl.DataFrame({"x": ["1.5", "bad"]})), spec)
    (problem,) = info.value.problems
    assert "'x'" in problem and "'bad' at row 1" in problem, problem


def test_too_few_number_columns_says_how_many(tmp_path):
    frame = pl.DataFrame(
        {"id": ["a", "b"], "name": ["x", "y"], "age": [1.0, 2.0], "spend": [3.0, 4.0]}
    )
    problems = _problems(frame)
    assert any("'id'" in p and "'a' at row 0" in p for p in problems), problems
    assert any("2 numeric, the model wants 3" in p for p in problems), problems


def test_header_only_csv_says_no_rows(tmp_path):
    path = _csv(tmp_path / "empty.csv", [])
    with pytest.raises(ConfigError) as info:
        plan_inputs(open_source(path), FEATURES)
    message = str(info.value)
    assert not isinstance(info.value, SchemaMismatchError)
    assert "no rows" in message and "empty.csv" in message and "\n" not in message, message
    assert "has no column" not in message


def test_a_row_group_is_sized_by_its_decoded_values_before_it_is_decoded(tmp_path, monkeypatch):
    """A list column of zeros encodes to almost nothing; the reader sizes each row group by
    the values its footer counts for the columns read (list elements included) and refuses
    one past ``MAX_ROW_GROUP_BYTES`` before decoding it."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    import ogkit.dataset as ds

    path = tmp_path / "lists.parquet"
    rows = [[0.0] * 1000] * 500
    table = pa.table({"x": np.zeros(500, np.float32), "l": pa.array(rows, pa.list_(pa.float32()))})
    pq.write_table(table, path, row_group_size=500, compression="zstd")
    assert path.stat().st_size < 20_000  # 2 MB of values once decoded
    monkeypatch.setattr(ds, "MAX_ROW_GROUP_BYTES", 1_000_000)
    assert len(ds._read_parquet_rows([str(path)], 0, 10, ("x",))) == 10  # 2 kB: read
    with pytest.raises(ConfigError, match="row group 0 holds about 2,000,000 bytes decoded"):
        ds._read_parquet_rows([str(path)], 0, 10, ("l",))
