"""``ogkit verify``, ``ogkit receipt show | verify`` and ``ogkit allowlist show | add``."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from ogkit.cli.common import (
    add_command,
    dask_client,
    input_map_option,
    job_options,
    parse_input_map,
    print_json,
)
from ogkit.errors import ConfigError
from ogkit.settings import Settings

__all__ = ["register"]

KINDS = {"software": 1, "tdx": 2, "sgx": 3, "nitro": 4}


def _verify(args: argparse.Namespace, settings: Settings) -> int:
    from ogkit.hub import Hub
    from ogkit.store import ContentStore
    from ogkit.verify import Allowlist, VerifyPolicy, verify_batch

    allowlist = Allowlist.load(settings.home / "allowlist.json")
    if args.allow_attester or args.allow_measurement:
        if len(args.allow_attester) != 1 or not args.allow_measurement:
            raise ConfigError(
                "--allow-attester (once) approves that attester with each "
                "--allow-measurement given; approve other pairs with `ogkit allowlist add "
                "--attester ADDRESS --measurement RUNTIME_ID`"
            )
        allowlist = allowlist.approve(args.allow_attester[0], args.allow_measurement)
    policy = VerifyPolicy(
        sample_rate=args.sample_rate,
        max_ulp=args.max_ulp,
        allowlist=allowlist,
        verifier_secret=bytes.fromhex(args.secret.removeprefix("0x")) if args.secret else None,
        expected_domain=_domain(args),
        require_bound_inputs=not args.allow_unbound_inputs,
    )
    commitment = None
    if args.commitment:
        from ogkit.dataset import DatasetCommitment

        commitment = DatasetCommitment.parse(args.commitment)
    hub = Hub(settings.store, home=settings.home)
    chain = found = None
    requester, model = args.requester, args.model
    if args.attest:
        # Verify what the chain committed: the requester signed the dataset commitment in its
        # order, so the inputs are bound to it without the verifier holding the data.
        from ogkit.chain.connection import connect_from_settings
        from ogkit.chain.records import onchain_batch
        from ogkit.dataset import DatasetCommitment
        from ogkit.errors import SettlementError
        from ogkit.llm.batch import load_any_batch

        chain = connect_from_settings(settings, args.chain)
        # A tabular or a chat artefact: both commit and attest the same way.
        committed = load_any_batch(args.artifact, ContentStore(args.out or hub.store.url))
        found = onchain_batch(chain, committed.batch_id)
        if found is None:
            raise SettlementError(
                f"batch {committed.batch_id} is not committed on {chain.name}; the node runs "
                "`ogkit settle ARTIFACT --order ORDER` first"
            )
        if commitment is None and args.dataset is None:
            commitment = DatasetCommitment(
                found.details["datasetId"], int(found.record["rowCount"])
            )
        requester = requester or found.record["requester"]
        model = model or found.record["modelId"]
        # Hardware evidence is verified as of the commit's block time, not the claim's.
        policy = dataclasses.replace(policy, trusted_time=int(found.record["committedAt"]))
    with dask_client(args, settings) as client:
        verdict = verify_batch(
            args.artifact,
            policy,
            store=args.out,
            hub=hub,
            dask=client,
            dataset=args.dataset,
            input_map=parse_input_map(args.input_map),
            commitment=commitment,
            requester=requester,
            job=args.job,
            model=model,
            progress=not args.json,
            methods=("reexecute", "zk") if args.zk else ("reexecute",),
            zk_chunk=args.zk_chunk,
        )
    attest_tx = None
    signed = None
    if args.attest and chain is not None:
        from ogkit.keys import KeyStore
        from ogkit.settle import SettlementJournal, attest_batch

        verifier = KeyStore(settings.home).load(args.key)
        journal = SettlementJournal(chain.chain_id, settings.home)
        signed = attest_batch(
            chain,
            committed,
            passed=verdict.passed,
            verifier=verifier,
            journal=journal,
            reason=verdict.summary(),
            publish=args.publish,
        )
        attest_tx = journal.load(committed.batch_id).attestations.get(verifier.address)
    if args.json:
        print_json(
            {
                "schema": "ogkit.verdict.v1",
                **verdict.to_dict(),
                "attest_tx": attest_tx,
                "signed_verdict": signed.to_dict() if signed else None,
            }
        )
    else:
        print(verdict.summary())
        for f in verdict.findings[:50]:
            where = f"row {f.row_index}" if f.row_index is not None else "batch"
            print(f"  - {where}: {f.reason}: {f.detail}")
        if len(verdict.findings) > 50:
            print(f"  … {len(verdict.findings) - 50} more (use --json)")
        odds = ", ".join(f"{k}: {v:.1%}" for k, v in verdict.detection.items())
        print(f"  chance the sample catches k corrupted rows: {odds}")
        if signed is not None:
            word = "pass" if signed.passed else "fail"
            print(f"  signed {word} over the committed claim {signed.claim_digest}: {attest_tx}")
            if signed.reason and signed.passed != verdict.passed:
                print(f"  {signed.reason}")
    if signed is not None and not signed.passed:
        return 1
    return 0 if verdict.passed else 1


def _domain(args: argparse.Namespace):
    if args.chain_id is None and args.contract is None:
        return None
    from ogkit.attest import ZERO_ADDRESS, ClaimDomain

    if args.chain_id is None:
        raise ConfigError("--contract needs --chain-id")
    return ClaimDomain(args.chain_id, args.contract or ZERO_ADDRESS)


def _receipt_show(args: argparse.Namespace, settings: Settings) -> int:
    from ogkit.batch import load_batch
    from ogkit.store import ContentStore

    batch = load_batch(args.artifact, ContentStore(args.out or settings.store))
    receipt = batch.receipt(args.row)
    text = json.dumps(receipt, indent=2, sort_keys=True)
    if args.output:
        args.output.write_text(text)
        if args.json:
            print_json(
                {"schema": "ogkit.receipt.written.v1", "row": args.row, "path": str(args.output)}
            )
        else:
            print(f"wrote {args.output}")
    else:
        print(text)  # the receipt is JSON already: --json changes nothing
    return 0


def _receipt_verify(args: argparse.Namespace, settings: Settings) -> int:
    from ogkit.errors import ReceiptError
    from ogkit.verify import Allowlist, verify_receipt

    try:
        receipt = json.loads(Path(args.receipt).read_text())
    except (OSError, ValueError) as exc:
        raise ReceiptError(f"cannot read receipt {args.receipt}: {exc}") from None
    check = verify_receipt(receipt, Allowlist.load(settings.home / "allowlist.json"))
    if args.json:
        print_json({"schema": "ogkit.receipt.check.v1", **check.to_dict()})
    else:
        try:
            row = receipt["leaf_values"]["rowIndex"]
        except (KeyError, TypeError):
            row = "?"
        approved = "approved" if check.attester_approved else "NOT approved"
        print(
            f"receipt for row {row}: {'OK' if check.ok else 'INVALID'} "
            f"(signer {check.signer}, attester {approved})"
        )
        for p in check.problems:
            print(f"  - {p}")
    return 0 if check.ok else 1


def _allowlist(args: argparse.Namespace, settings: Settings) -> int:
    from ogkit.verify import Allowlist

    path = settings.home / "allowlist.json"
    allowlist = Allowlist.load(path)
    if args.command == "add":
        kinds = {m: KINDS[args.kind] for m in args.measurement} if args.kind else {}
        allowlist = allowlist.approve(args.attester, args.measurement, kinds)
        allowlist.save(path)
    if args.json:
        print_json({**allowlist.to_dict(), "kinds": dict(allowlist.kinds)})
    else:
        names = {v: k for k, v in KINDS.items()}
        if not allowlist.pairs:
            print("no approved (attester, measurement) pairs: `ogkit allowlist add --attester "
                  "ADDRESS --measurement RUNTIME_ID`")  # fmt: skip
        for a, m in sorted(allowlist.pairs):
            k = allowlist.kinds.get(m)
            print(f"{a} {m}" + (f" ({names.get(k, k)})" if k is not None else ""))
    return 0


def register(groups) -> None:
    p = add_command(groups, "verify", _verify, "verify an attested batch and print the verdict")
    p.add_argument("artifact", help="artefact id (0x…) or manifest path")
    p.add_argument("--sample-rate", type=float, default=0.01)
    p.add_argument(
        "--max-ulp",
        type=int,
        default=0,
        help="float tolerance this verifier accepts, in ULP (default 0: bit-exact)",
    )
    p.add_argument(
        "--dataset",
        help="the requester's dataset (file or folder): inputs are read from it and bound to it",
    )
    input_map_option(p, "this verifier's binding of --dataset columns to model inputs")
    p.add_argument(
        "--commitment",
        help="the requester's dataset commitment, INPUT_ROOT:ROWS (from `ogkit commit`)",
    )
    p.add_argument("--secret", help="the verifier's secret (hex); default: fresh random bytes")
    p.add_argument(
        "--allow-unbound-inputs",
        action="store_true",
        help="pass without --dataset/--commitment (the inputs are then the node's word)",
    )
    p.add_argument("--requester", help="the address that ordered the job: any other fails")
    p.add_argument("--job", help="the job name ordered: any other fails")
    p.add_argument(
        "--zk",
        action="store_true",
        help="also verify the batch's stored ZK proofs and their binding (ogkit zk prove)",
    )
    p.add_argument("--zk-chunk", type=int, default=1, help="N of the ZK profile (default 1)")
    p.add_argument("--model", help="the model ordered (name@version or 0x id): any other fails")
    p.add_argument("--chain-id", type=int, help="the chain this verifier serves")
    p.add_argument("--contract", help="the settlement contract this verifier serves")
    p.add_argument(
        "--allow-attester",
        action="append",
        default=[],
        metavar="ADDRESS",
        help="approve this attester (once) with each --allow-measurement, for this run",
    )
    p.add_argument("--allow-measurement", action="append", default=[], metavar="RUNTIME_ID")
    p.add_argument(
        "--attest",
        action="store_true",
        help="check the artefact against what the chain committed and sign the verdict over "
        "the committed claim (stored beside the batch: verdicts/<batch id>/)",
    )
    p.add_argument("--publish", action="store_true", help="with --attest: also publish it on chain")
    p.add_argument("--key", default="verifier", help="verifier key for --attest")
    p.add_argument("--chain", default=None, help="chain for --attest (default: devnet)")
    job_options(p)

    receipt = groups.add_parser("receipt", help="per-inference receipts").add_subparsers(
        dest="command", required=True
    )
    p = add_command(receipt, "show", _receipt_show, "print the receipt of one row")
    p.add_argument("artifact")
    p.add_argument("row", type=int)
    p.add_argument("-o", "--output", type=Path)
    p.add_argument("--out", help="artefact store URL")
    p = add_command(receipt, "verify", _receipt_verify, "check a receipt file on its own")
    p.add_argument("receipt", type=Path)

    allow = groups.add_parser("allowlist", help="approved (attester, measurement) pairs")
    allow_sub = allow.add_subparsers(dest="command", required=True)
    add_command(allow_sub, "show", _allowlist, "show the allowlist: one approved pair a line")
    p = add_command(
        allow_sub, "add", _allowlist, "approve an attester with the measurements it may attest"
    )
    p.add_argument("--attester", required=True, metavar="ADDRESS")
    p.add_argument(
        "--measurement",
        action="append",
        required=True,
        metavar="RUNTIME_ID",
        help="a measurement (runtime id, or TEE measurement hash with --kind) approved for "
        "this --attester only; repeat for more",
    )
    p.add_argument(
        "--kind",
        choices=sorted(KINDS),
        help="the kind the --measurement values are approved as (as the NodeRegistry's "
        "measurementKind); a hardware measurement approved as another kind is refused",
    )
