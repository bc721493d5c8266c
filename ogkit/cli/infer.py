"""``ogkit infer``: verified inference (infer + attest) on Dask."""

from __future__ import annotations

import argparse
from pathlib import Path

from ogkit.cli.common import (
    add_command,
    dask_client,
    frame_format,
    input_map_option,
    job_options,
    parse_input_map,
    print_json,
    write_predictions,
)
from ogkit.settings import Settings

__all__ = ["register"]


def _infer(args: argparse.Namespace, settings: Settings) -> int:
    from ogkit.attest import make_attester
    from ogkit.hub import Hub
    from ogkit.infer import run_verified_inference
    from ogkit.keys import KeyStore

    if args.predictions:
        frame_format(args.predictions)  # a bad suffix fails now, not after the run
    keys = KeyStore(settings.home)
    hub = Hub(settings.store, home=settings.home)
    attester = make_attester("software", signer=keys.load(args.attester_key))
    requester = (
        args.requester if args.requester.startswith("0x") else keys.load(args.requester).address
    )
    # Signed for a chain when one is named: --chain, or OGKIT_CHAIN set in the environment
    # (Settings.chain's "devnet" default is not a choice: without one, infer needs no chain).
    target = args.chain or (settings.chain if settings.chain_from_env else None)
    domain = None
    if target:
        from ogkit.chain.connection import connect_from_settings
        from ogkit.settle import claim_domain

        domain = claim_domain(connect_from_settings(settings, target))
    commitment = None
    if args.commitment:
        from ogkit.dataset import DatasetCommitment

        commitment = DatasetCommitment.parse(args.commitment)
    with dask_client(args, settings) as client:
        batch = run_verified_inference(
            args.model,
            args.data,
            attester=attester,
            requester=requester,
            dask=client,
            hub=hub,
            store=args.out,
            input_map=parse_input_map(args.input_map),
            commitment=commitment,
            batch_size=args.batch_size,
            partition_rows=args.partition_rows,
            job=args.job,
            domain=domain,
            progress=not args.json,
        )
    stats = batch.manifest.run_stats
    predictions = write_predictions(batch, args.predictions) if args.predictions else None
    if args.json:
        print_json(
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
                "predictions": predictions and predictions["path"],
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
        if predictions:
            print(f"predictions {predictions['path']} ({', '.join(predictions['outputs'])})")
    return 0


def _commit(args: argparse.Namespace, settings: Settings) -> int:
    from ogkit.dataset import commit_dataset
    from ogkit.hub import Hub
    from ogkit.load import load_model

    model = load_model(args.model, hub=Hub(settings.store, home=settings.home))
    commitment = commit_dataset(args.data, model, parse_input_map(args.input_map) or None)
    if args.json:
        print_json(
            {"schema": "ogkit.commitment.v1", **commitment.to_dict(), "text": str(commitment)}
        )
    else:
        print(commitment)
    return 0


def register(groups) -> None:
    p = add_command(
        groups,
        "commit",
        _commit,
        "the requester's dataset commitment (INPUT_ROOT:ROWS) for a model's inputs",
    )
    p.add_argument("model", help="hub ref (name[@version], 0x id) or .onnx path")
    p.add_argument("data", help="Parquet/CSV/Arrow file or folder")
    input_map_option(p, "which data columns feed which model input (default: by name)")

    p = add_command(groups, "infer", _infer, "run verified inference: infer + attest, on Dask")
    p.add_argument("--model", required=True, help="hub ref (name[@version], 0x id) or .onnx path")
    p.add_argument("--data", required=True, help="Parquet/CSV/Arrow file or folder")
    input_map_option(p, "which data columns feed which model input (default: by name)")
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--partition-rows", type=int, default=None)
    p.add_argument("--job", default="default", help="job name: part of the batch id")
    p.add_argument("--attester-key", default="enclave", help="software enclave key name")
    p.add_argument("--requester", default="requester", help="requester address or key name")
    p.add_argument(
        "--chain",
        help="sign the claim for this chain's settlement contract (default: $OGKIT_CHAIN if set)",
    )
    p.add_argument(
        "--commitment",
        help="the requester's INPUT_ROOT:ROWS (`ogkit commit`): refuse other data",
    )
    p.add_argument(
        "--predictions",
        type=Path,
        metavar="PATH",
        help="also write row_index and the outputs to PATH (.parquet or .csv)",
    )
    job_options(p)
