"""The README's examples run as written: the Python script and the offline shell block,
each twice in a row from a fresh OGKIT_HOME in a temporary folder (the second run resumes
or returns the finished batch, and must not trip over keys or a model already there).

The settlement block runs after the offline one, in the same shell, on a devnet of its
own (a free port, stopped afterwards), also twice: it ends in a settled, finalised and
audited batch, and the second run sends nothing new.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from chain.conftest import ANVIL, free_port

from ogkit.samples import TABULAR_FEATURES, make_tabular, sample_model_path

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()
MARKER = "<!-- tests/test_readme.py runs this block as written, twice -->"
PYTHON_BLOCKS = re.findall(r"^```python\n(.*?)^```", README, re.S | re.M)
CLI_BLOCKS = re.findall(rf"^{re.escape(MARKER)}\n```bash\n(.*?)^```", README, re.S | re.M)
SETTLE_MARKER = (
    "<!-- tests/test_readme.py runs this block after the one above, on its own devnet, twice -->"
)
SETTLE_BLOCKS = re.findall(rf"^{re.escape(SETTLE_MARKER)}\n```bash\n(.*?)^```", README, re.S | re.M)
# The column names both examples use (the script writes them; the shell block reads them).
FEATURES = ["age", "tenure", "spend", "visits", "calls", "tickets", "discount", "score"]


def _env(home: Path, port: int | None = None) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("OGKIT_") and k not in {"PYTHONPATH", "VIRTUAL_ENV"}
    }
    env["OGKIT_HOME"] = str(home)
    # 5,000 rows: each command runs in its own process rather than starting a cluster.
    env["OGKIT_WORKERS"] = "0"
    if port is not None:
        env["OGKIT_DEVNET_PORT"] = str(port)
    # `ogkit` and `python` as a user with the venv active would find them.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def _run(
    argv: list[str], cwd: Path, home: Path, port: int | None = None, timeout: int = 300
) -> str:
    env = _env(home, port)
    run = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert run.returncode == 0, f"{argv} failed ({run.returncode}):\n{run.stdout}\n{run.stderr}"
    return run.stdout


def test_readme_has_the_examples() -> None:
    assert len(PYTHON_BLOCKS) == 1, "one complete Python script in the README"
    assert len(CLI_BLOCKS) == 1, f"one shell block marked {MARKER!r}"
    assert 'if __name__ == "__main__":' in PYTHON_BLOCKS[0]
    assert f"COLUMNS=features={','.join(FEATURES)}" in CLI_BLOCKS[0]
    assert "<" not in CLI_BLOCKS[0].replace("< run.json", ""), "a placeholder is left"
    assert len(SETTLE_BLOCKS) == 1, f"one settlement block marked {SETTLE_MARKER!r}"
    assert "<" not in SETTLE_BLOCKS[0].replace("< chain-run.json", ""), "a placeholder is left"
    for block in re.findall(r"^```bash\n(.*?)^```", README, re.S | re.M):
        assert "0x<" not in block and "0x…" not in block, f"a placeholder is left in:\n{block}"


def test_readme_python_script_runs_twice(tmp_path: Path) -> None:
    script = tmp_path / "churn.py"
    script.write_text(PYTHON_BLOCKS[0])
    home = tmp_path / "ogkit-home"
    for attempt in (1, 2):
        out = _run([sys.executable, str(script)], tmp_path, home)
        lines = out.splitlines()
        verdicts = [line for line in lines if line.startswith(("PASS ", "FAIL "))]
        assert verdicts and verdicts[-1].startswith("PASS batch "), (attempt, out)
        assert "5,000/5,000 rows checked" in verdicts[-1], out
        assert lines[-1] == "receipt for row 1234: OK", (attempt, out)
    assert pl.read_parquet(tmp_path / "customers.parquet").columns == [*FEATURES, "label"]


def _folder(tmp_path: Path) -> None:
    """What the README says to have in the folder first."""
    if shutil.which("bash") is None:
        pytest.skip("no bash")
    shutil.copy(sample_model_path("tabular"), tmp_path / "model.onnx")
    data = make_tabular(5_000, seed=1).rename(dict(zip(TABULAR_FEATURES, FEATURES, strict=True)))
    data.write_parquet(tmp_path / "customers.parquet")


def _check_cli_block(tmp_path: Path, out: str, attempt: int) -> None:
    assert "PASS batch " in out and "5,000/5,000 rows checked" in out, (attempt, out)
    assert "receipt for row 1234: OK" in out, (attempt, out)
    parquet = pl.read_parquet(tmp_path / "predictions.parquet")
    csv = pl.read_csv(tmp_path / "predictions.csv")
    assert parquet.height == csv.height == 5_000
    assert parquet["label"].to_list() == csv["label"].to_list()
    assert (tmp_path / "m.onnx").read_bytes() == (tmp_path / "model.onnx").read_bytes()


@pytest.mark.skipif(
    ANVIL.exists(), reason="with anvil, the settlement test runs this block (twice) first"
)
def test_readme_cli_block_runs_twice(tmp_path: Path) -> None:
    _folder(tmp_path)
    script = tmp_path / "readme.sh"
    script.write_text(CLI_BLOCKS[0])
    home = tmp_path / "ogkit-home"
    for attempt in (1, 2):
        out = _run(["bash", "-eo", "pipefail", str(script)], tmp_path, home)
        _check_cli_block(tmp_path, out, attempt)


@pytest.mark.anvil
@pytest.mark.slow
@pytest.mark.skipif(not ANVIL.exists(), reason="anvil is not installed: run `make test`")
def test_readme_settlement_block_runs_twice(tmp_path: Path) -> None:
    from ogkit.chain.devnet import Devnet

    _folder(tmp_path)
    script = tmp_path / "readme-settle.sh"
    script.write_text(CLI_BLOCKS[0] + SETTLE_BLOCKS[0])  # the same shell, as the README says
    home, port = tmp_path / "ogkit-home", free_port()
    try:
        for attempt in (1, 2):
            out = _run(["bash", "-eo", "pipefail", str(script)], tmp_path, home, port, 900)
            _check_cli_block(tmp_path, out, attempt)  # the offline block ran first, as written
            run = json.loads((tmp_path / "chain-run.json").read_text())
            # `ogkit audit --json` is the block's last command: its document ends the output.
            report = json.loads(out[out.rindex("\n{\n") + 1 :])
            assert report["schema"] == "ogkit.audit.v1" and report["passed"], (attempt, report)
            # One batch, settled once: the second run resumed it and sent nothing new.
            assert [(b["artifact_id"], b["status"]) for b in report["batches"]] == [
                (run["artifact_id"], "finalized")
            ], (attempt, report["batches"])
            assert f"batch {run['batch_id']}: finalized" in out, (attempt, out)
    finally:
        Devnet(home, port=port).down()
