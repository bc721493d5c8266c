"""Charts: each takes a frame (its columns are listed in each docstring) and returns an
altair chart, touching nothing else. An empty frame gives a chart that says so instead
of failing."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import altair as alt
import polars as pl

from ogkit.errors import ConfigError
from ogkit.report.common import opg_text, short_id

__all__ = [
    "HEIGHT",
    "ROLE_COLORS",
    "STATUS_COLORS",
    "VERDICT_COLORS",
    "WIDTH",
    "Chart",
    "gas_chart",
    "model_prices_chart",
    "payments_chart",
    "reexecution_error_chart",
    "slashing_chart",
    "throughput_chart",
    "verification_status_chart",
]

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


def _with_outcome(data: pl.DataFrame) -> tuple[pl.DataFrame, dict[str, str]]:
    """An ``outcome`` column: the status, or ``<status>, verdict fail`` (red) where the
    verdict failed, so a finalised batch that failed re-verification never looks green."""
    failed = pl.col("verdict") == "fail"
    data = data.with_columns(
        pl.when(failed)
        .then(pl.col("status") + pl.lit(", verdict fail"))
        .otherwise(pl.col("status"))
        .alias("outcome")
    )
    fail = {
        f"{s}, verdict fail": VERDICT_COLORS["fail"]
        for s in data.filter(failed)["status"].unique().to_list()
    }
    return data, {**STATUS_COLORS, **fail}


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
    (default: verdict when present). Coloured by status, a batch whose verdict is
    "fail" is never the status's colour: it is red and labelled ``<status>, verdict
    fail`` (a finalised batch that failed re-verification must not look green).
    """
    title = title or "Verification status"
    _require(batches, ["batch_id"], "verification_status_chart")
    color_by = color_by or ("verdict" if "verdict" in batches.columns else "status")
    _require(batches, [color_by], "verification_status_chart")
    if batches.is_empty():
        return _message_chart("no batches", title)
    colors = VERDICT_COLORS if color_by == "verdict" else STATUS_COLORS
    data = batches.with_columns(
        pl.col("batch_id").map_elements(short_id, return_dtype=pl.String).alias("batch")
    )
    if color_by == "status" and "verdict" in data.columns:
        data, colors = _with_outcome(data)
        color_by = "outcome"
    tooltip = [c for c in data.columns if c not in ("batch", "outcome")]
    color = alt.Color(
        f"{color_by}:N",
        scale=_scale(colors, data[color_by].to_list()),
        title="status · verdict" if color_by == "outcome" else color_by,
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


def _warmup(partitions: pl.DataFrame) -> pl.Series:
    """The partitions that paid for a worker's start: the first one each worker ran (its
    lowest index) when it is under half the median speed of the rest."""
    first = pl.col("index") == pl.col("index").min().over("worker")
    rest = partitions.filter(~partitions.select(first).to_series())
    if rest.is_empty():
        return pl.Series("warmup", [False] * partitions.height)
    median = float(rest["rows_per_s"].median())  # type: ignore[arg-type]
    return partitions.select((first & (pl.col("rows_per_s") < 0.5 * median)).alias("warmup"))[
        "warmup"
    ]


def throughput_chart(partitions: pl.DataFrame, *, title: str | None = None) -> Chart:
    """Rows per second of each partition, coloured by the worker that ran it, with the
    mean as a dashed line.

    A worker's first partition also pays for starting it (loading the model, the first
    session run); when it is under half the median speed it is drawn grey as
    "warm-up" and left out of the mean, so it does not read as a slow partition.

    Columns (as from :func:`run_stats_frame`): ``index``, ``rows_per_s``, ``worker``;
    optional ``rows``, ``seconds`` and the stage columns for the tooltip.
    """
    _require(partitions, ["index", "rows_per_s", "worker"], "throughput_chart")
    title = title or "Inference + attestation throughput per partition"
    if partitions.is_empty():
        return _message_chart("no partitions", title)
    data = partitions.with_columns(_warmup(partitions))
    warm = int(data["warmup"].sum())
    if warm:
        title = f"{title} ({warm} warm-up partition{'s' * (warm > 1)} in grey, not in the mean)"
    tooltip = [
        c
        for c in (
            "index",
            "worker",
            "rows",
            "rows_per_s",
            "seconds",
            "read_s",
            "commit_s",
            "infer_s",
            "attest_s",
            "encode_s",
            "write_s",
            "warmup",
        )
        if c in data.columns
    ]
    bars = (
        alt.Chart(data, title=title)
        .mark_bar()
        .encode(
            x=alt.X("index:O", title="partition", axis=alt.Axis(labelAngle=0)),
            y=alt.Y("rows_per_s:Q", title="rows / s"),
            color=alt.condition(
                "datum.warmup", alt.value("#c8c8c8"), alt.Color("worker:N", title="worker")
            ),
            tooltip=tooltip,
        )
    )
    steady = data.filter(~pl.col("warmup"))
    mean = (
        alt.Chart(steady)
        .mark_rule(strokeDash=[6, 4], color="#333333")
        .encode(y="mean(rows_per_s):Q")
    )
    return (bars + mean).properties(width=_width(data.height, 40), height=HEIGHT)


def gas_chart(batches: pl.DataFrame, *, title: str | None = None) -> Chart:
    """Settlement gas per inference for each batch (commit + attestations + finalise,
    divided by the batch's rows); log scale when batches differ by more than 100×.

    Columns: ``batch_id``, ``rows``, ``gas`` (the audit's batches frame has them);
    optional ``status`` colours the bars (red where a ``verdict`` column says "fail").
    """
    _require(batches, ["batch_id", "rows", "gas"], "gas_chart")
    title = title or "Settlement gas per inference"
    data = batches.filter((pl.col("rows") > 0) & (pl.col("gas") > 0))
    if data.is_empty():
        return _message_chart("no settled batches with gas", title)
    data = data.with_columns(
        (pl.col("gas") / pl.col("rows")).alias("gas_per_inference"),
        pl.col("batch_id").map_elements(short_id, return_dtype=pl.String).alias("batch"),
    )
    lo = float(data["gas_per_inference"].min())  # type: ignore[arg-type]
    hi = float(data["gas_per_inference"].max())  # type: ignore[arg-type]
    log_scale = hi / lo > 100
    if "status" in data.columns and "verdict" in data.columns:
        data, colors = _with_outcome(data)
        color = alt.Color(
            "outcome:N", scale=_scale(colors, data["outcome"].to_list()), title="status · verdict"
        )
    elif "status" in data.columns:
        color = alt.Color("status:N", scale=_scale(STATUS_COLORS, data["status"].to_list()))
    else:
        color = alt.value("#3b6fb6")
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
        else pl.col("recipient").map_elements(short_id, return_dtype=pl.String)
    )
    data = (
        payments.with_columns(label.alias("who"))
        .group_by("who", "role")
        .agg(pl.col("amount_opg").sum(), pl.col("recipient").first())
        .sort("amount_opg", descending=True)
        .with_columns(
            pl.col("amount_opg").map_elements(opg_text, return_dtype=pl.String).alias("amount")
        )
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
        event = pl.col("batch_id").map_elements(short_id, return_dtype=pl.String)
    elif "block" in data.columns:
        event = pl.lit("block ") + pl.col("block").cast(pl.String)
    else:
        event = pl.lit("event ") + pl.int_range(pl.len()).cast(pl.String)
    who = (
        pl.col("name")
        if "name" in data.columns
        else pl.col("node").map_elements(short_id, return_dtype=pl.String)
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
        pl.col("price_opg").map_elements(opg_text, return_dtype=pl.String).alias("price")
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
