"""Rows a proof cannot decide (spec §13.5). At a label near tie the fixed-point circuit
and onnxruntime may break the tie differently; on rows a requester searched for, the
circuit's probabilities are more than the stated tolerance off onnxruntime's. Either way
the proof neither confirms nor refutes an honest receipt: off chain ``zk-undecidable``,
on chain ``ZkJudge.resolve`` reverts ``Undecidable`` and the dispute stays open for the
vote, which re-executes the row with onnxruntime. An honest node is never slashed by a
proof there; a node that shifted only a label is still slashed, by the vote."""

from __future__ import annotations

import dataclasses

import numpy as np
import polars as pl
import pytest

from ogkit.chain.bindings import BatchStatus
from ogkit.cli import main
from ogkit.crypto.encoding import tensor_row_hash
from ogkit.network.disputes import dispute_info
from ogkit.network.verifier import judge_row
from ogkit.samples import TABULAR_FEATURES
from ogkit.settle import vote_dispute
from ogkit.zk.evm import challenge_with_proof, judge_row_onchain, resolve_with_proof
from ogkit.zk.fixed import TensorLayout, int_to_field, row_message
from ogkit.zk.prove import ZkProof, prove_rows
from ogkit.zk.verify import (
    UNDECIDABLE,
    WITHIN,
    check_row,
    evidence_from_values,
    judge_outputs,
    verify_rows,
)

# The float32 bits of one input of the sample tabular model, found by bisection: rows 0 and
# 1 of make_tabular(64, seed=3) (``zk.x``) have different labels; onnxruntime's label on
# a + t·(b − a) was bisected in t (40 halvings, lo keeping row 0's label), and this is the
# point t = lo − 0.02·(hi − lo + 10^-3) ≈ 0.195728. onnxruntime gives label 2 with
# probabilities [0.0049257, 0.4974453, 0.4976290]; the circuit of the package's profile
# (scale 8) gives label 1 with [2, 129, 126] / 256 — every probability within the 5-unit
# tolerance (differences 1, 2, 1), only the label differs.
TIE_BITS = [
    3214423132, 3213411588, 3191990268, 1067059328,
    1066836565, 3203548998, 3223809259, 1050151618,
]  # fmt: skip
TIE_ROW = 5  # where the on-chain batch holds it

# An input where the circuit's probabilities are far from onnxruntime's with no tie at
# all, found by a requester's search: random Gaussian steps from a boundary-bisected row,
# kept when the largest |circuit − fixed(onnxruntime)| over the probabilities grew (ezkl
# witnesses only, no proofs: 480 steps, ~30 s on 2 cores). onnxruntime gives label 0 with
# [0.59925, 0.06190, 0.33884]; the circuit label 0 with [160, 16, 81] / 256: 7 and 6 units
# off, beyond the 5-unit tolerance, within twice it. An honest receipt here must not be
# slashed by a proof.
FAR_BITS = [
    3207939482, 1048252567, 1061425871, 1066917943,
    3216266716, 1077088344, 3208019869, 3214619123,
]  # fmt: skip


@dataclasses.dataclass
class Row:
    x: np.ndarray  # the input, one row
    outputs: dict[str, np.ndarray]  # onnxruntime's, what an honest node receipts
    proof: ZkProof  # of the input, as row 0


def _row(zk, bits: list[int]) -> Row:
    import onnxruntime as ort

    x = np.array(bits, dtype="<u4").view("<f4")
    sess = ort.InferenceSession(zk.data, providers=["CPUExecutionProvider"])
    label, proba = sess.run(None, {"features": x[None]})
    (proof,) = prove_rows(zk.store, zk.profile, zk.keys, {"features": x[None]}, [0], progress=False)
    return Row(x, {"label": label[0], "probabilities": proba[0]}, proof)


@pytest.fixture(scope="module")
def tie(zk) -> Row:
    return _row(zk, TIE_BITS)


@pytest.fixture(scope="module")
def far(zk) -> Row:
    return _row(zk, FAR_BITS)


def _label_instance(zk, proof: ZkProof) -> int:
    (label,) = [t for t in zk.profile.outputs if t.name == "label"]
    return int(proof.instances[label.base])


def test_the_tie_is_a_tie(zk, tie) -> None:
    p = tie.outputs["probabilities"]
    assert int(tie.outputs["label"]) == 2 and abs(float(p[2] - p[1])) < 1e-3
    assert _label_instance(zk, tie.proof) == 1  # the circuit breaks it the other way


def test_honest_receipt_at_a_near_tie_is_undecidable_off_chain(zk, tie) -> None:
    ev = evidence_from_values(zk.profile, 0, {"features": tie.x}, tie.outputs)
    judged = judge_outputs(zk.profile.outputs, ev.output_message, list(tie.proof.instances), 0)
    assert judged.outcome == UNDECIDABLE and judged.name == "label"
    assert 0 <= judged.worst <= 5  # every probability within tolerance
    finding = check_row(zk.profile, tie.proof, ev)
    assert finding is not None and finding.reason == "zk-undecidable"
    assert "ogkit dispute vote" in finding.detail
    found = verify_rows(zk.store, zk.profile, zk.keys, [tie.proof], {0: ev})
    assert [(f.reason, f.row) for f in found] == [("zk-undecidable", 0)]


def test_honest_receipt_beyond_tolerance_within_the_margin_is_undecidable(zk, far) -> None:
    assert int(far.outputs["label"]) == 0 and _label_instance(zk, far.proof) == 0
    ev = evidence_from_values(zk.profile, 0, {"features": far.x}, far.outputs)
    judged = judge_outputs(zk.profile.outputs, ev.output_message, list(far.proof.instances), 0)
    assert judged.outcome == UNDECIDABLE and judged.name == "probabilities"
    assert 5 < judged.worst <= 2 * 5  # beyond τ, within SLASH_FACTOR·τ
    finding = check_row(zk.profile, far.proof, ev)
    assert finding is not None and finding.reason == "zk-undecidable"


def test_verify_batch_confirms_an_honest_near_tie_by_reexecution(world, zk, tie) -> None:
    """``ogkit verify --zk`` on an honest batch holding the tie: the proof cannot decide
    the row, so the verifier re-executes it with onnxruntime, as the vote would, and the
    batch passes (a notice names the row); a fail verdict here would hand the fallback
    after the voting time a reason to slash an honest node."""
    from ogkit.verify import Allowlist, VerifyPolicy, verify_batch
    from ogkit.zk.prove import store_proof

    x = world.x.copy()
    x[TIE_ROW] = tie.x
    frame = pl.DataFrame({n: x[:, i] for i, n in enumerate(TABULAR_FEATURES)})
    batch = world.batch("zk-near-tie-offchain", frame)
    store_proof(zk.store, batch.batch_id, dataclasses.replace(tie.proof, rows=(TIE_ROW,)))
    policy = VerifyPolicy(
        sample_rate=0.05,
        allowlist=Allowlist().approve(world.enclave.address, [batch.runtime_id]),
        verifier_secret=b"s",
    )
    verdict = verify_batch(batch, policy, dataset=frame, methods=["zk"], progress=False)
    assert verdict.passed, verdict.summary()
    assert any(f"row {TIE_ROW}: the proof cannot decide" in n for n in verdict.notices)


def test_a_node_receipting_the_circuits_label_is_exonerated_but_not_by_the_vote(zk, tie) -> None:
    """What spec §13.5 accepts: a receipt within tolerance of the circuit on every output
    (here the circuit's label 1 with onnxruntime's probabilities) is confirmed by the
    proof, though onnxruntime's label is 2: the vote, re-executing, would uphold it; a
    proof, once submitted, closes the dispute as rejected."""
    circuit = {"label": np.int64(1), "probabilities": tie.outputs["probabilities"]}
    ev = evidence_from_values(zk.profile, 0, {"features": tie.x}, circuit)
    assert check_row(zk.profile, tie.proof, ev) is None
    assert ev.output_hash != tensor_row_hash(tie.outputs)  # not what re-execution gives
    # the circuit's label with probabilities moved beyond tolerance is still a mismatch
    moved = {"label": np.int64(1), "probabilities": np.roll(tie.outputs["probabilities"], 1)}
    ev = evidence_from_values(zk.profile, 0, {"features": tie.x}, moved)
    assert check_row(zk.profile, tie.proof, ev).reason == "zk-output-mismatch"


def _vote_by_reexecution(world, batch, row: int) -> list[bool]:
    """What the verifiers' daemons do on a dispute: re-execute the row with the committed
    model (onnxruntime) and vote, until the dispute closes."""
    receipt = batch.receipt(row)["leaf_values"]
    votes = []
    for name in ("v1", "v2", "v3"):
        if world.status(batch) != BatchStatus.DISPUTED:
            break
        upheld, _ = judge_row(
            batch, row, bytes.fromhex(receipt["inputHash"][2:]),
            bytes.fromhex(receipt["outputHash"][2:]), model_id=batch.model_id,
        )  # fmt: skip
        vote_dispute(world.chain, batch.batch_id, upheld=upheld, verifier=world.s[name])
        votes.append(upheld)
    return votes


@pytest.mark.anvil
def test_honest_node_at_a_near_tie_is_not_slashed(world, zk, tie, capsys, monkeypatch) -> None:
    x = world.x.copy()
    x[TIE_ROW] = tie.x
    frame = pl.DataFrame({n: x[:, i] for i, n in enumerate(TABULAR_FEATURES)})
    batch = world.batch("zk-near-tie", frame)
    out = batch.records(0).outputs
    assert int(out["label"][TIE_ROW]) == 2  # the honest node receipts onnxruntime's label
    world.commit(batch)
    nodes = world.chain.contract("NodeRegistry")
    node = world.s["node"].address
    stake = world.chain.call(nodes.functions.stakeOf(node, node))
    snapshot = world.chain.snapshot()
    try:
        # The challenger (a requester that chose the input) claims the circuit's outputs
        # and submits its proof of them: the judge reverts Undecidable, nothing is closed.
        ev, merkle = world.evidence(batch, TIE_ROW, x)
        circuit = {"label": np.int64(1), "probabilities": tie.outputs["probabilities"]}
        world.dispute(batch, TIE_ROW, tensor_row_hash(circuit))
        proof = dataclasses.replace(tie.proof, rows=(TIE_ROW,))
        out = resolve_with_proof(
            world.chain, world.s["challenger"], batch.batch_id, zk.profile, proof, ev, merkle
        )
        assert out["outcome"] == "undecidable" and out["upheld"] is None
        assert out["tensor"] == 0  # label, in canonical order
        owner = world.s["owner"].address
        assert judge_row_onchain(world.chain, zk.profile, proof, ev, owner) == ("undecidable", 0)
        assert world.status(batch) == BatchStatus.DISPUTED
        # The node's answer with its own proof (the CLI) cannot close it either.
        monkeypatch.setenv("OGKIT_DEVNET_PORT", str(world.devnet.port))
        base = ["--home", str(world.home), "--store", zk.store.url]
        assert main([*base, "zk", "answer", batch.artifact_id, "--chain", "devnet"]) == 0
        said = capsys.readouterr().out
        assert "stays open" in said and f"ogkit dispute vote {batch.batch_id}" in said, said
        assert world.status(batch) == BatchStatus.DISPUTED
        # The vote re-executes with onnxruntime: the receipt is right, the dispute rejected.
        assert _vote_by_reexecution(world, batch, TIE_ROW) == [False, False, False]
        assert world.status(batch) == BatchStatus.PENDING
        assert dispute_info(world.chain, batch.batch_id).outcome == "rejected"
        assert world.chain.call(nodes.functions.stakeOf(node, node)) >= stake
    finally:
        world.chain.revert(snapshot)


@pytest.mark.anvil
def test_label_only_forgery_is_deferred_then_slashed_by_the_vote(world, zk, forge_batch):
    forged = forge_batch(world.batch("zk-label-only"), {7}, world.enclave)
    world.commit(forged)
    snapshot = world.chain.snapshot()
    try:
        out = challenge_with_proof(
            world.chain, forged, 7, challenger=world.s["challenger"], store=zk.store,
            inputs={"features": world.x},
        )  # fmt: skip
        assert out["outcome"] == "undecidable" and out["upheld"] is None
        assert world.status(forged) == BatchStatus.DISPUTED
        assert _vote_by_reexecution(world, forged, 7) == [True, True, True]
        assert world.status(forged) == BatchStatus.SLASHED
        assert dispute_info(world.chain, forged.batch_id).outcome == "upheld"
    finally:
        world.chain.revert(snapshot)


@pytest.mark.anvil
def test_the_judge_leaves_the_margin_row_to_the_vote(world, zk, far) -> None:
    ev = evidence_from_values(zk.profile, 0, {"features": far.x}, far.outputs)
    owner = world.s["owner"].address
    assert judge_row_onchain(world.chain, zk.profile, far.proof, ev, owner) == ("undecidable", 1)


def test_a_profile_with_only_exact_outputs_is_never_refuted_by_a_proof() -> None:
    """An integer-output model (a label, no probabilities): no float says how near the tie
    is, so a differing label is undecidable (the vote), never beyond; a proof can only
    exonerate. int32 and int64 labels, the circuit's value either side."""
    for dtype, np_dtype in ((6, "<i4"), (7, "<i8")):
        layouts = (TensorLayout("label", dtype, (), 0, 0, 0),)
        for receipted, proven, want in ((2, 2, WITHIN), (2, 1, UNDECIDABLE), (-5, 7, UNDECIDABLE)):
            message = row_message(layouts, {"label": np.array(receipted, np_dtype)})
            judged = judge_outputs(layouts, message, [int_to_field(proven)], 0)
            assert judged.outcome == want, (dtype, receipted, proven, judged)
