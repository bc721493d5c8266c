"""A hostile, deeply nested document raises RecursionError in an ogkit process instead of
overflowing the C stack: py_ecc (imported by the chain code) raises the recursion limit
to 100,000 on import, and ogkit clamps it back (ogkit/recursion.py). Run in a fresh
interpreter, where a crash shows as a signal, not as a failed assertion."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import json, sys
import ogkit.batch, ogkit.verify, ogkit.chain.client
import py_ecc, eth_tester  # whatever imports py_ecc, after ogkit
from ogkit.recursion import LIMIT
assert sys.getrecursionlimit() <= LIMIT, sys.getrecursionlimit()
try:
    json.loads("[" * 150_000 + "]" * 150_000)
except RecursionError:
    print("refused")
"""


def test_deep_json_is_an_error_not_a_crash():
    run = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True)
    assert run.returncode == 0, (run.returncode, run.stderr[-2000:])
    assert run.stdout.strip() == "refused"
