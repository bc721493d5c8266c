"""The audit notebook as a scheduled pipeline, on a devnet that holds a real settlement."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ogkit.cli import main
from ogkit.demo import run_demo

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.anvil


@pytest.fixture
def settled_devnet(home, devnet_port):
    result = run_demo(home=home, rows=3000, workers=1, chain="devnet", devnet_port=devnet_port)
    assert result.passed
    yield result
    main(["chain", "down"])


def test_nightly_audit_pipeline_reports_the_settlement(
    settled_devnet, home, tmp_path, capsys, monkeypatch
):
    monkeypatch.chdir(REPO)
    out = tmp_path / "runs"
    assert (
        main(["pipeline", "run", "pipelines/nightly_audit.yaml", "--output", str(out), "--json"])
        == 0
    ), capsys.readouterr().err
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema"] == "ogkit.pipeline.run.v1" and doc["ok"] and doc["job"] == "nightly_audit"
    assert doc["result"]["passed"] is True and doc["result"]["batches"] == 1
    assert doc["parameters"]["home"] == str(home)
    html = Path(doc["html"]).read_text()
    assert "data:image/png;base64" in html and "Settlement audit" in html
    assert "from ogkit.audit import audit" not in html, "the report hides the code"
    notebook = json.loads(Path(doc["notebook"]).read_text())
    assert any(
        "PASS" in "".join(o.get("text", ""))
        for c in notebook["cells"]
        for o in c.get("outputs", [])
    )
