"""Helpers shared by tests (imported as ``helpers``; pytest puts tests/ on the path)."""

from __future__ import annotations

from collections.abc import Callable

import pyarrow as pa
import pyarrow.parquet as pq

from ogkit.batch import AttestedBatch


def rewrite_records(
    batch: AttestedBatch, index: int, mutate: Callable[[pa.Table], pa.Table]
) -> None:
    """Tamper with a stored partition: replace its records with ``mutate(records)``."""
    path = batch.store.path(batch.partitions[index].path)
    pq.write_table(mutate(pq.read_table(path)), path)
