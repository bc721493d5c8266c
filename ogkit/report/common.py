"""What the report modules share: OPG's decimals and short ids for labels and tables."""

from __future__ import annotations

import math
from decimal import Decimal

__all__ = ["OPG", "opg_text", "short_id"]

# OPG amounts are shown as decimal OPG (base units / 10**18); the exact amounts stay on chain.
OPG = 10**18


def opg_text(amount: float | int | None, *, base_units: bool = False) -> str:
    """An OPG amount as a person reads it: ``0.001 OPG``, ``1,250 OPG``, ``0 OPG``.

    ``amount`` is in OPG (the ``*_opg`` columns), or in base units with ``base_units``
    (exact: integers are divided as decimals, never through a float). Floats are shown
    to 12 significant digits, so 0.1 + 0.2 reads ``0.3 OPG``.
    """
    if amount is None:
        return "–"
    if base_units:
        value = Decimal(int(amount)) / OPG
    else:
        if isinstance(amount, float) and not math.isfinite(amount):
            return f"{amount} OPG"
        value = Decimal(repr(float(amount))) if isinstance(amount, float) else Decimal(amount)
        value = Decimal(f"{value:.12g}") if value else value
    text = f"{value:,f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return f"{text} OPG"


def short_id(value: str, keep: int = 6) -> str:
    """``0x1234ab…cdef`` for ids and addresses, so axis labels stay readable."""
    value = str(value)
    if value.startswith("0x") and len(value) > 2 * keep + 4:
        return f"{value[: keep + 2]}…{value[-4:]}"
    return value
