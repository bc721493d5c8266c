"""ZK proofs of a stored batch's rows: verify_batch(..., methods=["zk"]) and the CLI."""

from __future__ import annotations

import json

import pytest

from ogkit.attest import make_attester
from ogkit.cli import main
from ogkit.hub import Hub
from ogkit.infer import run_verified_inference
from ogkit.keys import KeyStore
from ogkit.samples import make_tabular
from ogkit.verify import Allowlist, VerifyPolicy, verify_batch
from ogkit.zk.batch import prove_batch_rows, zk_findings


def _verify(batch, enclave, rows: int = 64):
    policy = VerifyPolicy(
        sample_rate=0.05,
        allowlist=Allowlist().approve(enclave.address, [batch.runtime_id]),
        verifier_secret=b"s",
    )
    return verify_batch(
        batch, policy, dataset=make_tabular(rows, seed=3), methods=["zk"], progress=False
    )


@pytest.fixture(scope="module")
def stored(zk, tmp_path_factory, tabular_path):
    """A batch of the 64 calibration rows in the ZK fixture's store."""
    home = tmp_path_factory.mktemp("zk-batch-home")
    keys = KeyStore(home)
    hub = Hub(zk.store, home=home)
    hub.publish(tabular_path, name="tab", version="1.0.0", price=1, signer=keys.ensure_dev_key("o"))
    enclave = make_attester("software", signer=keys.ensure_dev_key("enclave"))
    batch = run_verified_inference(
        "tab", make_tabular(64, seed=3), attester=enclave, requester="0x" + "11" * 20,
        hub=hub, job="zk", progress=False,
    )  # fmt: skip
    return home, hub, enclave, batch


def test_verify_batch_with_zk_passes_an_honest_batch(zk, stored, dask_client) -> None:
    _, _, enclave, batch = stored
    inputs = {"features": zk.x}
    # two chunks of N = 1, one Dask task each, named zk-prove-<first row>-…
    proofs = prove_batch_rows(
        batch, zk.store, [2, 11], inputs=inputs, dask=dask_client, progress=False
    )
    assert [p.rows for p in proofs] == [(2,), (11,)]
    assert zk_findings(batch, zk.store, inputs=inputs) == []
    verdict = _verify(batch, enclave)
    assert verdict.passed, verdict.summary()


def test_verify_batch_with_zk_names_a_forged_row(zk, stored, forge_zk_batch, forge_batch):
    _, _, enclave, batch = stored
    # row 4: another label and probabilities to match (beyond tolerance): the receipt is
    # wrong; row 6: only the label shifted, the probabilities honest: the proof cannot
    # decide it (spec §13.5): verify_batch re-executes it, as the dispute vote would
    forged = forge_batch(forge_zk_batch(batch, {4}, enclave), {6}, enclave)
    prove_batch_rows(forged, zk.store, [4, 6], inputs={"features": zk.x}, progress=False)
    verdict = _verify(forged, enclave)
    zk_rows = {(f.reason, f.row_index) for f in verdict.findings if f.reason.startswith("zk")}
    assert zk_rows == {("zk-output-mismatch", 4)}
    (deferred,) = [f for f in verdict.findings if f.row_index == 6]
    assert deferred.reason == "reexecution-mismatch" and "ogkit dispute vote" in deferred.detail


def test_verify_batch_with_zk_and_no_proofs_fails(zk, stored, tmp_path) -> None:
    _, hub, enclave, _ = stored
    other = run_verified_inference(
        "tab", make_tabular(8, seed=3), attester=enclave, requester="0x" + "11" * 20,
        hub=hub, job="zk-none", progress=False,
    )  # fmt: skip
    assert _verify(other, enclave, rows=8).reasons() == {"zk-row-unproven": 1}


def test_cli_zk_prove_and_verify(zk, stored, capsys) -> None:
    home, _, _, batch = stored
    base = ["--home", str(home), "--store", zk.store.url]
    assert main([*base, "zk", "prove", batch.artifact_id, "--rows", "7", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["rows"] == [7] and doc["proofs"] == 1
    assert main([*base, "zk", "verify", batch.artifact_id, "--rows", "7", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["passed"] is True and doc["findings"] == []
    assert main([*base, "zk", "verify", batch.artifact_id, "--rows", "8"]) == 1
    assert "zk-row-unproven" in capsys.readouterr().out


def test_cli_zk_export_refuses_an_unsupported_model_at_once(tmp_path, capsys) -> None:
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])
    z = helper.make_tensor_value_info("z", TensorProto.FLOAT, [None, 4])
    g = helper.make_graph([helper.make_node("Sin", ["x"], ["z"])], "bad", [x], [z])
    path = tmp_path / "bad.onnx"
    path.write_bytes(
        helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
    )
    assert main(["--home", str(tmp_path), "zk", "export", str(path)]) == 1
    err = capsys.readouterr().err
    assert "op Sin is not supported by ezkl" in err
