"""Audit replay on a real (in-process) EVM: a clean audit, then each tampering found."""

from __future__ import annotations

from pathlib import Path

import pytest

from ogkit.attest import make_attester
from ogkit.audit import audit
from ogkit.chain.connection import connect
from ogkit.cli import main
from ogkit.hub import Hub
from ogkit.infer import run_verified_inference
from ogkit.keys import KeyStore
from ogkit.order import new_order
from ogkit.samples import make_tabular
from ogkit.settle import (
    SettlementJournal,
    attest_batch,
    challenge_row,
    claim_domain,
    prepare_dev_settlement,
    settle,
    vote_dispute,
)

OPG = 10**18


class World:
    """A chain with a registered model, a staked node and verifiers, and a requester."""

    def __init__(self, home: Path, hub):
        self.home, self.hub = home, hub
        self.chain = connect("embedded")
        self.journal = SettlementJournal(self.chain.chain_id, home)
        keys = KeyStore(home)
        names = ["owner", "enclave", "requester", "node", "v1", "v2", "v3", "challenger"]
        self.s = {n: keys.ensure_dev_key(n) for n in names}
        for signer in self.s.values():
            self.chain.fund(signer.address, eth=10**19, opg=100_000 * OPG)
        self.enclave = make_attester("software", signer=self.s["enclave"])
        self.manifest = hub.manifest("tab")
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

    def batch(self, job: str, rows: int = 600):
        return run_verified_inference(
            "tab",
            make_tabular(rows, seed=3),
            attester=self.enclave,
            requester=self.s["requester"].address,
            hub=self.hub,
            domain=claim_domain(self.chain),
            job=job,
            progress=False,
        )

    def order(self, batch, *, owner: str | None = None, price: int = 1000):
        """The requester's signed order for ``batch``, naming the node, paying ``owner``
        (default: the hub manifest's) at most ``price`` per row."""
        return new_order(
            requester=self.s["requester"].address,
            model_id=batch.model_id,
            model_owner=owner or self.manifest.owner,
            commitment=(batch.manifest.dataset_id, batch.row_count),
            job=batch.manifest.job,
            node=self.s["node"].address,
            max_price_per_row=price,
            chain_id=self.chain.chain_id,
            verifying_contract=claim_domain(self.chain).verifying_contract,
            now=self.chain.block_timestamp(),
        ).sign(self.s["requester"])

    def commit(self, batch, order=None):
        record = settle(
            batch,
            self.chain,
            node=self.s["node"],
            order=order or self.order(batch),
            journal=self.journal,
            finalize=False,
        )
        assert record.status == "pending"
        return record

    def settle_fully(self, batch, order=None):
        node, journal = self.s["node"], self.journal
        self.commit(batch, order)
        for v in ("v1", "v2", "v3"):
            attest_batch(self.chain, batch, passed=True, verifier=self.s[v], journal=journal)
        self.chain.increase_time(3601)
        assert settle(batch, self.chain, node=node, journal=journal).status == "finalized"
        return batch

    def audit(self, **kw):
        return audit(self.chain, self.hub.store, hub=self.hub, sample_rate=0.05, **kw)


@pytest.fixture(scope="module")
def module_world(tmp_path_factory, tabular_path):
    """One World for the module: its own home and hub (the sample tabular model as tab@1.0.0,
    as the ``published`` fixture has it), chain, keys, stakes and registered model."""
    home = tmp_path_factory.mktemp("audit-home")
    hub = Hub(home=home)
    owner = KeyStore(home).ensure_dev_key("owner")
    hub.publish(tabular_path, name="tab", version="1.0.0", price=1000, signer=owner)
    return World(home, hub)


@pytest.fixture
def world(module_world, home):
    """The module's World with its chain put back after each test (batches, prices and
    measurement changes of one test are gone for the next); ``home`` keeps the
    environment's OGKIT_HOME in a temporary folder, as for every test."""
    snapshot = module_world.chain.snapshot()
    yield module_world
    module_world.chain.revert(snapshot)


def _reasons(report, batch=None):
    """Reason -> severity of the findings (of ``batch``)."""
    f = report.findings
    if batch is not None:
        f = f.filter(f["batch_id"] == batch.batch_id)
    return dict(zip(f["reason"].to_list(), f["severity"].to_list(), strict=True))


def test_clean_audit_passes(world):
    a, b = world.settle_fully(world.batch("a")), world.settle_fully(world.batch("b"))
    report = world.audit()
    assert report.passed, report.findings
    # The requester signed the dataset commitment in its order: the inputs are bound to it,
    # so not even a notice is left.
    assert report.findings.is_empty(), report.findings
    assert all(v.inputs_bound for v in report.verdicts.values())
    assert set(report.batches["batch_id"].to_list()) == {a.batch_id, b.batch_id}
    row = report.batches.filter(report.batches["batch_id"] == a.batch_id).row(0, named=True)
    assert row["status"] == "finalized" and row["verdict"] == "pass"
    assert row["model_payment_opg"] == pytest.approx(1000 * 600 / OPG)
    assert row["gas"] > 0 and 10 <= row["sampled_rows"] <= 55  # each of 600 rows at q = 0.05
    only_a = world.audit(batch_ids=[a.batch_id])
    assert only_a.batches.height == 1 and only_a.to_dict()["schema"] == "ogkit.audit.v1"


def test_artifact_edited_after_settlement(world):
    batch = world.settle_fully(world.batch("edit"))
    path = Path(batch.store.path(batch.partitions[0].path))
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    report = world.audit()
    assert not report.passed
    assert _reasons(report, batch).get("verification-failed") == "fail"
    details = report.findings["detail"].to_list()
    assert any("artifact-altered" in d or "records" in d for d in details)
    assert any(r == "status-mismatch" for r in _reasons(report, batch))


def test_artifact_deleted(world):
    batch = world.settle_fully(world.batch("gone"))
    Path(batch.store.object_path("artifacts", batch.artifact_id)).unlink()
    report = world.audit()
    assert _reasons(report, batch) == {"artifact-missing": "fail"}
    assert report.batches.row(0, named=True)["verdict"] == "not run"


def _hostile(batch, **fields) -> str:
    """The node's own artefact for ``batch``: manifest fields replaced, stored under its
    own content id, claim and signature untouched (so the chain accepts its commit)."""
    from ogkit.batch import ARTIFACTS
    from ogkit.hub.manifest import canonical_json

    return batch.store.put(ARTIFACTS, canonical_json({**batch.manifest.to_dict(), **fields}))


@pytest.mark.parametrize(
    "fields",
    [
        {"row_count": 2**40},  # a hostile size: must not be allocated
        {"partitions": "not a list"},  # not even a manifest
    ],
    ids=["row-count-2^40", "partitions-not-a-list"],
)
def test_hostile_manifest_gives_a_report_with_a_finding(world, fields):
    from ogkit.batch import AttestedBatch

    honest = world.batch("hostile-" + next(iter(fields)))
    artifact_id = _hostile(honest, **fields)
    # The node commits the hostile artefact's id with its honest, signed claim.
    hostile = AttestedBatch(honest.manifest, artifact_id, honest.store)
    world.commit(hostile)
    report = world.audit()
    reasons = _reasons(report, honest)
    assert not report.passed
    assert reasons.get("verification-failed") == "fail" or reasons.get("artifact-malformed")
    assert report.batches.filter(report.batches["batch_id"] == honest.batch_id).height == 1


def test_payment_that_does_not_match_the_signed_price(world):
    from ogkit.errors import SettlementError

    registry = world.chain.contract("ModelRegistry")
    world.chain.transact(
        registry.functions.setPrice(bytes.fromhex(world.manifest.model_id[2:]), 5000),
        world.s["owner"],
    )
    # An order capped at the hub's signed price cannot be charged the raised one ...
    capped = world.batch("pricey")
    with pytest.raises(SettlementError, match="PriceAboveOrder"):
        world.commit(capped, world.order(capped, price=world.manifest.price_per_inference))
    # ... but a requester who signed a cap above it pays it, and the audit names the gap.
    batch = world.settle_fully(capped, world.order(capped, price=5000))
    report = world.audit()
    reasons = _reasons(report, batch)
    assert reasons == {"payment-mismatch": "fail"}
    assert "signed manifest says 1000" in report.findings["detail"][0]


def test_order_paying_another_owner_than_the_manifest_signer(world):
    """Registrations are keyed by (model, owner): anyone can register the same bytes under
    their own key, and an order naming that key pays it. The audit checks the ordered owner
    against the owner who signed the hub manifest."""
    from ogkit.settle import registration_typed_data

    squatter = KeyStore(world.home).ensure_dev_key("squatter")
    world.chain.fund(squatter.address, eth=10**19)
    m = world.manifest
    deadline = world.chain.block_timestamp() + 3600
    typed = registration_typed_data(
        world.chain, m.model_id, squatter.address, 1000, m.manifest_hash(), deadline
    )
    registry = world.chain.contract("ModelRegistry")
    world.chain.transact(
        registry.functions.registerModel(
            (
                bytes.fromhex(m.model_id[2:]),
                squatter.address,
                1000,
                bytes.fromhex(m.manifest_hash()[2:]),
                deadline,
                m.name,
                m.version,
                "",
            ),
            bytes.fromhex(squatter.sign_typed_data(typed)[2:]),
        ),
        squatter,
    )
    batch = world.batch("squatted")
    world.settle_fully(batch, world.order(batch, owner=squatter.address))
    report = world.audit()
    reasons = _reasons(report, batch)
    assert reasons == {"model-owner-mismatch": "fail"}
    detail = report.findings.filter(report.findings["reason"] == "model-owner-mismatch")
    assert squatter.address in detail["detail"][0]
    assert world.manifest.owner.lower() in detail["detail"][0]


def _register(world, signer, price: int, manifest_hash: str) -> None:
    """``signer``'s own ModelRegistry registration of the world's model bytes."""
    from ogkit.settle import registration_typed_data

    m = world.manifest
    deadline = world.chain.block_timestamp() + 3600
    typed = registration_typed_data(
        world.chain, m.model_id, signer.address, price, manifest_hash, deadline
    )
    registry = world.chain.contract("ModelRegistry")
    world.chain.transact(
        registry.functions.registerModel(
            (
                bytes.fromhex(m.model_id[2:]),
                signer.address,
                price,
                bytes.fromhex(manifest_hash[2:]),
                deadline,
                m.name,
                m.version,
                "",
            ),
            bytes.fromhex(signer.sign_typed_data(typed)[2:]),
        ),
        signer,
    )


def _republish(world, tabular_path, name: str, price: int, signer):
    """Someone publishes the world's model bytes again in the hub: another name, owner
    and price, validly signed (the hub is permissionless)."""
    copy = world.hub.publish(tabular_path, name=name, version="9.0.0", price=price, signer=signer)
    assert copy.model_id == world.manifest.model_id
    return copy


def test_republished_manifest_does_not_vouch_for_a_squatters_registration(world, tabular_path):
    """The squatter registers the owner's manifest (name, version, hash) under its own key
    and republishes the bytes under its own signed manifest. Some signed manifest of the
    model id is the squatter's, but not the one its registration names: that one is the
    owner's, so the order paid someone who did not sign it."""
    squatter = KeyStore(world.home).ensure_dev_key("squatter")
    world.chain.fund(squatter.address, eth=10**19)
    _republish(world, tabular_path, "tab-mirror", 1000, squatter)
    _register(world, squatter, 1000, world.manifest.manifest_hash())
    batch = world.batch("squatted-republished")
    world.settle_fully(batch, world.order(batch, owner=squatter.address))
    report = world.audit(batch_ids=[batch.batch_id])
    assert _reasons(report, batch) == {"model-owner-mismatch": "fail"}
    detail = report.findings["detail"][0]
    assert "tab@1.0.0" in detail and world.manifest.owner.lower() in detail


def test_squatter_paid_for_its_own_consistent_registration_is_what_the_order_signed(
    world, tabular_path
):
    """Registrations are keyed by (model, owner): a registration naming the payee's own
    signed manifest at the price charged is what the requester ordered and paid for."""
    squatter = KeyStore(world.home).ensure_dev_key("squatter")
    world.chain.fund(squatter.address, eth=10**19)
    own = _republish(world, tabular_path, "tab-own", 1000, squatter)
    _register(world, squatter, 1000, own.manifest_hash())
    batch = world.batch("own-registration")
    world.settle_fully(batch, world.order(batch, owner=squatter.address))
    report = world.audit(batch_ids=[batch.batch_id])
    assert report.passed and _reasons(report, batch) == {}, report.findings


def test_republished_price_does_not_cover_a_raised_price(world, tabular_path):
    """Someone republishes the model at 5,000 per row; the owner raises its on-chain price
    to 5,000 and a requester's cap allows it. The owner's registered manifest says 1,000:
    the republished price is nobody's agreement with this owner."""
    stranger = KeyStore(world.home).ensure_dev_key("stranger")
    _republish(world, tabular_path, "tab-premium", 5000, stranger)
    registry = world.chain.contract("ModelRegistry")
    world.chain.transact(
        registry.functions.setPrice(bytes.fromhex(world.manifest.model_id[2:]), 5000),
        world.s["owner"],
    )
    batch = world.batch("repriced")
    world.settle_fully(batch, world.order(batch, price=5000))
    report = world.audit(batch_ids=[batch.batch_id])
    assert _reasons(report, batch) == {"payment-mismatch": "fail"}
    assert "says 1000" in report.findings["detail"][0]


def test_artefact_that_is_not_what_the_chain_committed(world):
    """The node commits one batch's claim with another batch's artefact id: everything the
    chain recorded is compared with the artefact it points to."""
    from ogkit.batch import AttestedBatch

    other = world.settle_fully(world.batch("other"))
    honest = world.batch("swapped")
    swapped = AttestedBatch(honest.manifest, other.artifact_id, honest.store)
    world.commit(swapped)
    report = world.audit(batch_ids=[honest.batch_id])
    assert not report.passed
    assert _reasons(report, honest).get("commitment-mismatch") == "fail"
    details = report.findings.filter(report.findings["reason"] == "commitment-mismatch")[
        "detail"
    ].to_list()
    assert any(d.startswith("claim digest: chain has") for d in details), details
    # The same rows under another job give the same root (a leaf names no batch, docs/spec.md
    # §3.1): the claim digest and the job hash tell the batches apart.
    assert any(d.startswith("job hash: chain has") for d in details), details
    # The batch whose artefact it is audits clean.
    assert world.audit(batch_ids=[other.batch_id]).passed


def test_measurement_revoked_later_is_shown_not_failed(world):
    batch = world.settle_fully(world.batch("old"))
    registry = world.chain.contract("NodeRegistry")
    world.chain.transact(  # kind 0: revoke
        registry.functions.bootstrapMeasurement(bytes.fromhex(batch.runtime_id[2:]), 0),
        world.chain.deployer,
    )
    report = world.audit()
    assert report.passed
    assert _reasons(report, batch) == {"measurement-revoked-later": "notice"}


def test_slashed_batch_is_named_and_confirmed(world, forge_batch):
    honest = world.batch("fraud")
    forged = forge_batch(honest, {7, 8}, world.enclave)
    world.commit(forged)
    challenge_row(world.chain, forged, 7, challenger=world.s["challenger"])
    for v in ("v2", "v3"):  # 3,000 + 5,000 of 10,000 verifier stake: the 2/3 quorum
        vote_dispute(world.chain, forged.batch_id, upheld=True, verifier=world.s[v])
    assert settle(forged, world.chain, node=world.s["node"]).status == "slashed"
    report = world.audit()
    reasons = _reasons(report, forged)
    assert reasons["batch-slashed"] == "fail"
    assert "status-mismatch" not in reasons
    slashed = report.findings.filter(report.findings["reason"] == "batch-slashed").row(
        0, named=True
    )
    assert slashed["row_index"] == 7 and "confirms the wrong output" in slashed["detail"]
    row = report.batches.row(0, named=True)
    assert row["status"] == "slashed" and row["slashed_opg"] > 0


def test_audit_cli_json_on_the_devnet_is_covered_elsewhere(world, capsys):
    # The embedded chain lives in this process only, so the CLI is exercised against the
    # devnet in tests/chain/test_cli_chain.py; here: a bad chain name is one clear line.
    assert main(["audit", "--chain", "nowhere"]) == 1
    assert "unknown chain" in capsys.readouterr().err


def test_chain_derived_policy_pairs_the_bound_attester_and_times_evidence_at_the_commit(world):
    """What a verifier daemon verifies a committed batch with: the one pair the registry
    bound (the node's attester with the measurement the commit was checked against) and
    the commit's block time for hardware evidence, not the claim's timestamp."""
    from ogkit.chain.records import onchain_batch
    from ogkit.network.verifier import VerifierConfig, verify_task

    batch = world.batch("daemon-policy")
    world.commit(batch)
    found = onchain_batch(world.chain, batch.batch_id)
    policy, _ = verify_task(world.chain, batch, found, b"s" * 32, VerifierConfig(), world.hub)
    assert policy.trusted_time == int(found.record["committedAt"]) > 0
    assert policy.allowlist.pairs == {(world.s["enclave"].address.lower(), batch.runtime_id)}


def test_plain_key_bound_to_a_tee_measurement_does_not_pass_without_hardware(world):
    """A binding to a TEE measurement is proved by the attester's key alone, and the
    contract leaves the runtime id of such a binding to the artefact's evidence. The node
    binds its plain (software) key to an approved TDX measurement and commits a batch whose
    evidence is the software enclave's: the chain takes it, and it must not pass as if the
    TEE had attested it, neither in the audit nor for a verifier daemon."""
    from ogkit.chain.records import onchain_batch
    from ogkit.dataset import DatasetCommitment
    from ogkit.network.verifier import VerifierConfig, verify_task
    from ogkit.settle import bootstrap_measurement, ensure_staked
    from ogkit.verify import verify_batch

    tdx = "0x" + "7d" * 32  # an approved TDX image's measurement hash
    assert bootstrap_measurement(world.chain, world.chain.deployer, tdx, kind=2)
    ensure_staked(
        world.chain, world.s["node"], role=1, stake=0, attester=world.s["enclave"], measurement=tdx
    )
    batch = world.batch("no-hardware")
    assert batch.manifest.attester["kind"] == "software-enclave"
    world.settle_fully(batch)  # the chain commits and finalises it
    report = world.audit(batch_ids=[batch.batch_id])
    assert not report.passed
    details = report.findings.filter(report.findings["reason"] == "verification-failed")
    assert any(d.startswith("tee-required:") and tdx in d for d in details["detail"])
    found = onchain_batch(world.chain, batch.batch_id)
    policy, _ = verify_task(world.chain, batch, found, b"s" * 32, VerifierConfig(), world.hub)
    ordered = DatasetCommitment(found.details["datasetId"], int(found.record["rowCount"]))
    verdict = verify_batch(batch, policy, hub=world.hub, commitment=ordered, progress=False)
    assert verdict.reasons() == {"tee-required": 1}
