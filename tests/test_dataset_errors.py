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
