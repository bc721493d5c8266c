"""Gas per settled inference: one batch commitment vs one settlement per inference.

For batches of 1, 1k, 100k and 1M rows this settles a batch on the embedded EVM
(commit + three verifier attestations + finalise) and divides its gas by the row
count. The baseline, measured in the same run, is the per-inference settlement: every
inference settled as its own one-row batch. It also measures ``verifyReceipt`` gas
against the depth of the receipt's proof. Run: ``.venv/bin/python bench/bench_gas.py``.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ogkit.attest import BatchClaim, make_attester
from ogkit.chain.connection import connect
from ogkit.crypto.merkle import MerkleTree
from ogkit.hub.manifest import ModelManifest
from ogkit.keys import KeyStore
from ogkit.settle import claim_domain, prepare_dev_settlement

OPG = 10**18
RUNTIME = "0x" + "ab" * 32
MODEL = "0x" + "cd" * 32


def setup():
    home = Path(tempfile.mkdtemp(prefix="ogkit-gas-"))
    chain = connect("embedded")
    keys = KeyStore(home)
    names = ["owner", "enclave", "requester", "node", "v1", "v2", "v3"]
    s = {n: keys.ensure_dev_key(n) for n in names}
    for signer in s.values():
        chain.fund(signer.address, eth=10**20, opg=10**7 * OPG)
    manifest = ModelManifest("gas-model", "1.0.0", s["owner"].address, 1, MODEL, 0, (), ())
    attester = make_attester("software", signer=s["enclave"])
    prepare_dev_settlement(
        chain,
        deployer=chain.deployer,
        manifest=manifest,
        runtime_id=RUNTIME,
        owner=s["owner"],
        node=s["node"],
        attester=attester.address,
        requester=s["requester"],
        verifiers=[s["v1"], s["v2"], s["v3"]],
        allowance=10**9 * OPG,
    )
    return chain, s, attester


def settle_batch(chain, s, attester, rows: int, root: bytes, nonce: int) -> dict[str, int]:
    settlement = chain.contract("InferenceSettlement")
    batch_id = "0x" + nonce.to_bytes(32, "big").hex()
    claim = BatchClaim(
        batch_id,
        MODEL,
        RUNTIME,
        "0x" + root.hex(),
        rows,
        s["requester"].address,
        int(time.time()),
        attester.address,
    )
    signature = attester.sign_claim(claim, claim_domain(chain))
    claim_tuple = (
        bytes.fromhex(batch_id[2:]),
        bytes.fromhex(MODEL[2:]),
        bytes.fromhex(RUNTIME[2:]),
        root,
        rows,
        claim.requester,
        claim.timestamp,
        claim.attester,
    )
    gas = {}
    r = chain.transact(
        settlement.functions.commitBatch(claim_tuple, bytes.fromhex(signature[2:]), b"\x01" * 32),
        s["node"],
    )
    gas["commit"] = r["gasUsed"]
    gas["attest"] = sum(
        chain.transact(settlement.functions.attest(bytes.fromhex(batch_id[2:]), True), s[v])[
            "gasUsed"
        ]
        for v in ("v1", "v2", "v3")
    )
    chain.increase_time(3601)
    gas["finalize"] = chain.transact(
        settlement.functions.finalize(bytes.fromhex(batch_id[2:])), s["node"]
    )["gasUsed"]
    return gas


def main() -> int:
    chain, s, attester = setup()
    rng = np.random.default_rng(0)
    # Warm the settlement contract's storage (its first escrow pays for a fresh slot).
    settle_batch(chain, s, attester, 1, rng.bytes(32), 10**9)
    baseline = sum(settle_batch(chain, s, attester, 1, rng.bytes(32), 1).values())
    print("gas per settled inference (commit + 3 attestations + finalise)")
    print(
        f"{'rows per batch':>15} {'total gas':>12} {'gas/inference':>14} {'vs per-inference':>17}"
    )
    print(f"{'1 (baseline)':>15} {baseline:12,} {baseline:14,.2f} {1:16.0f}x")
    for i, rows in enumerate((1_000, 100_000, 1_000_000)):
        gas = settle_batch(chain, s, attester, rows, rng.bytes(32), 100 + i)
        total = sum(gas.values())
        print(
            f"{rows:>15,} {total:12,} {total / rows:14,.4f} {baseline * rows / total:16,.0f}x"
            f"   (commit {gas['commit']:,}, attest {gas['attest']:,}, "
            f"finalize {gas['finalize']:,})"
        )

    print("\nverifyReceipt gas vs proof depth (eth_estimateGas of a call, incl. 21k base)")
    settlement = chain.contract("InferenceSettlement")
    for depth in (1, 5, 10, 15, 20):
        leaves = np.frombuffer(rng.bytes(32 * 2**depth), np.uint8).reshape(-1, 32).copy()
        tree = MerkleTree.from_leaf_hashes(leaves) if depth <= 15 else None
        if tree is None:  # 2^20 leaves: build a path directly instead of the whole tree
            leaf, proof = rng.bytes(32), [rng.bytes(32) for _ in range(depth)]
            from ogkit.crypto.merkle import process_proof

            root = process_proof(leaf, proof)
        else:
            leaf, proof, root = tree.leaf(0), tree.proof(0), tree.root
        nonce = 1000 + depth
        settle_batch(chain, s, attester, 2**depth, root, nonce)
        fn = settlement.functions.verifyReceipt(nonce.to_bytes(32, "big"), leaf, proof)
        assert chain.call(fn) is True
        print(f"  depth {depth:2}: {fn.estimate_gas():,} gas")
    return 0


if __name__ == "__main__":
    sys.exit(main())
