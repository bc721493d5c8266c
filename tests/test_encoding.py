"""The canonical tensor row hash: vectorised == reference, and it commits to everything."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ogkit.crypto import DTYPE_CODES, keccak256, tensor_row_hash, tensor_row_hashes
from ogkit.errors import ConfigError

SUPPORTED = [
    np.float32,
    np.uint8,
    np.int8,
    np.uint16,
    np.int16,
    np.int32,
    np.int64,
    np.bool_,
    np.float16,
    np.float64,
    np.uint32,
    np.uint64,
]


def _random_values(rng: np.random.Generator, shape: tuple[int, ...], dtype: type) -> np.ndarray:
    dt = np.dtype(dtype)
    if dt.kind == "b":
        return rng.integers(0, 2, size=shape).astype(bool)
    size = int(np.prod(shape, dtype=np.int64))
    # raw random bytes: covers NaN payloads, -0.0, infinities, extremes
    return np.frombuffer(rng.bytes(size * dt.itemsize), dtype=dt).reshape(shape).copy()


def _rows(tensors: dict[str, np.ndarray]) -> list[bytes]:
    n = next(iter(tensors.values())).shape[0]
    return [tensor_row_hash({k: v[i] for k, v in tensors.items()}) for i in range(n)]


def test_golden_vector() -> None:
    """Pins the byte format of docs/spec.md section 2 (the spec quotes this hash)."""
    row = {"x": np.array([1.0, 2.0], dtype=np.float32)}
    message = (
        b"ogkit.tensors.v1"
        + struct.pack(">I", 1)  # one tensor
        + struct.pack(">I", 1)
        + b"x"  # name
        + bytes([1, 1])  # float32, ndim 1
        + struct.pack(">I", 2)  # dim
        + struct.pack(">Q", 8)  # nbytes
        + struct.pack("<2f", 1.0, 2.0)
    )
    assert tensor_row_hash(row) == keccak256(message)
    assert tensor_row_hash(row).hex() == (
        "06d259822b025a4f64cc616de59d33431bae2ba274d0f5b7f34bea06da0b3a7a"
    )


def test_dtype_codes_are_onnx_numbers() -> None:
    codes = {
        np.dtype(t).name: DTYPE_CODES[(np.dtype(t).kind, np.dtype(t).itemsize)] for t in SUPPORTED
    }
    assert codes == {
        "float32": 1,
        "uint8": 2,
        "int8": 3,
        "uint16": 4,
        "int16": 5,
        "int32": 6,
        "int64": 7,
        "bool": 9,
        "float16": 10,
        "float64": 11,
        "uint32": 12,
        "uint64": 13,
    }


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(min_value=1, max_value=5),
    specs=st.dictionaries(
        keys=st.text(min_size=0, max_size=6),
        values=st.tuples(
            st.sampled_from(SUPPORTED),
            st.lists(st.integers(min_value=0, max_value=3), min_size=0, max_size=3),
        ),
        min_size=1,
        max_size=4,
    ),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
)
def test_vectorised_matches_reference(
    n: int, specs: dict[str, tuple[type, list[int]]], seed: int
) -> None:
    rng = np.random.default_rng(seed)
    tensors = {
        name: _random_values(rng, (n, *shape), dtype) for name, (dtype, shape) in specs.items()
    }
    out = tensor_row_hashes(tensors)
    assert out.shape == (n, 32) and out.dtype == np.uint8
    assert [r.tobytes() for r in out] == _rows(tensors)


def test_dict_order_does_not_matter() -> None:
    rng = np.random.default_rng(1)
    a = rng.standard_normal((4, 3)).astype(np.float32)
    b = rng.integers(0, 9, (4,))
    c = rng.integers(0, 2, (4, 2)).astype(bool)
    h1 = tensor_row_hashes({"a": a, "b": b, "é": c})
    h2 = tensor_row_hashes({"é": c, "b": b, "a": a})
    assert np.array_equal(h1, h2)
    assert tensor_row_hash({"a": a[0], "b": b[0]}) == tensor_row_hash({"b": b[0], "a": a[0]})


def test_names_sort_by_utf8_bytes() -> None:
    # "Z" (0x5A) < "a" (0x61) < "é" (0xC3 0xA9): same order as Python's str order here,
    # but the reference must also match the vectorised one on non-ASCII names
    t = {"é": np.ones((2, 1), np.int8), "Z": np.zeros((2,), np.int8), "a": np.ones((2,), np.int8)}
    assert [r.tobytes() for r in tensor_row_hashes(t)] == _rows(t)


def test_every_part_is_committed() -> None:
    x = np.arange(12, dtype=np.float32).reshape(2, 6)
    base = tensor_row_hash({"x": x[0]})
    changed_value = x[0].copy()
    changed_value[3] = np.nextafter(changed_value[3], np.float32(100))
    variants = [
        {"x": changed_value},  # one value, by one ulp
        {"x": x[0].view(np.int32)},  # same bytes, other dtype
        {"x": x[0].reshape(2, 3)},  # same bytes, other shape
        {"x": x[0].reshape(6, 1)},
        {"y": x[0]},  # other name
        {"x": x[0], "extra": np.zeros(0, np.float32)},  # an extra (empty) tensor
        {"x": -np.zeros(6, np.float32)},
    ]
    hashes = {base} | {tensor_row_hash(v) for v in variants}
    assert len(hashes) == len(variants) + 1
    assert tensor_row_hash({"x": np.zeros(6, np.float32)}) != tensor_row_hash(variants[-1])


def test_big_endian_and_layout_do_not_matter() -> None:
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, 4, 3))
    little = tensor_row_hashes({"x": x.astype("<f8"), "i": np.arange(5, dtype="<i4")})
    big = tensor_row_hashes({"x": x.astype(">f8"), "i": np.arange(5, dtype=">i4")})
    assert np.array_equal(little, big)
    fortran = np.asfortranarray(x)
    strided = np.empty((5, 4, 6))[:, :, ::2]
    strided[...] = x
    assert np.array_equal(tensor_row_hashes({"x": fortran}), tensor_row_hashes({"x": x}))
    assert np.array_equal(tensor_row_hashes({"x": strided}), tensor_row_hashes({"x": x}))
    assert tensor_row_hash({"x": x[1].astype(">f8")}) == tensor_row_hash({"x": x[1]})


def test_zero_dim_rows() -> None:
    y = np.array([0.5, -1.0, 3.0], dtype=np.float32)
    out = tensor_row_hashes({"y": y})
    for i in range(3):
        assert out[i].tobytes() == tensor_row_hash({"y": y[i]})  # numpy scalar
        assert out[i].tobytes() == tensor_row_hash({"y": np.array(y[i])})  # 0-d array


def test_bool_is_canonical() -> None:
    raw = np.array([[0, 1, 2, 255]], dtype=np.uint8).view(np.bool_)
    clean = np.array([[False, True, True, True]])
    assert np.array_equal(tensor_row_hashes({"b": raw}), tensor_row_hashes({"b": clean}))
    assert tensor_row_hash({"b": raw[0]}) == tensor_row_hash({"b": clean[0]})


def test_zero_rows_and_empty_row_shapes() -> None:
    assert tensor_row_hashes({"x": np.zeros((0, 3), np.float32)}).shape == (0, 32)
    t = {"x": np.zeros((3, 0, 2), np.float32), "y": np.ones((3,), np.int64)}
    assert [r.tobytes() for r in tensor_row_hashes(t)] == _rows(t)


@pytest.mark.parametrize(
    "bad",
    [
        np.array([["a"], ["b"]]),
        np.array([[b"a"], [b"b"]]),
        np.array([[object()], [object()]]),
        np.zeros((2, 1), np.complex64),
        np.zeros((2, 1), "datetime64[s]"),
        np.zeros((2, 1), [("a", np.int32)]),
    ],
)
def test_unsupported_dtypes_raise(bad: np.ndarray) -> None:
    with pytest.raises(ConfigError, match=r"tensor 'weird' has dtype"):
        tensor_row_hashes({"ok": np.zeros((2, 1), np.float32), "weird": bad})
    with pytest.raises(ConfigError, match=r"'weird'"):
        tensor_row_hash({"weird": bad[0]})


def test_bad_arguments_raise() -> None:
    with pytest.raises(ConfigError, match="rows"):
        tensor_row_hashes({"a": np.zeros((3, 2)), "b": np.zeros((4, 2))})
    with pytest.raises(ConfigError, match="scalar"):
        tensor_row_hashes({"a": np.float32(1)})
    with pytest.raises(ConfigError):
        tensor_row_hashes({})
    with pytest.raises(ConfigError):
        tensor_row_hash({})
    with pytest.raises(ConfigError):
        tensor_row_hash({1: np.zeros(2)})  # type: ignore[dict-item]
