"""Data checks: expectations over a batch's inputs and its records, run with great-expectations.

Two suites, one result type:

- :class:`InputSuite` describes what the input data should look like (columns, dtypes,
  nulls, value ranges). It is plain ogkit data, serialisable to JSON, inferred from a
  reference batch (:meth:`InputSuite.infer`) or declared by hand, and turned into a
  great-expectations ``ExpectationSuite`` only when it runs (:func:`check_inputs`).
- :func:`check_records` runs a :class:`RecordsSuite` over an attested batch's outputs:
  no NaN/inf, probabilities in [0, 1] summing to 1, labels among the known classes and
  equal to the most probable one — what an honest node with a buggy model can get wrong
  and a verifier's bit-for-bit re-execution cannot see.

Both return a :class:`CheckResult` whose failures name the expectation, the column and
the rows involved. A :class:`DataCheckPolicy` says whether failures block settlement;
:func:`enforce` raises :class:`DataCheckFailed` when they do.

great-expectations is imported inside the functions that need it: it takes seconds to
import, and ``import ogkit`` must stay fast.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
import pyarrow as pa

from ogkit.batch import PartitionRecords
from ogkit.dataset import DataSource, open_source
from ogkit.errors import (
    ArtifactError,
    ConfigError,
    DataCheckFailed,
)

if TYPE_CHECKING:
    import pandas as pd
    from great_expectations.core import ExpectationSuite
    from great_expectations.expectations import Expectation

    from ogkit.batch import AttestedBatch

__all__ = [
    "MAX_ROWS_PER_FAILURE",
    "RECORDS_READABLE_CHECK",
    "CheckFailure",
    "CheckResult",
    "ColumnSpec",
    "DataCheckFailed",
    "DataCheckPolicy",
    "InputSuite",
    "RecordsSuite",
    "check_inputs",
    "check_records",
    "enforce",
    "records_gx_suite",
]

log = logging.getLogger(__name__)

MAX_ROWS_PER_FAILURE = 20

# ogkit-side checks (no great-expectations equivalent) get names in the same style.
DTYPE_CHECK = "ogkit_expect_column_dtype"
RECORDS_READABLE_CHECK = "ogkit_expect_records_to_be_readable"

# Dtype families a hand-written suite may use instead of one exact polars dtype.
_INT_DTYPES = ("Int8", "Int16", "Int32", "Int64", "UInt8", "UInt16", "UInt32", "UInt64")
_FLOAT_DTYPES = ("Float32", "Float64")
_FAMILIES: dict[str, tuple[str, ...]] = {
    "float": _FLOAT_DTYPES,
    "integer": _INT_DTYPES,
    "numeric": _FLOAT_DTYPES + _INT_DTYPES,
}


# -- dtypes -------------------------------------------------------------------------------------
def _normalise_dtype(dtype: Any) -> str | None:
    """A polars dtype (object or text) as the text ``DataSource.schema`` uses, or a family."""
    if dtype is None:
        return None
    if not isinstance(dtype, str):
        return str(dtype)
    if dtype.lower() in _FAMILIES:
        return dtype.lower()
    # Simple names ("Float32", "Utf8") go through polars, so aliases compare equal.
    attr = getattr(pl, dtype, None)
    if isinstance(attr, type) and issubclass(attr, pl.DataType):
        return str(attr)
    if "(" not in dtype:  # not a parametrised dtype either ("Array(Float32, shape=(784,))")
        raise ConfigError(
            f"unknown dtype {dtype!r}: use a polars dtype name (Float32, Int64, String, …) "
            f"or one of {', '.join(_FAMILIES)}"
        )
    return dtype


def _dtype_matches(expected: str, observed: str) -> bool:
    if expected in _FAMILIES:
        return observed in _FAMILIES[expected]
    return expected == observed


def _is_numeric(dtype_text: str) -> bool:
    return dtype_text in _FAMILIES["numeric"] or dtype_text in _FAMILIES


def _ge_type_list(expected: str) -> list[str] | None:
    """Pandas dtype names great-expectations should see for a polars dtype, given how
    :func:`_to_pandas` converts frames; ``None`` where the dtype has no faithful pandas
    type (nested, binary, …) and is checked against the polars schema instead."""
    if expected in _FAMILIES:
        return [n for d in _FAMILIES[expected] for n in (_ge_type_list(d) or [])]
    if expected in _FLOAT_DTYPES:
        return [expected.lower()]
    if expected in _INT_DTYPES:
        return [f"{expected}Dtype"]  # pandas nullable ints: nulls do not turn them into floats
    if expected == "Boolean":
        return ["BooleanDtype"]
    if expected in ("String", "Categorical") or expected.startswith("Enum"):
        return ["str"]  # object column: great-expectations checks each value's type
    if expected == "Date":
        return ["datetime64[ms]"]
    for unit in ("ns", "us", "ms"):
        if expected == f"Datetime(time_unit='{unit}', time_zone=None)":
            return [f"datetime64[{unit}]"]
    return None


_PANDAS_INTS = {d.lower(): d for d in _INT_DTYPES}  # arrow "uint8" -> pandas "UInt8"


def _pandas_types_mapper(arrow_type: pa.DataType) -> Any:
    import pandas as pd

    # Nullable pandas dtypes keep integer and boolean columns typed even when they hold nulls.
    if pa.types.is_integer(arrow_type):
        return pd.api.types.pandas_dtype(_PANDAS_INTS[str(arrow_type)])
    if pa.types.is_boolean(arrow_type):
        return pd.BooleanDtype()
    return None


def _to_pandas(frame: pl.DataFrame) -> pd.DataFrame:
    """The frame great-expectations validates: positional RangeIndex, so indices are rows."""
    import pandas as pd

    df = frame.to_arrow().to_pandas(types_mapper=_pandas_types_mapper)
    for name in df.columns:
        # Strings as Python objects: great-expectations checks their type value by value
        # (it cannot match pandas' string dtype by name).
        if isinstance(df[name].dtype, pd.StringDtype | pd.CategoricalDtype):
            df[name] = df[name].astype(object)
    return df


# -- suites -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ColumnSpec:
    """What one column should hold: dtype (polars dtype text, or ``float``/``integer``/
    ``numeric``; ``None``: any), whether nulls are allowed, and an inclusive value range."""

    dtype: str | None = None
    nullable: bool = False
    min: float | None = None
    max: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "dtype", _normalise_dtype(self.dtype))
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ConfigError(f"column range is empty: min {self.min} > max {self.max}")

    def to_dict(self) -> dict[str, Any]:
        return {"dtype": self.dtype, "nullable": self.nullable, "min": self.min, "max": self.max}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ColumnSpec:
        unknown = set(data) - {"dtype", "nullable", "min", "max"}
        if unknown:
            raise ConfigError(
                f"unknown column spec field(s) {sorted(unknown)}; use dtype, nullable, min, max"
            )
        return cls(**dict(data))


@dataclass
class InputSuite:
    """Expectations over input data, kept ogkit-side so they serialise to plain JSON.

    ``columns`` maps a column name to a :class:`ColumnSpec` (or a dict of its fields).
    ``expected_columns``: the exact column set the data must have; ``None`` lets other
    columns through (the declared ones must still exist).
    """

    columns: dict[str, ColumnSpec]
    expected_columns: list[str] | None = None
    name: str = "ogkit.inputs"

    def __post_init__(self) -> None:
        self.columns = {
            str(k): v if isinstance(v, ColumnSpec) else ColumnSpec.from_dict(v)
            for k, v in self.columns.items()
        }
        if self.expected_columns is not None:
            self.expected_columns = [str(c) for c in self.expected_columns]
            extra = sorted(set(self.columns) - set(self.expected_columns))
            if extra:
                raise ConfigError(
                    f"columns {extra} have specs but are not in expected_columns; add them "
                    "there or set expected_columns=None"
                )

    @classmethod
    def infer(
        cls,
        reference: Any,
        columns: Sequence[str] | None = None,
        margin: float = 0.0,
        *,
        name: str = "ogkit.inputs",
    ) -> InputSuite:
        """Infer a suite from a reference batch (anything :func:`ogkit.dataset.open_source`
        reads: a polars or pandas frame, a path, …).

        Each column gets the reference's dtype, ``nullable`` if the reference has nulls,
        and for numeric columns the observed range widened by ``margin`` × its span on
        each side. Without ``columns`` the exact column set is expected too; with it, only
        those columns are described and other columns are allowed.
        """
        if not math.isfinite(margin) or margin < 0:
            raise ConfigError(f"margin must be a finite number >= 0, got {margin}")
        frame = _frame_of(open_source(reference))
        chosen = list(columns) if columns is not None else frame.columns
        missing = [c for c in chosen if c not in frame.columns]
        if missing:
            raise ConfigError(
                f"columns {missing} are not in the reference (it has {', '.join(frame.columns)})"
            )
        specs: dict[str, ColumnSpec] = {}
        for col in chosen:
            series = frame[col]
            dtype = str(series.dtype)
            lo = hi = None
            if _is_numeric(dtype):
                values = series.fill_nan(None) if series.dtype.is_float() else series
                lo, hi = values.min(), values.max()
                if lo is not None and margin:
                    span = float(hi) - float(lo)
                    lo, hi = float(lo) - margin * span, float(hi) + margin * span
            specs[col] = ColumnSpec(dtype, series.null_count() > 0, _plain(lo), _plain(hi))
        expected = list(frame.columns) if columns is None else None
        log.debug("inferred suite %r over %d columns from %d rows", name, len(specs), frame.height)
        return cls(specs, expected, name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": "ogkit.input_suite.v1",
            "name": self.name,
            "expected_columns": self.expected_columns,
            "columns": {k: v.to_dict() for k, v in self.columns.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> InputSuite:
        if data.get("schema", "ogkit.input_suite.v1") != "ogkit.input_suite.v1":
            raise ConfigError(f"not an ogkit input suite (schema {data.get('schema')!r})")
        return cls(
            columns=dict(data.get("columns", {})),
            expected_columns=data.get("expected_columns"),
            name=data.get("name", "ogkit.inputs"),
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str) -> InputSuite:
        return cls.from_dict(json.loads(text))

    def to_gx_suite(self) -> ExpectationSuite:
        """The whole suite as a great-expectations ``ExpectationSuite`` (for export or
        inspection; :func:`check_inputs` runs the part that applies to the data)."""
        import great_expectations as gx

        return gx.ExpectationSuite(name=self.name, expectations=self._gx_expectations(None)[0])

    def _gx_expectations(
        self, schema: Mapping[str, str] | None
    ) -> tuple[list[Expectation], list[str]]:
        """Expectations that apply to data with ``schema`` (``None``: all of them), and
        what was skipped and why: column checks on a missing column, or a range on a
        column that is not numeric, would only raise, and the existence and type checks
        already report those problems."""
        import great_expectations as gx

        ex = gx.expectations
        out: list[Expectation] = []
        skipped: list[str] = []
        if self.expected_columns is not None:
            out.append(
                ex.ExpectTableColumnsToMatchSet(column_set=self.expected_columns, exact_match=True)
            )
        for col, spec in self.columns.items():
            out.append(ex.ExpectColumnToExist(column=col))
            if schema is not None and col not in schema:
                skipped.append(f"{col}: column checks (column is missing)")
                continue
            if spec.dtype is not None and (types := _ge_type_list(spec.dtype)) is not None:
                out.append(ex.ExpectColumnValuesToBeInTypeList(column=col, type_list=types))
            if not spec.nullable:
                out.append(ex.ExpectColumnValuesToNotBeNull(column=col))
            if spec.min is not None or spec.max is not None:
                if schema is not None and not _is_numeric(schema[col]):
                    skipped.append(f"{col}: range (column holds {schema[col]}, not numbers)")
                    continue
                out.append(
                    ex.ExpectColumnValuesToBeBetween(
                        column=col, min_value=spec.min, max_value=spec.max
                    )
                )
        return out, skipped


@dataclass(frozen=True)
class RecordsSuite:
    """What a batch's outputs should hold, so that a node that ran the model honestly
    but wired something wrong (a bad export, a shifted column, a stale model) is caught
    before it settles: checks a verifier's bit-for-bit re-execution cannot make, because
    re-running a wrong model gives the same wrong numbers.

    ``probabilities``: outputs whose rows are probability vectors (each value in [0, 1],
    the row summing to 1 within ``tolerance``). ``labels`` maps a label output to the
    probabilities output it must agree with (label == ``classes[argmax]``); ``classes``
    lists the known labels (default ``0 … k-1`` for ``k`` probabilities). Every float
    output is checked for NaN and ±inf. :meth:`for_outputs` reads a default off the
    outputs' names and shapes.
    """

    probabilities: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    classes: Mapping[str, Sequence[int]] = field(default_factory=dict)
    tolerance: float = 1e-3

    def __post_init__(self) -> None:
        if not math.isfinite(self.tolerance) or self.tolerance < 0:
            raise ConfigError(f"tolerance must be a finite number >= 0, got {self.tolerance}")
        unknown = sorted(set(self.labels.values()) - set(self.probabilities))
        if unknown:
            raise ConfigError(f"labels refer to {unknown}, which are not in probabilities")

    @classmethod
    def for_outputs(cls, outputs: Mapping[str, tuple[str, tuple[int, ...]]]) -> RecordsSuite:
        """The default for outputs ``{name: (dtype, row_shape)}``: float vectors named like
        ``prob…``/``softmax`` are probabilities; with exactly one, a 1-D integer output is
        its label."""
        probs = tuple(
            name
            for name, (dtype, shape) in outputs.items()
            if dtype.startswith("float")
            and len(shape) == 1
            and shape[0] >= 2
            and any(k in name.lower() for k in ("prob", "softmax"))
        )
        labels = {}
        if len(probs) == 1:
            labels = {
                name: probs[0]
                for name, (dtype, shape) in outputs.items()
                if shape == () and dtype.startswith(("int", "uint"))
            }
        return cls(probs, labels)


def _float_outputs(specs: Mapping[str, tuple[str, tuple[int, ...]]]) -> list[str]:
    return [n for n, (dtype, _) in specs.items() if dtype.startswith("float")]


def records_gx_suite(
    specs: Mapping[str, tuple[str, tuple[int, ...]]],
    suite: RecordsSuite | None = None,
    name: str = "ogkit.records",
) -> ExpectationSuite:
    """The great-expectations suite :func:`check_records` runs over the per-row frame it
    builds from a batch's outputs (``specs``: ``{output: (dtype, row_shape)}``)."""
    import great_expectations as gx

    ex = gx.expectations
    suite = suite or RecordsSuite.for_outputs(specs)
    out: list[Expectation] = [
        ex.ExpectColumnValuesToBeInSet(column=f"{o}.finite", value_set=[True])
        for o in _float_outputs(specs)
    ]
    tol = suite.tolerance
    for p in suite.probabilities:
        out += [
            ex.ExpectColumnValuesToBeBetween(column=f"{p}.min", min_value=-tol),
            ex.ExpectColumnValuesToBeBetween(column=f"{p}.max", max_value=1 + tol),
            ex.ExpectColumnValuesToBeBetween(
                column=f"{p}.sum", min_value=1 - tol, max_value=1 + tol
            ),
        ]
    for label, p in suite.labels.items():
        classes = _classes(suite, label, specs[p][1][0])
        out += [
            ex.ExpectColumnValuesToBeInSet(column=label, value_set=classes),
            ex.ExpectColumnPairValuesToBeEqual(column_A=label, column_B=f"{p}.predicted"),
        ]
    return gx.ExpectationSuite(name=name, expectations=out)


def _classes(suite: RecordsSuite, label: str, k: int) -> list[int]:
    classes = [int(c) for c in suite.classes.get(label, range(k))]
    if len(classes) != k:
        raise ConfigError(f"{len(classes)} classes for {label!r}, but its probabilities have {k}")
    return classes


# -- results ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CheckFailure:
    """One failed expectation: its type name, column (``None`` for table-level ones),
    what was observed, and up to :data:`MAX_ROWS_PER_FAILURE` rows involved."""

    expectation: str
    column: str | None
    detail: dict[str, Any]
    rows: list[int] = field(default_factory=list)

    @property
    def unexpected_count(self) -> int | None:
        n = self.detail.get("unexpected_count")
        return int(n) if n is not None else None

    def describe(self) -> str:
        where = f" on {self.column!r}" if self.column is not None else ""
        facts = ", ".join(
            f"{k}={v}" for k, v in self.detail.items() if k not in ("partial_unexpected_list",)
        )
        rows = f"; rows {', '.join(map(str, self.rows))}" if self.rows else ""
        return f"{self.expectation}{where}: {facts}{rows}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "expectation": self.expectation,
            "column": self.column,
            "detail": self.detail,
            "rows": list(self.rows),
        }


@dataclass
class CheckResult:
    """The outcome of one suite over one dataset or batch."""

    suite_name: str
    passed: bool
    failures: list[CheckFailure] = field(default_factory=list)
    expectations: int = 0  # how many were evaluated
    row_count: int = 0
    skipped: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0
    kind: str = "inputs"  # "inputs" (check_inputs) or "records" (check_records)

    def failing_columns(self) -> list[str]:
        return sorted({f.column for f in self.failures if f.column is not None})

    def to_frame(self) -> pl.DataFrame:
        """One row per failure: expectation, column, unexpected_count, rows, detail (JSON)."""
        return pl.DataFrame(
            {
                "expectation": [f.expectation for f in self.failures],
                "column": [f.column for f in self.failures],
                "unexpected_count": [f.unexpected_count for f in self.failures],
                "rows": [list(f.rows) for f in self.failures],
                "detail": [json.dumps(f.detail, sort_keys=True) for f in self.failures],
            },
            schema={
                "expectation": pl.String,
                "column": pl.String,
                "unexpected_count": pl.Int64,
                "rows": pl.List(pl.Int64),
                "detail": pl.String,
            },
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "suite_name": self.suite_name,
            "kind": self.kind,
            "passed": self.passed,
            "expectations": self.expectations,
            "row_count": self.row_count,
            "elapsed_s": round(self.elapsed_s, 3),
            "skipped": list(self.skipped),
            "failures": [f.to_dict() for f in self.failures],
        }

    def summary(self) -> str:
        head = (
            f"{'PASS' if self.passed else 'FAIL'} {self.suite_name}: "
            f"{self.expectations} expectations over {self.row_count:,} rows"
        )
        if self.failures:
            head += f", {len(self.failures)} failed"
        lines = [head] + [f"  - {f.describe()}" for f in self.failures]
        lines += [f"  (skipped {s})" for s in self.skipped]
        return "\n".join(lines)


# -- policy -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DataCheckPolicy:
    """Whether failed data checks block settlement, and how many failures are tolerated."""

    block_settlement: bool = True
    max_failures: int = 0

    def __post_init__(self) -> None:
        if self.max_failures < 0:
            raise ConfigError(f"max_failures must be >= 0, got {self.max_failures}")

    def allows(self, result: CheckResult) -> bool:
        return (
            result.passed or not self.block_settlement or len(result.failures) <= self.max_failures
        )


def enforce(result: CheckResult, policy: DataCheckPolicy | None = None) -> CheckResult:
    """Raise :class:`DataCheckFailed` when ``policy`` does not allow ``result``; otherwise
    log any failures and return the result."""
    policy = policy or DataCheckPolicy()
    if not policy.allows(result):
        raise DataCheckFailed(_failure_message(result, policy), result=result, policy=policy)
    if result.failures:
        log.warning(
            "data checks %s: %d failure(s) allowed by the policy (block_settlement=%s, "
            "max_failures=%d)",
            result.suite_name,
            len(result.failures),
            policy.block_settlement,
            policy.max_failures,
        )
    return result


def _failure_message(result: CheckResult, policy: DataCheckPolicy | None) -> str:
    allowed = policy.max_failures if policy is not None else 0
    lines = [
        f"data checks {result.suite_name!r} failed: {len(result.failures)} of "
        f"{result.expectations} expectations over {result.row_count:,} rows "
        f"(the policy allows {allowed}); settlement is blocked:"
    ]
    lines += [f"  - {f.describe()}" for f in result.failures[:10]]
    if len(result.failures) > 10:
        lines.append(f"  … and {len(result.failures) - 10} more (see .result)")
    if result.kind == "records" and any(
        f.expectation == RECORDS_READABLE_CHECK for f in result.failures
    ):
        lines.append(
            "The batch's records were altered or are unreadable: do not settle it; run "
            "verify_batch for the full findings, and re-run the job to attest a fresh batch."
        )
    elif result.kind == "records":
        lines.append(
            "The outputs are not what this model should give (a wrong model, export or "
            "output wiring): do not settle it; fix the model, or pass a RecordsSuite that "
            "describes its outputs, and re-run the job."
        )
    else:
        lines.append(
            "Fix the data at the rows named, or update the suite if the data is right "
            "(InputSuite.infer(reference, margin=...)); to settle anyway, use "
            "DataCheckPolicy(block_settlement=False) or raise max_failures."
        )
    return "\n".join(lines)


# -- running ------------------------------------------------------------------------------------
def _plain(value: Any) -> Any:
    """JSON-safe Python values from NumPy/pandas ones (NaN becomes None)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else value
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _frame_of(source: DataSource) -> pl.DataFrame:
    """All rows of ``source`` as one polars frame."""
    if source.frame is not None:
        return source.frame
    if source.arrays is not None:
        # Multi-dimensional arrays become one fixed-size array column per input.
        return pl.DataFrame(
            [
                pl.Series(k, v if v.ndim == 1 else v.reshape(len(v), -1))
                for k, v in source.arrays.items()
            ]
        )
    return source.scan().collect()


def _validate(
    df: pd.DataFrame, suite: ExpectationSuite, index_column: str | None = None
) -> list[Any]:
    """Run ``suite`` over ``df`` in a throw-away in-memory context; the per-expectation
    results, with up to :data:`MAX_ROWS_PER_FAILURE` unexpected row indices each."""
    import great_expectations as gx
    from great_expectations.data_context.data_context.context_factory import project_manager
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )
    from great_expectations.exceptions import DataContextRequiredError

    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False),  # library code: no tqdm on stderr
    )
    # get_context makes its context the process's "current" one, which validation reads;
    # afterwards put back whatever a notebook had, so ogkit's checks leave the user's be.
    try:
        previous = project_manager.get_current_project()
    except DataContextRequiredError:
        previous = None
    try:
        context = gx.get_context(mode="ephemeral", project_config=config)
        batch_definition = (
            context.data_sources.add_pandas("ogkit")
            .add_dataframe_asset("data")
            .add_batch_definition_whole_dataframe("all rows")
        )
        batch = batch_definition.get_batch(batch_parameters={"dataframe": df})
        # SUMMARY (not COMPLETE): only the first rows of each failure, never 100k indices.
        result_format: dict[str, Any] = {
            "result_format": "SUMMARY",
            "partial_unexpected_count": MAX_ROWS_PER_FAILURE,
            "return_unexpected_index_query": False,
        }
        if index_column is not None:
            result_format["unexpected_index_column_names"] = [index_column]
        return list(batch.validate(suite, result_format=result_format).results)
    finally:
        project_manager.set_project(previous)


_DETAIL_KEYS = (
    "observed_value",
    "details",
    "element_count",
    "unexpected_count",
    "unexpected_percent",
    "missing_count",
)


def _failure_from(r: Any, index_column: str | None) -> CheckFailure:
    """A :class:`CheckFailure` from a great-expectations ``ExpectationValidationResult``."""
    config = r.expectation_config
    column = config.kwargs.get("column", config.kwargs.get("column_A"))
    info = r.exception_info or {}
    # Per-metric exception info is nested one level down; either shape may come back.
    raised = [v for v in info.values() if isinstance(v, dict) and v.get("raised_exception")]
    if info.get("raised_exception"):
        raised.append(info)
    detail: dict[str, Any] = {k: _plain(r.result[k]) for k in _DETAIL_KEYS if k in r.result}
    if "partial_unexpected_list" in r.result:
        detail["partial_unexpected_list"] = _plain(r.result["partial_unexpected_list"][:5])
    if raised:
        detail["error"] = str(raised[0].get("exception_message"))
    rows: list[int] = []
    for entry in r.result.get("partial_unexpected_index_list") or []:
        value = entry.get(index_column) if isinstance(entry, dict) else entry
        if value is not None and int(value) not in rows:
            rows.append(int(value))
    return CheckFailure(config.type, column, detail, rows[:MAX_ROWS_PER_FAILURE])


def _unconvertible_rows(series: pl.Series, expected: str) -> tuple[int, list[int]]:
    """Rows of ``series`` whose values do not convert to the expected dtype (great-
    expectations reports a column's dtype, not which values are wrong)."""
    target: Any = pl.Float64 if expected in _FAMILIES else getattr(pl, expected, None)
    if not (isinstance(target, type) and issubclass(target, pl.DataType)):
        return 0, []
    try:
        cast = series.cast(target, strict=False)
    except pl.exceptions.PolarsError:  # no cast between these types at all
        return 0, []
    bad = (cast.is_null() & series.is_not_null()).arg_true()
    return len(bad), bad.head(MAX_ROWS_PER_FAILURE).to_list()


def _suite_frame(source: DataSource, suite: InputSuite) -> pl.DataFrame:
    """The columns ``suite`` looks at (all of them when it expects an exact column set),
    read from ``source``: files are scanned for those columns only."""
    if suite.expected_columns is not None or source.arrays is not None:
        return _frame_of(source)
    wanted = [c for c in source.schema if c in suite.columns]
    if source.frame is not None:
        return source.frame.select(wanted)
    return source.scan().select(wanted).collect()


def check_inputs(data: Any, suite: InputSuite) -> CheckResult:
    """Validate every row of ``data`` against ``suite`` with great-expectations. ``data``
    is an open :class:`~ogkit.dataset.DataSource` (what the infer step already holds:
    nothing is read or hashed again) or anything :func:`ogkit.dataset.open_source`
    accepts. Only the columns the suite describes are read and converted (every column
    when it expects an exact set). Rows are 0-based positions."""
    started = time.perf_counter()  # the whole call, the first import of great-expectations too
    import great_expectations as gx

    source = data if isinstance(data, DataSource) else open_source(data)
    frame = _suite_frame(source, suite)
    schema = (
        dict(source.schema)
        if source.arrays is None
        else {k: str(v) for k, v in frame.schema.items()}
    )
    expectations, skipped = suite._gx_expectations(schema)
    results = _validate(
        _to_pandas(frame), gx.ExpectationSuite(name=suite.name, expectations=expectations)
    )
    failures = []
    evaluated = len(results)
    for r in results:
        if r.success:
            continue
        failure = _failure_from(r, None)
        if failure.expectation == "expect_column_values_to_be_in_type_list":
            failure = _dtype_failure(failure, frame, suite, schema)
        elif failure.expectation == "expect_column_to_exist":
            failure = CheckFailure(failure.expectation, failure.column, {"observed": "missing"})
        failures.append(failure)
    # Dtypes great-expectations cannot see through pandas (nested, binary, …): schema check.
    for col, spec in suite.columns.items():
        if spec.dtype is None or col not in schema or _ge_type_list(spec.dtype) is not None:
            continue
        evaluated += 1
        if not _dtype_matches(spec.dtype, schema[col]):
            detail = {"expected_dtype": spec.dtype, "observed_dtype": schema[col]}
            failures.append(CheckFailure(DTYPE_CHECK, col, detail, []))
    result = CheckResult(
        suite.name,
        not failures,
        failures,
        evaluated,
        source.n_rows,
        skipped,
        time.perf_counter() - started,
    )
    log.info(
        "checked %s against %s: %s in %.2f s",
        source.describe(),
        suite.name,
        "pass" if result.passed else f"{len(failures)} failure(s)",
        result.elapsed_s,
    )
    return result


def _dtype_failure(
    failure: CheckFailure, frame: pl.DataFrame, suite: InputSuite, schema: Mapping[str, str]
) -> CheckFailure:
    """Say the type check in polars terms, with the rows whose values do not convert."""
    col = failure.column
    assert col is not None
    expected = suite.columns[col].dtype or ""
    count, rows = _unconvertible_rows(frame[col], expected)
    # great-expectations' counts stay (for an object column: values of the wrong type).
    kept = {k: v for k, v in failure.detail.items() if k != "partial_unexpected_list"}
    detail = {
        "expected_dtype": expected,
        "observed_dtype": schema[col],
        **{k: v for k, v in kept.items() if v is not None},
        "unconvertible_count": count,
    }
    return CheckFailure(failure.expectation, col, detail, rows)


def _outputs_frame(
    rec: PartitionRecords,
    specs: Mapping[str, tuple[str, tuple[int, ...]]],
    suite: RecordsSuite,
) -> pl.DataFrame:
    """Per row: ``row_index``, each float output's ``.finite``, each probabilities
    output's ``.min``/``.max``/``.sum``/``.predicted`` and each label output's value."""
    n = len(rec.row_index)
    cols: dict[str, Any] = {"row_index": rec.row_index.astype(np.int64)}
    for o in _float_outputs(specs):
        flat = rec.outputs[o].reshape(n, -1)
        cols[f"{o}.finite"] = np.isfinite(flat).all(axis=1)
    for p in suite.probabilities:
        values = rec.outputs[p].reshape(n, -1).astype(np.float64)
        labels = [lb for lb, q in suite.labels.items() if q == p]
        cols[f"{p}.min"] = values.min(axis=1, initial=np.inf)
        cols[f"{p}.max"] = values.max(axis=1, initial=-np.inf)
        cols[f"{p}.sum"] = values.sum(axis=1)
        if labels:
            classes = np.asarray(_classes(suite, labels[0], values.shape[1]), dtype=np.int64)
            cols[f"{p}.predicted"] = classes[values.argmax(axis=1)] if n else classes[:0]
    for label in suite.labels:
        cols[label] = rec.outputs[label].reshape(n).astype(np.int64)
    return pl.DataFrame(cols)


def _read_partition(batch: AttestedBatch, index: int) -> tuple[PartitionRecords | None, str]:
    """One partition's records (checked against the manifest), or why they cannot be read."""
    try:
        return batch.records(index, inputs=False), ""
    except (ArtifactError, OSError) as exc:
        return None, str(exc)


def check_records(batch: AttestedBatch, suite: RecordsSuite | None = None) -> CheckResult:
    """Check what an attested batch's outputs say, before it settles: no NaN or ±inf in a
    float output; probability vectors in [0, 1] summing to 1; labels among the known
    classes and equal to the most probable class. ``suite`` defaults to
    :meth:`RecordsSuite.for_outputs` over the batch's outputs. Failing rows are named by
    row index.

    These are checks an honest node with a buggy model or export can fail. What the
    records format and :func:`ogkit.verify.verify_batch` already guarantee (hash format,
    nulls, every row once, the files' sha256) is not repeated; records that cannot be
    read are one failure (nothing could be checked on them).
    """
    started = time.perf_counter()
    specs = batch.tensor_specs()["outputs"]
    suite = suite or RecordsSuite.for_outputs(specs)
    unknown = sorted((set(suite.probabilities) | set(suite.labels)) - set(specs))
    if unknown:
        raise ConfigError(f"the records suite names {unknown}; the batch outputs {sorted(specs)}")
    frames: list[pl.DataFrame] = []
    failures: list[CheckFailure] = []
    for i in range(len(batch.partitions)):
        rec, problem = _read_partition(batch, i)
        if rec is None:
            failures.append(
                CheckFailure(RECORDS_READABLE_CHECK, None, {"partition": i, "error": problem})
            )
        else:
            frames.append(_outputs_frame(rec, specs, suite))
    gx_suite = records_gx_suite(specs, suite, name=f"ogkit.records:{batch.batch_id[:18]}")
    frame = pl.concat(frames) if frames else pl.DataFrame()
    if frames and gx_suite.expectations:
        for r in _validate(_to_pandas(frame), gx_suite, index_column="row_index"):
            if not r.success:
                failures.append(_failure_from(r, "row_index"))
    result = CheckResult(
        gx_suite.name,
        not failures,
        failures,
        len(gx_suite.expectations) + 1,  # + the records being readable
        frame.height,
        [],
        time.perf_counter() - started,
        kind="records",
    )
    log.info(
        "checked records of %s: %s in %.2f s",
        batch,
        "pass" if result.passed else f"{len(failures)} failure(s)",
        result.elapsed_s,
    )
    return result
