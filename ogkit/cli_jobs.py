"""CLI commands that run jobs: demo (and, as they land, infer, verify, settle, audit)."""

from __future__ import annotations

import argparse
import time

__all__ = ["register"]


def _demo(args: argparse.Namespace) -> int:
    import numpy as np

    from ogkit.hub import Hub
    from ogkit.keys import KeyStore
    from ogkit.load import load_model
    from ogkit.samples import make_tabular, sample_model_path

    started = time.perf_counter()
    keys = KeyStore(args.home)
    owner = keys.ensure_dev_key("owner")
    print(f"[1/4] dev key 'owner' {owner.address}")
    hub = Hub(args.store, home=args.home)
    name, version = "demo-tabular", "1.0.0"
    try:
        manifest = hub.manifest(f"{name}@{version}")
        print(f"[2/4] {manifest.ref} already published ({manifest.model_id})")
    except Exception:
        manifest = hub.publish(
            sample_model_path("tabular"),
            name=name,
            version=version,
            price=10**15,
            signer=owner,
            description="3-class tabular classifier (scikit-learn, skl2onnx)",
            tags=["tabular", "demo"],
            license="Apache-2.0",
        )
        print(f"[2/4] published {manifest.ref} ({manifest.model_id})")
    for entry in hub.list():
        print(f"      {entry.manifest.ref:24} {entry.manifest.model_id[:18]}…")
    report = hub.verify(manifest.ref)
    print(f"[3/4] hub verify {manifest.ref}: {'OK' if report.ok else report.problems}")
    model = load_model(manifest.ref, hub=hub)
    frame = make_tabular(args.rows, seed=7)
    features = frame.select([f"f{i}" for i in range(8)]).to_numpy().astype(np.float32)
    outputs = model.run({"features": features}, batch_size=4096)
    accuracy = float((outputs["label"] == frame["label"].to_numpy()).mean())
    print(
        f"[4/4] ran {len(features):,} rows on {model.fingerprint.execution_provider}, "
        f"runtime id {model.runtime_id[:18]}…, accuracy {accuracy:.3f}"
    )
    print(f"demo finished in {time.perf_counter() - started:.1f}s")
    return 0


def register(groups, add) -> None:
    p = groups.add_parser("demo", help="run the main job end to end on local defaults")
    p.set_defaults(handler=_demo, command="demo")
    p.add_argument("--rows", type=int, default=100_000)
