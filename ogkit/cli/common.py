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
from pathlib import Path
from typing import Any

from ogkit.errors import ConfigError
from ogkit.settings import Settings

__all__ = [
    "Handler",
    "add_command",
    "chain_option",
    "dask_client",
    "frame_format",
    "input_map_option",
    "job_options",
    "opg_text",
    "parse_amount",
    "parse_input_map",
    "print_json",
    "read_settings",
    "write_frame",
    "write_predictions",
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


def opg_text(units: int) -> str:
    """OPG base units as a person reads them: ``0.001 OPG``, ``10,000 OPG`` (exact)."""
    whole, frac = divmod(int(units), 10**18)
    text = f"{whole:,}" + (("." + f"{frac:018d}").rstrip("0") if frac else "")
    return f"{text} OPG"


def parse_input_map(items: list[str]) -> dict[str, list[str]] | None:
    """``--input-map features=f0,f1,f2`` (repeatable) → {"features": ["f0", "f1", "f2"]}."""
    if not items:
        return None
    mapping = {}
    for item in items:
        name, sep, cols = item.partition("=")
        if not sep or not name or not cols:
            raise ConfigError(f"--input-map {item!r}: use INPUT=COL[,COL...]")
        mapping[name.strip()] = [c.strip() for c in cols.split(",") if c.strip()]
    return mapping


def input_map_option(p: argparse.ArgumentParser, help: str) -> None:
    p.add_argument(
        "--input-map", action="append", default=[], metavar="INPUT=COL[,COL...]", help=help
    )


def frame_format(path: str | os.PathLike[str]) -> str:
    """``"parquet"`` or ``"csv"``, by the suffix of ``path``; anything else is refused."""
    kind = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}.get(Path(path).suffix.lower())
    if kind is None:
        raise ConfigError(f"{path}: name a .parquet or .csv file (the suffix picks the format)")
    return kind


def write_frame(frame: Any, path: str | os.PathLike[str]) -> Path:
    """Write a polars frame as Parquet (``.parquet``, ``.pq``) or CSV (``.csv``) by the
    suffix of ``path``, atomically: to a temporary file beside it, then moved into place.

    CSV has no list columns, so an output with several values per row (``probabilities``)
    becomes one column per value (``probabilities_0``, ``probabilities_1``, …).
    """
    import polars as pl

    dest = Path(path)
    kind = frame_format(dest)
    if kind == "csv":
        wide = []
        for name, dtype in frame.schema.items():
            if isinstance(dtype, pl.Array):
                wide += [pl.col(name).arr.get(i).alias(f"{name}_{i}") for i in range(dtype.size)]
            elif isinstance(dtype, pl.List):
                width = frame[name].list.len().max() or 0
                wide += [
                    pl.col(name).list.get(i, null_on_oob=True).alias(f"{name}_{i}")
                    for i in range(width)
                ]
            else:
                wide.append(pl.col(name))
        frame = frame.select(wide)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    try:
        if kind == "csv":
            frame.write_csv(tmp)
        else:
            frame.write_parquet(tmp)
        tmp.replace(dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def write_predictions(batch: Any, path: str | os.PathLike[str]) -> dict[str, Any]:
    """Write a batch's ``row_index`` and outputs (its predictions) with :func:`write_frame`;
    returns what was written, for the commands' output."""
    frame = batch.outputs_frame().drop("output_hash")
    dest = write_frame(frame, path)
    return {"path": str(dest), "rows": frame.height, "outputs": frame.columns[1:]}


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
    LocalCluster of ``--workers`` (else ``$OGKIT_WORKERS``); none at all for 0 workers
    without a scheduler."""
    workers = args.workers if args.workers is not None else settings.workers
    scheduler = args.scheduler or settings.scheduler
    if workers == 0 and not scheduler:
        yield None
        return
    from ogkit.compute import get_client

    client = get_client(scheduler, n_workers=workers or None)
    try:
        yield client
    except KeyboardInterrupt:
        # Ctrl-C: a LocalCluster's busy workers outlive its scheduler while it closes, and
        # each would log pages of failed heartbeats to the terminal: silence them first.
        if getattr(client, "cluster", None) is not None:
            with contextlib.suppress(Exception, KeyboardInterrupt):
                client.run(_silence_logging, wait=True)
        raise
    finally:
        client.close()


def _silence_logging() -> None:
    """Run on each worker after Ctrl-C."""
    import logging

    logging.disable(logging.CRITICAL)


def logged(contract: Any, event: str, receipt: Any) -> list[Any]:
    """The ``event`` logs ``contract`` emitted in a transaction receipt (other contracts'
    logs in the same receipt are skipped, not warned about)."""
    from web3.logs import DISCARD

    return list(contract.events[event]().process_receipt(receipt, errors=DISCARD))


def parse_measurement(text: str) -> str:
    """A 32-byte measurement (runtime id) as 0x + 64 lower-case hex digits."""
    raw = text.strip().lower()
    body = raw.removeprefix("0x")
    if len(body) != 64 or any(c not in "0123456789abcdef" for c in body):
        raise ConfigError(
            f"measurement {text!r} is not a 32-byte hex id: give the runtime id "
            "(`ogkit infer --json` prints it as runtime_id)"
        )
    return "0x" + body


# The NodeRegistry's measurement kinds by name (ogkit.tee.claims.MEASUREMENT_KINDS, kept
# here so that parsing a command's arguments imports no TEE code).
MEASUREMENT_KINDS = {"software": 1, "tdx": 2, "sgx": 3, "nitro": 4}
