"""Datasets for the infer step: where rows come from and how columns become tensors.

A :class:`DataSource` is a picklable description of the rows (files read lazily by
whichever worker runs a partition, or an in-memory frame/arrays sliced by the
caller). An :class:`InputPlan` maps model inputs to columns and is checked against
the model's signature before any inference starts: every problem is collected and
raised at once as :class:`~ogkit.errors.SchemaMismatchError`.
"""

from __future__ import annotations

import functools
import hashlib
import io
import logging
import math
import os
import re
import stat
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from ogkit.errors import ConfigError, InputsUnavailableError, OgkitError, SchemaMismatchError
from ogkit.hub.manifest import TensorSpec

__all__ = [
    "DATASETS",
    "MAX_ROW_GROUP_BYTES",
    "UNREADABLE",
    "CommittedFile",
    "DataSource",
    "DatasetCommitment",
    "InputBinding",
    "InputPlan",
    "Partition",
    "bind_features",
    "commit_dataset",
    "commit_inputs",
    "committed_file",
    "file_stamp",
    "input_root",
    "open_source",
    "open_stored_dataset",
    "plan_from_bindings",
    "plan_inputs",
    "same_plan",
    "sorted_leaf_run",
    "split_partitions",
    "store_dataset",
    "stored_sha256",
]

log = logging.getLogger(__name__)


def _scan_csv(path: Any) -> pl.LazyFrame:
    # The whole file decides each column's type: an 'n/a' on line 5,000 makes the column
    # text here (and reported as such by plan_inputs), not a parse error on a worker.
    return pl.scan_csv(path, infer_schema_length=None, glob=False)


def _scan_parquet(path: Any) -> pl.LazyFrame:
    return pl.scan_parquet(path, glob=False)


def _scan_ipc(path: Any) -> pl.LazyFrame:
    return pl.scan_ipc(path, glob=False)


# Each reads the file it is named, never a glob's matches: 'rows[1].csv' is that file,
# not 'rows1.csv' (the file hashed is the file read).
_SCANNERS = {".parquet": _scan_parquet, ".csv": _scan_csv, ".arrow": _scan_ipc}
_SCANNERS[".ipc"] = _SCANNERS[".feather"] = _scan_ipc


def file_stamp(st: os.stat_result) -> tuple[int, int, int, int, int]:
    """What tells one version of a file from another without reading it: its mtime,
    size, device, inode and ctime (a rewrite that keeps mtime and size, as ``cp -p``
    does, still moves the ctime, which no one can set)."""
    return (st.st_mtime_ns, st.st_size, st.st_dev, st.st_ino, st.st_ctime_ns)


def _open_regular(path: str) -> int:
    """A read-only descriptor of ``path`` if it is a regular file (opened without
    blocking: a FIFO never hangs the caller), else ConfigError."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ConfigError(f"{path} is not a regular file")
    return fd


def _sha256_fd(fd: int) -> str:
    """The sha256 (hex) of what the open descriptor ``fd`` reads from its start."""
    digest = hashlib.sha256()
    with os.fdopen(fd, "rb", closefd=False) as fh:
        fh.seek(0)
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _parquet_file(path: str, stamp: tuple[int, ...]) -> pq.ParquetFile:
    """``path`` opened as a Parquet file, if it is still the version ``stamp`` names (a
    regular file of that device, inode, size, mtime and ctime), else ConfigError: what
    is decoded is the file the caller stat'ed and keyed its caches by, whatever the name
    names by now. Arrow opens the very file checked, through its descriptor's
    ``/proc/self/fd`` link where there is one."""
    fd = _open_regular(path)
    try:
        if file_stamp(os.fstat(fd)) != stamp:
            raise ConfigError(f"{path} changed while it was read; run again")
        proc = f"/proc/self/fd/{fd}"
        return pq.ParquetFile(proc if os.path.exists(proc) else path)
    finally:
        os.close(fd)


# The formats a dataset is stored in (docs/spec.md §6): the file kinds ogkit reads.
STORED_FORMATS = tuple(k.lstrip(".") for k in _SCANNERS)


@dataclass(frozen=True)
class Partition:
    index: int
    offset: int
    rows: int


def split_partitions(n_rows: int, partition_rows: int) -> list[Partition]:
    if partition_rows < 1:
        raise ConfigError(f"partition_rows must be >= 1, got {partition_rows}")
    return [
        Partition(i, off, min(partition_rows, n_rows - off))
        for i, off in enumerate(range(0, n_rows, partition_rows))
    ]


@dataclass(frozen=True)
class DataSource:
    """Rows to run: files (``kind`` parquet/csv/arrow) or in-memory (``frame``/``arrays``)."""

    kind: str
    n_rows: int
    schema: dict[str, str]  # column -> polars dtype as text
    # 0x + sha256 of the data, every field length-prefixed (files: names, sizes, sha256s)
    dataset_id: str
    paths: tuple[str, ...] = ()
    frame: pl.DataFrame | None = field(default=None, repr=False, compare=False)
    arrays: dict[str, np.ndarray] | None = field(default=None, repr=False, compare=False)
    # Each file's sha256 (hex) and its :func:`file_stamp` just before it was hashed.
    file_sha256: tuple[tuple[str, tuple[int, ...]], ...] = field(
        default=(), repr=False, compare=False
    )
    # Reads refuse a file that is no longer the version hashed (Parquet files only: the
    # other formats are read by name). Set by commit_dataset, for its own reads.
    pinned: bool = field(default=False, repr=False, compare=False)

    def describe(self) -> str:
        where = ", ".join(self.paths) if self.paths else self.kind
        return f"{where} ({self.n_rows:,} rows)"

    def label(self) -> str:
        """As :meth:`describe`, naming files without their folders (what a manifest
        says: no local paths)."""
        where = ", ".join(os.path.basename(p) for p in self.paths) if self.paths else self.kind
        return f"{where} ({self.n_rows:,} rows)"

    def scan(self) -> pl.LazyFrame:
        if self.frame is not None:
            return self.frame.lazy()
        suffix = "." + self.kind
        scanner = _SCANNERS[suffix]
        if suffix == ".csv":
            return pl.concat([scanner(p) for p in self.paths])
        return scanner(list(self.paths))

    def read(self, offset: int, rows: int, columns: Sequence[str]) -> pl.DataFrame:
        if self.frame is not None:
            return self.frame.slice(offset, rows).select(columns)
        if self.kind == "parquet":
            pinned = [stamp for _, stamp in self.file_sha256] if self.pinned else None
            return _read_parquet_rows(self.paths, offset, rows, tuple(columns), pinned)
        return self.scan().select(columns).slice(offset, rows).collect()

    def slice_for_task(self, offset: int, rows: int) -> DataSource:
        """A copy carrying only the rows of one partition, for shipping to a worker."""
        if self.frame is not None:
            return DataSource(
                "frame", rows, self.schema, self.dataset_id, frame=self.frame.slice(offset, rows)
            )
        if self.arrays is not None:
            arrays = {k: v[offset : offset + rows] for k, v in self.arrays.items()}
            return DataSource("arrays", rows, self.schema, self.dataset_id, arrays=arrays)
        return self


try:  # polars reports some data it cannot convert by panicking: a BaseException
    from polars.exceptions import PanicException as _PolarsPanic
except ImportError:  # pragma: no cover - older polars
    _PolarsPanic = Exception
# What reading a hostile or broken data file may raise; always turned into an OgkitError.
UNREADABLE = (Exception, _PolarsPanic)

# A row group decoded in one piece may hold at most this many bytes once decoded (known
# from its footer before anything is decoded): a small file of zeros can otherwise ask a
# reader for tens of GB. The node and every verifier read through the same check.
MAX_ROW_GROUP_BYTES = 1 << 30
# Decoded row groups up to this size are kept for the next partition; larger ones are
# decoded, sliced and let go.
_CACHED_ROW_GROUP_BYTES = 32 << 20


# Bytes a decoded value of each Parquet physical type takes (anything else: 16).
_VALUE_BYTES = {"BOOLEAN": 1, "INT32": 4, "INT64": 8, "INT96": 12, "FLOAT": 4, "DOUBLE": 8}


# ``stamp`` (:func:`file_stamp`) is part of each cache key: a rewritten file is read afresh.
@functools.lru_cache(maxsize=64)
def _row_group_sizes(
    path: str, stamp: tuple[int, ...], columns: tuple[str, ...]
) -> tuple[tuple[int, int], ...]:
    """(rows, decoded bytes of ``columns``) of each row group of ``path``. The decoded size
    counts every leaf value the footer lists for those columns (a list column's elements
    included) at its physical width, variable-width values at 16 bytes: the footer's own
    byte counts are of encoded data, and a run of zeros encodes to almost nothing."""
    meta = _parquet_file(path, stamp).metadata
    wanted = set(columns)
    out = []
    for i in range(meta.num_row_groups):
        group = meta.row_group(i)
        size = 0
        for j in range(group.num_columns):
            chunk = group.column(j)
            if chunk.path_in_schema.split(".", 1)[0] in wanted:
                size += chunk.num_values * _VALUE_BYTES.get(chunk.physical_type, 16)
        out.append((group.num_rows, size))
    return tuple(out)


def _decode_row_group(
    path: str, stamp: tuple[int, ...], index: int, columns: tuple[str, ...]
) -> pa.Table:
    # One thread: a Dask worker runs one task at a time on its core, and Arrow's pool
    # threads would compete with the other workers' tasks for the rest.
    file = _parquet_file(path, stamp)
    return file.read_row_group(index, columns=list(columns), use_threads=False)


class _RowGroupCache:
    """Per process: the last few decoded row groups of one file, for reads that go back
    to rows an earlier read of this process passed (see :class:`_RowStreams`). Groups of
    any other file (or of an earlier version of this one) are let go before a new file's
    group is decoded, so a worker never holds several files' groups at once and the
    allocator can reuse their memory."""

    def __init__(self, size: int = 4) -> None:
        self._size = size
        self._tables: dict[tuple[str, tuple[int, ...], int, tuple[str, ...]], pa.Table] = {}
        self._lock = threading.Lock()

    def peek(
        self, path: str, stamp: tuple[int, ...], index: int, columns: tuple[str, ...]
    ) -> pa.Table | None:
        with self._lock:
            return self._tables.get((path, stamp, index, columns))

    def get(
        self, path: str, stamp: tuple[int, ...], index: int, columns: tuple[str, ...]
    ) -> pa.Table:
        key = (path, stamp, index, columns)
        with self._lock:
            table = self._tables.pop(key, None)
            if table is None:
                for other in [k for k in self._tables if k[:2] != (path, stamp)]:
                    del self._tables[other]
            else:
                self._tables[key] = table  # most recent last
                return table
        table = _decode_row_group(path, stamp, index, columns)
        with self._lock:
            self._tables[key] = table
            while len(self._tables) > self._size:
                del self._tables[next(iter(self._tables))]
        return table

    def cache_clear(self) -> None:
        with self._lock:
            self._tables.clear()


class _RowStream:
    """A forward-only reader of one row group: Arrow decodes its pages as the rows are
    asked for, so a partition costs the pages up to its last row, never the whole group,
    and the next partition of the same group continues where this one stopped."""

    def __init__(
        self,
        path: str,
        stamp: tuple[int, ...],
        index: int,
        columns: tuple[str, ...],
        batch_rows: int,
    ) -> None:
        self._batches = _parquet_file(path, stamp).iter_batches(
            batch_size=batch_rows, row_groups=[index], columns=list(columns), use_threads=False
        )
        self._buffer: pa.RecordBatch | None = None  # decoded, not yet handed out
        self.position = 0  # the group's row the buffer starts at
        self._where = f"{path}: row group {index}"

    def take(self, start: int, rows: int) -> list[pa.RecordBatch]:
        """Rows ``start .. start+rows`` of the group (``start >= position``)."""
        pieces: list[pa.RecordBatch] = []
        end = start + rows
        while self.position < end:
            if self._buffer is None or self._buffer.num_rows == 0:
                self._buffer = next(self._batches, None)
                if self._buffer is None:
                    raise ConfigError(
                        f"{self._where} ends at row {self.position:,}, before the {end:,} "
                        "its footer promised: the file is corrupt; write it again"
                    )
            have = self._buffer.num_rows
            lo = max(start - self.position, 0)
            hi = min(end - self.position, have)
            if hi > lo:
                pieces.append(self._buffer.slice(lo, hi - lo))
            used = hi  # the buffer's rows before ``end`` are done with
            self._buffer = self._buffer.slice(used)
            self.position += used
        return pieces


class _RowStreams:
    """Per process: the open :class:`_RowStream` of the row groups being read, the most
    recent few (a verifier reads the requester's file and the stored copy side by side;
    a stream holds one batch of rows, not its group). A read at or after a stream's
    position continues it; a read of rows a stream has passed decodes the group whole
    into :class:`_RowGroupCache` instead, so reading out of order costs what it did
    before streams."""

    def __init__(self, size: int = 8) -> None:
        self._size = size
        self._streams: dict[tuple[str, tuple[int, ...], int, tuple[str, ...]], _RowStream] = {}
        self._lock = threading.Lock()

    def checkout(
        self, path: str, stamp: tuple[int, ...], index: int, columns: tuple[str, ...]
    ) -> _RowStream | None:
        """This group's open stream, if any; the caller owns it until :meth:`checkin`.
        Streams of an earlier version of the file are let go."""
        with self._lock:
            stream = self._streams.pop((path, stamp, index, columns), None)
            for old in [k for k in self._streams if k[0] == path and k[1] != stamp]:
                del self._streams[old]
        return stream

    def checkin(
        self, path: str, stamp: tuple[int, ...], index: int, columns: tuple[str, ...], stream
    ) -> None:
        with self._lock:
            self._streams[(path, stamp, index, columns)] = stream
            while len(self._streams) > self._size:
                del self._streams[next(iter(self._streams))]

    def cache_clear(self) -> None:
        with self._lock:
            self._streams.clear()


_ROW_GROUPS = _RowGroupCache()
_STREAMS = _RowStreams()


def _check_group_size(path: str, index: int, size: int) -> None:
    if size > MAX_ROW_GROUP_BYTES:
        raise ConfigError(
            f"{path}: row group {index} holds about {size:,} bytes decoded, more than the "
            f"{MAX_ROW_GROUP_BYTES:,} ogkit reads from one group; rewrite the file with "
            "smaller row groups"
        )


def _group_rows(
    path: str,
    stamp: tuple[int, ...],
    index: int,
    columns: tuple[str, ...],
    size: int,
    start: int,
    rows: int,
) -> pa.Table:
    """Rows ``start .. start+rows`` of one row group: from the cache if the group is
    there, else from its stream (which then stays open for the next rows), else, for rows
    the stream passed, from the whole group decoded (and cached if small enough)."""
    _check_group_size(path, index, size)
    cached = _ROW_GROUPS.peek(path, stamp, index, columns)
    if cached is not None:
        return cached.slice(start, rows)
    stream = _STREAMS.checkout(path, stamp, index, columns)
    if stream is not None and stream.position > start:
        if size <= _CACHED_ROW_GROUP_BYTES:
            # Back over rows this process streamed past: decode the group once, keep it.
            return _ROW_GROUPS.get(path, stamp, index, columns).slice(start, rows)
        stream = None  # too large to keep: stream it again from its first row
    if stream is None:
        stream = _RowStream(path, stamp, index, columns, max(rows, 1))
    pieces = stream.take(start, rows)
    _STREAMS.checkin(path, stamp, index, columns, stream)
    return pa.Table.from_batches(pieces)


def clear_read_caches() -> None:
    """Let go of this process's decoded row groups and open row-group streams (tests
    measure memory around it; a long-running process may call it when idle)."""
    _ROW_GROUPS.cache_clear()
    _STREAMS.cache_clear()


def _read_parquet_rows(
    paths: Sequence[str],
    offset: int,
    rows: int,
    columns: tuple[str, ...],
    pinned: Sequence[tuple[int, ...]] | None = None,
) -> pl.DataFrame:
    """Rows ``offset .. offset+rows`` across ``paths``, decoding only the row groups that
    hold them, each only as far as its last row wanted (see :func:`_group_rows`). With
    ``pinned`` (each file's :func:`file_stamp`) a file that is no longer that version is
    a ConfigError, never read."""
    pieces = []
    start, end = offset, offset + rows
    first = 0
    for i, path in enumerate(paths):
        stamp = file_stamp(os.stat(path))
        if pinned is not None and stamp != pinned[i]:
            raise ConfigError(f"{path} changed while it was read; run again")
        for index, (n, size) in enumerate(_row_group_sizes(path, stamp, columns)):
            lo, hi = first, first + n
            if hi > start and lo < end:
                begin = max(start, lo)
                pieces.append(
                    _group_rows(path, stamp, index, columns, size, begin - lo, min(end, hi) - begin)
                )
            first = hi
    return pl.from_arrow(pa.concat_tables(pieces)) if pieces else pl.DataFrame()


def _files_fingerprint(files: Sequence[tuple[str, int, str]]) -> str:
    """The content fingerprint of data files, each given as (name, size, sha256 hex)."""
    digest = hashlib.sha256(b"ogkit.files.v2")
    for name, size, sha256 in files:
        for text in (name, str(size), sha256):
            _field(digest, text.encode())
    return "0x" + digest.hexdigest()


def _field(digest: Any, data: bytes) -> None:
    """One length-prefixed field: no two sequences of fields stream the same bytes."""
    digest.update(len(data).to_bytes(8, "little"))
    digest.update(data)


def _frame_id(frame: pl.DataFrame) -> str:
    """The content fingerprint of a frame: each column's name, dtype, length, null mask
    and values, every field length-prefixed (two different frames never stream the same
    bytes into the hash; it keys a resumed run's staged partitions)."""
    digest = hashlib.sha256(b"ogkit.frame.v2")
    _field(digest, str(frame.width).encode())
    for name in frame.columns:
        series = frame[name]
        for text in (name, str(series.dtype), str(series.len()), str(series.null_count())):
            _field(digest, text.encode())
        if series.null_count():
            _field(digest, series.is_null().to_numpy().tobytes())
        flat = series.dtype.is_numeric() or series.dtype == pl.Boolean
        values = series.to_numpy() if flat else None
        if values is not None and values.dtype != object:
            _field(digest, np.ascontiguousarray(values).tobytes())
        else:  # text, lists, arrays, decimals: their exact Arrow buffers, in one chunk
            sink = io.BytesIO()
            pl.DataFrame([series.rechunk()]).write_ipc(sink, compression="uncompressed")
            _field(digest, sink.getvalue())
    return "0x" + digest.hexdigest()


def open_source(data: Any) -> DataSource:
    """Describe ``data``: a path (file, folder of files, glob), a polars or pandas
    DataFrame, a pyarrow Table, a dict of NumPy arrays keyed by model input, or
    one NumPy array (for a single-input model)."""
    if isinstance(data, str | Path):
        return _open_files(Path(data))
    if isinstance(data, np.ndarray):
        data = {"": data}
    if isinstance(data, Mapping):
        arrays = {str(k): np.asarray(v) for k, v in data.items()}
        counts = {len(v) for v in arrays.values()}
        if len(counts) != 1:
            raise SchemaMismatchError(
                [f"arrays have different row counts: { {k: len(v) for k, v in arrays.items()} }"]
            )
        digest = hashlib.sha256(b"ogkit.arrays.v2")
        for name in sorted(arrays):
            arr = np.ascontiguousarray(arrays[name])
            for text in (name, arr.dtype.str, str(arr.shape)):
                _field(digest, text.encode())
            _field(digest, arr.tobytes())
        schema = {k: f"ndarray[{v.dtype}]{list(v.shape[1:])}" for k, v in arrays.items()}
        return DataSource("arrays", counts.pop(), schema, "0x" + digest.hexdigest(), arrays=arrays)
    if not isinstance(data, pl.DataFrame):
        try:
            data = pl.from_pandas(data) if hasattr(data, "iloc") else pl.from_arrow(data)
        except Exception as exc:
            raise ConfigError(
                f"cannot read data of type {type(data).__name__}: give a path, a polars or "
                "pandas DataFrame, a pyarrow Table or NumPy arrays"
            ) from exc
    assert isinstance(data, pl.DataFrame)
    schema = {k: str(v) for k, v in data.schema.items()}
    return DataSource("frame", data.height, schema, _frame_id(data), frame=data)


def _open_files(path: Path) -> DataSource:
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in _SCANNERS)
        suffixes = {p.suffix for p in files}
        if not files:
            raise ConfigError(f"{path} holds no .parquet, .csv or .arrow files")
        if len(suffixes) > 1:
            raise ConfigError(f"{path} mixes file types {sorted(suffixes)}; keep one per folder")
    elif path.is_file():
        if path.suffix not in _SCANNERS:
            raise ConfigError(
                f"{path}: unknown file type {path.suffix!r}; use .parquet, .csv or .arrow"
            )
        files = [path]
    else:
        raise ConfigError(f"dataset {path} does not exist")
    digests = []
    for f in files:
        # One descriptor: the bytes hashed, and the stamp the readers are held to, are
        # of one file, however its name is looked up; the real path must name it still.
        try:
            fd = _open_regular(str(f))
        except OSError as exc:
            raise ConfigError(f"cannot read dataset {f}: {exc}") from None
        try:
            stamp = file_stamp(os.fstat(fd))
            sha256 = _sha256_fd(fd)
            same = file_stamp(os.fstat(fd)) == stamp
        finally:
            os.close(fd)
        real = os.path.realpath(f)
        if not same or file_stamp(os.stat(real)) != stamp:
            raise ConfigError(f"dataset {f} changed while it was read; run again")
        digests.append((real, sha256, stamp))
    fingerprint = _files_fingerprint(
        [(f.name, stamp[1], sha) for f, (_, sha, stamp) in zip(files, digests, strict=True)]
    )
    # Each file's real path (symlinks and '..' resolved by the OS, as when it was hashed):
    # what a reader opens later is the file hashed, whatever its name or the cwd.
    paths = tuple(real for real, _, _ in digests)
    source = DataSource(files[0].suffix.lstrip("."), 0, {}, fingerprint, paths=paths)
    try:
        lazy = source.scan()
        schema = {k: str(v) for k, v in lazy.collect_schema().items()}
        n_rows = int(lazy.select(pl.len()).collect().item())
    except UNREADABLE as exc:
        raise ConfigError(f"cannot read dataset {path}: {type(exc).__name__}: {exc}") from None
    return DataSource(
        source.kind,
        n_rows,
        schema,
        source.dataset_id,
        paths=source.paths,
        file_sha256=tuple((sha, stamp) for _, sha, stamp in digests),
    )


# -- input plan ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class InputBinding:
    """How one model input is built from the data: columns stacked, or one array column."""

    input: str
    columns: tuple[str, ...]
    dtype: str  # numpy dtype the model wants
    row_shape: tuple[int, ...]
    stacked: bool  # True: several scalar columns side by side; False: one column

    def to_dict(self) -> dict[str, Any]:
        return {
            "input": self.input,
            "columns": list(self.columns),
            "dtype": self.dtype,
            "row_shape": list(self.row_shape),
        }


@dataclass(frozen=True)
class InputPlan:
    bindings: tuple[InputBinding, ...]

    @property
    def columns(self) -> list[str]:
        return [c for b in self.bindings for c in b.columns]

    def feeds(self, source: DataSource, offset: int, rows: int) -> dict[str, np.ndarray]:
        """The model's input tensors for rows ``offset .. offset+rows`` of ``source``."""
        if source.arrays is not None:
            arrays = source.arrays
            if source.n_rows != rows or offset != 0:
                arrays = {k: v[offset : offset + rows] for k, v in arrays.items()}
            return {
                b.input: np.ascontiguousarray(arrays[b.columns[0]], dtype=b.dtype).reshape(
                    (rows, *b.row_shape)
                )
                for b in self.bindings
            }
        frame = source.read(offset, rows, self.columns)
        feeds = {}
        for b in self.bindings:
            if b.stacked:
                values = frame.select(b.columns).to_numpy()
            else:
                series = frame[b.columns[0]]
                if isinstance(series.dtype, pl.List):
                    width = math.prod(b.row_shape)
                    series = series.list.to_array(width)
                values = series.to_numpy()
            feeds[b.input] = np.ascontiguousarray(values, dtype=b.dtype).reshape(
                (rows, *b.row_shape)
            )
        return feeds


_NUMERIC = ("Float", "Int", "UInt", "Boolean", "Decimal")


def _is_numeric(dtype_text: str) -> bool:
    return dtype_text.startswith(_NUMERIC)


def plan_inputs(
    source: DataSource,
    inputs: Sequence[TensorSpec],
    input_map: Mapping[str, str | Sequence[str]] | None = None,
) -> InputPlan:
    """Bind each model input to data columns; raise every mismatch at once.

    Without ``input_map``: an input is bound to the column (or array) of the same
    name; a single 2-D input ``[N, k]`` with no such column takes the data's numeric
    scalar columns when there are exactly ``k`` of them.
    """
    if source.n_rows == 0:
        raise ConfigError(
            f"the dataset {', '.join(source.paths) or source.kind} has no rows (columns: "
            f"{', '.join(source.schema) or 'none'}): add rows or point --data at the right file"
        )
    problems: list[str] = []
    bindings: list[InputBinding] = []
    input_map = dict(input_map or {})
    unknown = set(input_map) - {t.name for t in inputs}
    for name in sorted(unknown):
        problems.append(
            f"input map names {name!r}, but the model's inputs are "
            f"{', '.join(t.name for t in inputs)}"
        )
    if source.arrays is not None and list(source.arrays) == [""]:
        if len(inputs) != 1:
            problems.append(
                f"one array given, but the model has {len(inputs)} inputs; pass a dict "
                "{input name: array}"
            )
        else:
            source.arrays[inputs[0].name] = source.arrays.pop("")
            source.schema[inputs[0].name] = source.schema.pop("")

    for spec in inputs:
        row_shape = spec.shape[1:]
        fixed_rows = all(isinstance(d, int) for d in row_shape)
        columns = input_map.get(spec.name)
        if isinstance(columns, str):
            columns = [c.strip() for c in columns.split(",")] if "," in columns else [columns]
        if columns is None:
            if spec.name in source.schema:
                columns = [spec.name]
            elif len(inputs) == 1 and len(row_shape) == 1 and isinstance(row_shape[0], int):
                numeric = [c for c in _scalar_candidates(source) if _is_numeric(source.schema[c])]
                if len(numeric) == row_shape[0]:
                    columns = numeric
            if columns is None:
                scalar = _scalar_candidates(source)
                single = len(inputs) == 1 and len(row_shape) == 1
                want = row_shape[0] if single and isinstance(row_shape[0], int) else None
                text = [c for c in scalar if not _is_numeric(source.schema[c])]
                n_numeric = len(scalar) - len(text)
                if text and want and n_numeric < want:
                    # Too few number columns, and some hold text: say which and where.
                    problems += [_non_numeric_problem(source, spec.name, c) for c in text]
                    if len(scalar) == want:
                        continue
                counted = f"; {n_numeric} numeric, the model wants {want}" if want else ""
                problems.append(
                    f"model input {spec.name!r} ({spec.dtype}{list(spec.shape)}) has no column: "
                    f"name a column {spec.name!r} or map columns to it (ogkit infer "
                    f"--input-map {spec.name}=COL1,COL2,... ; in code input_map=) (data columns: "
                    f"{', '.join(source.schema) or 'none'}{counted})"
                )
                continue
        missing = [c for c in columns if c not in source.schema]
        if missing:
            problems.append(
                f"input {spec.name!r}: column(s) {', '.join(missing)} not in the data "
                f"(data columns: {', '.join(source.schema)})"
            )
            continue
        if not fixed_rows:
            problems.append(
                f"input {spec.name!r} has symbolic non-batch dims {list(row_shape)}; "
                "ogkit needs fixed per-row shapes"
            )
            continue
        width = math.prod(row_shape)  # type: ignore[arg-type]
        if len(columns) > 1:
            bad = [c for c in columns if not _is_numeric(source.schema[c])]
            for c in bad:
                problems.append(_non_numeric_problem(source, spec.name, c))
            if len(columns) != width:
                problems.append(
                    f"input {spec.name!r} wants {width} values per row "
                    f"(shape {list(row_shape)}), but {len(columns)} columns are mapped"
                )
            if not bad and len(columns) == width:
                bindings.append(
                    InputBinding(spec.name, tuple(columns), spec.dtype, tuple(row_shape), True)
                )
            continue
        col = columns[0]
        col_type = source.schema[col]
        per_row = _per_row_width(source, col, col_type)
        if per_row is None and col_type == "String":
            problems.append(_non_numeric_problem(source, spec.name, col))
        elif per_row is None:
            problems.append(
                f"input {spec.name!r}: column {col!r} has type {col_type}, not numbers or "
                "arrays of numbers"
            )
        elif per_row == -1:
            problems.append(f"input {spec.name!r}: the lists in column {col!r} differ in length")
        elif per_row != width:
            problems.append(
                f"input {spec.name!r} wants {width} values per row (shape {list(row_shape)}), "
                f"but column {col!r} holds {per_row}"
            )
        else:
            bindings.append(InputBinding(spec.name, (col,), spec.dtype, tuple(row_shape), False))
    if not problems:
        problems += _null_problems(source, bindings)
    if problems:
        raise SchemaMismatchError(problems)
    return InputPlan(tuple(bindings))


def _scalar_candidates(source: DataSource) -> list[str]:
    """Columns an unmapped 2-D input may take: scalar numbers or text (a number column
    read as text because of a bad cell), never ``label``."""
    return [
        c for c, t in source.schema.items() if (_is_numeric(t) or t == "String") and c != "label"
    ]


def _non_numeric_problem(source: DataSource, input_name: str, col: str) -> str:
    """One line: which column, which value at which row is not a number, and the fix."""
    col_type = source.schema[col]
    where = ""
    if col_type == "String":
        bad = (
            source.scan()
            .select(pl.col(col))
            .with_row_index("row")
            .filter(
                pl.col(col).is_not_null()
                & pl.col(col).str.strip_chars().cast(pl.Float64, strict=False).is_null()
            )
        )
        found = bad.select(pl.len().alias("n"), pl.first("row"), pl.first(col)).collect()
        n, row, value = found.row(0)
        if n:
            line = (
                f", line {row + 2} of the CSV"
                if source.kind == "csv" and len(source.paths) == 1
                else ""
            )
            where = f" ({n:,} row(s), e.g. {value!r} at row {row}{line})"
    return (
        f"input {input_name!r}: column {col!r} has non-numeric values{where} (type {col_type}); "
        f"make every value a number (or drop those rows), or leave the column out "
        f"(ogkit infer --input-map {input_name}=COL1,COL2,...)"
    )


def _per_row_width(source: DataSource, col: str, col_type: str) -> int | None:
    """How many numbers one row of ``col`` holds, or None if it is not numeric."""
    if source.arrays is not None:
        arr = source.arrays[col]
        return math.prod(arr.shape[1:]) if arr.dtype.kind in "biuf" else None
    if _is_numeric(col_type):
        return 1
    if col_type.startswith("Array("):
        dtype = source.scan().collect_schema()[col]
        inner = dtype
        while isinstance(inner, pl.Array):
            inner = inner.inner
        return math.prod(dtype.shape) if _is_numeric(str(inner)) else None
    if col_type.startswith("List("):
        inner = col_type[5:-1]
        if not _is_numeric(inner):
            return None
        lengths = source.scan().select(
            pl.col(col).list.len().min().alias("lo"), pl.col(col).list.len().max().alias("hi")
        )
        lo, hi = lengths.collect().row(0)
        return int(lo) if lo == hi else -1
    return None


def _null_problems(source: DataSource, bindings: Sequence[InputBinding]) -> list[str]:
    if source.arrays is not None:
        return []  # NumPy arrays have no nulls; NaN is a value a model may legitimately see
    columns = [c for b in bindings for c in b.columns]
    counts = _parquet_null_counts(source, columns) if source.kind == "parquet" else None
    if counts is None:
        counts = source.scan().select([pl.col(c).null_count() for c in columns]).collect().row(0)
    return [
        f"column {c!r} has {n:,} null value(s); fill or drop them before inference"
        for c, n in zip(columns, counts, strict=True)
        if n
    ]


def _parquet_null_counts(source: DataSource, columns: Sequence[str]) -> list[int] | None:
    """Null counts from Parquet footers (no data decoded); None if a footer lacks them."""
    totals = dict.fromkeys(columns, 0)
    for path in source.paths:
        meta = pq.ParquetFile(path).metadata
        leaf_of = {}
        for j in range(meta.num_columns):
            top = meta.schema.column(j).path.split(".")[0]
            leaf_of.setdefault(top, j)  # first leaf of each top-level column
        for i in range(meta.num_row_groups):
            group = meta.row_group(i)
            for c in columns:
                if c not in leaf_of:
                    return None
                stats = group.column(leaf_of[c]).statistics
                if stats is None or not stats.has_null_count:
                    return None
                totals[c] += stats.null_count
    return [totals[c] for c in columns]


# -- the dataset commitment ------------------------------------------------------------------
COMMIT_CHUNK_ROWS = 65_536


@dataclass(frozen=True)
class DatasetCommitment:
    """What a requester commits to about its data: the *input root* (docs/spec.md §4).

    The input root is the OpenZeppelin-standard Merkle root over one leaf per row,
    ``(uint256 rowIndex, bytes32 inputHash)``, where ``inputHash`` is the canonical hash
    of the row's model inputs. It is computed by whoever supplies the data (the
    requester) and becomes the batch's ``dataset_id``: the batch id derives from it, so a
    node that runs other inputs, drops, copies or adds rows cannot keep the batch id.
    """

    input_root: str
    row_count: int
    # Every row's input hash, when this process computed the commitment from the data
    # (:func:`commit_dataset`): a verifier given it compares each row's hash with the
    # requester's own instead of rebuilding the input root. Never serialised, never
    # compared, never set by a constructor: a commitment read from text has none.
    row_hashes: np.ndarray | None = field(default=None, init=False, compare=False, repr=False)
    # The one data file it was computed from, with the rows (:func:`commit_dataset`):
    # a verifier whose batch stored a file of these very bytes, read under this plan,
    # need not read or hash the stored rows (each gives its committed hash). In this
    # process only, as ``row_hashes``.
    origin: CommittedFile | None = field(default=None, init=False, compare=False, repr=False)

    def with_row_hashes(
        self, hashes: np.ndarray, origin: CommittedFile | None = None
    ) -> DatasetCommitment:
        """This commitment carrying ``hashes``, the ``(row_count, 32)`` input hashes it
        was just computed from, and ``origin``, the file they were read from (only the
        code that computed the root should call this)."""
        hashes = np.ascontiguousarray(hashes, dtype=np.uint8)
        if hashes.shape != (self.row_count, 32):
            raise ConfigError(
                f"a commitment over {self.row_count:,} rows takes ({self.row_count}, 32) "
                f"row hashes, got {hashes.shape}"
            )
        out = DatasetCommitment(self.input_root, self.row_count)
        object.__setattr__(out, "row_hashes", hashes)
        object.__setattr__(out, "origin", origin)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"input_root": self.input_root, "row_count": self.row_count}

    def __str__(self) -> str:
        return f"{self.input_root}:{self.row_count}"

    @classmethod
    def parse(cls, text: str) -> DatasetCommitment:
        """Read ``INPUT_ROOT:ROWS`` (what ``ogkit commit`` prints)."""
        root, _, rows = text.strip().partition(":")
        body = root.removeprefix("0x")
        if (
            len(body) != 64
            or not rows.isdigit()
            or any(c not in "0123456789abcdefABCDEF" for c in body)
        ):
            raise ConfigError(
                f"a dataset commitment is INPUT_ROOT:ROWS (0x + 64 hex digits, a row count), "
                f"got {text!r:.90}; compute one with `ogkit commit MODEL DATA`"
            )
        return cls("0x" + body.lower(), int(rows))


def input_root(input_hashes: np.ndarray, offset: int = 0) -> str:
    """The input root over rows ``offset ..`` with the given per-row input hashes."""
    from ogkit.crypto.merkle import input_leaf_hashes, merkle_root

    n = len(input_hashes)
    if n == 0:
        raise ConfigError("a dataset commitment needs at least one row")
    leaves = input_leaf_hashes(np.arange(offset, offset + n, dtype=np.uint64), input_hashes)
    return "0x" + merkle_root(leaves).hex()


def sorted_leaf_run(leaves: np.ndarray) -> np.ndarray:
    """``(n, 32)`` leaf hashes in ascending order of their first eight bytes. The input
    root is an OZ SimpleMerkleTree, whose root does not depend on the order of its leaves
    (it sorts them): partitions that sort their own leaves on their workers make the one
    tree's sort a merge of sorted runs and its gather sequential (1M leaves in 20 runs:
    212 -> 125 ms for the tree)."""
    # Any sort will do (ties in the first eight bytes are ordered by the tree's own sort
    # over all 32): quicksort of 50k random keys is about 3x faster than a stable sort.
    from ogkit.crypto.merkle import first_words, take_hashes

    return take_hashes(leaves, np.argsort(first_words(leaves)))


def commit_inputs(
    source: DataSource, plan: InputPlan, *, chunk_rows: int = COMMIT_CHUNK_ROWS
) -> tuple[DatasetCommitment, np.ndarray]:
    """The commitment of ``source`` under ``plan``, with every row's input hash."""
    from ogkit.crypto.encoding import tensor_row_hashes

    if source.n_rows == 0:
        raise ConfigError(f"the dataset {source.describe()} has no rows")
    hashes = np.empty((source.n_rows, 32), dtype=np.uint8)
    for start in range(0, source.n_rows, chunk_rows):
        rows = min(chunk_rows, source.n_rows - start)
        hashes[start : start + rows] = tensor_row_hashes(plan.feeds(source, start, rows))
    return DatasetCommitment(input_root(hashes), source.n_rows), hashes


def bind_features(
    model: Any, input_map: Mapping[str, str | Sequence[str]] | None
) -> Mapping[str, str | Sequence[str]] | None:
    """The input map to run with: the feature names the model was published with (bound by
    name, never by position), or ``input_map`` — which must then name the same columns."""
    manifest = getattr(model, "manifest", None)
    features = manifest.features if manifest is not None else {}
    if not features:
        return input_map
    if input_map is None:
        return dict(features)
    problems = []
    for name, cols in features.items():
        given = input_map.get(name)
        if given is None:
            continue
        given = (given,) if isinstance(given, str) else tuple(given)
        if given != cols:
            problems.append(
                f"input {name!r} was published with features {list(cols)}, the input map "
                f"binds {list(given)}"
            )
    if problems:
        raise SchemaMismatchError(
            [*problems, "rename the data's columns, or drop --input-map to bind by the names"]
        )
    return {**features, **input_map}


def commit_dataset(
    data: Any, model: Any, input_map: Mapping[str, str | Sequence[str]] | None = None
) -> DatasetCommitment:
    """The requester's side: commit to ``data`` as ``model``'s inputs (a LoadedModel, or
    anything with its ``inputs`` signature). Give the result to the node with the job, and
    to verifiers, who then check the batch ran exactly these rows. The result keeps every
    row's input hash (32 bytes a row, in this process only): :func:`ogkit.verify_batch`
    given it compares rows with them instead of rebuilding the input root."""
    source = open_source(data)
    if source.file_sha256:  # its rows are read only from the versions of files hashed
        source = replace(source, pinned=True)
    plan = plan_inputs(source, model.inputs, bind_features(model, input_map))
    commitment, hashes = commit_inputs(source, plan)
    return commitment.with_row_hashes(hashes, committed_file(source, plan))


@dataclass(frozen=True)
class CommittedFile:
    """One data file whose rows were read in this process: its format, the sha256 of its
    bytes, and the input plan that turned its rows into model inputs. A stored dataset
    whose bytes have the same sha256, read under an equal plan by the same reader, gives
    the same rows."""

    format: str
    sha256: str
    size: int
    plan: InputPlan


def committed_file(source: DataSource, plan: InputPlan) -> CommittedFile | None:
    """``source`` as a :class:`CommittedFile`, once its rows were read: None unless it
    is one Parquet file, read ``pinned`` (every row from the version of the file whose
    bytes were hashed) and unchanged (:func:`file_stamp`) since. Other formats are read
    by name (polars), so nothing ties their rows to the bytes hashed."""
    if len(source.paths) != 1 or source.kind != "parquet" or len(source.file_sha256) != 1:
        return None
    if not source.pinned:
        return None
    sha256, stamp = source.file_sha256[0]
    try:
        st = os.stat(source.paths[0])
    except OSError:
        return None
    if file_stamp(st) != stamp:
        return None
    return CommittedFile(source.kind, sha256, st.st_size, plan)


def same_plan(a: InputPlan, b: InputPlan) -> bool:
    """Do two input plans build every input from the same columns, in the same way?"""
    return sorted(a.bindings, key=lambda x: x.input) == sorted(b.bindings, key=lambda x: x.input)


def stored_sha256(store: Any, object_id: str, fmt: str, size: int) -> str | None:
    """The sha256 (hex) of the stored dataset ``object_id``'s bytes, read through the
    local file its rows are read from, if it is a regular file of ``size`` bytes; else
    None (an object of another size is neither fetched, parsed nor hashed: a node cannot
    make a verifier hash a file of its choosing size), and None if it cannot be read."""
    try:
        if store.fs.size(store.object_path(DATASETS, object_id)) != size:
            return None  # nothing fetched, parsed or hashed
        fd = _open_regular(open_stored_dataset(store, object_id, fmt).paths[0])
    except (OgkitError, OSError, ValueError, TypeError):
        return None
    try:  # the file opened, whatever the path names by now
        return _sha256_fd(fd) if os.fstat(fd).st_size == size else None
    except OSError:
        return None
    finally:
        os.close(fd)


# -- the dataset in the store (docs/spec.md §6) ------------------------------------------------
DATASETS = "datasets"
STORED_ROW_GROUP = 65_536


def _stored_frame(source: DataSource, plan: InputPlan) -> pl.DataFrame:
    """The plan's columns of in-memory ``source`` (a frame or arrays) as one frame, as
    ogkit stores it. Arrays become columns of fixed-width arrays (their per-row values, C
    order) under their own names."""
    columns = list(dict.fromkeys(plan.columns))
    if source.arrays is not None:
        series = []
        for c in columns:
            arr = np.asarray(source.arrays[c])
            flat = arr if arr.ndim == 1 else arr.reshape(len(arr), -1)
            series.append(pl.Series(c, np.ascontiguousarray(flat)))
        return pl.DataFrame(series)
    return source.scan().select(columns).collect()


def store_dataset(store: Any, source: DataSource, plan: InputPlan) -> tuple[str, str]:
    """Put the rows of ``source`` into ``store`` once, by content id (kind ``datasets``),
    and return ``(object id, format)``. One data file is stored as it is; anything else
    as a Parquet file of the plan's columns, written to a temporary file first (a folder
    of files streamed through polars' streaming engine, never whole in memory), then
    streamed into the store, so memory stays flat in the dataset's size. The manifest
    names the object; verifiers re-derive every row's tensors from it with the
    manifest's input plan and re-hash them against the records' input hashes."""
    if len(source.paths) == 1 and source.kind in STORED_FORMATS:
        path = source.paths[0]
        if (known := _stored_before(store, source)) is not None:
            log.info("dataset %s is already in %s as %s", path, store.url, known)
            return known, source.kind
        object_id = store.put_file(DATASETS, path)
        try:
            store.write_bytes(_fingerprint_entry(source.dataset_id), object_id.encode())
        except OSError as exc:  # only a hint for the next run: storing it again is correct
            log.warning("could not note dataset %s's fingerprint in %s: %s", path, store.url, exc)
        return object_id, source.kind
    import tempfile

    options = {
        "compression": "uncompressed",
        "statistics": False,
        "row_group_size": STORED_ROW_GROUP,
    }
    fd, tmp = tempfile.mkstemp(prefix="ogkit-dataset-", suffix=".parquet")
    os.close(fd)
    try:
        if source.paths:
            source.scan().select(list(dict.fromkeys(plan.columns))).sink_parquet(tmp, **options)
        else:
            _stored_frame(source, plan).write_parquet(tmp, **options)
        return store.put_file(DATASETS, tmp), "parquet"
    finally:
        os.unlink(tmp)


_OBJECT_ID = re.compile(r"0x[0-9a-f]{64}")


def _fingerprint_entry(fingerprint: str) -> str:
    return f"{DATASETS}/.fingerprints/{fingerprint.removeprefix('0x')}"


def _stored_before(store: Any, source: DataSource) -> str | None:
    """The id of the stored object that is this one data file's bytes, if an earlier run
    stored it (a later job over the same file then neither copies nor keccak-hashes it
    again). The note that names the object is only a hint, whoever wrote it: the object
    is taken only if its own bytes give the file's fingerprint (its sha256 under the
    file's name), so a note pointing elsewhere costs one read and the file is stored."""
    entry = _fingerprint_entry(source.dataset_id)
    try:
        if not store.exists(entry):
            return None
        with store.fs.open(store.path(entry), "rb") as fh:
            object_id = fh.read(80).decode("ascii", "replace").strip()
        if not _OBJECT_ID.fullmatch(object_id) or not store.has(DATASETS, object_id):
            return None
        digest, size = hashlib.sha256(), 0
        with store.fs.open(store.object_path(DATASETS, object_id), "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                digest.update(chunk)
                size += len(chunk)
        name = Path(source.paths[0]).name
        if _files_fingerprint([(name, size, digest.hexdigest())]) != source.dataset_id:
            log.warning("ignoring %s/%s: it names an object of other bytes", store.url, entry)
            return None
    except (OgkitError, OSError) as exc:
        log.warning("ignoring %s/%s (%s)", store.url, entry, exc)
        return None
    return object_id


@functools.lru_cache(maxsize=16)
def _stored_local(path: str, fmt: str, stamp: tuple[int, ...]) -> DataSource:
    """The stored dataset at ``path`` (the version ``stamp`` names), described. Whoever
    holds the store may swap its files at any time: a Parquet object is described from
    its own footer through a checked descriptor (:func:`_parquet_file`), and any other
    is checked to be a regular file just before polars opens it (a FIFO would block an
    open forever)."""
    if fmt == "parquet":
        file = _parquet_file(path, stamp)
        empty = pl.from_arrow(file.schema_arrow.empty_table())
        schema = {k: str(v) for k, v in empty.schema.items()}
        return DataSource(fmt, file.metadata.num_rows, schema, "", paths=(path,))
    os.close(_open_regular(path))
    source = DataSource(fmt, 0, {}, "", paths=(path,))
    lazy = source.scan()
    schema = {k: str(v) for k, v in lazy.collect_schema().items()}
    n_rows = int(lazy.select(pl.len()).collect().item())
    return DataSource(fmt, n_rows, schema, "", paths=(path,))


def open_stored_dataset(store: Any, object_id: str, fmt: str) -> DataSource:
    """The dataset a manifest names (``object id``, ``format``) as a :class:`DataSource`.
    A local store's object is read lazily by path (row groups as needed); any other
    store's is fetched once, checked against its id, and read in memory. Missing,
    unreadable or of an unknown format: :class:`~ogkit.errors.InputsUnavailableError`."""
    where = f"dataset {object_id:.80} ({fmt!r:.20}) in {store.url}"
    if fmt not in STORED_FORMATS:
        raise InputsUnavailableError(
            f"{where}: unknown format; ogkit stores {', '.join(STORED_FORMATS)}"
        )
    try:
        if not store.has(DATASETS, object_id):
            raise InputsUnavailableError(
                f"{where} is not in the store: the batch's inputs cannot be read"
            )
        if store.is_local:
            path = store.object_path(DATASETS, object_id)
        else:
            # Fetched once, checked against its id, then read by the same reader as a
            # local store's (only the plan's columns, row groups as needed): a dataset
            # must read the same in every kind of store.
            path = _local_copy(store, object_id, fmt)
        st = os.stat(path)
        if not Path(path).is_file():
            raise InputsUnavailableError(f"{where} is not a regular file")
        return _stored_local(path, fmt, file_stamp(st))
    except InputsUnavailableError:
        raise
    except UNREADABLE as exc:  # a hostile or broken object: never a traceback
        raise InputsUnavailableError(
            f"{where} cannot be read: {type(exc).__name__}: {exc}"[:600]
        ) from None


def _fetched_datasets_folder() -> Path:
    """This user's folder for datasets fetched from a store that is not local, in the
    temporary folder: used only if it is, at each call, a real directory of this user's
    that no one else may write to (anyone can make folders there, and plant files a
    verifier would read, if a cleaner removed it); else a fresh private folder, one for
    this process."""
    import tempfile

    uid = os.getuid() if hasattr(os, "getuid") else None
    folder = Path(tempfile.gettempdir()) / f"ogkit-datasets-{uid if uid is not None else 'user'}"
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        st = os.lstat(folder)
        if (
            stat.S_ISDIR(st.st_mode)
            and (uid is None or st.st_uid == uid)
            and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
        ):
            return folder
        log.warning("not reusing %s (not a private folder of this user's)", folder)
    except OSError as exc:
        log.warning("not reusing %s: %s", folder, exc)
    return _private_folder()


@functools.lru_cache(maxsize=1)
def _private_folder() -> Path:
    import tempfile

    return Path(tempfile.mkdtemp(prefix="ogkit-datasets-"))


def _local_copy(store: Any, object_id: str, fmt: str) -> str:
    """A local file holding the store's object ``object_id`` (hash-checked on fetch), in
    this user's private folder (:func:`_fetched_datasets_folder`); content-addressed, so
    reused while it exists."""
    import tempfile

    folder = _fetched_datasets_folder()
    final = folder / f"{object_id}.{fmt}"
    try:
        reuse = stat.S_ISREG(os.lstat(final).st_mode)  # never through a link
    except OSError:
        reuse = False
    if not reuse:
        data = store.get(DATASETS, object_id)  # raises if its bytes do not hash to the id
        fd, tmp = tempfile.mkstemp(prefix=f".{object_id[:18]}-", suffix=".tmp", dir=folder)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, final)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return str(final)


def plan_from_bindings(bindings: Sequence[Any]) -> InputPlan:
    """The input plan a manifest states (each input's ``name``, ``columns``, ``dtype``,
    ``row_shape``): several columns are stacked side by side, one column is one input."""
    out = []
    for t in bindings:
        columns = tuple(t.columns or ())
        if not columns:
            raise InputsUnavailableError(f"input {t.name!r:.80} names no dataset columns")
        out.append(InputBinding(t.name, columns, t.dtype, tuple(t.row_shape), len(columns) > 1))
    return InputPlan(tuple(out))
