"""``ogkit demo``: the main job end to end on local defaults (what ``make demo`` runs)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ogkit.settings import Settings

__all__ = ["register"]

# The repository's notebooks/ folder (this file is ogkit/cli/demo.py).
NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    from ogkit.demo import run_demo

    started = time.perf_counter()
    # With --json the progress lines go to stderr and stdout holds only the document.
    echo = (lambda line: print(line, file=sys.stderr)) if args.json else print
    result = run_demo(
        home=settings.home,
        store=settings.store,
        scheduler=settings.scheduler,
        rows=args.rows,
        workers=args.workers,
        chain=args.chain,
        devnet_port=settings.devnet_port,
        anvil=settings.anvil,
        echo=echo,
    )
    report = None
    if args.chain == "devnet":
        # The audit as a report: the executed notebook and its code-free HTML.
        from ogkit.jobs.runner import run_notebook

        run = run_notebook(
            NOTEBOOKS / "audit_settlement.ipynb",
            {"chain": "devnet", "home": str(settings.home), "batch_ids": result.batch.batch_id},
            settings.home / "reports",
        )
        report = str(run.html_path)
        echo(f"audit report: {report}")
    seconds = time.perf_counter() - started
    if args.json:
        from ogkit.cli.common import print_json

        print_json(
            {
                "schema": "ogkit.demo.v1",
                "passed": result.passed,
                "artifact_id": result.batch.artifact_id,
                "batch_id": result.batch.batch_id,
                "report": report,
                "seconds": round(seconds, 3),
            }
        )
    else:
        print(f"demo finished in {seconds:.1f}s")
    return 0 if result.passed else 1


def register(groups) -> None:
    p = groups.add_parser("demo", help="run the main job end to end on local defaults")
    p.set_defaults(handler=_demo, command="demo")
    p.add_argument("--json", action="store_true", help="stable JSON output")
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--chain", default="devnet", help="devnet (anvil) or embedded")
