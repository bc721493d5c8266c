"""Attacks on the receipt layout v4, the fused pipeline's run-key staging, allowlist v2
pairs and the lockstep keccak kernel.

The attackers: a node holding its own approved key that writes its records, manifest
and the store it shares; a party that shares the store with an honest node (another
node of the same operator's cluster, a requester who wants the honest node slashed);
a caller handing the hashing kernels odd arrays. Each test is an attack that must keep
failing (a hole still open would be a strict xfail naming what the attacker gains).
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from Crypto.Hash import keccak as pycryptodome_keccak

from ogkit.attest import BatchClaim, attest_partition, make_attester
from ogkit.batch import ARTIFACTS, load_batch, records_to_parquet
from ogkit.crypto import keccak as kmod
from ogkit.crypto.encoding import tensor_row_hashes
from ogkit.crypto.merkle import (
    INPUT_LEAF_TAG,
    MerkleTree,
    leaf_hash,
    leaf_hashes,
)
from ogkit.errors import ConfigError
from ogkit.hub import Hub
from ogkit.hub.manifest import canonical_json
from ogkit.infer import run_verified_inference
from ogkit.keys import KeyStore
from ogkit.samples import make_tabular, sample_model_path
from ogkit.store import ContentStore
from ogkit.verify import Allowlist, VerifyPolicy, verify_batch

REPO = Path(__file__).resolve().parents[2]


def _ref(data: bytes) -> bytes:
    """keccak256 from pycryptodome's C code (not the library ogkit's single hash uses)."""
    return pycryptodome_keccak.new(digest_bits=256, data=bytes(data)).digest()


# ======================================================================================
# Run-key staging shared with someone else
# ======================================================================================


class World:
    """A hub with tab published, an honest enclave key, a second node's key and a
    requester, all in one home; the requester's 2100-row file."""

    def __init__(self, root: Path) -> None:
        self.home = root / "home"
        keys = KeyStore(self.home)
        owner = keys.ensure_dev_key("owner")
        self.hub = Hub(ContentStore(str(self.home / "hubstore")), home=self.home)
        self.hub.publish(
            sample_model_path("tabular"), name="tab", version="1.0.0", price=1000, signer=owner
        )
        self.honest = make_attester("software", signer=keys.ensure_dev_key("enclave"))
        self.other = make_attester("software", signer=keys.ensure_dev_key("other-node"))
        self.requester = keys.ensure_dev_key("requester").address
        self.data = root / "rows.parquet"
        make_tabular(2100, seed=11).write_parquet(self.data)
        self.root = root
        self._n = 0

    def store(self) -> ContentStore:
        self._n += 1
        return ContentStore(str(self.root / f"store-{self._n}"))

    def run(self, store: ContentStore, attester=None, job: str = "default"):
        return run_verified_inference(
            "tab",
            self.data,
            attester=attester or self.honest,
            requester=self.requester,
            hub=self.hub,
            store=store,
            partition_rows=700,
            job=job,
            progress=False,
        )


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return World(tmp_path_factory.mktemp("redteam-today"))


@pytest.fixture(scope="module")
def clean(world: World):
    """The honest node's batch in a store nobody else writes, and its run key (every
    input of the run key is public: model, runtime, data fingerprint, requester, domain,
    job, execution — whoever holds the requester's file computes it)."""
    store = world.store()
    batch = world.run(store)
    runs = [p.name for p in (Path(store.root) / "batches").iterdir() if p.name.startswith("run-")]
    assert len(runs) == 1
    return batch, runs[0]


def _plant_partition(store: ContentStore, run_key: str, batch, index: int) -> None:
    """Write a finished-looking partition into the run's staging folder: the honest
    records of ``index`` with every label shifted, leaves and root recomputed, sha256
    pinned in the meta (all the meta's checks are against the planter's own file)."""
    rec = batch.records(index, inputs=False)
    outputs = {k: v.copy() for k, v in rec.outputs.items()}
    outputs["label"] = (outputs["label"] + 1) % 3
    part = batch.partitions[index]
    att = attest_partition(
        offset=part.offset, feeds={}, outputs=outputs, input_hashes=rec.input_hashes
    )
    data = records_to_parquet(att, outputs)
    where = f"batches/{run_key}/part-{index:05d}.parquet"
    store.write_bytes(where, data)
    meta = {
        "index": index,
        "offset": part.offset,
        "rows": part.rows,
        "root": "0x" + att.root.hex(),
        "path": where,
        "sha256": hashlib.sha256(data).hexdigest(),
        "seconds": {"read": 0.0, "commit": 0.0, "infer": 0.0, "attest": 0.0, "write": 0.0},
        "worker": "planted:1",
        "output_shapes": {k: list(v.shape[1:]) for k, v in outputs.items()},
    }
    store.write_bytes(f"batches/{run_key}/part-{index:05d}.json", json.dumps(meta).encode())


def test_planted_staged_partition_is_not_signed_by_the_honest_node(world: World, clean):
    """Whoever shares the store writes part-00001 (labels shifted, leaves and root
    recomputed over the true input hashes, so the input root and batch id are the honest
    ones) under the run key before the honest node runs the job. Were the node's first
    run to 'resume' it, it would sign it with its own key and re-execution would convict
    the node: the run must compute the partition itself."""
    honest_batch, run_key = clean
    store = world.store()
    _plant_partition(store, run_key, honest_batch, 1)
    batch = world.run(store)
    assert batch.batch_id == honest_batch.batch_id  # the job the requester ordered
    assert batch.manifest.claim.attester.lower() == world.honest.address.lower()
    # What the requester's verifier finds: re-execution convicts the honest key.
    policy = VerifyPolicy(
        sample_rate=1.0,
        allowlist=Allowlist().approve(world.honest.address, [batch.runtime_id]),
    )
    verdict = verify_batch(
        batch.artifact_id, policy, store=store, hub=world.hub, dataset=world.data, progress=False
    )
    assert verdict.passed, sorted({f.reason for f in verdict.findings})
    # The honest node's own batch must be what it computed: the clean run's root.
    assert batch.batch_root == honest_batch.batch_root


def test_planted_partition_with_other_rows_is_refused(world: World, clean):
    """Held: a planted partition whose records hold other row indices than its slot's
    is refused when the input root is rebuilt (records_input_leaves checks the range),
    or ignored and run again; never signed."""
    honest_batch, run_key = clean
    store = world.store()
    _plant_partition(store, run_key, honest_batch, 0)
    # move the planted meta to slot 1: its records hold rows 0..699, slot 1 is 700..1399
    meta = json.loads(store.read_bytes(f"batches/{run_key}/part-00000.json"))
    store.remove(f"batches/{run_key}/part-00000.json")
    meta.update(index=1, offset=700)
    store.write_bytes(f"batches/{run_key}/part-00001.json", json.dumps(meta).encode())
    _refused_or_clean(world, store, honest_batch, "records must hold rows 700")


def _refused_or_clean(world: World, store: ContentStore, clean_batch, match: str) -> None:
    """The run over a poisoned store either stops with ogkit's own error (matching
    ``match``) or ignores the poison and gives the clean run's batch root."""
    from ogkit.errors import OgkitError

    try:
        batch = world.run(store)
    except OgkitError as exc:
        assert match in str(exc), exc
        return
    assert batch.batch_root == clean_batch.batch_root
    assert batch.manifest.claim.attester.lower() == world.honest.address.lower()


def test_staged_meta_cannot_move_another_batchs_records(world: World, clean):
    """A victim batch of the same rows under another job (v4 leaves name no job, so its
    records are byte for byte what this job needs) sits in the shared store. The planter
    writes a meta for part-00000 under this job's run key naming the victim's records
    file and its sha256. Adopting it would ``store.move`` the victim's file into this
    batch's folder and the victim's artefact would lose partition 0."""
    _, run_key = clean
    store = world.store()
    victim = world.run(store, job="victim-job")
    part = victim.partitions[0]
    meta = {
        "index": 0,
        "offset": part.offset,
        "rows": part.rows,
        "root": part.root,
        "path": part.path,
        "sha256": part.sha256,
        "seconds": {"read": 0.0, "commit": 0.0, "infer": 0.0, "attest": 0.0, "write": 0.0},
        "worker": "planted:1",
        "output_shapes": {"label": [], "probabilities": [3]},
    }
    store.write_bytes(f"batches/{run_key}/part-00000.json", json.dumps(meta).encode())
    world.run(store)
    # the victim's own records are where its signed manifest says
    load_batch(victim.artifact_id, store).partition_bytes(0)


def test_rerun_returns_only_an_artefact_this_attester_signed(world: World):
    """Two nodes share one store (or one plants the pointer): the other node runs the
    requester's job first with its own key. The honest node's run of the same job must
    not return the other node's artefact (a claim it did not sign) as its own work."""
    store = world.store()
    first = world.run(store, attester=world.other)
    assert first.manifest.claim.attester.lower() == world.other.address.lower()
    mine = world.run(store)
    assert mine.manifest.claim.attester.lower() == world.honest.address.lower()


def test_rerun_does_not_return_a_planted_forged_artefact(world: World, clean, forge_batch):
    """The honest node's batch is in the shared store. The planter stores a forged
    artefact (a batch of the planter's own job with every seventh row of partition 0
    given a shifted label, signed by the planter's own key) and overwrites
    ``batches/<batch id>/ARTIFACT`` with its id. The honest node's rerun must not
    return the forged artefact as its result."""
    store = world.store()
    honest = world.run(store)
    planter = world.run(store, attester=world.other, job="planter-job")
    forged = forge_batch(planter, set(range(0, 700, 7)), world.other)
    store.write_bytes(f"batches/{honest.batch_id}/ARTIFACT", forged.artifact_id.encode())
    again = world.run(store)
    # Its own work: the honest artefact again, or a fresh one of the same batch it signs.
    assert again.artifact_id != forged.artifact_id
    assert again.batch_id == honest.batch_id and again.batch_root == honest.batch_root
    assert again.manifest.claim.attester.lower() == world.honest.address.lower()


def test_rerun_of_a_finished_batch_ignores_a_corrupted_pointer(world: World):
    """Held: a BATCH pointer naming garbage (another batch id, or not an id at all) is
    caught with a message that names the folder to delete, or ignored; never a crash,
    never another batch."""
    store = world.store()
    honest = world.run(store)
    run_dir = next(p for p in (Path(store.root) / "batches").iterdir() if p.name.startswith("run-"))
    for garbage in ("0x" + "ab" * 32, "../../etc", "\x00" * 70):
        run_dir.mkdir(parents=True, exist_ok=True)  # a run may have tidied it away
        (run_dir / "BATCH").write_text(garbage)
        _refused_or_clean(world, store, honest, "delete that folder")


def test_half_moved_batch_resumes_to_the_same_root(world: World, clean):
    """Held: a run killed mid-move (partition 0 moved with its meta, partitions 1 and 2
    still staged, no ARTIFACT yet) resumes from both folders to the clean root."""
    honest_batch, run_key = clean
    store = world.store()
    first = world.run(store)
    batch_dir = Path(store.root) / "batches" / first.batch_id
    run_dir = Path(store.root) / "batches" / run_key
    (batch_dir / "ARTIFACT").unlink()
    for i in (1, 2):
        meta = json.loads((batch_dir / f"part-{i:05d}.json").read_text())
        (batch_dir / f"part-{i:05d}.json").unlink()
        (batch_dir / f"part-{i:05d}.parquet").rename(run_dir / f"part-{i:05d}.parquet")
        meta["path"] = f"batches/{run_key}/part-{i:05d}.parquet"
        (run_dir / f"part-{i:05d}.json").write_text(json.dumps(meta))
    again = world.run(store)
    assert again.manifest.run_stats["resumed_partitions"] == 3
    assert again.batch_root == honest_batch.batch_root
    for p in again.partitions:
        assert p.path == f"batches/{again.batch_id}/part-{p.index:05d}.parquet"
        again.partition_bytes(p.index)


# ======================================================================================
# Layout v4: one leaf per row index, cross-tree messages
# ======================================================================================


def test_two_leaves_for_one_row_index_fail_verification(world: World, clean):
    """Held: a node puts two leaves for row 3 into partition 0 (the true one and one
    with another output), dropping row 4 to keep the count: records tiling and the
    leaf/row check catch it at rate 0 (no re-execution needed)."""
    honest_batch, _ = clean
    store = world.store()
    for kind in ("artifacts", "models", "datasets"):
        src = Path(honest_batch.store.root) / kind
        if src.exists():
            shutil.copytree(src, Path(store.root) / kind)
    m = honest_batch.manifest.to_dict()
    rec = honest_batch.records(0, inputs=False)
    rows = rec.row_index.astype(np.uint64).copy()
    rows[4] = 3
    outputs = {k: v.copy() for k, v in rec.outputs.items()}
    outputs["label"][4] = (outputs["label"][3] + 1) % 3
    out_hashes = rec.output_hashes.copy()
    out_hashes[4] = tensor_row_hashes({k: v[4:5] for k, v in outputs.items()})[0]
    in_hashes = rec.input_hashes.copy()
    in_hashes[4] = in_hashes[3]
    leaves = leaf_hashes(rows, in_hashes, out_hashes)
    table = pq.read_table(io.BytesIO(honest_batch.partition_bytes(0)))

    def col(arr):
        return pa.FixedSizeBinaryArray.from_buffers(
            pa.binary(32), len(arr), [None, pa.py_buffer(np.ascontiguousarray(arr).tobytes())]
        )

    # Records name no row (spec §6): the forged leaf (row 4 hashed as row 3) is only in
    # the pinned root; the file holds the hashes and the forged output.
    for name, value in (
        ("input_hash", col(in_hashes)),
        ("output_hash", col(out_hashes)),
        ("output.label", pa.array(outputs["label"])),
    ):
        table = table.set_column(table.schema.get_field_index(name), name, value)
    sink = io.BytesIO()
    pq.write_table(table, sink)
    data = sink.getvalue()
    path = f"batches/{m['batch_id']}/dup-part-00000.parquet"
    store.write_bytes(path, data)
    part = m["partitions"][0]
    part.update(path=path, sha256=hashlib.sha256(data).hexdigest())
    part["root"] = "0x" + MerkleTree.from_leaf_hashes(leaves).root.hex()
    for p in m["partitions"][1:]:
        store.write_bytes(p["path"], honest_batch.partition_bytes(p["index"]))
    roots = np.array([list(bytes.fromhex(p["root"][2:])) for p in m["partitions"]], np.uint8)
    m["batch_root"] = "0x" + MerkleTree.from_leaf_hashes(roots).root.hex()
    claim = BatchClaim.from_dict({**m["claim"], "batch_root": m["batch_root"]})
    m["claim"] = claim.to_dict()
    m["signature"] = world.honest.sign_claim(claim, honest_batch.domain)
    artifact = store.put(ARTIFACTS, canonical_json(m))
    policy = VerifyPolicy(
        sample_rate=0.0,
        allowlist=Allowlist().approve(world.honest.address, [honest_batch.runtime_id]),
    )
    verdict = verify_batch(artifact, policy, store=store, hub=world.hub, progress=False)
    assert not verdict.passed
    reasons = {f.reason for f in verdict.findings}
    assert {"partition-root-mismatch", "input-hash-mismatch"} <= reasons, reasons


# ======================================================================================
# Allowlist v2 files
# ======================================================================================

ZERO = "0x" + "00" * 20


def _write_allowlist(path: Path, approvals: list[dict], **extra) -> Path:
    path.write_text(json.dumps({"schema": "ogkit.allowlist.v2", "approvals": approvals, **extra}))
    return path


def test_allowlist_casing_and_duplicates_collapse_to_one_pair(tmp_path: Path):
    """Held: mixed-case (EIP-55 and upper) addresses and measurements, and the same pair
    twice, load as one lower-case pair; lookups are case-blind; nothing else approved."""
    a = "0xAbCdEf0123456789aBcDeF0123456789AbCdEf01"
    m = "0x" + "Ab" * 32
    path = _write_allowlist(
        tmp_path / "allowlist.json",
        [
            {"attester": a, "measurement": m},
            {"attester": a.lower(), "measurement": m.upper().replace("0X", "0x")},
            {"attester": a.upper().replace("0X", "0x"), "measurement": m.lower()},
        ],
    )
    allow = Allowlist.load(path)
    assert allow.pairs == frozenset({(a.lower(), m.lower())})
    assert allow.approves(a.upper().replace("0X", "0x"), m)
    assert not allow.approves(a, "0x" + "ab" * 31 + "ac")


@pytest.mark.parametrize(
    "approval",
    [
        {"attester": " 0x" + "11" * 20, "measurement": "0x" + "22" * 32},  # padded
        {"attester": "0x" + "11" * 20, "measurement": "0x" + "22" * 31},  # short
        {"attester": ["0x" + "11" * 20], "measurement": "0x" + "22" * 32},  # a list
        {"attester": "0x" + "11" * 20},  # no measurement
    ],
)
def test_malformed_allowlist_entries_are_refused_with_the_fix(tmp_path: Path, approval: dict):
    """Held: an entry that is not an address/measurement pair refuses the whole file
    (a ConfigError naming the command that writes a good one), never a partial list."""
    path = _write_allowlist(tmp_path / "allowlist.json", [approval])
    with pytest.raises(ConfigError, match="ogkit allowlist add"):
        Allowlist.load(path)


def test_allowlist_refuses_the_zero_address(tmp_path: Path):
    """An approval for 0x000…0 is meaningless (no key has it) and is what a failed
    ecrecover returns: every path that compares a recovered signer with the allowlist
    (on chain or off) would then accept a broken signature. The file should be refused."""
    path = _write_allowlist(
        tmp_path / "allowlist.json", [{"attester": ZERO, "measurement": "0x" + "22" * 32}]
    )
    with pytest.raises(ConfigError):
        Allowlist.load(path)


def test_allowlist_with_a_duplicate_json_key_is_read_as_the_last_value(tmp_path: Path):
    """Held as documented behaviour of a local file the verifier writes itself: a
    duplicate ``schema`` key with a v1 value first does not smuggle a flat list in."""
    path = tmp_path / "allowlist.json"
    path.write_text(
        '{"schema": "ogkit.allowlist.v1", "schema": "ogkit.allowlist.v2", "approvals": []}'
    )
    assert Allowlist.load(path).pairs == frozenset()
    path.write_text('{"schema": "ogkit.allowlist.v2", "approvals": [], "attesters": ["0x"]}')
    with pytest.raises(ConfigError, match=r"flat ogkit\.allowlist\.v1"):
        Allowlist.load(path)


# ======================================================================================
# The keccak kernel against the C library
# ======================================================================================

EDGE_LENGTHS = [0, 1, 31, 32, 64, 96, 135, 136, 137, 271, 272, 273, 408]


@pytest.mark.parametrize("n", [1, 7, 9, 17])
def test_rows_edge_lengths_and_layouts_match_the_c_library(n: int):
    """Held: every sponge-block edge, n not a multiple of 8, read-only, strided and
    Fortran-ordered inputs all give pycryptodome's digests."""
    rng = np.random.default_rng(n)
    for length in EDGE_LENGTHS:
        m = rng.integers(0, 256, (n, length), dtype=np.uint8)
        ro = m.copy()
        ro.flags.writeable = False
        for arr in (m, ro, np.repeat(m, 2, axis=0)[::2], np.asfortranarray(m)):
            out = kmod.keccak256_rows(arr)
            assert [r.tobytes() for r in out] == [_ref(r.tobytes()) for r in arr], length
        twice = kmod.keccak256_rows_twice(ro)
        assert [r.tobytes() for r in twice] == [_ref(_ref(r.tobytes())) for r in m]


def test_words_from_strided_and_read_only_columns_match_abi_encoding():
    """Held: keccak256_words over a strided row index, strided and read-only hash
    columns and a constant tag equals keccak256 of the abi-encoded 128 bytes."""
    rng = np.random.default_rng(4)
    for n in (1, 3, 8, 9, 13):
        idx = rng.integers(0, 2**63, 2 * n).astype(np.uint64)[::2]
        a = rng.integers(0, 256, (2 * n, 32), dtype=np.uint8)[::2]
        b = rng.integers(0, 256, (n, 64), dtype=np.uint8)[:, 16:48]
        c = np.ascontiguousarray(b)
        c.flags.writeable = False
        out = kmod.keccak256_words([INPUT_LEAF_TAG, idx, a, c])
        for i in range(n):
            msg = INPUT_LEAF_TAG + int(idx[i]).to_bytes(32, "big") + a[i].tobytes() + c[i].tobytes()
            assert out[i].tobytes() == _ref(msg)
        # the row leaf the pipeline hashes: (rowIndex, inputHash, outputHash)
        leaves = leaf_hashes(idx, a, b)
        for i in range(n):
            assert leaves[i].tobytes() == leaf_hash(int(idx[i]), a[i].tobytes(), b[i].tobytes())


def test_row_index_beyond_uint64_cannot_alias_a_small_one():
    """Held: the reference leaf hashes the full uint256 (2^64 + r never hashes like r);
    the vectorised leaf refuses an index column it would have to wrap into uint64
    (object or negative values) instead of aliasing it to a small row."""
    assert leaf_hash(2**64 + 5, b"\x01" * 32, b"\x02" * 32) != leaf_hash(
        5, b"\x01" * 32, b"\x02" * 32
    )
    with pytest.raises((ConfigError, OverflowError, TypeError, ValueError)):
        leaf_hashes(
            np.array([2**64 + 5], dtype=object),
            np.ones((1, 32), np.uint8),
            np.ones((1, 32), np.uint8),
        )
    with pytest.raises(ConfigError):
        leaf_hashes(
            np.array([-1], dtype=np.int64), np.ones((1, 32), np.uint8), np.ones((1, 32), np.uint8)
        )


def test_concurrent_threads_on_every_kernel_agree_with_the_c_library():
    """Held: rows, twice, sorted pairs and words kernels called from 6 threads at once
    (the first call of each loads numba lazily, under its lock) give the C digests."""
    rng = np.random.default_rng(8)
    msgs = [rng.integers(0, 256, (37, 137), dtype=np.uint8) for _ in range(6)]
    pairs = [rng.integers(0, 256, (29, 64), dtype=np.uint8) for _ in range(6)]
    hashes = [rng.integers(0, 256, (23, 32), dtype=np.uint8) for _ in range(6)]
    errors: list[str] = []
    barrier = threading.Barrier(6)

    def work(k: int) -> None:
        barrier.wait()
        for _ in range(5):
            got = kmod.keccak256_rows(msgs[k])
            if [r.tobytes() for r in got] != [_ref(r.tobytes()) for r in msgs[k]]:
                errors.append(f"rows {k}")
            got = kmod.keccak256_sorted_pairs(pairs[k])
            for i, p in enumerate(pairs[k]):
                x, y = p[:32].tobytes(), p[32:].tobytes()
                if got[i].tobytes() != _ref(min(x, y) + max(x, y)):
                    errors.append(f"pairs {k}")
            rows = np.arange(23, dtype=np.uint64) + k
            got = kmod.keccak256_words([INPUT_LEAF_TAG, rows, hashes[k]])
            for i in range(23):
                msg = INPUT_LEAF_TAG + int(rows[i]).to_bytes(32, "big") + hashes[k][i].tobytes()
                if got[i].tobytes() != _ref(msg):
                    errors.append(f"words {k}")

    threads = [threading.Thread(target=work, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:5]


_OUT_PROBE = """
import numpy as np
from ogkit.crypto.keccak import keccak256_sorted_pairs
from ogkit.errors import ConfigError
pairs = np.random.default_rng(1).integers(0, 256, (5000, 64), dtype=np.uint8)
bad = {kind!r}
out = {{
    "short": np.zeros((5000, 16), np.uint8),
    "few": np.zeros((1, 32), np.uint8),
    "strided": np.zeros((5000, 64), np.uint8)[:, ::2],
}}[bad]
try:
    keccak256_sorted_pairs(pairs, out=out)
except ConfigError:
    print("REFUSED")
else:
    print("WROTE")
"""


@pytest.mark.parametrize("kind", ["short", "few", "strided"])
def test_sorted_pairs_refuses_an_out_buffer_it_cannot_fill(kind: str):
    """An exported hashing function handed a wrong ``out`` must refuse it (ConfigError),
    not write 32 bytes a row past a smaller buffer or raise numba's own ValueError on a
    strided one. Run in a child process: an unchecked short buffer corrupts the heap
    (the process aborts in free())."""
    proc = subprocess.run(
        [sys.executable, "-c", _OUT_PROBE.format(kind=kind)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "REFUSED", (
        proc.returncode,
        proc.stdout[-200:],
        proc.stderr[-300:],
    )


def test_staged_meta_path_cannot_leave_the_store(world: World, clean):
    """The planter's meta names ``../<other store>/batches/<id>/part-00000.parquet``: a
    batch of the same rows in a sibling store (another tenant's). Following it, the
    honest run would move that file across stores and the other batch lose its records."""
    _, run_key = clean
    other = world.store()
    victim = world.run(other, job="tenant-job")
    store = world.store()
    part = victim.partitions[0]
    outside = f"../{Path(other.root).name}/{part.path}"
    meta = {
        "index": 0,
        "offset": part.offset,
        "rows": part.rows,
        "root": part.root,
        "path": outside,
        "sha256": part.sha256,
        "seconds": {"read": 0.0, "commit": 0.0, "infer": 0.0, "attest": 0.0, "write": 0.0},
        "worker": "planted:1",
        "output_shapes": {"label": [], "probabilities": [3]},
    }
    store.write_bytes(f"batches/{run_key}/part-00000.json", json.dumps(meta).encode())
    assert store.read_bytes(outside) == other.read_bytes(part.path)  # the join escapes
    world.run(store)
    load_batch(victim.artifact_id, other).partition_bytes(0)


def test_staged_meta_root_is_the_root_of_its_records(world: World, clean):
    """The planter copies the honest node's own partition 2 records into the run folder
    (so the sha256 and rows are right) and writes a meta with another root. Trusting
    the meta's root, the run would sign a batch root that is not the records' and fail
    every verification under the honest key."""
    honest_batch, run_key = clean
    store = world.store()
    part = honest_batch.partitions[2]
    data = honest_batch.partition_bytes(2)
    where = f"batches/{run_key}/part-00002.parquet"
    store.write_bytes(where, data)
    meta = {
        "index": 2,
        "offset": part.offset,
        "rows": part.rows,
        "root": "0x" + "5a" * 32,
        "path": where,
        "sha256": hashlib.sha256(data).hexdigest(),
        "seconds": {"read": 0.0, "commit": 0.0, "infer": 0.0, "attest": 0.0, "write": 0.0},
        "worker": "planted:1",
        "output_shapes": {"label": [], "probabilities": [3]},
    }
    store.write_bytes(f"batches/{run_key}/part-00002.json", json.dumps(meta).encode())
    batch = world.run(store)
    assert batch.batch_root == honest_batch.batch_root


def test_staged_meta_at_another_slots_offset_does_not_sign_a_broken_batch(world: World, clean):
    """Refused or recomputed, never signed: the planter copies partition 0's records to slot
    1 with a meta that keeps offset 0 (so the records' row range matches the meta). The
    run must either recompute slot 1 or stop, not sign a batch whose partitions overlap
    (rows 0..699 twice, 700..1399 never), which fails tiling under the honest key, over
    an input root of data nobody committed to."""
    honest_batch, run_key = clean
    store = world.store()
    part = honest_batch.partitions[0]
    data = honest_batch.partition_bytes(0)
    where = f"batches/{run_key}/part-00001.parquet"
    store.write_bytes(where, data)
    meta = {
        "index": 1,
        "offset": part.offset,
        "rows": part.rows,
        "root": part.root,
        "path": where,
        "sha256": hashlib.sha256(data).hexdigest(),
        "seconds": {"read": 0.0, "commit": 0.0, "infer": 0.0, "attest": 0.0, "write": 0.0},
        "worker": "planted:1",
        "output_shapes": {"label": [], "probabilities": [3]},
    }
    store.write_bytes(f"batches/{run_key}/part-00001.json", json.dumps(meta).encode())
    try:
        batch = world.run(store)
    except Exception as exc:  # refused: fine, as long as it is ogkit's own error
        from ogkit.errors import OgkitError

        assert isinstance(exc, OgkitError), repr(exc)
        return
    assert batch.batch_root == honest_batch.batch_root


def _simple_merkle_root(leaves: list[bytes]) -> bytes:
    """OZ SimpleMerkleTree.of(leaves) (sortLeaves: true), written out plainly: a stable
    sort of the 32-byte leaves, the 2n - 1 node array, hashPair up to index 0."""
    ordered = sorted(leaves)  # Python's sort is stable, like JS Array.sort
    n = len(ordered)
    nodes: list[bytes] = [b""] * (2 * n - 1)
    for k, leaf in enumerate(ordered):
        nodes[2 * n - 2 - k] = leaf
    for i in range(n - 2, -1, -1):
        a, b = nodes[2 * i + 1], nodes[2 * i + 2]
        nodes[i] = _ref(min(a, b) + max(a, b))
    return nodes[0]


@pytest.mark.parametrize("n", [1, 2, 3, 8, 9, 33])
def test_tree_with_first_word_ties_and_duplicate_leaves_is_oz_layout(n: int):
    """Held: the quicksort fast path of the leaf order falls back to the full 32-byte
    stable sort on a first-word tie. Leaves sharing their first 8 bytes, leaves equal in
    full (a node listing one row twice) and plain ones give the OZ root, and a proof for
    every leaf (by index and by hash) verifies."""
    from ogkit.crypto.merkle import verify_proof

    rng = np.random.default_rng(n)
    leaves = rng.integers(0, 256, (n, 32), dtype=np.uint8)
    if n >= 2:
        leaves[1, :8] = leaves[0, :8]  # first-word tie, later bytes decide
    if n >= 3:
        leaves[2] = leaves[0]  # a full duplicate
    tree = MerkleTree.from_leaf_hashes(leaves)
    assert tree.root == _simple_merkle_root([r.tobytes() for r in leaves])
    for i in range(n):
        assert verify_proof(tree.root, leaves[i].tobytes(), tree.proof(i))
        proof = tree.proof_for_leaf(leaves[i].tobytes())
        assert verify_proof(tree.root, leaves[i].tobytes(), proof)
    nodes, lengths = tree.proofs_array(np.arange(n))
    for i in range(n):
        got = [nodes[i, k].tobytes() for k in range(int(lengths[i]))]
        assert got == tree.proof(i)


_LAZY_PROBE = """
import threading
import numpy as np
from Crypto.Hash import keccak
import ogkit.crypto.keccak as k
assert "numba" not in __import__("sys").modules  # nothing hashed yet: not loaded
rng = np.random.default_rng(2)
jobs = [rng.integers(0, 256, (19, 137), dtype=np.uint8) for _ in range(8)]
barrier = threading.Barrier(8)
bad = []
def work(m):
    barrier.wait()
    out = k.keccak256_rows(m)
    for i in range(len(m)):
        if out[i].tobytes() != keccak.new(digest_bits=256, data=m[i].tobytes()).digest():
            bad.append(i)
threads = [threading.Thread(target=work, args=(m,)) for m in jobs]
[t.start() for t in threads]
[t.join() for t in threads]
print("BAD" if bad else "OK", k.numba_enabled())
"""


def test_first_hashes_from_eight_threads_in_a_fresh_process_load_numba_once():
    """Held: in a fresh interpreter (numba not yet imported) eight threads hash their
    first rows at the same instant; the lazy one-time load gives every thread the
    C library's digests."""
    proc = subprocess.run(
        [sys.executable, "-c", _LAZY_PROBE], capture_output=True, text=True, timeout=120, cwd=REPO
    )
    assert proc.returncode == 0, proc.stderr[-500:]
    assert proc.stdout.split()[0] == "OK", proc.stdout


# ======================================================================================
# Audit: owner and price bound to the registration's manifest
# ======================================================================================


@pytest.fixture(scope="module")
def audit_world(tmp_path_factory: pytest.TempPathFactory):
    """test_audit's World (an in-process EVM with tab registered at 1,000 per row by its
    owner, a staked node, three verifiers and a requester) in this module's own home."""
    from test_audit import World as AuditWorld

    home = tmp_path_factory.mktemp("redteam-audit-home")
    hub = Hub(home=home)
    owner = KeyStore(home).ensure_dev_key("owner")
    hub.publish(sample_model_path("tabular"), name="tab", version="1.0.0", price=1000, signer=owner)
    return AuditWorld(home, hub)


def test_an_owner_price_cut_does_not_fail_honest_batches(audit_world, home):
    """The owner lowers its on-chain price from 1,000 to 999 per row (ModelRegistry
    ``setPrice``: the contract's documented way to reprice; committed batches keep their
    price). A node commits an honest batch at 999 under an order capped at 1,000: the
    requester paid less than the owner's signed manifest asks, nobody was overcharged.
    Failing it as ``payment-mismatch`` would let any owner make every node serving its
    model fail audits for one wei a row."""
    w = audit_world
    snapshot = w.chain.snapshot()
    try:
        registry = w.chain.contract("ModelRegistry")
        w.chain.transact(
            registry.functions.setPrice(bytes.fromhex(w.manifest.model_id[2:]), 999),
            w.s["owner"],
        )
        batch = w.batch("price-cut")
        w.settle_fully(batch, w.order(batch, price=1000))
        report = w.audit(batch_ids=[batch.batch_id])
        reasons = dict(
            zip(
                report.findings["reason"].to_list(),
                report.findings["detail"].to_list(),
                strict=True,
            )
        )
        assert report.passed, reasons
    finally:
        w.chain.revert(snapshot)


def test_frame_fingerprint_tells_different_frames_apart():
    """The fingerprint is what says 'the same bytes' to a resumed run:
    ``{a: [1], b: [2]}`` and ``{a: [1, int('b:Int64:'), 2]}`` must not stream the same
    bytes into sha256 (name, dtype and values with no length between columns would)."""
    import polars as pl

    from ogkit.dataset import open_source

    absorbed = int.from_bytes(b"b:Int64:", "little")
    one = pl.DataFrame({"a": [1], "b": [2]})
    other = pl.DataFrame({"a": [1, absorbed, 2]})
    assert open_source(one).dataset_id != open_source(other).dataset_id


def test_hash_columns_compared_as_words_see_every_bit():
    """Held: verify's word-wise hash comparison (four uint64 words a row read back as one
    uint32 of four booleans) flags a single flipped bit at every one of the 256 positions,
    on strided and read-only columns too, and never flags an equal row."""
    from ogkit.verify import _hashes_differ

    rng = np.random.default_rng(6)
    base = rng.integers(0, 256, (256, 32), dtype=np.uint8)
    flipped = base.copy()
    for bit in range(256):
        flipped[bit, bit // 8] ^= np.uint8(1 << (bit % 8))
    assert _hashes_differ(base, flipped).all()
    assert not _hashes_differ(base, base.copy()).any()
    wide = np.zeros((256, 64), dtype=np.uint8)
    wide[:, 16:48] = flipped
    ro = base.copy()
    ro.flags.writeable = False
    got = _hashes_differ(ro, wide[:, 16:48])
    assert got.all() and got.shape == (256,)
    mixed = base.copy()
    mixed[::2] = flipped[::2]
    assert np.array_equal(_hashes_differ(base, mixed), np.arange(256) % 2 == 0)


def test_sorted_pairs_with_out_aliasing_its_pairs_is_refused_or_correct():
    """An exported hash must not silently return wrong digests: ``out`` laid over the
    second half of ``pairs``' memory is writable, C-contiguous, uint8 and ``(m, 32)``,
    and each 8-pair step of the kernel would overwrite pairs not yet read. It is refused
    (or the digests are right)."""
    m = 64
    pairs = np.random.default_rng(12).integers(0, 256, (m, 64), dtype=np.uint8)
    want = [_ref(min(r[:32].tobytes(), r[32:].tobytes()) + max(r[:32].tobytes(), r[32:].tobytes()))
            for r in pairs]  # fmt: skip
    aliased = pairs.copy()
    out = aliased.reshape(2 * m, 32)[m:]
    try:
        kmod.keccak256_sorted_pairs(aliased, out=out)
    except ConfigError:
        return
    assert [r.tobytes() for r in out] == want


def _list_frames(rows: int = 1200) -> tuple:
    """Two frames of the tab model's eight features as one List(Float64) column, equal
    but for row ``rows // 2`` (all nines in the second)."""
    import polars as pl

    values = make_tabular(rows, seed=2).select([f"f{i}" for i in range(8)]).to_numpy()
    other = values.astype(np.float64).copy()
    other[rows // 2] = 9.0
    one = pl.DataFrame({"x": [list(r) for r in values.astype(np.float64)]})
    two = pl.DataFrame({"x": [list(r) for r in other]})
    return one, two


def test_list_column_frames_differing_in_one_row_have_different_fingerprints():
    """A frame of 1,200 rows whose features are one List column; a second frame differs
    only in row 600. A fingerprint through numpy's ``repr`` of the object array would
    not see it (numpy summarises '[...], ..., [...]' above 1,000 elements)."""
    from ogkit.dataset import open_source

    one, two = _list_frames()
    assert open_source(one).dataset_id != open_source(two).dataset_id


def test_a_rerun_over_other_rows_is_not_answered_with_the_first_frames_batch(world: World):
    """The requester (or a notebook user) runs the job over frame one, then over frame
    two (row 600 changed). Were both under one run key, the second run would return the
    first run's artefact, whose dataset commitment is frame one's: the requester's
    verification with frame two would name the node (and with the requester's
    commitment passed, the node could not serve frame two at all)."""
    from ogkit.dataset import commit_dataset

    one, two = _list_frames()
    store = world.store()

    def run(frame):
        return run_verified_inference(
            "tab",
            frame,
            attester=world.honest,
            requester=world.requester,
            hub=world.hub,
            store=store,
            input_map={"features": "x"},
            partition_rows=600,
            progress=False,
        )

    first = run(one)
    second = run(two)
    assert second.artifact_id != first.artifact_id
    from ogkit.load import load_model

    want = commit_dataset(two, load_model("tab", hub=world.hub), {"features": "x"})
    assert second.manifest.dataset_id == want.input_root


def test_rerun_does_not_return_a_manifest_that_reuses_its_claim(world: World):
    """The node's genuine claim and signature are public (in its artefact). The planter
    writes a manifest with that claim, signature and batch id, but partition 0's records
    swapped for its own (labels shifted, leaves recomputed; the partition root is left
    as the claim's, as it must be to keep the batch root), stores it, and points
    ``batches/<batch id>/ARTIFACT`` at it. Its batch id, attester, domain and signature
    are all genuine; returned, the node would settle an artefact whose records fail
    verification under its key. The rerun must give a batch that verifies."""
    store = world.store()
    honest = world.run(store)
    m = honest.manifest.to_dict()
    rec = honest.records(0, inputs=False)
    outputs = {k: v.copy() for k, v in rec.outputs.items()}
    outputs["label"] = (outputs["label"] + 1) % 3
    att = attest_partition(offset=0, feeds={}, outputs=outputs, input_hashes=rec.input_hashes)
    data = records_to_parquet(att, outputs)
    path = f"batches/{honest.batch_id}/planted-part-00000.parquet"
    store.write_bytes(path, data)
    m["partitions"][0].update(path=path, sha256=hashlib.sha256(data).hexdigest())
    forged = store.put(ARTIFACTS, canonical_json(m))
    store.write_bytes(f"batches/{honest.batch_id}/ARTIFACT", forged.encode())
    again = world.run(store)
    policy = VerifyPolicy(
        sample_rate=0.0,
        allowlist=Allowlist().approve(world.honest.address, [honest.runtime_id]),
    )
    verdict = verify_batch(
        again.artifact_id, policy, store=store, hub=world.hub, dataset=world.data, progress=False
    )
    assert verdict.passed, sorted({f.reason for f in verdict.findings})


def test_allowlist_kinds_naming_one_measurement_twice_are_refused(tmp_path: Path):
    """A kinds map ``{"0xABAB…": 2, "0xabab…": 1}`` records one measurement as TDX and as
    software. Read naively, the later key would win (here software, so a software-enclave
    claim for a measurement the file also calls TDX would pass the ``tee-required``
    check); swapped, TDX. The file is refused as contradictory, like a malformed pair."""
    m = "0x" + "ab" * 32
    path = _write_allowlist(
        tmp_path / "allowlist.json",
        [{"attester": "0x" + "11" * 20, "measurement": m}],
        kinds={m.upper().replace("0X", "0x"): 2, m: 1},
    )
    with pytest.raises(ConfigError):
        Allowlist.load(path)


def test_a_planted_batch_pointer_does_not_stop_the_job(world: World, clean):
    """Whoever shares the store writes ``batches/<run key>/BATCH`` naming some other
    batch id before the node first runs the requester's job (the run key is computable
    from public fields). Trusted, it makes the node run every partition and then stop
    with "delete that folder", missing the job's deadline until an operator intervenes;
    the job must run to its own batch."""
    honest_batch, run_key = clean
    store = world.store()
    store.write_bytes(f"batches/{run_key}/BATCH", ("0x" + "cd" * 32).encode())
    batch = world.run(store)
    assert batch.batch_root == honest_batch.batch_root


def test_a_planted_job_file_does_not_stop_the_job(world: World, clean):
    """Whoever shares the store writes ``batches/<run key>/job.json`` with another
    partition size before the node first runs the job. The node refuses the job ("an
    earlier run of this job used different partition_rows ... use another job name")
    only if it trusts the file; the job name is the requester's order, so the job must
    run to its own batch instead."""
    honest_batch, run_key = clean
    store = world.store()
    store.write_bytes(
        f"batches/{run_key}/job.json",
        json.dumps({"run": run_key, "partition_rows": 1, "inputs": []}).encode(),
    )
    batch = world.run(store)
    assert batch.batch_root == honest_batch.batch_root
