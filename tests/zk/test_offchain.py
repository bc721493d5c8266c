"""Export, keys, proving and off-chain verification of the binding, as an attacker tries it."""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from ogkit.errors import ZkError, ZkUnsupportedError
from ogkit.zk.export import export_model, rewrite_for_ezkl
from ogkit.zk.keys import check_keys, load_keys, setup_keys
from ogkit.zk.profile import load_profile
from ogkit.zk.prove import ZkProof, chunk_rows, prove_rows
from ogkit.zk.verify import check_row, verify_proof, verify_rows


def test_export_rewrites_exactly_and_stores_a_versioned_profile(zk) -> None:
    p = zk.profile
    assert p.schema == "ogkit.zk.profile.v1"
    assert p.visibility == {"input": "public", "output": "public", "params": "fixed"}
    assert any("Scaler" in r for r in p.rewrites)
    assert p.chunk == 1 and p.input_scale == 8 and p.logrows <= 14
    assert p.measured_error["probabilities"] <= p.tolerances["probabilities"]
    assert load_profile(zk.store, p.model_id, 1) == p
    again, _, _ = rewrite_for_ezkl(zk.data, 1), None, None
    assert (
        "0x" + __import__("ogkit.crypto.keccak", fromlist=["k"]).keccak256(again[0]).hex()
        == p.zk_model_id
    )  # the rewrite is deterministic: verifiers reproduce it
    names = {n.op_type for n in onnx.load_from_string(again[0]).graph.node}
    assert "Scaler" not in names and "ArrayFeatureExtractor" not in names


def test_keys_are_cached_per_model_chunk_and_settings(zk) -> None:
    assert load_keys(zk.store, zk.profile) == zk.keys
    assert setup_keys(zk.store, zk.profile) == zk.keys  # from the cache
    assert zk.keys.srs_kind == "development"


def test_honest_proof_verifies_and_binds(zk) -> None:
    assert verify_proof(zk.store, zk.profile, zk.keys, zk.proof)
    assert verify_rows(zk.store, zk.profile, zk.keys, [zk.proof], {5: zk.evidence(5)}) == []


def _reasons(zk, proofs, evidence) -> set[str]:
    return {f.reason for f in verify_rows(zk.store, zk.profile, zk.keys, proofs, evidence)}


def test_proof_altered_in_one_byte_is_rejected(zk) -> None:
    for at in (0, len(zk.proof.proof) // 2, len(zk.proof.proof) - 1):
        b = bytearray(zk.proof.proof)
        b[at] ^= 0x01
        forged = dataclasses.replace(zk.proof, proof=bytes(b))
        assert _reasons(zk, [forged], {5: zk.evidence(5)}) == {"zk-proof-invalid"}


def test_public_values_altered_are_rejected(zk) -> None:
    # An attacker moves a public output into tolerance: the proof no longer verifies.
    inst = list(zk.proof.instances)
    inst[-1] = (inst[-1] + 1) % (1 << 250)
    forged = dataclasses.replace(zk.proof, instances=tuple(inst))
    assert _reasons(zk, [forged], {5: zk.evidence(5)}) == {"zk-proof-invalid"}


def test_proof_for_another_row_is_rejected(zk) -> None:
    # The node answers a challenge on row 9 with its (valid) proof of row 5.
    relabelled = dataclasses.replace(zk.proof, rows=(9,))
    assert _reasons(zk, [relabelled], {9: zk.evidence(9)}) == {"zk-input-unbound"}
    # and the row's bytes must hash to the receipt's input hash
    ev = dataclasses.replace(zk.evidence(5), input_hash=zk.evidence(9).input_hash)
    assert check_row(zk.profile, zk.proof, ev).reason == "zk-input-unbound"


def test_receipt_beyond_tolerance_is_a_mismatch(zk) -> None:
    outs = zk.outputs(5)
    probs = outs["probabilities"].copy()
    probs[0] += np.float32(0.05)  # beyond the stated 0.02
    ev = zk.evidence(5, {"label": outs["label"], "probabilities": probs})
    assert _reasons(zk, [zk.proof], {5: ev}) == {"zk-output-mismatch"}
    flipped = zk.evidence(
        5, {"label": (outs["label"] + 1) % 3, "probabilities": outs["probabilities"]}
    )
    # only the label differs, every probability within tolerance: a near tie the proof
    # cannot decide (spec §13.5), not evidence of a wrong receipt
    assert _reasons(zk, [zk.proof], {5: flipped}) == {"zk-undecidable"}
    within = outs["probabilities"].copy()
    within[1] += np.float32(0.004)
    ok = zk.evidence(5, {"label": outs["label"], "probabilities": within})
    assert _reasons(zk, [zk.proof], {5: ok}) == set()
    nan = outs["probabilities"].copy()
    nan[2] = np.nan
    assert _reasons(
        zk, [zk.proof], {5: zk.evidence(5, {"label": outs["label"], "probabilities": nan})}
    ) == {"zk-output-mismatch"}


def test_proof_under_other_settings_is_rejected(zk, zk_other) -> None:
    # A node picks a convenient scale: its own profile, keys and a valid proof under them.
    other, theirs = zk_other
    assert other.settings_hash != zk.profile.settings_hash
    assert _reasons(zk, [theirs], {5: zk.evidence(5)}) == {"zk-wrong-profile"}
    # Claiming our keys id does not help: our verifier rejects it.
    claimed = dataclasses.replace(theirs, keys_id=zk.keys.keys_id, profile_id=zk.profile.profile_id)
    assert _reasons(zk, [claimed], {5: zk.evidence(5)}) == {"zk-proof-invalid"}


def test_proof_of_a_different_model_is_rejected(zk, zk_other_model) -> None:
    # Same settings, same public inputs, other weights: only the verifying key tells.
    _, other, _, theirs = zk_other_model
    assert other.model_id != zk.profile.model_id and other.input_scale == zk.profile.input_scale
    assert theirs.instances[:8] == zk.proof.instances[:8]  # the row's inputs, bit for bit
    assert _reasons(zk, [theirs], {5: zk.evidence(5)}) == {"zk-wrong-profile"}
    claimed = dataclasses.replace(theirs, keys_id=zk.keys.keys_id, profile_id=zk.profile.profile_id)
    assert _reasons(zk, [claimed], {5: zk.evidence(5)}) == {"zk-proof-invalid"}


def test_governor_check_re_derives_the_keys(zk, zk_other_model) -> None:
    assert check_keys(zk.store, zk.profile, zk.keys, zk.data) == []
    # The owner registers the keys of another model's circuit under this model's profile.
    other_data, _, other_keys, _ = zk_other_model
    problems = check_keys(zk.store, zk.profile, zk.keys, other_data)
    assert any("rewritten model" in p for p in problems), problems
    forged = dataclasses.replace(zk.keys, vk_id=other_keys.vk_id)
    problems = check_keys(zk.store, zk.profile, forged, zk.data)
    assert any("verifying key" in p for p in problems), problems


def test_row_without_proof_is_unproven(zk) -> None:
    assert _reasons(zk, [zk.proof], {5: zk.evidence(5), 6: zk.evidence(6)}) == {"zk-row-unproven"}


def test_chunks_pad_the_last(zk) -> None:
    assert chunk_rows([1, 2, 3, 4, 5], 2) == [[1, 2], [3, 4], [5]]
    with pytest.raises(ZkError, match="outside"):
        prove_rows(zk.store, zk.profile, zk.keys, {"features": zk.x}, [999], progress=False)


def test_unsupported_model_is_refused_before_any_work(tmp_path) -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])
    z = helper.make_tensor_value_info("z", TensorProto.FLOAT, [None, 4])
    g = helper.make_graph(
        [helper.make_node("Sin", ["x"], ["y"]), helper.make_node("Cos", ["y"], ["z"])],
        "bad", [x], [z],
    )  # fmt: skip
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(ZkUnsupportedError) as info:
        export_model(m.SerializeToString(), chunk=1)
    assert info.value.problems == [
        "op Sin is not supported by ezkl",
        "op Cos is not supported by ezkl",
    ]
    with pytest.raises(ZkUnsupportedError, match="not an ONNX model"):
        export_model(b"", chunk=1)


def test_circuit_too_large_is_refused_before_keys(zk) -> None:
    with pytest.raises(ZkUnsupportedError, match="over the limit 2\\^10"):
        export_model(zk.data, chunk=1, input_scale=8, max_logrows=10,
                     calibration={"features": zk.x})  # fmt: skip
    with pytest.raises(ZkUnsupportedError, match="GiB"):
        export_model(zk.data, chunk=1, input_scale=8, max_memory_bytes=2**20,
                     calibration={"features": zk.x})  # fmt: skip


def test_hostile_public_values_are_findings_not_crashes(zk) -> None:
    for bad in (-1, 2**256, 2**300):
        inst = list(zk.proof.instances)
        inst[0] = bad
        forged = dataclasses.replace(zk.proof, instances=tuple(inst))
        assert _reasons(zk, [forged], {5: zk.evidence(5)}) == {"zk-proof-invalid"}
    short = dataclasses.replace(zk.proof, instances=zk.proof.instances[:-1])
    assert _reasons(zk, [short], {5: zk.evidence(5)}) == {"zk-proof-invalid"}
    garbage = dataclasses.replace(zk.proof, proof=b"\x00" * 7)
    assert _reasons(zk, [garbage], {5: zk.evidence(5)}) == {"zk-proof-invalid"}


def test_malformed_proof_documents_are_errors_not_crashes(zk) -> None:
    with pytest.raises(ZkError):
        ZkProof.from_dict({"schema": "nope"})
    with pytest.raises(ZkError):
        ZkProof.from_dict({**zk.proof.to_dict(), "instances": ["zz"]})
