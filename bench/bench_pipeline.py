"""Verified inference vs bare onnxruntime, verify throughput, and worker scaling.

Every figure is a ratio against a baseline measured in the same run:
  (a) tabular model, 1M rows: verified pipeline (2 workers) vs bare onnxruntime
  (b) CNN, 10k images:        verified pipeline (2 workers) vs bare onnxruntime
  verify (no re-execution, and 1%) vs attest, in rows/s
  scaling: CNN pipeline on 2 workers vs 1 worker

Bare onnxruntime is timed twice: one session with 1 thread (what each ogkit worker
uses) and one with every core (the strongest single-process baseline).
Dask clusters are started, and each worker's model and hashing kernel warmed,
before any timing. Run: ``.venv/bin/python bench/bench_pipeline.py [--quick]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from ogkit.attest import make_attester
from ogkit.compute import get_client
from ogkit.crypto import warm_up
from ogkit.dataset import commit_dataset
from ogkit.infer import run_verified_inference
from ogkit.keys import KeyStore
from ogkit.load import load_model
from ogkit.samples import make_image_frame, make_tabular, sample_model_path
from ogkit.store import ContentStore
from ogkit.verify import Allowlist, VerifyPolicy, verify_batch


def bare(model: Path, feeds: dict[str, np.ndarray], threads: int, batch: int) -> float:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])
    n = len(next(iter(feeds.values())))
    sess.run(None, {k: v[:batch] for k, v in feeds.items()})  # warm-up
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        for s in range(0, n, batch):
            sess.run(None, {k: v[s : s + batch] for k, v in feeds.items()})
        best = min(best, time.perf_counter() - t)
    return best


def verified(model, data, client, store_root: Path, tag: str, job: str = "bench", **kw):
    keys = KeyStore(store_root / "home")
    attester = make_attester("software", signer=keys.ensure_dev_key("enclave"))
    requester = keys.ensure_dev_key("requester").address
    store = ContentStore(store_root / f"store-{tag}")
    t = time.perf_counter()
    batch = run_verified_inference(
        model,
        data,
        attester=attester,
        requester=requester,
        dask=client,
        store=store,
        progress=False,
        job=job,
        **kw,
    )
    return time.perf_counter() - t, batch, attester


def warm(client, model, data, root):
    verified(model, data, client, root, f"warm-{time.time_ns()}")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="10x fewer rows")
    args = parser.parse_args()
    scale = 10 if args.quick else 1
    tab_rows, img_rows = 1_000_000 // scale, 10_000 // scale
    root = Path(tempfile.mkdtemp(prefix="ogkit-bench-"))
    os.environ["OGKIT_HOME"] = str(root / "home")
    cores = os.cpu_count() or 1
    print(f"ogkit benchmark on {cores} cores, onnxruntime {ort.__version__}")

    tab = make_tabular(tab_rows, seed=1)
    tab_path = root / "tab.parquet"
    tab.write_parquet(tab_path)
    features = tab.select([f"f{i}" for i in range(8)]).to_numpy().astype(np.float32)
    imgs = make_image_frame(img_rows, seed=1)
    img_path = root / "img.parquet"
    imgs.write_parquet(img_path)
    images = np.stack(imgs["image"].to_numpy()).reshape(-1, 1, 28, 28).astype(np.float32)
    tab_model, cnn_model = sample_model_path("tabular"), sample_model_path("cnn")

    rows = []
    with get_client(n_workers=2) as c2, get_client(n_workers=1) as c1:
        for client in (c1, c2):
            client.run(warm_up)  # numba kernel compiled/loaded in every worker
            warm(client, tab_model, tab.head(2000), root)
            warm(client, cnn_model, imgs.head(64), root)

        # (a) tabular
        b1 = bare(tab_model, {"features": features}, 1, 1024)
        ball = bare(tab_model, {"features": features}, cores, 1024)
        tv, tab_batch, attester = verified(tab_model, tab_path, c2, root, "tab")
        rows.append(("(a) tabular 1M: bare ORT 1 thread", tab_rows / b1, None))
        rows.append((f"(a) tabular 1M: bare ORT {cores} threads", tab_rows / ball, None))
        rows.append(("(a) tabular 1M: verified, 2 workers", tab_rows / tv, tv / min(b1, ball)))

        # (b) CNN
        b1c = bare(cnn_model, {"image": images}, 1, 256)
        ballc = bare(cnn_model, {"image": images}, cores, 256)
        cv2, cnn_batch, _ = verified(cnn_model, img_path, c2, root, "cnn2", batch_size=256)
        cv1, cnn_batch1, _ = verified(cnn_model, img_path, c1, root, "cnn1", batch_size=256)
        assert cnn_batch.batch_root == cnn_batch1.batch_root
        rows.append(("(b) cnn 10k: bare ORT 1 thread", img_rows / b1c, None))
        rows.append((f"(b) cnn 10k: bare ORT {cores} threads", img_rows / ballc, None))
        rows.append(("(b) cnn 10k: verified, 1 worker", img_rows / cv1, cv1 / b1c))
        rows.append(("(b) cnn 10k: verified, 2 workers", img_rows / cv2, cv2 / min(b1c, ballc)))

        # verify vs attest
        allow = Allowlist().with_([attester.address], [tab_batch.runtime_id])
        t = time.perf_counter()
        tab_commitment = commit_dataset(tab_path, load_model(tab_model))  # the requester's
        ct = time.perf_counter() - t
        rows.append(("requester: commit to tabular 1M (input root)", tab_rows / ct, ct / tv))
        for rate, bound in ((0.0, "commitment"), (0.01, "commitment"), (0.01, "dataset")):
            t = time.perf_counter()
            verdict = verify_batch(
                tab_batch,
                VerifyPolicy(sample_rate=rate, allowlist=allow),
                dask=c2,
                commitment=tab_commitment if bound == "commitment" else None,
                dataset=tab_path if bound == "dataset" else None,
                progress=False,
            )
            vt = time.perf_counter() - t
            assert verdict.passed and verdict.inputs_bound, verdict.summary()
            name = f"verify tabular 1M, {rate:.0%} re-run, by {bound}"
            rows.append((name, tab_rows / vt, vt / tv))

    print(f"\n{'measurement':52} {'rows/s':>12} {'ratio':>24}")
    for name, rate, ratio in rows:
        r = "" if ratio is None else f"{ratio:.2f}x baseline time"
        print(f"{name:52} {rate:12,.0f} {r:>24}")
    print("\nratios: verified (2 workers) vs the faster bare ORT run;")
    print("1-worker cnn vs bare 1 thread;")
    print("verify vs attest (the verified tabular run).")
    print(f"scaling, cnn 2 workers vs 1: {cv1 / cv2:.2f}x")
    print(f"(a) verified rows/s end to end: {tab_rows / tv:,.0f} (target >= 250,000)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
