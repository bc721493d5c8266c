"""Data checks with real great-expectations: inferred and declared input suites, the
records suite over an attested batch (honest and tampered), and the settlement policy."""

from __future__ import annotations

import json
import pickle
import time

import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from helpers import rewrite_records

from ogkit.checks import (
    MAX_ROWS_PER_FAILURE,
    RECORDS_INTACT_CHECK,
    ROWS_COVERED_CHECK,
    CheckResult,
    ColumnSpec,
    DataCheckFailed,
    DataCheckPolicy,
    InputSuite,
    check_inputs,
    check_records,
    enforce,
)
from ogkit.errors import ConfigError, OgkitError
from ogkit.infer import run_verified_inference
from ogkit.samples import TABULAR_FEATURES, make_tabular, sample_data_path

NOT_NULL = "expect_column_values_to_not_be_null"
BETWEEN = "expect_column_values_to_be_between"
TYPES = "expect_column_values_to_be_in_type_list"
EXISTS = "expect_column_to_exist"
COLUMN_SET = "expect_table_columns_to_match_set"
UNIQUE = "expect_column_values_to_be_unique"
ROW_COUNT = "expect_table_row_count_to_equal"
REGEX = "expect_column_values_to_match_regex"


@pytest.fixture(scope="module")
def suite() -> InputSuite:
    return InputSuite.infer(make_tabular(2000, seed=1), margin=0.25)


def _by(result: CheckResult) -> dict[tuple[str, str | None], list[int]]:
    return {(f.expectation, f.column): f.rows for f in result.failures}


# -- input suites -------------------------------------------------------------------------------
def test_inferred_suite_describes_the_reference(suite):
    assert suite.expected_columns == [*TABULAR_FEATURES, "label"]
    assert suite.columns["f0"].dtype == "Float32" and not suite.columns["f0"].nullable
    assert suite.columns["label"] == ColumnSpec("Int64", False, -0.5, 2.5)  # [0, 2] ± 25 %
    exact = InputSuite.infer(make_tabular(2000, seed=1), columns=["label"])
    assert exact.columns == {"label": ColumnSpec("Int64", False, 0, 2)}
    assert exact.expected_columns is None
    with pytest.raises(ConfigError, match="nope"):
        InputSuite.infer(make_tabular(10), columns=["nope"])


def test_inferred_suite_passes_on_fresh_batches(suite):
    fresh = check_inputs(make_tabular(2000, seed=2), suite)
    assert fresh.passed, fresh.summary()
    assert fresh.row_count == 2000 and fresh.expectations == 37 and fresh.failures == []
    on_file = check_inputs(sample_data_path("tabular"), suite)
    assert on_file.passed, on_file.summary()
    as_pandas = check_inputs(make_tabular(500, seed=3).to_pandas(), suite)
    assert as_pandas.passed, as_pandas.summary()


def test_every_problem_is_listed_with_its_rows(suite):
    rows = pl.int_range(pl.len())
    bad = make_tabular(50, seed=3).with_columns(
        pl.when(rows == 4).then(None).otherwise(pl.col("f1")).alias("f1"),
        pl.when(rows.is_in([7, 30])).then(1e6).otherwise(pl.col("f2")).cast(pl.Float32).alias("f2"),
        pl.when(rows == 11).then(pl.lit("n/a")).otherwise(pl.col("f3").cast(pl.String)).alias("f3"),
    )
    bad = bad.drop("f5").with_columns(pl.lit(1).alias("extra"))
    result = check_inputs(bad, suite)
    assert not result.passed
    found = _by(result)
    assert found == {
        (COLUMN_SET, None): [],
        (NOT_NULL, "f1"): [4],
        (BETWEEN, "f2"): [7, 30],
        (TYPES, "f3"): [11],  # the one value that is not a number
        (EXISTS, "f5"): [],
    }
    failures = {(f.expectation, f.column): f for f in result.failures}
    assert failures[(COLUMN_SET, None)].detail["details"]["mismatched"] == {
        "missing": ["f5"],
        "unexpected": ["extra"],
    }
    assert failures[(BETWEEN, "f2")].detail["unexpected_count"] == 2
    typed = failures[(TYPES, "f3")].detail
    assert typed["expected_dtype"] == "Float32" and typed["observed_dtype"] == "String"
    assert typed["unconvertible_count"] == 1
    assert any(s.startswith("f3: range") for s in result.skipped)
    assert result.failing_columns() == ["f1", "f2", "f3", "f5"]

    frame = result.to_frame()
    assert frame.height == 5 and frame.columns == [
        "expectation",
        "column",
        "unexpected_count",
        "rows",
        "detail",
    ]
    assert frame.filter(pl.col("column") == "f2")["rows"].to_list() == [[7, 30]]
    assert json.loads(json.dumps(result.to_dict()))["failures"][1]["rows"] == [4]
    text = result.summary()
    assert text.startswith("FAIL ogkit.inputs") and "rows 7, 30" in text


def test_rows_are_capped_and_large_failures_stay_summaries(suite):
    shifted = make_tabular(5000, seed=4).with_columns(pl.col("f0") + 100)
    result = check_inputs(shifted, suite)
    (failure,) = result.failures
    assert failure.column == "f0" and failure.detail["unexpected_count"] == 5000
    assert failure.rows == list(range(MAX_ROWS_PER_FAILURE))


def test_declared_suite_round_trips_through_json():
    declared = InputSuite(
        columns={
            "age": {"dtype": "Int64", "min": 0, "max": 130},
            "name": ColumnSpec("Utf8", nullable=True),  # polars alias: normalised to String
            "score": {"dtype": "float", "min": 0.0, "max": 1.0},
        },
        name="customers",
    )
    assert declared.columns["name"].dtype == "String"
    again = InputSuite.from_json(json.dumps(json.loads(declared.to_json())))
    assert again == declared and again.to_dict() == declared.to_dict()
    gx_suite = again.to_gx_suite()
    assert gx_suite.name == "customers"
    assert (
        len(gx_suite.expectations) == 3 + 3 + 2 + 2
    )  # exist, type, not-null (name may be null), range

    data = pd.DataFrame(
        {
            "age": pd.array([31, None, 200], dtype="Int64"),
            "name": ["a", None, "c"],
            "score": [0.5, 0.25, 1.5],
            "other": [1, 2, 3],  # allowed: no expected column set
        }
    )
    result = check_inputs(data, again)
    assert _by(result) == {(NOT_NULL, "age"): [1], (BETWEEN, "age"): [2], (BETWEEN, "score"): [2]}
    with pytest.raises(ConfigError, match="min 2 > max 1"):
        ColumnSpec("Int64", min=2, max=1)
    with pytest.raises(ConfigError, match="unknown dtype 'Float31'"):
        ColumnSpec("Float31")
    with pytest.raises(ConfigError, match="unknown column spec"):
        InputSuite(columns={"x": {"typo": 1}})


def test_dtypes_without_a_pandas_twin_are_checked_on_the_schema():
    images = pl.DataFrame({"image": pl.Series([[0.0, 1.0]] * 3, dtype=pl.Array(pl.Float32, 2))})
    declared = InputSuite(columns={"image": {"dtype": "Array(Float32, shape=(2,))"}})
    assert check_inputs(images, declared).passed
    wrong = InputSuite(columns={"image": {"dtype": "Array(Float64, shape=(2,))"}})
    (failure,) = check_inputs(images, wrong).failures
    assert failure.expectation == "ogkit_expect_column_dtype" and failure.column == "image"


def test_100k_rows_in_seconds(suite, tmp_path):
    path = tmp_path / "big.parquet"
    make_tabular(100_000, seed=5).write_parquet(path)
    check_inputs(make_tabular(10, seed=5), suite)  # import great-expectations outside the clock
    started = time.perf_counter()
    result = check_inputs(path, suite)
    elapsed = time.perf_counter() - started
    assert result.row_count == 100_000 and result.passed, result.summary()
    assert elapsed < 10, f"check_inputs took {elapsed:.1f} s on 100k rows"


# -- records -------------------------------------------------------------------------------------
def test_records_of_an_honest_batch_pass(batch):
    result = check_records(batch)
    assert result.passed, result.summary()
    assert result.row_count == batch.row_count == 2000
    assert result.suite_name.startswith("ogkit.records:")
    enforce(result)  # nothing to block


def test_duplicated_record_row_is_named(batch):
    rewrite_records(batch, 2, lambda t: pa.concat_tables([t, t.slice(3, 1)]))
    result = check_records(batch)
    assert not result.passed
    found = _by(result)
    assert found[(UNIQUE, "row_index")] == [1003]
    assert found[(ROW_COUNT, None)] == [1003]
    intact = [f for f in result.failures if f.expectation == RECORDS_INTACT_CHECK]
    assert [f.detail["partition"] for f in intact] == [2]
    with pytest.raises(DataCheckFailed, match="1003") as caught:
        enforce(result)
    assert "do not settle it" in str(caught.value)


def test_deleted_record_row_is_named(batch):
    rewrite_records(batch, 0, lambda t: t.filter(pc.not_equal(t["row_index"], 7)))
    result = check_records(batch)
    failure = next(f for f in result.failures if f.expectation == ROW_COUNT)
    assert failure.rows == [7]
    assert failure.detail["observed_value"] == 1999 and failure.detail["missing_rows"] == 1


def test_out_of_range_row_and_the_hole_it_leaves(batch):
    def mutate(t: pa.Table) -> pa.Table:
        index = t["row_index"].to_pylist()
        index[1] = 5000  # row 501 now claims to be outside the batch
        return t.set_column(0, "row_index", pa.array(index, t["row_index"].type))

    rewrite_records(batch, 1, mutate)
    result = check_records(batch)
    found = _by(result)
    assert found[(BETWEEN, "row_index")] == [5000]
    assert found[(ROWS_COVERED_CHECK, "row_index")] == [501]
    covered = next(f for f in result.failures if f.expectation == ROWS_COVERED_CHECK)
    assert covered.detail == {"missing_rows": 1, "expected_rows": 2000}
    assert (ROW_COUNT, None) not in found and (UNIQUE, "row_index") not in found
    assert not any(e == REGEX for e, _ in found)


# -- policy --------------------------------------------------------------------------------------
def test_policy_blocks_or_lets_through(suite):
    failed = check_inputs(make_tabular(20, seed=6).drop("f7"), suite)
    assert not failed.passed
    with pytest.raises(DataCheckFailed) as caught:
        enforce(failed, DataCheckPolicy())
    err = caught.value
    assert isinstance(err, OgkitError) and err.result is failed
    message = str(err)
    assert "expect_column_to_exist on 'f7'" in message and "block_settlement=False" in message
    assert pickle.loads(pickle.dumps(err)).result.to_dict() == failed.to_dict()

    assert enforce(failed, DataCheckPolicy(block_settlement=False)) is failed
    assert DataCheckPolicy(max_failures=len(failed.failures)).allows(failed)
    assert not DataCheckPolicy(max_failures=len(failed.failures) - 1).allows(failed)
    with pytest.raises(ConfigError):
        DataCheckPolicy(max_failures=-1)


def test_pipeline_step_blocks_bad_inputs_before_work(published, enclave, requester, home):
    from ogkit.samples import make_tabular

    suite = InputSuite.infer(make_tabular(2000, seed=1))
    bad = make_tabular(300, seed=4).with_columns(
        pl.when(pl.int_range(pl.len()) == 17).then(1e6).otherwise(pl.col("f2")).alias("f2")
    )
    with pytest.raises(DataCheckFailed, match="f2") as info:
        run_verified_inference(
            "tab",
            bad,
            attester=enclave,
            requester=requester,
            hub=published,
            input_suite=suite,
            progress=False,
        )
    assert any(17 in f.rows for f in info.value.result.failures)
    assert not (home / "store" / "batches").exists(), "nothing may run or be written"
    # A policy that does not block lets the job run and records the failure.
    batch = run_verified_inference(
        "tab",
        bad,
        attester=enclave,
        requester=requester,
        hub=published,
        input_suite=suite,
        progress=False,
        data_checks=DataCheckPolicy(block_settlement=False),
    )
    assert batch.manifest.data_checks["passed"] is False
