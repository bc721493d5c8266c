"""ARCHITECTURE.md names one file per hop: every file it names must exist."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _diagram_and_table(text: str) -> tuple[str, str]:
    diagram = text.split("```", 2)[1]
    table = text.split("| hop | file |", 1)[1].split("\n\n", 1)[0]
    return diagram, table


def test_every_file_in_the_diagram_exists():
    diagram, table = _diagram_and_table((REPO / "ARCHITECTURE.md").read_text())
    names = set(re.findall(r"[\w/]+\.py", diagram)) | set(re.findall(r"`([\w/]+\.py)`", table))
    assert len(names) >= 10, names
    missing = sorted(n for n in names if not (REPO / "ogkit" / n).is_file())
    assert not missing, f"ARCHITECTURE.md names files that do not exist: {missing}"


def test_every_module_named_in_backticks_exists():
    text = (REPO / "ARCHITECTURE.md").read_text()
    named = set(re.findall(r"`((?:[a-z_]+/)*[a-z_]+\.py)`", text))
    missing = sorted(
        n
        for n in named
        if not any(
            (REPO / base / n).is_file()
            for base in (
                "ogkit",
                "ogkit/hub",
                "ogkit/chain",
                "ogkit/crypto",
                "ogkit/jobs",
                "ogkit/report",
                "ogkit/cli",
                ".",
            )
        )
    )
    assert not missing, missing
