"""``ogkit audit``: replay settlements from the chain and re-verify them from the store."""

from __future__ import annotations

import argparse

from ogkit.cli.common import add_command, chain_option, print_json
from ogkit.settings import Settings

__all__ = ["register"]

EXIT_AUDIT_FAILED = 3  # the audit ran and did not pass; 1 is an error (README, docs/cli-json.md)


def _audit(args: argparse.Namespace, settings: Settings) -> int:
    from ogkit.audit import audit
    from ogkit.chain.connection import connect_from_settings
    from ogkit.hub import Hub

    chain = connect_from_settings(settings, args.chain)
    hub = Hub(settings.store, home=settings.home)
    model = hub.manifest(args.model).model_id if args.model else None
    report = audit(
        chain,
        hub.store,
        hub=hub,
        from_block=args.from_block,
        to_block=args.to_block,
        batch_ids=args.batch or None,
        requester=args.requester,
        model=model,
        sample_rate=args.sample_rate,
        progress=not args.json,
    )
    # Fewer batches than expected (a wrong home, chain or block range) is not a pass.
    expected = max(args.min_batches, len(args.batch))
    too_few = report.batches.height < expected
    passed = report.passed and not too_few
    if args.json:
        doc = report.to_dict()
        doc["min_batches"] = expected
        doc["passed"] = passed
        print_json(doc)
    else:
        print(report.summary())
        if too_few:
            print(
                f"FAIL: {report.batches.height} batch(es) audited, at least {expected} expected: "
                "check OGKIT_HOME, --chain and --from-block"
            )
        for b in report.batches.iter_rows(named=True):
            print(
                f"  {b['batch_id'][:18]}…  {b['status']:10} verdict {b['verdict']:7} "
                f"{b['rows']:>9,} rows  paid {_opg(b['model_payment_opg'])}"
            )
        for f in report.findings.iter_rows(named=True):
            where = f" row {f['row_index']}" if f["row_index"] is not None else ""
            print(
                f"  - [{f['severity']}] {f['batch_id'][:18]}…{where} {f['reason']}: {f['detail']}"
            )
    return 0 if passed else EXIT_AUDIT_FAILED


def register(groups) -> None:
    p = add_command(groups, "audit", _audit, "replay settlements from the chain and re-verify them")
    p.add_argument("--from-block", type=int, default=None)
    p.add_argument("--to-block", type=int, default=None)
    p.add_argument("--model", help="only this model (hub ref or 0x id)")
    p.add_argument("--batch", action="append", default=[], help="only this batch id")
    p.add_argument("--requester", help="only this requester address")
    p.add_argument("--sample-rate", type=float, default=0.01)
    p.add_argument(
        "--min-batches",
        type=int,
        default=0,
        help="fail (exit 3) unless at least this many batches are audited (default 0)",
    )
    chain_option(p)


def _opg(amount_opg: float) -> str:
    """Decimal OPG (the audit frame's ``*_opg`` floats) with its unit, 12 significant
    digits, never rounded to 0.0000."""
    from decimal import Decimal

    value = Decimal(f"{float(amount_opg):.12g}")
    text = f"{value:,f}"
    text = text.rstrip("0").rstrip(".") if "." in text else text
    return f"{text} OPG"
