"""Fixed-point conversion and the row layout (spec §11), against ezkl's own quantiser."""

from __future__ import annotations

import ezkl
import numpy as np
import pytest

from ogkit.crypto.encoding import tensor_row_hash
from ogkit.crypto.keccak import keccak256
from ogkit.zk.fixed import (
    FIELD_MODULUS,
    BindingError,
    TensorLayout,
    field_to_int,
    fixed_point,
    int_to_field,
    parse_row,
    row_message,
)


def _ezkl_fixed(x: float, scale: int) -> int:
    felt = ezkl.float_to_felt(float(x), scale, ezkl.PyInputType.F32)
    return field_to_int(int(ezkl.felt_to_big_endian(felt), 16))


@pytest.mark.parametrize("scale", [0, 7, 8, 10, 13])
def test_fixed_point_matches_ezkl(scale: int) -> None:
    rng = np.random.default_rng(scale)
    values = np.concatenate(
        [
            rng.standard_normal(300).astype(np.float32) * 4,
            np.array([0.0, -0.0, 0.5, -0.5, 1.5, -2.5, 2**-9, -(2**-9), 3 * 2**-10], np.float32),
            np.array([1e-40, -1e-40, 1234.5678], np.float32),  # subnormals, a large value
        ]
    )
    for v in values:
        assert fixed_point(v, 1, scale) == _ezkl_fixed(float(v), scale), (v, scale)


def test_half_rounds_away_from_zero_and_nan_refused() -> None:
    assert fixed_point(np.float32(0.5), 1, 0) == 1
    assert fixed_point(np.float32(-0.5), 1, 0) == -1
    assert fixed_point(np.float32(2.5), 1, 0) == 3
    assert fixed_point(np.int64(-3), 7, 4) == -48
    for bad in (np.nan, np.inf, -np.inf):
        with pytest.raises(BindingError):
            fixed_point(np.float32(bad), 1, 8)


def test_field_round_trip() -> None:
    for v in (0, 1, -1, 12345, -(2**100)):
        assert field_to_int(int_to_field(v)) == v
    assert int_to_field(-1) == FIELD_MODULUS - 1
    with pytest.raises(BindingError):
        field_to_int(FIELD_MODULUS)


def test_row_message_is_the_canonical_row_hash() -> None:
    layouts = (
        TensorLayout("probabilities", 1, (3,), 8, 1, 5),
        TensorLayout("label", 7, (), 0, 0),
    )
    values = {"label": np.int64(2), "probabilities": np.array([0.1, 0.2, 0.7], np.float32)}
    msg = row_message(layouts, values)
    assert keccak256(msg) == tensor_row_hash(values)
    parsed = parse_row(layouts, msg)
    assert parsed["label"] == [2]
    with pytest.raises(BindingError):
        parse_row(layouts, msg + b"\x00")
    with pytest.raises(BindingError):
        parse_row(layouts, msg[:-1])
    other = (TensorLayout("probabilities", 1, (3,), 8, 1), TensorLayout("labels", 7, (), 0, 0))
    with pytest.raises(BindingError):
        parse_row(other, msg)
