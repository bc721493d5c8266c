"""Load on the paid inference node: N concurrent x402-paid requests (default 200).

Starts its own devnet (anvil), publishes and registers the sample tabular model, stakes the
node, funds P payers with OPG only (no ETH), then runs ``ogkit facilitator serve`` and
``ogkit node serve`` as separate processes on free ports. Measured in the same run:

- **unpaid baseline**: N concurrent requests without payment, each answered 402 with the
  payment requirements (HTTP, request checks, the registry price);
- **compute baseline**: the same rows through the verified pipeline in this process, one
  call after another (what the node does per call, without HTTP or payment);
- **paid**: N concurrent requests, each 402 → sign an EIP-3009 authorization → retry.

Prints throughput, p50/p99 latency and the ratios paid/unpaid and paid/compute, and checks
that every request was answered or refused with a reason and that nothing was charged
twice: every payer's OPG went down by exactly (its answered calls) × price, the node's
went up by the sum, and every answered call has its own settlement transaction.

    .venv/bin/python bench/bench_node.py [--requests 200] [--payers 20] [--rows 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np

OPG = 10**18
PRICE = 10**15


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start(args: list[str], env: dict[str, str], log: Path) -> tuple[subprocess.Popen, str]:
    handle = open(log, "a")  # noqa: SIM115 - the process keeps it
    proc = subprocess.Popen(
        [sys.executable, "-m", "ogkit.cli", *args],
        stdout=subprocess.PIPE,
        stderr=handle,
        text=True,
        env=env,
    )
    found: list[str] = []

    def read() -> None:
        for line in proc.stdout:  # type: ignore[union-attr]
            if "listening on" in line:
                found.append(line.strip().rsplit(" ", 1)[-1])
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(120)
    if not found:
        proc.kill()
        raise SystemExit(f"{args[2]} did not start; see {log}")
    return proc, found[0]


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values), q * 100)) if values else float("nan")


async def _unpaid(url: str, bodies: list[dict]) -> tuple[list[float], Counter]:
    limits = httpx.Limits(max_connections=len(bodies))
    async with httpx.AsyncClient(timeout=120, limits=limits) as http:

        async def one(body: dict) -> tuple[float, int]:
            t = time.perf_counter()
            r = await http.post(f"{url}/v1/infer", json=body)
            return time.perf_counter() - t, r.status_code

        out = await asyncio.gather(*(one(b) for b in bodies))
    return [t for t, _ in out], Counter(c for _, c in out)


async def _paid(url: str, bodies: list[dict], payers: list, now: int) -> list[dict]:
    from ogkit.x402 import PAYMENT_HEADER, PaymentRequirements, encode_payment_header
    from ogkit.x402.exact import request_nonce, sign_exact_payment

    limits = httpx.Limits(max_connections=len(bodies))
    async with httpx.AsyncClient(timeout=300, limits=limits) as http:

        async def one(i: int, body: dict) -> dict:
            payer = payers[i % len(payers)]
            t = time.perf_counter()
            # The payment's nonce commits to the exact bytes sent (docs/spec.md 11.3).
            raw = json.dumps({**body, "salt": f"0x{i:x}"}, separators=(",", ":")).encode()
            plain = {"content-type": "application/json"}
            try:
                first = await http.post(f"{url}/v1/infer", content=raw, headers=plain)
                if first.status_code != 402:
                    return {"payer": payer, "status": first.status_code, "seconds": 0.0}
                req = PaymentRequirements.from_dict(first.json()["accepts"][0])
                payment = sign_exact_payment(req, payer, now=now, nonce=request_nonce(req, raw))
                headers = {**plain, PAYMENT_HEADER: encode_payment_header(payment)}
                r = await http.post(f"{url}/v1/infer", content=raw, headers=headers)
                doc = r.json()
            except httpx.HTTPError as exc:
                return {"payer": payer, "status": 0, "reason": str(exc), "seconds": 0.0}
            return {
                "payer": payer,
                "status": r.status_code,
                "reason": doc.get("reason"),
                "tx": (doc.get("payment") or {}).get("transaction"),
                "receipts": len(doc.get("receipts") or []),
                "seconds": time.perf_counter() - t,
            }

        return await asyncio.gather(*(one(i, b) for i, b in enumerate(bodies)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--payers", type=int, default=20)
    parser.add_argument("--rows", type=int, default=2, help="rows per request")
    args = parser.parse_args()

    from ogkit.attest import make_attester
    from ogkit.chain.devnet import Devnet
    from ogkit.hub import Hub
    from ogkit.infer import run_verified_inference
    from ogkit.keys import KeyStore
    from ogkit.load import load_model
    from ogkit.samples import make_tabular, sample_model_path
    from ogkit.settle import claim_domain, prepare_dev_settlement

    home = Path(tempfile.mkdtemp(prefix="ogkit-bench-node-"))
    devnet = Devnet(home, port=_free_port())
    devnet.up()
    procs: list[subprocess.Popen] = []
    try:
        chain = devnet.client()
        keys = KeyStore(home)
        names = ["owner", "enclave", "requester", "node", "facilitator", "verifier-1"]
        s = {n: keys.ensure_dev_key(n) for n in names}
        payers = [keys.ensure_dev_key(f"payer-{i}") for i in range(args.payers)]
        devnet.fund_dev_accounts([k.address for k in s.values()], eth=10**20, opg=100_000 * OPG)
        token = chain.contract("OPGToken")
        for p in payers:
            chain.transact(token.functions.transfer(p.address, 100 * OPG), devnet.deployer())
        hub = Hub(home=home)
        manifest = hub.publish(
            sample_model_path("tabular"),
            name="tab",
            version="1.0.0",
            price=PRICE,
            signer=s["owner"],
        )
        model = load_model("tab", hub=hub)
        prepare_dev_settlement(
            chain,
            deployer=devnet.deployer(),
            manifest=manifest,
            runtime_id=model.runtime_id,
            owner=s["owner"],
            node=s["node"],
            attester=s["enclave"],
            requester=s["requester"],
            verifiers=[s["verifier-1"]],
            verifier_stakes=(2_000 * OPG,),
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("OGKIT_")}
        env["OGKIT_HOME"] = str(home)
        fac, fac_url = _start(
            ["--home", str(home), "facilitator", "serve", "--key", "facilitator", "--rpc",
             devnet.url], env, home / "facilitator.log",
        )  # fmt: skip
        procs.append(fac)
        node, url = _start(
            ["--home", str(home), "node", "serve", "--key", "node", "--attester-key", "enclave",
             "--model", "tab@1.0.0", "--workers", "0", "--rpc", devnet.url,
             "--facilitator", fac_url], env, home / "node.log",
        )  # fmt: skip
        procs.append(node)
        frame = make_tabular(args.rows * args.requests, seed=5).drop("label")
        bodies = [
            {"rows": frame.slice(i * args.rows, args.rows).to_dicts()} for i in range(args.requests)
        ]
        print(f"{args.requests} requests of {args.rows} rows, {args.payers} payers, node {url}")

        # Compute baseline: the node's per-call work, in this process, sequentially.
        attester = make_attester("software", signer=s["enclave"])
        t = time.perf_counter()
        for i, body in enumerate(bodies[: min(50, len(bodies))]):
            import polars as pl

            run_verified_inference(
                model, pl.DataFrame(body["rows"]), attester=attester, requester=payers[0].address,
                hub=hub, job=f"bench-{i}", domain=claim_domain(chain), progress=False,
            )  # fmt: skip
        compute_per_call = (time.perf_counter() - t) / min(50, len(bodies))

        t = time.perf_counter()
        unpaid_lat, unpaid_codes = asyncio.run(_unpaid(url, bodies))
        unpaid_wall = time.perf_counter() - t

        before = {p.address: int(chain.call(token.functions.balanceOf(p.address))) for p in payers}
        node_before = int(chain.call(token.functions.balanceOf(s["node"].address)))
        # One paid call at a time: the latency of a call on an idle node.
        from ogkit.client import Node

        idle = []
        with Node(url, timeout=60) as client:
            for body in bodies[:20]:
                t = time.perf_counter()
                client.infer(body["rows"], payer=payers[-1], now=chain.block_timestamp())
                idle.append(time.perf_counter() - t)
        before = {p.address: int(chain.call(token.functions.balanceOf(p.address))) for p in payers}
        node_before = int(chain.call(token.functions.balanceOf(s["node"].address)))

        t = time.perf_counter()
        results = asyncio.run(_paid(url, bodies, payers, chain.block_timestamp()))
        paid_wall = time.perf_counter() - t

        ok = [r for r in results if r["status"] == 200]
        refused = Counter((r["status"], r.get("reason")) for r in results if r["status"] != 200)
        unexplained = [r for r in results if r["status"] != 200 and not r.get("reason")]
        txs = [r["tx"] for r in ok]
        problems = []
        if len(set(txs)) != len(txs):
            problems.append("two answered calls share a settlement transaction")
        if any(r["receipts"] != args.rows for r in ok):
            problems.append("an answered call lacks receipts")
        per_payer = Counter(r["payer"].address for r in ok)
        for p in payers:
            after = int(chain.call(token.functions.balanceOf(p.address)))
            charged = before[p.address] - after
            if charged != per_payer[p.address] * args.rows * PRICE:
                problems.append(f"{p.address} was charged {charged}, not its calls' price")
        node_gain = int(chain.call(token.functions.balanceOf(s["node"].address))) - node_before
        if node_gain != len(ok) * args.rows * PRICE:
            problems.append(f"the node received {node_gain}, not {len(ok)} calls' price")
        if unexplained:
            problems.append(f"{len(unexplained)} requests refused without a reason")

        paid_lat = [r["seconds"] for r in ok]
        phases = [
            line
            for line in httpx.get(f"{url}/metrics", timeout=30).text.splitlines()
            if line.startswith("ogkit_node_phase_seconds_total")
        ]
        print(
            f"unpaid baseline (402 quotes): {args.requests / unpaid_wall:8.1f} req/s   "
            f"p50 {_pct(unpaid_lat, 0.5) * 1e3:7.1f} ms  p99 {_pct(unpaid_lat, 0.99) * 1e3:7.1f} ms"
            f"  {dict(unpaid_codes)}"
        )
        print(
            "compute baseline (verified pipeline per call, in-process): "
            f"{1 / compute_per_call:8.1f} calls/s  {compute_per_call * 1e3:.1f} ms/call"
        )
        print(
            f"paid, one at a time (20):     {1 / np.mean(idle):8.1f} req/s   "
            f"p50 {_pct(idle, 0.5) * 1e3:7.1f} ms  p99 {_pct(idle, 0.99) * 1e3:7.1f} ms"
        )
        print(
            f"paid (402 -> sign -> 200):    {len(ok) / paid_wall:8.1f} req/s   "
            f"p50 {_pct(paid_lat, 0.5) * 1e3:7.1f} ms  p99 {_pct(paid_lat, 0.99) * 1e3:7.1f} ms  "
            f"answered {len(ok)}/{args.requests}, refused {dict(refused)}"
        )
        print(
            "ratios: paid/unpaid throughput "
            f"{len(ok) / paid_wall / (args.requests / unpaid_wall):.3f}"
            f"  paid p50 / unpaid p50 {_pct(paid_lat, 0.5) / _pct(unpaid_lat, 0.5):.1f}x"
            f"  paid per-call time / compute per call "
            f"{(paid_wall / max(len(ok), 1)) / compute_per_call:.2f}x"
        )
        print("node time per phase (summed over calls): " + "; ".join(
            p.split("phase=")[1].replace('"}', "=") + " s" for p in phases
        ))  # fmt: skip
        print(f"double charges: {problems or 'none'}")
        print(f"charged {node_gain / OPG:.4f} OPG for {len(ok)} calls; payers spent no ETH")
        return 0 if not problems else 1
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
        devnet.down()


if __name__ == "__main__":
    sys.exit(main())
