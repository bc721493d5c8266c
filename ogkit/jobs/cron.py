"""Cron expressions: check the 5 fields (or a macro like ``@daily``) and say what is wrong."""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["CRON_MACROS", "cron_problems", "normalise_cron"]

_MONTHS = {
    m: i
    for i, m in enumerate(
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], 1
    )
}
_DAYS = {d: i for i, d in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}
_CRON_FIELDS = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 7, _DAYS),  # 0 and 7 are both Sunday
)
CRON_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


def _cron_value(text: str, low: int, high: int, names: Mapping[str, int]) -> int | None:
    value = names.get(text.lower()) if text.isalpha() else int(text) if text.isdigit() else None
    return value if value is not None and low <= value <= high else None


def _cron_field_problems(text: str, label: str, low: int, high: int, names: Mapping) -> list[str]:
    problems = []
    for item in text.split(","):
        base, slash, step = item.partition("/")
        if slash and (not step.isdigit() or int(step) < 1):
            problems.append(f"{label} {item!r}: the step after '/' must be a number >= 1")
        if base == "*":
            continue
        if slash and "-" not in base:
            problems.append(f"{label} {item!r}: a step needs '*' or a range before '/'")
            continue
        lo, dash, hi = base.partition("-")
        values = [_cron_value(lo, low, high, names)]
        if dash:
            values.append(_cron_value(hi, low, high, names))
        if any(v is None for v in values):
            allowed = f"{low}-{high}" + (" or a name like " + next(iter(names)) if names else "")
            problems.append(f"{label} {item!r}: use {allowed}, '*', ranges a-b, steps /n")
        elif dash and values[0] > values[1]:  # type: ignore[operator]
            problems.append(f"{label} {item!r}: the range runs backwards")
    return problems


def cron_problems(expression: str) -> list[str]:
    """Everything wrong with a 5-field cron expression (empty when it is valid)."""
    fields = CRON_MACROS.get(expression.strip().lower(), expression).split()
    if len(fields) != 5:
        return [
            f"schedule {expression!r} has {len(fields)} fields; cron needs 5 "
            "(minute hour day-of-month month day-of-week) or a macro like @daily"
        ]
    problems = []
    for text, (label, low, high, names) in zip(fields, _CRON_FIELDS, strict=True):
        problems.extend(
            f"schedule: {p}" for p in _cron_field_problems(text, label, low, high, names)
        )
    return problems


def normalise_cron(expression: str) -> str:
    """The 5-field form of a valid expression: macros expanded, single spaces."""
    return " ".join(CRON_MACROS.get(expression.strip().lower(), expression).split())
