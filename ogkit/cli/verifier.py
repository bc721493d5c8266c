"""``ogkit verifier run``: the verifier daemon (docs/network.md).

It watches the settlement contract's commits from a block it remembers, verifies each
batch with its own secret sample, attests on chain and votes on disputes, until SIGTERM
or Ctrl-C. Its state (cursor, batches done, last error) is in
``<home>/network/verifier/<address>-<chain id>.json``; ``ogkit network status`` shows it.
"""

from __future__ import annotations

import argparse
import logging
import signal

from ogkit.cli.common import add_command, chain_option, print_json
from ogkit.settings import Settings

__all__ = ["register"]


def _run(args: argparse.Namespace, settings: Settings) -> int:
    from ogkit.hub import Hub
    from ogkit.keys import KeyStore
    from ogkit.network.daemon import WatchConfig, rpc_connector
    from ogkit.network.verifier import VerifierConfig, VerifierDaemon
    from ogkit.store import ContentStore

    logging.getLogger("ogkit.network").setLevel(logging.INFO)
    signer = KeyStore(settings.home).load(args.key)
    daemon = VerifierDaemon(
        rpc_connector(args.chain or settings.chain, settings.home, settings.devnet_port),
        signer,
        settings.home,
        ContentStore(settings.store),
        config=VerifierConfig(
            sample_rate=args.sample_rate,
            max_ulp=args.max_ulp,
            publish=not args.no_publish,
            vote=not args.no_vote,
            missing_polls=args.missing_polls,
            timeout=args.timeout,
            memory_bytes=args.memory_mb * 2**20 if args.memory_mb else None,
        ),
        watch=WatchConfig(
            poll=args.poll,
            backoff_cap=args.backoff_cap,
            from_block=args.from_block,
            confirmations=args.confirmations,
        ),
        hub=Hub(settings.store, home=settings.home),
    )
    stop = lambda *_: daemon.stop()  # noqa: E731 - a signal handler
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if not args.json:
        print(f"ogkit verifier {args.key} ({signer.address}) running", flush=True)
    state = daemon.run(max_polls=args.max_polls)
    doc = state.to_dict() if state is not None else {}
    if args.json:
        print_json({"schema": "ogkit.verifier.stopped.v1", **doc})
    else:
        done = len(doc.get("done", {}))
        print(f"ogkit verifier {args.key} stopped at block {doc.get('next_block')}: {done} done")
    return 0


def register(groups) -> None:
    sub = groups.add_parser("verifier", help="the verifier daemon").add_subparsers(
        dest="command", required=True
    )
    p = add_command(sub, "run", _run, "watch commits, verify, attest and vote until SIGTERM")
    p.add_argument("--key", required=True, help="the staked verifier key")
    p.add_argument("--from-block", type=int, default=None, help="(re)start reading here")
    p.add_argument(
        "--sample-rate", type=float, default=0.05, help="share of rows re-executed (default 5%%)"
    )
    p.add_argument("--max-ulp", type=int, default=0, help="float tolerance in ULP (default 0)")
    p.add_argument("--poll", type=float, default=1.0, help="seconds between polls (default 1)")
    p.add_argument(
        "--backoff-cap", type=float, default=30.0, help="longest pause after failures (s)"
    )
    p.add_argument(
        "--missing-polls",
        type=int,
        default=8,
        help="polls an absent artefact is waited for before a fail verdict (default 8: "
        "about a minute with the back-off)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=1800.0,
        help="seconds one batch's verification may take before it fails (default 1800)",
    )
    p.add_argument(
        "--memory-mb", type=int, default=None, help="memory limit of the verification worker"
    )
    p.add_argument("--no-publish", action="store_true", help="keep verdicts in the store only")
    p.add_argument("--no-vote", action="store_true", help="do not vote on disputes")
    p.add_argument(
        "--confirmations",
        type=int,
        default=0,
        help="stay this many blocks behind the head (chains that reorganise; default 0)",
    )
    p.add_argument("--max-polls", type=int, default=None, help=argparse.SUPPRESS)
    chain_option(p)
