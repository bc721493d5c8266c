"""``ogkit keys new | list``: signing keys in the home's key store."""

from __future__ import annotations

import argparse
import os
import sys

from ogkit.cli.common import add_command, print_json
from ogkit.errors import ConfigError
from ogkit.settings import Settings

__all__ = ["register"]


def _keys_new(args: argparse.Namespace, settings: Settings) -> int:
    from ogkit.keys import KeyStore

    store = KeyStore(settings.home)
    existing = [i for i in store.list() if i.name == args.name] if args.exist_ok else []
    if existing:
        _print_key(args, existing[0])
        return 0
    password = None
    # The password is a secret, so it is not part of Settings: the key store reads
    # OGKIT_KEY_PASSWORD itself, and here we only decide whether to ask for one.
    if not args.dev and not os.environ.get("OGKIT_KEY_PASSWORD"):
        import getpass

        if not sys.stdin.isatty():
            raise ConfigError("no password: set OGKIT_KEY_PASSWORD, or use --dev for a dev key")
        password = getpass.getpass(f"password for new key {args.name}: ")
        if password != getpass.getpass("repeat password: "):
            raise ConfigError("the two passwords differ; nothing was written")
    info = store.create(args.name, password, dev=args.dev)
    _print_key(args, info)
    if args.dev:
        _fund_on_devnet(args, info.address, settings)
    return 0


def _fund_on_devnet(args: argparse.Namespace, address: str, settings: Settings) -> None:
    """A new dev key gets 100 ETH and 100,000 OPG when the local devnet is up."""
    from ogkit.chain.devnet import Devnet

    devnet = Devnet(settings.home, port=settings.devnet_port, anvil=settings.anvil)
    status = devnet.status()
    if not (status.running and status.deployed):
        return
    devnet.fund_dev_accounts([address], eth=100 * 10**18, opg=100_000 * 10**18)
    if not args.json:
        print(
            f"  funded on the devnet: 100 ETH, 100,000 OPG (more: `ogkit chain fund {args.name}`)"
        )


def _print_key(args: argparse.Namespace, info) -> None:
    if args.json:
        print_json({"schema": "ogkit.keys.new.v1", **info.__dict__})
    else:
        print(f"{info.name}  {info.address}{'  (dev key, unprotected)' if info.dev else ''}")


def _keys_list(args: argparse.Namespace, settings: Settings) -> int:
    from ogkit.keys import KeyStore

    infos = KeyStore(settings.home).list()
    if args.json:
        print_json({"schema": "ogkit.keys.list.v1", "keys": [i.__dict__ for i in infos]})
    else:
        for i in infos:
            print(f"{i.name:20} {i.address}{'  (dev)' if i.dev else ''}")
        if not infos:
            print("no keys yet: `ogkit keys new NAME`")
    return 0


def register(groups) -> None:
    keys = groups.add_parser("keys", help="create and list signing keys").add_subparsers(
        dest="command", required=True
    )
    p = add_command(
        keys, "new", _keys_new, "create an encrypted key (password: $OGKIT_KEY_PASSWORD)"
    )
    p.add_argument("name")
    p.add_argument("--dev", action="store_true", help="unprotected dev key for demos and tests")
    p.add_argument(
        "--exist-ok", action="store_true", help="keep a key of that name if there is one"
    )
    add_command(keys, "list", _keys_list, "list keys (addresses only)")
