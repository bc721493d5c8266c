"""``ogkit chain up | down | status | advance | fund | approve-measurement``: the local
devnet and what only a dev chain's deployer may do."""

from __future__ import annotations

import argparse

from ogkit.cli.common import (
    MEASUREMENT_KINDS,
    add_command,
    chain_option,
    parse_amount,
    parse_measurement,
    print_json,
)
from ogkit.errors import ConfigError, SettlementError
from ogkit.settings import Settings

__all__ = ["register"]


def _eth_amount(text: str) -> int:
    """Wei: an integer, or a decimal with an ``eth`` suffix (``10eth``), as OPG amounts."""
    raw = text.strip().lower()
    return parse_amount(raw[:-3] + "opg" if raw.endswith("eth") else raw)


def _fund(args: argparse.Namespace, settings: Settings) -> int:
    from ogkit.chain.connection import connect_from_settings
    from ogkit.keys import KeyStore
    from ogkit.settle import format_opg

    eth, opg = _eth_amount(args.eth), parse_amount(args.opg)
    if eth < 0 or opg < 0:
        raise ConfigError("--eth and --opg must be >= 0")
    target = args.target
    if not target.startswith("0x"):
        known = {k.name: k.address for k in KeyStore(settings.home).list()}
        if target not in known:
            raise ConfigError(
                f"no key named {target!r} in {settings.home}: give an 0x address, or create "
                f"it with `ogkit keys new {target} --dev`"
            )
        target = known[target]
    chain = connect_from_settings(settings, args.chain)
    chain.fund(target, eth=eth, opg=opg)
    token = chain.contract("OPGToken")
    doc = {
        "schema": "ogkit.chain.fund.v1",
        "chain": chain.name,
        "address": target,
        "eth_sent": eth,
        "opg_sent": opg,
        "eth_balance": int(chain.w3.eth.get_balance(target)),
        "opg_balance": int(chain.call(token.functions.balanceOf(target))),
    }
    if args.json:
        print_json(doc)
    else:
        print(
            f"funded {target} on {chain.name} with {format_opg(eth)} ETH and "
            f"{format_opg(opg)} OPG; it holds {format_opg(doc['eth_balance'])} ETH and "
            f"{format_opg(doc['opg_balance'])} OPG"
        )
    return 0


KINDS = MEASUREMENT_KINDS


def _approve_measurement(args: argparse.Namespace, settings: Settings) -> int:
    from ogkit.chain.connection import connect_from_settings
    from ogkit.settle import bootstrap_measurement, governance_hint, measurement_approved

    measurement = parse_measurement(args.measurement)
    chain = connect_from_settings(settings, args.chain)
    already = measurement_approved(chain, measurement)
    if not already:
        if chain.deployer is None:
            raise SettlementError(
                f"measurement {measurement} is not approved on {chain.name}; `ogkit chain "
                "approve-measurement` approves directly on the devnet and the embedded chain "
                f"only (from their deployer); on {chain.name}, {governance_hint(measurement)}"
            )
        bootstrap_measurement(chain, chain.deployer, measurement, kind=KINDS[args.kind])
    doc = {
        "schema": "ogkit.chain.approve_measurement.v1",
        "chain": chain.name,
        "measurement": measurement,
        "kind": args.kind,
        "approved": True,
        "newly_approved": not already,
    }
    if args.json:
        print_json(doc)
    else:
        state = "already approved" if already else "approved by the deployer"
        print(f"measurement {measurement} {state} on {chain.name}")
    return 0


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
        if args.json:
            print_json(
                {
                    "schema": "ogkit.chain.advance.v1",
                    "chain_id": chain.chain_id,
                    "seconds": args.seconds,
                    "timestamp": chain.block_timestamp(),
                    "block": chain.block_number(),
                }
            )
        else:
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
    p = add_command(chain, "advance", _chain, "move devnet time forward (end challenge windows)")
    p.add_argument("seconds", type=int)
    chain_option(p)
    p = add_command(chain, "fund", _fund, "send a key or address ETH and OPG from the deployer")
    p.add_argument("target", metavar="KEY|ADDRESS", help="key name or 0x address")
    p.add_argument("--eth", default="100eth", help="ETH to send: wei or 10eth (default 100eth)")
    p.add_argument(
        "--opg", default="100000opg", help="OPG to send: base units or 10opg (default 100000opg)"
    )
    chain_option(p)
    p = add_command(
        chain,
        "approve-measurement",
        _approve_measurement,
        "approve a runtime measurement on a dev chain, from the deployer (elsewhere: governance)",
    )
    p.add_argument("measurement", metavar="RUNTIME_ID", help="the runtime id (0x…, 32 bytes)")
    p.add_argument(
        "--kind",
        choices=sorted(KINDS),
        default="software",
        help="what the measurement is: a software enclave's runtime id (default) or a TEE "
        "measurement hash (docs/tee.md); a production deployment refuses software",
    )
    chain_option(p)
