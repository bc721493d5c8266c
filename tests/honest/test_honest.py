"""Honest controls must pass verification.

Each control (see ``controls.py``: scikit-learn models on bundled datasets via skl2onnx,
and models shipped in the ``onnx`` package) is published to a hub, run by
``run_verified_inference`` as a node runs it — 2,400 rows, partitions of 513 rows,
mini-batches of 256 — signed by a software enclave, and then verified with sample rates
0.01, 0.1 and 1.0, each with 20 different verifier secrets. The node is honest, so every
verdict must pass: a failure here is a false accusation.
"""

from __future__ import annotations

import hashlib

import onnxruntime as ort
import pytest

from .controls import (
    BATCH_SIZE,
    CONTROL_NAMES,
    GEOMETRIES,
    N_ROWS,
    PARTITION_ROWS,
    batch_sensitivity,
)

SAMPLE_RATES = (0.01, 0.1, 1.0)
SECRETS = tuple(hashlib.sha256(f"honest-verifier-{i}".encode()).digest() for i in range(20))


def test_batch_sensitivity(honest_zoo):
    """How often a row's outputs change bit-wise with the mini-batch the row ran in.

    Fraction of the 2,400 rows whose outputs (``label`` and ``probabilities``, or the one
    tensor of the onnx-package models) differ bit-wise from running all rows in one call
    (for a fixed-batch model: consecutive zero-padded chunks of its batch), when the rows
    are fed 1024, 256, 100, 7 or 1 at a time; ``same`` runs the one-call geometry again.
    Measured with ogkit's pinned session options (1 thread, deterministic compute, all
    graph optimisations), onnxruntime 1.32.0, scikit-learn 1.9.1 / skl2onnx 1.20.0,
    onnx 1.23.2, on a 2-core Intel Xeon with AVX-512 (2026-12-01):

    ===================== ====== ====== ====== ====== ====== ======
    control               same   1024   256    100    7      1
    ===================== ====== ====== ====== ====== ====== ======
    sgd-digits            0      0      0      0      0      0
    sgd-wine              0      0      0      0      0      0
    logreg-breast-cancer  0      0      0      0      0      0.365
    logreg-digits         0      0      0      0      0      0.995
    mlp-digits            0      0      0      0      0      0
    mlp-breast-cancer     0      0      0      0      0      0
    gbt-wine              0      0      0      0      0      0
    rf-breast-cancer      0      0      0      0      0      0
    onnx-linear-nobias    0      0      0      0      0      0
    onnx-conv2d           0      0      0      0      0      0
    onnx-conv3d           0      0      0      0      0      0
    ===================== ====== ====== ====== ====== ====== ======

    On this CPU the skl2onnx ``LinearClassifier`` op (LogisticRegression) computes a
    one-row call differently from any call of two or more rows (up to 1 ulp in the
    probabilities); MatMul/Gemm (SGD, MLP, the onnx-package Linear) and Conv were
    batch-invariant here (so were bare MatMul/Gemm up to 784×10 and 256×256). That is a
    property of the CPU's kernels, not a guarantee: ~1 ulp differences have been seen on
    other machines for skl2onnx's SGDClassifier (MatMul). The geometry of the tests gives
    the node a one-row mini-batch at the end of every full partition (513 = 2×256 + 1),
    and a verifier that re-runs a partition's sample in one call meets a one-row call
    whenever exactly one sampled row falls in a partition: the logreg controls exercise
    the problem here, the others guard it where their kernels vary.

    The test asserts only what must hold everywhere: the same geometry gives the same
    bits; the table itself is printed (``pytest -s``) for the machine at hand.
    """
    print(f"\nbatch sensitivity, onnxruntime {ort.__version__} (fraction of {N_ROWS} rows)")
    columns = ("same", *(str(g) for g in GEOMETRIES[1:]))
    print(f"{'control':22s} " + " ".join(f"{k:>6s}" for k in columns))
    not_repeatable = {}
    for name in CONTROL_NAMES:
        table = batch_sensitivity(honest_zoo[name])
        print(f"{name:22s} " + " ".join(f"{v:6.3f}" for v in table.values()))
        assert all(0.0 <= v <= 1.0 for v in table.values())
        if table["same"]:
            not_repeatable[name] = table["same"]
    assert not not_repeatable, f"same geometry, different bits: {not_repeatable}"


@pytest.mark.parametrize("rate", SAMPLE_RATES, ids=lambda q: f"q{q}")
@pytest.mark.parametrize("name", CONTROL_NAMES)
def test_honest_batch_passes(name, rate, honest_env, honest_batches):
    """An honest node's batch passes with every verifier secret (20) at this sample rate."""
    from ogkit.verify import Allowlist, VerifyPolicy, verify_batch

    batch = honest_batches[name]
    control = honest_batches.zoo[name]
    assert batch.row_count == N_ROWS
    assert len(batch.partitions) == -(-N_ROWS // PARTITION_ROWS)
    allowlist = Allowlist().approve(honest_env.enclave.address, [batch.runtime_id])
    failures = []
    reexecuted = 0
    for i, secret in enumerate(SECRETS):
        verdict = verify_batch(
            batch,
            VerifyPolicy(sample_rate=rate, verifier_secret=secret, allowlist=allowlist),
            hub=honest_env.hub,
            dataset=control.data,  # a verifier that holds the requester's data
            input_map=control.input_map,
            progress=False,
        )
        assert verdict.rows_checked == N_ROWS and verdict.inputs_bound
        reexecuted += verdict.sample_size
        if rate == 1.0:
            assert verdict.sample_size == N_ROWS
        if not verdict.passed:
            rows = verdict.failing_rows()
            failures.append(
                f"secret {i}: {verdict.summary()}; rows {rows[:10]}"
                + (f" (+{len(rows) - 10})" if len(rows) > 10 else "")
                + f"; max |error| {verdict.max_abs_error:.3g}"
                + f"; rows within their partition {[r % PARTITION_ROWS for r in rows[:10]]}"
            )
    # Not vacuous: about rate × rows were re-executed per verification.
    assert reexecuted >= 0.5 * rate * N_ROWS * len(SECRETS)
    assert not failures, (
        f"{name}: {len(failures)} of {len(SECRETS)} verifications of an honest batch failed "
        f"at sample rate {rate} (partitions of {PARTITION_ROWS}, mini-batches of "
        f"{BATCH_SIZE}):\n" + "\n".join(failures)
    )
