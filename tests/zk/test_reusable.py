"""ezkl's reusable verifier behind a ZkVkVerifier adapter, on the standard devnet (EIP-170's
24,576-byte limit in force): honest proofs verify through it, altered ones revert, the
governor's review catches an adapter pointed at an accept-anything contract or at another
model's VKA, a dispute resolves through it, and the N = 8 profile, whose generated verifier
does not fit, deploys and verifies this way."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from web3.exceptions import ContractCustomError

from ogkit.chain.bindings import BatchStatus
from ogkit.cli import main
from ogkit.crypto.keccak import keccak256
from ogkit.errors import ChainError, SettlementError, ZkError
from ogkit.store import ContentStore
from ogkit.zk.evm import (
    EIP170_LIMIT,
    challenge_with_proof,
    check_row_gas,
    check_row_onchain,
    compile_verifier,
    deploy_verifier,
    ensure_verifier,
    judge_contract,
    register_profile,
    review_and_approve,
    review_profile,
)
from ogkit.zk.export import export_model
from ogkit.zk.keys import ZK_KEYS, setup_keys
from ogkit.zk.reusable import (
    adapter_artifact,
    deploy_adapter,
    deploy_profile_verifier,
    ensure_reusable_verifier,
    ensure_vka,
    vka_words,
)

pytestmark = pytest.mark.anvil
REPO = Path(__file__).resolve().parents[2]

# What a hostile owner points its adapter at: "verifies" everything and echoes the digest
# the adapter expects.
ACCEPT_ALL = """
// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;
contract AcceptAll {
    function registerVka(bytes32[] calldata vka) external pure returns (bytes32) {
        return keccak256(abi.encodePacked(vka));
    }
    function verifyProof(bytes calldata, uint256[] calldata, bytes32[] calldata vka)
        external pure returns (bool, bytes32, int256[] memory)
    {
        return (true, keccak256(abi.encodePacked(vka)), new int256[](0));
    }
}
"""


@pytest.fixture(scope="module")
def rworld(world):
    """The shared world with the model owner's profile moved to the reusable path: the
    reusable verifier, an adapter for the N=1 profile, registered and approved after the
    review. Reverted at the end of the module."""
    zk, owner = world.zk, world.s["owner"]
    snapshot = world.chain.snapshot()
    out = deploy_profile_verifier(world.chain, owner, zk.store, zk.profile, zk.keys, reusable=True)
    register_profile(world.chain, owner, zk.profile, zk.keys, out["verifier"])
    problems = review_and_approve(
        world.chain, world.chain.deployer, zk.store, zk.profile, zk.keys, zk.data, owner.address
    )
    assert problems == [], problems
    try:
        yield world, out
    finally:
        world.chain.revert(snapshot)


def _adapter(world, address: str):
    return world.chain.w3.eth.contract(address=address, abi=adapter_artifact()["abi"])


#: ZkVkVerifier's ``ProofRejected()`` selector, the revert data of a rejected proof.
REJECTED = "0x" + keccak256(b"ProofRejected()")[:4].hex()


def _flip(proof: bytes) -> bytes:
    b = bytearray(proof)
    b[len(b) // 2] ^= 0x01
    return bytes(b)


def test_everything_fits_eip170_and_the_adapter_artefact_is_current(rworld) -> None:
    world, out = rworld
    assert out["kind"] == "reusable"
    assert out["code_size"] < 2_000 and 10_000 < out["reusable_code_size"] <= EIP170_LIMIT
    w3 = world.chain.w3
    assert len(w3.eth.get_code(out["verifier"])) == out["code_size"]
    holder = _adapter(world, out["verifier"]).functions.vkaStore().call()
    assert len(w3.eth.get_code(holder)) == 1 + out["vka_bytes"] <= EIP170_LIMIT
    # the committed adapter artefact is what the pinned solc-js builds from its source now
    node = shutil.which("node")
    assert node is not None
    proc = subprocess.run(
        [node, "ogkit/zk/compile_verifier.mjs", "--check"],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    # a second deployment on the same chain reuses the reusable verifier
    zk = world.zk
    again = deploy_profile_verifier(
        world.chain, world.s["v2"], zk.store, zk.profile, zk.keys, reusable=True
    )
    assert again["reusable_verifier"] == out["reusable_verifier"]
    assert again["reusable_deploy_gas"] == 0 and again["verifier"] != out["verifier"]


def test_honest_proof_verifies_through_the_adapter_and_one_byte_altered_reverts(rworld):
    world, out = rworld
    zk, owner = world.zk, world.s["owner"].address
    ev = zk.evidence(5)
    assert check_row_onchain(world.chain, zk.profile, zk.proof, ev, owner) is True
    gas = check_row_gas(world.chain, zk.profile, zk.proof, ev, owner)
    assert 500_000 < gas < 3_000_000
    adapter = _adapter(world, out["verifier"])
    assert adapter.functions.verifyProof(zk.proof.proof, list(zk.proof.instances)).call()
    bad = dataclasses.replace(zk.proof, proof=_flip(zk.proof.proof))
    with pytest.raises(SettlementError, match="ProofRejected"):
        check_row_onchain(world.chain, zk.profile, bad, ev, owner)
    with pytest.raises(ContractCustomError, match=REJECTED):
        adapter.functions.verifyProof(bad.proof, list(bad.instances)).call()
    inst = list(zk.proof.instances)
    inst[-1] += 1  # a public output changed under a valid proof
    with pytest.raises(ContractCustomError, match=REJECTED):
        adapter.functions.verifyProof(zk.proof.proof, inst).call()


def test_review_catches_an_adapter_on_an_accept_anything_contract(rworld) -> None:
    world, _ = rworld
    zk, v3 = world.zk, world.s["v3"]
    snapshot = world.chain.snapshot()
    cached = f"zk/verifiers/{zk.keys.keys_id}-reusable.json"
    original = zk.store.read_bytes(cached)
    try:
        accept_all = compile_verifier(ACCEPT_ALL, contract="AcceptAll", runs=200)
        fake, _ = deploy_verifier(world.chain, v3, accept_all)
        # v3 shares the store and caches its contract as "the reusable verifier" of these
        # keys: the review re-derives the reusable verifier and does not read that cache
        zk.store.write_bytes(cached, json.dumps(accept_all).encode())
        words = vka_words(ensure_vka(zk.store, zk.profile, zk.keys))  # the right VKA
        address, _ = deploy_adapter(world.chain, v3, fake, words)
        # the attack is real: the adapter's code is ours and it accepts a forged proof
        forged = _flip(zk.proof.proof)
        assert _adapter(world, address).functions.verifyProof(forged, [1, 2, 3]).call()
        register_profile(world.chain, v3, zk.profile, zk.keys, address)
        problems = review_profile(world.chain, zk.store, zk.profile, zk.keys, zk.data, v3.address)
        assert problems == [
            f"the adapter at {address} sends proofs to {fake}, whose code is not ezkl's "
            "reusable verifier compiled from these keys"
        ]
        bad = dataclasses.replace(zk.proof, proof=forged)
        with pytest.raises(SettlementError, match="ProfileNotApproved"):
            check_row_onchain(world.chain, zk.profile, bad, zk.evidence(5), v3.address)
    finally:
        zk.store.write_bytes(cached, original)
        world.chain.revert(snapshot)


def test_review_catches_an_adapter_holding_another_models_vka(
    rworld, zk_other_model, tmp_path_factory
) -> None:
    world, out = rworld
    zk, v3 = world.zk, world.s["v3"]
    _, other_profile, other_keys, other_proof = zk_other_model
    # the other model's keys live in that fixture's own store
    other_store = next(
        ContentStore(d)
        for d in sorted(tmp_path_factory.getbasetemp().iterdir())
        if d.is_dir() and ContentStore(d).has(ZK_KEYS, other_keys.vk_id)
    )
    other_words = vka_words(ensure_vka(other_store, other_profile, other_keys))
    snapshot = world.chain.snapshot()
    cached = f"zk/verifiers/{zk.keys.keys_id}.vka"
    original = zk.store.read_bytes(cached)
    try:
        # also cached in the shared store as this profile's VKA, which the review never reads
        zk.store.write_bytes(cached, ensure_vka(other_store, other_profile, other_keys))
        address, _ = deploy_adapter(world.chain, v3, out["reusable_verifier"], other_words)
        adapter = _adapter(world, address)
        # it verifies the other model's proofs (same public inputs, other weights) ...
        assert adapter.functions.verifyProof(other_proof.proof, list(other_proof.instances)).call()
        # ... and not this model's
        with pytest.raises(ContractCustomError, match=REJECTED):
            adapter.functions.verifyProof(zk.proof.proof, list(zk.proof.instances)).call()
        register_profile(world.chain, v3, zk.profile, zk.keys, address)
        problems = review_profile(world.chain, zk.store, zk.profile, zk.keys, zk.data, v3.address)
        assert problems == [
            f"the adapter at {address} holds another VKA than the one of these keys"
        ]
    finally:
        zk.store.write_bytes(cached, original)
        world.chain.revert(snapshot)


def test_a_dispute_resolves_through_the_adapter(rworld, forge_zk_batch) -> None:
    world, _ = rworld
    zk = world.zk
    forged = forge_zk_batch(world.batch("zk-reusable-fraud"), {7}, world.enclave)
    world.commit(forged)
    snapshot = world.chain.snapshot()
    try:
        out = challenge_with_proof(
            world.chain, forged, 7, challenger=world.s["challenger"], store=zk.store,
            inputs={"features": world.x},
        )  # fmt: skip
        assert out["upheld"] is True
        assert world.status(forged) == BatchStatus.SLASHED
    finally:
        world.chain.revert(snapshot)


def test_cli_setup_and_deploy_take_the_reusable_path(
    rworld, tabular_path, capsys, monkeypatch
) -> None:
    world, out = rworld
    zk = world.zk
    monkeypatch.setenv("OGKIT_DEVNET_PORT", str(world.devnet.port))
    base = ["--home", str(world.home), "--store", zk.store.url]
    model = str(tabular_path)
    assert main([*base, "zk", "setup", model, "--evm", "--reusable", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["verifier"]["kind"] == "reusable"
    assert doc["verifier"]["vka_bytes"] == len(ensure_vka(zk.store, zk.profile, zk.keys)) - 8
    snapshot = world.chain.snapshot()
    try:
        code = main([*base, "zk", "deploy", model, "--reusable", "--key", "owner",
                     "--chain", "devnet", "--json"])  # fmt: skip
        cap = capsys.readouterr()
        assert code == 0, cap.err
        doc = json.loads(cap.out)
        assert doc["kind"] == "reusable" and doc["reusable_verifier"] == out["reusable_verifier"]
        owner = world.s["owner"].address
        code = main([*base, "zk", "approve", model, "--owner", owner, "--chain", "devnet",
                     "--json"])  # fmt: skip
        cap = capsys.readouterr()
        assert code == 0, cap.out + cap.err
        assert json.loads(cap.out)["approved"] is True
        prof = world.chain.call(
            judge_contract(world.chain).functions.profileOf(
                bytes.fromhex(zk.profile.model_id[2:]), owner
            )
        )
        assert prof[0] == doc["verifier"] and prof[3] is True
    finally:
        world.chain.revert(snapshot)


def test_vka_file_parsing_refuses_what_is_not_a_vka() -> None:
    words = [bytes([i]) * 32 for i in range(3)]
    data = (3).to_bytes(8, "little") + b"".join(words)
    assert vka_words(data) == words
    for bad in (b"", data[:-1], (0).to_bytes(8, "little"), (4).to_bytes(8, "little") + data[8:]):
        with pytest.raises(ZkError, match="VKA"):
            vka_words(bad)


@pytest.fixture(scope="module")
def zk8(zk, tmp_path_factory):
    """The sample model's N = 8 profile (2^14 circuit rows) and its keys. Proving N = 8
    (~17 s) is left to bench/bench_zk.py, which verifies that proof through an adapter on a
    standard-limit anvil."""
    store = ContentStore(tmp_path_factory.mktemp("zk-n8"))
    profile, _, _ = export_model(
        zk.data, chunk=8, input_scale=8, tolerance=0.02, lookup_margin=1.0,
        calibration={"features": zk.x}, store=store,
    )  # fmt: skip
    return store, profile, setup_keys(store, profile)


def test_n8_takes_the_reusable_path_by_itself_within_eip170(rworld, zk8) -> None:
    world, _ = rworld
    zk, v3 = world.zk, world.s["v3"]
    store, profile, keys = zk8
    snapshot = world.chain.snapshot()
    try:
        # the generated N = 8 verifier does not fit, so the reusable path is chosen
        got = deploy_profile_verifier(world.chain, v3, store, profile, keys)
        assert got["kind"] == "reusable" and got["code_size"] <= EIP170_LIMIT
        single = ensure_verifier(store, profile, keys, allow_oversize=True)
        assert single["code_size"] > EIP170_LIMIT
        with pytest.raises((SettlementError, ChainError)):  # EIP-170 holds on this devnet
            deploy_verifier(world.chain, v3, single)
        # one reusable verifier serves every circuit: the same code as N = 1's
        assert (
            ensure_reusable_verifier(store, profile, keys)["deployedBytecode"]
            == (ensure_reusable_verifier(zk.store, zk.profile, zk.keys)["deployedBytecode"])
        )
        adapter = _adapter(world, got["verifier"])
        holder = adapter.functions.vkaStore().call()
        vka = b"".join(vka_words(ensure_vka(store, profile, keys)))
        assert bytes(world.chain.w3.eth.get_code(holder)) == b"\x00" + vka
        assert len(vka) + 1 <= EIP170_LIMIT
        # and the N = 1 proof is no proof for the N = 8 circuit
        with pytest.raises(ContractCustomError, match=REJECTED):
            adapter.functions.verifyProof(zk.proof.proof, list(zk.proof.instances)).call()
    finally:
        world.chain.revert(snapshot)


def test_review_inputs_are_checked_against_their_ids(zk8) -> None:
    """Whoever shares the store can put other bytes under a key's id; what the review
    re-derives its reference verifiers from is hashed first."""
    store, profile, keys = zk8
    path = Path(store.object_path(ZK_KEYS, keys.vk_id))
    original = path.read_bytes()
    try:
        path.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
        for derive in (ensure_reusable_verifier, ensure_vka, ensure_verifier):
            with pytest.raises(ZkError, match="does not hash to its id"):
                derive(store, profile, keys, fresh=True)
    finally:
        path.write_bytes(original)
