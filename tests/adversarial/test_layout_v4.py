"""Receipt layout v4 (docs/spec.md §3.1, §4.1): a leaf is keccak256(abi.encode(rowIndex,
inputHash, outputHash)) and names no batch, model or runtime; the signed claim binds
those once, with the root. The attacker is a node that holds its own approved key and
writes its records and manifest. Leaves that no longer carry the batch id let it reuse
one batch's leaves, root and receipts under another claim for free (no re-hashing);
each test here reuses them that way and shows which check of the claim stops it."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from tamper import BASE_ROW, REPO, Forge, Honest, honest_receipt, js_verdict, verify

from ogkit.attest import BatchClaim
from ogkit.batch import load_batch
from ogkit.crypto.keccak import keccak256
from ogkit.crypto.merkle import (
    INPUT_LEAF_TAG,
    MerkleTree,
    hash_pair,
    input_leaf_hash,
    input_leaf_hashes,
    leaf_hash,
)
from ogkit.errors import ArtifactError
from ogkit.keys import KeyStore
from ogkit.samples import sample_model_path
from ogkit.verify import verify_receipt

NODE = shutil.which("node") is not None and (REPO / "node_modules/@openzeppelin").exists()


def _hex(b: bytes) -> str:
    return "0x" + bytes(b).hex()


@pytest.fixture(scope="module")
def dearer(honest: Honest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Another model with tab's inputs and outputs whose weights differ (its second
    layer's columns swapped), published in the same hub: the model a node claims to
    have run while it ran tab."""
    model = onnx.load(sample_model_path("tabular"))
    for init in model.graph.initializer:
        if init.name == "coefficient1":
            w = numpy_helper.to_array(init)
            init.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(w[:, ::-1]), init.name))
    path = tmp_path_factory.mktemp("dearer") / "dearer.onnx"
    onnx.save(model, path)
    owner = KeyStore(honest.home).ensure_dev_key("owner")
    published = honest.hub.publish(path, name="dearer", version="1.0.0", price=9000, signer=owner)
    assert published.model_id != honest.manifest["model_id"]
    return published.model_id


def _reclaimed(honest: Honest, name: str, **fields: object) -> Forge:
    """The honest batch's records, leaves and roots as they are, under a manifest and a
    claim the node re-signed with ``fields`` changed (and the batch id re-derived)."""
    f = Forge(honest, name)
    f.m.update(fields)
    f.rederive_batch_id()
    f.seal()
    return f


def test_leaves_roots_and_records_are_the_same_under_any_claim(honest: Honest, dearer: str):
    """What the attacker gains: under another model's claim, the leaves and the batch
    root of the honest batch are the ones that batch committed, byte for byte."""
    f = _reclaimed(honest, "v4-same-leaves", model_id=dearer)
    assert f.m["batch_id"] != honest.manifest["batch_id"]
    assert f.m["batch_root"] == honest.manifest["batch_root"]
    forged = f.publish().batch()
    assert forged.receipt(BASE_ROW)["leaf"] == honest.batch.receipt(BASE_ROW)["leaf"]


def test_records_reused_under_another_models_claim_fail_reexecution(honest: Honest, dearer: str):
    """The node ran tab and signs the batch as the dearer model's: the batch id is
    derived for that model, the claim signs the honest root, and every leaf and records
    file is tab's, unchanged. Re-execution under the claimed model finds the rows."""
    f = _reclaimed(honest, "v4-other-model", model_id=dearer, model_ref="dearer@1.0.0")
    verdict = verify(honest, f.publish().artifact_id, rate=1.0)
    assert not verdict.passed
    assert verdict.reasons().keys() == {"reexecution-mismatch"}, verdict.reasons()


def test_a_claim_not_derived_from_its_manifest_is_refused(honest: Honest, dearer: str):
    """The honest manifest (tab's) with a claim the node signed for the dearer model's
    batch id, over the same root: the leaves cannot tell, the claim check does."""
    f = Forge(honest, "v4-claim-other-batch")
    other = _reclaimed(honest, "v4-claim-source", model_id=dearer).m["batch_id"]
    f.seal(claim={"batch_id": other, "model_id": dearer})
    verdict = verify(honest, f.publish().artifact_id, rate=0.0)
    assert not verdict.passed
    assert "claim-mismatch" in verdict.reasons(), verdict.reasons()


def test_records_reused_for_another_requester_fail_the_order(honest: Honest):
    """The batch replayed for a requester that ordered nothing (the victim): the batch
    id re-derived with the victim as requester, the same root re-signed."""
    f = _reclaimed(honest, "v4-other-requester", requester=honest.victim)
    verdict = verify(honest, f.publish().artifact_id, rate=0.0)
    assert not verdict.passed
    assert "job-order" in verdict.reasons(), verdict.reasons()


def test_a_receipt_speaks_of_its_claims_batch_only(honest: Honest, dearer: str):
    """A receipt of the honest batch whose claim is swapped for the claim the node
    signed for the dearer model over the same root still verifies as a receipt — of
    that other batch, and only of it: every id a reader can take from it is the
    claim's, and the leaf values offer none."""
    f = _reclaimed(honest, "v4-receipt-claim", model_id=dearer, model_ref="dearer@1.0.0")
    receipt = honest_receipt(honest)
    receipt["claim"], receipt["signature"] = f.m["claim"], f.m["signature"]
    check = verify_receipt(receipt, honest.allowlist)
    assert check.ok, check.problems
    assert receipt["claim"]["model_id"] == dearer
    assert set(receipt["leaf_values"]) == {"rowIndex", "inputHash", "outputHash"}
    # a claim over another root (another batch's) does not take the receipt
    other = Forge(honest, "v4-receipt-other-root")
    other.seal(claim={"batch_root": _hex(keccak256(b"another batch's root"))})
    receipt["claim"], receipt["signature"] = other.m["claim"], other.m["signature"]
    assert not verify_receipt(receipt, honest.allowlist).ok


def test_an_input_leaf_is_never_a_receipt(honest: Honest, tmp_path: Path):
    """The node signs a claim whose root is the dataset commitment (the input root) and
    offers an input leaf as a receipt: its values are (INPUT_LEAF_TAG, row, inputHash)
    read as (rowIndex, inputHash, outputHash), so the leaf and its proof are valid, and
    the signature too. The row index is the tag, far past any batch's row count."""
    rec = honest.batch.records(0, inputs=False)
    n = len(rec.row_index)
    leaves = input_leaf_hashes(rec.row_index, rec.input_hashes)
    tree = MerkleTree.from_leaf_hashes(leaves)
    row, in_h = int(rec.row_index[3]), rec.input_hashes[3].tobytes()
    forged_values = (int.from_bytes(INPUT_LEAF_TAG, "big"), row.to_bytes(32, "big"), in_h)
    assert leaf_hash(*forged_values) == input_leaf_hash(row, in_h) == tree.leaf(3)
    f = Forge(honest, "v4-input-root-claim")
    f.seal(claim={"batch_root": _hex(tree.root), "row_count": n})
    receipt = honest_receipt(honest)
    receipt.update(
        leaf=_hex(tree.leaf(3)),
        proof=[_hex(p) for p in tree.proof(3)],
        batch_root=_hex(tree.root),
        claim=f.m["claim"],
        signature=f.m["signature"],
    )
    receipt["leaf_values"] = {
        "rowIndex": str(forged_values[0]),
        "inputHash": _hex(forged_values[1]),
        "outputHash": _hex(forged_values[2]),
    }
    check = verify_receipt(receipt, honest.allowlist)
    assert not check.ok
    assert any("outside the batch" in p for p in check.problems), check.problems
    if NODE:
        assert js_verdict(receipt, tmp_path) in {"rejected", "threw"}


def test_an_internal_node_is_never_a_leaf(honest: Honest, tmp_path: Path):
    """A receipt whose leaf is the first internal node above the honest leaf, with the
    proof shortened to match: the proof folds to the root, but the leaf is recomputed
    from the 96-byte values, and no node (a hash of 64 bytes) is such a leaf."""
    receipt = honest_receipt(honest)
    proof = [bytes.fromhex(p[2:]) for p in receipt["proof"]]
    node = hash_pair(bytes.fromhex(receipt["leaf"][2:]), proof[0])
    receipt["leaf"], receipt["proof"] = _hex(node), receipt["proof"][1:]
    check = verify_receipt(receipt, honest.allowlist)
    assert not check.ok
    assert any("leaf does not match" in p for p in check.problems), check.problems
    if NODE:
        assert js_verdict(receipt, tmp_path) in {"rejected", "threw"}


def test_earlier_layouts_are_refused_by_name(honest: Honest):
    """A v3 artefact (leaves with ids, double-hashed) and a v1 receipt are refused with
    what to do, never read under the new layout."""
    m = copy.deepcopy(honest.manifest)
    m["schema"] = "ogkit.batch.v3"
    f = Forge(honest, "v4-old-schema")
    f.raw = json.dumps(m, sort_keys=True, separators=(",", ":")).encode()
    old = f.publish()
    with pytest.raises(ArtifactError, match=r"ogkit\.batch\.v3.*run the job again"):
        load_batch(old.artifact_id, honest.store)
    verdict = verify(honest, old.artifact_id, rate=0.0)
    assert verdict.reasons().keys() == {"manifest-malformed"}
    receipt = honest_receipt(honest)
    receipt["schema"] = "ogkit.receipt.v1"
    check = verify_receipt(receipt, honest.allowlist)
    assert not check.ok and "earlier receipt layout" in check.problems[0]


def test_the_claim_binds_what_the_leaf_used_to(honest: Honest):
    """Each id the v3 leaf carried, changed in the claim alone and re-signed, fails
    verify_batch by the claim's own checks (with the leaves and root untouched)."""
    for field, value in (
        ("batch_id", _hex(keccak256(b"another batch"))),
        ("model_id", honest.other_model_id),
        ("runtime_id", _hex(keccak256(b"another runtime"))),
    ):
        f = Forge(honest, f"v4-claim-{field}")
        f.seal(claim={field: value})
        assert BatchClaim.from_dict(f.m["claim"]).batch_root == honest.manifest["batch_root"]
        verdict = verify(honest, f.publish().artifact_id, rate=0.0)
        assert not verdict.passed, field
        assert "claim-mismatch" in verdict.reasons(), (field, verdict.reasons())
