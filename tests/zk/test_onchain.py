"""The EZKL verifier and the ZkJudge on a real anvil devnet: honest proofs verify, forged
ones revert, and a challenge with a proof slashes a cheating node (or is rejected by an
honest node's proof) at once, without a vote."""

from __future__ import annotations

import dataclasses
import json
import secrets

import numpy as np
import pytest

from ogkit.chain.bindings import BatchStatus
from ogkit.chain.records import onchain_batch
from ogkit.cli import main
from ogkit.errors import SettlementError
from ogkit.settle import ensure_allowance
from ogkit.zk.evm import (
    EIP170_LIMIT,
    answer_with_proof,
    approve_profile,
    challenge_with_proof,
    check_row_gas,
    check_row_onchain,
    judge_contract,
    judge_row_onchain,
    layout_args,
    layout_hash,
    register_profile,
    resolve_with_proof,
    review_and_approve,
    review_profile,
    verifier_matches,
)
from ogkit.zk.fixed import (
    FIELD_MODULUS,
    BindingError,
    field_to_int,
    fixed_point_f32_bits,
    int_to_field,
)
from ogkit.zk.prove import load_proofs
from ogkit.zk.verify import judge_outputs

from .conftest import SCALE

pytestmark = pytest.mark.anvil


def test_verifier_fits_eip170_and_is_compiled_by_the_pinned_solc(world) -> None:
    zk = world.zk
    assert world.art["code_size"] <= EIP170_LIMIT
    assert world.art["compiler"].startswith("0.8.")
    assert world.art["settings"]["optimizer"] == {"enabled": True, "runs": 1}
    prof = world.chain.call(
        judge_contract(world.chain).functions.profileOf(
            bytes.fromhex(world.zk.profile.model_id[2:]), world.s["owner"].address
        )
    )
    assert prof[0] == world.verifier and prof[3] is True  # verifier, approved
    assert verifier_matches(world.chain, world.verifier, world.art)
    owner = world.s["owner"].address
    assert review_profile(world.chain, zk.store, zk.profile, zk.keys, zk.data, owner) == []


def test_review_names_a_registration_that_does_not_match(world, zk_other_model) -> None:
    # The node registers, under its own address, this model's id with another model's
    # verifier and keys: the governor's review lists what does not match.
    zk, node = world.zk, world.s["node"]
    _, _, other_keys, _ = zk_other_model
    register_profile(world.chain, node, zk.profile, other_keys, world.verifier)
    problems = review_profile(world.chain, zk.store, zk.profile, zk.keys, zk.data, node.address)
    assert problems == ["the registration names other keys"], problems


def _honest_ev(world):
    return world.zk.evidence(5)


def test_honest_proof_verifies_on_chain(world) -> None:
    zk = world.zk
    ev = _honest_ev(world)
    assert check_row_onchain(world.chain, zk.profile, zk.proof, ev, world.s["owner"].address)
    gas = check_row_gas(world.chain, zk.profile, zk.proof, ev, world.s["owner"].address)
    assert 300_000 < gas < 2_000_000


def _reverts(world, proof, ev, owner=None) -> str:
    with pytest.raises(SettlementError) as info:
        check_row_onchain(
            world.chain, world.zk.profile, proof, ev, owner or world.s["owner"].address
        )
    return str(info.value)


def test_forged_proofs_revert_on_chain(world, zk_other, zk_other_model) -> None:
    zk, ev = world.zk, _honest_ev(world)
    b = bytearray(zk.proof.proof)
    b[len(b) // 2] ^= 0x01
    assert "ProofRejected" in _reverts(world, dataclasses.replace(zk.proof, proof=bytes(b)), ev)
    inst = list(zk.proof.instances)
    inst[-1] += 1
    assert "ProofRejected" in _reverts(
        world, dataclasses.replace(zk.proof, instances=tuple(inst)), ev
    )
    # a valid proof of row 5 offered for row 9
    assert "InputNotBound" in _reverts(
        world, dataclasses.replace(zk.proof, rows=(9,)), zk.evidence(9)
    )
    # a valid proof under the node's own scale: its public inputs are the row at scale 7,
    # not the profile's 8, so the binding fails before the verifier runs
    _, theirs = zk_other
    assert "InputNotBound(0)" in _reverts(world, theirs, ev)
    # a valid proof of another model (other weights, same settings and public inputs)
    *_, other_model_proof = zk_other_model
    assert "ProofRejected" in _reverts(world, other_model_proof, ev)
    # an unregistered (or unapproved) owner's profile judges nothing
    assert "ProfileNotApproved" in _reverts(world, zk.proof, ev, world.s["node"].address)


def test_receipt_beyond_tolerance_is_false_on_chain(world) -> None:
    zk = world.zk
    outs = zk.outputs(5)
    far = outs["probabilities"].copy()
    far[0] += np.float32(0.05)
    ev = zk.evidence(5, {"label": outs["label"], "probabilities": far})
    owner = world.s["owner"].address
    assert check_row_onchain(world.chain, zk.profile, zk.proof, ev, owner) is False
    near = outs["probabilities"].copy()
    near[0] += np.float32(0.004)
    ev = zk.evidence(5, {"label": outs["label"], "probabilities": near})
    assert check_row_onchain(world.chain, zk.profile, zk.proof, ev, owner) is True


def test_only_the_governor_approves_and_only_the_judge_resolves(world) -> None:
    judge = judge_contract(world.chain)
    zk = world.zk
    with pytest.raises(SettlementError, match="NotGovernor"):
        approve_profile(
            world.chain, world.s["node"], zk.profile.model_id, world.s["node"].address,
            zk.keys.keys_id,
        )  # fmt: skip
    settlement = world.chain.contract("InferenceSettlement")
    found_zero = (world.s["node"].address,) * 3 + (1, 0, 0) + (b"\0" * 32,) * 4 + (0,)
    with pytest.raises(SettlementError, match="InvalidProof"):
        world.chain.transact(
            settlement.functions.resolveByProof(1, found_zero, True), world.s["node"]
        )
    assert world.chain.call(settlement.functions.zkJudge()) == judge.address


def test_challenge_with_a_proof_slashes_a_cheating_node_without_a_vote(world, forge_zk_batch):
    zk = world.zk
    honest = world.batch("zk-fraud")
    # the node signed another label and probabilities to match: beyond tolerance
    forged = forge_zk_batch(honest, {7}, world.enclave)
    world.commit(forged)
    snapshot = world.chain.snapshot()
    try:
        token = world.chain.contract("OPGToken")
        before = world.chain.call(token.functions.balanceOf(world.s["challenger"].address))
        out = challenge_with_proof(
            world.chain, forged, 7, challenger=world.s["challenger"], store=zk.store,
            inputs={"features": world.x},
        )  # fmt: skip
        assert out["upheld"] is True and out["outcome"] == "upheld"
        assert world.status(forged) == BatchStatus.SLASHED
        after = world.chain.call(token.functions.balanceOf(world.s["challenger"].address))
        assert after > before  # bond back plus its reward
        settlement = world.chain.contract("InferenceSettlement")
        d = world.chain.call(settlement.functions.getDispute(out["dispute"]))
        assert d[4] == 1 and d[6] == 0 and d[7] == 0  # upheld, no stake voted either way
    finally:
        world.chain.revert(snapshot)


def test_honest_node_answers_a_false_challenge_with_a_proof(world) -> None:
    zk = world.zk
    batch = world.batch("zk-honest")
    world.commit(batch)
    # A challenger claims row 3 is wrong (any other output hash).
    settlement = world.chain.contract("InferenceSettlement")
    found = onchain_batch(world.chain, batch.batch_id)
    receipt = batch.receipt(3)
    values = receipt["leaf_values"]
    bogus, salt = secrets.token_bytes(32), secrets.token_bytes(32)
    key = bytes.fromhex(batch.batch_id[2:])
    c = world.s["challenger"]
    ensure_allowance(world.chain, c, settlement.address, 10**24)
    commitment = world.chain.call(
        settlement.functions.challengeCommitment(c.address, key, 3, bogus, salt)
    )
    tx = world.chain.transact(settlement.functions.commitChallenge(commitment), c)
    assert tx["status"] == 1
    world.chain.increase_time(1)  # the reveal must come in a later block
    world.chain.transact(
        settlement.functions.challenge(
            key,
            found.as_tuple,
            (3, bytes.fromhex(values["inputHash"][2:]),
             bytes.fromhex(values["outputHash"][2:]), bogus, salt),
            [bytes.fromhex(p[2:]) for p in receipt["proof"]],
        ),
        c,
    )  # fmt: skip
    assert world.status(batch) == BatchStatus.DISPUTED
    # The node's valid proof of another row (5) does not answer a dispute on row 3.
    ev, merkle = world.evidence(batch, 3)
    with pytest.raises(SettlementError, match="InputNotBound"):
        resolve_with_proof(world.chain, world.s["node"], batch.batch_id, zk.profile,
                           dataclasses.replace(zk.proof, rows=(3,)), ev, merkle)  # fmt: skip
    out = answer_with_proof(
        world.chain, batch, node=world.s["node"], store=zk.store, inputs={"features": world.x}
    )
    assert out["upheld"] is False
    assert world.status(batch) == BatchStatus.PENDING
    # The same (valid) proof again: the dispute is closed, nothing is paid twice.
    (proof,) = load_proofs(zk.store, batch.batch_id)
    ev, merkle = world.evidence(batch, 3)
    with pytest.raises(SettlementError, match=r"DisputeClosed|UnknownDispute|NotTheDisputedRow"):
        resolve_with_proof(world.chain, world.s["node"], batch.batch_id, zk.profile, proof, ev,
                           merkle)  # fmt: skip


def test_cli_zk_challenge_slashes_without_a_vote(world, forge_zk_batch, capsys, monkeypatch):
    zk = world.zk
    monkeypatch.setenv("OGKIT_DEVNET_PORT", str(world.devnet.port))
    forged = forge_zk_batch(world.batch("zk-cli"), {9}, world.enclave)
    world.commit(forged)
    snapshot = world.chain.snapshot()
    try:
        base = ["--home", str(world.home), "--store", zk.store.url]
        code = main([*base, "zk", "challenge", forged.artifact_id, "9", "--chain", "devnet",
                     "--json"])  # fmt: skip
        out = capsys.readouterr()
        assert code == 0, out.err
        doc = json.loads(out.out)
        assert doc["upheld"] is True and doc["batch_id"] == forged.batch_id
        assert world.status(forged) == BatchStatus.SLASHED
    finally:
        world.chain.revert(snapshot)


def _python_fixed(raw: int, dtype: int, scale: int) -> tuple[bool, int, int]:
    if dtype == 1:
        try:
            v = fixed_point_f32_bits(raw, scale)
        except BindingError:
            return False, 0, 0
    else:
        bits = 32 if dtype == 6 else 64
        v = (raw - (1 << bits) if raw >> (bits - 1) else raw) << scale
    return True, v, int_to_field(v)


def _f32(x: float) -> int:
    return int(np.array([x], "<f4").view("<u4")[0])


def test_fixed_point_is_the_same_in_python_and_in_the_judge(world) -> None:
    """A differential table: the same element bits through ogkit's binding and through
    ZkJudge's (the code checkRow runs), for subnormals, -0.0, .5 ties, the largest
    magnitudes, NaN and infinities, int32/int64 extremes, at scales 0..64."""
    judge = judge_contract(world.chain)
    rng = np.random.default_rng(12)
    floats = [0, 0x80000000, 1, 0x80000001, 0x007FFFFF, 0x807FFFFF, 0x00800000, 0x7F7FFFFF,
              0xFF7FFFFF, 0x7F800000, 0xFF800000, 0x7FC00000, 0x7F800001, 0xFFFFFFFF,
              _f32(0.5), _f32(-0.5), _f32(2.5), _f32(-2.5), _f32(1.5)]  # fmt: skip
    floats += [int(b) for b in rng.integers(0, 2**32, 24, dtype=np.uint64)]
    table = []
    for scale in (0, 1, 8, 13, 64):
        # x * 2^scale = k + 1/2 exactly: a tie, rounded away from zero on both sides.
        ties = [_f32(s * (2 * k + 1) / 2 ** (scale + 1)) for k in (0, 1, 7, 1000) for s in (1, -1)]
        table += [(b, 1, scale) for b in floats + ties]
        table += [(v % 2**32, 6, scale) for v in (0, 1, -1, 2**31 - 1, -(2**31))]
        table += [(v % 2**64, 7, scale) for v in (0, -1, 2**63 - 1, -(2**63))]
    for raw, dtype, scale in table:
        ok, v, f = world.chain.call(judge.functions.fixedPoint(raw, dtype, scale))
        want = _python_fixed(raw, dtype, scale)
        assert (ok, v if ok else 0, f if ok else 0) == want, (hex(raw), dtype, scale)
        if ok:
            assert 0 <= f < FIELD_MODULUS and abs(v) < 2**192
    assert world.chain.call(judge.functions.fixedPoint(_f32(2.5), 1, 0))[1] == 3
    assert world.chain.call(judge.functions.fixedPoint(_f32(-2.5), 1, 0))[1] == -3
    assert list(world.chain.call(judge.functions.fixedPoint(0x80000000, 1, 8))[1:]) == [0, 0]


def test_the_judgement_is_the_same_on_and_off_chain(world) -> None:
    """spec §13.5 on the same proof of row 5, through ZkJudge.checkRow and ogkit's Python:
    NaN or a float beyond twice its tolerance is ``beyond`` (the receipt is wrong), also
    when the label differs too (a cheating node cannot turn a slash into a vote by changing
    the label as well); a float in the margin (τ, 2τ], or only the label differing, is
    ``undecidable``; the honest receipt and one within tolerance are ``within``."""
    zk = world.zk
    owner = world.s["owner"].address
    outs = zk.outputs(5)
    probs = outs["probabilities"]
    (p_out,) = [t for t in zk.profile.outputs if t.name == "probabilities"]
    proven = [field_to_int(f) for f in zk.proof.instances[p_out.base : p_out.base + 3]]

    def off_by(units: int) -> np.ndarray:  # probability 0 exactly `units` from the proof's
        moved = probs.copy()
        moved[0] = np.float32((proven[0] + units) / 2**SCALE)
        return moved

    nan = np.full_like(probs, np.nan)
    other_label = (outs["label"] + 1) % 3
    far = probs.copy()
    far[0] += np.float32(0.05)
    near = probs.copy()
    near[0] += np.float32(0.004)
    cases = [
        ({"label": outs["label"], "probabilities": nan}, ("beyond", 1)),
        ({"label": other_label, "probabilities": nan}, ("beyond", 1)),
        ({"label": other_label, "probabilities": far}, ("beyond", 1)),
        ({"label": other_label, "probabilities": np.roll(probs, 1)}, ("beyond", 1)),
        ({"label": other_label, "probabilities": probs}, ("undecidable", 0)),
        ({"label": other_label, "probabilities": near}, ("undecidable", 0)),
        ({"label": outs["label"], "probabilities": near}, ("within", 0)),
        (outs, ("within", 0)),
        # the margin: beyond τ = 5 units but within 2τ goes to the vote, beyond 2τ is wrong
        ({"label": outs["label"], "probabilities": off_by(5)}, ("within", 0)),
        ({"label": outs["label"], "probabilities": off_by(-6)}, ("undecidable", 1)),
        ({"label": outs["label"], "probabilities": off_by(10)}, ("undecidable", 1)),
        ({"label": other_label, "probabilities": off_by(10)}, ("undecidable", 0)),
        ({"label": outs["label"], "probabilities": off_by(11)}, ("beyond", 1)),
        ({"label": other_label, "probabilities": off_by(-11)}, ("beyond", 1)),
    ]
    instances = list(zk.proof.instances)
    for bad, want in cases:
        ev = zk.evidence(5, bad)
        off = judge_outputs(zk.profile.outputs, ev.output_message, instances, 0)
        assert (off.outcome, off.tensor or 0) == want, (bad, off)
        assert judge_row_onchain(world.chain, zk.profile, zk.proof, ev, owner) == want, bad
    ev = zk.evidence(5, {"label": other_label, "probabilities": probs})
    with pytest.raises(SettlementError, match=r"Undecidable\(0\)"):
        check_row_onchain(world.chain, zk.profile, zk.proof, ev, owner)


def test_registration_refuses_layouts_the_binding_cannot_read(world) -> None:
    judge = judge_contract(world.chain)
    zk, v3 = world.zk, world.s["v3"]
    inputs, outputs = layout_args(zk.profile)
    model = bytes.fromhex(zk.profile.model_id[2:])
    keys_id = bytes.fromhex(zk.keys.keys_id.removeprefix("0x"))
    # scale past 64, dtype 2, no elements: the revert reads as the ZkJudge error by name
    for i, value, why in ((3, 65, "scale"), (1, 2, "dtype"), (2, 0, "count")):
        bad = [tuple(value if k == i else x for k, x in enumerate(t)) for t in inputs]
        fn = judge.functions.registerProfile(model, world.verifier, 1, keys_id, bad, outputs)
        with pytest.raises(SettlementError, match=rf"BadLayout\(why={why}\)"):
            world.chain.transact(fn, v3)


def test_approval_binds_the_reviewed_layout_and_verifier(world) -> None:
    """An owner re-registers between the governor's review and its approval, with the same
    keys: first a tolerance that lets any output pass, then a verifier that is not the
    reviewed one. The approval of what was reviewed reverts; the reviewed one passes."""
    judge = judge_contract(world.chain)
    zk, owner, gov = world.zk, world.s["v3"], world.chain.deployer
    snapshot = world.chain.snapshot()
    try:
        register_profile(world.chain, owner, zk.profile, zk.keys, world.verifier)
        assert review_profile(world.chain, zk.store, zk.profile, zk.keys, zk.data,
                              owner.address) == []  # fmt: skip
        reviewed = dict(layout=layout_hash(zk.profile), verifier=world.verifier)
        inputs, outputs = layout_args(zk.profile)
        loose = [(*t[:5], 2**60) for t in outputs]
        model = bytes.fromhex(zk.profile.model_id[2:])
        keys_id = bytes.fromhex(zk.keys.keys_id.removeprefix("0x"))
        world.chain.transact(
            judge.functions.registerProfile(model, world.verifier, 1, keys_id, inputs, loose),
            owner,
        )
        with pytest.raises(SettlementError, match="LayoutMismatch"):
            approve_profile(world.chain, gov, zk.profile.model_id, owner.address,
                            zk.keys.keys_id, **reviewed)  # fmt: skip
        anything = world.chain.contract("OPGToken").address  # code, but not the verifier
        register_profile(world.chain, owner, zk.profile, zk.keys, anything)
        with pytest.raises(SettlementError, match="LayoutMismatch"):
            approve_profile(world.chain, gov, zk.profile.model_id, owner.address,
                            zk.keys.keys_id, **reviewed)  # fmt: skip
        register_profile(world.chain, owner, zk.profile, zk.keys, world.verifier)
        assert review_and_approve(world.chain, gov, zk.store, zk.profile, zk.keys, zk.data,
                                  owner.address) == []  # fmt: skip
        prof = world.chain.call(judge.functions.profileOf(model, owner.address))
        assert prof[3] is True
    finally:
        world.chain.revert(snapshot)


def test_review_refuses_a_tolerance_that_lets_cheating_outputs_pass(world) -> None:
    zk, owner = world.zk, world.s["v3"]
    loose = dataclasses.replace(
        zk.profile,
        outputs=tuple(
            dataclasses.replace(t, tolerance=1 << t.scale) if t.dtype_code == 1 else t
            for t in zk.profile.outputs
        ),
    )
    snapshot = world.chain.snapshot()
    try:
        register_profile(world.chain, owner, loose, zk.keys, world.verifier)
        problems = review_profile(world.chain, zk.store, loose, zk.keys, zk.data, owner.address)
        assert any("tolerance 1, above 0.05" in p for p in problems), problems
    finally:
        world.chain.revert(snapshot)
