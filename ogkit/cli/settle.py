"""``ogkit settle ARTIFACT | status``: move a batch's settlement forward on chain."""

from __future__ import annotations

import argparse

from ogkit.cli.common import add_command, chain_option, print_json
from ogkit.settings import Settings

__all__ = ["register"]


def _settle(args: argparse.Namespace, settings: Settings) -> int:
    from ogkit.batch import load_batch
    from ogkit.chain.connection import connect_from_settings
    from ogkit.keys import KeyStore
    from ogkit.settle import SettlementJournal, settle
    from ogkit.store import ContentStore

    chain = connect_from_settings(settings, args.chain)
    journal = SettlementJournal(chain.chain_id, settings.home)
    if args.target == "status":
        records = [r.to_dict() for r in journal.all()]
        if args.json:
            print_json(
                {
                    "schema": "ogkit.settle.status.v1",
                    "chain_id": chain.chain_id,
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
    batch = load_batch(args.target, ContentStore(settings.store))
    node = KeyStore(settings.home).load(args.node_key)
    record = settle(batch, chain, node=node, journal=journal, finalize=not args.no_finalize)
    if args.json:
        print_json({"schema": "ogkit.settle.v1", **record.to_dict()})
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


def register(groups) -> None:
    p = add_command(groups, "settle", _settle, "settle an attested batch, or `settle status`")
    p.add_argument("target", help="artefact id / manifest path, or the word 'status'")
    p.add_argument("--node-key", default="node", help="inference node key (default: node)")
    p.add_argument("--no-finalize", action="store_true", help="commit only")
    chain_option(p)
