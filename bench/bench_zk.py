"""ZK proofs of the sample tabular model: ogkit's prover against ezkl's own, same run.

For each chunk size N (default 1, 8, 64) the model is exported (scale 8, tolerance 0.02),
keys are set up with a development SRS, then N rows are proved ``--repeat`` times by each
prover (ABBA order), each in a fresh process so peak memory is the prover's alone:

* **ezkl** — ezkl's own Python API on the same files (``gen_witness`` + ``prove``; the
  pip package ships no CLI binary), the baseline;
* **ogkit** — :func:`ogkit.zk.prove.prove_rows` (input file, witness, proof, parsing).

It prints wall time (fastest and slowest run of each prover, so the baseline's own
spread shows), the CPU time of the proving call, peak RSS and the ratio ogkit / ezkl
(target ≤ 1.10), the proof size, and two gas figures per N: ``verifyProof`` of the
generated single-circuit verifier on an anvil started here with a raised code-size limit
(verifiers for N ≥ 8 exceed EIP-170's 24,576 bytes), and ``verifyProof`` of a
``ZkVkVerifier`` adapter over ezkl's reusable verifier on an anvil with the standard limit
(every contract of that path fits; the proof is verified through it, not only estimated).

    .venv/bin/python bench/bench_zk.py              # N = 1, 8, 64 (several minutes)
    .venv/bin/python bench/bench_zk.py --sizes 1,8  # quicker
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ogkit.samples import TABULAR_FEATURES, make_tabular, sample_model_path  # noqa: E402
from ogkit.store import ContentStore  # noqa: E402
from ogkit.zk.evm import ensure_verifier, measure_verify_gas  # noqa: E402
from ogkit.zk.export import export_model  # noqa: E402
from ogkit.zk.keys import ZK_CIRCUITS, ZK_KEYS, ZK_SRS, materialise, setup_keys  # noqa: E402
from ogkit.zk.reusable import measure_reusable_gas  # noqa: E402

EZKL_SNIPPET = """
import ezkl, resource, sys, time
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
t, c = time.perf_counter(), cpu()
ezkl.gen_witness(sys.argv[1], sys.argv[2], sys.argv[5] + "/w.json", None, None)
ezkl.prove(sys.argv[5] + "/w.json", sys.argv[2], sys.argv[3], sys.argv[5] + "/p.json", sys.argv[4])
print(time.perf_counter() - t, cpu() - c)
"""

OGKIT_SNIPPET = """
import json, sys, numpy as np
from ogkit.store import ContentStore
from ogkit.zk.keys import ZkKeys
from ogkit.zk.profile import ZkProfile
from ogkit.zk.prove import prove_rows
store = ContentStore(sys.argv[1])
profile = ZkProfile.from_dict(json.loads(open(sys.argv[2]).read()))
keys = ZkKeys.from_dict(json.loads(open(sys.argv[3]).read()))
x = np.load(sys.argv[4])
import resource, time
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
t, c = time.perf_counter(), cpu()
(proof,) = prove_rows(store, profile, keys, {"features": x}, list(range(profile.chunk)),
                      progress=False)
elapsed, used = time.perf_counter() - t, cpu() - c
open(sys.argv[5] + "/proof.json", "w").write(json.dumps(proof.to_dict()))
print(elapsed, used)
"""


def run_measured(cmd: list[str]) -> tuple[float, float, int]:
    """Wall and CPU seconds of the proving call (timed inside the child, so interpreter
    start and imports do not count) and peak RSS (bytes) of that child process."""
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err)
        assert proc.stdout is not None
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            raise SystemExit(f"{cmd[:3]} failed: {err.read().decode()[-2000:]}")
    wall, cpu = (float(v) for v in out.decode().strip().splitlines()[-1].split())
    return wall, cpu, usage.ru_maxrss * 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="1,8,64", help="chunk sizes N, comma-separated")
    ap.add_argument("--scale", type=int, default=8)
    ap.add_argument("--tolerance", type=float, default=0.02)
    ap.add_argument("--repeat", type=int, default=2, help="runs of each prover (fastest kept)")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    data = sample_model_path("tabular").read_bytes()
    rows = []
    arts: dict[int, tuple[dict, dict]] = {}
    reusable: dict[int, tuple] = {}
    with tempfile.TemporaryDirectory(prefix="bench-zk-") as tmp:
        d = Path(tmp)
        store = ContentStore(d / "store")
        for n in sizes:
            x = make_tabular(max(64, 4 * n), seed=3).select(TABULAR_FEATURES).to_numpy()
            x = x.astype(np.float32)
            t0 = time.perf_counter()
            profile, _, _ = export_model(
                data, chunk=n, input_scale=args.scale, tolerance=args.tolerance,
                lookup_margin=1.0, calibration={"features": x}, store=store,
            )  # fmt: skip
            t1 = time.perf_counter()
            keys = setup_keys(store, profile)
            t2 = time.perf_counter()
            work = d / f"n{n}"
            work.mkdir()
            np.save(work / "x.npy", x[:n])
            (work / "profile.json").write_bytes(profile.to_json())
            (work / "keys.json").write_text(json.dumps(keys.to_dict()))
            (work / "input.json").write_text(
                json.dumps({"input_data": [[float(v) for v in x[:n].reshape(-1)]]})
            )
            circuit = materialise(store, ZK_CIRCUITS, keys.circuit_id)
            pk = materialise(store, ZK_KEYS, keys.pk_id)
            srs = materialise(store, ZK_SRS, keys.srs_id)
            base_cmd = [sys.executable, "-c", EZKL_SNIPPET, str(work / "input.json"),
                        str(circuit), str(pk), str(srs), str(work)]  # fmt: skip
            ours_cmd = [sys.executable, "-c", OGKIT_SNIPPET, store.url,
                        str(work / "profile.json"), str(work / "keys.json"),
                        str(work / "x.npy"), str(work)]  # fmt: skip
            base, ours = [], []
            for i in range(args.repeat):
                # ABBA order: a load that rises or falls through the runs hits both alike
                if i % 2 == 0:
                    base.append(run_measured(base_cmd))
                    ours.append(run_measured(ours_cmd))
                else:
                    ours.append(run_measured(ours_cmd))
                    base.append(run_measured(base_cmd))
            base_s, base_rss = min(t for t, _, _ in base), max(r for _, _, r in base)
            ours_s, ours_rss = min(t for t, _, _ in ours), max(r for _, _, r in ours)
            base_cpu, ours_cpu = min(c for _, c, _ in base), min(c for _, c, _ in ours)
            proof = json.loads((work / "proof.json").read_text())
            art = ensure_verifier(store, profile, keys, allow_oversize=True)
            arts[n] = (art, proof)
            reusable[n] = (store, profile, keys, proof)
            rows.append(
                {
                    "N": n,
                    "logrows": profile.logrows,
                    "export_s": t1 - t0,
                    "setup_s": t2 - t1,
                    "pk_mb": pk.stat().st_size / 1e6,
                    "ezkl_s": base_s,
                    "ogkit_s": ours_s,
                    "ezkl_runs": [round(t, 2) for t, _, _ in base],
                    "ogkit_runs": [round(t, 2) for t, _, _ in ours],
                    "ratio": ours_s / base_s,
                    "cpu_ratio": ours_cpu / base_cpu,
                    "ezkl_cpu_s": base_cpu,
                    "ogkit_cpu_s": ours_cpu,
                    "ezkl_rss_gb": base_rss / 1e9,
                    "ogkit_rss_gb": ours_rss / 1e9,
                    "proof_bytes": (len(proof["proof"]) - 2) // 2,
                    "verifier_bytes": art["code_size"],
                    "max_err": profile.measured_error["probabilities"],
                }
            )
            print(f"N={n} done: {rows[-1]}", flush=True)
        gas = measure_verify_gas(arts)
        rgas = measure_reusable_gas(reusable)
    print()
    print(f"ZK proofs of the sample tabular model, scale {args.scale}, in this run")
    head = (
        f"{'N':>3} {'2^k':>4} {'setup s':>8} {'pk MB':>7} {'ezkl s (runs)':>22} "
        f"{'ogkit s (runs)':>22} {'ogkit/ezkl':>10} {'CPU ratio':>9} {'ezkl GB':>8} "
        f"{'ogkit GB':>9} {'proof B':>8} {'max err':>8}"
    )
    print(head)
    for r in rows:
        er = "/".join(f"{t:.1f}" for t in r["ezkl_runs"])
        ogr = "/".join(f"{t:.1f}" for t in r["ogkit_runs"])
        print(
            f"{r['N']:>3} {r['logrows']:>4} {r['setup_s']:>8.1f} {r['pk_mb']:>7.0f} "
            f"{er:>22} {ogr:>22} {r['ratio']:>10.3f} {r['cpu_ratio']:>9.3f} "
            f"{r['ezkl_rss_gb']:>8.2f} {r['ogkit_rss_gb']:>9.2f} {r['proof_bytes']:>8,} "
            f"{r['max_err']:>8.4f}"
        )
    print()
    print("on-chain verification (gas of verifyProof; code sizes in bytes)")
    print(
        f"{'N':>3} {'single code':>11} {'single gas':>11} {'adapter gas':>11} "
        f"{'adapter/single':>14} {'adapter code':>12} {'VKA':>7} {'adapter deploy':>14} "
        f"{'reusable code':>13} {'reusable deploy':>15}"
    )
    for r in rows:
        g = rgas[r["N"]]
        print(
            f"{r['N']:>3} {r['verifier_bytes']:>11,} {gas[r['N']]:>11,} {g['verify_gas']:>11,} "
            f"{g['verify_gas'] / gas[r['N']]:>14.3f} {g['adapter_code_size']:>12,} "
            f"{g['vka_bytes']:>7,} {g['adapter_deploy_gas']:>14,} "
            f"{g['reusable_code_size']:>13,} {g['reusable_deploy_gas']:>15,}"
        )
    print(
        "target: ogkit/ezkl <= 1.10; single verifiers above 24,576 bytes need a devnet "
        "code-size limit, the adapter path runs on the standard limit (reusable verifier "
        "deployed once per chain)"
    )


if __name__ == "__main__":
    main()
