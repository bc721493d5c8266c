"""What the report modules share: OPG's decimals and short ids for labels and tables."""

from __future__ import annotations

__all__ = ["OPG", "short_id"]

# OPG amounts are shown as decimal OPG (base units / 10**18); the exact amounts stay on chain.
OPG = 10**18


def short_id(value: str, keep: int = 6) -> str:
    """``0x1234ab…cdef`` for ids and addresses, so axis labels stay readable."""
    value = str(value)
    if value.startswith("0x") and len(value) > 2 * keep + 4:
        return f"{value[: keep + 2]}…{value[-4:]}"
    return value
