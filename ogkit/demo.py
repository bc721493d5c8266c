"""The main job on local defaults: what ``make demo`` runs.

Publish the sample model, run verified inference on a generated dataset on a
LocalCluster, verify it with three independent verifiers, and check a receipt.
Progress lines go to ``echo`` (the CLI passes ``print``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ogkit.artifacts import AttestedBatch, verify_receipt
from ogkit.attest import make_attester
from ogkit.compute import get_client
from ogkit.config import ogkit_home
from ogkit.errors import ModelNotFoundError
from ogkit.hub import Hub
from ogkit.keys import KeyStore
from ogkit.pipeline import run_verified_inference
from ogkit.samples import make_tabular, sample_model_path
from ogkit.verify import Allowlist, Verdict, VerifyPolicy, verify_batch

__all__ = ["DemoResult", "run_demo"]

log = logging.getLogger(__name__)

MODEL_NAME, MODEL_VERSION = "demo-tabular", "1.0.0"
PRICE = 10**15  # 0.001 OPG per inference


@dataclass
class DemoResult:
    batch: AttestedBatch
    verdicts: list[Verdict]

    @property
    def passed(self) -> bool:
        return all(v.passed for v in self.verdicts)


def _demo_dataset(home: Path, rows: int) -> Path:
    path = home / "demo" / f"tabular-{rows}.parquet"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        make_tabular(rows, seed=7).write_parquet(tmp)
        tmp.replace(path)
    return path


def run_demo(
    *,
    home: Path | None = None,
    rows: int = 100_000,
    workers: int = 2,
    echo: Callable[[str], None] = log.info,
) -> DemoResult:
    home = Path(home) if home else ogkit_home()
    keys = KeyStore(home)
    owner = keys.ensure_dev_key("owner")
    enclave = keys.ensure_dev_key("enclave")
    requester = keys.ensure_dev_key("requester")
    verifiers = [keys.ensure_dev_key(f"verifier-{i}") for i in (1, 2, 3)]
    echo(f"[1/5] dev keys ready: owner {owner.address}, enclave {enclave.address}")

    hub = Hub(home=home)
    try:
        manifest = hub.manifest(f"{MODEL_NAME}@{MODEL_VERSION}")
        echo(f"[2/5] {manifest.ref} already in the hub ({manifest.model_id[:18]}…)")
    except ModelNotFoundError:
        manifest = hub.publish(
            sample_model_path("tabular"),
            name=MODEL_NAME,
            version=MODEL_VERSION,
            price=PRICE,
            signer=owner,
            description="3-class tabular classifier (scikit-learn MLP via skl2onnx)",
            tags=["tabular", "demo"],
            license="Apache-2.0",
        )
        echo(f"[2/5] published {manifest.ref} ({manifest.model_id[:18]}…)")

    data = _demo_dataset(home, rows)
    attester = make_attester("software", signer=enclave)
    with get_client(n_workers=workers) as client:
        echo(f"[3/5] verified inference on {rows:,} rows, {workers} Dask workers")
        batch = run_verified_inference(
            manifest.ref,
            data,
            attester=attester,
            requester=requester.address,
            client=client,
            hub=hub,
            job="demo",
            progress=True,
        )
        stats = batch.manifest["run_stats"]
        echo(
            f"      artefact {batch.artifact_id[:18]}…  root {batch.batch_root[:18]}…  "
            f"{len(batch.partitions)} partitions in {stats['wall_seconds']:.1f}s"
        )
        # The demo's own enclave is approved locally; on a chain this is governance's job.
        allowlist = Allowlist.load(home / "allowlist.json").with_(
            [attester.address], [batch.runtime_id]
        )
        allowlist.save(home / "allowlist.json")
        verdicts = []
        for verifier in verifiers:
            verdict = verify_batch(
                batch, VerifyPolicy(sample_rate=0.01, allowlist=allowlist), hub=hub,
                client=client, progress=False,
            )
            verdicts.append(verdict)
            echo(f"[4/5] {verifier.name}: {verdict.summary()}")
    receipt = batch.receipt(rows // 2)
    check = verify_receipt(receipt)
    echo(
        f"[5/5] receipt for row {rows // 2}: {'valid' if check.ok else check.problems}, "
        f"{len(receipt['proof'])} proof steps to root {batch.batch_root[:18]}…"
    )
    return DemoResult(batch, verdicts)
