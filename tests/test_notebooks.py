"""Notebooks, reports and scheduled pipelines: every shipped notebook runs with papermill
and gives a code-free HTML report; failing notebooks leave their partial notebook and
report behind; job specs report every problem at once; retention and cron lines."""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path

import nbformat
import polars as pl
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from ogkit import report
from ogkit.cli import main
from ogkit.cli.jobs import parse_parameters
from ogkit.errors import ConfigError
from ogkit.jobs.cron import cron_problems
from ogkit.jobs.runner import NotebookFailed, notebook_parameters, run_notebook
from ogkit.jobs.runs import prune_outputs
from ogkit.jobs.schedule import airflow_snippet, schedule_line
from ogkit.jobs.spec import JobSpec
from ogkit.samples import make_tabular

REPO = Path(__file__).resolve().parent.parent
# audit_settlement.ipynb has its own test (tests/test_audit.py).
NOTEBOOKS = sorted(
    p for p in (REPO / "notebooks").glob("*.ipynb") if p.name != "audit_settlement.ipynb"
)
# Small parameters per notebook, so the suite stays quick; home is added for every notebook.
SMALL = {
    "verified_batch_inference": {
        "rows": 2000,
        "partition_rows": 500,
        "workers": 0,
        "input_map": {"features": [f"f{i}" for i in range(8)]},
    },
    "model_hub": {},
}
# What each notebook's report must show after a run with SMALL.
EXPECTED_HTML = {"verified_batch_inference": ["The first predictions", "<th>probabilities</th>"]}
# What each notebook's summary must say after a run with SMALL.
EXPECTED_SUMMARY = {
    "verified_batch_inference": {
        "rows": 2000,
        "verdicts_passed": 3,
        "settlement_status": "finalized",
        "receipts_valid": True,
    },
    "verifiable_chat": {
        "calls": 3,
        "verdicts_passed": 3,
        "settlement_status": "finalized",
        "receipts_valid": True,
    },
}
PNG = "data:image/png;base64,"


def _assert_code_free_report(html: str, source: Path) -> None:
    assert "jp-InputArea-editor" not in html.replace(".jp-InputArea-editor", "")
    assert "jp-InputPrompt" not in html.replace(".jp-InputPrompt", "")
    # No line of any code cell, nor papermill's injected parameters, shows up.
    nb = nbformat.read(source, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            for line in cell.source.splitlines():
                if line.startswith(("import ", "from ")) or "(" in line:
                    assert line not in html, line
    assert "# Parameters" not in html


def _tiny_notebook(path: Path, *body: str, params: str = "x: int = 1  # a number") -> Path:
    params = new_code_cell(params)
    params.metadata["tags"] = ["parameters"]
    cells = [new_markdown_cell("# fixture"), params, *(new_code_cell(b) for b in body)]
    nbformat.write(new_notebook(cells=cells), path)
    return path


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_shipped_notebook_runs_and_reports(notebook: Path, home: Path, tmp_path: Path) -> None:
    declared = notebook_parameters(notebook)
    assert declared, f"{notebook.name} has no cell tagged 'parameters'"
    untyped = [n for n, p in declared.items() if p["type"] == "None"]
    assert not untyped, f"parameters without a type hint: {untyped}"
    params = {k: v for k, v in SMALL.get(notebook.stem, {}).items() if k in declared}
    if "home" in declared:
        params["home"] = str(home)
    if "summary_path" in declared:
        params["summary_path"] = str(tmp_path / "summary.json")
    if "input_map" in params:
        # A customer id beside the features and the label: the input map keeps it out.
        data = make_tabular(params["rows"], seed=7)
        data.with_columns(pl.Series("customer_id", range(data.height))).write_parquet(
            tmp_path / "customers.parquet"
        )
        params["data_path"] = str(tmp_path / "customers.parquet")

    run = run_notebook(notebook, params, tmp_path / "out", run_id="t1", cwd=REPO)

    assert run.ok and run.notebook_path == tmp_path / "out" / f"{notebook.stem}-t1.ipynb"
    assert run.notebook_path.is_file() and run.html_path and run.html_path.is_file()
    html = run.html_path.read_text()
    assert PNG in html, "no embedded chart"
    _assert_code_free_report(html, notebook)
    for needle in EXPECTED_HTML.get(notebook.stem, []):
        assert needle in html, needle
    if "summary_path" in declared:
        summary = json.loads((tmp_path / "summary.json").read_text())
        assert summary
        expected = EXPECTED_SUMMARY.get(notebook.stem, {})
        assert {k: summary.get(k) for k in expected} == expected


def test_failing_cell_leaves_notebook_and_report(tmp_path: Path) -> None:
    nb = _tiny_notebook(
        tmp_path / "boom.ipynb",
        "print('before', x)",
        "raise ValueError('boom')",
        "print('after')",
    )
    with pytest.raises(NotebookFailed) as info:
        run_notebook(nb, {"x": 2}, tmp_path / "out", run_id="r1")
    err = info.value
    # Source cells: 0 markdown, 1 parameters, 2 print, 3 raise (papermill's cells not counted).
    assert err.cell_index == 3 and err.ename == "ValueError" and err.evalue == "boom"
    assert "cell 3" in str(err) and str(err.notebook_path) in str(err)
    assert err.notebook_path == tmp_path / "out" / "boom-r1.ipynb"
    executed = nbformat.read(err.notebook_path, as_version=4)
    text = json.dumps(executed)
    assert "ValueError" in text and "boom" in text and "before 2" in text
    assert "after\\n" not in text  # execution stopped at the failing cell
    assert err.html_path and "boom" in err.html_path.read_text()
    assert err.run is not None and not err.run.ok and err.run.error["cell_index"] == 3


def test_timed_out_cell_is_named(tmp_path: Path) -> None:
    nb = _tiny_notebook(tmp_path / "slow.ipynb", "import time\ntime.sleep(60)")
    with pytest.raises(NotebookFailed) as info:
        run_notebook(nb, {}, tmp_path / "out", run_id="r1", cell_timeout=2, report=False)
    assert info.value.cell_index == 2 and info.value.notebook_path.is_file()
    assert info.value.html_path is None


def test_job_spec_reports_every_problem_at_once(tmp_path: Path) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text(
        f"""
name: Bad Name
notebook: {REPO / "notebooks" / "verified_batch_inference.ipynb"}
parameters:
  rows: many
  nope: 1
  job: "x-{{dat}}"
output: "runs/{{nme}}"
schedule: "61 * * * mon-fri/2"
retention: 30 days
colour: blue
"""
    )
    with pytest.raises(ConfigError) as info:
        JobSpec.load(spec)
    message = str(info.value)
    assert message.startswith("8 problems in job spec")
    for needle in (
        "unknown key(s) colour",
        "name 'Bad Name'",
        "parameter rows: the notebook wants int, got str",
        "parameter nope:",
        "unknown placeholder {dat}",
        "output 'runs/{nme}'",
        "minute '61'",
        "retention '30 days'",
    ):
        assert needle in message, needle


def test_missing_notebook_and_bad_cron_fields(tmp_path: Path) -> None:
    spec = {"name": "x", "notebook": "nowhere.ipynb", "schedule": "* * *"}
    with pytest.raises(ConfigError, match="2 problems") as info:
        JobSpec.from_dict(spec, root=tmp_path)
    assert "no such file" in str(info.value) and "3 fields" in str(info.value)
    assert cron_problems("0 3 * * *") == [] and cron_problems("@daily") == []
    assert cron_problems("*/15 9-17 * jan-jun mon-fri") == []
    assert len(cron_problems("0 25 0 13 8")) == 4


def test_cli_pipeline_run_json(home: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    # A small notebook: this tests the command and the run summary, not the notebook
    # (the shipped notebooks have test_shipped_notebook_runs_and_reports).
    params = "\n".join(
        [
            "rows: int = 10",
            'chain: str = "devnet"',
            'job: str = ""',
            'home: str = ""',
            'summary_path: str = ""',
        ]
    )
    body = (
        "from ogkit.jobs.steps import write_summary\n"
        "write_summary({'rows': rows, 'chain': chain, 'job': job}, summary_path)"
    )
    _tiny_notebook(tmp_path / "small.ipynb", body, params=params)
    (tmp_path / "small.yaml").write_text(
        "name: small\nnotebook: small.ipynb\noutput: runs/{name}/\nretention: 30d\n"
        "parameters:\n  rows: 100000\n  chain: devnet\n"
        '  job: "daily-{date}"\n  home: "{ogkit_home}"\n'
    )
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    argv = ["pipeline", "run", "small.yaml", "-p", "rows=2000", "-p", "chain=embedded"]
    argv += ["--output", str(out), "--json"]

    assert main(argv) == 0

    doc = json.loads(capsys.readouterr().out)
    assert doc["schema"] == "ogkit.pipeline.run.v1" and doc["job"] == "small" and doc["ok"]
    for key in ("run_id", "notebook", "html", "summary", "seconds", "started_at", "parameters"):
        assert doc[key], key
    assert doc["error"] is None and doc["retention"] == {"keep": "30d", "deleted": []}
    assert Path(doc["notebook"]).is_file() and Path(doc["html"]).is_file()
    assert Path(doc["notebook"]).parent == out
    assert json.loads(Path(doc["summary"]).read_text()) == doc
    params = doc["parameters"]
    assert params["rows"] == 2000 and params["chain"] == "embedded"
    assert params["home"] == str(home)  # {ogkit_home} follows OGKIT_HOME
    job = f"daily-{datetime.now(UTC):%Y-%m-%d}"
    assert params["job"] == job
    # The notebook got the overrides and its summary came back as the result.
    assert doc["result"] == {"rows": 2000, "chain": "embedded", "job": job}


def test_cli_pipeline_show_and_schedule(monkeypatch, capsys) -> None:
    monkeypatch.chdir(REPO)
    assert main(["pipeline", "show", "pipelines/demo.yaml", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["name"] == "demo" and doc["notebook_parameters"]["rows"]["type"] == "int"
    assert main(["pipeline", "schedule", "pipelines/demo.yaml", "--airflow"]) == 0
    compile(capsys.readouterr().out, "dag.py", "exec")  # valid Python


def test_parameter_values_parse_as_yaml_but_str_stays_text() -> None:
    declared = {"model_version": {"type": "str"}, "rows": {"type": "int"}}
    got = parse_parameters(["model_version=1.0", "rows=2000", "flag=true", "empty="], declared)
    assert got == {"model_version": "1.0", "rows": 2000, "flag": True, "empty": ""}
    with pytest.raises(ConfigError):
        parse_parameters(["no-equals-sign"], declared)


def _age(paths: list[Path], days: float) -> None:
    then = time.time() - days * 86400
    for p in paths:
        os.utime(p, (then, then))


@pytest.mark.parametrize("dated", [False, True])
def test_retention_deletes_only_old_files_of_the_job(tmp_path: Path, dated: bool) -> None:
    nb = _tiny_notebook(tmp_path / "report.ipynb", "x")
    output = str(tmp_path / "out" / ("{date}" if dated else ""))
    spec = JobSpec.from_dict(
        {"name": "nightly", "notebook": str(nb), "output": output, "retention": "7d"},
        root=tmp_path,
    )
    old_dir = spec.output_dir(datetime(2020, 1, 1, tzinfo=UTC))
    new_dir = spec.output_dir()
    old_dir.mkdir(parents=True)
    new_dir.mkdir(parents=True, exist_ok=True)

    def run_files(folder: Path, run_id: str, job: str = "nightly") -> list[Path]:
        files = [folder / f"report-{run_id}{ext}" for ext in (".ipynb", ".html", ".result.json")]
        for f in files:
            f.write_text("{}")
        summary = folder / f"report-{run_id}.json"
        summary.write_text(json.dumps({"job": job}))
        return [*files, summary]

    old = run_files(old_dir, "20200101T030000Z-aaaaaa")
    recent = run_files(new_dir, "20990101T030000Z-bbbbbb")
    other_job = run_files(old_dir, "20200101T030000Z-cccccc", job="someone-else")
    strangers = [old_dir / "other-20200101T030000Z-dddddd.ipynb", old_dir / "cron.log"]
    strangers += [old_dir / "report-custom-run.ipynb"]
    for f in strangers:
        f.write_text("x")
    _age([*old, *other_job, *strangers], days=30)

    deleted = prune_outputs(spec)

    assert sorted(deleted) == sorted(old)
    assert all(p.exists() for p in [*recent, *other_job, *strangers])


def test_schedule_line_is_a_valid_cron_line(tmp_path: Path) -> None:
    spec = JobSpec.load(REPO / "pipelines" / "demo.yaml")
    line = schedule_line(spec, REPO)
    fields = line.split()
    assert cron_problems(" ".join(fields[:5])) == []
    assert fields[5:7] == ["cd", str(REPO)]
    assert "&& .venv/bin/ogkit pipeline run pipelines/demo.yaml >> runs/demo/cron.log 2>&1" in line

    dated = spec.with_output("runs/{name}/{date}")
    assert '>> runs/demo/"$(date -u +\\%F)"/cron.log' in schedule_line(dated, REPO)
    dag = airflow_snippet(spec, home=tmp_path / "home")
    compile(dag, "dag.py", "exec")
    assert f'"home": "{tmp_path / "home"}"' in dag  # {ogkit_home} is the home passed in
    with pytest.raises(ConfigError, match="unknown placeholder"):
        spec.with_output("runs/{when}")


def test_charts_render_and_empty_frames_say_so() -> None:
    batches = pl.DataFrame(
        {
            "batch_id": ["0x" + "ab" * 32, "0x" + "cd" * 32],
            "rows": [100, 100_000],
            "gas": [400_000, 500_000],
            "status": ["finalized", "slashed"],
            "verdict": ["pass", "fail"],
            "node": ["0x" + "11" * 20] * 2,
            "slashed_opg": [0.0, 500.0],
        }
    )
    payments = pl.DataFrame(
        {"recipient": ["0x" + "22" * 20], "role": ["model owner"], "amount_opg": [2.0]}
    )
    errors = pl.DataFrame({"max_abs_error": [0.0, 0.0, 3e-7, float("nan")]})
    charts = [
        report.verification_status_chart(batches),
        report.gas_chart(batches),
        report.slashing_chart(batches),
        report.payments_chart(payments),
        report.reexecution_error_chart(errors),
    ]
    for chart in charts:
        assert report.chart_png(chart, scale=1).startswith(b"\x89PNG")
    empty = report.slashing_chart(pl.DataFrame())
    assert "no slashing events" in json.dumps(empty.to_dict())
    assert "no slashing events" in json.dumps(report.slashing_chart(batches.head(1)).to_dict())
    assert "inf / NaN" in json.dumps(report.reexecution_error_chart(errors).to_dict())
    with pytest.raises(ConfigError, match="needs the column"):
        report.gas_chart(pl.DataFrame({"batch_id": ["0x1"]}))


def test_save_chart_writes_png_and_html(tmp_path: Path) -> None:
    chart = report.model_prices_chart(pl.DataFrame({"ref": ["a@1.0.0"], "price_opg": [0.001]}))
    paths = report.save_chart(chart, tmp_path / "charts" / "prices", inline=False)
    assert paths["png"].read_bytes().startswith(b"\x89PNG")
    assert "vega" in paths["html"].read_text()
    image = report.show_png(chart)
    assert image.data.startswith(b"\x89PNG") and image.alt == "Price per inference"


def test_cli_pipeline_run_failure_exits_1_and_names_the_notebook(tmp_path: Path, capsys) -> None:
    _tiny_notebook(tmp_path / "boom.ipynb", "raise ValueError('boom')")
    (tmp_path / "job.yaml").write_text(
        "name: boom\nnotebook: boom.ipynb\noutput: out/{date}\nretention: 1d\n"
    )

    assert main(["pipeline", "run", str(tmp_path / "job.yaml"), "-p", "x=5"]) == 1

    captured = capsys.readouterr()
    partial = next((tmp_path / "out").glob("*/boom-*.ipynb"))
    assert str(partial) in captured.out and str(partial.with_suffix(".html")) in captured.out
    assert "ValueError: boom" in captured.err and "cell 2" in captured.err
    summary = json.loads(partial.with_suffix(".json").read_text())
    assert summary["ok"] is False and summary["error"]["cell_index"] == 2
    assert summary["parameters"] == {"x": 5}
