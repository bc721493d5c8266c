"""Keep hostile documents from crashing the process.

``py_ecc`` (imported by py-evm, eth-tester and through them by ogkit's chain code) raises
Python's recursion limit to 100,000 when it is first imported. Python functions cope with
that, but C code that recurses on the C stack does not: ``json.loads`` of an artefact
holding ~90,000 nested arrays then overflows the 8 MiB stack and the process dies with
SIGSEGV, before any verifier or audit could report a finding. Importing ``py_ecc`` here
first (its import is lazy and cheap) and clamping the limit to :data:`LIMIT` turns such a
document into a ``RecursionError`` the callers report instead; py_ecc's own recursion
(scalar multiplication, depth ≈ 256) stays far below it.
"""

from __future__ import annotations

import contextlib
import sys

__all__ = ["LIMIT", "clamp"]

LIMIT = 20_000
"""Deep enough for every Python caller ogkit knows, shallow enough that json, pickle and
repr of a nested document raise RecursionError long before the C stack runs out (measured:
``json.loads`` survives 60,000 levels and crashes near 90,000 on an 8 MiB stack)."""


def clamp() -> None:
    """Lower the recursion limit to :data:`LIMIT` if something raised it above."""
    if sys.getrecursionlimit() > LIMIT:
        sys.setrecursionlimit(LIMIT)


with contextlib.suppress(ImportError):
    import py_ecc  # noqa: F401  (raises the limit once, now rather than later)
clamp()
