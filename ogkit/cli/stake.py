"""``ogkit stake register | add | delegate | undelegate | unstake | withdraw | unbondings |
show``: node staking in the NodeRegistry.

Leaving is two steps: ``unstake`` (own stake) or ``undelegate`` starts unbonding, which
stays slashable for the unbonding period; ``withdraw ID`` pays it out after that (at the
pool's rate then: less if the node was slashed meanwhile). ``unbondings`` lists a key's
entries, their release time and what they would pay now."""

from __future__ import annotations

import argparse
import sys

from ogkit.cli.common import (
    add_command,
    chain_option,
    logged,
    opg_text,
    parse_amount,
    print_json,
)
from ogkit.errors import ConfigError
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
    elif args.command == "add":
        signer = keys.load(args.key)
        amount = _positive(args.amount)
        ensure_allowance(chain, signer, registry.address, amount)
        chain.transact(registry.functions.addStake(amount), signer)
        address = signer.address
    elif args.command in ("unstake", "undelegate", "withdraw", "unbondings"):
        return _unbonding(args, chain, keys)
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


def _positive(text: str) -> int:
    amount = parse_amount(text)
    if amount <= 0:
        raise ConfigError(f"amount {text!r} must be more than 0 (e.g. 1000opg)")
    return amount


def _node_address(keys, text: str) -> str:
    return text if text.startswith("0x") else keys.load(text).address


def _unbonding(args: argparse.Namespace, chain, keys) -> int:
    """unstake / undelegate start an unbonding entry; withdraw pays one out; unbondings
    lists the key's entries (from UnbondingStarted events, still open or not)."""
    signer = keys.load(args.key)
    registry = chain.contract("NodeRegistry")
    if args.command in ("unstake", "undelegate"):
        amount = _positive(args.amount)
        if args.command == "unstake":
            fn = registry.functions.unstake(amount)
        else:
            fn = registry.functions.undelegate(_node_address(keys, args.node), amount)
        receipt = chain.transact(fn, signer)
        started = logged(registry, "UnbondingStarted", receipt)
        events = [e["args"] for e in started]
    elif args.command == "withdraw":
        node, holder, *_ = chain.call(registry.functions.getUnbonding(args.unbonding))
        if int(holder, 16) == 0:
            raise ConfigError(
                f"no open unbonding entry {args.unbonding} on {chain.name} (never started, or "
                f"withdrawn already): list yours with `ogkit stake unbondings --key {args.key}`"
            )
        receipt = chain.transact(registry.functions.withdraw(args.unbonding), signer)
        paid = logged(registry, "Withdrawn", receipt)
        doc = {
            "schema": "ogkit.stake.withdraw.v1",
            "unbonding": args.unbonding,
            "node": node,
            "account": signer.address,
            "paid": int(paid[0]["args"]["amount"]),
        }
        if args.json:
            print_json(doc)
        else:
            print(f"withdrew {opg_text(doc['paid'])} from unbonding {args.unbonding} ({node})")
        return 0
    else:
        found = chain.events(
            "NodeRegistry", "UnbondingStarted", argument_filters={"account": signer.address}
        )
        events = [e["args"] for e in found]
    now = chain.block_timestamp()
    entries = []
    for event in events:
        unbonding, node, release = int(event["unbondingId"]), event["node"], event["releaseTime"]
        _, holder, _, _, value = chain.call(registry.functions.getUnbonding(unbonding))
        is_open = int(holder, 16) != 0
        entries.append(
            {
                "unbonding": unbonding,
                "node": node,
                "release_time": int(release),
                "value": int(value) if is_open else 0,
                "state": ("withdrawable" if now >= release else "unbonding")
                if is_open
                else "withdrawn",
            }
        )
    if args.json:
        doc = {"schema": "ogkit.stake.unbondings.v1", "account": signer.address}
        print_json({**doc, "entries": entries})
    elif not entries:
        print(f"{signer.address} has no unbonding entries on {chain.name}")
    else:
        for e in entries:
            worth = f"worth {opg_text(e['value'])}, " if e["state"] != "withdrawn" else ""
            print(
                f"unbonding {e['unbonding']} from {e['node']}: {worth}{e['state']}"
                + (f" (release at {e['release_time']})" if e["state"] == "unbonding" else "")
            )
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
    p = add_command(stake, "add", _stake, "add to your own stake")
    p.add_argument("amount", help="e.g. 1000opg")
    p.add_argument("--key", required=True)
    chain_option(p)
    p = add_command(stake, "unstake", _stake, "start unbonding some of your own stake")
    p.add_argument("amount", help="e.g. 1000opg; what remains must be 0 or the minimum")
    p.add_argument("--key", required=True)
    chain_option(p)
    p = add_command(stake, "undelegate", _stake, "start unbonding a delegation")
    p.add_argument("node", help="address or key name")
    p.add_argument("amount")
    p.add_argument("--key", required=True)
    chain_option(p)
    p = add_command(stake, "withdraw", _stake, "pay out an unbonding entry after its period")
    p.add_argument("unbonding", type=int, help="the id `ogkit stake unbondings` lists")
    p.add_argument("--key", required=True)
    chain_option(p)
    p = add_command(stake, "unbondings", _stake, "your unbonding entries and what they pay")
    p.add_argument("--key", required=True)
    chain_option(p)
    p = add_command(stake, "show", _stake, "a node's role, binding and stake")
    p.add_argument("node", help="address or key name")
    chain_option(p)
