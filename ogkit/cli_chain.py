"""CLI commands for the chain: devnet control, settlement, staking."""

from __future__ import annotations

import argparse
import json
from typing import Any

__all__ = ["register"]


def _print_json(doc: dict[str, Any]) -> None:
    print(json.dumps(doc, indent=2, sort_keys=True, default=str))


def _connect(args: argparse.Namespace):
    from ogkit.chain.client import connect

    return connect(args.chain, home=args.home)


def _chain(args: argparse.Namespace) -> int:
    from ogkit.chain.devnet import Devnet

    devnet = Devnet(args.home)
    if args.command == "up":
        status = devnet.up()
    elif args.command == "down":
        devnet.down()
        status = devnet.status()
    elif args.command == "advance":
        client = _connect(args)
        client.increase_time(args.seconds)
        print(f"chain time is now {client.block_timestamp()} (block {client.block_number()})")
        return 0
    else:
        status = devnet.status()
    doc = {k: str(v) if k == "state_file" else v for k, v in status.__dict__.items()}
    if args.json:
        _print_json({"schema": "ogkit.chain.status.v1", **doc})
    else:
        state = "running" if status.running else "stopped"
        print(f"devnet {state} at {status.url} (chain {status.chain_id}, block {status.block})")
        print(f"  state file {status.state_file}; contracts deployed: {status.deployed}")
    return 0


def _settle(args: argparse.Namespace) -> int:
    from ogkit.artifacts import load_batch
    from ogkit.settings import store_url
    from ogkit.keys import KeyStore
    from ogkit.settle import SettlementJournal, settle
    from ogkit.store import ContentStore

    client = _connect(args)
    journal = SettlementJournal(client.chain_id, args.home)
    if args.target == "status":
        records = [r.to_dict() for r in journal.all()]
        if args.json:
            _print_json(
                {
                    "schema": "ogkit.settle.status.v1",
                    "chain_id": client.chain_id,
                    "settlements": records,
                }
            )
        else:
            for r in records:
                wait = f"  waiting: {r['waiting_for']}" if r["waiting_for"] else ""
                print(
                    f"{r['batch_id'][:18]}…  {r['status']:10} commit block "
                    f"{r['commit_block']}{wait}"
                )
            if not records:
                print("no settlements recorded on this machine for this chain")
        return 0
    batch = load_batch(args.target, ContentStore(args.store or store_url(args.home)))
    node = KeyStore(args.home).load(args.node_key)
    record = settle(batch, client, node=node, journal=journal, finalize=not args.no_finalize)
    if args.json:
        _print_json({"schema": "ogkit.settle.v1", **record.to_dict()})
    else:
        print(
            f"batch {record.batch_id}: {record.status}"
            + (f" (waiting: {record.waiting_for})" if record.waiting_for else "")
        )
        if record.commit_tx:
            print(f"  commit   {record.commit_tx} (block {record.commit_block})")
        if record.finalize_tx:
            print(f"  finalize {record.finalize_tx} (block {record.finalize_block})")
    return 0


def _stake(args: argparse.Namespace) -> int:
    from ogkit.cli import parse_price
    from ogkit.keys import KeyStore
    from ogkit.settle import ROLE_INFERENCE, ROLE_VERIFIER, ensure_allowance, ensure_staked

    client = _connect(args)
    keys = KeyStore(args.home)
    registry = client.contract("NodeRegistry")
    if args.command == "register":
        signer = keys.load(args.key)
        attester = keys.load(args.attester_key).address if args.attester_key else None
        role = ROLE_INFERENCE if args.role == "inference" else ROLE_VERIFIER
        ensure_staked(
            client,
            signer,
            role=role,
            stake=parse_price(args.amount),
            attester=attester,
            measurement=args.measurement,
        )
        address = signer.address
    elif args.command == "delegate":
        signer = keys.load(args.key)
        amount = parse_price(args.amount)
        ensure_allowance(client, signer, registry.address, amount)
        client.transact(registry.functions.delegate(args.node, amount), signer)
        address = args.node
    else:
        address = args.node if args.node.startswith("0x") else keys.load(args.node).address
    role, attester, measurement, own, delegated, unbonding = client.call(
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
        _print_json({"schema": "ogkit.stake.v1", **doc})
    else:
        for k, v in doc.items():
            print(f"{k:16} {v}")
    return 0


def _audit(args: argparse.Namespace) -> int:
    from ogkit.audit import audit
    from ogkit.hub import Hub

    client = _connect(args)
    hub = Hub(args.store, home=args.home)
    model = hub.manifest(args.model).model_id if args.model else None
    report = audit(
        client,
        hub.store,
        hub=hub,
        from_block=args.from_block,
        to_block=args.to_block,
        batch_ids=args.batch or None,
        requester=args.requester,
        model=model,
        sample_rate=args.sample_rate,
        progress=not args.json,
    )
    if args.json:
        _print_json(report.to_dict())
    else:
        print(report.summary())
        for b in report.batches.iter_rows(named=True):
            print(
                f"  {b['batch_id'][:18]}…  {b['status']:10} verdict {b['verdict']:7} "
                f"{b['rows']:>9,} rows  paid {b['model_payment_opg']:.4f} OPG"
            )
        for f in report.findings.iter_rows(named=True):
            where = f" row {f['row_index']}" if f["row_index"] is not None else ""
            print(
                f"  - [{f['severity']}] {f['batch_id'][:18]}…{where} {f['reason']}: {f['detail']}"
            )
    return 0 if report.passed else 1


def register(groups, add) -> None:
    def chain_option(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--chain", default=None, help="devnet (default, $OGKIT_CHAIN), embedded, or an RPC URL"
        )

    chain = groups.add_parser("chain", help="the local devnet").add_subparsers(
        dest="command", required=True
    )
    add(chain, "up", _chain, "start the devnet (deploys the contracts on first start)")
    add(chain, "down", _chain, "stop the devnet; its state is kept on disk")
    add(chain, "status", _chain, "is the devnet running, where, at which block")
    p = add(chain, "advance", _chain, "move devnet time forward (end challenge windows)", False)
    p.add_argument("seconds", type=int)
    chain_option(p)

    p = add(groups, "settle", _settle, "settle an attested batch, or `settle status`")
    p.add_argument("target", help="artefact id / manifest path, or the word 'status'")
    p.add_argument("--node-key", default="node", help="inference node key (default: node)")
    p.add_argument("--no-finalize", action="store_true", help="commit only")
    chain_option(p)

    p = add(groups, "audit", _audit, "replay settlements from the chain and re-verify them")
    p.add_argument("--from-block", type=int, default=None)
    p.add_argument("--to-block", type=int, default=None)
    p.add_argument("--model", help="only this model (hub ref or 0x id)")
    p.add_argument("--batch", action="append", default=[], help="only this batch id")
    p.add_argument("--requester", help="only this requester address")
    p.add_argument("--sample-rate", type=float, default=0.01)
    chain_option(p)

    stake = groups.add_parser("stake", help="node staking").add_subparsers(
        dest="command", required=True
    )
    p = add(stake, "register", _stake, "register a node with stake (idempotent)")
    p.add_argument("--role", choices=["inference", "verifier"], required=True)
    p.add_argument("--amount", required=True, help="e.g. 10000opg")
    p.add_argument("--key", required=True)
    p.add_argument("--attester-key", help="enclave key bound to an inference node")
    p.add_argument("--measurement", help="the enclave's measurement (runtime id)")
    chain_option(p)
    p = add(stake, "delegate", _stake, "delegate stake to a node")
    p.add_argument("node")
    p.add_argument("amount")
    p.add_argument("--key", required=True)
    chain_option(p)
    p = add(stake, "show", _stake, "a node's role, binding and stake")
    p.add_argument("node", help="address or key name")
    chain_option(p)
