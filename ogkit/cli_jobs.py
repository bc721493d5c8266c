"""CLI commands that run jobs: infer, verify, receipt, allowlist and the demo."""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from pathlib import Path
from typing import Any

__all__ = ["register"]


def _print_json(doc: dict[str, Any]) -> None:
    print(json.dumps(doc, indent=2, sort_keys=True, default=str))


def _parse_input_map(items: list[str]) -> dict[str, list[str]] | None:
    """``--input-map features=f0,f1,f2`` (repeatable) → {"features": ["f0", "f1", "f2"]}."""
    from ogkit.errors import ConfigError

    if not items:
        return None
    mapping = {}
    for item in items:
        name, sep, cols = item.partition("=")
        if not sep or not name or not cols:
            raise ConfigError(f"--input-map {item!r}: use INPUT=COL[,COL...]")
        mapping[name.strip()] = [c.strip() for c in cols.split(",") if c.strip()]
    return mapping


@contextlib.contextmanager
def _client(args: argparse.Namespace):
    """A Dask client for the command: the given scheduler, else a LocalCluster (--workers)."""
    if args.workers == 0 and not args.scheduler:
        yield None
        return
    from ogkit.compute import get_client

    client = get_client(args.scheduler, n_workers=args.workers or None)
    try:
        yield client
    finally:
        client.close()


def _infer(args: argparse.Namespace) -> int:
    from ogkit.attest import make_attester
    from ogkit.hub import Hub
    from ogkit.keys import KeyStore
    from ogkit.pipeline import run_verified_inference

    keys = KeyStore(args.home)
    hub = Hub(args.store, home=args.home)
    attester = make_attester("software", signer=keys.load(args.attester_key))
    requester = (
        args.requester if args.requester.startswith("0x") else keys.load(args.requester).address
    )
    domain = None
    if args.chain:
        from ogkit.chain.client import connect
        from ogkit.settle import claim_domain

        domain = claim_domain(connect(args.chain, home=args.home))
    with _client(args) as client:
        batch = run_verified_inference(
            args.model,
            args.data,
            attester=attester,
            requester=requester,
            client=client,
            hub=hub,
            store=args.out,
            input_map=_parse_input_map(args.input_map),
            batch_size=args.batch_size,
            partition_rows=args.partition_rows,
            job=args.job,
            domain=domain,
            progress=not args.json,
        )
    stats = batch.manifest["run_stats"]
    if args.json:
        _print_json(
            {
                "schema": "ogkit.infer.v1",
                "artifact_id": batch.artifact_id,
                "batch_id": batch.batch_id,
                "batch_root": batch.batch_root,
                "row_count": batch.row_count,
                "model_id": batch.model_id,
                "runtime_id": batch.runtime_id,
                "partitions": len(batch.partitions),
                "resumed_partitions": stats["resumed_partitions"],
                "wall_seconds": stats["wall_seconds"],
            }
        )
    else:
        print(f"artifact   {batch.artifact_id}")
        print(f"batch id   {batch.batch_id}")
        print(f"batch root {batch.batch_root}")
        print(
            f"rows       {batch.row_count:,} in {len(batch.partitions)} partitions "
            f"({stats['resumed_partitions']} resumed), {stats['wall_seconds']:.1f}s"
        )
    return 0


def _verify(args: argparse.Namespace) -> int:
    from ogkit.hub import Hub
    from ogkit.verify import Allowlist, VerifyPolicy, verify_batch

    allowlist = Allowlist.load(args.home / "allowlist.json" if args.home else None).with_(
        args.allow_attester, args.allow_measurement
    )
    policy = VerifyPolicy(
        sample_rate=args.sample_rate, rtol=args.rtol, atol=args.atol, allowlist=allowlist
    )
    from ogkit.store import ContentStore

    hub = Hub(args.store, home=args.home)
    with _client(args) as client:
        verdict = verify_batch(
            args.artifact, policy, store=args.out, hub=hub, client=client, progress=not args.json
        )
    attest_tx = None
    if args.attest:
        from ogkit.artifacts import load_batch
        from ogkit.chain.client import connect
        from ogkit.keys import KeyStore
        from ogkit.settle import attest_batch

        chain = connect(args.chain, home=args.home)
        verifier = KeyStore(args.home).load(args.key)
        batch = load_batch(verdict.artifact_id, ContentStore(args.out or hub.store.url))
        record = attest_batch(chain, batch, passed=verdict.passed, verifier=verifier)
        attest_tx = record.attestations.get(verifier.address)
    if args.json:
        _print_json({"schema": "ogkit.verdict.v1", **verdict.to_dict(), "attest_tx": attest_tx})
    else:
        print(verdict.summary())
        for f in verdict.findings[:50]:
            where = f"row {f.row_index}" if f.row_index is not None else "batch"
            print(f"  - {where}: {f.reason}: {f.detail}")
        if len(verdict.findings) > 50:
            print(f"  … {len(verdict.findings) - 50} more (use --json)")
        odds = ", ".join(f"{k}: {v:.1%}" for k, v in verdict.detection.items())
        print(f"  chance the sample catches k corrupted rows: {odds}")
        if args.attest:
            print(f"  attested {'pass' if verdict.passed else 'fail'} on chain: {attest_tx}")
    return 0 if verdict.passed else 1


def _receipt_show(args: argparse.Namespace) -> int:
    from ogkit.artifacts import load_batch
    from ogkit.settings import store_url
    from ogkit.store import ContentStore

    batch = load_batch(args.artifact, ContentStore(args.out or store_url(args.home)))
    receipt = batch.receipt(args.row)
    text = json.dumps(receipt, indent=2, sort_keys=True)
    if args.output:
        args.output.write_text(text)
        print(f"wrote {args.output}")
    else:
        print(text)
    return 0


def _receipt_verify(args: argparse.Namespace) -> int:
    from ogkit.artifacts import verify_receipt
    from ogkit.errors import ReceiptError

    try:
        receipt = json.loads(Path(args.receipt).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ReceiptError(f"cannot read receipt {args.receipt}: {exc}") from None
    check = verify_receipt(receipt)
    if args.json:
        _print_json({"schema": "ogkit.receipt.check.v1", **check.to_dict()})
    else:
        row = receipt["leaf_values"]["rowIndex"]
        print(f"receipt for row {row}: {'OK' if check.ok else 'INVALID'} (signer {check.signer})")
        for p in check.problems:
            print(f"  - {p}")
    return 0 if check.ok else 1


def _allowlist(args: argparse.Namespace) -> int:
    from ogkit.verify import Allowlist

    path = (args.home / "allowlist.json") if args.home else None
    allowlist = Allowlist.load(path)
    if args.command == "add":
        allowlist = allowlist.with_(args.attester, args.measurement)
        allowlist.save(path)
    doc = {"attesters": sorted(allowlist.attesters), "measurements": sorted(allowlist.measurements)}
    if args.json:
        _print_json({"schema": "ogkit.allowlist.v1", **doc})
    else:
        for kind, values in doc.items():
            print(f"{kind}: {', '.join(values) or '(none)'}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from ogkit.demo import run_demo

    started = time.perf_counter()
    result = run_demo(
        home=args.home, rows=args.rows, workers=args.workers, chain=args.chain, echo=print
    )
    if args.chain == "devnet":
        # The audit as a report: the executed notebook and its code-free HTML.
        from ogkit.settings import ogkit_home
        from ogkit.notebooks import run_notebook

        home = args.home or ogkit_home()
        notebook = Path(__file__).resolve().parent.parent / "notebooks/audit_settlement.ipynb"
        run = run_notebook(
            notebook,
            {"chain": "devnet", "home": str(home), "batch_ids": result.batch.batch_id},
            Path(home) / "reports",
        )
        print(f"audit report: {run.html_path}")
    print(f"demo finished in {time.perf_counter() - started:.1f}s")
    return 0 if result.passed else 1


def register(groups, add) -> None:
    def job_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--scheduler", help="Dask scheduler address (default $OGKIT_SCHEDULER)")
        p.add_argument(
            "--workers",
            type=int,
            default=None,
            help="LocalCluster workers (default: one per core; 0: run in this process)",
        )
        p.add_argument("--out", help="artefact store URL (default: the hub's store)")

    p = add(groups, "infer", _infer, "run verified inference: infer + attest, on Dask")
    p.add_argument("--model", required=True, help="hub ref (name[@version], 0x id) or .onnx path")
    p.add_argument("--data", required=True, help="Parquet/CSV/Arrow file or folder")
    p.add_argument("--input-map", action="append", default=[], metavar="INPUT=COL[,COL...]")
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--partition-rows", type=int, default=None)
    p.add_argument("--job", default="default", help="job name: part of the batch id")
    p.add_argument("--attester-key", default="enclave", help="software enclave key name")
    p.add_argument("--requester", default="requester", help="requester address or key name")
    p.add_argument("--chain", help="sign the claim for this chain's settlement contract")
    job_options(p)

    p = add(groups, "verify", _verify, "verify an attested batch and print the verdict")
    p.add_argument("artifact", help="artefact id (0x…) or manifest path")
    p.add_argument("--sample-rate", type=float, default=0.01)
    p.add_argument("--rtol", type=float, default=0.0)
    p.add_argument("--atol", type=float, default=0.0)
    p.add_argument("--allow-attester", action="append", default=[], metavar="ADDRESS")
    p.add_argument("--allow-measurement", action="append", default=[], metavar="RUNTIME_ID")
    p.add_argument("--attest", action="store_true", help="submit the verdict on chain")
    p.add_argument("--key", default="verifier", help="verifier key for --attest")
    p.add_argument("--chain", default=None, help="chain for --attest (default: devnet)")
    job_options(p)

    receipt = groups.add_parser("receipt", help="per-inference receipts").add_subparsers(
        dest="command", required=True
    )
    p = add(receipt, "show", _receipt_show, "print the receipt of one row", json_flag=False)
    p.add_argument("artifact")
    p.add_argument("row", type=int)
    p.add_argument("-o", "--output", type=Path)
    p.add_argument("--out", help="artefact store URL")
    p = add(receipt, "verify", _receipt_verify, "check a receipt file on its own")
    p.add_argument("receipt", type=Path)

    allow = groups.add_parser("allowlist", help="approved attesters and measurements")
    allow_sub = allow.add_subparsers(dest="command", required=True)
    add(allow_sub, "show", _allowlist, "show the allowlist")
    p = add(allow_sub, "add", _allowlist, "approve attesters or measurements")
    p.add_argument("--attester", action="append", default=[], metavar="ADDRESS")
    p.add_argument("--measurement", action="append", default=[], metavar="RUNTIME_ID")

    p = groups.add_parser("demo", help="run the main job end to end on local defaults")
    p.set_defaults(handler=_demo, command="demo")
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--chain", default="devnet", help="devnet (anvil) or embedded")
