"""Proving chosen rows in chunks of N, on Dask workers, with progress.

Rows are taken in the order given, ``N`` at a time; the last chunk is padded by
repeating its last row (its padded positions are ``-1`` in :attr:`ZkProof.rows`). Each
chunk is one Dask task named ``zk-prove-<first row>``: the worker reads the compiled
circuit, the proving key and the SRS from the store (once per process), writes ezkl's
input file, makes the witness and the proof, and returns the proof.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ogkit.compute import completed
from ogkit.errors import ZkError
from ogkit.store import ContentStore
from ogkit.zk.export import DTYPES, ezkl_input_json
from ogkit.zk.keys import ZK_CIRCUITS, ZK_KEYS, ZK_SRS, ZkKeys, materialise
from ogkit.zk.profile import ZkProfile

log = logging.getLogger(__name__)

__all__ = ["ZkProof", "chunk_rows", "load_proof", "prove_rows", "store_proof"]

PROOF_SCHEMA = "ogkit.zk.proof.v1"


@dataclass(frozen=True)
class ZkProof:
    """One proof of a chunk: the batch rows it speaks about (``-1`` = padding), its
    public instances (field elements) and the proof bytes the EVM verifier takes; the
    ezkl proof document is kept for ezkl's own verifier."""

    profile_id: str
    keys_id: str
    rows: tuple[int, ...]
    instances: tuple[int, ...]
    proof: bytes
    document: dict[str, Any]
    seconds: float = 0.0

    def position(self, row: int) -> int:
        """This row's position ``j`` in the chunk."""
        try:
            return self.rows.index(int(row))
        except ValueError:
            raise ZkError(f"the proof does not cover row {row}") from None

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": PROOF_SCHEMA,
            "profile_id": self.profile_id,
            "keys_id": self.keys_id,
            "rows": list(self.rows),
            "instances": [hex(i) for i in self.instances],
            "proof": "0x" + self.proof.hex(),
            "document": self.document,
            "seconds": self.seconds,
        }

    @classmethod
    def from_dict(cls, d: Any) -> ZkProof:
        if not isinstance(d, dict) or d.get("schema") != PROOF_SCHEMA:
            raise ZkError(f"not an ogkit ZK proof (schema {PROOF_SCHEMA})")
        try:
            return cls(
                profile_id=str(d["profile_id"]),
                keys_id=str(d["keys_id"]),
                rows=tuple(int(r) for r in d["rows"]),
                instances=tuple(int(str(i), 16) for i in d["instances"]),
                proof=bytes.fromhex(str(d["proof"]).removeprefix("0x")),
                document=dict(d["document"]),
                seconds=float(d.get("seconds", 0.0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ZkError(f"ZK proof is malformed: {exc!r}") from exc


def chunk_rows(rows: Sequence[int], chunk: int) -> list[list[int]]:
    rows = [int(r) for r in rows]
    return [rows[i : i + chunk] for i in range(0, len(rows), chunk)]


def _document_instances(doc: dict[str, Any]) -> tuple[int, ...]:
    # ezkl writes instances as little-endian hex of each field element
    return tuple(int.from_bytes(bytes.fromhex(h), "little") for h in doc["instances"][0])


def prove_chunk(
    store_url: str,
    profile: dict[str, Any],
    keys: dict[str, Any],
    rows: list[int],
    inputs: dict[str, np.ndarray],
) -> dict[str, Any]:
    """Prove one chunk (a Dask task): ``inputs`` hold exactly ``N`` rows."""
    import ezkl

    p = ZkProfile.from_dict(profile)
    k = ZkKeys.from_dict(keys)
    store = ContentStore(store_url)
    circuit = materialise(store, ZK_CIRCUITS, k.circuit_id)
    pk = materialise(store, ZK_KEYS, k.pk_id)
    srs = materialise(store, ZK_SRS, k.srs_id)
    names = [t.name for t in sorted(p.inputs, key=lambda t: t.base)]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ogkit-zk-prove-") as tmp:
        d = Path(tmp)
        (d / "input.json").write_text(ezkl_input_json(inputs, names))
        try:
            ezkl.gen_witness(
                str(d / "input.json"), str(circuit), str(d / "witness.json"), None, None
            )
            ezkl.prove(
                str(d / "witness.json"), str(circuit), str(pk), str(d / "proof.json"), str(srs)
            )
        except Exception as exc:
            raise ZkError(
                f"ezkl could not prove rows {rows[:4]}...: {exc}; the inputs may be outside "
                "the calibrated range (re-export with calibration rows like these)"
            ) from exc
        doc = json.loads((d / "proof.json").read_text())
    proof = ZkProof(
        profile_id=p.profile_id,
        keys_id=k.keys_id,
        rows=tuple(rows),
        instances=_document_instances(doc),
        proof=bytes.fromhex(doc["hex_proof"].removeprefix("0x")),
        document=doc,
        seconds=time.perf_counter() - started,
    )
    return proof.to_dict()


def prove_rows(
    store: ContentStore,
    profile: ZkProfile,
    keys: ZkKeys,
    inputs: Mapping[str, np.ndarray],
    rows: Sequence[int],
    *,
    dask: Any = None,
    progress: bool = True,
) -> list[ZkProof]:
    """Prove ``rows`` (indices into ``inputs``, whose arrays have a leading row dim) in
    chunks of the profile's N; in-process, or on the ``dask`` client's workers."""
    if keys.profile_id != profile.profile_id:
        raise ZkError("the keys are for another profile; rerun `ogkit zk setup`")
    if len(rows) == 0:
        raise ZkError("no rows to prove")
    names = [t.name for t in profile.inputs]
    missing = [n for n in names if n not in inputs]
    if missing:
        raise ZkError(f"the inputs lack {missing}")
    n_rows = min(len(inputs[n]) for n in names)
    bad = [r for r in rows if not 0 <= int(r) < n_rows]
    if bad:
        raise ZkError(f"rows {bad[:5]} are outside the {n_rows} input rows")
    if dask is not None and not store.shared:
        raise ZkError(f"{store.url} lives in this process; Dask workers cannot read it")
    tasks = []
    for part in chunk_rows(rows, profile.chunk):
        padded = part + [part[-1]] * (profile.chunk - len(part))
        idx = np.asarray(padded)
        feeds = {
            t.name: np.asarray(inputs[t.name])[idx].astype(DTYPES[t.dtype_code], copy=False)
            for t in profile.inputs
        }
        marked = part + [-1] * (profile.chunk - len(part))
        tasks.append((marked, feeds))
    from tqdm.auto import tqdm

    bar = tqdm(total=len(tasks), desc="zk prove", unit="chunk", disable=not progress)
    out: list[ZkProof] = []
    try:
        if dask is None:
            for marked, feeds in tasks:
                out.append(
                    ZkProof.from_dict(
                        prove_chunk(store.url, profile.to_dict(), keys.to_dict(), marked, feeds)
                    )
                )
                bar.update(1)
        else:
            futures = {
                dask.submit(
                    prove_chunk,
                    store.url,
                    profile.to_dict(),
                    keys.to_dict(),
                    marked,
                    feeds,
                    key=f"zk-prove-{marked[0]}-{profile.profile_id[2:10]}",
                    pure=False,
                ): i
                for i, (marked, feeds) in enumerate(tasks)
            }
            results: dict[int, ZkProof] = {}
            for fut in completed(dask, futures):
                results[futures[fut]] = ZkProof.from_dict(fut.result())
                bar.update(1)
            out = [results[i] for i in range(len(tasks))]
    finally:
        bar.close()
    log.info("proved %d rows in %d chunk(s) of %d", len(rows), len(tasks), profile.chunk)
    return out


def proof_path(batch_id: str, proof: ZkProof) -> str:
    first = next(r for r in proof.rows if r >= 0)
    return f"zk/proofs/{batch_id}/{proof.profile_id[:18]}-{first}.json"


def store_proof(store: ContentStore, batch_id: str, proof: ZkProof) -> str:
    return store.write_bytes(
        proof_path(batch_id, proof), json.dumps(proof.to_dict(), sort_keys=True).encode()
    )


def load_proofs(store: ContentStore, batch_id: str) -> list[ZkProof]:
    out = []
    for name in store.listdir(f"zk/proofs/{batch_id}"):
        if name.endswith(".json"):
            out.append(load_proof(store.read_bytes(f"zk/proofs/{batch_id}/{name}")))
    return out


def load_proof(data: bytes) -> ZkProof:
    try:
        d = json.loads(data)
    except ValueError as exc:
        raise ZkError(f"ZK proof is not JSON: {exc}") from exc
    return ZkProof.from_dict(d)
