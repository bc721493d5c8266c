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
    from ogkit.settle import SettlementJournal, format_opg, settle, settlement_progress
    from ogkit.store import ContentStore

    chain = connect_from_settings(settings, args.chain)
    journal = SettlementJournal(chain.chain_id, settings.home)
    if args.target == "status":
        records = [r.to_dict() for r in journal.all()]
        for r in records:
            r["progress"] = settlement_progress(chain, r["batch_id"], r["artifact_id"]).to_dict()
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
                p = r["progress"]
                print(f"{r['batch_id'][:18]}…  {p['status']:10} commit block {r['commit_block']}")
                if r.get("refunded") is not None:
                    print(f"  expired, requester refunded {format_opg(r['refunded'])} OPG")
                print(f"  waiting for: {p['waiting_for']}")
                if p["next_command"]:
                    print(f"  next: {p['next_command']}")
            if not records:
                print("no settlements recorded on this machine for this chain")
        return 0
    batch = load_batch(args.target, ContentStore(settings.store))
    node = KeyStore(settings.home).load(args.node_key)
    record = settle(batch, chain, node=node, journal=journal, finalize=not args.no_finalize)
    progress = settlement_progress(chain, record.batch_id, record.artifact_id)
    if args.json:
        print_json(
            {"schema": "ogkit.settle.v1", **record.to_dict(), "progress": progress.to_dict()}
        )
    else:
        if record.expire_tx:
            print(
                f"batch {record.batch_id}: expired, requester refunded "
                f"{format_opg(record.refunded or 0)} OPG"
            )
        else:
            print(f"batch {record.batch_id}: {record.status}")
        if record.commit_tx:
            print(f"  commit   {record.commit_tx} (block {record.commit_block})")
        if record.finalize_tx:
            print(f"  finalize {record.finalize_tx} (block {record.finalize_block})")
        if record.expire_tx:
            print(f"  expire   {record.expire_tx} (block {record.expire_block})")
        if progress.status not in ("finalized", "slashed", "refunded"):
            print(f"  waiting for: {progress.waiting_for}")
            if progress.next_command:
                print(f"  next: {progress.next_command}")
    return 0


def register(groups) -> None:
    p = add_command(groups, "settle", _settle, "settle an attested batch, or `settle status`")
    p.add_argument("target", help="artefact id / manifest path, or the word 'status'")
    p.add_argument("--node-key", default="node", help="inference node key (default: node)")
    p.add_argument("--no-finalize", action="store_true", help="commit only")
    chain_option(p)
