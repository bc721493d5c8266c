"""Red team of records layout v5 (docs/spec.md §6): a partition's records file holds only
``input_hash``, ``output_hash`` and ``output.<name>``; a row's index is its place in the
file plus the partition's offset from the manifest, and readers hash the leaves.

The attacker is an approved node: it writes its records files and its manifest (path,
sha256, rows, root, index of each partition) and re-signs the claim at will. Each test
names the attack and what a reader must do.

Memory is measured in a fresh subprocess as the peak of Arrow's default memory pool
(where Parquet decodes into): an honest 500-row partition decodes about 50 kB.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tamper import Forge, Honest

from ogkit.errors import OgkitError

POS = 1  # the partition the attacker replaces (rows 500..999)
ROW = 742  # a row in it
SLACK = 64 << 20  # what a refused file may decode beyond the honest batch's peak


def _parquet(table: pa.Table, **kw) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, **kw)
    return sink.getvalue()


def _pin(f: Forge, raw: bytes) -> None:
    """Store ``raw`` as partition POS's records and pin its path and sha256 (the rows and
    root stay the honest ones), then re-sign."""
    path = f"batches/{f.m['batch_id']}/redteam5-{f.tag}-part-{POS:05d}.parquet"
    f.h.store.write_bytes(path, raw)
    part = f.m["partitions"][POS]
    part["path"] = path
    part["sha256"] = hashlib.sha256(raw).hexdigest()
    f.seal()


_PROBE = r"""
import json, sys
import pyarrow as pa
from ogkit.batch import load_batch
from ogkit.errors import OgkitError
from ogkit.store import ContentStore
from ogkit.verify import Allowlist, VerifyPolicy, verify_batch

url, artifact, mode, row = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
store = ContentStore(url)
if mode == "verify":
    v = verify_batch(artifact, VerifyPolicy(sample_rate=0.0, allowlist=Allowlist()),
                     store=store, progress=False)
    out = sorted(v.reasons())
else:
    try:
        load_batch(artifact, store).receipt(row)
        out = "receipt"
    except OgkitError as exc:
        out = type(exc).__name__
print(json.dumps({"peak": pa.default_memory_pool().max_memory(), "out": out}))
"""


def _probe(h: Honest, artifact: str, mode: str, row: int = ROW) -> dict:
    """Verify the batch, or build one receipt, in a fresh process; its Arrow peak."""
    run = subprocess.run(
        [sys.executable, "-c", _PROBE, h.store.url, artifact, mode, str(row)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def honest_peaks(honest: Honest) -> dict[str, int]:
    return {m: _probe(honest, honest.artifact_id, m)["peak"] for m in ("verify", "receipt")}


def _row_count_bomb(rows: int) -> bytes:
    """A records file of ``rows`` rows in the v5 columns, every value the same: written
    dictionary-encoded (one dictionary entry, run-length indices) it is a few hundred
    bytes a million rows, and decodes to 88 bytes a row."""
    zeros = pa.array(np.zeros(rows, np.int32))
    hashes = pa.DictionaryArray.from_arrays(zeros, pa.array([bytes(32)], pa.binary(32)))
    label = pa.DictionaryArray.from_arrays(zeros, pa.array([0], pa.int64()))
    probs = pa.DictionaryArray.from_arrays(zeros, pa.array([bytes(12)], pa.binary(12)))
    table = pa.table(
        {
            "input_hash": hashes,
            "output_hash": hashes,
            "output.label": label,
            "output.probabilities": probs,
        }
    )
    return _parquet(table, compression="zstd", store_schema=False)


@pytest.fixture(scope="module")
def row_bomb(honest: Honest) -> str:
    """Partition 1's records replaced by a 8,000,000-row file of 164 kB; the
    manifest still says 500 rows (the honest root, the new file's sha256)."""
    raw = _row_count_bomb(8_000_000)
    assert len(raw) < 256 << 10, len(raw)
    f = Forge(honest, "row-bomb")
    _pin(f, raw)
    return f.publish().artifact_id


@pytest.mark.timeout(300)
def test_verify_refuses_a_row_count_bomb_before_decoding_it(honest, honest_peaks, row_bomb):
    """Attack: a node pins a ~150 kB records file that holds 8 M rows (every value the
    same, dictionary-encoded) for a partition its manifest says has 500. Decoded whole
    it is 8 M x 88 bytes (a 16 MB file is 1e9 rows, ~90 GB: an OOM kill of the verifier or
    of its Dask worker, not a finding). Expected: the row count read from the Parquet
    footer is compared first, and the partition is a ``partition-rows`` finding without
    decoding more than the honest partition would."""
    got = _probe(honest, row_bomb, "verify")
    assert "partition-rows" in got["out"] or "records-unreadable" in got["out"], got
    assert got["peak"] < honest_peaks["verify"] + SLACK, (
        f"verify decoded {got['peak'] / 1e6:.0f} MB of a 500-row partition's records "
        f"(honest batch: {honest_peaks['verify'] / 1e6:.1f} MB)"
    )


@pytest.mark.timeout(300)
def test_receipt_refuses_a_row_count_bomb_before_decoding_it(honest, honest_peaks, row_bomb):
    """Attack: the same 8 M-row file; a challenger, the CLI or a paid node builds a
    receipt for a row of that partition. Expected: a clear ArtifactError from the footer's
    row count, without decoding the file."""
    got = _probe(honest, row_bomb, "receipt")
    assert got["out"] == "ArtifactError", got
    assert got["peak"] < honest_peaks["receipt"] + SLACK, (
        f"a receipt decoded {got['peak'] / 1e6:.0f} MB of a 500-row partition's records "
        f"(honest: {honest_peaks['receipt'] / 1e6:.1f} MB)"
    )


@pytest.mark.timeout(300)
def test_verify_refuses_an_unnamed_column_before_decoding_it(honest: Honest, honest_peaks):
    """Attack: the honest partition's records, right row count, plus a column ``junk`` no
    manifest names: 500 copies of one 1 MiB value, dictionary-encoded and compressed, so
    the file grows by about one kilobyte; decoded, ~500 MB (the values' size is the node's
    choice: 100 MiB values are 50 GB). Expected: the columns are checked against the
    Parquet schema first (and only the named ones read), a ``records-unreadable`` finding
    without decoding ``junk``."""
    path = honest.manifest["partitions"][POS]["path"]
    t = pq.read_table(io.BytesIO(honest.store.read_bytes(path)))
    junk = pa.DictionaryArray.from_arrays(
        pa.array(np.zeros(t.num_rows, np.int32)), pa.array([bytes(1 << 20)], pa.binary())
    )
    raw = _parquet(t.append_column("junk", junk), compression="zstd", store_schema=False)
    assert len(raw) < 64 << 10, len(raw)
    f = Forge(honest, "junk-bomb")
    _pin(f, raw)
    got = _probe(honest, f.publish().artifact_id, "verify")
    assert "records-unreadable" in got["out"], got
    assert got["peak"] < honest_peaks["verify"] + SLACK, (
        f"verify decoded {got['peak'] / 1e6:.0f} MB to refuse a column it never reads "
        f"(honest batch: {honest_peaks['verify'] / 1e6:.1f} MB)"
    )


def test_receipt_of_a_batch_with_permuted_partition_indices_is_a_clear_error(honest: Honest):
    """Attack: the node swaps the ``index`` fields of partitions 0 and 1 in its manifest
    (files, offsets and roots untouched) and re-signs; a challenger, ``ogkit receipt`` or
    a report asks for a receipt of one of their rows. Expected: an OgkitError
    (ReceiptError/ArtifactError) naming the bad partition index, as verify names it
    (``partition-tiling``), never a bare KeyError or a receipt."""
    f = Forge(honest, "perm-index")
    parts = f.m["partitions"]
    parts[0]["index"], parts[1]["index"] = 1, 0
    f.seal()
    batch = f.publish().batch()
    try:
        batch.receipt(ROW)
    except OgkitError:
        pass
    except Exception as exc:  # the point of the test
        pytest.fail(f"receipt raised {type(exc).__name__}: {exc}, not an OgkitError")
    else:
        pytest.fail("a receipt was built from a manifest whose partition indices are permuted")
