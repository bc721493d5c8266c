"""Approvals are (attester, measurement) pairs, as the NodeRegistry binds them.

The attacker is an approved node: its own software-enclave key is approved with its own
runtime id R1. The verifier also approves another attester (a TEE build) with that
build's runtime id R2. Approved as flat sets, the node's key could sign claims stating
R2 and pass; approved as pairs, only (key, R1) is. Every check that consults the
allowlist is tried: the batch verdict, the receipt check, hardware evidence, the CLI and
an ``allowlist.json`` of the old flat format, which must not keep the hole open.
"""

from __future__ import annotations

import dataclasses
import json

import pytest
from tamper import Forge, Honest, cli_verify_args, verify

from ogkit.cli import main
from ogkit.crypto.keccak import keccak256
from ogkit.errors import ConfigError
from ogkit.hub.manifest import canonical_json
from ogkit.keys import KeyStore
from ogkit.verify import Allowlist, verify_receipt


def _gpu_build(f: Forge) -> str:
    """The node re-states its batch as the TEE build's runtime (a CUDA fingerprint): the
    runtime id is that fingerprint's true hash, the evidence measures it, leaves re-sealed
    and the claim re-signed with the node's own approved key."""
    f.m["fingerprint"]["execution_provider"] = "CUDAExecutionProvider"
    rid = "0x" + keccak256(canonical_json(f.m["fingerprint"])).hex()
    f.m["runtime_id"] = rid
    f.m["attester"]["measurement"] = rid
    f.rewrite_all()
    f.seal()
    return rid


@pytest.fixture(scope="module")
def world(honest: Honest):
    """The forged batch and a verifier that approves the node's key with its own runtime
    id and a TEE attester with the GPU build's runtime id."""
    f = Forge(honest, "pair")
    r2 = _gpu_build(f)
    forged = f.publish()
    tee = KeyStore(honest.home).ensure_dev_key("tee-attester")
    allow = honest.allowlist.approve(tee.address, [r2])
    return forged, r2, tee, dataclasses.replace(honest, allowlist=allow)


def test_approved_key_stating_another_attesters_measurement_fails(world):
    forged, r2, tee, verifier = world
    verdict = verify(verifier, forged.artifact_id, rate=0.01)
    assert not verdict.passed
    assert verdict.reasons() == {"unapproved-measurement": 1}
    detail = verdict.findings[0].detail
    assert r2 in detail and tee.address.lower() in detail
    # The same bytes pass once the verifier approves that very pair: the finding is the
    # pairing, nothing else about the forgery.
    both = dataclasses.replace(
        verifier, allowlist=verifier.allowlist.approve(verifier.enclave.address, [r2])
    )
    assert verify(both, forged.artifact_id, rate=0.01).passed


def test_receipts_of_such_a_batch_are_not_valid(world):
    forged, _, _, verifier = world
    receipt = forged.batch().receipt(7)
    check = verify_receipt(receipt, verifier.allowlist)
    assert not check.ok and not check.attester_approved
    assert any("is not approved" in p for p in check.problems)
    # The honest batch's receipts still verify against the same allowlist.
    assert verify_receipt(verifier.batch.receipt(7), verifier.allowlist).ok


def test_cli_verify_approves_one_attester_with_its_measurements(world, honest, capsys):
    forged, r2, tee, _ = world
    # The verifier's allowlist.json approves the TEE attester; the command line the node's
    # key with its own runtime id (--allow-attester / --allow-measurement).
    saved = Allowlist().approve(tee.address, [r2]).save(honest.home / "allowlist.json")
    try:
        args = cli_verify_args(honest, forged.artifact_id, sample_rate=0.01)
        assert main(args) == 1
        assert json.loads(capsys.readouterr().out)["reasons"] == {"unapproved-measurement": 1}
        assert main(cli_verify_args(honest, honest.artifact_id, sample_rate=0.01)) == 0
        capsys.readouterr()
    finally:
        saved.unlink()
    # Two --allow-attester flags would say nothing about which measurement is whose.
    two = [*args, "--allow-attester", tee.address, "--allow-measurement", r2]
    assert main(two) == 1
    assert "--allow-attester (once)" in capsys.readouterr().err


def test_allowlist_file_holds_pairs_and_the_flat_format_is_refused(tmp_path, world, capsys):
    _, r2, tee, verifier = world
    home = tmp_path / "home"
    r1 = verifier.manifest["runtime_id"]
    node = verifier.enclave.address
    assert (
        main(["--home", str(home), "allowlist", "add", "--attester", node, "--measurement", r1])
        == 0
    )
    capsys.readouterr()
    add = ["--home", str(home), "allowlist", "add", "--attester", tee.address]
    assert main([*add, "--measurement", r2, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema"] == "ogkit.allowlist.v2"
    assert doc["approvals"] == sorted(
        [
            {"attester": node.lower(), "measurement": r1},
            {"attester": tee.address.lower(), "measurement": r2},
        ],
        key=lambda p: (p["attester"], p["measurement"]),
    )
    loaded = Allowlist.load(home / "allowlist.json")
    assert loaded.approves(node, r1) and loaded.approves(tee.address, r2)
    assert not loaded.approves(node, r2) and not loaded.approves(tee.address, r1)
    # A kind names a measurement some attester is approved with; alone it approves nothing.
    with pytest.raises(ConfigError, match="no attester is approved with"):
        Allowlist(kinds={"0x" + "ab" * 32: 2})
    # An allowlist.json of the flat v1 format (what earlier ogkit wrote) is refused with
    # the command that fixes it, by every command that reads it.
    flat = {"attesters": [node, tee.address], "measurements": [r1, r2]}
    (home / "allowlist.json").write_text(json.dumps(flat))
    with pytest.raises(ConfigError, match="ogkit allowlist add --attester"):
        Allowlist.load(home / "allowlist.json")
    receipt = tmp_path / "receipt.json"
    receipt.write_text(json.dumps(verifier.batch.receipt(3)))
    for cmd in (["allowlist", "show"], ["receipt", "verify", str(receipt)]):
        assert main(["--home", str(home), *cmd]) == 1
        err = capsys.readouterr().err
        assert "flat ogkit.allowlist.v1 format" in err and "ogkit allowlist add" in err
    assert json.loads((home / "allowlist.json").read_text()) == flat  # nothing rewritten


def test_attester_approved_as_an_enclave_needs_hardware_evidence(honest):
    """An attester approved with a TEE measurement (what a NodeRegistry binding to a TDX
    measurement gives) signs a batch whose evidence is the software enclave's: approved
    as an enclave, it is refused without hardware. Approved as software, it passes."""
    r1 = honest.manifest["runtime_id"]
    tdx = "0x" + "7d" * 32

    def check(allow: Allowlist):
        return verify(dataclasses.replace(honest, allowlist=allow), honest.artifact_id, 0.01)

    enclave = Allowlist().approve(honest.enclave.address, [r1, tdx], {tdx: 2})
    verdict = check(enclave)
    assert verdict.reasons() == {"tee-required": 1}
    assert tdx in verdict.findings[0].detail
    assert check(enclave.with_pairs([], {r1: 1})).passed  # approved as software too
    wrongly_kinded = Allowlist().approve(honest.enclave.address, [r1], {r1: 2})
    assert check(wrongly_kinded).reasons() == {"tee-required": 1}
