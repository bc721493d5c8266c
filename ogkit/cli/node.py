"""``ogkit node serve``: the inference node over HTTP (x402-paid inference with a receipt
per row, batch jobs from signed orders, health and metrics), until SIGTERM or SIGINT.

A language model (a hub bundle tagged ``llm``, ``ogkit chat build-tiny``) is served as
OpenAI's ``POST /v1/chat/completions`` behind the same x402 payments, one call at the
model's price per row.

Once it accepts connections it prints ``ogkit node listening on http://HOST:PORT`` (port
0 picks a free port); logs go to stderr. On SIGTERM/SIGINT it answers the requests in
flight, stops its job threads and its Dask LocalCluster, and exits 0. See docs/node.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ogkit.errors import ConfigError
from ogkit.settings import Settings

__all__ = ["register"]


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    from ogkit.chain.connection import connect_from_settings
    from ogkit.hub import Hub
    from ogkit.keys import KeyStore
    from ogkit.node.app import create_app
    from ogkit.node.server import bind, serve_app
    from ogkit.node.service import open_node

    if args.max_rows < 1:
        raise ConfigError(f"--max-rows must be >= 1, got {args.max_rows}")
    keys = KeyStore(settings.home)
    node = keys.load(args.key)
    attester = keys.load(args.attester_key) if args.attester_key else node
    chain = connect_from_settings(settings, args.rpc or args.chain)
    hub = Hub(settings.store, home=settings.home)
    sock = bind(args.host, args.port)
    workers = args.workers if args.workers is not None else settings.workers
    scheduler = args.scheduler or settings.scheduler
    dask = None
    service = None
    try:
        if scheduler or workers != 0:
            from ogkit.compute import get_client

            dask = get_client(scheduler, n_workers=workers or 1)
        service = open_node(
            home=settings.home,
            hub=hub,
            store=hub.store,
            model_ref=args.model,
            node=node,
            attester_signer=attester,
            chain=chain,
            dask=dask,
            facilitator_url=args.facilitator,
            max_rows=args.max_rows,
            data_roots=[Path(p) for p in args.data_root],
            poll=args.poll,
            state_dir=Path(args.state) if args.state else None,
            max_tokens=args.max_tokens,
        )
        serve_app(
            create_app(service, read_timeout=args.read_timeout),
            sock,
            on_ready=lambda url: _ready(url, args.json),
            header_timeout=args.read_timeout,
        )
    finally:
        if service is not None:
            service.close()
        if dask is not None:
            dask.close()
        sock.close()
    print("ogkit node stopped", file=sys.stderr)
    return 0


def _ready(url: str, as_json: bool) -> None:
    """The one stdout line a supervisor waits for: text, or with ``--json`` a document."""
    if as_json:
        print(json.dumps({"schema": "ogkit.node.listening.v1", "url": url}), flush=True)
    else:
        print(f"ogkit node listening on {url}", flush=True)


def register(groups) -> None:
    p = groups.add_parser("node", help="run an inference node (x402-paid HTTP API, batch jobs)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    s = sub.add_parser(
        "serve",
        help="serve a model over HTTP until SIGTERM/SIGINT",
        description=__doc__.split("\n\n")[0],
    )
    s.set_defaults(handler=_serve)
    s.add_argument("--json", action="store_true", help="the ready line as a JSON document")
    s.add_argument("--key", required=True, help="the node's key (payee, commits jobs)")
    s.add_argument("--model", required=True, help="the hub model to serve (name@version or id)")
    s.add_argument("--attester-key", help="the key that signs claims (default: --key)")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=0, help="TCP port (default 0: a free port)")
    s.add_argument("--workers", type=int, default=None, help="LocalCluster workers (default 1)")
    s.add_argument("--scheduler", help="Dask scheduler address (default $OGKIT_SCHEDULER)")
    s.add_argument("--rpc", help="chain RPC URL (default $OGKIT_CHAIN, else the devnet)")
    s.add_argument("--chain", default=None, help=argparse.SUPPRESS)
    s.add_argument(
        "--facilitator", help="x402 facilitator URL (default: settle in-process, node pays gas)"
    )
    s.add_argument("--max-rows", type=int, default=256, help="rows one paid call may hold")
    s.add_argument(
        "--max-tokens",
        type=int,
        default=256,
        help="a chat model's limit on max_tokens of one paid call (POST /v1/chat/completions)",
    )
    s.add_argument(
        "--data-root",
        action="append",
        default=[],
        help="a folder jobs may read datasets from (besides the store); repeatable",
    )
    s.add_argument("--poll", type=float, default=2.0, help="finaliser period in seconds")
    s.add_argument(
        "--read-timeout",
        type=float,
        default=10.0,
        help="seconds a request's headers, and then its body, may take to arrive (slower: "
        "the connection is closed, or 408)",
    )
    s.add_argument(
        "--state", help="folder for job records and the payment ledger (default <home>/node)"
    )
