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


def test_layouts_the_judge_would_refuse_are_refused() -> None:
    # ZkJudge.registerProfile refuses these too: an unknown dtype (the judge would read it
    # as float32), a scale past 64 (shifts in uint256 would wrap), an empty tensor.
    for bad in (
        dict(dtype_code=2, row_shape=(3,), scale=8),
        dict(dtype_code=1, row_shape=(3,), scale=65),
        dict(dtype_code=7, row_shape=(0,), scale=0),
    ):
        with pytest.raises(BindingError):
            TensorLayout("x", base=0, **bad)
    with pytest.raises(BindingError):
        fixed_point(np.int64(1), 7, 65)


def test_largest_values_stay_far_inside_the_field() -> None:
    # At the largest scale the largest float32 and int64 stay below 2^192: a negative value
    # never meets a positive one modulo the field, and P/2 is never reached.
    big = fixed_point(np.float32(3.4028235e38), 1, 64)
    assert big == (0xFFFFFF << (254 - 150 + 64)) and big < 2**192
    assert fixed_point(np.float32(-3.4028235e38), 1, 64) == -big
    assert int_to_field(-big) != int_to_field(big)
    assert fixed_point(np.int64(-(2**63)), 7, 64) == -(2**127)


def test_negative_chunk_position_is_refused() -> None:
    from ogkit.zk.fixed import check_inputs_bound, compare_outputs

    layouts = (TensorLayout("x", 1, (1,), 0, 0),)
    msg = row_message(layouts, {"x": np.array([1.0], np.float32)})
    # instance -1 (Python's last element) is the row's value: a negative position would
    # bind it if it were not refused.
    instances = [0, 1]
    with pytest.raises(BindingError):
        check_inputs_bound(layouts, msg, instances, -1)
    with pytest.raises(BindingError):
        compare_outputs(layouts, msg, instances, -1)
    check_inputs_bound(layouts, msg, instances, 1)
