"""The crontab line carries the environment a job needs, and `ogkit pipeline run` tells a
job whose checks failed (exit 3) from one that crashed (exit 1)."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from ogkit.cli import main
from ogkit.jobs.cron import cron_problems
from ogkit.jobs.runs import EXIT_CHECK_FAILED, EXIT_CRASHED
from ogkit.jobs.schedule import schedule_environment, schedule_line
from ogkit.jobs.spec import JobSpec
from ogkit.settings import Settings


def _notebook(path: Path, body: str) -> Path:
    params = new_code_cell("x: int = 1  # a number")
    params.metadata["tags"] = ["parameters"]
    cells = [new_markdown_cell("# fixture"), params, new_code_cell(body)]
    nbformat.write(new_notebook(cells=cells), path)
    return path


def test_environment_has_home_chain_port_and_path_never_secrets(tmp_path):
    settings = Settings.from_env(
        {
            "OGKIT_HOME": str(tmp_path / "home"),
            "OGKIT_DEVNET_PORT": "18545",
            "OGKIT_KEY_PASSWORD": "hunter2",
            "OGKIT_KEY_OWNER": "0x" + "11" * 32,
        }
    )
    env = schedule_environment(settings, tmp_path / "venv" / "bin" / "ogkit")
    assert env["OGKIT_HOME"] == str((tmp_path / "home").resolve())
    assert env["OGKIT_CHAIN"] == "devnet" and env["OGKIT_DEVNET_PORT"] == "18545"
    assert env["PATH"].split(":")[0] == str(tmp_path / "venv" / "bin")
    assert "OGKIT_STORE" not in env, "the default store follows OGKIT_HOME"
    assert not any("KEY" in k for k in env) and "hunter2" not in json.dumps(env)


def test_the_line_runs_under_env_i_with_what_it_sets(tmp_path):
    """Run the line as cron does (no environment but the line's) with a stand-in ogkit
    that records what it was given."""
    _notebook(tmp_path / "nb.ipynb", "pass")
    (tmp_path / "job.yaml").write_text(
        'name: nightly\nnotebook: nb.ipynb\noutput: "out/{date}"\nschedule: "0 2 * * *"\n'
    )
    spec = JobSpec.load(tmp_path / "job.yaml")
    seen = tmp_path / "seen.json"
    fake = tmp_path / "bin" / "ogkit"
    fake.parent.mkdir()
    recorder = tmp_path / "record.py"
    recorder.write_text(
        "import json, os, sys\n"
        f"doc = {{'env': dict(os.environ), 'argv': sys.argv[1:], 'cwd': os.getcwd()}}\n"
        f"json.dump(doc, open({str(seen)!r}, 'w'))\n"
    )
    fake.write_text(
        f'#!/bin/sh\nexec {shlex.quote(sys.executable)} {shlex.quote(str(recorder))} "$@"\n'
    )
    fake.chmod(0o755)
    home = tmp_path / "home 100%"  # a space and a % (cron's newline) in the path
    settings = Settings.from_env({"OGKIT_HOME": str(home), "OGKIT_DEVNET_PORT": "18545"})
    line = schedule_line(spec, tmp_path, env=schedule_environment(settings, fake), ogkit=fake)
    assert cron_problems(" ".join(line.split()[:5])) == []
    assert "100\\%" in line and "100%" not in line.replace("100\\%", "")
    command = line.split(None, 5)[5].replace("\\%", "%")  # what cron hands to /bin/sh
    subprocess.run(["env", "-i", "/bin/sh", "-c", command], check=True, timeout=60)
    got = json.loads(seen.read_text())
    assert got["env"]["OGKIT_HOME"] == str(home.resolve())
    assert got["env"]["OGKIT_DEVNET_PORT"] == "18545" and got["env"]["OGKIT_CHAIN"] == "devnet"
    assert got["argv"] == ["pipeline", "run", "job.yaml"] and got["cwd"] == str(tmp_path)
    assert list((tmp_path / "out").glob("*/cron.log")), "the dated output folder is made"
    # without an environment the line keeps its old shape
    assert "&& .venv/bin/ogkit pipeline run job.yaml >> out/" in schedule_line(spec, tmp_path)


def test_cli_schedule_line_sets_home_and_port(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OGKIT_HOME", str(tmp_path / "h"))
    monkeypatch.setenv("OGKIT_DEVNET_PORT", "18546")
    monkeypatch.setenv("OGKIT_CHAIN", "devnet")
    repo = Path(__file__).resolve().parent.parent
    assert main(["pipeline", "schedule", str(repo / "pipelines" / "nightly_audit.yaml")]) == 0
    line = capsys.readouterr().out.strip()
    assert f"OGKIT_HOME={shlex.quote(str((tmp_path / 'h').resolve()))}" in line
    assert "OGKIT_DEVNET_PORT=18546" in line and "OGKIT_CHAIN=devnet" in line
    assert "/bin/ogkit pipeline run pipelines/nightly_audit.yaml" in line


def test_failed_check_exits_3_and_a_crash_exits_1(tmp_path, capsys):
    for name, body in (
        ("audit", "from ogkit.errors import AuditFailed\nraise AuditFailed('audit failed: FAIL')"),
        ("crash", "raise ValueError('boom')"),
    ):
        _notebook(tmp_path / f"{name}.ipynb", body)
        (tmp_path / f"{name}.yaml").write_text(
            f"name: {name}\nnotebook: {name}.ipynb\noutput: out/{name}\n"
        )
    assert main(["pipeline", "run", str(tmp_path / "audit.yaml")]) == EXIT_CHECK_FAILED == 3
    assert "AuditFailed: audit failed: FAIL" in capsys.readouterr().err
    assert main(["pipeline", "run", str(tmp_path / "crash.yaml")]) == EXIT_CRASHED == 1
    assert "ValueError: boom" in capsys.readouterr().err


def test_cli_audit_of_no_batches_fails_with_3_when_batches_are_expected(home, capsys):
    # a fresh embedded chain holds no settlement
    assert main(["audit", "--chain", "embedded", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["passed"] is True
    assert main(["audit", "--chain", "embedded", "--min-batches", "1", "--json"]) == 3
    doc = json.loads(capsys.readouterr().out)
    assert doc["passed"] is False and doc["min_batches"] == 1 and doc["batches"] == []
    assert main(["audit", "--chain", "embedded", "--min-batches", "1"]) == 3
    assert "0 batch(es) audited, at least 1 expected" in capsys.readouterr().out
