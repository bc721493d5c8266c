"""The command line starts fast: ``ogkit --help`` imports none of the heavy libraries;
each command imports what it runs."""

from __future__ import annotations

import subprocess
import sys

HEAVY = (
    "altair",
    "dask",
    "eth_account",
    "great_expectations",
    "numpy",
    "onnx",
    "onnxruntime",
    "pandas",
    "papermill",
    "polars",
    "web3",
)


def test_help_imports_no_heavy_module() -> None:
    code = f"""
import sys
from ogkit.cli import main
try:
    main(["--help"])
except SystemExit as exit:
    assert exit.code == 0, exit.code
print(sorted(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)
"""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "usage: ogkit" in run.stdout
    assert run.stderr.strip() == "[]", f"imported at start-up: {run.stderr.strip()}"
