"""``ogkit network up | down | status``: the devnet, the x402 facilitator, an inference node
and three verifier daemons as separate processes on localhost (docs/network.md)."""

from __future__ import annotations

import argparse
import sys

from ogkit.cli.common import add_command, print_json
from ogkit.settings import Settings

__all__ = ["register"]


def _up(args: argparse.Namespace, settings: Settings) -> int:
    from ogkit.network.supervisor import NetworkPlan, network_up

    env = {"OGKIT_STORE": settings.store} if args.store else {}
    doc = network_up(
        settings.home,
        NetworkPlan(
            model=args.model,
            verifiers=args.verifiers,
            node_workers=args.workers,
            sample_rate=args.sample_rate,
            poll=args.poll,
            data_roots=tuple(args.data_root),
            env=env,
        ),
        devnet_port=settings.devnet_port,
        on_step=lambda text: print(f"  {text}", file=sys.stderr, flush=True),
    )
    if args.json:
        print_json(doc)
        return 0
    print(f"chain        {doc['chain']} (chain {doc['chain_id']})")
    print(f"facilitator  {doc['facilitator']}")
    print(f"node         {doc['node']} serving {doc['model']}")
    for p in doc["processes"]:
        print(f"  {p['name']:<12} pid {p['pid']:<8} log {p['log']}")
    print("stop everything with `ogkit network down`; watch it with `ogkit network status`")
    return 0


def _down(args: argparse.Namespace, settings: Settings) -> int:
    from ogkit.network.supervisor import network_down

    stopped = network_down(
        settings.home, keep_chain=args.keep_chain, devnet_port=settings.devnet_port
    )
    if args.json:
        print_json({"schema": "ogkit.network.down.v1", "stopped": stopped})
    else:
        print(f"stopped {', '.join(stopped)}" if stopped else "nothing was running")
    return 0


def _status(args: argparse.Namespace, settings: Settings) -> int:
    from ogkit.network.supervisor import network_status

    doc = network_status(settings.home, devnet_port=settings.devnet_port)
    if args.json:
        print_json(doc)
        return 0
    d = doc["devnet"]
    print(f"devnet  {'running' if d['running'] else 'stopped'}  {d['url']}  block {d['block']}")
    for p in doc["processes"]:
        state = "running" if p["running"] else "STOPPED"
        health = p["detail"].get("health")
        extra = (
            f"  health {health.get('status', health) if isinstance(health, dict) else health}"
            if health
            else ""
        )
        print(f"{p['name']:<12} {state:<8} pid {p['pid']:<8} {p['url'] or ''}{extra}")
    for v in doc["daemons"]:
        error = f"  last error: {v['last_error']}" if v.get("last_error") else ""
        read = (v.get("next_block") or 1) - 1
        print(
            f"{v['role']:<10} {v.get('name') or v.get('address', '?')}  "
            f"{'up' if v.get('running') else 'down'}  read to block {read} of "
            f"{v.get('last_block')}  verified "
            f"{v.get('batches_verified', 0)}  failed {v.get('batches_failed', 0)}  votes "
            f"{v.get('votes', 0)}  polled {v.get('seconds_since_poll')} s ago{error}"
        )
    return 0


def register(groups) -> None:
    sub = groups.add_parser("network", help="the whole network on localhost").add_subparsers(
        dest="command", required=True
    )
    p = add_command(sub, "up", _up, "start devnet, facilitator, node and verifier daemons")
    p.add_argument("--model", default="tab@1.0.0", help="the model the node serves")
    p.add_argument("--verifiers", type=int, default=3, help="verifier daemons (default 3)")
    p.add_argument("--workers", type=int, default=1, help="the node's Dask workers (default 1)")
    p.add_argument("--sample-rate", type=float, default=0.05, help="verifiers' sample rate")
    p.add_argument("--poll", type=float, default=1.0, help="verifiers' poll period (s)")
    p.add_argument(
        "--data-root", action="append", default=[], help="a folder jobs may read data from"
    )
    p = add_command(sub, "down", _down, "stop everything `network up` started")
    p.add_argument("--keep-chain", action="store_true", help="leave the devnet running")
    add_command(sub, "status", _status, "processes, daemons' progress, node health")
