"""``ogkit dispute show | vote | resolve | claim``: a batch's dispute from the CLI.

``vote BATCH --upheld|--rejected --key VERIFIER`` casts a staked verifier's vote;
``resolve BATCH`` closes a dispute whose voting time passed with the batch's signed
verdicts; ``claim BATCH --key VERIFIER`` takes a verifier's share of the fee after an
upheld dispute; ``defend --key NODE [--watch]`` presents the pass verdicts held for every
dispute on the node's batches whose voting time is over, and finalises them after their
window (:class:`ogkit.node.defence.DisputeDefender`).
"""

from __future__ import annotations

import argparse

from ogkit.cli.common import add_command, chain_option, opg_text, print_json
from ogkit.settings import Settings

__all__ = ["register"]


def _dispute(args: argparse.Namespace, settings: Settings) -> int:
    from ogkit.chain.connection import connect_from_settings
    from ogkit.keys import KeyStore
    from ogkit.network.disputes import claim_dispute_reward, dispute_info, resolve_dispute
    from ogkit.store import ContentStore

    chain = connect_from_settings(settings, args.chain)
    batch_id = _batch_id(args.batch)
    store = ContentStore(settings.store)
    doc: dict = {}
    if args.command == "vote":
        from ogkit.settle import vote_dispute

        verifier = KeyStore(settings.home).load(args.key)
        vote_dispute(chain, batch_id, upheld=args.upheld, verifier=verifier)
        doc = {"voted": "upheld" if args.upheld else "rejected", "verifier": verifier.address}
    elif args.command == "resolve":
        sender = KeyStore(settings.home).load(args.key)
        doc = {"resolved": resolve_dispute(chain, batch_id, sender=sender, store=store)}
    elif args.command == "claim":
        verifier = KeyStore(settings.home).load(args.key)
        amount = claim_dispute_reward(chain, batch_id, verifier=verifier)
        doc = {"claimed": amount, "verifier": verifier.address}
    info = dispute_info(chain, batch_id)
    if args.json:
        print_json({"schema": "ogkit.dispute.v1", **doc, **info.to_dict()})
        return 0
    if "voted" in doc:
        print(f"{doc['verifier']} voted {doc['voted']}")
    if "claimed" in doc:
        print(f"{doc['verifier']} claimed {opg_text(doc['claimed'])} (into its stake pool)")
    if info.dispute_id == 0:
        print(f"batch {batch_id} is {info.status}; it has never been disputed")
        return 0
    print(
        f"batch {batch_id} is {info.status}; dispute {info.dispute_id} on row {info.row} by "
        f"{info.challenger}: {info.outcome}"
    )
    total = info.total_stake or 1
    print(
        f"  upheld {opg_text(info.upheld_stake)} ({info.upheld_stake / total:.0%}), rejected "
        f"{opg_text(info.rejected_stake)} ({info.rejected_stake / total:.0%}) of "
        f"{opg_text(info.total_stake)} verifier stake"
    )
    for v in info.votes:
        print(f"  - {v['verifier']}: {'upheld' if v['upheld'] else 'rejected'}")
    return 0


def _defend(args: argparse.Namespace, settings: Settings) -> int:
    import signal
    import threading

    from ogkit.chain.connection import connect_from_settings
    from ogkit.errors import ConfigError
    from ogkit.keys import KeyStore
    from ogkit.node.defence import DisputeDefender
    from ogkit.settle import SettlementJournal
    from ogkit.store import ContentStore

    if args.interval <= 0:
        raise ConfigError(f"--interval must be > 0 seconds, got {args.interval}")
    node = KeyStore(settings.home).load(args.key)
    chain = connect_from_settings(settings, args.chain)
    defender = DisputeDefender(
        chain,
        node,
        ContentStore(settings.store),
        journal=SettlementJournal(chain.chain_id, settings.home),
        finalize=not args.no_finalize,
    )
    if not args.watch:
        actions = defender.step()  # a chain that is down: the ChainError names it
        if args.json:
            print_json(
                {
                    "schema": "ogkit.dispute.defend.v1",
                    "node": node.address,
                    "watched": defender.watched,
                    "actions": [a.to_dict() for a in actions],
                }
            )
            return 0
        _print_actions(actions)
        if not actions:
            print(f"nothing to do: no open dispute or finalisable batch of node {node.address}")
        return 0
    stop = threading.Event()
    seen: dict[str, tuple[str, str]] = {}
    said_error: list[str | None] = [None]

    def show(actions: list) -> None:
        if defender.last_error and defender.last_error != said_error[0]:
            print(f"chain unavailable: {defender.last_error}; backing off", flush=True)
        said_error[0] = defender.last_error
        fresh = [a for a in actions if seen.get(a.batch_id) != (a.action, a.detail)]
        for a in fresh:
            seen[a.batch_id] = (a.action, a.detail)
        if args.json:
            for a in fresh:
                print_json({"schema": "ogkit.dispute.defend.action.v1", **a.to_dict()})
        else:
            _print_actions(fresh)

    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print(f"defending the batches of node {node.address} every {args.interval:g} s", flush=True)
    try:
        defender.run(stop, args.interval, show)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0


def _print_actions(actions: list) -> None:
    for a in actions:
        tx = f" (tx {a.tx})" if a.tx else ""
        print(f"batch {a.batch_id} {a.status}: {a.action}: {a.detail}{tx}", flush=True)


def _batch_id(text: str) -> str:
    from ogkit.errors import ConfigError

    body = text.strip().lower().removeprefix("0x")
    if len(body) != 64 or any(c not in "0123456789abcdef" for c in body):
        raise ConfigError(f"{text!r} is not a batch id (0x + 64 hex digits)")
    return "0x" + body


def register(groups) -> None:
    sub = groups.add_parser("dispute", help="a batch's dispute").add_subparsers(
        dest="command", required=True
    )
    p = add_command(sub, "show", _dispute, "show a batch's dispute and its votes")
    p.add_argument("batch", help="batch id")
    chain_option(p)
    p = add_command(sub, "vote", _dispute, "vote on a batch's open dispute")
    p.add_argument("batch", help="batch id")
    side = p.add_mutually_exclusive_group(required=True)
    side.add_argument("--upheld", dest="upheld", action="store_true", help="the row is wrong")
    side.add_argument("--rejected", dest="upheld", action="store_false", help="the row is right")
    p.add_argument("--key", required=True, help="a staked verifier key")
    chain_option(p)
    p = add_command(sub, "resolve", _dispute, "close a dispute after its voting time")
    p.add_argument("batch", help="batch id")
    p.add_argument("--key", required=True, help="the key that sends the transaction")
    chain_option(p)
    p = add_command(
        sub,
        "defend",
        _defend,
        "present the held pass verdicts on disputes of the node's batches past their voting "
        "time, and finalise them after their window",
    )
    p.add_argument("--key", required=True, help="the node's key (the batches it committed)")
    p.add_argument("--watch", action="store_true", help="keep defending until SIGINT/SIGTERM")
    p.add_argument("--interval", type=float, default=10.0, help="seconds between passes")
    p.add_argument("--no-finalize", action="store_true", help="defend disputes only")
    chain_option(p)
    p = add_command(sub, "claim", _dispute, "claim a verifier's reward after an upheld dispute")
    p.add_argument("batch", help="batch id")
    p.add_argument("--key", required=True, help="the verifier key")
    chain_option(p)
