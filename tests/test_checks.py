"""Data checks with real great-expectations: inferred and declared input suites, the
records suite over an attested batch (honest and tampered), and the settlement policy."""

from __future__ import annotations

import json
import pickle
import time

import pandas as pd
import polars as pl
import pyarrow as pa
import pytest
from helpers import rewrite_records

from ogkit.checks import (
    MAX_ROWS_PER_FAILURE,
    RECORDS_READABLE_CHECK,
    CheckResult,
    ColumnSpec,
    DataCheckFailed,
    DataCheckPolicy,
    InputSuite,
    RecordsSuite,
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


def test_an_open_source_is_neither_reopened_nor_hashed_again(suite, monkeypatch):
    import ogkit.checks
    from ogkit.dataset import open_source

    source = open_source(sample_data_path("tabular"))
    some = InputSuite.infer(make_tabular(200, seed=1), columns=["f0", "label"])

    def reopen(_data):
        raise AssertionError("check_inputs opened the data again")

    monkeypatch.setattr(ogkit.checks, "open_source", reopen)
    result = check_inputs(source, suite)
    assert result.passed and result.row_count == source.n_rows and result.expectations == 37
    # A suite over some columns reads only those; the rest of the data is not converted.
    assert check_inputs(source, some).expectations == 8


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
# The records suite used to restate what the records format guarantees (hash format, no
# nulls: read_records refuses both) and repeat verify_batch (row count, unique and in-range
# row indices, coverage, the files' sha256); those checks and their tamper tests are gone.
# What is left is what an honest node with a buggy model or export gets wrong.
IN_SET = "expect_column_values_to_be_in_set"
PAIR_EQUAL = "expect_column_pair_values_to_be_equal"


def test_records_of_an_honest_batch_pass(batch):
    result = check_records(batch)
    assert result.passed, result.summary()
    assert result.row_count == batch.row_count == 2000
    assert result.suite_name.startswith("ogkit.records:")
    # probabilities: finite, min, max, sum; label: in the classes, equals the argmax; readable
    assert result.expectations == 7
    enforce(result)  # nothing to block


def _buggy_model(path, label_op: str = "ArgMax"):
    """A 'model' whose probabilities are its input and whose label is ``label_op`` of it."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [
            helper.make_node("Identity", ["x"], ["probabilities"]),
            helper.make_node(label_op, ["x"], ["label"], axis=1, keepdims=0),
        ],
        "buggy",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3])],
        [
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["n", 3]),
            helper.make_tensor_value_info("label", TensorProto.INT64, ["n"]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return str(path)


def _run(model_path, x, enclave, requester, tmp_path):
    return run_verified_inference(
        model_path,
        {"x": x},
        attester=enclave,
        requester=requester,
        store=str(tmp_path / "store"),
        partition_rows=20,
        progress=False,
    )


def _probabilities(n: int):
    import numpy as np

    rng = np.random.default_rng(7)
    x = rng.random((n, 3)).astype(np.float32) + 0.1
    return x / x.sum(axis=1, keepdims=True)


def test_outputs_that_are_not_probabilities_are_named(enclave, requester, tmp_path):
    x = _probabilities(50)
    x[3] *= 1.5  # sums to 1.5
    x[5] = [-0.25, 0.75, 0.5]  # sums to 1 with a negative value
    x[8] = [1.5, -0.25, -0.25]  # above 1
    x[41, 0] = float("nan")
    batch = _run(_buggy_model(tmp_path / "m.onnx"), x, enclave, requester, tmp_path)
    result = check_records(batch)
    assert not result.passed
    assert _by(result) == {
        (IN_SET, "probabilities.finite"): [41],
        (BETWEEN, "probabilities.min"): [5, 8],
        (BETWEEN, "probabilities.max"): [8],
        (BETWEEN, "probabilities.sum"): [3],  # row 41 (NaN) is the finite check's
    }
    with pytest.raises(DataCheckFailed, match=r"probabilities\.sum") as caught:
        enforce(result)
    assert "do not settle it" in str(caught.value)
    # A tolerance wide enough lets the 1.5 sum through; the rest still fails.
    wide = check_records(
        batch, RecordsSuite(("probabilities",), {"label": "probabilities"}, tolerance=0.6)
    )
    assert (BETWEEN, "probabilities.sum") not in _by(wide)


def test_labels_that_disagree_with_the_probabilities_are_named(enclave, requester, tmp_path):
    batch = _run(
        _buggy_model(tmp_path / "m.onnx", "ArgMin"),
        _probabilities(30),
        enclave,
        requester,
        tmp_path,
    )
    result = check_records(batch)
    assert _by(result) == {(PAIR_EQUAL, "label"): list(range(MAX_ROWS_PER_FAILURE))}
    assert result.failures[0].detail["unexpected_count"] == 30
    # Labels outside the known classes (here: the model's classes are 10, 11, 12).
    classes = RecordsSuite(
        ("probabilities",), {"label": "probabilities"}, classes={"label": [10, 11, 12]}
    )
    found = _by(check_records(batch, classes))
    assert len(found[(IN_SET, "label")]) == MAX_ROWS_PER_FAILURE
    with pytest.raises(ConfigError, match="2 classes"):
        check_records(
            batch,
            RecordsSuite(("probabilities",), {"label": "probabilities"}, classes={"label": [0, 1]}),
        )
    with pytest.raises(ConfigError, match="not in probabilities"):
        RecordsSuite((), {"label": "probabilities"})


def test_unreadable_records_are_one_failure(batch):
    rewrite_records(batch, 2, lambda t: pa.concat_tables([t, t.slice(3, 1)]))
    result = check_records(batch)
    (failure,) = result.failures
    assert failure.expectation == RECORDS_READABLE_CHECK and failure.detail["partition"] == 2
    assert result.row_count == 1500  # the other partitions were still checked


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
