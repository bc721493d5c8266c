"""``ogkit chain up | down | status | advance``: the local devnet."""

from __future__ import annotations

import argparse

from ogkit.cli.common import add_command, chain_option, print_json
from ogkit.settings import Settings

__all__ = ["register"]


def _chain(args: argparse.Namespace, settings: Settings) -> int:
    from ogkit.chain.devnet import Devnet

    devnet = Devnet(settings.home, port=settings.devnet_port, anvil=settings.anvil)
    if args.command == "up":
        status = devnet.up()
    elif args.command == "down":
        devnet.down()
        status = devnet.status()
    elif args.command == "advance":
        from ogkit.chain.connection import connect_from_settings

        chain = connect_from_settings(settings, args.chain)
        chain.increase_time(args.seconds)
        print(f"chain time is now {chain.block_timestamp()} (block {chain.block_number()})")
        return 0
    else:
        status = devnet.status()
    doc = {k: str(v) if k == "state_file" else v for k, v in status.__dict__.items()}
    if args.json:
        print_json({"schema": "ogkit.chain.status.v1", **doc})
    else:
        state = "running" if status.running else "stopped"
        print(f"devnet {state} at {status.url} (chain {status.chain_id}, block {status.block})")
        print(f"  state file {status.state_file}; contracts deployed: {status.deployed}")
    return 0


def register(groups) -> None:
    chain = groups.add_parser("chain", help="the local devnet").add_subparsers(
        dest="command", required=True
    )
    add_command(chain, "up", _chain, "start the devnet (deploys the contracts on first start)")
    add_command(chain, "down", _chain, "stop the devnet; its state is kept on disk")
    add_command(chain, "status", _chain, "is the devnet running, where, at which block")
    p = add_command(
        chain, "advance", _chain, "move devnet time forward (end challenge windows)", False
    )
    p.add_argument("seconds", type=int)
    chain_option(p)
