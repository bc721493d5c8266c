"""Fixed-point values of a ZK proof and their binding to ogkit's row hashes (spec §11).

A proof's public values are elements of the BN254 scalar field. ogkit's receipts hash a
row's canonical bytes (spec §2). This module converts between them, exactly and with
integers only, the same way the on-chain judge (``ZkJudge.sol``) does:

* a float32 ``x`` (finite) becomes ``round(x * 2**scale)``, rounding half away from zero,
  computed from its bits (no floating point); an integer ``v`` becomes ``v * 2**scale``;
* a negative fixed-point value ``v`` is the field element ``P - |v|``.

A :class:`TensorLayout` says where a tensor's bytes sit in a row's canonical message and
where its values sit among a proof's public instances.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from ogkit.crypto.encoding import DOMAIN_TAG

__all__ = [
    "FIELD_MODULUS",
    "MAX_SCALE",
    "BindingError",
    "TensorLayout",
    "compare_outputs",
    "field_to_int",
    "fixed_point",
    "instances_for_row",
    "int_to_field",
    "parse_row",
    "row_message",
]

#: The BN254 scalar field modulus (the field of EZKL's Halo2 circuits).
FIELD_MODULUS = 0x30644E72E131A029B85045B68181585D2833E84879B9709143E1F593F0000001

#: The largest fixed-point scale of a tensor (as ``ZkJudge.MAX_SCALE``).
MAX_SCALE = 64

_FLOAT32 = 1
_INT32 = 6
_INT64 = 7
#: dtype codes (spec §2) a ZK binding can decode, and their element sizes.
ELEMENT_SIZES = {_FLOAT32: 4, _INT32: 4, _INT64: 8}


class BindingError(ValueError):
    """Row bytes that do not fit a layout, or public values that do not bind to them."""


def fixed_point_f32_bits(bits: int, scale: int) -> int:
    """``round(x * 2**scale)`` (half away from zero) for the float32 with these bits."""
    if not 0 <= scale <= 64:
        raise BindingError(f"scale {scale} is outside 0..64")
    sign = bits >> 31
    exponent = (bits >> 23) & 0xFF
    mantissa = bits & 0x7FFFFF
    if exponent == 0xFF:
        raise BindingError("NaN or infinity has no fixed-point value")
    if exponent == 0:
        shift = -149 + scale
    else:
        mantissa |= 1 << 23
        shift = exponent - 150 + scale
    if shift >= 0:
        magnitude = mantissa << shift
    else:
        k = -shift
        magnitude = (mantissa + (1 << (k - 1))) >> k
    return -magnitude if sign else magnitude


def fixed_point(value: Any, dtype_code: int, scale: int) -> int:
    """The fixed-point integer of one element (float32 bits-exact, or an integer)."""
    if dtype_code == _FLOAT32:
        bits = int(np.asarray(value, dtype="<f4").reshape(()).view("<u4"))
        return fixed_point_f32_bits(bits, scale)
    if dtype_code in (_INT32, _INT64):
        if not 0 <= scale <= MAX_SCALE:
            raise BindingError(f"scale {scale} is outside 0..64")
        return int(value) << scale
    raise BindingError(f"dtype code {dtype_code} has no fixed-point binding")


def int_to_field(v: int) -> int:
    if abs(v) >= FIELD_MODULUS // 2:
        raise BindingError(f"fixed-point value {v} does not fit the field")
    return v % FIELD_MODULUS


def field_to_int(f: int) -> int:
    """The signed value of a field element (elements above P/2 are negative)."""
    if not 0 <= f < FIELD_MODULUS:
        raise BindingError(f"{f:#x} is not a field element")
    return f - FIELD_MODULUS if f > FIELD_MODULUS // 2 else f


@dataclass(frozen=True)
class TensorLayout:
    """One tensor of a row: its canonical header, where its values are among the proof's
    instances (``base + j * count + k`` for row ``j`` of a chunk, element ``k``), its
    fixed-point scale and, for outputs, the tolerance in fixed-point units."""

    name: str
    dtype_code: int
    row_shape: tuple[int, ...]
    scale: int
    base: int
    tolerance: int = 0

    def __post_init__(self) -> None:
        # What ZkJudge.registerProfile accepts: float32/int32/int64, scale 0..64 (so every
        # fixed-point value stays below 2^192, far inside the field), at least one element.
        if self.dtype_code not in ELEMENT_SIZES:
            raise BindingError(f"tensor {self.name!r}: dtype code {self.dtype_code} unsupported")
        if not 0 <= self.scale <= MAX_SCALE:
            raise BindingError(f"tensor {self.name!r}: scale {self.scale} is outside 0..64")
        if any(d < 1 for d in self.row_shape) or not 0 <= self.base < 2**32:
            raise BindingError(f"tensor {self.name!r}: empty shape or base out of range")
        if not 0 <= self.tolerance < 2**64:
            raise BindingError(f"tensor {self.name!r}: tolerance out of 0..2^64-1")

    @property
    def count(self) -> int:
        return int(np.prod(self.row_shape, dtype=np.int64)) if self.row_shape else 1

    @property
    def itemsize(self) -> int:
        return ELEMENT_SIZES[self.dtype_code]

    @property
    def header(self) -> bytes:
        name = self.name.encode("utf-8")
        return (
            struct.pack(">I", len(name))
            + name
            + struct.pack(">BB", self.dtype_code, len(self.row_shape))
            + b"".join(struct.pack(">I", d) for d in self.row_shape)
            + struct.pack(">Q", self.count * self.itemsize)
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "dtype_code": self.dtype_code,
            "row_shape": list(self.row_shape),
            "scale": self.scale,
            "base": self.base,
            "tolerance": self.tolerance,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TensorLayout:
        return cls(
            name=str(d["name"]),
            dtype_code=int(d["dtype_code"]),
            row_shape=tuple(int(x) for x in d["row_shape"]),
            scale=int(d["scale"]),
            base=int(d["base"]),
            tolerance=int(d.get("tolerance", 0)),
        )

    def abi_tuple(self) -> tuple[bytes, int, int, int, int, int]:
        """``(header, dtype, count, scale, base, tolerance)`` as ``ZkJudge.Tensor``."""
        return (self.header, self.dtype_code, self.count, self.scale, self.base, self.tolerance)


def _canonical_order(layouts: tuple[TensorLayout, ...]) -> list[TensorLayout]:
    return sorted(layouts, key=lambda t: t.name.encode("utf-8"))


def row_message(layouts: tuple[TensorLayout, ...], values: dict[str, np.ndarray]) -> bytes:
    """The canonical message (spec §2) of one row; its keccak256 is the row hash."""
    parts = [DOMAIN_TAG, struct.pack(">I", len(layouts))]
    for t in _canonical_order(layouts):
        dt = {_FLOAT32: "<f4", _INT32: "<i4", _INT64: "<i8"}[t.dtype_code]
        a = np.ascontiguousarray(np.asarray(values[t.name]).astype(dt, copy=False))
        if a.size != t.count:
            raise BindingError(f"tensor {t.name!r} has {a.size} values, expected {t.count}")
        parts += [t.header, a.tobytes()]
    return b"".join(parts)


def parse_row(layouts: tuple[TensorLayout, ...], message: bytes) -> dict[str, list[int]]:
    """Split a canonical row message into each tensor's element values (as integers: the
    float32 bit patterns or the signed integers), checking every header byte."""
    prefix = DOMAIN_TAG + struct.pack(">I", len(layouts))
    if not message.startswith(prefix):
        raise BindingError("row bytes do not start with the layout's domain tag and count")
    pos = len(prefix)
    out: dict[str, list[int]] = {}
    for t in _canonical_order(layouts):
        header = t.header
        if message[pos : pos + len(header)] != header:
            raise BindingError(f"row bytes do not hold tensor {t.name!r} as the layout says")
        pos += len(header)
        n = t.count * t.itemsize
        chunk = message[pos : pos + n]
        if len(chunk) != n:
            raise BindingError(f"row bytes end inside tensor {t.name!r}")
        pos += n
        fmt = {_FLOAT32: "<I", _INT32: "<i", _INT64: "<q"}[t.dtype_code]
        out[t.name] = [v for (v,) in struct.iter_unpack(fmt, chunk)]
    if pos != len(message):
        raise BindingError(f"{len(message) - pos} bytes after the last tensor")
    return out


def _fixed_values(t: TensorLayout, raw: list[int]) -> list[int]:
    if t.dtype_code == _FLOAT32:
        return [fixed_point_f32_bits(b, t.scale) for b in raw]
    return [v << t.scale for v in raw]


def instances_for_row(layouts: tuple[TensorLayout, ...], message: bytes) -> dict[str, list[int]]:
    """The field elements a row's bytes must appear as, per tensor."""
    raw = parse_row(layouts, message)
    return {t.name: [int_to_field(v) for v in _fixed_values(t, raw[t.name])] for t in layouts}


def check_inputs_bound(
    layouts: tuple[TensorLayout, ...], message: bytes, instances: list[int], j: int
) -> None:
    """Raise :class:`BindingError` unless the proof's instances for chunk row ``j`` are
    exactly the row's inputs in fixed point."""
    if j < 0:
        raise BindingError(f"chunk position {j} is negative")
    expected = instances_for_row(layouts, message)
    for t in layouts:
        start = t.base + j * t.count
        got = instances[start : start + t.count]
        if got != expected[t.name]:
            raise BindingError(
                f"the proof's public input {t.name!r} for row {j} of its chunk is not the "
                "receipted input in fixed point"
            )


def compare_outputs(
    layouts: tuple[TensorLayout, ...], message: bytes, instances: list[int], j: int
) -> tuple[bool, int]:
    """Whether the receipted outputs are within tolerance of the proof's outputs for chunk
    row ``j``; also the largest difference seen, in fixed-point units. NaN or infinity in a
    receipted float output is beyond any tolerance."""
    if j < 0:
        raise BindingError(f"chunk position {j} is negative")
    raw = parse_row(layouts, message)
    worst = 0
    within = True
    for t in layouts:
        start = t.base + j * t.count
        proven = [field_to_int(f) for f in instances[start : start + t.count]]
        if len(proven) != t.count:
            raise BindingError(f"the proof has too few public outputs for {t.name!r}")
        try:
            receipted = _fixed_values(t, raw[t.name])
        except BindingError:
            return False, -1
        for a, b in zip(receipted, proven, strict=True):
            d = abs(a - b)
            worst = max(worst, d)
            if d > t.tolerance:
                within = False
    return within, worst
