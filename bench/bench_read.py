"""How long a Dask worker takes to read a partition's rows from a new Parquet file.

The CNN benchmark's dataset (10k images of 784 float32, one zstd row group, as polars
writes it) is copied to a fresh name before every read, so nothing is cached; each of two
workers reads its run of four consecutive 1,250-row partitions (as the pipeline assigns
them) through the same reader the pipeline uses (``InputPlan.feeds``): one forward stream
over the row group, the second worker's first read passing over the first half. Printed
as a ratio to decoding the whole row group in this process, warm, measured in the same
run (what every worker paid for its first partition before streams). The first reads in
a fresh worker process pay for growing its memory.
Run: ``.venv/bin/python bench/bench_read.py``.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

from ogkit.compute import get_client
from ogkit.dataset import open_source, plan_inputs
from ogkit.load import load_model
from ogkit.samples import make_image_frame, sample_model_path


def read_rows(path: str, offset: int, rows: int, count: int) -> float:
    """Seconds to build the CNN's input tensors for ``count`` consecutive partitions of
    ``rows`` rows of ``path`` from row ``offset`` (on a worker)."""
    model = load_model(sample_model_path("cnn"))
    source = open_source(path)
    plan = plan_inputs(source, model.inputs, None)
    t = time.perf_counter()
    for k in range(count):
        plan.feeds(source, offset + k * rows, rows)
    return time.perf_counter() - t


def main() -> int:
    root = Path(tempfile.mkdtemp(prefix="ogkit-bench-read-"))
    base = root / "img.parquet"
    make_image_frame(10_000, seed=1).write_parquet(base)
    warm = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        pq.ParquetFile(base).read_row_group(0, use_threads=False)
        warm = min(warm, time.perf_counter() - t)
    print(f"baseline: decode the row group in this process, warm: {warm * 1e3:.1f} ms")
    with get_client(n_workers=2) as client:
        workers = list(client.scheduler_info()["workers"])
        for i in range(6):
            path = root / f"copy-{i}.parquet"
            shutil.copy(base, path)
            futures = [
                client.submit(read_rows, str(path), 5000 * j, 1250, 4, workers=[w], pure=False)
                for j, w in enumerate(workers)
            ]
            seconds = [f.result() for f in futures]
            os.unlink(path)
            shown = "  ".join(f"{s * 1e3:6.1f} ms ({s / warm:4.1f}x)" for s in seconds)
            print(f"new file {i}, both workers at once, four partitions each: {shown}")
    shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
