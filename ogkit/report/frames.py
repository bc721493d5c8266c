"""Frames read from batches, verdicts and hub entries (one polars frame each).

:func:`batch_frame`, :func:`run_stats_frame`, :func:`reexecution_errors`,
:func:`verdicts_frame`, :func:`group_findings`, :func:`receipts_frame`, :func:`hub_frame`;
their columns are
listed in each docstring. The frames read from chain events are in
:mod:`ogkit.report.events`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from ogkit.errors import ConfigError
from ogkit.report.common import OPG
from ogkit.verify import Allowlist, verify_receipt

if TYPE_CHECKING:
    from ogkit.batch import AttestedBatch

__all__ = [
    "batch_frame",
    "group_findings",
    "hub_frame",
    "receipts_frame",
    "reexecution_errors",
    "run_stats_frame",
    "verdicts_frame",
]

_RUN_STATS_SCHEMA = {
    "index": pl.Int64,
    "rows": pl.Int64,
    "worker": pl.String,
    "read_s": pl.Float64,
    "commit_s": pl.Float64,
    "infer_s": pl.Float64,
    "attest_s": pl.Float64,
    "encode_s": pl.Float64,
    "write_s": pl.Float64,
    "seconds": pl.Float64,
    "rows_per_s": pl.Float64,
}


_STAGES = ("read", "commit", "infer", "attest", "encode", "write")


def run_stats_frame(batch: AttestedBatch) -> pl.DataFrame:
    """One row per partition from ``batch.manifest.run_stats["partitions"]``.

    Columns: ``index``, ``rows``, ``worker`` (host:pid), seconds per stage on the worker
    (``read_s``: the rows; ``commit_s``: their input hashes and input-root leaves;
    ``infer_s``; ``attest_s``: output hashes, leaves, the partition tree; ``encode_s``:
    the records file and its sha256; ``write_s``: into the store), ``seconds`` (their
    sum) and ``rows_per_s``. Partitions resumed from an earlier run keep that run's
    numbers."""
    rows = []
    for p in batch.manifest.run_stats.get("partitions", []):
        stages = {s: float(p.get(s, 0.0)) for s in _STAGES}
        total = sum(stages.values())
        rows.append(
            {
                "index": int(p["index"]),
                "rows": int(p["rows"]),
                "worker": str(p.get("worker", "")),
                **{f"{s}_s": v for s, v in stages.items()},
                "seconds": total,
                "rows_per_s": int(p["rows"]) / total if total > 0 else 0.0,
            }
        )
    return pl.DataFrame(rows, schema=_RUN_STATS_SCHEMA)


def batch_frame(batch: AttestedBatch) -> pl.DataFrame:
    """One row describing an attested batch: ``artifact_id``, ``batch_id``, ``batch_root``,
    ``model``, ``rows``, ``partitions``, ``resumed_partitions``, ``wall_seconds``,
    ``chain_id``."""
    stats = batch.manifest.run_stats
    return pl.DataFrame(
        {
            "artifact_id": [batch.artifact_id],
            "batch_id": [batch.batch_id],
            "batch_root": [batch.batch_root],
            "model": [batch.manifest.model_ref or batch.model_id],
            "rows": [batch.row_count],
            "partitions": [len(batch.partitions)],
            "resumed_partitions": [int(stats.get("resumed_partitions", 0))],
            "wall_seconds": [float(stats.get("wall_seconds", 0.0))],
            "chain_id": [int(batch.domain.chain_id)],
        }
    )


def reexecution_errors(batch: AttestedBatch, rows: Iterable[int]) -> pl.DataFrame:
    """Re-run the model on the stored inputs of ``rows``; the largest absolute difference
    from the stored outputs per row, over every output.

    The model comes from the batch's own store (``models/<model id>``, hash-checked).
    Columns: ``row_index``, ``partition``, ``max_abs_error`` (float; 0.0 means the row
    re-executes bit-for-bit, as it should on CPU; infinite when the stored inputs do not
    hash to the row's committed input hash) and ``exact`` (bool).
    """
    from ogkit.crypto.encoding import tensor_row_hashes
    from ogkit.load import load_model_bytes, reexecute

    schema = {
        "row_index": pl.Int64,
        "partition": pl.Int64,
        "max_abs_error": pl.Float64,
        "exact": pl.Boolean,
    }
    wanted = sorted({int(r) for r in rows})
    if not wanted:
        return pl.DataFrame(schema=schema)
    by_partition: dict[int, list[int]] = {}
    for part in batch.partitions:
        lo, hi = part.offset, part.offset + part.rows
        inside = [r for r in wanted if lo <= r < hi]
        if inside:
            by_partition[part.index] = inside
    outside = set(wanted) - {r for rs in by_partition.values() for r in rs}
    if outside:
        raise ConfigError(
            f"rows {sorted(outside)[:5]} are not in batch {batch.batch_id} "
            f"({batch.row_count:,} rows)"
        )
    model = load_model_bytes(batch.store.get("models", batch.model_id))
    out: list[dict[str, Any]] = []
    for index, part_rows in by_partition.items():
        rec = batch.records(index)
        position = {int(r): i for i, r in enumerate(rec.row_index)}
        idx = np.array([position[r] for r in part_rows], dtype=np.int64)
        fresh = reexecute(model, rec.inputs, idx, batch_size=batch.batch_size)
        err = np.zeros(len(idx), dtype=np.float64)
        # Inputs the records do not commit to (another row stored in the dataset) prove
        # nothing about the committed row: never exact, however the model answers them.
        stored_in = tensor_row_hashes({k: v[idx] for k, v in rec.inputs.items()})
        committed = np.asarray(rec.input_hashes)[idx]
        err[np.any(np.asarray(stored_in) != committed, axis=1)] = np.inf
        for name, stored in rec.outputs.items():
            got, want = fresh[name].astype(np.float64), stored[idx].astype(np.float64)
            # NaN in both places is a match; NaN in one place only is an infinite error.
            diff = np.where(np.isnan(got) & np.isnan(want), 0.0, np.abs(got - want))
            diff = np.where(np.isnan(diff), np.inf, diff)
            err = np.maximum(err, diff.reshape(len(idx), -1).max(axis=1, initial=0.0))
        out.extend(
            {"row_index": r, "partition": index, "max_abs_error": float(e), "exact": e == 0.0}
            for r, e in zip(part_rows, err, strict=True)
        )
    return pl.DataFrame(out, schema=schema)


def verdicts_frame(verdicts: Sequence[Any], verifiers: Sequence[str] | None = None) -> pl.DataFrame:
    """One row per :class:`~ogkit.verify.Verdict`, named after ``verifiers`` when given.

    Columns: ``batch_id``, ``verifier``, ``verdict`` ("pass"/"fail"), ``rows_checked``,
    ``sample_size``, ``findings``, ``max_abs_error``, ``seconds``.
    """
    names = (
        list(verifiers)
        if verifiers is not None
        else [f"verifier-{i + 1}" for i in range(len(verdicts))]
    )
    if len(names) != len(verdicts):
        raise ConfigError(f"{len(verdicts)} verdicts but {len(names)} verifier names")
    return pl.DataFrame(
        [
            {
                "batch_id": v.batch_id,
                "verifier": name,
                "verdict": "pass" if v.passed else "fail",
                "rows_checked": int(v.rows_checked),
                "sample_size": int(v.sample_size),
                "findings": len(v.findings),
                "max_abs_error": float(v.max_abs_error),
                "seconds": float(v.seconds),
            }
            for v, name in zip(verdicts, names, strict=True)
        ],
        schema={
            "batch_id": pl.String,
            "verifier": pl.String,
            "verdict": pl.String,
            "rows_checked": pl.Int64,
            "sample_size": pl.Int64,
            "findings": pl.Int64,
            "max_abs_error": pl.Float64,
            "seconds": pl.Float64,
        },
    )


def receipts_frame(
    batch: AttestedBatch, rows: Iterable[int], allowlist: Allowlist | None = None
) -> pl.DataFrame:
    """The receipts of ``rows``, each checked on its own with :func:`verify_receipt`
    against ``allowlist`` (without one, no receipt counts as valid: nobody approved it).

    Columns: ``row_index``, ``partition``, ``leaf``, ``input_hash``, ``output_hash``,
    ``proof_steps``, ``valid`` (bool), ``signer`` (the attester the claim recovers to).
    """
    receipts = batch.receipts(list(rows))
    out = []
    for r in receipts:
        check = verify_receipt(r, allowlist)
        v = r["leaf_values"]
        out.append(
            {
                "row_index": int(v["rowIndex"]),
                "partition": int(r["partition"]["index"]),
                "leaf": r["leaf"],
                "input_hash": v["inputHash"],
                "output_hash": v["outputHash"],
                "proof_steps": len(r["proof"]),
                "valid": check.ok,
                "signer": check.signer,
            }
        )
    return pl.DataFrame(
        out,
        schema={
            "row_index": pl.Int64,
            "partition": pl.Int64,
            "leaf": pl.String,
            "input_hash": pl.String,
            "output_hash": pl.String,
            "proof_steps": pl.Int64,
            "valid": pl.Boolean,
            "signer": pl.String,
        },
    )


def hub_frame(entries: Iterable[Any]) -> pl.DataFrame:
    """Hub entries (``Hub.list()``/``Hub.search()``) as a table, one row per version.

    Columns: ``ref``, ``name``, ``version``, ``model_id``, ``owner``, ``price_opg``,
    ``size_bytes``, ``inputs``, ``outputs`` (``name: dtype[shape]`` strings), ``tags``,
    ``license``, ``deprecated``.
    """

    def sig(specs: Iterable[Any]) -> str:
        return ", ".join(f"{t.name}: {t.dtype}{list(t.shape)}" for t in specs)

    rows = []
    for e in entries:
        m = e.manifest
        rows.append(
            {
                "ref": m.ref,
                "name": m.name,
                "version": m.version,
                "model_id": m.model_id,
                "owner": m.owner,
                "price_opg": m.price_per_inference / OPG,
                "size_bytes": int(m.size_bytes),
                "inputs": sig(m.inputs),
                "outputs": sig(m.outputs),
                "tags": ", ".join(m.tags),
                "license": m.license,
                "deprecated": bool(e.deprecated),
            }
        )
    return pl.DataFrame(
        rows,
        schema={
            "ref": pl.String,
            "name": pl.String,
            "version": pl.String,
            "model_id": pl.String,
            "owner": pl.String,
            "price_opg": pl.Float64,
            "size_bytes": pl.Int64,
            "inputs": pl.String,
            "outputs": pl.String,
            "tags": pl.String,
            "license": pl.String,
            "deprecated": pl.Boolean,
        },
    )


def _findings_input(findings: Any) -> pl.DataFrame:
    if isinstance(findings, pl.DataFrame):
        return findings
    items = getattr(findings, "findings", findings)  # a Verdict, or the findings themselves
    rows = [dict(vars(f)) if not isinstance(f, dict) else dict(f) for f in items]
    return pl.DataFrame(rows, infer_schema_length=None) if rows else pl.DataFrame()


def group_findings(findings: Any, *, first: int = 5) -> pl.DataFrame:
    """Findings grouped for a person to read: one row per kind of finding and place.

    One tampered file gives dozens of findings of one reason in one partition; this
    gives one row for them. ``findings``: a :class:`~ogkit.verify.Verdict`, a list of
    findings, or a findings frame (the audit's ``findings``, :func:`ogkit.audit.audit`).
    The audit's ``verification-failed`` findings are split by the verifier's reason,
    which starts their ``detail``.

    Columns: those of ``batch_id``, ``severity``, ``reason``, ``partition`` present in
    the input (the group), then ``count``, ``rows`` (the first ``first`` row indices,
    ``"+N more"`` after them) and ``detail`` (the first finding's).
    """
    frame = _findings_input(findings)
    keys = [c for c in ("batch_id", "severity", "reason", "partition") if c in frame.columns]
    out_schema: dict[str, Any] = {k: frame.schema[k] for k in keys}
    out_schema.update({"count": pl.UInt32, "rows": pl.String, "detail": pl.String})
    if frame.is_empty() or "reason" not in frame.columns:
        return pl.DataFrame(schema=out_schema)
    if "detail" not in frame.columns:
        frame = frame.with_columns(pl.lit("").alias("detail"))
    if "row_index" not in frame.columns:
        frame = frame.with_columns(pl.lit(None, dtype=pl.Int64).alias("row_index"))
    inner = pl.col("detail").str.extract(r"^([a-z0-9-]+):", 1)
    frame = frame.with_columns(
        pl.when((pl.col("reason") == "verification-failed") & inner.is_not_null())
        .then(pl.col("reason") + pl.lit(": ") + inner)
        .otherwise(pl.col("reason"))
        .alias("reason")
    ).with_row_index("_order")

    def rows_text(values: pl.Series) -> str:
        present = sorted(int(v) for v in values.drop_nulls().unique())
        if not present:
            return ""
        shown = ", ".join(str(v) for v in present[:first])
        return shown + (f" (+{len(present) - first} more)" if len(present) > first else "")

    grouped = (
        frame.group_by(keys, maintain_order=True)
        .agg(
            pl.len().alias("count"),
            pl.col("row_index").alias("rows"),
            pl.col("detail").first(),
            pl.col("_order").min(),
        )
        .sort("_order")
        .drop("_order")
        .with_columns(pl.col("rows").map_elements(rows_text, return_dtype=pl.String))
    )
    return grouped.select(list(out_schema)).cast(out_schema)  # type: ignore[arg-type]
