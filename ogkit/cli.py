"""The ``ogkit`` command line. It prints; the library only logs.

Every ``--json`` document carries a ``schema`` field (e.g. ``ogkit.hub.list.v1``)
and keeps its fields stable within that schema; docs/cli-json.md lists them.
Errors become one line on stderr and exit status 1 (``--debug`` shows the
traceback); bad usage exits with 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from ogkit import __version__
from ogkit.errors import ConfigError, OgkitError

__all__ = ["main"]

Handler = Callable[[argparse.Namespace], int]


def _print_json(doc: dict[str, Any]) -> None:
    print(json.dumps(doc, indent=2, sort_keys=True, default=str))


def parse_price(text: str) -> int:
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


# -- keys -----------------------------------------------------------------------------------
def _keys_new(args: argparse.Namespace) -> int:
    from ogkit.keys import KeyStore

    password = None
    if not args.dev and not os.environ.get("OGKIT_KEY_PASSWORD"):
        import getpass

        if not sys.stdin.isatty():
            raise ConfigError("no password: set OGKIT_KEY_PASSWORD, or use --dev for a dev key")
        password = getpass.getpass(f"password for new key {args.name}: ")
        if password != getpass.getpass("repeat password: "):
            raise ConfigError("the two passwords differ; nothing was written")
    info = KeyStore(args.home).create(args.name, password, dev=args.dev)
    if args.json:
        _print_json({"schema": "ogkit.keys.new.v1", **info.__dict__})
    else:
        print(f"{info.name}  {info.address}{'  (dev key, unprotected)' if info.dev else ''}")
    return 0


def _keys_list(args: argparse.Namespace) -> int:
    from ogkit.keys import KeyStore

    infos = KeyStore(args.home).list()
    if args.json:
        _print_json({"schema": "ogkit.keys.list.v1", "keys": [i.__dict__ for i in infos]})
    else:
        for i in infos:
            print(f"{i.name:20} {i.address}{'  (dev)' if i.dev else ''}")
        if not infos:
            print("no keys yet: `ogkit keys new NAME`")
    return 0


# -- hub ------------------------------------------------------------------------------------
def _hub(args: argparse.Namespace):
    from ogkit.hub import Hub

    return Hub(args.store, home=args.home)


def _signer(args: argparse.Namespace):
    from ogkit.keys import KeyStore

    return KeyStore(args.home).load(args.key)


def _entry_line(entry) -> str:
    m = entry.manifest
    flag = "  [deprecated]" if entry.deprecated else ""
    tags = f"  tags={','.join(m.tags)}" if m.tags else ""
    return (
        f"{m.ref:28} {m.model_id[:18]}…  price={m.price_per_inference}  owner={m.owner}{tags}{flag}"
    )


def _hub_publish(args: argparse.Namespace) -> int:
    manifest = _hub(args).publish(
        args.path,
        name=args.name,
        version=args.version,
        price=parse_price(args.price),
        signer=_signer(args),
        description=args.description,
        tags=args.tag,
        license=args.license,
    )
    if args.chain:
        # Mirror the manifest into the chain's ModelRegistry (owner = the publishing key).
        from ogkit.chain.client import connect
        from ogkit.settle import register_model

        register_model(connect(args.chain, home=args.home), manifest, _signer(args))
    if args.json:
        _print_json({"schema": "ogkit.hub.manifest.v1", "manifest": manifest.to_dict()})
    else:
        print(f"published {manifest.ref}  id {manifest.model_id}")
        if args.chain:
            print(f"registered in the ModelRegistry on {args.chain}")
    return 0


def _hub_list(args: argparse.Namespace) -> int:
    hub = _hub(args)
    if args.command == "search":
        entries = hub.search(args.text, tag=args.tag, owner=args.owner)
    else:
        entries = hub.list(include_deprecated=not args.live)
    if args.json:
        _print_json({"schema": "ogkit.hub.list.v1", "models": [e.to_dict() for e in entries]})
    else:
        for e in entries:
            print(_entry_line(e))
        if not entries:
            print("no models found")
    return 0


def _hub_show(args: argparse.Namespace) -> int:
    entry = _hub(args).entry(args.ref)
    if args.json:
        _print_json({"schema": "ogkit.hub.entry.v1", "model": entry.to_dict()})
        return 0
    m = entry.manifest
    print(_entry_line(entry))
    print(f"  id          {m.model_id}\n  size        {m.size_bytes} bytes")
    print(f"  license     {m.license or '-'}\n  description {m.description or '-'}")
    for kind, specs in (("input ", m.inputs), ("output", m.outputs)):
        for t in specs:
            print(f"  {kind}      {t.name}: {t.dtype}{list(t.shape)}")
    return 0


def _hub_pull(args: argparse.Namespace) -> int:
    path = _hub(args).pull(args.ref, args.output)
    print(f"wrote {path}")
    return 0


def _hub_verify(args: argparse.Namespace) -> int:
    report = _hub(args).verify(args.ref)
    if args.json:
        _print_json({"schema": "ogkit.hub.verify.v1", **report.to_dict()})
    else:
        print(f"{report.ref}: {'OK' if report.ok else 'FAILED'}")
        for p in report.problems:
            print(f"  - {p}")
    return 0 if report.ok else 1


def _hub_deprecate(args: argparse.Namespace) -> int:
    entry = _hub(args).deprecate(args.ref, signer=_signer(args), reason=args.reason)
    print(f"deprecated {entry.manifest.ref}")
    return 0


def _hub_reindex(args: argparse.Namespace) -> int:
    print(f"indexed {_hub(args).reindex()} manifests")
    return 0


# -- parser ---------------------------------------------------------------------------------
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

    def add(sub, name: str, handler: Handler, help: str, json_flag: bool = True):
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(handler=handler, command=name)
        if json_flag:
            p.add_argument("--json", action="store_true", help="stable JSON output")
        return p

    keys = groups.add_parser("keys", help="create and list signing keys").add_subparsers(
        dest="command", required=True
    )
    p = add(keys, "new", _keys_new, "create an encrypted key (password: $OGKIT_KEY_PASSWORD)")
    p.add_argument("name")
    p.add_argument("--dev", action="store_true", help="unprotected dev key for demos and tests")
    add(keys, "list", _keys_list, "list keys (addresses only)")

    hub = groups.add_parser("hub", help="the model hub").add_subparsers(
        dest="command", required=True
    )
    p = add(hub, "publish", _hub_publish, "publish a new model version")
    p.add_argument("path", type=Path)
    p.add_argument("--name", required=True)
    p.add_argument("--version", required=True, help="semantic version, e.g. 1.0.0")
    p.add_argument("--price", required=True, help="per inference: base units or e.g. 0.01opg")
    p.add_argument("--tag", action="append", default=[], help="repeatable")
    p.add_argument("--description", default="")
    p.add_argument("--license", default="")
    p.add_argument("--key", default="owner", help="signing key name (default: owner)")
    p.add_argument("--chain", help="also register it on this chain (devnet, URL)")
    p = add(hub, "list", _hub_list, "list published models")
    p.add_argument("--live", action="store_true", help="hide deprecated versions")
    p = add(hub, "search", _hub_list, "search by name substring, tag or owner")
    p.add_argument("text", nargs="?")
    p.add_argument("--tag")
    p.add_argument("--owner")
    p = add(hub, "show", _hub_show, "show one model version")
    p.add_argument("ref", help="name, name@version or 0x model id")
    p = add(hub, "pull", _hub_pull, "write a verified model file", json_flag=False)
    p.add_argument("ref")
    p.add_argument("-o", "--output", type=Path, required=True)
    p = add(hub, "verify", _hub_verify, "check a manifest's signature and its blob's hash")
    p.add_argument("ref")
    p = add(hub, "deprecate", _hub_deprecate, "deprecate a version (owner only)", False)
    p.add_argument("ref")
    p.add_argument("--reason", default="")
    p.add_argument("--key", default="owner")
    add(hub, "reindex", _hub_reindex, "rebuild the index from the store", json_flag=False)

    from ogkit import cli_chain, cli_jobs, cli_pipeline

    cli_jobs.register(groups, add)
    cli_chain.register(groups, add)
    cli_pipeline.register(groups, add)
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
        return args.handler(args)
    except OgkitError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(
            "interrupted: finished work is kept; re-run the same command to resume", file=sys.stderr
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
