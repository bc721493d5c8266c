"""What the command modules share: the JSON printer, the OPG amount parser, the settings
read at the edge, the options several commands take, and the Dask client of a command.

Everything here is cheap to import: the command modules import it at start-up, and
``ogkit --help`` must not wait for onnxruntime, polars or web3.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
from collections.abc import Callable, Iterator, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from ogkit.errors import ConfigError
from ogkit.settings import Settings

__all__ = [
    "Handler",
    "add_command",
    "chain_option",
    "dask_client",
    "job_options",
    "parse_amount",
    "print_json",
    "read_settings",
]

# A command: the parsed arguments and the settings in, the exit status out.
Handler = Callable[[argparse.Namespace, Settings], int]


def print_json(doc: Mapping[str, Any]) -> None:
    """A ``--json`` document: sorted keys, two-space indent, anything else as text."""
    print(json.dumps(doc, indent=2, sort_keys=True, default=str))


def parse_amount(text: str) -> int:
    """OPG base units: an integer, or a decimal with an ``opg`` suffix (``0.01opg``)."""
    raw = text.strip().lower()
    try:
        if raw.endswith("opg"):
            value = Decimal(raw[:-3]) * 10**18
            if value != value.to_integral_value():
                raise ConfigError(f"price {text!r} has more than 18 decimals")
            return int(value)
        return int(raw)
    except (InvalidOperation, ValueError):
        raise ConfigError(
            f"price {text!r} is not a number: give OPG base units (1000) or OPG (0.01opg)"
        ) from None


def read_settings(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> Settings:
    """The environment, read once, with ``--home`` and ``--store`` on top.

    A flag stands in for its variable, so ``--home`` also moves the default store
    (``<home>/store``), exactly as ``$OGKIT_HOME`` does.
    """
    values = dict(os.environ if env is None else env)
    if args.home is not None:
        values["OGKIT_HOME"] = str(args.home)
    if args.store:
        values["OGKIT_STORE"] = args.store
    try:
        return Settings.from_env(values)
    except ValueError as exc:  # OGKIT_DEVNET_PORT that is not a number
        raise ConfigError(f"bad ogkit setting in the environment: {exc}") from None


def add_command(
    sub: Any, name: str, handler: Handler, help: str, json_flag: bool = True
) -> argparse.ArgumentParser:
    """Add the command ``name`` to the subparsers ``sub``, with ``--json`` unless told not."""
    p = sub.add_parser(name, help=help, description=help)
    p.set_defaults(handler=handler, command=name)
    if json_flag:
        p.add_argument("--json", action="store_true", help="stable JSON output")
    return p


def chain_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--chain", default=None, help="devnet (default, $OGKIT_CHAIN), embedded, or an RPC URL"
    )


def job_options(p: argparse.ArgumentParser) -> None:
    """Where a command's partitions run (``infer``, ``verify``)."""
    p.add_argument("--scheduler", help="Dask scheduler address (default $OGKIT_SCHEDULER)")
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="LocalCluster workers (default: one per core; 0: run in this process)",
    )
    p.add_argument("--out", help="artefact store URL (default: the hub's store)")


@contextlib.contextmanager
def dask_client(args: argparse.Namespace, settings: Settings) -> Iterator[Any]:
    """A Dask client for the command: ``--scheduler`` (else ``$OGKIT_SCHEDULER``), else a
    LocalCluster of ``--workers``; none at all for ``--workers 0`` without ``--scheduler``."""
    if args.workers == 0 and not args.scheduler:
        yield None
        return
    from ogkit.compute import get_client

    client = get_client(args.scheduler or settings.scheduler, n_workers=args.workers or None)
    try:
        yield client
    finally:
        client.close()
