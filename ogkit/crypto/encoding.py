"""Canonical per-row tensor hashing (``ogkit.tensors.v1``, docs/spec.md section 2).

A row is a mapping ``name -> array`` (one row's slice of each input or output tensor).
Its hash commits to the names, dtypes, shapes and exact value bytes, independent of
dict order, host byte order and memory layout::

    keccak256( b"ogkit.tensors.v1" || u32be(count)
               || for each tensor, names sorted by their UTF-8 bytes:
                    u32be(len(name)) || name || u8(dtype_code) || u8(ndim)
                    || u32be(dim) for each dim || u64be(nbytes)
                    || values, little-endian, C order )

:func:`tensor_row_hash` is the plain reference for one row; :func:`tensor_row_hashes`
computes the same thing for ``n`` rows at once with numpy and :func:`keccak256_rows`.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Any

import numpy as np

from ogkit.crypto.keccak import keccak256, keccak256_rows
from ogkit.errors import ConfigError

__all__ = ["DOMAIN_TAG", "DTYPE_CODES", "dtype_code", "tensor_row_hash", "tensor_row_hashes"]

#: Prefix of every row message; the version lets a future encoding coexist.
DOMAIN_TAG = b"ogkit.tensors.v1"

#: ONNX TensorProto.DataType numbers, keyed by numpy (kind, itemsize).
DTYPE_CODES: dict[tuple[str, int], int] = {
    ("f", 4): 1,  # float32
    ("u", 1): 2,  # uint8
    ("i", 1): 3,  # int8
    ("u", 2): 4,  # uint16
    ("i", 2): 5,  # int16
    ("i", 4): 6,  # int32
    ("i", 8): 7,  # int64
    ("b", 1): 9,  # bool
    ("f", 2): 10,  # float16
    ("f", 8): 11,  # float64
    ("u", 4): 12,  # uint32
    ("u", 8): 13,  # uint64
}

_U32_MAX = 0xFFFFFFFF


def dtype_code(dtype: np.dtype[Any], name: str = "?") -> int:
    """ONNX data-type number for ``dtype``; ConfigError for anything not in the table."""
    dt = np.dtype(dtype)
    # structured/subarray dtypes have kind "V"; datetimes ("M", "m") are not in the table
    code = DTYPE_CODES.get((dt.kind, dt.itemsize)) if dt.fields is None else None
    if code is None:
        raise ConfigError(
            f"tensor {name!r} has dtype {dt} which has no canonical encoding; supported: "
            "float16/32/64, int8/16/32/64, uint8/16/32/64, bool"
        )
    return code


def _canonical(name: str, arr: Any) -> tuple[bytes, int, np.ndarray]:
    """Validate one tensor; return its UTF-8 name, dtype code and a little-endian,
    C-contiguous copy or view of its values.

    Bool tensors are returned as uint8 0/1 so a bool array holding raw bytes other than
    0 and 1 (possible via ``.view``) still hashes canonically.
    """
    if not isinstance(name, str):
        raise ConfigError(f"tensor names must be str, got {type(name).__name__} {name!r}")
    try:
        name_utf8 = name.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ConfigError(f"tensor name {name!r} is not valid UTF-8: {exc}") from exc
    if len(name_utf8) > _U32_MAX:
        raise ConfigError(f"tensor name {name[:40]!r}... is too long")
    a = np.asarray(arr)
    code = dtype_code(a.dtype, name)
    if a.dtype.kind == "b":
        a = np.asarray(a.view(np.uint8) != 0).view(np.uint8)  # asarray: 0-d gives a scalar
    elif a.dtype.itemsize > 1 and a.dtype.str[0] != "<":  # big-endian input or host
        a = a.astype(a.dtype.newbyteorder("<"))
    # not np.ascontiguousarray: it turns 0-d arrays into shape (1,)
    return name_utf8, code, np.asarray(a, order="C")


def _tensor_header(name_utf8: bytes, code: int, shape: tuple[int, ...], itemsize: int) -> bytes:
    """Everything of one tensor's record except the values."""
    if len(shape) > 255:
        raise ConfigError(f"tensor {name_utf8.decode()!r} has {len(shape)} dims; at most 255")
    if any(d > _U32_MAX for d in shape):
        raise ConfigError(f"tensor {name_utf8.decode()!r} has a dim >= 2**32: {shape}")
    nbytes = int(np.prod(shape, dtype=np.uint64)) * itemsize
    return (
        struct.pack(">I", len(name_utf8))
        + name_utf8
        + struct.pack(">BB", code, len(shape))
        + b"".join(struct.pack(">I", d) for d in shape)
        + struct.pack(">Q", nbytes)
    )


def _check_count(tensors: Mapping[str, Any]) -> None:
    if not isinstance(tensors, Mapping):
        raise ConfigError(f"expected a mapping name -> array, got {type(tensors).__name__}")
    if len(tensors) == 0:
        raise ConfigError("cannot hash a row with no tensors")
    if len(tensors) > _U32_MAX:  # pragma: no cover - not reachable in practice
        raise ConfigError("too many tensors")


def tensor_row_hash(tensors: Mapping[str, Any]) -> bytes:
    """Canonical hash of one row (arrays without the leading row dim). Reference version."""
    _check_count(tensors)
    items = sorted((_canonical(name, arr) for name, arr in tensors.items()), key=lambda t: t[0])
    parts = [DOMAIN_TAG, struct.pack(">I", len(items))]
    for name_utf8, code, a in items:
        parts.append(_tensor_header(name_utf8, code, a.shape, a.dtype.itemsize))
        parts.append(a.tobytes(order="C"))
    return keccak256(b"".join(parts))


def tensor_row_hashes(tensors: Mapping[str, Any]) -> np.ndarray:
    """Canonical hash of every row: ``(n, 32)`` uint8, row ``i`` hashing ``{k: v[i]}``.

    Every array's first dim is the row count ``n``. The per-tensor headers are the same
    for every row (all rows share shapes), so each row's message is built by laying
    constant header bytes and each tensor's row bytes side by side in one ``(n, L)``
    array, then hashed in one :func:`keccak256_rows` call.
    """
    _check_count(tensors)
    canon: list[tuple[bytes, int, np.ndarray]] = []
    n: int | None = None
    for name, arr in tensors.items():
        a = np.asarray(arr)
        if a.ndim == 0:
            raise ConfigError(f"tensor {name!r} is a scalar; it needs a leading row dimension")
        if n is None:
            n = a.shape[0]
        elif a.shape[0] != n:
            raise ConfigError(
                f"tensor {name!r} has {a.shape[0]} rows but an earlier tensor has {n}; "
                "all tensors must have the same number of rows"
            )
        canon.append(_canonical(name, a))
    assert n is not None
    if n == 0:
        return np.empty((0, 32), dtype=np.uint8)
    canon.sort(key=lambda t: t[0])

    # Segments of each message: constant bytes (broadcast) or a (n, k) uint8 block.
    segments: list[bytes | np.ndarray] = [DOMAIN_TAG + struct.pack(">I", len(canon))]
    for name_utf8, code, a in canon:
        row_shape = a.shape[1:]
        segments.append(_tensor_header(name_utf8, code, row_shape, a.dtype.itemsize))
        row_nbytes = int(np.prod(row_shape, dtype=np.int64)) * a.dtype.itemsize
        if row_nbytes:
            # byte view of each row: C order, already little-endian
            segments.append(a.reshape(n, -1).view(np.uint8))
    # merge adjacent constant segments so each becomes one broadcast assignment
    merged: list[bytes | np.ndarray] = []
    for seg in segments:
        if isinstance(seg, bytes) and merged and isinstance(merged[-1], bytes):
            merged[-1] += seg
        else:
            merged.append(seg)

    length = sum(len(s) if isinstance(s, bytes) else s.shape[1] for s in merged)
    messages = np.empty((n, length), dtype=np.uint8)
    pos = 0
    for seg in merged:
        if isinstance(seg, bytes):
            messages[:, pos : pos + len(seg)] = np.frombuffer(seg, dtype=np.uint8)
            pos += len(seg)
        else:
            messages[:, pos : pos + seg.shape[1]] = seg
            pos += seg.shape[1]
    return keccak256_rows(messages)
