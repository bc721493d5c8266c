"""``ogkit stake register | delegate | show``: node staking in the NodeRegistry."""

from __future__ import annotations

import argparse
import sys

from ogkit.cli.common import add_command, chain_option, opg_text, parse_amount, print_json
from ogkit.settings import Settings

__all__ = ["register"]


def _stake(args: argparse.Namespace, settings: Settings) -> int:
    from ogkit.chain.connection import connect_from_settings
    from ogkit.keys import KeyStore
    from ogkit.settle import (
        ROLE_INFERENCE,
        ROLE_VERIFIER,
        ensure_allowance,
        ensure_staked,
        measurement_approved,
    )

    chain = connect_from_settings(settings, args.chain)
    keys = KeyStore(settings.home)
    registry = chain.contract("NodeRegistry")
    if args.command == "register":
        signer = keys.load(args.key)
        registered = chain.call(registry.functions.getNode(signer.address))[0] != 0
        if args.role == "inference" and not args.attester_key and not registered:
            from ogkit.errors import ConfigError

            raise ConfigError(
                "an inference node needs --attester-key: the enclave key that signs its batch "
                "claims signs its binding to the node (and --measurement, its runtime id)"
            )
        # The enclave key signs its binding to this node (proof of possession).
        attester = keys.load(args.attester_key) if args.attester_key else None
        role = ROLE_INFERENCE if args.role == "inference" else ROLE_VERIFIER
        ensure_staked(
            chain,
            signer,
            role=role,
            stake=parse_amount(args.amount),
            attester=attester,
            measurement=args.measurement,
        )
        address = signer.address
        if args.measurement and not measurement_approved(chain, args.measurement):
            flag = "" if chain.kind == "devnet" else f" --chain {chain.name}"
            print(
                f"warning: measurement {args.measurement} is not approved on {chain.name} yet, "
                "so batches attested under it cannot be committed: approve it with "
                f"`ogkit chain approve-measurement {args.measurement}{flag}` (dev chains; "
                "elsewhere governance approves measurements)",
                file=sys.stderr,
            )
    elif args.command == "delegate":
        signer = keys.load(args.key)
        amount = parse_amount(args.amount)
        ensure_allowance(chain, signer, registry.address, amount)
        chain.transact(registry.functions.delegate(args.node, amount), signer)
        address = args.node
    else:
        address = args.node if args.node.startswith("0x") else keys.load(args.node).address
    role, attester, measurement, own, delegated, unbonding = chain.call(
        registry.functions.getNode(address)
    )
    doc = {
        "node": address,
        "role": {0: "none", 1: "inference", 2: "verifier"}.get(role, str(role)),
        "attester": attester,
        "measurement": "0x" + bytes(measurement).hex(),
        "own_stake": own,
        "delegated_stake": delegated,
        "unbonding_stake": unbonding,
    }
    if args.json:
        print_json({"schema": "ogkit.stake.v1", **doc})
    else:
        for k, v in doc.items():
            print(f"{k:16} {opg_text(v) if k.endswith('_stake') else v}")
    return 0


def register(groups) -> None:
    stake = groups.add_parser("stake", help="node staking").add_subparsers(
        dest="command", required=True
    )
    p = add_command(stake, "register", _stake, "register a node with stake (idempotent)")
    p.add_argument("--role", choices=["inference", "verifier"], required=True)
    p.add_argument("--amount", required=True, help="e.g. 10000opg")
    p.add_argument("--key", required=True)
    p.add_argument(
        "--attester-key",
        help="inference nodes: the enclave key bound to the node (it signs the binding)",
    )
    p.add_argument("--measurement", help="the enclave's measurement (runtime id)")
    chain_option(p)
    p = add_command(stake, "delegate", _stake, "delegate stake to a node")
    p.add_argument("node")
    p.add_argument("amount")
    p.add_argument("--key", required=True)
    chain_option(p)
    p = add_command(stake, "show", _stake, "a node's role, binding and stake")
    p.add_argument("node", help="address or key name")
    chain_option(p)
