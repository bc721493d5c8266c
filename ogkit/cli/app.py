"""The parser and ``main``: read the settings once, run one command, print.

Every command module registers its group; this module only wires them together and
turns an :class:`~ogkit.errors.OgkitError` into one line on stderr. Nothing heavy is
imported here or in the command modules at start-up: each command imports the steps it
runs, so ``ogkit --help`` stays fast.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from ogkit import __version__
from ogkit.cli import (
    audit,
    batch,
    chain,
    challenge,
    chat,
    demo,
    dispute,
    facilitator,
    governance,
    hub,
    infer,
    jobs,
    keys,
    network,
    node,
    order,
    settle,
    stake,
    verifier,
    verify,
    zk,
)
from ogkit.cli.common import read_settings
from ogkit.errors import OgkitError

__all__ = ["build_parser", "main"]

# In the order `ogkit --help` lists them.
COMMAND_MODULES = (
    keys,
    hub,
    infer,
    chat,
    order,
    batch,
    verify,
    demo,
    chain,
    settle,
    audit,
    stake,
    governance,
    node,
    facilitator,
    verifier,
    challenge,
    dispute,
    network,
    jobs,
    zk,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ogkit", description="Verifiable batch inference: hub, infer, verify, settle, audit."
    )
    parser.add_argument("--version", action="version", version=f"ogkit {__version__}")
    parser.add_argument("--home", type=Path, default=None, help="ogkit home (default $OGKIT_HOME)")
    parser.add_argument("--store", default=None, help="store URL (default $OGKIT_STORE)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    groups = parser.add_subparsers(dest="group", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.register(groups)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if args.verbose < 2:
        # Dask's scheduler logs every worker start and stop at INFO; keep that for -vv.
        for handler in logging.getLogger().handlers:
            handler.addFilter(
                lambda r: r.levelno >= logging.WARNING or not r.name.startswith("distributed")
            )
    try:
        return args.handler(args, read_settings(args))
    except OgkitError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        dask_used = _close_quietly()
        print(
            "interrupted: finished work is kept; re-run the same command to resume", file=sys.stderr
        )
        if dask_used:
            # A Dask client interrupted while closing hangs the interpreter's exit (its
            # __del__ waits on an event loop that is gone): leave now. LocalCluster
            # workers exit when this process does; staged files are written atomically.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(130)
        return 130


def _close_quietly() -> bool:
    """After Ctrl-C: no more log records (Dask's tear-down logs pages of errors), and any
    Dask client still open closed, ignoring what it raises and a second Ctrl-C. True
    when this process used Dask at all."""
    logging.disable(logging.CRITICAL)
    client_module = sys.modules.get("distributed.client")
    if client_module is None:
        return False
    for client in list(getattr(client_module, "_global_clients", {}).values()):
        with contextlib.suppress(Exception, KeyboardInterrupt):
            client.close(timeout=10)
    return True
