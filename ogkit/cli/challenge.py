"""``ogkit challenge ARTIFACT ROW --key NAME`` and ``ogkit challenge --watch --key NAME``.

One row: re-execute it, and if it differs from its receipt, challenge it on chain
(commit, then reveal; the contract's bond is posted). ``--watch``: a daemon that
re-executes a secret sample of every committed batch and challenges the first wrong row
(docs/network.md).
"""

from __future__ import annotations

import argparse
import logging
import signal

from ogkit.cli.common import add_command, chain_option, print_json
from ogkit.errors import ConfigError
from ogkit.settings import Settings

__all__ = ["register"]


def _challenge(args: argparse.Namespace, settings: Settings) -> int:
    from ogkit.keys import KeyStore
    from ogkit.store import ContentStore

    signer = KeyStore(settings.home).load(args.key)
    store = ContentStore(settings.store)
    if args.watch:
        if args.artifact is not None:
            raise ConfigError("--watch takes no ARTIFACT ROW: it watches every commit")
        return _watch(args, settings, signer, store)
    if args.artifact is None or args.row is None:
        raise ConfigError("give ARTIFACT ROW to challenge one row, or --watch")
    from ogkit.batch import load_batch
    from ogkit.chain.connection import connect_from_settings
    from ogkit.network.challenger import challenge

    chain = connect_from_settings(settings, args.chain)
    result = challenge(chain, load_batch(args.artifact, store), args.row, challenger=signer)
    if args.json:
        print_json({"schema": "ogkit.challenge.v1", **result.to_dict()})
    else:
        print(
            f"challenged row {result.row} of {result.batch_id}: dispute {result.dispute_id} "
            f"({result.why}); verifiers vote with `ogkit dispute vote {result.batch_id} "
            "--upheld --key VERIFIER`"
        )
    return 0


def _watch(args: argparse.Namespace, settings: Settings, signer, store) -> int:
    from ogkit.hub import Hub
    from ogkit.network.challenger import ChallengerDaemon
    from ogkit.network.daemon import WatchConfig, rpc_connector

    logging.getLogger("ogkit.network").setLevel(logging.INFO)
    daemon = ChallengerDaemon(
        rpc_connector(args.chain or settings.chain, settings.home, settings.devnet_port),
        signer,
        settings.home,
        store,
        sample_rate=args.sample_rate,
        watch=WatchConfig(
            poll=args.poll, from_block=args.from_block, confirmations=args.confirmations
        ),
        hub=Hub(settings.store, home=settings.home),
    )
    stop = lambda *_: daemon.stop()  # noqa: E731 - a signal handler
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if not args.json:
        print(f"ogkit challenger {args.key} ({signer.address}) watching", flush=True)
    state = daemon.run(max_polls=args.max_polls)
    doc = state.to_dict() if state is not None else {}
    if args.json:
        print_json({"schema": "ogkit.challenger.stopped.v1", **doc})
    else:
        print(f"ogkit challenger stopped: {doc.get('challenges', 0)} challenges")
    return 0


def register(groups) -> None:
    p = add_command(
        groups, "challenge", _challenge, "challenge a wrong row, or watch commits (--watch)"
    )
    p.add_argument("artifact", nargs="?", help="artefact id (0x…) or manifest path")
    p.add_argument("row", nargs="?", type=int, help="the row index to challenge")
    p.add_argument("--key", required=True, help="the challenger's key (holds the bond in OPG)")
    p.add_argument("--watch", action="store_true", help="watch commits and challenge")
    p.add_argument(
        "--sample-rate", type=float, default=0.05, help="with --watch: share of rows re-run"
    )
    p.add_argument("--poll", type=float, default=1.0, help="with --watch: seconds between polls")
    p.add_argument("--from-block", type=int, default=None, help="with --watch: start here")
    p.add_argument(
        "--confirmations",
        type=int,
        default=0,
        help="stay this many blocks behind the head (chains that reorganise; default 0)",
    )
    p.add_argument("--max-polls", type=int, default=None, help=argparse.SUPPRESS)
    chain_option(p)
