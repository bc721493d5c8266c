"""Charts and tables for reports: polars frames in, altair charts out.

Two kinds of functions live here:

- **frame builders** read a batch, verdicts or chain events and return a polars frame:
  :func:`batch_frame`, :func:`run_stats_frame`, :func:`reexecution_errors`,
  :func:`verdicts_frame`, :func:`receipts_frame`, :func:`payments_frame`,
  :func:`slashes_frame`, :func:`hub_frame`;
- **charts** take such a frame (its columns are listed in each docstring) and return an
  altair chart, touching nothing else: :func:`verification_status_chart`,
  :func:`reexecution_error_chart`, :func:`throughput_chart`, :func:`gas_chart`,
  :func:`payments_chart`, :func:`slashing_chart`, :func:`model_prices_chart`. An empty
  frame gives a chart that says so instead of failing.

:func:`table` shows a frame as a plain HTML table (every column, short ids) for reports.
:func:`save_chart` writes a chart as PNG (rendered by vl-convert, no browser) and as a
standalone HTML page; :func:`show_png` returns an ``IPython.display.Image`` so that an
executed notebook, and the code-free HTML report made from it, carry the picture itself
rather than JavaScript that needs a live kernel or a CDN. OPG amounts are shown as decimal
OPG (base units / 10**18); the exact amounts stay on chain.
"""

from __future__ import annotations

import html
import logging
import math
import re
import struct
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import altair as alt
import numpy as np
import polars as pl

from ogkit.artifacts import AttestedBatch, verify_receipt
from ogkit.errors import ConfigError

__all__ = [
    "batch_frame",
    "chart_png",
    "gas_chart",
    "hub_frame",
    "model_prices_chart",
    "payments_chart",
    "payments_frame",
    "receipts_frame",
    "reexecution_error_chart",
    "reexecution_errors",
    "run_stats_frame",
    "save_chart",
    "show_png",
    "slashes_frame",
    "slashing_chart",
    "table",
    "throughput_chart",
    "verdicts_frame",
    "verification_status_chart",
]

log = logging.getLogger(__name__)

OPG = 10**18
WIDTH, HEIGHT = 560, 240

# Fixed colours, so "fail" is red in every report whatever else is in the frame.
VERDICT_COLORS = {"pass": "#2e9d4e", "fail": "#d1352b", "not run": "#9a9a9a"}
STATUS_COLORS = {
    "finalized": "#2e9d4e",
    "pending": "#f0a020",
    "committing": "#9a9a9a",
    "new": "#9a9a9a",
    "disputed": "#8e5cc2",
    "slashed": "#d1352b",
    "refunded": "#8a6d3b",
}
ROLE_COLORS = {
    "model owner": "#3b6fb6",
    "node": "#f0a020",
    "verifier": "#2e9d4e",
    "requester refund": "#9a9a9a",
    "challenger": "#d1352b",
}

Chart = alt.Chart | alt.LayerChart | alt.HConcatChart | alt.VConcatChart


# -- helpers --------------------------------------------------------------------------------
def _short(value: str, keep: int = 6) -> str:
    """``0x1234ab…cdef`` for ids and addresses, so axis labels stay readable."""
    value = str(value)
    if value.startswith("0x") and len(value) > 2 * keep + 4:
        return f"{value[: keep + 2]}…{value[-4:]}"
    return value


def _require(frame: pl.DataFrame, columns: Iterable[str], chart: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ConfigError(
            f"{chart} needs the column(s) {', '.join(missing)}; the frame has "
            f"{', '.join(frame.columns) or 'no columns'}"
        )


def _scale(colors: Mapping[str, str], present: Iterable[str]) -> alt.Scale:
    """A colour scale listing the known values first, then any unknown ones."""
    seen = list(dict.fromkeys(str(p) for p in present))
    domain = [k for k in colors if k in seen] + [v for v in seen if v not in colors]
    fallback = ["#5b8fd1", "#c46fb0", "#46b3a8", "#b8860b", "#7a7a7a"]
    extra = iter(fallback * (len(domain) // len(fallback) + 1))
    return alt.Scale(domain=domain, range=[colors.get(d) or next(extra) for d in domain])


def _width(n: int, step: int = 70) -> int:
    """Chart width for ``n`` bars: narrow for a few, never wider than a report column."""
    return max(200, min(WIDTH, step * n))


def _message_chart(text: str, title: str) -> alt.Chart:
    """A chart that only says ``text``: what an empty frame becomes."""
    return (
        alt.Chart(pl.DataFrame({"text": [text]}), title=title)
        .mark_text(fontSize=15, color="#555555")
        .encode(text="text:N")
        .properties(width=WIDTH, height=60)
    )


# -- frames ---------------------------------------------------------------------------------
_RUN_STATS_SCHEMA = {
    "index": pl.Int64,
    "rows": pl.Int64,
    "worker": pl.String,
    "read_s": pl.Float64,
    "infer_s": pl.Float64,
    "attest_s": pl.Float64,
    "write_s": pl.Float64,
    "seconds": pl.Float64,
    "rows_per_s": pl.Float64,
}


def run_stats_frame(batch: AttestedBatch) -> pl.DataFrame:
    """One row per partition from ``batch.manifest["run_stats"]["partitions"]``.

    Columns: ``index``, ``rows``, ``worker`` (host:pid), ``read_s``, ``infer_s``,
    ``attest_s``, ``write_s`` (seconds per stage on the worker), ``seconds`` (their sum)
    and ``rows_per_s``. Partitions resumed from an earlier run keep that run's numbers.
    """
    rows = []
    for p in batch.manifest.get("run_stats", {}).get("partitions", []):
        stages = {s: float(p.get(s, 0.0)) for s in ("read", "infer", "attest", "write")}
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
    stats = batch.manifest.get("run_stats", {})
    return pl.DataFrame(
        {
            "artifact_id": [batch.artifact_id],
            "batch_id": [batch.batch_id],
            "batch_root": [batch.batch_root],
            "model": [batch.manifest.get("model_ref") or batch.model_id],
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
    re-executes bit-for-bit, as it should on CPU) and ``exact`` (bool).
    """
    from ogkit.load import load_model_bytes

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
        lo, hi = int(part["offset"]), int(part["offset"]) + int(part["rows"])
        inside = [r for r in wanted if lo <= r < hi]
        if inside:
            by_partition[int(part["index"])] = inside
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
        fresh = model.run({k: v[idx] for k, v in rec.inputs.items()})
        err = np.zeros(len(idx), dtype=np.float64)
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


def receipts_frame(batch: AttestedBatch, rows: Iterable[int]) -> pl.DataFrame:
    """The receipts of ``rows``, each checked on its own with :func:`verify_receipt`.

    Columns: ``row_index``, ``partition``, ``leaf``, ``input_hash``, ``output_hash``,
    ``proof_steps``, ``valid`` (bool), ``signer`` (the attester the claim recovers to).
    """
    receipts = batch.receipts(list(rows))
    out = []
    for r in receipts:
        check = verify_receipt(r)
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


_PAYMENT_SCHEMA = {
    "batch_id": pl.String,
    "block": pl.Int64,
    "role": pl.String,
    "recipient": pl.String,
    "name": pl.String,
    "amount_opg": pl.Float64,
}


def _hex(value: Any) -> str:
    return "0x" + bytes(value).hex()


def _wanted(batch_ids: Iterable[str] | None) -> set[str] | None:
    return {b.lower() for b in batch_ids} if batch_ids is not None else None


def payments_frame(
    client: Any,
    batch_ids: Iterable[str] | None = None,
    *,
    names: Mapping[str, str] | None = None,
    from_block: int = 0,
) -> pl.DataFrame:
    """Every OPG payout of the settlement contract, read from its events.

    ``BatchFinalized`` pays the model owner and the node, ``VerifierPaid`` each verifier,
    ``BatchFinalized``/``BatchRefunded`` refund the requester, ``ChallengeUpheld`` rewards
    a challenger. ``names`` maps addresses to key names for labels. Columns:
    ``batch_id``, ``block``, ``role`` ("model owner", "node", "verifier",
    "requester refund", "challenger"), ``recipient`` (address), ``name`` (its key name or
    a short address) and ``amount_opg``.
    """
    wanted = _wanted(batch_ids)
    label = {k.lower(): v for k, v in (names or {}).items()}
    rows: list[dict[str, Any]] = []

    def add(e: dict[str, Any], role: str, who: str, amount: int) -> None:
        if amount <= 0:
            return
        rows.append(
            {
                "batch_id": _hex(e["args"]["batchId"]),
                "block": int(e["blockNumber"]),
                "role": role,
                "recipient": who,
                "name": label.get(who.lower(), _short(who)),
                "amount_opg": amount / OPG,
            }
        )

    def events(name: str) -> list[dict[str, Any]]:
        found = client.events("InferenceSettlement", name, from_block)
        return [e for e in found if wanted is None or _hex(e["args"]["batchId"]) in wanted]

    for e in events("BatchFinalized"):
        a = e["args"]
        add(e, "model owner", a["modelOwner"], int(a["modelPayment"]))
        add(e, "node", a["node"], int(a["nodeFee"]))
    for e in events("VerifierPaid"):
        add(e, "verifier", e["args"]["verifier"], int(e["args"]["amount"]))
    for e in events("BatchRefunded"):
        add(e, "requester refund", e["args"]["requester"], int(e["args"]["amount"]))
    for e in events("ChallengeUpheld"):
        add(e, "challenger", e["args"]["challenger"], int(e["args"]["challengerReward"]))
    return pl.DataFrame(rows, schema=_PAYMENT_SCHEMA).sort("block", "role")


def slashes_frame(
    client: Any,
    batch_ids: Iterable[str] | None = None,
    *,
    names: Mapping[str, str] | None = None,
    from_block: int = 0,
) -> pl.DataFrame:
    """Slashing events: every upheld challenge (``ChallengeUpheld``).

    Columns: ``batch_id``, ``block``, ``node``, ``name`` (key name or short address),
    ``challenger``, ``slashed_opg``, ``challenger_reward_opg``. Empty when nobody was
    slashed, which is the normal case.
    """
    wanted = _wanted(batch_ids)
    label = {k.lower(): v for k, v in (names or {}).items()}
    rows = []
    for e in client.events("InferenceSettlement", "ChallengeUpheld", from_block):
        a = e["args"]
        if wanted is not None and _hex(a["batchId"]) not in wanted:
            continue
        rows.append(
            {
                "batch_id": _hex(a["batchId"]),
                "block": int(e["blockNumber"]),
                "node": a["node"],
                "name": label.get(a["node"].lower(), _short(a["node"])),
                "challenger": a["challenger"],
                "slashed_opg": int(a["slashed"]) / OPG,
                "challenger_reward_opg": int(a["challengerReward"]) / OPG,
            }
        )
    return pl.DataFrame(
        rows,
        schema={
            "batch_id": pl.String,
            "block": pl.Int64,
            "node": pl.String,
            "name": pl.String,
            "challenger": pl.String,
            "slashed_opg": pl.Float64,
            "challenger_reward_opg": pl.Float64,
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


# -- charts ---------------------------------------------------------------------------------
def verification_status_chart(
    batches: pl.DataFrame, *, color_by: str | None = None, title: str | None = None
) -> Chart:
    """Where each batch stands: one bar per batch, or one cell per batch and verifier.

    Columns: ``batch_id`` and at least one of ``verdict`` ("pass", "fail", "not run") and
    ``status`` (settlement status: "finalized", "pending", "disputed", "slashed",
    "refunded" …). Optional: ``verifier`` (one cell per batch × verifier, as from
    :func:`verdicts_frame`), ``rows`` (bar height; the audit's batches frame has it),
    ``sample_size``, ``findings``. ``color_by`` picks ``"verdict"`` or ``"status"``
    (default: verdict when present).
    """
    title = title or "Verification status"
    _require(batches, ["batch_id"], "verification_status_chart")
    color_by = color_by or ("verdict" if "verdict" in batches.columns else "status")
    _require(batches, [color_by], "verification_status_chart")
    if batches.is_empty():
        return _message_chart("no batches", title)
    colors = VERDICT_COLORS if color_by == "verdict" else STATUS_COLORS
    data = batches.with_columns(
        pl.col("batch_id").map_elements(_short, return_dtype=pl.String).alias("batch")
    )
    tooltip = [c for c in data.columns if c != "batch"]
    color = alt.Color(
        f"{color_by}:N", scale=_scale(colors, data[color_by].to_list()), title=color_by
    )
    if "verifier" in data.columns:
        base = alt.Chart(data, title=title).encode(
            x=alt.X("verifier:N", title="verifier", axis=alt.Axis(labelAngle=0)),
            y=alt.Y("batch:N", title="batch"),
        )
        label = (
            pl.col(color_by).str.to_uppercase()
            + (
                pl.lit(" · ") + pl.col("sample_size").cast(pl.String) + pl.lit(" re-run")
                if "sample_size" in data.columns
                else pl.lit("")
            )
        ).alias("label")
        cells = base.mark_rect(cornerRadius=4, stroke="white", strokeWidth=2).encode(
            color=color, tooltip=tooltip
        )
        text = (
            alt.Chart(data.with_columns(label))
            .mark_text(color="white", fontWeight="bold", fontSize=13)
            .encode(x="verifier:N", y="batch:N", text="label:N")
        )
        n_batches = data["batch"].n_unique()
        return (cells + text).properties(width=WIDTH, height=max(60, 44 * n_batches))
    y = (
        alt.Y("rows:Q", title="rows")
        if "rows" in data.columns
        else alt.Y("one:Q", title="batches", axis=None)
    )
    if "rows" not in data.columns:
        data = data.with_columns(pl.lit(1).alias("one"))
    return (
        alt.Chart(data, title=title)
        .mark_bar()
        .encode(
            x=alt.X("batch:N", title="batch", sort=None, axis=alt.Axis(labelAngle=-30)),
            y=y,
            color=color,
            tooltip=tooltip,
        )
        .properties(width=_width(data.height), height=HEIGHT)
    )


def _decade(err: float) -> int:
    return math.floor(math.log10(err)) if err > 0 and math.isfinite(err) else 0


def reexecution_error_chart(errors: pl.DataFrame, *, title: str | None = None) -> Chart:
    """How far re-executed outputs are from the stored ones: rows per decade of error.

    Columns: ``max_abs_error`` (float, per row; as from :func:`reexecution_errors`).
    Errors are binned by decade (a log scale that also has a place for exact zeros, which
    a log axis cannot show): "0 (bit-exact)", "1e-9", "1e-8" … and "inf" for NaN/inf.
    """
    _require(errors, ["max_abs_error"], "reexecution_error_chart")
    n = errors.height
    if n == 0:
        return _message_chart("no rows were re-executed", title or "Re-execution error")
    values = errors["max_abs_error"].fill_null(float("inf")).fill_nan(float("inf")).to_list()
    worst = max(values)
    exact = sum(1 for v in values if v == 0.0)
    title = title or (
        f"Re-execution error: {exact:,} of {n:,} rows bit-exact, max |Δ| = {worst:.3g}"
    )
    bins: dict[tuple[int, str], int] = {}
    for v in values:
        if v == 0.0:
            key = (-1000, "0 (bit-exact)")
        elif not math.isfinite(v):
            key = (1000, "inf / NaN")
        else:
            d = _decade(v)
            key = (d, f"1e{d}")
        bins[key] = bins.get(key, 0) + 1
    ordered = sorted(bins.items())
    data = pl.DataFrame(
        {
            "decade": [label for (_, label), _ in ordered],
            "rows": [count for _, count in ordered],
            "kind": ["exact" if o == -1000 else "differs" for (o, _), _ in ordered],
        }
    )
    return (
        alt.Chart(data, title=title)
        .mark_bar()
        .encode(
            x=alt.X(
                "decade:N",
                sort=data["decade"].to_list(),
                title="|re-executed − stored| (decade)",
                axis=alt.Axis(labelAngle=0),
            ),
            y=alt.Y("rows:Q", title="rows"),
            color=alt.Color(
                "kind:N",
                scale=alt.Scale(domain=["exact", "differs"], range=["#2e9d4e", "#f0a020"]),
                title="",
            ),
            tooltip=["decade:N", "rows:Q"],
        )
        .properties(width=_width(data.height, 90), height=HEIGHT)
    )


def throughput_chart(partitions: pl.DataFrame, *, title: str | None = None) -> Chart:
    """Rows per second of each partition, coloured by the worker that ran it, with the
    mean as a dashed line.

    Columns (as from :func:`run_stats_frame`): ``index``, ``rows_per_s``, ``worker``;
    optional ``rows``, ``seconds`` and the stage columns for the tooltip.
    """
    _require(partitions, ["index", "rows_per_s", "worker"], "throughput_chart")
    title = title or "Inference + attestation throughput per partition"
    if partitions.is_empty():
        return _message_chart("no partitions", title)
    tooltip = [
        c
        for c in ("index", "worker", "rows", "rows_per_s", "seconds", "infer_s", "attest_s")
        if c in partitions.columns
    ]
    bars = (
        alt.Chart(partitions, title=title)
        .mark_bar()
        .encode(
            x=alt.X("index:O", title="partition", axis=alt.Axis(labelAngle=0)),
            y=alt.Y("rows_per_s:Q", title="rows / s"),
            color=alt.Color("worker:N", title="worker"),
            tooltip=tooltip,
        )
    )
    mean = (
        alt.Chart(partitions)
        .mark_rule(strokeDash=[6, 4], color="#333333")
        .encode(y="mean(rows_per_s):Q")
    )
    return (bars + mean).properties(width=_width(partitions.height, 40), height=HEIGHT)


def gas_chart(batches: pl.DataFrame, *, title: str | None = None) -> Chart:
    """Settlement gas per inference for each batch (commit + attestations + finalise,
    divided by the batch's rows); log scale when batches differ by more than 100×.

    Columns: ``batch_id``, ``rows``, ``gas`` (the audit's batches frame has them);
    optional ``status`` colours the bars.
    """
    _require(batches, ["batch_id", "rows", "gas"], "gas_chart")
    title = title or "Settlement gas per inference"
    data = batches.filter((pl.col("rows") > 0) & (pl.col("gas") > 0))
    if data.is_empty():
        return _message_chart("no settled batches with gas", title)
    data = data.with_columns(
        (pl.col("gas") / pl.col("rows")).alias("gas_per_inference"),
        pl.col("batch_id").map_elements(_short, return_dtype=pl.String).alias("batch"),
    )
    lo = float(data["gas_per_inference"].min())  # type: ignore[arg-type]
    hi = float(data["gas_per_inference"].max())  # type: ignore[arg-type]
    log_scale = hi / lo > 100
    color = (
        alt.Color("status:N", scale=_scale(STATUS_COLORS, data["status"].to_list()))
        if "status" in data.columns
        else alt.value("#3b6fb6")
    )
    encoding: dict[str, Any] = {
        "x": alt.X("batch:N", title="batch", sort=None, axis=alt.Axis(labelAngle=-30)),
        "y": alt.Y(
            "gas_per_inference:Q",
            title="gas per inference" + (" (log)" if log_scale else ""),
            scale=alt.Scale(type="log") if log_scale else alt.Undefined,
        ),
        "color": color,
        "tooltip": [
            "batch_id:N",
            "rows:Q",
            "gas:Q",
            alt.Tooltip("gas_per_inference:Q", format=".1f"),
        ],
    }
    if log_scale:
        # A log axis has no zero: bars start a little below the smallest value instead.
        encoding["y2"] = alt.datum(10 ** math.floor(math.log10(lo)))
    return (
        alt.Chart(data, title=title)
        .mark_bar()
        .encode(**encoding)
        .properties(width=_width(data.height), height=HEIGHT)
    )


def payments_chart(payments: pl.DataFrame, *, title: str | None = None) -> Chart:
    """OPG paid to each recipient, summed over batches, coloured by role.

    Columns (as from :func:`payments_frame`): ``recipient``, ``role``, ``amount_opg``;
    optional ``name`` labels the bars (else a short address).
    """
    _require(payments, ["recipient", "role", "amount_opg"], "payments_chart")
    title = title or "OPG paid out"
    if payments.is_empty():
        return _message_chart("no payments yet (nothing finalised)", title)
    label = (
        pl.col("name")
        if "name" in payments.columns
        else pl.col("recipient").map_elements(_short, return_dtype=pl.String)
    )
    data = (
        payments.with_columns(label.alias("who"))
        .group_by("who", "role")
        .agg(pl.col("amount_opg").sum(), pl.col("recipient").first())
        .sort("amount_opg", descending=True)
        .with_columns(pl.col("amount_opg").round(6).cast(pl.String).alias("amount"))
    )
    top = float(data["amount_opg"].max())  # type: ignore[arg-type]
    base = alt.Chart(data, title=title).encode(
        y=alt.Y("who:N", title=None, sort=data["who"].to_list()),
        # Room right of the longest bar for its label.
        x=alt.X("amount_opg:Q", title="OPG", scale=alt.Scale(domain=[0, top * 1.15])),
    )
    bars = base.mark_bar().encode(
        color=alt.Color("role:N", scale=_scale(ROLE_COLORS, data["role"].to_list()), title="role"),
        tooltip=["who:N", "recipient:N", "role:N", "amount_opg:Q"],
    )
    text = base.mark_text(align="left", dx=4, color="#333333").encode(text="amount:N")
    return (bars + text).properties(width=WIDTH - 80, height=max(80, 30 * data.height))


def slashing_chart(slashes: pl.DataFrame, *, title: str | None = None) -> Chart:
    """OPG slashed per event, coloured by node; "no slashing events" when there are none.

    Columns: ``node`` and ``slashed_opg`` (as from :func:`slashes_frame`, or the audit's
    batches frame, whose rows with ``slashed_opg == 0`` are left out); optional
    ``batch_id``, ``block``, ``name``.
    """
    title = title or "Slashing"
    if slashes.is_empty() and "slashed_opg" not in slashes.columns:
        return _message_chart("no slashing events", title)
    _require(slashes, ["node", "slashed_opg"], "slashing_chart")
    data = slashes.filter(pl.col("slashed_opg") > 0)
    if data.is_empty():
        return _message_chart("no slashing events", title)
    if "batch_id" in data.columns:
        event = pl.col("batch_id").map_elements(_short, return_dtype=pl.String)
    elif "block" in data.columns:
        event = pl.lit("block ") + pl.col("block").cast(pl.String)
    else:
        event = pl.lit("event ") + pl.int_range(pl.len()).cast(pl.String)
    who = (
        pl.col("name")
        if "name" in data.columns
        else pl.col("node").map_elements(_short, return_dtype=pl.String)
    )
    data = data.with_columns(event.alias("event"), who.alias("who"))
    return (
        alt.Chart(data, title=title)
        .mark_bar(color="#d1352b")
        .encode(
            x=alt.X("event:N", title="slashing event", sort=None, axis=alt.Axis(labelAngle=-30)),
            y=alt.Y("slashed_opg:Q", title="OPG slashed"),
            color=alt.Color("who:N", title="node"),
            tooltip=[c for c in data.columns if c not in ("event", "who")],
        )
        .properties(width=_width(data.height), height=HEIGHT)
    )


def model_prices_chart(models: pl.DataFrame, *, title: str | None = None) -> Chart:
    """Price per inference of each model version.

    Columns (as from :func:`hub_frame`): ``ref`` and ``price_opg``; optional ``tags``.
    """
    _require(models, ["ref", "price_opg"], "model_prices_chart")
    title = title or "Price per inference"
    if models.is_empty():
        return _message_chart("no models", title)
    data = models.sort("price_opg", descending=True).with_columns(
        pl.col("price_opg").cast(pl.String).alias("price")
    )
    top = float(data["price_opg"].max()) or 1.0  # type: ignore[arg-type]
    base = alt.Chart(data, title=title).encode(
        y=alt.Y("ref:N", title=None, sort=data["ref"].to_list()),
        x=alt.X("price_opg:Q", title="OPG per inference", scale=alt.Scale(domain=[0, top * 1.2])),
    )
    bars = base.mark_bar(color="#3b6fb6").encode(
        tooltip=[c for c in ("ref", "price_opg", "size_bytes", "tags") if c in data.columns]
    )
    text = base.mark_text(align="left", dx=4, color="#333333").encode(text="price:N")
    return (bars + text).properties(width=WIDTH - 80, height=max(80, 30 * data.height))


# -- output ---------------------------------------------------------------------------------
_HASH = re.compile(r"^0x[0-9a-fA-F]{44,}$")  # longer than an address: a 32-byte id or hash


def _cell(value: Any, shorten: bool) -> str:
    if value is None:
        return '<span style="color:#999">–</span>'
    if isinstance(value, bool):
        return "✓" if value else "✗"
    if isinstance(value, float):
        return "inf" if math.isinf(value) else "NaN" if math.isnan(value) else f"{value:.6g}"
    text = str(value)
    if text.startswith("0x") and len(text) >= 42:
        shown = _short(text, 8) if shorten and _HASH.match(text) else text
        nowrap = 'style="white-space:nowrap"'  # an id split over two lines reads as two
        return f'<code {nowrap} title="{html.escape(text)}">{html.escape(shown)}</code>'
    return html.escape(text)


def table(frame: pl.DataFrame, *, shorten: bool = True, max_rows: int = 50) -> Any:
    """A polars frame as a plain HTML table for reports (an ``IPython.display.HTML``).

    Unlike polars' own notebook view it shows every column and up to ``max_rows`` rows
    (then says how many more), no dtype row, and, with ``shorten``, 32-byte hex ids as
    ``0x12345678…abcd`` (the full value is the cell's tooltip) so wide tables still fit
    a page. Addresses are shown whole.
    """
    from IPython.display import HTML

    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    rows = [
        "<tr>" + "".join(f"<td>{_cell(v, shorten)}</td>" for v in row) + "</tr>"
        for row in frame.head(max_rows).iter_rows()
    ]
    more = frame.height - max_rows
    if more > 0:
        rows.append(
            f'<tr><td colspan="{max(1, frame.width)}"><em>… {more:,} more rows</em></td></tr>'
        )
    body = "".join(rows) or f'<tr><td colspan="{max(1, frame.width)}"><em>no rows</em></td></tr>'
    return HTML(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")


def chart_png(chart: Chart, *, scale: float = 2.0) -> bytes:
    """The chart as PNG bytes, rendered by vl-convert (no browser, no network)."""
    return _vl_png(chart.to_dict(), scale)


def _vl_png(spec: Mapping[str, Any], scale: float) -> bytes:
    import vl_convert as vlc

    return vlc.vegalite_to_png(dict(spec), scale=scale)


def _png_width(png: bytes) -> int:
    """Pixel width from the PNG header (IHDR), to show a scale-2 image at its CSS size."""
    return struct.unpack(">I", png[16:20])[0] if png[:8] == b"\x89PNG\r\n\x1a\n" else 0


def save_chart(
    chart: Chart, path_without_suffix: str | Path, *, scale: float = 2.0, inline: bool = True
) -> dict[str, Path]:
    """Write ``<path>.png`` (vl-convert, ``scale`` × pixels) and ``<path>.html``.

    The HTML page carries the Vega JavaScript inline (``inline=True``) so it opens
    offline; ``inline=False`` loads it from a CDN instead and is much smaller.
    Returns ``{"png": Path, "html": Path}``.
    """
    base = Path(path_without_suffix)
    base.parent.mkdir(parents=True, exist_ok=True)
    png, html = base.with_name(base.name + ".png"), base.with_name(base.name + ".html")
    png.write_bytes(chart_png(chart, scale=scale))
    chart.save(str(html), inline=inline)
    log.info("saved chart %s (.png, .html)", base)
    return {"png": png, "html": html}


def show_png(chart: Chart, *, scale: float = 2.0) -> Any:
    """An ``IPython.display.Image`` of the chart, shown at its natural size.

    Display it (or leave it as a cell's last value) and the PNG is stored in the executed
    notebook, so reports made from the notebook show it without JavaScript.
    """
    from IPython.display import Image

    spec = chart.to_dict()
    png = _vl_png(spec, scale)
    width = _png_width(png)
    return Image(
        data=png,
        format="png",
        width=int(width / scale) if width else None,
        alt=_title_of(spec) or "chart",
    )


def _title_of(spec: Mapping[str, Any]) -> str:
    """The chart's title text (from the top level or its first titled layer)."""
    for part in [spec, *spec.get("layer", []), *spec.get("hconcat", []), *spec.get("vconcat", [])]:
        title = part.get("title")
        if isinstance(title, Mapping):
            title = title.get("text")
        if isinstance(title, list):
            title = " ".join(str(t) for t in title)
        if title:
            return str(title)
    return ""
