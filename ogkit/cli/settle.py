"""``ogkit settle ARTIFACT | status | allow``: move a batch's settlement forward on chain,
say where each stands, or let the settlement contract escrow a requester's OPG."""

from __future__ import annotations

import argparse

from ogkit.cli.common import add_command, chain_option, parse_amount, print_json
from ogkit.errors import ConfigError, SettlementError
from ogkit.settings import Settings

__all__ = ["register"]


def _allow(args: argparse.Namespace, settings: Settings) -> int:
    """ERC-20 ``approve``: the settlement contract may take up to ``--amount`` of the
    requester's OPG (a commit escrows the batch's price from it)."""
    from ogkit.chain.connection import connect_from_settings
    from ogkit.keys import KeyStore
    from ogkit.settle import format_opg

    if args.amount is None:
        raise ConfigError("say how much: `ogkit settle allow --key requester --amount 1000opg`")
    amount = parse_amount(args.amount)
    if amount < 0:
        raise ConfigError(f"--amount must be >= 0, got {args.amount!r}")
    key = args.key or "requester"
    owner = KeyStore(settings.home).load(key)
    chain = connect_from_settings(settings, args.chain)
    token = chain.contract("OPGToken")
    spender = chain.contract("InferenceSettlement").address
    before = int(chain.call(token.functions.allowance(owner.address, spender)))
    tx = None
    if before != amount:
        receipt = chain.transact(token.functions.approve(spender, amount), owner)
        tx = "0x" + bytes(receipt["transactionHash"]).hex()
    balance = int(chain.call(token.functions.balanceOf(owner.address)))
    if args.json:
        print_json(
            {
                "schema": "ogkit.settle.allow.v1",
                "chain": chain.name,
                "chain_id": chain.chain_id,
                "key": key,
                "owner": owner.address,
                "spender": spender,
                "previous_allowance": before,
                "allowance": amount,
                "balance": balance,
                "tx": tx,
            }
        )
    else:
        state = "now allows" if tx else "already allowed"
        print(
            f"{key} ({owner.address}) {state} the settlement contract {spender} on "
            f"{chain.name} to escrow {format_opg(amount)} OPG; it holds {format_opg(balance)} OPG"
        )
    return 0


def _payouts(args: argparse.Namespace, settings: Settings) -> int:
    """``withdraw``: a model owner takes its model payments; ``fees``: a node's or a
    verifier's accrued fees go into its stake pool (delegators share them)."""
    from ogkit.chain.connection import connect_from_settings
    from ogkit.keys import KeyStore
    from ogkit.settle import format_opg

    key = args.key or ("owner" if args.target == "withdraw" else "node")
    signer = KeyStore(settings.home).load(key)
    chain = connect_from_settings(settings, args.chain)
    settlement = chain.contract("InferenceSettlement")
    if args.target == "withdraw":
        amount = int(chain.call(settlement.functions.owed(signer.address)))
        fn = settlement.functions.withdraw()
        what = "withdrew"
    else:
        amount = int(chain.call(settlement.functions.nodeFees(signer.address)))
        fn = settlement.functions.claimNodeFees(signer.address)
        what = "paid into its stake pool"
    tx = None
    if amount:
        receipt = chain.transact(fn, signer)
        tx = "0x" + bytes(receipt["transactionHash"]).hex()
    if args.json:
        print_json(
            {
                "schema": f"ogkit.settle.{args.target}.v1",
                "chain_id": chain.chain_id,
                "key": key,
                "account": signer.address,
                "amount": amount,
                "tx": tx,
            }
        )
    elif amount:
        print(f"{key} ({signer.address}) {what} {format_opg(amount)} OPG on {chain.name}: {tx}")
    else:
        print(f"{key} ({signer.address}) has nothing to claim on {chain.name}")
    return 0


def _settle(args: argparse.Namespace, settings: Settings) -> int:
    if args.target == "allow":
        return _allow(args, settings)
    if args.target in ("withdraw", "fees"):
        return _payouts(args, settings)
    if args.amount is not None or args.key is not None:
        raise ConfigError(
            "--key and --amount belong to `ogkit settle allow` (the inference node's key "
            "is --node-key)"
        )
    from ogkit.chain.connection import connect_from_settings
    from ogkit.keys import KeyStore
    from ogkit.llm.batch import load_any_batch
    from ogkit.settle import SettlementJournal, format_opg, settle, settlement_progress
    from ogkit.store import ContentStore

    chain = connect_from_settings(settings, args.chain)
    journal = SettlementJournal(chain.chain_id, settings.home)
    if args.target == "status":
        records = [r.to_dict() for r in journal.all()]
        for r in records:
            r["progress"] = settlement_progress(
                chain, r["batch_id"], r["artifact_id"], store=ContentStore(settings.store)
            ).to_dict()
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
    from ogkit.order import SignedOrder, load_order

    batch = load_any_batch(args.target, ContentStore(settings.store))  # tabular or chat
    keys = KeyStore(settings.home)
    node = keys.load(args.node_key)
    order = None
    if args.order is not None:
        order = load_order(args.order)
        if not isinstance(order, SignedOrder):
            raise ConfigError(
                f"{args.order} is not signed; the requester signs it with "
                f"`ogkit order sign {args.order} --key REQUESTER`"
            )
    try:
        record = settle(
            batch, chain, node=node, order=order, journal=journal, finalize=not args.no_finalize
        )
    except SettlementError as exc:
        # The library cannot know the requester's key name; this home may.
        names = [k.name for k in keys.list() if k.address.lower() == batch.claim.requester.lower()]
        if not names or "--key REQUESTER" not in str(exc):
            raise
        message = str(exc).replace("--key REQUESTER", f"--key {names[0]}")
        message = message.replace(" with the requester's key (REQUESTER)", "")
        raise SettlementError(message, reason=exc.reason, tx_hash=exc.tx_hash) from None
    defence = None
    if record.status == "disputed":  # past its voting time: present the pass verdicts held
        from ogkit.chain.records import onchain_batch
        from ogkit.node.defence import defend_dispute

        found = onchain_batch(chain, record.batch_id)
        defence = defend_dispute(chain, found, node=node, store=batch.store) if found else None
    progress = settlement_progress(chain, record.batch_id, record.artifact_id, store=batch.store)
    if args.json:
        print_json(
            {"schema": "ogkit.settle.v1", **record.to_dict(), "progress": progress.to_dict()}
            | ({"defence": defence.to_dict()} if defence is not None else {})
        )
    else:
        if defence is not None:
            print(f"batch {record.batch_id}: {defence.action}: {defence.detail}")
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
    p = add_command(
        groups,
        "settle",
        _settle,
        "settle an attested batch; `settle status`; `settle allow --key KEY --amount N` "
        "(let the settlement contract escrow a requester's OPG); `settle withdraw --key OWNER` "
        "(model payments); `settle fees --key NODE` (a node's or verifier's fees, into its pool)",
    )
    p.add_argument(
        "target",
        help="artefact id / manifest path, or the word 'status', 'allow', 'withdraw' or 'fees'",
    )
    p.add_argument("--node-key", default="node", help="inference node key (default: node)")
    p.add_argument(
        "--order",
        help="the requester's signed job order (`ogkit order new`); needed to commit",
    )
    p.add_argument("--no-finalize", action="store_true", help="commit only")
    p.add_argument(
        "--key",
        help="allow: the requester's key (default requester); withdraw: the model owner's "
        "(default owner); fees: the node's or verifier's (default node)",
    )
    p.add_argument(
        "--amount",
        help="allow: the OPG the settlement contract may escrow, base units or 1000opg "
        "(ERC-20 approve: replaces the allowance)",
    )
    chain_option(p)
