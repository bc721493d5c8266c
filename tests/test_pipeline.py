"""Verified inference end to end on real Dask, real onnxruntime, real files."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pandas as pd
import polars as pl
import pytest

from ogkit.batch import load_batch
from ogkit.cli import main
from ogkit.crypto.merkle import LEAF_TYPES, process_proof
from ogkit.errors import SchemaMismatchError
from ogkit.infer import run_verified_inference
from ogkit.samples import sample_data_path
from ogkit.store import ContentStore
from ogkit.verify import verify_receipt

REPO = Path(__file__).resolve().parent.parent


def _bare(path: Path, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)


def test_tabular_end_to_end_matches_bare_onnxruntime(
    published, enclave, requester, dask_client, tabular_path
):
    data = sample_data_path("tabular")
    batch = run_verified_inference(
        "tab",
        data,
        attester=enclave,
        requester=requester,
        dask=dask_client,
        hub=published,
        partition_rows=300,
        progress=False,
    )
    assert batch.row_count == 2000 and len(batch.partitions) == 7
    workers = {p["worker"] for p in batch.manifest.run_stats["partitions"]}
    assert len(workers) == 2, "both workers should have run partitions"

    frame = pl.read_parquet(data)
    features = frame.select([f"f{i}" for i in range(8)]).to_numpy().astype(np.float32)
    label, probabilities = _bare(tabular_path, {"features": features})
    outputs = batch.outputs_frame()
    np.testing.assert_array_equal(outputs["row_index"].to_numpy(), np.arange(2000))
    np.testing.assert_array_equal(outputs["label"].to_numpy(), label)
    np.testing.assert_array_equal(np.stack(outputs["probabilities"].to_numpy()), probabilities)

    receipts = batch.receipts(list(range(2000)))
    root = bytes.fromhex(batch.batch_root[2:])
    for r in receipts:
        proof = [bytes.fromhex(p[2:]) for p in r["proof"]]
        assert process_proof(bytes.fromhex(r["leaf"][2:]), proof) == root
    for r in receipts[::97]:  # the full check (leaf, proof, claim, EIP-712 signature)
        assert verify_receipt(r, _approved(batch, enclave)).ok


def test_root_identical_across_reruns_and_worker_counts(
    published, enclave, requester, dask_client, tmp_path
):
    from ogkit.compute import get_client

    data = sample_data_path("tabular")
    kwargs = dict(
        attester=enclave, requester=requester, hub=published, partition_rows=250, progress=False
    )
    two = run_verified_inference("tab", data, dask=dask_client, **kwargs)
    with get_client(n_workers=1) as one_worker:
        one = run_verified_inference(
            "tab", data, dask=one_worker, store=ContentStore(tmp_path / "s1"), **kwargs
        )
    eager = run_verified_inference(
        "tab", data, dask=None, store=ContentStore(tmp_path / "s2"), **kwargs
    )
    assert two.batch_root == one.batch_root == eager.batch_root
    assert two.batch_id == one.batch_id == eager.batch_id
    # Re-running a finished job returns the same attested artefact.
    again = run_verified_inference("tab", data, dask=dask_client, **kwargs)
    assert again.artifact_id == two.artifact_id


def test_cnn_and_fixed_batch_one(published, enclave, requester, dask_client, cnn_path):
    data = sample_data_path("images")
    images = np.stack(pl.read_parquet(data)["image"].to_numpy()).reshape(-1, 1, 28, 28)
    (expected,) = _bare(cnn_path, {"image": images.astype(np.float32)})
    results = {}
    for model in ("cnn", "cnn-b1"):
        batch = run_verified_inference(
            model,
            data,
            attester=enclave,
            requester=requester,
            dask=dask_client,
            hub=published,
            partition_rows=64,
            batch_size=32,
            progress=False,
        )
        got = np.stack(batch.outputs_frame()["probabilities"].to_numpy())
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
        assert verify_receipt(batch.receipt(255), _approved(batch, enclave)).ok
        results[model] = got
    np.testing.assert_array_equal(results["cnn"], expected)


def test_eager_numpy_and_pandas_inputs(published, enclave, requester):
    x = np.random.default_rng(3).normal(size=(500, 8)).astype(np.float32)
    from_numpy = run_verified_inference(
        "tab", x, attester=enclave, requester=requester, hub=published, progress=False
    )
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(8)])
    from_pandas = run_verified_inference(
        "tab",
        frame,
        attester=enclave,
        requester=requester,
        hub=published,
        progress=False,
        job="pandas",
    )
    a = from_numpy.outputs_frame()["label"].to_numpy()
    b = from_pandas.outputs_frame()["label"].to_numpy()
    np.testing.assert_array_equal(a, b)
    # Same inputs and model: identical input hashes, so identical leaves up to the batch id.
    assert (
        from_numpy.records(0).input_hashes.tobytes()
        == from_pandas.records(0).input_hashes.tobytes()
    )


def test_schema_errors_listed_together_before_work(published, enclave, requester, home):
    frame = pl.DataFrame({"a": ["x", "y"], "f1": [1.0, 2.0], "f2": [None, 1.0]})
    with pytest.raises(SchemaMismatchError) as info:
        run_verified_inference(
            "tab",
            frame,
            attester=enclave,
            requester=requester,
            hub=published,
            input_map={"features": ["a", "f1", "f9"], "extra": "f2"},
            progress=False,
        )
    problems = info.value.problems
    assert len(problems) == 2, problems
    assert any("'extra'" in p for p in problems) and any("f9" in p for p in problems)
    assert "2 schema problems" in str(info.value)
    assert not (home / "store" / "batches").exists(), "nothing may be written"

    frame = pl.DataFrame({"image": [[0.0] * 10] * 3})
    with pytest.raises(SchemaMismatchError, match="784 values per row"):
        run_verified_inference(
            "cnn", frame, attester=enclave, requester=requester, hub=published, progress=False
        )
    nulls = pl.DataFrame({f"f{i}": [1.0, None] for i in range(8)})
    with pytest.raises(SchemaMismatchError) as info:
        run_verified_inference(
            "tab", nulls, attester=enclave, requester=requester, hub=published, progress=False
        )
    assert len(info.value.problems) == 8 and "null" in info.value.problems[0]


def test_killed_run_resumes_with_same_root(published, enclave, requester, home, tmp_path):
    from ogkit.samples import make_tabular

    data = tmp_path / "big.parquet"
    make_tabular(400_000, seed=5).write_parquet(data)
    cmd = [
        str(REPO / ".venv/bin/ogkit"),
        "infer",
        "--model",
        "tab",
        "--data",
        str(data),
        "--partition-rows",
        "4000",
        "--workers",
        "0",
        "--json",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    store = home / "store" / "batches"
    done = []
    for _ in range(1200):
        done = list(store.glob("*/part-*.json")) if store.exists() else []
        if len(done) >= 5 or proc.poll() is not None:
            break
        import time

        time.sleep(0.05)
    proc.kill()
    proc.wait()
    assert 5 <= len(done) < 100, f"kill should land mid-run ({len(done)} partitions done)"
    finished_before = len(list(store.glob("*/part-*.json")))

    resumed = run_verified_inference(
        "tab",
        data,
        attester=enclave,
        requester=requester,
        hub=published,
        partition_rows=4000,
        progress=False,
    )
    assert resumed.manifest.run_stats["resumed_partitions"] == finished_before
    assert not list(store.glob("*/.tmp-*"))
    fresh = run_verified_inference(
        "tab",
        data,
        attester=enclave,
        requester=requester,
        hub=published,
        partition_rows=4000,
        progress=False,
        store=ContentStore(tmp_path / "fresh"),
    )
    assert fresh.manifest.run_stats["resumed_partitions"] == 0
    assert resumed.batch_root == fresh.batch_root


def test_cli_infer_verify_receipt(published, enclave, requester, home, capsys, tmp_path):
    data = str(sample_data_path("tabular"))
    assert main(["infer", "--model", "tab", "--data", data, "--workers", "0", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["schema"] == "ogkit.infer.v1" and out["row_count"] == 2000
    artifact = out["artifact_id"]
    # Not yet approved: verify fails and names the attester.
    assert main(["verify", artifact, "--workers", "0", "--json", "--dataset", data]) == 1
    verdict = json.loads(capsys.readouterr().out)
    assert set(verdict["reasons"]) == {"unapproved-attester", "unapproved-measurement"}
    batch = load_batch(artifact, ContentStore(home / "store"))
    assert (
        main(
            [
                "allowlist",
                "add",
                "--attester",
                batch.claim.attester,
                "--measurement",
                batch.runtime_id,
            ]
        )
        == 0
    )
    capsys.readouterr()
    verify = ["verify", artifact, "--workers", "0", "--sample-rate", "0.1", "--json"]
    # Without the requester's data or commitment the inputs are bound to nothing: fail.
    assert main(verify) == 1
    assert json.loads(capsys.readouterr().out)["reasons"] == {"inputs-unbound": 1}
    assert main([*verify, "--dataset", data]) == 0
    verdict = json.loads(capsys.readouterr().out)
    assert verdict["passed"] and verdict["inputs_bound"]
    assert 140 <= verdict["sample_size"] <= 260  # q = 0.1 of 2,000
    assert main(["commit", "tab", data]) == 0
    commitment = capsys.readouterr().out.strip()
    assert main([*verify, "--commitment", commitment]) == 0
    assert json.loads(capsys.readouterr().out)["inputs_bound"]
    receipt_path = tmp_path / "r.json"
    assert main(["receipt", "show", artifact, "1234", "-o", str(receipt_path)]) == 0
    assert main(["receipt", "verify", str(receipt_path), "--json"]) == 0
    capsys.readouterr()
    receipt = json.loads(receipt_path.read_text())
    receipt["proof"][0] = "0x" + "00" * 32
    receipt_path.write_text(json.dumps(receipt))
    assert main(["receipt", "verify", str(receipt_path)]) == 1
    assert "proof does not lead" in capsys.readouterr().out


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_receipt_verifies_with_openzeppelin_js(published, enclave, requester, tmp_path):
    if not (REPO / "node_modules/@openzeppelin/merkle-tree").exists():
        pytest.skip("node_modules missing: run `make test`, which runs npm ci")
    batch = run_verified_inference(
        "tab",
        sample_data_path("tabular"),
        attester=enclave,
        requester=requester,
        hub=published,
        partition_rows=300,
        progress=False,
    )
    receipts = batch.receipts([0, 777, 1999])
    bad = json.loads(json.dumps(receipts[1]))
    bad["leaf_values"]["outputHash"] = "0x" + "11" * 32
    path = tmp_path / "receipts.json"
    path.write_text(json.dumps({"types": list(LEAF_TYPES), "good": receipts, "bad": [bad]}))
    run = subprocess.run(
        ["node", str(REPO / "tests/js/verify_receipts.mjs"), str(path)],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert run.returncode == 0, run.stderr + run.stdout
    assert "3 good receipts verified, 1 bad receipt rejected" in run.stdout


def test_csv_arrow_and_folder_inputs_agree(published, enclave, requester, tmp_path):
    frame = pl.read_csv(
        sample_data_path("tabular_csv"), schema_overrides={f"f{i}": pl.Float32 for i in range(8)}
    )
    frame.write_ipc(tmp_path / "rows.arrow")
    folder = tmp_path / "parts"
    folder.mkdir()
    frame.head(200).write_parquet(folder / "a.parquet")
    frame.tail(300).write_parquet(folder / "b.parquet")
    labels = {}
    for name, data in (
        ("csv", sample_data_path("tabular_csv")),
        ("arrow", tmp_path / "rows.arrow"),
        ("folder", folder),
    ):
        batch = run_verified_inference(
            "tab",
            data,
            attester=enclave,
            requester=requester,
            hub=published,
            partition_rows=128,
            progress=False,
        )
        assert batch.row_count == 500
        labels[name] = batch.outputs_frame()["label"].to_numpy()
        # The same rows give the same input hashes, whatever the file format.
        labels[name + "-hash0"] = bytes(batch.records(0).input_hashes[0])
    np.testing.assert_array_equal(labels["csv"], labels["arrow"])
    np.testing.assert_array_equal(labels["csv"], labels["folder"])
    assert labels["csv-hash0"] == labels["arrow-hash0"] == labels["folder-hash0"]


def _approved(batch, attester):
    from ogkit.verify import Allowlist

    return Allowlist().approve(attester.address, [batch.runtime_id])


def test_dask_run_reads_once_resumes_and_refuses_another_commitment(
    published, enclave, requester, dask_client, tmp_path
):
    """On Dask each partition is read, hashed and run once before the batch id is known;
    a resumed run attests only the partitions whose records are missing, and a run whose
    data differ from the requester's commitment writes nothing."""
    from ogkit.dataset import DatasetCommitment
    from ogkit.errors import ConfigError
    from ogkit.samples import make_tabular

    data = tmp_path / "t.parquet"
    make_tabular(3000, seed=2).write_parquet(data)
    store = ContentStore(tmp_path / "store")
    kwargs = dict(attester=enclave, requester=requester, hub=published, store=store)
    first = run_verified_inference(
        "tab", data, dask=dask_client, partition_rows=1000, progress=False, **kwargs
    )
    stats = first.manifest.run_stats["partitions"]
    assert len(stats) == 3 and all({"read", "commit", "infer", "attest"} <= set(p) for p in stats)
    folder = tmp_path / "store" / "batches" / first.batch_id
    for name in ("ARTIFACT", "part-00001.json", "part-00001.parquet"):
        (folder / name).unlink()
    again = run_verified_inference(
        "tab", data, dask=dask_client, partition_rows=1000, progress=False, **kwargs
    )
    assert again.manifest.run_stats["resumed_partitions"] == 2
    assert again.batch_root == first.batch_root
    other = DatasetCommitment("0x" + "11" * 32, 3000)
    empty = ContentStore(tmp_path / "empty")
    with pytest.raises(ConfigError, match="does not match the requester's commitment"):
        run_verified_inference(
            "tab", data, dask=dask_client, partition_rows=1000, progress=False,
            commitment=other, **{**kwargs, "store": empty},
        )  # fmt: skip
    assert not (tmp_path / "empty" / "batches").exists()


_NOT_DEFAULT_CLIENT = """
from pathlib import Path
from dask.distributed import Client, LocalCluster
from ogkit.attest import make_attester
from ogkit.infer import run_verified_inference
from ogkit.keys import KeyStore
from ogkit.samples import make_tabular, sample_model_path
from ogkit.verify import Allowlist, VerifyPolicy, verify_batch

if __name__ == "__main__":
    keys = KeyStore(Path("home"))
    enclave = make_attester("software", signer=keys.ensure_dev_key("enclave"))
    make_tabular(2_000, seed=3).write_parquet("rows.parquet")
    with LocalCluster(n_workers=1, processes=False) as cluster, Client(
        cluster, set_as_default=False
    ) as client:
        batch = run_verified_inference(
            sample_model_path("tabular"), "rows.parquet", attester=enclave,
            requester=keys.ensure_dev_key("requester").address, dask=client,
            store="store", partition_rows=500, progress=False,
        )
        allow = Allowlist().approve(enclave.address, [batch.runtime_id])
        verdict = verify_batch(
            batch, VerifyPolicy(sample_rate=0.5, allowlist=allow), dask=client,
            dataset="rows.parquet", progress=False,
        )
        print("passed" if verdict.passed and verdict.inputs_bound else verdict.summary())
"""


def test_a_client_that_is_not_dasks_default_runs_attest_and_verify(tmp_path):
    """The client passed in runs the job, whichever client Dask holds as its default:
    here there is none (``set_as_default=False``), in a fresh interpreter so no other
    test's client stands in for it."""
    script = tmp_path / "job.py"
    script.write_text(_NOT_DEFAULT_CLIENT)
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "passed", done.stdout[-2000:]
