"""What reports show a person: a failed re-verification is never green, many findings of
one kind are one row, warm-up partitions are marked, money is OPG with its unit."""

from __future__ import annotations

import polars as pl

from ogkit import report
from ogkit.report.charts import STATUS_COLORS, VERDICT_COLORS
from ogkit.verify import Finding


def _color_scale(chart) -> dict[str, str]:
    spec = chart.to_dict()
    scale = spec["encoding"]["color"]["scale"]
    return dict(zip(scale["domain"], scale["range"], strict=True))


def test_a_finalized_batch_that_failed_verification_is_red():
    batches = pl.DataFrame(
        {
            "batch_id": ["0x" + "a" * 64, "0x" + "b" * 64],
            "status": ["finalized", "finalized"],
            "verdict": ["pass", "fail"],
            "rows": [100, 100],
        }
    )
    colors = _color_scale(report.verification_status_chart(batches, color_by="status"))
    assert colors == {
        "finalized": STATUS_COLORS["finalized"],
        "finalized, verdict fail": VERDICT_COLORS["fail"],
    }
    report.chart_png(report.verification_status_chart(batches, color_by="status"))
    gas = report.gas_chart(batches.with_columns(gas=pl.lit(50_000)))
    assert _color_scale(gas)["finalized, verdict fail"] == VERDICT_COLORS["fail"]


def test_findings_of_one_kind_in_one_partition_are_one_row():
    findings = [Finding("output-hash-mismatch", "stored output differs", r, 2) for r in range(60)]
    findings.append(Finding("leaf-mismatch", "leaf differs", 900, 1))
    grouped = report.group_findings(findings, first=3)
    assert grouped.to_dicts() == [
        {
            "reason": "output-hash-mismatch",
            "partition": 2,
            "count": 60,
            "rows": "0, 1, 2 (+57 more)",
            "detail": "stored output differs",
        },
        {
            "reason": "leaf-mismatch",
            "partition": 1,
            "count": 1,
            "rows": "900",
            "detail": "leaf differs",
        },
    ]
    audit = pl.DataFrame(
        {
            "batch_id": ["0x1"] * 3,
            "reason": ["verification-failed"] * 2 + ["inputs-unbound"],
            "detail": ["output-hash-mismatch: row 5", "output-hash-mismatch: row 6", "no order"],
            "severity": ["fail", "fail", "notice"],
            "row_index": [5, 6, None],
            "block": [9, 9, 9],
        }
    )
    rows = report.group_findings(audit).select("reason", "count", "rows").rows()
    assert rows == [
        ("verification-failed: output-hash-mismatch", 2, "5, 6"),
        ("inputs-unbound", 1, ""),
    ]
    assert report.group_findings(audit.head(0)).height == 0


def test_warm_up_partitions_are_grey_and_not_in_the_mean():
    stats = pl.DataFrame(
        {
            "index": [0, 1, 2, 3, 4, 5],
            "worker": ["w1", "w2", "w1", "w2", "w1", "w2"],
            "rows_per_s": [50.0, 60.0, 10_000.0, 11_000.0, 10_500.0, 9_800.0],
        }
    )
    chart = report.throughput_chart(stats)
    spec = chart.to_dict()
    assert "2 warm-up partitions in grey" in str(spec["layer"][0]["title"])
    (mean_data,) = [v for k, v in spec["datasets"].items() if len(v) == 4]
    assert all(not row["warmup"] for row in mean_data)
    steady = report.throughput_chart(stats.filter(pl.col("index") > 1))
    assert "warm-up" not in str(steady.to_dict()["layer"][0]["title"])
    report.chart_png(chart)


def test_money_is_opg_with_its_unit():
    assert report.opg_text(0.001) == "0.001 OPG"
    assert report.opg_text(1e-15) == "0.000000000000001 OPG"
    assert report.opg_text(0.1 + 0.2) == "0.3 OPG"
    assert report.opg_text(10**15, base_units=True) == "0.001 OPG"
    assert report.opg_text(5 * 10**21, base_units=True) == "5,000 OPG"
    html = report.table(pl.DataFrame({"price_opg": [1e-15], "rows": [3]})).data
    assert "0.000000000000001 OPG" in html and "1e-15" not in html
    prices = report.model_prices_chart(pl.DataFrame({"ref": ["m@1"], "price_opg": [1e-15]}))
    assert "0.000000000000001 OPG" in str(prices.to_dict())


def test_cli_text_shows_opg_with_its_unit():
    from ogkit.cli.audit import _opg
    from ogkit.cli.common import opg_text

    assert opg_text(10**15) == "0.001 OPG" and opg_text(1000) == "0.000000000000001 OPG"
    assert opg_text(10_000 * 10**18) == "10,000 OPG"
    assert _opg(1e-15) == "0.000000000000001 OPG" and _opg(4.0) == "4 OPG"


def test_run_stats_frame_counts_every_stage_of_a_partition(batch):
    """A partition's seconds are all six stages its worker timed (reading, the input
    hashes, onnxruntime, attesting, encoding the records, writing them), not a subset."""
    frame = report.run_stats_frame(batch)
    stages = ["read_s", "commit_s", "infer_s", "attest_s", "encode_s", "write_s"]
    assert frame.height == len(batch.partitions) and set(stages) <= set(frame.columns)
    for row, stats in zip(
        frame.iter_rows(named=True), batch.manifest.run_stats["partitions"], strict=True
    ):
        assert all(row[s] == stats[s.removesuffix("_s")] > 0 for s in stages), (row, stats)
        assert abs(row["seconds"] - sum(row[s] for s in stages)) < 1e-12
        assert row["rows_per_s"] == row["rows"] / row["seconds"]
