"""The nightly audit run the way cron runs it: the printed crontab line under `env -i`,
with nothing but what the line sets, against a devnet holding one settled batch."""

from __future__ import annotations

import json
import shlex
import socket
import subprocess
from pathlib import Path

import pytest
import yaml

from ogkit.chain.devnet import Devnet
from ogkit.cli import main
from ogkit.demo import run_demo
from ogkit.jobs.runs import EXIT_CHECK_FAILED

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.anvil


@pytest.fixture
def settled_devnet(home, devnet_port):
    result = run_demo(home=home, rows=2000, workers=1, chain="devnet", devnet_port=devnet_port)
    assert result.passed
    yield result
    main(["chain", "down"])


def _job(tmp_path: Path) -> Path:
    """pipelines/nightly_audit.yaml with its output in tmp_path (not the repository's runs/)."""
    doc = yaml.safe_load((REPO / "pipelines" / "nightly_audit.yaml").read_text())
    doc["notebook"] = str(REPO / doc["notebook"])
    doc["output"] = str(tmp_path / "runs" / "{name}")
    path = tmp_path / "job" / "nightly_audit.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(doc))
    return path


def _cron_command(line: str) -> str:
    """What cron hands to /bin/sh: the line after its five time fields, ``\\%`` as ``%``."""
    return line.split(None, 5)[5].replace("\\%", "%")


def _run_as_cron(command: str) -> int:
    proc = subprocess.run(["env", "-i", "/bin/sh", "-c", command], timeout=600)
    return proc.returncode


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _summaries(folder: Path) -> list[dict]:
    paths = sorted(folder.glob("audit_settlement-*.json"))
    return [json.loads(p.read_text()) for p in paths if not p.name.endswith(".result.json")]


def test_cron_line_audits_the_settled_batch_and_an_empty_audit_fails(
    settled_devnet, home, devnet_port, tmp_path, capsys
):
    job = _job(tmp_path)
    assert main(["pipeline", "schedule", str(job)]) == 0
    line = capsys.readouterr().out.strip()
    assert f"OGKIT_HOME={shlex.quote(str(home))}" in line
    assert f"OGKIT_DEVNET_PORT={devnet_port}" in line and "OGKIT_CHAIN=devnet" in line
    assert "PATH=" in line and str(REPO / ".venv" / "bin") in line
    command = _cron_command(line)

    # The devnet is down at night (a reboot): the audit starts it from its state, audits
    # the batch the demo settled, and stops it again.
    main(["chain", "down"])
    devnet = Devnet(home, port=devnet_port)
    assert not devnet.status().running
    out = tmp_path / "runs" / "nightly_audit"
    assert _run_as_cron(command) == 0, (out / "cron.log").read_text()
    (doc,) = _summaries(out)
    assert doc["ok"] and doc["parameters"]["home"] == str(home)
    assert doc["result"]["passed"] is True and doc["result"]["batches"] == 1
    assert not devnet.status().running, "the audit must not leave the devnet it started running"
    assert not _listening(devnet_port)

    # The same line pointed at an empty home (what cron did before the line set OGKIT_HOME):
    # no batches is not a pass, and it exits with the audit's own code, not a crash's.
    empty = tmp_path / "empty-home"
    wrong = command.replace(
        f"OGKIT_HOME={shlex.quote(str(home))}", f"OGKIT_HOME={shlex.quote(str(empty))}"
    )
    assert wrong != command
    assert _run_as_cron(wrong) == EXIT_CHECK_FAILED == 3, (out / "cron.log").read_text()
    failed = [d for d in _summaries(out) if not d["ok"]]
    assert len(failed) == 1 and failed[0]["error"]["ename"] == "AuditFailed"
    assert failed[0]["result"]["passed"] is False and failed[0]["result"]["batches"] == 0
    log = (out / "cron.log").read_text()
    assert "AuditFailed" in log and "expected at least 1 batch(es)" in log, log
    assert not Devnet(empty, port=devnet_port).status().running, "no anvil may be left running"
    assert not _listening(devnet_port)
