"""Predictions out of a batch: ``ogkit batch outputs`` and ``ogkit infer --predictions``
write row_index and the outputs as Parquet or CSV (by suffix), atomically."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from ogkit.cli import main
from ogkit.samples import TABULAR_FEATURES, make_tabular, sample_data_path


def test_batch_outputs_parquet_and_csv(batch, home: Path, tmp_path: Path, capsys) -> None:
    expected = batch.outputs_frame()

    assert main(["batch", "outputs", batch.artifact_id, "-o", str(tmp_path / "p.parquet")]) == 0
    assert "wrote 2,000 rows (label, probabilities)" in capsys.readouterr().out
    frame = pl.read_parquet(tmp_path / "p.parquet")
    assert frame.columns == ["row_index", "label", "probabilities"]
    assert frame["row_index"].to_list() == list(range(2000))
    assert frame["label"].to_list() == expected["label"].to_list()
    assert np.array_equal(frame["probabilities"].to_numpy(), expected["probabilities"].to_numpy())

    csv = tmp_path / "sub" / "p.csv"
    assert main(["batch", "outputs", batch.artifact_id, "-o", str(csv), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc == {
        "schema": "ogkit.batch.outputs.v1",
        "artifact_id": batch.artifact_id,
        "batch_id": batch.batch_id,
        "format": "csv",
        "path": str(csv),
        "rows": 2000,
        "outputs": ["label", "probabilities"],
    }
    flat = pl.read_csv(csv)
    assert flat.columns == ["row_index", "label", *(f"probabilities_{i}" for i in range(3))]
    probs = expected["probabilities"].to_numpy()
    assert np.array_equal(flat["probabilities_2"].to_numpy().astype(np.float32), probs[:, 2])
    assert [p.name for p in csv.parent.iterdir()] == ["p.csv"]  # no temporary file left


def test_batch_outputs_refuses_other_suffixes(batch, tmp_path: Path, capsys) -> None:
    assert main(["batch", "outputs", batch.artifact_id, "-o", str(tmp_path / "p.json")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and ".parquet or .csv" in err
    assert not (tmp_path / "p.json").exists()


def test_batch_outputs_of_unknown_artifact_is_one_line(home: Path, tmp_path: Path, capsys) -> None:
    assert main(["batch", "outputs", "0x" + "ab" * 32, "-o", str(tmp_path / "p.csv")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert not (tmp_path / "p.csv").exists()


def test_infer_predictions_with_an_id_column(published, home: Path, tmp_path: Path, capsys):
    from ogkit.keys import KeyStore

    for name in ("enclave", "requester"):
        KeyStore(home).ensure_dev_key(name)
    data = make_tabular(300, seed=3).with_columns(pl.Series("customer_id", range(300)))
    data.write_parquet(tmp_path / "customers.parquet")
    features = "features=" + ",".join(TABULAR_FEATURES)
    out = tmp_path / "predictions.csv"
    argv = ["infer", "--model", "tab", "--data", str(tmp_path / "customers.parquet")]
    argv += ["--input-map", features, "--workers", "0", "--predictions", str(out), "--json"]

    assert main(argv) == 0

    doc = json.loads(capsys.readouterr().out)
    assert doc["schema"] == "ogkit.infer.v1" and doc["predictions"] == str(out)
    flat = pl.read_csv(out)
    assert flat.height == 300 and flat["row_index"].to_list() == list(range(300))
    assert flat.columns == [
        "row_index",
        "label",
        "probabilities_0",
        "probabilities_1",
        "probabilities_2",
    ]


def test_infer_refuses_a_bad_predictions_suffix_before_running(published, home, capsys):
    argv = ["infer", "--model", "tab", "--data", str(sample_data_path("tabular"))]
    argv += ["--workers", "0", "--predictions", "p.txt"]
    assert main(argv) == 1
    assert ".parquet or .csv" in capsys.readouterr().err


@pytest.mark.parametrize("json_flag", [False, True])
def test_keys_new_exist_ok_keeps_the_key(home: Path, capsys, json_flag: bool) -> None:
    extra = ["--json"] if json_flag else []
    assert main(["keys", "new", "enclave", "--dev", *extra]) == 0
    first = capsys.readouterr().out
    assert main(["keys", "new", "enclave", "--dev", *extra]) == 1
    assert "already exists" in capsys.readouterr().err
    assert main(["keys", "new", "enclave", "--dev", "--exist-ok", *extra]) == 0
    assert capsys.readouterr().out == first
