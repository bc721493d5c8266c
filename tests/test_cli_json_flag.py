"""The README says every command takes ``--json``: every leaf of the parser has it, and
the commands that gained it print one document with a schema."""

from __future__ import annotations

import argparse
import json

from ogkit.cli.app import build_parser, main


def _leaves(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _leaves(sub, (*path, name))
            return
    yield path, parser


def test_every_command_takes_json():
    leaves = dict(_leaves(build_parser()))
    assert len(leaves) > 20
    without = [
        " ".join(p)
        for p, sub in leaves.items()
        if not any("--json" in a.option_strings for a in sub._actions)
    ]
    assert without == []


def test_hub_reindex_pull_and_deprecate_print_documents(capsys, published, tmp_path):
    assert main(["hub", "reindex", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema"] == "ogkit.hub.reindex.v1" and doc["indexed"] >= 3
    out = tmp_path / "m.onnx"
    assert main(["hub", "pull", "tab@1.0.0", "-o", str(out), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc == {"schema": "ogkit.hub.pull.v1", "ref": "tab@1.0.0", "path": str(out)}
    assert main(["hub", "deprecate", "tab@1.0.0", "--reason", "old", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema"] == "ogkit.hub.deprecate.v1" and doc["ref"] == "tab@1.0.0"
