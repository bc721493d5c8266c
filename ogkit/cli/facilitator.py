"""``ogkit facilitator serve``: a local x402 facilitator (``/verify``, ``/settle``,
``/supported``) for ``exact`` payments in OPG, paying gas from its key.

Once it accepts connections it prints ``ogkit facilitator listening on http://HOST:PORT``
(port 0 picks a free port); logs go to stderr; SIGTERM/SIGINT stop it cleanly.
"""

from __future__ import annotations

import argparse
import json
import sys

from ogkit.settings import Settings

__all__ = ["register"]


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    from ogkit.chain.connection import connect_from_settings
    from ogkit.keys import KeyStore
    from ogkit.node.server import bind, serve_app
    from ogkit.x402.facilitator import Facilitator
    from ogkit.x402.server import create_app

    signer = KeyStore(settings.home).load(args.key)
    chain = connect_from_settings(settings, args.rpc or args.chain)
    sock = bind(args.host, args.port)
    try:
        serve_app(
            create_app(Facilitator(chain, signer)),
            sock,
            on_ready=lambda url: _ready(url, args.json),
        )
    finally:
        sock.close()
    print("ogkit facilitator stopped", file=sys.stderr)
    return 0


def _ready(url: str, as_json: bool) -> None:
    """The one stdout line a supervisor waits for: text, or with ``--json`` a document."""
    if as_json:
        print(json.dumps({"schema": "ogkit.facilitator.listening.v1", "url": url}), flush=True)
    else:
        print(f"ogkit facilitator listening on {url}", flush=True)


def register(groups) -> None:
    p = groups.add_parser("facilitator", help="run a local x402 facilitator (verify, settle)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    s = sub.add_parser(
        "serve",
        help="serve /verify, /settle and /supported until SIGTERM/SIGINT",
        description=__doc__.split("\n\n")[0],
    )
    s.set_defaults(handler=_serve)
    s.add_argument("--json", action="store_true", help="the ready line as a JSON document")
    s.add_argument("--key", required=True, help="the key that submits payments (pays gas)")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=0, help="TCP port (default 0: a free port)")
    s.add_argument("--rpc", help="chain RPC URL (default $OGKIT_CHAIN, else the devnet)")
    s.add_argument("--chain", default=None, help=argparse.SUPPRESS)
