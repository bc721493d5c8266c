"""One ZK profile of the sample tabular model for the whole package: N=1, scale 8,
tolerance 0.02 (2^13 circuit rows; export, development SRS and keys take ~7 s); the anvil
world its on-chain tests share; a forgery a proof can judge."""

from __future__ import annotations

import dataclasses
import secrets
import socket
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from ogkit.attest import make_attester
from ogkit.chain.bindings import BatchStatus
from ogkit.chain.devnet import Devnet
from ogkit.chain.records import onchain_batch
from ogkit.crypto.encoding import tensor_row_hash
from ogkit.hub import Hub
from ogkit.infer import run_verified_inference
from ogkit.keys import KeyStore
from ogkit.order import new_order
from ogkit.samples import TABULAR_FEATURES, make_tabular
from ogkit.settle import (
    SettlementJournal,
    claim_domain,
    ensure_allowance,
    prepare_dev_settlement,
    settle,
)
from ogkit.store import ContentStore
from ogkit.zk.evm import (
    approve_profile,
    deploy_verifier,
    ensure_verifier,
    layout_hash,
    register_profile,
)
from ogkit.zk.export import export_model
from ogkit.zk.fixed import row_message
from ogkit.zk.keys import ZkKeys, setup_keys
from ogkit.zk.profile import ZkProfile
from ogkit.zk.prove import ZkProof, prove_rows
from ogkit.zk.verify import RowEvidence

OPG = 10**18

SCALE = 8
TOLERANCE = 0.02


@dataclasses.dataclass
class Zk:
    store: ContentStore
    data: bytes
    profile: ZkProfile
    keys: ZkKeys
    x: np.ndarray
    proof: ZkProof  # of row 5

    def outputs(self, row: int) -> dict[str, np.ndarray]:
        sess = ort.InferenceSession(self.data, providers=["CPUExecutionProvider"])
        label, proba = sess.run(None, {"features": self.x[row : row + 1]})
        return {"label": label[0], "probabilities": proba[0]}

    def evidence(self, row: int, outputs: dict[str, np.ndarray] | None = None) -> RowEvidence:
        outs = self.outputs(row) if outputs is None else outputs
        inputs = {"features": self.x[row]}
        return RowEvidence(
            row=row,
            input_hash=tensor_row_hash(inputs),
            output_hash=tensor_row_hash(outs),
            input_message=row_message(self.profile.inputs, inputs),
            output_message=row_message(self.profile.outputs, outs),
        )


@pytest.fixture(scope="session")
def zk(tmp_path_factory: pytest.TempPathFactory, tabular_path: Path) -> Zk:
    store = ContentStore(tmp_path_factory.mktemp("zk-store"))
    x = make_tabular(64, seed=3).select(TABULAR_FEATURES).to_numpy().astype(np.float32)
    data = tabular_path.read_bytes()
    profile, _, _ = export_model(
        data,
        chunk=1,
        input_scale=SCALE,
        tolerance=TOLERANCE,
        lookup_margin=1.0,
        calibration={"features": x},
        store=store,
    )
    keys = setup_keys(store, profile)
    (proof,) = prove_rows(store, profile, keys, {"features": x}, [5], progress=False)
    return Zk(store, data, profile, keys, x, proof)


@pytest.fixture(scope="session")
def zk_other(zk: Zk, tmp_path_factory: pytest.TempPathFactory) -> tuple[ZkProfile, ZkProof]:
    """What a node that picks a convenient scale has: its own profile (scale 7), its own
    keys and a valid proof of row 5 under them."""
    store = ContentStore(tmp_path_factory.mktemp("zk-node-store"))
    other, _, _ = export_model(
        zk.data,
        chunk=1,
        input_scale=7,
        tolerance=0.05,
        lookup_margin=1.0,
        calibration={"features": zk.x},
        store=store,
    )
    keys = setup_keys(store, other)
    (theirs,) = prove_rows(store, other, keys, {"features": zk.x}, [5], progress=False)
    return other, theirs


@pytest.fixture(scope="session")
def zk_other_model(zk: Zk, tmp_path_factory: pytest.TempPathFactory):
    """What a node that proves a different model has: the sample model with its output
    layer's weights scaled by 1.05, exported under the same settings (scale 8), its own
    keys and a valid proof of row 5; its public inputs are the row's, bit for bit."""
    import onnx
    from onnx import numpy_helper

    m = onnx.load_from_string(zk.data)
    for i, init in enumerate(m.graph.initializer):
        if init.name == "coefficient1":
            w = numpy_helper.to_array(init) * np.float32(1.05)
            m.graph.initializer[i].CopyFrom(numpy_helper.from_array(w, init.name))
    data = m.SerializeToString()
    store = ContentStore(tmp_path_factory.mktemp("zk-other-model"))
    profile, _, _ = export_model(
        data,
        chunk=1,
        input_scale=SCALE,
        tolerance=0.05,
        lookup_margin=1.0,
        calibration={"features": zk.x},
        store=store,
    )
    keys = setup_keys(store, profile)
    (proof,) = prove_rows(store, profile, keys, {"features": zk.x}, [5], progress=False)
    return data, profile, keys, proof


class _RolledProbabilities:
    """``batch`` as a forgery reads it: its records, with the probabilities of ``rows``
    rolled by one class (the class after the receipted label gets the top probability)."""

    def __init__(self, batch, rows: set[int]) -> None:
        self._batch, self._rows = batch, rows

    def __getattr__(self, name: str):
        return getattr(self._batch, name)

    def records(self, index: int, **kwargs):
        rec = self._batch.records(index, **kwargs)
        probs = rec.outputs["probabilities"].copy()
        for i, row in enumerate(rec.row_index):
            if int(row) in self._rows:
                probs[i] = np.roll(probs[i], 1)
        return dataclasses.replace(rec, outputs={**rec.outputs, "probabilities": probs})


@pytest.fixture
def forge_zk_batch(forge_batch):
    """``forge_zk_batch(batch, bad_rows, attester)``: an honest-looking batch whose node
    signed, for ``bad_rows``, the next label AND probabilities rolled to match it, so its
    receipt is beyond the ZK profile's tolerance on a float output; hashes, roots and
    signature consistent. (The global ``forge_batch`` shifts only labels, which a proof
    leaves to the vote, spec §13.5.)"""

    def forge(batch, bad_rows: set[int], attester):
        return forge_batch(_RolledProbabilities(batch, set(bad_rows)), bad_rows, attester)

    return forge


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ZkWorld:
    def __init__(self, home: Path, zk, tabular_path: Path) -> None:
        self.zk = zk
        self.devnet = Devnet(home, port=_free_port())
        self.devnet.up()
        self.chain = self.devnet.client()
        self.journal = SettlementJournal(self.chain.chain_id, home)
        keys = KeyStore(home)
        names = ["owner", "enclave", "requester", "node", "v1", "v2", "v3", "challenger"]
        self.s = {n: keys.ensure_dev_key(n) for n in names}
        for signer in self.s.values():
            self.chain.fund(signer.address, eth=10**19, opg=100_000 * OPG)
        # The ZK profile's store holds the hub and the batches too, as for a node's CLI.
        self.home = home
        self.hub = Hub(zk.store, home=home)
        self.hub.publish(
            tabular_path, name="tabzk", version="1.0.0", price=10, signer=self.s["owner"]
        )
        self.manifest = self.hub.manifest("tabzk")
        self.enclave = make_attester("software", signer=self.s["enclave"])
        self.frame = make_tabular(64, seed=3)
        self.x = self.frame.select(TABULAR_FEATURES).to_numpy().astype(np.float32)
        first = self.batch("setup")
        prepare_dev_settlement(
            self.chain,
            deployer=self.chain.deployer,
            manifest=self.manifest,
            runtime_id=first.runtime_id,
            owner=self.s["owner"],
            node=self.s["node"],
            attester=self.s["enclave"],
            requester=self.s["requester"],
            verifiers=[self.s["v1"], self.s["v2"], self.s["v3"]],
        )
        # The model owner's ZK profile, its verifier, approved by the judge's governor.
        self.art = ensure_verifier(zk.store, zk.profile, zk.keys)
        self.verifier, self.verifier_gas = deploy_verifier(self.chain, self.s["owner"], self.art)
        register_profile(self.chain, self.s["owner"], zk.profile, zk.keys, self.verifier)
        approve_profile(
            self.chain,
            self.chain.deployer,
            zk.profile.model_id,
            self.s["owner"].address,
            zk.keys.keys_id,
            layout=layout_hash(zk.profile),
            verifier=self.verifier,
        )

    def batch(self, job: str, frame=None):
        return run_verified_inference(
            "tabzk",
            self.frame if frame is None else frame,
            attester=self.enclave,
            requester=self.s["requester"].address,
            hub=self.hub,
            domain=claim_domain(self.chain),
            job=job,
            progress=False,
        )

    def commit(self, batch) -> None:
        order = new_order(
            requester=self.s["requester"].address,
            model_id=batch.model_id,
            model_owner=self.manifest.owner,
            commitment=(batch.manifest.dataset_id, batch.row_count),
            job=batch.manifest.job,
            node=self.s["node"].address,
            max_price_per_row=10,
            chain_id=self.chain.chain_id,
            verifying_contract=claim_domain(self.chain).verifying_contract,
            now=self.chain.block_timestamp(),
        ).sign(self.s["requester"])
        record = settle(
            batch, self.chain, node=self.s["node"], order=order, journal=self.journal,
            finalize=False,
        )  # fmt: skip
        assert record.status == "pending"

    def evidence(self, batch, row: int, x=None) -> tuple[RowEvidence, list[str]]:
        """The row's receipt as the chain sees it: its canonical input bytes (from the
        requester's data ``x``, default the world's rows) and output bytes (the node's
        records), and its Merkle proof."""
        x = self.x if x is None else x
        receipt = batch.receipt(row)
        rec = batch.records(int(receipt["partition"]["index"]))
        i = int(list(rec.row_index).index(row))
        outs = {k: v[i] for k, v in rec.outputs.items()}
        values = receipt["leaf_values"]
        ev = RowEvidence(
            row=row,
            input_hash=bytes.fromhex(values["inputHash"][2:]),
            output_hash=bytes.fromhex(values["outputHash"][2:]),
            input_message=row_message(self.zk.profile.inputs, {"features": x[row]}),
            output_message=row_message(self.zk.profile.outputs, outs),
        )
        return ev, receipt["proof"]

    def dispute(self, batch, row: int, claimed: bytes) -> None:
        """A challenger opens a dispute on ``row`` claiming the output hash ``claimed``
        (commit, then reveal in a later block, with the bond): what a challenger that
        wants an honest row judged sends, whatever re-execution gives."""
        settlement = self.chain.contract("InferenceSettlement")
        found = onchain_batch(self.chain, batch.batch_id)
        receipt = batch.receipt(row)
        values = receipt["leaf_values"]
        salt, key = secrets.token_bytes(32), bytes.fromhex(batch.batch_id[2:])
        c = self.s["challenger"]
        ensure_allowance(self.chain, c, settlement.address, 10**24)
        commitment = self.chain.call(
            settlement.functions.challengeCommitment(c.address, key, row, claimed, salt)
        )
        self.chain.transact(settlement.functions.commitChallenge(commitment), c)
        self.chain.increase_time(1)  # the reveal must come in a later block
        self.chain.transact(
            settlement.functions.challenge(
                key,
                found.as_tuple,
                (row, bytes.fromhex(values["inputHash"][2:]),
                 bytes.fromhex(values["outputHash"][2:]), claimed, salt),
                [bytes.fromhex(p[2:]) for p in receipt["proof"]],
            ),
            c,
        )  # fmt: skip
        assert self.status(batch) == BatchStatus.DISPUTED

    def status(self, batch) -> BatchStatus:
        settlement = self.chain.contract("InferenceSettlement")
        key = bytes.fromhex(batch.batch_id[2:])
        return BatchStatus(self.chain.call(settlement.functions.stateOf(key))[0])


@pytest.fixture(scope="session")
def world(tmp_path_factory, zk, tabular_path):
    """A real anvil devnet with ogkit's contracts, the sample model published and staked
    for, and its ZK profile's verifier deployed, registered and approved (for the
    package's on-chain tests; each test reverts to a snapshot or uses its own job)."""
    home = tmp_path_factory.mktemp("zk-chain-home")
    w = ZkWorld(home, zk, tabular_path)
    try:
        yield w
    finally:
        w.devnet.down()
