"""``ogkit audit``: replay settlements from the chain and re-verify them from the store."""

from __future__ import annotations

import argparse

from ogkit.cli.common import add_command, chain_option, print_json
from ogkit.settings import Settings

__all__ = ["register"]


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
    if args.json:
        print_json(report.to_dict())
    else:
        print(report.summary())
        for b in report.batches.iter_rows(named=True):
            print(
                f"  {b['batch_id'][:18]}…  {b['status']:10} verdict {b['verdict']:7} "
                f"{b['rows']:>9,} rows  paid {b['model_payment_opg']:.4f} OPG"
            )
        for f in report.findings.iter_rows(named=True):
            where = f" row {f['row_index']}" if f["row_index"] is not None else ""
            print(
                f"  - [{f['severity']}] {f['batch_id'][:18]}…{where} {f['reason']}: {f['detail']}"
            )
    return 0 if report.passed else 1


def register(groups) -> None:
    p = add_command(groups, "audit", _audit, "replay settlements from the chain and re-verify them")
    p.add_argument("--from-block", type=int, default=None)
    p.add_argument("--to-block", type=int, default=None)
    p.add_argument("--model", help="only this model (hub ref or 0x id)")
    p.add_argument("--batch", action="append", default=[], help="only this batch id")
    p.add_argument("--requester", help="only this requester address")
    p.add_argument("--sample-rate", type=float, default=0.01)
    chain_option(p)
