"""``ogkit batch outputs``: a stored batch's predictions as a file."""

from __future__ import annotations

import argparse
from pathlib import Path

from ogkit.cli.common import add_command, frame_format, print_json, write_predictions
from ogkit.settings import Settings

__all__ = ["register"]


def _outputs(args: argparse.Namespace, settings: Settings) -> int:
    from ogkit.batch import load_batch
    from ogkit.store import ContentStore

    frame_format(args.output)
    batch = load_batch(args.artifact, ContentStore(args.out or settings.store))
    written = write_predictions(batch, args.output)
    if args.json:
        print_json(
            {
                "schema": "ogkit.batch.outputs.v1",
                "artifact_id": batch.artifact_id,
                "batch_id": batch.batch_id,
                "format": frame_format(args.output),
                **written,
            }
        )
    else:
        print(f"wrote {written['rows']:,} rows ({', '.join(written['outputs'])}) to {args.output}")
    return 0


def register(groups) -> None:
    batch = groups.add_parser("batch", help="read a stored batch").add_subparsers(
        dest="command", required=True
    )
    p = add_command(
        batch,
        "outputs",
        _outputs,
        "write a batch's row_index and outputs (its predictions) as Parquet or CSV",
    )
    p.add_argument("artifact", help="artefact id (0x…) or manifest path")
    p.add_argument(
        "-o", "--output", type=Path, required=True, help="file to write: .parquet or .csv"
    )
    p.add_argument("--out", help="artefact store URL (default: the hub's store)")
